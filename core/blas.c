#include "blas.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Below this many multiply-adds a split costs more in thread wake-up than it saves. */
#define SPLIT_MIN_FLOPS (1L << 18)

/* OpenBLAS starts with one thread per core, and a threaded SSYRK or GEMM sums in another order
 * than a single-threaded one: a process whose first compression ran before anything called
 * blas_set_threads gave other bits than every later one. OpenBLAS is made single-threaded at
 * load, so results never depend on what the process ran before (blas_wide_begin widens it). */
__attribute__((constructor)) static void blas_single_threaded_at_load(void) {
    openblas_set_num_threads(1);
}

void blas_set_threads(int n) {
    openblas_set_num_threads(1);
    if (n > 0) omp_set_num_threads(n);
}

int blas_threads(void) {
    return omp_get_max_threads();
}

/* ---- the forward pass's GEMM on AVX-512 ------------------------------------------------------
 *
 * y = x W^T (+ y) with x [M][K] row-major and W [N][K] as stored, K <= LIN_MAX_K: every linear
 * layer of models up to dim 1024 and the classifier. At these sizes OpenBLAS spends a third of
 * the time outside its kernel: it packs both operands on every call and zeroes y first for
 * beta = 0 (stories3M's eval: 62% kernel, 9.5% packing, 3% memset). Here only W is packed, into
 * panels of LIN_NR columns, once per call or once for good (blas_pack: an evaluation's weights);
 * rows of x are broadcast straight from memory, which is cheap while a few rows of K floats
 * stay in L1; y is written once, or added to. A row's
 * K-sum runs in fixed blocks of k, whatever M, the row's place in x and the thread count, so
 * the result of a row depends on that row and W alone (the eval's bits do not depend on how
 * sequences are grouped). Bigger K goes to OpenBLAS, which packs x as it must there. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define LIN_MR 12          /* rows of x per kernel call: 24 accumulators in zmm registers */
#define LIN_NR 32          /* columns of W per panel: two zmm vectors                      */
#define LIN_KC 256         /* k per block: a packed panel of LIN_KC x LIN_NR floats is 32 KB */
#define LIN_NC 512         /* columns packed at once: 512 KB, in L2                         */
#define LIN_MC 480         /* rows of x per sweep over the panels: their block stays in L2   */
#define LIN_MAX_K 1024
_Static_assert(LIN_NR == BLAS_PACK_COLS, "packed column ranges start on whole panels");

/* c[mr][cols] (+)= x[mr][kc] . wp[kc][LIN_NR], the columns past cols masked off. Inlined with a
 * constant mr so the accumulators are registers. */
__attribute__((target("avx512f,prfchw"), always_inline)) static inline void
lin_tile(int mr, int kc, const float *x, size_t ldx, const float *wp, float *c, size_t ldc,
         __mmask16 m0, __mmask16 m1, bool add) {
    __m512 a0[LIN_MR], a1[LIN_MR];
    #pragma GCC unroll 12
    for (int i = 0; i < LIN_MR; i++)
        if (i < mr) a0[i] = a1[i] = _mm512_setzero_ps();
    /* y's lines are asked for with intent to write before the k loop: they are written once,
     * at the end, and a task's outputs (1-4 MB) are past L2, so each store would otherwise wait
     * for its line to be read in (forward's GEMM sequence: +5%). */
    #pragma GCC unroll 12
    for (int i = 0; i < LIN_MR; i++)
        if (i < mr) {
            __builtin_prefetch(c + (size_t)i * ldc, 1, 3);
            __builtin_prefetch(c + (size_t)i * ldc + 16, 1, 3);
        }
    for (int k = 0; k < kc; k++) {
        __m512 w0 = _mm512_load_ps(wp + (size_t)k * LIN_NR);
        __m512 w1 = _mm512_load_ps(wp + (size_t)k * LIN_NR + 16);
        #pragma GCC unroll 12
        for (int i = 0; i < LIN_MR; i++)
            if (i < mr) {
                __m512 xi = _mm512_set1_ps(x[(size_t)i * ldx + k]);
                a0[i] = _mm512_fmadd_ps(xi, w0, a0[i]);
                a1[i] = _mm512_fmadd_ps(xi, w1, a1[i]);
            }
    }
    #pragma GCC unroll 12
    for (int i = 0; i < LIN_MR; i++)
        if (i < mr) {
            float *ci = c + (size_t)i * ldc;
            if (add) {
                a0[i] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, ci), a0[i]);
                a1[i] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, ci + 16), a1[i]);
            }
            _mm512_mask_storeu_ps(ci, m0, a0[i]);
            _mm512_mask_storeu_ps(ci + 16, m1, a1[i]);
        }
}

