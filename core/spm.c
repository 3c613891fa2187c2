#include "spm.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "fileio.h"
#include "text.h"

#define SPM_SPACE "\xe2\x96\x81"   /* U+2581, SentencePiece's visible space */

char *spm_piece_text(const char *piece, size_t len, int id) {
    if (id == TOKEN_BOS) return strdup("\n<s>\n");
    if (id == TOKEN_EOS) return strdup("\n</s>\n");
    char *s = malloc(len + 1), *d = s;
    if (!s) return NULL;
    for (size_t i = 0; i < len;) {
        if (len - i >= 3 && memcmp(piece + i, SPM_SPACE, 3) == 0) {
            *d++ = ' ';
            i += 3;
        } else {
            *d++ = piece[i++];
        }
    }
    *d = '\0';
    return s;
}

char *spm_piece_from_text(const char *text, int id) {
    if (id == TOKEN_BOS && strcmp(text, "\n<s>\n") == 0) return strdup("<s>");
    if (id == TOKEN_EOS && strcmp(text, "\n</s>\n") == 0) return strdup("</s>");
    size_t n = strlen(text);
    char *s = malloc(3 * n + 1), *d = s;
    if (!s) return NULL;
    for (const char *c = text; *c; c++) {
        if (*c == ' ') { memcpy(d, SPM_SPACE, 3); d += 3; }
        else *d++ = *c;
    }
    *d = '\0';
    return s;
}

int spm_piece_type(const char *text, int id) {
    if (id == TOKEN_UNK && strcmp(text, "<unk>") == 0) return SPM_UNKNOWN;
    if (id == TOKEN_BOS || id == TOKEN_EOS) return SPM_CONTROL;
    unsigned b;
    char tail;
    if (strlen(text) == 6 && sscanf(text, "<0x%2X%c", &b, &tail) == 2 && tail == '>') return SPM_BYTE;
    return SPM_NORMAL;
}

/* Pieces and scores collected by a reader, handed to tokenizer_from_pieces. */
typedef struct {
    char **piece;
    float *score;
    int n, cap;
} piece_list;

static void pieces_free(piece_list *p) {
    for (int i = 0; i < p->n; i++) free(p->piece[i]);
    free(p->piece);
    free(p->score);
}

static bool pieces_push(piece_list *p, char *s, float score) {
    if (!s) return false;
    if (p->n == p->cap) {
        int nc = p->cap ? 2 * p->cap : 1024;
        char **a = realloc(p->piece, (size_t)nc * sizeof *a);
        if (a) p->piece = a;
        float *b = realloc(p->score, (size_t)nc * sizeof *b);
        if (b) p->score = b;
        if (!a || !b) { free(s); return false; }
        p->cap = nc;
    }
    p->piece[p->n] = s;
    p->score[p->n++] = score;
    return true;
}

static int pieces_finish(piece_list *p, tokenizer **out, const char *path, err *e) {
    int rc = tokenizer_from_pieces(out, p->n, (const char *const *)p->piece, p->score, path, e);
    pieces_free(p);
    return rc;
}

/* ---- protobuf --------------------------------------------------------------------------------- */

/* A bounds-checked protobuf cursor over [p, end). */
typedef struct {
    const unsigned char *p, *end, *base;
    const char *path, *what;
    err *e;
} pb;

static int pb_fail(pb *r, const char *why) {
    return err_set(r->e, SPARQ_EINPUT, "%s: %s at byte %zu of the %s (truncated or not a "
                   "SentencePiece model?)", r->path, why, (size_t)(r->p - r->base), r->what);
}

static int pb_varint(pb *r, uint64_t *v) {
    uint64_t x = 0;
    for (int s = 0; s < 70; s += 7) {
        if (r->p >= r->end) return pb_fail(r, "varint runs past the end");
        unsigned char c = *r->p++;
        if (s == 63 && c > 1) return pb_fail(r, "varint overflows 64 bits");
        x |= (uint64_t)(c & 0x7f) << s;
        if (!(c & 0x80)) { *v = x; return SPARQ_OK; }
    }
    return pb_fail(r, "varint longer than 10 bytes");
}

