#include "safetensors.h"
#include "stream.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "family.h"
#include "fileio.h"
#include "text.h"

/* The safetensors reference implementation refuses headers above 100 MB. */
#define ST_MAX_HEADER (100ull << 20)
#define ST_MAX_DIMS 8
/* Integers in JSON are doubles to cJSON; above 2^53 they are no longer exact. */
#define JSON_MAX_INT 9007199254740992.0

typedef struct {
    char    *name;
    dtype    dt;
    int      ndim;
    uint64_t shape[ST_MAX_DIMS];
    int      shard;
    uint64_t off, nbytes;      /* absolute in the shard file */
    bool     used;
} st_tensor;

typedef struct {
    char       **paths;
    mapped_file *files;
    int          n_files;
    st_tensor   *t;
    size_t       n, cap;
} st_index;

static void index_free(st_index *ix) {
    for (int i = 0; i < ix->n_files; i++) {
        mapped_close(&ix->files[i]);
        free(ix->paths[i]);
    }
    free(ix->paths);
    free(ix->files);
    for (size_t i = 0; i < ix->n; i++) free(ix->t[i].name);
    free(ix->t);
}

static bool json_uint(const cJSON *j, uint64_t *v) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= JSON_MAX_INT) || d != floor(d)) return false;
    *v = (uint64_t)d;
    return true;
}

static int parse_dtype(const char *s, dtype *t) {
    if (strcmp(s, "F32") == 0) *t = DTYPE_F32;
    else if (strcmp(s, "F16") == 0) *t = DTYPE_F16;
    else if (strcmp(s, "BF16") == 0) *t = DTYPE_BF16;
    else return -1;
    return 0;
}

