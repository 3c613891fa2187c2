#include "calib.h"

#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/family.h"
#include "../core/forward.h"
#include "../core/text.h"

int calib_from_text(const tokenizer *t, const char *path, int nsamples, int seqlen,
                    unsigned long seed, token_seqs *out, err *e) {
    memset(out, 0, sizeof *out);
    if (nsamples < 1 || seqlen < 2)
        return err_set(e, SPARQ_EINPUT, "calibration needs nsamples >= 1 and seqlen >= 2 (got %d, %d)",
                       nsamples, seqlen);
    text_list docs;
    int rc = text_read_documents(path, &docs, e);
    if (rc) return rc;
    int **ids = calloc((size_t)(docs.n > 0 ? docs.n : 1), sizeof(int *));
    int *lens = calloc((size_t)(docs.n > 0 ? docs.n : 1), sizeof(int));
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!ids || !lens || !r) {
        rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
        goto done;
    }
    gsl_rng_set(r, seed);
    /* Count eligible documents first, so an impossible request fails instead of looping. */
    int eligible = 0;
    for (int i = 0; i < docs.n && !rc; i++) {
        rc = tokenizer_encode(t, docs.items[i], true, false, &ids[i], &lens[i], e);
        eligible += !rc && lens[i] > seqlen;
    }
    if (!rc && eligible == 0)
        rc = err_set(e, SPARQ_EINPUT, "%s: no document has more than %d tokens; lower --calib-seqlen",
                     path, seqlen);
    if (!rc) rc = token_seqs_alloc(out, nsamples, (long)nsamples * seqlen, e);
    for (int s = 0; s < nsamples && !rc; s++) {
        int d;
        do d = (int)gsl_rng_uniform_int(r, (unsigned long)docs.n);
        while (lens[d] <= seqlen);
        int start = (int)gsl_rng_uniform_int(r, (unsigned long)(lens[d] - seqlen));
        memcpy(out->tokens + (long)s * seqlen, ids[d] + start, (size_t)seqlen * sizeof(int));
        out->lens[s] = seqlen;
        out->offs[s] = (long)s * seqlen;
    }
done:
    for (int i = 0; ids && i < docs.n; i++) free(ids[i]);
    free(ids);
    free(lens);
    if (r) gsl_rng_free(r);
    text_list_free(&docs);
    if (rc) token_seqs_free(out);
    return rc;
}

/* One sequence: feed the family's BOS, then sample each next token from softmax(logits) with one uniform
 * draw and the cumulative distribution (temperature 1, no top-p). */
static int sample_sequence(const model *m, unsigned long seed, int seqlen, int *toks, err *e) {
    fwd_cache *c;
    int rc = fwd_cache_new(&c, m, e);
    if (rc) return rc;
    int V = m->cfg.vocab_size;
    float *logits = malloc((size_t)V * sizeof(float));
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!logits || !r) {
        rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    } else {
        gsl_rng_set(r, seed);
        toks[0] = m->fam->bos;
        for (int p = 0; p + 1 < seqlen && !rc; p++) {
            rc = forward_token(m, c, toks[p], p, logits, e);
            if (rc) break;
            double mx = logits[0], z = 0.0;
            for (int v = 1; v < V; v++) mx = fmax(mx, logits[v]);
            for (int v = 0; v < V; v++) z += exp(logits[v] - mx);
            double u = gsl_rng_uniform(r) * z, cdf = 0.0;
            int next = V - 1;
            for (int v = 0; v < V; v++) {
                cdf += exp(logits[v] - mx);
                if (u < cdf) { next = v; break; }
            }
            toks[p + 1] = next;
        }
    }
    if (r) gsl_rng_free(r);
    free(logits);
    fwd_cache_free(c);
    return rc;
}

int calib_from_model(const model *m, int nsamples, int seqlen, unsigned long seed,
                     token_seqs *out, err *e) {
    memset(out, 0, sizeof *out);
    if (nsamples < 1 || seqlen < 2 || seqlen > m->cfg.seq_len)
        return err_set(e, SPARQ_EINPUT, "self-calibration needs nsamples >= 1 and 2 <= seqlen <= %d "
                       "(got %d, %d)", m->cfg.seq_len, nsamples, seqlen);
    int rc = token_seqs_alloc(out, nsamples, (long)nsamples * seqlen, e);
    if (rc) return rc;
    int failed = 0;
    err first = {0};
    #pragma omp parallel for schedule(dynamic, 1)
    for (int s = 0; s < nsamples; s++) {
        err es = {0};
        /* A distinct, fixed stream per sequence (golden-ratio spacing of the seeds). */
        unsigned long sd = seed + 0x9E3779B9ul * (unsigned long)(s + 1);
        if (sample_sequence(m, sd, seqlen, out->tokens + (long)s * seqlen, &es)) {
            #pragma omp critical
            if (!failed++) first = es;
        }
        out->lens[s] = seqlen;
        out->offs[s] = (long)s * seqlen;
    }
    if (failed) {
        token_seqs_free(out);
        if (e) *e = first;
        return first.code ? first.code : SPARQ_ERUNTIME;
    }
    return SPARQ_OK;
}
