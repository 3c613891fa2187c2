/* The sparq command line: parses flags, calls one entry point per subcommand, prints results
 * (or one JSON object with --json) and the one-line error of a failure. Exit status 0 on
 * success, 1 on a runtime failure, 2 on bad usage or bad input. */
#include <cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/blas.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/forward.h"
#include "core/model.h"
#include "core/progress.h"
#include "core/tokenizer.h"
#include "eval/metrics.h"
#include "eval/perplexity.h"
#include "eval/zeroshot.h"
#include "experiments/calib.h"
#include "experiments/compress.h"
#include "experiments/report.h"
#include "experiments/sweep.h"
#include "solvers/solver.h"

static const char *usage_text =
    "usage: sparq <command> [options]\n"
    "\n"
    "  eval      --model M [--tokenizer T] --text F [--protocol windows|documents] [--seqlen L]\n"
    "            [--limit N] [--threads N] [--json]\n"
    "  generate  --model M [--tokenizer T] [--prompt S] [-n STEPS] [--json]     (greedy)\n"
    "  zeroshot  --model M [--tokenizer T] --task NAME=FILE ... [--limit N] [--seed S] [--threads N]\n"
    "            [--json]   tasks: piqa, arc_easy, arc_challenge, hellaswag, winogrande, boolq,\n"
    "            lambada (the original files; FILE,LABELS names a labels file), cloze, ending (any text)\n"
    "  inspect   --model M [--json]\n"
    "  convert   --model M --out OUT [--format llama2c|safetensors|gguf] [--dtype f32|f16|bf16]\n"
    "            [--tokenizer T] [--json]   (M, OUT: llama2.c .bin, .gguf, .safetensors or a HF folder)\n"
    "  sweep     CONFIG.ini [--out DIR] [--jobs N] [--shard I/N] [--threads N] [--dry-run] [--slurm]\n"
    "  report    RESULTS_DIR [--format md|csv|latex] [--plots DIR] [--srcr-formula recon|ratio]\n"
    "  compress  --model M [--tokenizer T] --solver NAME [--sparsity S | --nm N:M] [--bits B]\n"
    "            [--group G] [--sym] [--act-order] [--static-groups] [--mse] [--chain-mode mask|all]\n"
    "            [--scope layer|row] [--block B] [--damp P] [--true-sequential]\n"
    "            [--schedule uniform|hessian|owl]\n"
    "            --calib F|self [--nsamples N] [--calib-seqlen L] [--seed S] [--out FILE]\n"
    "            [--eval F [--protocol P] [--seqlen L] [--limit N]] [--threads N] [--json]\n"
    "            solvers: magnitude, wanda, sparsegpt, apt, rtn, gptq, or chains such as sparsegpt+gptq\n"
    "\n"
    "Without --tokenizer: a GGUF model's own vocabulary, else tokenizer.bin, tok<vocab>.bin,\n"
    "tokenizer.model or tokenizer.json beside the model (inside it for a Hugging Face folder).\n";

/* ---- flags -------------------------------------------------------------------------------- */

typedef struct {
    const char *name;      /* "--model"; "-n" style short names too */
    bool        is_bool;
    const char *value;     /* set by the parser; "1" for booleans    */
} flag;

static flag *flag_get(flag *f, const char *name) {
    for (; f->name; f++)
        if (strcmp(f->name, name) == 0) return f;
    return NULL;
}

static const char *flag_str(flag *f, const char *name) { return flag_get(f, name)->value; }

static int flags_parse(flag *flags, int argc, char **argv, err *e) {
    for (int i = 0; i < argc; i++) {
        flag *f = flag_get(flags, argv[i]);
        if (!f) return err_set(e, SPARQ_EINPUT, "unknown option '%s' (see sparq --help)", argv[i]);
        if (f->is_bool) {
            f->value = "1";
        } else {
            if (i + 1 >= argc) return err_set(e, SPARQ_EINPUT, "option %s needs a value", argv[i]);
            f->value = argv[++i];
        }
    }
    return SPARQ_OK;
}

/* Integer option in [lo, hi]; *out keeps its default when the option is absent. */
static int flag_int(flag *flags, const char *name, int lo, int hi, int *out, err *e) {
    const char *v = flag_str(flags, name);
    if (!v) return SPARQ_OK;
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || x < lo || x > hi)
        return err_set(e, SPARQ_EINPUT, "%s %s: expected an integer in [%d, %d]", name, v, lo, hi);
    *out = (int)x;
    return SPARQ_OK;
}

static int require(flag *flags, const char *name, err *e) {
    return flag_str(flags, name) ? SPARQ_OK
                                 : err_set(e, SPARQ_EINPUT, "missing required option %s", name);
}

/* ---- shared loading ----------------------------------------------------------------------- */

static bool file_exists(const char *p) {
    FILE *f = fopen(p, "rb");
    if (f) fclose(f);
    return f != NULL;
}

static bool has_gguf_magic(const char *p) {
    char mg[4] = {0};
    FILE *f = fopen(p, "rb");
    bool yes = f && fread(mg, 1, 4, f) == 4 && memcmp(mg, "GGUF", 4) == 0;
    if (f) fclose(f);
    return yes;
}

/* --tokenizer; without it a GGUF model's own vocabulary, else tokenizer.bin, tok<vocab>.bin,
 * tokenizer.model or tokenizer.json in the model's folder (inside it for a HF model folder). */
