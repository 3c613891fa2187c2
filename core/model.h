/* A model of any family (family.h describes each): configuration, weights (float32 [out][in],
 * writable for solvers) laid out from the family's tensor table, the llama2.c format, and
 * model_load/model_save for every format (safetensors.h, gguf.h do the work). Knows nothing of
 * tokenizers beyond handing one to the GGUF writer, nor of solvers or evaluation. */
#ifndef SPARQ_MODEL_H
#define SPARQ_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "err.h"

typedef enum {
    ROPE_ADJACENT,   /* Meta/llama2.c: rotate pairs (2i, 2i+1) within a head         */
    ROPE_HALF,       /* Hugging Face: rotate pairs (i, i + head_size/2) within a head  */
} rope_layout;

typedef struct family family;

typedef struct {
    int   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int   head_size;         /* dim / n_heads for llama2.c; other formats may set it freely */
    float rope_theta;        /* 10000 for LLaMA-1/2 (families with RoPE)                     */
    float norm_eps;          /* RMSNorm / LayerNorm epsilon, 1e-5 in llama2.c                */
    rope_layout rope;
    int   embed_dim;         /* width of the token embedding; 0 = dim                        */
    int   n_pos;             /* rows of a learned position table; 0 = none                   */
    /* Selective state-space blocks (Mamba; 0 / false for other families): */
    int   state_size;        /* SSM state per channel (d_state)                              */
    int   conv_kernel;       /* taps of the causal depthwise convolution                     */
    int   dt_rank;           /* width of the low-rank time step (time_step_rank)             */
    bool  conv_bias;         /* the convolution has a bias (use_conv_bias)                   */
    bool  linear_bias;       /* in_proj and out_proj have biases (use_bias)                  */
    const family *family;    /* NULL = family_default() (LLaMA)                              */
} model_config;

/* Room for the largest family's parts; the family says how many are used. */
enum { MODEL_MAX_LINEAR = 8, MODEL_MAX_PARAM = 8, MODEL_MAX_GLOBAL = 8 };

typedef struct {
    float *w;                /* [rows][cols] row-major: y = W x + b             */
    float *b;                /* [rows], or NULL: solvers never see it           */
    int    rows, cols;       /* rows = outputs, cols = inputs                   */
} linear;

typedef struct {
    linear lin[MODEL_MAX_LINEAR];   /* the family's linear layers, in its order  */
    float *p[MODEL_MAX_PARAM];      /* norms and other per-block vectors          */
} block;

typedef struct {
    model_config cfg;
    const family *fam;       /* == cfg.family once loaded                      */
    float *tok_emb;          /* [vocab][embed_dim]                             */
    block *blocks;           /* [n_layers]                                     */
    float *g[MODEL_MAX_GLOBAL];   /* final norms, position tables, projections */
    float *wcls;             /* [vocab][embed_dim]; == tok_emb when shared     */
    bool   shared_cls;
    float *rope_cos, *rope_sin;   /* [seq_len][head_size/2], precomputed at load */
    float *data;             /* one allocation holding every weight above (for a
                                streamed model, stream.h, all but the blocks')    */
    size_t data_floats;
    struct model_store *store;    /* streamed blocks (stream.h); NULL: all in data */
    /* What the file was, for `inspect`: the llama2.c export version read (0 legacy, 1 float32,
     * 2 Q8_0; -1 for other formats) and, for version 2, the values per int8 scale (else 0). */
    int    llama2c_version;
    int    group_size;
} model;

/* Load a llama2.c checkpoint: legacy (version 0, no magic) or export.py's version 1 (float32)
 * or 2 (Q8_0, dequantised to exactly (float)int8 * scale), told by the magic "ak42". The file
 * size must match the header exactly; non-finite weights or scales are named by tensor and layer. */
int  model_load_llama2c(model **out, const char *path, err *e);
void model_free(model *m);

/* Write the model as a llama2.c legacy checkpoint (the loader's layout), atomically: a
 * temporary file in the same folder, then rename, so a reader never sees half a model. */
int  model_save_llama2c(const model *m, const char *path, err *e);
/* The same in export.py's versioned layouts: version 0 is the legacy one above, 1 float32, 2 Q8_0
 * (int8 + a float32 scale per group of 64 values, or the group size the model was read with;
 * scale = max|w| / 127, q = round(w / scale), as export.py quantizes). Also atomic. */
int  model_save_llama2c_version(const model *m, const char *path, int version, err *e);

/* Build the RoPE tables from cfg (after a loader filled cfg); loaders call this. */
int  model_init_rope(model *m, err *e);

/* Parameter counts: all weights, and those of the linear layers a solver may compress. */
uint64_t model_params(const model *m);
uint64_t model_linear_params(const model *m);

/* The family's linear layers per block, and the name of linear k ("q", "fc1"). */
int         model_n_linear(const model *m);
const char *model_linear_name(const model *m, int k);

/* ---- every format ------------------------------------------------------------------------ */

/* Check a configuration read from a file (path names it in the message): positive sizes, heads
 * dividing evenly, an even head size, finite epsilon and theta, and a weight count that fits
 * size_t, and that what a streamed model holds (stream.h: all but the blocks, plus two blocks)
 * fits this machine's memory (the resource guard: checked before any allocation). */
