/* Sweep results (experiments/results.c, results_load): the input is DIR/runs.jsonl. */
#include "../../experiments/results.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char dir[512], path[512];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s", fuzz_dir("results"));
        fuzz_path(path, sizeof path, "results", "runs.jsonl");
    }
    fuzz_write(path, data, size);
    cJSON **recs = NULL;
    int n = 0;
    err e = {0};
    if (results_load(dir, &recs, &n, &e) == SPARQ_OK) (void)results_find(recs, n, "0123456789abcdef");
    results_free(recs, n);
    return 0;
}
