#include "perplexity.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/blas.h"
#include "../core/clock.h"
#include "../core/forward.h"
#include "../core/stream.h"
#include "../core/text.h"
#include "../core/vmath.h"

/* Tokens per task. Each thread runs whole forward passes over its own tasks (runs of whole
 * sequences), so a task's activations stay in that core's cache and the text takes one parallel
 * region instead of several per layer. Task boundaries depend on the input and on whether the
 * weights are packed, never on the thread count; each task runs on one thread, and a row's
 * result does not depend on the rows batched with it, so the bits are the same either way. Where a GEMM call repacks its weights (no packs, or a family whose linears are
 * not packed), longer tasks amortize that (1024 over 512: ~2.5% less CPU time on stories3M,
 * paired runs). With every weight packed once (forward_packs_whole), short tasks keep a task's
 * activations in L2 instead: 256 over 1024 tokens, 3.7% less CPU time on stories3M's windows
 * (1 thread; 2% with 2), 1% on its documents. */
#define TASK_TOKENS 1024
#define TASK_TOKENS_PACKED 256
/* Rows of logits computed and scored at a time: as many as fit in HEAD_FLOATS floats (4 MB per
 * thread), at least HEAD_ROWS_MIN (128 x 32000 floats is 16 MB). The classifier GEMM repacks
 * the whole classifier on every call, so fewer, taller calls help, until the logits no longer
 * stay in cache for row_nll: on stories3M (vocab 4096, tasks of 1024 tokens) 256 rows take
 * ~1.7% less CPU time than 128, and 1024 rows (16 MB) only ~0.4% less (paired runs). */
#define HEAD_FLOATS (1 << 20)
/* A streamed model (stream.h) converts every block from the file once per task, about a
 * nanosecond per weight against two flops per weight and token: tasks of 8192 tokens keep that
 * near 2% at 7B shapes, when the activations they need (about 4 (2 dim + 4 qdim + 3 hidden)
 * bytes a token per thread) fit an eighth of the machine's memory. */
#define TASK_TOKENS_STREAMED 8192
#define HEAD_ROWS_MIN 128
/* Where the head splits (forward_head_splits), the classifier runs in slices of HEAD_COLS
 * vocabulary columns over SLICE_ROWS rows at a time, and each row's log-sum-exp is carried from
 * slice to slice: the classifier is packed once per SLICE_ROWS rows as before, but a slice of
 * logits (1 MB) stays in L2 for the GEMM's zeroing and accumulation and for the NLL pass. */
#define HEAD_COLS 256
_Static_assert(HEAD_COLS % BLAS_PACK_COLS == 0, "classifier slices start on packed panels");
#define SLICE_ROWS 1024

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

/* llama.cpp's llama-perplexity (examples/perplexity/perplexity.cpp, perplexity(), at c392e509):
 * the file as `-f` reads it (raw bytes, one trailing newline dropped; no "\n\n" join), tokenized
 * once with BOS (common_tokenize(..., add_special = true)); n_chunk = tokens / L chunks of
 * tokens[i L, (i + 1) L) with the chunk's first token replaced by BOS; the logits of positions
 * first = L/2 .. L-2 predict the next token (L - L/2 - 1 scored per chunk); ppl = exp of the mean
 * NLL over every scored token. It refuses a text of fewer than 2 L tokens, and so do we. */
static int prepare_llamacpp(const tokenizer *t, const char *path, int L, int limit, token_seqs *out,
                            err *e) {
    if (L < 3) return err_set(e, SPARQ_EINPUT, "seqlen %d: the llamacpp protocol scores positions "
                              "L/2 .. L-2 and needs L >= 3", L);
    char *text;
    size_t len;
    int rc = text_read_file(path, &text, &len, e);
    if (rc) return rc;
    if (len > 0 && text[len - 1] == '\n') text[--len] = '\0';
    int *ids, n, *bos, nbos;
    rc = tokenizer_encode(t, text, true, false, &ids, &n, e);
    free(text);
    if (rc) return rc;
    /* The family's BOS, if it has one (a byte-level BPE may not: then chunks keep their token). */
    if ((rc = tokenizer_encode(t, "", true, false, &bos, &nbos, e))) { free(ids); return rc; }
    int bos_id = nbos == 1 ? bos[0] : -1;
    free(bos);
    if (n < 2 * L) {
        free(ids);
        return err_set(e, SPARQ_EINPUT, "%s: %d tokens; the llamacpp protocol needs at least 2 chunks "
                       "of %d (llama-perplexity refuses fewer than 2 x its context)", path, n, L);
    }
    int nc = n / L;
    if (limit > 0 && nc > limit) nc = limit;
    rc = token_seqs_alloc(out, nc, (long)nc * L, e);
    if (rc) { free(ids); return rc; }
    memcpy(out->tokens, ids, (size_t)nc * L * sizeof(int));
    for (int i = 0; i < nc; i++) {
        out->lens[i] = L;
        out->offs[i] = (long)i * L;
        if (bos_id >= 0) out->tokens[(size_t)i * L] = bos_id;
    }
    out->unscored = L / 2;
    free(ids);
    return SPARQ_OK;
}

