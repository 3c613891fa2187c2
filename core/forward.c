#include "forward.h"
#include "stream.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "clock.h"
#include "family.h"
#include "forward_ops.h"

/* Attention processes query rows in tiles of this many rows for all heads of a kv group at once
 * (one GEMM of group x ATT_ROWS rows against the group's keys), so a tile's scores only span the
 * keys up to its last row: the causal mask wastes at most a 16 x 16 triangle per head and tile,
 * and a tile's scores stay near L1 (48 x 256 floats on stories3M's windows). Against tiles of
 * 64 rows per head: ~17% less time in the attention GEMMs (stories3M, 256 and 512 keys). */
#define ATT_ROWS 16

struct fwd_scratch {
    float *buf[FWD_BUFS];
    size_t cap[FWD_BUFS];
    int   *offs;
    size_t offs_n;
    const fwd_packs *packs;   /* the caller's, or NULL */
};

fwd_scratch *fwd_scratch_new(void) { return calloc(1, sizeof(fwd_scratch)); }

void fwd_scratch_free(fwd_scratch *s) {
    if (!s) return;
    for (int i = 0; i < FWD_BUFS; i++) free(s->buf[i]);
    free(s->offs);
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

float *fwd_buf(fwd_scratch *s, int slot, size_t n) {
    return grow(&s->buf[slot], &s->cap[slot], n, sizeof(float)) ? s->buf[slot] : NULL;
}

int *fwd_offsets(fwd_scratch *s, const fwd_batch *b) {
    if (!grow(&s->offs, &s->offs_n, (size_t)b->n_seq, sizeof(int))) return NULL;
    for (int i = 0, o = 0; i < b->n_seq; o += b->lens[i], i++) s->offs[i] = o;
    return s->offs;
}

int fwd_check_batch(const model *m, const fwd_batch *b, int *maxT, err *e) {
    int total = 0;
    *maxT = 0;
    for (int i = 0; i < b->n_seq; i++) {
        if (b->lens[i] <= 0 || b->lens[i] > m->cfg.seq_len)
            return err_set(e, SPARQ_EINPUT, "sequence %d has %d tokens; the model takes 1 to %d", i,
                           b->lens[i], m->cfg.seq_len);
        *maxT = b->lens[i] > *maxT ? b->lens[i] : *maxT;
        total += b->lens[i];
    }
    if (total != b->n_tok)
        return err_set(e, SPARQ_EINPUT, "batch lengths sum to %d, not n_tok %d", total, b->n_tok);
    return SPARQ_OK;
}

static int round_lanes(int n) { return (n + LANES - 1) / LANES * LANES; }

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

/* Per-thread attention scratch: the group's keys transposed; one tile's queries, scores, row
 * sums and outputs. */
size_t fwd_att_scratch_floats(const model *m, int maxT) {
    size_t ldk = (size_t)round_lanes(maxT), hs = (size_t)m->cfg.head_size;
    size_t rows = (size_t)ATT_ROWS * (size_t)(m->cfg.n_heads / m->cfg.n_kv_heads);
    return hs * ldk + rows * (hs + ldk + 1 + hs);
}

/* Attention of one sequence for the heads sharing kv head g: keys are transposed once (padded
 * with zero keys to a LANES multiple) so Q K^T is a plain NN product, which OpenBLAS serves with
 * its small-matrix kernel instead of packing both operands for every tile. A tile's query rows
 * of the group's heads are gathered head by head into Qt, so one GEMM serves them all. */
HOT_CLONES
static void attend_group(const model *m, int T, int g, const float *q, size_t ldq, const float *k,
                         const float *v, size_t ldkv, float *att, float *work) {
    const model_config *c = &m->cfg;
    int hs = c->head_size, qdim = c->n_heads * hs;
    int group = c->n_heads / c->n_kv_heads, ldk = round_lanes(T);
    float scale = 1.0f / sqrtf((float)hs);
    size_t rows = (size_t)ATT_ROWS * group;
    float *Kt = work, *Qt = Kt + (size_t)hs * ldk, *S = Qt + rows * hs, *inv = S + rows * ldk;
    float *Ot = inv + rows;
    const float *K = k + (size_t)g * hs, *V = v + (size_t)g * hs;
    for (int d = 0; d < hs; d++) {
        float *kr = Kt + (size_t)d * ldk;
        for (int t = 0; t < T; t++) kr[t] = K[(size_t)t * ldkv + d];
        for (int t = T; t < ldk; t++) kr[t] = 0.0f;
    }
    for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
        int nr = T - r0 < ATT_ROWS ? T - r0 : ATT_ROWS, nc = r0 + nr, ld = round_lanes(nc);
        int M = group * nr;
        for (int h = 0; h < group; h++)
            for (int i = 0; i < nr; i++) {
                float *qt = Qt + ((size_t)h * nr + i) * hs;
                const float *qr = q + (size_t)(r0 + i) * ldq + (size_t)(g * group + h) * hs;
                #pragma omp simd
                for (int d = 0; d < hs; d++) qt[d] = qr[d];
            }
        blas_gemm(false, false, M, ld, hs, scale, Qt, hs, Kt, ldk, 0.0f, S, ld);
        for (int h = 0; h < group; h++)
            softmax_causal_tile(S + (size_t)h * nr * ld, nr, ld, r0, inv + (size_t)h * nr);
        blas_gemm(false, false, M, hs, nc, 1.0f, S, ld, V, (int)ldkv, 0.0f, Ot, hs);
        for (int h = 0; h < group; h++)
            for (int i = 0; i < nr; i++) {
                float a = inv[h * nr + i];
                float *o = att + (size_t)(r0 + i) * qdim + (size_t)(g * group + h) * hs;
                const float *ot = Ot + ((size_t)h * nr + i) * hs;
                #pragma omp simd
                for (int d = 0; d < hs; d++) o[d] = ot[d] * a;
            }
    }
}

