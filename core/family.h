/* Model families as data: what a block holds (its linear layers, which input each reads, its
 * true-sequential stage), every tensor of the model with its shape and its names in files, how
 * config.json describes it, and its forward pass. The engine, calibration capture, solvers,
 * schedules, eval, sweeps and writers work from this description and never name a family.
 *
 * Adding a family is one source file (family_<name>.c: its tables, config reader/writer and
 * forward functions) and one line in the registry of family.c. */
#ifndef SPARQ_FAMILY_H
#define SPARQ_FAMILY_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

#include "err.h"
#include "forward.h"
#include "model.h"
#include "safetensors.h"

/* A size taken from the configuration. A tensor with a zero dimension is absent from the model
 * (OPT's project_in/out when word_embed_proj_dim == hidden_size). */
typedef enum {
    SZ_ONE,        /* 1: the second dimension of a vector               */
    SZ_DIM,        /* hidden size (the residual stream)                 */
    SZ_HIDDEN,     /* the MLP's inner width                             */
    SZ_QDIM,       /* n_heads * head_size                               */
    SZ_KVDIM,      /* n_kv_heads * head_size                            */
    SZ_VOCAB,
    SZ_EMBED,      /* width of the token embedding (embed_dim)          */
    SZ_POS,        /* rows of a learned position table (n_pos)          */
    SZ_PROJ,       /* embed_dim when it differs from dim, else 0        */
    SZ_HIDDEN2,    /* 2 * hidden: Mamba's in_proj (x and gate halves)   */
    SZ_STATE,      /* state_size                                        */
    SZ_CONV,       /* conv_kernel                                       */
    SZ_DTRANK,     /* dt_rank                                           */
    SZ_XPROJ,      /* dt_rank + 2 * state_size: Mamba's x_proj (dt, B, C) */
    SZ_CONV_BIAS,  /* hidden when conv_bias, else 0                     */
    SZ_HIDDEN2_BIAS, /* 2 * hidden when linear_bias, else 0             */
    SZ_DIM_BIAS,   /* dim when linear_bias, else 0                      */
} size_kind;

size_t family_size(const model_config *c, size_kind k);

/* A compressible linear layer of a block. */
typedef struct {
    const char *name;       /* "q": layers are reported as "<block>.<name>"              */
    size_kind   rows, cols; /* y[rows] = W x[cols]                                     */
    int         input;      /* index of the input it reads: one Hessian per input       */
    int         stage;      /* true-sequential stage (0, 1, ...): a stage's layers are
                               compressed after the block is re-run with earlier stages
                               compressed                                               */
    bool        bias;       /* has a bias vector (dense, never touched by a solver)     */
} family_linear;

typedef enum {
    SLOT_EMBED,    /* the token embedding, model.tok_emb                         */
    SLOT_HEAD,     /* the classifier, model.wcls (absent when tied)              */
    SLOT_GLOBAL,   /* model.g[index]: final norms, position tables, projections  */
    SLOT_PARAM,    /* block.p[index]: norms                                      */
    SLOT_WEIGHT,   /* block.lin[index].w                                         */
    SLOT_BIAS,     /* block.lin[index].b                                         */
} tensor_slot;

/* How a tensor's rows are laid out in files (the values 1 and 2 are the RoPE layouts). */
enum {
    TL_PLAIN,      /* [rows, cols], or [rows] for a vector                                */
    TL_ROPE_Q,     /* q rows (n_heads) in RoPE layout                                     */
    TL_ROPE_K,     /* k rows (n_kv_heads) in RoPE layout                                  */
    TL_DEPTHWISE,  /* a depthwise conv1d weight: [rows, 1, cols] in files                 */
};

/* One tensor (per block when slot is PARAM, WEIGHT or BIAS). The table's order is the order of
 * the one allocation holding the weights and of the tensors in written files. */
typedef struct {
    tensor_slot slot;
    int         index;
    size_kind   rows, cols;  /* cols SZ_ONE: a vector of rows values                         */
    const char *hf;          /* name in Hugging Face safetensors; "%d" is the block          */
    const char *gguf;        /* name in GGUF (NULL when the family has no GGUF form)         */
    int         layout;      /* TL_*: TL_ROPE_Q / TL_ROPE_K rows are permuted on load/save   */
} family_tensor;

enum { FAM_MAX_INPUT = 8 };

