/* GGUF (v2/v3, little-endian) for the LLaMA architecture: the metadata and tensor-info reader,
 * the model (F32/F16/BF16 and ggml's Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 blocks, mapped and converted to
 * float32), the embedded SentencePiece vocabulary, and the writer (the same types, llama.cpp's
 * names and q/k layout). Block layouts and rounding live in ggml_blocks.h. */
#ifndef SPARQ_GGUF_H
#define SPARQ_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "err.h"
#include "model.h"
#include "tokenizer.h"

/* GGUF value types. */
enum {
    GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STRING,
    GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64, GGUF_TYPE_COUNT
};

typedef struct gguf_file gguf_file;

/* Map and check the whole structure: header, every key/value, every tensor info against the file
 * length (strings, arrays, dims, known tensor types, offsets aligned, inside the data section and
 * not overlapping). */
int  gguf_open(gguf_file **out, const char *path, err *e);
void gguf_close(gguf_file *g);

uint32_t gguf_version(const gguf_file *g);
uint64_t gguf_n_kv(const gguf_file *g);
uint64_t gguf_n_tensors(const gguf_file *g);
uint64_t gguf_data_offset(const gguf_file *g);   /* where tensor data starts (aligned) */

/* Tensor i (0 .. n_tensors - 1, in name order) as the file holds it: ggml type id, shape (ne[0]
 * = the row length) and its bytes in the map (valid until gguf_close). False past the end. */
typedef struct {
    const char *name;
    uint32_t    ggml_type, n_dims;
    uint64_t    ne[4];
    const void *data;
    uint64_t    nbytes;
} gguf_tensor_info;
bool gguf_tensor_at(const gguf_file *g, uint64_t i, gguf_tensor_info *out);
/* ggml's name of a tensor type id ("F32", "Q4_0", ...), "unknown" past the table. */
const char *gguf_type_name(uint32_t ggml_type);

/* Metadata by key; false when absent or of another kind. Integers of any width convert;
 * strings are copied NUL-terminated (truncated to cap). */
bool gguf_get_int(const gguf_file *g, const char *key, int64_t *v);
bool gguf_get_float(const gguf_file *g, const char *key, double *v);
bool gguf_get_str(const gguf_file *g, const char *key, char *buf, size_t cap);
bool gguf_get_array(const gguf_file *g, const char *key, uint32_t *elem_type, uint64_t *n);

/* general.architecture "llama" only. Tensors keep llama.cpp's q/k order, which is Meta's
 * adjacent-pair layout (the same as llama2.c's): cfg.rope = ROPE_ADJACENT, no permutation. */
int gguf_load_model(model **out, const char *path, err *e);

/* The embedded vocabulary (tokenizer.ggml.model "llama": tokens + scores). "gpt2" (byte-level
 * BPE) and other kinds are refused with a message saying so. */
int gguf_load_tokenizer(tokenizer **out, const char *path, err *e);

/* Write a GGUF v3 file llama.cpp can run: norms in F32, matrices in dt (F32, F16 or BF16), q/k
 * in the adjacent layout, and tok's vocabulary embedded when given (its size must match). */
int gguf_save_model(const model *m, const tokenizer *tok, const char *path, dtype dt, err *e);

/* The grids a solver fitted on one linear layer, for a block type: d (and m for the _1 types)
 * per row and block of 32 columns, [rows][cols / 32], float16 values. */
typedef struct gguf_block_grid {
    const float *d, *m;
} gguf_block_grid;

/* What the writer did, for the caller to say. */
typedef struct gguf_save_info {
    dtype  embd_dtype;             /* what the token embedding (and classifier) became    */
    int    n_kept;                 /* linear tensors kept f16: rows not a multiple of 32 */
    char   kept[256];              /* their names, comma-separated (truncated)            */
    double bytes, params;          /* tensor data of the file and the weights it holds    */
    double linear_bytes, linear_params;
    double bits_per_weight;        /* 8 bytes / params: the file's real bits per weight   */
    double linear_bits_per_weight; /* the same over the linear layers                     */
} gguf_save_info;

/* The same with dt also one of ggml's block types (ggml_blocks.h). Then the linear layers are
 * written in dt's blocks (a layer whose rows are not a multiple of 32 stays F16 and is named in
 * info), the token embedding and a separate classifier F16 (pure: in dt by ggml's reference
 * rounding, as llama-quantize --pure, when dim is a multiple of 32), norms F32. grids
 * ([n_layers * the family's linear count], block order, or NULL): a layer with grid d is packed on those grids
 * and must lie on them exactly (the file then holds the model's values bit for bit; -0 and +0
 * aside); a layer without is quantized by ggml's reference rules, as llama-quantize does.
 * info may be NULL. */
int gguf_save_model_blocks(const model *m, const tokenizer *tok, const char *path, dtype dt,
                           const gguf_block_grid *grids, bool pure, gguf_save_info *info, err *e);

/* Make the model in memory what gguf_save_model_blocks(dt, pure) will store: round to float16,
 * in place, every weight it stores as F16 (token embedding and classifier unless pure, linear
 * layers whose rows are not a multiple of 32), and with pure pass the embedding (classifier)
 * through ggml's reference rounding of dt. Weights beyond the float16 range become infinite:
 * the writer then refuses them. */
int gguf_round_for_blocks(model *m, dtype dt, bool pure, err *e);

#endif
