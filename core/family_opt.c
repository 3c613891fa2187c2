/* OPT (Hugging Face OPTForCausalLM, the pre-LayerNorm models OPT-125M ... 66B): learned
 * positions with Hugging Face's offset of 2, LayerNorm with bias, biases on every linear layer,
 * ReLU MLP (fc1, fc2), project_in/project_out when word_embed_proj_dim != hidden_size, the head
 * tied to the embedding by default. Its tables, config.json, and forward pass, written from
 * transformers' modeling_opt.py (eager attention). */
#include "family.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "forward_ops.h"

/* Hugging Face's OPTLearnedPositionalEmbedding: position p reads row p + 2. */
#define OPT_POS_OFFSET 2

enum { IN_QKV, IN_OUT, IN_FC1, IN_FC2 };
enum { P_ATTN_LN_W, P_ATTN_LN_B, P_FFN_LN_W, P_FFN_LN_B };
enum { G_POS, G_PROJ_IN, G_FINAL_LN_W, G_FINAL_LN_B, G_PROJ_OUT };

/* SparseGPT's / GPTQ's opt.py sequential groups: [q,k,v] -> [out] -> [fc1] -> [fc2]. */
static const family_linear linears[] = {
    [OPT_Q] = {"q", SZ_DIM, SZ_DIM, IN_QKV, 0, true},
    [OPT_K] = {"k", SZ_DIM, SZ_DIM, IN_QKV, 0, true},
    [OPT_V] = {"v", SZ_DIM, SZ_DIM, IN_QKV, 0, true},
    [OPT_OUT] = {"out", SZ_DIM, SZ_DIM, IN_OUT, 1, true},
    [OPT_FC1] = {"fc1", SZ_HIDDEN, SZ_DIM, IN_FC1, 2, true},
    [OPT_FC2] = {"fc2", SZ_DIM, SZ_HIDDEN, IN_FC2, 3, true},
};

static const size_kind inputs[] = {[IN_QKV] = SZ_DIM, [IN_OUT] = SZ_DIM, [IN_FC1] = SZ_DIM,
                                   [IN_FC2] = SZ_HIDDEN};

#define L_ "model.decoder.layers.%d."
static const family_tensor tensors[] = {
    {SLOT_EMBED, 0, SZ_VOCAB, SZ_EMBED, "model.decoder.embed_tokens.weight", NULL, 0},
    {SLOT_GLOBAL, G_POS, SZ_POS, SZ_DIM, "model.decoder.embed_positions.weight", NULL, 0},
    {SLOT_GLOBAL, G_PROJ_IN, SZ_DIM, SZ_PROJ, "model.decoder.project_in.weight", NULL, 0},
    {SLOT_PARAM, P_ATTN_LN_W, SZ_DIM, SZ_ONE, L_ "self_attn_layer_norm.weight", NULL, 0},
    {SLOT_PARAM, P_ATTN_LN_B, SZ_DIM, SZ_ONE, L_ "self_attn_layer_norm.bias", NULL, 0},
    {SLOT_WEIGHT, OPT_Q, SZ_DIM, SZ_DIM, L_ "self_attn.q_proj.weight", NULL, 0},
    {SLOT_BIAS, OPT_Q, SZ_DIM, SZ_ONE, L_ "self_attn.q_proj.bias", NULL, 0},
    {SLOT_WEIGHT, OPT_K, SZ_DIM, SZ_DIM, L_ "self_attn.k_proj.weight", NULL, 0},
    {SLOT_BIAS, OPT_K, SZ_DIM, SZ_ONE, L_ "self_attn.k_proj.bias", NULL, 0},
    {SLOT_WEIGHT, OPT_V, SZ_DIM, SZ_DIM, L_ "self_attn.v_proj.weight", NULL, 0},
    {SLOT_BIAS, OPT_V, SZ_DIM, SZ_ONE, L_ "self_attn.v_proj.bias", NULL, 0},
    {SLOT_WEIGHT, OPT_OUT, SZ_DIM, SZ_DIM, L_ "self_attn.out_proj.weight", NULL, 0},
    {SLOT_BIAS, OPT_OUT, SZ_DIM, SZ_ONE, L_ "self_attn.out_proj.bias", NULL, 0},
    {SLOT_PARAM, P_FFN_LN_W, SZ_DIM, SZ_ONE, L_ "final_layer_norm.weight", NULL, 0},
    {SLOT_PARAM, P_FFN_LN_B, SZ_DIM, SZ_ONE, L_ "final_layer_norm.bias", NULL, 0},
    {SLOT_WEIGHT, OPT_FC1, SZ_HIDDEN, SZ_DIM, L_ "fc1.weight", NULL, 0},
    {SLOT_BIAS, OPT_FC1, SZ_HIDDEN, SZ_ONE, L_ "fc1.bias", NULL, 0},
    {SLOT_WEIGHT, OPT_FC2, SZ_DIM, SZ_HIDDEN, L_ "fc2.weight", NULL, 0},
    {SLOT_BIAS, OPT_FC2, SZ_DIM, SZ_ONE, L_ "fc2.bias", NULL, 0},
    {SLOT_GLOBAL, G_FINAL_LN_W, SZ_DIM, SZ_ONE, "model.decoder.final_layer_norm.weight", NULL, 0},
    {SLOT_GLOBAL, G_FINAL_LN_B, SZ_DIM, SZ_ONE, "model.decoder.final_layer_norm.bias", NULL, 0},
    {SLOT_GLOBAL, G_PROJ_OUT, SZ_PROJ, SZ_DIM, "model.decoder.project_out.weight", NULL, 0},
    {SLOT_HEAD, 0, SZ_VOCAB, SZ_EMBED, "lm_head.weight", NULL, 0},
};
#undef L_

