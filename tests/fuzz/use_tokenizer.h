/* Exercise a tokenizer a reader returned: encode a fixed text (merges, byte fallback), decode
 * every token after BOS and after itself, look at every piece and score. */
#ifndef SPARQ_FUZZ_USE_TOKENIZER_H
#define SPARQ_FUZZ_USE_TOKENIZER_H

#include <stdlib.h>
#include <string.h>

#include "../../core/tokenizer.h"

static void use_tokenizer(const tokenizer *t) {
    int *ids = NULL, n = 0;
    err e = {0};
    volatile size_t sink = 0;
    if (tokenizer_encode(t, "Once upon a time, a tiny \xc3\xa9l\xc3\xa8ve said \xe2\x96\x81hi!\n\x01",
                         true, true, &ids, &n, &e) == SPARQ_OK) {
        for (int i = 0; i < n; i++) sink += (size_t)ids[i];
    }
    free(ids);
    int v = tokenizer_vocab_size(t);
    for (int i = 0; i < v; i++) {
        int len = 0;
        const char *s = tokenizer_decode(t, TOKEN_BOS, i, &len);
        if (s && len > 0) sink += (unsigned char)s[len - 1];
        s = tokenizer_decode(t, i, i, &len);
        if (s && len > 0) sink += (unsigned char)s[0];
        s = tokenizer_piece(t, i);
        if (s) sink += strlen(s);
        sink += (size_t)(tokenizer_score(t, i) != 0.0f);
    }
    (void)sink;
}

#endif
