/* Calibration data for the compression driver: N windows of L tokens drawn with a seeded RNG
 * from a text (algorithms.md §0 sampling rule), or N sequences sampled from the model itself
 * (data-free calibration). Owns the token sequences it returns. */
#ifndef SPARQ_CALIB_H
#define SPARQ_CALIB_H

#include "../core/err.h"
#include "../core/model.h"
#include "../core/tokenizer.h"

/* The reference rule: repeatedly draw a random document until its token count (with BOS)
 * exceeds L, then a uniformly random window start in [0, len - L - 1]. Documents as in
 * text_read_documents (JSON lines or <|endoftext|>-separated text). GSL's mt19937 seeded
 * with `seed`: the same windows on every machine (not Python's `random` stream). */
int calib_from_text(const tokenizer *t, const char *path, int nsamples, int seqlen,
                    unsigned long seed, token_seqs *out, err *e);

/* nsamples sequences of seqlen tokens from BOS, sampled from the model at temperature 1.
 * Sequence i has its own generator seeded from (seed, i), so the result does not depend on
 * the thread count. */
int calib_from_model(const model *m, int nsamples, int seqlen, unsigned long seed,
                     token_seqs *out, err *e);

#endif
