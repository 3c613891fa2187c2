/* The sparq command line: parses flags, calls one entry point per subcommand, prints results
 * (or one JSON object with --json) and the one-line error of a failure. Exit status 0 on
 * success, 1 on a runtime failure, 2 on bad usage or bad input. */
#include <cJSON.h>
#include <ctype.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/blas.h"
#include "core/clock.h"
#include "core/family.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/forward.h"
#include "core/generate.h"
#include "core/model.h"
#include "core/stream.h"
#include "core/text.h"
#include "core/tokenizer.h"
#include "eval/metrics.h"
#include "eval/perplexity.h"
#include "eval/zeroshot.h"
#include "experiments/options.h"
#include "experiments/report.h"
#include "experiments/results.h"
#include "experiments/run.h"
#include "experiments/sweep.h"

static const char *usage_text =
    "usage: sparq <command> [options]\n"
    "\n"
    "  eval      --model M [--tokenizer T] --text F|--ids F [--protocol windows|documents|llamacpp]\n"
    "            [--seqlen L] [--limit N] [--threads N] [--shard I/N --out PART.json] [--json]\n"
    "  eval      --merge PART.json ... [--json]   (the perplexity of all shards: exactly unsharded)\n"
    "  generate  --model M [--tokenizer T] [--prompt S | --prompt-ids \"2 10 20\"] [-n STEPS] [--json]\n"
    "            (greedy; STEPS positions, prompt included. eval --ids F: token ids, one document\n"
    "            per line, used as given: for models without a tokenizer)\n"
    "  zeroshot  --model M [--tokenizer T] --task NAME=FILE ... [--limit N] [--seed S] [--threads N]\n"
    "            [--json]   tasks: piqa, arc_easy, arc_challenge, hellaswag, winogrande, boolq,\n"
    "            lambada (the original files; FILE,LABELS names a labels file), cloze, ending (any text)\n"
    "  inspect   --model M [--json]\n"
    "  tokenize  --tokenizer T --text S [--bos] [--json]   (ids; --json adds the vocabulary pieces)\n"
    "  convert   --model M --out OUT [--format llama2c|safetensors|gguf] [--dtype f32|f16|bf16]\n"
    "            [--llama2c-version 0|1|2] [--tokenizer T | --no-vocab] [--max-shard-size SIZE] [--json]\n"
    "            (GGUF also --dtype q8_0|q4_0|q4_1|q5_0|q5_1: ggml's rounding of the linear layers;\n"
    "            --pure: the embedding too)\n"
    "            (M, OUT: llama2.c .bin, .gguf, .safetensors or a HF folder; llama2.c version 0 =\n"
    "            legacy, the default, 1 = float32, 2 = Q8_0 int8)\n"
    "  sweep     CONFIG.ini [--out DIR] [--jobs N] [--shard I/N] [--threads N] [--dry-run] [--slurm]\n"
    "            [--stage compress|eval|merge]   (eval_shards = K in [sweep]: a run compressed, its\n"
    "            perplexities scored in K shards, merged; --slurm writes arrays for the stages)\n"
    "  report    RESULTS_DIR [--format md|csv|latex] [--plots DIR] [--srcr-formula recon|ratio]\n"
    "  compress  --model M [--tokenizer T] --calib F|self [--nsamples N] [--calib-seqlen L] [--seed S]\n"
    "            [--max-memory SIZE]\n"
    "            [--out FILE [--format F] [--dtype D] [--pure]] [--eval F [--protocol P] [--seqlen L]\n"
    "            [--limit N]] [--task NAME=FILE ...] [--threads N] [--json], and the compression options\n"
    "            (the keys of [grid.*] too; --dtype q4_0|q4_1|q5_0|q5_1|q8_0 writes the solver's grids\n"
    "            as ggml blocks: --group 32, --grid ggml or rtn --ggml TYPE):\n"
    "%s"
    "            solvers: magnitude, wanda, sparsegpt, apt, rtn, gptq, or chains such as sparsegpt+gptq\n"
    "\n"
    "Without --tokenizer: a GGUF model's own vocabulary, else tokenizer.bin, tok<vocab>.bin,\n"
    "tokenizer.model, tokenizer.json, vocab.json (+merges.txt) or encoder.json (+vocab.bpe) beside the\n"
    "model (inside it for a Hugging Face folder). T: any of those files, or a folder holding a pair.\n";

/* ---- flags -------------------------------------------------------------------------------- */

enum { FLAG_VALUE, FLAG_BOOL, FLAG_LIST };
#define FLAG_LIST_MAX 16

typedef struct {
    const char *name;      /* "--model"; "-n" style short names too */
    int         kind;      /* FLAG_VALUE, FLAG_BOOL or FLAG_LIST (repeats) */
    const char *value;     /* set by the parser; "1" for booleans, the last for lists */
    const char *list[FLAG_LIST_MAX];
    int         n;         /* FLAG_LIST: how many times it was given */
} flag;

/* Flag table entries: a value, a boolean, a repeatable value. */
#define FV(n) {.name = n, .kind = FLAG_VALUE}
#define FB(n) {.name = n, .kind = FLAG_BOOL}
#define FL(n) {.name = n, .kind = FLAG_LIST}

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
        if (f->kind == FLAG_BOOL) {
            f->value = "1";
            continue;
        }
        if (i + 1 >= argc) return err_set(e, SPARQ_EINPUT, "option %s needs a value", argv[i]);
        f->value = argv[++i];
        if (f->kind == FLAG_LIST && f->n == FLAG_LIST_MAX)
            return err_set(e, SPARQ_EINPUT, "%s is given more than %d times", f->name, FLAG_LIST_MAX);
        if (f->kind == FLAG_LIST) f->list[f->n++] = f->value;
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

