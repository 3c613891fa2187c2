/* Hostile input through the command line: a table of malformed files for every reader (llama2.c
 * models and tokenizers, safetensors + config.json, GGUF, SentencePiece, tokenizer.json, sweep
 * configs, zero-shot task files, texts, run records), each of which must exit 2 with one line on
 * stderr naming the file and what is wrong; inputs that are only large must simply work. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "util.h"

typedef struct {
    char file[1400];     /* the path (or folder) the error line must name */
    char args[8192];     /* the sparq command line */
} made;

typedef struct {
    const char *what;
    void (*make)(made *m, long a, long b);
    long a, b;
    const char *needle;  /* what the line must say */
} hostile_row;

/* ---- fixtures ------------------------------------------------------------------------------ */

static char row_dir[1024];

static void row_begin(int i) {
    static char base[512];
    if (!base[0]) {
        snprintf(base, sizeof base, "%s", tmp_path("hostile"));
        mkdir(base, 0777);
    }
    snprintf(row_dir, sizeof row_dir, "%s/r%02d", base, i);
    mkdir(row_dir, 0777);
}

static const char *in_row(const char *name) {
    static char ring[4][1200];
    static int k;
    char *b = ring[k++ % 4];
    snprintf(b, sizeof ring[0], "%s/%s", row_dir, name);
    return b;
}

static const char *model_bin(void) {
    static char p[1024];
    if (!p[0]) snprintf(p, sizeof p, "%s", data_path("stories260K/stories260K.bin"));
    return p;
}

static const char *tok_bin(void) {
    static char p[1024];
    if (!p[0]) snprintf(p, sizeof p, "%s", data_path("stories260K/tok512.bin"));
    return p;
}

static char *slurp(const char *path, size_t *n) {
    char *b = read_all(path, n);
    cr_assert_not_null(b, "cannot read %s", path);
    return b;
}

static void put_file(const char *path, const void *b, size_t n) {
    cr_assert_eq(write_file(path, b, n), 0, "cannot write %s", path);
}

static void put_text(const char *path, const char *s) { put_file(path, s, strlen(s)); }

/* First occurrence of needle in b, or -1. */
static long find_bytes(const char *b, size_t n, const void *needle, size_t k) {
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(b + i, needle, k) == 0) return (long)i;
    return -1;
}

/* ---- llama2.c checkpoints -------------------------------------------------------------------- */

static void l2c_emit(made *m, const char *b, size_t n) {
    snprintf(m->file, sizeof m->file, "%s", in_row("model.bin"));
    put_file(m->file, b, n);
    snprintf(m->args, sizeof m->args, "inspect --model '%s'", m->file);
}

/* The first `keep` bytes, or (keep < 0) the whole file plus `extra` zero bytes. */
static void l2c_cut(made *m, long keep, long extra) {
    size_t n;
    char *b = slurp(model_bin(), &n);
    if (keep >= 0) n = (size_t)keep;
    b = realloc(b, n + (size_t)extra + 1);
    memset(b + n, 0, (size_t)extra);
    l2c_emit(m, b, n + (size_t)extra);
    free(b);
}

/* Header field `field` (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len) set to v. */
static void l2c_field(made *m, long field, long v) {
    size_t n;
    char *b = slurp(model_bin(), &n);
    int32_t x = (int32_t)v;
    memcpy(b + 4 * field, &x, 4);
    l2c_emit(m, b, n);
    free(b);
}

/* Weight number `at` (counted after the 28-byte header) made NaN (inf == 0) or +Inf. */
static void l2c_nonfinite(made *m, long at, long inf) {
    size_t n;
    char *b = slurp(model_bin(), &n);
    float x = inf ? INFINITY : NAN;
    memcpy(b + 28 + 4 * at, &x, 4);
    l2c_emit(m, b, n);
    free(b);
}

/* stories3M-q80.bin (llama2.c version 2, Q8_0): what 0: cut to v bytes; 1: group_size = v;
 * 2: layer 2's wk scale v made NaN; 3: v trailing zero bytes. */
static void q80_make(made *m, long what, long v) {
    size_t n;
    char *b = slurp(data_path("stories3M/stories3M-q80.bin"), &n);
    b = realloc(b, n + 64);
    if (what == 0) n = (size_t)v;
    if (what == 1) { int32_t g = (int32_t)v; memcpy(b + 37, &g, 4); }
    if (what == 2) {
        /* 256-byte header, 13 float32 norms of 192, the embedding (4096 x 192 int8 + scales),
         * 6 x wq (192 x 192 + scales), 2 x wk (64 x 192 + scales), then layer 2's wk int8. */
        size_t off = 256 + 13 * 192 * 4 + 4096 * 192 * 17 / 16 + 6 * 192 * 192 * 17 / 16 +
                     2 * 64 * 192 * 17 / 16 + 64 * 192 + 4 * (size_t)v;
        float x = NAN;
        memcpy(b + off, &x, 4);
    }
    if (what == 3) { memset(b + n, 0, (size_t)v); n += (size_t)v; }
    l2c_emit(m, b, n);
    free(b);
}

/* ---- tokenizer.bin --------------------------------------------------------------------------- */

static void tok_emit(made *m, const char *name, const char *b, size_t n) {
    snprintf(m->file, sizeof m->file, "%s", in_row(name));
    put_file(m->file, b, n);
    snprintf(m->args, sizeof m->args, "generate --model '%s' --tokenizer '%s' -n 2", model_bin(), m->file);
}

static void tok_cut(made *m, long keep, long unused) {
    (void)unused;
    size_t n;
    char *b = slurp(tok_bin(), &n);
    tok_emit(m, "tok.bin", b, (size_t)keep < n ? (size_t)keep : n);
    free(b);
}

