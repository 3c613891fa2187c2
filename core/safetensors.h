/* Hugging Face checkpoints: safetensors files (one file, or shards through
 * model.safetensors.index.json) with config.json for LlamaForCausalLM / MistralForCausalLM,
 * read memory-mapped into a model, and written back. Owns the mapped files while loading. */
#ifndef SPARQ_SAFETENSORS_H
#define SPARQ_SAFETENSORS_H

#include "dtype.h"
#include "err.h"
#include "model.h"

/* path: a folder holding config.json and model.safetensors (or model.safetensors.index.json, or
 * a single *.safetensors), a .safetensors file with config.json beside it, or an index json.
 * F32/F16/BF16 tensors are converted to float32 one at a time, and the pages of each are
 * dropped once converted, so the file and the weights are never resident together. Hugging
 * Face stores q/k rows in rotate-half order; they are permuted to the adjacent-pair layout
 * (cfg.rope = ROPE_ADJACENT), which makes the logits bit-identical to llama2.c's. */
int safetensors_load_model(model **out, const char *path, err *e);

/* path ending in .safetensors: that file and config.json beside it; otherwise a folder
 * (created if needed) with model.safetensors (or shards and their index) and config.json. dt: F32, F16 or BF16. q/k rows are
 * written in Hugging Face's rotate-half order whatever the model's layout. */
int safetensors_save_model(const model *m, const char *path, dtype dt, uint64_t shard_bytes, err *e);

/* A folder's model is cut into shards of at most this many bytes (Hugging Face's default
 * max_shard_size, 5 GB) with model.safetensors.index.json naming them; shard_bytes 0 = this. */
#define SAFETENSORS_SHARD_BYTES 5000000000ull

/* config.json helpers for the families' readers and writers: an integer in [1, 2^24] (def < 0:
 * required; missing: def), a positive finite float (missing: def), and a float written as its
 * shortest round-tripping decimal. Messages name the file and the key. */
struct cJSON;
int  json_cfg_int(const struct cJSON *j, const char *key, int def, int *out, const char *path, err *e);
int  json_cfg_float(const struct cJSON *j, const char *key, double def, float *out, const char *path,
                    err *e);
struct cJSON *json_float(float v);

#endif
