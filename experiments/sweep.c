#include "sweep.h"

#include <ctype.h>
#include <dirent.h>
#include <sys/stat.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/model.h"

uint64_t sweep_hash(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A folder (a Hugging Face checkpoint) hashes as the names and contents of its files, sorted. */
static int folder_hash(const char *path, uint64_t *h, err *e) {
    DIR *d = opendir(path);
    if (!d) return err_set(e, SPARQ_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0, rc = SPARQ_OK;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (de->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **p = realloc(names, (size_t)cap * sizeof *p);
            if (!p) { rc = err_set(e, SPARQ_ERUNTIME, "out of memory"); break; }
            names = p;
        }
        names[n] = strdup(de->d_name);
        if (!names[n]) { rc = err_set(e, SPARQ_ERUNTIME, "out of memory"); break; }
        n++;
    }
    closedir(d);
    if (!rc) qsort(names, (size_t)n, sizeof *names, cmp_name);
    *h = SWEEP_HASH_INIT;
    for (int i = 0; !rc && i < n; i++) {
        char sub[4200];
        snprintf(sub, sizeof sub, "%s/%s", path, names[i]);
        struct stat st;
        if (stat(sub, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        uint64_t fh;
        rc = sweep_file_hash(sub, &fh, e);
        *h = sweep_hash(sweep_hash(*h, names[i], strlen(names[i])), &fh, sizeof fh);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int sweep_file_hash(const char *path, uint64_t *h, err *e) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return folder_hash(path, h, e);
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(e, SPARQ_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    unsigned char buf[1 << 16];
    size_t n;
    *h = SWEEP_HASH_INIT;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) *h = sweep_hash(*h, buf, n);
    fclose(f);
    return SPARQ_OK;
}

/* ---- parsing -------------------------------------------------------------------------------- */

#define MAX_VALUES 32
#define MAX_GRIDS 32

/* Every key a [grid.*] section may list; each is an axis of the cross product. */
enum { G_SOLVER, G_SPARSITY, G_NM, G_BITS, G_GROUP, G_SCHEDULE, G_SYM, G_ACT_ORDER, G_STATIC_GROUPS,
       G_MSE, G_DAMP, G_BLOCK, G_SCOPE, G_TRUE_SEQ, G_CHAIN_MODE, G_KEYS };
static const char *const grid_keys[G_KEYS] = {
    "solver", "sparsity", "nm", "bits", "group", "schedule", "sym", "act_order", "static_groups",
    "mse", "damp", "block", "scope", "true_sequential", "chain_mode"};

typedef struct {
    char name[64];
    char values[G_KEYS][MAX_VALUES][64];
    int  n[G_KEYS];
} grid_section;

typedef struct {
    sweep_config *cfg;
    grid_section  grids[MAX_GRIDS];
    int           n_grids;
    char          bad[256];          /* the first problem, reported with ini_parse's line */
    int           bad_line;          /* the line it was found on                          */
    int           lineno;            /* the line the reader handed over last              */
    int           long_line;         /* the first line too long for inih's buffer         */
    char          cfg_dir[SWEEP_PATH];
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

/* Relative data paths: $SPARQ_DATA first, then the config's folder (ARCHITECTURE.md). */
static void resolve(const parse_state *ps, const char *v, char *out) {
    if (v[0] == '/' || strcmp(v, "self") == 0) { snprintf(out, SWEEP_PATH, "%s", v); return; }
    const char *root = getenv("SPARQ_DATA");
    char buf[SWEEP_PATH * 2];
    snprintf(buf, sizeof buf, "%s/%s", root && *root ? root : "../shared/data", v);
    if (access(buf, F_OK) == 0) { copystr(out, SWEEP_PATH, buf); return; }
    snprintf(buf, sizeof buf, "%s/%s", ps->cfg_dir, v);
    copystr(out, SWEEP_PATH, buf);
}

static int parse_int(const char *v, int lo, int hi, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *trim(end) != '\0' || x < lo || x > hi) return 0;
    *out = (int)x;
    return 1;
}

static int on_sweep_key(parse_state *ps, const char *name, const char *value) {
    sweep_config *c = ps->cfg;
    char v[2048];
    snprintf(v, sizeof v, "%s", value);
    char *t = trim(v);
    if (strcmp(name, "model") == 0) resolve(ps, t, c->model);
    else if (strcmp(name, "tokenizer") == 0) resolve(ps, t, c->tokenizer);
    else if (strcmp(name, "calib") == 0) resolve(ps, t, c->calib);
    else if (strcmp(name, "out") == 0) snprintf(c->out, sizeof c->out, "%s", t);
    else if (strcmp(name, "srcr_formula") == 0) snprintf(c->srcr_formula, sizeof c->srcr_formula, "%s", t);
    else if (strcmp(name, "eval.ppl") == 0) snprintf(ps->eval_ppl, sizeof ps->eval_ppl, "%s", t);
    else if (strcmp(name, "eval.tasks") == 0) snprintf(ps->eval_tasks, sizeof ps->eval_tasks, "%s", t);
    else if (strcmp(name, "nsamples") == 0 || strcmp(name, "seqlen") == 0 || strcmp(name, "seed") == 0 ||
             strcmp(name, "eval.limit") == 0) {
        int *dst = strcmp(name, "nsamples") == 0 ? &c->nsamples
                 : strcmp(name, "seqlen") == 0 ? &c->calib_seqlen
                 : strcmp(name, "seed") == 0 ? &c->seed : &c->limit;
        int lo = strcmp(name, "seed") == 0 || strcmp(name, "eval.limit") == 0 ? 0 : 1;
        if (!parse_int(t, lo, 1 << 30, dst)) {
            snprintf(ps->bad, sizeof ps->bad, "[sweep] %s = %s: expected an integer >= %d", name, t, lo);
            return 0;
        }
    } else {
        snprintf(ps->bad, sizeof ps->bad, "unknown key '%s' in [sweep]", name);
        return 0;
    }
    return 1;
}

static int on_grid_key(parse_state *ps, grid_section *g, const char *name, const char *value) {
    int k = 0;
    while (k < G_KEYS && strcmp(grid_keys[k], name) != 0) k++;
    if (k == G_KEYS) {
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
    sweep_config *c = ps->cfg;
    char v[2048];
    snprintf(v, sizeof v, "%s", ps->eval_ppl);
    for (char *tok = strtok(v, ","); tok; tok = strtok(NULL, ",")) {
        char *x = trim(tok);
        if (!*x) continue;
        if (c->n_ppl == SWEEP_MAX_EVALS)
            return err_set(e, SPARQ_EINPUT, "%s: eval.ppl lists more than %d texts", path, SWEEP_MAX_EVALS);
        sweep_ppl *p = &c->ppl[c->n_ppl++];
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
            if (strcmp(proto, "documents") == 0) p->protocol = PPL_DOCUMENTS;
            else if (strcmp(proto, "windows") != 0)
                return err_set(e, SPARQ_EINPUT, "%s: eval.ppl protocol '%s': expected windows or documents",
                               path, proto);
        }
        resolve(ps, x, p->path);
        const char *base = strrchr(x, '/');
        snprintf(p->name, sizeof p->name, "%s", base ? base + 1 : x);
    }
    snprintf(v, sizeof v, "%s", ps->eval_tasks);
    for (char *tok = strtok(v, ","); tok; tok = strtok(NULL, ",")) {
        char *x = trim(tok);
        if (!*x) continue;
        if (c->n_tasks == SWEEP_MAX_TASKS)
            return err_set(e, SPARQ_EINPUT, "%s: eval.tasks lists more than %d tasks", path, SWEEP_MAX_TASKS);
        char *eq = strchr(x, '=');
        if (!eq) return err_set(e, SPARQ_EINPUT, "%s: eval.tasks entry '%s': expected NAME=FILE", path, x);
        *eq = '\0';
        sweep_task *t = &c->tasks[c->n_tasks++];
        snprintf(t->name, sizeof t->name, "%s", trim(x));
        resolve(ps, trim(eq + 1), t->path);
    }
    return SPARQ_OK;
}

/* ---- grid expansion -------------------------------------------------------------------------- */

static bool parse_bool(const char *v, bool *out) {
    if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on")) *out = true;
    else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off")) *out = false;
    else return false;
    return true;
}

/* One point: values[k] is the chosen value of axis k (NULL = key absent). Fills r or its
 * `invalid` reason. */
static void make_point(const grid_section *g, const char *val[G_KEYS], const int shapes[][2],
                       int n_shapes, run_spec *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->grid, sizeof r->grid, "%s", g->name);
    r->target = target_default();
    r->schedule = SCHEDULE_UNIFORM;
    target *t = &r->target;
    err e = {0};
    bool all = val[G_CHAIN_MODE] && strcmp(val[G_CHAIN_MODE], "all") == 0;
    if (val[G_CHAIN_MODE] && !all && strcmp(val[G_CHAIN_MODE], "mask") != 0) {
        snprintf(r->invalid, sizeof r->invalid, "chain_mode %s: expected mask or all", val[G_CHAIN_MODE]);
        return;
    }
    if (solver_spec_parse(val[G_SOLVER], all, &r->solver, &e)) {
        copystr(r->invalid, sizeof r->invalid, e.msg);
        return;
    }
    char *end;
    if (val[G_SPARSITY]) {
        t->sparsity = strtod(val[G_SPARSITY], &end);
        if (*end) { snprintf(r->invalid, sizeof r->invalid, "sparsity '%s' is not a number", val[G_SPARSITY]); return; }
    }
    if (val[G_NM]) {
        char extra;
        if (sscanf(val[G_NM], "%d:%d%c", &t->n, &t->m, &extra) != 2) {
            snprintf(r->invalid, sizeof r->invalid, "nm '%s': expected N:M", val[G_NM]);
            return;
        }
        if (val[G_SPARSITY] && t->m > 0 && fabs(t->sparsity - (double)t->n / t->m) > 1e-6) {
            snprintf(r->invalid, sizeof r->invalid, "%s prunes %g of the weights, not sparsity %s",
                     val[G_NM], (double)t->n / t->m, val[G_SPARSITY]);
            return;
        }
    }
    struct { int k; int *dst; int lo, hi; } ints[] = {
        {G_BITS, &t->bits, 2, 16}, {G_GROUP, &t->group, -1, 1 << 20}, {G_BLOCK, &t->block, 0, 1 << 20}};
    for (int i = 0; i < 3; i++)
        if (val[ints[i].k] && !parse_int(val[ints[i].k], ints[i].lo, ints[i].hi, ints[i].dst)) {
            snprintf(r->invalid, sizeof r->invalid, "%s '%s' is not an integer in [%d, %d]",
                     grid_keys[ints[i].k], val[ints[i].k], ints[i].lo, ints[i].hi);
            return;
        }
    struct { int k; bool *dst; } bools[] = {{G_SYM, &t->sym}, {G_ACT_ORDER, &t->act_order},
        {G_STATIC_GROUPS, &t->static_groups}, {G_MSE, &t->mse}, {G_TRUE_SEQ, &r->true_sequential}};
    for (int i = 0; i < 5; i++)
        if (val[bools[i].k] && !parse_bool(val[bools[i].k], bools[i].dst)) {
            snprintf(r->invalid, sizeof r->invalid, "%s '%s': expected true or false", grid_keys[bools[i].k],
                     val[bools[i].k]);
            return;
        }
    if (val[G_DAMP]) {
        t->damp = strtof(val[G_DAMP], &end);
        if (*end) { snprintf(r->invalid, sizeof r->invalid, "damp '%s' is not a number", val[G_DAMP]); return; }
    }
    if (val[G_SCOPE]) {
        if (strcmp(val[G_SCOPE], "row") == 0) t->scope = SCOPE_ROW;
        else if (strcmp(val[G_SCOPE], "layer") != 0) {
            snprintf(r->invalid, sizeof r->invalid, "scope '%s': expected layer or row", val[G_SCOPE]);
            return;
        }
    }
    if (val[G_SCHEDULE] && schedule_parse(val[G_SCHEDULE], &r->schedule, &e)) {
        copystr(r->invalid, sizeof r->invalid, e.msg);
        return;
    }
    if (r->schedule != SCHEDULE_UNIFORM && (t->m > 0 || t->sparsity <= 0.0f)) {
        snprintf(r->invalid, sizeof r->invalid, "schedule %s needs an unstructured sparsity",
                 schedule_name(r->schedule));
        return;
    }
    /* Against every distinct layer shape of the model, so that e.g. 4:8 on a layer of 172
     * inputs is reported before anything runs. */
    for (int k = 0; k < n_shapes; k++)
        if (solver_spec_check(&r->solver, t, shapes[k][0], shapes[k][1], &e)) {
            copystr(r->invalid, sizeof r->invalid, e.msg);
            return;
        }
}

/* The linear layer shapes [rows, cols] of a llama2.c checkpoint from its header; other formats
 * (or an unreadable header) give one permissive shape and are checked again at run time. */
static int model_shapes(const char *path, int shapes[4][2]) {
    FILE *f = fopen(path, "rb");
    int32_t h[7];
    bool ok = f && fread(h, sizeof h, 1, f) == 1 && h[0] > 0 && h[1] > 0 && h[3] > 0 && h[4] > 0 &&
              h[0] % h[3] == 0;
    if (f) fclose(f);
    if (!ok) {
        shapes[0][0] = 64;
        shapes[0][1] = 5040;      /* divisible by every M up to 16 */
        return 1;
    }
    int dim = h[0], hid = h[1], kv = h[0] / h[3] * h[4];
    int s[4][2] = {{dim, dim}, {kv, dim}, {hid, dim}, {dim, hid}};
    memcpy(shapes, s, sizeof s);
    return 4;
}

static void make_label(run_spec *r) {
    const target *t = &r->target;
    char *p = r->label;
    size_t n = sizeof r->label;
    int w = snprintf(p, n, "%s", r->dense ? "dense" : r->solver.name);
    if (t->m > 0) w += snprintf(p + w, n - w, " %d:%d", t->n, t->m);
    if (t->sparsity > 0 && (t->m == 0 || fabs(t->sparsity - (double)t->n / t->m) > 1e-6))
        w += snprintf(p + w, n - w, " s=%g", (double)t->sparsity);
    if (t->bits < 16) w += snprintf(p + w, n - w, " %d-bit", t->bits);
    if (t->bits < 16 && t->group > 0) w += snprintf(p + w, n - w, " g%d", t->group);
    if (t->sym) w += snprintf(p + w, n - w, " sym");
    if (t->act_order) w += snprintf(p + w, n - w, " act-order");
    if (t->static_groups) w += snprintf(p + w, n - w, " static");
    if (t->mse) w += snprintf(p + w, n - w, " mse");
    if (t->scope == SCOPE_ROW) w += snprintf(p + w, n - w, " per-row");
    if (t->block != 128) w += snprintf(p + w, n - w, " block=%d", t->block);
    if (fabsf(t->damp - 0.01f) > 1e-9f) w += snprintf(p + w, n - w, " damp=%g", (double)t->damp);
    if (r->schedule != SCHEDULE_UNIFORM) w += snprintf(p + w, n - w, " %s", schedule_name(r->schedule));
    if (r->true_sequential) w += snprintf(p + w, n - w, " true-seq");
    if (r->solver.n == 2 && r->solver.quantize_all) snprintf(p + w, n - w, " quantize-all");
}

/* The key: everything that defines the run, hashed; file contents, not names. */
static void make_key(const sweep_config *c, const uint64_t fh[], run_spec *r) {
    char buf[4096];
    const target *t = &r->target;
    int w = snprintf(buf, sizeof buf, "v1|model=%016llx|tok=%016llx|calib=%016llx:%d:%d:%d|",
                     (unsigned long long)fh[0], (unsigned long long)fh[1], (unsigned long long)fh[2],
                     c->nsamples, c->calib_seqlen, c->seed);
    if (r->dense) w += snprintf(buf + w, sizeof buf - w, "dense|");
    else
        w += snprintf(buf + w, sizeof buf - w,
                      "solver=%s:%d|s=%.6g|nm=%d:%d|bits=%d|g=%d|sym=%d|act=%d|static=%d|mse=%d|damp=%.6g|"
                      "block=%d|scope=%d|sched=%d|tseq=%d|", r->solver.name, r->solver.quantize_all,
                      (double)t->sparsity, t->n, t->m, t->bits, t->group, t->sym, t->act_order,
                      t->static_groups, t->mse, (double)t->damp, t->block, t->scope, r->schedule,
                      r->true_sequential);
    for (int i = 0; i < c->n_ppl; i++)
        w += snprintf(buf + w, sizeof buf - w, "ppl=%016llx:%d:%d|", (unsigned long long)fh[3 + i],
                      c->ppl[i].protocol, c->ppl[i].seqlen);
    for (int i = 0; i < c->n_tasks; i++)
        w += snprintf(buf + w, sizeof buf - w, "task=%s:%016llx|", c->tasks[i].name,
                      (unsigned long long)fh[3 + SWEEP_MAX_EVALS + i]);
    snprintf(buf + w, sizeof buf - w, "limit=%d", c->limit);
    snprintf(r->key, sizeof r->key, "%016llx", (unsigned long long)sweep_hash(SWEEP_HASH_INIT, buf, strlen(buf)));
}

int sweep_load(const char *path, sweep_config *cfg, run_spec **runs, int *n, err *e) {
    *runs = NULL;
    *n = 0;
    memset(cfg, 0, sizeof *cfg);
    cfg->nsamples = 128;
    snprintf(cfg->source, sizeof cfg->source, "%s", path);
    snprintf(cfg->srcr_formula, sizeof cfg->srcr_formula, "recon");
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
    if (!rc && !cfg->model[0]) rc = err_set(e, SPARQ_EINPUT, "%s: [sweep] needs model =", path);
    if (!rc && !cfg->calib[0]) rc = err_set(e, SPARQ_EINPUT, "%s: [sweep] needs calib = FILE or self", path);
    if (!rc && !cfg->out[0]) snprintf(cfg->out, sizeof cfg->out, "results/%s", "sweep");
    if (!rc) rc = parse_evals(ps, path, e);
    if (!rc && cfg->n_ppl + cfg->n_tasks == 0)
        rc = err_set(e, SPARQ_EINPUT, "%s: [sweep] needs eval.ppl and/or eval.tasks", path);
    for (int i = 0; !rc && i < ps->n_grids; i++)
        if (ps->grids[i].n[G_SOLVER] == 0)
            rc = err_set(e, SPARQ_EINPUT, "%s: [grid.%s] needs solver =", path, ps->grids[i].name);
    /* Content hashes of every input that defines a run. */
    uint64_t fh[3 + SWEEP_MAX_EVALS + SWEEP_MAX_TASKS] = {0};
    if (!rc) rc = sweep_file_hash(cfg->model, &fh[0], e);
    if (!rc && cfg->tokenizer[0]) rc = sweep_file_hash(cfg->tokenizer, &fh[1], e);
    if (!rc && strcmp(cfg->calib, "self") != 0) rc = sweep_file_hash(cfg->calib, &fh[2], e);
    for (int i = 0; !rc && i < cfg->n_ppl; i++) rc = sweep_file_hash(cfg->ppl[i].path, &fh[3 + i], e);
    for (int i = 0; !rc && i < cfg->n_tasks; i++)
        rc = sweep_file_hash(cfg->tasks[i].path, &fh[3 + SWEEP_MAX_EVALS + i], e);
    int shapes[4][2], n_shapes = rc ? 0 : model_shapes(cfg->model, shapes);
    /* Expand: the dense baseline, then each grid's cross product in key order. */
    int cap = 1, count = 0;
    for (int i = 0; !rc && i < ps->n_grids; i++) {
        long prod = 1;
        for (int k = 0; k < G_KEYS; k++) prod *= ps->grids[i].n[k] ? ps->grids[i].n[k] : 1;
        if (prod > 100000) rc = err_set(e, SPARQ_EINPUT, "%s: [grid.%s] expands to %ld runs", path,
                                        ps->grids[i].name, prod);
        cap += (int)prod;
    }
    run_spec *r = rc ? NULL : calloc((size_t)cap, sizeof *r);
    if (!rc && !r) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (!rc) {
        run_spec *d = &r[count++];
        memset(d, 0, sizeof *d);
        d->dense = true;
        d->target = target_default();
        snprintf(d->grid, sizeof d->grid, "dense");
        make_label(d);
        make_key(cfg, fh, d);
    }
    for (int i = 0; !rc && i < ps->n_grids; i++) {
        const grid_section *g = &ps->grids[i];
        int idx[G_KEYS] = {0};
        for (;;) {
            const char *val[G_KEYS];
            for (int k = 0; k < G_KEYS; k++) val[k] = g->n[k] ? g->values[k][idx[k]] : NULL;
            make_point(g, val, (const int (*)[2])shapes, n_shapes, &r[count]);
            make_label(&r[count]);
            make_key(cfg, fh, &r[count]);
            count++;
            int k = G_KEYS - 1;          /* odometer: the last key varies fastest */
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

/* ---- execution ------------------------------------------------------------------------------ */

#include <signal.h>
#include <sys/wait.h>

#include "../core/blas.h"
#include "results.h"
#include "run.h"

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A short summary of a record for the progress line: the first perplexity. */
static void summary(const cJSON *rec, char *buf, size_t n) {
    const cJSON *ppl = cJSON_GetObjectItem(rec, "ppl");
    const cJSON *first = ppl ? ppl->child : NULL;
    if (first) snprintf(buf, n, "%s ppl %.4g", first->string, cJSON_GetObjectItem(first, "ppl")->valuedouble);
    else buf[0] = '\0';
}

/* Worker: the plan entries with position % jobs == worker. Returns the number of failed runs. */
static int work(const sweep_config *cfg, const run_spec *runs, const int *plan, int np, int worker,
                int jobs, err *e) {
    run_context *ctx;
    int rc = run_context_new(&ctx, cfg, e);
    if (rc) {
        fprintf(stderr, "sparq sweep: %s\n", e->msg);
        return np;
    }
    int failed = 0, done = 0, mine = 0;
    for (int p = worker; p < np; p += jobs) mine++;
    double t0 = wall();
    for (int p = worker; p < np; p += jobs) {
        const run_spec *r = &runs[plan[p]];
        cJSON *rec = NULL;
        err re = {0};
        double a = wall();
        int x = run_execute(ctx, r, NULL, &rec, &re);
        bool added = false;
        if (!x) x = results_append(cfg->out, rec, &added, &re);
        done++;
        double el = wall() - t0, eta = el / done * (mine - done);
        if (x) {
            failed++;
            fprintf(stderr, "[%d/%d] FAILED %s: %s\n", done, mine, r->label, re.msg);
        } else {
            char s[128];
            summary(rec, s, sizeof s);
            fprintf(stderr, "[%d/%d]%s %-40s %s  %.1f s, eta %.0f s%s\n", done, mine,
                    jobs > 1 ? " worker" : "", r->label, s, wall() - a, eta,
                    added ? "" : " (already recorded by another shard)");
        }
        cJSON_Delete(rec);
    }
    run_context_free(ctx);
    return failed;
}

int sweep_execute(const sweep_config *cfg, const run_spec *runs, int n, const sweep_options *o,
                  err *e) {
    int rc = o->dry_run ? SPARQ_OK : results_mkdir(cfg->out, e);   /* a dry run writes nothing */
    cJSON **recs = NULL;
    int nrec = 0;
    if (!rc) rc = results_load(cfg->out, &recs, &nrec, e);
    if (rc) return rc;
    int *plan = malloc((size_t)(n > 0 ? n : 1) * sizeof(int)), np = 0, ninvalid = 0, ndone = 0;
    if (!plan) { results_free(recs, nrec); return err_set(e, SPARQ_ERUNTIME, "out of memory"); }
    for (int i = 0; i < n; i++) {
        bool mine = i % o->shard_n == o->shard_i;
        bool done = results_find(recs, nrec, runs[i].key) != NULL;
        const char *status = runs[i].invalid[0] ? "invalid" : done ? "done" : mine ? "pending" : "other shard";
        if (o->dry_run)
            printf("%4d  %s  %-11s  %-44s %s\n", i, runs[i].key, status, runs[i].label, runs[i].invalid);
        if (runs[i].invalid[0]) {
            ninvalid++;
            if (!o->dry_run) fprintf(stderr, "invalid: [grid.%s] %s: %s\n", runs[i].grid, runs[i].label, runs[i].invalid);
        } else if (done) {
            ndone++;
        } else if (mine) {
            plan[np++] = i;
        }
    }
    results_free(recs, nrec);
    if (o->dry_run) {
        printf("%d runs: %d done, %d to run in this shard, %d invalid\n", n, ndone, np, ninvalid);
        free(plan);
        return SPARQ_OK;
    }
    fprintf(stderr, "sweep %s: %d runs, %d done, %d to run here (shard %d/%d, %d jobs), %d invalid -> %s\n",
            cfg->source, n, ndone, np, o->shard_i, o->shard_n, o->jobs, ninvalid, cfg->out);
    int threads = o->threads > 0 ? o->threads : blas_threads();
    int jobs = o->jobs < np ? o->jobs : (np > 0 ? np : 1);
    int failed = 0;
    if (jobs <= 1) {
        blas_set_threads(threads);
        failed = work(cfg, runs, plan, np, 0, 1, e);
    } else {
        /* Forked workers, each with its share of the threads; records meet in runs.jsonl under
         * its lock, so the workers need nothing else in common. */
        pid_t *pids = calloc((size_t)jobs, sizeof(pid_t));
        for (int w = 0; pids && w < jobs; w++) {
            pid_t pid = fork();
            if (pid == 0) {
                blas_set_threads(threads / jobs > 0 ? threads / jobs : 1);
                err we = {0};
                int f = work(cfg, runs, plan, np, w, jobs, &we);
                _exit(f > 250 ? 250 : f);     /* the exit status carries the failure count */
            }
            pids[w] = pid;
        }
        for (int w = 0; pids && w < jobs; w++) {
            int st = 0;
            if (pids[w] > 0 && waitpid(pids[w], &st, 0) > 0)
                failed += WIFEXITED(st) ? WEXITSTATUS(st) : 1;
            if (pids[w] < 0) failed++;
        }
        free(pids);
    }
    free(plan);
    if (failed) return err_set(e, SPARQ_ERUNTIME, "%d run%s failed (see the lines above); the others are recorded",
                               failed, failed > 1 ? "s" : "");
    return SPARQ_OK;
}

int sweep_write_slurm(const sweep_config *cfg, int n, const char *config_path, err *e) {
    int rc = results_mkdir(cfg->out, e);
    if (rc) return rc;
    char path[SWEEP_PATH + 32], text[8192];
    snprintf(path, sizeof path, "%s/sweep.slurm", cfg->out);
    snprintf(text, sizeof text,
             "#!/bin/sh\n"
             "# One grid point per array task; records meet in %s/runs.jsonl (flock-protected).\n"
             "#SBATCH --job-name=sparq-sweep\n#SBATCH --array=0-%d\n#SBATCH --cpus-per-task=2\n"
             "#SBATCH --output=%s/slurm-%%A_%%a.log\n"
             "sparq sweep '%s' --out '%s' --shard \"$SLURM_ARRAY_TASK_ID/%d\"\n",
             cfg->out, n - 1, cfg->out, config_path, cfg->out, n);
    rc = results_write_atomic(path, text, strlen(text), e);
    snprintf(path, sizeof path, "%s/report.slurm", cfg->out);
    snprintf(text, sizeof text,
             "#!/bin/sh\n#SBATCH --job-name=sparq-report\n#SBATCH --output=%s/slurm-report.log\n"
             "sparq report '%s'\n", cfg->out, cfg->out);
    if (!rc) rc = results_write_atomic(path, text, strlen(text), e);
    snprintf(path, sizeof path, "%s/submit.sh", cfg->out);
    snprintf(text, sizeof text,
             "#!/bin/sh\n# Submit the sweep array, then the report once every task has ended.\nset -e\n"
             "jid=$(sbatch --parsable '%s/sweep.slurm')\n"
             "sbatch --dependency=afterany:\"$jid\" '%s/report.slurm'\n", cfg->out, cfg->out);
    if (!rc) rc = results_write_atomic(path, text, strlen(text), e);
    return rc;
}
