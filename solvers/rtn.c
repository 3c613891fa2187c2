/* Round to nearest, algorithms.md §4 (gptq --nearest): every weight to the nearest point of
 * its row's or group's grid, no error feedback, no calibration data. As the second stage of a
 * chain (case B) pruned entries stay exactly zero. */
#include <stdlib.h>

#include "quantizer.h"
#include "solver.h"

static int rtn_compress(float *W, int rows, int cols, const float *H, const target *t,
                        layer_report *r, err *e) {
    (void)H;
    int g = t->group > 0 && t->group < cols ? t->group : cols, ng = (cols + g - 1) / g;
    r->scale = malloc((size_t)rows * ng * sizeof(float));
    r->zero = malloc((size_t)rows * ng * sizeof(float));
    if (!r->scale || !r->zero) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    r->group = ng > 1 ? g : -1;
    r->n_groups = ng;
    for (int i = 0; i < rows; i++) {
        for (int q = 0; q < ng; q++) {
            int c0 = q * g, n = c0 + g < cols ? g : cols - c0;
            float *w = W + (size_t)i * cols + c0;
            const uint8_t *mk = r->mask + (size_t)i * cols + c0;
            quant_params p;
            int rc = quant_fit(w, n, 1, t->bits, t->sym, t->mse, &p, e);
            if (rc) return rc;
            r->scale[(size_t)i * ng + q] = p.scale;
            r->zero[(size_t)i * ng + q] = p.zero;
            for (int c = 0; c < n; c++) w[c] = t->keep_mask && mk[c] ? 0.0f : quant_value(w[c], &p);
        }
    }
    return SPARQ_OK;
}

const solver solver_rtn = {
    .name = "rtn", .compress = rtn_compress, .uses_hessian = false, .quantizes = true,
    .needs_bits = true,
};
