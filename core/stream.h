/* Streamed models: a model read from safetensors or GGUF keeps its blocks in the file, in the
 * file's dtype (memory-mapped), and makes a block float32 only while someone works on it. Owns
 * the per-block float32 buffers, their reference counts and the spill file where blocks a solver
 * has changed wait (float32, so the compressed weights are exactly what the solver wrote) until
 * they are used again. Embeddings, the classifier and final norms stay resident (m->data).
 *
 * The rule for every consumer of block weights (forward, compression driver, writers, inspect):
 * model_block_acquire(m, l) before touching m->blocks[l]'s pointers, model_block_release after.
 * For a resident model (llama2.c files, models built with model_alloc) both are no-ops, so code
 * written this way works on both. Thread-safe: perplexity workers share one model. */
#ifndef SPARQ_STREAM_H
#define SPARQ_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "model.h"

/* Where a loader's blocks come from: fill(src, m, l) converts block l's tensors into the
 * pointers model_tensor_ptr gives for it (set by the store before the call); close frees src. */
typedef struct {
    void *src;
    int  (*fill)(void *src, const model *m, int l, err *e);
    void (*close)(void *src);
} model_source;

/* A model for c whose m->data holds only the tensors that are not per block, its blocks to come
 * from src. On failure src.close(src.src) has been called. */
int  model_alloc_streamed(model **out, const model_config *c, bool shared_cls, model_source src, err *e);

bool   model_streamed(const model *m);
/* Floats of one block's tensors (all blocks have the same shapes). */
size_t model_block_floats(const model *m);

/* Make block l's pointers valid (converting it from the file, or reading it back from the
 * spill file) and count a reference; release drops it, and the last release frees the block
 * and clears its pointers. */
int  model_block_acquire(const model *m, int l, err *e);
void model_block_release(const model *m, int l);
/* Keep block l's changes (it must be acquired): written to the spill file, from which later
 * acquires read it. A no-op for a resident model. */
int  model_block_store(const model *m, int l, err *e);
/* For a writer walking tensors block by block: make `want` the one block held (-1: none),
 * releasing the block *held was and acquiring `want` when they differ. */
int  model_block_hold(const model *m, int *held, int want, err *e);
/* Every block of l in [0, n_layers) at once, released together (the token path, which runs all
 * blocks per token). Acquires none on failure. */
int  model_blocks_acquire_all(const model *m, err *e);
void model_blocks_release_all(const model *m);

/* Forget every change: blocks come from the file again (the sweep's pristine model). Fails if
 * a block is still acquired. */
int  model_blocks_reset(model *m, err *e);

/* Frees the store (model_free calls it). */
void model_store_free(model *m);

#endif
