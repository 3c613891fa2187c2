#include "metrics.h"

#include <math.h>

double metrics_bpw_packed(double sparsity, int bits, int n, int m, int group, int cols) {
    double b = bits, grid = 0.0;
    if (bits < 16) grid = 32.0 / (group > 0 ? group : cols);
    if (m > 0) {
        double keep = (double)(m - n) / m;
        return keep * (b + ceil(log2((double)m))) + grid;
    }
    if (sparsity > 0.0) return 1.0 + (1.0 - sparsity) * b + grid;
    return b + grid;
}

double metrics_bpw_theoretical(double sparsity, int bits) {
    return bits * (1.0 - sparsity);
}