__attribute__((target("avx512f,prfchw"))) static void
lin_tile_rows(int mr, int kc, const float *x, size_t ldx, const float *wp, float *c, size_t ldc,
              __mmask16 m0, __mmask16 m1, bool add) {
    switch (mr) {
#define LIN_TILE(n) case n: lin_tile(n, kc, x, ldx, wp, c, ldc, m0, m1, add); break;
    LIN_TILE(1) LIN_TILE(2) LIN_TILE(3) LIN_TILE(4) LIN_TILE(5) LIN_TILE(6)
    LIN_TILE(7) LIN_TILE(8) LIN_TILE(9) LIN_TILE(10) LIN_TILE(11) LIN_TILE(12)
#undef LIN_TILE
    }
}

/* d[k * ldd + c] = s[c * lds + k] for a 16 x 16 block: in-register transpose. */
__attribute__((target("avx512f"))) void blas_transpose16(const float *s, size_t lds, float *d,
                                                         size_t ldd) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) {
        r[i] = _mm512_loadu_ps(s + (size_t)i * lds);
        _mm_prefetch((const char *)(s + (size_t)i * lds + 64), _MM_HINT_T0);
    }
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* r[4i + j]: in 128-bit lane L, rows 4i .. 4i+3 of column k = 4L + j. */
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int j = 0; j < 4; j++) {
        __m512 a0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88), a1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
        __m512 b0 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88), b1 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
        _mm512_storeu_ps(d + (size_t)j * ldd, _mm512_shuffle_f32x4(a0, b0, 0x88));
        _mm512_storeu_ps(d + (size_t)(4 + j) * ldd, _mm512_shuffle_f32x4(a1, b1, 0x88));
        _mm512_storeu_ps(d + (size_t)(8 + j) * ldd, _mm512_shuffle_f32x4(a0, b0, 0xdd));
        _mm512_storeu_ps(d + (size_t)(12 + j) * ldd, _mm512_shuffle_f32x4(a1, b1, 0xdd));
    }
}

/* wp[panel][k][LIN_NR] = W[panel * LIN_NR + col][k] for nc rows of W and kc of k; the columns
 * of the last panel past nc are zero. Whole 16 x 16 blocks are transposed in registers, the
 * edges element by element. */
__attribute__((target("avx512f"))) static void lin_pack(const float *W, size_t ldw, int nc, int kc,
                                                        float *wp) {
    for (int p = 0; p * LIN_NR < nc; p++) {
        float *d = wp + (size_t)p * kc * LIN_NR;
        const float *s = W + (size_t)p * LIN_NR * ldw;
        int cols = nc - p * LIN_NR < LIN_NR ? nc - p * LIN_NR : LIN_NR;
        int c16 = cols / 16 * 16, k16 = kc / 16 * 16;
        for (int c = 0; c < c16; c += 16)
            for (int k = 0; k < k16; k += 16)
                blas_transpose16(s + (size_t)c * ldw + k, ldw, d + (size_t)k * LIN_NR + c, LIN_NR);
        for (int k = 0; k < kc; k++) {
            float *dk = d + (size_t)k * LIN_NR;
            for (int col = k < k16 ? c16 : 0; col < cols; col++) dk[col] = s[(size_t)col * ldw + k];
            for (int col = cols; col < LIN_NR; col++) dk[col] = 0.0f;
        }
    }
}

/* y[M][ncol] (+)= x[M][kc] . panels[kc][ncol] for one block of k: the panels (LIN_NR columns
 * each, kc x LIN_NR floats apart) hold ncol columns. Rows in blocks of LIN_MC so that block of x
 * stays in L2 while each panel, in L1, meets all of its rows. */
