/* bench-scale (issue 17): can a 7B LLaMA be compressed on one 24 GB, 2-core machine, and how long
 * would it take? Writes a random LLaMA-shaped Hugging Face checkpoint (f16, sharded safetensors),
 * runs `sparq compress` on its first blocks and `sparq eval` on a few windows in child processes
 * (peak RSS from wait4), times the solvers directly on the 7B layer shapes, measures the sgemm
 * peak, and projects the whole model's time and memory at 128 x 2048 calibration tokens.
 * `bench-scale gen SHAPE DIR` only writes the checkpoint. Prints labelled numbers; asserts nothing. */
#define _DEFAULT_SOURCE   /* statvfs, wait4, posix_fadvise */
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <cblas.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/blas.h"
#include "../core/clock.h"
#include "peak.h"
#include "../core/dtype.h"
#include "../core/err.h"
#include "../core/fileio.h"
#include "../core/hessian.h"
#include "../solvers/solver.h"

/* ---- shapes ------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int dim, hidden, layers, heads, kv_heads, vocab, ctx;
} shape;

static const shape shapes[] = {
    {"7b", 4096, 11008, 32, 32, 32, 32000, 4096},     /* LLaMA(-2)-7B */
    {"1b", 2048, 5632, 22, 32, 4, 32000, 2048},       /* TinyLlama-1.1B */
    {"tiny", 256, 688, 2, 8, 4, 32000, 2048},         /* a quick self-check of the whole path */
};

static const shape *shape_find(const char *name) {
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (strcmp(shapes[i].name, name) == 0) return &shapes[i];
    return NULL;
}

static double kv_dim(const shape *s) { return (double)s->dim / s->heads * s->kv_heads; }

/* Weights of the seven linear layers of one block. */
static double block_linear_params(const shape *s) {
    double d = s->dim, kv = kv_dim(s), h = s->hidden;
    return 2 * d * d + 2 * kv * d + 3 * h * d;
}

/* ---- the checkpoint's tensors and shards --------------------------------------------------- */

#define SEED 0x5ca1eb0075ull
#define LINEAR_STD 0.02f      /* LLaMA-7B's linear and embedding weights have std ~0.02 */
#define NORM_STD 0.01f        /* RMSNorm gains: 1 + small noise */
#define SHARD_TARGET 4.0e9    /* bytes per shard; Hugging Face's own limit is 5 GB */
#define GEN_MARGIN (1ull << 30)   /* free space kept on top of the checkpoint's bytes */

typedef struct {
    char name[80];
    uint64_t rows, cols;     /* cols == 0: a norm vector */
    int shard;
} tensor;

typedef struct {
    tensor *t;
    int n, n_shards;
    uint64_t data_bytes;     /* all tensors' bytes, what the index's total_size says */
} checkpoint;

static uint64_t tensor_elems(const tensor *t) { return t->rows * (t->cols ? t->cols : 1); }

