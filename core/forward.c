#include "forward.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "vmath.h"

/* Attention processes query rows in tiles of this many rows, so a tile's scores only span the
 * keys up to its last row: the causal mask then wastes at most one tile's triangle. */
#define ATT_ROWS 64

struct fwd_scratch {
    float *xb, *q, *k, *v, *att, *hb, *hb2, *scores, *x;
    size_t xb_n, q_n, k_n, v_n, att_n, hb_n, hb2_n, scores_n, x_n;
    int   *offs;
    size_t offs_n;
};

fwd_scratch *fwd_scratch_new(void) { return calloc(1, sizeof(fwd_scratch)); }

void fwd_scratch_free(fwd_scratch *s) {
    if (!s) return;
    free(s->xb); free(s->q); free(s->k); free(s->v); free(s->att);
    free(s->hb); free(s->hb2); free(s->scores); free(s->x); free(s->offs);
    free(s);
}

/* Make *p hold at least n elements of size sz; keeps the larger buffer across calls. */
static bool grow(void *pp, size_t *cap, size_t n, size_t sz) {
    void **p = pp;
    if (*cap >= n) return true;
    void *q = realloc(*p, n * sz);
    if (!q) return false;
    *p = q;
    *cap = n;
    return true;
}

static int round_lanes(int n) { return (n + LANES - 1) / LANES * LANES; }

/* One row of x[d] normalized into o[d] (o may be x). */
static inline void rmsnorm_row(float *o, const float *x, const float *w, int d, float eps) {
    float acc[LANES] = {0};
    int j = 0;
    for (; j + LANES <= d; j += LANES) {
        #pragma omp simd
        for (int l = 0; l < LANES; l++) acc[l] += x[j + l] * x[j + l];
    }
    for (int l = 0; j + l < d; l++) acc[l] += x[j + l] * x[j + l];
    float ss = 1.0f / sqrtf(vmath_lanes_sum(acc) / d + eps);
    #pragma omp simd
    for (int k = 0; k < d; k++) o[k] = w[k] * (ss * x[k]);
}

HOT_CLONES
static void rmsnorm_range(float *o, const float *x, const float *w, int t0, int t1, int d,
                          float eps) {
    for (int t = t0; t < t1; t++)
        rmsnorm_row(o + (size_t)t * d, x + (size_t)t * d, w, d, eps);
}

static void rmsnorm_rows(float *o, const float *x, const float *w, int n, int d, float eps) {
    if (n <= 64 || omp_in_parallel()) {
        rmsnorm_range(o, x, w, 0, n, d, eps);
        return;
    }
    #pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        rmsnorm_range(o, x, w, (int)((long)n * t / nt), (int)((long)n * (t + 1) / nt), d, eps);
    }
}

/* g[i] = silu(g[i]) * u[i] for i in [i0, i1), with sigmoid(g) = (g >= 0 ? 1 : t) / (1 + t),
 * t = e^-|g|: no overflow, so no clamp at the top, and one division per element. */
HOT_CLONES
static void silu_mul(float *g, const float *u, size_t i0, size_t i1) {
    #pragma omp simd
    for (size_t i = i0; i < i1; i++) {
        float x = g[i], t = vmath_exp_neg(-fabsf(x));
        g[i] = x * ((x >= 0.0f ? 1.0f : t) / (1.0f + t)) * u[i];
    }
}

/* The single-token path keeps libm's expf and a plain sum: generation stays the reference. */
static void rmsnorm_ref(float *o, const float *x, const float *w, int d, float eps) {
    float ss = 0.0f;
    for (int j = 0; j < d; j++) ss += x[j] * x[j];
    ss = 1.0f / sqrtf(ss / d + eps);
    for (int j = 0; j < d; j++) o[j] = w[j] * (ss * x[j]);
}

/* Rotate the heads of one token's vector v (n_heads_v heads of head_size) for position pos. */
static void rope_apply(const model *m, float *v, int n_heads_v, int pos) {
    int hs = m->cfg.head_size, half = hs / 2;
    const float *cs = m->rope_cos + (size_t)pos * half, *sn = m->rope_sin + (size_t)pos * half;
    for (int h = 0; h < n_heads_v; h++) {
        float *vh = v + (size_t)h * hs;
        for (int j = 0; j < half; j++) {
            int a = m->cfg.rope == ROPE_ADJACENT ? 2 * j : j;
            int b = m->cfg.rope == ROPE_ADJACENT ? 2 * j + 1 : j + half;
            float v0 = vh[a], v1 = vh[b];
            vh[a] = v0 * cs[j] - v1 * sn[j];
            vh[b] = v0 * sn[j] + v1 * cs[j];
        }
    }
}

