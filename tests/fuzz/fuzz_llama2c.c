/* llama2.c checkpoint loader (core/model.c, model_load_llama2c): the input is the .bin file. */
#include "../../core/model.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input("llama2c", "model.bin", data, size);
    model *m = NULL;
    err e = {0};
    if (model_load_llama2c(&m, path, &e) == SPARQ_OK) {
        (void)model_params(m);
        (void)model_linear_params(m);
    }
    model_free(m);
    return 0;
}