static int load_tokenizer(const model *m, const char *model_path, const char *path, tokenizer **t,
                          err *e) {
    char buf[4200];
    int rc = SPARQ_OK;
    bool embedded = !path && has_gguf_magic(model_path);
    if (embedded && (rc = tokenizer_load(t, model_path, e)) == SPARQ_OK) path = model_path;
    if (!path) {
        char dir[4096], tok[32];
        if (path_is_dir(model_path))
            snprintf(dir, sizeof dir, "%s%s", model_path, path_has_suffix(model_path, "/") ? "" : "/");
        else
            path_dir(model_path, dir, sizeof dir);
        snprintf(tok, sizeof tok, "tok%d.bin", m->cfg.vocab_size);
        const char *names[] = {"tokenizer.bin", tok, "tokenizer.model", "tokenizer.json"};
        for (int i = 0; i < 4 && !path; i++) {
            snprintf(buf, sizeof buf, "%s%s", dir, names[i]);
            if (file_exists(buf)) path = buf;
        }
        if (!path && embedded) return rc;   /* the GGUF's own message says why its vocabulary failed */
        if (!path)
            return err_set(e, SPARQ_EINPUT, "no --tokenizer given and none of tokenizer.bin, tok%d.bin, "
                           "tokenizer.model, tokenizer.json is beside %s", m->cfg.vocab_size, model_path);
        if ((rc = tokenizer_load(t, path, e))) return rc;
    } else if (!embedded) {
        if ((rc = tokenizer_load(t, path, e))) return rc;
    }
    if (tokenizer_vocab_size(*t) != m->cfg.vocab_size) {
        rc = err_set(e, SPARQ_EINPUT, "%s has %d tokens but model %s has a vocabulary of %d", path,
                     tokenizer_vocab_size(*t), model_path, m->cfg.vocab_size);
        tokenizer_free(*t);
        *t = NULL;
    }
    return rc;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static void print_json(cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

/* ---- eval --------------------------------------------------------------------------------- */

static int cmd_eval(int argc, char **argv, err *e) {
    flag f[] = {{"--model", 0, 0}, {"--tokenizer", 0, 0}, {"--text", 0, 0}, {"--protocol", 0, 0},
                {"--seqlen", 0, 0}, {"--limit", 0, 0}, {"--threads", 0, 0}, {"--json", 1, 0},
                {0, 0, 0}};
    int seqlen = 0, limit = 0, threads = 0;
    int rc = flags_parse(f, argc, argv, e);
    if (!rc) rc = require(f, "--model", e);
    if (!rc) rc = require(f, "--text", e);
    if (!rc) rc = flag_int(f, "--seqlen", 2, 1 << 20, &seqlen, e);
    if (!rc) rc = flag_int(f, "--limit", 1, 1 << 30, &limit, e);
    if (!rc) rc = flag_int(f, "--threads", 1, 1024, &threads, e);
    if (rc) return rc;
    const char *proto = flag_str(f, "--protocol") ? flag_str(f, "--protocol") : "windows";
    ppl_protocol p;
    if (strcmp(proto, "windows") == 0) p = PPL_WINDOWS;
    else if (strcmp(proto, "documents") == 0) p = PPL_DOCUMENTS;
    else return err_set(e, SPARQ_EINPUT, "--protocol %s: expected windows or documents", proto);
    blas_set_threads(threads);

    const char *mpath = flag_str(f, "--model");
    model *m = NULL;
    tokenizer *t = NULL;
    token_seqs seqs = {0};
    rc = model_load(&m, mpath, e);
    if (!rc) rc = load_tokenizer(m, mpath, flag_str(f, "--tokenizer"), &t, e);
    if (!rc) {
        if (seqlen == 0) seqlen = m->cfg.seq_len;
        if (seqlen > m->cfg.seq_len)
            rc = err_set(e, SPARQ_EINPUT, "--seqlen %d is larger than the model's context (%d)",
                         seqlen, m->cfg.seq_len);
    }
    if (!rc) rc = ppl_prepare(t, flag_str(f, "--text"), p, seqlen, limit, &seqs, e);
    ppl_result r;
    if (!rc) {
        progress bar;
        progress_start(&bar, "eval");
        rc = ppl_score(m, &seqs, &r, progress_update, &bar, e);
        progress_end(&bar);
    }
    if (!rc) {
        double tps = r.seconds > 0 ? r.tokens_forward / r.seconds : 0.0;
        if (flag_str(f, "--json")) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "ppl", r.ppl);
            cJSON_AddNumberToObject(j, "nll", r.nll);
            cJSON_AddNumberToObject(j, "ppl_stderr", r.ppl_stderr);
            cJSON_AddNumberToObject(j, "nll_stderr", r.nll_stderr);
            cJSON_AddNumberToObject(j, "tokens", (double)r.tokens);
            cJSON_AddNumberToObject(j, "tokens_per_s", tps);
            cJSON_AddStringToObject(j, "protocol", proto);
            cJSON_AddNumberToObject(j, "seqlen", seqlen);
            cJSON_AddNumberToObject(j, "sequences", r.sequences);
            cJSON_AddNumberToObject(j, "tokens_forward", (double)r.tokens_forward);
            cJSON_AddNumberToObject(j, "seconds", r.seconds);
            cJSON_AddNumberToObject(j, "threads", blas_threads());
            cJSON_AddNumberToObject(j, "peak_rss_mb", peak_rss_mb());
            print_json(j);
        } else {
            printf("perplexity  %.4f\n", r.ppl);
            printf("mean nll    %.6f nats/token\n", r.nll);
            printf("scored      %ld tokens in %d %s of <= %d\n", r.tokens, r.sequences,
                   p == PPL_WINDOWS ? "windows" : "documents", seqlen);
            printf("speed       %.0f tokens/s (%ld tokens, %.2f s, %d threads)\n", tps,
                   r.tokens_forward, r.seconds, blas_threads());
        }
    }
    token_seqs_free(&seqs);
    tokenizer_free(t);
    model_free(m);
    return rc;
}

/* ---- zeroshot ----------------------------------------------------------------------------- */

