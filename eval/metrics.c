#include "metrics.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

double metrics_grid_bits(int bits, bool sym) {
    if (bits >= 16) return 0.0;
    return sym ? 16.0 : 32.0;
}

double metrics_bpw_packed(double sparsity, int bits, bool sym, int n, int m, int group, int cols) {
    double b = bits, grid = metrics_grid_bits(bits, sym) / (group > 0 ? group : cols);
    if (m > 0) {
        double keep = (double)(m - n) / m;
        return keep * (b + ceil(log2((double)m))) + grid;
    }
    if (sparsity > 0.0) return 1.0 + (1.0 - sparsity) * b + grid;
    return b + grid;
}

metrics_storage metrics_model_storage(const metrics_layer *l, int n, int nm_n, int nm_m,
                                      double linear_params, double other_params) {
    metrics_storage s = {0};
    /* No layer reports: the uncompressed model, every linear weight in fp16. */
    double bits = n ? 0.0 : 16.0 * linear_params, pruned = 0.0;
    for (int i = 0; i < n; i++) {
        bits += l[i].weights * metrics_bpw_packed(l[i].sparsity, l[i].bits, l[i].sym, nm_n, nm_m,
                                                         l[i].group, l[i].cols);
        pruned += l[i].weights * l[i].sparsity;
    }
    s.sparsity = linear_params > 0 ? pruned / linear_params : 0.0;
    s.bpw = linear_params > 0 ? bits / linear_params : 0.0;
    s.bytes = metrics_model_bytes(linear_params, s.bpw, other_params);
    return s;
}

double metrics_bpw_theoretical(double sparsity, int bits) {
    return bits * (1.0 - sparsity);
}

double metrics_model_bytes(double linear_params, double linear_bpw, double other_params) {
    return linear_params * linear_bpw / 8.0 + 2.0 * other_params;
}

/* algorithms.md §7: TCr = 1 - (q/16)(1 - s), explicitly without masks, indices or scales. */
double metrics_tcr(double sparsity, int bits) {
    return 1.0 - metrics_bpw_theoretical(sparsity, bits > 16 ? 16 : bits) / 16.0;
}

double metrics_compression_ratio(double sparsity, int bits) {
    double bpw = metrics_bpw_theoretical(sparsity, bits > 16 ? 16 : bits);
    return bpw > 0.0 ? 16.0 / bpw : INFINITY;
}

double metrics_sr(const double *acc, const double *dense, int n) {
    if (n <= 0) return NAN;
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        if (!(dense[i] > 0.0)) return NAN;
        s += acc[i] / dense[i];
    }
    return s / n;
}

double metrics_sr_chance(const double *acc, const double *dense, const double *chance, int n) {
    if (n <= 0) return NAN;
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        if (!(dense[i] > chance[i])) return NAN;
        s += (acc[i] - chance[i]) / (dense[i] - chance[i]);
    }
    return s / n;
}

/* SrCr reconstruction [RECON] of algorithms.md §7, from "Semantic Retention and Extreme
 * Compression in LLMs: Can We Have Both?" (Laborde et al., IJCNN 2025, arXiv 2505.07289), whose
 * exact formula we could not obtain: a summary says it combines Sr with a square root of the
 * pruning ratio and a logarithm of the bit width. SrCr = Sr / (sqrt(1 - s) * log2(q) / 4),
 * so the dense fp16 model (s = 0, q = 16) gets SrCr = Sr, pruning alone gives Sr / sqrt(1 - s)
 * and quantization alone Sr * 4 / log2(q). Bit widths above 16 count as 16 (fp16 storage, the
 * TCr convention); q < 2 (log2 q <= 0) and s >= 1 are outside its domain. */
static int srcr_recon(double sr, double s, int q, double *out) {
    if (q < 2 || !(s >= 0.0 && s < 1.0)) return -1;
    if (q > 16) q = 16;
    *out = sr / (sqrt(1.0 - s) * log2((double)q) / 4.0);
    return 0;
}

/* Not from the paper: retention times the compression ratio 16 / (q (1 - s)), the plainest
 * "retention per bit" label, kept as a second definition so the selection by name is real. */
static int srcr_ratio(double sr, double s, int q, double *out) {
    if (q < 1 || !(s >= 0.0 && s < 1.0)) return -1;
    *out = sr * metrics_compression_ratio(s, q);
    return 0;
}

/* To drop in the paper's exact formula: add a function above and a row here. */
static const struct {
    const char *name, *text;
    int (*fn)(double sr, double s, int q, double *out);
} formulas[] = {
    {"recon", "Sr / (sqrt(1-s) log2(q)/4), the reconstruction of algorithms.md §7", srcr_recon},
    {"ratio", "Sr x 16 / (q (1-s)), retention times the compression ratio", srcr_ratio},
};

const char *metrics_srcr_text(const char *formula) {
    if (!formula || !*formula) formula = metrics_srcr_names[0];
    for (size_t i = 0; i < sizeof formulas / sizeof formulas[0]; i++)
        if (strcmp(formula, formulas[i].name) == 0) return formulas[i].text;
    return "unknown";
}

const char *const metrics_srcr_names[] = {"recon", "ratio", NULL};

int metrics_srcr(const char *formula, double sr, double sparsity, int bits, double *out, err *e) {
    if (!formula || !*formula) formula = metrics_srcr_names[0];
    for (size_t i = 0; i < sizeof formulas / sizeof formulas[0]; i++) {
        if (strcmp(formula, formulas[i].name) != 0) continue;
        if (formulas[i].fn(sr, sparsity, bits, out) != 0)
            return err_set(e, SPARQ_EINPUT, "SrCr formula %s is undefined at sparsity %g, %d bits",
                           formula, sparsity, bits);
        return SPARQ_OK;
    }
    return err_set(e, SPARQ_EINPUT, "unknown SrCr formula '%s': expected recon or ratio", formula);
}
