#include "options.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ggml_blocks.h"

#define FIELD(f) .offset = offsetof(compress_options, f), .size = sizeof(((compress_options *)0)->f)

/* ---- the special options: the solver (with its chain mode) and the N:M pattern ------------- */

static int parse_solver(compress_options *o, const char *v, err *e) {
    return solver_spec_parse(v, o->solver.quantize_all, &o->solver, e);
}
static void print_solver(const compress_options *o, char *buf, size_t n) {
    snprintf(buf, n, "%s", o->solver.name);
}
static void record_solver(const compress_options *o, cJSON *c) {
    cJSON_AddStringToObject(c, "solver", o->solver.name);
}

static int parse_chain_mode(compress_options *o, const char *v, err *e) {
    if (strcmp(v, "mask") && strcmp(v, "all"))
        return err_set(e, SPARQ_EINPUT, "expected mask or all");
    o->solver.quantize_all = strcmp(v, "all") == 0;
    return SPARQ_OK;
}
static void print_chain_mode(const compress_options *o, char *buf, size_t n) {
    snprintf(buf, n, "%s", o->solver.quantize_all ? "all" : "mask");
}
static void record_chain_mode(const compress_options *o, cJSON *c) {
    cJSON_AddStringToObject(c, "chain_mode", o->solver.quantize_all ? "all" : "mask");
}
static bool chain_all(const compress_options *o) { return o->solver.n == 2 && o->solver.quantize_all; }

static int parse_nm(compress_options *o, const char *v, err *e) {
    int n, m;
    char extra;
    if (sscanf(v, "%d:%d%c", &n, &m, &extra) != 2)
        return err_set(e, SPARQ_EINPUT, "expected N:M, e.g. 2:4");
    o->target.n = n;
    o->target.m = m;
    return SPARQ_OK;
}
static void print_nm(const compress_options *o, char *buf, size_t n) {
    snprintf(buf, n, "%d:%d", o->target.n, o->target.m);
}
static void record_nm(const compress_options *o, cJSON *c) {
    cJSON_AddNumberToObject(c, "n", o->target.n);
    cJSON_AddNumberToObject(c, "m", o->target.m);
}

static int parse_blocks(compress_options *o, const char *v, err *e) {
    int a, b;
    char extra;
    if (sscanf(v, "%d-%d%c", &a, &b, &extra) != 2 || a < 0 || b < a)
        return err_set(e, SPARQ_EINPUT, "expected FIRST-LAST block numbers, e.g. 0-1");
    o->block_first = a;
    o->block_count = b - a + 1;
    return SPARQ_OK;
}
static void print_blocks(const compress_options *o, char *buf, size_t n) {
    if (o->block_count == 0) snprintf(buf, n, "all");
    else snprintf(buf, n, "%d-%d", o->block_first, o->block_first + o->block_count - 1);
}
static void record_blocks(const compress_options *o, cJSON *c) {
    if (o->block_count == 0) return;
    char b[32];
    print_blocks(o, b, sizeof b);
    cJSON_AddStringToObject(c, "blocks", b);
}
static bool blocks_shown(const compress_options *o) { return o->block_count > 0; }

static bool nm_shown(const compress_options *o) { return o->target.m > 0; }
/* A sparsity is named in the label unless the N:M pattern already says it. */
static bool sparsity_shown(const compress_options *o) {
    const target *t = &o->target;
    return t->m == 0 || fabs((double)t->sparsity - (double)t->n / t->m) > 1e-9;
}
static bool quantized(const compress_options *o) { return o->target.bits < 16 && o->target.group > 0; }

static const char *grid_choice(int i) {
    return i == QUANT_GRID_MINMAX ? "minmax" : i == QUANT_GRID_GGML ? "ggml" : NULL;
}
/* rtn --ggml TYPE: 0 = none, then ggml_blocks.h's types in table order. */
static const char *ggml_choice(int i) {
    return i == 0 ? "none" : i <= ggml_block_count ? ggml_block_types[i - 1].name : NULL;
}
static const char *scope_choice(int i) { return i == SCOPE_LAYER ? "layer" : i == SCOPE_ROW ? "row" : NULL; }
static const char *schedule_choice(int i) {
    return i >= SCHEDULE_UNIFORM && i <= SCHEDULE_OWL ? schedule_name((schedule_kind)i) : NULL;
}

