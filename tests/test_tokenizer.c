/* Tokenizer: the encodings of reference-outputs.md A4 (Llama-2 vocabulary) and B1 (tok512),
 * parity with a slow llama2.c-style encoder written here, decoding, and bad files. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/text.h"
#include "../core/tokenizer.h"
#include "util.h"

static tokenizer *load(const char *rel) {
    tokenizer *t = NULL;
    err e = {0};
    cr_assert_eq(tokenizer_load(&t, data_path(rel), &e), 0, "%s", e.msg);
    return t;
}

static void expect_encoding(tokenizer *t, const char *text, const int *want, int nwant) {
    int *ids, n;
    err e = {0};
    cr_assert_eq(tokenizer_encode(t, text, true, false, &ids, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(n, nwant, "\"%s\": %d tokens, expected %d", text, n, nwant);
    for (int i = 0; i < n; i++)
        cr_assert_eq(ids[i], want[i], "\"%s\": token %d is %d, expected %d", text, i, ids[i], want[i]);
    free(ids);
}

/* The slow reference: llama2.c's encode() as written there, with a full rescan of all pairs
 * per merge. Shares nothing with the library but the piece strings. */
static const tokenizer *sort_tok;
static int by_piece(const void *a, const void *b) {
    return strcmp(tokenizer_piece(sort_tok, *(const int *)a), tokenizer_piece(sort_tok, *(const int *)b));
}
static int *sorted_ids;

static int slow_lookup(const tokenizer *t, const char *s) {
    int lo = 0, hi = tokenizer_vocab_size(t) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(s, tokenizer_piece(t, sorted_ids[mid]));
        if (c == 0) return sorted_ids[mid];
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return -1;
}

static int *slow_encode(const tokenizer *t, const float *scores, const char *text, int *n) {
    int *tok = malloc((strlen(text) + 3) * sizeof(int));
    char buf[512];
    int k = 0;
    tok[k++] = 1;
    if (text[0]) tok[k++] = slow_lookup(t, " ");
    size_t len = 0;
    for (const char *c = text; *c; c++) {
        if ((*c & 0xC0) != 0x80) len = 0;
        buf[len++] = *c;
        buf[len] = 0;
        if ((c[1] & 0xC0) == 0x80 && len < 4) continue;
        int id = slow_lookup(t, buf);
        if (id != -1) tok[k++] = id;
        else for (size_t i = 0; i < len; i++) tok[k++] = (unsigned char)buf[i] + 3;
        len = 0;
    }
    for (;;) {
        float best = -1e10f;
        int best_id = -1, best_i = -1;
        for (int i = 0; i < k - 1; i++) {
            snprintf(buf, sizeof buf, "%s%s", tokenizer_piece(t, tok[i]), tokenizer_piece(t, tok[i + 1]));
            int id = slow_lookup(t, buf);
            if (id != -1 && scores[id] > best) { best = scores[id]; best_id = id; best_i = i; }
        }
        if (best_i == -1) break;
        tok[best_i] = best_id;
        for (int i = best_i + 1; i < k - 1; i++) tok[i] = tok[i + 1];
        k--;
    }
    *n = k;
    return tok;
}

/* Scores are not exposed by the API; read them from the file (the format is documented). */
static float *read_scores(const char *rel, int vocab) {
    size_t n;
    char *b = read_all(data_path(rel), &n);
    cr_assert_not_null(b);
    float *s = malloc(vocab * sizeof(float));
    size_t pos = 4;
    for (int i = 0; i < vocab; i++) {
        int len;
        memcpy(&s[i], b + pos, 4);
        memcpy(&len, b + pos + 4, 4);
        pos += 8 + len;
    }
    free(b);
    return s;
}