/* The length of token `id` set to len (id < 0: the max_token_length header). */
static void tok_len(made *m, long id, long len) {
    size_t n;
    char *b = slurp(tok_bin(), &n);
    size_t pos = 4;
    for (long i = 0; i < id; i++) {
        int32_t l;
        memcpy(&l, b + pos + 4, 4);
        pos += 8 + (size_t)l;
    }
    int32_t x = (int32_t)len;
    memcpy(id < 0 ? b : b + pos + 4, &x, 4);
    tok_emit(m, "tok.bin", b, n);
    free(b);
}

/* ---- safetensors + config.json --------------------------------------------------------------- */

enum { ST_HLEN, ST_PAST_END, ST_OVERLAP, ST_DTYPE, ST_SHAPE_VS_CONFIG, ST_BAD_JSON, ST_MISSING_KEY,
       ST_CONFIG_NOT_JSON, ST_HUGE_LAYERS, ST_HUGE_CONTEXT, ST_NAN, ST_MISSING_TENSOR, ST_BAD_SHAPE };

/* stories260K as a Hugging Face folder, converted once per process. */
static const char *hf_source(void) {
    static char dir[1024];
    if (dir[0]) return dir;
    snprintf(dir, sizeof dir, "%s/", tmp_path("hf-src"));
    char args[4096], *out, *er;
    snprintf(args, sizeof args, "convert --model '%s' --out '%s'", model_bin(), dir);
    int st = run_sparq(args, &out, &er);
    cr_assert_eq(st, 0, "convert to safetensors: %s", er);
    free(out);
    free(er);
    return dir;
}

static void json_set_offsets(cJSON *h, const char *name, double a, double b) {
    cJSON *of = cJSON_GetObjectItem(cJSON_GetObjectItem(h, name), "data_offsets");
    cJSON_ReplaceItemInArray(of, 0, cJSON_CreateNumber(a));
    cJSON_ReplaceItemInArray(of, 1, cJSON_CreateNumber(b));
}

static void st_make(made *m, long kind, long unused) {
    (void)unused;
    char src[1200];
    size_t n, cn;
    snprintf(src, sizeof src, "%smodel.safetensors", hf_source());
    char *b = slurp(src, &n);
    snprintf(src, sizeof src, "%sconfig.json", hf_source());
    char *cfg = slurp(src, &cn);
    uint64_t hlen;
    memcpy(&hlen, b, 8);
    cJSON *h = cJSON_ParseWithLength(b + 8, (size_t)hlen), *c = cJSON_Parse(cfg);
    cr_assert(h && c);
    const char *data = b + 8 + hlen;
    size_t dlen = n - 8 - (size_t)hlen;
    char *raw = NULL;            /* a header that is not JSON */
    bool cut_len = false;
    switch (kind) {
    case ST_HLEN: cut_len = true; break;
    case ST_PAST_END: json_set_offsets(h, "model.norm.weight", (double)dlen, (double)dlen + 256); break;
    case ST_OVERLAP: json_set_offsets(h, "model.norm.weight", 131072, 131328); break;
    case ST_DTYPE:
        cJSON_ReplaceItemInObject(cJSON_GetObjectItem(h, "model.layers.1.mlp.up_proj.weight"), "dtype",
                                  cJSON_CreateString("F8_E4M3"));
        break;
    case ST_SHAPE_VS_CONFIG: cJSON_ReplaceItemInObject(c, "intermediate_size", cJSON_CreateNumber(176)); break;
    case ST_BAD_JSON: raw = strdup("{\"model.norm.weight\": {\"dtype\": \"F32\", \"shape\": [64], "); break;
    case ST_MISSING_KEY: cJSON_DeleteItemFromObject(c, "hidden_size"); break;
    case ST_CONFIG_NOT_JSON: break;
    case ST_HUGE_LAYERS: cJSON_ReplaceItemInObject(c, "num_hidden_layers", cJSON_CreateNumber(16000000)); break;
    case ST_HUGE_CONTEXT:
        cJSON_ReplaceItemInObject(c, "max_position_embeddings", cJSON_CreateNumber(16777216));
        cJSON_ReplaceItemInObject(c, "head_dim", cJSON_CreateNumber(1 << 20));
        break;
    case ST_NAN: break;
    case ST_MISSING_TENSOR: cJSON_DeleteItemFromObject(h, "model.layers.4.post_attention_layernorm.weight"); break;
    case ST_BAD_SHAPE: {
        cJSON *sh = cJSON_GetObjectItem(cJSON_GetObjectItem(h, "model.layers.0.self_attn.k_proj.weight"), "shape");
        cJSON_ReplaceItemInArray(sh, 0, cJSON_CreateNumber(-32));
        break;
    }
    }
    char *hs = raw ? raw : cJSON_PrintUnformatted(h);
    uint64_t nh = strlen(hs);
    char *out = malloc(8 + nh + dlen);
    uint64_t wl = cut_len ? (uint64_t)n : nh;    /* claims more than the whole file */
    memcpy(out, &wl, 8);
    memcpy(out + 8, hs, nh);
    memcpy(out + 8 + nh, data, dlen);
    if (kind == ST_NAN) {
        /* The first element of layer 2's down projection. */
        cJSON *of = cJSON_GetObjectItem(cJSON_GetObjectItem(h, "model.layers.2.mlp.down_proj.weight"), "data_offsets");
        float x = NAN;
        memcpy(out + 8 + nh + (size_t)cJSON_GetArrayItem(of, 0)->valuedouble, &x, 4);
    }
    const char *dir = in_row("hf");
    mkdir(dir, 0777);
    char p[1300];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    put_file(p, out, 8 + nh + dlen);
    snprintf(p, sizeof p, "%s/config.json", dir);
    char *cs = cJSON_Print(c);
    put_text(p, kind == ST_CONFIG_NOT_JSON ? "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64,," : cs);
    snprintf(m->file, sizeof m->file, "%s", dir);
    snprintf(m->args, sizeof m->args, "inspect --model '%s'", dir);
    free(cs);
    free(hs);
    free(out);
    cJSON_Delete(h);
    cJSON_Delete(c);
    free(b);
    free(cfg);
}

/* ---- GGUF ------------------------------------------------------------------------------------ */