void fwd_attention(const model *m, const fwd_batch *b, const int *offs, const float *q, size_t ldq,
                   const float *k, const float *v, size_t ldkv, float *att, float *scratch, int maxT) {
    const model_config *c = &m->cfg;
    int qdim = c->n_heads * c->head_size;
    int jobs = b->n_seq * c->n_kv_heads;
    size_t per = fwd_att_scratch_floats(m, maxT);
    #pragma omp parallel for schedule(dynamic, 1) if (jobs > 1 && !omp_in_parallel())
    for (int job = 0; job < jobs; job++) {
        int sq = job / c->n_kv_heads, g = job % c->n_kv_heads;
        size_t off = (size_t)offs[sq];
        attend_group(m, b->lens[sq], g, q + off * ldq, ldq, k + off * ldkv, v + off * ldkv, ldkv,
                     att + off * qdim, scratch + (size_t)omp_get_thread_num() * per);
    }
}

int forward_embed(const model *m, const int *tokens, const fwd_batch *b, float *x, err *e) {
    for (int t = 0; t < b->n_tok; t++)
        if (tokens[t] < 0 || tokens[t] >= m->cfg.vocab_size)
            return err_set(e, SPARQ_EINPUT, "token id %d at position %d is outside the vocabulary "
                           "(%d)", tokens[t], t, m->cfg.vocab_size);
    return m->fam->embed(m, tokens, b, x, e);
}

int forward_block(const model *m, int layer, float *x, const fwd_batch *b, block_inputs *cap,
                  fwd_scratch *s, err *e) {
    /* A streamed model's block is made float32 for the whole batch (stream.h). */
    int rc = model_block_acquire(m, layer, e);
    if (rc) return rc;
    rc = m->fam->block(m, layer, x, b, cap ? cap->in : NULL, s, e);
    model_block_release(m, layer);
    return rc;
}

int forward_head(const model *m, float *x, int n_tok, float *logits, err *e) {
    return m->fam->head(m, x, n_tok, logits, e);
}

bool forward_head_splits(const model *m) { return m->fam->head_norm != NULL; }

int forward_head_norm(const model *m, float *x, int n_tok, err *e) {
    return m->fam->head_norm(m, x, n_tok, e);
}

int forward_logits(const model *m, const int *tokens, const fwd_batch *b, float *logits,
                   fwd_scratch *s, err *e) {
    float *x = fwd_buf(s, FWD_X, (size_t)b->n_tok * m->cfg.dim);
    if (!x) return err_set(e, SPARQ_ERUNTIME, "out of memory for a batch of %d tokens", b->n_tok);
    int rc = forward_embed(m, tokens, b, x, e);
    for (int l = 0; rc == SPARQ_OK && l < m->cfg.n_layers; l++)
        rc = forward_block(m, l, x, b, NULL, s, e);
    return rc ? rc : forward_head(m, x, b->n_tok, logits, e);
}