__attribute__((target("avx512f"))) static void
lin_panels(int M, int ncol, int kc, const float *x, size_t ldx, const float *panels, bool add,
           float *y, size_t ldy) {
    for (int ic = 0; ic < M; ic += LIN_MC) {
        int mc = M - ic < LIN_MC ? M - ic : LIN_MC;
        for (int jr = 0; jr < ncol; jr += LIN_NR) {
            int cols = ncol - jr < LIN_NR ? ncol - jr : LIN_NR;
            __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
            __mmask16 m1 = cols >= 32   ? 0xffff
                           : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1)
                                       : 0;
            const float *panel = panels + (size_t)(jr / LIN_NR) * kc * LIN_NR;
            for (int ir = 0; ir < mc; ir += LIN_MR) {
                int mr = mc - ir < LIN_MR ? mc - ir : LIN_MR;
                size_t row = (size_t)(ic + ir);
                lin_tile_rows(mr, kc, x + row * ldx, ldx, panel, y + row * ldy + jr, ldy, m0, m1, add);
            }
        }
    }
}

/* K split into equal blocks of at most LIN_KC, so no block is a short remainder; the packed and
 * the per-call paths block alike, so they give the same bits. */
static int lin_kblock(int K) {
    int nkb = (K + LIN_KC - 1) / LIN_KC;
    return (K + nkb - 1) / nkb;
}

/* False (nothing written) when out of memory: the caller falls back to OpenBLAS. */
__attribute__((target("avx512f"))) static bool
lin_gemm(int M, int N, int K, const float *x, int ldx, const float *W, int ldw, bool add, float *y,
         int ldy) {
    int kb = lin_kblock(K), ncmax = N < LIN_NC ? N : LIN_NC;
    size_t panels = (size_t)(ncmax + LIN_NR - 1) / LIN_NR;
    float *wp = aligned_alloc(64, panels * (size_t)kb * LIN_NR * sizeof(float));
    if (!wp) return false;
    for (int pc = 0; pc < K; pc += kb) {
        int kc = K - pc < kb ? K - pc : kb;
        for (int jc = 0; jc < N; jc += LIN_NC) {
            int nc = N - jc < LIN_NC ? N - jc : LIN_NC;
            lin_pack(W + (size_t)jc * ldw + pc, (size_t)ldw, nc, kc, wp);
            lin_panels(M, nc, kc, x + pc, (size_t)ldx, wp, add || pc > 0, y + jc, (size_t)ldy);
        }
    }
    free(wp);
    return true;
}

static bool lin_available(int K) {
    return K > 0 && K <= LIN_MAX_K && __builtin_cpu_supports("avx512f");
}
#define LIN_ALIGN LIN_NR
#else
#define LIN_ALIGN 1
static bool lin_available(int K) {
    (void)K;
    return false;
}
static bool lin_gemm(int M, int N, int K, const float *x, int ldx, const float *W, int ldw, bool add,
                     float *y, int ldy) {
    (void)M, (void)N, (void)K, (void)x, (void)ldx, (void)W, (void)ldw, (void)add, (void)y, (void)ldy;
    return false;
}
#endif

/* One call's operands, for the row splitting below. */
typedef struct {
    bool ta, tb;
    int N, K;
    float alpha, beta;
    const float *A, *B;
    int lda, ldb, ldc;
    float *C;
    const blas_packed *P;   /* blas_linear_packed: P instead of B ... */
    int col0;               /* ... from its column col0 */
    blas_gate_fn act;       /* blas_gated_packed */
} gemm_args;

static void gemm_rows(const gemm_args *g, int i0, int i1);

/* Rows i0 .. i1-1 of each call on its own thread, when called outside a parallel region and the
 * product is large enough to pay for waking threads; every row's result is the same either way. */