enum { GG_MAGIC, GG_VERSION, GG_TRUNCATED, GG_OFFSET, GG_TYPE, GG_HUGE_STRING, GG_HUGE_ARRAY,
       GG_HUGE_COUNTS, GG_HUGE_LAYERS, GG_NAN, GG_NO_ARCH };

/* stories260K with its vocabulary as GGUF, converted once per process. */
static const char *gguf_source(void) {
    static char path[1024];
    if (path[0]) return path;
    snprintf(path, sizeof path, "%s", tmp_path("src.gguf"));
    char args[4096], *out, *er;
    snprintf(args, sizeof args, "convert --model '%s' --tokenizer '%s' --out '%s'", model_bin(), tok_bin(), path);
    int st = run_sparq(args, &out, &er);
    cr_assert_eq(st, 0, "convert to gguf: %s", er);
    free(out);
    free(er);
    return path;
}

/* Offset just after the GGUF string `s` (u64 length + bytes) in b. */
static long after_str(const char *b, size_t n, const char *s) {
    size_t k = strlen(s);
    char *pat = malloc(8 + k);
    uint64_t len = k;
    memcpy(pat, &len, 8);
    memcpy(pat + 8, s, k);
    long at = find_bytes(b, n, pat, 8 + k);
    free(pat);
    cr_assert(at >= 0, "%s not found in the GGUF", s);
    return at + 8 + (long)k;
}

static void gg_make(made *m, long kind, long unused) {
    (void)unused;
    size_t n;
    char *b = slurp(gguf_source(), &n);
    uint32_t u32;
    uint64_t u64;
    long at;
    switch (kind) {
    case GG_MAGIC: b[0] = 'g'; break;
    case GG_VERSION: u32 = 7; memcpy(b + 4, &u32, 4); break;
    case GG_TRUNCATED: n = 3000; break;     /* inside the vocabulary */
    case GG_OFFSET:
        /* name, n_dims, ne[0], ne[1], type, then the offset */
        at = after_str(b, n, "blk.3.attn_v.weight") + 4 + 16 + 4;
        u64 = (uint64_t)1 << 40;
        memcpy(b + at, &u64, 8);
        break;
    case GG_TYPE:
        at = after_str(b, n, "blk.2.ffn_gate.weight") + 4 + 16;
        u32 = 99;
        memcpy(b + at, &u32, 4);
        break;
    case GG_HUGE_STRING:
        at = after_str(b, n, "general.name") + 4;   /* the value's length */
        u64 = (uint64_t)1 << 60;
        memcpy(b + at, &u64, 8);
        break;
    case GG_HUGE_ARRAY:
        at = after_str(b, n, "tokenizer.ggml.scores") + 4 + 4;   /* array type, element type, count */
        u64 = (uint64_t)1 << 61;
        memcpy(b + at, &u64, 8);
        break;
    case GG_HUGE_COUNTS: u64 = (uint64_t)1 << 50; memcpy(b + 8, &u64, 8); break;
    case GG_HUGE_LAYERS:
        at = after_str(b, n, "llama.block_count") + 4;
        u32 = 16000000;
        memcpy(b + at, &u32, 4);
        break;
    case GG_NAN: {
        /* The writer puts blk.4.ffn_down.weight last: its last element ends the file. */
        float x = INFINITY;
        memcpy(b + n - 4, &x, 4);
        break;
    }
    case GG_NO_ARCH:
        at = after_str(b, n, "general.architecture") - 4;
        memcpy(b + at, "arcx", 4);
        break;
    }
    snprintf(m->file, sizeof m->file, "%s", in_row("model.gguf"));
    put_file(m->file, b, n);
    snprintf(m->args, sizeof m->args, "inspect --model '%s'", m->file);
    free(b);
}

/* ---- SentencePiece tokenizer.model and tokenizer.json ----------------------------------------- */

/* tok512.model with bytes appended: a lone continuation byte (a varint cut short) or a field
 * key with wire type 7. */
static void spm_make(made *m, long byte, long unused) {
    (void)unused;
    size_t n;
    char *b = slurp(data_path("stories260K/tok512.model"), &n);
    b = realloc(b, n + 1);
    b[n] = (char)byte;
    tok_emit(m, "tokenizer.model", b, n + 1);
    free(b);
}

static void json_tok_make(made *m, long kind, long unused) {
    (void)unused;
    const char *t = kind == 0 ? "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"<unk>\": 0,"
                              : "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"<unk>\": 0}}}";
    tok_emit(m, "tokenizer.json", t, strlen(t));
}

/* ---- sweep configs --------------------------------------------------------------------------- */

static const char *const ini_text[] = {
    /* 0: an unknown key */
    "[sweep]\nmodel = stories260K/stories260K.bin\ncalib = self\nnsampels = 4\neval.ppl = text/wiki.test.raw\n",
    /* 1: a bad value */
    "[sweep]\nmodel = stories260K/stories260K.bin\ncalib = self\nnsamples = -3\neval.ppl = text/wiki.test.raw\n",
    /* 2: keys before any section */
    "model = stories260K/stories260K.bin\n[sweep]\ncalib = self\n",
    /* 3: no model */
    "[sweep]\ncalib = self\neval.ppl = text/wiki.test.raw\n",
    /* 4: a grid without a solver */
    "[sweep]\nmodel = stories260K/stories260K.bin\ncalib = self\neval.ppl = text/wiki.test.raw\n"
    "[grid.a]\nsparsity = 0.5\n",
    /* 5: a model that does not exist */
    "[sweep]\nmodel = no/such/model.bin\ncalib = self\neval.ppl = text/wiki.test.raw\n",
    /* 6: a line that is not key = value */
    "[sweep]\nmodel = stories260K/stories260K.bin\ncalib self\n",
    /* 7: an unknown perplexity protocol */
    "[sweep]\nmodel = stories260K/stories260K.bin\ncalib = self\neval.ppl = text/wiki.test.raw:pages\n",
};