/* The table. Its order is the order of labels, keys and record fields. */
const option options_table[] = {
    {.name = "solver", .arg = "NAME", .type = OPT_SPECIAL, .label = "%s",
     .parse = parse_solver, .print = print_solver, .record = record_solver},
    {.name = "nm", .arg = "N:M", .type = OPT_SPECIAL, .label = " %s", .shown = nm_shown,
     .parse = parse_nm, .print = print_nm, .record = record_nm},
    {.name = "sparsity", .arg = "S", .type = OPT_REAL, FIELD(target.sparsity), .lo = 0, .hi = 1, .hi_open = true,
     .label = " s=%g", .shown = sparsity_shown},
    {.name = "bits", .arg = "B", .type = OPT_INT, FIELD(target.bits), .lo = 2, .hi = 16, .label = " %d-bit"},
    {.name = "group", .arg = "G", .type = OPT_INT, FIELD(target.group), .lo = -1, .hi = 1 << 20, .label = " g%d",
     .shown = quantized},
    {.name = "sym", .type = OPT_BOOL, FIELD(target.sym), .label = " sym"},
    {.name = "act_order", .type = OPT_BOOL, FIELD(target.act_order), .label = " act-order"},
    {.name = "static_groups", .type = OPT_BOOL, FIELD(target.static_groups), .label = " static"},
    {.name = "mse", .type = OPT_BOOL, FIELD(target.mse), .label = " mse"},
    {.name = "grid", .type = OPT_CHOICE, FIELD(target.grid), .label = " %s-grid", .choice = grid_choice,
     .key_if_set = true},
    {.name = "ggml", .type = OPT_CHOICE, FIELD(target.ggml), .label = " ggml-%s", .choice = ggml_choice,
     .key_if_set = true},
    {.name = "scope", .type = OPT_CHOICE, FIELD(target.scope), .label = " per-%s", .choice = scope_choice},
    {.name = "block", .arg = "B", .type = OPT_INT, FIELD(target.block), .lo = 0, .hi = 1 << 20, .label = " block=%d"},
    {.name = "damp", .arg = "P", .type = OPT_REAL, FIELD(target.damp), .lo = 0, .hi = 1, .label = " damp=%g"},
    {.name = "schedule", .type = OPT_CHOICE, FIELD(schedule), .label = " %s", .choice = schedule_choice},
    {.name = "true_sequential", .type = OPT_BOOL, FIELD(true_sequential), .label = " true-seq"},
    {.name = "chain_mode", .arg = "mask|all", .type = OPT_SPECIAL, .label = " quantize-all", .shown = chain_all,
     .parse = parse_chain_mode, .print = print_chain_mode, .record = record_chain_mode},
    {.name = "blocks", .arg = "A-B", .type = OPT_SPECIAL, .label = " blocks %s", .shown = blocks_shown,
     .key_if_set = true, .parse = parse_blocks, .print = print_blocks, .record = record_blocks},
};
const int options_count = (int)(sizeof options_table / sizeof options_table[0]);

compress_options options_default(void) {
    compress_options o;
    memset(&o, 0, sizeof o);
    o.target = target_default();
    o.schedule = SCHEDULE_UNIFORM;
    return o;
}

void options_flag(const option *opt, char *buf, size_t n) {
    snprintf(buf, n, "--%s", opt->name);
    for (char *p = buf; *p; p++)
        if (*p == '_') *p = '-';
}

const option *options_find(const char *name) {
    for (int i = 0; i < options_count; i++) {
        char flag[64];
        options_flag(&options_table[i], flag, sizeof flag);
        if (strcmp(name, options_table[i].name) == 0 || strcmp(name, flag) == 0) return &options_table[i];
    }
    return NULL;
}

/* ---- typed access to a field ------------------------------------------------------------------ */

static void *field(compress_options *o, const option *opt) { return (char *)o + opt->offset; }
static const void *cfield(const compress_options *o, const option *opt) {
    return (const char *)o + opt->offset;
}

