#include "hessian.h"

#include <cblas.h>
#include <stdlib.h>

int hessian_init(hessian *h, int n, err *e) {
    h->n = n;
    h->tokens = 0;
    h->H = calloc((size_t)n * n, sizeof(float));
    if (!h->H) return err_set(e, SPARQ_ERUNTIME, "out of memory for a %d x %d Hessian", n, n);
    return SPARQ_OK;
}

void hessian_free(hessian *h) {
    if (!h) return;
    free(h->H);
    h->H = NULL;
}

void hessian_accumulate(hessian *h, const float *X, int ntok) {
    if (ntok <= 0) return;
    /* Upper triangle of S += X^T X; the lower one is filled once at the end. OpenBLAS runs
     * SSYRK on its own threads here (see blas.h: it is set to one thread, so this is serial
     * per call; callers accumulate large chunks). */
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, h->n, ntok, 1.0f, X, h->n, 1.0f, h->H, h->n);
    h->tokens += ntok;
}

void hessian_finish(hessian *h, int nseq) {
    int n = h->n;
    float s = nseq > 0 ? 2.0f / (float)nseq : 0.0f;
    for (int i = 0; i < n; i++) {
        for (int j = i; j < n; j++) {
            float v = h->H[(size_t)i * n + j] * s;
            h->H[(size_t)i * n + j] = v;
            h->H[(size_t)j * n + i] = v;
        }
    }
}