static void zeroshot_json(cJSON *tasks, const zeroshot_task *t, const zeroshot_result *r) {
    cJSON *x = cJSON_AddObjectToObject(tasks, t->name);
    const zeroshot_stats *s = &r->stats;
    cJSON_AddNumberToObject(x, "acc", r->acc);
    cJSON_AddNumberToObject(x, "acc_stderr", r->acc_stderr);
    if (r->has_acc_norm) {
        cJSON_AddNumberToObject(x, "acc_norm", r->acc_norm);
        cJSON_AddNumberToObject(x, "acc_norm_stderr", r->acc_norm_stderr);
    }
    if (r->has_ppl) {
        cJSON_AddNumberToObject(x, "ppl", r->ppl);
        cJSON_AddNumberToObject(x, "ppl_stderr", r->ppl_stderr);
    }
    cJSON_AddNumberToObject(x, "n", r->n);
    cJSON_AddNumberToObject(x, "chance", r->chance);
    cJSON_AddNumberToObject(x, "requests", (double)s->requests);
    cJSON_AddNumberToObject(x, "sequences", s->sequences);
    cJSON_AddNumberToObject(x, "tokens_forward", (double)s->tokens_forward);
    cJSON_AddNumberToObject(x, "clipped", s->clipped);
    cJSON_AddNumberToObject(x, "seconds", s->seconds);
    cJSON_AddNumberToObject(x, "requests_per_s", s->seconds > 0 ? s->requests / s->seconds : 0.0);
    cJSON_AddNumberToObject(x, "tokens_per_s", s->seconds > 0 ? s->tokens_forward / s->seconds : 0.0);
}

/* A table in the shape of lm-evaluation-harness's. */
static void zeroshot_print(const zeroshot_task *t, const zeroshot_result *r, int n_task) {
    printf("|%-14s|%6s|%-9s|%8s|   |%8s|\n", "Tasks", "n", "Metric", "Value", "Stderr");
    printf("|--------------|-----:|---------|-------:|---|-------:|\n");
    for (int i = 0; i < n_task; i++) {
        printf("|%-14s|%6d|%-9s|%8.4f| ± |%8.4f|\n", t[i].name, r[i].n, "acc", r[i].acc, r[i].acc_stderr);
        if (r[i].has_acc_norm)
            printf("|%-14s|%6s|%-9s|%8.4f| ± |%8.4f|\n", "", "", "acc_norm", r[i].acc_norm,
                   r[i].acc_norm_stderr);
        if (r[i].has_ppl)
            printf("|%-14s|%6s|%-9s|%8.4f| ± |%8.4f|\n", "", "", "ppl", r[i].ppl, r[i].ppl_stderr);
    }
    printf("\n");
    for (int i = 0; i < n_task; i++) {
        const zeroshot_stats *s = &r[i].stats;
        printf("%-14s chance %.4f; %ld requests as %d sequences, %ld tokens in %.2f s: %.0f requests/s, "
               "%.0f tokens/s\n", t[i].name, r[i].chance, s->requests, s->sequences, s->tokens_forward,
               s->seconds, s->seconds > 0 ? s->requests / s->seconds : 0.0,
               s->seconds > 0 ? s->tokens_forward / s->seconds : 0.0);
        if (s->clipped)
            printf("%-14s %d continuations longer than the model's context: their last tokens scored\n",
                   t[i].name, s->clipped);
    }
}

static int cmd_zeroshot(int argc, char **argv, err *e) {
    flag f[] = {{"--model", 0, 0}, {"--tokenizer", 0, 0}, {"--limit", 0, 0}, {"--seed", 0, 0},
                {"--threads", 0, 0}, {"--json", 1, 0}, {0, 0, 0}};
    /* --task repeats, so it is taken out before the one-value-per-flag parser. */
    char **rest = malloc((size_t)(argc + 1) * sizeof(char *));
    const char **spec = malloc((size_t)(argc + 1) * sizeof(char *));
    if (!rest || !spec) {
        free(rest);
        free(spec);
        return err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    int n_rest = 0, n_task = 0, rc = SPARQ_OK;
    for (int i = 0; i < argc && !rc; i++) {
        if (strcmp(argv[i], "--task") != 0) rest[n_rest++] = argv[i];
        else if (i + 1 >= argc) rc = err_set(e, SPARQ_EINPUT, "option --task needs a value");
        else spec[n_task++] = argv[++i];
    }
    int limit = 0, seed = 0, threads = 0;
    if (!rc) rc = flags_parse(f, n_rest, rest, e);
    if (!rc) rc = require(f, "--model", e);
    if (!rc && n_task == 0) rc = err_set(e, SPARQ_EINPUT, "missing required option --task NAME=FILE");
    if (!rc) rc = flag_int(f, "--limit", 1, 1 << 30, &limit, e);
    if (!rc) rc = flag_int(f, "--seed", 0, 2147483647, &seed, e);
    if (!rc) rc = flag_int(f, "--threads", 1, 1024, &threads, e);
    for (int i = 0; i < n_task && !rc; i++) {
        const char *eq = strchr(spec[i], '=');
        if (!eq || eq == spec[i] || !eq[1])
            rc = err_set(e, SPARQ_EINPUT, "--task %s: expected NAME=FILE", spec[i]);
        for (int k = 0; k < i && !rc; k++)
            if (strncmp(spec[k], spec[i], (size_t)(eq - spec[i]) + 1) == 0)
                rc = err_set(e, SPARQ_EINPUT, "--task %.*s is given twice", (int)(eq - spec[i]), spec[i]);
    }
    free(rest);
    if (rc) {
        free(spec);
        return rc;
    }
    blas_set_threads(threads);
    const char *mpath = flag_str(f, "--model");
    model *m = NULL;
    tokenizer *t = NULL;
    zeroshot_task *tasks = calloc((size_t)n_task, sizeof *tasks);
    zeroshot_result *res = calloc((size_t)n_task, sizeof *res);
    if (!tasks || !res) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (!rc) rc = model_load(&m, mpath, e);
    if (!rc) rc = load_tokenizer(m, mpath, flag_str(f, "--tokenizer"), &t, e);
    /* Load every task first: a bad file fails before any scoring. */
    for (int i = 0; i < n_task && !rc; i++) {
        const char *eq = strchr(spec[i], '=');
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(eq - spec[i]), spec[i]);
        rc = zeroshot_load_task(t, name, eq + 1, limit, (unsigned long)seed, &tasks[i], e);
    }
    for (int i = 0; i < n_task && !rc; i++) {
        progress bar;
        progress_start(&bar, tasks[i].name);
        rc = zeroshot_run(m, &tasks[i], &res[i], progress_update, &bar, e);
        progress_end(&bar);
    }
    if (!rc && flag_str(f, "--json")) {
        cJSON *j = cJSON_CreateObject();
        cJSON *tj = cJSON_AddObjectToObject(j, "tasks");
        for (int i = 0; i < n_task; i++) zeroshot_json(tj, &tasks[i], &res[i]);
        cJSON_AddNumberToObject(j, "threads", blas_threads());
        cJSON_AddNumberToObject(j, "peak_rss_mb", peak_rss_mb());
        print_json(j);
    } else if (!rc) {
        zeroshot_print(tasks, res, n_task);
    }
    for (int i = 0; tasks && i < n_task; i++) zeroshot_task_free(&tasks[i]);
    free(tasks);
    free(res);
    free(spec);
    tokenizer_free(t);
    model_free(m);
    return rc;
}