/* --task NAME=FILE ..., each name once, into the setup's task list. */
static int parse_tasks(flag *f, run_setup *s, err *e) {
    const flag *t = flag_get(f, "--task");
    for (int i = 0; i < t->n; i++) {
        const char *v = t->list[i], *eq = strchr(v, '=');
        if (!eq || eq == v || !eq[1]) return err_set(e, SPARQ_EINPUT, "--task %s: expected NAME=FILE", v);
        spec_task *x = &s->tasks[s->n_tasks++];
        snprintf(x->name, sizeof x->name, "%.*s", (int)(eq - v), v);
        snprintf(x->path, sizeof x->path, "%s", eq + 1);
        for (int k = 0; k < i; k++)
            if (strcmp(s->tasks[k].name, x->name) == 0)
                return err_set(e, SPARQ_EINPUT, "--task %s is given twice", x->name);
    }
    return SPARQ_OK;
}

/* "I/N" with 0 <= I < N. */
static int parse_shard(const char *v, int *shard, int *shards, err *e) {
    char *end;
    long i = strtol(v, &end, 10), n = *end == '/' ? strtol(end + 1, &end, 10) : -1;
    if (*v == '\0' || *end != '\0' || n < 1 || n > 1 << 20 || i < 0 || i >= n)
        return err_set(e, SPARQ_EINPUT, "--shard %s: expected I/N with 0 <= I < N", v);
    *shard = (int)i;
    *shards = (int)n;
    return SPARQ_OK;
}

/* ---- shared loading and printing ----------------------------------------------------------- */

/* --model and its tokenizer (--tokenizer, else the model's own: tokenizer_load_for_model). */
static int open_model(flag *f, model **m, tokenizer **t, err *e) {
    const char *path = flag_str(f, "--model");
    int rc = model_load(m, path, e);
    if (!rc) rc = tokenizer_load_for_model(t, path, (*m)->cfg.vocab_size, flag_str(f, "--tokenizer"), NULL, 0, e);
    return rc;
}

/* A progress bar on stderr, drawn only when stderr is a terminal; a new stage starts a new bar. */
typedef struct {
    bool   on;
    char   label[64];
    double t0;
    int    last_permille;
} bar;

static void bar_start(bar *p, const char *label) {
    p->on = isatty(STDERR_FILENO);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->t0 = clock_seconds();
    p->last_permille = -1;
}

static void bar_end(bar *p) {
    if (p->on && p->last_permille >= 0) fprintf(stderr, "\n");
    p->last_permille = -1;
}

static void bar_stage(void *ctx, const char *stage, long done, long total) {
    bar *p = ctx;
    if (!p->on || total <= 0) return;
    if (strcmp(stage, p->label) != 0) {
        bar_end(p);
        bar_start(p, stage);
    }
    int pm = (int)(1000.0 * done / total);
    if (pm == p->last_permille) return;
    p->last_permille = pm;
    char cells[31];
    for (int i = 0; i < 30; i++) cells[i] = i < pm * 30 / 1000 ? '#' : '.';
    cells[30] = '\0';
    double el = clock_seconds() - p->t0, eta = done > 0 ? el * (double)(total - done) / (double)done : 0.0;
    fprintf(stderr, "\r%s [%s] %5.1f%% %ld/%ld %.1fs, eta %.0fs ", p->label, cells, pm / 10.0, done, total,
            el, eta);
    fflush(stderr);
}

static void bar_update(void *ctx, long done, long total) {
    bar *p = ctx;
    bar_stage(p, p->label, done, total);
}

static void print_json(cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

/* ---- eval --------------------------------------------------------------------------------- */

/* The human and --json forms of one perplexity result. */
static void print_ppl(const ppl_result *r, ppl_protocol p, int seqlen, bool json) {
    double tps = r->seconds > 0 ? r->tokens_forward / r->seconds : 0.0;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        results_ppl_fields(j, r, p, seqlen);
        cJSON_AddNumberToObject(j, "tokens_per_s", tps);
        cJSON_AddNumberToObject(j, "sequences", r->sequences);
        cJSON_AddNumberToObject(j, "tokens_forward", (double)r->tokens_forward);
        cJSON_AddNumberToObject(j, "seconds", r->seconds);
        cJSON_AddNumberToObject(j, "threads", blas_threads());
        cJSON_AddNumberToObject(j, "peak_rss_mb", clock_peak_rss_mb());
        print_json(j);
    } else {
        printf("perplexity  %.4f\n", r->ppl);
        printf("mean nll    %.6f nats/token\n", r->nll);
        printf("scored      %ld tokens in %d sequences of <= %d (%s)\n", r->tokens, r->sequences,
               seqlen, ppl_protocol_name(p));
        printf("speed       %.0f tokens/s (%ld tokens, %.2f s, %d threads)\n", tps,
               r->tokens_forward, r->seconds, blas_threads());
    }
}

/* eval --merge FILE...: the perplexity of the shards' part files together. */
static int eval_merge(int argc, char **argv, err *e) {
    bool json = false;
    int n = 0;
    char **paths = malloc((size_t)(argc > 0 ? argc : 1) * sizeof *paths);
    if (!paths) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = true;
        else paths[n++] = argv[i];
    }
    ppl_shard_meta meta;
    ppl_result r;
    ppl_protocol p = PPL_WINDOWS;
    int rc = results_ppl_parts_merge(paths, n, &meta, &r, e);
    if (!rc) rc = ppl_protocol_parse(meta.protocol, paths[0], &p, e);
    if (!rc) print_ppl(&r, p, meta.seqlen, json);
    free(paths);
    return rc;
}

