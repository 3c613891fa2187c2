/* Hugging Face checkpoint (core/safetensors.c, safetensors_load_model): config.json and
 * model.safetensors in one input, as [u32 little-endian length of config.json][config.json]
 * [model.safetensors] (shorter inputs: all of it is config.json and the safetensors is empty).
 * Both files go into the scratch folder and the folder is loaded. */
#include "../../core/safetensors.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char dir[512], cfg[512], st[512];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s", fuzz_dir("safetensors"));
        fuzz_path(cfg, sizeof cfg, "safetensors", "config.json");
        fuzz_path(st, sizeof st, "safetensors", "model.safetensors");
    }
    size_t ncfg = size, off = 0;
    if (size >= 4) {
        uint32_t n = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                     (uint32_t)data[3] << 24;
        off = 4;
        ncfg = n < size - 4 ? n : size - 4;
    }
    fuzz_write(cfg, data + off, ncfg);
    fuzz_write(st, data + off + ncfg, size - off - ncfg);
    model *m = NULL;
    err e = {0};
    if (safetensors_load_model(&m, dir, &e) == SPARQ_OK) (void)model_params(m);
    model_free(m);
    return 0;
}