/* ---- generate ----------------------------------------------------------------------------- */

/* Append a piece as llama2.c's safe_printf prints it: a lone unprintable byte is skipped. */
static int text_append(char **s, size_t *len, size_t *cap, const char *p, int n) {
    if (n == 1 && !(isprint((unsigned char)p[0]) || isspace((unsigned char)p[0]))) return 0;
    if (*len + n + 1 > *cap) {
        size_t nc = (*cap + n + 1) * 2;
        char *q = realloc(*s, nc);
        if (!q) return -1;
        *s = q;
        *cap = nc;
    }
    memcpy(*s + *len, p, n);
    *len += n;
    (*s)[*len] = '\0';
    return 0;
}

static int cmd_generate(int argc, char **argv, err *e) {
    flag f[] = {{"--model", 0, 0}, {"--tokenizer", 0, 0}, {"--prompt", 0, 0}, {"-n", 0, 0},
                {"--json", 1, 0}, {0, 0, 0}};
    int steps = 256;
    int rc = flags_parse(f, argc, argv, e);
    if (!rc) rc = require(f, "--model", e);
    if (!rc) rc = flag_int(f, "-n", 1, 1 << 20, &steps, e);
    if (rc) return rc;
    const char *mpath = flag_str(f, "--model");
    const char *prompt = flag_str(f, "--prompt") ? flag_str(f, "--prompt") : "";
    model *m = NULL;
    tokenizer *t = NULL;
    fwd_cache *c = NULL;
    int *ptoks = NULL, np = 0, *toks = NULL;
    float *logits = NULL;
    char *text = NULL;
    size_t tlen = 0, tcap = 0;
    rc = model_load(&m, mpath, e);
    if (!rc) rc = load_tokenizer(m, mpath, flag_str(f, "--tokenizer"), &t, e);
    if (!rc) rc = tokenizer_encode(t, prompt, true, false, &ptoks, &np, e);
    if (!rc) rc = fwd_cache_new(&c, m, e);
    if (!rc) {
        if (steps > m->cfg.seq_len) steps = m->cfg.seq_len;   /* as llama2.c: clip to context */
        if (np > steps)
            rc = err_set(e, SPARQ_EINPUT, "prompt has %d tokens, more than the %d steps", np, steps);
    }
    if (!rc) {
        logits = malloc((size_t)m->cfg.vocab_size * sizeof(float));
        toks = malloc((size_t)(steps + 1) * sizeof(int));
        if (!logits || !toks || text_append(&text, &tlen, &tcap, "", 0))
            rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    int n = 0;
    if (!rc) {
        /* llama2.c's generate loop: feed the prompt, then the argmax, one position per step;
         * stop at BOS, which llama2.c models use as the story delimiter. */
        int token = ptoks[0];
        toks[n++] = token;
        for (int pos = 0; pos < steps && !rc; pos++) {
            rc = forward_token(m, c, token, pos, logits, e);
            if (rc) break;
            int next;
            if (pos < np - 1) {
                next = ptoks[pos + 1];
            } else {
                next = 0;
                for (int i = 1; i < m->cfg.vocab_size; i++)
                    if (logits[i] > logits[next]) next = i;
            }
            if (next == TOKEN_BOS) break;
            toks[n++] = next;
            int len;
            const char *piece = tokenizer_decode(t, token, next, &len);
            if (text_append(&text, &tlen, &tcap, piece, len))
                rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
            token = next;
        }
    }
    if (!rc) {
        if (flag_str(f, "--json")) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddItemToObject(j, "tokens", cJSON_CreateIntArray(toks, n));
            cJSON_AddStringToObject(j, "text", text);
            print_json(j);
        } else {
            printf("%s\n", text);
        }
    }
    free(text);
    free(toks);
    free(logits);
    free(ptoks);
    fwd_cache_free(c);
    tokenizer_free(t);
    model_free(m);
    return rc;
}

/* ---- compress ----------------------------------------------------------------------------- */

static int parse_float(const char *name, const char *v, float lo, float hi, float *out, err *e) {
    if (!v) return SPARQ_OK;
    char *end;
    double x = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || !(x >= lo && x <= hi))
        return err_set(e, SPARQ_EINPUT, "%s %s: expected a number in [%g, %g]", name, v, (double)lo,
                       (double)hi);
    *out = (float)x;
    return SPARQ_OK;
}