struct family {
    const char *name;                  /* "llama": config.json model_type and records    */
    const char *hf_arch;               /* config.json "architectures" entry written       */
    const family_linear *linear;
    int n_linear;
    const size_kind *input;            /* width of each captured input                   */
    int n_input;
    int n_stage;
    const family_tensor *tensor;
    int n_tensor;
    int  bos;                          /* the id sequences start from (self-calibration) */
    bool rope;                         /* rotary positions: RoPE tables, q/k row layouts */
    bool llama2c;                      /* storable as a llama2.c checkpoint               */
    const char *gguf_arch;             /* GGUF general.architecture; NULL: none           */
    bool linear_in;                    /* block runs its linears through fwd_linear_in, so
                                          an evaluation packs them once (forward_pack)    */
    int  gated_input;                  /* with linear_in: the input whose two linears are
                                          a gated MLP's gate and up (fwd_gated_in); -1 none */
    /* config.json <-> model_config (path names the file in messages). Sets family. */
    int  (*config_read)(const cJSON *j, model_config *c, bool *tied, const char *path, err *e);
    void (*config_write)(const model *m, cJSON *j);
    /* The forward pass on a batch (see forward.h for the contracts). cap[i], when not NULL,
     * receives input i of the block's linear layers, [n_tok][width]. */
    int  (*embed)(const model *m, const int *tokens, const fwd_batch *b, float *x, err *e);
    int  (*block)(const model *m, int layer, float *x, const fwd_batch *b, float *const *cap,
                  fwd_scratch *s, err *e);
    int  (*head)(const model *m, float *x, int n_tok, float *logits, err *e);
    /* The head's norm alone, in place, where head is exactly that norm followed by logits =
     * x wcls^T (so callers may take the classifier in column slices); NULL otherwise. */
    int  (*head_norm)(const model *m, float *x, int n_tok, err *e);
    /* The single-token reference path with a cache; NULL: forward.c re-runs the batched
     * forward over the prefix (exact, quadratic in the length). */
    int  (*token)(const model *m, fwd_cache *c, int token, int pos, float *logits, err *e);
    /* Floats of fwd_cache.state the token path keeps instead of a KV cache (a recurrent state
     * and its scratch); NULL: a KV cache of seq_len positions (attention families). */
    size_t (*cache_floats)(const model_config *c);
};

/* Where tensor t (copy l for per-block tensors) lives in m; NULL when absent from this model
 * (a tied head, a projection the config does not have). */
float *model_tensor_ptr(const model *m, const family_tensor *t, int l);
bool   family_tensor_per_block(const family_tensor *t);
/* Whether m has tensor t at all (not a tied head, not a projection its config lacks), whether
 * or not its block is acquired (stream.h). */
bool   model_has_tensor(const model *m, const family_tensor *t);

/* The registry. family_find: by config.json model_type or architectures entry; NULL if none. */
const family *family_find(const char *name);
const family *family_default(void);     /* LLaMA: llama2.c checkpoints and old configs */
/* "llama, opt" into buf: for messages listing what is supported. Returns buf. */
const char *family_names(char *buf, size_t cap);

extern const family family_llama;
extern const family family_opt;
extern const family family_mamba;

/* LLaMA's linear layers and parameters, for its loaders (llama2.c) and tests. */
enum { LLAMA_Q, LLAMA_K, LLAMA_V, LLAMA_O, LLAMA_GATE, LLAMA_UP, LLAMA_DOWN };
enum { LLAMA_ATTN_NORM, LLAMA_FFN_NORM };
enum { LLAMA_FINAL_NORM };

/* OPT's, for its tests. */
enum { OPT_Q, OPT_K, OPT_V, OPT_OUT, OPT_FC1, OPT_FC2 };

/* Mamba's, for its tests and benchmark. */
enum { MAMBA_IN, MAMBA_X, MAMBA_DT, MAMBA_OUT };
enum { MAMBA_NORM, MAMBA_CONV_W, MAMBA_CONV_B, MAMBA_A_LOG, MAMBA_D };
enum { MAMBA_FINAL_NORM };

/* Mamba's batched forward time by phase, summed over calls (and threads) between start and
 * stop: the GEMMs (linear layers and head), the selective scan, the rest (norms, convolution,
 * softplus, gating, copies). For bench-mamba; off otherwise (one branch per phase). */
typedef struct { double gemm, scan, other; } mamba_profile;
void mamba_profile_start(void);
void mamba_profile_stop(mamba_profile *out);

#endif
