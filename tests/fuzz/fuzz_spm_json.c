/* Hugging Face tokenizer.json of the SentencePiece-BPE kind (core/spm.c, spm_load_json), then the
 * tokenizer is used as the tokenizer harness does. */
#include "../../core/spm.h"
#include "fuzz.h"
#include "use_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input("spm_json", "tokenizer.json", data, size);
    tokenizer *t = NULL;
    err e = {0};
    if (spm_load_json(&t, path, &e) == SPARQ_OK) use_tokenizer(t);
    tokenizer_free(t);
    return 0;
}
