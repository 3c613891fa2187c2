#include "tokenizer.h"

#include "bpe.h"
#include "fileio.h"
#include "gguf.h"
#include "spm.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *str;
    int id;
} vocab_entry;

struct tokenizer {
    int    vocab_size;
    int    max_token_length;
    char **pieces;           /* [vocab_size], NUL-terminated, into `bytes` */
    float *scores;           /* [vocab_size]                               */
    vocab_entry *sorted;     /* pieces sorted by string, for lookup        */
    char  *bytes;            /* storage of all pieces                      */
    unsigned char byte_piece[256];
    int    byte_id[256];     /* byte fallback: the id of "<0xXX>" */
    bpe   *bpe;              /* a byte-level BPE (GPT-2, OPT, NeoX): every call goes to bpe.h */
};

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    free(t->pieces);
    free(t->scores);
    free(t->sorted);
    free(t->bytes);
    bpe_free(t->bpe);
    free(t);
}

int tokenizer_vocab_size(const tokenizer *t) { return t->bpe ? bpe_vocab_size(t->bpe) : t->vocab_size; }

bool tokenizer_is_byte_level(const tokenizer *t) { return t->bpe != NULL; }

int tokenizer_from_bpe(tokenizer **out, bpe *b, err *e) {
    *out = calloc(1, sizeof **out);
    if (!*out) {
        bpe_free(b);
        return err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    (*out)->bpe = b;
    (*out)->vocab_size = bpe_vocab_size(b);
    return SPARQ_OK;
}

const char *tokenizer_piece(const tokenizer *t, int token) {
    if (t->bpe) return bpe_piece(t->bpe, token);
    return token >= 0 && token < t->vocab_size ? t->pieces[token] : "";
}

static int cmp_entry(const void *a, const void *b) {
    const vocab_entry *x = a, *y = b;
    int c = strcmp(x->str, y->str);
    return c ? c : (x->id > y->id) - (x->id < y->id);
}

static int lookup(const tokenizer *t, const char *s) {
    int lo = 0, hi = t->vocab_size - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(s, t->sorted[mid].str);
        if (c == 0) return t->sorted[mid].id;
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return -1;
}

/* Byte fallback ids. tokenizer.bin (`legacy`) keeps run.c's fixed b + 3 (<unk> past the end of a
 * vocabulary too short to hold them all); other vocabularies use their "<0xXX>" pieces wherever
 * they are, and <unk> where a byte has none. */
static void set_byte_ids(tokenizer *t, bool legacy) {
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int id = legacy ? (b + 3 < t->vocab_size ? b + 3 : -1) : lookup(t, name);
        t->byte_id[b] = id >= 0 ? id : TOKEN_UNK;
    }
}

static int load_other(tokenizer **out, const char *path, bool *handled, err *e) {
    *handled = true;
    char vocab[4200], merges[4200];
    if (bpe_find_pair(path, vocab, merges, sizeof vocab)) {
        bpe *b;
        int rc = bpe_load_pair(&b, vocab, merges, e);
        return rc ? rc : tokenizer_from_bpe(out, b, e);
    }
    if (path_is_dir(path)) {
        snprintf(vocab, sizeof vocab, "%s/tokenizer.json", path);
        if (path_exists(vocab)) return spm_load_json(out, vocab, e);
        return err_set(e, SPARQ_EINPUT, "%s: a folder holding none of tokenizer.json, encoder.json + vocab.bpe, "
                       "vocab.json + merges.txt", path);
    }
    if (path_has_suffix(path, "vocab.bpe") || path_has_suffix(path, "merges.txt") ||
        path_has_suffix(path, "encoder.json") || path_has_suffix(path, "vocab.json"))
        return err_set(e, SPARQ_EINPUT, "%s: the other file of its vocabulary/merges pair (encoder.json + "
                       "vocab.bpe or vocab.json + merges.txt) is not beside it", path);
    if (path_has_suffix(path, ".model")) return spm_load_model(out, path, e);
    if (path_has_suffix(path, ".json")) return spm_load_json(out, path, e);
    if (path_has_suffix(path, ".gguf")) return gguf_load_tokenizer(out, path, e);
    char magic[4];
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(magic, 1, 4, f) : 0;
    if (f) fclose(f);
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0) return gguf_load_tokenizer(out, path, e);
    *handled = false;
    return SPARQ_OK;
}

