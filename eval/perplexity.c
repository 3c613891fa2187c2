#include "perplexity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/forward.h"
#include "../core/text.h"

/* Tokens per forward call: enough to keep the GEMMs efficient, few enough that the logits of
 * a 32000-word vocabulary stay under 256 MB. */
#define BATCH_TOKENS 8192
#define LOGITS_FLOATS (1L << 26)


static int prepare_windows(const tokenizer *t, const char *path, int L, int limit, token_seqs *out,
                           err *e) {
    char *text;
    int rc = text_read_joined(path, &text, e);
    if (rc) return rc;
    int *ids, n;
    rc = tokenizer_encode(t, text, true, false, &ids, &n, e);
    free(text);
    if (rc) return rc;
    int nw = n / L;
    if (limit > 0 && nw > limit) nw = limit;
    if (nw == 0) {
        free(ids);
        return err_set(e, SPARQ_EINPUT, "%s: %d tokens, fewer than one window of %d", path, n, L);
    }
    rc = token_seqs_alloc(out, nw, (long)nw * L, e);
    if (rc) { free(ids); return rc; }
    memcpy(out->tokens, ids, (size_t)nw * L * sizeof(int));
    for (int i = 0; i < nw; i++) {
        out->lens[i] = L;
        out->offs[i] = (long)i * L;
    }
    free(ids);
    return SPARQ_OK;
}

static int prepare_documents(const tokenizer *t, const char *path, int L, int limit,
                             token_seqs *out, err *e) {
    text_list docs;
    int rc = text_read_documents(path, &docs, e);
    if (rc) return rc;
    int nd = limit > 0 && docs.n > limit ? limit : docs.n;
    if (nd == 0) {
        text_list_free(&docs);
        return err_set(e, SPARQ_EINPUT, "%s: no documents (empty text?)", path);
    }
    rc = token_seqs_alloc(out, nd, (long)nd * L, e);
    long at = 0;
    int kept = 0;
    for (int i = 0; rc == SPARQ_OK && i < nd; i++) {
        int *ids, n;
        rc = tokenizer_encode(t, docs.items[i], true, false, &ids, &n, e);
        if (rc) break;
        if (n > L) n = L;
        /* A document of BOS plus one token is the shortest with something to score. */
        if (n >= 2) {
            memcpy(out->tokens + at, ids, (size_t)n * sizeof(int));
            out->lens[kept] = n;
            out->offs[kept] = at;
            at += n;
            kept++;
        }
        free(ids);
    }
    text_list_free(&docs);
    if (rc) { token_seqs_free(out); return rc; }
    out->n = kept;
    if (kept == 0) {
        token_seqs_free(out);
        return err_set(e, SPARQ_EINPUT, "%s: no document has a token to score", path);
    }
    return SPARQ_OK;
}

int ppl_prepare(const tokenizer *t, const char *path, ppl_protocol protocol, int seqlen, int limit,
                token_seqs *out, err *e) {
    memset(out, 0, sizeof *out);
    if (seqlen < 2) return err_set(e, SPARQ_EINPUT, "seqlen %d: need at least 2 tokens", seqlen);
    return protocol == PPL_WINDOWS ? prepare_windows(t, path, seqlen, limit, out, e)
                                   : prepare_documents(t, path, seqlen, limit, out, e);
}

/* Sum over positions 0..len-2 of -log softmax(logits[p])[tokens[p+1]], in double. */
static double seq_nll(const float *logits, const int *tokens, int len, int vocab) {
    double nll = 0.0;
    for (int p = 0; p + 1 < len; p++) {
        const float *l = logits + (size_t)p * vocab;
        float mx = l[0];
        for (int j = 1; j < vocab; j++) mx = l[j] > mx ? l[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j < vocab; j++) sum += expf(l[j] - mx);
        nll += (double)mx + log((double)sum) - (double)l[tokens[p + 1]];
    }
    return nll;
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int ppl_score(const model *m, const token_seqs *s, ppl_result *r, progress_fn progress,
              void *progress_ctx, err *e) {
    memset(r, 0, sizeof *r);
    int vocab = m->cfg.vocab_size, maxlen = 0;
    long total = 0;
    for (int i = 0; i < s->n; i++) {
        if (s->lens[i] > m->cfg.seq_len)
            return err_set(e, SPARQ_EINPUT, "sequence of %d tokens exceeds the model's context (%d)",
                           s->lens[i], m->cfg.seq_len);
        maxlen = s->lens[i] > maxlen ? s->lens[i] : maxlen;
        total += s->lens[i];
    }
    long budget = LOGITS_FLOATS / vocab < BATCH_TOKENS ? LOGITS_FLOATS / vocab : BATCH_TOKENS;
    if (budget < maxlen) budget = maxlen;
    float *logits = malloc((size_t)budget * vocab * sizeof(float));
    double *nll = malloc((size_t)(s->n > 0 ? s->n : 1) * sizeof(double));
    fwd_scratch *scr = fwd_scratch_new();
    if (!logits || !nll || !scr) {
        free(logits); free(nll); fwd_scratch_free(scr);
        return err_set(e, SPARQ_ERUNTIME, "out of memory for a batch of %ld tokens", budget);
    }
    double t0 = seconds_now();
    int rc = SPARQ_OK;
    long done = 0;
    for (int i = 0; i < s->n;) {
        int j = i;
        long ntok = 0;
        while (j < s->n && ntok + s->lens[j] <= budget) ntok += s->lens[j++];
        fwd_batch b = {.n_seq = j - i, .lens = s->lens + i, .n_tok = (int)ntok};
        const int *toks = s->tokens + s->offs[i];
        rc = forward_logits(m, toks, &b, logits, scr, e);
        if (rc) break;
        #pragma omp parallel for schedule(dynamic, 1)
        for (int k = i; k < j; k++)
            nll[k] = seq_nll(logits + (size_t)(s->offs[k] - s->offs[i]) * vocab,
                             s->tokens + s->offs[k], s->lens[k], vocab);
        done += ntok;
        if (progress) progress(progress_ctx, done, total);
        i = j;
    }
    double secs = seconds_now() - t0;
    if (rc == SPARQ_OK) {
        double sum = 0.0;
        long scored = 0;
        for (int k = 0; k < s->n; k++) {       /* fixed order: same result for any thread count */
            sum += nll[k];
            scored += s->lens[k] - 1;
        }
        r->nll = sum / (double)scored;
        r->ppl = exp(r->nll);
        r->tokens = scored;
        r->tokens_forward = total;
        r->sequences = s->n;
        r->seconds = secs;
        if (!isfinite(r->nll))
            rc = err_set(e, SPARQ_ERUNTIME, "perplexity is not finite (nll %g): the model produces "
                         "NaN or infinite logits", r->nll);
    }
    free(logits);
    free(nll);
    fwd_scratch_free(scr);
    return rc;
}