static void push(checkpoint *c, const char *name, uint64_t rows, uint64_t cols) {
    tensor *t = &c->t[c->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rows = rows;
    t->cols = cols;
}

/* Hugging Face's names and shapes ([out][in]); shards cut by data offset into equal parts, at
 * least two so the index path is always exercised. */
static int checkpoint_plan(checkpoint *c, const shape *s, err *e) {
    c->t = calloc(4 + 9 * (size_t)s->layers, sizeof *c->t);
    if (!c->t) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    c->n = 0;
    uint64_t d = (uint64_t)s->dim, kv = (uint64_t)kv_dim(s), h = (uint64_t)s->hidden;
    push(c, "model.embed_tokens.weight", (uint64_t)s->vocab, d);
    static const char *const lin[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                      "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    const uint64_t rows[] = {d, kv, kv, d, h, h, d}, cols[] = {d, d, d, d, d, d, h};
    char name[80];
    for (int l = 0; l < s->layers; l++) {
        for (int k = 0; k < 7; k++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, lin[k]);
            push(c, name, rows[k], cols[k]);
        }
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        push(c, name, d, 0);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        push(c, name, d, 0);
    }
    push(c, "model.norm.weight", d, 0);
    push(c, "lm_head.weight", (uint64_t)s->vocab, d);
    c->data_bytes = 0;
    for (int i = 0; i < c->n; i++) c->data_bytes += 2 * tensor_elems(&c->t[i]);
    c->n_shards = (int)ceil((double)c->data_bytes / SHARD_TARGET);
    if (c->n_shards < 2) c->n_shards = 2;
    uint64_t off = 0;
    for (int i = 0; i < c->n; i++) {
        uint64_t b = 2 * tensor_elems(&c->t[i]);
        c->t[i].shard = (int)((double)(off + b / 2) * c->n_shards / (double)c->data_bytes);
        off += b;
    }
    return SPARQ_OK;
}

static void shard_name(const checkpoint *c, int k, char *buf, size_t cap) {
    snprintf(buf, cap, "model-%05d-of-%05d.safetensors", k + 1, c->n_shards);
}

/* The safetensors header of shard k, padded with spaces to a multiple of 8 (as the reference
 * writer does). The metadata names the generator and seed so that a reused file is known to be
 * this generator's. Returns a malloc'd string of *len bytes, and the shard's data bytes. */
static char *shard_header(const checkpoint *c, int k, size_t *len, uint64_t *data) {
    size_t cap = 256 + 256 * (size_t)c->n, n = 0;   /* an entry is under 160 bytes */
    char *h = malloc(cap);
    if (!h) return NULL;
    n += (size_t)snprintf(h + n, cap - n, "{\"__metadata__\":{\"format\":\"pt\",\"generator\":"
                          "\"sparq bench-scale v1\",\"seed\":\"%llu\"}", (unsigned long long)SEED);
    uint64_t off = 0;
    for (int i = 0; i < c->n; i++) {
        const tensor *t = &c->t[i];
        if (t->shard != k) continue;
        uint64_t b = 2 * tensor_elems(t);
        char dims[64];
        if (t->cols) snprintf(dims, sizeof dims, "%llu,%llu", (unsigned long long)t->rows, (unsigned long long)t->cols);
        else snprintf(dims, sizeof dims, "%llu", (unsigned long long)t->rows);
        n += (size_t)snprintf(h + n, cap - n, ",\"%s\":{\"dtype\":\"F16\",\"shape\":[%s],\"data_offsets\":"
                              "[%llu,%llu]}", t->name, dims, (unsigned long long)off,
                              (unsigned long long)(off + b));
        off += b;
    }
    n += (size_t)snprintf(h + n, cap - n, "}");
    while (n % 8) h[n++] = ' ';
    h[n] = '\0';
    *len = n;
    *data = off;
    return h;
}

static char *index_json(const checkpoint *c) {
    size_t cap = 256 + 256 * (size_t)c->n, n = 0;   /* an entry is under 100 bytes */
    char *j = malloc(cap), file[64];
    if (!j) return NULL;
    n += (size_t)snprintf(j + n, cap - n, "{\n  \"metadata\": {\"total_size\": %llu},\n  \"weight_map\": {",
                          (unsigned long long)c->data_bytes);
    for (int i = 0; i < c->n; i++) {
        shard_name(c, c->t[i].shard, file, sizeof file);
        n += (size_t)snprintf(j + n, cap - n, "%s\n    \"%s\": \"%s\"", i ? "," : "", c->t[i].name, file);
    }
    snprintf(j + n, cap - n, "\n  }\n}\n");
    return j;
}

static char *config_json(const shape *s) {
    char *j = malloc(1024);
    if (!j) return NULL;
    snprintf(j, 1024, "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
             "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n"
             "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"vocab_size\": %d,\n"
             "  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 10000.0,\n"
             "  \"hidden_act\": \"silu\",\n  \"tie_word_embeddings\": false,\n  \"torch_dtype\": \"float16\",\n"
             "  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n",
             s->dim, s->hidden, s->layers, s->heads, s->kv_heads, s->vocab, s->ctx);
    return j;
}

/* ---- random f16 weights -------------------------------------------------------------------- */

/* xoshiro256**, seeded through splitmix64 (the authors' recommended seeding). */
typedef struct { uint64_t s[4]; } xoshiro;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void xoshiro_seed(xoshiro *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t xoshiro_next(xoshiro *r) {
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Values are drawn in runs of RUN, each from its own stream seeded by (tensor, run): the file is
 * the same whatever the thread count and however the writer chunks it. */
#define RUN 65536
#define CHUNK (64 * RUN)      /* values converted per write: 8 MB of f16 */

/* Two N(0,1) values by Box-Muller from one 64-bit draw: 24-bit uniforms, u1 in (0,1] so that
 * the log is finite. */
static inline void normal_pair(xoshiro *g, float *z0, float *z1) {
    uint64_t x = xoshiro_next(g);
    float u1 = (float)((x >> 40) + 1) * 0x1p-24f, u2 = (float)((x >> 16) & 0xffffffu) * 0x1p-24f;
    float rad = sqrtf(-2.0f * logf(u1)), a = 6.2831853f * u2;
    *z0 = rad * cosf(a);
    *z1 = rad * sinf(a);
}

static void run_seed(xoshiro *g, int stream, uint64_t run) {
    xoshiro_seed(g, SEED ^ ((uint64_t)stream << 40) ^ run * 0xD1B54A32D192ED03ull);
}

/* dst[0..n) = values run0*RUN .. of stream `stream` (a tensor's index): mean + std * N(0,1),
 * rounded to f16 to nearest even. n is a multiple of RUN except at the tensor's end. */
static void fill_f16(uint16_t *dst, size_t n, int stream, uint64_t run0, float mean, float std) {
    size_t nruns = (n + RUN - 1) / RUN;
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < nruns; r++) {
        xoshiro g;
        run_seed(&g, stream, run0 + r);
        uint16_t *o = dst + r * RUN;
        size_t m = n - r * RUN < RUN ? n - r * RUN : RUN;
        for (size_t i = 0; i < m; i += 2) {
            float z0, z1;
            normal_pair(&g, &z0, &z1);
            o[i] = f32_to_f16(mean + std * z0);
            if (i + 1 < m) o[i + 1] = f32_to_f16(mean + std * z1);
        }
    }
}

/* The same stream as float32, for the solver benchmark's weights and inputs. */
static void fill_f32(float *dst, size_t n, int stream, float std) {
    size_t nruns = (n + RUN - 1) / RUN;
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < nruns; r++) {
        xoshiro g;
        run_seed(&g, stream, r);
        float *o = dst + r * RUN;
        size_t m = n - r * RUN < RUN ? n - r * RUN : RUN;
        for (size_t i = 0; i < m; i += 2) {
            float z0, z1;
            normal_pair(&g, &z0, &z1);
            o[i] = std * z0;
            if (i + 1 < m) o[i + 1] = std * z1;
        }
    }
}

/* ---- writing, atomically ------------------------------------------------------------------- */

/* The temporary being written, so that SIGINT/SIGTERM can remove it: nothing half-written stays. */
static char pending_tmp[4200];

static void on_signal(int sig) {
    if (pending_tmp[0]) unlink(pending_tmp);
    signal(sig, SIG_DFL);
    raise(sig);
}

static int write_text(const char *path, const char *text, err *e) {
    atomic_file a;
    int rc = atomic_open(&a, path, e);
    if (rc) return rc;
    snprintf(pending_tmp, sizeof pending_tmp, "%s", a.tmp);
    atomic_write(&a, text, strlen(text));
    rc = atomic_commit(&a, e);
    pending_tmp[0] = '\0';
    return rc;
}

static int write_shard(const checkpoint *c, int k, const char *path, uint16_t *buf, err *e) {
    size_t hl;
    uint64_t data;
    char *h = shard_header(c, k, &hl, &data);
    if (!h) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    atomic_file a;
    int rc = atomic_open(&a, path, e);
    if (rc) { free(h); return rc; }
    snprintf(pending_tmp, sizeof pending_tmp, "%s", a.tmp);
    uint64_t hlen = hl;
    atomic_write(&a, &hlen, 8);
    atomic_write(&a, h, hl);
    free(h);
    for (int i = 0; i < c->n && !a.errno_first; i++) {
        const tensor *t = &c->t[i];
        if (t->shard != k) continue;
        uint64_t total = tensor_elems(t);
        for (uint64_t o = 0; o < total && !a.errno_first; o += CHUNK) {
            size_t m = total - o < CHUNK ? (size_t)(total - o) : CHUNK;
            if (t->cols) fill_f16(buf, m, i, o / RUN, 0.0f, LINEAR_STD);
            else fill_f16(buf, m, i, o / RUN, 1.0f, NORM_STD);
            atomic_write(&a, buf, m * 2);
        }
    }
    /* A full disk stops the loop at once; commit then reports it and removes the temporary. */
    int fd = fileno(a.f);
    if (!a.errno_first && fflush(a.f) == 0) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    rc = atomic_commit(&a, e);
    pending_tmp[0] = '\0';
    return rc;
}

/* Whether path holds exactly this text (config and index), or a shard of the expected size whose
 * header is exactly the one this generator writes: then it is complete (files only appear
 * under their name when finished) and this generator's. */
static bool file_matches(const char *path, const char *head, size_t head_len, uint64_t size) {
    struct stat st;
    if (stat(path, &st) != 0 || (uint64_t)st.st_size != size) return false;
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char *got = malloc(head_len + 1);
    bool same = got && fread(got, 1, head_len, f) == head_len && memcmp(got, head, head_len) == 0;
    free(got);
    fclose(f);
    return same;
}

static bool shard_complete(const checkpoint *c, int k, const char *path) {
    size_t hl;
    uint64_t data;
    char *h = shard_header(c, k, &hl, &data);
    if (!h) return false;
    char *head = malloc(8 + hl);
    bool ok = false;
    if (head) {
        uint64_t hlen = hl;
        memcpy(head, &hlen, 8);
        memcpy(head + 8, h, hl);
        ok = file_matches(path, head, 8 + hl, 8 + hl + data);
    }
    free(head);
    free(h);
    return ok;
}

typedef struct {
    uint64_t bytes;          /* all files of the checkpoint */
    uint64_t written;        /* bytes written by this call (0: reused) */
    double seconds;
    int shards;
} gen_result;

/* Write shape s's checkpoint into dir (created if missing), keeping every file already there and
 * complete. Refuses (SPARQ_EINPUT) before writing anything when the filesystem lacks the missing
 * bytes plus GEN_MARGIN. config.json goes last: its presence with the expected text marks a
 * finished checkpoint. */
static int checkpoint_generate(const shape *s, const char *dir, gen_result *out, err *e) {
    memset(out, 0, sizeof *out);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return err_set(e, SPARQ_EINPUT, "%s: cannot create folder: %s", dir, strerror(errno));
    checkpoint c;
    int rc = checkpoint_plan(&c, s, e);
    if (rc) return rc;
    char *index = index_json(&c), *config = config_json(s), path[4200], file[64];
    bool *have = calloc((size_t)c.n_shards, sizeof *have);
    uint16_t *buf = malloc(CHUNK * sizeof *buf);
    if (!index || !config || !have || !buf) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    uint64_t missing = 0;
    for (int k = 0; !rc && k < c.n_shards; k++) {
        shard_name(&c, k, file, sizeof file);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        have[k] = shard_complete(&c, k, path);
        size_t hl;
        uint64_t data;
        char *h = shard_header(&c, k, &hl, &data);
        free(h);
        out->bytes += 8 + hl + data;
        if (!have[k]) missing += 8 + hl + data;
    }
    out->bytes += strlen(index) + strlen(config);
    out->shards = c.n_shards;
    struct statvfs vs;
    if (!rc && missing > 0 && statvfs(dir, &vs) == 0) {
        uint64_t avail = (uint64_t)vs.f_bavail * vs.f_frsize;
        if (avail < missing + GEN_MARGIN)
            rc = err_set(e, SPARQ_EINPUT, "%s: %.2f GB free, the %s checkpoint needs %.2f GB more plus a "
                         "%.1f GB margin: set SCALE_DIR to a larger filesystem", dir, avail / 1e9, s->name,
                         missing / 1e9, GEN_MARGIN / 1e9);
    }
    double t0 = clock_seconds();
    for (int k = 0; !rc && k < c.n_shards; k++) {
        if (have[k]) continue;
        shard_name(&c, k, file, sizeof file);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        rc = write_shard(&c, k, path, buf, e);
        if (!rc) {
            size_t hl;
            uint64_t data;
            free(shard_header(&c, k, &hl, &data));
            out->written += 8 + hl + data;
        }
    }
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (!rc && !file_matches(path, index, strlen(index), strlen(index))) rc = write_text(path, index, e);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!rc && !file_matches(path, config, strlen(config), strlen(config))) rc = write_text(path, config, e);
    out->seconds = clock_seconds() - t0;
    free(index);
    free(config);
    free(have);
    free(buf);
    free(c.t);
    return rc;
}

