#include "gguf.h"
#include "stream.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "family.h"
#include "fileio.h"
#include "ggml_blocks.h"
#include "spm.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_DEPTH 4          /* arrays of arrays; llama.cpp writes at most one level */

/* ggml tensor types this reader converts (and ggml_blocks.h's block types); the names serve
 * the error for the others. */
enum { GGML_F32 = 0, GGML_F16 = 1, GGML_BF16 = 30 };
static const char *const ggml_names[] = {
    "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K",
    "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
    "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16"};

static const uint64_t value_size[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

typedef struct {
    char    *key;
    uint32_t type;
    uint64_t voff;             /* file offset of the value */
} gguf_kv;

typedef struct {
    char    *name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint32_t type;
    dtype    dt;
    uint64_t off, nbytes;      /* off relative to the data section */
    bool     used;
} gguf_tensor;

struct gguf_file {
    mapped_file f;
    char       *path;
    uint32_t    version;
    uint64_t    n_kv, n_tensors, alignment, data_off;
    gguf_kv    *kv;
    gguf_tensor *t;
};

/* ---- reading -------------------------------------------------------------------------------- */

typedef struct {
    const unsigned char *d;
    uint64_t size, pos;
    const char *path;
    err *e;
} cur;

static int need(cur *c, uint64_t n, const char *what) {
    if (n > c->size - c->pos)
        return err_set(c->e, SPARQ_EINPUT, "%s: truncated: %s at byte %llu needs %llu bytes, the file "
                       "has %llu", c->path, what, (unsigned long long)c->pos, (unsigned long long)n,
                       (unsigned long long)(c->size - c->pos));
    return SPARQ_OK;
}

static int rd_u32(cur *c, uint32_t *v, const char *what) {
    int rc = need(c, 4, what);
    if (!rc) { memcpy(v, c->d + c->pos, 4); c->pos += 4; }
    return rc;
}

static int rd_u64(cur *c, uint64_t *v, const char *what) {
    int rc = need(c, 8, what);
    if (!rc) { memcpy(v, c->d + c->pos, 8); c->pos += 8; }
    return rc;
}

/* A string: u64 length then bytes; *s points into the map. */
static int rd_str(cur *c, const unsigned char **s, uint64_t *len, const char *what) {
    uint64_t at = c->pos;
    int rc = rd_u64(c, len, what);
    if (rc) return rc;
    if (*len > c->size - c->pos)
        return err_set(c->e, SPARQ_EINPUT, "%s: truncated: %s at byte %llu claims %llu bytes, %llu remain",
                       c->path, what, (unsigned long long)at, (unsigned long long)*len,
                       (unsigned long long)(c->size - c->pos));
    *s = c->d + c->pos;
    c->pos += *len;
    return SPARQ_OK;
}

static char *dup_name(const unsigned char *s, uint64_t len) {
    if (len > 65535 || memchr(s, '\0', (size_t)len)) return NULL;
    char *p = malloc((size_t)len + 1);
    if (p) { memcpy(p, s, (size_t)len); p[len] = '\0'; }
    return p;
}

static int skip_value(cur *c, uint32_t type, int depth, const char *key) {
    if (type >= GGUF_TYPE_COUNT)
        return err_set(c->e, SPARQ_EINPUT, "%s: key %s has unknown value type %u", c->path, key, type);
    if (type == GGUF_STRING) {
        const unsigned char *s;
        uint64_t len;
        return rd_str(c, &s, &len, key);
    }
    if (type != GGUF_ARRAY) {
        int rc = need(c, value_size[type], key);
        if (!rc) c->pos += value_size[type];
        return rc;
    }
    if (depth >= GGUF_MAX_DEPTH)
        return err_set(c->e, SPARQ_EINPUT, "%s: key %s nests arrays too deeply", c->path, key);
    uint32_t et;
    uint64_t n;
    int rc = rd_u32(c, &et, key);
    if (!rc) rc = rd_u64(c, &n, key);
    if (rc) return rc;
    if (et >= GGUF_TYPE_COUNT)
        return err_set(c->e, SPARQ_EINPUT, "%s: key %s is an array of unknown type %u", c->path, key, et);
    if (et != GGUF_STRING && et != GGUF_ARRAY) {
        if (n > (c->size - c->pos) / value_size[et])
            return err_set(c->e, SPARQ_EINPUT, "%s: key %s: array of %llu values runs past the end of the "
                           "file", c->path, key, (unsigned long long)n);
        c->pos += n * value_size[et];
        return SPARQ_OK;
    }
    /* Every string or array element takes at least 8 bytes: bound n before looping. */
    if (n > (c->size - c->pos) / 8)
        return err_set(c->e, SPARQ_EINPUT, "%s: key %s: array of %llu elements runs past the end of "
                       "the file", c->path, key, (unsigned long long)n);
    for (uint64_t i = 0; i < n && !rc; i++) rc = skip_value(c, et, depth + 1, key);
    return rc;
}

static int cmp_kv(const void *a, const void *b) {
    return strcmp(((const gguf_kv *)a)->key, ((const gguf_kv *)b)->key);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const gguf_tensor *)a)->name, ((const gguf_tensor *)b)->name);
}

static int cmp_tensor_off(const void *a, const void *b) {
    const gguf_tensor *x = *(gguf_tensor *const *)a, *y = *(gguf_tensor *const *)b;
    return (x->off > y->off) - (x->off < y->off);
}

void gguf_close(gguf_file *g) {
    if (!g) return;
    for (uint64_t i = 0; g->kv && i < g->n_kv; i++) free(g->kv[i].key);
    for (uint64_t i = 0; g->t && i < g->n_tensors; i++) free(g->t[i].name);
    free(g->kv);
    free(g->t);
    mapped_close(&g->f);
    free(g->path);
    free(g);
}

static const gguf_kv *find_kv(const gguf_file *g, const char *key) {
    gguf_kv k = {.key = (char *)key};
    return bsearch(&k, g->kv, (size_t)g->n_kv, sizeof *g->kv, cmp_kv);
}

