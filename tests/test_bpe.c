/* Byte-level BPE (core/bpe.h through tokenizer.h): the reference encodings of
 * tokenizers/README.md for GPT-2, GPT-NeoX and OPT, decode round trips, the readers' naming rules,
 * and bad input (CLI exit 2 with one line naming the file; invalid UTF-8; a 10 MB line). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>
#include <utf8proc.h>

#include "../core/bpe.h"
#include "../core/tokenizer.h"
#include "util.h"

static tokenizer *load(const char *path) {
    tokenizer *t = NULL;
    err e = {0};
    int rc = tokenizer_load(&t, path, &e);
    cr_assert_eq(rc, 0, "%s: %s", path, e.msg);
    return t;
}

static bool ids_equal(const int *a, int n, const cJSON *want) {
    if (cJSON_GetArraySize(want) != n) return false;
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, want) if (x->valueint != a[i++]) return false;
    return true;
}

/* Every line of a reference file: `field`'s ids (with BOS when bos), and, when round_trip, that
 * the tokens' bytes concatenate to the text (NFC of it when nfc). Cases named in `skip` are not
 * checked. Returns the number of cases checked. */
static int check_refs(const tokenizer *t, const char *rel, const char *field, bool bos, bool round_trip,
                      bool nfc, const char *skip) {
    size_t len;
    char *all = read_all(data_path(rel), &len);
    cr_assert(all, "cannot read %s", rel);
    int cases = 0;
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        cr_assert(j, "%s: bad line", rel);
        const char *id = cJSON_GetObjectItem(j, "id")->valuestring;
        const char *text = cJSON_GetObjectItem(j, "text")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(j, field);
        if ((skip && strcmp(id, skip) == 0) || !want) { cJSON_Delete(j); continue; }
        int *ids, n;
        err e = {0};
        cr_assert_eq(tokenizer_encode(t, text, bos, false, &ids, &n, &e), 0, "%s: %s", id, e.msg);
        cr_expect(ids_equal(ids, n, want), "%s %s: %d ids, want %d (first %d)", rel, id, n,
                  cJSON_GetArraySize(want), n ? ids[0] : -1);
        if (round_trip) {
            size_t cap = strlen(text) * 4 + 16, k = 0;
            char *dec = malloc(cap);
            for (int i = 0; i < n; i++) {
                int l;
                const char *p = tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], &l);
                cr_assert(k + (size_t)l < cap);
                memcpy(dec + k, p, (size_t)l);
                k += (size_t)l;
            }
            dec[k] = '\0';
            char *expect = nfc ? (char *)utf8proc_NFC((const utf8proc_uint8_t *)text) : strdup(text);
            cr_expect_str_eq(dec, expect, "%s %s: decode does not round-trip", rel, id);
            free(expect);
            free(dec);
        }
        free(ids);
        cJSON_Delete(j);
        cases++;
    }
    free(all);
    return cases;
}

Test(bpe, gpt2_encoder_json_and_vocab_bpe_match_all_247_references_and_round_trip, .timeout = 60) {
    tokenizer *t = load(data_path("tokenizers/gpt2/encoder.json"));
    cr_assert_eq(tokenizer_vocab_size(t), 50257);
    cr_assert_eq(check_refs(t, "tokenizers/gpt2/refs_gpt2.jsonl", "ids", false, true, false, NULL), 247);
    /* Unicode White_Space (U+0085 yes, U+FEFF no), not JavaScript's \s: the `ids` field. */
    cr_assert_eq(check_refs(t, "tokenizers/gpt2/refs_gpt2_edge.jsonl", "ids", false, true, false, NULL), 6);
    /* GPT-2 has no BOS: bos = true adds nothing. */
    cr_assert_eq(check_refs(t, "tokenizers/gpt2/refs_gpt2.jsonl", "ids", true, false, false, NULL), 247);
    tokenizer_free(t);
}

/* U+180E is not White_Space (PCRE2's UCP \s says it is): " \u180E" is one punctuation pre-token,
 * as with Python's `regex`, not a space followed by a symbol. */
