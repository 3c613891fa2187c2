/* Mamba (Hugging Face MambaForCausalLM: state-spaces/mamba-130m-hf ... 2.8b-hf): RMSNorm, then
 * the selective state-space mixer: in_proj (x and gate z), a causal depthwise conv1d, SiLU,
 * x_proj (dt, B, C), dt_proj + softplus, the selective scan with A = -exp(A_log), + D x, times
 * SiLU(z), out_proj, residual; a final RMSNorm and the head tied to the embedding. Its tables,
 * config.json, the batched forward pass (the scan sequential in time, vectorised over channels,
 * threaded over sequences and channel chunks) and the recurrent single-token path, written from
 * transformers' modeling_mamba.py (slow_forward and the cache step). */
#include "family.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "clock.h"
#include "forward_ops.h"

/* Mamba has no position table, so no context limit of its own: the state-spaces checkpoints
 * were trained on sequences of 2048 tokens, which sparq takes as the context (eval's default
 * seqlen, generation's limit). */
#define MAMBA_CONTEXT 2048
/* The scan's channels per task: a multiple of LANES; a chunk's state ([state][chunk] floats,
 * 64 KB at state 16) stays in L2 while the chunk runs through the sequence. */
#define SCAN_CHUNK 256

enum { IN_IN, IN_X, IN_DT, IN_OUT };

/* True-sequential stages follow the data: in_proj -> x_proj -> dt_proj -> out_proj. */
static const family_linear linears[] = {
    [MAMBA_IN] = {"in_proj", SZ_HIDDEN2, SZ_DIM, IN_IN, 0, false},
    [MAMBA_X] = {"x_proj", SZ_XPROJ, SZ_HIDDEN, IN_X, 1, false},
    [MAMBA_DT] = {"dt_proj", SZ_HIDDEN, SZ_DTRANK, IN_DT, 2, true},
    [MAMBA_OUT] = {"out_proj", SZ_DIM, SZ_HIDDEN, IN_OUT, 3, false},
};

/* in_proj reads the normed residual (one Hessian for its x and z halves), x_proj the SiLU'd
 * convolution output, dt_proj the dt slice of x_proj's output, out_proj y * SiLU(z). */
static const size_kind inputs[] = {[IN_IN] = SZ_DIM, [IN_X] = SZ_HIDDEN, [IN_DT] = SZ_DTRANK,
                                   [IN_OUT] = SZ_HIDDEN};

#define L_ "backbone.layers.%d."
static const family_tensor tensors[] = {
    {SLOT_EMBED, 0, SZ_VOCAB, SZ_EMBED, "backbone.embeddings.weight", NULL, 0},
    {SLOT_PARAM, MAMBA_NORM, SZ_DIM, SZ_ONE, L_ "norm.weight", NULL, 0},
    {SLOT_WEIGHT, MAMBA_IN, SZ_HIDDEN2, SZ_DIM, L_ "mixer.in_proj.weight", NULL, 0},
    {SLOT_BIAS, MAMBA_IN, SZ_HIDDEN2_BIAS, SZ_ONE, L_ "mixer.in_proj.bias", NULL, 0},
    {SLOT_PARAM, MAMBA_CONV_W, SZ_HIDDEN, SZ_CONV, L_ "mixer.conv1d.weight", NULL, TL_DEPTHWISE},
    {SLOT_PARAM, MAMBA_CONV_B, SZ_CONV_BIAS, SZ_ONE, L_ "mixer.conv1d.bias", NULL, 0},
    {SLOT_WEIGHT, MAMBA_X, SZ_XPROJ, SZ_HIDDEN, L_ "mixer.x_proj.weight", NULL, 0},
    {SLOT_WEIGHT, MAMBA_DT, SZ_HIDDEN, SZ_DTRANK, L_ "mixer.dt_proj.weight", NULL, 0},
    {SLOT_BIAS, MAMBA_DT, SZ_HIDDEN, SZ_ONE, L_ "mixer.dt_proj.bias", NULL, 0},
    {SLOT_PARAM, MAMBA_A_LOG, SZ_HIDDEN, SZ_STATE, L_ "mixer.A_log", NULL, 0},
    {SLOT_PARAM, MAMBA_D, SZ_HIDDEN, SZ_ONE, L_ "mixer.D", NULL, 0},
    {SLOT_WEIGHT, MAMBA_OUT, SZ_DIM, SZ_HIDDEN, L_ "mixer.out_proj.weight", NULL, 0},
    {SLOT_BIAS, MAMBA_OUT, SZ_DIM_BIAS, SZ_ONE, L_ "mixer.out_proj.bias", NULL, 0},
    {SLOT_GLOBAL, MAMBA_FINAL_NORM, SZ_DIM, SZ_ONE, "backbone.norm_f.weight", NULL, 0},
    {SLOT_HEAD, 0, SZ_VOCAB, SZ_EMBED, "lm_head.weight", NULL, 0},
};
#undef L_

