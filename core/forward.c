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

/* Attention processes query rows in tiles of this many rows for all heads of a kv group at once,
 * so a tile's scores only span the keys up to its last row and stay near L1 (48 x 256 floats on
 * stories3M's windows). Against tiles of 64 rows per head: ~17% less time in the attention's
 * products (stories3M, 256 and 512 keys). */
#define ATT_ROWS 16

/* The attention's products keep ATT_R rows x ATT_W columns of results in registers: 16 chains
 * of fused multiply-adds, enough to cover the FMA latency on two ports (AVX2's 16 registers
 * spill some). */
#define ATT_R 8
#define ATT_W (2 * LANES)
_Static_assert(ATT_R == 8, "ATT_EACH names eight rows");
/* Values per pass of the weighted sum: 64 rows of 32 floats stay in L1 with the tile's scores. */
#define ATT_T 64

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

/* Per-thread attention scratch, the larger of the two kernels' needs. attend_group: the group's
 * keys transposed (rows padded by LANES) and values (LANES more); one tile's scores and row sums;
 * a junk row. attend_group_x: ax_scratch_floats. */
static size_t ax_scratch_floats(const model *m, int maxT);

size_t fwd_att_scratch_floats(const model *m, int maxT) {
    size_t np = (size_t)round_lanes(maxT), hs = (size_t)m->cfg.head_size;
    size_t rows = (size_t)ATT_ROWS * (size_t)(m->cfg.n_heads / m->cfg.n_kv_heads);
    size_t portable = hs * (np + LANES) + np * hs + LANES + rows * (np + 1) + ATT_W;
    size_t x = ax_scratch_floats(m, maxT);
    return x > portable ? x : portable;
}

/* Statement s(r) for each of the ATT_R rows of att_block. */
#define ATT_EACH(s) s(0) s(1) s(2) s(3) s(4) s(5) s(6) s(7)

/* c_r = sum over t < n of a_r[t] b_t for the ATT_R rows a_r, b_t = b + t * ldb, over ATT_W
 * columns (wide) or LANES, each c_r starting from 0 or (carry) from o_r; then o_r = c_r * f_r,
 * or c_r itself when f is NULL (a partial sum, carried into the next call). Only the first nout
 * <= LANES columns are read from and written to o_r unless wide: a head narrower than LANES
 * computes lanes past its end from whatever follows in b and drops them. One chain of fused
 * multiply-adds per result, t in order: the same bits for any vector width, row grouping, tile
 * or chunking of t. */
__attribute__((always_inline))
static inline void att_block(float *const *o, const float *const *ar, const float *b, size_t ldb,
                             int n, bool wide, int nout, bool carry, const float *f) {
    enum { H = LANES };
    bool in2 = carry && wide;
#define ATT_INIT(r) \
    float c##r[H], d##r[H], *o##r = o[r]; \
    const float *a##r = ar[r]; \
    _Pragma("omp simd") for (int l = 0; l < H; l++) { \
        c##r[l] = carry && l < nout ? o##r[l] : 0.0f; \
        d##r[l] = in2 ? o##r[H + l] : 0.0f; \
    }
    ATT_EACH(ATT_INIT)
#undef ATT_INIT
    for (int t = 0; t < n; t++) {
        const float *bt = b + (size_t)t * ldb;
#define ATT_X(r) float x##r = a##r[t];
        ATT_EACH(ATT_X)
#undef ATT_X
#define ATT_FMA(r) c##r[l] = vmath_fma(x##r, bt[l], c##r[l]);
        #pragma omp simd
        for (int l = 0; l < H; l++) { ATT_EACH(ATT_FMA) }
#undef ATT_FMA
        if (wide) {
#define ATT_FMA2(r) d##r[l] = vmath_fma(x##r, bt[H + l], d##r[l]);
            #pragma omp simd
            for (int l = 0; l < H; l++) { ATT_EACH(ATT_FMA2) }
#undef ATT_FMA2
        }
    }
#define ATT_OUT(r) { \
    float fr = f ? f[r] : 1.0f; \
    _Pragma("omp simd") for (int l = 0; l < nout; l++) o##r[l] = c##r[l] * fr; \
    if (wide) { \
        _Pragma("omp simd") for (int l = 0; l < H; l++) o##r[H + l] = d##r[l] * fr; \
    } }
    ATT_EACH(ATT_OUT)
