/* Encoding arbitrary bytes with the real GPT-2 (encoder.json + vocab.bpe) and NeoX (tokenizer.json)
 * tokenizers from $SPARQ_DATA: never a crash, and GPT-2's tokens always decode back to the input
 * (up to its first NUL), invalid UTF-8 included. Without the data, nothing is checked. */
#include "../../core/fileio.h"
#include "../../core/tokenizer.h"
#include "fuzz.h"

static tokenizer *load(const char *rel) {
    char root[4096], path[4400];
    err e = {0};
    tokenizer *t = NULL;
    if (data_root(root, sizeof root, &e) != SPARQ_OK) return NULL;
    snprintf(path, sizeof path, "%s/%s", root, rel);
    if (tokenizer_load(&t, path, &e) != SPARQ_OK) return NULL;
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static tokenizer *gpt2, *neox;
    static int loaded;
    if (!loaded) {
        loaded = 1;
        gpt2 = load("tokenizers/gpt2/encoder.json");
        neox = load("tokenizers/neox/tokenizer.json");
    }
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    for (int k = 0; k < 2; k++) {
        const tokenizer *t = k ? neox : gpt2;
        if (!t) continue;
        int *ids = NULL, n = 0;
        err e = {0};
        if (tokenizer_encode(t, text, true, true, &ids, &n, &e) == SPARQ_OK && k == 0) {
            size_t len = strlen(text), at = 0;
            for (int i = 0; i + 1 < n; i++) {   /* the last id is GPT-2's EOS */
                int l;
                const char *p = tokenizer_decode(t, -1, ids[i], &l);
                if (at + (size_t)l > len || memcmp(text + at, p, (size_t)l) != 0) abort();
                at += (size_t)l;
            }
            if (at != len) abort();
        }
        free(ids);
    }
    free(text);
    return 0;
}
