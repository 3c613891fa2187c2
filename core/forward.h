/* The forward pass: a batch of token sequences through the model, every linear layer one GEMM
 * over all tokens of the batch, attention per (sequence, head) with GEMMs. Also the plain
 * single-token path with a KV cache, for greedy generation and as an independent reference.
 * Each family (family.h) supplies its own embed/block/head/token functions; this module checks
 * the input, dispatches, and owns the scratch memory and the kernels they share. */
#ifndef SPARQ_FORWARD_H
#define SPARQ_FORWARD_H

#include <stdbool.h>

#include "err.h"
#include "model.h"

/* A batch: n_seq sequences of lens[i] tokens, stored one after another (n_tok in all). Each
 * sequence starts at position 0 and attends only to itself. */
typedef struct {
    int        n_seq;
    const int *lens;
    int        n_tok;
} fwd_batch;

/* Where forward_block copies the inputs of its linear layers (NULL = not wanted): in[i] is
 * input i of the family's description (LLaMA: the normed input of q/k/v, the attention output,
 * the normed input of gate/up, the input of down), [n_tok][width] row-major: the calibration
 * statistics of the compression driver. */
typedef struct {
    float *in[8];
} block_inputs;

typedef struct fwd_scratch fwd_scratch;

fwd_scratch *fwd_scratch_new(void);
void         fwd_scratch_free(fwd_scratch *s);

/* The linear layers and the classifier of a resident model packed once for the GEMM kernel
 * (blas_pack), for callers that run many forward passes over unchanged weights (the
 * evaluations): made once, handed to each scratch, freed after the last pass. NULL when the
 * machine has no such kernel, the model is streamed or memory is short. A pass gives the same
 * bits with or without it; the weights must not change while it is in use. */
typedef struct fwd_packs fwd_packs;

fwd_packs *forward_pack(const model *m);
void       forward_packs_free(fwd_packs *p);
/* True when p holds every linear of every block (not only the classifier): no GEMM of a pass
 * packs weights any more, so callers need not batch many tokens per pass to amortize that. */
bool       forward_packs_whole(const fwd_packs *p);
void       fwd_scratch_use(fwd_scratch *s, const fwd_packs *p);

/* x[n_tok][dim] = the inputs of the first block for the batch's tokens (embeddings, plus
 * learned positions where the family has them). Ids must be < vocab_size. */
int forward_embed(const model *m, const int *tokens, const fwd_batch *b, float *x, err *e);

/* Run block `layer` on hidden states x[n_tok][dim] in place. */
int forward_block(const model *m, int layer, float *x, const fwd_batch *b, block_inputs *cap,
                  fwd_scratch *s, err *e);

/* Final norm and classifier: logits[n_tok][vocab] from x[n_tok][dim] (x is overwritten). */
int forward_head(const model *m, float *x, int n_tok, float *logits, err *e);

/* The head in two steps, for callers that take the classifier in column slices (perplexity):
 * forward_head_splits is true when forward_head(x) is forward_head_norm(x) (x normed in place)
 * followed by logits = x wcls^T, with wcls [vocab][dim]. */
bool forward_head_splits(const model *m);
int  forward_head_norm(const model *m, float *x, int n_tok, err *e);

/* logits[n][nc] = x[n][dim] wcls^T for vocabulary columns c0 .. c0+nc-1 (after
 * forward_head_norm), on the scratch's packed classifier when it has one. */
void fwd_head_slice(const model *m, fwd_scratch *s, const float *x, int n, int c0, int nc,
                    float *logits);

/* The whole model: logits[n_tok][vocab] for the batch of tokens. */
int forward_logits(const model *m, const int *tokens, const fwd_batch *b, float *logits,
                   fwd_scratch *s, err *e);

/* Single-token reference path (llama2.c run.c style, no BLAS): one token at position pos,
 * keys and values of earlier positions from the cache (or, for a recurrent family such as
 * Mamba, its state: family.cache_floats). A family without its own token path gets the batched
 * forward over the prefix (exact, quadratic in the length). */
typedef struct fwd_cache fwd_cache;

int  fwd_cache_new(fwd_cache **c, const model *m, err *e);
void fwd_cache_free(fwd_cache *c);
/* logits[vocab] for `token` at `pos`; positions must be fed in order 0, 1, 2, ... */
int  forward_token(const model *m, fwd_cache *c, int token, int pos, float *logits, err *e);

#endif
