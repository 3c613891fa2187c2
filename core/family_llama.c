/* LLaMA (and Mistral within its window): RMSNorm, RoPE attention with grouped KV heads,
 * SwiGLU MLP, no biases. Its tables, config.json, and forward pass. */
#include "family.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "forward_ops.h"

/* ---- description ------------------------------------------------------------------------- */

enum { IN_QKV, IN_O, IN_FFN, IN_DOWN };

/* True-sequential stages as gptq/sparsegpt llama.py: [k,v,q] -> [o] -> [up,gate] -> [down]. */
static const family_linear linears[] = {
    [LLAMA_Q] = {"q", SZ_QDIM, SZ_DIM, IN_QKV, 0, false},
    [LLAMA_K] = {"k", SZ_KVDIM, SZ_DIM, IN_QKV, 0, false},
    [LLAMA_V] = {"v", SZ_KVDIM, SZ_DIM, IN_QKV, 0, false},
    [LLAMA_O] = {"o", SZ_DIM, SZ_QDIM, IN_O, 1, false},
    [LLAMA_GATE] = {"gate", SZ_HIDDEN, SZ_DIM, IN_FFN, 2, false},
    [LLAMA_UP] = {"up", SZ_HIDDEN, SZ_DIM, IN_FFN, 2, false},
    [LLAMA_DOWN] = {"down", SZ_DIM, SZ_HIDDEN, IN_DOWN, 3, false},
};

static const size_kind inputs[] = {[IN_QKV] = SZ_DIM, [IN_O] = SZ_QDIM, [IN_FFN] = SZ_DIM,
                                   [IN_DOWN] = SZ_HIDDEN};

/* llama2.c's order (so one allocation mirrors its files), Hugging Face and GGUF names. */
static const family_tensor tensors[] = {
    {SLOT_EMBED, 0, SZ_VOCAB, SZ_EMBED, "model.embed_tokens.weight", "token_embd.weight", 0},
    {SLOT_PARAM, LLAMA_ATTN_NORM, SZ_DIM, SZ_ONE, "model.layers.%d.input_layernorm.weight",
     "blk.%d.attn_norm.weight", 0},
    {SLOT_WEIGHT, LLAMA_Q, SZ_QDIM, SZ_DIM, "model.layers.%d.self_attn.q_proj.weight",
     "blk.%d.attn_q.weight", 1},
    {SLOT_WEIGHT, LLAMA_K, SZ_KVDIM, SZ_DIM, "model.layers.%d.self_attn.k_proj.weight",
     "blk.%d.attn_k.weight", 2},
    {SLOT_WEIGHT, LLAMA_V, SZ_KVDIM, SZ_DIM, "model.layers.%d.self_attn.v_proj.weight",
     "blk.%d.attn_v.weight", 0},
    {SLOT_WEIGHT, LLAMA_O, SZ_DIM, SZ_QDIM, "model.layers.%d.self_attn.o_proj.weight",
     "blk.%d.attn_output.weight", 0},
    {SLOT_PARAM, LLAMA_FFN_NORM, SZ_DIM, SZ_ONE, "model.layers.%d.post_attention_layernorm.weight",
     "blk.%d.ffn_norm.weight", 0},
    {SLOT_WEIGHT, LLAMA_GATE, SZ_HIDDEN, SZ_DIM, "model.layers.%d.mlp.gate_proj.weight",
     "blk.%d.ffn_gate.weight", 0},
    {SLOT_WEIGHT, LLAMA_DOWN, SZ_DIM, SZ_HIDDEN, "model.layers.%d.mlp.down_proj.weight",
     "blk.%d.ffn_down.weight", 0},
    {SLOT_WEIGHT, LLAMA_UP, SZ_HIDDEN, SZ_DIM, "model.layers.%d.mlp.up_proj.weight",
     "blk.%d.ffn_up.weight", 0},
    {SLOT_GLOBAL, LLAMA_FINAL_NORM, SZ_DIM, SZ_ONE, "model.norm.weight", "output_norm.weight", 0},
    {SLOT_HEAD, 0, SZ_VOCAB, SZ_EMBED, "lm_head.weight", "output.weight", 0},
};

/* ---- config.json ------------------------------------------------------------------------- */