static int cmp_off(const void *a, const void *b) {
    const st_tensor *x = *(st_tensor *const *)a, *y = *(st_tensor *const *)b;
    if (x->shard != y->shard) return x->shard - y->shard;
    return (x->off > y->off) - (x->off < y->off);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static void shape_str(char *buf, size_t cap, const uint64_t *s, int n) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%llu", i ? ", " : "", (unsigned long long)s[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* One tensor entry of a header: dtype, shape, data_offsets, all checked against the data size. */
static int parse_entry(st_index *ix, int shard, const cJSON *x, uint64_t data0, uint64_t dlen, err *e) {
    const char *path = ix->paths[shard];
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(x, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(x, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(x, "data_offsets");
    if (!cJSON_IsObject(x) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of) ||
        cJSON_GetArraySize(of) != 2)
        return err_set(e, SPARQ_EINPUT, "%s: header entry \"%s\" lacks dtype, shape or data_offsets",
                       path, x->string);
    st_tensor t = {0};
    t.shard = shard;
    if (parse_dtype(dt->valuestring, &t.dt))
        return err_set(e, SPARQ_EINPUT, "%s: tensor %s has dtype %s; only F32, F16 and BF16 are "
                       "supported", path, x->string, dt->valuestring);
    t.ndim = cJSON_GetArraySize(sh);
    if (t.ndim > ST_MAX_DIMS)
        return err_set(e, SPARQ_EINPUT, "%s: tensor %s has %d dimensions", path, x->string, t.ndim);
    uint64_t elems = 1;
    for (int i = 0; i < t.ndim; i++) {
        if (!json_uint(cJSON_GetArrayItem(sh, i), &t.shape[i]))
            return err_set(e, SPARQ_EINPUT, "%s: tensor %s: shape[%d] is not a non-negative integer",
                           path, x->string, i);
        if (t.shape[i] && elems > UINT64_MAX / t.shape[i])
            return err_set(e, SPARQ_EINPUT, "%s: tensor %s: shape overflows", path, x->string);
        elems *= t.shape[i];
    }
    uint64_t b, end, need;
    if (!json_uint(cJSON_GetArrayItem(of, 0), &b) || !json_uint(cJSON_GetArrayItem(of, 1), &end) || end < b)
        return err_set(e, SPARQ_EINPUT, "%s: tensor %s: data_offsets are not two increasing "
                       "non-negative integers", path, x->string);
    if (end > dlen)
        return err_set(e, SPARQ_EINPUT, "%s: tensor %s: data_offsets end %llu is past the end of the "
                       "data (%llu bytes after the header)", path, x->string, (unsigned long long)end,
                       (unsigned long long)dlen);
    if (!dtype_bytes(t.dt, elems, &need) || need != end - b) {
        char s[160];
        shape_str(s, sizeof s, t.shape, t.ndim);
        return err_set(e, SPARQ_EINPUT, "%s: tensor %s: data_offsets hold %llu bytes but %s %s needs "
                       "%llu", path, x->string, (unsigned long long)(end - b), dt->valuestring, s,
                       (unsigned long long)need);
    }
    t.off = data0 + b;
    t.nbytes = need;
    if (ix->n == ix->cap) {
        size_t nc = ix->cap ? 2 * ix->cap : 64;
        st_tensor *p = realloc(ix->t, nc * sizeof *p);
        if (!p) return err_set(e, SPARQ_ERUNTIME, "out of memory");
        ix->t = p;
        ix->cap = nc;
    }
    t.name = strdup(x->string);
    if (!t.name) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    ix->t[ix->n++] = t;
    return SPARQ_OK;
}

/* Map one file and add its tensors. */
static int add_file(st_index *ix, const char *path, err *e) {
    int k = ix->n_files;
    char **p = realloc(ix->paths, (size_t)(k + 1) * sizeof *p);
    if (p) ix->paths = p;
    mapped_file *f = realloc(ix->files, (size_t)(k + 1) * sizeof *f);
    if (f) ix->files = f;
    if (!p || !f || !(ix->paths[k] = strdup(path))) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    ix->n_files++;
    ix->files[k] = (mapped_file){0};
    int rc = mapped_open(&ix->files[k], path, "model", e);
    if (rc) return rc;
    const mapped_file *mf = &ix->files[k];
    if (mf->size < 8)
        return err_set(e, SPARQ_EINPUT, "%s: file is %llu bytes, too short for a safetensors header "
                       "(8 bytes)", path, (unsigned long long)mf->size);
    uint64_t hlen;
    memcpy(&hlen, mf->data, 8);
    if (hlen > mf->size - 8)
        return err_set(e, SPARQ_EINPUT, "%s: header length %llu runs past the end of the file (%llu "
                       "bytes)", path, (unsigned long long)hlen, (unsigned long long)mf->size);
    if (hlen > ST_MAX_HEADER || hlen < 2)
        return err_set(e, SPARQ_EINPUT, "%s: header length %llu is outside [2, 100 MB]", path,
                       (unsigned long long)hlen);
    cJSON *h = cJSON_ParseWithLength((const char *)mf->data + 8, (size_t)hlen);
    if (!h || !cJSON_IsObject(h)) {
        cJSON_Delete(h);
        return err_set(e, SPARQ_EINPUT, "%s: the %llu-byte header is not a JSON object", path,
                       (unsigned long long)hlen);
    }
    size_t first = ix->n;
    const cJSON *x;
    cJSON_ArrayForEach(x, h) {
        if (strcmp(x->string, "__metadata__") == 0) continue;
        if ((rc = parse_entry(ix, k, x, 8 + hlen, mf->size - 8 - hlen, e))) break;
    }
    cJSON_Delete(h);
    if (rc) return rc;
    /* Tensors may not share bytes: sort this file's by offset and compare neighbours. */
    size_t n = ix->n - first;
    st_tensor **by = malloc((n ? n : 1) * sizeof *by);
    if (!by) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    for (size_t i = 0; i < n; i++) by[i] = &ix->t[first + i];
    qsort(by, n, sizeof *by, cmp_off);
    for (size_t i = 1; i < n && !rc; i++)
        if (by[i]->nbytes && by[i - 1]->off + by[i - 1]->nbytes > by[i]->off)
            rc = err_set(e, SPARQ_EINPUT, "%s: tensors %s and %s overlap (bytes %llu-%llu and %llu-%llu "
                         "of the data)", path, by[i - 1]->name, by[i]->name,
                         (unsigned long long)(by[i - 1]->off - 8 - hlen),
                         (unsigned long long)(by[i - 1]->off - 8 - hlen + by[i - 1]->nbytes),
                         (unsigned long long)(by[i]->off - 8 - hlen),
                         (unsigned long long)(by[i]->off - 8 - hlen + by[i]->nbytes));
    free(by);
    return rc;
}

static st_tensor *find(st_index *ix, const char *name) {
    st_tensor key = {.name = (char *)name};
    return ix->n ? bsearch(&key, ix->t, ix->n, sizeof *ix->t, cmp_name) : NULL;
}

static void sort_by_name(st_index *ix) {
    if (ix->n) qsort(ix->t, ix->n, sizeof *ix->t, cmp_name);
}

static int read_json_file(const char *path, cJSON **out, err *e) {
    char *text;
    size_t len;
    int rc = text_read_file(path, &text, &len, e);
    if (rc) return rc;
    *out = cJSON_ParseWithLength(text, len);
    free(text);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return err_set(e, SPARQ_EINPUT, "%s: not a JSON object", path);
    }
    return SPARQ_OK;
}

/* Shards named by model.safetensors.index.json's weight_map, each mapped once. */
static int add_index(st_index *ix, const char *index_path, const char *dir, err *e) {
    cJSON *j;
    int rc = read_json_file(index_path, &j, e);
    if (rc) return rc;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(j, "weight_map"), *x;
    if (!cJSON_IsObject(wm) || !wm->child)
        rc = err_set(e, SPARQ_EINPUT, "%s: no weight_map object", index_path);
    char buf[4096];
    cJSON_ArrayForEach(x, wm) {
        if (rc) break;
        if (!cJSON_IsString(x) || !x->valuestring[0] || strchr(x->valuestring, '/') ||
            strcmp(x->valuestring, "..") == 0) {
            rc = err_set(e, SPARQ_EINPUT, "%s: weight_map entry %s must name a file in the same folder",
                         index_path, x->string);
            break;
        }
        snprintf(buf, sizeof buf, "%s%s", dir, x->valuestring);
        bool seen = false;
        for (int i = 0; i < ix->n_files && !seen; i++) seen = strcmp(ix->paths[i], buf) == 0;
        if (!seen) rc = add_file(ix, buf, e);
    }
    if (!rc) sort_by_name(ix);
    /* Every tensor the index names must be in the shard it names. */
    cJSON_ArrayForEach(x, wm) {
        if (rc) break;
        st_tensor *t = find(ix, x->string);
        snprintf(buf, sizeof buf, "%s%s", dir, x->valuestring);
        if (!t || strcmp(ix->paths[t->shard], buf) != 0)
            rc = err_set(e, SPARQ_EINPUT, "%s: weight_map puts %s in %s, which does not hold it",
                         index_path, x->string, x->valuestring);
    }
    cJSON_Delete(j);
    return rc;
}

/* ---- config.json -------------------------------------------------------------------------- */

int json_cfg_int(const cJSON *j, const char *key, int def, int *out, const char *path, err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) {
        if (def < 0) return err_set(e, SPARQ_EINPUT, "%s: %s is missing", path, key);
        *out = def;
        return SPARQ_OK;
    }
    uint64_t u;
    if (!json_uint(v, &u) || u == 0 || u > (1u << 24))
        return err_set(e, SPARQ_EINPUT, "%s: %s is not an integer in [1, 16777216]", path, key);
    *out = (int)u;
    return SPARQ_OK;
}