/* Flags -> compress_options; every impossible request fails here, before any work. */
static int compress_options_parse(flag *f, const model *m, compress_options *o, err *e) {
    const char *mode = flag_str(f, "--chain-mode");
    if (mode && strcmp(mode, "mask") != 0 && strcmp(mode, "all") != 0)
        return err_set(e, SPARQ_EINPUT, "--chain-mode %s: expected mask or all", mode);
    int rc = solver_spec_parse(flag_str(f, "--solver"), mode && strcmp(mode, "all") == 0, &o->solver, e);
    if (rc) return rc;
    o->target = target_default();
    target *t = &o->target;
    rc = parse_float("--sparsity", flag_str(f, "--sparsity"), -1e9f, 1e9f, &t->sparsity, e);
    if (!rc && !(t->sparsity >= 0.0f && t->sparsity < 1.0f))
        rc = err_set(e, SPARQ_EINPUT, "--sparsity %s is outside [0, 1)", flag_str(f, "--sparsity"));
    if (!rc) rc = flag_int(f, "--bits", 2, 16, &t->bits, e);
    if (!rc) rc = flag_int(f, "--block", 0, 1 << 20, &t->block, e);
    if (!rc) rc = flag_int(f, "--group", -1, 1 << 20, &t->group, e);
    if (!rc) rc = parse_float("--damp", flag_str(f, "--damp"), 0.0f, 1.0f, &t->damp, e);
    if (rc) return rc;
    const char *nm = flag_str(f, "--nm");
    if (nm) {
        char extra;
        if (sscanf(nm, "%d:%d%c", &t->n, &t->m, &extra) != 2)
            return err_set(e, SPARQ_EINPUT, "--nm %s: expected N:M, e.g. 2:4", nm);
        if (flag_str(f, "--sparsity") && fabsf(t->sparsity - (float)t->n / (t->m ? t->m : 1)) > 1e-6f)
            return err_set(e, SPARQ_EINPUT, "--nm %s prunes %g of the weights; --sparsity %s "
                           "contradicts it", nm, t->m ? (double)t->n / t->m : 0.0,
                           flag_str(f, "--sparsity"));
    }
    const char *scope = flag_str(f, "--scope");
    if (scope && strcmp(scope, "row") == 0) t->scope = SCOPE_ROW;
    else if (scope && strcmp(scope, "layer") != 0)
        return err_set(e, SPARQ_EINPUT, "--scope %s: expected layer or row", scope);
    t->sym = flag_str(f, "--sym") != NULL;
    t->act_order = flag_str(f, "--act-order") != NULL;
    t->static_groups = flag_str(f, "--static-groups") != NULL;
    t->mse = flag_str(f, "--mse") != NULL;
    o->true_sequential = flag_str(f, "--true-sequential") != NULL;
    o->schedule = SCHEDULE_UNIFORM;
    if (flag_str(f, "--schedule") && (rc = schedule_parse(flag_str(f, "--schedule"), &o->schedule, e)))
        return rc;
    return compress_check(m, o, e);
}

static void print_compress(const compress_report *r, const compress_options *o, double bpw,
                           double bytes, const ppl_result *pr, bool json, const char *proto,
                           int seqlen) {
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "solver", o->solver.name);
        cJSON_AddNumberToObject(j, "sparsity", r->sparsity);
        cJSON_AddNumberToObject(j, "bits_per_weight", bpw);
        cJSON_AddNumberToObject(j, "bytes_packed", bytes);
        cJSON_AddNumberToObject(j, "seconds", r->seconds);
        cJSON *layers = cJSON_AddArrayToObject(j, "layers");
        for (int i = 0; i < r->n; i++) {
            const compress_layer *l = &r->layers[i];
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "name", l->name);
            cJSON_AddNumberToObject(x, "rows", l->rows);
            cJSON_AddNumberToObject(x, "cols", l->cols);
            cJSON_AddNumberToObject(x, "sparsity", l->report.sparsity);
            cJSON_AddNumberToObject(x, "target_sparsity", l->target_sparsity);
            cJSON_AddNumberToObject(x, "loss", l->report.loss);
            cJSON_AddNumberToObject(x, "damp", l->report.damp);
            cJSON_AddNumberToObject(x, "seconds", l->report.seconds);
            cJSON_AddItemToArray(layers, x);
        }
        if (pr) {
            cJSON_AddNumberToObject(j, "ppl", pr->ppl);
            cJSON_AddNumberToObject(j, "nll", pr->nll);
            cJSON_AddStringToObject(j, "protocol", proto);
            cJSON_AddNumberToObject(j, "seqlen", seqlen);
        }
        cJSON_AddNumberToObject(j, "peak_rss_mb", peak_rss_mb());
        print_json(j);
        return;
    }
    printf("%-10s %12s %9s %9s %14s %9s\n", "layer", "shape", "target", "sparsity", "loss", "seconds");
    for (int i = 0; i < r->n; i++) {
        const compress_layer *l = &r->layers[i];
        char shape[32];
        snprintf(shape, sizeof shape, "%dx%d", l->rows, l->cols);
        printf("%-10s %12s %9.4f %9.4f %14.6g %9.4f\n", l->name, shape, l->target_sparsity,
               l->report.sparsity, l->report.loss, l->report.seconds);
    }
    printf("\n%s: sparsity %.4f of linear weights, %.3f bits/weight packed, model %.1f KB packed, "
           "%.2f s\n", o->solver.name, r->sparsity, bpw, bytes / 1024.0, r->seconds);
    if (pr) printf("perplexity  %.4f (%s, seqlen %d, %ld tokens)\n", pr->ppl, proto, seqlen, pr->tokens);
}