/* The protocols, in ppl_protocol order: a new protocol is an enum value and a row here. */
static const struct {
    const char *name;
    int (*prepare)(const tokenizer *t, const char *path, int L, int limit, token_seqs *out, err *e);
} protocols[] = {
    [PPL_WINDOWS] = {"windows", prepare_windows},
    [PPL_DOCUMENTS] = {"documents", prepare_documents},
    [PPL_LLAMACPP] = {"llamacpp", prepare_llamacpp},
};
enum { N_PROTOCOLS = sizeof protocols / sizeof protocols[0] };

const char *ppl_protocol_name(ppl_protocol p) {
    return (int)p >= 0 && (int)p < N_PROTOCOLS ? protocols[p].name : "?";
}

int ppl_protocol_parse(const char *name, const char *what, ppl_protocol *p, err *e) {
    char list[256] = "";
    for (int i = 0; i < N_PROTOCOLS; i++) {
        if (strcmp(name, protocols[i].name) == 0) return *p = (ppl_protocol)i, SPARQ_OK;
        size_t at = strlen(list);
        snprintf(list + at, sizeof list - at, "%s%s", i == 0 ? "" : i + 1 < N_PROTOCOLS ? ", " : " or ",
                 protocols[i].name);
    }
    return err_set(e, SPARQ_EINPUT, "%s '%s': expected %s", what, name, list);
}

int ppl_prepare(const tokenizer *t, const char *path, ppl_protocol protocol, int seqlen, int limit,
                token_seqs *out, err *e) {
    memset(out, 0, sizeof *out);
    if (seqlen < 2) return err_set(e, SPARQ_EINPUT, "seqlen %d: need at least 2 tokens", seqlen);
    if ((int)protocol < 0 || (int)protocol >= N_PROTOCOLS)
        return err_set(e, SPARQ_EINPUT, "perplexity protocol %d is unknown", (int)protocol);
    return protocols[protocol].prepare(t, path, seqlen, limit, out, e);
}