static int cmd_eval(int argc, char **argv, err *e) {
    if (argc > 0 && strcmp(argv[0], "--merge") == 0) return eval_merge(argc - 1, argv + 1, e);
    flag f[] = {FV("--model"), FV("--tokenizer"), FV("--text"), FV("--ids"), FV("--protocol"),
                FV("--seqlen"), FV("--limit"), FV("--threads"), FV("--shard"), FV("--out"),
                FB("--json"), {0}};
    int shard = 0, shards = 0;
    int seqlen = 0, limit = 0, threads = 0;
    int rc = flags_parse(f, argc, argv, e);
    if (!rc) rc = require(f, "--model", e);
    const char *ids = flag_str(f, "--ids");
    if (!rc && !ids) rc = require(f, "--text", e);
    if (!rc && ids && flag_str(f, "--text"))
        rc = err_set(e, SPARQ_EINPUT, "give --text or --ids, not both");
    if (!rc) rc = flag_int(f, "--seqlen", 2, 1 << 20, &seqlen, e);
    if (!rc) rc = flag_int(f, "--limit", 1, 1 << 30, &limit, e);
    if (!rc) rc = flag_int(f, "--threads", 1, 1024, &threads, e);
    if (!rc && flag_str(f, "--shard")) rc = parse_shard(flag_str(f, "--shard"), &shard, &shards, e);
    if (!rc && flag_str(f, "--shard") && !flag_str(f, "--out"))
        rc = err_set(e, SPARQ_EINPUT, "--shard needs --out PART.json (merged by eval --merge)");
    if (!rc && !flag_str(f, "--shard") && flag_str(f, "--out"))
        rc = err_set(e, SPARQ_EINPUT, "--out is where a --shard run writes its part");
    if (rc) return rc;
    const char *proto = flag_str(f, "--protocol") ? flag_str(f, "--protocol") : "windows";
    ppl_protocol p;
    if ((rc = ppl_protocol_parse(proto, "--protocol", &p, e))) return rc;
    blas_set_threads(threads);

    model *m = NULL;
    tokenizer *t = NULL;
    token_seqs seqs = {0};
    /* Pre-tokenized ids need no tokenizer: models shipped without one can be scored. */
    rc = ids ? model_load(&m, flag_str(f, "--model"), e) : open_model(f, &m, &t, e);
    if (!rc) {
        if (seqlen == 0) seqlen = m->cfg.seq_len;
        if (seqlen > m->cfg.seq_len)
            rc = err_set(e, SPARQ_EINPUT, "--seqlen %d is larger than the model's context (%d)",
                         seqlen, m->cfg.seq_len);
    }
    if (!rc && ids) rc = ppl_prepare_ids(ids, p, seqlen, limit, m->cfg.vocab_size, &seqs, e);
    else if (!rc) rc = ppl_prepare(t, flag_str(f, "--text"), p, seqlen, limit, &seqs, e);
    ppl_result r;
    ppl_part *parts = NULL;
    int *index = NULL, total = seqs.n;
    if (!rc && shards) {
        /* Sequences shard, shard + shards, ...: each sequence's part keeps its index, so the
         * merged parts combine in the unsharded order. */
        parts = malloc((size_t)(total > 0 ? total : 1) * sizeof *parts);
        index = malloc((size_t)(total > 0 ? total : 1) * sizeof *index);
        if (!parts || !index) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
        if (!rc) ppl_shard(&seqs, shard, shards, index);
        if (!rc && seqs.n == 0)
            rc = err_set(e, SPARQ_EINPUT, "--shard %d/%d: no sequence (%d in all)", shard, shards, total);
    }
    if (!rc) {
        bar b;
        bar_start(&b, "eval");
        rc = ppl_score_parts(m, &seqs, parts, &r, bar_update, &b, e);
        bar_end(&b);
    }
    if (!rc && shards) {
        ppl_shard_meta meta = {.seqlen = seqlen, .limit = limit, .shard = shard, .shards = shards,
                               .sequences = total};
        snprintf(meta.model, sizeof meta.model, "%s", flag_str(f, "--model"));
        snprintf(meta.text, sizeof meta.text, "%s", ids ? ids : flag_str(f, "--text"));
        snprintf(meta.protocol, sizeof meta.protocol, "%s", ppl_protocol_name(p));
        rc = results_ppl_part_save(flag_str(f, "--out"), &meta, parts, index, seqs.n, &r, e);
    }
    if (!rc) print_ppl(&r, p, seqlen, flag_str(f, "--json") != NULL);
    free(parts);
    free(index);
    token_seqs_free(&seqs);
    tokenizer_free(t);
    model_free(m);
    return rc;
}

/* ---- zeroshot ----------------------------------------------------------------------------- */

static void zeroshot_json(cJSON *tasks, const zeroshot_task *t, const zeroshot_result *r) {
    cJSON *x = cJSON_AddObjectToObject(tasks, t->name);
    const zeroshot_stats *s = &r->stats;
    results_task_fields(x, r);
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
    flag f[] = {FV("--model"), FV("--tokenizer"), FL("--task"), FV("--limit"), FV("--seed"), FV("--threads"),
                FB("--json"), {0}};
    int limit = 0, seed = 0, threads = 0;
    run_setup s = {0};
    int rc = flags_parse(f, argc, argv, e);
    if (!rc) rc = require(f, "--model", e);
    if (!rc && !flag_str(f, "--task")) rc = err_set(e, SPARQ_EINPUT, "missing required option --task NAME=FILE");
    if (!rc) rc = flag_int(f, "--limit", 1, 1 << 30, &limit, e);
    if (!rc) rc = flag_int(f, "--seed", 0, 2147483647, &seed, e);
    if (!rc) rc = flag_int(f, "--threads", 1, 1024, &threads, e);
    if (!rc) rc = parse_tasks(f, &s, e);
    if (rc) return rc;
    int n_task = s.n_tasks;
    blas_set_threads(threads);
    model *m = NULL;
    tokenizer *t = NULL;
    zeroshot_task *tasks = calloc((size_t)n_task, sizeof *tasks);
    zeroshot_result *res = calloc((size_t)n_task, sizeof *res);
    if (!tasks || !res) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (!rc) rc = open_model(f, &m, &t, e);
    /* Load every task first: a bad file fails before any scoring. */
    for (int i = 0; i < n_task && !rc; i++)
        rc = zeroshot_load_task(t, s.tasks[i].name, s.tasks[i].path, limit, (unsigned long)seed, &tasks[i], e);
    for (int i = 0; i < n_task && !rc; i++) {
        bar b;
        bar_start(&b, tasks[i].name);
        rc = zeroshot_run(m, &tasks[i], &res[i], bar_update, &b, e);
        bar_end(&b);
    }
    if (!rc && flag_str(f, "--json")) {
        cJSON *j = cJSON_CreateObject();
        cJSON *tj = cJSON_AddObjectToObject(j, "tasks");
        for (int i = 0; i < n_task; i++) zeroshot_json(tj, &tasks[i], &res[i]);
        cJSON_AddNumberToObject(j, "threads", blas_threads());
        cJSON_AddNumberToObject(j, "peak_rss_mb", clock_peak_rss_mb());
        print_json(j);
    } else if (!rc) {
        zeroshot_print(tasks, res, n_task);
    }
    for (int i = 0; tasks && i < n_task; i++) zeroshot_task_free(&tasks[i]);
    free(tasks);
    free(res);
    tokenizer_free(t);
    model_free(m);
    return rc;
}