static int cmd_compress(int argc, char **argv, err *e) {
    flag f[] = {{"--model", 0, 0}, {"--tokenizer", 0, 0}, {"--solver", 0, 0}, {"--sparsity", 0, 0},
                {"--nm", 0, 0}, {"--bits", 0, 0}, {"--sym", 1, 0}, {"--scope", 0, 0},
                {"--group", 0, 0}, {"--act-order", 1, 0}, {"--static-groups", 1, 0}, {"--mse", 1, 0},
                {"--chain-mode", 0, 0}, {"--schedule", 0, 0},
                {"--block", 0, 0}, {"--damp", 0, 0}, {"--true-sequential", 1, 0}, {"--calib", 0, 0},
                {"--nsamples", 0, 0}, {"--calib-seqlen", 0, 0}, {"--seed", 0, 0}, {"--out", 0, 0},
                {"--eval", 0, 0}, {"--protocol", 0, 0}, {"--seqlen", 0, 0}, {"--limit", 0, 0},
                {"--threads", 0, 0}, {"--json", 1, 0}, {0, 0, 0}};
    int nsamples = 128, cseqlen = 0, seed = 0, seqlen = 0, limit = 0, threads = 0;
    int rc = flags_parse(f, argc, argv, e);
    if (!rc) rc = require(f, "--model", e);
    if (!rc) rc = require(f, "--solver", e);
    if (!rc) rc = require(f, "--calib", e);
    if (!rc) rc = flag_int(f, "--nsamples", 1, 1 << 20, &nsamples, e);
    if (!rc) rc = flag_int(f, "--calib-seqlen", 2, 1 << 20, &cseqlen, e);
    if (!rc) rc = flag_int(f, "--seed", 0, 2147483647, &seed, e);
    if (!rc) rc = flag_int(f, "--seqlen", 2, 1 << 20, &seqlen, e);
    if (!rc) rc = flag_int(f, "--limit", 1, 1 << 30, &limit, e);
    if (!rc) rc = flag_int(f, "--threads", 1, 1024, &threads, e);
    if (rc) return rc;
    const char *proto = flag_str(f, "--protocol") ? flag_str(f, "--protocol") : "windows";
    ppl_protocol p = PPL_WINDOWS;
    if (strcmp(proto, "documents") == 0) p = PPL_DOCUMENTS;
    else if (strcmp(proto, "windows") != 0)
        return err_set(e, SPARQ_EINPUT, "--protocol %s: expected windows or documents", proto);
    blas_set_threads(threads);

    const char *mpath = flag_str(f, "--model"), *calib = flag_str(f, "--calib");
    model *m = NULL;
    tokenizer *t = NULL;
    token_seqs cs = {0}, es = {0};
    compress_options o;
    compress_report r = {0};
    rc = model_load(&m, mpath, e);
    if (!rc) rc = load_tokenizer(m, mpath, flag_str(f, "--tokenizer"), &t, e);
    if (!rc) rc = compress_options_parse(f, m, &o, e);
    if (!rc) {
        if (cseqlen == 0) cseqlen = m->cfg.seq_len;
        if (seqlen == 0) seqlen = m->cfg.seq_len;
        if (cseqlen > m->cfg.seq_len || seqlen > m->cfg.seq_len)
            rc = err_set(e, SPARQ_EINPUT, "--%s %d is larger than the model's context (%d)",
                         cseqlen > m->cfg.seq_len ? "calib-seqlen" : "seqlen",
                         cseqlen > m->cfg.seq_len ? cseqlen : seqlen, m->cfg.seq_len);
    }
    /* Prepare the evaluation text first: a bad --eval file fails before the long part. */
    if (!rc && flag_str(f, "--eval")) rc = ppl_prepare(t, flag_str(f, "--eval"), p, seqlen, limit, &es, e);
    if (!rc) {
        rc = strcmp(calib, "self") == 0
                 ? calib_from_model(m, nsamples, cseqlen, (unsigned long)seed, &cs, e)
                 : calib_from_text(t, calib, nsamples, cseqlen, (unsigned long)seed, &cs, e);
    }
    if (!rc) {
        progress bar;
        progress_start(&bar, "compress");
        rc = compress_model(m, &cs, &o, &r, progress_update, &bar, e);
        progress_end(&bar);
    }
    if (!rc && flag_str(f, "--out")) {
        /* The format follows the extension; a .gguf carries the vocabulary for llama.cpp. */
        model_save_options so = {MODEL_FORMAT_AUTO, DTYPE_F32, t};
        rc = model_save_opts(m, flag_str(f, "--out"), &so, e);
    }
    ppl_result pr;
    if (!rc && flag_str(f, "--eval")) {
        progress bar;
        progress_start(&bar, "eval");
        rc = ppl_score(m, &es, &pr, progress_update, &bar, e);
        progress_end(&bar);
    }
    if (!rc) {
        double bits = 0.0, total = 0.0;
        for (int i = 0; i < r.n; i++) {
            const compress_layer *l = &r.layers[i];
            double w = (double)l->rows * l->cols;
            bits += w * metrics_bpw_packed(l->report.sparsity, l->report.bits, o.target.n, o.target.m,
                                           l->report.group, l->cols);
            total += w;
        }
        /* algorithms.md §9: linear layers as packed, everything else (embeddings, norms, a
         * separate classifier) kept in fp16. */
        double bytes = bits / 8.0 + 2.0 * (double)(model_params(m) - model_linear_params(m));
        print_compress(&r, &o, bits / total, bytes, flag_str(f, "--eval") ? &pr : NULL,
                       flag_str(f, "--json") != NULL, proto, seqlen);
    }
    compress_report_free(&r);
    token_seqs_free(&cs);
    token_seqs_free(&es);
    tokenizer_free(t);
    model_free(m);
    return rc;
}