int ppl_prepare_ids(const char *path, ppl_protocol protocol, int seqlen, int limit, int vocab,
                    token_seqs *out, err *e) {
    memset(out, 0, sizeof *out);
    if (seqlen < 2) return err_set(e, SPARQ_EINPUT, "seqlen %d: need at least 2 tokens", seqlen);
    if (protocol != PPL_WINDOWS && protocol != PPL_DOCUMENTS)
        return err_set(e, SPARQ_EINPUT, "%s: token ids take the windows or documents protocol, not %s "
                       "(llamacpp tokenizes the raw text as llama.cpp does)", path, ppl_protocol_name(protocol));
    char *buf;
    size_t len;
    int rc = text_read_file(path, &buf, &len, e);
    if (rc) return rc;
    /* Pass 1 counts lines and ids (an upper bound for the token buffer); pass 2 fills it. */
    long total = 0;
    int lines = 1;
    for (size_t i = 0; i < len; i++) {
        lines += buf[i] == '\n';
        total += buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\r' && buf[i] != '\n' &&
                 (i == 0 || buf[i - 1] == ' ' || buf[i - 1] == '\t' || buf[i - 1] == '\r' || buf[i - 1] == '\n');
    }
    int *all = malloc(((size_t)total + 1) * sizeof(int)), *lens = malloc((size_t)lines * sizeof(int));
    if (!all || !lens) rc = err_set(e, SPARQ_ERUNTIME, "out of memory for %ld ids", total);
    long n = 0;
    int nd = 0, line = 0;
    for (size_t i = 0; !rc && i <= len && (limit <= 0 || protocol == PPL_WINDOWS || nd < limit); line++) {
        size_t j = i;
        while (j < len && buf[j] != '\n') j++;
        char what[4200];
        snprintf(what, sizeof what, "%s line %d", path, line + 1);
        int *ids, k;
        rc = text_parse_ids(buf + i, j - i, what, &ids, &k, e);
        for (int q = 0; !rc && q < k; q++)
            if (ids[q] >= vocab)
                rc = err_set(e, SPARQ_EINPUT, "%s: token id %d is outside the vocabulary (%d)", what,
                             ids[q], vocab);
        if (!rc && k > 0) {
            if (protocol == PPL_DOCUMENTS && k > seqlen) k = seqlen;
            if (k >= 2 || protocol == PPL_WINDOWS) {   /* a document needs a token to score */
                memcpy(all + n, ids, (size_t)k * sizeof(int));
                n += k;
                lens[nd++] = k;
            }
        }
        free(ids);
        i = j + 1;
    }
    free(buf);
    if (!rc && protocol == PPL_WINDOWS) {
        int nw = (int)(n / seqlen);
        if (limit > 0 && nw > limit) nw = limit;
        if (nw == 0) rc = err_set(e, SPARQ_EINPUT, "%s: %ld ids, fewer than one window of %d", path, n, seqlen);
        if (!rc) rc = token_seqs_alloc(out, nw, (long)nw * seqlen, e);
        if (!rc) {
            memcpy(out->tokens, all, (size_t)nw * seqlen * sizeof(int));
            for (int i = 0; i < nw; i++) {
                out->lens[i] = seqlen;
                out->offs[i] = (long)i * seqlen;
            }
        }
    } else if (!rc) {
        if (nd == 0) rc = err_set(e, SPARQ_EINPUT, "%s: no line has two ids to score", path);
        if (!rc) rc = token_seqs_alloc(out, nd, n, e);
        if (!rc) {
            memcpy(out->tokens, all, (size_t)n * sizeof(int));
            for (int i = 0, at = 0; i < nd; at += lens[i], i++) {
                out->lens[i] = lens[i];
                out->offs[i] = at;
            }
        }
    }
    free(all);
    free(lens);
    return rc;
}

void ppl_shard(token_seqs *s, int shard, int shards, int *index) {
    int k = 0;
    long at = 0;
    for (int i = 0; i < s->n; i++) {
        if (i % shards != shard) continue;
        memmove(s->tokens + at, s->tokens + s->offs[i], (size_t)s->lens[i] * sizeof(int));
        s->lens[k] = s->lens[i];
        s->offs[k] = at;
        if (index) index[k] = i;
        at += s->lens[i];
        k++;
    }
    s->n = k;
}

/* -log softmax(l)[target] for one row of logits. The max and the sum run in LANES fixed lanes
 * combined in a fixed order, so the AVX2 and AVX-512 clones give the same bits as baseline
 * x86-64; the log is taken in double. */
HOT_CLONES
static double row_nll(const float *l, int target, int vocab) {
    float m = vmath_row_max(l, vocab), acc[LANES] = {0};
    int j;
    for (j = 0; j + LANES <= vocab; j += LANES) {
        #pragma omp simd
        for (int k = 0; k < LANES; k++) acc[k] += vmath_exp_neg(l[j + k] - m);
    }
    for (int k = 0; j + k < vocab; k++) acc[k] += vmath_exp_neg(l[j + k] - m);
    return (double)m + log((double)vmath_lanes_sum(acc)) - (double)l[target];
}

/* One row's log-sum-exp carried over slices of its logits: per lane the largest logit so far
 * and the sum of e^(l - that max). */
typedef struct {
    float mx[LANES], sum[LANES];
} lse_acc;

static void lse_init(lse_acc *a) {
    for (int k = 0; k < LANES; k++) {
        a->mx[k] = -INFINITY;
        a->sum[k] = 0.0f;
    }
}

/* Add the w logits l[0 .. w) (lane k takes l[j] with j % LANES == k): each lane's sum is
 * rescaled once to the slice's new max, then the slice's terms are added in order. A row's
 * result depends on its logits and the fixed slicing of the vocabulary alone. */