/* ---- packed weights ------------------------------------------------------------------------ */

/* An evaluation runs thousands of forward passes over the same weights; packed per call, the
 * weights of stories3M are read from L3 and re-laid out once per 1024-token task, ~4% of its
 * eval time. Packed once, the kernel streams them as they are. */
struct fwd_packs {
    size_t       n_blocks;
    int          n_in;
    blas_packed **in;    /* [layer * n_in + input]: the linears reading that input, stacked */
    blas_packed *head;   /* the classifier                                                   */
};

void forward_packs_free(fwd_packs *p) {
    if (!p) return;
    for (size_t i = 0; p->in && i < p->n_blocks * (size_t)p->n_in; i++) blas_packed_free(p->in[i]);
    blas_packed_free(p->head);
    free(p->in);
    free(p);
}

/* The linears of block l reading input `in`, in family order: their weights and rows. */
static int linears_of_input(const model *m, int l, int in, const float **w, int *rows) {
    int n = 0;
    for (int i = 0; i < m->fam->n_linear; i++)
        if (m->fam->linear[i].input == in) {
            w[n] = m->blocks[l].lin[i].w;
            rows[n++] = m->blocks[l].lin[i].rows;
        }
    return n;
}

fwd_packs *forward_pack(const model *m) {
    const model_config *c = &m->cfg;
    double bytes = 4.0 * ((double)model_linear_params(m) + (double)c->vocab_size * c->dim);
    if (model_streamed(m) || bytes > clock_memory_bytes() / 8) return NULL;
    fwd_packs *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_blocks = (size_t)c->n_layers;
    p->n_in = m->fam->n_input;
    p->in = calloc((size_t)c->n_layers * p->n_in, sizeof *p->in);
    bool ok = p->in != NULL;
    for (int l = 0; ok && m->fam->linear_in && l < c->n_layers; l++)
        for (int in = 0; ok && in < p->n_in; in++) {
            const float *w[MODEL_MAX_LINEAR];
            int rows[MODEL_MAX_LINEAR], n = linears_of_input(m, l, in, w, rows);
            int cols = (int)family_size(c, m->fam->input[in]);
            ok = n == 0 || (p->in[l * p->n_in + in] = blas_pack(w, rows, n, cols)) != NULL;
        }
    const float *wc = m->wcls;
    int vocab = c->vocab_size;
    if (ok && forward_head_splits(m)) ok = (p->head = blas_pack(&wc, &vocab, 1, c->dim)) != NULL;
    if (!ok) {
        forward_packs_free(p);
        return NULL;
    }
    return p;
}

void fwd_scratch_use(fwd_scratch *s, const fwd_packs *p) { s->packs = p; }

void fwd_linear_in(const model *m, fwd_scratch *s, int layer, int in, const float *x, int ldx, int n,
                   float *y, int ldy, bool add) {
    const float *w[MODEL_MAX_LINEAR];
    int rows[MODEL_MAX_LINEAR], k = linears_of_input(m, layer, in, w, rows);
    int cols = (int)family_size(&m->cfg, m->fam->input[in]), total = 0;
    for (int i = 0; i < k; i++) total += rows[i];
    if (s->packs && s->packs->in[layer * s->packs->n_in + in]) {
        blas_linear_packed(x, ldx, s->packs->in[layer * s->packs->n_in + in], 0, total, y, ldy, n, add);
        return;
    }
    /* Without packs, linears whose weights lie back to back still make one GEMM: x is packed
     * once, and thin ones (k and v: 64 outputs on stories3M) stop being GEMMs of their own. */
    for (int i = 0, col = 0; i < k;) {
        int j = i + 1, r = rows[i];
        while (j < k && w[j] == w[j - 1] + (size_t)rows[j - 1] * cols) r += rows[j++];
        blas_gemm(false, true, n, r, cols, 1.0f, x, ldx, w[i], cols, add ? 1.0f : 0.0f, y + col, ldy);
        col += r;
        i = j;
    }
}

void fwd_head_slice(const model *m, fwd_scratch *s, const float *x, int n, int c0, int nc,
                    float *logits) {
    int dim = m->cfg.dim;
    if (s->packs && s->packs->head && c0 % BLAS_PACK_COLS == 0)
        blas_linear_packed(x, dim, s->packs->head, c0, nc, logits, nc, n, false);
    else
        blas_gemm(false, true, n, nc, dim, 1.0f, x, dim, m->wcls + (size_t)c0 * dim, dim, 0.0f,
                  logits, nc);
}