/* ---- generate ----------------------------------------------------------------------------- */

static int cmd_generate(int argc, char **argv, err *e) {
    flag f[] = {FV("--model"), FV("--tokenizer"), FV("--prompt"), FV("--prompt-ids"), FV("-n"),
                FB("--json"), {0}};
    int steps = 256;
    int rc = flags_parse(f, argc, argv, e);
    if (!rc) rc = require(f, "--model", e);
    if (!rc) rc = flag_int(f, "-n", 1, 1 << 20, &steps, e);
    const char *pids = flag_str(f, "--prompt-ids");
    if (!rc && pids && flag_str(f, "--prompt"))
        rc = err_set(e, SPARQ_EINPUT, "give --prompt or --prompt-ids, not both");
    if (rc) return rc;
    model *m = NULL;
    tokenizer *t = NULL;
    generation g = {0};
    int *prompt = NULL, np = 0;
    if (pids) {
        /* Ids in, ids out: no tokenizer, no BOS added, no stop token. */
        rc = text_parse_ids(pids, strlen(pids), "--prompt-ids", &prompt, &np, e);
        if (!rc && np == 0) rc = err_set(e, SPARQ_EINPUT, "--prompt-ids: no ids");
        if (!rc) rc = model_load(&m, flag_str(f, "--model"), e);
        if (!rc) rc = generate_greedy_ids(m, prompt, np, steps, &g, e);
    } else {
        rc = open_model(f, &m, &t, e);
        if (!rc) rc = generate_greedy(m, t, flag_str(f, "--prompt") ? flag_str(f, "--prompt") : "", steps, &g, e);
    }
    if (!rc && flag_str(f, "--json")) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToObject(j, "tokens", cJSON_CreateIntArray(g.tokens, g.n));
        if (g.text) cJSON_AddStringToObject(j, "text", g.text);
        print_json(j);
    } else if (!rc && g.text) {
        printf("%s\n", g.text);
    } else if (!rc) {
        for (int i = 0; i < g.n; i++) printf("%s%d", i ? " " : "", g.tokens[i]);
        printf("\n");
    }
    free(prompt);
    generation_free(&g);
    tokenizer_free(t);
    model_free(m);
    return rc;
}

/* ---- compress ----------------------------------------------------------------------------- */

/* The human form of a run record: the layer reports, then one line of totals. */
static void print_record(const cJSON *r) {
    const cJSON *layers = cJSON_GetObjectItem(r, "layers"), *l;
    printf("%-10s %12s %9s %9s %14s %9s\n", "layer", "shape", "target", "sparsity", "loss", "seconds");
    cJSON_ArrayForEach(l, layers) {
        char shape[32];
        snprintf(shape, sizeof shape, "%dx%d", cJSON_GetObjectItem(l, "rows")->valueint,
                 cJSON_GetObjectItem(l, "cols")->valueint);
        printf("%-10s %12s %9.4f %9.4f %14.6g %9.4f\n", cJSON_GetObjectItem(l, "name")->valuestring, shape,
               cJSON_GetObjectItem(l, "target_sparsity")->valuedouble,
               cJSON_GetObjectItem(l, "sparsity")->valuedouble, cJSON_GetObjectItem(l, "loss")->valuedouble,
               cJSON_GetObjectItem(l, "seconds")->valuedouble);
    }
    printf("\n%s: sparsity %.4f of linear weights, %.3f bits/weight packed, model %.1f KB packed, %.2f s\n",
           cJSON_GetObjectItem(r, "label")->valuestring, cJSON_GetObjectItem(r, "sparsity")->valuedouble,
           cJSON_GetObjectItem(r, "bits_per_weight")->valuedouble,
           cJSON_GetObjectItem(r, "bytes_packed")->valuedouble / 1024.0,
           cJSON_GetObjectItem(cJSON_GetObjectItem(r, "seconds"), "compress")->valuedouble);
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(r, "ppl"))
        printf("perplexity  %.4f ± %.4f (%s, %s, seqlen %d, %.0f tokens)\n",
               cJSON_GetObjectItem(p, "ppl")->valuedouble, cJSON_GetObjectItem(p, "ppl_stderr")->valuedouble,
               p->string, cJSON_GetObjectItem(p, "protocol")->valuestring,
               cJSON_GetObjectItem(p, "seqlen")->valueint, cJSON_GetObjectItem(p, "tokens")->valuedouble);
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(r, "tasks"))
        printf("%-11s acc %.4f ± %.4f (n %d, chance %.4f)\n", p->string, cJSON_GetObjectItem(p, "acc")->valuedouble,
               cJSON_GetObjectItem(p, "acc_stderr")->valuedouble, cJSON_GetObjectItem(p, "n")->valueint,
               cJSON_GetObjectItem(p, "chance")->valuedouble);
}

/* ---- what a GGUF writer did ----------------------------------------------------------------- */