static int llama_config_read(const cJSON *j, model_config *c, bool *tied, const char *path, err *e) {
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    const char *a = cJSON_IsString(cJSON_GetArrayItem(arch, 0)) ? cJSON_GetArrayItem(arch, 0)->valuestring
                    : cJSON_IsString(mt) ? mt->valuestring : "(none)";
    bool mistral = strcmp(a, "MistralForCausalLM") == 0 || strcmp(a, "mistral") == 0;
    int rc = SPARQ_OK;
    *c = (model_config){0};
    c->family = &family_llama;
    if (!rc) rc = json_cfg_int(j, "hidden_size", -1, &c->dim, path, e);
    if (!rc) rc = json_cfg_int(j, "intermediate_size", -1, &c->hidden_dim, path, e);
    if (!rc) rc = json_cfg_int(j, "num_hidden_layers", -1, &c->n_layers, path, e);
    if (!rc) rc = json_cfg_int(j, "num_attention_heads", -1, &c->n_heads, path, e);
    if (!rc) rc = json_cfg_int(j, "num_key_value_heads", c->n_heads, &c->n_kv_heads, path, e);
    if (!rc) rc = json_cfg_int(j, "vocab_size", -1, &c->vocab_size, path, e);
    if (!rc) rc = json_cfg_int(j, "max_position_embeddings", -1, &c->seq_len, path, e);
    if (!rc && c->dim % c->n_heads)
        rc = err_set(e, SPARQ_EINPUT, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                     path, c->dim, c->n_heads);
    if (!rc) rc = json_cfg_int(j, "head_dim", c->dim / c->n_heads, &c->head_size, path, e);
    /* transformers' defaults: LlamaConfig and MistralConfig both use 1e-6 and 10000. */
    if (!rc) rc = json_cfg_float(j, "rms_norm_eps", 1e-6, &c->norm_eps, path, e);
    if (!rc) rc = json_cfg_float(j, "rope_theta", 10000.0, &c->rope_theta, path, e);
    const cJSON *v;
    if (!rc && (v = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling")) && !cJSON_IsNull(v))
        rc = err_set(e, SPARQ_EINPUT, "%s: rope_scaling is set; scaled RoPE is not supported", path);
    if (!rc && (v = cJSON_GetObjectItemCaseSensitive(j, "hidden_act")) &&
        !(cJSON_IsString(v) && strcmp(v->valuestring, "silu") == 0))
        rc = err_set(e, SPARQ_EINPUT, "%s: hidden_act must be \"silu\" (SwiGLU)", path);
    static const char *biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2 && !rc; i++)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, biases[i])))
            rc = err_set(e, SPARQ_EINPUT, "%s: %s is true; linear biases are not supported", path, biases[i]);
    /* Mistral's sliding window: within a context no longer than the window, attention is
     * exactly full causal attention, so the context is capped there. */
    int window = 0;
    if (!rc && mistral) rc = json_cfg_int(j, "sliding_window", 0, &window, path, e);
    if (!rc && window > 0 && window < c->seq_len) c->seq_len = window;
    *tied = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings"));
    c->rope = ROPE_ADJACENT;
    return rc;
}

static void llama_config_write(const model *m, cJSON *j) {
    const model_config *c = &m->cfg;
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddNumberToObject(j, "hidden_size", c->dim);
    cJSON_AddNumberToObject(j, "intermediate_size", c->hidden_dim);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(j, "head_dim", c->head_size);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->seq_len);
    cJSON_AddItemToObject(j, "rms_norm_eps", json_float(c->norm_eps));
    cJSON_AddItemToObject(j, "rope_theta", json_float(c->rope_theta));
    cJSON_AddNullToObject(j, "rope_scaling");
    cJSON_AddBoolToObject(j, "tie_word_embeddings", m->shared_cls);
    cJSON_AddBoolToObject(j, "attention_bias", false);
    cJSON_AddBoolToObject(j, "mlp_bias", false);
    cJSON_AddNumberToObject(j, "bos_token_id", 1);
    cJSON_AddNumberToObject(j, "eos_token_id", 2);
}

/* ---- forward ----------------------------------------------------------------------------- */