/* ---- child processes ----------------------------------------------------------------------- */

typedef struct {
    int status;              /* exit status, or 128 + signal */
    double seconds, rss_mb;  /* wall time; peak RSS from wait4's rusage */
    char *out;               /* stdout */
    char last_err[512];      /* the last line on stderr */
} child;

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)(n > 0 ? n : 0) + 1);
    size_t got = b && n > 0 ? fread(b, 1, (size_t)n, f) : 0;
    if (b) b[got] = '\0';
    fclose(f);
    return b;
}

/* Run argv with stdout and stderr in files under scratch (no pipes to drain, so a chatty child
 * cannot block), and measure it. The command line is printed first. */
static int child_run(char *const argv[], const char *scratch, child *r) {
    memset(r, 0, sizeof *r);
    char op[4200], ep[4200];
    snprintf(op, sizeof op, "%s/child.%ld.out", scratch, (long)getpid());
    snprintf(ep, sizeof ep, "%s/child.%ld.err", scratch, (long)getpid());
    printf("# run:");
    for (int i = 0; argv[i]; i++) printf(" %s", argv[i]);
    printf("\n");
    fflush(stdout);
    double t0 = clock_seconds();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int o = open(op, O_WRONLY | O_CREAT | O_TRUNC, 0666), er = open(ep, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (o < 0 || er < 0 || dup2(o, 1) < 0 || dup2(er, 2) < 0) _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) < 0) return -1;
    r->seconds = clock_seconds() - t0;
    r->rss_mb = ru.ru_maxrss / 1024.0;
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r->out = slurp(op);
    char *er = slurp(ep);
    if (er) {
        /* The progress bar rewrites its line with \r: the last line is after the last \n or \r. */
        size_t n = strlen(er);
        while (n && (er[n - 1] == '\n' || er[n - 1] == '\r')) er[--n] = '\0';
        char *p = er + n;
        while (p > er && p[-1] != '\n' && p[-1] != '\r') p--;
        snprintf(r->last_err, sizeof r->last_err, "%s", p);
    }
    free(er);
    unlink(op);
    unlink(ep);
    return 0;
}

