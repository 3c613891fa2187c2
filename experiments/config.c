#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/fileio.h"
#include "options.h"

/* ---- parsing: inih hands every key to on_ini, which fills the setup and the grid sections --- */

#define MAX_VALUES 32
#define MAX_GRIDS 32
#define MAX_KEYS 32                  /* room for every row of the options table */

/* A [grid.NAME] section: every key is a row of the options table, each an axis of the cross
 * product, listed with its values. */
typedef struct {
    char name[64];
    char values[MAX_KEYS][MAX_VALUES][64];
    int  n[MAX_KEYS];
} grid_section;

typedef struct {
    sweep_config *cfg;
    grid_section  grids[MAX_GRIDS];
    int           n_grids;
    char          bad[256];          /* the first problem, reported with ini_parse's line */
    int           bad_line;          /* the line it was found on                          */
    int           lineno;            /* the line the reader handed over last              */
    int           long_line;         /* the first line too long for inih's buffer         */
    char          cfg_dir[SPEC_PATH];
    char          eval_ppl[2048], eval_tasks[2048];
} parse_state;

/* Copy with truncation; a path that long fails later with a clear "cannot open". */
static void copystr(char *d, size_t n, const char *s) {
    size_t l = strlen(s);
    if (l >= n) l = n - 1;
    memcpy(d, s, l);
    d[l] = '\0';
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1])) *--end = '\0';
    return s;
}

/* Relative data paths: the data root first ($SPARQ_DATA, else the shared/data folder beside the
 * checkout, core/fileio.h data_root), then the config's folder (ARCHITECTURE.md). A path found in
 * neither stays under the data root, so the "cannot open" it ends in names the root tried. */
static void resolve(const parse_state *ps, const char *v, char *out) {
    if (v[0] == '/' || strcmp(v, "self") == 0) { snprintf(out, SPEC_PATH, "%s", v); return; }
    char root[SPEC_PATH], data[SPEC_PATH * 2], beside[SPEC_PATH * 2];
    bool have_root = data_root(root, sizeof root, NULL) == SPARQ_OK;
    snprintf(data, sizeof data, "%s/%s", have_root ? root : "", v);
    snprintf(beside, sizeof beside, "%s/%s", ps->cfg_dir, v);
    if (have_root && access(data, F_OK) == 0) copystr(out, SPEC_PATH, data);
    else if (access(beside, F_OK) == 0 || !have_root) copystr(out, SPEC_PATH, beside);
    else copystr(out, SPEC_PATH, data);
}

static int parse_int(const char *v, int lo, int hi, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *trim(end) != '\0' || x < lo || x > hi) return 0;
    *out = (int)x;
    return 1;
}

/* ---- [sweep]: one row per key ----------------------------------------------------------------- */

typedef enum {
    KEY_PATH,                /* a data path, resolved as resolve() says                    */
    KEY_TEXT,                /* a string kept as written                                   */
    KEY_INT,                 /* an integer in [lo, hi]                                     */
    KEY_SIZE,                /* a memory size: 20G, 512M (run_parse_memory)                */
    KEY_LIST,                /* comma-separated, continued on indented lines; parsed once
                                the file is read (parse_evals)                             */
} sweep_key_type;

typedef struct {
    const char    *name;
    sweep_key_type type;
    size_t         offset, size;     /* the field: in sweep_config, KEY_LIST's in parse_state */
    int            lo, hi;           /* KEY_INT                                              */
} sweep_key;

#define CFG(f) .offset = offsetof(sweep_config, f), .size = sizeof(((sweep_config *)0)->f)
#define RAW(f) .offset = offsetof(parse_state, f), .size = sizeof(((parse_state *)0)->f)
#define ANY_INT (1 << 30)

/* configs/README.md's table, in its order. */
static const sweep_key sweep_keys[] = {
    {"model", KEY_PATH, CFG(setup.model)},
    {"tokenizer", KEY_PATH, CFG(setup.tokenizer)},
    {"calib", KEY_PATH, CFG(setup.calib)},
    {"nsamples", KEY_INT, CFG(setup.nsamples), .lo = 1, .hi = ANY_INT},
    {"seqlen", KEY_INT, CFG(setup.calib_seqlen), .lo = 1, .hi = ANY_INT},
    {"seed", KEY_INT, CFG(setup.seed), .lo = 0, .hi = ANY_INT},
    {"eval.ppl", KEY_LIST, RAW(eval_ppl)},
    {"eval.tasks", KEY_LIST, RAW(eval_tasks)},
    {"eval.limit", KEY_INT, CFG(setup.limit), .lo = 0, .hi = ANY_INT},
    /* At most 1024: a SLURM array holds runs x shards tasks, and clusters cap arrays (1001 by
     * default) well below what more shards would need. */
    {"eval_shards", KEY_INT, CFG(eval_shards), .lo = 1, .hi = 1024},
    {"out", KEY_TEXT, CFG(out)},
    {"srcr_formula", KEY_TEXT, CFG(setup.srcr_formula)},
    {"max_memory", KEY_SIZE, CFG(setup.max_memory)},
};