int tokenizer_from_pieces(tokenizer **out, int n, const char *const *pieces, const float *scores,
                          const char *src, err *e) {
    *out = NULL;
    if (n < 3 || n > (1 << 24))
        return err_set(e, SPARQ_EINPUT, "%s: %d tokens; need at least <unk>, <s>, </s>", src, n);
    size_t total = 0, maxlen = 1;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(pieces[i]);
        total += len + 1;
        if (len > maxlen) maxlen = len;
    }
    if (maxlen > 4096)
        return err_set(e, SPARQ_EINPUT, "%s: a token of %zu bytes is longer than 4096", src, maxlen);
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    t->vocab_size = n;
    t->max_token_length = (int)maxlen;
    t->pieces = malloc((size_t)n * sizeof(char *));
    t->scores = malloc((size_t)n * sizeof(float));
    t->sorted = malloc((size_t)n * sizeof(vocab_entry));
    t->bytes = malloc(total);
    if (!t->pieces || !t->scores || !t->sorted || !t->bytes) {
        tokenizer_free(t);
        return err_set(e, SPARQ_ERUNTIME, "out of memory for %d tokens", n);
    }
    char *dst = t->bytes;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(pieces[i]);
        memcpy(dst, pieces[i], len + 1);
        t->pieces[i] = dst;
        t->scores[i] = scores[i];
        t->sorted[i] = (vocab_entry){dst, i};
        dst += len + 1;
    }
    qsort(t->sorted, (size_t)n, sizeof(vocab_entry), cmp_entry);
    for (int b = 0; b < 256; b++) t->byte_piece[b] = (unsigned char)b;
    set_byte_ids(t, false);
    *out = t;
    return SPARQ_OK;
}

float tokenizer_score(const tokenizer *t, int token) {
    if (t->bpe) return 0.0f;
    return token >= 0 && token < t->vocab_size ? t->scores[token] : 0.0f;
}