static int parse_kvs(gguf_file *g, cur *c, err *e) {
    int rc = SPARQ_OK;
    for (uint64_t i = 0; i < g->n_kv && !rc; i++) {
        const unsigned char *k;
        uint64_t klen;
        if ((rc = rd_str(c, &k, &klen, "a metadata key"))) break;
        if (!(g->kv[i].key = dup_name(k, klen)))
            return err_set(e, SPARQ_EINPUT, "%s: metadata key %llu is longer than 65535 bytes or holds "
                           "a NUL byte", g->path, (unsigned long long)i);
        if ((rc = rd_u32(c, &g->kv[i].type, g->kv[i].key))) break;
        g->kv[i].voff = c->pos;
        rc = skip_value(c, g->kv[i].type, 0, g->kv[i].key);
    }
    if (rc) return rc;
    qsort(g->kv, (size_t)g->n_kv, sizeof *g->kv, cmp_kv);
    for (uint64_t i = 1; i < g->n_kv; i++)
        if (strcmp(g->kv[i - 1].key, g->kv[i].key) == 0)
            return err_set(e, SPARQ_EINPUT, "%s: metadata key %s appears twice", g->path, g->kv[i].key);
    int64_t al;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (find_kv(g, "general.alignment")) {
        if (!gguf_get_int(g, "general.alignment", &al) || al <= 0 || al > (1 << 20) || (al & (al - 1)))
            return err_set(e, SPARQ_EINPUT, "%s: general.alignment is not a power of two up to 2^20",
                           g->path);
        g->alignment = (uint64_t)al;
    }
    return SPARQ_OK;
}

static int parse_tensor(gguf_file *g, cur *c, gguf_tensor *t, uint64_t i, err *e) {
    const unsigned char *s;
    uint64_t len;
    int rc = rd_str(c, &s, &len, "a tensor name");
    if (rc) return rc;
    if (!(t->name = dup_name(s, len)))
        return err_set(e, SPARQ_EINPUT, "%s: tensor %llu's name is longer than 65535 bytes or holds a "
                       "NUL byte", g->path, (unsigned long long)i);
    if ((rc = rd_u32(c, &t->n_dims, t->name))) return rc;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return err_set(e, SPARQ_EINPUT, "%s: tensor %s has %u dimensions (1 to 4 allowed)", g->path,
                       t->name, t->n_dims);
    uint64_t elems = 1;
    for (uint32_t k = 0; k < t->n_dims; k++) {
        if ((rc = rd_u64(c, &t->ne[k], t->name))) return rc;
        if (t->ne[k] == 0 || elems > UINT64_MAX / t->ne[k])
            return err_set(e, SPARQ_EINPUT, "%s: tensor %s: ne[%u] = %llu is zero or overflows", g->path,
                           t->name, k, (unsigned long long)t->ne[k]);
        elems *= t->ne[k];
    }
    if ((rc = rd_u32(c, &t->type, t->name)) || (rc = rd_u64(c, &t->off, t->name))) return rc;
    switch (t->type) {
    case GGML_F32: t->dt = DTYPE_F32; break;
    case GGML_F16: t->dt = DTYPE_F16; break;
    case GGML_BF16: t->dt = DTYPE_BF16; break;
    default:
        if (!ggml_block_by_id(t->type))
            return err_set(e, SPARQ_EINPUT, "%s: tensor %s has ggml type %u (%s); only F32, F16, BF16, "
                           "Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 are supported", g->path, t->name, t->type,
                           t->type < sizeof ggml_names / sizeof *ggml_names ? ggml_names[t->type] : "unknown");
        t->dt = ggml_block_by_id(t->type)->dt;
    }
    if (dtype_is_block(t->dt) && t->ne[0] % GGML_BLOCK)
        return err_set(e, SPARQ_EINPUT, "%s: tensor %s: %s rows of %llu are not a multiple of 32",
                       g->path, t->name, ggml_names[t->type], (unsigned long long)t->ne[0]);
    if (!dtype_bytes(t->dt, elems, &t->nbytes))
        return err_set(e, SPARQ_EINPUT, "%s: tensor %s: size overflows", g->path, t->name);
    return SPARQ_OK;
}

static int parse_tensors(gguf_file *g, cur *c, err *e) {
    int rc = SPARQ_OK;
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++) rc = parse_tensor(g, c, &g->t[i], i, e);
    if (rc) return rc;
    uint64_t pad = (g->alignment - c->pos % g->alignment) % g->alignment;
    g->data_off = c->pos + pad;
    if (g->data_off > g->f.size)
        return err_set(e, SPARQ_EINPUT, "%s: the data section would start at byte %llu, past the end of "
                       "the file (%llu bytes)", g->path, (unsigned long long)g->data_off,
                       (unsigned long long)g->f.size);
    uint64_t dsize = g->f.size - g->data_off;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->t[i];
        if (t->off % g->alignment)
            return err_set(e, SPARQ_EINPUT, "%s: tensor %s: offset %llu is not a multiple of the "
                           "alignment %llu", g->path, t->name, (unsigned long long)t->off,
                           (unsigned long long)g->alignment);
        if (t->off > dsize || t->nbytes > dsize - t->off)
            return err_set(e, SPARQ_EINPUT, "%s: tensor %s: bytes %llu..%llu of the data section run past "
                           "its end (%llu bytes)", g->path, t->name, (unsigned long long)t->off,
                           (unsigned long long)(t->off + t->nbytes), (unsigned long long)dsize);
    }
    gguf_tensor **by = malloc((size_t)(g->n_tensors ? g->n_tensors : 1) * sizeof *by);
    if (!by) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    for (uint64_t i = 0; i < g->n_tensors; i++) by[i] = &g->t[i];
    qsort(by, (size_t)g->n_tensors, sizeof *by, cmp_tensor_off);
    for (uint64_t i = 1; i < g->n_tensors && !rc; i++)
        if (by[i - 1]->off + by[i - 1]->nbytes > by[i]->off)
            rc = err_set(e, SPARQ_EINPUT, "%s: tensors %s and %s overlap (data bytes %llu..%llu and "
                         "%llu..%llu)", g->path, by[i - 1]->name, by[i]->name,
                         (unsigned long long)by[i - 1]->off,
                         (unsigned long long)(by[i - 1]->off + by[i - 1]->nbytes),
                         (unsigned long long)by[i]->off, (unsigned long long)(by[i]->off + by[i]->nbytes));
    free(by);
    if (rc) return rc;
    qsort(g->t, (size_t)g->n_tensors, sizeof *g->t, cmp_tensor_name);
    for (uint64_t i = 1; i < g->n_tensors; i++)
        if (strcmp(g->t[i - 1].name, g->t[i].name) == 0)
            return err_set(e, SPARQ_EINPUT, "%s: tensor %s appears twice", g->path, g->t[i].name);
    return SPARQ_OK;
}