static void ini_make(made *m, long which, long unused) {
    (void)unused;
    snprintf(m->file, sizeof m->file, "%s", in_row("sweep.ini"));
    if (which < 0) {
        /* A value longer than inih's 200-byte line buffer, which would split it in two. */
        char text[4096];
        int w = snprintf(text, sizeof text, "[sweep]\nmodel = stories260K/stories260K.bin\ncalib = self\n"
                         "eval.ppl = text/wiki.test.raw\n[grid.a]\nsolver = magnitude\nsparsity = 0.5");
        for (int i = 0; i < 40; i++) w += snprintf(text + w, sizeof text - (size_t)w, ", 0.%d5", i % 9 + 1);
        snprintf(text + w, sizeof text - (size_t)w, "\n");
        put_text(m->file, text);
    } else {
        put_text(m->file, ini_text[which]);
    }
    snprintf(m->args, sizeof m->args, "sweep '%s' --out '%s' --dry-run", m->file, in_row("out"));
    if (which == 5) snprintf(m->file, sizeof m->file, "no/such/model.bin");   /* the file that is missing */
}

/* ---- zero-shot task files -------------------------------------------------------------------- */

/* Items with nothing to score (empty or whitespace-only text, no choices, a continuation that
 * tokenizes to nothing) are refused naming the line and the field; blank lines are skipped but
 * counted. */
#define PIQA_OK "{\"goal\": \"a\", \"sol1\": \"b\", \"sol2\": \"c\", \"label\": 0}\n"
#define ARC_CHOICES "[{\"text\": \"x\", \"label\": \"A\"}, {\"text\": \"y\", \"label\": \"B\"}]"
#define HS_ITEM(ctx_a, ctx_b, endings) \
    "{\"ctx_a\": \"" ctx_a "\", \"ctx_b\": \"" ctx_b "\", \"activity_label\": \"c\", \"label\": 0, \"endings\": " endings "}\n"
#define WINO_ITEM(sentence, o1) \
    "{\"sentence\": \"" sentence "\", \"option1\": \"" o1 "\", \"option2\": \"y\", \"answer\": \"1\"}\n"
static const struct { const char *task, *data, *labels; } task_files[] = {
    /* 0 */ {"piqa", "{\"goal\": \"a\", \"sol1\": \"b\"}\n", "0\n"},
    /* 1 */ {"piqa", "{\"goal\": \"a\", \"sol1\": \"b\", \"sol2\": \"c\"}\n{\"goal\": \"a\", \"sol1\": \"b\", \"sol2\": \"c\"}\n", "0\n2\n"},
    /* 2 */ {"piqa", "{\"goal\": \"a\", \"sol1\": \"b\", \"sol2\": \"c\"}\n{\"goal\": \"a\", \"sol1\": \"b\", \"sol2\": \"c\"}\n", "1\n"},
    /* 3 */ {"arc_easy", "{\"question\": {\"stem\": \"q\", \"choices\": [{\"text\": \"x\", \"label\": \"A\"}, "
                         "{\"text\": \"y\", \"label\": \"B\"}]}, \"answerKey\": \"E\"}\n", NULL},
    /* 4 */ {"hellaswag", "{\"ctx_a\": \"a\", \"ctx_b\": \"b\", \"activity_label\": \"c\", \"label\": 7, "
                          "\"endings\": [\"x\", \"y\", \"z\", \"w\"]}\n", NULL},
    /* 5 */ {"winogrande", "{\"sentence\": \"a _ b\", \"option1\": \"x\", \"option2\": \"y\", \"answer\": \"1\"}\n"
                           "this is not JSON\n", NULL},
    /* 6 */ {"winogrande", "{\"sentence\": \"a _ b\", \"option1\": \"x\", \"option2\": \"y\", \"answer\": \"\"}\n"
                           "{\"sentence\": \"c _ d\", \"option1\": \"x\", \"option2\": \"y\", \"answer\": \"\"}\n", "1\n"},
    /* 7 */ {"boolq", "{\"question\": \"q\", \"passage\": \"p\"}\n", NULL},
    /* 8 */ {"lambada", "[\"text\", \"a list, not an object\"]\n", NULL},
    /* 9 */ {"lambada", "{\"txt\": \"no text field\"}\n", NULL},
    /* 10 */ {"cloze", "", NULL},
    /* 11 */ {"ending", "One sentence only.\n", NULL},
    /* 12 */ {"hellaswag", "{\"ctx_a\": \"a\", \"ctx_b\": \"b\", \"activity_label\": \"c\", \"label\": 0, "
                           "\"endings\": \"not a list\"}\n", NULL},
    /* 13 */ {"lambada", "{\"text\": \"\"}\n", NULL},
    /* 14 */ {"lambada", "{\"text\": \"the cat sat\"}\n\n{\"text\": \"  \\t \"}\n", NULL},
    /* 15 */ {"lambada", "{\"text\": \"the cat sat\"}\n{\"text\": \"the cat sat \"}\n", NULL},
    /* 16 */ {"piqa", "{\"goal\": \"\", \"sol1\": \"b\", \"sol2\": \"c\", \"label\": 0}\n", NULL},
    /* 17 */ {"piqa", PIQA_OK "{\"goal\": \"a\", \"sol1\": \"b\", \"sol2\": \" \", \"label\": 0}\n", NULL},
    /* 18 */ {"arc_easy", "{\"question\": {\"stem\": \"q\", \"choices\": []}, \"answerKey\": \"A\"}\n", NULL},
    /* 19 */ {"arc_challenge", "{\"question\": {\"stem\": \"\", \"choices\": " ARC_CHOICES "}, \"answerKey\": \"A\"}\n",
              NULL},
    /* 20 */ {"arc_easy", "{\"question\": {\"stem\": \"q\", \"choices\": [{\"text\": \"x\", \"label\": \"A\"}, "
                          "{\"text\": \"\", \"label\": \"B\"}]}, \"answerKey\": \"A\"}\n", NULL},
    /* 21 */ {"hellaswag", HS_ITEM("a", "", "[\"x\", \"y\"]") HS_ITEM(" ", "", "[\"x\", \"y\"]"), NULL},
    /* 22 */ {"hellaswag", HS_ITEM("a", "b", "[]"), NULL},
    /* 23 */ {"hellaswag", HS_ITEM("a", "b", "[\"x\", \"y\", \"\"]"), NULL},
    /* 24 */ {"hellaswag", HS_ITEM("a", "b", "[\"[step]\", \"y\"]"), NULL},
    /* 25 */ {"winogrande", WINO_ITEM("a _ b", ""), NULL},
    /* 26 */ {"winogrande", WINO_ITEM("a _ b", "x") WINO_ITEM("no blank here", "x"), NULL},
    /* 27 */ {"winogrande", WINO_ITEM("", "x"), NULL},
    /* 28 */ {"winogrande", WINO_ITEM("a b _ ", "x"), NULL},
    /* 29 */ {"boolq", "{\"question\": \"q\", \"passage\": \"\", \"label\": true}\n", NULL},
    /* 30 */ {"boolq", "{\"question\": \"q\", \"passage\": \"p\", \"label\": true}\n"
                       "{\"question\": \"\\n\", \"passage\": \"p\", \"label\": true}\n", NULL},
    /* 31 */ {"cloze", "  \n\n \t\n", NULL},
    /* 32 */ {"cloze", "1 2 3.\n<|endoftext|>\nword\n", NULL},
    /* 33 */ {"ending", "", NULL},
    /* 34: LLaMA's vocabulary has "és": the last word "s" of "allés" (the builder's words are
     * ASCII) merges into the context's "é" and leaves no token to score. */
    /* 34 */ {"cloze", "We walked home.\n<|endoftext|>\nNous sommes tous allés.\n", NULL},
};

