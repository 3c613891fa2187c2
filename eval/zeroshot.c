/* Scoring of eval/zeroshot.h: log-likelihood requests through the batched forward pass, and
 * the metrics. The adapters that build the requests are in eval/tasks.c. */
#include "zeroshot.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/forward.h"
#include "../core/vmath.h"

/* Tokens per task, as in eval/perplexity.c: each thread runs whole forward passes over runs of
 * whole sequences, fixed by the input alone, so results do not depend on the thread count. */
#define TASK_TOKENS 512
/* Logits computed at a time per thread: 4M floats = 16 MB (131 rows of a 32000 vocabulary,
 * a whole task for stories260K's 512). */
#define HEAD_FLOATS (1 << 22)

/* log sum_j exp(l[j]) of one row, the exponentials summed in double over LANES fixed lanes
 * (same bits for every clone), and the argmax (the first index of the maximum, as torch's
 * argmax, which the harness's is_greedy compares with). Terms below e^-87 count as 0: the
 * max's own term is 1, so they are lost in the double sum anyway. */
HOT_CLONES
static double row_lse(const float *l, int vocab, int *argmax) {
    float m = vmath_row_max(l, vocab);
    double acc[LANES] = {0};
    int a = 0, j;
    while (l[a] != m) a++;
    *argmax = a;
    for (j = 0; j + LANES <= vocab; j += LANES) {
        #pragma omp simd
        for (int k = 0; k < LANES; k++) acc[k] += (double)vmath_exp_neg(l[j + k] - m);
    }
    for (int k = 0; j + k < vocab; k++) acc[k] += (double)vmath_exp_neg(l[j + k] - m);
    for (int w = LANES / 2; w > 0; w /= 2)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return (double)m + log(acc[0]);
}

/* What goes through the model. Request r feeds tokens[start .. start + len) with
 * start + len = n_ctx + n_cont - 1 (the last token is only predicted) and len at most the
 * model's context (left truncation, as the harness), and scores its last nsc positions:
 * nsc = n_cont, unless the continuation alone is longer than the context. The harness fails
 * there (it slices logits from a negative index); we score the continuation's last `context`
 * tokens, the most one window can predict, and count such requests as clipped. A request whose fed tokens are a prefix of
 * another's in the same document (say one-token continuations of a shared context) is a guest
 * of that host and reads its logits: causal attention makes them the same numbers. */
typedef struct {
    int *start, *len, *nsc;  /* [n_req] fed tokens and scored positions of each request */
    int *host;               /* [n_req] request forwarded for it; -1 = nothing to score  */
    int *seq;                /* [n_seq] hosts in request order                          */
    int *guest_first, *guest;/* CSR: guests of seq s = guest[guest_first[s] .. [s + 1])  */
    int *task;               /* [n_task + 1] first seq of each task                     */
    int  n_seq, n_task, max_tok, clipped;
    long tokens;
} plan;

static void plan_free(plan *p) {
    free(p->start);
    free(p->len);
    free(p->nsc);
    free(p->host);
    free(p->seq);
    free(p->guest_first);
    free(p->guest);
    free(p->task);
}

static bool fed_prefix(const zeroshot_task *t, const plan *p, int r, int h) {
    return p->start[r] == 0 && p->start[h] == 0 && p->len[r] <= p->len[h] &&
           memcmp(t->req[r].tokens, t->req[h].tokens, (size_t)p->len[r] * sizeof(int)) == 0;
}