int gguf_open(gguf_file **out, const char *path, err *e) {
    *out = NULL;
    gguf_file *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        return err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    int rc = mapped_open(&g->f, path, "model", e);
    if (rc) { gguf_close(g); return rc; }
    cur c = {g->f.data, g->f.size, 0, path, e};
    if (g->f.size < 24 || memcmp(g->f.data, "GGUF", 4) != 0) {
        rc = g->f.size >= 4 && memcmp(g->f.data, "GGUF", 4) == 0
                 ? err_set(e, SPARQ_EINPUT, "%s: file is %llu bytes, too short for a GGUF header (24 "
                           "bytes)", path, (unsigned long long)g->f.size)
                 : err_set(e, SPARQ_EINPUT, "%s: no \"GGUF\" magic; not a GGUF file", path);
        gguf_close(g);
        return rc;
    }
    c.pos = 4;
    rd_u32(&c, &g->version, "version");
    rd_u64(&c, &g->n_tensors, "n_tensors");
    rd_u64(&c, &g->n_kv, "n_kv");
    if (g->version != 2 && g->version != 3)
        rc = err_set(e, SPARQ_EINPUT, "%s: GGUF version %u is not supported (2 and 3 are%s)", path,
                     g->version, g->version > 0xffff ? "; a big-endian file?" : "");
    /* Each key/value takes at least 12 bytes, each tensor info at least 28: bound the counts
     * by the file before allocating for them. */
    else if (g->n_kv > g->f.size / 12 || g->n_tensors > g->f.size / 28)
        rc = err_set(e, SPARQ_EINPUT, "%s: header claims %llu keys and %llu tensors, more than the "
                     "%llu-byte file can hold", path, (unsigned long long)g->n_kv,
                     (unsigned long long)g->n_tensors, (unsigned long long)g->f.size);
    if (!rc) {
        g->kv = calloc((size_t)g->n_kv + 1, sizeof *g->kv);
        g->t = calloc((size_t)g->n_tensors + 1, sizeof *g->t);
        if (!g->kv || !g->t) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    if (!rc) rc = parse_kvs(g, &c, e);
    if (!rc) rc = parse_tensors(g, &c, e);
    if (rc) { gguf_close(g); return rc; }
    *out = g;
    return SPARQ_OK;
}

bool gguf_tensor_at(const gguf_file *g, uint64_t i, gguf_tensor_info *out) {
    if (i >= g->n_tensors) return false;
    const gguf_tensor *t = &g->t[i];
    *out = (gguf_tensor_info){.name = t->name, .ggml_type = t->type, .n_dims = t->n_dims,
                              .data = g->f.data + g->data_off + t->off, .nbytes = t->nbytes};
    memcpy(out->ne, t->ne, sizeof out->ne);
    return true;
}

const char *gguf_type_name(uint32_t type) {
    return type < sizeof ggml_names / sizeof *ggml_names ? ggml_names[type] : "unknown";
}

uint32_t gguf_version(const gguf_file *g) { return g->version; }
uint64_t gguf_n_kv(const gguf_file *g) { return g->n_kv; }
uint64_t gguf_n_tensors(const gguf_file *g) { return g->n_tensors; }
uint64_t gguf_data_offset(const gguf_file *g) { return g->data_off; }

/* Scalar at file offset p (already bounds-checked by gguf_open). */
static bool scalar_int(const unsigned char *p, uint32_t type, int64_t *v) {
    uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; uint64_t u64; int64_t i64;
    switch (type) {
    case GGUF_U8: case GGUF_BOOL: memcpy(&u8, p, 1); *v = u8; return true;
    case GGUF_I8: memcpy(&i8, p, 1); *v = i8; return true;
    case GGUF_U16: memcpy(&u16, p, 2); *v = u16; return true;
    case GGUF_I16: memcpy(&i16, p, 2); *v = i16; return true;
    case GGUF_U32: memcpy(&u32, p, 4); *v = u32; return true;
    case GGUF_I32: memcpy(&i32, p, 4); *v = i32; return true;
    case GGUF_U64: memcpy(&u64, p, 8); if (u64 > INT64_MAX) return false; *v = (int64_t)u64; return true;
    case GGUF_I64: memcpy(&i64, p, 8); *v = i64; return true;
    default: return false;
    }
}

bool gguf_get_int(const gguf_file *g, const char *key, int64_t *v) {
    const gguf_kv *k = find_kv(g, key);
    return k && k->type != GGUF_BOOL && scalar_int(g->f.data + k->voff, k->type, v);
}

bool gguf_get_float(const gguf_file *g, const char *key, double *v) {
    const gguf_kv *k = find_kv(g, key);
    if (!k) return false;
    if (k->type == GGUF_F32) { float f; memcpy(&f, g->f.data + k->voff, 4); *v = f; return true; }
    if (k->type == GGUF_F64) { memcpy(v, g->f.data + k->voff, 8); return true; }
    return false;
}

bool gguf_get_str(const gguf_file *g, const char *key, char *buf, size_t cap) {
    const gguf_kv *k = find_kv(g, key);
    if (!k || k->type != GGUF_STRING || cap == 0) return false;
    uint64_t len;
    memcpy(&len, g->f.data + k->voff, 8);
    size_t n = len < cap - 1 ? (size_t)len : cap - 1;
    memcpy(buf, g->f.data + k->voff + 8, n);
    buf[n] = '\0';
    return true;
}

bool gguf_get_array(const gguf_file *g, const char *key, uint32_t *et, uint64_t *n) {
    const gguf_kv *k = find_kv(g, key);
    if (!k || k->type != GGUF_ARRAY) return false;
    memcpy(et, g->f.data + k->voff, 4);
    memcpy(n, g->f.data + k->voff + 4, 8);
    return true;
}

/* ---- the model -------------------------------------------------------------------------------- */

static int meta_int(const gguf_file *g, const char *key, int64_t def, int *out, err *e) {
    int64_t v = def;
    if (find_kv(g, key) && !gguf_get_int(g, key, &v))
        return err_set(e, SPARQ_EINPUT, "%s: %s is not an integer", g->path, key);
    if (v < 0 && def < 0) return err_set(e, SPARQ_EINPUT, "%s: %s is missing", g->path, key);
    if (v <= 0 || v > (1 << 24))
        return err_set(e, SPARQ_EINPUT, "%s: %s = %lld is out of range", g->path, key, (long long)v);
    *out = (int)v;
    return SPARQ_OK;
}

static int meta_float(const gguf_file *g, const char *key, double def, float *out, err *e) {
    double v = def;
    if (find_kv(g, key) && !gguf_get_float(g, key, &v))
        return err_set(e, SPARQ_EINPUT, "%s: %s is not a float", g->path, key);
    if (v < 0) return err_set(e, SPARQ_EINPUT, "%s: %s is missing", g->path, key);
    *out = (float)v;
    return SPARQ_OK;
}

static gguf_tensor *find_tensor(gguf_file *g, const char *name) {
    gguf_tensor k = {.name = (char *)name};
    return bsearch(&k, g->t, (size_t)g->n_tensors, sizeof *g->t, cmp_tensor_name);
}

/* Tensor `name` ([rows][cols] row-major, so ne = {cols, rows}; cols == 0 for a vector) into dst,
 * or with dst NULL only checked to be there with that shape. */
static int fill(gguf_file *g, const char *name, float *dst, uint64_t rows, uint64_t cols, err *e) {
    gguf_tensor *t = find_tensor(g, name);
    if (!t) return err_set(e, SPARQ_EINPUT, "%s: tensor %s is missing", g->path, name);
    uint64_t want[2] = {cols ? cols : rows, rows};
    int wn = cols ? 2 : 1;
    uint32_t nd = t->n_dims;
    while (nd > 1 && t->ne[nd - 1] == 1) nd--;     /* trailing 1s are the same shape */
    bool ok = (int)nd == wn && t->ne[0] == want[0] && (wn == 1 || t->ne[1] == want[1]);
    if (!ok) {
        char got[128] = "[", need_s[64];
        for (uint32_t k = 0; k < t->n_dims; k++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", k ? ", " : "",
                     (unsigned long long)t->ne[k]);
        strcat(got, "]");
        if (wn == 2) snprintf(need_s, sizeof need_s, "[%llu, %llu]", (unsigned long long)want[0],
                              (unsigned long long)want[1]);
        else snprintf(need_s, sizeof need_s, "[%llu]", (unsigned long long)want[0]);
        return err_set(e, SPARQ_EINPUT, "%s: tensor %s has ne %s but the metadata needs %s", g->path,
                       name, got, need_s);
    }
    t->used = true;
    if (!dst) return SPARQ_OK;
    size_t n = (size_t)(rows * (cols ? cols : 1));
    uint64_t at = g->data_off + t->off;
    size_t bad = dtype_to_f32(dst, g->f.data + at, t->dt, n);
    mapped_release(&g->f, at, t->nbytes);
    for (size_t i = 0; bad && i < n; i++)
        if (!isfinite(dst[i]))
            return err_set(e, SPARQ_EINPUT, "%s: tensor %s: element %zu is not finite", g->path, name, i);
    return SPARQ_OK;
}

static int read_config(gguf_file *g, model_config *c, err *e) {
    char arch[64] = "";
    if (!gguf_get_str(g, "general.architecture", arch, sizeof arch))
        return err_set(e, SPARQ_EINPUT, "%s: general.architecture is missing", g->path);
    /* The metadata below is llama.cpp's "llama" architecture, the one GGUF form of a family. */
    const family *f = family_find(arch);
    if (!f || !f->gguf_arch || strcmp(f->gguf_arch, "llama") != 0)
        return err_set(e, SPARQ_EINPUT, "%s: general.architecture is \"%s\"; only \"llama\" is "
                       "supported", g->path, arch);
    *c = (model_config){0};
    c->family = f;
    int rc = meta_int(g, "llama.embedding_length", -1, &c->dim, e);
    if (!rc) rc = meta_int(g, "llama.feed_forward_length", -1, &c->hidden_dim, e);
    if (!rc) rc = meta_int(g, "llama.block_count", -1, &c->n_layers, e);
    if (!rc) rc = meta_int(g, "llama.attention.head_count", -1, &c->n_heads, e);
    if (!rc) rc = meta_int(g, "llama.attention.head_count_kv", c->n_heads, &c->n_kv_heads, e);
    if (!rc) rc = meta_int(g, "llama.context_length", -1, &c->seq_len, e);
    if (!rc && c->dim % c->n_heads)
        rc = err_set(e, SPARQ_EINPUT, "%s: llama.embedding_length %d is not a multiple of head_count %d",
                     g->path, c->dim, c->n_heads);
    if (!rc) rc = meta_int(g, "llama.attention.key_length", c->dim / c->n_heads, &c->head_size, e);
    int vlen = 0, rot = 0, experts = 0;
    if (!rc) rc = meta_int(g, "llama.attention.value_length", c->head_size, &vlen, e);
    if (!rc) rc = meta_int(g, "llama.rope.dimension_count", c->head_size, &rot, e);
    if (!rc && vlen != c->head_size)
        rc = err_set(e, SPARQ_EINPUT, "%s: value_length %d differs from key_length %d; not supported",
                     g->path, vlen, c->head_size);
    if (!rc && rot != c->head_size)
        rc = err_set(e, SPARQ_EINPUT, "%s: llama.rope.dimension_count %d is not the head size %d "
                     "(partial RoPE is not supported)", g->path, rot, c->head_size);
    if (!rc && find_kv(g, "llama.expert_count") && !meta_int(g, "llama.expert_count", 0, &experts, NULL) &&
        experts > 0)
        rc = err_set(e, SPARQ_EINPUT, "%s: llama.expert_count %d: mixture-of-experts models are not "
                     "supported", g->path, experts);
    char scaling[32];
    if (!rc && gguf_get_str(g, "llama.rope.scaling.type", scaling, sizeof scaling) && strcmp(scaling, "none"))
        rc = err_set(e, SPARQ_EINPUT, "%s: llama.rope.scaling.type is \"%s\"; scaled RoPE is not "
                     "supported", g->path, scaling);
    if (!rc) rc = meta_float(g, "llama.attention.layer_norm_rms_epsilon", -1, &c->norm_eps, e);
    if (!rc) rc = meta_float(g, "llama.rope.freq_base", 10000.0, &c->rope_theta, e);
    /* The vocabulary is token_embd's second dimension. */
    gguf_tensor *emb = rc ? NULL : find_tensor(g, "token_embd.weight");
    if (!rc && !emb) rc = err_set(e, SPARQ_EINPUT, "%s: tensor token_embd.weight is missing", g->path);
    if (!rc && (emb->n_dims < 2 || emb->ne[1] > (1u << 24)))
        rc = err_set(e, SPARQ_EINPUT, "%s: tensor token_embd.weight is not [dim, vocab]", g->path);
    if (!rc) {
        c->vocab_size = (int)emb->ne[1];
        int v = 0;
        if (find_kv(g, "llama.vocab_size") && !meta_int(g, "llama.vocab_size", 0, &v, NULL) &&
            v != c->vocab_size)
            rc = err_set(e, SPARQ_EINPUT, "%s: llama.vocab_size %d but token_embd.weight has %d rows",
                         g->path, v, c->vocab_size);
    }
    c->rope = ROPE_ADJACENT;
    if (!rc) rc = model_config_check(c, g->path, e);
    return rc;
}

/* The values of all tensors of the file, for model_check_tensor_total. */
static double tensor_total(const gguf_file *g) {
    double have = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        double n = 1;
        for (uint32_t k = 0; k < g->t[i].n_dims; k++) n *= (double)g->t[i].ne[k];
        have += n;
    }
    return have;
}

