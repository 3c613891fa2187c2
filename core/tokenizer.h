/* The llama2.c tokenizer: SentencePiece-BPE vocabulary, encoding and decoding exactly as run.c;
 * owns the vocabulary and tokenizer.bin (spm.h and gguf.h hand it other files' pieces and scores).
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
 * SentencePiece-BPE kind (spm.h), and the vocabulary embedded in a GGUF file (gguf.h).
 * Byte-level BPE and other kinds are refused with SPARQ_EINPUT and a message saying so. */
int  tokenizer_load(tokenizer **out, const char *path, err *e);

/* A tokenizer from n pieces in llama2.c's convention (SentencePiece's U+2581 already a space,
 * BOS/EOS as "\n<s>\n" / "\n</s>\n", byte pieces as "<0xXX>") and their scores; copies both.
 * Byte fallback uses the "<0xXX>" pieces wherever they are (<unk> when absent). `src` names
 * the file in messages. */
int  tokenizer_from_pieces(tokenizer **out, int n, const char *const *pieces, const float *scores,
                           const char *src, err *e);
/* The tokenizer of a model, the one rule every command and the sweep use: `path` when given;
 * else the model's own vocabulary when it is a GGUF file; else the first of tokenizer.bin,
 * tok<vocab_size>.bin, tokenizer.model, tokenizer.json beside the model file (inside it for a
 * Hugging Face folder). The vocabulary must have vocab_size entries. `used` (cap bytes, may be
 * NULL) receives the file it was read from, for content hashes. */
int  tokenizer_load_for_model(tokenizer **out, const char *model_path, int vocab_size,
                              const char *path, char *used, size_t cap, err *e);
float tokenizer_score(const tokenizer *t, int token);
void tokenizer_free(tokenizer *t);
int  tokenizer_vocab_size(const tokenizer *t);

/* Encode NUL-terminated text into a fresh array *ids (caller frees) of *n ids, as llama2.c's
 * encode(): dummy-prefix space for non-empty text, codepoint lookup with byte fallback, then
 * repeated merge of the best-scoring adjacent pair (leftmost on ties). */
int  tokenizer_encode(const tokenizer *t, const char *text, bool bos, bool eos,
                      int **ids, int *n, err *e);

/* The bytes of `token` as printed after `prev`: strips the leading space after BOS and maps
 * <0xXX> pieces to their byte. *len receives the length (a raw byte piece may be NUL). */
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
} token_seqs;

/* Room for n sequences and ntok tokens (lens/offs left for the caller to fill). */
int  token_seqs_alloc(token_seqs *s, int n, long ntok, err *e);
void token_seqs_free(token_seqs *s);

#endif