int forward_embed(const model *m, const int *tokens, int n_tok, float *x, err *e) {
    int d = m->cfg.dim;
    for (int t = 0; t < n_tok; t++) {
        if (tokens[t] < 0 || tokens[t] >= m->cfg.vocab_size)
            return err_set(e, SPARQ_EINPUT, "token id %d at position %d is outside the vocabulary "
                           "(%d)", tokens[t], t, m->cfg.vocab_size);
        memcpy(x + (size_t)t * d, m->tok_emb + (size_t)tokens[t] * d, d * sizeof(float));
    }
    return SPARQ_OK;
}

/* Causal softmax of one tile: rows r0.. of a sequence, rows of ld >= round_lanes(r0 + nr) scores.
 * Row i keeps e^(s - max) for its r0 + i + 1 keys and zeros after them, so the GEMM with V can
 * span the tile; inv[i] gets 1 / the row's sum, applied to the tile's head_size outputs rather
 * than to all its scores. Keys past the diagonal up to a LANES multiple are set to -inf so every
 * loop runs on whole vectors without masks. */
HOT_CLONES
static void softmax_causal_tile(float *S, int nr, int ld, int r0, float *inv) {
    for (int i = 0; i < nr; i++) {
        float *row = S + (size_t)i * ld;
        int n = r0 + i + 1, np = round_lanes(n);
        float *last = row + np - LANES;
        #pragma omp simd
        for (int l = 0; l < LANES; l++) last[l] = np - LANES + l < n ? last[l] : -INFINITY;
        float mx[LANES], acc[LANES];
        #pragma omp simd
        for (int l = 0; l < LANES; l++) {
            mx[l] = row[l];
            acc[l] = 0.0f;
        }
        for (int j = LANES; j < np; j += LANES) {
            #pragma omp simd
            for (int l = 0; l < LANES; l++) mx[l] = row[j + l] > mx[l] ? row[j + l] : mx[l];
        }
        float m = vmath_lanes_max(mx);
        for (int j = 0; j < np; j += LANES) {
            #pragma omp simd
            for (int l = 0; l < LANES; l++) {
                float e = vmath_exp_neg(row[j + l] - m);
                row[j + l] = e;
                acc[l] += e;
            }
        }
        inv[i] = 1.0f / vmath_lanes_sum(acc);
        #pragma omp simd
        for (int j = np; j < ld; j++) row[j] = 0.0f;
    }
}

/* Per-thread attention scratch: the group's keys transposed, one tile of scores, row sums. */
static size_t att_scratch_floats(int hs, int maxT) {
    size_t ldk = (size_t)round_lanes(maxT);
    return (size_t)hs * ldk + (size_t)ATT_ROWS * ldk + ATT_ROWS;
}

/* Attention of one sequence for the heads sharing kv head g: keys are transposed once (padded
 * with zero keys to a LANES multiple) so Q K^T is a plain NN product, which OpenBLAS serves with
 * its small-matrix kernel instead of packing both operands for every tile. */
static void attend_group(const model *m, int T, int g, const float *q, const float *k,
                         const float *v, float *att, float *work) {
    const model_config *c = &m->cfg;
    int hs = c->head_size, kvd = c->n_kv_heads * hs, qdim = c->n_heads * hs;
    int group = c->n_heads / c->n_kv_heads, ldk = round_lanes(T);
    float scale = 1.0f / sqrtf((float)hs);
    float *Kt = work, *S = Kt + (size_t)hs * ldk, *inv = S + (size_t)ATT_ROWS * ldk;
    const float *K = k + (size_t)g * hs, *V = v + (size_t)g * hs;
    for (int d = 0; d < hs; d++) {
        float *kr = Kt + (size_t)d * ldk;
        for (int t = 0; t < T; t++) kr[t] = K[(size_t)t * kvd + d];
        for (int t = T; t < ldk; t++) kr[t] = 0.0f;
    }
    for (int h = g * group; h < (g + 1) * group; h++) {
        const float *Q = q + (size_t)h * hs;
        float *O = att + (size_t)h * hs;
        for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
            int nr = T - r0 < ATT_ROWS ? T - r0 : ATT_ROWS, nc = r0 + nr, ld = round_lanes(nc);
            blas_gemm(false, false, nr, ld, hs, scale, Q + (size_t)r0 * qdim, qdim, Kt, ldk, 0.0f,
                      S, ld);
            softmax_causal_tile(S, nr, ld, r0, inv);
            float *Or = O + (size_t)r0 * qdim;
            blas_gemm(false, false, nr, hs, nc, 1.0f, S, ld, V, kvd, 0.0f, Or, qdim);
            for (int i = 0; i < nr; i++)
                for (int d = 0; d < hs; d++) Or[(size_t)i * qdim + d] *= inv[i];
        }
    }
}