/* Tensor ft (copy l) of m: converted into m when `convert`, else only checked. */
static int fill_tensor(gguf_file *g, const model *m, const family_tensor *ft, int l, bool convert, err *e) {
    if (!model_has_tensor(m, ft)) return SPARQ_OK;
    char nm[96];
    snprintf(nm, sizeof nm, ft->gguf, l);
    return fill(g, nm, convert ? model_tensor_ptr(m, ft, l) : NULL, family_size(&m->cfg, ft->rows),
                ft->cols == SZ_ONE ? 0 : family_size(&m->cfg, ft->cols), e);
}

/* Block l of a streamed model, from the mapped file (model_source.fill). */
static int fill_block(void *src, const model *m, int l, err *e) {
    int rc = SPARQ_OK;
    for (int i = 0; i < m->fam->n_tensor && !rc; i++)
        if (family_tensor_per_block(&m->fam->tensor[i])) rc = fill_tensor(src, m, &m->fam->tensor[i], l, true, e);
    return rc;
}

static void close_source(void *src) { gguf_close(src); }

int gguf_load_model(model **out, const char *path, err *e) {
    *out = NULL;
    gguf_file *g;
    int rc = gguf_open(&g, path, e);
    if (rc) return rc;
    model_config c;
    model *m = NULL;
    bool shared = find_tensor(g, "output.weight") == NULL;
    rc = read_config(g, &c, e);
    if (!rc) rc = model_check_tensor_total(&c, shared, tensor_total(g), g->path, "the metadata", e);
    if (rc) {
        gguf_close(g);
        return rc;
    }
    /* The blocks stay in the file and are converted when used (stream.h); the store closes g. */
    rc = model_alloc_streamed(&m, &c, shared, (model_source){g, fill_block, close_source}, e);
    for (int i = 0; !rc && i < m->fam->n_tensor; i++) {
        const family_tensor *ft = &m->fam->tensor[i];
        bool per_block = family_tensor_per_block(ft);
        for (int l = 0; l < (per_block ? c.n_layers : 1) && !rc; l++)
            rc = fill_tensor(g, m, ft, l, !per_block, e);
    }
    for (uint64_t i = 0; !rc && i < g->n_tensors; i++)
        if (!g->t[i].used)
            rc = err_set(e, SPARQ_EINPUT, "%s: unexpected tensor %s (not part of a llama model with "
                         "this metadata)", path, g->t[i].name);
    if (!rc) rc = model_init_rope(m, e);
    if (rc) {
        model_free(m);
        return rc;
    }
    *out = m;
    return SPARQ_OK;
}