#undef ATT_OUT
}

/* Attention of one sequence for the heads sharing kv head g, with the products written out
 * (att_block) rather than as OpenBLAS's small GEMMs: no copies of a tile's queries and outputs,
 * and no work past a block's diagonal. Keys are transposed once so the scores vectorize over
 * keys, their rows padded by LANES (1 KB apart at 256 keys, a block's 32 rows would crowd a few
 * L1 sets) and values copied to contiguous rows: together ~4% less time than unpadded keys and
 * values read in place. Each product runs over one block of keys (or values) at a time for all
 * rows of the tile, so that block stays in L1. A block of ATT_R rows works up to its longest
 * row: past a row's diagonal the softmax clears the scores, and the weighted sum adds only exact
 * zeros there. Rows a block lacks are computed from its first row and written to junk. */
HOT_CLONES
static void attend_group(const model *m, int T, int g, const float *q, size_t ldq, const float *k,
                         const float *v, size_t ldkv, float *att, float *work) {
    const model_config *c = &m->cfg;
    int hs = c->head_size, qdim = c->n_heads * hs;
    int group = c->n_heads / c->n_kv_heads, np = round_lanes(T), ldk = np + LANES;
    float scale = 1.0f / sqrtf((float)hs), fs[ATT_R];
    for (int r = 0; r < ATT_R; r++) fs[r] = scale;
    size_t rows = (size_t)ATT_ROWS * group;
    float *Kt = work, *V = Kt + (size_t)hs * ldk, *S = V + (size_t)np * hs + LANES;
    float *inv = S + rows * np, *junk = inv + rows;
    const float *K = k + (size_t)g * hs;
    for (int d = 0; d < hs; d++) {
        float *kr = Kt + (size_t)d * ldk;
        for (int t = 0; t < T; t++) kr[t] = K[(size_t)t * ldkv + d];
        for (int t = T; t < np; t++) kr[t] = 0.0f;
    }
    for (int t = 0; t < T; t++)
        memcpy(V + (size_t)t * hs, v + (size_t)t * ldkv + (size_t)g * hs, (size_t)hs * sizeof *V);
    memset(V + (size_t)T * hs, 0, LANES * sizeof *V);   /* read by the lanes past a narrow head */
    const float *ar[ATT_R];
    float *o[ATT_R], f[ATT_R];
    for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
        int nr = T - r0 < ATT_ROWS ? T - r0 : ATT_ROWS, nc = r0 + nr, ld = round_lanes(nc);
        for (int j = 0; j < ld; j += ATT_W)
            for (int h = 0; h < group; h++)
                for (int i = 0; i < nr; i += ATT_R) {
                    int nb = nr - i < ATT_R ? nr - i : ATT_R, nk = round_lanes(r0 + i + nb);
                    if (j >= nk) continue;
                    for (int r = 0; r < ATT_R; r++) {
                        int ir = i + (r < nb ? r : 0);
                        ar[r] = q + (size_t)(r0 + ir) * ldq + (size_t)(g * group + h) * hs;
                        o[r] = r < nb ? S + ((size_t)h * nr + i + r) * ld + j : junk;
                    }
                    const float *kb = Kt + j;
                    if (j + ATT_W <= nk) att_block(o, ar, kb, (size_t)ldk, hs, true, LANES, false, fs);
                    else att_block(o, ar, kb, (size_t)ldk, hs, false, LANES, false, fs);
                }
        for (int h = 0; h < group; h++)
            softmax_causal_tile(S + (size_t)h * nr * ld, nr, ld, r0, inv + (size_t)h * nr);
        for (int t0 = 0; t0 < nc; t0 += ATT_T)
            for (int h = 0; h < group; h++)
                for (int i = 0; i < nr; i += ATT_R) {
                    int nb = nr - i < ATT_R ? nr - i : ATT_R, n = r0 + i + nb;
                    int tn = n - t0 < ATT_T ? n - t0 : ATT_T;
                    bool last = t0 + ATT_T >= n;
                    if (tn <= 0) continue;
                    for (int r = 0; r < ATT_R; r++) {
                        int ir = i + (r < nb ? r : 0);
                        ar[r] = S + ((size_t)h * nr + ir) * ld + t0;
                        f[r] = inv[(size_t)h * nr + ir];
                    }
                    const float *fl = last ? f : NULL;
                    for (int d = 0, w; d < hs; d += w) {
                        w = hs - d >= ATT_W ? ATT_W : hs - d >= LANES ? LANES : hs - d;
                        float *od = att + (size_t)(r0 + i) * qdim + (size_t)(g * group + h) * hs;
                        od += d;
                        for (int r = 0; r < ATT_R; r++) o[r] = r < nb ? od + (size_t)r * qdim : junk;
                        const float *vb = V + (size_t)t0 * hs + d;
                        if (w == ATT_W) att_block(o, ar, vb, (size_t)hs, tn, true, LANES, t0 > 0, fl);
                        else att_block(o, ar, vb, (size_t)hs, tn, false, w, t0 > 0, fl);
                    }
                }
    }
}