/* llama: score with the random-weight LLaMA of the data folder and its own 32000-token vocabulary
 * rather than stories260K. */
static void task_make(made *m, long which, long llama) {
    char data[1200], spec[2600];
    bool text = strcmp(task_files[which].task, "cloze") == 0 || strcmp(task_files[which].task, "ending") == 0;
    snprintf(data, sizeof data, "%s", in_row(text ? "task.txt" : "task.jsonl"));
    put_text(data, task_files[which].data);
    snprintf(spec, sizeof spec, "%s", data);
    snprintf(m->file, sizeof m->file, "%s", data);
    if (task_files[which].labels) {
        const char *lab = in_row("task-labels.lst");
        put_text(lab, task_files[which].labels);
        snprintf(spec, sizeof spec, "%s,%s", data, lab);
        snprintf(m->file, sizeof m->file, "%s", row_dir);   /* either file may be the one named */
    }
    const char *model = llama ? data_path("gguf/llama-2-tiny-random.gguf") : model_bin();
    snprintf(m->args, sizeof m->args, "zeroshot --model '%s' --task '%s=%s'", model, task_files[which].task, spec);
}

/* ---- texts and run records ------------------------------------------------------------------- */

static void text_make(made *m, long kind, long unused) {
    (void)unused;
    static const char nul_text[] = "Once upon a time\0 there was a NUL.\n";
    snprintf(m->file, sizeof m->file, "%s", in_row(kind == 1 ? "docs.jsonl" : "text.txt"));
    if (kind == 0) put_file(m->file, nul_text, sizeof nul_text - 1);
    else if (kind == 1) put_text(m->file, "{\"text\": \"fine\"}\n{\"text\": 42}\n");
    else put_text(m->file, "\n\n   \n");
    snprintf(m->args, sizeof m->args, "eval --model '%s' --tokenizer '%s' --text '%s'", model_bin(), tok_bin(), m->file);
}

static void calib_make(made *m, long unused_a, long unused_b) {
    (void)unused_a;
    (void)unused_b;
    snprintf(m->file, sizeof m->file, "%s", in_row("calib.jsonl"));
    put_text(m->file, "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\"}\n");
    snprintf(m->args, sizeof m->args, "compress --model '%s' --solver magnitude --sparsity 0.5 --calib '%s' "
             "--nsamples 2 --calib-seqlen 64", model_bin(), m->file);
}

static void runs_make(made *m, long kind, long unused) {
    (void)unused;
    const char *good = "{\"key\":\"k0\",\"label\":\"dense\",\"grid\":\"dense\",\"dense\":true,\"config\":{\"solver\":"
                       "\"dense\",\"bits\":16,\"m\":0,\"sparsity\":0,\"group\":-1,\"schedule\":\"uniform\"},"
                       "\"sparsity\":0,\"bits\":16,\"bits_per_weight\":16,\"bits_per_weight_theoretical\":16,"
                       "\"bytes_packed\":520000,\"tcr\":0,\"ppl\":{\"ts\":{\"ppl\":4.0}},\"tasks\":{},"
                       "\"seconds\":{\"total\":1}}\n";
    char text[4096];
    if (kind == 0) snprintf(text, sizeof text, "%sgarbage ~~~ not json\n%s", good, good);
    else if (kind == 1) snprintf(text, sizeof text, "%s{\"label\":\"no key\"}\n", good);
    else snprintf(text, sizeof text, "%s{\"key\":\"k1\",\"label\":\"cut sh", good);
    const char *dir = in_row("results");
    mkdir(dir, 0777);
    snprintf(m->file, sizeof m->file, "%s/runs.jsonl", dir);
    put_text(m->file, text);
    snprintf(m->args, sizeof m->args, "report '%s'", dir);
}

/* ---- the table ------------------------------------------------------------------------------- */

/* stories260K: dim 64, hidden 172, 5 layers, 8 heads, 4 kv heads, vocab 512 (shared), context 512.
 * Its weights after the header: embedding 32768, rms_att 320, wq 20480, wk 10240, wv 10240,
 * wo 20480, rms_ffn 320, w1 55040, then w2 (down) from 149888, layer 3's from 182912. */