static void add_file_info(cJSON *j, const gguf_save_info *in, dtype dt) {
    cJSON *o = cJSON_AddObjectToObject(j, "file");
    cJSON_AddStringToObject(o, "dtype", dtype_name(dt));
    cJSON_AddNumberToObject(o, "bytes", in->bytes);
    cJSON_AddNumberToObject(o, "bits_per_weight", in->bits_per_weight);
    cJSON_AddNumberToObject(o, "linear_bits_per_weight", in->linear_bits_per_weight);
    cJSON_AddStringToObject(o, "embedding", dtype_name(in->embd_dtype));
    cJSON_AddStringToObject(o, "kept_f16", in->kept);
}

static void print_file_info(const gguf_save_info *in, dtype dt) {
    printf("tensor data %.0f bytes: %.3f bits per weight (linear layers %.3f)\n", in->bytes,
           in->bits_per_weight, in->linear_bits_per_weight);
    if (dtype_is_block(dt))
        printf("linear layers in %s blocks; token embedding and classifier %s, norms f32%s%s\n",
               dtype_name(dt), dtype_name(in->embd_dtype),
               in->n_kept ? "; left dense in f16 (rows not a multiple of 32): " : "", in->kept);
}

/* The compress flags: the run's own, then one per row of the options table. */
static const char *const compress_flags[] = {"--model", "--tokenizer", "--calib", "--nsamples",
    "--calib-seqlen", "--seed", "--out", "--format", "--dtype", "--eval", "--protocol", "--seqlen", "--limit",
    "--threads", "--max-memory", NULL};
static const char *const compress_bool_flags[] = {"--json", "--pure", NULL};

static int cmd_compress(int argc, char **argv, err *e) {
    flag f[64];
    char names[64][40];
    int nf = 0;
    for (; compress_flags[nf]; nf++) f[nf] = (flag)FV(compress_flags[nf]);
    for (int k = 0; compress_bool_flags[k]; k++) f[nf++] = (flag)FB(compress_bool_flags[k]);
    f[nf++] = (flag)FL("--task");
    for (int i = 0; i < options_count; i++, nf++) {
        options_flag(&options_table[i], names[nf], sizeof names[nf]);
        f[nf] = (flag){.name = names[nf], .kind = options_table[i].type == OPT_BOOL ? FLAG_BOOL : FLAG_VALUE};
    }
    f[nf] = (flag){0};
    run_setup s;
    run_setup_default(&s);
    int threads = 0;
    int rc = flags_parse(f, argc, argv, e);
    if (!rc) rc = require(f, "--model", e);
    if (!rc) rc = require(f, "--solver", e);
    if (!rc) rc = require(f, "--calib", e);
    if (!rc) rc = flag_int(f, "--nsamples", 1, 1 << 20, &s.nsamples, e);
    if (!rc) rc = flag_int(f, "--calib-seqlen", 2, 1 << 20, &s.calib_seqlen, e);
    if (!rc) rc = flag_int(f, "--seed", 0, 2147483647, &s.seed, e);
    if (!rc) rc = flag_int(f, "--seqlen", 2, 1 << 20, &s.ppl[0].seqlen, e);
    if (!rc) rc = flag_int(f, "--limit", 1, 1 << 30, &s.limit, e);
    if (!rc) rc = flag_int(f, "--threads", 1, 1024, &threads, e);
    if (!rc) rc = parse_tasks(f, &s, e);
    if (!rc && flag_str(f, "--max-memory") && !run_parse_memory(flag_str(f, "--max-memory"), &s.max_memory))
        rc = err_set(e, SPARQ_EINPUT, "--max-memory %s: expected a size such as 20G or 512M",
                     flag_str(f, "--max-memory"));
    if (rc) return rc;
    const char *proto = flag_str(f, "--protocol") ? flag_str(f, "--protocol") : "windows";
    if ((rc = ppl_protocol_parse(proto, "--protocol", &s.ppl[0].protocol, e))) return rc;
    snprintf(s.model, sizeof s.model, "%s", flag_str(f, "--model"));
    snprintf(s.calib, sizeof s.calib, "%s", flag_str(f, "--calib"));
    if (flag_str(f, "--tokenizer")) snprintf(s.tokenizer, sizeof s.tokenizer, "%s", flag_str(f, "--tokenizer"));
    const char *text = flag_str(f, "--eval");
    if (text) {
        const char *base = strrchr(text, '/');
        snprintf(s.ppl[0].path, sizeof s.ppl[0].path, "%s", text);
        snprintf(s.ppl[0].name, sizeof s.ppl[0].name, "%s", base ? base + 1 : text);
        s.n_ppl = 1;
    }
    /* The options, chain mode first (the solver's parse keeps it), through the one table. */
    run_spec r = {.opts = options_default()};
    const option *chain = options_find("chain_mode");
    char cf[40];
    options_flag(chain, cf, sizeof cf);
    if (flag_str(f, cf)) rc = options_set(&r.opts, chain, flag_str(f, cf), "--", e);
    for (int i = 0; !rc && i < options_count; i++) {
        char fl[40];
        options_flag(&options_table[i], fl, sizeof fl);
        if (&options_table[i] != chain && flag_str(f, fl))
            rc = options_set(&r.opts, &options_table[i], flag_str(f, fl), "--", e);
    }
    if (rc) return rc;
    run_output out = {.path = flag_str(f, "--out"), .format = MODEL_FORMAT_AUTO, .dtype = DTYPE_F32,
                      .pure = flag_str(f, "--pure") != NULL};
    if (flag_str(f, "--format")) rc = model_format_parse(flag_str(f, "--format"), &out.format, e);
    if (!rc && flag_str(f, "--dtype") && dtype_parse(flag_str(f, "--dtype"), &out.dtype))
        rc = err_set(e, SPARQ_EINPUT, "--dtype %s: expected f32, f16, bf16, or for GGUF q8_0, q4_0, q4_1, q5_0 "
                     "or q5_1", flag_str(f, "--dtype"));
    if (!rc && (flag_str(f, "--format") || flag_str(f, "--dtype") || out.pure) && !out.path)
        rc = err_set(e, SPARQ_EINPUT, "--format, --dtype and --pure describe the --out file; give --out");
    if (!rc) rc = run_check_output(&r, &out, e);
    if (rc) return rc;
    bool gguf_out = out.path && (out.format == MODEL_FORMAT_AUTO ? model_format_for_path(out.path)
                                                                : out.format) == MODEL_FORMAT_GGUF;
    options_label(&r.opts, r.label, sizeof r.label);
    blas_set_threads(threads);
    run_context *ctx = NULL;
    cJSON *rec = NULL;
    rc = run_context_new(&ctx, &s, false, NULL, e);
    if (!rc) rc = run_check(ctx, &r, e);
    bar b;
    bar_start(&b, "compress");
    if (!rc) rc = run_execute(ctx, &r, &out, bar_stage, &b, &rec, e);
    bar_end(&b);
    if (!rc && gguf_out) add_file_info(rec, &out.info, out.dtype);
    if (!rc && flag_str(f, "--json")) {
        print_json(rec);
        rec = NULL;
    } else if (!rc) {
        print_record(rec);
        if (gguf_out) {
            printf("wrote %s\n", out.path);
            print_file_info(&out.info, out.dtype);
        }
    }
    cJSON_Delete(rec);
    run_context_free(ctx);
    return rc;
}