static int on_sweep_key(parse_state *ps, const char *name, const char *value) {
    const sweep_key *k = NULL;
    for (size_t i = 0; i < sizeof sweep_keys / sizeof sweep_keys[0]; i++)
        if (strcmp(sweep_keys[i].name, name) == 0) k = &sweep_keys[i];
    if (!k) {
        snprintf(ps->bad, sizeof ps->bad, "unknown key '%s' in [sweep]", name);
        return 0;
    }
    char v[2048];
    snprintf(v, sizeof v, "%s", value);
    char *t = trim(v);
    char *field = (char *)(k->type == KEY_LIST ? (void *)ps : (void *)ps->cfg) + k->offset;
    switch (k->type) {
    case KEY_PATH:
        assert(k->size == SPEC_PATH);    /* what resolve() writes */
        resolve(ps, t, field);
        return 1;
    case KEY_TEXT:
        copystr(field, k->size, t);
        return 1;
    case KEY_INT:
        if (parse_int(t, k->lo, k->hi, (int *)(void *)field)) return 1;
        if (k->hi == ANY_INT)
            snprintf(ps->bad, sizeof ps->bad, "[sweep] %s = %s: expected an integer >= %d", name, t, k->lo);
        else
            snprintf(ps->bad, sizeof ps->bad, "[sweep] %s = %s: expected an integer in [%d, %d]", name, t,
                     k->lo, k->hi);
        return 0;
    case KEY_SIZE:
        if (run_parse_memory(t, (double *)(void *)field)) return 1;
        snprintf(ps->bad, sizeof ps->bad, "[sweep] %s = %s: expected a size such as 20G or 512M", name, t);
        return 0;
    case KEY_LIST: {
        /* An indented continuation line (inih hands it over under the same key) adds to the
         * list, so long task lists fit the 200-byte lines. */
        size_t have = strlen(field);
        if (have + strlen(t) + 2 >= k->size) {
            snprintf(ps->bad, sizeof ps->bad, "[sweep] %s: the list is longer than %zu characters", name,
                     k->size - 2);
            return 0;
        }
        snprintf(field + have, k->size - have, "%s%s", have ? "," : "", t);
        return 1;
    }
    }
    return 0;
}

static int on_grid_key(parse_state *ps, grid_section *g, const char *name, const char *value) {
    const option *opt = options_find(name);
    int k = opt ? (int)(opt - options_table) : 0;
    if (!opt || strcmp(opt->name, name) != 0) {
        snprintf(ps->bad, sizeof ps->bad, "unknown key '%s' in [grid.%s]", name, g->name);
        return 0;
    }
    char v[2048];
    snprintf(v, sizeof v, "%s", value);
    g->n[k] = 0;
    for (char *tok = strtok(v, ","); tok; tok = strtok(NULL, ",")) {
        char *x = trim(tok);
        if (!*x) continue;
        if (g->n[k] == MAX_VALUES) {
            snprintf(ps->bad, sizeof ps->bad, "[grid.%s] %s: more than %d values", g->name, name, MAX_VALUES);
            return 0;
        }
        snprintf(g->values[k][g->n[k]++], 64, "%s", x);
    }
    if (g->n[k] == 0) {
        snprintf(ps->bad, sizeof ps->bad, "[grid.%s] %s has no value", g->name, name);
        return 0;
    }
    return 1;
}

static int on_entry(parse_state *ps, const char *section, const char *name, const char *value);

/* inih goes on after an error and reports the first error's line: keep the first message, and
 * the line it belongs to. */
static int on_ini(void *user, const char *section, const char *name, const char *value) {
    parse_state *ps = user;
    if (ps->bad[0]) return 0;
    int ok = on_entry(ps, section, name, value);
    if (!ok) ps->bad_line = ps->lineno;
    return ok;
}

/* inih's line buffer is fixed in the library (INI_MAX_LINE, 200 bytes) and a longer line would be
 * split into two, the second parsed as a line of its own: comment lines of any length are read
 * here and dropped, a longer key = value line becomes an error naming it. */
typedef struct {
    FILE *f;
    parse_state *ps;
    char *buf;
    size_t cap;
} ini_source;