static void attention(const model *m, const fwd_batch *b, const int *offs, const float *q,
                      const float *k, const float *v, float *att, float *scratch, int maxT) {
    const model_config *c = &m->cfg;
    int hs = c->head_size, kvd = c->n_kv_heads * hs, qdim = c->n_heads * hs;
    int jobs = b->n_seq * c->n_kv_heads;
    size_t per = att_scratch_floats(hs, maxT);
    #pragma omp parallel for schedule(dynamic, 1) if (jobs > 1 && !omp_in_parallel())
    for (int job = 0; job < jobs; job++) {
        int sq = job / c->n_kv_heads, g = job % c->n_kv_heads;
        size_t off = (size_t)offs[sq];
        attend_group(m, b->lens[sq], g, q + off * qdim, k + off * kvd, v + off * kvd,
                     att + off * qdim, scratch + (size_t)omp_get_thread_num() * per);
    }
}

int forward_block(const model *m, int layer, float *x, const fwd_batch *b, block_inputs *cap,
                  fwd_scratch *s, err *e) {
    const model_config *c = &m->cfg;
    const block *bl = &m->blocks[layer];
    int n = b->n_tok, dim = c->dim, hid = c->hidden_dim, hs = c->head_size;
    int qdim = c->n_heads * hs, kvd = c->n_kv_heads * hs;
    int maxT = 0, total = 0;
    for (int i = 0; i < b->n_seq; i++) {
        if (b->lens[i] <= 0 || b->lens[i] > c->seq_len)
            return err_set(e, SPARQ_EINPUT, "sequence %d has %d tokens; the model takes 1 to %d", i,
                           b->lens[i], c->seq_len);
        maxT = b->lens[i] > maxT ? b->lens[i] : maxT;
        total += b->lens[i];
    }
    if (total != n)
        return err_set(e, SPARQ_EINPUT, "batch lengths sum to %d, not n_tok %d", total, n);
    /* Inside a caller's parallel region everything here runs on the calling thread alone. */
    bool nested = omp_in_parallel();
    int nth = nested ? 1 : blas_threads();
    size_t N = (size_t)n;
    if (!grow(&s->xb, &s->xb_n, N * dim, sizeof(float)) ||
        !grow(&s->q, &s->q_n, N * qdim, sizeof(float)) ||
        !grow(&s->k, &s->k_n, N * kvd, sizeof(float)) ||
        !grow(&s->v, &s->v_n, N * kvd, sizeof(float)) ||
        !grow(&s->att, &s->att_n, N * qdim, sizeof(float)) ||
        !grow(&s->hb, &s->hb_n, N * hid, sizeof(float)) ||
        !grow(&s->hb2, &s->hb2_n, N * hid, sizeof(float)) ||
        !grow(&s->scores, &s->scores_n, (size_t)nth * att_scratch_floats(hs, maxT),
              sizeof(float)) ||
        !grow(&s->offs, &s->offs_n, (size_t)b->n_seq, sizeof(int)))
        return err_set(e, SPARQ_ERUNTIME, "out of memory for a batch of %d tokens", n);
    for (int i = 0, o = 0; i < b->n_seq; o += b->lens[i], i++) s->offs[i] = o;

    /* Attention: x += Wo . attn(rope(Wq xn), rope(Wk xn), Wv xn), xn = rmsnorm(x). */
    rmsnorm_rows(s->xb, x, bl->attn_norm, n, dim, c->norm_eps);
    if (cap && cap->qkv) memcpy(cap->qkv, s->xb, N * dim * sizeof(float));
    blas_linear(s->xb, bl->lin[LIN_Q].w, s->q, n, dim, qdim);
    blas_linear(s->xb, bl->lin[LIN_K].w, s->k, n, dim, kvd);
    blas_linear(s->xb, bl->lin[LIN_V].w, s->v, n, dim, kvd);
    #pragma omp parallel for schedule(static) if (b->n_seq > 1 && !nested)
    for (int i = 0; i < b->n_seq; i++) {
        for (int p = 0; p < b->lens[i]; p++) {
            size_t t = (size_t)s->offs[i] + p;
            rope_apply(m, s->q + t * qdim, c->n_heads, p);
            rope_apply(m, s->k + t * kvd, c->n_kv_heads, p);
        }
    }
    attention(m, b, s->offs, s->q, s->k, s->v, s->att, s->scores, maxT);
    if (cap && cap->o) memcpy(cap->o, s->att, N * qdim * sizeof(float));
    blas_gemm(false, true, n, dim, qdim, 1.0f, s->att, qdim, bl->lin[LIN_O].w, qdim, 1.0f, x, dim);

    /* Feed-forward: x += Wdown (silu(Wgate xn) * Wup xn). */
    rmsnorm_rows(s->xb, x, bl->ffn_norm, n, dim, c->norm_eps);
    if (cap && cap->ffn) memcpy(cap->ffn, s->xb, N * dim * sizeof(float));
    blas_linear(s->xb, bl->lin[LIN_GATE].w, s->hb, n, dim, hid);
    blas_linear(s->xb, bl->lin[LIN_UP].w, s->hb2, n, dim, hid);
    size_t nh = N * hid;
    if (nh <= 65536 || nested) {
        silu_mul(s->hb, s->hb2, 0, nh);
    } else {
        #pragma omp parallel
        {
            size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
            silu_mul(s->hb, s->hb2, nh * t / nt, nh * (t + 1) / nt);
        }
    }
    if (cap && cap->down) memcpy(cap->down, s->hb, nh * sizeof(float));
    blas_gemm(false, true, n, dim, hid, 1.0f, s->hb, hid, bl->lin[LIN_DOWN].w, hid, 1.0f, x, dim);
    return SPARQ_OK;
}

