/* Compression metrics of algorithms.md §9 (storage accounting) and §7 (TCr): bits per original
 * weight of a compressed linear layer, as packed and in theory. Pure arithmetic on the
 * numbers of a layer report; knows nothing of solvers or models. */
#ifndef SPARQ_METRICS_H
#define SPARQ_METRICS_H

/* Bits per weight as packed: values (bits, 16 = unquantized fp16), the pruning metadata
 * (bitmask for unstructured sparsity, ceil(log2 M) bits per kept weight for N:M) and the
 * per-group grid (fp16 scale + fp16 zero = 32 bits per group of `group` columns; group <= 0
 * means one per row of `cols`). */
double metrics_bpw_packed(double sparsity, int bits, int n, int m, int group, int cols);

/* Theoretical bits per weight, no overheads: q (1 - s). */
double metrics_bpw_theoretical(double sparsity, int bits);

#endif