/* ---- sweep and report ----------------------------------------------------------------------- */

static int cmd_sweep(int argc, char **argv, err *e) {
    if (argc < 1 || argv[0][0] == '-')
        return err_set(e, SPARQ_EINPUT, "usage: sparq sweep CONFIG.ini [--out DIR] [--jobs N] [--shard I/N] "
                       "[--dry-run] [--slurm]");
    const char *config = argv[0];
    flag f[] = {{"--out", 0, 0}, {"--jobs", 0, 0}, {"--shard", 0, 0}, {"--threads", 0, 0},
                {"--dry-run", 1, 0}, {"--slurm", 1, 0}, {0, 0, 0}};
    sweep_options o = {.jobs = 1, .shard_i = 0, .shard_n = 1};
    int rc = flags_parse(f, argc - 1, argv + 1, e);
    if (!rc) rc = flag_int(f, "--jobs", 1, 256, &o.jobs, e);
    if (!rc) rc = flag_int(f, "--threads", 1, 1024, &o.threads, e);
    if (!rc && flag_str(f, "--shard")) {
        char extra;
        const char *sh = flag_str(f, "--shard");
        if (sscanf(sh, "%d/%d%c", &o.shard_i, &o.shard_n, &extra) != 2 || o.shard_n < 1 || o.shard_i < 0 ||
            o.shard_i >= o.shard_n)
            rc = err_set(e, SPARQ_EINPUT, "--shard %s: expected I/N with 0 <= I < N", sh);
    }
    if (rc) return rc;
    o.dry_run = flag_str(f, "--dry-run") != NULL;
    sweep_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    run_spec *runs = NULL;
    int n = 0;
    rc = sweep_load(config, cfg, &runs, &n, e);
    if (!rc && flag_str(f, "--out")) snprintf(cfg->out, sizeof cfg->out, "%s", flag_str(f, "--out"));
    if (!rc && flag_str(f, "--slurm")) {
        rc = sweep_write_slurm(cfg, n, config, e);
        if (!rc) printf("wrote %s/sweep.slurm, %s/report.slurm and %s/submit.sh (%d array tasks)\n", cfg->out,
                        cfg->out, cfg->out, n);
    } else if (!rc) {
        rc = sweep_execute(cfg, runs, n, &o, e);
    }
    free(runs);
    free(cfg);
    return rc;
}

static int cmd_report(int argc, char **argv, err *e) {
    if (argc < 1 || argv[0][0] == '-')
        return err_set(e, SPARQ_EINPUT, "usage: sparq report RESULTS_DIR [--format md|csv|latex] [--plots DIR] "
                       "[--srcr-formula NAME]");
    flag f[] = {{"--format", 0, 0}, {"--plots", 0, 0}, {"--srcr-formula", 0, 0}, {0, 0, 0}};
    int rc = flags_parse(f, argc - 1, argv + 1, e);
    if (rc) return rc;
    const char *fmt = flag_str(f, "--format") ? flag_str(f, "--format") : "md";
    if (strcmp(fmt, "md") && strcmp(fmt, "csv") && strcmp(fmt, "latex"))
        return err_set(e, SPARQ_EINPUT, "--format %s: expected md, csv or latex", fmt);
    rc = report_write(argv[0], flag_str(f, "--plots"), fmt, flag_str(f, "--srcr-formula"), e);
    if (!rc)
        fprintf(stderr, "wrote %s/report.md, %s/results.csv, %s/tables.tex and plots in %s%s\n", argv[0],
                argv[0], argv[0], flag_str(f, "--plots") ? flag_str(f, "--plots") : argv[0],
                flag_str(f, "--plots") ? "" : "/plots");
    return rc;
}

/* ---- convert ------------------------------------------------------------------------------ */

static int cmd_convert(int argc, char **argv, err *e) {
    flag f[] = {{"--model", 0, 0}, {"--out", 0, 0}, {"--format", 0, 0}, {"--dtype", 0, 0},
                {"--tokenizer", 0, 0}, {"--json", 1, 0}, {0, 0, 0}};
    int rc = flags_parse(f, argc, argv, e);
    if (!rc) rc = require(f, "--model", e);
    if (!rc) rc = require(f, "--out", e);
    model_save_options o = {MODEL_FORMAT_AUTO, DTYPE_F32, NULL};
    if (!rc && flag_str(f, "--format")) rc = model_format_parse(flag_str(f, "--format"), &o.format, e);
    if (!rc && flag_str(f, "--dtype") && dtype_parse(flag_str(f, "--dtype"), &o.dtype))
        rc = err_set(e, SPARQ_EINPUT, "--dtype %s: expected f32, f16 or bf16", flag_str(f, "--dtype"));
    if (rc) return rc;
    const char *mpath = flag_str(f, "--model"), *out = flag_str(f, "--out");
    model_format fmt = o.format == MODEL_FORMAT_AUTO ? model_format_for_path(out) : o.format;
    model *m = NULL;
    tokenizer *t = NULL;
    rc = model_load(&m, mpath, e);
    /* A GGUF carries its vocabulary so that llama.cpp runs it as is: a --tokenizer must load; one
     * found beside the model is embedded; finding none is only a warning. */
    if (!rc && fmt == MODEL_FORMAT_GGUF) {
        err te = {0};
        int trc = load_tokenizer(m, mpath, flag_str(f, "--tokenizer"), &t, &te);
        if (trc && flag_str(f, "--tokenizer")) rc = err_set(e, trc, "%s", te.msg);
        else if (trc) fprintf(stderr, "sparq convert: warning: %s; the GGUF gets no vocabulary\n", te.msg);
        o.tok = t;
    }
    if (!rc) rc = model_save_opts(m, out, &o, e);
    if (!rc) {
        const char *dt = dtype_name(fmt == MODEL_FORMAT_LLAMA2C ? DTYPE_F32 : o.dtype);
        if (flag_str(f, "--json")) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "out", out);
            cJSON_AddStringToObject(j, "format", model_format_name(fmt));
            cJSON_AddStringToObject(j, "dtype", dt);
            cJSON_AddNumberToObject(j, "params", (double)model_params(m));
            cJSON_AddBoolToObject(j, "tokenizer", t != NULL);
            print_json(j);
        } else {
            printf("wrote %s: %s, %s, %llu parameters%s\n", out, model_format_name(fmt), dt,
                   (unsigned long long)model_params(m), t ? ", with its vocabulary" : "");
        }
    }
    tokenizer_free(t);
    model_free(m);
    return rc;
}