static char *ini_read_line(char *str, int num, void *stream) {
    ini_source *s = stream;
    ssize_t n = getline(&s->buf, &s->cap, s->f);
    if (n < 0) return NULL;
    s->ps->lineno++;
    const char *p = s->buf;
    while (*p == ' ' || *p == '\t') p++;
    bool comment = *p == ';' || *p == '#';
    if (!comment && n >= num - 1 && !s->ps->long_line) s->ps->long_line = s->ps->lineno;
    if (comment || n >= num - 1) snprintf(str, (size_t)num, "\n");
    else memcpy(str, s->buf, (size_t)n + 1);
    return str;
}

static int on_entry(parse_state *ps, const char *section, const char *name, const char *value) {
    if (strcmp(section, "sweep") == 0) return on_sweep_key(ps, name, value);
    if (strncmp(section, "grid.", 5) == 0 && section[5]) {
        grid_section *g = NULL;
        for (int i = 0; i < ps->n_grids; i++)
            if (strcmp(ps->grids[i].name, section + 5) == 0) g = &ps->grids[i];
        if (!g) {
            if (ps->n_grids == MAX_GRIDS) {
                snprintf(ps->bad, sizeof ps->bad, "more than %d grid sections", MAX_GRIDS);
                return 0;
            }
            g = &ps->grids[ps->n_grids++];
            memset(g, 0, sizeof *g);
            snprintf(g->name, sizeof g->name, "%s", section + 5);
        }
        return on_grid_key(ps, g, name, value);
    }
    snprintf(ps->bad, sizeof ps->bad, "unknown section [%s] (expected [sweep] or [grid.NAME])", section);
    return 0;
}

/* eval.ppl = FILE:PROTOCOL[:SEQLEN], ...   eval.tasks = NAME=FILE, ... */
static int parse_evals(parse_state *ps, const char *path, err *e) {
    run_setup *c = &ps->cfg->setup;
    char v[2048];
    snprintf(v, sizeof v, "%s", ps->eval_ppl);
    for (char *tok = strtok(v, ","); tok; tok = strtok(NULL, ",")) {
        char *x = trim(tok);
        if (!*x) continue;
        if (c->n_ppl == SPEC_MAX_EVALS)
            return err_set(e, SPARQ_EINPUT, "%s: eval.ppl lists more than %d texts", path, SPEC_MAX_EVALS);
        spec_ppl *p = &c->ppl[c->n_ppl++];
        char *proto = strchr(x, ':');
        p->protocol = PPL_WINDOWS;
        p->seqlen = 0;
        if (proto) {
            *proto++ = '\0';
            char *sl = strchr(proto, ':');
            if (sl) {
                *sl++ = '\0';
                if (!parse_int(sl, 2, 1 << 20, &p->seqlen))
                    return err_set(e, SPARQ_EINPUT, "%s: eval.ppl seqlen '%s' is not an integer >= 2", path, sl);
            }
            char what[SPEC_PATH + 32];
            snprintf(what, sizeof what, "%s: eval.ppl protocol", path);
            int prc = ppl_protocol_parse(proto, what, &p->protocol, e);
            if (prc) return prc;
        }
        resolve(ps, x, p->path);
        const char *base = strrchr(x, '/');
        snprintf(p->name, sizeof p->name, "%s", base ? base + 1 : x);
    }
    snprintf(v, sizeof v, "%s", ps->eval_tasks);
    for (char *tok = strtok(v, ","); tok; tok = strtok(NULL, ",")) {
        char *x = trim(tok);
        if (!*x) continue;
        if (c->n_tasks == SPEC_MAX_TASKS)
            return err_set(e, SPARQ_EINPUT, "%s: eval.tasks lists more than %d tasks", path, SPEC_MAX_TASKS);
        char *eq = strchr(x, '=');
        if (!eq) return err_set(e, SPARQ_EINPUT, "%s: eval.tasks entry '%s': expected NAME=FILE", path, x);
        *eq = '\0';
        spec_task *t = &c->tasks[c->n_tasks++];
        snprintf(t->name, sizeof t->name, "%s", trim(x));
        resolve(ps, trim(eq + 1), t->path);
    }
    return SPARQ_OK;
}

/* ---- grid expansion -------------------------------------------------------------------------- */

/* One point: val[k] is the chosen value of options_table[k] (NULL = key absent). Fills r, or
 * its `invalid` reason. */
static void make_point(const grid_section *g, const char *val[MAX_KEYS], run_spec *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->grid, sizeof r->grid, "%s", g->name);
    r->opts = options_default();
    err e = {0};
    int rc = SPARQ_OK;
    /* The chain mode first: the solver's parse keeps it. */
    const option *chain = options_find("chain_mode");
    int ck = (int)(chain - options_table);
    if (val[ck]) rc = options_set(&r->opts, chain, val[ck], "", &e);
    for (int k = 0; !rc && k < options_count; k++)
        if (val[k] && k != ck) rc = options_set(&r->opts, &options_table[k], val[k], "", &e);
    if (!rc) rc = options_check(&r->opts, &e);
    if (rc) copystr(r->invalid, sizeof r->invalid, e.msg);
    options_label(&r->opts, r->label, sizeof r->label);
}