/* One field: its number, wire type, and for LEN fields the payload [*sub, *sub + *len). */
static int pb_field(pb *r, uint32_t *field, int *wire, uint64_t *val, const unsigned char **sub) {
    uint64_t key;
    int rc = pb_varint(r, &key);
    if (rc) return rc;
    *field = (uint32_t)(key >> 3);
    *wire = (int)(key & 7);
    if (*field == 0) return pb_fail(r, "field number 0");
    switch (*wire) {
    case 0: return pb_varint(r, val);
    case 1:
        if (r->end - r->p < 8) return pb_fail(r, "fixed64 runs past the end");
        memcpy(val, r->p, 8);
        r->p += 8;
        return SPARQ_OK;
    case 5: {
        if (r->end - r->p < 4) return pb_fail(r, "fixed32 runs past the end");
        uint32_t u;
        memcpy(&u, r->p, 4);
        *val = u;
        r->p += 4;
        return SPARQ_OK;
    }
    case 2:
        if ((rc = pb_varint(r, val))) return rc;
        if (*val > (uint64_t)(r->end - r->p)) return pb_fail(r, "length-delimited field runs past the end");
        *sub = r->p;
        r->p += *val;
        return SPARQ_OK;
    default:
        return pb_fail(r, "unsupported wire type");
    }
}

typedef struct {
    int model_type, bos, eos;
    bool dummy_prefix;
} spm_spec;

static int read_piece(pb *outer, const unsigned char *p, uint64_t len, int id, piece_list *pl) {
    pb r = {p, p + len, outer->base, outer->path, outer->what, outer->e};
    const unsigned char *str = NULL;
    uint64_t slen = 0;
    float score = 0.0f;
    bool have_piece = false;
    while (r.p < r.end) {
        uint32_t f;
        int w;
        uint64_t v = 0;
        const unsigned char *sub = NULL;
        int rc = pb_field(&r, &f, &w, &v, &sub);
        if (rc) return rc;
        if (f == 1 && w == 2) { str = sub; slen = v; have_piece = true; }
        else if (f == 2 && w == 5) { uint32_t u = (uint32_t)v; memcpy(&score, &u, 4); }
    }
    if (!have_piece) return err_set(outer->e, SPARQ_EINPUT, "%s: piece %d has no string", outer->path, id);
    if (memchr(str, '\0', slen))
        return err_set(outer->e, SPARQ_EINPUT, "%s: piece %d contains a NUL byte", outer->path, id);
    if (!pieces_push(pl, spm_piece_text((const char *)str, slen, id), score))
        return err_set(outer->e, SPARQ_ERUNTIME, "out of memory");
    return SPARQ_OK;
}

static int read_spec(pb *outer, const unsigned char *p, uint64_t len, bool trainer, spm_spec *s) {
    pb r = {p, p + len, outer->base, outer->path, outer->what, outer->e};
    while (r.p < r.end) {
        uint32_t f;
        int w;
        uint64_t v = 0;
        const unsigned char *sub = NULL;
        int rc = pb_field(&r, &f, &w, &v, &sub);
        if (rc) return rc;
        if (w != 0) continue;
        if (trainer && f == 3) s->model_type = (int)v;
        else if (trainer && f == 41) s->bos = (int)(int64_t)v;
        else if (trainer && f == 42) s->eos = (int)(int64_t)v;
        else if (!trainer && f == 3) s->dummy_prefix = v != 0;
    }
    return SPARQ_OK;
}

int spm_load_model(tokenizer **out, const char *path, err *e) {
    *out = NULL;
    mapped_file mf;
    int rc = mapped_open(&mf, path, "tokenizer", e);
    if (rc) return rc;
    /* proto2 defaults: unigram, bos 1, eos 2, dummy prefix on. */
    spm_spec spec = {1, 1, 2, true};
    piece_list pl = {0};
    /* An empty file maps nothing (data NULL), and NULL + 0 is undefined: end = data then, and the
     * "0 pieces" message below reports it. */
    pb r = {mf.data, mf.size ? mf.data + mf.size : mf.data, mf.data, path, "tokenizer model", e};
    while (!rc && r.p < r.end) {
        uint32_t f;
        int w;
        uint64_t v = 0;
        const unsigned char *sub = NULL;
        rc = pb_field(&r, &f, &w, &v, &sub);
        if (rc) break;
        if (f == 1 && w == 2) rc = read_piece(&r, sub, v, pl.n, &pl);
        else if (f == 2 && w == 2) rc = read_spec(&r, sub, v, true, &spec);
        else if (f == 3 && w == 2) rc = read_spec(&r, sub, v, false, &spec);
    }
    mapped_close(&mf);
    if (!rc && pl.n < 3)
        rc = err_set(e, SPARQ_EINPUT, "%s: %d pieces; not a SentencePiece model (need at least "
                     "<unk>, <s>, </s>)", path, pl.n);
    static const char *types[] = {"?", "unigram", "BPE", "word", "char"};
    if (!rc && spec.model_type != 2)
        rc = err_set(e, SPARQ_EINPUT, "%s: SentencePiece %s model; only BPE vocabularies are supported "
                     "(llama2.c's encoder merges pairs by score)", path,
                     spec.model_type >= 0 && spec.model_type <= 4 ? types[spec.model_type] : "unknown");
    if (!rc && (spec.bos != TOKEN_BOS || spec.eos != TOKEN_EOS))
        rc = err_set(e, SPARQ_EINPUT, "%s: bos_id %d / eos_id %d; only 1 / 2 are supported", path,
                     spec.bos, spec.eos);
    if (!rc && !spec.dummy_prefix)
        rc = err_set(e, SPARQ_EINPUT, "%s: add_dummy_prefix is off; the llama2.c encoder always adds "
                     "it", path);
    if (rc) {
        pieces_free(&pl);
        return rc;
    }
    return pieces_finish(&pl, out, path, e);
}

