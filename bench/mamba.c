/* bench-mamba: eval throughput of Mamba and where its forward time goes. A model shaped like
 * state-spaces/mamba-130m-hf (hidden 768, 24 layers, state 16, expand 2, conv 4, dt rank 48,
 * vocab 50280, tied head) with random weights, written as f16 safetensors + config.json into a
 * temporary folder and loaded back the way `sparq eval` loads it; then `windows` perplexity on
 * wiki.test.raw (GPT-NeoX tokenizer, seqlen 512) at 1 and 2 threads, with the share of the
 * forward time in the GEMMs (linear layers and head), the selective scan, and the rest, from
 * family.h's mamba_profile. Prints; asserts nothing. The target: scan under 30%. */
#define _DEFAULT_SOURCE   /* mkdtemp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/blas.h"
#include "../core/clock.h"
#include "../core/family.h"
#include "../core/fileio.h"
#include "../core/model.h"
#include "../core/tokenizer.h"
#include "../eval/perplexity.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float uni(void) {   /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1 << 24))) * 2.0f - 1.0f;
}

static void fill(float *w, size_t n, float a) {
    for (size_t i = 0; i < n; i++) w[i] = a * uni();
}

/* Random weights at mamba_ssm's initial scales: linear layers U(+-1/sqrt(fan_in)), the
 * embedding N(0, 0.02)-sized, A_log = log(1..S), D = 1, dt in [0.001, 0.1] log-uniform through
 * the inverse softplus of its bias, so the scan runs in its real regime. */
static void init_weights(model *m) {
    const model_config *c = &m->cfg;
    int dim = c->dim, di = c->hidden_dim, S = c->state_size, K = c->conv_kernel;
    fill(m->tok_emb, (size_t)c->vocab_size * dim, 0.035f);
    for (int k = 0; k < dim; k++) m->g[MAMBA_FINAL_NORM][k] = 1.0f;
    for (int l = 0; l < c->n_layers; l++) {
        block *b = &m->blocks[l];
        for (int k = 0; k < 4; k++) {
            linear *li = &b->lin[k];
            fill(li->w, (size_t)li->rows * li->cols, 1.0f / sqrtf((float)li->cols));
        }
        for (int k = 0; k < dim; k++) b->p[MAMBA_NORM][k] = 1.0f;
        fill(b->p[MAMBA_CONV_W], (size_t)di * K, 0.5f);
        fill(b->p[MAMBA_CONV_B], (size_t)di, 0.5f);
        for (int d = 0; d < di; d++) {
            for (int s = 0; s < S; s++) b->p[MAMBA_A_LOG][(size_t)d * S + s] = logf((float)(s + 1));
            b->p[MAMBA_D][d] = 1.0f;
            float dt = expf(logf(0.001f) + (uni() + 1.0f) * 0.5f * (logf(0.1f) - logf(0.001f)));
            b->lin[MAMBA_DT].b[d] = dt + logf(-expm1f(-dt));
        }
    }
}

int main(void) {
    char root[4096], dir[] = "/tmp/sparq-bench-mamba-XXXXXX", path[4200], tp[4200], xp[4200];
    err e = {0};
    if (data_root(root, sizeof root, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    model_config c = {.dim = 768, .hidden_dim = 1536, .n_layers = 24, .n_heads = 1, .n_kv_heads = 1,
                      .head_size = 768, .vocab_size = 50280, .seq_len = 2048, .norm_eps = 1e-5f,
                      .state_size = 16, .conv_kernel = 4, .dt_rank = 48, .conv_bias = true,
                      .linear_bias = false, .family = &family_mamba};
    model *gen = NULL, *m = NULL;
    tokenizer *t = NULL;
    if (!mkdtemp(dir)) { perror(dir); return 1; }
    double t0 = clock_seconds();
    if (model_alloc(&gen, &c, true, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    init_weights(gen);
    model_save_options so = {.format = MODEL_FORMAT_SAFETENSORS, .dtype = DTYPE_F16};
    snprintf(path, sizeof path, "%s/model", dir);
    int rc = model_save_opts(gen, path, &so, &e);
    model_free(gen);
    if (!rc) rc = model_load(&m, path, &e);
    snprintf(tp, sizeof tp, "%s/tokenizers/neox/tokenizer.json", root);
    if (!rc) rc = tokenizer_load(&t, tp, &e);
    if (rc) { fprintf(stderr, "%s\n", e.msg); return 1; }
    printf("Mamba-130M shape (random f16 weights, %s): %.1f M parameters, written and loaded in %.1f s\n",
           path, model_params(m) / 1e6, clock_seconds() - t0);

    snprintf(xp, sizeof xp, "%s/text/wiki.test.raw", root);
    token_seqs s = {0};
    if (ppl_prepare(t, xp, PPL_WINDOWS, 512, 4, &s, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    printf("eval: wiki.test.raw, windows of 512 (4 windows), best of 2 runs per row\n");
    printf("%7s %9s %10s %8s %8s %8s\n", "threads", "tokens", "tokens/s", "GEMM %", "scan %", "other %");
    for (int th = 1; th <= 2; th++) {
        blas_set_threads(th);
        ppl_result best = {0};
        mamba_profile bp = {0};
        for (int rep = 0; rep < 2; rep++) {
            ppl_result res;
            mamba_profile p;
            mamba_profile_start();
            rc = ppl_score(m, &s, &res, NULL, NULL, &e);
            mamba_profile_stop(&p);
            if (rc) { fprintf(stderr, "%s\n", e.msg); return 1; }
            if (rep == 0 || res.seconds < best.seconds) {
                best = res;
                bp = p;
            }
        }
        double tot = bp.gemm + bp.scan + bp.other;
        printf("%7d %9ld %10.0f %7.1f%% %7.1f%% %7.1f%%\n", th, best.tokens_forward,
               best.tokens_forward / best.seconds, 100 * bp.gemm / tot, 100 * bp.scan / tot,
               100 * bp.other / tot);
    }
    token_seqs_free(&s);
    tokenizer_free(t);
    model_free(m);
    char f[4300];
    snprintf(f, sizeof f, "%s/model.safetensors", path);
    unlink(f);
    snprintf(f, sizeof f, "%s/config.json", path);
    unlink(f);
    rmdir(path);
    rmdir(dir);
    printf("peak RSS %.1f MB\n", clock_peak_rss_mb());
    return 0;
}
