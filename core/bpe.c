#include "bpe.h"

#include "fileio.h"
#include "text.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* GPT-2's pattern with \s written out as Unicode White_Space (tokenizers/README.md §3.1): PCRE2
 * 10.42's \s under UCP also matches U+180E (checked over every codepoint), which Python's `regex`
 * and Oniguruma do not count as space since Unicode 6.3. */
#define WS "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static const char *const gpt2_pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

#define MAX_VOCAB (1 << 24)

typedef struct {
    char  *text;
    size_t len;
    int    id;
    bool   normalized;   /* matched after NFC (HF "normalized": true), else on the raw text */
} added_token;

/* Open-addressed map from an adjacent pair of ids to the merge's rank and result. */
typedef struct {
    uint64_t key;        /* (a << 32 | b) + 1; 0 = empty */
    int rank, id;
} pair_slot;

struct bpe {
    int    n;                 /* vocabulary size: 1 + the largest id */
    char **piece;             /* [n] byte-mapped pieces ("" for unused ids), into `store` */
    char  *store;
    char **dec;               /* [n] decoded bytes, into `decstore` */
    int   *declen;
    char  *decstore;
    int    byte_id[256];      /* id of each byte's one-symbol piece, -1 when absent */
    pair_slot *pairs;
    size_t pmask;
    added_token *added;
    int    nadded;
    bool   starts[2][256];    /* [normalized][byte]: some added token of that kind starts with it */
    bool   nfc;
    int    bos, eos;
    pcre2_code *re;
};

/* ---- the byte map (encoder.py bytes_to_unicode) ------------------------------------------- */

static int byte_to_cp(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return b;
    int k = 0;   /* the rank of b among the 68 bytes that are moved */
    for (int c = 0; c < b; c++)
        if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))) k++;
    return 256 + k;
}