/* ---- the tokenizer ----------------------------------------------------------------------------- */

int gguf_load_tokenizer(tokenizer **out, const char *path, err *e) {
    *out = NULL;
    gguf_file *g;
    int rc = gguf_open(&g, path, e);
    if (rc) return rc;
    char kind[64] = "";
    uint32_t et = 0, st = 0;
    uint64_t n = 0, ns = 0;
    int64_t bos = TOKEN_BOS, eos = TOKEN_EOS;
    if (!gguf_get_str(g, "tokenizer.ggml.model", kind, sizeof kind))
        rc = err_set(e, SPARQ_EINPUT, "%s: no embedded tokenizer (tokenizer.ggml.model is missing)", path);
    else if (strcmp(kind, "gpt2") == 0)
        rc = err_set(e, SPARQ_EINPUT, "%s: tokenizer.ggml.model is \"gpt2\": byte-level BPE (GPT-2/LLaMA-3 "
                     "style) tokenizers are not supported yet; only SentencePiece (\"llama\") is", path);
    else if (strcmp(kind, "llama") != 0)
        rc = err_set(e, SPARQ_EINPUT, "%s: tokenizer.ggml.model \"%s\" is not supported; only "
                     "SentencePiece (\"llama\") is", path, kind);
    else if (!gguf_get_array(g, "tokenizer.ggml.tokens", &et, &n) || et != GGUF_STRING)
        rc = err_set(e, SPARQ_EINPUT, "%s: tokenizer.ggml.tokens is not an array of strings", path);
    else if (!gguf_get_array(g, "tokenizer.ggml.scores", &st, &ns) || st != GGUF_F32 || ns != n)
        rc = err_set(e, SPARQ_EINPUT, "%s: tokenizer.ggml.scores is not %llu float32 values", path,
                     (unsigned long long)n);
    else if (n < 3 || n > (1u << 24))
        rc = err_set(e, SPARQ_EINPUT, "%s: %llu tokens is out of range", path, (unsigned long long)n);
    if (!rc && ((find_kv(g, "tokenizer.ggml.bos_token_id") && !gguf_get_int(g, "tokenizer.ggml.bos_token_id", &bos)) ||
                (find_kv(g, "tokenizer.ggml.eos_token_id") && !gguf_get_int(g, "tokenizer.ggml.eos_token_id", &eos)) ||
                bos != TOKEN_BOS || eos != TOKEN_EOS))
        rc = err_set(e, SPARQ_EINPUT, "%s: bos/eos token ids %lld/%lld; only 1/2 are supported", path,
                     (long long)bos, (long long)eos);
    char **pieces = NULL;
    float *scores = NULL;
    if (!rc) {
        pieces = calloc((size_t)n, sizeof *pieces);
        scores = malloc((size_t)n * sizeof *scores);
        if (!pieces || !scores) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    if (!rc) {
        /* Both arrays were bounds-checked by gguf_open: walk them directly. */
        const unsigned char *p = g->f.data + find_kv(g, "tokenizer.ggml.tokens")->voff + 12;
        const unsigned char *s = g->f.data + find_kv(g, "tokenizer.ggml.scores")->voff + 12;
        for (uint64_t i = 0; i < n && !rc; i++) {
            uint64_t len;
            memcpy(&len, p, 8);
            if (memchr(p + 8, '\0', (size_t)len))
                rc = err_set(e, SPARQ_EINPUT, "%s: token %llu holds a NUL byte", path, (unsigned long long)i);
            else if (!(pieces[i] = spm_piece_text((const char *)p + 8, (size_t)len, (int)i)))
                rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
            memcpy(&scores[i], s + 4 * i, 4);
            p += 8 + len;
        }
    }
    if (!rc) rc = tokenizer_from_pieces(out, (int)n, (const char *const *)pieces, scores, path, e);
    for (uint64_t i = 0; pieces && i < n; i++) free(pieces[i]);
    free(pieces);
    free(scores);
    gguf_close(g);
    return rc;
}

/* ---- writing ------------------------------------------------------------------------------------ */

/* The metadata section is built in memory first: its size fixes where the data starts. */
typedef struct {
    unsigned char *p;
    size_t n, cap;
    bool oom;
    uint64_t count;
} gbuf;

static void put(gbuf *b, const void *x, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t nc = (b->cap + n) * 2;
        unsigned char *q = realloc(b->p, nc);
        if (!q) { b->oom = true; return; }
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}

static void put_u32(gbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(gbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(gbuf *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }
static void key(gbuf *b, const char *k, uint32_t type) { put_str(b, k); put_u32(b, type); b->count++; }
static void kv_u32(gbuf *b, const char *k, uint32_t v) { key(b, k, GGUF_U32); put_u32(b, v); }
static void kv_f32(gbuf *b, const char *k, float v) { key(b, k, GGUF_F32); put(b, &v, 4); }
static void kv_str(gbuf *b, const char *k, const char *v) { key(b, k, GGUF_STRING); put_str(b, v); }
static void kv_bool(gbuf *b, const char *k, bool v) { key(b, k, GGUF_BOOL); uint8_t x = v; put(b, &x, 1); }

typedef struct {
    char name[64];
    const family_tensor *ft;   /* its values: model_tensor_ptr(m, ft, l), the block acquired */
    int l;
    uint64_t rows, cols;       /* cols == 0: a vector, always F32 */
    int heads;                 /* q/k rows to bring to the adjacent layout */
    uint64_t off, nbytes;
    dtype dt;
} gtensor;

static int vocab_kvs(gbuf *b, const tokenizer *tok, int vocab, const char *path, err *e) {
    /* GGUF's "gpt2" vocabularies need merges and token types this writer does not produce. */
    if (tokenizer_is_byte_level(tok))
        return err_set(e, SPARQ_EINPUT, "%s: a byte-level BPE tokenizer cannot be written into GGUF (only "
                       "SentencePiece-style \"llama\" vocabularies are)", path);
    if (tokenizer_vocab_size(tok) != vocab)
        return err_set(e, SPARQ_EINPUT, "%s: the tokenizer has %d tokens but the model's vocabulary is %d",
                       path, tokenizer_vocab_size(tok), vocab);
    kv_str(b, "tokenizer.ggml.model", "llama");
    key(b, "tokenizer.ggml.tokens", GGUF_ARRAY);
    put_u32(b, GGUF_STRING);
    put_u64(b, (uint64_t)vocab);
    for (int i = 0; i < vocab; i++) {
        char *s = spm_piece_from_text(tokenizer_piece(tok, i), i);
        if (!s) return err_set(e, SPARQ_ERUNTIME, "out of memory");
        put_str(b, s);
        free(s);
    }
    key(b, "tokenizer.ggml.scores", GGUF_ARRAY);
    put_u32(b, GGUF_F32);
    put_u64(b, (uint64_t)vocab);
    for (int i = 0; i < vocab; i++) {
        float s = tokenizer_score(tok, i);
        put(b, &s, 4);
    }
    key(b, "tokenizer.ggml.token_type", GGUF_ARRAY);
    put_u32(b, GGUF_I32);
    put_u64(b, (uint64_t)vocab);
    for (int i = 0; i < vocab; i++) {
        int32_t t = spm_piece_type(tokenizer_piece(tok, i), i);
        put(b, &t, 4);
    }
    kv_u32(b, "tokenizer.ggml.bos_token_id", TOKEN_BOS);
    kv_u32(b, "tokenizer.ggml.eos_token_id", TOKEN_EOS);
    kv_u32(b, "tokenizer.ggml.unknown_token_id", TOKEN_UNK);
    kv_bool(b, "tokenizer.ggml.add_bos_token", true);
    kv_bool(b, "tokenizer.ggml.add_eos_token", false);
    return SPARQ_OK;
}

int gguf_save_model(const model *m, const tokenizer *tok, const char *path, dtype dt, err *e) {
    return gguf_save_model_blocks(m, tok, path, dt, NULL, false, NULL, e);
}

/* llama.cpp's general.file_type (llama_ftype) for each weight type written. */
static uint32_t file_type(dtype dt) {
    switch (dt) {
    case DTYPE_F32: return 0;
    case DTYPE_F16: return 1;
    case DTYPE_Q4_0: return 2;
    case DTYPE_Q4_1: return 3;
    case DTYPE_Q8_0: return 7;
    case DTYPE_Q5_0: return 8;
    case DTYPE_Q5_1: return 9;
    case DTYPE_BF16: return 32;
    }
    return 0;
}

/* One row of a block tensor: packed on the solver's grids (d, m: this row's), or quantized by
 * ggml's reference rules when the layer has none. Names the first weight off its grid. */
static int block_row(const ggml_block_type *bt, const gtensor *t, const float *row, const float *d,
                     const float *m, uint64_t r, unsigned char *out, const char *path, err *e) {
    size_t nb = (size_t)t->cols / GGML_BLOCK;
    if (!d) {
        ggml_block_quantize_ref(bt, row, out, nb);
        return SPARQ_OK;
    }
    size_t bad = ggml_block_pack(bt, row, d, m, out, nb);
    if (bad < nb * GGML_BLOCK)
        return err_set(e, SPARQ_EINPUT, "%s: tensor %s: weight (%llu, %zu) = %.9g is not on its %s block's grid "
                       "(d = %.9g%s%.9g): the layer was not quantized on a ggml grid", path, t->name,
                       (unsigned long long)r, bad, (double)row[bad], bt->name, (double)d[bad / GGML_BLOCK],
                       m ? ", m = " : "", m ? (double)m[bad / GGML_BLOCK] : 0.0);
    return SPARQ_OK;
}

static void round_f16(float *w, size_t n) {
    for (size_t i = 0; i < n; i++) w[i] = f16_to_f32(f32_to_f16(w[i]));
}

/* w[n] through ggml's reference rounding of block type b and back (n a multiple of 32). */
static int round_blocks(const ggml_block_type *b, float *w, size_t n, err *e) {
    unsigned char *q = malloc(n / GGML_BLOCK * (size_t)b->bytes);
    if (!q) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    ggml_block_quantize_ref(b, w, q, n / GGML_BLOCK);
    ggml_block_dequantize(b, q, w, n / GGML_BLOCK);
    free(q);
    return SPARQ_OK;
}

int gguf_round_for_blocks(model *m, dtype dt, bool pure, err *e) {
    const model_config *c = &m->cfg;
    const ggml_block_type *b = ggml_block_find(dt);
    size_t ne = (size_t)c->vocab_size * c->dim;
    if (b && pure && c->dim % GGML_BLOCK == 0) {
        int rc = round_blocks(b, m->tok_emb, ne, e);
        if (!rc && !m->shared_cls) rc = round_blocks(b, m->wcls, ne, e);
        if (rc) return rc;
    } else {
        round_f16(m->tok_emb, ne);
        if (!m->shared_cls) round_f16(m->wcls, ne);
    }
    for (int l = 0; l < c->n_layers; l++) {
        bool any = false;
        for (int k = 0; k < m->fam->n_linear; k++) any = any || m->blocks[l].lin[k].cols % GGML_BLOCK;
        if (!any) continue;
        int rc = model_block_acquire(m, l, e);
        if (rc) return rc;
        for (int k = 0; k < m->fam->n_linear; k++) {
            linear *x = &m->blocks[l].lin[k];
            if (x->cols % GGML_BLOCK) round_f16(x->w, (size_t)x->rows * x->cols);
        }
        rc = model_block_store(m, l, e);
        model_block_release(m, l);
        if (rc) return rc;
    }
    return SPARQ_OK;
}

/* x = tensor ft (copy l) of m for writing in dt; 0 when the model does not have it. Vectors
 * stay f32. */
static int gtensor_set(gtensor *x, const model *m, const family_tensor *ft, int l, dtype dt) {
    const model_config *c = &m->cfg;
    if (!model_has_tensor(m, ft)) return 0;
    bool vec = ft->cols == SZ_ONE;
    *x = (gtensor){.ft = ft, .l = l, .rows = family_size(c, ft->rows), .cols = vec ? 0 : family_size(c, ft->cols),
                   .heads = ft->layout == TL_ROPE_Q ? c->n_heads : ft->layout == TL_ROPE_K ? c->n_kv_heads : 0,
                   .dt = vec ? DTYPE_F32 : dt, .name = {0}};
    snprintf(x->name, sizeof x->name, ft->gguf, l);
    return 1;
}

int gguf_save_model_blocks(const model *m, const tokenizer *tok, const char *path, dtype dt,
                           const gguf_block_grid *grids, bool pure, gguf_save_info *info, err *e) {
    const ggml_block_type *bt = ggml_block_find(dt);
    if (dt != DTYPE_F32 && dt != DTYPE_F16 && dt != DTYPE_BF16 && !bt)
        return err_set(e, SPARQ_EINPUT, "%s: GGUF output is f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1, "
                       "not %s", path, dtype_name(dt));
    if (info) memset(info, 0, sizeof *info);
    const model_config *c = &m->cfg;
    /* Block types quantize the linear layers; the embedding (and a separate classifier) stay
     * f16 unless pure (then ggml's reference rounding, as llama-quantize --pure), norms f32. */
    dtype edt = bt ? (pure && c->dim % GGML_BLOCK == 0 ? dt : DTYPE_F16) : dt;
    if (info) info->embd_dtype = edt;
    const family *f = m->fam;
    if (!f->gguf_arch || strcmp(f->gguf_arch, "llama") != 0) {
        return err_set(e, SPARQ_EINPUT, "%s: GGUF output holds llama.cpp's \"llama\" architecture; this "
                       "model is %s (use safetensors)", path, f->name);
    }
    int nt = 0, cap = f->n_tensor * (c->n_layers + 1);
    gtensor *t = calloc((size_t)cap, sizeof *t);
    const gguf_block_grid **tg = calloc((size_t)cap, sizeof *tg);
    if (!t || !tg) {
        free(t);
        free(tg);
        return err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    /* The globals (the embedding and a separate classifier in edt), then per block its vectors
     * (f32, as llama.cpp keeps norms) and its linear layers in the family's order: the order
     * llama.cpp's converter writes. */
    for (int i = 0; i < f->n_tensor; i++)
        if (!family_tensor_per_block(&f->tensor[i]))
            nt += gtensor_set(&t[nt], m, &f->tensor[i], 0, f->tensor[i].slot == SLOT_EMBED ||
                              f->tensor[i].slot == SLOT_HEAD ? edt : dt);
    for (int l = 0; l < c->n_layers; l++) {
        for (int i = 0; i < f->n_tensor; i++)
            if (f->tensor[i].slot == SLOT_PARAM) nt += gtensor_set(&t[nt], m, &f->tensor[i], l, dt);
        for (int k = 0; k < f->n_linear; k++)
            for (int i = 0; i < f->n_tensor; i++) {
                if (f->tensor[i].slot != SLOT_WEIGHT || f->tensor[i].index != k) continue;
                if (!gtensor_set(&t[nt], m, &f->tensor[i], l, dt)) continue;
                gtensor *x = &t[nt++];
                if (bt && x->cols % GGML_BLOCK) {   /* no block type can hold these rows */
                    x->dt = DTYPE_F16;
                    if (info) {
                        size_t w = strlen(info->kept);
                        snprintf(info->kept + w, sizeof info->kept - w, "%s%s", w ? ", " : "", x->name);
                        info->n_kept++;
                    }
                }
                if (bt && grids && x->dt == dt) tg[nt - 1] = &grids[l * f->n_linear + k];
            }
        for (int i = 0; i < f->n_tensor; i++)
            if (f->tensor[i].slot == SLOT_BIAS) nt += gtensor_set(&t[nt], m, &f->tensor[i], l, dt);
    }
    gbuf b = {0};
    kv_str(&b, "general.architecture", "llama");
    kv_str(&b, "general.name", "sparq");
    kv_u32(&b, "general.alignment", GGUF_DEFAULT_ALIGNMENT);
    /* llama.cpp's file types: ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_BF16 = 32. */
    kv_u32(&b, "general.file_type", file_type(dt));
    kv_u32(&b, "llama.vocab_size", (uint32_t)c->vocab_size);
    kv_u32(&b, "llama.context_length", (uint32_t)c->seq_len);
    kv_u32(&b, "llama.embedding_length", (uint32_t)c->dim);
    kv_u32(&b, "llama.block_count", (uint32_t)c->n_layers);
    kv_u32(&b, "llama.feed_forward_length", (uint32_t)c->hidden_dim);
    kv_u32(&b, "llama.rope.dimension_count", (uint32_t)c->head_size);
    kv_u32(&b, "llama.attention.head_count", (uint32_t)c->n_heads);
    kv_u32(&b, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
    if (c->head_size * c->n_heads != c->dim) {
        kv_u32(&b, "llama.attention.key_length", (uint32_t)c->head_size);
        kv_u32(&b, "llama.attention.value_length", (uint32_t)c->head_size);
    }
    kv_f32(&b, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
    kv_f32(&b, "llama.rope.freq_base", c->rope_theta);
    int rc = tok ? vocab_kvs(&b, tok, c->vocab_size, path, e) : SPARQ_OK;
    uint64_t n_kv = b.count;
    gbuf h = {0};   /* header + metadata + tensor infos */
    put(&h, "GGUF", 4);
    put_u32(&h, 3);
    put_u64(&h, (uint64_t)nt);
    put_u64(&h, n_kv);
    put(&h, b.p, b.n);
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        uint64_t elems = t[i].rows * (t[i].cols ? t[i].cols : 1);
        dtype_bytes(t[i].dt, elems, &t[i].nbytes);
        t[i].off = off;
        off = (off + t[i].nbytes + GGUF_DEFAULT_ALIGNMENT - 1) / GGUF_DEFAULT_ALIGNMENT * GGUF_DEFAULT_ALIGNMENT;
        put_str(&h, t[i].name);
        put_u32(&h, t[i].cols ? 2 : 1);
        put_u64(&h, t[i].cols ? t[i].cols : t[i].rows);
        if (t[i].cols) put_u64(&h, t[i].rows);
        put_u32(&h, ggml_block_find(t[i].dt) ? ggml_block_find(t[i].dt)->ggml_type
                    : t[i].dt == DTYPE_F32 ? GGML_F32 : t[i].dt == DTYPE_F16 ? GGML_F16 : GGML_BF16);
        put_u64(&h, t[i].off);
        if (info) {
            info->bytes += (double)t[i].nbytes;
            info->params += (double)elems;
            if (t[i].cols && strncmp(t[i].name, "blk.", 4) == 0) {
                info->linear_bytes += (double)t[i].nbytes;
                info->linear_params += (double)elems;
            }
        }
    }
    if (!rc && (b.oom || h.oom)) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    size_t chunk = 1 << 20, most = (size_t)c->n_heads * c->head_size * c->dim;
    size_t widest = (size_t)(c->dim > c->hidden_dim ? c->dim : c->hidden_dim);
    float *perm = rc ? NULL : malloc(most * sizeof(float));
    /* A row's grids after the q/k permutation: at most n_heads * head_size rows of dim / 32. */
    float *pd = rc ? NULL : malloc((most / GGML_BLOCK + 1) * sizeof(float));
    float *pm = rc ? NULL : malloc((most / GGML_BLOCK + 1) * sizeof(float));
    unsigned char *buf = rc ? NULL : malloc(chunk * 4 > widest * 4 ? chunk * 4 : widest * 4);
    if (!rc && (!perm || !pd || !pm || !buf)) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    atomic_file a = {0};
    if (!rc) rc = atomic_open(&a, path, e);
    if (!rc) {
        atomic_write(&a, h.p, h.n);
        atomic_pad(&a, (GGUF_DEFAULT_ALIGNMENT - h.n % GGUF_DEFAULT_ALIGNMENT) % GGUF_DEFAULT_ALIGNMENT, 0);
    }
    uint64_t pos = 0;
    int held = -1;   /* the block acquired for its tensors (stream.h) */
    for (int i = 0; i < nt && !rc; i++) {
        atomic_pad(&a, (size_t)(t[i].off - pos), 0);
        size_t elems = (size_t)(t[i].rows * (t[i].cols ? t[i].cols : 1));
        int want = family_tensor_per_block(t[i].ft) ? t[i].l : -1;
        if ((rc = model_block_hold(m, &held, want, e))) break;
        const float *src = model_tensor_ptr(m, t[i].ft, t[i].l);
        if (t[i].heads && c->rope != ROPE_ADJACENT) {
            model_permute_rows(perm, src, t[i].heads, c->head_size, (int)t[i].cols, c->rope, ROPE_ADJACENT);
            src = perm;
        }
        if (ggml_block_find(t[i].dt)) {
            const gguf_block_grid *g = tg[i];
            const float *gd = g ? g->d : NULL, *gm = g && bt->has_min ? g->m : NULL;
            size_t nb = (size_t)t[i].cols / GGML_BLOCK, rowb = nb * (size_t)bt->bytes;
            if (g && bt->has_min && !gm)
                rc = err_set(e, SPARQ_EINPUT, "%s: tensor %s: %s needs a min per block; the layer's grid "
                             "has none", path, t[i].name, bt->name);
            if (gd && t[i].heads && c->rope != ROPE_ADJACENT) {
                model_permute_rows(pd, gd, t[i].heads, c->head_size, (int)nb, c->rope, ROPE_ADJACENT);
                gd = pd;
                if (gm) {
                    model_permute_rows(pm, gm, t[i].heads, c->head_size, (int)nb, c->rope, ROPE_ADJACENT);
                    gm = pm;
                }
            }
            for (uint64_t r = 0; r < t[i].rows && !rc; r++) {
                rc = block_row(bt, &t[i], src + r * t[i].cols, gd ? gd + r * nb : NULL, gm ? gm + r * nb : NULL,
                               r, buf, path, e);
                if (!rc) atomic_write(&a, buf, rowb);
            }
            pos = t[i].off + t[i].nbytes;
            continue;
        }
        size_t esz = t[i].dt == DTYPE_F32 ? 4 : 2;
        for (size_t o = 0; o < elems && !rc; o += chunk) {
            size_t k = elems - o < chunk ? elems - o : chunk;
            size_t bad = dtype_from_f32(buf, src + o, t[i].dt, k);
            if (bad < k)
                rc = err_set(e, SPARQ_EINPUT, "%s: tensor %s: weight %zu = %g is outside the %s range", path,
                             t[i].name, o + bad, (double)src[o + bad], dtype_name(t[i].dt));
            else
                atomic_write(&a, buf, k * esz);
        }
        pos = t[i].off + t[i].nbytes;
    }
    if (held >= 0) model_block_release(m, held);
    if (!rc) rc = atomic_commit(&a, e);
    else if (a.f) atomic_abort(&a);
    if (!rc && info) {
        info->bits_per_weight = 8 * info->bytes / info->params;
        info->linear_bits_per_weight = info->linear_params ? 8 * info->linear_bytes / info->linear_params : 0;
    }
    free(perm);
    free(pd);
    free(pm);
    free(tg);
    free(buf);
    free(b.p);
    free(h.p);
    free(t);
    return rc;
}
