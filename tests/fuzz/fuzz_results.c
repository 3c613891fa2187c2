/* Sweep results (experiments/results.c, results_load): the input is DIR/runs.jsonl. */
#include "../../experiments/results.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_input("results", "runs.jsonl", data, size);
    const char *dir = fuzz_dir("results");
    cJSON **recs = NULL;
    int n = 0;
    err e = {0};
    if (results_load(dir, &recs, &n, &e) == SPARQ_OK) (void)results_find(recs, n, "0123456789abcdef");
    results_free(recs, n);
    return 0;
}