static const hostile_row rows[] = {
    {"llama2.c: shorter than a header", l2c_cut, 20, 0, "too short for a llama2.c header"},
    {"llama2.c: truncated", l2c_cut, 500000, 0, "file is 500000 bytes"},
    {"llama2.c: trailing bytes", l2c_cut, -1, 12, "needs 1056540"},
    {"llama2.c: negative dim", l2c_field, 0, -64, "dim = -64 is out of range"},
    {"llama2.c: huge dim", l2c_field, 0, 1 << 30, "dim = 1073741824 is out of range"},
    {"llama2.c: no layers", l2c_field, 2, 0, "n_layers = 0 is out of range"},
    {"llama2.c: dim not divisible by heads", l2c_field, 3, 7, "dim 64 is not a multiple of n_heads 7"},
    {"llama2.c: more kv heads than heads", l2c_field, 4, 16, "not a multiple of n_kv_heads 16"},
    {"llama2.c: vocab size 0", l2c_field, 5, 0, "vocab_size = 0 is out of range"},
    {"llama2.c: negative context", l2c_field, 6, -512, "seq_len = -512 is out of range"},
    {"llama2.c: sizes that overflow", l2c_field, 1, 1 << 24, "needs"},
    {"llama2.c: NaN weight", l2c_nonfinite, 182912 + 5, 0, "layer 3 down (w2), element 5"},
    {"llama2.c: Inf embedding", l2c_nonfinite, 700, 1, "token embedding, element 700"},
    {"llama2.c v2: truncated", q80_make, 0, 3000000, "file is 3000000 bytes, version 2 header"},
    {"llama2.c v2: trailing bytes", q80_make, 3, 4, "needs 3352576"},
    {"llama2.c v2: group size 0", q80_make, 1, 0, "group_size = 0 does not divide dim 192"},
    {"llama2.c v2: group size not dividing dim", q80_make, 1, 100, "group_size = 100 does not divide dim 192"},
    {"llama2.c v2: NaN scale", q80_make, 2, 3, "layer 2 k (wk), scale 3 (group of 64) is not finite"},
    {"tokenizer.bin: truncated", tok_cut, 3000, 0, "truncated after"},
    {"tokenizer.bin: negative length", tok_len, 100, -5, "token 100 has length -5"},
    {"tokenizer.bin: huge length", tok_len, 7, 1 << 30, "token 7 has length 1073741824"},
    {"tokenizer.bin: length past the end", tok_len, 511, 7, "truncated after"},
    {"tokenizer.bin: huge max_token_length", tok_len, -1, 1 << 30, "max_token_length 1073741824"},
    {"safetensors: header length beyond the file", st_make, ST_HLEN, 0, "runs past the end of the file"},
    {"safetensors: offsets past the end", st_make, ST_PAST_END, 0, "past the end of the data"},
    {"safetensors: overlapping tensors", st_make, ST_OVERLAP, 0, "overlap"},
    {"safetensors: unknown dtype", st_make, ST_DTYPE, 0, "dtype F8_E4M3"},
    {"safetensors: shape differs from config.json", st_make, ST_SHAPE_VS_CONFIG, 0, "has shape [172, 64]"},
    {"safetensors: header is not JSON", st_make, ST_BAD_JSON, 0, "not a JSON object"},
    {"safetensors: config.json lacks hidden_size", st_make, ST_MISSING_KEY, 0, "hidden_size is missing"},
    {"safetensors: config.json is not JSON", st_make, ST_CONFIG_NOT_JSON, 0, "not a JSON object"},
    {"safetensors: config claims far more weights than the file holds", st_make, ST_HUGE_LAYERS, 0, "file's tensors hold only 260032 values"},
    {"safetensors: RoPE tables larger than memory", st_make, ST_HUGE_CONTEXT, 0, "memory"},
    {"safetensors: NaN weight", st_make, ST_NAN, 0, "model.layers.2.mlp.down_proj.weight: element 0 is not finite"},
    {"safetensors: missing tensor", st_make, ST_MISSING_TENSOR, 0, "model.layers.4.post_attention_layernorm.weight is missing"},
    {"safetensors: negative shape", st_make, ST_BAD_SHAPE, 0, "shape[0] is not a non-negative integer"},
    {"gguf: bad magic", gg_make, GG_MAGIC, 0, "no \"GGUF\" magic"},
    {"gguf: bad version", gg_make, GG_VERSION, 0, "GGUF version 7 is not supported"},
    {"gguf: truncated metadata", gg_make, GG_TRUNCATED, 0, "runs past the end of the file"},
    {"gguf: tensor offset past the end", gg_make, GG_OFFSET, 0, "blk.3.attn_v.weight: bytes 1099511627776"},
    {"gguf: unknown tensor type", gg_make, GG_TYPE, 0, "blk.2.ffn_gate.weight has ggml type 99"},
    {"gguf: huge string length", gg_make, GG_HUGE_STRING, 0, "general.name at byte"},
    {"gguf: huge array count", gg_make, GG_HUGE_ARRAY, 0, "tokenizer.ggml.scores: array of 2305843009213693952"},
    {"gguf: huge tensor count", gg_make, GG_HUGE_COUNTS, 0, "more than the"},
    {"gguf: metadata claims far more weights than the file holds", gg_make, GG_HUGE_LAYERS, 0, "file's tensors hold only 260032 values"},
    {"gguf: Inf weight", gg_make, GG_NAN, 0, "blk.4.ffn_down.weight: element 11007 is not finite"},
    {"gguf: no architecture", gg_make, GG_NO_ARCH, 0, "general.architecture is missing"},
    {"tokenizer.model: truncated varint", spm_make, 0x80, 0, "varint runs past the end"},
    {"tokenizer.model: bad wire type", spm_make, 0x0f, 0, "unsupported wire type"},
    {"tokenizer.json: not JSON", json_tok_make, 0, 0, "not valid JSON"},
    {"tokenizer.json: wrong model type", json_tok_make, 1, 0, "model.type is \"WordPiece\""},
    {"sweep: unknown key", ini_make, 0, 0, ":4: unknown key 'nsampels' in [sweep]"},
    {"sweep: bad value", ini_make, 1, 0, ":4: [sweep] nsamples = -3"},
    {"sweep: key outside a section", ini_make, 2, 0, ":1: unknown section []"},
    {"sweep: no model", ini_make, 3, 0, "[sweep] needs model ="},
    {"sweep: grid without a solver", ini_make, 4, 0, "[grid.a] needs solver ="},
    {"sweep: model does not exist", ini_make, 5, 0, "cannot open"},
    {"sweep: not a key = value line", ini_make, 6, 0, ":3: not a key = value line"},
    {"sweep: unknown protocol", ini_make, 7, 0, "protocol 'pages'"},
    {"sweep: a line longer than the parser's buffer", ini_make, -1, 0, ":7: line longer than 198 characters"},
    {"piqa: missing key", task_make, 0, 0, ":1: missing string field \"sol2\""},
    {"piqa: label out of range", task_make, 1, 0, ":2: label 2 is out of range"},
    {"piqa: labels file shorter than the data", task_make, 2, 0, "has 1 labels"},
    {"arc: answer key not among the choices", task_make, 3, 0, ":1: answerKey \"E\""},
    {"hellaswag: label out of range", task_make, 4, 0, ":1: \"label\" 7 is out of range"},
    {"hellaswag: endings not a list", task_make, 12, 0, ":1: \"endings\" needs an array"},
    {"winogrande: a line that is not JSON", task_make, 5, 0, ":2: not a JSON object"},
    {"winogrande: labels file shorter than the data", task_make, 6, 0, "has 1 labels"},
    {"boolq: missing label", task_make, 7, 0, ":1: missing boolean field \"label\""},
    {"lambada: not an object", task_make, 8, 0, ":1: not a JSON object"},
    {"lambada: missing text", task_make, 9, 0, ":1: missing string field \"text\""},
    {"cloze: empty text", task_make, 10, 0, "no document"},
    {"ending: a single sentence", task_make, 11, 0, "documents have two sentences"},
    {"lambada: empty text", task_make, 13, 0, ":1: field \"text\" is empty: nothing to score"},
    {"lambada: whitespace-only text after a blank line", task_make, 14, 0, ":3: field \"text\" is only whitespace"},
    {"lambada: text ending in a space (no last word)", task_make, 15, 0, ":2: field \"text\" has no last word"},
    {"piqa: empty goal", task_make, 16, 0, ":1: field \"goal\" is empty"},
    {"piqa: whitespace-only solution", task_make, 17, 0, ":2: field \"sol2\" is only whitespace"},
    {"arc: no choices", task_make, 18, 0, ":1: \"question.choices\" needs an array of at least 2 choices"},
    {"arc: empty question", task_make, 19, 0, ":1: field \"question.stem\" is empty"},
    {"arc: empty choice text", task_make, 20, 0, ":1: field \"question.choices[1].text\" is empty"},
    {"hellaswag: empty context", task_make, 21, 0, ":2: fields \"ctx_a\" and \"ctx_b\" are both empty"},
    {"hellaswag: empty endings list", task_make, 22, 0, ":1: \"endings\" needs an array"},
    {"hellaswag: empty ending", task_make, 23, 0, ":1: field \"endings[2]\" is empty"},
    {"hellaswag: ending that is only a tag", task_make, 24, 0, ":1: field \"endings[0]\" is empty once preprocessed"},
    {"winogrande: empty option", task_make, 25, 0, ":1: field \"option1\" is empty"},
    {"winogrande: sentence without a blank", task_make, 26, 0, ":2: \"sentence\" has no \"_\" blank"},
    {"winogrande: empty sentence", task_make, 27, 0, ":1: field \"sentence\" is empty"},
    {"winogrande: nothing after the blank", task_make, 28, 0, ":1: field \"sentence\" has nothing after its \"_\""},
    {"boolq: empty passage", task_make, 29, 0, ":1: field \"passage\" is empty"},
    {"boolq: whitespace-only question", task_make, 30, 0, ":2: field \"question\" is only whitespace"},
    {"cloze: whitespace-only text", task_make, 31, 0, "no document gives a cloze item"},
    {"cloze: no document with a last word and a context", task_make, 32, 0, "no document gives a cloze item"},
    {"ending: empty text", task_make, 33, 0, "only 0 documents have two sentences"},
    {"cloze: a last word that tokenizes to nothing", task_make, 34, 1,
     "document 2: the last word \"s\" tokenizes to nothing after its context"},
    {"text: NUL byte", text_make, 0, 0, "NUL byte at offset 16"},
    {"jsonl text: text not a string", text_make, 1, 0, ":2: not a JSON object with a string \"text\""},
    {"text: only blank lines", text_make, 2, 0, "fewer than one window"},
    {"calibration: documents too short", calib_make, 0, 0, "no document has more than"},
    {"runs.jsonl: garbage line", runs_make, 0, 0, "runs.jsonl:2: not a run record"},
    {"runs.jsonl: record without a key", runs_make, 1, 0, "runs.jsonl:2: not a run record"},
    {"runs.jsonl: cut-off last line", runs_make, 2, 0, "runs.jsonl:2: not a run record"},
};

