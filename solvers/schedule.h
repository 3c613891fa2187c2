/* Per-layer sparsity allocation for aggressive compression (algorithms.md §6): sensitive layers
 * get less sparsity and robust ones more, with the parameter-weighted mean kept at the target.
 * `hessian` ranks layers by the OBS error estimated from the inverse Hessian (clustered on a log
 * scale), `owl` by the fraction of activation outliers (OWL, Yin et al. 2023). Pure arithmetic
 * on per-layer statistics; knows nothing of the model. */
#ifndef SPARQ_SCHEDULE_H
#define SPARQ_SCHEDULE_H

#include "../core/err.h"

typedef enum { SCHEDULE_UNIFORM, SCHEDULE_HESSIAN, SCHEDULE_OWL } schedule_kind;

int schedule_parse(const char *name, schedule_kind *out, err *e);
const char *schedule_name(schedule_kind k);

typedef struct {
    double params;         /* rows * cols: the weight of the layer in the mean             */
    double obs_error;      /* hessian: mean OBS saliency of the weights pruned at target   */
    double outliers;       /* owl: fraction of |W| * ||X|| scores above 5x the mean       */
    int    block;          /* owl: layers of one block share its outlier ratio            */
} schedule_layer;

/* Sparsity of each of n layers: weighted mean = target (to 1e-6), each in [0, 0.95]. */
int schedule_allocate(schedule_kind k, const schedule_layer *layers, int n, double target,
                      double *out, err *e);

/* The statistics of one layer W [rows][cols] with Hessian H, at sparsity s. */
int schedule_measure(const float *W, int rows, int cols, const float *H, double s, float damp,
                     schedule_layer *out, err *e);

#endif