/* ---- sweep and report ----------------------------------------------------------------------- */

static void print_note(void *ctx, sweep_note_kind kind, const char *line) {
    (void)ctx;
    fprintf(kind == SWEEP_NOTE_PLAN ? stdout : stderr, "%s\n", line);
}

static int cmd_sweep(int argc, char **argv, err *e) {
    if (argc < 1 || argv[0][0] == '-')
        return err_set(e, SPARQ_EINPUT, "usage: sparq sweep CONFIG.ini [--out DIR] [--jobs N] [--shard I/N] "
                       "[--stage compress|eval|merge] [--dry-run] [--slurm]");
    const char *config = argv[0];
    flag f[] = {FV("--out"), FV("--jobs"), FV("--shard"), FV("--threads"), FV("--stage"),
                FB("--dry-run"), FB("--slurm"), {0}};
    sweep_options o = {.stage = SWEEP_RUN, .jobs = 1, .shard_i = 0, .shard_n = 1, .note = print_note};
    int rc = flags_parse(f, argc - 1, argv + 1, e);
    if (!rc) rc = flag_int(f, "--jobs", 1, 256, &o.jobs, e);
    if (!rc) rc = flag_int(f, "--threads", 1, 1024, &o.threads, e);
    if (!rc && flag_str(f, "--shard")) rc = parse_shard(flag_str(f, "--shard"), &o.shard_i, &o.shard_n, e);
    if (!rc && flag_str(f, "--stage")) rc = sweep_stage_parse(flag_str(f, "--stage"), &o.stage, e);
    if (!rc && flag_str(f, "--stage") && flag_str(f, "--slurm"))
        rc = err_set(e, SPARQ_EINPUT, "--slurm writes the scripts that run the stages: give one or the other");
    if (rc) return rc;
    o.dry_run = flag_str(f, "--dry-run") != NULL;
    sweep_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    run_spec *runs = NULL;
    int n = 0;
    rc = config_load(config, cfg, &runs, &n, e);
    if (!rc && flag_str(f, "--out")) snprintf(cfg->out, sizeof cfg->out, "%s", flag_str(f, "--out"));
    if (!rc && flag_str(f, "--slurm")) {
        /* The tasks call this very binary: the cluster's nodes need no sparq on their PATH. */
        char self[4096];
        ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
        snprintf(self + (len > 0 ? len : 0), sizeof self - (size_t)(len > 0 ? len : 0), "%s", len > 0 ? "" : "sparq");
        rc = sweep_write_slurm(cfg, n, config, self, e);
        if (!rc && cfg->eval_shards)
            printf("wrote %s/sweep.slurm (%d compress tasks), eval.slurm (%ld eval tasks: %d shards a run), "
                   "report.slurm and submit.sh\n", cfg->out, n, (long)n * cfg->eval_shards, cfg->eval_shards);
        else if (!rc)
            printf("wrote %s/sweep.slurm, %s/report.slurm and %s/submit.sh (%d array tasks)\n", cfg->out,
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
    flag f[] = {FV("--format"), FV("--plots"), FV("--srcr-formula"), {0}};
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
    flag f[] = {FV("--model"), FV("--out"), FV("--format"), FV("--dtype"),
                FV("--tokenizer"), FB("--no-vocab"), FV("--llama2c-version"), FV("--max-shard-size"),
                FB("--json"), FB("--pure"), {0}};
    int rc = flags_parse(f, argc, argv, e);
    if (!rc) rc = require(f, "--model", e);
    if (!rc) rc = require(f, "--out", e);
    gguf_save_info info;
    model_save_options o = {MODEL_FORMAT_AUTO, DTYPE_F32, NULL, 0, 0, NULL, &info, flag_str(f, "--pure") != NULL};
    if (!rc && flag_str(f, "--format")) rc = model_format_parse(flag_str(f, "--format"), &o.format, e);
    if (!rc && flag_str(f, "--dtype") && dtype_parse(flag_str(f, "--dtype"), &o.dtype))
        rc = err_set(e, SPARQ_EINPUT, "--dtype %s: expected f32, f16, bf16, or for GGUF q8_0, q4_0, q4_1, q5_0 "
                     "or q5_1", flag_str(f, "--dtype"));
    if (!rc) rc = flag_int(f, "--llama2c-version", 0, 2, &o.llama2c_version, e);
    double shard = 0;
    if (!rc && flag_str(f, "--max-shard-size") && !run_parse_memory(flag_str(f, "--max-shard-size"), &shard))
        rc = err_set(e, SPARQ_EINPUT, "--max-shard-size %s: expected a size such as 5G or 200M",
                     flag_str(f, "--max-shard-size"));
    o.shard_bytes = (uint64_t)shard;
    if (rc) return rc;
    const char *mpath = flag_str(f, "--model"), *out = flag_str(f, "--out");
    model_format fmt = o.format == MODEL_FORMAT_AUTO ? model_format_for_path(out) : o.format;
    if (flag_str(f, "--llama2c-version") && fmt != MODEL_FORMAT_LLAMA2C)
        return err_set(e, SPARQ_EINPUT, "--llama2c-version: %s is written as %s, not llama2c", out,
                       model_format_name(fmt));
    bool no_vocab = flag_str(f, "--no-vocab") != NULL;
    if (no_vocab && flag_str(f, "--tokenizer"))
        return err_set(e, SPARQ_EINPUT, "--no-vocab and --tokenizer: give one or the other");
    model *m = NULL;
    tokenizer *t = NULL;
    char used[4200] = "", written[4200] = "";
    rc = model_load(&m, mpath, e);
    if (!rc) fmt = model_save_format(m, out, o.format);
    /* The converted model keeps its tokenizer (issue 20): a GGUF embeds it so that llama.cpp runs
     * it as is, other formats get it beside (or inside) them. Without one, only --no-vocab writes
     * the model. */
    if (!rc && !no_vocab) {
        err te = {0};
        int trc = tokenizer_load_for_model(&t, mpath, m->cfg.vocab_size, flag_str(f, "--tokenizer"), used,
                                           sizeof used, &te);
        if (trc && flag_str(f, "--tokenizer")) rc = err_set(e, trc, "%s", te.msg);
        else if (trc) rc = err_set(e, trc, "%s; give --tokenizer T, or --no-vocab to write the model "
                                   "without a vocabulary", te.msg);
        o.tok = fmt == MODEL_FORMAT_GGUF ? t : NULL;
    }
    bool inside = fmt == MODEL_FORMAT_SAFETENSORS && !path_has_suffix(out, ".safetensors");
    if (!rc && t && fmt != MODEL_FORMAT_GGUF)   /* refuse a clash before writing anything */
        rc = tokenizer_save_beside(t, used, out, inside, true, NULL, 0, e);
    if (!rc) rc = model_save_opts(m, out, &o, e);
    if (!rc && t && fmt != MODEL_FORMAT_GGUF)
        rc = tokenizer_save_beside(t, used, out, inside, false, written, sizeof written, e);
    if (!rc) {
        const char *dt = fmt == MODEL_FORMAT_LLAMA2C && o.llama2c_version == 2
                             ? "q8_0" : dtype_name(fmt == MODEL_FORMAT_LLAMA2C ? DTYPE_F32 : o.dtype);
        if (flag_str(f, "--json")) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "out", out);
            cJSON_AddStringToObject(j, "format", model_format_name(fmt));
            cJSON_AddStringToObject(j, "dtype", dt);
            cJSON_AddNumberToObject(j, "params", (double)model_params(m));
            cJSON_AddBoolToObject(j, "tokenizer", t != NULL);
            if (written[0]) cJSON_AddStringToObject(j, "tokenizer_file", written);
            if (fmt == MODEL_FORMAT_GGUF) add_file_info(j, &info, o.dtype);
            print_json(j);
        } else {
            printf("wrote %s: %s, %s, %llu parameters%s%s\n", out, model_format_name(fmt), dt,
                   (unsigned long long)model_params(m),
                   !t ? ", without a vocabulary (--no-vocab)" : written[0] ? ", its tokenizer in " : ", with its vocabulary",
                   written);
            if (fmt == MODEL_FORMAT_GGUF) print_file_info(&info, o.dtype);
        }
    }
    tokenizer_free(t);
    model_free(m);
    return rc;
}