int json_cfg_float(const cJSON *j, const char *key, double def, float *out, const char *path, err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) { *out = (float)def; return SPARQ_OK; }
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite((float)v->valuedouble))
        return err_set(e, SPARQ_EINPUT, "%s: %s is not a positive number", path, key);
    *out = (float)v->valuedouble;
    return SPARQ_OK;
}

/* The family from model_type (or the first architectures entry), then its own reader. */
static int read_config(const char *path, model_config *c, bool *tied, err *e) {
    cJSON *j;
    int rc = read_json_file(path, &j, e);
    if (rc) return rc;
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    const char *a = cJSON_IsString(mt) ? mt->valuestring
                    : cJSON_IsString(cJSON_GetArrayItem(arch, 0)) ? cJSON_GetArrayItem(arch, 0)->valuestring
                    : "(none)";
    const family *f = family_find(a);
    if (!f && strcmp(a, "mistral") == 0) f = &family_llama;   /* LLaMA within its window */
    if (!f && strcmp(a, "MistralForCausalLM") == 0) f = &family_llama;
    char names[128];
    if (!f)
        rc = err_set(e, SPARQ_EINPUT, "%s: architecture %s is not supported (families: %s; "
                     "and mistral)", path, a, family_names(names, sizeof names));
    *tied = false;
    if (!rc) rc = f->config_read(j, c, tied, path, e);
    cJSON_Delete(j);
    if (!rc) rc = model_config_check(c, path, e);
    return rc;
}

