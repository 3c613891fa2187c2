/* llama2.c checkpoint loader (core/model.c, model_load_llama2c): the input is the .bin file. */
#include "../../core/model.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[512];
    if (!path[0]) fuzz_path(path, sizeof path, "llama2c", "model.bin");
    fuzz_write(path, data, size);
    model *m = NULL;
    err e = {0};
    if (model_load_llama2c(&m, path, &e) == SPARQ_OK) {
        (void)model_params(m);
        (void)model_linear_params(m);
    }
    model_free(m);
    return 0;
}