/* ---- tokenizer.json ----------------------------------------------------------------------------- */

static bool has_type(const cJSON *o, const char *type) {
    if (!cJSON_IsObject(o)) return false;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (cJSON_IsString(t) && strcmp(t->valuestring, type) == 0) return true;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "pretokenizers");
    if (!list) list = cJSON_GetObjectItemCaseSensitive(o, "decoders");
    if (!list) list = cJSON_GetObjectItemCaseSensitive(o, "normalizers");
    const cJSON *x;
    cJSON_ArrayForEach(x, list) if (has_type(x, type)) return true;
    return false;
}

/* The merge's two halves: "a b" (split at the one space; SentencePiece pieces hold U+2581, never
 * a space) or ["a", "b"] (newer tokenizers). */
static bool merge_parts(const cJSON *m, const char **a, size_t *la, const char **b) {
    if (cJSON_IsString(m)) {
        const char *sp = strchr(m->valuestring, ' ');
        if (!sp || strchr(sp + 1, ' ')) return false;
        *a = m->valuestring;
        *la = (size_t)(sp - m->valuestring);
        *b = sp + 1;
        return true;
    }
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
        cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
        *a = cJSON_GetArrayItem(m, 0)->valuestring;
        *la = strlen(*a);
        *b = cJSON_GetArrayItem(m, 1)->valuestring;
        return true;
    }
    return false;
}

typedef struct {
    const char *key;
    int id;
} key_id;

static int cmp_key(const void *x, const void *y) {
    return strcmp(((const key_id *)x)->key, ((const key_id *)y)->key);
}