/* One row of x[d] normalized into o[d] (o may be x). Always inlined, so it is compiled for the
 * clone of its caller. */
__attribute__((always_inline)) static inline void rmsnorm_row(float *o, const float *x, const float *w, int d, float eps) {
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

/* g[i] = silu(g[i]) * u[i] for i < hid on rows t0 .. t1-1 (rows ld floats apart), with
 * sigmoid(g) = (g >= 0 ? 1 : t) / (1 + t), t = e^-|g|: no overflow, so no clamp at the top, and
 * one division per element. */
__attribute__((always_inline)) static inline float silu_times(float x, float u) {
    float e = vmath_exp_neg(-fabsf(x));
    return x * ((x >= 0.0f ? 1.0f : e) / (1.0f + e)) * u;
}

HOT_CLONES
static void silu_mul(float *g, const float *u, size_t ld, int hid, int t0, int t1) {
    for (int t = t0; t < t1; t++) {
        float *gr = g + (size_t)t * ld;
        const float *ur = u + (size_t)t * ld;
        #pragma omp simd
        for (int i = 0; i < hid; i++) gr[i] = silu_times(gr[i], ur[i]);
    }
}

/* The same on a tile of the gated GEMM (blas_gate_fn), four rows per pass: one row's exp and
 * division are a single chain of ~20 dependent operations, and four independent chains per
 * iteration keep the vector units busy (SiLU 3.4% -> 2.9% of stories3M's eval). */
HOT_CLONES
static void silu_gate(float *h, int ldh, const float *g, const float *u, int ld, int rows, int cnt) {
    int r = 0;
    for (; r + 4 <= rows; r += 4) {
        float *h0 = h + (size_t)r * ldh, *h1 = h0 + ldh, *h2 = h1 + ldh, *h3 = h2 + ldh;
        const float *g0 = g + (size_t)r * ld, *g1 = g0 + ld, *g2 = g1 + ld, *g3 = g2 + ld;
        const float *u0 = u + (size_t)r * ld, *u1 = u0 + ld, *u2 = u1 + ld, *u3 = u2 + ld;
        #pragma omp simd
        for (int i = 0; i < cnt; i++) {
            h0[i] = silu_times(g0[i], u0[i]);
            h1[i] = silu_times(g1[i], u1[i]);
            h2[i] = silu_times(g2[i], u2[i]);
            h3[i] = silu_times(g3[i], u3[i]);
        }
    }
    for (; r < rows; r++) {
        float *hr = h + (size_t)r * ldh;
        const float *gr = g + (size_t)r * ld, *ur = u + (size_t)r * ld;
        #pragma omp simd
        for (int i = 0; i < cnt; i++) hr[i] = silu_times(gr[i], ur[i]);
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

/* rope_apply on rows 0 .. len-1 of v (row stride ld) for positions 0 .. len-1: the same
 * operations in the same order, one loop per layout so each vectorizes. */
HOT_CLONES
static void rope_rows(const model *m, float *v, size_t ld, int n_heads_v, int len) {
    int hs = m->cfg.head_size, half = hs / 2;
    bool adjacent = m->cfg.rope == ROPE_ADJACENT;
    for (int p = 0; p < len; p++) {
        const float *cs = m->rope_cos + (size_t)p * half, *sn = m->rope_sin + (size_t)p * half;
        for (int h = 0; h < n_heads_v; h++) {
            float *vh = v + (size_t)p * ld + (size_t)h * hs;
            if (adjacent) {
                #pragma omp simd
                for (int j = 0; j < half; j++) {
                    float v0 = vh[2 * j], v1 = vh[2 * j + 1];
                    vh[2 * j] = v0 * cs[j] - v1 * sn[j];
                    vh[2 * j + 1] = v0 * sn[j] + v1 * cs[j];
                }
            } else {
                #pragma omp simd
                for (int j = 0; j < half; j++) {
                    float v0 = vh[j], v1 = vh[j + half];
                    vh[j] = v0 * cs[j] - v1 * sn[j];
                    vh[j + half] = v0 * sn[j] + v1 * cs[j];
                }
            }
        }
    }
}

static int llama_embed(const model *m, const int *tokens, const fwd_batch *b, float *x, err *e) {
    (void)e;
    int d = m->cfg.dim;
    for (int t = 0; t < b->n_tok; t++)
        memcpy(x + (size_t)t * d, m->tok_emb + (size_t)tokens[t] * d, d * sizeof(float));
    return SPARQ_OK;
}

static int llama_block(const model *m, int layer, float *x, const fwd_batch *b, float *const *cap,
                       fwd_scratch *s, err *e) {
    const model_config *c = &m->cfg;
    const block *bl = &m->blocks[layer];
    int n = b->n_tok, dim = c->dim, hid = c->hidden_dim, hs = c->head_size;
    int qdim = c->n_heads * hs, kvd = c->n_kv_heads * hs;
    int maxT, rc = fwd_check_batch(m, b, &maxT, e);
    if (rc) return rc;
    /* Inside a caller's parallel region everything here runs on the calling thread alone. */
    bool nested = omp_in_parallel();
    int nth = nested ? 1 : blas_threads();
    size_t N = (size_t)n;
    /* q, k, v side by side in one output (one GEMM on packed weights), gate and up likewise.
     * hb's rows are padded off a multiple of 4 KB: down's kernel reads 12 of them at once, and
     * rows 4 KB apart would all fall in one L1 set. */
    size_t ldq = (size_t)(qdim + 2 * kvd), ldkv = ldq, ldh = 2 * (size_t)hid + 16;
    float *xb = fwd_buf(s, FWD_XB, N * dim), *q = fwd_buf(s, FWD_Q, N * ldq);
    float *att = fwd_buf(s, FWD_ATT, N * qdim), *hb = fwd_buf(s, FWD_HB, N * ldh);
    float *scores = fwd_buf(s, FWD_SCORES, (size_t)nth * fwd_att_scratch_floats(m, maxT));
    int *offs = fwd_offsets(s, b);
    if (!xb || !q || !att || !hb || !scores || !offs)
        return err_set(e, SPARQ_ERUNTIME, "out of memory for a batch of %d tokens", n);
    float *k = q + qdim, *v = q + qdim + kvd;

    /* Attention: x += Wo . attn(rope(Wq xn), rope(Wk xn), Wv xn), xn = rmsnorm(x). */
    rmsnorm_rows(xb, x, bl->p[LLAMA_ATTN_NORM], n, dim, c->norm_eps);
    if (cap && cap[0]) memcpy(cap[0], xb, N * dim * sizeof(float));
    fwd_linear_in(m, s, layer, IN_QKV, xb, dim, n, q, (int)ldq, false);
    #pragma omp parallel for schedule(static) if (b->n_seq > 1 && !nested)
    for (int i = 0; i < b->n_seq; i++) {
        rope_rows(m, q + (size_t)offs[i] * ldq, ldq, c->n_heads, b->lens[i]);
        rope_rows(m, k + (size_t)offs[i] * ldkv, ldkv, c->n_kv_heads, b->lens[i]);
    }
    fwd_attention(m, b, offs, q, ldq, k, v, ldkv, att, scores, maxT);
    if (cap && cap[1]) memcpy(cap[1], att, N * qdim * sizeof(float));
    fwd_linear_in(m, s, layer, IN_O, att, qdim, n, x, dim, true);

    /* Feed-forward: x += Wdown (silu(Wgate xn) * Wup xn). */
    rmsnorm_rows(xb, x, bl->p[LLAMA_FFN_NORM], n, dim, c->norm_eps);
    if (cap && cap[2]) memcpy(cap[2], xb, N * dim * sizeof(float));
    /* With the weights packed as a pair, g = silu(gate) * up comes out of one pass and gate
     * and up never reach memory (the same bits as the GEMM and silu_mul below). */
    float *g = hb, *u = hb + hid;
    if (!fwd_gated_in(m, s, layer, IN_FFN, xb, dim, n, silu_gate, g, (int)ldh)) {
        fwd_linear_in(m, s, layer, IN_FFN, xb, dim, n, hb, (int)ldh, false);
        if (N * hid <= 65536 || nested) {
            silu_mul(g, u, ldh, hid, 0, n);
        } else {
            #pragma omp parallel
            {
                int t = omp_get_thread_num(), nt = omp_get_num_threads();
                silu_mul(g, u, ldh, hid, (int)((long)n * t / nt), (int)((long)n * (t + 1) / nt));
            }
        }
    }
    if (cap && cap[3])
        for (size_t t = 0; t < N; t++)
            memcpy(cap[3] + t * hid, g + t * ldh, (size_t)hid * sizeof(float));
    fwd_linear_in(m, s, layer, IN_DOWN, g, (int)ldh, n, x, dim, true);
    return SPARQ_OK;
}

static int llama_head_norm(const model *m, float *x, int n_tok, err *e) {
    (void)e;
    rmsnorm_rows(x, x, m->g[LLAMA_FINAL_NORM], n_tok, m->cfg.dim, m->cfg.norm_eps);
    return SPARQ_OK;
}

static int llama_head(const model *m, float *x, int n_tok, float *logits, err *e) {
    llama_head_norm(m, x, n_tok, e);
    blas_linear(x, m->wcls, logits, n_tok, m->cfg.dim, m->cfg.vocab_size);
    return SPARQ_OK;
}

static int llama_token(const model *m, fwd_cache *c, int token, int pos, float *logits, err *e) {
    const model_config *p = &m->cfg;
    int dim = p->dim, hs = p->head_size, hid = p->hidden_dim;
    int kvd = p->n_kv_heads * hs, qdim = p->n_heads * hs, group = p->n_heads / p->n_kv_heads;
    (void)e;
    memcpy(c->x, m->tok_emb + (size_t)token * dim, dim * sizeof(float));
    for (int l = 0; l < p->n_layers; l++) {
        const block *bl = &m->blocks[l];
        float *kc = c->key + ((size_t)l * p->seq_len) * kvd;
        float *vc = c->value + ((size_t)l * p->seq_len) * kvd;
        rmsnorm_ref(c->xb, c->x, bl->p[LLAMA_ATTN_NORM], dim, p->norm_eps);
        fwd_matvec(c->q, c->xb, bl->lin[LLAMA_Q].w, qdim, dim);
        fwd_matvec(kc + (size_t)pos * kvd, c->xb, bl->lin[LLAMA_K].w, kvd, dim);
        fwd_matvec(vc + (size_t)pos * kvd, c->xb, bl->lin[LLAMA_V].w, kvd, dim);
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
        fwd_matvec(c->xb2, c->xb, bl->lin[LLAMA_O].w, dim, qdim);
        for (int i = 0; i < dim; i++) c->x[i] += c->xb2[i];
        rmsnorm_ref(c->xb, c->x, bl->p[LLAMA_FFN_NORM], dim, p->norm_eps);
        fwd_matvec(c->hb, c->xb, bl->lin[LLAMA_GATE].w, hid, dim);
        fwd_matvec(c->hb2, c->xb, bl->lin[LLAMA_UP].w, hid, dim);
        for (int i = 0; i < hid; i++) {
            float g = c->hb[i];
            c->hb[i] = g * (1.0f / (1.0f + expf(-g))) * c->hb2[i];
        }
        fwd_matvec(c->xb2, c->hb, bl->lin[LLAMA_DOWN].w, dim, hid);
        for (int i = 0; i < dim; i++) c->x[i] += c->xb2[i];
    }
    rmsnorm_ref(c->x, c->x, m->g[LLAMA_FINAL_NORM], dim, p->norm_eps);
    fwd_matvec(logits, c->x, m->wcls, p->vocab_size, dim);
    return SPARQ_OK;
}

const family family_llama = {
    .name = "llama",
    .hf_arch = "LlamaForCausalLM",
    .linear = linears,
    .n_linear = sizeof linears / sizeof linears[0],
    .input = inputs,
    .n_input = sizeof inputs / sizeof inputs[0],
    .n_stage = 4,
    .tensor = tensors,
    .n_tensor = sizeof tensors / sizeof tensors[0],
    .bos = 1,
    .rope = true,
    .llama2c = true,
    .gguf_arch = "llama",
    .linear_in = true,
    .gated_input = IN_FFN,
    .config_read = llama_config_read,
    .config_write = llama_config_write,
    .embed = llama_embed,
    .block = llama_block,
    .head = llama_head,
    .head_norm = llama_head_norm,
    .token = llama_token,
};