static void split_rows(const gemm_args *g, int M) {
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    long work = (long)M * g->N * (g->K > 0 ? g->K : 1);
    if (nt <= 1 || work < SPLIT_MIN_FLOPS || M < 2 * nt) {
        gemm_rows(g, 0, M);
        return;
    }
    #pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        /* Chunks are multiples of 8 rows so kernels see aligned tiles. */
        int chunk = ((M + n - 1) / n + 7) & ~7;
        int i0 = t * chunk, i1 = i0 + chunk < M ? i0 + chunk : M;
        if (i0 < i1) gemm_rows(g, i0, i1);
    }
}

/* ---- weights packed once --------------------------------------------------------------------- */

struct blas_packed {
    int N, K, kb;
    size_t npad;   /* N rounded up to whole panels */
    float *wp;     /* per block of kb k's (the last may be shorter): npad / LIN_NR panels */
    int gated;     /* blas_pack_gated: the pair's rows; each panel is 16 gate rows, then the
                      same 16 rows of up (N = npad, zero rows past the end) */
};

#if LIN_ALIGN > 1
/* all[N][K] (freed here) packed; NULL when out of memory. */
static blas_packed *pack_rows(float *all, int N, int K) {
    blas_packed *p = all ? calloc(1, sizeof *p) : NULL;
    size_t npad = (size_t)(N + LIN_NR - 1) / LIN_NR * LIN_NR;
    float *wp = p ? aligned_alloc(64, npad * (size_t)K * sizeof(float)) : NULL;
    if (!wp) {
        free(all);
        free(p);
        return NULL;
    }
    *p = (blas_packed){N, K, lin_kblock(K), npad, wp, 0};
    for (int pc = 0; pc < K; pc += p->kb) {
        int kc = K - pc < p->kb ? K - pc : p->kb;
        lin_pack(all + pc, (size_t)K, N, kc, p->wp + (size_t)pc * npad);
    }
    free(all);
    return p;
}

blas_packed *blas_pack(const float *const *W, const int *rows, int nw, int K) {
    int N = 0;
    for (int i = 0; i < nw; i++) N += rows[i];
    if (N <= 0 || !lin_available(K)) return NULL;
    float *all = malloc((size_t)N * K * sizeof(float));
    for (int i = 0, r = 0; all && i < nw; r += rows[i], i++)
        memcpy(all + (size_t)r * K, W[i], (size_t)rows[i] * K * sizeof(float));
    return pack_rows(all, N, K);
}

blas_packed *blas_pack_gated(const float *Wg, const float *Wu, int rows, int K) {
    if (rows <= 0 || !lin_available(K)) return NULL;
    int half = LIN_NR / 2, N = (rows + half - 1) / half * LIN_NR;
    float *all = calloc((size_t)N * K, sizeof(float));
    for (int r = 0; all && r < rows; r++) {
        size_t at = (size_t)(r / half) * LIN_NR + r % half;
        memcpy(all + at * K, Wg + (size_t)r * K, (size_t)K * sizeof(float));
        memcpy(all + (at + half) * K, Wu + (size_t)r * K, (size_t)K * sizeof(float));
    }
    blas_packed *p = pack_rows(all, N, K);
    if (p) p->gated = rows;
    return p;
}

/* h = act(x Wg^T, x Wu^T) for rows i0 .. i1-1: per tile of rows and panel, gate and up summed
 * into a tile on the stack exactly as blas_gemm sums into y (block by block of k), then act. */
static void gated_rows(const gemm_args *g, int i0, int i1) {
    const blas_packed *p = g->P;
    int half = LIN_NR / 2;
    _Alignas(64) float tile[LIN_MR * LIN_NR];
    for (int ic = i0; ic < i1; ic += LIN_MC) {
        int mc = i1 - ic < LIN_MC ? i1 - ic : LIN_MC;
        for (int j = 0; j < p->gated; j += half) {
            int cnt = p->gated - j < half ? p->gated - j : half;
            for (int ir = 0; ir < mc; ir += LIN_MR) {
                int mr = mc - ir < LIN_MR ? mc - ir : LIN_MR;
                size_t row = (size_t)(ic + ir);
                for (int pc = 0; pc < p->K; pc += p->kb) {
                    int kc = p->K - pc < p->kb ? p->K - pc : p->kb;
                    const float *panel = p->wp + (size_t)pc * p->npad + (size_t)(j / half) * kc * LIN_NR;
                    lin_tile_rows(mr, kc, g->A + row * g->lda + pc, (size_t)g->lda, panel, tile, LIN_NR,
                                  0xffff, 0xffff, pc > 0);
                }
                g->act(g->C + row * g->ldc + j, g->ldc, tile, tile + half, LIN_NR, mr, cnt);
            }
        }
    }
}

