/* The tokenizer every command uses: llama2.c's SentencePiece-BPE exactly as run.c (owns tokenizer.bin;
 * spm.h and gguf.h hand it other files' pieces and scores), or a byte-level BPE it hands to bpe.h.
 * Knows nothing of models beyond the vocabulary size a caller checks against. */
#ifndef SPARQ_TOKENIZER_H
#define SPARQ_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

enum { TOKEN_UNK = 0, TOKEN_BOS = 1, TOKEN_EOS = 2 };

typedef struct tokenizer tokenizer;

/* Read every entry of the file; the vocabulary size is the number of entries found.
 * Also reads, by name or magic: a SentencePiece `*.model`, a Hugging Face `*.json` of the
 * SentencePiece-BPE kind (spm.h) or of the byte-level BPE kind (bpe.h: GPT-2, NeoX), the vocabulary
 * embedded in a GGUF file (gguf.h), and a byte-level vocabulary/merges pair (bpe.h) named by its
 * folder or by either file: encoder.json + vocab.bpe (GPT-2) or vocab.json + merges.txt (OPT). A
 * folder with no pair is read through its tokenizer.json. Other kinds are refused (SPARQ_EINPUT). */
int  tokenizer_load(tokenizer **out, const char *path, err *e);

/* A tokenizer over a byte-level BPE (bpe.h), which it takes over (freed on failure too). */
struct bpe;
int  tokenizer_from_bpe(tokenizer **out, struct bpe *b, err *e);
/* Whether the tokenizer is a byte-level BPE: no scores, no SentencePiece conventions. */
bool tokenizer_is_byte_level(const tokenizer *t);

/* A tokenizer from n pieces in llama2.c's convention (SentencePiece's U+2581 already a space,
 * BOS/EOS as "\n<s>\n" / "\n</s>\n", byte pieces as "<0xXX>") and their scores; copies both.
 * Byte fallback uses the "<0xXX>" pieces wherever they are (<unk> when absent). `src` names
 * the file in messages. */
int  tokenizer_from_pieces(tokenizer **out, int n, const char *const *pieces, const float *scores,
                           const char *src, err *e);
/* The tokenizer of a model, the one rule every command and the sweep use: `path` when given;
 * else the model's own vocabulary when it is a GGUF file; else the first of tokenizer.bin,
 * tok<vocab_size>.bin, tokenizer.model, tokenizer.json, vocab.json (+ merges.txt), encoder.json
 * (+ vocab.bpe) beside the model file (inside it for a Hugging Face folder). The vocabulary must
 * have vocab_size entries (a byte-level BPE at most: those models pad their embeddings). `used` (cap bytes, may be
 * NULL) receives the file it was read from, for content hashes. */
int  tokenizer_load_for_model(tokenizer **out, const char *model_path, int vocab_size,
                              const char *path, char *used, size_t cap, err *e);
/* Give a model written at model_path the tokenizer t, read from src (tokenizer_load_for_model's
 * `used`: a tokenizer file, a byte-level pair or folder, or a GGUF with its vocabulary), where
 * tokenizer_load_for_model will find it: in the model's folder, or inside model_path when it is
 * (or, `inside`, is to be written as) a Hugging Face folder. Beside a model file a SentencePiece-BPE
 * vocabulary becomes tok<vocab>.bin (llama2.c's format; a name no model of another vocabulary
 * size reads); inside a folder a tokenizer.model or .json source is copied as such; a byte-level
 * vocabulary is copied (its pair, or tokenizer.json). When the
 * folder already holds the file that rule would take, it must be this vocabulary: then nothing is
 * written; another vocabulary is SPARQ_EINPUT (never overwritten). check_only: only that check,
 * for a caller about to do long work. `written` (cap bytes, may be NULL) receives the file a
 * reader will take. */
int  tokenizer_save_beside(const tokenizer *t, const char *src, const char *model_path, bool inside,
                           bool check_only, char *written, size_t cap, err *e);
float tokenizer_score(const tokenizer *t, int token);
void tokenizer_free(tokenizer *t);
int  tokenizer_vocab_size(const tokenizer *t);

/* Encode NUL-terminated text into a fresh array *ids (caller frees) of *n ids, as llama2.c's
 * encode(): dummy-prefix space for non-empty text, codepoint lookup with byte fallback, then
 * repeated merge of the best-scoring adjacent pair (leftmost on ties). A byte-level BPE encodes as
 * bpe.h, and bos/eos add the family's own ids (bpe_bos_id, bpe_eos_id), nothing when it has none. */
int  tokenizer_encode(const tokenizer *t, const char *text, bool bos, bool eos,
                      int **ids, int *n, err *e);

/* The bytes of `token` as printed after `prev`: strips the leading space after BOS and maps
 * <0xXX> pieces to their byte. *len receives the length (a raw byte piece may be NUL). A byte-level
 * BPE returns the token's bytes (bpe_bytes) whatever prev is: no stripping. */
const char *tokenizer_decode(const tokenizer *t, int prev, int token, int *len);

/* The raw vocabulary piece of a token, as stored in the file. */
const char *tokenizer_piece(const tokenizer *t, int token);

/* Token sequences stored back to back: sequence i is tokens[offs[i] .. offs[i] + lens[i]).
 * What perplexity scores and what calibration feeds the compression driver. */
typedef struct {
    int  *tokens;
    int  *lens;
    long *offs;
    int   n;
    int   unscored;   /* perplexity: leading positions of every sequence whose prediction of
                         the next token is context only, not scored (0: all are scored) */
} token_seqs;

/* Room for n sequences and ntok tokens (lens/offs left for the caller to fill). */
int  token_seqs_alloc(token_seqs *s, int n, long ntok, err *e);
void token_seqs_free(token_seqs *s);

#endif
