/* Tokenizer: the encodings of reference-outputs.md A4 (Llama-2 vocabulary) and B1 (tok512),
 * parity with a slow llama2.c-style encoder written here, decoding, and bad files. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ---- tokenizer_save_beside (issue 20, part 1) ----------------------------------------------- */

/* The ids of a sample text under t (with BOS), for comparing two tokenizers by what they do. */
static int *sample_ids(const tokenizer *t, int *n) {
    int *ids;
    err e = {0};
    cr_assert_eq(tokenizer_encode(t, "Once upon a time, Lily saw a café.\nThe end!", true, false, &ids, n, &e), 0,
                 "%s", e.msg);
    return ids;
}

static bool same_bytes(const char *a, const char *b) {
    size_t na, nb;
    char *x = read_all(a, &na), *y = read_all(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* Save `src`'s tokenizer beside model path `model` (a file name in a fresh folder, or the folder
 * itself with inside), expect the file `want` there, byte-equal to `copy_of` when given, and the
 * reader's rule to find a tokenizer that encodes as the source does. */
static void save_and_check(const char *src, const char *folder, const char *model, bool inside,
                           const char *want, const char *copy_of) {
    tokenizer *t;
    err e = {0};
    cr_assert_eq(tokenizer_load(&t, src, &e), 0, "%s", e.msg);
    char cmd[1200], mp[1200], w[1200], got[4200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", folder);
    cr_assert_eq(system(cmd), 0);
    snprintf(mp, sizeof mp, "%s/%s", folder, model);
    snprintf(w, sizeof w, "%s/%s", folder, want);
    cr_assert_eq(tokenizer_save_beside(t, src, mp, inside, false, got, sizeof got, &e), 0, "%s: %s", src, e.msg);
    cr_assert_str_eq(got, w, "%s: written as %s", src, got);
    if (copy_of) cr_assert(same_bytes(w, copy_of), "%s is not a copy of %s", w, copy_of);
    tokenizer *back;
    cr_assert_eq(tokenizer_load_for_model(&back, mp, tokenizer_vocab_size(t), NULL, NULL, 0, &e), 0, "%s", e.msg);
    int n1, n2, *a = sample_ids(t, &n1), *b = sample_ids(back, &n2);
    cr_assert_eq(n1, n2);
    cr_assert(memcmp(a, b, (size_t)n1 * sizeof(int)) == 0, "%s encodes differently once beside %s", src, mp);
    /* A second save finds it and writes nothing new. */
    cr_assert_eq(tokenizer_save_beside(t, src, mp, inside, false, got, sizeof got, &e), 0, "%s", e.msg);
    cr_assert_str_eq(got, w);
    free(a); free(b);
    tokenizer_free(back);
    tokenizer_free(t);
}

Test(tokenizer, save_beside_writes_what_the_readers_rule_finds_for_every_kind) {
    const char *tok512 = data_path("stories260K/tok512.bin"), *spm = data_path("stories260K/tok512.model");
    char d[600];
    /* llama2.c tokenizer.bin: copied byte for byte, under the name only 512-token models read. */
    snprintf(d, sizeof d, "%s", tmp_path("beside-bin"));
    save_and_check(tok512, d, "m.bin", false, "tok512.bin", tok512);
    /* A SentencePiece .model beside a file: written as tok512.bin, the same bytes as llama2.c's
     * own export of that vocabulary. Inside a Hugging Face folder: tokenizer.model, copied. */
    snprintf(d, sizeof d, "%s", tmp_path("beside-spm"));
    save_and_check(spm, d, "m.bin", false, "tok512.bin", tok512);
    snprintf(d, sizeof d, "%s", tmp_path("inside-spm"));
    save_and_check(spm, d, "", true, "tokenizer.model", spm);
    /* Byte-level: the GPT-2 pair keeps its two files; a byte-level tokenizer.json is copied. */
    snprintf(d, sizeof d, "%s", tmp_path("beside-pair"));
    save_and_check(data_path("tokenizers/gpt2/encoder.json"), d, "m.safetensors", false, "encoder.json",
                   data_path("tokenizers/gpt2/encoder.json"));
    char vb[700];
    snprintf(vb, sizeof vb, "%s/vocab.bpe", d);
    cr_assert(same_bytes(vb, data_path("tokenizers/gpt2/vocab.bpe")), "vocab.bpe copied beside");
    snprintf(d, sizeof d, "%s", tmp_path("beside-json"));
    save_and_check(data_path("tokenizers/gpt2/tokenizer.json"), d, "m.bin", false, "tokenizer.json",
                   data_path("tokenizers/gpt2/tokenizer.json"));
}

Test(tokenizer, save_beside_refuses_another_vocabulary_already_there) {
    tokenizer *t;
    err e = {0};
    cr_assert_eq(tokenizer_load(&t, data_path("stories260K/tok512.bin"), &e), 0);
    char d[600], p[700], m[700];
    snprintf(d, sizeof d, "%s", tmp_path("clash"));
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", d);
    cr_assert_eq(system(cmd), 0);
    /* tok512.bin with one score changed: the reader would take it, so nothing may be written. */
    size_t n;
    char *b = read_all(data_path("stories260K/tok512.bin"), &n);
    b[4] ^= 0x40;
    snprintf(p, sizeof p, "%s/tok512.bin", d);
    cr_assert_eq(write_file(p, b, n), 0);
    snprintf(m, sizeof m, "%s/m.bin", d);
    cr_assert_eq(tokenizer_save_beside(t, "src.bin", m, false, true, NULL, 0, &e), SPARQ_EINPUT);
    cr_assert(strstr(e.msg, "tok512.bin is already there and is not the model's vocabulary"), "%s", e.msg);
    cr_assert_eq(tokenizer_save_beside(t, data_path("stories260K/tok512.bin"), m, false, false, NULL, 0, &e), SPARQ_EINPUT);
    char *after = read_all(p, &n);
    cr_assert(memcmp(after, b, n) == 0, "the file there is left as it was");
    /* A tokenizer.bin, which every model's lookup takes first, of LLaMA's 32000 pieces: refused
     * too (writing tok512.bin would not help, the reader would still take tokenizer.bin). */
    snprintf(d, sizeof d, "%s", tmp_path("clash2"));
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/tokenizer.bin'", d,
             data_path("llama2-tokenizer/tokenizer.bin"), d);
    cr_assert_eq(system(cmd), 0);
    snprintf(m, sizeof m, "%s/m.bin", d);
    cr_assert_eq(tokenizer_save_beside(t, data_path("stories260K/tok512.bin"), m, false, false, NULL, 0, &e),
                 SPARQ_EINPUT);
    cr_assert(strstr(e.msg, "tokenizer.bin is already there"), "%s", e.msg);
    snprintf(p, sizeof p, "%s/tok512.bin", d);
    cr_assert(access(p, F_OK) != 0, "nothing written beside it");
    free(b); free(after);
    tokenizer_free(t);
}