/* ---- inspect ------------------------------------------------------------------------------ */

static double layer_sparsity(const linear *l) {
    size_t n = (size_t)l->rows * l->cols, z = 0;
    for (size_t i = 0; i < n; i++) z += l->w[i] == 0.0f;
    return n ? (double)z / n : 0.0;
}

static int cmd_inspect(int argc, char **argv, err *e) {
    flag f[] = {{"--model", 0, 0}, {"--json", 1, 0}, {0, 0, 0}};
    int rc = flags_parse(f, argc, argv, e);
    if (!rc) rc = require(f, "--model", e);
    if (rc) return rc;
    model *m;
    rc = model_load(&m, flag_str(f, "--model"), e);
    if (rc) return rc;
    const model_config *c = &m->cfg;
    uint64_t params = model_params(m), lin = model_linear_params(m);
    uint64_t bytes = params * sizeof(float);
    bool json = flag_str(f, "--json") != NULL;
    cJSON *j = NULL, *layers = NULL;
    if (json) {
        j = cJSON_CreateObject();
        cJSON *cfg = cJSON_AddObjectToObject(j, "config");
        cJSON_AddNumberToObject(cfg, "dim", c->dim);
        cJSON_AddNumberToObject(cfg, "hidden_dim", c->hidden_dim);
        cJSON_AddNumberToObject(cfg, "n_layers", c->n_layers);
        cJSON_AddNumberToObject(cfg, "n_heads", c->n_heads);
        cJSON_AddNumberToObject(cfg, "n_kv_heads", c->n_kv_heads);
        cJSON_AddNumberToObject(cfg, "head_size", c->head_size);
        cJSON_AddNumberToObject(cfg, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(cfg, "seq_len", c->seq_len);
        cJSON_AddBoolToObject(cfg, "shared_classifier", m->shared_cls);
        cJSON_AddNumberToObject(j, "params", (double)params);
        cJSON_AddNumberToObject(j, "linear_params", (double)lin);
        cJSON_AddNumberToObject(j, "bytes", (double)bytes);
        layers = cJSON_AddArrayToObject(j, "layers");
    } else {
        printf("dim %d  hidden %d  layers %d  heads %d  kv_heads %d  head_size %d  vocab %d  "
               "context %d  classifier %s\n", c->dim, c->hidden_dim, c->n_layers, c->n_heads,
               c->n_kv_heads, c->head_size, c->vocab_size, c->seq_len,
               m->shared_cls ? "shared" : "separate");
        printf("params %llu (linear %llu)  size %llu bytes as float32\n\n",
               (unsigned long long)params, (unsigned long long)lin, (unsigned long long)bytes);
        printf("%-12s %8s %8s %9s %10s\n", "layer", "rows", "cols", "sparsity", "distinct");
    }
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < LIN_COUNT; k++) {
            const linear *li = &m->blocks[l].lin[k];
            char name[64];
            snprintf(name, sizeof name, "%d.%s", l, linear_names[k]);
            double sp = layer_sparsity(li);
            uint64_t nd = linear_distinct(li);   /* a quantized layer keeps few values */
            if (json) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "name", name);
                cJSON_AddNumberToObject(o, "rows", li->rows);
                cJSON_AddNumberToObject(o, "cols", li->cols);
                cJSON_AddNumberToObject(o, "sparsity", sp);
                cJSON_AddNumberToObject(o, "distinct", (double)nd);
                cJSON_AddItemToArray(layers, o);
            } else {
                printf("%-12s %8d %8d %9.4f %10llu\n", name, li->rows, li->cols, sp, (unsigned long long)nd);
            }
        }
    }
    if (json) print_json(j);
    model_free(m);
    return SPARQ_OK;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    err e = {0};
    int rc;
    const char *cmd = argv[1];
    if (strcmp(cmd, "eval") == 0) rc = cmd_eval(argc - 2, argv + 2, &e);
    else if (strcmp(cmd, "generate") == 0) rc = cmd_generate(argc - 2, argv + 2, &e);
    else if (strcmp(cmd, "zeroshot") == 0) rc = cmd_zeroshot(argc - 2, argv + 2, &e);
    else if (strcmp(cmd, "inspect") == 0) rc = cmd_inspect(argc - 2, argv + 2, &e);
    else if (strcmp(cmd, "convert") == 0) rc = cmd_convert(argc - 2, argv + 2, &e);
    else if (strcmp(cmd, "compress") == 0) rc = cmd_compress(argc - 2, argv + 2, &e);
    else if (strcmp(cmd, "sweep") == 0) rc = cmd_sweep(argc - 2, argv + 2, &e);
    else if (strcmp(cmd, "report") == 0) rc = cmd_report(argc - 2, argv + 2, &e);
    else rc = err_set(&e, SPARQ_EINPUT, "unknown command '%s' (see sparq --help)", cmd);
    if (rc) {
        fprintf(stderr, "sparq %s: %s\n", cmd, e.msg);
        return err_exit_status(rc);
    }
    return 0;
}
