/* The LLaMA-family model: configuration, weights and the llama2.c checkpoint loader.
 * Owns the weight memory (float32, [out][in] row-major per linear layer, writable so that
 * solvers can compress in place). Knows nothing of tokenizers, solvers or evaluation. */
#ifndef SPARQ_MODEL_H
#define SPARQ_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum {
    ROPE_ADJACENT,   /* Meta/llama2.c: rotate pairs (2i, 2i+1) within a head         */
    ROPE_HALF,       /* Hugging Face: rotate pairs (i, i + head_size/2) within a head  */
} rope_layout;

typedef struct {
    int   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int   head_size;         /* dim / n_heads for llama2.c; other formats may set it freely */
    float rope_theta;        /* 10000 for LLaMA-1/2                                          */
    float norm_eps;          /* RMSNorm epsilon, 1e-5 in llama2.c                            */
    rope_layout rope;
} model_config;

/* The seven linear layers of a block, in the order solvers and reports name them. */
typedef enum { LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, LIN_COUNT } linear_kind;

extern const char *const linear_names[LIN_COUNT];   /* "q", "k", "v", "o", "gate", "up", "down" */

typedef struct {
    float *w;                /* [rows][cols] row-major: y = W x */
    int    rows, cols;       /* rows = outputs, cols = inputs   */
} linear;

typedef struct {
    float *attn_norm;        /* [dim] */
    float *ffn_norm;         /* [dim] */
    linear lin[LIN_COUNT];
} block;

typedef struct {
    model_config cfg;
    float *tok_emb;          /* [vocab][dim]                                   */
    block *blocks;           /* [n_layers]                                     */
    float *final_norm;       /* [dim]                                          */
    float *wcls;             /* [vocab][dim]; == tok_emb when the classifier is shared */
    bool   shared_cls;
    float *rope_cos, *rope_sin;   /* [seq_len][head_size/2], precomputed at load */
    float *data;             /* one allocation holding every weight above      */
    size_t data_floats;
} model;

/* Load a llama2.c legacy (version 0) checkpoint. The file size must match the header exactly. */
int  model_load_llama2c(model **out, const char *path, err *e);
void model_free(model *m);

/* Write the model as a llama2.c legacy checkpoint (the loader's layout), atomically: a
 * temporary file in the same folder, then rename, so a reader never sees half a model. */
int  model_save_llama2c(const model *m, const char *path, err *e);

/* Build the RoPE tables from cfg (after a loader filled cfg); loaders call this. */
int  model_init_rope(model *m, err *e);

/* Parameter counts: all weights, and those of the linear layers a solver may compress. */
uint64_t model_params(const model *m);
uint64_t model_linear_params(const model *m);

#endif
