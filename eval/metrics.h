/* Compression metrics of algorithms.md §9 (storage accounting) and §7 (TCr, Sr, SrCr): bits per
 * original weight of a compressed linear layer, model size, compression rates and retention.
 * Pure arithmetic on numbers; knows nothing of solvers, models or tasks. */
#ifndef SPARQ_METRICS_H
#define SPARQ_METRICS_H

#include <stdbool.h>

#include "../core/err.h"

/* Bits of one group's quantization grid: an fp16 scale, plus an fp16 zero point for an
 * asymmetric grid (32); a symmetric grid's zero is the fixed midpoint (2^bits)/2 and is not
 * stored (16). 0 when unquantized (bits >= 16). */
double metrics_grid_bits(int bits, bool sym);

/* Bits per weight as packed: values (bits, 16 = unquantized fp16), the pruning metadata
 * (bitmask for unstructured sparsity, ceil(log2 M) bits per kept weight for N:M) and the
 * per-group grid (metrics_grid_bits per group of `group` columns; group <= 0 means one per row
 * of `cols`). */
double metrics_bpw_packed(double sparsity, int bits, bool sym, int n, int m, int group, int cols);

/* One compressed linear layer as storage sees it. */
typedef struct {
    double weights;          /* rows * cols                                      */
    double sparsity;         /* pruned fraction                                  */
    int    bits, group, cols;
    bool   sym;              /* symmetric grid: no zero point stored             */
} metrics_layer;

/* The storage of a compressed model (algorithms.md §9): its linear layers as packed (N:M
 * pattern nm_n:nm_m, 0:0 = unstructured), every other parameter in fp16. The one place sizes
 * are summed, for `compress` and the sweep's records alike. */
typedef struct {
    double sparsity;         /* pruned fraction of the linear weights            */
    double bpw;              /* packed bits per linear weight                    */
    double bytes;            /* the whole model as packed                        */
} metrics_storage;

metrics_storage metrics_model_storage(const metrics_layer *layers, int n, int nm_n, int nm_m,
                                      double linear_params, double other_params);

/* Theoretical bits per weight, no overheads: q (1 - s). */
double metrics_bpw_theoretical(double sparsity, int bits);

/* Whole-model size in bytes: the linear layers at `linear_bpw` bits per weight, every other
 * parameter (embeddings, classifier, norms) kept in 16 bits. */
double metrics_model_bytes(double linear_params, double linear_bpw, double other_params);

/* Theoretical compression rate, the fraction of fp16 bits removed: TCr = 1 - (q/16)(1 - s).
 * Bit widths above 16 count as 16 (unquantized weights are stored in fp16). */
double metrics_tcr(double sparsity, int bits);

/* Compression ratio against fp16: 16 / (q (1 - s)) = 1 / (1 - TCr); +inf when s = 1. */
double metrics_compression_ratio(double sparsity, int bits);

/* Semantic retention Sr: the mean over n tasks of acc[i] / dense[i] (the dense accuracies from
 * the same pipeline). NaN when n = 0 or a dense accuracy is not positive. */
double metrics_sr(const double *acc, const double *dense, int n);

/* Chance-corrected retention: the mean of (acc[i] - chance[i]) / (dense[i] - chance[i]). NaN
 * when n = 0 or a dense accuracy is not above chance (there is nothing to retain). */
double metrics_sr_chance(const double *acc, const double *dense, const double *chance, int n);

/* SrCr, Sr combined with the compression, by the named formula (NULL or "" = the default,
 * "recon"); see metrics_srcr_names. Unknown names and (s, q) outside a formula's domain fail
 * with SPARQ_EINPUT. */
int metrics_srcr(const char *formula, double sr, double sparsity, int bits, double *out, err *e);

/* One line saying what the named formula computes, for report headers ("unknown" if none). */
const char *metrics_srcr_text(const char *formula);

/* The formula names metrics_srcr accepts, NULL-terminated; the first is the default. */
extern const char *const metrics_srcr_names[];

#endif