static double json_num(const cJSON *j, const char *a, const char *b) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, a);
    if (b) x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

/* ---- sgemm peak ---------------------------------------------------------------------------- */

/* ---- solvers on the 7B layer shapes -------------------------------------------------------- */

#define SOLVER_TOKENS 2048    /* rows of the random inputs behind each Hessian */

typedef struct { const char *label; int rows, cols, count; } layer_shape;

/* LLaMA-7B's linear layers per block: q, k, v, o; gate, up; down. */
static const layer_shape shapes_7b[] = {
    {"4096x4096", 4096, 4096, 4}, {"11008x4096", 11008, 4096, 2}, {"4096x11008", 4096, 11008, 1}};

typedef struct { const char *solver; const char *label; double sparsity; int bits; } solver_case;

static const solver_case solver_cases[] = {
    {"sparsegpt", "sparsegpt_50", 0.5, 16}, {"gptq", "gptq_4bit", 0.0, 4},
    {"magnitude", "magnitude_50", 0.5, 16}, {"wanda", "wanda_50", 0.5, 16}};
enum { N_SOLVERS = sizeof solver_cases / sizeof solver_cases[0] };

/* A random SPD Hessian of width n: H = 2/N X^T X over SOLVER_TOKENS N(0,1) rows (rank 2048 for
 * the wider layers, as a short calibration gives; the solvers' 1% damping makes it definite). */
static int random_hessian(hessian *h, int n, err *e) {
    int rc = hessian_init(h, n, e);
    if (rc) return rc;
    float *X = malloc((size_t)SOLVER_TOKENS * n * sizeof(float));
    if (!X) { hessian_free(h); return err_set(e, SPARQ_ERUNTIME, "out of memory"); }
    fill_f32(X, (size_t)SOLVER_TOKENS * n, 1000 + n, 1.0f);
    blas_wide_begin();   /* one big SSYRK from serial code */
    hessian_accumulate(h, X, SOLVER_TOKENS);
    blas_wide_end();
    hessian_finish(h, 1);
    free(X);
    return SPARQ_OK;
}

/* Seconds of each solver on each 7B shape (the solver alone: solver_run's report.seconds, what
 * compress's per-block "solve" adds up), 2 threads. sec[case][shape], NAN when it failed. */