static const char *basename_of(const char *p) {
    const char *s = strrchr(p, '/');
    return s && s[1] ? s + 1 : p;
}

Test(hostile, every_malformed_input_exits_2_with_one_line_naming_the_file, .timeout = 300) {
    size_t n = sizeof rows / sizeof rows[0];
    cr_assert(n >= 30);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const hostile_row *r = &rows[i];
        made m = {{0}, {0}};
        row_begin((int)i);
        r->make(&m, r->a, r->b);
        char *out = NULL, *er = NULL;
        int st = run_sparq(m.args, &out, &er);
        cr_assert_not_null(er);
        size_t len = strlen(er);
        bool one_line = len > 0 && strchr(er, '\n') == er + len - 1;
        /* A folder (safetensors, results) is named through one of its files. */
        bool names_file = strstr(er, m.file) || strstr(er, basename_of(m.file));
        bool says = strstr(er, r->needle) != NULL;
        if (st != 2 || !one_line || !names_file || !says) {
            bad++;
            cr_expect(false, "row %zu (%s): exit %d, %s%s%sstderr: %.2000s", i, r->what, st,
                      one_line ? "" : "not one line, ", names_file ? "" : "file not named, ",
                      says ? "" : "needle missing, ", er);
        }
        free(out);
        free(er);
    }
    cr_assert_eq(bad, 0, "%d of %zu rows failed", bad, n);
}