/* ---- inspect ------------------------------------------------------------------------------ */

/* A GGUF's tensors as stored: each one's ggml type, and the file's bits per weight (tensor data
 * bits over the weights it holds; the metadata and vocabulary are not counted). */
static int inspect_gguf(const char *path, cJSON *j, err *e) {
    gguf_file *g;
    int rc = gguf_open(&g, path, e);
    if (rc) return rc;
    double bytes = 0, params = 0;
    cJSON *arr = j ? cJSON_AddArrayToObject(cJSON_AddObjectToObject(j, "gguf"), "tensors") : NULL;
    if (!j) printf("\n%-28s %-5s %14s %10s %7s\n", "tensor", "type", "shape", "bytes", "bits/w");
    gguf_tensor_info t;
    for (uint64_t i = 0; gguf_tensor_at(g, i, &t); i++) {
        double n = 1;
        char shape[64] = "";
        for (uint32_t k = 0; k < t.n_dims; k++) {
            n *= (double)t.ne[k];
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%llu", k ? "x" : "",
                     (unsigned long long)t.ne[k]);
        }
        bytes += (double)t.nbytes;
        params += n;
        if (arr) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", t.name);
            cJSON_AddStringToObject(o, "type", gguf_type_name(t.ggml_type));
            cJSON_AddStringToObject(o, "shape", shape);
            cJSON_AddNumberToObject(o, "bytes", (double)t.nbytes);
            cJSON_AddItemToArray(arr, o);
        } else {
            printf("%-28s %-5s %14s %10llu %7.3f\n", t.name, gguf_type_name(t.ggml_type), shape,
                   (unsigned long long)t.nbytes, 8.0 * (double)t.nbytes / n);
        }
    }
    if (j) {
        cJSON *o = cJSON_GetObjectItem(j, "gguf");
        cJSON_AddNumberToObject(o, "tensor_bytes", bytes);
        cJSON_AddNumberToObject(o, "bits_per_weight", 8 * bytes / params);
    } else {
        printf("tensor data %.0f bytes for %.0f weights: %.3f bits per weight\n", bytes, params, 8 * bytes / params);
    }
    gguf_close(g);
    return SPARQ_OK;
}