static int put_utf8(char *dst, int cp) {
    if (cp < 0x80) { dst[0] = (char)cp; return 1; }
    if (cp < 0x800) { dst[0] = (char)(0xC0 | cp >> 6); dst[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    dst[0] = (char)(0xE0 | cp >> 12);
    dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

/* ---- string -> id map, used while loading ------------------------------------------------- */

typedef struct {
    const char **key;
    int *id;
    size_t mask;
} str_map;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int smap_init(str_map *m, int n) {
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap <<= 1;
    m->key = calloc(cap, sizeof *m->key);
    m->id = malloc(cap * sizeof *m->id);
    m->mask = cap - 1;
    return m->key && m->id ? 0 : -1;
}

static void smap_free(str_map *m) { free(m->key); free(m->id); }

static int smap_get(const str_map *m, const char *s, size_t len) {
    if (memchr(s, '\0', len)) return -1;   /* keys are C strings: comparing past a NUL would overread */
    for (size_t i = hash_bytes(s, len) & m->mask;; i = (i + 1) & m->mask) {
        if (!m->key[i]) return -1;
        if (strncmp(m->key[i], s, len) == 0 && m->key[i][len] == '\0') return m->id[i];
    }
}

static void smap_put(str_map *m, const char *s, int id) {
    size_t i = hash_bytes(s, strlen(s)) & m->mask;
    while (m->key[i]) {
        if (strcmp(m->key[i], s) == 0) return;   /* the first id of a repeated key wins */
        i = (i + 1) & m->mask;
    }
    m->key[i] = s;
    m->id[i] = id;
}

/* ---- pairs -------------------------------------------------------------------------------- */

static uint64_t pair_key(int a, int b) { return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1; }

static const pair_slot *pair_get(const bpe *b, int x, int y) {
    uint64_t k = pair_key(x, y);
    for (size_t i = (k * 0x9E3779B97F4A7C15ull >> 20) & b->pmask;; i = (i + 1) & b->pmask) {
        if (b->pairs[i].key == k) return &b->pairs[i];
        if (!b->pairs[i].key) return NULL;
    }
}

static void pair_put(bpe *b, int x, int y, int rank, int id) {
    uint64_t k = pair_key(x, y);
    size_t i = (k * 0x9E3779B97F4A7C15ull >> 20) & b->pmask;
    while (b->pairs[i].key) {
        if (b->pairs[i].key == k) return;   /* a repeated merge keeps its first (lowest) rank */
        i = (i + 1) & b->pmask;
    }
    b->pairs[i] = (pair_slot){k, rank, id};
}

/* ---- building ----------------------------------------------------------------------------- */

void bpe_free(bpe *b) {
    if (!b) return;
    free(b->piece);
    free(b->store);
    free(b->dec);
    free(b->declen);
    free(b->decstore);
    free(b->pairs);
    for (int i = 0; i < b->nadded; i++) free(b->added[i].text);
    free(b->added);
    pcre2_code_free(b->re);
    free(b);
}

int bpe_vocab_size(const bpe *b) { return b->n; }
int bpe_bos_id(const bpe *b) { return b->bos; }
int bpe_eos_id(const bpe *b) { return b->eos; }

const char *bpe_piece(const bpe *b, int token) {
    return token >= 0 && token < b->n ? b->piece[token] : "";
}

const char *bpe_bytes(const bpe *b, int token, int *len) {
    if (token < 0 || token >= b->n) { *len = 0; return ""; }
    *len = b->declen[token];
    return b->dec[token];
}

/* Vocabulary entries (piece, id) from a JSON object, plus added tokens outside it. */
typedef struct {
    const char *s;
    int id;
} entry;

static int vocab_from_json(bpe *b, const cJSON *vocab, const cJSON *added, const char *path, err *e) {
    if (!cJSON_IsObject(vocab)) return err_set(e, SPARQ_EINPUT, "%s: the vocabulary is not a JSON object", path);
    int n = 0;
    const cJSON *x;
    for (int pass = 0; pass < 2; pass++) {
        cJSON_ArrayForEach(x, (pass ? added : vocab)) {
            const cJSON *idj = pass ? cJSON_GetObjectItemCaseSensitive(x, "id") : x;
            const cJSON *c = pass ? cJSON_GetObjectItemCaseSensitive(x, "content") : NULL;
            double d = cJSON_IsNumber(idj) ? idj->valuedouble : -1;
            if (d < 0 || d >= MAX_VOCAB || d != (int)d || (pass && !cJSON_IsString(c)))
                return err_set(e, SPARQ_EINPUT, "%s: %s \"%s\" has no valid id (an integer in [0, %d))",
                               path, pass ? "added token" : "vocabulary entry",
                               pass ? (cJSON_IsString(c) ? c->valuestring : "?") : x->string, MAX_VOCAB);
            if ((int)d + 1 > n) n = (int)d + 1;
        }
    }
    if (n == 0) return err_set(e, SPARQ_EINPUT, "%s: the vocabulary is empty", path);
    b->n = n;
    b->piece = calloc((size_t)n, sizeof *b->piece);
    size_t total = 1;
    cJSON_ArrayForEach(x, vocab) total += strlen(x->string) + 1;
    cJSON_ArrayForEach(x, added) total += strlen(cJSON_GetObjectItemCaseSensitive(x, "content")->valuestring) + 1;
    b->store = malloc(total);
    b->added = calloc((size_t)(cJSON_GetArraySize(added) + 1), sizeof *b->added);
    if (!b->piece || !b->store || !b->added) return err_set(e, SPARQ_ERUNTIME, "out of memory for %d tokens", n);
    char *dst = b->store;
    *dst++ = '\0';
    for (int pass = 0; pass < 2; pass++) {
        cJSON_ArrayForEach(x, (pass ? added : vocab)) {
            const cJSON *idj = pass ? cJSON_GetObjectItemCaseSensitive(x, "id") : x;
            const char *s = pass ? cJSON_GetObjectItemCaseSensitive(x, "content")->valuestring : x->string;
            int id = (int)idj->valuedouble;
            if (pass) {
                const cJSON *norm = cJSON_GetObjectItemCaseSensitive(x, "normalized");
                if (!*s) return err_set(e, SPARQ_EINPUT, "%s: added token %d is empty", path, id);
                added_token *a = &b->added[b->nadded++];
                a->len = strlen(s);
                a->text = strdup(s);
                a->id = id;
                a->normalized = cJSON_IsTrue(norm);
                b->starts[a->normalized][(unsigned char)s[0]] = true;
                if (!a->text) return err_set(e, SPARQ_ERUNTIME, "out of memory");
                if (b->piece[id]) continue;   /* an added token the vocabulary already holds */
            } else if (b->piece[id]) {
                return err_set(e, SPARQ_EINPUT, "%s: id %d is given to both \"%s\" and \"%s\"", path, id,
                               b->piece[id], s);
            }
            size_t len = strlen(s);
            memcpy(dst, s, len + 1);
            b->piece[id] = dst;
            dst += len + 1;
        }
    }
    for (int i = 0; i < n; i++)
        if (!b->piece[i]) b->piece[i] = b->store;   /* "" for ids no entry names */
    return SPARQ_OK;
}

/* The decoded bytes of every token: each codepoint of the byte map back to its byte, anything
 * else (added tokens such as NeoX's runs of spaces, "<|endoftext|>") as it is. */
static int build_decode(bpe *b, err *e) {
    int inv[0x144];
    for (int c = 0; c < 0x144; c++) inv[c] = -1;
    for (int x = 0; x < 256; x++) inv[byte_to_cp(x)] = x;
    size_t total = 0;
    for (int i = 0; i < b->n; i++) total += strlen(b->piece[i]) + 1;
    b->dec = malloc((size_t)b->n * sizeof *b->dec);
    b->declen = malloc((size_t)b->n * sizeof *b->declen);
    b->decstore = malloc(total);
    if (!b->dec || !b->declen || !b->decstore) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    char *dst = b->decstore;
    for (int i = 0; i < b->n; i++) {
        const unsigned char *p = (const unsigned char *)b->piece[i];
        b->dec[i] = dst;
        bool is_added = false;
        for (int k = 0; k < b->nadded; k++) is_added |= b->added[k].id == i;
        while (*p) {
            int cp = -1;
            if (p[0] >= 0xC0 && p[0] < 0xE0 && (p[1] & 0xC0) == 0x80) cp = (p[0] & 0x1F) << 6 | (p[1] & 0x3F);
            if (!is_added && cp >= 0 && cp < 0x144 && inv[cp] >= 0) {
                *dst++ = (char)inv[cp];
                p += 2;
            } else {
                *dst++ = (char)*p++;   /* ASCII symbols map to themselves */
            }
        }
        b->declen[i] = (int)(dst - b->dec[i]);
        *dst++ = '\0';
    }
    return SPARQ_OK;
}

/* Merges in rank order, each "a b" (len bytes, not NUL-terminated) or a JSON pair. */
static int add_merge(bpe *b, const str_map *m, const char *a, size_t la, const char *c, size_t lc, int rank,
                     char *buf, size_t bufcap, const char *path, err *e) {
    int x = smap_get(m, a, la), y = smap_get(m, c, lc);
    if (x < 0 || y < 0)
        return err_set(e, SPARQ_EINPUT, "%s: merge %d \"%.*s %.*s\" names \"%.*s\", which is not in the "
                       "vocabulary", path, rank + 1, (int)la, a, (int)lc, c,
                       x < 0 ? (int)la : (int)lc, x < 0 ? a : c);
    if (la + lc + 1 > bufcap)
        return err_set(e, SPARQ_EINPUT, "%s: merge %d is longer than %zu bytes", path, rank + 1, bufcap - 1);
    memcpy(buf, a, la);
    memcpy(buf + la, c, lc);
    int z = smap_get(m, buf, la + lc);
    if (z < 0)
        return err_set(e, SPARQ_EINPUT, "%s: merge %d makes \"%.*s\", which is not in the vocabulary", path,
                       rank + 1, (int)(la + lc), buf);
    pair_put(b, x, y, rank, z);
    return SPARQ_OK;
}

static int pairs_alloc(bpe *b, size_t nmerges, err *e) {
    size_t cap = 16;
    while (cap < nmerges * 2) cap <<= 1;
    b->pairs = calloc(cap, sizeof *b->pairs);
    b->pmask = cap - 1;
    return b->pairs ? SPARQ_OK : err_set(e, SPARQ_ERUNTIME, "out of memory for %zu merges", nmerges);
}

static int vocab_map(const bpe *b, str_map *m, err *e) {
    if (smap_init(m, b->n)) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    for (int i = 0; i < b->n; i++)
        if (b->piece[i][0]) smap_put(m, b->piece[i], i);
    return SPARQ_OK;
}

/* Everything after vocabulary and merges: byte symbols, BOS/EOS, decoding, the regex. */
static int finish(bpe *b, const str_map *m, const char *path, err *e) {
    for (int x = 0; x < 256; x++) {
        char s[4];
        int l = put_utf8(s, byte_to_cp(x));
        b->byte_id[x] = smap_get(m, s, (size_t)l);
    }
    b->bos = smap_get(m, "</s>", 4);
    b->eos = b->bos >= 0 ? b->bos : smap_get(m, "<|endoftext|>", 13);
    int rc = build_decode(b, e);
    if (rc) return rc;
    int code;
    PCRE2_SIZE off;
    b->re = pcre2_compile((PCRE2_SPTR)gpt2_pattern, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &off, NULL);
    if (!b->re) return err_set(e, SPARQ_ERUNTIME, "%s: the pre-tokenizer regex does not compile (PCRE2 error %d)",
                               path, code);
    pcre2_jit_compile(b->re, PCRE2_JIT_COMPLETE);   /* the interpreter still works if JIT is unavailable */
    return SPARQ_OK;
}

static bool has_type(const cJSON *o, const char *type) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) && strcmp(t->valuestring, type) == 0;
}

int bpe_load_json(bpe **out, const cJSON *root, const char *path, err *e) {
    *out = NULL;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsObject(model))
        return err_set(e, SPARQ_EINPUT, "%s: no \"model\" object; not a Hugging Face tokenizer.json", path);
    if (cJSON_IsString(type) && strcmp(type->valuestring, "BPE") != 0)
        return err_set(e, SPARQ_EINPUT, "%s: model.type is \"%s\"; byte-level tokenizers must be \"BPE\"", path,
                       type->valuestring);
    if (!has_type(pre, "ByteLevel") || cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pre, "use_regex")) ||
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space")))
        return err_set(e, SPARQ_EINPUT, "%s: pre_tokenizer is not GPT-2's (ByteLevel with its regex, no prefix "
                       "space); other byte-level pre-tokenizers (LLaMA-3 style) are not supported", path);
    if (!cJSON_IsNull(norm) && norm && !has_type(norm, "NFC"))
        return err_set(e, SPARQ_EINPUT, "%s: normalizer must be null or NFC for a byte-level BPE", path);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsArray(merges)) return err_set(e, SPARQ_EINPUT, "%s: model.merges is not an array", path);
    if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added))
        return err_set(e, SPARQ_EINPUT, "%s: added_tokens is not an array", path);
    if (!cJSON_IsArray(added)) added = NULL;
    bpe *b = calloc(1, sizeof *b);
    if (!b) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    b->nfc = has_type(norm, "NFC");
    cJSON empty = {0};
    empty.type = cJSON_Array;
    int rc = vocab_from_json(b, vocab, added ? added : &empty, path, e);
    str_map m = {0};
    if (!rc) rc = vocab_map(b, &m, e);
    if (!rc) rc = pairs_alloc(b, (size_t)cJSON_GetArraySize(merges), e);
    char buf[8192];
    int rank = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, merges) {
        if (rc) break;
        const char *a = NULL, *c = NULL;
        size_t la = 0, lc = 0;
        if (cJSON_IsString(x)) {
            const char *sp = strchr(x->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                a = x->valuestring;
                la = (size_t)(sp - a);
                c = sp + 1;
                lc = strlen(c);
            }
        } else if (cJSON_IsArray(x) && cJSON_GetArraySize(x) == 2 && cJSON_IsString(x->child) &&
                   cJSON_IsString(x->child->next)) {
            a = x->child->valuestring;
            la = strlen(a);
            c = x->child->next->valuestring;
            lc = strlen(c);
        }
        if (!a || !la || !lc) {
            rc = err_set(e, SPARQ_EINPUT, "%s: merge %d is not \"a b\" or [a, b]", path, rank + 1);
            break;
        }
        rc = add_merge(b, &m, a, la, c, lc, rank++, buf, sizeof buf, path, e);
    }
    if (!rc) rc = finish(b, &m, path, e);
    smap_free(&m);
    if (rc) { bpe_free(b); return rc; }
    *out = b;
    return SPARQ_OK;
}

