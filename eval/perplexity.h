/* Perplexity of a model on a text, in the protocols of the table in perplexity.c: `windows`
 * (algorithms.md §8, WikiText-2/C4: the joined text tokenized once, non-overlapping windows of
 * L tokens, tail dropped), `documents` (each document from BOS, truncated to L tokens) and
 * `llamacpp` (llama-perplexity's chunks: the raw file, BOS first in each chunk, second half
 * scored). Owns token sequences and results; never sees a solver. */
#ifndef SPARQ_PERPLEXITY_H
#define SPARQ_PERPLEXITY_H

#include "../core/err.h"
#include "../core/model.h"
#include "../core/progress.h"
#include "../core/tokenizer.h"

typedef enum { PPL_WINDOWS, PPL_DOCUMENTS, PPL_LLAMACPP } ppl_protocol;

/* The protocol's name ("windows", "documents", "llamacpp"); "?" for a value out of range. */
const char *ppl_protocol_name(ppl_protocol p);
/* The protocol named `name`; SPARQ_EINPUT naming the choices otherwise ("<what> 'NAME': expected
 * windows, documents or llamacpp"), `what` says where the name came from ("--protocol"). */
int ppl_protocol_parse(const char *name, const char *what, ppl_protocol *p, err *e);

/* Tokenize the text at path into the protocol's sequences of at most seqlen tokens; limit > 0
 * keeps only the first `limit` windows, chunks or documents. out->unscored says how many
 * leading positions of each sequence are context only (llamacpp: seqlen / 2). */
int ppl_prepare(const tokenizer *t, const char *path, ppl_protocol protocol, int seqlen, int limit,
                token_seqs *out, err *e);

/* The same from pre-tokenized ids: path holds whitespace-separated token ids, one document per
 * line (blank lines skipped), used as given (no BOS added). windows: all documents' ids one
 * after another, cut into windows of seqlen; documents: each line truncated to seqlen. Ids are
 * checked against vocab (> 0) here, naming the line. */
int ppl_prepare_ids(const char *path, ppl_protocol protocol, int seqlen, int limit, int vocab,
                    token_seqs *out, err *e);

/* Standard errors treat the scored tokens' -log p as n independent samples (tokens of one
 * sequence are not, so they understate the spread between texts): nll_stderr = sample standard
 * deviation of the per-token -log p / sqrt(n), and ppl_stderr = ppl * nll_stderr by the delta
 * method (d exp(x)/dx = exp(x)); NaN when only one token is scored. */
typedef struct {
    double ppl;            /* exp(nll)                                              */
    double nll;            /* mean negative log-likelihood, nats per scored token   */
    double nll_stderr;     /* standard error of nll                                 */
    double ppl_stderr;     /* standard error of ppl, delta method                   */
    long   tokens;         /* scored tokens (each position from s->unscored on but the last
                              predicts the next token)                              */
    long   tokens_forward; /* tokens through the model                              */
    int    sequences;
    double seconds;        /* time in the forward pass and scoring                  */
} ppl_result;

/* Score every sequence: the mean over all scored tokens of -log p(token | its prefix); the
 * tokens at positions 1 .. s->unscored of each sequence are context, not scored. */
int ppl_score(const model *m, const token_seqs *s, ppl_result *r, progress_fn progress,
              void *progress_ctx, err *e);

/* One sequence's scored tokens: their count and sum of -log p in position order, and Welford's
 * running mean and sum of squared deviations (the standard error). */
typedef struct {
    long   n;
    double sum, mean, m2;
} ppl_part;

/* The same, also giving each sequence's part (parts[s->n]; NULL: not wanted). */
int ppl_score_parts(const model *m, const token_seqs *s, ppl_part *parts, ppl_result *r,
                    progress_fn progress, void *progress_ctx, err *e);
/* The result of n sequences' parts, combined in index order (the order ppl_score uses, so the
 * parts of a sharded run give exactly the unsharded figures). seconds/tokens_forward stay 0. */
int ppl_combine(const ppl_part *parts, int n, ppl_result *r, err *e);
/* Keep sequences shard, shard + shards, ... of s (in place); index[k] = the original index of
 * the k-th kept one (index may be NULL; it needs room for s->n). */
void ppl_shard(token_seqs *s, int shard, int shards, int *index);

#endif
