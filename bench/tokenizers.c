/* bench-tokenizers: tokenizer throughput (MB of text per second, one thread) on WikiText-2's test
 * text (text/wiki.test.raw, encoded whole), for GPT-2 (encoder.json + vocab.bpe), GPT-NeoX
 * (tokenizer.json: added tokens, NFC) and the llama2.c SentencePiece path (tok512.bin); best of 3. */
#include <stdio.h>
#include <stdlib.h>

#include "../core/clock.h"
#include "../core/fileio.h"
#include "../core/text.h"
#include "../core/tokenizer.h"

int main(void) {
    char root[4096];
    err e = {0};
    if (data_root(root, sizeof root, &e)) { fprintf(stderr, "bench-tokenizers: %s\n", e.msg); return 2; }
    char path[4200];
    snprintf(path, sizeof path, "%s/text/wiki.test.raw", root);
    char *text;
    size_t len;
    if (text_read_file(path, &text, &len, &e)) { fprintf(stderr, "bench-tokenizers: %s\n", e.msg); return 2; }
    const char *names[][2] = {{"GPT-2 (encoder.json + vocab.bpe)", "tokenizers/gpt2/encoder.json"},
                              {"GPT-NeoX (tokenizer.json)", "tokenizers/neox/tokenizer.json"},
                              {"SentencePiece (tok512.bin)", "stories260K/tok512.bin"}};
    printf("%-34s %10s %10s %9s\n", "tokenizer (wiki.test.raw)", "MB/s", "tokens", "seconds");
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/%s", root, names[k][1]);
        tokenizer *t;
        if (tokenizer_load(&t, path, &e)) { fprintf(stderr, "bench-tokenizers: %s\n", e.msg); return 2; }
        double best = 1e30;
        int n = 0;
        for (int rep = 0; rep < 3; rep++) {
            int *ids;
            double t0 = clock_seconds();
            if (tokenizer_encode(t, text, false, false, &ids, &n, &e)) {
                fprintf(stderr, "bench-tokenizers: %s\n", e.msg);
                return 1;
            }
            double dt = clock_seconds() - t0;
            if (dt < best) best = dt;
            free(ids);
        }
        printf("%-34s %10.1f %10d %9.3f\n", names[k][0], (double)len / 1e6 / best, n, best);
        tokenizer_free(t);
    }
    free(text);
    return 0;
}