int bpe_load_pair(bpe **out, const char *vocab_path, const char *merges_path, err *e) {
    *out = NULL;
    char *vt = NULL, *mt = NULL;
    size_t vl, ml;
    int rc = text_read_file(vocab_path, &vt, &vl, e);
    if (!rc) rc = text_read_file(merges_path, &mt, &ml, e);
    cJSON *vocab = rc ? NULL : cJSON_ParseWithLength(vt, vl);
    if (!rc && !vocab) rc = err_set(e, SPARQ_EINPUT, "%s: not valid JSON", vocab_path);
    free(vt);
    bpe *b = rc ? NULL : calloc(1, sizeof *b);
    if (!rc && !b) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    cJSON empty = {0};
    empty.type = cJSON_Array;
    if (!rc) rc = vocab_from_json(b, vocab, &empty, vocab_path, e);
    cJSON_Delete(vocab);
    str_map m = {0};
    if (!rc) rc = vocab_map(b, &m, e);
    size_t lines = 1;
    for (size_t i = 0; !rc && i < ml; i++) lines += mt[i] == '\n';
    if (!rc) rc = pairs_alloc(b, lines, e);
    char buf[8192];
    int rank = 0, lineno = 0;
    for (char *p = mt, *end = rc || !mt ? mt : mt + ml; !rc && p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lineno++;
        if (len && p[len - 1] == '\r') len--;
        if (len && !(lineno == 1 && strncmp(p, "#version", 8) == 0)) {
            char *sp = memchr(p, ' ', len);
            if (!sp || sp == p || sp + 1 == p + len || memchr(sp + 1, ' ', (size_t)(p + len - sp - 1))) {
                rc = err_set(e, SPARQ_EINPUT, "%s: line %d is not \"a b\"", merges_path, lineno);
                break;
            }
            rc = add_merge(b, &m, p, (size_t)(sp - p), sp + 1, (size_t)(p + len - sp - 1), rank++, buf,
                           sizeof buf, merges_path, e);
        }
        if (!nl) break;
        p = nl + 1;
    }
    free(mt);
    if (!rc) rc = finish(b, &m, vocab_path, e);
    smap_free(&m);
    if (rc) { bpe_free(b); return rc; }
    *out = b;
    return SPARQ_OK;
}