int forward_head(const model *m, float *x, int n_tok, float *logits, err *e) {
    (void)e;
    rmsnorm_rows(x, x, m->final_norm, n_tok, m->cfg.dim, m->cfg.norm_eps);
    blas_linear(x, m->wcls, logits, n_tok, m->cfg.dim, m->cfg.vocab_size);
    return SPARQ_OK;
}

int forward_logits(const model *m, const int *tokens, const fwd_batch *b, float *logits,
                   fwd_scratch *s, err *e) {
    if (!grow(&s->x, &s->x_n, (size_t)b->n_tok * m->cfg.dim, sizeof(float)))
        return err_set(e, SPARQ_ERUNTIME, "out of memory for a batch of %d tokens", b->n_tok);
    int rc = forward_embed(m, tokens, b->n_tok, s->x, e);
    for (int l = 0; rc == SPARQ_OK && l < m->cfg.n_layers; l++)
        rc = forward_block(m, l, s->x, b, NULL, s, e);
    return rc ? rc : forward_head(m, s->x, b->n_tok, logits, e);
}

/* ---- single-token reference path ---------------------------------------------------------- */

struct fwd_cache {
    float *x, *xb, *xb2, *hb, *hb2, *q, *att, *key, *value;
};

void fwd_cache_free(fwd_cache *c) {
    if (!c) return;
    free(c->x); free(c->xb); free(c->xb2); free(c->hb); free(c->hb2);
    free(c->q); free(c->att); free(c->key); free(c->value);
    free(c);
}

int fwd_cache_new(fwd_cache **out, const model *m, err *e) {
    const model_config *p = &m->cfg;
    size_t kvd = (size_t)p->n_kv_heads * p->head_size, qdim = (size_t)p->n_heads * p->head_size;
    size_t wide = qdim > (size_t)p->dim ? qdim : (size_t)p->dim;
    fwd_cache *c = calloc(1, sizeof *c);
    if (c) {
        c->x = calloc(p->dim, sizeof(float));
        c->xb = calloc(wide, sizeof(float));
        c->xb2 = calloc(p->dim, sizeof(float));
        c->hb = calloc(p->hidden_dim, sizeof(float));
        c->hb2 = calloc(p->hidden_dim, sizeof(float));
        c->q = calloc(qdim, sizeof(float));
        c->att = calloc((size_t)p->n_heads * p->seq_len, sizeof(float));
        c->key = calloc((size_t)p->n_layers * p->seq_len * kvd, sizeof(float));
        c->value = calloc((size_t)p->n_layers * p->seq_len * kvd, sizeof(float));
    }
    if (!c || !c->x || !c->xb || !c->xb2 || !c->hb || !c->hb2 || !c->q || !c->att || !c->key ||
        !c->value) {
        fwd_cache_free(c);
        return err_set(e, SPARQ_ERUNTIME, "out of memory for the KV cache");
    }
    *out = c;
    return SPARQ_OK;
}

