/* A byte-level vocabulary/merges pair (core/bpe.c, bpe_load_pair through tokenizer_load on its
 * folder): the input is vocab.json, then after the first NUL merges.txt. */
#include "../../core/bpe.h"
#include "fuzz.h"
#include "use_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t vl = nul ? (size_t)(nul - data) : size;
    static char vocab[512], merges[512];
    if (!vocab[0]) {
        fuzz_path(vocab, sizeof vocab, "bpe_pair", "vocab.json");
        fuzz_path(merges, sizeof merges, "bpe_pair", "merges.txt");
    }
    fuzz_write(vocab, data, vl);
    fuzz_write(merges, nul ? nul + 1 : data, nul ? size - vl - 1 : 0);
    tokenizer *t = NULL;
    err e = {0};
    if (tokenizer_load(&t, fuzz_dir("bpe_pair"), &e) == SPARQ_OK) use_tokenizer(t);
    tokenizer_free(t);
    return 0;
}