int config_load(const char *path, sweep_config *cfg, run_spec **runs, int *n, err *e) {
    *runs = NULL;
    *n = 0;
    memset(cfg, 0, sizeof *cfg);
    run_setup_default(&cfg->setup);
    snprintf(cfg->source, sizeof cfg->source, "%s", path);
    if (options_count > MAX_KEYS) return err_set(e, SPARQ_ERUNTIME, "options table longer than MAX_KEYS");
    parse_state *ps = calloc(1, sizeof *ps);
    if (!ps) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    ps->cfg = cfg;
    const char *slash = strrchr(path, '/');
    snprintf(ps->cfg_dir, sizeof ps->cfg_dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    ini_source src = {fopen(path, "r"), ps, NULL, 0};
    int line = src.f ? ini_parse_stream(ini_read_line, &src, on_ini, ps) : -1;
    int rc = SPARQ_OK;
    if (line == -1) rc = err_set(e, SPARQ_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    else if (line < -1) rc = err_set(e, SPARQ_ERUNTIME, "%s: out of memory while parsing", path);
    else if (ps->long_line && (line == 0 || ps->long_line < line))
        rc = err_set(e, SPARQ_EINPUT, "%s:%d: line longer than %d characters, the most a config line "
                     "may have", path, ps->long_line, INI_MAX_LINE - 2);
    else if (line > 0)
        rc = err_set(e, SPARQ_EINPUT, "%s:%d: %s", path, line,
                     ps->bad[0] && ps->bad_line == line ? ps->bad : "not a key = value line");
    if (src.f) fclose(src.f);
    free(src.buf);
    run_setup *s = &cfg->setup;
    if (!rc && !s->model[0]) rc = err_set(e, SPARQ_EINPUT, "%s: [sweep] needs model =", path);
    if (!rc && !s->calib[0]) rc = err_set(e, SPARQ_EINPUT, "%s: [sweep] needs calib = FILE or self", path);
    if (!rc && !cfg->out[0]) snprintf(cfg->out, sizeof cfg->out, "results/%s", "sweep");
    if (!rc) rc = parse_evals(ps, path, e);
    if (!rc && s->n_ppl + s->n_tasks == 0)
        rc = err_set(e, SPARQ_EINPUT, "%s: [sweep] needs eval.ppl and/or eval.tasks", path);
    if (!rc && cfg->eval_shards && s->n_ppl == 0)
        rc = err_set(e, SPARQ_EINPUT, "%s: [sweep] eval_shards splits the perplexities of eval.ppl, "
                     "and there are none", path);
    int solver_k = (int)(options_find("solver") - options_table);
    for (int i = 0; !rc && i < ps->n_grids; i++)
        if (ps->grids[i].n[solver_k] == 0)
            rc = err_set(e, SPARQ_EINPUT, "%s: [grid.%s] needs solver =", path, ps->grids[i].name);
    /* Expand: the dense baseline, then each grid's cross product in table order. */
    int cap = 1, count = 0;
    for (int i = 0; !rc && i < ps->n_grids; i++) {
        long prod = 1;
        for (int k = 0; k < options_count; k++) prod *= ps->grids[i].n[k] ? ps->grids[i].n[k] : 1;
        if (prod > 100000) rc = err_set(e, SPARQ_EINPUT, "%s: [grid.%s] expands to %ld runs", path,
                                        ps->grids[i].name, prod);
        cap += (int)prod;
    }
    run_spec *r = rc ? NULL : calloc((size_t)cap, sizeof *r);
    if (!rc && !r) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (!rc) {
        run_spec *d = &r[count++];
        d->dense = true;
        d->opts = options_default();
        snprintf(d->opts.solver.name, sizeof d->opts.solver.name, "dense");
        snprintf(d->grid, sizeof d->grid, "dense");
        snprintf(d->label, sizeof d->label, "dense");
    }
    for (int i = 0; !rc && i < ps->n_grids; i++) {
        const grid_section *g = &ps->grids[i];
        int idx[MAX_KEYS] = {0};
        for (;;) {
            const char *val[MAX_KEYS] = {0};
            for (int k = 0; k < options_count; k++) val[k] = g->n[k] ? g->values[k][idx[k]] : NULL;
            make_point(g, val, &r[count++]);
            int k = options_count - 1;          /* odometer: the last key varies fastest */
            while (k >= 0 && (g->n[k] == 0 || ++idx[k] == g->n[k])) { if (g->n[k]) idx[k] = 0; k--; }
            if (k < 0) break;
        }
    }
    free(ps);
    if (rc) { free(r); return rc; }
    *runs = r;
    *n = count;
    return SPARQ_OK;
}
