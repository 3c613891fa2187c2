/* The options table: every row is reachable by its INI name and its CLI flag, moves the run key,
 * lands in the record, and labels runs as the reports expect; bad values are refused naming the
 * option. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <string.h>

#include "../experiments/options.h"

/* A value other than the default for each row, by type (what a user could write). */
static const char *other_value(const option *opt) {
    if (!strcmp(opt->name, "solver")) return "wanda";
    if (!strcmp(opt->name, "nm")) return "2:4";
    if (!strcmp(opt->name, "chain_mode")) return "all";
    if (!strcmp(opt->name, "blocks")) return "0-1";
    if (!strcmp(opt->name, "sparsity")) return "0.5";
    if (!strcmp(opt->name, "damp")) return "0.1";
    switch (opt->type) {
    case OPT_BOOL: return "true";
    case OPT_INT: return "3";
    case OPT_CHOICE: return opt->choice(1);
    default: return NULL;
    }
}

Test(options, every_row_is_found_by_name_and_flag_and_moves_the_key) {
    cr_assert_gt(options_count, 10);
    char base_key[2048];
    compress_options base = options_default();
    cr_assert_eq(options_set(&base, options_find("solver"), "sparsegpt", "", NULL), 0);
    options_key(&base, base_key, sizeof base_key);
    for (int i = 0; i < options_count; i++) {
        const option *opt = &options_table[i];
        char flag[64];
        options_flag(opt, flag, sizeof flag);
        cr_assert_eq(options_find(opt->name), opt, "%s by name", opt->name);
        cr_assert_eq(options_find(flag), opt, "%s by flag %s", opt->name, flag);
        cr_assert_null(strchr(flag, '_'), "flag %s", flag);
        const char *v = other_value(opt);
        cr_assert_not_null(v, "no test value for %s", opt->name);
        compress_options o = base;
        err e = {0};
        cr_assert_eq(options_set(&o, opt, v, "", &e), 0, "%s = %s: %s", opt->name, v, e.msg);
        char key[2048];
        options_key(&o, key, sizeof key);
        cr_assert_str_neq(key, base_key, "%s = %s leaves the run key unchanged", opt->name, v);
        /* The record's config names the option (N:M as its two numbers). */
        cJSON *c = cJSON_CreateObject();
        options_record(&o, c);
        if (!strcmp(opt->name, "nm")) {
            cr_assert_eq(cJSON_GetObjectItem(c, "n")->valueint, 2);
            cr_assert_eq(cJSON_GetObjectItem(c, "m")->valueint, 4);
        } else {
            cr_assert_not_null(cJSON_GetObjectItem(c, opt->name), "record lacks %s", opt->name);
        }
        cJSON_Delete(c);
    }
}

Test(options, labels_are_the_reports_run_names) {
    struct { const char *set[6][2]; const char *label; } cases[] = {
        {{{"solver", "sparsegpt"}, {"sparsity", "0.5"}}, "sparsegpt s=0.5"},
        {{{"solver", "sparsegpt"}, {"nm", "2:4"}, {"sparsity", "0.5"}}, "sparsegpt 2:4"},
        {{{"solver", "gptq"}, {"bits", "4"}, {"group", "128"}, {"act_order", "yes"}}, "gptq 4-bit g128 act-order"},
        {{{"solver", "magnitude"}, {"sparsity", "0.7"}, {"scope", "row"}}, "magnitude s=0.7 per-row"},
        {{{"solver", "sparsegpt"}, {"sparsity", "0.6"}, {"schedule", "owl"}, {"true_sequential", "1"}},
         "sparsegpt s=0.6 owl true-seq"},
        {{{"chain_mode", "all"}, {"solver", "sparsegpt+gptq"}, {"sparsity", "0.5"}, {"bits", "4"}},
         "sparsegpt+gptq s=0.5 4-bit quantize-all"},
        {{{"solver", "rtn"}, {"bits", "16"}, {"group", "128"}, {"damp", "0.05"}}, "rtn damp=0.05"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        compress_options o = options_default();
        for (int k = 0; k < 6 && cases[i].set[k][0]; k++) {
            err e = {0};
            cr_assert_eq(options_set(&o, options_find(cases[i].set[k][0]), cases[i].set[k][1], "", &e), 0,
                         "%s", e.msg);
        }
        char label[160];
        options_label(&o, label, sizeof label);
        cr_assert_str_eq(label, cases[i].label);
    }
}

Test(options, bad_values_are_refused_naming_the_option) {
    struct { const char *name, *value, *needle; } cases[] = {
        {"sparsity", "1", "--sparsity 1: expected a number in [0, 1)"},
        {"sparsity", "0.5x", "--sparsity 0.5x: expected a number"},
        {"bits", "17", "--bits 17: expected an integer in [2, 16]"},
        {"sym", "maybe", "--sym maybe: expected true or false"},
        {"scope", "column", "--scope column: expected layer or row"},
        {"schedule", "cosine", "--schedule cosine: expected uniform, hessian or owl"},
        {"nm", "2-4", "--nm 2-4: expected N:M"},
        {"chain_mode", "some", "--chain-mode some: expected mask or all"},
        {"act_order", "2", "--act-order 2: expected true or false"},
        {"solver", "obc", "unknown solver 'obc'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        compress_options o = options_default();
        err e = {0};
        cr_assert_eq(options_set(&o, options_find(cases[i].name), cases[i].value, "--", &e), SPARQ_EINPUT,
                     "%s = %s", cases[i].name, cases[i].value);
        cr_assert(strstr(e.msg, cases[i].needle), "\"%s\" lacks \"%s\"", e.msg, cases[i].needle);
    }
    /* Sparsity is the double the reference multiplies by: 0.7, not 0.7f. */
    compress_options o = options_default();
    cr_assert_eq(options_set(&o, options_find("--sparsity"), "0.7", "--", NULL), 0);
    cr_assert_eq(o.target.sparsity, 0.7);
    /* N:M and a sparsity that contradicts it. */
    cr_assert_eq(options_set(&o, options_find("nm"), "2:4", "", NULL), 0);
    cr_assert_eq(options_set(&o, options_find("solver"), "sparsegpt", "", NULL), 0);
    err e = {0};
    cr_assert_eq(options_check(&o, &e), SPARQ_EINPUT);
    cr_assert(strstr(e.msg, "contradicts"), "%s", e.msg);
}