/* ---- config.json ------------------------------------------------------------------------- */

/* A boolean key that must hold `want` (missing: the Hugging Face default `def`). */
static int cfg_bool(const cJSON *j, const char *key, bool def, bool want, const char *why,
                    const char *path, err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (v && !cJSON_IsBool(v))
        return err_set(e, SPARQ_EINPUT, "%s: %s is not true or false", path, key);
    bool got = v ? cJSON_IsTrue(v) : def;
    if (got != want)
        return err_set(e, SPARQ_EINPUT, "%s: %s: %s is not supported (%s)", path, key,
                       got ? "true" : "false", why);
    return SPARQ_OK;
}

static int opt_config_read(const cJSON *j, model_config *c, bool *tied, const char *path, err *e) {
    *c = (model_config){0};
    c->family = &family_opt;
    int rc = json_cfg_int(j, "hidden_size", -1, &c->dim, path, e);
    if (!rc) rc = json_cfg_int(j, "ffn_dim", -1, &c->hidden_dim, path, e);
    if (!rc) rc = json_cfg_int(j, "num_hidden_layers", -1, &c->n_layers, path, e);
    if (!rc) rc = json_cfg_int(j, "num_attention_heads", -1, &c->n_heads, path, e);
    if (!rc) rc = json_cfg_int(j, "vocab_size", -1, &c->vocab_size, path, e);
    if (!rc) rc = json_cfg_int(j, "max_position_embeddings", -1, &c->seq_len, path, e);
    if (!rc) rc = json_cfg_int(j, "word_embed_proj_dim", c->dim, &c->embed_dim, path, e);
    if (!rc && c->dim % c->n_heads)
        rc = err_set(e, SPARQ_EINPUT, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                     path, c->dim, c->n_heads);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "activation_function");
    if (!rc && v && !(cJSON_IsString(v) && strcmp(v->valuestring, "relu") == 0))
        rc = err_set(e, SPARQ_EINPUT, "%s: activation_function must be \"relu\" (as every OPT model)", path);
    if (!rc) rc = cfg_bool(j, "do_layer_norm_before", true, true, "OPT-350M's post-LayerNorm blocks", path, e);
    if (!rc) rc = cfg_bool(j, "_remove_final_layer_norm", false, false, "no final LayerNorm", path, e);
    if (!rc) rc = cfg_bool(j, "enable_bias", true, true, "linear layers without biases", path, e);
    if (!rc) rc = cfg_bool(j, "layer_norm_elementwise_affine", true, true, "LayerNorm without weights", path, e);
    v = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
    if (!rc && v && !cJSON_IsBool(v))
        rc = err_set(e, SPARQ_EINPUT, "%s: tie_word_embeddings is not true or false", path);
    *tied = !v || cJSON_IsTrue(v);     /* OPTConfig ties by default */
    if (rc) return rc;
    c->n_kv_heads = c->n_heads;
    c->head_size = c->dim / c->n_heads;
    c->norm_eps = 1e-5f;                /* nn.LayerNorm's default, which modeling_opt.py keeps */
    c->rope_theta = 10000.0f;           /* unused: no RoPE */
    c->n_pos = c->seq_len + OPT_POS_OFFSET;
    return SPARQ_OK;
}