/* ---- loading -------------------------------------------------------------------------------- */

typedef struct {
    st_index ix;
    char *src;                  /* the path the caller gave */
    char *cfg_path;
    model_config c;
    float *tmp;                 /* q/k before the permutation */
} loader;

/* Convert tensor `name` (expected shape rows x cols, cols == 0 for a vector) into dst, or with
 * dst NULL only check that it is there with that shape. heads > 0 marks q/k rows to move from
 * rotate-half to the adjacent layout; depthwise, a conv1d weight stored [rows, 1, cols] (the same
 * values in the same order). */
static int fill(loader *L, const char *name, float *dst, uint64_t rows, uint64_t cols, int heads,
                bool depthwise, err *e) {
    st_tensor *t = find(&L->ix, name);
    if (!t) return err_set(e, SPARQ_EINPUT, "%s: tensor %s is missing", L->src, name);
    const char *path = L->ix.paths[t->shard];
    uint64_t want[3] = {rows, cols, 0};
    int wn = cols ? 2 : 1;
    if (depthwise) {
        want[1] = 1;
        want[2] = cols;
        wn = 3;
    }
    bool same = t->ndim == wn;
    for (int k = 0; k < wn && same; k++) same = t->shape[k] == want[k];
    if (!same) {
        char got[160], need[64];
        shape_str(got, sizeof got, t->shape, t->ndim);
        shape_str(need, sizeof need, want, wn);
        return err_set(e, SPARQ_EINPUT, "%s: tensor %s has shape %s but %s needs %s", path, name, got,
                       L->cfg_path, need);
    }
    t->used = true;
    if (!dst) return SPARQ_OK;
    size_t n = (size_t)(rows * (cols ? cols : 1));
    const mapped_file *f = &L->ix.files[t->shard];
    float *to = heads ? L->tmp : dst;
    size_t bad = dtype_to_f32(to, f->data + t->off, t->dt, n);
    mapped_release(f, t->off, t->nbytes);
    for (size_t i = 0; bad && i < n; i++)
        if (!isfinite(to[i]))
            return err_set(e, SPARQ_EINPUT, "%s: tensor %s: element %zu is not finite (%g)", path, name,
                           i, (double)to[i]);
    if (heads) model_permute_rows(dst, to, heads, L->c.head_size, (int)cols, ROPE_HALF, ROPE_ADJACENT);
    return SPARQ_OK;
}

/* Tensor t (copy l) of m: converted into m when `convert`, else only checked. */
static int fill_tensor(loader *L, const model *m, const family_tensor *t, int l, bool convert, err *e) {
    const model_config *c = &m->cfg;
    if (family_size(c, t->rows) * family_size(c, t->cols) == 0 || (t->slot == SLOT_HEAD && m->shared_cls))
        return SPARQ_OK;
    char nm[160];
    snprintf(nm, sizeof nm, t->hf, l);
    uint64_t cols = t->cols == SZ_ONE ? 0 : family_size(c, t->cols);
    int heads = t->layout == TL_ROPE_Q ? c->n_heads : t->layout == TL_ROPE_K ? c->n_kv_heads : 0;
    return fill(L, nm, convert ? model_tensor_ptr(m, t, l) : NULL, family_size(c, t->rows), cols, heads,
                t->layout == TL_DEPTHWISE, e);
}