/* ---- attention on AVX-512: a tile's scores transposed ------------------------------------------
 *
 * The same products, softmax and weighted sum as attend_group, with the tile's scores stored
 * key-major, St[key][lane], a lane being one query row of one of up to AX_GH heads of the kv
 * group (16 rows per head). A key is broadcast once for all the heads' rows; the softmax's max
 * and sums run down the keys, one lane per row, with no horizontal reductions, per-row tails or
 * padding; the weighted sum broadcasts AX_VR rows' weights from one line; keys and values are
 * read in place. Every value goes through the same operations in the same order as
 * attend_group's (the sums of each row in 16 phases t % 16, combined as vmath_lanes_sum), so the
 * bits are the same: tests/test_forward.c compares the two. stories3M's eval: attention (with
 * its softmax) from ~14% to ~12.5% of the scoring time, while the rest got faster too. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AX_GH 3                 /* heads per pass: 3 heads x 8 keys = 24 accumulators */
#define AX_L (AX_GH * LANES)    /* lanes of a row of St */
#define AX_KB 8                 /* keys per block of the scores */

/* St[t][hh * 16 + i] = (q_i . k_t) * scale for t < r0 + 16 and the gh heads' transposed queries
 * Qt[d][hh * 16 + i]; keys from kmax on read key kmax - 1 (masked later). */
__attribute__((target("avx512f"), always_inline)) static inline void
ax_scores(int gh, int hs, int r0, int kmax, const float *k, size_t ldk, const float *Qt, float *St,
          float scale) {
    __m512 sc = _mm512_set1_ps(scale);
    for (int t0 = 0; t0 < r0 + LANES; t0 += AX_KB) {
        const float *kr[AX_KB];
        __m512 acc[AX_KB][AX_GH];
        #pragma GCC unroll 8
        for (int j = 0; j < AX_KB; j++) {
            kr[j] = k + (size_t)(t0 + j < kmax ? t0 + j : kmax - 1) * ldk;
            #pragma GCC unroll 3
            for (int h = 0; h < AX_GH; h++)
                if (h < gh) acc[j][h] = _mm512_setzero_ps();
        }
        for (int d = 0; d < hs; d++) {
            __m512 qv[AX_GH];
            #pragma GCC unroll 3
            for (int h = 0; h < AX_GH; h++)
                if (h < gh) qv[h] = _mm512_loadu_ps(Qt + (size_t)d * AX_L + h * LANES);
            #pragma GCC unroll 8
            for (int j = 0; j < AX_KB; j++) {
                __m512 kv = _mm512_set1_ps(kr[j][d]);
                #pragma GCC unroll 3
                for (int h = 0; h < AX_GH; h++)
                    if (h < gh) acc[j][h] = _mm512_fmadd_ps(qv[h], kv, acc[j][h]);
            }
        }
        #pragma GCC unroll 8
        for (int j = 0; j < AX_KB; j++)
            #pragma GCC unroll 3
            for (int h = 0; h < AX_GH; h++)
                if (h < gh) _mm512_storeu_ps(St + (size_t)(t0 + j) * AX_L + h * LANES, _mm512_mul_ps(acc[j][h], sc));
    }
}