Test(bpe, u180e_is_not_white_space) {
    tokenizer *t = load(data_path("tokenizers/gpt2/encoder.json"));
    const char *parts[] = {"a", " \xe1\xa0\x8e", "b"};
    int want[16], nw = 0, *ids, n;
    err e = {0};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(tokenizer_encode(t, parts[i], false, false, &ids, &n, &e), 0);
        for (int k = 0; k < n; k++) want[nw++] = ids[k];
        free(ids);
    }
    cr_assert_eq(tokenizer_encode(t, "a \xe1\xa0\x8e" "b", false, false, &ids, &n, &e), 0);
    cr_assert_eq(n, nw);
    for (int k = 0; k < n; k++) cr_assert_eq(ids[k], want[k], "id %d", k);
    free(ids);
    tokenizer_free(t);
}

Test(bpe, gpt2_tokenizer_json_matches_references_and_splits_out_endoftext, .timeout = 60) {
    tokenizer *t = load(data_path("tokenizers/gpt2/tokenizer.json"));
    cr_assert(tokenizer_is_byte_level(t));
    /* special_token_text holds "<|endoftext|>", an added token for a tokenizer.json pipeline. */
    cr_assert_eq(check_refs(t, "tokenizers/gpt2/refs_gpt2.jsonl", "ids", false, true, false, "special_token_text"),
                 246);
    cr_assert_eq(check_refs(t, "tokenizers/gpt2/refs_gpt2_edge.jsonl", "ids_hf_tokenizer_json", false, true, false,
                            NULL), 2);
    tokenizer_free(t);
}

Test(bpe, neox_tokenizer_json_matches_all_247_references_and_decodes_to_nfc, .timeout = 60) {
    tokenizer *t = load(data_path("tokenizers/neox/tokenizer.json"));
    cr_assert_eq(tokenizer_vocab_size(t), 50277);
    cr_assert_eq(check_refs(t, "tokenizers/neox/refs_neox.jsonl", "ids", false, true, true, NULL), 247);
    cr_assert_eq(check_refs(t, "tokenizers/neox/refs_neox_edge.jsonl", "ids", false, true, true, NULL), 6);
    cr_assert_eq(check_refs(t, "tokenizers/neox/refs_neox.jsonl", "ids", true, false, false, NULL), 247);
    tokenizer_free(t);
}

/* README §3.2: OPT's vocab.json from GPT-2's encoder.json and fairseq's dict.txt (<s> <pad> </s>
 * <unk>, then line L of dict.txt gets id 3 + L), merges.txt = vocab.bpe. The first 50261 lines are
 * kept, so the vocabulary has OPT's 50265 entries (the last four are madeupword0000..0003). */
static const char *make_opt(void) {
    static char dir[1024];
    if (dir[0]) return dir;
    snprintf(dir, sizeof dir, "%s", tmp_path("opt"));
    mkdir(dir, 0777);
    size_t len;
    char *enc = read_all(data_path("tokenizers/gpt2/encoder.json"), &len);
    char *dict = read_all(data_path("tokenizers/opt/fairseq_gpt2_dict.txt"), &len);
    char *bpe = read_all(data_path("tokenizers/gpt2/vocab.bpe"), &len);
    cr_assert(enc && dict && bpe);
    cJSON *gpt2 = cJSON_Parse(enc), *x;
    const char **piece = calloc(50257, sizeof *piece);
    cJSON_ArrayForEach(x, gpt2) piece[x->valueint] = x->string;
    cJSON *opt = cJSON_CreateObject();
    const char *specials[] = {"<s>", "<pad>", "</s>", "<unk>"};
    for (int i = 0; i < 4; i++) cJSON_AddNumberToObject(opt, specials[i], i);
    int line = 0;
    for (char *l = strtok(dict, "\n"); l && line < 50261; l = strtok(NULL, "\n")) {
        line++;
        char *sp = strchr(l, ' ');
        *sp = '\0';
        const char *p = l[0] >= '0' && l[0] <= '9' ? piece[atoi(l)] : l;
        cJSON_AddNumberToObject(opt, p, 3 + line);
    }
    char *out = cJSON_PrintUnformatted(opt);
    char path[1200];
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    cr_assert_eq(write_file(path, out, strlen(out)), 0);
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    cr_assert_eq(write_file(path, bpe, len), 0);
    free(out);
    cJSON_Delete(opt);
    cJSON_Delete(gpt2);
    free(piece);
    free(enc);
    free(dict);
    free(bpe);
    return dir;
}