/* ---- config.json ------------------------------------------------------------------------- */

/* A boolean the file must state: transformers' MambaConfig and mamba_ssm disagree on the
 * default of use_bias, so a missing key is refused rather than guessed. */
static int cfg_required_bool(const cJSON *j, const char *key, bool *out, const char *path, err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v)
        return err_set(e, SPARQ_EINPUT, "%s: %s is missing (transformers and mamba_ssm default it "
                       "differently, so it must be given)", path, key);
    if (!cJSON_IsBool(v)) return err_set(e, SPARQ_EINPUT, "%s: %s is not true or false", path, key);
    *out = cJSON_IsTrue(v);
    return SPARQ_OK;
}

/* intermediate_size when given (transformers keeps the stored value), else expand * hidden. */
static int cfg_inner(const cJSON *j, model_config *c, const char *path, err *e) {
    if (cJSON_GetObjectItemCaseSensitive(j, "intermediate_size"))
        return json_cfg_int(j, "intermediate_size", -1, &c->hidden_dim, path, e);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "expand");
    if (!v) return err_set(e, SPARQ_EINPUT, "%s: intermediate_size and expand are both missing", path);
    double w = cJSON_IsNumber(v) ? v->valuedouble * c->dim : -1;
    if (!(w >= 1 && w <= (1 << 24)) || w != floor(w))
        return err_set(e, SPARQ_EINPUT, "%s: expand x hidden_size is not an integer in [1, 16777216]", path);
    c->hidden_dim = (int)w;
    return SPARQ_OK;
}

/* time_step_rank: an integer, or "auto" = ceil(hidden_size / 16) (both libraries' default). */
static int cfg_dt_rank(const cJSON *j, model_config *c, const char *path, err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "time_step_rank");
    if (!v || (cJSON_IsString(v) && strcmp(v->valuestring, "auto") == 0)) {
        c->dt_rank = (c->dim + 15) / 16;
        return SPARQ_OK;
    }
    if (cJSON_IsString(v))
        return err_set(e, SPARQ_EINPUT, "%s: time_step_rank is \"%s\"; expected an integer or \"auto\"",
                       path, v->valuestring);
    return json_cfg_int(j, "time_step_rank", -1, &c->dt_rank, path, e);
}

static int mamba_config_read(const cJSON *j, model_config *c, bool *tied, const char *path, err *e) {
    *c = (model_config){0};
    c->family = &family_mamba;
    int rc = json_cfg_int(j, "hidden_size", -1, &c->dim, path, e);
    if (!rc) rc = json_cfg_int(j, "num_hidden_layers", -1, &c->n_layers, path, e);
    if (!rc) rc = json_cfg_int(j, "vocab_size", -1, &c->vocab_size, path, e);
    if (!rc) rc = json_cfg_int(j, "state_size", -1, &c->state_size, path, e);
    if (!rc) rc = json_cfg_int(j, "conv_kernel", -1, &c->conv_kernel, path, e);
    if (!rc) rc = cfg_inner(j, c, path, e);
    if (!rc) rc = cfg_dt_rank(j, c, path, e);
    if (!rc) rc = cfg_required_bool(j, "use_bias", &c->linear_bias, path, e);
    if (!rc) rc = cfg_required_bool(j, "use_conv_bias", &c->conv_bias, path, e);
    if (!rc) rc = json_cfg_float(j, "layer_norm_epsilon", 1e-5, &c->norm_eps, path, e);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "hidden_act");
    if (!rc && v && !(cJSON_IsString(v) && strcmp(v->valuestring, "silu") == 0))
        rc = err_set(e, SPARQ_EINPUT, "%s: hidden_act must be \"silu\" (as every Mamba model)", path);
    v = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
    if (!rc && v && !cJSON_IsBool(v))
        rc = err_set(e, SPARQ_EINPUT, "%s: tie_word_embeddings is not true or false", path);
    *tied = !v || cJSON_IsTrue(v);      /* MambaConfig ties by default, as mamba_ssm */
    if (rc) return rc;
    /* No attention: one "head" as wide as the model keeps the shared checks meaningful. */
    c->n_heads = c->n_kv_heads = 1;
    c->head_size = c->dim;
    c->seq_len = MAMBA_CONTEXT;
    c->rope_theta = 10000.0f;           /* unused: no RoPE */
    return SPARQ_OK;
}