Test(tokenizer, llama2_vocabulary_reproduces_llama2c_test_c) {
    tokenizer *t = load("llama2-tokenizer/tokenizer.bin");
    cr_assert_eq(tokenizer_vocab_size(t), 32000);
    expect_encoding(t, "", (int[]){1}, 1);
    expect_encoding(t, "I believe the meaning of life is",
                    (int[]){1, 306, 4658, 278, 6593, 310, 2834, 338}, 8);
    expect_encoding(t, "Simply put, the theory of relativity states that ",
                    (int[]){1, 3439, 17632, 1925, 29892, 278, 6368, 310, 14215, 537, 5922, 393, 29871},
                    13);
    expect_encoding(t, "A brief message congratulating the team on the launch:\n\n        Hi everyone,\n\n"
                       "        I just ",
                    (int[]){1, 319, 11473, 2643, 378, 629, 271, 18099, 278, 3815, 373, 278, 6826,
                            29901, 13, 13, 4706, 6324, 14332, 29892, 13, 13, 4706, 306, 925, 29871},
                    26);
    expect_encoding(t, "Translate English to French:\n\n        sea otter => loutre de mer\n"
                       "        peppermint => menthe poivrée\n        plush girafe => girafe peluche\n"
                       "        cheese =>",
                    (int[]){1, 4103, 9632, 4223, 304, 5176, 29901, 13, 13, 4706, 7205, 4932, 357,
                            1149, 301, 449, 276, 316, 2778, 13, 4706, 1236, 407, 837, 524, 1149,
                            6042, 354, 772, 440, 29878, 1318, 13, 4706, 715, 1878, 330, 3055, 1725,
                            1149, 330, 3055, 1725, 4639, 28754, 13, 4706, 923, 968, 1149},
                    50);
    tokenizer_free(t);
}

Test(tokenizer, tok512_reproduces_runc_encodings) {
    tokenizer *t = load_tok512();
    expect_encoding(t, "", (int[]){1}, 1);
    expect_encoding(t, "Once upon a time", (int[]){1, 403, 407, 261, 378}, 5);
    static const int story[] = {
        1, 301, 427, 309, 426, 301, 427, 309, 394, 265, 262, 415, 271, 422, 280, 295, 269, 336,
        432, 313, 448, 327, 432, 410, 462, 362, 422, 432, 364, 420, 280, 295, 410, 293, 384, 268,
        325, 428, 415, 413, 269, 280, 305, 303, 443, 436, 410, 462, 362, 422, 262, 423, 290, 266,
        269, 410, 276, 427, 421, 417, 266, 432, 313, 434, 415, 303, 433, 364, 432, 301, 427, 309,
        426, 359, 282, 414, 421, 293, 415, 312, 344, 363, 328, 426, 436, 13, 13, 447, 431, 413,
        285, 337, 299, 335, 265, 280, 295, 432, 410, 462, 362, 422, 269, 301, 427, 309, 272, 411,
        421, 413, 308, 315, 356, 422, 426, 342, 272, 277, 264, 261, 262, 423, 388, 282, 414, 264,
        335, 280, 305, 295, 273, 413, 285, 426, 342, 279, 420, 303, 433, 265, 273, 413, 285, 269,
        272, 411, 421, 413, 399, 393, 426, 342, 337, 266, 267, 428, 316, 386, 261, 306, 328, 269,
        329, 429, 314, 411, 329, 356, 374, 419, 426};
    cr_assert_eq(sizeof story / sizeof story[0], 171);
    text_list docs;
    err e = {0};
    cr_assert_eq(text_read_documents(data_path("text/TinyStories-valid-first1000.txt"), &docs, &e), 0,
                 "%s", e.msg);
    cr_assert_eq(docs.n, 1000);
    expect_encoding(t, docs.items[0], story, 171);
    text_list_free(&docs);
    tokenizer_free(t);
}

/* The heap-based merge must choose exactly what llama2.c's rescan chooses, including ties
 * (the 16 all-space pieces of Llama-2 share one score) and byte fallback on mojibake. */