static int cmd_inspect(int argc, char **argv, err *e) {
    flag f[] = {FV("--model"), FB("--json"), {0}};
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
        cJSON_AddStringToObject(cfg, "family", m->fam->name);
        cJSON_AddNumberToObject(cfg, "dim", c->dim);
        cJSON_AddNumberToObject(cfg, "hidden_dim", c->hidden_dim);
        cJSON_AddNumberToObject(cfg, "n_layers", c->n_layers);
        cJSON_AddNumberToObject(cfg, "n_heads", c->n_heads);
        cJSON_AddNumberToObject(cfg, "n_kv_heads", c->n_kv_heads);
        cJSON_AddNumberToObject(cfg, "head_size", c->head_size);
        cJSON_AddNumberToObject(cfg, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(cfg, "seq_len", c->seq_len);
        cJSON_AddBoolToObject(cfg, "shared_classifier", m->shared_cls);
        if (c->state_size > 0) {
            cJSON_AddNumberToObject(cfg, "state_size", c->state_size);
            cJSON_AddNumberToObject(cfg, "conv_kernel", c->conv_kernel);
            cJSON_AddNumberToObject(cfg, "dt_rank", c->dt_rank);
            cJSON_AddBoolToObject(cfg, "conv_bias", c->conv_bias);
            cJSON_AddBoolToObject(cfg, "linear_bias", c->linear_bias);
        }
        if (m->llama2c_version >= 0) {
            cJSON_AddNumberToObject(j, "llama2c_version", m->llama2c_version);
            cJSON_AddNumberToObject(j, "group_size", m->group_size);
        }
        cJSON_AddNumberToObject(j, "params", (double)params);
        cJSON_AddNumberToObject(j, "linear_params", (double)lin);
        cJSON_AddNumberToObject(j, "bytes", (double)bytes);
        layers = cJSON_AddArrayToObject(j, "layers");
    } else {
        printf("family %s  dim %d  hidden %d  layers %d  heads %d  kv_heads %d  head_size %d  vocab %d  "
               "context %d  classifier %s\n", m->fam->name, c->dim, c->hidden_dim, c->n_layers, c->n_heads,
               c->n_kv_heads, c->head_size, c->vocab_size, c->seq_len,
               m->shared_cls ? "shared" : "separate");
        if (c->state_size > 0)
            printf("state space: state %d  conv kernel %d  dt rank %d  conv bias %s  in/out biases %s\n",
                   c->state_size, c->conv_kernel, c->dt_rank, c->conv_bias ? "yes" : "no",
                   c->linear_bias ? "yes" : "no");
        static const char *const kinds[] = {"legacy", "float32", "Q8_0"};
        if (m->llama2c_version == 2)
            printf("llama2.c version 2 (%s, group size %d)\n", kinds[2], m->group_size);
        else if (m->llama2c_version >= 0 && m->llama2c_version < 2)
            printf("llama2.c version %d (%s)\n", m->llama2c_version, kinds[m->llama2c_version]);
        printf("params %llu (linear %llu)  size %llu bytes as float32\n\n",
               (unsigned long long)params, (unsigned long long)lin, (unsigned long long)bytes);
        printf("%-12s %8s %8s %9s %10s\n", "layer", "rows", "cols", "sparsity", "distinct");
    }
    for (int l = 0; l < c->n_layers; l++) {
        if ((rc = model_block_acquire(m, l, e))) {   /* a streamed block, made float32 to count it */
            cJSON_Delete(j);
            model_free(m);
            return rc;
        }
        for (int k = 0; k < model_n_linear(m); k++) {
            const linear *li = &m->blocks[l].lin[k];
            char name[64];
            snprintf(name, sizeof name, "%d.%s", l, model_linear_name(m, k));
            double sp = linear_sparsity(li);
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
        model_block_release(m, l);
    }
    model_free(m);
    if (model_format_for_path(flag_str(f, "--model")) == MODEL_FORMAT_GGUF)
        rc = inspect_gguf(flag_str(f, "--model"), j, e);
    if (json && !rc) print_json(j);
    else cJSON_Delete(j);
    return rc;
}

/* ---- tokenize ----------------------------------------------------------------------------- */

static int cmd_tokenize(int argc, char **argv, err *e) {
    flag f[] = {FV("--tokenizer"), FV("--text"), FB("--bos"), FB("--json"), {0}};
    int rc = flags_parse(f, argc, argv, e);
    if (!rc) rc = require(f, "--tokenizer", e);
    if (!rc) rc = require(f, "--text", e);
    if (rc) return rc;
    tokenizer *t;
    if ((rc = tokenizer_load(&t, flag_str(f, "--tokenizer"), e))) return rc;
    int *ids = NULL, n = 0;
    rc = tokenizer_encode(t, flag_str(f, "--text"), flag_str(f, "--bos") != NULL, false, &ids, &n, e);
    if (!rc && flag_str(f, "--json")) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToObject(j, "ids", cJSON_CreateIntArray(ids, n));
        cJSON *pieces = cJSON_AddArrayToObject(j, "pieces");
        for (int i = 0; i < n; i++) cJSON_AddItemToArray(pieces, cJSON_CreateString(tokenizer_piece(t, ids[i])));
        print_json(j);
    } else if (!rc) {
        for (int i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
    }
    free(ids);
    tokenizer_free(t);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        char opts[2048];
        options_usage(opts, sizeof opts, 12, 100);
        fprintf(argc < 2 ? stderr : stdout, usage_text, opts);
        return argc < 2 ? 2 : 0;
    }
    /* A file-size limit (RLIMIT_FSIZE, a full quota) must fail the write, not kill the process
     * before the atomic writer can remove its temporary and say so. */
    signal(SIGXFSZ, SIG_IGN);
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
    else if (strcmp(cmd, "tokenize") == 0) rc = cmd_tokenize(argc - 2, argv + 2, &e);
    else rc = err_set(&e, SPARQ_EINPUT, "unknown command '%s' (see sparq --help)", cmd);
    if (rc) {
        fprintf(stderr, "sparq %s: %s\n", cmd, e.msg);
        return err_exit_status(rc);
    }
    return 0;
}