/* Block l of a streamed model, from the mapped files (model_source.fill). */
static int fill_block(void *src, const model *m, int l, err *e) {
    loader *L = src;
    int rc = SPARQ_OK;
    for (int i = 0; i < m->fam->n_tensor && !rc; i++)
        if (family_tensor_per_block(&m->fam->tensor[i])) rc = fill_tensor(L, m, &m->fam->tensor[i], l, true, e);
    return rc;
}

static void loader_free(void *src) {
    loader *L = src;
    if (!L) return;
    index_free(&L->ix);
    free(L->src);
    free(L->cfg_path);
    free(L->tmp);
    free(L);
}

/* The tensors that are not per block converted, the blocks' only checked: they are converted
 * when used (stream.h). */
static int fill_model(loader *L, model *m, err *e) {
    const model_config *c = &m->cfg;
    int rc = SPARQ_OK;
    for (int i = 0; i < m->fam->n_tensor && !rc; i++) {
        const family_tensor *t = &m->fam->tensor[i];
        bool per_block = family_tensor_per_block(t);
        for (int l = 0; l < (per_block ? c->n_layers : 1) && !rc; l++)
            rc = fill_tensor(L, m, t, l, !per_block, e);
    }
    /* Anything else means another architecture or variant (biases, extra norms); a tied
     * checkpoint may still carry lm_head, and old ones carry the rotary inv_freq buffers. */
    for (size_t i = 0; i < L->ix.n && !rc; i++) {
        const st_tensor *t = &L->ix.t[i];
        if (t->used || strstr(t->name, "rotary_emb.inv_freq") ||
            (m->shared_cls && strcmp(t->name, "lm_head.weight") == 0))
            continue;
        rc = err_set(e, SPARQ_EINPUT, "%s: unexpected tensor %s (not part of a %s model with %s's "
                     "config)", L->ix.paths[t->shard], t->name, m->fam->name, L->cfg_path);
    }
    return rc;
}

/* Which files make up the checkpoint at path. */
static int locate(const char *path, char *dir, size_t dcap, char *cfg, char *index, char *single,
                  size_t cap, err *e) {
    index[0] = single[0] = '\0';
    if (path_is_dir(path)) {
        snprintf(dir, dcap, "%s%s", path, path_has_suffix(path, "/") ? "" : "/");
        snprintf(index, cap, "%smodel.safetensors.index.json", dir);
        if (path_exists(index)) goto found;
        index[0] = '\0';
        snprintf(single, cap, "%smodel.safetensors", dir);
        if (path_exists(single)) goto found;
        single[0] = '\0';
        DIR *dp = opendir(path);
        struct dirent *de;
        int count = 0;
        while (dp && (de = readdir(dp)))
            if (path_has_suffix(de->d_name, ".safetensors") && count++ == 0 &&
                snprintf(single, cap, "%s%s", dir, de->d_name) >= (int)cap)
                count = 2;   /* a name too long for the buffer: say "several" rather than guess */
        if (dp) closedir(dp);
        if (count != 1)
            return err_set(e, SPARQ_EINPUT, "%s: %s", path, count ? "several .safetensors files and no "
                           "model.safetensors.index.json" : "no .safetensors file in this folder");
    } else {
        path_dir(path, dir, dcap);
        snprintf(path_has_suffix(path, ".json") ? index : single, cap, "%s", path);
    }
found:
    snprintf(cfg, cap, "%sconfig.json", dir);
    if (!path_exists(cfg))
        return err_set(e, SPARQ_EINPUT, "%s: no config.json beside the checkpoint (looked for %s)", path, cfg);
    return SPARQ_OK;
}

/* The values of all tensors of the checkpoint, for model_check_tensor_total. */
static double tensor_total(const st_index *ix) {
    double have = 0;
    for (size_t i = 0; i < ix->n; i++) {
        double n = 1;
        for (int k = 0; k < ix->t[i].ndim; k++) n *= (double)ix->t[i].shape[k];
        have += n;
    }
    return have;
}