static int plan_build(const zeroshot_task *t, int ctx_len, plan *p, err *e) {
    memset(p, 0, sizeof *p);
    int n = t->n_req;
    size_t nn = (size_t)(n > 0 ? n : 1);
    p->start = malloc(nn * sizeof(int));
    p->len = malloc(nn * sizeof(int));
    p->nsc = malloc(nn * sizeof(int));
    p->host = malloc(nn * sizeof(int));
    p->seq = malloc(nn * sizeof(int));
    p->guest_first = malloc((nn + 1) * sizeof(int));
    p->guest = malloc(nn * sizeof(int));
    p->task = malloc((nn + 1) * sizeof(int));
    if (!p->start || !p->len || !p->nsc || !p->host || !p->seq || !p->guest_first || !p->guest || !p->task) {
        plan_free(p);
        return err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    for (int d = 0; d < t->n_docs; d++) {
        const zeroshot_doc *doc = &t->docs[d];
        for (int r = doc->first; r < doc->first + doc->n; r++) {
            const zeroshot_request *q = &t->req[r];
            int total = q->n_ctx + q->n_cont;
            p->len[r] = total - 1 < ctx_len ? total - 1 : ctx_len;
            p->start[r] = total - 1 - p->len[r];
            p->nsc[r] = q->n_cont < p->len[r] ? q->n_cont : p->len[r];
            p->clipped += p->nsc[r] < q->n_cont;
            p->host[r] = q->n_cont > 0 ? r : -1;
        }
        /* Host of r: the first request, by (fed length desc, index asc), whose fed tokens
         * contain r's as a prefix. That one contains no longer request, so hosts host
         * themselves. Choices per document are few: quadratic is fine. */
        for (int r = doc->first; r < doc->first + doc->n; r++) {
            if (p->host[r] < 0) continue;
            for (int h = doc->first; h < doc->first + doc->n; h++) {
                if (h == r || p->host[h] < 0) continue;
                int cur = p->host[r];
                bool better = p->len[h] > p->len[cur] || (p->len[h] == p->len[cur] && h < cur);
                if (better && fed_prefix(t, p, r, h)) p->host[r] = h;
            }
        }
    }
    /* Sequences (hosts in request order) and their guests. */
    int *slot = p->task;     /* scratch: seq index of each host request */
    for (int r = 0; r < n; r++) {
        if (p->host[r] == r) {
            slot[r] = p->n_seq;
            p->seq[p->n_seq++] = r;
            p->tokens += p->len[r];
        }
    }
    int *cnt = calloc((size_t)p->n_seq + 1, sizeof(int));
    if (!cnt) {
        plan_free(p);
        return err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    for (int r = 0; r < n; r++)
        if (p->host[r] >= 0) cnt[slot[p->host[r]]]++;
    p->guest_first[0] = 0;
    for (int s = 0; s < p->n_seq; s++) p->guest_first[s + 1] = p->guest_first[s] + cnt[s];
    memset(cnt, 0, (size_t)p->n_seq * sizeof(int));
    for (int r = 0; r < n; r++) {
        if (p->host[r] < 0) continue;
        int s = slot[p->host[r]];
        p->guest[p->guest_first[s] + cnt[s]++] = r;
    }
    free(cnt);
    /* Tasks: runs of whole sequences of up to TASK_TOKENS tokens (or one longer sequence). */
    p->max_tok = 1;
    for (int s = 0; s < p->n_seq;) {
        int j = s, ntok = 0;
        while (j < p->n_seq && (j == s || ntok + p->len[p->seq[j]] <= TASK_TOKENS)) ntok += p->len[p->seq[j++]];
        p->task[p->n_task++] = s;
        p->max_tok = ntok > p->max_tok ? ntok : p->max_tok;
        s = j;
    }
    p->task[p->n_task] = p->n_seq;
    return SPARQ_OK;
}

/* One thread's buffers. */
typedef struct {
    fwd_scratch *scr;
    int         *tok, *lens, *row, *amax;
    float       *x, *xg, *logits;
    double      *lse;
    int          head_rows;
    int          failed_task;    /* first task that failed here, or INT_MAX */
    err          e;
} worker;

/* Forward the sequences of task [s0, s1), then score every guest's continuation positions:
 * only those rows go through the final norm and classifier. */
static int score_task(const model *m, const zeroshot_task *t, const plan *p, int s0, int s1, worker *w,
                      double *ll, bool *greedy, err *e) {
    int dim = m->cfg.dim, vocab = m->cfg.vocab_size, n_tok = 0;
    for (int s = s0; s < s1; s++) {
        int r = p->seq[s];
        memcpy(w->tok + n_tok, t->req[r].tokens + p->start[r], (size_t)p->len[r] * sizeof(int));
        w->lens[s - s0] = p->len[r];
        n_tok += p->len[r];
    }
    fwd_batch b = {.n_seq = s1 - s0, .lens = w->lens, .n_tok = n_tok};
    int rc = forward_embed(m, w->tok, &b, w->x, e);
    for (int l = 0; rc == SPARQ_OK && l < m->cfg.n_layers; l++)
        rc = forward_block(m, l, w->x, &b, NULL, w->scr, e);
    if (rc) return rc;
    /* Rows wanted: the last n_cont fed positions of each guest, numbered in position order. */
    for (int i = 0; i < n_tok; i++) w->row[i] = -1;
    for (int s = s0, off = 0; s < s1; off += p->len[p->seq[s]], s++)
        for (int g = p->guest_first[s]; g < p->guest_first[s + 1]; g++) {
            int r = p->guest[g];
            for (int k = p->len[r] - p->nsc[r]; k < p->len[r]; k++) w->row[off + k] = 0;
        }
    int nr = 0;
    for (int i = 0; i < n_tok; i++) {
        if (w->row[i] < 0) continue;
        w->row[i] = nr;
        memcpy(w->xg + (size_t)nr * dim, w->x + (size_t)i * dim, (size_t)dim * sizeof(float));
        nr++;
    }
    for (int c0 = 0; c0 < nr; c0 += w->head_rows) {
        int c1 = nr - c0 < w->head_rows ? nr : c0 + w->head_rows;
        rc = forward_head(m, w->xg + (size_t)c0 * dim, c1 - c0, w->logits, e);
        if (rc) return rc;
        for (int i = c0; i < c1; i++)
            w->lse[i] = row_lse(w->logits + (size_t)(i - c0) * vocab, vocab, &w->amax[i]);
        /* Each request's positions in order, chunk after chunk: a fixed summation order. */
        for (int s = s0, off = 0; s < s1; off += p->len[p->seq[s]], s++)
            for (int g = p->guest_first[s]; g < p->guest_first[s + 1]; g++) {
                int r = p->guest[g];
                const zeroshot_request *q = &t->req[r];
                for (int k = p->len[r] - p->nsc[r]; k < p->len[r]; k++) {
                    int i = w->row[off + k];
                    if (i < c0 || i >= c1) continue;
                    int target = q->tokens[p->start[r] + k + 1];
                    ll[r] += (double)w->logits[(size_t)(i - c0) * vocab + target] - w->lse[i];
                    greedy[r] = greedy[r] && w->amax[i] == target;
                }
            }
    }
    return SPARQ_OK;
}

int zeroshot_score(const model *m, const zeroshot_task *t, double *ll, bool *greedy,
                   zeroshot_stats *st, progress_fn progress, void *progress_ctx, err *e) {
    memset(st, 0, sizeof *st);
    int vocab = m->cfg.vocab_size;
    for (int r = 0; r < t->n_req; r++) {
        ll[r] = 0.0;
        greedy[r] = true;                     /* an empty continuation: LL 0, vacuously greedy */
        for (int k = 0; k < t->req[r].n_ctx + t->req[r].n_cont; k++)
            if (t->req[r].tokens[k] < 0 || t->req[r].tokens[k] >= vocab)
                return err_set(e, SPARQ_EINPUT, "%s: token id %d is outside the model's vocabulary of %d",
                               t->path, t->req[r].tokens[k], vocab);
    }
    plan p;
    int rc = plan_build(t, m->cfg.seq_len, &p, e);
    if (rc) return rc;
    int nth = omp_get_max_threads();
    worker *w = calloc((size_t)nth, sizeof *w);
    bool ok = w != NULL;
    int head_rows = HEAD_FLOATS / vocab;
    if (head_rows < 1) head_rows = 1;
    if (head_rows > p.max_tok) head_rows = p.max_tok;
    for (int i = 0; ok && i < nth; i++) {
        worker *x = &w[i];
        size_t mt = (size_t)p.max_tok;
        x->scr = fwd_scratch_new();
        x->tok = malloc(mt * sizeof(int));
        x->lens = malloc(mt * sizeof(int));
        x->row = malloc(mt * sizeof(int));
        x->amax = malloc(mt * sizeof(int));
        x->lse = malloc(mt * sizeof(double));
        x->x = malloc(mt * m->cfg.dim * sizeof(float));
        x->xg = malloc(mt * m->cfg.dim * sizeof(float));
        x->logits = malloc((size_t)head_rows * vocab * sizeof(float));
        x->head_rows = head_rows;
        x->failed_task = INT_MAX;
        ok = x->scr && x->tok && x->lens && x->row && x->amax && x->lse && x->x && x->xg && x->logits;
    }
    if (!ok) rc = err_set(e, SPARQ_ERUNTIME, "out of memory for tasks of %d tokens", p.max_tok);
    double t0 = clock_seconds();
    fwd_packs *packs = rc == SPARQ_OK ? forward_pack(m) : NULL;   /* forward.h */
    for (int i = 0; packs && i < nth; i++) fwd_scratch_use(w[i].scr, packs);
    long done = 0;
    int failed = 0;
    #pragma omp parallel num_threads(nth) if (rc == SPARQ_OK)
    {
        worker *me = &w[omp_get_thread_num()];
        #pragma omp for schedule(dynamic, 1)
        for (int k = 0; k < p.n_task; k++) {
            int stop;
            #pragma omp atomic read
            stop = failed;
            if (stop) continue;
            int s0 = p.task[k], s1 = p.task[k + 1];
            if (score_task(m, t, &p, s0, s1, me, ll, greedy, &me->e) != SPARQ_OK) {
                if (k < me->failed_task) me->failed_task = k;
                #pragma omp atomic write
                failed = 1;
                continue;
            }
            long now, ng = p.guest_first[s1] - p.guest_first[s0];
            #pragma omp atomic capture
            now = done += ng;
            if (progress && omp_get_thread_num() == 0) progress(progress_ctx, now, t->n_req);
        }
    }
    double secs = clock_seconds() - t0;
    forward_packs_free(packs);
    if (rc == SPARQ_OK && failed) {
        int first = 0;                 /* report the earliest failing task's error */
        for (int i = 1; i < nth; i++)
            if (w[i].failed_task < w[first].failed_task) first = i;
        *e = w[first].e;
        rc = e->code ? e->code : SPARQ_ERUNTIME;
    }
    if (rc == SPARQ_OK) {
        if (progress) progress(progress_ctx, t->n_req, t->n_req);
        st->requests = t->n_req;
        st->sequences = p.n_seq;
        st->tokens_forward = p.tokens;
        st->clipped = p.clipped;
        st->seconds = secs;
        for (int r = 0; r < t->n_req && rc == SPARQ_OK; r++)
            if (!isfinite(ll[r]))
                rc = err_set(e, SPARQ_ERUNTIME, "%s: log-likelihood of request %d is not finite (%g): the "
                             "model produces NaN or infinite logits", t->path, r, ll[r]);
    }
    for (int i = 0; w && i < nth; i++) {
        fwd_scratch_free(w[i].scr);
        free(w[i].tok);
        free(w[i].lens);
        free(w[i].row);
        free(w[i].amax);
        free(w[i].lse);
        free(w[i].x);
        free(w[i].xg);
        free(w[i].logits);
    }
    free(w);
    plan_free(&p);
    return rc;
}

/* Mean and standard error of the mean (sample standard deviation / sqrt(n), the harness's
 * mean_stderr); 0 for fewer than 2 values. */
static void mean_stderr(const double *x, int n, double *mean, double *se) {
    double s = 0.0, v = 0.0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = n > 0 ? s / n : 0.0;
    for (int i = 0; i < n; i++) v += (x[i] - *mean) * (x[i] - *mean);
    *se = n > 1 ? sqrt(v / (n - 1) / n) : 0.0;
}

void zeroshot_metrics(const zeroshot_task *t, const double *ll, const bool *greedy,
                      zeroshot_result *r) {
    zeroshot_stats keep = r->stats;
    memset(r, 0, sizeof *r);
    r->stats = keep;
    int n = t->n_docs;
    r->n = n;
    double *acc = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    double *norm = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    if (!acc || !norm) {   /* a few KB per thousand documents; report nothing rather than guess */
        free(acc);
        free(norm);
        r->acc = r->acc_norm = r->ppl = NAN;
        return;
    }
    double chance = 0.0;
    for (int d = 0; d < n; d++) {
        const zeroshot_doc *doc = &t->docs[d];
        const double *l = ll + doc->first;
        if (t->kind == ZS_LOGLIKELIHOOD) {
            acc[d] = greedy[doc->first] ? 1.0 : 0.0;
            norm[d] = l[0];
            continue;
        }
        /* np.argmax: the first maximum. acc_norm divides by the choice's characters (an empty
         * choice counts as one, where the harness would divide by zero). */
        int best = 0, best_n = 0;
        for (int i = 1; i < doc->n; i++) {
            if (l[i] > l[best]) best = i;
            double a = l[i] / (t->req[doc->first + i].chars > 0 ? t->req[doc->first + i].chars : 1);
            double b = l[best_n] / (t->req[doc->first + best_n].chars > 0 ? t->req[doc->first + best_n].chars : 1);
            if (a > b) best_n = i;
        }
        acc[d] = best == doc->gold;
        norm[d] = best_n == doc->gold;
        chance += 1.0 / doc->n;
    }
    mean_stderr(acc, n, &r->acc, &r->acc_stderr);
    if (t->kind == ZS_LOGLIKELIHOOD) {
        /* algorithms.md §8 (LAMBADA): ppl = exp(-mean over documents of LL); the harness
         * bootstraps its stderr, the delta method gives the same to first order. */
        double mean, se;
        mean_stderr(norm, n, &mean, &se);
        r->has_ppl = true;
        r->ppl = exp(-mean);
        r->ppl_stderr = r->ppl * se;
    } else {
        r->chance = n > 0 ? chance / n : 0.0;
        if (t->acc_norm) {
            r->has_acc_norm = true;
            mean_stderr(norm, n, &r->acc_norm, &r->acc_norm_stderr);
        }
    }
    free(acc);
    free(norm);
}

int zeroshot_run(const model *m, const zeroshot_task *t, zeroshot_result *r, progress_fn progress,
                 void *progress_ctx, err *e) {
    memset(r, 0, sizeof *r);
    size_t n = (size_t)(t->n_req > 0 ? t->n_req : 1);
    double *ll = malloc(n * sizeof(double));
    bool *greedy = malloc(n * sizeof(bool));
    int rc = ll && greedy ? SPARQ_OK : err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (!rc) rc = zeroshot_score(m, t, ll, greedy, &r->stats, progress, progress_ctx, e);
    if (!rc) zeroshot_metrics(t, ll, greedy, r);
    free(ll);
    free(greedy);
    return rc;
}