static void mamba_config_write(const model *m, cJSON *j) {
    const model_config *c = &m->cfg;
    cJSON_AddNumberToObject(j, "hidden_size", c->dim);
    cJSON_AddNumberToObject(j, "intermediate_size", c->hidden_dim);
    if (c->hidden_dim % c->dim == 0) cJSON_AddNumberToObject(j, "expand", c->hidden_dim / c->dim);
    cJSON_AddNumberToObject(j, "state_size", c->state_size);
    cJSON_AddNumberToObject(j, "conv_kernel", c->conv_kernel);
    cJSON_AddNumberToObject(j, "time_step_rank", c->dt_rank);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddBoolToObject(j, "use_bias", c->linear_bias);
    cJSON_AddBoolToObject(j, "use_conv_bias", c->conv_bias);
    cJSON_AddItemToObject(j, "layer_norm_epsilon", json_float(c->norm_eps));
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddBoolToObject(j, "residual_in_fp32", true);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", m->shared_cls);
    cJSON_AddNumberToObject(j, "bos_token_id", 0);
    cJSON_AddNumberToObject(j, "eos_token_id", 0);
    cJSON_AddNumberToObject(j, "pad_token_id", 0);
}

/* ---- profile (bench-mamba) ---------------------------------------------------------------- */

static bool prof_on;
static double prof_sec[3];
enum { PH_GEMM, PH_SCAN, PH_OTHER };

void mamba_profile_start(void) {
    memset(prof_sec, 0, sizeof prof_sec);
    prof_on = true;
}

void mamba_profile_stop(mamba_profile *out) {
    prof_on = false;
    *out = (mamba_profile){prof_sec[PH_GEMM], prof_sec[PH_SCAN], prof_sec[PH_OTHER]};
}

/* Adds the time since *t0 to phase ph and restarts the clock; a no-op unless profiling. */
static void prof_mark(double *t0, int ph) {
    if (!prof_on) return;
    double t = clock_seconds();
    #pragma omp atomic
    prof_sec[ph] += t - *t0;
    *t0 = t;
}

/* ---- elementwise ------------------------------------------------------------------------- */

/* x / (1 + e^-x) with e^-|x| only, so no overflow (as family_llama's silu_mul). */
static inline float silu_fast(float x) {
    float t = vmath_exp_neg(-fabsf(x));
    return x * ((x >= 0.0f ? 1.0f : t) / (1.0f + t));
}

/* PyTorch's softplus (beta 1, threshold 20): x above 20 as is, else log(1 + e^x), written
 * max(x, 0) + log1p(e^-|x|) with log1p(u) = 2 atanh(u / (2 + u)): s = u / (2 + u) <= 1/3, and
 * the series 2 s (1 + s^2/3 + s^4/5 + ...) to s^16 leaves under 2e-9 relative. Vectorizes. */
static inline float softplus_fast(float x) {
    if (x > 20.0f) return x;
    float u = vmath_exp_neg(-fabsf(x)), s = u / (2.0f + u), s2 = s * s;
    float p = 1.0f / 17.0f;
    p = p * s2 + 1.0f / 15.0f;
    p = p * s2 + 1.0f / 13.0f;
    p = p * s2 + 1.0f / 11.0f;
    p = p * s2 + 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    return (x > 0.0f ? x : 0.0f) + 2.0f * s * p;
}