int safetensors_load_model(model **out, const char *path, err *e) {
    *out = NULL;
    char dir[4096], cfg[4200], index[4200], single[4200];
    int rc = locate(path, dir, sizeof dir, cfg, index, single, sizeof cfg, e);
    if (rc) return rc;
    model_config c;
    bool tied;
    rc = read_config(cfg, &c, &tied, e);
    if (rc) return rc;
    loader *L = calloc(1, sizeof *L);
    if (!L) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    L->c = c;
    L->src = strdup(path);
    L->cfg_path = strdup(cfg);
    L->tmp = malloc((size_t)c.n_heads * c.head_size * c.dim * sizeof(float));
    if (!L->src || !L->cfg_path || !L->tmp) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    st_index *ix = &L->ix;
    if (!rc && index[0]) rc = add_index(ix, index, dir, e);
    else if (!rc) {
        rc = add_file(ix, single, e);
        if (!rc) sort_by_name(ix);
    }
    for (size_t i = 1; i < ix->n && !rc; i++)
        if (strcmp(ix->t[i - 1].name, ix->t[i].name) == 0)
            rc = err_set(e, SPARQ_EINPUT, "%s: tensor %s appears twice", path, ix->t[i].name);
    model *m = NULL;
    if (!rc) rc = model_check_tensor_total(&c, tied, tensor_total(ix), path, "config.json", e);
    if (rc) {
        loader_free(L);
        return rc;
    }
    /* The store owns L from here, and closes it on failure. */
    rc = model_alloc_streamed(&m, &c, tied, (model_source){L, fill_block, loader_free}, e);
    if (!rc) rc = fill_model(L, m, e);
    if (!rc) rc = model_init_rope(m, e);
    if (rc) {
        model_free(m);
        return rc;
    }
    *out = m;
    return SPARQ_OK;
}

/* ---- writing -------------------------------------------------------------------------------- */

/* The shortest decimal that reads back as the same float (1e-05, not 9.99999974738e-06), so
 * config.json looks like the ones transformers writes. */
cJSON *json_float(float v) {
    char buf[48];
    if (v == floorf(v) && fabsf(v) < 1e15f) {
        snprintf(buf, sizeof buf, "%.1f", (double)v);   /* 10000.0 */
        return cJSON_CreateRaw(buf);
    }
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if ((float)strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eE")) strcat(buf, ".0");
    return cJSON_CreateRaw(buf);
}

static int write_config(const model *m, const char *path, dtype dt, err *e) {
    const model_config *c = &m->cfg;
    cJSON *j = cJSON_CreateObject();
    (void)c;
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(m->fam->hf_arch));
    cJSON_AddStringToObject(j, "model_type", m->fam->name);
    m->fam->config_write(m, j);
    cJSON_AddStringToObject(j, "torch_dtype", dt == DTYPE_F32 ? "float32" : dt == DTYPE_F16 ? "float16"
                                                                                       : "bfloat16");
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    if (!s) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    atomic_file a;
    int rc = atomic_open(&a, path, e);
    if (!rc) {
        atomic_write(&a, s, strlen(s));
        atomic_write(&a, "\n", 1);
        rc = atomic_commit(&a, e);
    }
    free(s);
    return rc;
}

typedef struct {
    char name[96];
    const family_tensor *ft;   /* its values: model_tensor_ptr(m, ft, l), the block acquired */
    int l;
    uint64_t rows, cols;       /* cols == 0: a vector */
    int heads;                 /* q/k: heads to permute to rotate-half */
    bool depthwise;            /* written [rows, 1, cols] */
} out_tensor;

/* Every tensor of m with its file name: the family table's global tensors that come before its
 * first per-block one, then each block's tensors layer by layer, then the other globals. */
static int list_tensors(const model *m, out_tensor **out, int *n) {
    const model_config *c = &m->cfg;
    const family *f = m->fam;
    int first = f->n_tensor, k = 0;
    for (int i = f->n_tensor - 1; i >= 0; i--)
        if (family_tensor_per_block(&f->tensor[i])) first = i;
    out_tensor *t = calloc((size_t)f->n_tensor * (c->n_layers + 1), sizeof *t);
    if (!t) return -1;
    for (int pass = 0; pass < 3; pass++)
        for (int l = 0; l < (pass == 1 ? c->n_layers : 1); l++)
            for (int i = 0; i < f->n_tensor; i++) {
                const family_tensor *ft = &f->tensor[i];
                int want = family_tensor_per_block(ft) ? 1 : i < first ? 0 : 2;
                if (want != pass || !model_has_tensor(m, ft)) continue;
                out_tensor *x = &t[k++];
                snprintf(x->name, sizeof x->name, ft->hf, l);
                x->ft = ft;
                x->l = l;
                x->rows = family_size(c, ft->rows);
                x->cols = ft->cols == SZ_ONE ? 0 : family_size(c, ft->cols);
                x->heads = ft->layout == TL_ROPE_Q ? c->n_heads : ft->layout == TL_ROPE_K ? c->n_kv_heads : 0;
                x->depthwise = ft->layout == TL_DEPTHWISE;
            }
    *out = t;
    *n = k;
    return 0;
}