static void check_parity(const char *tokrel, int vocab, const char **texts, int n) {
    tokenizer *t = load(tokrel);
    float *scores = read_scores(tokrel, vocab);
    sorted_ids = malloc(vocab * sizeof(int));
    for (int i = 0; i < vocab; i++) sorted_ids[i] = i;
    sort_tok = t;
    qsort(sorted_ids, vocab, sizeof(int), by_piece);
    for (int i = 0; i < n; i++) {
        int *a, na, nb;
        err e = {0};
        cr_assert_eq(tokenizer_encode(t, texts[i], true, false, &a, &na, &e), 0, "%s", e.msg);
        int *b = slow_encode(t, scores, texts[i], &nb);
        cr_assert_eq(na, nb, "text %d: %d tokens vs reference %d", i, na, nb);
        for (int k = 0; k < na; k++) cr_assert_eq(a[k], b[k], "text %d token %d", i, k);
        free(a);
        free(b);
    }
    free(scores);
    free(sorted_ids);
    tokenizer_free(t);
}

Test(tokenizer, matches_slow_llama2c_encoder_on_real_and_odd_text) {
    text_list docs;
    err e = {0};
    cr_assert_eq(text_read_documents(data_path("text/TinyStories-valid-first1000.txt"), &docs, &e), 0);
    const char *texts[16];
    int n = 0;
    /* Documents with mojibake (byte fallback) and ordinary ones. */
    for (int i = 0; i < docs.n && n < 8; i++)
        if (i < 4 || strstr(docs.items[i], "\xc3\xa2")) texts[n++] = docs.items[i];
    texts[n++] = "    many   spaces    and\ttabs\n\n\n  end   ";
    texts[n++] = "emoji \xf0\x9f\x98\x80 and \xe4\xb8\xad\xe6\x96\x87 and a lone \xff byte";
    texts[n++] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    texts[n++] = " = Robert Boulter = \n\n Robert Boulter is an English film , television and theatre actor .";
    check_parity("stories260K/tok512.bin", 512, texts, n);
    check_parity("llama2-tokenizer/tokenizer.bin", 32000, texts + n - 4, 4);
    check_parity("llama2-tokenizer/tokenizer.bin", 32000, texts, 2);
    text_list_free(&docs);
}

Test(tokenizer, decode_strips_space_after_bos_and_maps_bytes) {
    tokenizer *t = load_tok512();
    int len;
    const char *p = tokenizer_decode(t, TOKEN_BOS, 403, &len);   /* " Once" */
    cr_assert_eq(len, 4);
    cr_assert(memcmp(p, "Once", 4) == 0);
    p = tokenizer_decode(t, 403, 407, &len);                      /* " upon" keeps its space */
    cr_assert_eq(len, 5);
    cr_assert(memcmp(p, " upon", 5) == 0);
    p = tokenizer_decode(t, 403, 13, &len);                       /* <0x0A> */
    cr_assert_eq(len, 1);
    cr_assert_eq(p[0], '\n');
    p = tokenizer_decode(t, 403, 3, &len);                        /* <0x00> is one NUL byte */
    cr_assert_eq(len, 1);
    cr_assert_eq(p[0], '\0');
    tokenizer_free(t);
}

Test(tokenizer, truncated_or_garbage_file_is_a_clear_error) {
    size_t n;
    char *b = read_all(data_path("stories260K/tok512.bin"), &n);
    cr_assert_not_null(b);
    const char *p = tmp_path("tok-trunc.bin");
    cr_assert_eq(write_file(p, b, n - 3), 0);
    tokenizer *t = NULL;
    err e = {0};
    cr_assert_eq(tokenizer_load(&t, p, &e), SPARQ_EINPUT);
    cr_assert_null(t);
    cr_assert(strstr(e.msg, "truncated"), "message: %s", e.msg);
    int bad = 100000;                       /* token 0 claims a length beyond max_token_length */
    memcpy(b + 8, &bad, 4);
    cr_assert_eq(write_file(p, b, n), 0);
    cr_assert_eq(tokenizer_load(&t, p, &e), SPARQ_EINPUT);
    cr_assert(strstr(e.msg, "length"), "message: %s", e.msg);
    cr_assert_eq(tokenizer_load(&t, tmp_path("does-not-exist.bin"), &e), SPARQ_EINPUT);
    free(b);
}
