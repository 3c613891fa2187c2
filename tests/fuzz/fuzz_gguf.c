/* GGUF (core/gguf.c): gguf_open and the metadata getters, gguf_load_model, gguf_load_tokenizer,
 * all on the same input file. */
#include "../../core/gguf.h"
#include "fuzz.h"
#include "use_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input("gguf", "model.gguf", data, size);
    err e = {0};
    gguf_file *g = NULL;
    if (gguf_open(&g, path, &e) == SPARQ_OK) {
        int64_t i;
        double d;
        char s[64];
        uint32_t et;
        uint64_t n;
        volatile uint64_t sink = gguf_version(g) + gguf_n_kv(g) + gguf_n_tensors(g) + gguf_data_offset(g);
        if (gguf_get_int(g, "llama.embedding_length", &i)) sink += (uint64_t)i;
        if (gguf_get_float(g, "llama.rope.freq_base", &d)) sink += (uint64_t)(d != 0);
        if (gguf_get_str(g, "general.architecture", s, sizeof s)) sink += strlen(s);
        if (gguf_get_array(g, "tokenizer.ggml.tokens", &et, &n)) sink += n + et;
        (void)sink;
    }
    gguf_close(g);
    model *m = NULL;
    e = (err){0};
    if (gguf_load_model(&m, path, &e) == SPARQ_OK) (void)model_params(m);
    model_free(m);
    tokenizer *t = NULL;
    e = (err){0};
    if (gguf_load_tokenizer(&t, path, &e) == SPARQ_OK) use_tokenizer(t);
    tokenizer_free(t);
    return 0;
}
