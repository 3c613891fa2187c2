/* bench-formats: load time and peak RSS of a generated checkpoint shaped like a 1.1B-parameter
 * LLaMA (TinyLlama-1.1B: dim 2048, hidden 5632, 22 layers, 32 heads, 4 kv heads, 32000 tokens,
 * untied), random f16 weights in one ~2.2 GB safetensors file + config.json written into /tmp.
 * Each load runs in a fresh child process, so its peak RSS is the loader's alone: first with the
 * file dropped from the page cache (cold), then again (warm). The files are deleted at the end. */
#define _DEFAULT_SOURCE   /* statvfs, fork, posix_fadvise */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/clock.h"
#include "../core/forward.h"
#include "../core/model.h"

/* The full shape, and a quarter-depth fallback when /tmp has less than 6 GB free. */
#define DIM 2048
#define HIDDEN 5632
#define HEADS 32
#define KV_HEADS 4
#define VOCAB 32000
#define FULL_LAYERS 22
#define SMALL_LAYERS 5
#define NEED_FREE_BYTES (6ull << 30)

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static inline uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

typedef struct {
    char name[96];
    uint64_t rows, cols;     /* cols == 0: a norm vector */
} tensor;

static int list(tensor *t, int layers) {
    int n = 0;
    t[n++] = (tensor){"model.embed_tokens.weight", VOCAB, DIM};
    static const struct { const char *name; uint64_t r, c; } lin[] = {
        {"self_attn.q_proj", DIM, DIM}, {"self_attn.k_proj", DIM / HEADS * KV_HEADS, DIM},
        {"self_attn.v_proj", DIM / HEADS * KV_HEADS, DIM}, {"self_attn.o_proj", DIM, DIM},
        {"mlp.gate_proj", HIDDEN, DIM}, {"mlp.up_proj", HIDDEN, DIM}, {"mlp.down_proj", DIM, HIDDEN}};
    for (int l = 0; l < layers; l++) {
        snprintf(t[n].name, sizeof t[n].name, "model.layers.%d.input_layernorm.weight", l);
        t[n].rows = DIM, t[n++].cols = 0;
        snprintf(t[n].name, sizeof t[n].name, "model.layers.%d.post_attention_layernorm.weight", l);
        t[n].rows = DIM, t[n++].cols = 0;
        for (int k = 0; k < 7; k++) {
            snprintf(t[n].name, sizeof t[n].name, "model.layers.%d.%s.weight", l, lin[k].name);
            t[n].rows = lin[k].r, t[n++].cols = lin[k].c;
        }
    }
    t[n++] = (tensor){"model.norm.weight", DIM, 0};
    t[n++] = (tensor){"lm_head.weight", VOCAB, DIM};
    return n;
}

/* Random f16 bit patterns: sign, exponent 2^-12..2^-5, mantissa uniform (no inf/NaN); norms near 1. */
static void fill_f16(uint16_t *h, size_t n, int norm) {
    for (size_t i = 0; i < n; i++) {
        uint64_t r = next();
        if (norm) h[i] = (uint16_t)(0x3c00u | (r & 0xffu));            /* 1.0 .. 1.25 */
        else h[i] = (uint16_t)((r >> 63) << 15 | (uint16_t)(3 + (r >> 8) % 8) << 10 | (r & 0x3ffu));
    }
}

static int write_checkpoint(const char *dir, int layers, uint64_t *bytes) {
    tensor *t = calloc(4 + 9 * (size_t)layers, sizeof *t);
    int n = list(t, layers);
    size_t hcap = 256 * (size_t)n + 64, k = 0;
    char *h = malloc(hcap);
    uint64_t off = 0;
    k += (size_t)snprintf(h + k, hcap - k, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        uint64_t e = t[i].rows * (t[i].cols ? t[i].cols : 1) * 2;
        if (t[i].cols)
            k += (size_t)snprintf(h + k, hcap - k, ",\"%s\":{\"dtype\":\"F16\",\"shape\":[%llu,%llu],"
                                  "\"data_offsets\":[%llu,%llu]}", t[i].name, (unsigned long long)t[i].rows,
                                  (unsigned long long)t[i].cols, (unsigned long long)off,
                                  (unsigned long long)(off + e));
        else
            k += (size_t)snprintf(h + k, hcap - k, ",\"%s\":{\"dtype\":\"F16\",\"shape\":[%llu],"
                                  "\"data_offsets\":[%llu,%llu]}", t[i].name, (unsigned long long)t[i].rows,
                                  (unsigned long long)off, (unsigned long long)(off + e));
        off += e;
    }
    k += (size_t)snprintf(h + k, hcap - k, "}");
    while (k % 8) h[k++] = ' ';
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    FILE *f = fopen(p, "wb");
    if (!f) { perror(p); return -1; }
    uint64_t hl = k;
    fwrite(&hl, 8, 1, f);
    fwrite(h, 1, k, f);
    size_t chunk = 1 << 22;
    uint16_t *buf = malloc(chunk * 2);
    for (int i = 0; i < n; i++) {
        uint64_t left = t[i].rows * (t[i].cols ? t[i].cols : 1);
        while (left) {
            size_t c = left < chunk ? (size_t)left : chunk;
            fill_f16(buf, c, t[i].cols == 0);
            fwrite(buf, 2, c, f);
            left -= c;
        }
    }
    /* Flush to disk, then drop the file from the page cache so the first load reads the disk. */
    fflush(f);
    fsync(fileno(f));
    posix_fadvise(fileno(f), 0, 0, POSIX_FADV_DONTNEED);
    int bad = ferror(f) | fclose(f);
    free(buf);
    free(h);
    free(t);
    *bytes = 8 + hl + off;
    snprintf(p, sizeof p, "%s/config.json", dir);
    f = fopen(p, "w");
    fprintf(f, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": %d, "
            "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
            "\"num_key_value_heads\": %d, \"vocab_size\": %d, \"max_position_embeddings\": 2048, "
            "\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"tie_word_embeddings\": false, "
            "\"torch_dtype\": \"float16\"}\n", DIM, HIDDEN, layers, HEADS, KV_HEADS, VOCAB);
    bad |= fclose(f);
    return bad ? -1 : 0;
}