static int json_tokenizer(const cJSON *root, const char *path, tokenizer **out, err *e) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model))
        return err_set(e, SPARQ_EINPUT, "%s: no \"model\" object; not a Hugging Face tokenizer.json", path);
    if (has_type(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "ByteLevel") ||
        has_type(cJSON_GetObjectItemCaseSensitive(root, "decoder"), "ByteLevel"))
    {
        bpe *b;
        int rc = bpe_load_json(&b, root, path, e);
        return rc ? rc : tokenizer_from_bpe(out, b, e);
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const char *ts = cJSON_IsString(type) ? type->valuestring : "BPE";
    if (strcmp(ts, "BPE") != 0)
        return err_set(e, SPARQ_EINPUT, "%s: model.type is \"%s\"; only SentencePiece-BPE (\"BPE\") "
                       "tokenizers are supported", path, ts);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        return err_set(e, SPARQ_EINPUT, "%s: model.vocab (object) and model.merges (array) are "
                       "required", path);
    /* Added tokens outside model.vocab (e.g. a <pad> appended by fine-tuning) extend the ids. */
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *x;
    int n = cJSON_GetArraySize(vocab);
    cJSON_ArrayForEach(x, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(x, "id");
        if (cJSON_IsNumber(id) && id->valuedouble >= n && id->valuedouble < (1 << 24))
            n = (int)id->valuedouble + 1;
    }
    if (n < 3 || n > (1 << 24))
        return err_set(e, SPARQ_EINPUT, "%s: vocabulary of %d tokens is out of range", path, n);
    char **piece = calloc((size_t)n, sizeof *piece);
    float *score = malloc((size_t)n * sizeof *score);
    key_id *keys = malloc((size_t)n * sizeof *keys);
    int nk = 0, rc = SPARQ_OK;
    if (!piece || !score || !keys) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    for (int i = 0; !rc && i < n; i++) score[i] = -1e10f;
    /* vocab and added tokens: every id once, in [0, n). */
    for (int pass = 0; pass < 2 && !rc; pass++) {
        const cJSON *list = pass == 0 ? vocab : added;
        cJSON_ArrayForEach(x, list) {
            const char *str = pass == 0 ? x->string : NULL;
            const cJSON *idj = pass == 0 ? x : cJSON_GetObjectItemCaseSensitive(x, "id");
            if (pass == 1) {
                const cJSON *c = cJSON_GetObjectItemCaseSensitive(x, "content");
                str = cJSON_IsString(c) ? c->valuestring : NULL;
            }
            double d = cJSON_IsNumber(idj) ? idj->valuedouble : -1;
            if (!str || d < 0 || d >= n || d != (int)d) {
                rc = err_set(e, SPARQ_EINPUT, "%s: %s entry \"%s\" has no valid id in [0, %d)", path,
                             pass == 0 ? "model.vocab" : "added_tokens", str ? str : "?", n);
                break;
            }
            int id = (int)d;
            if (piece[id]) {
                if (pass == 1) continue;   /* added tokens usually repeat vocab entries */
                rc = err_set(e, SPARQ_EINPUT, "%s: id %d is given to two tokens", path, id);
                break;
            }
            piece[id] = spm_piece_text(str, strlen(str), id);
            if (!piece[id]) { rc = err_set(e, SPARQ_ERUNTIME, "out of memory"); break; }
            if (pass == 0) keys[nk++] = (key_id){x->string, id};
        }
    }
    for (int i = 0; !rc && i < n; i++)
        if (!piece[i]) rc = err_set(e, SPARQ_EINPUT, "%s: no token has id %d", path, i);
    if (!rc) {
        const cJSON *b = NULL;
        cJSON_ArrayForEach(x, added) {
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(x, "content");
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(x, "id");
            if (cJSON_IsString(c) && cJSON_IsNumber(id) &&
                ((strcmp(c->valuestring, "<s>") == 0 && id->valueint != TOKEN_BOS) ||
                 (strcmp(c->valuestring, "</s>") == 0 && id->valueint != TOKEN_EOS)))
                b = x;
        }
        if (b) rc = err_set(e, SPARQ_EINPUT, "%s: <s> / </s> are not ids 1 / 2; not supported", path);
    }
    /* Merge rank r makes piece a+b with score -r (the first merge that makes it wins). */
    if (nk) qsort(keys, (size_t)nk, sizeof *keys, cmp_key);
    char *buf = NULL;
    size_t cap = 0;
    int rank = 0;
    cJSON_ArrayForEach(x, merges) {
        if (rc) break;
        const char *a, *b;
        size_t la;
        if (!merge_parts(x, &a, &la, &b)) {
            rc = err_set(e, SPARQ_EINPUT, "%s: merge %d is not \"a b\" or [a, b]", path, rank);
            break;
        }
        size_t need = la + strlen(b) + 1;
        if (need > cap) {
            char *nb = realloc(buf, need * 2);
            if (!nb) { rc = err_set(e, SPARQ_ERUNTIME, "out of memory"); break; }
            buf = nb;
            cap = need * 2;
        }
        memcpy(buf, a, la);
        strcpy(buf + la, b);
        key_id k = {buf, 0}, *hit = nk ? bsearch(&k, keys, (size_t)nk, sizeof *keys, cmp_key) : NULL;
        if (!hit) {
            rc = err_set(e, SPARQ_EINPUT, "%s: merge %d makes \"%s\", which is not in model.vocab", path,
                         rank, buf);
            break;
        }
        if (score[hit->id] == -1e10f) score[hit->id] = -(float)rank;
        rank++;
    }
    free(buf);
    free(keys);
    if (!rc) rc = tokenizer_from_pieces(out, n, (const char *const *)piece, score, path, e);
    for (int i = 0; piece && i < n; i++) free(piece[i]);
    free(piece);
    free(score);
    return rc;
}

int spm_load_json(tokenizer **out, const char *path, err *e) {
    *out = NULL;
    char *text;
    size_t len;
    int rc = text_read_file(path, &text, &len, e);
    if (rc) return rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return err_set(e, SPARQ_EINPUT, "%s: not valid JSON", path);
    rc = json_tokenizer(root, path, out, e);
    cJSON_Delete(root);
    return rc;
}