/* Integers and enums are int-sized; reals are float or double fields. */
static int get_int(const compress_options *o, const option *opt) {
    int v;
    memcpy(&v, cfield(o, opt), sizeof v);
    return v;
}
static double get_real(const compress_options *o, const option *opt) {
    if (opt->size == sizeof(double)) return *(const double *)cfield(o, opt);
    return *(const float *)cfield(o, opt);
}
static bool get_bool(const compress_options *o, const option *opt) { return *(const bool *)cfield(o, opt); }

/* "--act-order x: ..." on the command line, "act_order x: ..." in a config. */
static int set_error(const option *opt, const char *prefix, const char *v, const char *what, err *e) {
    char flag[64];
    options_flag(opt, flag, sizeof flag);
    if (strcmp(prefix, "--") == 0) return err_set(e, SPARQ_EINPUT, "%s %s: %s", flag, v, what);
    return err_set(e, SPARQ_EINPUT, "%s%s %s: %s", prefix, opt->name, v, what);
}

int options_set(compress_options *o, const option *opt, const char *v, const char *prefix, err *e) {
    char what[128];
    char *end;
    switch (opt->type) {
    case OPT_BOOL: {
        bool *b = field(o, opt);
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on")) *b = true;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off")) *b = false;
        else return set_error(opt, prefix, v, "expected true or false", e);
        return SPARQ_OK;
    }
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || x < opt->lo || x > opt->hi) {
            snprintf(what, sizeof what, "expected an integer in [%g, %g]", opt->lo, opt->hi);
            return set_error(opt, prefix, v, what, e);
        }
        int i = (int)x;
        memcpy(field(o, opt), &i, sizeof i);
        return SPARQ_OK;
    }
    case OPT_REAL: {
        /* strtod, never strtof: 0.7 stays the double the reference code multiplies by. */
        double x = strtod(v, &end);
        if (*v == '\0' || *end != '\0' || !(x >= opt->lo && (opt->hi_open ? x < opt->hi : x <= opt->hi))) {
            snprintf(what, sizeof what, "expected a number in [%g, %g%c", opt->lo, opt->hi, opt->hi_open ? ')' : ']');
            return set_error(opt, prefix, v, what, e);
        }
        if (opt->size == sizeof(double)) *(double *)field(o, opt) = x;
        else *(float *)field(o, opt) = (float)x;
        return SPARQ_OK;
    }
    case OPT_CHOICE: {
        int i = 0;
        while (opt->choice(i) && strcmp(opt->choice(i), v) != 0) i++;
        if (!opt->choice(i)) {
            int w = snprintf(what, sizeof what, "expected ");
            for (int k = 0; opt->choice(k); k++)
                w += snprintf(what + w, sizeof what - (size_t)w, "%s%s", k ? (opt->choice(k + 1) ? ", " : " or ") : "",
                              opt->choice(k));
            return set_error(opt, prefix, v, what, e);
        }
        memcpy(field(o, opt), &i, sizeof i);
        return SPARQ_OK;
    }
    case OPT_SPECIAL: {
        err pe = {0};
        int rc = opt->parse(o, v, &pe);
        /* The solver's own messages already name it; the others get the option's name. */
        if (rc && opt->parse == parse_solver) return err_set(e, rc, "%s", pe.msg);
        return rc ? set_error(opt, prefix, v, pe.msg, e) : SPARQ_OK;
    }
    }
    return SPARQ_OK;
}

int options_check(const compress_options *o, err *e) {
    const target *t = &o->target;
    if (o->solver.n == 0) return err_set(e, SPARQ_EINPUT, "no solver given");
    if (t->m > 0 && t->sparsity > 0 && fabs((double)t->sparsity - (double)t->n / t->m) > 1e-9)
        return err_set(e, SPARQ_EINPUT, "nm %d:%d prunes %g of the weights; sparsity %g contradicts it",
                       t->n, t->m, (double)t->n / t->m, (double)t->sparsity);
    return SPARQ_OK;
}