Test(bpe, opt_vocab_json_and_merges_txt_give_the_derived_ids_and_bos_2, .timeout = 60) {
    tokenizer *t = load(make_opt());
    cr_assert_eq(tokenizer_vocab_size(t), 50265);
    cr_assert_eq(check_refs(t, "tokenizers/opt/refs_opt_derived.jsonl", "ids", false, true, false, NULL), 247);
    cr_assert_eq(check_refs(t, "tokenizers/opt/refs_opt_derived.jsonl", "ids_hf", true, false, false, NULL), 247);
    tokenizer_free(t);
}

Test(bpe, a_pair_is_named_by_its_folder_or_either_file) {
    const char *names[] = {"tokenizers/gpt2/vocab.bpe", "tokenizers/gpt2/encoder.json"};
    for (int i = 0; i < 2; i++) {
        tokenizer *t = load(data_path(names[i]));
        int *ids, n;
        err e = {0};
        cr_assert_eq(tokenizer_encode(t, "Hello world", false, false, &ids, &n, &e), 0);
        cr_assert(n == 2 && ids[0] == 15496 && ids[1] == 995);
        free(ids);
        tokenizer_free(t);
    }
    char p[1200];
    snprintf(p, sizeof p, "%s/merges.txt", make_opt());
    tokenizer_free(load(p));
    tokenizer_free(load(make_opt()));
}

Test(bpe, invalid_utf8_is_encoded_byte_level_and_decodes_back) {
    tokenizer *t = load(data_path("tokenizers/gpt2/encoder.json"));
    const char *text = "caf\xc3 \xff\xfe\x80x \xe2\x82 ok \xf0\x9f\x98";
    int *ids, n;
    err e = {0};
    cr_assert_eq(tokenizer_encode(t, text, false, false, &ids, &n, &e), 0, "%s", e.msg);
    char dec[256];
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        int l;
        const char *p = tokenizer_decode(t, -1, ids[i], &l);
        memcpy(dec + k, p, (size_t)l);
        k += (size_t)l;
    }
    dec[k] = '\0';
    cr_assert_str_eq(dec, text);
    free(ids);
    tokenizer_free(t);
    /* NeoX has no symbol for 0xFF (never in UTF-8): an input error, not a crash. */
    t = load(data_path("tokenizers/neox/tokenizer.json"));
    cr_assert_eq(tokenizer_encode(t, "a\xff", false, false, &ids, &n, &e), SPARQ_EINPUT);
    cr_assert(strstr(e.msg, "0xFF"), "%s", e.msg);
    cr_assert_eq(tokenizer_encode(t, "caf\xc3 x", false, false, &ids, &n, &e), 0, "%s", e.msg);
    free(ids);
    tokenizer_free(t);
}

/* 10 MB on one line: WikiText repeated with its newlines made spaces, and one 10 MB "word" (the
 * heap keeps BPE O(n log n) for it). Both must encode and round-trip. */
Test(bpe, a_10_mb_single_line_encodes, .timeout = 120) {
    size_t len, want = 10u << 20;
    char *wiki = read_all(data_path("text/wiki.test.raw"), &len);
    cr_assert(wiki);
    char *big = malloc(want + 1);
    for (size_t i = 0; i < want; i++) big[i] = wiki[i % len] == '\n' ? ' ' : wiki[i % len];
    big[want] = '\0';
    tokenizer *t = load(data_path("tokenizers/neox/tokenizer.json"));
    for (int pass = 0; pass < 2; pass++) {
        if (pass) memset(big, 'a', want);
        int *ids, n;
        err e = {0};
        cr_assert_eq(tokenizer_encode(t, big, false, false, &ids, &n, &e), 0, "%s", e.msg);
        size_t total = 0;
        for (int i = 0; i < n; i++) {
            int l;
            const char *p = tokenizer_decode(t, -1, ids[i], &l);
            cr_assert(total + (size_t)l <= want && memcmp(big + total, p, (size_t)l) == 0, "token %d", i);
            total += (size_t)l;
        }
        cr_assert_eq(total, want);
        free(ids);
    }
    tokenizer_free(t);
    free(big);
    free(wiki);
}

