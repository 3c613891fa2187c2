/* bench-stories3m: how close `sparq eval` on stories3M (llama2.c version 2, dim 192) comes to
 * this machine's sgemm. Measures, in one run: the sgemm peak at 1 and 2 threads (n threads = n
 * concurrent single-threaded cblas_sgemm calls, which is how the evaluation parallelises: one
 * sequence task per thread), the best of the forward pass's shapes and of large squares up to
 * 2048, then eval tokens/s at 1 and 2 threads for seqlen-256 windows of wiki.test.raw and the
 * 512-token documents of TinyStories, with the eval's achieved GFLOP/s as a % of the peak at the
 * same thread count. The eval's time is ppl_score's (the forward passes and the NLL); the text is
 * tokenized before it, untimed. Prints; asserts nothing. */
#include <cblas.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/blas.h"
#include "../core/clock.h"
#include "peak.h"
#include "../core/fileio.h"
#include "../core/model.h"
#include "../core/tokenizer.h"
#include "../eval/perplexity.h"

/* The forward pass's GEMMs (M tokens x K in -> N out) on a 1024-token task: q, k, v as one
 * GEMM and as three, o, gate and up as one GEMM and as two, down, and one 256-column slice of the
 * classifier; then large squares, so the peak is what sgemm reaches at its best, not only on
 * the shapes the eval happens to use. */
static const struct { int M, K, N; const char *what; } shapes[] = {
    {1024, 192, 320, "q+k+v"}, {1024, 192, 192, "q, o"}, {1024, 192, 64, "k, v"},
    {1024, 192, 1024, "gate+up"}, {1024, 192, 512, "gate, up"}, {1024, 512, 192, "down"},
    {1024, 192, 256, "classifier slice"}, {512, 512, 512, "square"}, {1024, 1024, 1024, "square"},
    {2048, 2048, 2048, "square"},
};

/* Useful multiply-adds x 2 of the forward pass over sequences of these lengths: every linear
 * layer and the classifier per token, and causal attention (q.k and the weighted sum of v over
 * positions 0..p: 2 x 2 x d per earlier position per layer). Norms, RoPE, SiLU and softmax are
 * O(d) per token and left out. */
static double eval_flops(const model *m, const token_seqs *s) {
    double per_tok = 2.0 * ((double)model_linear_params(m) + (double)m->cfg.vocab_size * m->cfg.dim);
    double f = 0, d = m->cfg.dim, L = m->cfg.n_layers;
    for (int i = 0; i < s->n; i++) {
        double n = s->lens[i];
        f += per_tok * n + L * 4.0 * d * n * (n + 1) / 2;
    }
    return f;
}

int main(int argc, char **argv) {
    bool sgemm_only = argc > 1 && strcmp(argv[1], "--sgemm-only") == 0;
    char root[4096], mp[4200], tp[4200], xp[4200];
    err e = {0};
    if (data_root(root, sizeof root, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    double peak[3] = {0};
    printf("sgemm (y = x W^T, single-threaded cblas_sgemm per thread), GFLOP/s\n");
    printf("%-26s %5s %5s %5s %9s %9s\n", "shape", "M", "K", "N", "1 thread", "2 threads");
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        double g[3];
        for (int th = 1; th <= 2; th++) {
            g[th] = bench_sgemm_gflops(shapes[k].M, shapes[k].K, shapes[k].N, th, 20, 0.025);
            if (g[th] > peak[th]) peak[th] = g[th];
        }
        printf("%-26s %5d %5d %5d %9.1f %9.1f\n", shapes[k].what, shapes[k].M, shapes[k].K, shapes[k].N,
               g[1], g[2]);
    }
    printf("%-26s %17s %9.1f %9.1f\n\n", "peak", "", peak[1], peak[2]);
    if (sgemm_only) return 0;

    snprintf(mp, sizeof mp, "%s/stories3M/stories3M-q80.bin", root);
    snprintf(tp, sizeof tp, "%s/stories3M/tok4096.bin", root);
    model *m = NULL;
    tokenizer *t = NULL;
    if (model_load(&m, mp, &e) || tokenizer_load(&t, tp, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    static const struct { const char *text; ppl_protocol p; int seqlen; } runs[] = {
        {"text/wiki.test.raw", PPL_WINDOWS, 256},
        {"text/TinyStories-valid-first1000.txt", PPL_DOCUMENTS, 512},
    };
    printf("stories3M eval (best of 2 runs per row; time = scoring, tokenizing excluded)\n");
    printf("%-38s %-9s %6s %7s %9s %10s %8s %8s %7s\n", "text", "protocol", "seqlen", "threads", "tokens",
           "tokens/s", "ppl", "GFLOP/s", "% peak");
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        snprintf(xp, sizeof xp, "%s/%s", root, runs[r].text);
        token_seqs s = {0};
        if (ppl_prepare(t, xp, runs[r].p, runs[r].seqlen, 0, &s, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        double flops = eval_flops(m, &s);
        for (int th = 1; th <= 2; th++) {
            blas_set_threads(th);
            ppl_result best = {0};
            for (int rep = 0; rep < 2; rep++) {
                ppl_result res;
                if (ppl_score(m, &s, &res, NULL, NULL, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
                if (rep == 0 || res.seconds < best.seconds) best = res;
            }
            double gf = flops / best.seconds / 1e9;
            printf("%-38s %-9s %6d %7d %9ld %10.0f %8.4f %8.1f %6.1f%%\n", runs[r].text,
                   ppl_protocol_name(runs[r].p), runs[r].seqlen, th, best.tokens_forward,
                   best.tokens_forward / best.seconds, best.ppl, gf, 100 * gf / peak[th]);
        }
        token_seqs_free(&s);
    }
    printf("peak RSS %.1f MB (the sgemm buffers of the peak included)\n", clock_peak_rss_mb());
    tokenizer_free(t);
    model_free(m);
    return 0;
}