HOT_CLONES
static void softplus_bias_rows(float *dt, const float *bias, int n, int di) {
    for (int t = 0; t < n; t++) {
        float *r = dt + (size_t)t * di;
        #pragma omp simd
        for (int d = 0; d < di; d++) r[d] = softplus_fast(r[d] + bias[d]);
    }
}

HOT_CLONES
static void gate_rows(float *y, const float *xz, int n, int di) {
    for (int t = 0; t < n; t++) {
        float *r = y + (size_t)t * di;
        const float *z = xz + (size_t)t * 2 * di + di;
        #pragma omp simd
        for (int d = 0; d < di; d++) r[d] *= silu_fast(z[d]);
    }
}

static void rmsnorm_rows(float *o, const float *x, const float *w, int n, int d, float eps) {
    #pragma omp parallel for schedule(static) if (n > 64 && !omp_in_parallel())
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * d;
        float *orow = o + (size_t)t * d, ss = 0.0f;
        for (int k = 0; k < d; k++) ss += xr[k] * xr[k];
        float inv = 1.0f / sqrtf(ss / d + eps);
        for (int k = 0; k < d; k++) orow[k] = w[k] * (xr[k] * inv);
    }
}

static void add_bias(float *y, const float *b, int n, int width) {
    if (!b) return;
    for (int t = 0; t < n; t++) {
        float *r = y + (size_t)t * width;
        for (int k = 0; k < width; k++) r[k] += b[k];
    }
}

/* ---- the parallel path ---------------------------------------------------------------------- */

/* Causal depthwise convolution of one sequence's x half (rows of ld floats), then SiLU, into
 * xc[T][di]: out[t] = bias + sum_k w[k] x[t - (K-1) + k], tap K-1 on the newest input. wt is
 * the weight transposed to [K][di]. */
HOT_CLONES
static void conv_silu_seq(float *xc, const float *x, int ld, const float *wt, const float *bias,
                          int T, int di, int K) {
    for (int t = 0; t < T; t++) {
        float *o = xc + (size_t)t * di;
        #pragma omp simd
        for (int d = 0; d < di; d++) o[d] = bias ? bias[d] : 0.0f;
        for (int k = 0; k < K; k++) {
            int src = t - (K - 1) + k;
            if (src < 0) continue;
            const float *xs = x + (size_t)src * ld, *w = wt + (size_t)k * di;
            #pragma omp simd
            for (int d = 0; d < di; d++) o[d] += w[d] * xs[d];
        }
        #pragma omp simd
        for (int d = 0; d < di; d++) o[d] = silu_fast(o[d]);
    }
}

/* The selective scan of one sequence over channels [d0, d0 + w), w <= SCAN_CHUNK, state h
 * [S][SCAN_CHUNK] from zero: per step h = exp(dt A) h + (dt B) x, y = C.h + D x, as Hugging
 * Face's slow_forward discretises it (float32 throughout). At rows are -exp(A_log) transposed
 * to [S][di]; bc rows hold B then C at ld_bc. Channels go LANES at a time with their dt and x
 * in registers; the loop over S then streams that lane block's state. */
HOT_CLONES
static void scan_seq(float *y, const float *xc, const float *dt, const float *bc, int ld_bc,
                     const float *At, const float *D, float *h, int T, int di, int S, int d0, int w) {
    memset(h, 0, (size_t)S * SCAN_CHUNK * sizeof(float));
    for (int t = 0; t < T; t++) {
        const float *B = bc + (size_t)t * ld_bc, *C = B + S;
        const float *xt = xc + (size_t)t * di + d0, *dtt = dt + (size_t)t * di + d0;
        float *yt = y + (size_t)t * di + d0;
        for (int j = 0; j < w; j += LANES) {
            int nl = w - j < LANES ? w - j : LANES;
            float acc[LANES] = {0}, dv[LANES] = {0}, xv[LANES] = {0};
            for (int l = 0; l < nl; l++) {
                dv[l] = dtt[j + l];
                xv[l] = xt[j + l];
            }
            for (int s = 0; s < S; s++) {
                float *hs = h + (size_t)s * SCAN_CHUNK + j;
                const float *As = At + (size_t)s * di + d0 + j;
                float bs = B[s], cs = C[s];
                if (nl == LANES) {
                    #pragma omp simd
                    for (int l = 0; l < LANES; l++) {
                        float v = vmath_exp_neg(dv[l] * As[l]) * hs[l] + (dv[l] * bs) * xv[l];
                        hs[l] = v;
                        acc[l] += v * cs;
                    }
                } else {
                    for (int l = 0; l < nl; l++) {
                        float v = vmath_exp_neg(dv[l] * As[l]) * hs[l] + (dv[l] * bs) * xv[l];
                        hs[l] = v;
                        acc[l] += v * cs;
                    }
                }
            }
            for (int l = 0; l < nl; l++) yt[j + l] = acc[l] + xv[l] * D[d0 + j + l];
        }
    }
}