int tokenizer_load(tokenizer **out, const char *path, err *e) {
    *out = NULL;
    bool handled;
    int orc = load_other(out, path, &handled, e);
    if (handled) return orc;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(e, SPARQ_EINPUT, "%s: cannot open tokenizer: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = size > 0 ? malloc((size_t)size) : NULL;
    if (size < 4 || !buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        fclose(f);
        return err_set(e, SPARQ_EINPUT, "%s: %ld bytes is too short for a llama2.c tokenizer", path,
                       size);
    }
    fclose(f);

    int32_t maxlen;
    memcpy(&maxlen, buf, 4);
    if (maxlen <= 0 || maxlen > 4096) {
        free(buf);
        return err_set(e, SPARQ_EINPUT, "%s: max_token_length %d is out of range (not a llama2.c "
                       "tokenizer?)", path, maxlen);
    }
    /* First pass: count entries and check each against the file length. */
    size_t pos = 4, count = 0, total = 0;
    while (pos < (size_t)size) {
        int32_t len;
        if ((size_t)size - pos < 8) goto truncated;
        memcpy(&len, buf + pos + 4, 4);
        if (len < 0 || len > maxlen) {
            free(buf);
            return err_set(e, SPARQ_EINPUT, "%s: token %zu has length %d, outside [0, %d]", path,
                           count, len, maxlen);
        }
        if ((size_t)size - pos - 8 < (size_t)len) goto truncated;
        pos += 8 + (size_t)len;
        total += (size_t)len + 1;
        count++;
    }
    if (count < 3 || count > (1u << 24)) {
        free(buf);
        return err_set(e, SPARQ_EINPUT, "%s: %zu tokens; need at least <unk>, <s>, </s>", path, count);
    }

    tokenizer *t = calloc(1, sizeof *t);
    if (!t) { free(buf); return err_set(e, SPARQ_ERUNTIME, "out of memory"); }
    t->vocab_size = (int)count;
    t->max_token_length = maxlen;
    t->pieces = malloc(count * sizeof(char *));
    t->scores = malloc(count * sizeof(float));
    t->sorted = malloc(count * sizeof(vocab_entry));
    t->bytes = malloc(total);
    if (!t->pieces || !t->scores || !t->sorted || !t->bytes) {
        free(buf);
        tokenizer_free(t);
        return err_set(e, SPARQ_ERUNTIME, "out of memory for %zu tokens", count);
    }
    pos = 4;
    char *dst = t->bytes;
    for (size_t i = 0; i < count; i++) {
        int32_t len;
        memcpy(&t->scores[i], buf + pos, 4);
        memcpy(&len, buf + pos + 4, 4);
        memcpy(dst, buf + pos + 8, (size_t)len);
        dst[len] = '\0';
        t->pieces[i] = dst;
        t->sorted[i] = (vocab_entry){dst, (int)i};
        dst += len + 1;
        pos += 8 + (size_t)len;
    }
    free(buf);
    qsort(t->sorted, count, sizeof(vocab_entry), cmp_entry);
    for (int b = 0; b < 256; b++) t->byte_piece[b] = (unsigned char)b;
    set_byte_ids(t, true);
    *out = t;
    return SPARQ_OK;

truncated:
    free(buf);
    return err_set(e, SPARQ_EINPUT, "%s: truncated after %zu tokens (byte %zu of %ld)", path, count,
                   pos, size);
}

/* A candidate merge of the pair starting at node `left`. Ordered by score, then position. */
typedef struct {
    float score;
    int left, ltok, rtok, merged;
} merge;

static bool merge_before(const merge *a, const merge *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(merge *h, int *n, merge m) {
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!merge_before(&m, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
}

static merge heap_pop(merge *h, int *n) {
    merge top = h[0], last = h[--(*n)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && merge_before(&h[c + 1], &h[c])) c++;
        if (!merge_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

/* Push the merge of nodes (l, r) if their concatenation is a vocabulary piece. llama2.c only
 * accepts scores above its initial best of -1e10, so neither do we. */
static void try_pair(const tokenizer *t, const int *tok, int l, int r, char *buf, merge *h, int *nh) {
    const char *a = t->pieces[tok[l]], *b = t->pieces[tok[r]];
    size_t la = strlen(a), lb = strlen(b);
    if (la + lb > (size_t)t->max_token_length) return;   /* cannot be a piece */
    memcpy(buf, a, la);
    memcpy(buf + la, b, lb + 1);
    int id = lookup(t, buf);
    if (id < 0 || !(t->scores[id] > -1e10f)) return;
    heap_push(h, nh, (merge){t->scores[id], l, tok[l], tok[r], id});
}

/* The family's BOS (if any), the text, the family's EOS (if any). */
static int encode_bpe(const bpe *b, const char *text, bool bos, bool eos, int **ids, int *n, err *e) {
    size_t cnt = 0, cap = 0;
    int *out = NULL, rc = SPARQ_OK;
    size_t len = strlen(text);
    if (len > (size_t)INT32_MAX / 2) return err_set(e, SPARQ_EINPUT, "text of %zu bytes is too long to encode", len);
    int extra[2] = {bos ? bpe_bos_id(b) : -1, eos ? bpe_eos_id(b) : -1};
    if (extra[0] >= 0 && !(out = malloc(64 * sizeof *out))) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (extra[0] >= 0) { out[cnt++] = extra[0]; cap = 64; }
    rc = bpe_encode(b, text, len, &out, &cnt, &cap, e);
    if (!rc && extra[1] >= 0) {
        int *p = realloc(out, (cnt + 1) * sizeof *p);
        if (!p) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
        else { out = p; out[cnt++] = extra[1]; }
    }
    if (rc) { free(out); return rc; }
    if (!out) out = malloc(sizeof *out);   /* empty text: still a valid array for the caller */
    if (!out) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    *ids = out;
    *n = (int)cnt;
    return SPARQ_OK;
}

int tokenizer_encode(const tokenizer *t, const char *text, bool bos, bool eos, int **ids, int *n,
                     err *e) {
    *ids = NULL;
    *n = 0;
    if (t->bpe) return encode_bpe(t->bpe, text, bos, eos, ids, n, e);
    size_t tlen = strlen(text);
    /* At most one token per byte, plus BOS, dummy prefix and EOS. */
    size_t cap = tlen + 3;
    int *tok = malloc(cap * sizeof(int));
    int *next = malloc(cap * sizeof(int));
    int *prev = malloc(cap * sizeof(int));
    /* Stale pairs stay in the heap until popped: n - 1 initial pairs, and each merge pops one and
     * pushes up to two, so it can hold up to 2 n - 2 entries. */
    merge *heap = malloc(2 * cap * sizeof(merge));
    char *buf = malloc((size_t)t->max_token_length * 2 + 8);
    if (!tok || !next || !prev || !heap || !buf) {
        free(tok); free(next); free(prev); free(heap); free(buf);
        return err_set(e, SPARQ_ERUNTIME, "out of memory encoding %zu bytes", tlen);
    }
    int cnt = 0;
    if (bos) tok[cnt++] = TOKEN_BOS;
    if (tlen > 0) {
        int space = lookup(t, " ");
        if (space < 0) {
            free(tok); free(next); free(prev); free(heap); free(buf);
            return err_set(e, SPARQ_EINPUT, "tokenizer has no \" \" piece for the dummy prefix");
        }
        tok[cnt++] = space;
    }
    /* UTF-8 codepoints (at most 4 bytes) looked up whole; unknown ones fall back to bytes. */
    size_t slen = 0;
    for (const char *c = text; *c; c++) {
        if ((*c & 0xC0) != 0x80) slen = 0;
        buf[slen++] = *c;
        buf[slen] = '\0';
        if ((c[1] & 0xC0) == 0x80 && slen < 4) continue;
        int id = lookup(t, buf);
        if (id >= 0) {
            tok[cnt++] = id;
        } else {
            for (size_t i = 0; i < slen; i++) tok[cnt++] = t->byte_id[(unsigned char)buf[i]];
        }
        slen = 0;
    }
    /* Best-pair merging with a heap instead of llama2.c's full rescan per merge: the same
     * choice (highest score, then leftmost pair) in O(n log n) instead of O(n^2). */
    for (int i = 0; i < cnt; i++) {
        prev[i] = i - 1;
        next[i] = i + 1 < cnt ? i + 1 : -1;
    }
    int nh = 0;
    for (int i = 0; i + 1 < cnt; i++) try_pair(t, tok, i, i + 1, buf, heap, &nh);
    while (nh > 0) {
        merge m = heap_pop(heap, &nh);
        int l = m.left, r = next[l];
        if (tok[l] < 0 || r < 0 || tok[l] != m.ltok || tok[r] != m.rtok) continue;   /* stale */
        tok[l] = m.merged;
        tok[r] = -1;
        next[l] = next[r];
        if (next[r] >= 0) prev[next[r]] = l;
        if (prev[l] >= 0) try_pair(t, tok, prev[l], l, buf, heap, &nh);
        if (next[l] >= 0) try_pair(t, tok, l, next[l], buf, heap, &nh);
    }
    int k = 0;
    for (int i = 0; i >= 0 && i < cnt; i = next[i]) tok[k++] = tok[i];
    if (eos) tok[k++] = TOKEN_EOS;
    free(next); free(prev); free(heap); free(buf);
    *ids = tok;
    *n = k;
    return SPARQ_OK;
}

const char *tokenizer_decode(const tokenizer *t, int prev, int token, int *len) {
    if (t->bpe) return bpe_bytes(t->bpe, token, len);
    const char *piece = tokenizer_piece(t, token);
    if (prev == TOKEN_BOS && piece[0] == ' ') piece++;
    unsigned char b;
    if (sscanf(piece, "<0x%02hhX>", &b) == 1) {
        *len = 1;
        return (const char *)&t->byte_piece[b];
    }
    *len = (int)strlen(piece);
    return piece;
}

void token_seqs_free(token_seqs *s) {
    if (!s) return;
    free(s->tokens);
    free(s->lens);
    free(s->offs);
    memset(s, 0, sizeof *s);
}

int token_seqs_alloc(token_seqs *s, int n, long ntok, err *e) {
    s->tokens = malloc((size_t)(ntok > 0 ? ntok : 1) * sizeof(int));
    s->lens = malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    s->offs = malloc((size_t)(n > 0 ? n : 1) * sizeof(long));
    s->n = n;
    s->unscored = 0;
    if (!s->tokens || !s->lens || !s->offs) {
        token_seqs_free(s);
        return err_set(e, SPARQ_ERUNTIME, "out of memory for %ld tokens", ntok);
    }
    return SPARQ_OK;
}

static bool has_gguf_magic(const char *p) {
    char mg[4] = {0};
    FILE *f = fopen(p, "rb");
    bool yes = f && fread(mg, 1, 4, f) == 4 && memcmp(mg, "GGUF", 4) == 0;
    if (f) fclose(f);
    return yes;
}

/* The first candidate file in folder dir (ending in '/', or "") that exists, into buf; false if
 * none. */
static bool find_in_dir(const char *dir, int vocab_size, char *buf, size_t cap) {
    char tok[32];
    snprintf(tok, sizeof tok, "tok%d.bin", vocab_size);
    /* vocab.json / encoder.json: a Hugging Face OPT or GPT-2 folder's pair (bpe_find_pair). */
    const char *names[] = {"tokenizer.bin", tok, "tokenizer.model", "tokenizer.json", "vocab.json", "encoder.json"};
    for (int i = 0; i < 6; i++) {
        snprintf(buf, cap, "%s%s", dir, names[i]);
        if (path_exists(buf) && !path_is_dir(buf)) return true;
    }
    return false;
}

/* The folder tokenizers are looked for in: the model's folder, or the model itself when it is a
 * folder (or is to be written as one: `inside`), with a trailing '/' ("" for the working one). */
static void model_dir(const char *model_path, bool inside, char *dir, size_t cap) {
    if (inside || path_is_dir(model_path))
        snprintf(dir, cap, "%s%s", model_path, path_has_suffix(model_path, "/") ? "" : "/");
    else
        path_dir(model_path, dir, cap);
}

/* The first candidate file beside (or inside) the model that exists, into buf; false if none. */
static bool find_beside(const char *model_path, int vocab_size, char *buf, size_t cap) {
    char dir[4096];
    model_dir(model_path, false, dir, sizeof dir);
    return find_in_dir(dir, vocab_size, buf, cap);
}

int tokenizer_load_for_model(tokenizer **out, const char *model_path, int vocab_size,
                             const char *path, char *used, size_t cap, err *e) {
    *out = NULL;
    char buf[4200];
    int rc = SPARQ_OK;
    err gguf_err = {0};
    if (!path && has_gguf_magic(model_path)) {
        /* A GGUF's own vocabulary first; when it has none, look beside it as for any model. */
        if ((rc = tokenizer_load(out, model_path, &gguf_err)) == SPARQ_OK) path = model_path;
    }
    if (!path) {
        if (!find_beside(model_path, vocab_size, buf, sizeof buf)) {
            if (rc) return err_set(e, rc, "%s", gguf_err.msg);   /* why its vocabulary failed */
            return err_set(e, SPARQ_EINPUT, "no tokenizer given and none of tokenizer.bin, tok%d.bin, "
                           "tokenizer.model, tokenizer.json, vocab.json, encoder.json is beside %s", vocab_size, model_path);
        }
        path = buf;
    }
    if (!*out && (rc = tokenizer_load(out, path, e))) return rc;
    /* Byte-level models pad their embedding tables past the tokenizer (OPT 50272 for 50265 ids,
     * Pythia 50304 for 50277): ids beyond the tokenizer are never produced. */
    bool padded = tokenizer_is_byte_level(*out) && (*out)->vocab_size < vocab_size;
    if ((*out)->vocab_size != vocab_size && !padded) {
        rc = err_set(e, SPARQ_EINPUT, "%s has %d tokens but model %s has a vocabulary of %d", path,
                     (*out)->vocab_size, model_path, vocab_size);
        tokenizer_free(*out);
        *out = NULL;
        return rc;
    }
    if (used) snprintf(used, cap, "%s", path);
    return SPARQ_OK;
}

/* ---- a model's tokenizer written beside it -------------------------------------------------- */

/* Whether two tokenizers are the same vocabulary: the same pieces (and scores and byte fallback
 * for SentencePiece-BPE). */
static bool tokenizer_same(const tokenizer *a, const tokenizer *b) {
    if (tokenizer_is_byte_level(a) != tokenizer_is_byte_level(b) ||
        tokenizer_vocab_size(a) != tokenizer_vocab_size(b))
        return false;
    for (int i = 0; i < tokenizer_vocab_size(a); i++)
        if (strcmp(tokenizer_piece(a, i), tokenizer_piece(b, i)) != 0 ||
            tokenizer_score(a, i) != tokenizer_score(b, i))
            return false;
    return a->bpe || memcmp(a->byte_id, b->byte_id, sizeof a->byte_id) == 0;
}

/* dst = a byte copy of src, written atomically. */
static int copy_file(const char *src, const char *dst, err *e) {
    mapped_file f;
    int rc = mapped_open(&f, src, "tokenizer", e);
    if (rc) return rc;
    atomic_file a;
    rc = atomic_open(&a, dst, e);
    if (!rc) {
        if (f.size) atomic_write(&a, f.data, (size_t)f.size);
        rc = atomic_commit(&a, e);
    }
    mapped_close(&f);
    return rc;
}

/* llama2.c's tokenizer.bin reader takes byte pieces at ids 3 .. 258 (run.c's rule), so a
 * vocabulary whose "<0xXX>" pieces sit elsewhere cannot be written as one without changing what
 * it encodes. */
static int check_llama2c(const tokenizer *t, const char *src, err *e) {
    for (int b = 0; b < 256; b++) {
        int legacy = b + 3 < t->vocab_size ? b + 3 : TOKEN_UNK;
        if (t->byte_id[b] != legacy)
            return err_set(e, SPARQ_EINPUT, "%s: the vocabulary's byte piece <0x%02X> is id %d, not %d: "
                           "it cannot be written as a llama2.c tokenizer.bin", src, b, t->byte_id[b], legacy);
    }
    return SPARQ_OK;
}

/* llama2.c's tokenizer.bin: max_token_length, then per token its score, length and bytes. */
static int save_llama2c(const tokenizer *t, const char *path, err *e) {
    atomic_file a;
    int rc = atomic_open(&a, path, e);
    if (rc) return rc;
    int32_t maxlen = t->max_token_length;
    atomic_write(&a, &maxlen, 4);
    for (int i = 0; i < t->vocab_size; i++) {
        int32_t len = (int32_t)strlen(t->pieces[i]);
        atomic_write(&a, &t->scores[i], 4);
        atomic_write(&a, &len, 4);
        atomic_write(&a, t->pieces[i], (size_t)len);
    }
    return atomic_commit(&a, e);
}

/* buf = dir + name; SPARQ_EINPUT when it does not fit. */
static int join(char *buf, size_t cap, const char *dir, const char *name, err *e) {
    int n = snprintf(buf, cap, "%s%s", dir, name);
    return n >= 0 && (size_t)n < cap ? SPARQ_OK : err_set(e, SPARQ_EINPUT, "%s%s: path too long", dir, name);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* How t (read from src) goes into dir, under a name find_in_dir looks for. Beside a model file, a
 * SentencePiece-BPE vocabulary is written as tok<vocab>.bin (llama2.c's format, the name only
 * models of this vocabulary size look for, so it never shadows another model's tokenizer.bin,
 * tokenizer.model or tokenizer.json in a shared folder); inside a Hugging Face folder, the model's
 * own, a .model or .json source keeps its kind (tokenizer.model, tokenizer.json). Byte-level
 * vocabularies are copied: the pair under its own names, else tokenizer.json. */
typedef enum { COPY_PAIR, COPY_AS, WRITE_LLAMA2C } write_kind;

typedef struct {
    write_kind kind;
    char from[4200], from2[4200];    /* source file(s) of a copy; from2: a pair's merges file */
    char name[32];                   /* the name in dir (COPY_AS, WRITE_LLAMA2C)              */
} write_plan;

static int plan_write(const tokenizer *t, const char *src, bool inside, write_plan *p, err *e) {
    bool json = path_is_dir(src) || path_has_suffix(src, ".json"), spm_model = path_has_suffix(src, ".model");
    snprintf(p->from, sizeof p->from, "%s", src);
    if (t->bpe && bpe_find_pair(src, p->from, p->from2, sizeof p->from)) return p->kind = COPY_PAIR, SPARQ_OK;
    if (json && (t->bpe || inside)) {
        /* a folder is read through its tokenizer.json */
        int rc = path_is_dir(src) ? join(p->from, sizeof p->from, src, "/tokenizer.json", e) : SPARQ_OK;
        if (rc) return rc;
        snprintf(p->name, sizeof p->name, "tokenizer.json");
        return p->kind = COPY_AS, SPARQ_OK;
    }
    if (t->bpe) return err_set(e, SPARQ_EINPUT, "%s: a byte-level vocabulary that is no tokenizer.json or "
                               "vocabulary/merges pair cannot be written beside a model", src);
    if (spm_model && inside) {
        snprintf(p->name, sizeof p->name, "tokenizer.model");
        return p->kind = COPY_AS, SPARQ_OK;
    }
    snprintf(p->name, sizeof p->name, "tok%d.bin", tokenizer_vocab_size(t));
    /* A llama2.c file is copied as it is; any other source is written from its pieces. */
    p->kind = !json && !spm_model && !has_gguf_magic(src) ? COPY_AS : WRITE_LLAMA2C;
    return p->kind == WRITE_LLAMA2C ? check_llama2c(t, src, e) : SPARQ_OK;
}

static int do_write(const tokenizer *t, const write_plan *p, const char *dir, char *written, size_t cap,
                    err *e) {
    char dst[4200];
    int rc;
    switch (p->kind) {
    case COPY_PAIR:
        if ((rc = join(dst, sizeof dst, dir, base_name(p->from2), e)) || (rc = copy_file(p->from2, dst, e)) ||
            (rc = join(written, cap, dir, base_name(p->from), e)))
            return rc;
        return copy_file(p->from, written, e);
    case COPY_AS:
        if ((rc = join(written, cap, dir, p->name, e))) return rc;
        return copy_file(p->from, written, e);
    case WRITE_LLAMA2C:
        if ((rc = join(written, cap, dir, p->name, e))) return rc;
        return save_llama2c(t, written, e);
    }
    return err_set(e, SPARQ_ERUNTIME, "unknown write plan %d", (int)p->kind);
}

int tokenizer_save_beside(const tokenizer *t, const char *src, const char *model_path, bool inside,
                          bool check_only, char *written, size_t cap, err *e) {
    char dir[4096], found[4200], buf[4200];
    model_dir(model_path, inside, dir, sizeof dir);
    if (!written) { written = buf; cap = sizeof buf; }
    written[0] = '\0';
    if (find_in_dir(dir, tokenizer_vocab_size(t), found, sizeof found)) {
        /* Whatever is there is what a reader of the model will take: it must be this vocabulary. */
        tokenizer *there = NULL;
        err te = {0};
        bool same = tokenizer_load(&there, found, &te) == SPARQ_OK && tokenizer_same(t, there);
        tokenizer_free(there);
        if (!same)
            return err_set(e, SPARQ_EINPUT, "%s: %s is already there and is not the model's vocabulary "
                           "(%s): write the model into another folder", model_path, found, src);
        snprintf(written, cap, "%s", found);
        return SPARQ_OK;
    }
    /* Planned (and checked) before anything is written, so check_only catches every refusal. */
    write_plan *plan = malloc(sizeof *plan);
    if (!plan) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    int rc = plan_write(t, src, inside, plan, e);
    if (!rc && !check_only) rc = do_write(t, plan, dir, written, cap, e);
    free(plan);
    if (rc || check_only) return rc;
    /* What a reader finds now must be this vocabulary (the reader's rule, not ours, decides). */
    tokenizer *back = NULL;
    rc = tokenizer_load_for_model(&back, inside ? dir : model_path, tokenizer_vocab_size(t), NULL, NULL, 0, e);
    if (!rc && !tokenizer_same(t, back))
        rc = err_set(e, SPARQ_ERUNTIME, "%s: the tokenizer written beside it reads back as another vocabulary",
                     written);
    tokenizer_free(back);
    return rc;
}
