/* The kernels and scratch the families' forward passes share (family_*.c); not for other
 * modules. Attention here is causal multi-head attention with grouped KV heads on q, k, v laid
 * out [token][heads * head_size]; it knows nothing of positions (RoPE or learned). */
#ifndef SPARQ_FORWARD_OPS_H
#define SPARQ_FORWARD_OPS_H

#include <stdbool.h>
#include <stddef.h>

#include "blas.h"
#include "forward.h"
#include "vmath.h"

/* Named scratch buffers of a fwd_scratch; each keeps the largest size asked for. */
enum { FWD_XB, FWD_Q, FWD_K, FWD_V, FWD_ATT, FWD_HB, FWD_HB2, FWD_SCORES, FWD_X, FWD_BUFS };

/* Scratch slot `slot` holding at least n floats, or NULL when out of memory. */
float *fwd_buf(fwd_scratch *s, int slot, size_t n);

/* Check the batch against the model's context and n_tok; *maxT = the longest sequence; offs
 * (from fwd_offsets) the first token of each sequence. */
int  fwd_check_batch(const model *m, const fwd_batch *b, int *maxT, err *e);
int *fwd_offsets(fwd_scratch *s, const fwd_batch *b);

/* Scratch floats attention needs (per thread, times the thread count). */
size_t fwd_att_scratch_floats(const model *m, int maxT);
/* att[n_tok][n_heads * hs] = causal softmax(q k^T / sqrt(hs)) v per sequence and head; q's rows
 * are ldq floats apart, k's and v's ldkv (they may be column ranges of one fused output). */
void fwd_attention(const model *m, const fwd_batch *b, const int *offs, const float *q, size_t ldq,
                   const float *k, const float *v, size_t ldkv, float *att, float *scratch, int maxT);
/* The same with the portable kernel only, which machines without AVX-512 and heads that are not a
 * multiple of 16 floats use: the same bits (tests compare the two). */
void fwd_attention_portable(const model *m, const fwd_batch *b, const int *offs, const float *q, size_t ldq,
                            const float *k, const float *v, size_t ldkv, float *att, float *scratch,
                            int maxT);

/* y[n][ldy] (+)= x[n][ldx] W^T for the linears of block `layer` that read input `in` (one
 * GEMM on the scratch's packs when it has them), their outputs side by side in the family's
 * order; biases are the caller's. */
void fwd_linear_in(const model *m, fwd_scratch *s, int layer, int in, const float *x, int ldx, int n,
                   float *y, int ldy, bool add);

/* h[n][ldh] = act(gate, up) for the family's gated input `in` in one pass when the scratch
 * has its two linears packed as a pair (the same bits as fwd_linear_in and act over its
 * output); false, nothing done, otherwise. */
bool fwd_gated_in(const model *m, fwd_scratch *s, int layer, int in, const float *x, int ldx, int n,
                  blas_gate_fn act, float *h, int ldh);

/* y[rows] = W x, a plain loop: the single-token reference path. */
void fwd_matvec(float *y, const float *x, const float *W, int rows, int cols);

/* The single-token path's state (fwd_cache_new sizes it for the model's family). */
struct fwd_cache {
    float *x, *xb, *xb2, *hb, *hb2, *q, *att, *key, *value;   /* a family's own token path */
    float *state;           /* ... or its recurrent state (family.cache_floats)     */
    int   *hist;            /* the generic path: tokens fed so far ...              */
    float *all;             /* ... and their logits, [seq_len][vocab]               */
    fwd_scratch *scr;
};

#endif