static void matvec(float *y, const float *x, const float *W, int rows, int cols) {
    for (int i = 0; i < rows; i++) {
        float v = 0.0f;
        for (int j = 0; j < cols; j++) v += W[(size_t)i * cols + j] * x[j];
        y[i] = v;
    }
}

int forward_token(const model *m, fwd_cache *c, int token, int pos, float *logits, err *e) {
    const model_config *p = &m->cfg;
    int dim = p->dim, hs = p->head_size, hid = p->hidden_dim;
    int kvd = p->n_kv_heads * hs, qdim = p->n_heads * hs, group = p->n_heads / p->n_kv_heads;
    if (pos < 0 || pos >= p->seq_len)
        return err_set(e, SPARQ_EINPUT, "position %d is outside the model's context (%d)", pos,
                       p->seq_len);
    int rc = forward_embed(m, &token, 1, c->x, e);
    if (rc) return rc;
    for (int l = 0; l < p->n_layers; l++) {
        const block *bl = &m->blocks[l];
        float *kc = c->key + ((size_t)l * p->seq_len) * kvd;
        float *vc = c->value + ((size_t)l * p->seq_len) * kvd;
        rmsnorm_ref(c->xb, c->x, bl->attn_norm, dim, p->norm_eps);
        matvec(c->q, c->xb, bl->lin[LIN_Q].w, qdim, dim);
        matvec(kc + (size_t)pos * kvd, c->xb, bl->lin[LIN_K].w, kvd, dim);
        matvec(vc + (size_t)pos * kvd, c->xb, bl->lin[LIN_V].w, kvd, dim);
        rope_apply(m, c->q, p->n_heads, pos);
        rope_apply(m, kc + (size_t)pos * kvd, p->n_kv_heads, pos);
        for (int h = 0; h < p->n_heads; h++) {
            const float *qh = c->q + (size_t)h * hs;
            float *att = c->att + (size_t)h * p->seq_len;
            int kh = h / group;
            float mx = -INFINITY, sum = 0.0f;
            for (int t = 0; t <= pos; t++) {
                const float *kt = kc + (size_t)t * kvd + (size_t)kh * hs;
                float sc = 0.0f;
                for (int i = 0; i < hs; i++) sc += qh[i] * kt[i];
                att[t] = sc / sqrtf((float)hs);
                mx = att[t] > mx ? att[t] : mx;
            }
            for (int t = 0; t <= pos; t++) { att[t] = expf(att[t] - mx); sum += att[t]; }
            float *out = c->xb + (size_t)h * hs;
            memset(out, 0, hs * sizeof(float));
            for (int t = 0; t <= pos; t++) {
                const float *vt = vc + (size_t)t * kvd + (size_t)kh * hs;
                float a = att[t] / sum;
                for (int i = 0; i < hs; i++) out[i] += a * vt[i];
            }
        }
        matvec(c->xb2, c->xb, bl->lin[LIN_O].w, dim, qdim);
        for (int i = 0; i < dim; i++) c->x[i] += c->xb2[i];
        rmsnorm_ref(c->xb, c->x, bl->ffn_norm, dim, p->norm_eps);
        matvec(c->hb, c->xb, bl->lin[LIN_GATE].w, hid, dim);
        matvec(c->hb2, c->xb, bl->lin[LIN_UP].w, hid, dim);
        for (int i = 0; i < hid; i++) {
            float g = c->hb[i];
            c->hb[i] = g * (1.0f / (1.0f + expf(-g))) * c->hb2[i];
        }
        matvec(c->xb2, c->hb, bl->lin[LIN_DOWN].w, dim, hid);
        for (int i = 0; i < dim; i++) c->x[i] += c->xb2[i];
    }
    rmsnorm_ref(c->x, c->x, m->final_norm, dim, p->norm_eps);
    matvec(logits, c->x, m->wcls, p->vocab_size, dim);
    return SPARQ_OK;
}
