/* Byte-level BPE (GPT-2, OPT, GPT-NeoX/Pythia/Mamba): byte-to-unicode map, GPT-2's pre-tokenizer
 * regex, merges by rank, Hugging Face's added tokens and NFC, decoding. Owns the vocabulary, merges
 * and compiled regex; tokenizer.h wraps it, and knows nothing of models. */
#ifndef SPARQ_BPE_H
#define SPARQ_BPE_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"

typedef struct bpe bpe;

/* A Hugging Face tokenizer.json (already parsed; `path` names it in messages): model.type "BPE",
 * pre_tokenizer ByteLevel (use_regex true, add_prefix_space false), normalizer null or NFC. Added
 * tokens are split out first (non-normalized ones from the raw text, normalized ones after NFC),
 * leftmost-longest; their lstrip/rstrip/single_word flags are not honoured. */
int  bpe_load_json(bpe **out, const cJSON *root, const char *path, err *e);

/* GPT-2's encoder.json + vocab.bpe or OPT's vocab.json + merges.txt: a JSON object piece -> id
 * and a merges file ("#version" line, then one "a b" per line, rank = line order). No added
 * tokens and no normalization, as OpenAI's encoder.py. */
int  bpe_load_pair(bpe **out, const char *vocab_path, const char *merges_path, err *e);

/* The vocab/merges pair `path` names: a folder holding encoder.json + vocab.bpe or vocab.json +
 * merges.txt, or either file of a pair (its partner beside it). False if path names no pair. */
bool bpe_find_pair(const char *path, char *vocab, char *merges, size_t cap);

void bpe_free(bpe *b);
int  bpe_vocab_size(const bpe *b);
/* The BOS the family prepends: the id of "</s>" when the vocabulary has one (OPT, = 2), else -1
 * (GPT-2, NeoX). EOS: "</s>", else "<|endoftext|>", else -1. */
int  bpe_bos_id(const bpe *b);
int  bpe_eos_id(const bpe *b);

/* The vocabulary piece of a token in its byte-mapped form ("Ġthe"); "" outside the vocabulary. */
const char *bpe_piece(const bpe *b, int token);
/* The bytes a token decodes to (the byte map inverted; added tokens are their own text); *len
 * receives the length. Concatenating the tokens' bytes gives back the encoded text. */
const char *bpe_bytes(const bpe *b, int token, int *len);

/* Encode len bytes of text, appending to *ids (capacity *cap, count *n; grown with realloc, the
 * caller frees). Invalid UTF-8 is encoded byte by byte: bytes no regex match covers form their own
 * pre-token. A byte whose symbol the vocabulary lacks (NeoX has none for C0, C1, F5..FF, which
 * valid UTF-8 never holds) fails with SPARQ_EINPUT. */
int  bpe_encode(const bpe *b, const char *text, size_t len, int **ids, size_t *n, size_t *cap, err *e);

#endif