HOT_CLONES
static void lse_add(lse_acc *a, const float *l, int w) {
    float mx[LANES], sum[LANES];
    int j;
    for (int k = 0; k < LANES; k++) mx[k] = a->mx[k];
    for (j = 0; j + LANES <= w; j += LANES) {
        #pragma omp simd
        for (int k = 0; k < LANES; k++) mx[k] = l[j + k] > mx[k] ? l[j + k] : mx[k];
    }
    for (int k = 0; j + k < w; k++) mx[k] = l[j + k] > mx[k] ? l[j + k] : mx[k];
    #pragma omp simd
    for (int k = 0; k < LANES; k++)   /* a lane still at -inf has nothing to rescale */
        sum[k] = mx[k] == -INFINITY ? 0.0f : a->sum[k] * vmath_exp_neg(a->mx[k] - mx[k]);
    for (j = 0; j + LANES <= w; j += LANES) {
        #pragma omp simd
        for (int k = 0; k < LANES; k++) sum[k] += vmath_exp_neg(l[j + k] - mx[k]);
    }
    for (int k = 0; j + k < w; k++) sum[k] += vmath_exp_neg(l[j + k] - mx[k]);
    memcpy(a->mx, mx, sizeof mx);
    memcpy(a->sum, sum, sizeof sum);
}

/* -log softmax[target] of the row, from its carried sums and its target's logit. Cloned like
 * lse_add: the baseline build would call libm's fmaf inside each exp (0.3% of the eval). */
HOT_CLONES
static double lse_nll(const lse_acc *a, float target) {
    float m = vmath_lanes_max(a->mx), t[LANES];
    for (int k = 0; k < LANES; k++) t[k] = a->sum[k] * vmath_exp_neg(a->mx[k] - m);
    return (double)m + log((double)vmath_lanes_sum(t)) - (double)target;
}

typedef ppl_part nll_stats;

static void nll_stats_add(nll_stats *s, double x) {
    s->n++;
    s->sum += x;
    double d = x - s->mean;
    s->mean += d / (double)s->n;
    s->m2 += d * (x - s->mean);
}

/* a += b: the pairwise update of Chan, Golub and LeVeque for the mean and m2, so no sum of
 * squares of nearly equal values is ever subtracted. */
static void nll_stats_merge(nll_stats *a, const nll_stats *b) {
    if (b->n == 0) return;
    long n = a->n + b->n;
    double d = b->mean - a->mean;
    a->mean += d * ((double)b->n / (double)n);
    a->m2 += b->m2 + d * d * ((double)a->n * (double)b->n / (double)n);
    a->sum += b->sum;
    a->n = n;
}

static int task_tokens(const model *m, int nth, const fwd_packs *packs) {
    if (forward_packs_whole(packs)) return TASK_TOKENS_PACKED;
    if (!model_streamed(m)) return TASK_TOKENS;
    const model_config *c = &m->cfg;
    double per_token = 4.0 * (2.0 * c->dim + 4.0 * (double)c->n_heads * c->head_size + 3.0 * c->hidden_dim);
    double fit = clock_memory_bytes() / 8.0 / nth / per_token;
    int t = fit < TASK_TOKENS_STREAMED ? (int)fit : TASK_TOKENS_STREAMED;
    return t > TASK_TOKENS ? t : TASK_TOKENS;
}

static int head_rows(int vocab) {
    int r = HEAD_FLOATS / vocab;
    return r < HEAD_ROWS_MIN ? HEAD_ROWS_MIN : r;
}

/* One thread's buffers: forward scratch, hidden states of a task, head_rows rows of logits. */
typedef struct {
    fwd_scratch *scr;
    float       *x, *logits, *target;   /* target: each row's logit of its next token */
    lse_acc     *lse;
    int          failed_task;    /* first task that failed here, or INT_MAX */
    err          e;
} worker;

/* The head of score_task where it splits: x normed once, then per SLICE_ROWS rows the classifier
 * in slices of HEAD_COLS columns, each row's log-sum-exp carried across them (lse_add). Rows are
 * those of sequences i, i+1, ... (n_tok in all). */
