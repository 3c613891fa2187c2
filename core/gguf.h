/* GGUF (v2/v3, little-endian) for the LLaMA architecture: the metadata and tensor-info reader,
 * the model (F32/F16/BF16/Q8_0 tensors, mapped and converted to float32), the embedded
 * SentencePiece vocabulary, and the writer (F32/F16/BF16, llama.cpp's names and q/k layout). */
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

#endif