int  model_config_check(const model_config *c, const char *path, err *e);

/* Every weight a configuration implies is read from a tensor of the file, so tensors holding
 * `have` values in all must supply them: checked before allocating (beyond 2^24 floats, 64 MB),
 * so that a small file cannot claim a model of many gigabytes. `source` names what described the
 * model ("the metadata", "config.json"). A bound in double, not an allocation size. */
int  model_check_tensor_total(const model_config *c, bool shared, double have, const char *path,
                              const char *source, err *e);

/* A model for cfg with every weight in one zeroed allocation (m->data, in the order of the
 * family's tensor table, each per-block tensor for all blocks together: for LLaMA llama2.c's
 * order without its legacy RoPE tables) and the tensor pointers set. RoPE tables are not built:
 * a loader fills the weights, then calls model_init_rope (a no-op for families without RoPE). */
int  model_alloc(model **out, const model_config *c, bool shared_cls, err *e);
/* The same, without the blocks' storage when blocks is false (their pointers NULL, their shapes
 * set): what stream.c's model_alloc_streamed builds on. */
int  model_alloc_parts(model **out, const model_config *c, bool shared_cls, bool blocks, err *e);
/* Point block l's tensors into base (model_block_floats of them: the linear weights in the
 * family's linear order, then biases, then vectors), or clear them when base is NULL. */
void model_block_point(model *m, int l, float *base);

/* Load any supported model, the format told by the path and the first bytes:
 *   a folder with config.json, a .safetensors file or model.safetensors.index.json: Hugging Face;
 *   a file starting with "GGUF" (or named .gguf): GGUF;
 *   anything else: a llama2.c checkpoint (model_load_llama2c and its messages).
 * Whatever the source, q/k rows end up in the adjacent-pair (llama2.c/Meta) layout and
 * cfg.rope == ROPE_ADJACENT, so one model gives the same logits from every format. */
int  model_load(model **out, const char *path, err *e);

typedef enum {
    MODEL_FORMAT_AUTO,          /* from the path: .safetensors or a folder, .gguf, else llama2.c */
    MODEL_FORMAT_LLAMA2C,
    MODEL_FORMAT_SAFETENSORS,
    MODEL_FORMAT_GGUF,
} model_format;

struct tokenizer;
struct gguf_block_grid;
struct gguf_save_info;

typedef struct {
    model_format format;
    dtype        dtype;         /* DTYPE_F32 (default), F16 or BF16; llama2.c is always f32;
                                   GGUF also takes ggml's block types (gguf.h)              */
    const struct tokenizer *tok;   /* GGUF: vocabulary to embed (NULL = none)                */
    int          llama2c_version;   /* llama2.c: 0 legacy (default), 1 float32, 2 Q8_0     */
    uint64_t     shard_bytes;       /* safetensors folder: bytes per shard, 0 = 5 GB        */
    const struct gguf_block_grid *grids;   /* GGUF block types: the layers' grids, or NULL */
    struct gguf_save_info *info;           /* GGUF: what the writer did, or NULL           */
    bool         pure;              /* GGUF block types: the embedding in the block type too */
} model_save_options;

/* Save in the format the extension names (.bin or other: llama2.c; .safetensors, with a
 * config.json beside it; .gguf), float32. Atomic per file. A family llama2.c cannot hold (OPT)
 * goes to a Hugging Face folder when the path has no extension. */
int  model_save(const model *m, const char *path, err *e);
/* The same with an explicit format, weight type and (for GGUF) tokenizer. Safetensors to a
 * path not ending in .safetensors writes model.safetensors + config.json into that folder. */
int  model_save_opts(const model *m, const char *path, const model_save_options *o, err *e);

/* What model_save_opts would refuse before writing anything (a dtype the format cannot hold, a
 * family it cannot describe): for commands to check before hours of work. */
int  model_save_check(const model *m, const char *path, const model_save_options *o, err *e);

model_format model_format_for_path(const char *path);
/* The format model_save_opts writes m to path in: `requested` unless AUTO, else the path's. */
model_format model_save_format(const model *m, const char *path, model_format requested);
int          model_format_parse(const char *name, model_format *f, err *e);
const char  *model_format_name(model_format f);     /* "llama2c", "safetensors", "gguf" */

/* dst = the rows of a q or k matrix (n_heads heads of head_size rows of cols floats) moved from
 * layout `from` to layout `to`: Hugging Face's rotate-half order lists a head's even rows
 * (adjacent pairs' first halves) then its odd ones. dst and src must not overlap. */
void model_permute_rows(float *dst, const float *src, int n_heads, int head_size, int cols,
                        rope_layout from, rope_layout to);
/* Move every block's q and k rows to `to` and set cfg.rope, in place. */
int  model_set_rope_layout(model *m, rope_layout to, err *e);

/* Number of distinct values of a linear layer (-0 counts as 0): what a quantized layer's grid
 * leaves, for `sparq inspect`. 0 only when out of memory. */
uint64_t linear_distinct(const linear *l);
/* Fraction of a linear layer's weights that are exactly zero. */
double   linear_sparsity(const linear *l);

#endif
