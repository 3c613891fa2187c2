/* SentencePiece vocabularies for the llama2.c BPE encoder: the `tokenizer.model` protobuf and
 * Hugging Face `tokenizer.json` of the SentencePiece-BPE kind, turned into pieces and scores as
 * llama2.c's tokenizer export does. Owns only the parsing; the encoding is tokenizer.c's. */
#ifndef SPARQ_SPM_H
#define SPARQ_SPM_H

#include <stddef.h>

#include "err.h"
#include "tokenizer.h"

/* SentencePiece ModelProto: pieces (field 1: {1 piece, 2 score, 3 type}), trainer_spec (model
 * type, bos/eos ids), normalizer_spec (dummy prefix). BPE models only; unigram is refused. */
int spm_load_model(tokenizer **out, const char *path, err *e);

/* tokenizer.json with model.type "BPE", model.vocab and model.merges (a piece made by merge r
 * scores -r, as SentencePiece's own BPE scores; pieces no merge makes score -1e10, which the
 * encoder never merges into). A byte-level BPE (ByteLevel pre-tokenizer or decoder) goes to bpe.h. */
int spm_load_json(tokenizer **out, const char *path, err *e);

/* A SentencePiece piece (len bytes) in llama2.c's convention, malloc'ed: U+2581 -> ' ', and the
 * BOS / EOS pieces (by id) -> "\n<s>\n" / "\n</s>\n". NULL when out of memory. */
char *spm_piece_text(const char *piece, size_t len, int id);

/* The inverse, for writers of SentencePiece-convention vocabularies (GGUF), malloc'ed. */
char *spm_piece_from_text(const char *text, int id);

/* SentencePiece piece types, as GGUF's tokenizer.ggml.token_type stores them. */
enum { SPM_NORMAL = 1, SPM_UNKNOWN = 2, SPM_CONTROL = 3, SPM_USER_DEFINED = 4, SPM_UNUSED = 5,
       SPM_BYTE = 6 };
/* The type of a llama2.c-convention piece: <unk> at 0, BOS/EOS control, <0xXX> byte, else normal. */
int spm_piece_type(const char *text, int id);

#endif