static void time_solvers(double sec[N_SOLVERS][3]) {
    blas_set_threads(2);
    for (int k = 0; k < 3; k++) {
        const layer_shape *ls = &shapes_7b[k];
        err e = {0};
        hessian h;
        for (int s = 0; s < N_SOLVERS; s++) sec[s][k] = NAN;
        if (random_hessian(&h, ls->cols, &e)) { printf("# solvers %s: %s\n", ls->label, e.msg); continue; }
        size_t nw = (size_t)ls->rows * ls->cols;
        float *W = malloc(nw * sizeof(float));
        for (int s = 0; W && s < N_SOLVERS; s++) {
            const solver *sv = solver_find(solver_cases[s].solver);
            if (!sv) continue;
            fill_f32(W, nw, 2000 + k, LINEAR_STD);
            target t = target_default();
            t.sparsity = solver_cases[s].sparsity;
            t.bits = solver_cases[s].bits;
            layer_report r;
            if (solver_check(sv, &t, ls->rows, ls->cols, &e) ||
                solver_run(sv, W, ls->rows, ls->cols, h.H, &t, &r, &e)) {
                printf("# solver %s on %s failed: %s\n", solver_cases[s].label, ls->label, e.msg);
                continue;
            }
            sec[s][k] = r.seconds;
            layer_report_free(&r);
            printf("solver.%s.%s_s %.3f\n", solver_cases[s].label, ls->label, sec[s][k]);
            fflush(stdout);
        }
        free(W);
        hessian_free(&h);
    }
}

/* ---- the model's FLOPs and memory at a calibration size ------------------------------------ */

/* Calibration forward of one block over nseq sequences of len tokens: compress runs every
 * block twice (capture, then propagation through the compressed block), each time every
 * linear layer per token and causal attention (q.k and the weighted sum of v over positions
 * 0..p: 2 x 2 x dim per earlier position). Norms, RoPE, SiLU, softmax are O(dim) per token. */
static double forward_flops(const shape *s, double nseq, double len) {
    double per_pass = 2.0 * block_linear_params(s) * nseq * len + 4.0 * s->dim * nseq * len * (len + 1) / 2;
    return 2.0 * per_pass;
}

/* One SSYRK per distinct input (q/k/v share one, gate/up another): tokens x width^2. */
static double hessian_flops(const shape *s, double tokens) {
    double d = s->dim, h = s->hidden;
    return tokens * (3 * d * d + h * h);
}

/* SparseGPT on a rows x cols layer: the inverse-Hessian factor (potrf + potri + potrf, 4/3 n^3)
 * and the lazy batch updates (2 x rows x cols^2 / 2). */
static double sparsegpt_flops(double rows, double cols) {
    return 4.0 / 3.0 * cols * cols * cols + rows * cols * cols;
}

static double block_solver_flops(const shape *s) {
    double d = s->dim, kv = kv_dim(s), h = s->hidden;
    return 2 * sparsegpt_flops(d, d) + 2 * sparsegpt_flops(kv, d) + 2 * sparsegpt_flops(h, d) +
           sparsegpt_flops(d, h);
}

/* compress_estimate's terms (experiments/compress.c) from the shape alone, for weights streamed
 * block by block: the calibration activations (every token's block input, one chunk of 8192
 * tokens re-run with its captures and scratch), one block's Hessians, the largest layer's
 * solver workspace (4 x (2 R C + 3 C^2) bytes), one block in f32, and the embedding and
 * classifier as mapped f16. */
typedef struct { double activations, hessians, solver, block, embed_head, streamed, whole_f32; } mem_estimate;

static mem_estimate memory_estimate(const shape *s, double tokens) {
    mem_estimate m;
    double d = s->dim, h = s->hidden, kv = kv_dim(s), chunk = tokens < 8192 ? tokens : 8192;
    double widths = 3 * d + h;
    m.activations = 4.0 * (tokens * d + chunk * (d + widths) + chunk * (4 * d + 2 * h));
    m.hessians = 4.0 * (3 * d * d + h * h);
    double ws_qo = 4.0 * (2 * d * d + 3 * d * d), ws_gate = 4.0 * (2 * h * d + 3 * d * d);
    double ws_down = 4.0 * (2 * d * h + 3 * h * h), ws_kv = 4.0 * (2 * kv * d + 3 * d * d);
    m.solver = fmax(fmax(ws_qo, ws_gate), fmax(ws_down, ws_kv));
    /* Two blocks as float32 (compress_estimate's bound: the one worked on and one more), and the
     * embedding and classifier, which a streamed model keeps resident in float32. */
    m.block = 2.0 * 4.0 * (block_linear_params(s) + 2 * d);
    m.embed_head = 4.0 * 2.0 * s->vocab * d;
    m.streamed = m.activations + m.hessians + m.solver + m.block + m.embed_head;
    double params = s->layers * (block_linear_params(s) + 2 * d) + 2.0 * s->vocab * d + d;
    m.whole_f32 = m.activations + m.hessians + m.solver + 4.0 * params;
    return m;
}

/* ---- the benchmark ------------------------------------------------------------------------- */

#define CALIB_NSEQ 16
#define CALIB_LEN 2048
#define PROJ_NSEQ 128
#define EVAL_WINDOWS 2

typedef struct {
    const shape *s;
    const char *sparq, *dir, *scratch;
    char data[1024], tok[1200], calib[1200], text[1200];
    bool solvers;
} bench;