/* One safetensors file holding tensors t[0 .. n), converted to dt chunk by chunk. */
static int write_file_of(const model *m, const char *file, const out_tensor *t, int n, dtype dt, err *e) {
    const char *dname = dt == DTYPE_F32 ? "F32" : dt == DTYPE_F16 ? "F16" : "BF16";
    size_t esz = dt == DTYPE_F32 ? 4 : 2;
    cJSON *h = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    char num[48];
    for (int i = 0; i < n; i++) {
        cJSON *x = cJSON_AddObjectToObject(h, t[i].name);
        cJSON_AddStringToObject(x, "dtype", dname);
        cJSON *sh = cJSON_AddArrayToObject(x, "shape"), *of = cJSON_AddArrayToObject(x, "data_offsets");
        uint64_t elems = t[i].rows * (t[i].cols ? t[i].cols : 1);
        uint64_t dims[3] = {t[i].rows, t[i].cols, 0};
        int nd = t[i].cols ? 2 : 1;
        if (t[i].depthwise) {
            dims[1] = 1;
            dims[2] = t[i].cols;
            nd = 3;
        }
        for (int k = 0; k < nd; k++) {
            snprintf(num, sizeof num, "%llu", (unsigned long long)dims[k]);
            cJSON_AddItemToArray(sh, cJSON_CreateRaw(num));
        }
        snprintf(num, sizeof num, "%llu", (unsigned long long)off);
        cJSON_AddItemToArray(of, cJSON_CreateRaw(num));
        off += elems * esz;
        snprintf(num, sizeof num, "%llu", (unsigned long long)off);
        cJSON_AddItemToArray(of, cJSON_CreateRaw(num));
    }
    char *hs = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    /* Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does. */
    size_t hl = hs ? strlen(hs) : 0;
    uint64_t hlen = (hl + 7) / 8 * 8;
    size_t chunk = 1 << 20, most = (size_t)m->cfg.n_heads * m->cfg.head_size * m->cfg.dim;
    float *perm = malloc(most * sizeof(float));
    unsigned char *buf = malloc(chunk * esz);
    atomic_file a = {0};
    int rc = hs && perm && buf ? atomic_open(&a, file, e) : err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (!rc) {
        atomic_write(&a, &hlen, 8);
        atomic_write(&a, hs, hl);
        atomic_pad(&a, (size_t)(hlen - hl), ' ');
    }
    int held = -1;
    for (int i = 0; i < n && !rc; i++) {
        size_t elems = (size_t)(t[i].rows * (t[i].cols ? t[i].cols : 1));
        /* A block is made float32 for its tensors and let go after them (stream.h). */
        int want = family_tensor_per_block(t[i].ft) ? t[i].l : -1;
        if ((rc = model_block_hold(m, &held, want, e))) break;
        const float *src = model_tensor_ptr(m, t[i].ft, t[i].l);
        if (t[i].heads) {
            model_permute_rows(perm, src, t[i].heads, m->cfg.head_size, (int)t[i].cols, m->cfg.rope, ROPE_HALF);
            src = perm;
        }
        for (size_t o = 0; o < elems && !rc; o += chunk) {
            size_t k = elems - o < chunk ? elems - o : chunk;
            size_t bad = dtype_from_f32(buf, src + o, dt, k);
            if (bad < k)
                rc = err_set(e, SPARQ_EINPUT, "%s: tensor %s: weight %zu = %g is outside the %s range",
                             file, t[i].name, o + bad, (double)src[o + bad], dtype_name(dt));
            else
                atomic_write(&a, buf, k * esz);
        }
    }
    if (held >= 0) model_block_release(m, held);
    if (!rc) rc = atomic_commit(&a, e);
    else if (a.f) atomic_abort(&a);
    free(hs);
    free(perm);
    free(buf);
    return rc;
}