/* In a child: load, run 4 tokens through the model, report seconds, peak RSS and weight bytes. */
typedef struct {
    double seconds, rss_mb, forward_s;
    uint64_t params, weight_bytes;
    int ok;
} result;

static result load_in_child(const char *dir) {
    int fd[2];
    result r = {0};
    if (pipe(fd)) return r;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        result c = {0};
        model *m = NULL;
        err e = {0};
        double t0 = clock_seconds();
        if (model_load(&m, dir, &e) == 0) {
            c.seconds = clock_seconds() - t0;
            c.params = model_params(m);
            c.weight_bytes = (uint64_t)m->data_floats * sizeof(float);
            int toks[4] = {1, 450, 4996, 17354}, len = 4;
            float *logits = malloc(4 * (size_t)VOCAB * sizeof(float));
            fwd_batch b = {.n_seq = 1, .lens = &len, .n_tok = 4};
            fwd_scratch *s = fwd_scratch_new();
            t0 = clock_seconds();
            c.ok = forward_logits(m, toks, &b, logits, s, &e) == 0;
            c.forward_s = clock_seconds() - t0;
            fwd_scratch_free(s);
            free(logits);
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            c.rss_mb = ru.ru_maxrss / 1024.0;
            model_free(m);
        } else {
            fprintf(stderr, "bench-formats: %s\n", e.msg);
        }
        if (write(fd[1], &c, sizeof c) != (ssize_t)sizeof c) _exit(1);
        _exit(0);
    }
    close(fd[1]);
    if (read(fd[0], &r, sizeof r) != (ssize_t)sizeof r) r.ok = 0;
    close(fd[0]);
    waitpid(pid, NULL, 0);
    return r;
}

int main(void) {
    struct statvfs vs;
    int layers = FULL_LAYERS;
    if (statvfs("/tmp", &vs) == 0 && (uint64_t)vs.f_bavail * vs.f_frsize < NEED_FREE_BYTES) {
        layers = SMALL_LAYERS;
        printf("bench-formats: /tmp has %.1f GB free (< 6 GB): scaled down to %d layers\n",
               (double)vs.f_bavail * vs.f_frsize / 1e9, layers);
    }
    char dir[] = "/tmp/sparq-bench-formats-XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    uint64_t bytes = 0;
    double t0 = clock_seconds();
    int rc = write_checkpoint(dir, layers, &bytes);
    double wt = clock_seconds() - t0;
    if (rc == 0) {
        printf("checkpoint: %d layers, %.2f GB f16 safetensors written in %.1f s (%s)\n", layers, bytes / 1e9,
               wt, dir);
        const char *label[2] = {"cold (page cache dropped)", "warm (file in page cache)"};
        for (int run = 0; run < 2; run++) {
            result r = load_in_child(dir);
            if (!r.ok) { printf("load failed\n"); rc = 1; break; }
            double f32_mb = r.weight_bytes / 1048576.0, f16_mb = bytes / 1048576.0;
            printf("load %-26s %6.2f s  %.3fB params  peak RSS %6.0f MB = f32 weights %6.0f MB + %4.0f MB"
                   "  (the f16 file is %.0f MB; two full copies would be %.0f MB)  4-token forward %.2f s\n",
                   label[run], r.seconds, r.params / 1e9, r.rss_mb, f32_mb, r.rss_mb - f32_mb, f16_mb,
                   f32_mb + f16_mb, r.forward_s);
            if (r.rss_mb > f32_mb + f16_mb / 2) {
                printf("FAIL: peak RSS holds more than the weights plus half the file\n");
                rc = 1;
            }
        }
    }
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    remove(p);
    snprintf(p, sizeof p, "%s/config.json", dir);
    remove(p);
    rmdir(dir);
    return rc ? 1 : 0;
}
