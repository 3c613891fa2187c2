/* Round to nearest, algorithms.md §4 (gptq --nearest): every weight to the nearest point of
 * its row's or group's grid, no error feedback, no calibration data. As the second stage of a
 * chain (case B) pruned entries stay exactly zero. With --ggml TYPE it is ggml's own rounding
 * instead (quantize_row_*_ref per block of 32: what llama-quantize writes), the weights set to
 * the values the blocks decode to. */
#include <stdlib.h>

#include "../core/ggml_blocks.h"
#include "quantizer.h"
#include "solver.h"

/* One block of n <= 32 weights through ggml's reference quantizer and back. A short last block
 * (a row not a multiple of 32, which the GGUF writer keeps f16) is padded with copies of its
 * first weight, which leave its min, max and first largest magnitude, so its grid, unchanged. */
static void rtn_ggml_block(const ggml_block_type *b, float *w, int n, float *d, float *m) {
    unsigned char blk[64];
    float x[GGML_BLOCK];
    for (int j = 0; j < GGML_BLOCK; j++) x[j] = w[j < n ? j : 0];
    ggml_block_quantize_ref(b, x, blk, 1);
    ggml_block_dequantize(b, blk, x, 1);
    ggml_block_params(b, blk, 0, d, m);
    for (int j = 0; j < n; j++) w[j] = x[j];
}

static int rtn_compress(float *W, int rows, int cols, const float *H, const target *t,
                        layer_report *r, err *e) {
    (void)H;
    int g = t->group > 0 && t->group < cols ? t->group : cols, ng = (cols + g - 1) / g;
    const ggml_block_type *gb = t->ggml ? &ggml_block_types[t->ggml - 1] : NULL;
    bool affine = gb ? gb->has_min : t->grid == QUANT_GRID_GGML && !t->sym;
    r->scale = malloc((size_t)rows * ng * sizeof(float));
    r->zero = malloc((size_t)rows * ng * sizeof(float));
    r->min = affine ? malloc((size_t)rows * ng * sizeof(float)) : NULL;
    if (!r->scale || !r->zero || (affine && !r->min)) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    r->group = ng > 1 ? g : -1;
    r->n_groups = ng;
    for (int i = 0; i < rows; i++) {
        for (int q = 0; q < ng; q++) {
            int c0 = q * g, n = c0 + g < cols ? g : cols - c0;
            size_t at = (size_t)i * ng + q;
            float *w = W + (size_t)i * cols + c0;
            const uint8_t *mk = r->mask + (size_t)i * cols + c0;
            if (gb) {   /* solver_check: g == 32 */
                float m = 0.0f;
                rtn_ggml_block(gb, w, n, &r->scale[at], &m);
                r->zero[at] = (float)gb->offset;
                if (r->min) r->min[at] = m;
                for (int c = 0; c < n; c++) if (t->keep_mask && mk[c]) w[c] = 0.0f;
                continue;
            }
            quant_params p;
            int rc = quant_fit(w, n, 1, t->bits, t->sym, t->mse, t->grid, &p, e);
            if (rc) return rc;
            r->scale[at] = p.scale;
            r->zero[at] = p.zero;
            if (r->min) r->min[at] = p.min;
            for (int c = 0; c < n; c++) w[c] = t->keep_mask && mk[c] ? 0.0f : quant_value(w[c], &p);
        }
    }
    return SPARQ_OK;
}

const solver solver_rtn = {
    .name = "rtn", .compress = rtn_compress, .uses_hessian = false, .quantizes = true,
    .needs_bits = true,
};