/* ---- large but valid input ------------------------------------------------------------------- */

static void expect_ok(const char *args, const char *in_stdout) {
    char *out, *er;
    int st = run_sparq(args, &out, &er);
    cr_expect_eq(st, 0, "%s: exit %d, stderr %s", args, st, er);
    cr_expect(strstr(out, in_stdout), "%s: stdout lacks \"%s\": %.500s", args, in_stdout, out);
    free(out);
    free(er);
}

/* Long lines are read whole: a 200 KB zero-shot context is left-truncated to the model's, a
 * 1 MB one-line document is one long document, and a config comment may be of any length. */
Test(hostile, very_long_lines_and_documents_are_handled, .timeout = 120) {
    row_begin(99);
    size_t big = 200000;
    char *w = malloc(5 * big + 256);
    size_t k = 0;
    for (size_t i = 0; i < big / 5; i++) k += (size_t)sprintf(w + k, "word ");
    w[k] = '\0';
    char *line = malloc(k + 256);
    char args[8192];
    sprintf(line, "{\"goal\": \"%s\", \"sol1\": \"yes\", \"sol2\": \"no\", \"label\": 0}\n", w);
    const char *piqa = in_row("long-piqa.jsonl");
    put_text(piqa, line);
    snprintf(args, sizeof args, "zeroshot --model '%s' --task 'piqa=%s'", model_bin(), piqa);
    expect_ok(args, "piqa");
    sprintf(line, "{\"text\": \"%s end\"}\n", w);
    const char *lam = in_row("long-lambada.jsonl");
    put_text(lam, line);
    snprintf(args, sizeof args, "zeroshot --model '%s' --task 'lambada=%s'", model_bin(), lam);
    expect_ok(args, "lambada");
    free(line);
    /* 1 MB on one line. */
    char *doc = malloc(1100000);
    size_t d = 0;
    while (d < 1000000) d += (size_t)sprintf(doc + d, "Once upon a time there was a cat. ");
    doc[d++] = '\n';
    const char *txt = in_row("long.txt");
    put_file(txt, doc, d);
    free(doc);
    snprintf(args, sizeof args, "eval --model '%s' --tokenizer '%s' --text '%s' --protocol documents --seqlen 256",
             model_bin(), tok_bin(), txt);
    expect_ok(args, "perplexity");
    snprintf(args, sizeof args, "zeroshot --model '%s' --tokenizer '%s' --task 'cloze=%s'", model_bin(), tok_bin(), txt);
    expect_ok(args, "cloze");
    /* A 5000-character comment between the keys. */
    char *ini = malloc(8000);
    int n = sprintf(ini, "[sweep]\nmodel = stories260K/stories260K.bin\ncalib = self\n; ");
    memset(ini + n, 'x', 5000);
    sprintf(ini + n + 5000, "\neval.ppl = text/wiki.test.raw\n[grid.a]\nsolver = magnitude\nsparsity = 0.5\n");
    const char *cfg = in_row("long-comment.ini");
    put_text(cfg, ini);
    free(ini);
    snprintf(args, sizeof args, "sweep '%s' --out '%s' --dry-run", cfg, in_row("long-out"));
    expect_ok(args, "2 runs: 0 done, 2 to run");
    free(w);
}

/* The edges of what has something to score stay scored: a one-word LAMBADA text (empty
 * context, scored from BOS as the harness does), blank and whitespace-only lines between items
 * (skipped), a HellaSwag item with an empty ctx_b, a WinoGrande blank that starts the sentence. */
Test(hostile, items_at_the_edge_of_scorable_are_scored_and_blank_lines_skipped, .timeout = 60) {
    row_begin(97);
    static const struct { const char *task, *data, *n; } ok[] = {
        {"lambada", "{\"text\": \"alone\"}\n\n   \n{\"text\": \"the cat sat\"}\n\n", "\"n\":2,"},
        {"hellaswag", HS_ITEM("She runs.", "", "[\"x\", \"y\"]") "\n" HS_ITEM("", "b", "[\"x\", \"y\"]"), "\"n\":2,"},
        {"winogrande", WINO_ITEM("_ went home.", "x"), "\"n\":1,"},
        {"piqa", "\n" PIQA_OK "\t\n" PIQA_OK, "\"n\":2,"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char name[32], args[4096];
        snprintf(name, sizeof name, "ok%zu.jsonl", i);
        const char *f = in_row(name);
        put_text(f, ok[i].data);
        snprintf(args, sizeof args, "zeroshot --model '%s' --task '%s=%s' --json", model_bin(), ok[i].task, f);
        expect_ok(args, ok[i].n);
    }
}

/* An impossible grid point is not a bad config: it is listed as invalid, with the reason, and
 * skipped (configs/README.md), while the other points run. */
Test(hostile, impossible_grid_points_are_listed_as_invalid_and_skipped) {
    row_begin(98);
    const char *cfg = in_row("invalid.ini");
    put_text(cfg, "[sweep]\nmodel = stories260K/stories260K.bin\ncalib = self\neval.ppl = text/wiki.test.raw\n"
                  "[grid.x]\nsolver = sparsegpt\nnm = 2:4\nsparsity = 0.7\n");
    char args[4096];
    snprintf(args, sizeof args, "sweep '%s' --out '%s' --dry-run", cfg, in_row("invalid-out"));
    expect_ok(args, "nm 2:4 prunes 0.5 of the weights; sparsity 0.7 contradicts it");
    expect_ok(args, "2 runs: 0 done, 1 to run in this shard, 1 invalid");
}