/* ax_scores and ax_softmax stay out of line: inlined into attend_group_x they competed with it
 * for registers, and the scores' accumulators or the softmax's max spilled (attention ~10%
 * slower in the profile). */
__attribute__((target("avx512f"), noinline)) static void
ax_scores_gh(int gh, int hs, int r0, int kmax, const float *k, size_t ldk, const float *Qt, float *St,
             float scale) {
    switch (gh) {
    case 1: ax_scores(1, hs, r0, kmax, k, ldk, Qt, St, scale); break;
    case 2: ax_scores(2, hs, r0, kmax, k, ldk, Qt, St, scale); break;
    default: ax_scores(3, hs, r0, kmax, k, ldk, Qt, St, scale); break;
    }
}

/* Causal softmax of the gh heads' lanes of St over keys t < r0 + 16: lane i sees keys t <= r0 + i;
 * St gets e^(s - max), 0 past the diagonal, and inv[lane] 1 / the lane's sum. */
__attribute__((target("avx512f"), noinline)) static void ax_softmax(float *St, int gh, int r0, float *mxs,
                                                                     float *inv) {
    /* The max over the keys before the tile, which all its rows see: four chains (a max is the
     * same in any order; r0 is a multiple of 16). */
    for (int h = 0; h < gh; h++) {
        __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
        const float *s = St + h * LANES;
        for (int t = 0; t < r0; t += 4, s += 4 * AX_L) {
            m0 = _mm512_max_ps(m0, _mm512_loadu_ps(s));
            m1 = _mm512_max_ps(m1, _mm512_loadu_ps(s + AX_L));
            m2 = _mm512_max_ps(m2, _mm512_loadu_ps(s + 2 * AX_L));
            m3 = _mm512_max_ps(m3, _mm512_loadu_ps(s + 3 * AX_L));
        }
        _mm512_storeu_ps(mxs + h * LANES, _mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
    }
    for (int h = 0; h < gh; h++) {
        float *mx = mxs + h * LANES, acc[LANES][LANES];   /* acc[t % 16][lane]: softmax_causal_tile's lanes */
        for (int t = r0; t < r0 + LANES; t++) {
            const float *s = St + (size_t)t * AX_L + h * LANES;
            #pragma omp simd
            for (int l = 0; l < LANES; l++) mx[l] = t <= r0 + l && s[l] > mx[l] ? s[l] : mx[l];
        }
        memset(acc, 0, sizeof acc);
        for (int t0 = 0; t0 < r0; t0 += LANES)
            for (int p = 0; p < LANES; p++) {
                float *s = St + (size_t)(t0 + p) * AX_L + h * LANES, *a = acc[p];
                #pragma omp simd
                for (int l = 0; l < LANES; l++) {
                    float e = vmath_exp_neg(s[l] - mx[l]);
                    s[l] = e;
                    a[l] += e;
                }
            }
        for (int p = 0; p < LANES; p++) {
            float *s = St + (size_t)(r0 + p) * AX_L + h * LANES, *a = acc[p];
            #pragma omp simd
            for (int l = 0; l < LANES; l++) {
                float e = p <= l ? vmath_exp_neg(s[l] - mx[l]) : 0.0f;
                s[l] = e;
                a[l] += e;
            }
        }
        #pragma omp simd
        for (int l = 0; l < LANES; l++) {
            float b0 = acc[0][l] + acc[8][l], b1 = acc[1][l] + acc[9][l], b2 = acc[2][l] + acc[10][l];
            float b3 = acc[3][l] + acc[11][l], b4 = acc[4][l] + acc[12][l], b5 = acc[5][l] + acc[13][l];
            float b6 = acc[6][l] + acc[14][l], b7 = acc[7][l] + acc[15][l];
            float c0 = b0 + b4, c1 = b1 + b5, c2 = b2 + b6, c3 = b3 + b7;
            inv[h * LANES + l] = 1.0f / ((c0 + c2) + (c1 + c3));
        }
    }
}

/* out_r[d + j] = inv[lane0 + r] * sum over t < nt of St[t][lane0 + r] v_t[j], t in order, for
 * the AX_VR lanes from lane0 (rows of any of the pass's heads: they share v) and j < 16 or 32
 * (two); v's rows ldv apart; lanes with no out_r are computed and dropped. */
#define AX_VR 12    /* 12 rows x 2 vectors = 24 accumulators */
__attribute__((target("avx512f"), always_inline)) static inline void
ax_values(bool two, const float *St, int lane0, int nt, const float *v, size_t ldv, const float *inv,
          float *const *out, int d) {
    __m512 a0[AX_VR], a1[AX_VR];
    #pragma GCC unroll 12
    for (int r = 0; r < AX_VR; r++) a0[r] = a1[r] = _mm512_setzero_ps();
    const float *p = St + lane0;
    for (int t = 0; t < nt; t++, p += AX_L, v += ldv) {
        __m512 v0 = _mm512_loadu_ps(v), v1 = two ? _mm512_loadu_ps(v + LANES) : v0;
        #pragma GCC unroll 12
        for (int r = 0; r < AX_VR; r++) {
            __m512 w = _mm512_set1_ps(p[r]);
            a0[r] = _mm512_fmadd_ps(w, v0, a0[r]);
            if (two) a1[r] = _mm512_fmadd_ps(w, v1, a1[r]);
        }
    }
    #pragma GCC unroll 12
    for (int r = 0; r < AX_VR; r++)
        if (out[r]) {
            __m512 f = _mm512_set1_ps(inv[lane0 + r]);
            _mm512_storeu_ps(out[r] + d, _mm512_mul_ps(a0[r], f));
            if (two) _mm512_storeu_ps(out[r] + d + LANES, _mm512_mul_ps(a1[r], f));
        }
}

/* attend_group's result for heads of 16k floats. */
__attribute__((target("avx512f"))) static void attend_group_x(const model *m, int T, int g, const float *q,
                                                              size_t ldq, const float *k, const float *v,
                                                              size_t ldkv, float *att, float *work) {
    const model_config *c = &m->cfg;
    int hs = c->head_size, qdim = c->n_heads * hs, group = c->n_heads / c->n_kv_heads;
    float scale = 1.0f / sqrtf((float)hs);
    float *St = work, *Qt = St + (size_t)round_lanes(T) * AX_L, *inv = Qt + (size_t)hs * AX_L;
    float *mx = inv + AX_L;
    const float *K = k + (size_t)g * hs, *V = v + (size_t)g * hs;
    for (int r0 = 0; r0 < T; r0 += LANES) {
        int nr = T - r0 < LANES ? T - r0 : LANES;
        for (int h0 = 0; h0 < group; h0 += AX_GH) {
            int gh = group - h0 < AX_GH ? group - h0 : AX_GH;
            for (int h = 0; h < gh; h++) {
                const float *qh = q + (size_t)r0 * ldq + (size_t)(g * group + h0 + h) * hs;
                float *qt = Qt + h * LANES;
                if (nr == LANES)
                    for (int d = 0; d < hs; d += LANES) blas_transpose16(qh + d, ldq, qt + (size_t)d * AX_L, AX_L);
                else
                    for (int d = 0; d < hs; d++)
                        for (int i = 0; i < LANES; i++) qt[(size_t)d * AX_L + i] = i < nr ? qh[(size_t)i * ldq + d] : 0.0f;
            }
            ax_scores_gh(gh, hs, r0, T, K, ldkv, Qt, St, scale);
            ax_softmax(St, gh, r0, mx, inv);
            /* Blocks of AX_VR lanes, across heads; a block's keys end at its last row's diagonal
             * (past a row's own, its weights are exact zeros). */
            for (int l0 = 0; l0 < gh * LANES; l0 += AX_VR) {
                float *out[AX_VR];
                int nt = 0;
                for (int r = 0; r < AX_VR; r++) {
                    int l = l0 + r, i = l % LANES;
                    bool row = l < gh * LANES && i < nr;
                    out[r] = row ? att + (size_t)(r0 + i) * qdim + (size_t)(g * group + h0 + l / LANES) * hs : NULL;
                    if (row && r0 + i + 1 > nt) nt = r0 + i + 1;
                }
                for (int d = 0; d < hs; d += 2 * LANES) {
                    if (hs - d >= 2 * LANES) ax_values(true, St, l0, nt, V + d, ldkv, inv, out, d);
                    else ax_values(false, St, l0, nt, V + d, ldkv, inv, out, d);
                }
            }
        }
    }
}

/* A tile's transposed scores (up to round_lanes(maxT) keys), its transposed queries, inv and mx. */
static size_t ax_scratch_floats(const model *m, int maxT) {
    return ((size_t)round_lanes(maxT) + (size_t)m->cfg.head_size + 2) * AX_L;
}

static bool ax_available(const model *m) {
    return m->cfg.head_size % LANES == 0 && __builtin_cpu_supports("avx512f");
}
#else
static size_t ax_scratch_floats(const model *m, int maxT) { (void)m, (void)maxT; return 0; }
static bool ax_available(const model *m) { (void)m; return false; }
static void attend_group_x(const model *m, int T, int g, const float *q, size_t ldq, const float *k,
                           const float *v, size_t ldkv, float *att, float *work) {
    (void)m, (void)T, (void)g, (void)q, (void)ldq, (void)k, (void)v, (void)ldkv, (void)att, (void)work;
}
#endif

static void attention(const model *m, const fwd_batch *b, const int *offs, const float *q, size_t ldq,
                      const float *k, const float *v, size_t ldkv, float *att, float *scratch, int maxT,
                      bool portable) {
    const model_config *c = &m->cfg;
    int qdim = c->n_heads * c->head_size;
    int jobs = b->n_seq * c->n_kv_heads;
    size_t per = fwd_att_scratch_floats(m, maxT);
    bool x = !portable && ax_available(m);
    #pragma omp parallel for schedule(dynamic, 1) if (jobs > 1 && !omp_in_parallel())
    for (int job = 0; job < jobs; job++) {
        int sq = job / c->n_kv_heads, g = job % c->n_kv_heads;
        size_t off = (size_t)offs[sq];
        float *work = scratch + (size_t)omp_get_thread_num() * per;
        if (x)
            attend_group_x(m, b->lens[sq], g, q + off * ldq, ldq, k + off * ldkv, v + off * ldkv, ldkv,
                           att + off * qdim, work);
        else
            attend_group(m, b->lens[sq], g, q + off * ldq, ldq, k + off * ldkv, v + off * ldkv, ldkv,
                         att + off * qdim, work);
    }
}

void fwd_attention(const model *m, const fwd_batch *b, const int *offs, const float *q, size_t ldq,
                   const float *k, const float *v, size_t ldkv, float *att, float *scratch, int maxT) {
    attention(m, b, offs, q, ldq, k, v, ldkv, att, scratch, maxT, false);
}

void fwd_attention_portable(const model *m, const fwd_batch *b, const int *offs, const float *q, size_t ldq,
                            const float *k, const float *v, size_t ldkv, float *att, float *scratch,
                            int maxT) {
    attention(m, b, offs, q, ldq, k, v, ldkv, att, scratch, maxT, true);
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
    bool         whole;  /* every block's linears are in `in`                                 */
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
            blas_packed **at = &p->in[l * p->n_in + in];
            if (in == m->fam->gated_input && n == 2 && rows[0] == rows[1])
                *at = blas_pack_gated(w[0], w[1], rows[0], cols);
            else if (n > 0)
                *at = blas_pack(w, rows, n, cols);
            ok = n == 0 || *at != NULL;
        }
    const float *wc = m->wcls;
    int vocab = c->vocab_size;
    if (ok && forward_head_splits(m)) ok = (p->head = blas_pack(&wc, &vocab, 1, c->dim)) != NULL;
    if (!ok) {
        forward_packs_free(p);
        return NULL;
    }
    p->whole = m->fam->linear_in;
    return p;
}

bool forward_packs_whole(const fwd_packs *p) { return p && p->whole; }

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

bool fwd_gated_in(const model *m, fwd_scratch *s, int layer, int in, const float *x, int ldx, int n,
                  blas_gate_fn act, float *h, int ldh) {
    if (!s->packs || in != m->fam->gated_input || !s->packs->in[layer * s->packs->n_in + in]) return false;
    blas_gated_packed(x, ldx, s->packs->in[layer * s->packs->n_in + in], act, h, ldh, n);
    return true;
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