static int score_sliced(const model *m, const token_seqs *s, int i, int n_tok, worker *w,
                        nll_stats *nll) {
    int dim = m->cfg.dim, vocab = m->cfg.vocab_size, rc = forward_head_norm(m, w->x, n_tok, &w->e);
    const int *toks = s->tokens + s->offs[i];
    int k = i, p = 0;                                /* sequence and position of row r0 + r */
    for (int r0 = 0; rc == SPARQ_OK && r0 < n_tok; r0 += SLICE_ROWS) {
        int nr = n_tok - r0 < SLICE_ROWS ? n_tok - r0 : SLICE_ROWS;
        for (int r = 0; r < nr; r++) lse_init(&w->lse[r]);
        for (int c0 = 0; c0 < vocab; c0 += HEAD_COLS) {
            int nc = vocab - c0 < HEAD_COLS ? vocab - c0 : HEAD_COLS;
            fwd_head_slice(m, w->scr, w->x + (size_t)r0 * dim, nr, c0, nc, w->logits);
            for (int r = 0; r < nr; r++) {
                const float *l = w->logits + (size_t)r * nc;
                int t = r0 + r + 1 < n_tok ? toks[r0 + r + 1] : -1;
                lse_add(&w->lse[r], l, nc);
                if (t >= c0 && t < c0 + nc) w->target[r] = l[t - c0];
            }
        }
        for (int r = 0; r < nr; r++) {
            if (p >= s->unscored && p + 1 < s->lens[k])
                nll_stats_add(&nll[k], lse_nll(&w->lse[r], w->target[r]));
            if (++p == s->lens[k]) { k++; p = 0; }
        }
    }
    return rc;
}

/* Forward sequences [i, j) (n_tok tokens stored back to back), then add each scored position's
 * -log p to nll[k] of its sequence, in position order. */
static int score_task(const model *m, const token_seqs *s, int i, int j, int n_tok, worker *w,
                      nll_stats *nll) {
    err *e = &w->e;
    int dim = m->cfg.dim, vocab = m->cfg.vocab_size;
    const int *toks = s->tokens + s->offs[i];
    fwd_batch b = {.n_seq = j - i, .lens = s->lens + i, .n_tok = n_tok};
    int rc = forward_embed(m, toks, &b, w->x, e);
    for (int l = 0; rc == SPARQ_OK && l < m->cfg.n_layers; l++)
        rc = forward_block(m, l, w->x, &b, NULL, w->scr, e);
    if (rc == SPARQ_OK && forward_head_splits(m)) return score_sliced(m, s, i, n_tok, w, nll);
    int k = i, p = 0, rows = head_rows(vocab);       /* sequence and position of row r0 + r */
    for (int r0 = 0; rc == SPARQ_OK && r0 < n_tok; r0 += rows) {
        int nr = n_tok - r0 < rows ? n_tok - r0 : rows;
        rc = forward_head(m, w->x + (size_t)r0 * dim, nr, w->logits, e);
        for (int r = 0; rc == SPARQ_OK && r < nr; r++) {
            if (p >= s->unscored && p + 1 < s->lens[k])
                nll_stats_add(&nll[k], row_nll(w->logits + (size_t)r * vocab, toks[r0 + r + 1],
                                               vocab));
            if (++p == s->lens[k]) { k++; p = 0; }
        }
    }
    return rc;
}

int ppl_score(const model *m, const token_seqs *s, ppl_result *r, progress_fn progress,
              void *progress_ctx, err *e) {
    return ppl_score_parts(m, s, NULL, r, progress, progress_ctx, e);
}

int ppl_combine(const ppl_part *parts, int n, ppl_result *r, err *e) {
    nll_stats all = {0};
    for (int k = 0; k < n; k++)       /* fixed order: same result for any thread count or shards */
        nll_stats_merge(&all, &parts[k]);
    r->nll = all.sum / (double)all.n;
    r->ppl = exp(r->nll);
    r->nll_stderr = all.n > 1 ? sqrt(all.m2 / (double)(all.n - 1) / (double)all.n) : NAN;
    r->ppl_stderr = r->ppl * r->nll_stderr;
    r->tokens = all.n;
    r->sequences = n;
    if (!isfinite(r->nll))
        return err_set(e, SPARQ_ERUNTIME, "perplexity is not finite (nll %g): the model produces "
                       "NaN or infinite logits", r->nll);
    return SPARQ_OK;
}

