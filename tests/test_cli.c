/* The command line: JSON outputs of eval/generate/inspect and the exit status 2 with one clear
 * line on stderr for every kind of bad input. */
#include <cJSON.h>
#include <math.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static char args[8192];

static const char *fmt(const char *f, const char *a, const char *b, const char *c) {
    snprintf(args, sizeof args, f, a, b, c);
    return args;
}

#define MODEL data_path("stories260K/stories260K.bin")
#define TOK data_path("stories260K/tok512.bin")

Test(cli, generate_json_gives_reference_ids_and_text) {
    char *out, *er;
    int st = run_sparq(fmt("generate --model '%s' --tokenizer '%s' --json", MODEL, TOK, ""), &out, &er);
    cr_assert_eq(st, 0, "stderr: %s", er);
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j, "not JSON: %s", out);
    cJSON *toks = cJSON_GetObjectItem(j, "tokens");
    cr_assert_eq(cJSON_GetArraySize(toks), 257);
    for (int i = 0; i < 257; i++)
        cr_assert_eq(cJSON_GetArrayItem(toks, i)->valueint, ref_greedy_ids[i], "token %d", i);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "text")->valuestring, ref_story_256);
    cJSON_Delete(j);
    free(out);
    free(er);
}

Test(cli, generate_plain_prints_a2_byte_for_byte) {
    char *out, *er;
    /* The tokenizer is found beside the model (tok512.bin) when --tokenizer is omitted. */
    int st = run_sparq(fmt("generate --model '%s'", MODEL, "", ""), &out, &er);
    cr_assert_eq(st, 0, "stderr: %s", er);
    cr_assert_eq(strlen(out), 566, "A2 is 566 bytes of stdout");
    cr_assert(strncmp(out, ref_story_256, 565) == 0 && out[565] == '\n');
    free(out);
    free(er);
}

Test(cli, eval_json_has_the_documented_keys) {
    char *out, *er;
    int st = run_sparq(fmt("eval --model '%s' --text '%s' --protocol documents --seqlen 128 --limit 5 "
                           "--json", MODEL, data_path("text/TinyStories-valid-first1000.txt"), ""),
                       &out, &er);
    cr_assert_eq(st, 0, "stderr: %s", er);
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j, "not JSON: %s", out);
    const char *keys[] = {"ppl", "nll", "tokens", "tokens_per_s", "seqlen"};
    for (int i = 0; i < 5; i++) cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(j, keys[i])), "%s", keys[i]);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "protocol")->valuestring, "documents");
    double nll = cJSON_GetObjectItem(j, "nll")->valuedouble;
    cr_assert(fabs(cJSON_GetObjectItem(j, "ppl")->valuedouble - exp(nll)) < 1e-9 * exp(nll));
    cJSON_Delete(j);
    free(out);
    free(er);
}

Test(cli, inspect_reports_params_and_layers) {
    char *out, *er;
    int st = run_sparq(fmt("inspect --model '%s' --json", MODEL, "", ""), &out, &er);
    cr_assert_eq(st, 0, "stderr: %s", er);
    cJSON *j = cJSON_Parse(out);
    cr_assert_eq(cJSON_GetObjectItem(j, "params")->valuedouble, 260032);
    cr_assert_eq(cJSON_GetObjectItem(j, "bytes")->valuedouble, 260032 * 4);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "layers")), 35);
    cJSON_Delete(j);
    free(out);
    free(er);
}

/* Exit status 2, nothing on stdout, exactly one line on stderr that contains `needle`. */
static void expect_input_error(const char *a, const char *needle) {
    char *out, *er;
    int st = run_sparq(a, &out, &er);
    cr_assert_eq(st, 2, "status %d for: %s\nstderr: %s", st, a, er);
    cr_assert_str_empty(out, "stdout for %s: %s", a, out);
    size_t n = strlen(er);
    cr_assert(n > 0 && er[n - 1] == '\n' && strchr(er, '\n') == er + n - 1,
              "stderr must be one line for %s: \"%s\"", a, er);
    cr_assert(strstr(er, needle), "stderr \"%s\" lacks \"%s\"", er, needle);
    free(out);
    free(er);
}

Test(cli, bad_inputs_exit_2_with_one_clear_line) {
    const char *text = data_path("text/TinyStories-valid-first1000.txt");
    const char *missing = tmp_path("nope.bin");
    expect_input_error(fmt("eval --model '%s' --text '%s'", missing, text, ""), "cannot open");

    size_t n;
    char *b = read_all(MODEL, &n);
    const char *trunc = tmp_path("trunc.bin");
    write_file(trunc, b, n / 2);
    expect_input_error(fmt("eval --model '%s' --tokenizer '%s' --text '%s'", trunc, TOK, text),
                       "needs 1056540");
    const char *magic = tmp_path("magic.bin");
    memcpy(b, "24ka", 4);
    write_file(magic, b, n);
    expect_input_error(fmt("generate --model '%s' --tokenizer '%s'%s", magic, TOK, ""), "ak42");
    free(b);

    expect_input_error(fmt("eval --model '%s' --tokenizer '%s' --text '%s'", MODEL,
                           data_path("llama2-tokenizer/tokenizer.bin"), text),
                       "has 32000 tokens but model");
    const char *empty = tmp_path("empty.txt");
    write_file(empty, "", 0);
    expect_input_error(fmt("eval --model '%s' --tokenizer '%s' --text '%s' --protocol documents",
                           MODEL, TOK, empty), "no documents");
    expect_input_error(fmt("eval --model '%s' --tokenizer '%s' --text '%s' --protocol windows",
                           MODEL, TOK, empty), "fewer than one window");
    expect_input_error(fmt("eval --model '%s' --tokenizer '%s' --text '%s' --seqlen 1024", MODEL, TOK,
                           text), "larger than the model's context (512)");
    expect_input_error(fmt("eval --model '%s' --text '%s' --protocol sliding%s", MODEL, text, ""),
                       "expected windows, documents or llamacpp");
    expect_input_error(fmt("eval --model '%s' --text '%s' --seqlen abc", MODEL, text, ""), "--seqlen");
    expect_input_error(fmt("eval --model '%s' --text '%s' --bogus 1", MODEL, text, ""), "unknown option");
    expect_input_error(fmt("eval --model '%s'%s%s", MODEL, "", ""), "missing required option --text");
    expect_input_error(fmt("frobnicate%s%s%s", "", "", ""), "unknown command");
    expect_input_error(fmt("eval --model '%s' --text '%s'%s", MODEL, tmp_path("no-such-text"), ""),
                       "cannot open");
    expect_input_error(fmt("generate --model '%s' -n 0%s%s", MODEL, "", ""), "-n 0");
}