static bool file_at(char *buf, size_t cap, const char *dir, const char *name) {
    snprintf(buf, cap, "%s%s", dir, name);
    return path_exists(buf) && !path_is_dir(buf);
}

bool bpe_find_pair(const char *path, char *vocab, char *merges, size_t cap) {
    static const char *const pairs[2][2] = {{"encoder.json", "vocab.bpe"}, {"vocab.json", "merges.txt"}};
    char dir[4096];
    if (path_is_dir(path)) {
        snprintf(dir, sizeof dir, "%s%s", path, path_has_suffix(path, "/") ? "" : "/");
        for (int k = 0; k < 2; k++)
            if (file_at(vocab, cap, dir, pairs[k][0]) && file_at(merges, cap, dir, pairs[k][1])) return true;
        return false;
    }
    path_dir(path, dir, sizeof dir);
    for (int k = 0; k < 2; k++) {
        for (int side = 0; side < 2; side++) {
            char want[64];
            snprintf(want, sizeof want, "/%s", pairs[k][side]);
            if (!(path_has_suffix(path, want) || strcmp(path, pairs[k][side]) == 0)) continue;
            snprintf(side ? merges : vocab, cap, "%s", path);
            return file_at(side ? vocab : merges, cap, dir, pairs[k][!side]);
        }
    }
    return false;
}