static void opt_config_write(const model *m, cJSON *j) {
    const model_config *c = &m->cfg;
    cJSON_AddStringToObject(j, "activation_function", "relu");
    cJSON_AddNumberToObject(j, "hidden_size", c->dim);
    cJSON_AddNumberToObject(j, "ffn_dim", c->hidden_dim);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->seq_len);
    cJSON_AddNumberToObject(j, "word_embed_proj_dim", c->embed_dim ? c->embed_dim : c->dim);
    cJSON_AddBoolToObject(j, "do_layer_norm_before", true);
    cJSON_AddBoolToObject(j, "_remove_final_layer_norm", false);
    cJSON_AddBoolToObject(j, "enable_bias", true);
    cJSON_AddBoolToObject(j, "layer_norm_elementwise_affine", true);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", m->shared_cls);
    cJSON_AddNumberToObject(j, "bos_token_id", 2);
    cJSON_AddNumberToObject(j, "eos_token_id", 2);
    cJSON_AddNumberToObject(j, "pad_token_id", 1);
}

/* ---- forward ----------------------------------------------------------------------------- */

/* o[n][d] = LayerNorm of the rows of x (o may be x), statistics in double. */
static void layernorm_rows(float *o, const float *x, const float *w, const float *b, int n, int d,
                           float eps) {
    #pragma omp parallel for schedule(static) if (n > 64 && !omp_in_parallel())
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * d;
        float *orow = o + (size_t)t * d;
        double mean = 0.0, var = 0.0;
        for (int k = 0; k < d; k++) mean += xr[k];
        mean /= d;
        for (int k = 0; k < d; k++) var += ((double)xr[k] - mean) * ((double)xr[k] - mean);
        float inv = (float)(1.0 / sqrt(var / d + (double)eps)), mu = (float)mean;
        for (int k = 0; k < d; k++) orow[k] = (xr[k] - mu) * inv * w[k] + b[k];
    }
}

static void add_bias(float *y, const float *b, int n, int width) {
    for (int t = 0; t < n; t++) {
        float *r = y + (size_t)t * width;
        for (int k = 0; k < width; k++) r[k] += b[k];
    }
}

/* y[n][rows] = x W^T + b. */
static void linear_fwd(const float *x, const linear *l, float *y, int n) {
    blas_linear(x, l->w, y, n, l->cols, l->rows);
    add_bias(y, l->b, n, l->rows);
}

static int opt_embed(const model *m, const int *tokens, const fwd_batch *b, float *x, err *e) {
    const model_config *c = &m->cfg;
    int d = c->dim, ed = c->embed_dim ? c->embed_dim : d;
    float *src = x;
    if (m->g[G_PROJ_IN]) {
        src = malloc((size_t)b->n_tok * ed * sizeof(float));
        if (!src) return err_set(e, SPARQ_ERUNTIME, "out of memory for a batch of %d tokens", b->n_tok);
    }
    for (int t = 0; t < b->n_tok; t++)
        memcpy(src + (size_t)t * ed, m->tok_emb + (size_t)tokens[t] * ed, ed * sizeof(float));
    if (m->g[G_PROJ_IN]) {
        blas_linear(src, m->g[G_PROJ_IN], x, b->n_tok, ed, d);
        free(src);
    }
    for (int i = 0, t = 0; i < b->n_seq; i++)
        for (int p = 0; p < b->lens[i]; p++, t++) {
            const float *pe = m->g[G_POS] + (size_t)(p + OPT_POS_OFFSET) * d;
            float *xr = x + (size_t)t * d;
            for (int k = 0; k < d; k++) xr[k] += pe[k];
        }
    return SPARQ_OK;
}