int safetensors_save_model(const model *m, const char *path, dtype dt, uint64_t shard_bytes, err *e) {
    if (dt != DTYPE_F32 && dt != DTYPE_F16 && dt != DTYPE_BF16)
        return err_set(e, SPARQ_EINPUT, "%s: safetensors output is f32, f16 or bf16, not %s", path,
                       dtype_name(dt));
    if (shard_bytes == 0) shard_bytes = SAFETENSORS_SHARD_BYTES;
    char file[4200], cfg[4200], dir[4200] = "";
    bool folder = !path_has_suffix(path, ".safetensors");
    if (!folder) {
        char d[4096];
        path_dir(path, d, sizeof d);
        snprintf(file, sizeof file, "%s", path);
        snprintf(cfg, sizeof cfg, "%sconfig.json", d);
    } else {
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return err_set(e, SPARQ_EINPUT, "%s: cannot create folder: %s", path, strerror(errno));
        snprintf(dir, sizeof dir, "%s%s", path, path_has_suffix(path, "/") ? "" : "/");
        snprintf(file, sizeof file, "%smodel.safetensors", dir);
        snprintf(cfg, sizeof cfg, "%sconfig.json", dir);
    }
    out_tensor *t;
    int n;
    if (list_tensors(m, &t, &n)) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    size_t esz = dt == DTYPE_F32 ? 4 : 2;
    /* Shards as Hugging Face's save_pretrained cuts them: tensors in order, a new file when the
     * next tensor would pass shard_bytes (a tensor larger than that gets a file of its own). */
    int *first = malloc((size_t)(n + 1) * sizeof *first), ns = 0;
    uint64_t total = 0, in = 0;
    for (int i = 0; first && i < n; i++) {
        uint64_t b = t[i].rows * (t[i].cols ? t[i].cols : 1) * esz;
        if (i == 0 || (in > 0 && in + b > shard_bytes)) {
            first[ns++] = i;
            in = 0;
        }
        in += b;
        total += b;
    }
    int rc = first ? SPARQ_OK : err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (first) first[ns] = n;
    if (!rc && (ns == 1 || !folder)) {
        rc = write_file_of(m, file, t, n, dt, e);
    } else if (!rc) {
        /* Every shard, then the index naming them: a reader never sees an index without its files. */
        cJSON *ix = cJSON_CreateObject(), *wm;
        char num[32];
        snprintf(num, sizeof num, "%llu", (unsigned long long)total);
        cJSON_AddItemToObject(cJSON_AddObjectToObject(ix, "metadata"), "total_size", cJSON_CreateRaw(num));
        wm = cJSON_AddObjectToObject(ix, "weight_map");
        for (int k = 0; k < ns && !rc; k++) {
            char name[64], shard[4300];
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", k + 1, ns);
            snprintf(shard, sizeof shard, "%s%s", dir, name);
            rc = write_file_of(m, shard, t + first[k], first[k + 1] - first[k], dt, e);
            for (int i = first[k]; i < first[k + 1]; i++) cJSON_AddStringToObject(wm, t[i].name, name);
        }
        char *txt = rc ? NULL : cJSON_Print(ix);
        cJSON_Delete(ix);
        if (!rc && !txt) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
        if (!rc) {
            char index[4300];
            snprintf(index, sizeof index, "%smodel.safetensors.index.json", dir);
            atomic_file a;
            rc = atomic_open(&a, index, e);
            if (!rc) {
                atomic_write(&a, txt, strlen(txt));
                atomic_write(&a, "\n", 1);
                rc = atomic_commit(&a, e);
            }
            /* An older single file would shadow nothing (the index is read first), but it is
             * another copy of the model: remove it. */
            if (!rc) unlink(file);
        }
        free(txt);
    }
    free(first);
    free(t);
    if (!rc) rc = write_config(m, cfg, dt, e);
    return rc;
}