/* ---- encoding ----------------------------------------------------------------------------- */

/* A direct-mapped cache of short pre-tokens' ids, for long texts (encoder.py caches likewise):
 * most words of running text repeat. */
#define CACHE_SLOTS 8192
#define CACHE_WORD 22
#define CACHE_IDS 8
typedef struct {
    unsigned char len, nids;
    char word[CACHE_WORD];
    int ids[CACHE_IDS];
} cache_slot;

typedef struct {
    int **ids;
    size_t *n, *cap;
    cache_slot *cache;        /* NULL for short texts */
    /* scratch for one pre-token, grown as needed */
    int *tok, *next, *prev;
    struct mrg { int rank, left, ltok, rtok, merged; } *heap;
    size_t scap;
    pcre2_match_data *md;
} enc;

static int push_id(enc *s, int id, err *e) {
    if (*s->n == *s->cap) {
        size_t nc = *s->cap ? *s->cap * 2 : 64;
        int *p = realloc(*s->ids, nc * sizeof *p);
        if (!p) return err_set(e, SPARQ_ERUNTIME, "out of memory for %zu token ids", nc);
        *s->ids = p;
        *s->cap = nc;
    }
    (*s->ids)[(*s->n)++] = id;
    return SPARQ_OK;
}

static bool mrg_before(const struct mrg *a, const struct mrg *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(struct mrg *h, int *n, struct mrg m) {
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!mrg_before(&m, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
}

static struct mrg heap_pop(struct mrg *h, int *n) {
    struct mrg top = h[0], last = h[--(*n)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && mrg_before(&h[c + 1], &h[c])) c++;
        if (!mrg_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

static void try_pair(const bpe *b, enc *s, int l, int r, int *nh) {
    const pair_slot *p = pair_get(b, s->tok[l], s->tok[r]);
    if (p) heap_push(s->heap, nh, (struct mrg){p->rank, l, s->tok[l], s->tok[r], p->id});
}

/* One pre-token: its bytes' symbols, then the lowest-ranked adjacent pair merged first (leftmost
 * on ties), which is encoder.py's "merge every occurrence of the best pair" order, since a merge
 * never recreates the pair it merged. */
static int merge_word(const bpe *b, enc *s, const unsigned char *w, size_t len, err *e) {
    if (len > s->scap) {
        size_t nc = len > 2 * s->scap ? len : 2 * s->scap;
        free(s->tok); free(s->next); free(s->prev); free(s->heap);
        s->tok = malloc(nc * sizeof *s->tok);
        s->next = malloc(nc * sizeof *s->next);
        s->prev = malloc(nc * sizeof *s->prev);
        s->heap = malloc(2 * nc * sizeof *s->heap);
        s->scap = s->tok && s->next && s->prev && s->heap ? nc : 0;
        if (!s->scap) return err_set(e, SPARQ_ERUNTIME, "out of memory for a pre-token of %zu bytes", len);
    }
    int cnt = (int)len;
    for (int i = 0; i < cnt; i++) {
        s->tok[i] = b->byte_id[w[i]];
        if (s->tok[i] < 0)
            return err_set(e, SPARQ_EINPUT, "text byte 0x%02X has no symbol in the vocabulary (not UTF-8?)", w[i]);
        s->prev[i] = i - 1;
        s->next[i] = i + 1 < cnt ? i + 1 : -1;
    }
    int nh = 0;
    for (int i = 0; i + 1 < cnt; i++) try_pair(b, s, i, i + 1, &nh);
    while (nh > 0) {
        struct mrg m = heap_pop(s->heap, &nh);
        int l = m.left, r = s->next[l];
        if (s->tok[l] != m.ltok || r < 0 || s->tok[r] != m.rtok) continue;   /* stale */
        s->tok[l] = m.merged;
        s->tok[r] = -1;
        s->next[l] = s->next[r];
        if (s->next[r] >= 0) s->prev[s->next[r]] = l;
        if (s->prev[l] >= 0) try_pair(b, s, s->prev[l], l, &nh);
        if (s->next[l] >= 0) try_pair(b, s, l, s->next[l], &nh);
    }
    for (int i = 0; i >= 0; i = s->next[i]) {
        int rc = push_id(s, s->tok[i], e);
        if (rc) return rc;
    }
    return SPARQ_OK;
}

static int encode_word(const bpe *b, enc *s, const unsigned char *w, size_t len, err *e) {
    if (!s->cache || len > CACHE_WORD) return merge_word(b, s, w, len, e);
    cache_slot *c = &s->cache[hash_bytes((const char *)w, len) & (CACHE_SLOTS - 1)];
    if (c->len == len && memcmp(c->word, w, len) == 0) {
        for (int i = 0; i < c->nids; i++) {
            int rc = push_id(s, c->ids[i], e);
            if (rc) return rc;
        }
        return SPARQ_OK;
    }
    size_t before = *s->n;
    int rc = merge_word(b, s, w, len, e);
    if (!rc && *s->n - before <= CACHE_IDS) {
        c->len = (unsigned char)len;
        c->nids = (unsigned char)(*s->n - before);
        memcpy(c->word, w, len);
        memcpy(c->ids, *s->ids + before, c->nids * sizeof(int));
    }
    return rc;
}

/* The regex's matches, each BPE'd; bytes between matches (only invalid UTF-8 is left uncovered)
 * are a pre-token of their own. */
static int encode_text(const bpe *b, enc *s, const char *t, size_t len, err *e) {
    size_t pos = 0;
    int rc = SPARQ_OK;
    while (pos < len && !rc) {
        int m = pcre2_match(b->re, (PCRE2_SPTR)t, len, pos, 0, s->md, NULL);
        size_t ms = len, me = len;
        if (m >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
            ms = ov[0];
            me = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
        } else if (m != PCRE2_ERROR_NOMATCH) {
            return err_set(e, SPARQ_ERUNTIME, "pre-tokenizer regex failed (PCRE2 error %d) at byte %zu", m, pos);
        }
        if (ms > pos) rc = encode_word(b, s, (const unsigned char *)t + pos, ms - pos, e);
        if (!rc && me > ms) rc = encode_word(b, s, (const unsigned char *)t + ms, me - ms, e);
        pos = me;
    }
    return rc;
}

/* Split on added tokens of one kind (normalized or not), leftmost-longest, encoding what is
 * between with `then`. */
static int split_added(const bpe *b, enc *s, const char *t, size_t len, bool normalized,
                       int (*then)(const bpe *, enc *, const char *, size_t, err *), err *e) {
    size_t start = 0;
    int rc = SPARQ_OK;
    const bool *starts = b->starts[normalized];
    for (size_t i = 0; i < len && !rc; i++) {
        if (!starts[(unsigned char)t[i]]) continue;
        int best = -1;
        for (int k = 0; k < b->nadded; k++) {
            const added_token *a = &b->added[k];
            if (a->normalized != normalized || a->text[0] != t[i] || a->len > len - i) continue;
            if (memcmp(a->text, t + i, a->len) == 0 && (best < 0 || a->len > b->added[best].len)) best = k;
        }
        if (best < 0) continue;
        if (i > start) rc = then(b, s, t + start, i - start, e);
        if (!rc) rc = push_id(s, b->added[best].id, e);
        i += b->added[best].len - 1;
        start = i + 1;
    }
    if (!rc && start < len) rc = then(b, s, t + start, len - start, e);
    return rc;
}

static int after_nfc(const bpe *b, enc *s, const char *t, size_t len, err *e) {
    return split_added(b, s, t, len, true, encode_text, e);
}

/* NFC, then normalized added tokens. ASCII is NFC and never composes with what precedes it, so
 * only each run of non-ASCII bytes with the character before it goes through utf8proc; a run it
 * rejects (invalid UTF-8) is left as it is. */
static int normalize(const bpe *b, enc *s, const char *t, size_t len, err *e) {
    size_t i = 0;
    while (i < len && (unsigned char)t[i] < 0x80) i++;
    if (!b->nfc || i == len) return after_nfc(b, s, t, len, e);
    char *out = malloc(len + 1), *o = out;
    size_t ocap = len + 1, start = 0;
    int rc = out ? SPARQ_OK : err_set(e, SPARQ_ERUNTIME, "out of memory normalizing %zu bytes", len);
    while (!rc && start < len) {
        size_t a = start;
        while (a < len && (unsigned char)t[a] < 0x80) a++;
        size_t z = a;
        while (z < len && (unsigned char)t[z] >= 0x80) z++;
        if (a > start && a < len) a--;   /* the ASCII character before the run may be its starter */
        utf8proc_uint8_t *nfc = NULL;
        utf8proc_ssize_t r = a < z ? utf8proc_map((const utf8proc_uint8_t *)t + a, (utf8proc_ssize_t)(z - a), &nfc,
                                                  UTF8PROC_STABLE | UTF8PROC_COMPOSE) : 0;
        const char *run = r > 0 ? (const char *)nfc : t + a;
        size_t rl = r > 0 ? (size_t)r : (r == 0 ? 0 : z - a);
        size_t need = (size_t)(o - out) + (a - start) + rl + 1;
        if (need > ocap) {
            char *p = realloc(out, need * 2);
            if (!p) { free(nfc); rc = err_set(e, SPARQ_ERUNTIME, "out of memory normalizing"); break; }
            o = p + (o - out);
            out = p;
            ocap = need * 2;
        }
        memcpy(o, t + start, a - start);
        o += a - start;
        memcpy(o, run, rl);
        o += rl;
        free(nfc);
        start = z;
    }
    if (!rc) rc = after_nfc(b, s, out, (size_t)(o - out), e);
    free(out);
    return rc;
}

int bpe_encode(const bpe *b, const char *text, size_t len, int **ids, size_t *n, size_t *cap, err *e) {
    enc s = {.ids = ids, .n = n, .cap = cap};
    s.md = pcre2_match_data_create(1, NULL);
    if (len >= 16384) s.cache = calloc(CACHE_SLOTS, sizeof *s.cache);
    if (!s.md) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    int rc = split_added(b, &s, text, len, false, normalize, e);
    pcre2_match_data_free(s.md);
    free(s.cache);
    free(s.tok); free(s.next); free(s.prev); free(s.heap);
    return rc;
}
