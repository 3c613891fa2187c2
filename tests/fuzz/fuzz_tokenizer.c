/* llama2.c tokenizer.bin (core/tokenizer.c, tokenizer_load on a .bin path), then an encode and a
 * decode of every token of the vocabulary read, which use every piece and score. */
#include "../../core/tokenizer.h"
#include "fuzz.h"

/* Shared with the SentencePiece harnesses: exercise a tokenizer a reader returned. */
#include "use_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input("tokenizer", "tokenizer.bin", data, size);
    tokenizer *t = NULL;
    err e = {0};
    if (tokenizer_load(&t, path, &e) == SPARQ_OK) use_tokenizer(t);
    tokenizer_free(t);
    return 0;
}