Test(bpe, tokenize_command_prints_ids_and_pieces_for_every_kind) {
    char args[2048], *out, *er;
    snprintf(args, sizeof args, "tokenize --tokenizer '%s' --text 'Hello world' --json",
             data_path("tokenizers/gpt2/encoder.json"));
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    cr_assert_str_eq(out, "{\"ids\":[15496,995],\"pieces\":[\"Hello\",\"\xc4\xa0world\"]}\n");
    free(out); free(er);
    snprintf(args, sizeof args, "tokenize --tokenizer '%s' --text 'Hello world' --bos", make_opt());
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    cr_assert_str_eq(out, "2 31414 232\n");
    free(out); free(er);
    snprintf(args, sizeof args, "tokenize --tokenizer '%s' --text 'Hello world'", data_path("stories260K/tok512.bin"));
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    cr_assert(strlen(out) > 2);
    free(out); free(er);
}

/* ---- bad files: exit 2, one line on stderr naming the file and the fault ---------------------- */

static void expect_refused(const char *file, const char *needle) {
    char args[2048], *out, *er;
    snprintf(args, sizeof args, "tokenize --tokenizer '%s' --text 'Hello'", file);
    int st = run_sparq(args, &out, &er);
    size_t len = strlen(er);
    cr_expect_eq(st, 2, "%s: exit %d", file, st);
    cr_expect(len > 0 && strchr(er, '\n') == er + len - 1, "not one line: %s", er);
    cr_expect(strstr(er, file), "file not named: %s", er);
    cr_expect(strstr(er, needle), "does not say '%s': %s", needle, er);
    free(out); free(er);
}

static const char *write_tmp(const char *name, const char *text) {
    const char *p = tmp_path(name);
    cr_assert_eq(write_file(p, text, strlen(text)), 0);
    return p;
}

#define BL "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false}"

Test(bpe, bad_files_exit_2_with_one_line_naming_the_file) {
    expect_refused(write_tmp("wp.json", "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}," BL "}"),
                   "model.type is \"WordPiece\"");
    expect_refused(write_tmp("unk.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},"
                                          "\"merges\":[\"a b\",\"a zz\"]}," BL "}"),
                   "names \"zz\", which is not in the vocabulary");
    expect_refused(write_tmp("dup.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},"
                                          "\"merges\":[]}," BL "}"),
                   "id 0 is given to both");
    expect_refused(write_tmp("nomerge.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},"
                                              "\"merges\":[\"a b\"]}," BL "}"),
                   "makes \"ab\"");
    expect_refused(write_tmp("l3.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                                         "\"pre_tokenizer\":{\"type\":\"Sequence\"},\"decoder\":{\"type\":\"ByteLevel\"}}"),
                   "pre_tokenizer is not GPT-2's");
    /* A vocab.json + merges.txt pair: the file at fault is named. */
    const char *dir = tmp_path("badpair");
    mkdir(dir, 0777);
    char v[1200], m[1200];
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    cr_assert_eq(write_file(v, "{\"a\":0,\"b\":1,\"ab\":1}", 20), 0);
    cr_assert_eq(write_file(m, "#version: 0.2\na b\n", 18), 0);
    expect_refused(v, "id 1 is given to both");
    cr_assert_eq(write_file(v, "{\"a\":0,\"b\":1,\"ab\":2}", 20), 0);
    cr_assert_eq(write_file(m, "#version: 0.2\na q\n", 18), 0);
    expect_refused(m, "names \"q\"");
    cr_assert_eq(write_file(m, "#version: 0.2\nab\n", 17), 0);
    expect_refused(m, "line 2 is not");
    const char *lone = tmp_path("lone");
    mkdir(lone, 0777);
    char lv[1200];
    snprintf(lv, sizeof lv, "%s/vocab.bpe", lone);
    cr_assert_eq(write_file(lv, "a b\n", 4), 0);
    expect_refused(lv, "is not beside it");
}

/* tokenizer_load_for_model finds a Hugging Face OPT folder's vocab.json (+ merges.txt) beside the
 * model; stories260K's 512-token vocabulary then says which file it read. */
Test(bpe, a_models_vocab_json_is_found_beside_it) {
    const char *dir = make_opt();
    size_t len;
    char *m = read_all(data_path("stories260K/stories260K.bin"), &len);
    char path[1200];
    snprintf(path, sizeof path, "%s/model.bin", dir);
    cr_assert(m && write_file(path, m, len) == 0);
    free(m);
    tokenizer *t = NULL;
    err e = {0};
    cr_assert_eq(tokenizer_load_for_model(&t, path, 512, NULL, NULL, 0, &e), SPARQ_EINPUT);
    cr_assert(strstr(e.msg, "vocab.json has 50265 tokens"), "%s", e.msg);
}