static int mamba_embed(const model *m, const int *tokens, const fwd_batch *b, float *x, err *e) {
    (void)e;
    int d = m->cfg.dim;
    for (int t = 0; t < b->n_tok; t++)
        memcpy(x + (size_t)t * d, m->tok_emb + (size_t)tokens[t] * d, d * sizeof(float));
    return SPARQ_OK;
}

static int mamba_block(const model *m, int layer, float *x, const fwd_batch *b, float *const *cap,
                       fwd_scratch *s, err *e) {
    const model_config *c = &m->cfg;
    const block *bl = &m->blocks[layer];
    int n = b->n_tok, dim = c->dim, di = c->hidden_dim, S = c->state_size, R = c->dt_rank;
    int K = c->conv_kernel, nx = R + 2 * S;
    int maxT, rc = fwd_check_batch(m, b, &maxT, e);
    if (rc) return rc;
    bool nested = omp_in_parallel();
    int nth = nested ? 1 : blas_threads();
    size_t N = (size_t)n, per_state = (size_t)S * SCAN_CHUNK;
    /* The attention family's named slots, reused: widths differ, each keeps its largest size. */
    float *xb = fwd_buf(s, FWD_XB, N * dim), *xz = fwd_buf(s, FWD_Q, N * 2 * di);
    float *xc = fwd_buf(s, FWD_K, N * di), *dbl = fwd_buf(s, FWD_V, N * nx);
    float *dt = fwd_buf(s, FWD_ATT, N * di), *y = fwd_buf(s, FWD_HB, N * di);
    float *par = fwd_buf(s, FWD_HB2, (size_t)(S + K) * di);
    float *states = fwd_buf(s, FWD_SCORES, (size_t)nth * per_state);
    int *offs = fwd_offsets(s, b);
    if (!xb || !xz || !xc || !dbl || !dt || !y || !par || !states || !offs)
        return err_set(e, SPARQ_ERUNTIME, "out of memory for a batch of %d tokens", n);
    double t0 = prof_on ? clock_seconds() : 0;

    /* A = -exp(A_log) as [S][di] and the conv taps as [K][di], so loops run along channels. */
    float *At = par, *wt = par + (size_t)S * di;
    const float *alog = bl->p[MAMBA_A_LOG], *cw = bl->p[MAMBA_CONV_W];
    for (int d = 0; d < di; d++) {
        for (int k = 0; k < S; k++) At[(size_t)k * di + d] = -expf(alog[(size_t)d * S + k]);
        for (int k = 0; k < K; k++) wt[(size_t)k * di + d] = cw[(size_t)d * K + k];
    }
    rmsnorm_rows(xb, x, bl->p[MAMBA_NORM], n, dim, c->norm_eps);
    if (cap && cap[IN_IN]) memcpy(cap[IN_IN], xb, N * dim * sizeof(float));
    prof_mark(&t0, PH_OTHER);
    blas_linear(xb, bl->lin[MAMBA_IN].w, xz, n, dim, 2 * di);
    prof_mark(&t0, PH_GEMM);
    add_bias(xz, bl->lin[MAMBA_IN].b, n, 2 * di);
    #pragma omp parallel for schedule(dynamic, 1) if (b->n_seq > 1 && !nested)
    for (int i = 0; i < b->n_seq; i++)
        conv_silu_seq(xc + (size_t)offs[i] * di, xz + (size_t)offs[i] * 2 * di, 2 * di, wt,
                      bl->p[MAMBA_CONV_B], b->lens[i], di, K);
    if (cap && cap[IN_X]) memcpy(cap[IN_X], xc, N * di * sizeof(float));
    prof_mark(&t0, PH_OTHER);
    blas_linear(xc, bl->lin[MAMBA_X].w, dbl, n, di, nx);
    blas_gemm(false, true, n, di, R, 1.0f, dbl, nx, bl->lin[MAMBA_DT].w, R, 0.0f, dt, di);
    prof_mark(&t0, PH_GEMM);
    if (cap && cap[IN_DT])
        for (size_t t = 0; t < N; t++) memcpy(cap[IN_DT] + t * R, dbl + t * nx, R * sizeof(float));
    softplus_bias_rows(dt, bl->lin[MAMBA_DT].b, n, di);
    prof_mark(&t0, PH_OTHER);

    int chunks = (di + SCAN_CHUNK - 1) / SCAN_CHUNK, jobs = b->n_seq * chunks;
    #pragma omp parallel for schedule(dynamic, 1) if (jobs > 1 && !nested)
    for (int job = 0; job < jobs; job++) {
        int sq = job / chunks, d0 = job % chunks * SCAN_CHUNK;
        int w = di - d0 < SCAN_CHUNK ? di - d0 : SCAN_CHUNK;
        size_t o = (size_t)offs[sq];
        scan_seq(y + o * di, xc + o * di, dt + o * di, dbl + o * nx + R, nx, At, bl->p[MAMBA_D],
                 states + (size_t)omp_get_thread_num() * per_state, b->lens[sq], di, S, d0, w);
    }
    prof_mark(&t0, PH_SCAN);
    gate_rows(y, xz, n, di);
    if (cap && cap[IN_OUT]) memcpy(cap[IN_OUT], y, N * di * sizeof(float));
    prof_mark(&t0, PH_OTHER);
    blas_gemm(false, true, n, dim, di, 1.0f, y, di, bl->lin[MAMBA_OUT].w, di, 1.0f, x, dim);
    prof_mark(&t0, PH_GEMM);
    add_bias(x, bl->lin[MAMBA_OUT].b, n, dim);
    return SPARQ_OK;
}