static void packed_rows(const gemm_args *g, int i0, int i1) {
    const blas_packed *p = g->P;
    for (int pc = 0; pc < p->K; pc += p->kb) {
        int kc = p->K - pc < p->kb ? p->K - pc : p->kb;
        const float *panels = p->wp + (size_t)pc * p->npad + (size_t)(g->col0 / LIN_NR) * kc * LIN_NR;
        lin_panels(i1 - i0, g->N, kc, g->A + (size_t)i0 * g->lda + pc, (size_t)g->lda, panels,
                   g->beta == 1.0f || pc > 0, g->C + (size_t)i0 * g->ldc, (size_t)g->ldc);
    }
}
#else
blas_packed *blas_pack(const float *const *W, const int *rows, int nw, int K) {
    (void)W, (void)rows, (void)nw, (void)K;
    return NULL;
}

blas_packed *blas_pack_gated(const float *Wg, const float *Wu, int rows, int K) {
    (void)Wg, (void)Wu, (void)rows, (void)K;
    return NULL;
}

static void packed_rows(const gemm_args *g, int i0, int i1) {
    (void)g, (void)i0, (void)i1;
}

static void gated_rows(const gemm_args *g, int i0, int i1) {
    (void)g, (void)i0, (void)i1;
}
#endif

void blas_packed_free(blas_packed *p) {
    if (!p) return;
    free(p->wp);
    free(p);
}

void blas_linear_packed(const float *x, int ldx, const blas_packed *W, int col0, int ncol, float *y,
                        int ldy, int n, bool add) {
    if (n <= 0 || ncol <= 0) return;
    gemm_args g = {.N = ncol, .K = W->K, .beta = add ? 1.0f : 0.0f, .A = x, .lda = ldx, .C = y,
                   .ldc = ldy, .P = W, .col0 = col0};
    split_rows(&g, n);
}

void blas_gated_packed(const float *x, int ldx, const blas_packed *W, blas_gate_fn act, float *h, int ldh,
                       int n) {
    if (n <= 0) return;
    gemm_args g = {.N = 2 * W->gated, .K = W->K, .A = x, .lda = ldx, .C = h, .ldc = ldh, .P = W, .act = act};
    split_rows(&g, n);
}

/* ---- calls ------------------------------------------------------------------------------------ */

static void gemm_rows(const gemm_args *g, int i0, int i1) {
    if (g->P) {
        if (g->act) gated_rows(g, i0, i1);
        else packed_rows(g, i0, i1);
        return;
    }
    int M = i1 - i0;
    const float *A = g->ta ? g->A + i0 : g->A + (size_t)i0 * g->lda;
    float *C = g->C + (size_t)i0 * g->ldc;
    if (!g->ta && g->tb && g->alpha == 1.0f && (g->beta == 0.0f || g->beta == 1.0f) &&
        lin_available(g->K) && lin_gemm(M, g->N, g->K, A, g->lda, g->B, g->ldb, g->beta == 1.0f, C, g->ldc))
        return;
    cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, M,
                g->N, g->K, g->alpha, A, g->lda, g->B, g->ldb, g->beta, C, g->ldc);
}

void blas_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    gemm_args g = {ta, tb, N, K, alpha, beta, A, B, lda, ldb, ldc, C, NULL, 0, NULL};
    split_rows(&g, M);
}

void blas_linear(const float *x, const float *W, float *y, int n, int in, int out) {
    blas_gemm(false, true, n, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
}

void blas_wide_begin(void) {
    if (!omp_in_parallel()) openblas_set_num_threads(omp_get_max_threads());
}

void blas_wide_end(void) {
    openblas_set_num_threads(1);
}