/* ---- single-token path -------------------------------------------------------------------- */

void fwd_cache_free(fwd_cache *c) {
    if (!c) return;
    free(c->x); free(c->xb); free(c->xb2); free(c->hb); free(c->hb2);
    free(c->q); free(c->att); free(c->key); free(c->value);
    free(c->state); free(c->hist); free(c->all);
    fwd_scratch_free(c->scr);
    free(c);
}

int fwd_cache_new(fwd_cache **out, const model *m, err *e) {
    const model_config *p = &m->cfg;
    fwd_cache *c = calloc(1, sizeof *c);
    bool ok = c != NULL;
    if (ok && m->fam->token && m->fam->cache_floats) {
        c->state = calloc(m->fam->cache_floats(p), sizeof(float));
        ok = c->state != NULL;
    } else if (ok && m->fam->token) {
        size_t kvd = (size_t)p->n_kv_heads * p->head_size, qdim = (size_t)p->n_heads * p->head_size;
        size_t wide = qdim > (size_t)p->dim ? qdim : (size_t)p->dim;
        c->x = calloc(p->dim, sizeof(float));
        c->xb = calloc(wide, sizeof(float));
        c->xb2 = calloc(p->dim, sizeof(float));
        c->hb = calloc(p->hidden_dim, sizeof(float));
        c->hb2 = calloc(p->hidden_dim, sizeof(float));
        c->q = calloc(qdim, sizeof(float));
        c->att = calloc((size_t)p->n_heads * p->seq_len, sizeof(float));
        c->key = calloc((size_t)p->n_layers * p->seq_len * kvd, sizeof(float));
        c->value = calloc((size_t)p->n_layers * p->seq_len * kvd, sizeof(float));
        ok = c->x && c->xb && c->xb2 && c->hb && c->hb2 && c->q && c->att && c->key && c->value;
    } else if (ok) {
        c->hist = calloc((size_t)p->seq_len, sizeof(int));
        c->all = calloc((size_t)p->seq_len * p->dim, sizeof(float));
        c->scr = fwd_scratch_new();
        ok = c->hist && c->all && c->scr;
    }
    if (!ok) {
        fwd_cache_free(c);
        return err_set(e, SPARQ_ERUNTIME, "out of memory for the generation cache");
    }
    *out = c;
    return SPARQ_OK;
}

void fwd_matvec(float *y, const float *x, const float *W, int rows, int cols) {
    for (int i = 0; i < rows; i++) {
        float v = 0.0f;
        for (int j = 0; j < cols; j++) v += W[(size_t)i * cols + j] * x[j];
        y[i] = v;
    }
}

int forward_token(const model *m, fwd_cache *c, int token, int pos, float *logits, err *e) {
    if (pos < 0 || pos >= m->cfg.seq_len)
        return err_set(e, SPARQ_EINPUT, "position %d is outside the model's context (%d)", pos,
                       m->cfg.seq_len);
    if (token < 0 || token >= m->cfg.vocab_size)
        return err_set(e, SPARQ_EINPUT, "token id %d at position %d is outside the vocabulary (%d)",
                       token, pos, m->cfg.vocab_size);
    if (m->fam->token) {
        /* Every block per token: a streamed model converts them all each time (slow, exact;
         * generation is not what big models are streamed for). */
        int rc = model_blocks_acquire_all(m, e);
        if (rc) return rc;
        rc = m->fam->token(m, c, token, pos, logits, e);
        model_blocks_release_all(m);
        return rc;
    }
    /* No cached path: the batched forward over the whole prefix, the classifier on its last
     * position only. Exact, and quadratic in the length: for generation and tests. */
    c->hist[pos] = token;
    int len = pos + 1;
    fwd_batch b = {.n_seq = 1, .lens = &len, .n_tok = len};
    int rc = forward_embed(m, c->hist, &b, c->all, e);
    for (int l = 0; rc == SPARQ_OK && l < m->cfg.n_layers; l++)
        rc = forward_block(m, l, c->all, &b, NULL, c->scr, e);
    return rc ? rc : forward_head(m, c->all + (size_t)pos * m->cfg.dim, 1, logits, e);
}