static int mamba_head(const model *m, float *x, int n_tok, float *logits, err *e) {
    (void)e;
    double t0 = prof_on ? clock_seconds() : 0;
    rmsnorm_rows(x, x, m->g[MAMBA_FINAL_NORM], n_tok, m->cfg.dim, m->cfg.norm_eps);
    prof_mark(&t0, PH_OTHER);
    blas_linear(x, m->wcls, logits, n_tok, m->cfg.dim, m->cfg.vocab_size);
    prof_mark(&t0, PH_GEMM);
    return SPARQ_OK;
}

/* ---- the recurrent path ---------------------------------------------------------------------- */

/* fwd_cache.state: per layer the last K inputs of the convolution [di][K] and the SSM state
 * [di][S], then one token's scratch. */
static size_t mamba_cache_floats(const model_config *c) {
    size_t di = (size_t)c->hidden_dim, nx = (size_t)c->dt_rank + 2 * (size_t)c->state_size;
    return (size_t)c->n_layers * di * ((size_t)c->conv_kernel + c->state_size) + 3 * (size_t)c->dim +
           6 * di + nx;
}

static float softplus_ref(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
static float silu_ref(float x) { return x / (1.0f + expf(-x)); }

/* One token through every layer with libm and plain loops (the reference the batched path is
 * tested against), as the cache step of modeling_mamba.py: the conv state rolls left and takes
 * the new input at its end, the SSM state advances one step. Position 0 starts from zero. */
static int mamba_token(const model *m, fwd_cache *fc, int token, int pos, float *logits, err *e) {
    (void)e;
    const model_config *c = &m->cfg;
    int dim = c->dim, di = c->hidden_dim, S = c->state_size, R = c->dt_rank, K = c->conv_kernel;
    int nx = R + 2 * S;
    size_t per_layer = (size_t)di * (K + S);
    float *st = fc->state, *x = st + (size_t)c->n_layers * per_layer, *xb = x + dim, *o = xb + dim;
    float *xz = o + dim, *xc = xz + 2 * di, *dt = xc + di, *y = dt + di, *dbl = y + di;
    if (pos == 0) memset(st, 0, (size_t)c->n_layers * per_layer * sizeof(float));
    memcpy(x, m->tok_emb + (size_t)token * dim, dim * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) {
        const block *bl = &m->blocks[l];
        float *conv = st + (size_t)l * per_layer, *h = conv + (size_t)di * K;
        float ss = 0.0f;
        for (int k = 0; k < dim; k++) ss += x[k] * x[k];
        float inv = 1.0f / sqrtf(ss / dim + c->norm_eps);
        for (int k = 0; k < dim; k++) xb[k] = bl->p[MAMBA_NORM][k] * (x[k] * inv);
        fwd_matvec(xz, xb, bl->lin[MAMBA_IN].w, 2 * di, dim);
        if (bl->lin[MAMBA_IN].b)
            for (int i = 0; i < 2 * di; i++) xz[i] += bl->lin[MAMBA_IN].b[i];
        const float *cw = bl->p[MAMBA_CONV_W], *cb = bl->p[MAMBA_CONV_B];
        for (int d = 0; d < di; d++) {
            float *cs = conv + (size_t)d * K, acc = 0.0f;
            memmove(cs, cs + 1, (size_t)(K - 1) * sizeof(float));
            cs[K - 1] = xz[d];
            for (int k = 0; k < K; k++) acc += cs[k] * cw[(size_t)d * K + k];
            xc[d] = silu_ref(acc + (cb ? cb[d] : 0.0f));
        }
        fwd_matvec(dbl, xc, bl->lin[MAMBA_X].w, nx, di);
        fwd_matvec(dt, dbl, bl->lin[MAMBA_DT].w, di, R);
        const float *B = dbl + R, *C = B + S;
        for (int d = 0; d < di; d++) {
            float dd = softplus_ref(dt[d] + bl->lin[MAMBA_DT].b[d]), acc = 0.0f;
            float *hd = h + (size_t)d * S;
            for (int k = 0; k < S; k++) {
                float a = -expf(bl->p[MAMBA_A_LOG][(size_t)d * S + k]);
                hd[k] = expf(dd * a) * hd[k] + (dd * B[k]) * xc[d];
                acc += hd[k] * C[k];
            }
            y[d] = (acc + xc[d] * bl->p[MAMBA_D][d]) * silu_ref(xz[di + d]);
        }
        fwd_matvec(o, y, bl->lin[MAMBA_OUT].w, dim, di);
        for (int k = 0; k < dim; k++) x[k] += o[k] + (bl->lin[MAMBA_OUT].b ? bl->lin[MAMBA_OUT].b[k] : 0.0f);
    }
    float ss = 0.0f;
    for (int k = 0; k < dim; k++) ss += x[k] * x[k];
    float inv = 1.0f / sqrtf(ss / dim + c->norm_eps);
    for (int k = 0; k < dim; k++) x[k] = m->g[MAMBA_FINAL_NORM][k] * (x[k] * inv);
    fwd_matvec(logits, x, m->wcls, c->vocab_size, dim);
    return SPARQ_OK;
}

const family family_mamba = {
    .name = "mamba",
    .hf_arch = "MambaForCausalLM",
    .linear = linears,
    .n_linear = sizeof linears / sizeof linears[0],
    .input = inputs,
    .n_input = sizeof inputs / sizeof inputs[0],
    .n_stage = 4,
    .tensor = tensors,
    .n_tensor = sizeof tensors / sizeof tensors[0],
    .bos = 0,             /* GPT-NeoX's <|endoftext|>, mamba-130m-hf's bos_token_id */
    .rope = false,
    .llama2c = false,
    .gguf_arch = NULL,
    .config_read = mamba_config_read,
    .config_write = mamba_config_write,
    .embed = mamba_embed,
    .block = mamba_block,
    .head = mamba_head,
    .token = mamba_token,
    .cache_floats = mamba_cache_floats,
};