/* The canonical text of an option's value (keys) and whether it differs from the default. */
static void value_text(const compress_options *o, const option *opt, char *buf, size_t n) {
    switch (opt->type) {
    case OPT_BOOL: snprintf(buf, n, "%d", get_bool(o, opt)); break;
    case OPT_INT: snprintf(buf, n, "%d", get_int(o, opt)); break;
    case OPT_REAL: snprintf(buf, n, "%.9g", get_real(o, opt)); break;
    case OPT_CHOICE: snprintf(buf, n, "%s", opt->choice(get_int(o, opt))); break;
    case OPT_SPECIAL: opt->print(o, buf, n); break;
    }
}

void options_label(const compress_options *o, char *buf, size_t n) {
    compress_options d = options_default();
    size_t w = 0;
    buf[0] = '\0';
    for (int i = 0; i < options_count && w < n; i++) {
        const option *opt = &options_table[i];
        char v[64], dv[64];
        value_text(o, opt, v, sizeof v);
        value_text(&d, opt, dv, sizeof dv);
        if (opt->type != OPT_SPECIAL && strcmp(v, dv) == 0) continue;
        if (opt->shown && !opt->shown(o)) continue;
        int k = 0;
        switch (opt->type) {
        case OPT_BOOL: k = snprintf(buf + w, n - w, "%s", opt->label); break;
        case OPT_INT: k = snprintf(buf + w, n - w, opt->label, get_int(o, opt)); break;
        case OPT_REAL: k = snprintf(buf + w, n - w, opt->label, get_real(o, opt)); break;
        case OPT_CHOICE:
        case OPT_SPECIAL: k = snprintf(buf + w, n - w, opt->label, v); break;
        }
        if (k > 0) w += (size_t)k;
    }
}

void options_key(const compress_options *o, char *buf, size_t n) {
    compress_options d = options_default();
    size_t w = 0;
    buf[0] = '\0';
    for (int i = 0; i < options_count && w < n; i++) {
        char v[64], dv[64];
        value_text(o, &options_table[i], v, sizeof v);
        value_text(&d, &options_table[i], dv, sizeof dv);
        if (options_table[i].key_if_set && strcmp(v, dv) == 0) continue;
        int k = snprintf(buf + w, n - w, "%s=%s|", options_table[i].name, v);
        if (k > 0) w += (size_t)k;
    }
}

void options_record(const compress_options *o, cJSON *c) {
    for (int i = 0; i < options_count; i++) {
        const option *opt = &options_table[i];
        switch (opt->type) {
        case OPT_BOOL: cJSON_AddBoolToObject(c, opt->name, get_bool(o, opt)); break;
        case OPT_INT: cJSON_AddNumberToObject(c, opt->name, get_int(o, opt)); break;
        case OPT_REAL: cJSON_AddNumberToObject(c, opt->name, get_real(o, opt)); break;
        case OPT_CHOICE: cJSON_AddStringToObject(c, opt->name, opt->choice(get_int(o, opt))); break;
        case OPT_SPECIAL: opt->record(o, c); break;
        }
    }
}

void options_usage(char *buf, size_t n, int indent, int width) {
    size_t w = 0;
    int col = 0;
    buf[0] = '\0';
    for (int i = 0; i < options_count && w < n; i++) {
        const option *opt = &options_table[i];
        char flag[64], item[160], arg[96] = "";
        options_flag(opt, flag, sizeof flag);
        if (opt->type == OPT_CHOICE)
            for (int k = 0, aw = 0; opt->choice(k); k++)
                aw += snprintf(arg + aw, sizeof arg - (size_t)aw, "%s%s", k ? "|" : "", opt->choice(k));
        else if (opt->arg)
            snprintf(arg, sizeof arg, "%s", opt->arg);
        int len = snprintf(item, sizeof item, "[%s%s%s]", flag, arg[0] ? " " : "", arg);
        int k = 0;
        if (col > 0 && col + 1 + len > width) { k = snprintf(buf + w, n - w, "\n"); col = 0; }
        if (k > 0) w += (size_t)k;
        if (w >= n) break;
        k = snprintf(buf + w, n - w, "%*s%s", col ? 1 : indent, "", item);
        if (k > 0) { w += (size_t)k; col += k; }
    }
    if (w + 1 < n) snprintf(buf + w, n - w, "\n");
}