/* Averages of the per-block seconds in compress's --json record. */
typedef struct { double forward, hessians, solve; int n; } block_times;

static int run_compress(const bench *b, const char *model, bool with_blocks, child *c) {
    char nseq[16], len[16];
    snprintf(nseq, sizeof nseq, "%d", CALIB_NSEQ);
    snprintf(len, sizeof len, "%d", CALIB_LEN);
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)b->sparq;
    argv[n++] = "compress";
    argv[n++] = "--model";       argv[n++] = (char *)model;
    argv[n++] = "--tokenizer";   argv[n++] = (char *)b->tok;
    argv[n++] = "--calib";       argv[n++] = (char *)b->calib;
    argv[n++] = "--nsamples";    argv[n++] = nseq;
    argv[n++] = "--calib-seqlen"; argv[n++] = len;
    argv[n++] = "--solver";      argv[n++] = "sparsegpt";
    argv[n++] = "--sparsity";    argv[n++] = "0.5";
    argv[n++] = "--threads";     argv[n++] = "2";
    if (with_blocks) { argv[n++] = "--blocks"; argv[n++] = "0-1"; }
    argv[n++] = "--json";
    argv[n] = NULL;
    return child_run(argv, b->scratch, c);
}

static bool fits_as_f32(const shape *s) {
    mem_estimate m = memory_estimate(s, (double)CALIB_NSEQ * CALIB_LEN);
    return m.whole_f32 < 0.85 * clock_memory_bytes();
}

/* compress on blocks 0-1. A sparq without --blocks loads the whole model as f32 (27 GB for 7B)
 * and compresses every block: then the same shape cut to 2 layers stands in, since a block's
 * times depend only on its shapes and the calibration tokens; its peak RSS is not the whole
 * model's. Fills t; false when no record was obtained. */
static bool bench_compress(const bench *b, block_times *t, bool *has_blocks) {
    child c;
    memset(t, 0, sizeof *t);
    *has_blocks = true;
    if (run_compress(b, b->dir, true, &c)) { printf("# compress: could not start %s\n", b->sparq); return false; }
    int layers = b->s->layers;
    if (c.status != 0 && strstr(c.last_err, "--blocks")) {
        printf("# compress: this sparq rejects --blocks (%s)\n", c.last_err);
        *has_blocks = false;
        free(c.out);
        shape cut = *b->s;
        cut.layers = layers = 2;
        static char dir[4300];
        snprintf(dir, sizeof dir, "%s-2layers", b->dir);
        printf("# compress: on the %s shape cut to 2 layers instead: %s\n", b->s->name, dir);
        gen_result g;
        err e = {0};
        if (checkpoint_generate(&cut, dir, &g, &e)) { printf("# compress: %s\n", e.msg); return false; }
        if (run_compress(b, dir, false, &c)) return false;
    }
    printf("compress.model_layers %d\n", layers);
    printf("compress.exit %d\n", c.status);
    printf("compress.wall_s %.2f\n", c.seconds);
    printf("compress.peak_rss_mb %.1f\n", c.rss_mb);
    cJSON *j = c.status == 0 && c.out ? cJSON_Parse(c.out) : NULL;
    free(c.out);
    if (!j) {
        printf("# compress failed: %s\n", c.last_err);
        return false;
    }
    printf("compress.seconds_calib %.3f\n", json_num(j, "seconds", "calib"));
    printf("compress.seconds_compress %.3f\n", json_num(j, "seconds", "compress"));
    printf("compress.seconds_total %.3f\n", json_num(j, "seconds", "total"));
    const cJSON *blocks = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "seconds"), "blocks");
    const cJSON *x;
    double last_f = 0;
    cJSON_ArrayForEach(x, blocks) {
        double f = json_num(x, "forward", NULL), h = json_num(x, "hessians", NULL), s = json_num(x, "solve", NULL);
        last_f = f;
        int i = (int)json_num(x, "block", NULL);
        printf("compress.block%d.forward_s %.3f\n", i, f);
        printf("compress.block%d.hessians_s %.3f\n", i, h);
        printf("compress.block%d.solve_s %.3f\n", i, s);
        t->forward += f, t->hessians += h, t->solve += s, t->n++;
    }
    cJSON_Delete(j);
    if (t->n == 0) { printf("# compress: no seconds.blocks in the record\n"); return false; }
    /* The last block compressed is not propagated (nothing reads its outputs): one forward pass
     * where the others have two (capture and propagation). Counted as two at its own rate. */
    t->forward += last_f;
    t->forward /= t->n, t->hessians /= t->n, t->solve /= t->n;
    return true;
}