int ppl_score_parts(const model *m, const token_seqs *s, ppl_part *parts, ppl_result *r,
                    progress_fn progress, void *progress_ctx, err *e) {
    memset(r, 0, sizeof *r);
    int vocab = m->cfg.vocab_size, n = s->n;
    long total = 0;
    for (int i = 0; i < n; i++) {
        if (s->lens[i] > m->cfg.seq_len)
            return err_set(e, SPARQ_EINPUT, "sequence of %d tokens exceeds the model's context (%d)",
                           s->lens[i], m->cfg.seq_len);
        total += s->lens[i];
    }
    /* Packed inside the timed span: it is part of what an evaluation costs. */
    double t0 = clock_seconds();
    fwd_packs *packs = forward_pack(m);
    /* Tasks: runs of whole sequences of up to task_tokens tokens (or one longer sequence),
     * fixed before any thread starts. task[t] is the first sequence of task t,
     * task[ntask] = n. */
    int nth = omp_get_max_threads(), per_task = task_tokens(m, nth, packs);
    int *task = malloc((size_t)(n + 1) * sizeof(int)), ntask = 0, maxtok = 1;
    for (int i = 0; task && i < n;) {
        int j = i, ntok = 0;
        while (j < n && (j == i || ntok + s->lens[j] <= per_task)) ntok += s->lens[j++];
        task[ntask++] = i;
        maxtok = ntok > maxtok ? ntok : maxtok;
        i = j;
    }
    if (task) task[ntask] = n;
    nll_stats *nll = calloc((size_t)(n > 0 ? n : 1), sizeof *nll);
    worker *w = calloc((size_t)nth, sizeof *w);
    bool ok = task && nll && w;
    for (int t = 0; ok && t < nth; t++) {
        w[t].scr = fwd_scratch_new();
        w[t].x = malloc((size_t)maxtok * m->cfg.dim * sizeof(float));
        int rows = maxtok < head_rows(vocab) ? maxtok : head_rows(vocab);
        size_t srows = (size_t)(maxtok < SLICE_ROWS ? maxtok : SLICE_ROWS);
        size_t lf = (size_t)rows * vocab, sf = srows * HEAD_COLS;
        w[t].logits = malloc((lf > sf ? lf : sf) * sizeof(float));
        w[t].target = malloc(srows * sizeof(float));
        w[t].lse = malloc(srows * sizeof(lse_acc));
        w[t].failed_task = INT_MAX;
        ok = w[t].scr && w[t].x && w[t].logits && w[t].target && w[t].lse;
    }
    int rc = ok ? SPARQ_OK : err_set(e, SPARQ_ERUNTIME, "out of memory for tasks of %d tokens",
                                     maxtok);
    for (int t = 0; rc == SPARQ_OK && packs && t < nth; t++) fwd_scratch_use(w[t].scr, packs);
    long done = 0;
    int failed = 0;
    /* One parallel region for the whole text; each task is one thread's forward pass. */
    if (rc == SPARQ_OK) {
        #pragma omp parallel num_threads(nth)
        {
            worker *me = &w[omp_get_thread_num()];
            #pragma omp for schedule(dynamic, 1)
            for (int t = 0; t < ntask; t++) {
                int stop;
                #pragma omp atomic read
                stop = failed;
                if (stop) continue;
                int i = task[t], j = task[t + 1], ntok = 0;
                for (int k = i; k < j; k++) ntok += s->lens[k];
                if (score_task(m, s, i, j, ntok, me, nll) != SPARQ_OK) {
                    if (t < me->failed_task) me->failed_task = t;
                    #pragma omp atomic write
                    failed = 1;
                    continue;
                }
                long now;
                #pragma omp atomic capture
                now = done += ntok;
                /* The bar is drawn from the calling thread only. */
                if (progress && omp_get_thread_num() == 0) progress(progress_ctx, now, total);
            }
        }
    }
    double secs = clock_seconds() - t0;
    forward_packs_free(packs);
    if (rc == SPARQ_OK && failed) {
        int first = 0;                 /* report the earliest failing task's error */
        for (int t = 1; t < nth; t++)
            if (w[t].failed_task < w[first].failed_task) first = t;
        if (e) *e = w[first].e;
        rc = w[first].e.code ? w[first].e.code : SPARQ_ERUNTIME;
    }
    if (rc == SPARQ_OK) {
        if (progress) progress(progress_ctx, total, total);
        if (parts) memcpy(parts, nll, (size_t)n * sizeof *parts);
        rc = ppl_combine(nll, n, r, e);
        r->tokens_forward = total;
        r->seconds = secs;
    }
    for (int t = 0; w && t < nth; t++) {
        fwd_scratch_free(w[t].scr);
        free(w[t].x);
        free(w[t].logits);
        free(w[t].target);
        free(w[t].lse);
    }
    free(w);
    free(task);
    free(nll);
    return rc;
}
