/* Hugging Face tokenizer.json of the SentencePiece-BPE kind (core/spm.c, spm_load_json), then the
 * tokenizer is used as the tokenizer harness does. */
#include "../../core/spm.h"
#include "fuzz.h"
#include "use_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[512];
    if (!path[0]) fuzz_path(path, sizeof path, "spm_json", "tokenizer.json");
    fuzz_write(path, data, size);
    tokenizer *t = NULL;
    err e = {0};
    if (spm_load_json(&t, path, &e) == SPARQ_OK) use_tokenizer(t);
    tokenizer_free(t);
    return 0;
}