static int opt_block(const model *m, int layer, float *x, const fwd_batch *b, float *const *cap,
                     fwd_scratch *s, err *e) {
    const model_config *c = &m->cfg;
    const block *bl = &m->blocks[layer];
    int n = b->n_tok, dim = c->dim, hid = c->hidden_dim;
    int maxT, rc = fwd_check_batch(m, b, &maxT, e);
    if (rc) return rc;
    int nth = omp_in_parallel() ? 1 : blas_threads();
    size_t N = (size_t)n;
    float *xb = fwd_buf(s, FWD_XB, N * dim), *q = fwd_buf(s, FWD_Q, N * dim);
    float *k = fwd_buf(s, FWD_K, N * dim), *v = fwd_buf(s, FWD_V, N * dim);
    float *att = fwd_buf(s, FWD_ATT, N * dim), *hb = fwd_buf(s, FWD_HB, N * hid);
    float *scores = fwd_buf(s, FWD_SCORES, (size_t)nth * fwd_att_scratch_floats(m, maxT));
    int *offs = fwd_offsets(s, b);
    if (!xb || !q || !k || !v || !att || !hb || !scores || !offs)
        return err_set(e, SPARQ_ERUNTIME, "out of memory for a batch of %d tokens", n);

    /* Attention: x += out(attn(q(xn), k(xn), v(xn))), xn = LayerNorm(x). */
    layernorm_rows(xb, x, bl->p[P_ATTN_LN_W], bl->p[P_ATTN_LN_B], n, dim, c->norm_eps);
    if (cap && cap[IN_QKV]) memcpy(cap[IN_QKV], xb, N * dim * sizeof(float));
    linear_fwd(xb, &bl->lin[OPT_Q], q, n);
    linear_fwd(xb, &bl->lin[OPT_K], k, n);
    linear_fwd(xb, &bl->lin[OPT_V], v, n);
    fwd_attention(m, b, offs, q, (size_t)dim, k, v, (size_t)dim, att, scores, maxT);
    if (cap && cap[IN_OUT]) memcpy(cap[IN_OUT], att, N * dim * sizeof(float));
    blas_gemm(false, true, n, dim, dim, 1.0f, att, dim, bl->lin[OPT_OUT].w, dim, 1.0f, x, dim);
    add_bias(x, bl->lin[OPT_OUT].b, n, dim);

    /* MLP: x += fc2(relu(fc1(LayerNorm(x)))). */
    layernorm_rows(xb, x, bl->p[P_FFN_LN_W], bl->p[P_FFN_LN_B], n, dim, c->norm_eps);
    if (cap && cap[IN_FC1]) memcpy(cap[IN_FC1], xb, N * dim * sizeof(float));
    linear_fwd(xb, &bl->lin[OPT_FC1], hb, n);
    for (size_t i = 0; i < N * hid; i++) hb[i] = hb[i] > 0.0f ? hb[i] : 0.0f;
    if (cap && cap[IN_FC2]) memcpy(cap[IN_FC2], hb, N * hid * sizeof(float));
    blas_gemm(false, true, n, dim, hid, 1.0f, hb, hid, bl->lin[OPT_FC2].w, hid, 1.0f, x, dim);
    add_bias(x, bl->lin[OPT_FC2].b, n, dim);
    return SPARQ_OK;
}

static int opt_head(const model *m, float *x, int n_tok, float *logits, err *e) {
    const model_config *c = &m->cfg;
    int d = c->dim, ed = c->embed_dim ? c->embed_dim : d;
    layernorm_rows(x, x, m->g[G_FINAL_LN_W], m->g[G_FINAL_LN_B], n_tok, d, c->norm_eps);
    if (!m->g[G_PROJ_OUT]) {
        blas_linear(x, m->wcls, logits, n_tok, d, c->vocab_size);
        return SPARQ_OK;
    }
    float *y = malloc((size_t)n_tok * ed * sizeof(float));
    if (!y) return err_set(e, SPARQ_ERUNTIME, "out of memory for %d rows of logits", n_tok);
    blas_linear(x, m->g[G_PROJ_OUT], y, n_tok, d, ed);
    blas_linear(y, m->wcls, logits, n_tok, ed, c->vocab_size);
    free(y);
    return SPARQ_OK;
}

const family family_opt = {
    .name = "opt",
    .hf_arch = "OPTForCausalLM",
    .linear = linears,
    .n_linear = sizeof linears / sizeof linears[0],
    .input = inputs,
    .n_input = sizeof inputs / sizeof inputs[0],
    .n_stage = 4,
    .tensor = tensors,
    .n_tensor = sizeof tensors / sizeof tensors[0],
    .bos = 2,
    .rope = false,
    .llama2c = false,
    .gguf_arch = NULL,
    .config_read = opt_config_read,
    .config_write = opt_config_write,
    .embed = opt_embed,
    .block = opt_block,
    .head = opt_head,
    .token = NULL,
};
