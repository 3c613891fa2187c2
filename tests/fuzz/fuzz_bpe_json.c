/* Hugging Face tokenizer.json of the byte-level BPE kind (core/bpe.c, bpe_load_json: vocabulary,
 * merges, added tokens, NFC), then the tokenizer is used as the tokenizer harness does. */
#include <cJSON.h>

#include "../../core/bpe.h"
#include "fuzz.h"
#include "use_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *root = cJSON_ParseWithLength((const char *)data, size);
    if (!root) return 0;
    bpe *b = NULL;
    tokenizer *t = NULL;
    err e = {0};
    if (bpe_load_json(&b, root, "tokenizer.json", &e) == SPARQ_OK && tokenizer_from_bpe(&t, b, &e) == SPARQ_OK)
        use_tokenizer(t);
    tokenizer_free(t);
    cJSON_Delete(root);
    return 0;
}