static void bench_inspect_eval(const bench *b) {
    child c;
    char *inspect[] = {(char *)b->sparq, "inspect", "--model", (char *)b->dir, NULL};
    if (child_run(inspect, b->scratch, &c) == 0) {
        printf("inspect.exit %d\n", c.status);
        printf("inspect.wall_s %.2f\n", c.seconds);
        printf("inspect.peak_rss_mb %.1f\n", c.rss_mb);
        if (c.status) printf("# inspect failed: %s\n", c.last_err);
        free(c.out);
    }
    char limit[16], len[16];
    snprintf(limit, sizeof limit, "%d", EVAL_WINDOWS);
    snprintf(len, sizeof len, "%d", CALIB_LEN);
    char *eval[] = {(char *)b->sparq, "eval", "--model", (char *)b->dir, "--tokenizer", (char *)b->tok,
                    "--text", (char *)b->text, "--seqlen", len, "--limit", limit, "--threads", "2",
                    "--json", NULL};
    if (child_run(eval, b->scratch, &c) == 0) {
        cJSON *j = c.status == 0 && c.out ? cJSON_Parse(c.out) : NULL;
        printf("eval.exit %d\n", c.status);
        printf("eval.wall_s %.2f\n", c.seconds);
        printf("eval.peak_rss_mb %.1f\n", c.rss_mb);
        if (j) {
            printf("eval.windows %.0f\n", json_num(j, "sequences", NULL));
            printf("eval.tokens_forward %.0f\n", json_num(j, "tokens_forward", NULL));
            printf("eval.seconds %.3f\n", json_num(j, "seconds", NULL));
            /* What the child did besides scoring: loading the model, the tokenizer and the text. */
            printf("eval.load_s %.2f\n", c.seconds - json_num(j, "seconds", NULL));
            printf("eval.tokens_per_s %.1f\n", json_num(j, "tokens_per_s", NULL));
            printf("eval.ppl %.4f\n", json_num(j, "ppl", NULL));
        } else {
            printf("# eval failed: %s\n", c.last_err);
        }
        cJSON_Delete(j);
        free(c.out);
    }
}

/* Whole-model time at PROJ_NSEQ x CALIB_LEN tokens: forward and Hessians grow with the tokens,
 * the solvers do not. The yardstick: all its FLOPs at the 2-thread sgemm peak. */
static void project(const shape *s, const char *tag, double fwd, double hess, double solve, double peak2) {
    double scale = (double)PROJ_NSEQ / CALIB_NSEQ, tokens = (double)PROJ_NSEQ * CALIB_LEN;
    double block = fwd * scale + hess * scale + solve, total = s->layers * block;
    double flops = s->layers * (forward_flops(s, PROJ_NSEQ, CALIB_LEN) + hessian_flops(s, tokens) +
                                block_solver_flops(s));
    double bound = flops / (peak2 * 1e9);
    printf("%s.block_s %.1f\n", tag, block);
    printf("%s.total_s %.0f\n", tag, total);
    printf("%s.total_h %.2f\n", tag, total / 3600);
    printf("%s.flops %.4g\n", tag, flops);
    printf("%s.flops_at_sgemm_peak_s %.0f\n", tag, bound);
    printf("%s.ratio_to_sgemm_bound %.2f\n", tag, total / bound);
}

static int bench_run(bench *b) {
    const shape *s = b->s;
    err e = {0};
    double params = s->layers * (block_linear_params(s) + 2.0 * s->dim) + 2.0 * s->vocab * s->dim + s->dim;
    /* The machine may be shared: the load says how far to trust the timings below. */
    double load = NAN;
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf", &load) != 1) load = NAN;
        fclose(la);
    }
    printf("machine.loadavg_1min_at_start %.2f\n", load);
    printf("shape %s\n", s->name);
    printf("shape.dim %d\nshape.hidden %d\nshape.layers %d\nshape.heads %d\nshape.kv_heads %d\n"
           "shape.vocab %d\nshape.params %.0f\n", s->dim, s->hidden, s->layers, s->heads, s->kv_heads,
           s->vocab, params);

    gen_result g;
    printf("checkpoint.dir %s\n", b->dir);
    fflush(stdout);
    if (checkpoint_generate(s, b->dir, &g, &e)) {
        fprintf(stderr, "bench-scale: %s\n", e.msg);
        return err_exit_status(e.code);
    }
    printf("checkpoint.bytes %llu\n", (unsigned long long)g.bytes);
    printf("checkpoint.shards %d\n", g.shards);
    printf("checkpoint.reused %d\n", g.written == 0);
    if (g.written) {
        printf("checkpoint.write_s %.2f\n", g.seconds);
        printf("checkpoint.write_mb_per_s %.1f\n", g.written / 1e6 / g.seconds);
    }

    double peak[3];
    blas_set_threads(2);   /* also makes OpenBLAS single-threaded: one sgemm per OpenMP thread */
    for (int th = 1; th <= 2; th++) {
        peak[th] = bench_sgemm_gflops(2048, 2048, 2048, th, 10, 0.05);
        printf("sgemm.2048.threads%d_gflops %.1f\n", th, peak[th]);
    }
    fflush(stdout);

    block_times bt;
    bool has_blocks, have = bench_compress(b, &bt, &has_blocks);
    /* --blocks comes with f16 weights streamed block by block (issue 17); without it the whole
     * model is loaded as f32, and a model that does not fit would only be killed. */
    if (has_blocks || fits_as_f32(s)) bench_inspect_eval(b);
    else printf("# inspect and eval skipped: this sparq loads the whole model as f32, which does not fit\n");

    double tokens = (double)CALIB_NSEQ * CALIB_LEN, fwd_gf = NAN, hess_gf = NAN;
    if (have) {
        fwd_gf = forward_flops(s, CALIB_NSEQ, CALIB_LEN) / bt.forward / 1e9;
        hess_gf = hessian_flops(s, tokens) / bt.hessians / 1e9;
        printf("calib.blocks_measured %d\n", bt.n);
        printf("calib.forward_s_per_block %.3f\n", bt.forward);
        printf("calib.hessians_s_per_block %.3f\n", bt.hessians);
        printf("calib.solve_s_per_block %.3f\n", bt.solve);
        printf("calib.forward_gflops %.1f\n", fwd_gf);
        printf("calib.forward_pct_of_peak %.1f\n", 100 * fwd_gf / peak[2]);
        printf("calib.hessians_gflops %.1f\n", hess_gf);
        printf("calib.solve_gflops %.1f\n", block_solver_flops(s) / bt.solve / 1e9);
    }
    fflush(stdout);

    double sec[N_SOLVERS][3];
    if (b->solvers) time_solvers(sec);

    mem_estimate m = memory_estimate(s, (double)PROJ_NSEQ * CALIB_LEN);
    printf("projection.calib_tokens %d\n", PROJ_NSEQ * CALIB_LEN);
    printf("projection.memory.activations_gb %.2f\n", m.activations / 1e9);
    printf("projection.memory.hessians_gb %.2f\n", m.hessians / 1e9);
    printf("projection.memory.solver_gb %.2f\n", m.solver / 1e9);
    printf("projection.memory.two_blocks_f32_gb %.2f\n", m.block / 1e9);
    printf("projection.memory.embed_head_f32_gb %.2f\n", m.embed_head / 1e9);
    printf("projection.memory.streamed_total_gb %.2f\n", m.streamed / 1e9);
    printf("projection.memory.whole_f32_total_gb %.2f\n", m.whole_f32 / 1e9);
    printf("machine.memory_gb %.2f\n", clock_memory_bytes() / 1e9);
    if (have) project(s, "projection", bt.forward, bt.hessians, bt.solve, peak[2]);

    /* 7B from its parts, for a run on a smaller shape (or as a cross-check on 7B): the forward and
     * Hessians at the rates this run achieved, the solvers as timed directly on 7B's shapes. */
    const shape *s7 = shape_find("7b");
    if (have && b->solvers) {
        double solve7 = 0;
        for (int k = 0; k < 3; k++) solve7 += shapes_7b[k].count * sec[0][k];
        double f7 = forward_flops(s7, CALIB_NSEQ, CALIB_LEN) / (fwd_gf * 1e9);
        double h7 = hessian_flops(s7, tokens) / (hess_gf * 1e9);
        printf("projection_7b_from_parts.solve_s_per_block %.2f\n", solve7);
        project(s7, "projection_7b_from_parts", f7, h7, solve7, peak[2]);
    }
    return 0;
}

/* SCALE_DIR, else TMPDIR, else /tmp. */
static const char *scratch_dir(void) {
    const char *d = getenv("SCALE_DIR");
    if (!d || !*d) d = getenv("TMPDIR");
    return d && *d ? d : "/tmp";
}

static int usage(void) {
    fprintf(stderr, "usage: bench-scale [--shape 7b|1b|tiny] [--sparq BIN] [--no-solvers]\n"
                    "       bench-scale gen 7b|1b|tiny DIR   (only write the checkpoint)\n"
                    "scratch folder: $SCALE_DIR, else $TMPDIR, else /tmp\n");
    return 2;
}

int main(int argc, char **argv) {
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    /* A file-size limit must fail the write (EFBIG, then the temporary is removed), not kill us
     * with the temporary left behind. */
    signal(SIGXFSZ, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "gen") == 0) {
        if (argc != 4) return usage();
        const shape *s = shape_find(argv[2]);
        if (!s) { fprintf(stderr, "bench-scale: unknown shape %s (7b, 1b, tiny)\n", argv[2]); return 2; }
        gen_result g;
        err e = {0};
        if (checkpoint_generate(s, argv[3], &g, &e)) { fprintf(stderr, "bench-scale: %s\n", e.msg); return err_exit_status(e.code); }
        printf("checkpoint.dir %s\ncheckpoint.bytes %llu\ncheckpoint.shards %d\ncheckpoint.reused %d\n",
               argv[3], (unsigned long long)g.bytes, g.shards, g.written == 0);
        if (g.written) printf("checkpoint.write_s %.2f\ncheckpoint.write_mb_per_s %.1f\n", g.seconds,
                              g.written / 1e6 / g.seconds);
        return 0;
    }
    bench b = {.s = shape_find("7b"), .sparq = "./sparq", .solvers = true};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc) {
            if (!(b.s = shape_find(argv[++i]))) {
                fprintf(stderr, "bench-scale: unknown shape %s (7b, 1b, tiny)\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--sparq") == 0 && i + 1 < argc) {
            b.sparq = argv[++i];
        } else if (strcmp(argv[i], "--no-solvers") == 0) {
            b.solvers = false;
        } else {
            return usage();
        }
    }
    err e = {0};
    if (data_root(b.data, sizeof b.data, &e)) { fprintf(stderr, "bench-scale: %s\n", e.msg); return 2; }
    snprintf(b.tok, sizeof b.tok, "%s/llama2-tokenizer/tokenizer.bin", b.data);
    snprintf(b.calib, sizeof b.calib, "%s/text/c4-en-train-first1000.jsonl", b.data);
    snprintf(b.text, sizeof b.text, "%s/text/wiki.test.raw", b.data);
    if (access(b.sparq, X_OK) != 0) { fprintf(stderr, "bench-scale: %s: not an executable (make sparq)\n", b.sparq); return 2; }
    static char dir[4200];
    b.scratch = scratch_dir();
    snprintf(dir, sizeof dir, "%s/sparq-scale-%s", b.scratch, b.s->name);
    b.dir = dir;
    return bench_run(&b);
}
