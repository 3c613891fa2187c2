/* The task adapters of eval/zeroshot.h: each reads one task file in its original public format
 * into documents and log-likelihood requests exactly as lm-evaluation-harness v0.4's task yaml
 * builds them (algorithms.md §8), then tokenizes the requests. */
#include "zeroshot.h"

#include <cJSON.h>
#include <gsl/gsl_rng.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/text.h"

const char *const zeroshot_task_names[] = {"piqa", "arc_easy", "arc_challenge", "hellaswag",
                                           "winogrande", "boolq", "lambada", "cloze", "ending",
                                           NULL};

/* ---- Python string semantics ----------------------------------------------------------------- */

/* Bytes of the whitespace character (Python str.isspace) that starts at s[0], or 0. Covers
 * ASCII, U+001C..U+001F and the multi-byte spaces U+0085, U+00A0, U+1680, U+2000..U+200A,
 * U+2028, U+2029, U+202F, U+205F, U+3000. */
static int space_at(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0) return 0;
    if (u[0] == ' ' || (u[0] >= '\t' && u[0] <= '\r') || (u[0] >= 0x1c && u[0] <= 0x1f)) return 1;
    if (n >= 2 && u[0] == 0xc2 && (u[1] == 0x85 || u[1] == 0xa0)) return 2;
    if (n >= 3 && u[0] == 0xe1 && u[1] == 0x9a && u[2] == 0x80) return 3;
    if (n >= 3 && u[0] == 0xe2 && u[1] == 0x80 &&
        ((u[2] >= 0x80 && u[2] <= 0x8a) || u[2] == 0xa8 || u[2] == 0xa9 || u[2] == 0xaf)) return 3;
    if (n >= 3 && u[0] == 0xe2 && u[1] == 0x81 && u[2] == 0x9f) return 3;
    if (n >= 3 && u[0] == 0xe3 && u[1] == 0x80 && u[2] == 0x80) return 3;
    return 0;
}

/* Bytes of the whitespace character that ends s[0..n), or 0. */
static int space_before(const char *s, size_t n) {
    for (int k = 1; k <= 3 && (size_t)k <= n; k++)
        if (space_at(s + n - k, (size_t)k) == k) return k;
    return 0;
}

/* Python str.strip() of s[0..*n): returns the new start, *n the new length. */
static const char *py_strip(const char *s, size_t *n) {
    int k;
    while ((k = space_at(s, *n)) > 0) { s += k; *n -= (size_t)k; }
    while ((k = space_before(s, *n)) > 0) *n -= (size_t)k;
    return s;
}

/* s[0..n) holds something besides whitespace. */
static bool has_text(const char *s, size_t n) {
    py_strip(s, &n);
    return n > 0;
}

/* Python len(): code points of UTF-8 text (every byte that does not continue a sequence). */
static int py_len(const char *s) {
    int n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* ---- growing strings ------------------------------------------------------------------------- */

typedef struct {
    char  *s;
    size_t n, cap;
    bool   oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = (b->n + n + 1) * 2;
        char *p = realloc(b->s, nc);
        if (!p) { b->oom = true; return; }
        b->s = p;
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_reset(sbuf *b) {
    b->n = 0;
    if (b->s) b->s[0] = '\0';
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* ---- building a task ------------------------------------------------------------------------- */

typedef struct {
    zeroshot_task *t;
    int            doc_cap, req_cap;
    const char    *path;     /* the data file, for messages */
    const char    *lab_path; /* the labels file looked for (PIQA's messages) */
} build;

static int doc_begin(build *b, int line, int gold, err *e) {
    zeroshot_task *t = b->t;
    if (t->n_docs == b->doc_cap) {
        int nc = b->doc_cap ? 2 * b->doc_cap : 256;
        zeroshot_doc *d = realloc(t->docs, (size_t)nc * sizeof *d);
        if (!d) return err_set(e, SPARQ_ERUNTIME, "out of memory");
        t->docs = d;
        b->doc_cap = nc;
    }
    t->docs[t->n_docs++] = (zeroshot_doc){.first = t->n_req, .n = 0, .gold = gold, .line = line};
    return SPARQ_OK;
}

/* Append a request to the current document: (ctx, cont) with the harness's move of the
 * context's trailing whitespace to the front of the continuation; `chars` is the length of
 * the choice for acc_norm. */
static int req_add(build *b, const char *ctx, size_t nctx, const char *cont, size_t ncont,
                   int chars, err *e) {
    zeroshot_task *t = b->t;
    if (t->n_req == b->req_cap) {
        int nc = b->req_cap ? 2 * b->req_cap : 1024;
        zeroshot_request *r = realloc(t->req, (size_t)nc * sizeof *r);
        if (!r) return err_set(e, SPARQ_ERUNTIME, "out of memory");
        t->req = r;
        b->req_cap = nc;
    }
    size_t keep = nctx;
    int k;
    while ((k = space_before(ctx, keep)) > 0) keep -= (size_t)k;
    zeroshot_request *r = &t->req[t->n_req];
    memset(r, 0, sizeof *r);
    r->context = dup_n(ctx, keep);
    r->continuation = malloc(nctx - keep + ncont + 1);
    if (!r->context || !r->continuation) {
        free(r->context);
        free(r->continuation);
        return err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    memcpy(r->continuation, ctx + keep, nctx - keep);
    memcpy(r->continuation + (nctx - keep), cont, ncont);
    r->continuation[nctx - keep + ncont] = '\0';
    r->chars = chars;
    t->n_req++;
    t->docs[t->n_docs - 1].n++;
    return SPARQ_OK;
}

/* A multiple-choice request: (ctx, " " + choice), the harness's target delimiter. */
static int choice_add(build *b, const char *ctx, const char *choice, sbuf *tmp, err *e) {
    sb_reset(tmp);
    sb_str(tmp, " ");
    sb_str(tmp, choice);
    if (tmp->oom) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    return req_add(b, ctx, strlen(ctx), tmp->s, tmp->n, py_len(choice), e);
}

/* ---- labels files (PIQA, WinoGrande): one integer per line, aligned with the data items ------ */

typedef struct {
    char *path;
    int  *v;
    int  *line;
    int   n;
} labels;

static void labels_free(labels *l) {
    free(l->path);
    free(l->v);
    free(l->line);
    memset(l, 0, sizeof *l);
}

static int labels_read(const char *path, labels *l, err *e) {
    memset(l, 0, sizeof *l);
    char *buf;
    int rc = text_read_file(path, &buf, NULL, e);
    if (rc) return rc;
    l->path = dup_n(path, strlen(path));
    size_t cap = 1;
    for (const char *p = buf; *p; p++) cap += *p == '\n';
    l->v = malloc(cap * sizeof(int));
    l->line = malloc(cap * sizeof(int));
    if (!l->path || !l->v || !l->line) {
        free(buf);
        labels_free(l);
        return err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    int lineno = 0, blank_from = 0;    /* trailing blank lines end the file; others are errors */
    for (char *p = buf; *p;) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p), sn = n;
        const char *s = py_strip(p, &sn);
        lineno++;
        p += n + (nl ? 1 : 0);
        if (sn == 0) {
            if (!blank_from) blank_from = lineno;
            continue;
        }
        if (blank_from) {
            rc = err_set(e, SPARQ_EINPUT, "%s:%d: empty line inside the labels", path, blank_from);
            break;
        }
        char tmp[16], *end;
        snprintf(tmp, sizeof tmp, "%.*s", (int)(sn < 15 ? sn : 15), s);
        long x = strtol(tmp, &end, 10);
        if (sn > 9 || *end != '\0') {
            rc = err_set(e, SPARQ_EINPUT, "%s:%d: label '%.*s' is not an integer", path, lineno,
                         (int)(sn < 40 ? sn : 40), s);
            break;
        }
        l->v[l->n] = (int)x;
        l->line[l->n++] = lineno;
    }
    free(buf);
    if (rc) labels_free(l);
    return rc;
}

/* Label of data item `idx` (0-based) at data line `line`, checked to lie in [lo, hi]. */
static int labels_get(const labels *l, int idx, int line, const char *data, int lo, int hi, int *out,
                      err *e) {
    if (idx >= l->n)
        return err_set(e, SPARQ_EINPUT, "%s: has %d labels, but %s:%d is item %d and needs one", l->path,
                       l->n, data, line, idx + 1);
    if (l->v[idx] < lo || l->v[idx] > hi)
        return err_set(e, SPARQ_EINPUT, "%s:%d: label %d is out of range [%d, %d]", l->path, l->line[idx],
                       l->v[idx], lo, hi);
    *out = l->v[idx];
    return SPARQ_OK;
}

/* "DATA,LABELS" -> data and labels paths; "X.jsonl" -> X-labels.lst as the sibling candidate. */
static int split_paths(const char *path, char **data, char **lab, bool *explicit_lab, err *e) {
    const char *comma = strchr(path, ',');
    *explicit_lab = comma != NULL;
    if (comma) {
        *data = dup_n(path, (size_t)(comma - path));
        *lab = dup_n(comma + 1, strlen(comma + 1));
    } else {
        size_t n = strlen(path);
        *data = dup_n(path, n);
        if (n > 6 && strcmp(path + n - 6, ".jsonl") == 0) n -= 6;
        *lab = malloc(n + 12);
        if (*lab) snprintf(*lab, n + 12, "%.*s-labels.lst", (int)n, path);
    }
    if (!*data || !*lab) {
        free(*data);
        free(*lab);
        return err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    return SPARQ_OK;
}

static bool file_exists(const char *p) {
    FILE *f = fopen(p, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* ---- JSON lines ------------------------------------------------------------------------------ */

typedef struct {
    build       *b;
    const labels *lab;       /* NULL when the items carry their labels           */
    sbuf         ctx, tmp;
    int          item;       /* 0-based index of the item among non-blank lines */
} item_ctx;

typedef int (*item_fn)(item_ctx *c, const cJSON *j, int line, err *e);

static const char *get_str(item_ctx *c, const cJSON *j, const char *key, int line, err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsString(v)) {
        err_set(e, SPARQ_EINPUT, "%s:%d: missing string field \"%s\"", c->b->path, line, key);
        return NULL;
    }
    return v->valuestring;
}

/* A string field the item builds its context or a continuation from: empty or only whitespace
 * (Python str.strip) leaves nothing to score, so the item is refused rather than scored as a
 * bare prompt or a bare space (the harness would score it). */
static int no_text(item_ctx *c, const char *key, const char *v, int line, err *e) {
    return err_set(e, SPARQ_EINPUT, "%s:%d: field \"%s\" is %s: nothing to score", c->b->path, line, key,
                   v[0] ? "only whitespace" : "empty");
}

static const char *get_text(item_ctx *c, const cJSON *j, const char *key, int line, err *e) {
    const char *v = get_str(c, j, key, line, e);
    if (v && !has_text(v, strlen(v))) {
        no_text(c, key, v, line, e);
        return NULL;
    }
    return v;
}

/* An integer label field, as a number or a string of digits (HF exports use both). */
static int get_int(item_ctx *c, const cJSON *j, const char *key, int line, int lo, int hi, int *out,
                   err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    double x;
    char *end = NULL;
    if (cJSON_IsNumber(v)) x = v->valuedouble;
    else if (cJSON_IsString(v) && v->valuestring[0]) x = strtod(v->valuestring, &end);
    else return err_set(e, SPARQ_EINPUT, "%s:%d: missing integer field \"%s\"", c->b->path, line, key);
    /* Checked against int's range before any cast: converting a double past it is undefined. */
    if (!(x >= INT_MIN && x <= INT_MAX))
        return err_set(e, SPARQ_EINPUT, "%s:%d: \"%s\" %g is out of range [%d, %d]", c->b->path, line,
                       key, x, lo, hi);
    if ((end && *end) || x != (double)(int)x)
        return err_set(e, SPARQ_EINPUT, "%s:%d: field \"%s\" is not an integer", c->b->path, line, key);
    if (x < lo || x > hi)
        return err_set(e, SPARQ_EINPUT, "%s:%d: \"%s\" %d is out of range [%d, %d]", c->b->path, line,
                       key, (int)x, lo, hi);
    *out = (int)x;
    return SPARQ_OK;
}

static int read_jsonl(build *b, const labels *lab, int limit, item_fn fn, err *e) {
    char *buf;
    int rc = text_read_file(b->path, &buf, NULL, e);
    if (rc) return rc;
    item_ctx c = {.b = b, .lab = lab};
    int lineno = 0;
    for (char *line = buf; *line && rc == SPARQ_OK && (limit <= 0 || c.item < limit);) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        lineno++;
        size_t sn = n;
        py_strip(line, &sn);
        if (sn > 0) {
            cJSON *j = cJSON_ParseWithLength(line, n);
            if (!cJSON_IsObject(j)) rc = err_set(e, SPARQ_EINPUT, "%s:%d: not a JSON object", b->path, lineno);
            else rc = fn(&c, j, lineno, e);
            cJSON_Delete(j);
            if (c.ctx.oom || c.tmp.oom) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
            c.item++;
        }
        line += n + (nl ? 1 : 0);
    }
    /* A labels file longer than the data is misaligned too (unless --limit cut the data). */
    if (rc == SPARQ_OK && lab && (limit <= 0 || c.item < limit) && lab->n > c.item)
        rc = err_set(e, SPARQ_EINPUT, "%s: has %d labels, but %s has %d items (line %d is extra)",
                     lab->path, lab->n, b->path, c.item, lab->line[c.item]);
    if (rc == SPARQ_OK && b->t->n_docs == 0)
        rc = err_set(e, SPARQ_EINPUT, "%s: no items", b->path);
    free(c.ctx.s);
    free(c.tmp.s);
    free(buf);
    return rc;
}

/* ---- the adapters (lm-evaluation-harness v0.4 task yamls) -------------------------------------- */

/* piqa: "Question: {goal}\nAnswer:", choices [sol1, sol2], gold from the labels file. */
static int item_piqa(item_ctx *c, const cJSON *j, int line, err *e) {
    const char *goal = get_text(c, j, "goal", line, e), *s1 = NULL, *s2 = NULL;
    if (goal) s1 = get_text(c, j, "sol1", line, e);
    if (s1) s2 = get_text(c, j, "sol2", line, e);
    if (!s2) return SPARQ_EINPUT;
    if (!c->lab && !cJSON_GetObjectItemCaseSensitive(j, "label"))
        return err_set(e, SPARQ_EINPUT, "%s:%d: no label: %s does not exist and the item has no \"label\" "
                       "field (name a labels file as DATA,LABELS)", c->b->path, line, c->b->lab_path);
    int gold, rc = c->lab ? labels_get(c->lab, c->item, line, c->b->path, 0, 1, &gold, e)
                          : get_int(c, j, "label", line, 0, 1, &gold, e);
    if (rc) return rc;
    sb_reset(&c->ctx);
    sb_str(&c->ctx, "Question: ");
    sb_str(&c->ctx, goal);
    sb_str(&c->ctx, "\nAnswer:");
    if (c->ctx.oom) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    if ((rc = doc_begin(c->b, line, gold, e))) return rc;
    if ((rc = choice_add(c->b, c->ctx.s, s1, &c->tmp, e))) return rc;
    return choice_add(c->b, c->ctx.s, s2, &c->tmp, e);
}

/* arc: "Question: {stem}\nAnswer:", choices = choices[].text, gold = index of answerKey among
 * choices[].label (A-E or 1-5 as in the file). */
static int item_arc(item_ctx *c, const cJSON *j, int line, err *e) {
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(j, "question");
    if (!cJSON_IsObject(q)) return err_set(e, SPARQ_EINPUT, "%s:%d: missing object field \"question\"",
                                           c->b->path, line);
    const char *stem = get_str(c, q, "stem", line, e);
    if (!stem) return SPARQ_EINPUT;
    if (!has_text(stem, strlen(stem))) return no_text(c, "question.stem", stem, line, e);
    const char *key = get_str(c, j, "answerKey", line, e);
    if (!key) return SPARQ_EINPUT;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(q, "choices");
    int n = cJSON_GetArraySize(ch);
    if (!cJSON_IsArray(ch) || n < 2)
        return err_set(e, SPARQ_EINPUT, "%s:%d: \"question.choices\" needs an array of at least 2 choices",
                       c->b->path, line);
    int gold = -1;
    char seen[64] = "";
    for (int i = 0; i < n; i++) {
        const cJSON *x = cJSON_GetArrayItem(ch, i);
        const cJSON *lab = cJSON_GetObjectItemCaseSensitive(x, "label");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(x, "text");
        if (!cJSON_IsString(tx) || !cJSON_IsString(lab))
            return err_set(e, SPARQ_EINPUT, "%s:%d: choice %d needs string fields \"text\" and \"label\"",
                           c->b->path, line, i + 1);
        if (!has_text(tx->valuestring, strlen(tx->valuestring))) {
            char key[48];
            snprintf(key, sizeof key, "question.choices[%d].text", i);
            return no_text(c, key, tx->valuestring, line, e);
        }
        if (gold < 0 && strcmp(lab->valuestring, key) == 0) gold = i;
        size_t k = strlen(seen);
        snprintf(seen + k, sizeof seen - k, "%s%.8s", i ? ", " : "", lab->valuestring);
    }
    if (gold < 0)
        return err_set(e, SPARQ_EINPUT, "%s:%d: answerKey \"%s\" is not one of the choice labels (%s)",
                       c->b->path, line, key, seen);
    sb_reset(&c->ctx);
    sb_str(&c->ctx, "Question: ");
    sb_str(&c->ctx, stem);
    sb_str(&c->ctx, "\nAnswer:");
    if (c->ctx.oom) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    int rc = doc_begin(c->b, line, gold, e);
    for (int i = 0; rc == SPARQ_OK && i < n; i++) {
        const cJSON *x = cJSON_GetArrayItem(ch, i);
        rc = choice_add(c->b, c->ctx.s, cJSON_GetObjectItemCaseSensitive(x, "text")->valuestring, &c->tmp, e);
    }
    return rc;
}

/* The harness's hellaswag preprocess(): strip, " [title]" -> ". ", delete "[...]" (regex
 * \[.*?\], where . does not match a newline), then one left-to-right pass of "  " -> " ". */
static void hs_preprocess(const char *in, sbuf *out) {
    size_t n = strlen(in);
    const char *s = py_strip(in, &n);
    sbuf a = {0};
    for (size_t i = 0; i < n;) {                     /* " [title]" -> ". " */
        if (n - i >= 8 && memcmp(s + i, " [title]", 8) == 0) { sb_add(&a, ". ", 2); i += 8; }
        else sb_add(&a, s + i++, 1);
    }
    sbuf b = {0};
    for (size_t i = 0; i < a.n;) {                   /* \[.*?\] -> "" */
        if (a.s[i] == '[') {
            size_t k = i + 1;
            while (k < a.n && a.s[k] != ']' && a.s[k] != '\n') k++;
            if (k < a.n && a.s[k] == ']') { i = k + 1; continue; }
        }
        sb_add(&b, a.s + i++, 1);
    }
    sb_reset(out);
    for (size_t i = 0; i < b.n;) {                   /* "  " -> " " */
        if (i + 1 < b.n && b.s[i] == ' ' && b.s[i + 1] == ' ') { sb_add(out, " ", 1); i += 2; }
        else sb_add(out, b.s + i++, 1);
    }
    if (!out->s) sb_add(out, "", 0);
    out->oom |= a.oom || b.oom;
    free(a.s);
    free(b.s);
}

/* Python str.capitalize() for ASCII: first character upper, all others lower (other bytes are
 * kept; the file's few non-ASCII characters are never first in ctx_b). */
static void capitalize(const char *s, sbuf *out) {
    sb_reset(out);
    for (size_t i = 0; s[i]; i++) {
        char ch = s[i];
        if (i == 0 && ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
        else if (i > 0 && ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
        sb_add(out, &ch, 1);
    }
    if (!out->s) sb_add(out, "", 0);
}

/* hellaswag: ctx = P(activity_label + ": " + ctx_a + " " + capitalize(ctx_b)), choices =
 * P(endings[k]), gold = label. */
static int item_hellaswag(item_ctx *c, const cJSON *j, int line, err *e) {
    const char *act = get_str(c, j, "activity_label", line, e), *a = NULL, *b = NULL;
    if (act) a = get_str(c, j, "ctx_a", line, e);
    if (a) b = get_str(c, j, "ctx_b", line, e);
    if (!b) return SPARQ_EINPUT;
    /* ctx_b may be empty (ctx_a then holds the whole context; 87 of the 1000 sample items), and
     * the activity label alone is no context. */
    if (!has_text(a, strlen(a)) && !has_text(b, strlen(b)))
        return err_set(e, SPARQ_EINPUT, "%s:%d: fields \"ctx_a\" and \"ctx_b\" are both empty: nothing to "
                       "score", c->b->path, line);
    const cJSON *end = cJSON_GetObjectItemCaseSensitive(j, "endings");
    int n = cJSON_GetArraySize(end);
    if (!cJSON_IsArray(end) || n < 2)
        return err_set(e, SPARQ_EINPUT, "%s:%d: \"endings\" needs an array of at least 2 strings",
                       c->b->path, line);
    for (int i = 0; i < n; i++) {
        const cJSON *x = cJSON_GetArrayItem(end, i);
        if (!cJSON_IsString(x))
            return err_set(e, SPARQ_EINPUT, "%s:%d: endings[%d] is not a string", c->b->path, line, i);
        if (!has_text(x->valuestring, strlen(x->valuestring))) {
            char key[32];
            snprintf(key, sizeof key, "endings[%d]", i);
            return no_text(c, key, x->valuestring, line, e);
        }
    }
    int gold, rc = get_int(c, j, "label", line, 0, n - 1, &gold, e);
    if (rc) return rc;
    capitalize(b, &c->tmp);
    sbuf raw = {0}, choice = {0};
    sb_str(&raw, act);
    sb_str(&raw, ": ");
    sb_str(&raw, a);
    sb_str(&raw, " ");
    sb_str(&raw, c->tmp.s);
    hs_preprocess(raw.s, &c->ctx);
    rc = raw.oom || c->ctx.oom ? err_set(e, SPARQ_ERUNTIME, "out of memory") : doc_begin(c->b, line, gold, e);
    for (int i = 0; rc == SPARQ_OK && i < n; i++) {
        hs_preprocess(cJSON_GetArrayItem(end, i)->valuestring, &choice);
        if (choice.oom) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
        else if (!has_text(choice.s, choice.n))   /* e.g. "[step]": its tags were all of it */
            rc = err_set(e, SPARQ_EINPUT, "%s:%d: field \"endings[%d]\" is empty once preprocessed (its "
                         "[tags] removed): nothing to score", c->b->path, line, i);
        else rc = choice_add(c->b, c->ctx.s, choice.s, &c->tmp, e);
    }
    free(raw.s);
    free(choice.s);
    return rc;
}

/* winogrande, partial scoring: k = index of "_"; context_o = sentence[:k] + option_o;
 * continuation = " " + strip(sentence[k+1:]), the same for both options; gold = answer - 1. */
static int item_winogrande(item_ctx *c, const cJSON *j, int line, err *e) {
    const char *s = get_text(c, j, "sentence", line, e), *o1 = NULL, *o2 = NULL;
    if (s) o1 = get_text(c, j, "option1", line, e);
    if (o1) o2 = get_text(c, j, "option2", line, e);
    if (!o2) return SPARQ_EINPUT;
    const char *us = strchr(s, '_');
    if (!us) return err_set(e, SPARQ_EINPUT, "%s:%d: \"sentence\" has no \"_\" blank", c->b->path, line);
    int ans, rc;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "answer");
    if (c->lab) rc = labels_get(c->lab, c->item, line, c->b->path, 1, 2, &ans, e);
    else if (cJSON_IsString(a) && !a->valuestring[0])
        rc = err_set(e, SPARQ_EINPUT, "%s:%d: \"answer\" is empty (a test split?) and no labels file was "
                     "given", c->b->path, line);
    else rc = get_int(c, j, "answer", line, 1, 2, &ans, e);
    if (rc) return rc;
    size_t k = (size_t)(us - s), rn = strlen(us + 1);
    const char *rest = py_strip(us + 1, &rn);
    /* The text after the blank is the one continuation both options are scored on; text before
     * it may be empty (the option then starts the context). */
    if (rn == 0)
        return err_set(e, SPARQ_EINPUT, "%s:%d: field \"sentence\" has nothing after its \"_\" blank: "
                       "nothing to score", c->b->path, line);
    sb_reset(&c->tmp);
    sb_str(&c->tmp, " ");
    sb_add(&c->tmp, rest, rn);
    if ((rc = doc_begin(c->b, line, ans - 1, e))) return rc;
    const char *opt[2] = {o1, o2};
    for (int i = 0; i < 2 && rc == SPARQ_OK; i++) {
        sb_reset(&c->ctx);
        sb_add(&c->ctx, s, k);
        sb_str(&c->ctx, opt[i]);
        rc = c->ctx.oom || c->tmp.oom ? err_set(e, SPARQ_ERUNTIME, "out of memory")
                                      : req_add(c->b, c->ctx.s, c->ctx.n, c->tmp.s, c->tmp.n,
                                                py_len(opt[i]), e);
    }
    return rc;
}

/* boolq (SuperGLUE packaging): "{passage}\nQuestion: {question}?\nAnswer:", choices
 * ["no", "yes"], gold = label (true = 1; the file writes "true"/"false" as strings, JSON
 * booleans and 0/1 work too). Google's original "answer" field is accepted as well. */
static int item_boolq(item_ctx *c, const cJSON *j, int line, err *e) {
    const char *p = get_text(c, j, "passage", line, e), *q = NULL;
    if (p) q = get_text(c, j, "question", line, e);
    if (!q) return SPARQ_EINPUT;
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "label");
    if (!l) l = cJSON_GetObjectItemCaseSensitive(j, "answer");
    int gold;
    if (cJSON_IsBool(l)) gold = cJSON_IsTrue(l);
    else if (cJSON_IsNumber(l) && (l->valuedouble == 0 || l->valuedouble == 1)) gold = (int)l->valuedouble;
    else if (cJSON_IsString(l) && (!strcmp(l->valuestring, "true") || !strcmp(l->valuestring, "1"))) gold = 1;
    else if (cJSON_IsString(l) && (!strcmp(l->valuestring, "false") || !strcmp(l->valuestring, "0"))) gold = 0;
    else return err_set(e, SPARQ_EINPUT, "%s:%d: missing boolean field \"label\" (true/false or 0/1)",
                        c->b->path, line);
    sb_reset(&c->ctx);
    sb_str(&c->ctx, p);
    sb_str(&c->ctx, "\nQuestion: ");
    sb_str(&c->ctx, q);
    sb_str(&c->ctx, "?\nAnswer:");
    if (c->ctx.oom) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    int rc = doc_begin(c->b, line, gold, e);
    if (!rc) rc = choice_add(c->b, c->ctx.s, "no", &c->tmp, e);
    if (!rc) rc = choice_add(c->b, c->ctx.s, "yes", &c->tmp, e);
    return rc;
}

/* lambada (lambada_openai): ctx = " ".join(text.split(" ")[:-1]), cont = " " + last word. A
 * text of one word has an empty context and is scored from BOS alone, as the harness does; a
 * text without a last word (ending in a space) has nothing to predict. */
static int item_lambada(item_ctx *c, const cJSON *j, int line, err *e) {
    const char *text = get_text(c, j, "text", line, e);
    if (!text) return SPARQ_EINPUT;
    const char *sp = strrchr(text, ' ');
    size_t nctx = sp ? (size_t)(sp - text) : 0;
    const char *word = sp ? sp + 1 : text;
    if (!has_text(word, strlen(word)))
        return err_set(e, SPARQ_EINPUT, "%s:%d: field \"text\" has no last word after its last space: "
                       "nothing to score", c->b->path, line);
    sb_reset(&c->tmp);
    sb_str(&c->tmp, " ");
    sb_str(&c->tmp, word);
    if (c->tmp.oom) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    int rc = doc_begin(c->b, line, 0, e);
    return rc ? rc : req_add(c->b, text, nctx, c->tmp.s, c->tmp.n, py_len(word), e);
}

/* ---- builders from document text ------------------------------------------------------------- */

static bool is_alnum(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* cloze: the last word of the document (its trailing punctuation and quotes dropped) is the
 * continuation, everything before it the context; acc = the word is predicted greedily, as
 * LAMBADA. A word is a run of letters, digits and apostrophes holding at least one letter;
 * documents without one are skipped. No randomness: the seed is not used. */
static int build_cloze(build *b, const text_list *docs, int limit, err *e) {
    int rc = SPARQ_OK;
    for (int d = 0; d < docs->n && rc == SPARQ_OK && (limit <= 0 || b->t->n_docs < limit); d++) {
        const char *s = docs->items[d];
        size_t end = strlen(s);
        while (end > 0 && !is_alnum(s[end - 1])) end--;
        size_t start = end;
        bool letter = false;
        while (start > 0 && (is_alnum(s[start - 1]) || s[start - 1] == '\'')) {
            start--;
            letter |= !(s[start] >= '0' && s[start] <= '9') && s[start] != '\'';
        }
        while (start < end && s[start] == '\'') start++;     /* an opening quote is not the word */
        if (!letter || start == 0 || start == end) continue;
        rc = doc_begin(b, d + 1, 0, e);
        if (!rc) rc = req_add(b, s, start, s + start, end - start, (int)(end - start), e);
    }
    return rc;
}

/* Where the last sentence of a stripped document starts, or 0 if it has only one: after the
 * last [.!?] (closing quotes allowed) followed by whitespace, or after a newline. *ctx_end is
 * the end of the text before it, its whitespace excluded. */
static size_t last_sentence(const char *s, size_t n, size_t *ctx_end) {
    size_t i = n;
    while (i > 0 && (s[i - 1] == '.' || s[i - 1] == '!' || s[i - 1] == '?' || s[i - 1] == '"' ||
                     s[i - 1] == '\''))
        i--;                                              /* the final sentence's own end */
    for (; i > 1; i--) {
        if (!space_at(s + i - 1, 1)) continue;
        size_t j = i - 1;                                 /* s[j] is whitespace */
        size_t k = j;
        while (k > 0 && (s[k - 1] == '"' || s[k - 1] == '\'')) k--;
        if (s[j] == '\n' || (k > 0 && (s[k - 1] == '.' || s[k - 1] == '!' || s[k - 1] == '?'))) {
            size_t c = j;
            while (c > 0 && space_at(s + c - 1, 1)) c--;
            *ctx_end = c;
            size_t st = j;
            while (st < n && space_at(s + st, 1)) st++;
            return c > 0 && st < n ? st : 0;
        }
    }
    return 0;
}

/* ending: HellaSwag-style. Each document with at least two sentences gives the context (all
 * but its last sentence) and 4 choices: the real last sentence and the last sentences of 3
 * other documents drawn uniformly (GSL mt19937 seeded with `seed`, distinct, and different
 * from the real one as text), the real one at a random position. Items are drawn in document
 * order from a pool of all documents, so --limit keeps a prefix of the same items. */
static int build_ending(build *b, const text_list *docs, int limit, unsigned long seed, err *e) {
    enum { K = 4 };
    size_t *st = malloc((size_t)(docs->n > 0 ? docs->n : 1) * sizeof(size_t));
    size_t *ce = malloc((size_t)(docs->n > 0 ? docs->n : 1) * sizeof(size_t));
    int *pool = malloc((size_t)(docs->n > 0 ? docs->n : 1) * sizeof(int)), np = 0;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    int rc = st && ce && pool && r ? SPARQ_OK : err_set(e, SPARQ_ERUNTIME, "out of memory");
    for (int d = 0; rc == SPARQ_OK && d < docs->n; d++) {
        st[d] = last_sentence(docs->items[d], strlen(docs->items[d]), &ce[d]);
        if (st[d] > 0) pool[np++] = d;
    }
    if (rc == SPARQ_OK && np < K)
        rc = err_set(e, SPARQ_EINPUT, "%s: only %d documents have two sentences; `ending` needs %d",
                     b->path, np, K);
    if (rc == SPARQ_OK) gsl_rng_set(r, seed);
    sbuf ctx = {0}, tmp = {0};
    for (int i = 0; rc == SPARQ_OK && i < np && (limit <= 0 || b->t->n_docs < limit); i++) {
        int d = pool[i], other[K - 1], got = 0;
        const char *real = docs->items[d] + st[d];
        int gold = (int)gsl_rng_uniform_int(r, K);
        /* Rejection sampling; a pool of identical endings could loop, so give up after a while. */
        for (int tries = 0; got < K - 1 && tries < 1000; tries++) {
            int o = pool[gsl_rng_uniform_int(r, (unsigned long)np)];
            const char *oe = docs->items[o] + st[o];
            bool ok = o != d && strcmp(oe, real) != 0;
            for (int k = 0; ok && k < got; k++) ok = strcmp(oe, docs->items[other[k]] + st[other[k]]) != 0;
            if (ok) other[got++] = o;
        }
        if (got < K - 1) {
            rc = err_set(e, SPARQ_EINPUT, "%s: document %d: cannot draw %d distinct other endings", b->path,
                         d + 1, K - 1);
            break;
        }
        int pick[K];
        for (int k = 0, o = 0; k < K; k++) pick[k] = k == gold ? d : other[o++];
        sb_reset(&ctx);
        sb_add(&ctx, docs->items[d], ce[d]);
        rc = ctx.oom ? err_set(e, SPARQ_ERUNTIME, "out of memory") : doc_begin(b, d + 1, gold, e);
        for (int k = 0; rc == SPARQ_OK && k < K; k++)
            rc = choice_add(b, ctx.s, docs->items[pick[k]] + st[pick[k]], &tmp, e);
    }
    free(ctx.s);
    free(tmp.s);
    free(st);
    free(ce);
    free(pool);
    if (r) gsl_rng_free(r);
    return rc;
}

/* ---- tokenization ---------------------------------------------------------------------------- */

/* Where request k of a document takes its continuation from, in the adapters' order of
 * requests, for messages. */
static void cont_source(const zeroshot_task *t, const zeroshot_request *q, int k, char *buf, size_t n) {
    const char *name = t->name, *word = q->continuation;
    while (*word == ' ') word++;
    if (!strcmp(name, "piqa")) snprintf(buf, n, "field \"sol%d\"", k + 1);
    else if (!strncmp(name, "arc_", 4)) snprintf(buf, n, "field \"question.choices[%d].text\"", k);
    else if (!strcmp(name, "hellaswag")) snprintf(buf, n, "field \"endings[%d]\"", k);
    else if (!strcmp(name, "winogrande")) snprintf(buf, n, "field \"sentence\" after its \"_\" blank");
    else if (!strcmp(name, "boolq")) snprintf(buf, n, "the answer \"%s\"", k ? "yes" : "no");
    else if (!strcmp(name, "lambada")) snprintf(buf, n, "the last word of field \"text\"");
    else if (!strcmp(name, "cloze")) snprintf(buf, n, "the last word \"%.40s\"", word);
    else snprintf(buf, n, "ending %d (\"%.40s\")", k + 1, word);
}

/* tokens = tok(ctx) ++ tok(ctx + cont)[len(tok(ctx)):], both from BOS. Requests of a document
 * usually share their context, whose encoding is then reused. A continuation whose tokens all
 * merge into the context's (tok(ctx + cont) no longer than tok(ctx), e.g. "allé" + "s" ->
 * "allés" in LLaMA's vocabulary) has nothing to score: the harness would give it LL 0 and
 * count it greedy, so it is refused. The first failing document in file order is reported,
 * whatever the thread count: a document is skipped only after a failure before it. */
static int tokenize_all(const tokenizer *tk, zeroshot_task *t, bool text_docs, err *e) {
    int failed = t->n_docs;     /* the first failing document so far; n_docs: none */
    err first = {0};
    #pragma omp parallel for schedule(dynamic, 4)
    for (int d = 0; d < t->n_docs; d++) {
        int stop;
        #pragma omp atomic read
        stop = failed;
        if (stop < d) continue;
        int *ctx_ids = NULL, n_ctx = 0;
        const char *ctx_of = NULL;
        sbuf all = {0};
        err le = {0};
        int rc = SPARQ_OK;
        for (int i = t->docs[d].first; rc == SPARQ_OK && i < t->docs[d].first + t->docs[d].n; i++) {
            zeroshot_request *q = &t->req[i];
            if (!ctx_of || strcmp(ctx_of, q->context) != 0) {
                free(ctx_ids);
                ctx_ids = NULL;
                rc = tokenizer_encode(tk, q->context, true, false, &ctx_ids, &n_ctx, &le);
                if (rc) break;
                ctx_of = q->context;
            }
            sb_reset(&all);
            sb_str(&all, q->context);
            sb_str(&all, q->continuation);
            int *ids = NULL, n = 0;
            if (all.oom) rc = err_set(&le, SPARQ_ERUNTIME, "out of memory");
            else rc = tokenizer_encode(tk, all.s, true, false, &ids, &n, &le);
            if (rc) break;
            int n_cont = n > n_ctx ? n - n_ctx : 0;
            if (n_cont == 0) {
                free(ids);
                char src[96], at[32];
                cont_source(t, q, i - t->docs[d].first, src, sizeof src);
                snprintf(at, sizeof at, text_docs ? " document %d:" : "%d:", t->docs[d].line);
                rc = err_set(&le, SPARQ_EINPUT, "%s:%s %s tokenizes to nothing after its context: nothing "
                             "to score", t->path, at, src);
                break;
            }
            q->tokens = malloc((size_t)(n_ctx + n_cont) * sizeof(int));
            if (!q->tokens) {
                free(ids);
                rc = err_set(&le, SPARQ_ERUNTIME, "out of memory");
                break;
            }
            memcpy(q->tokens, ctx_ids, (size_t)n_ctx * sizeof(int));
            memcpy(q->tokens + n_ctx, ids + n_ctx, (size_t)n_cont * sizeof(int));
            q->n_ctx = n_ctx;
            q->n_cont = n_cont;
            free(ids);
        }
        free(ctx_ids);
        free(all.s);
        if (rc) {
            #pragma omp critical(zeroshot_tokenize)
            if (d < failed) {
                first = le.code ? le : (err){.code = SPARQ_ERUNTIME};
                #pragma omp atomic write
                failed = d;
            }
        }
    }
    if (failed < t->n_docs) {
        *e = first;
        return first.code ? first.code : SPARQ_ERUNTIME;
    }
    return SPARQ_OK;
}

/* ---- loading --------------------------------------------------------------------------------- */

void zeroshot_task_free(zeroshot_task *t) {
    if (!t) return;
    for (int i = 0; i < t->n_req; i++) {
        free(t->req[i].context);
        free(t->req[i].continuation);
        free(t->req[i].tokens);
    }
    free(t->req);
    free(t->docs);
    free(t->name);
    free(t->path);
    memset(t, 0, sizeof *t);
}

int zeroshot_load_task(const tokenizer *tk, const char *name, const char *path, int limit,
                       unsigned long seed, zeroshot_task *out, err *e) {
    memset(out, 0, sizeof *out);
    int which = -1;
    for (int i = 0; zeroshot_task_names[i]; i++)
        if (strcmp(name, zeroshot_task_names[i]) == 0) which = i;
    if (which < 0)
        return err_set(e, SPARQ_EINPUT, "unknown task '%s': expected one of piqa, arc_easy, arc_challenge, "
                       "hellaswag, winogrande, boolq, lambada, cloze, ending", name);
    char *data = NULL, *labpath = NULL;
    bool explicit_lab;
    int rc = split_paths(path, &data, &labpath, &explicit_lab, e);
    if (rc) return rc;
    out->name = dup_n(name, strlen(name));
    out->path = dup_n(data, strlen(data));
    if (!out->name || !out->path) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    build b = {.t = out, .path = data, .lab_path = labpath};
    labels lab = {0};
    bool use_lab = false;
    if (!rc && explicit_lab && strcmp(name, "piqa") != 0 && strcmp(name, "winogrande") != 0)
        rc = err_set(e, SPARQ_EINPUT, "%s: task %s takes no labels file", path, name);
    if (!rc && strcmp(name, "piqa") == 0) {
        /* The authors' release keeps PIQA labels apart; an HF-style "label" field also works. */
        use_lab = explicit_lab || file_exists(labpath);
        if (use_lab) rc = labels_read(labpath, &lab, e);
    } else if (!rc && strcmp(name, "winogrande") == 0) {
        /* The "answer" field unless a labels file is named; the sibling file serves test-style
         * files whose answers are empty (read only when the first item needs it). */
        use_lab = explicit_lab;
        if (!use_lab && file_exists(labpath)) {
            char *buf;
            if (text_read_file(data, &buf, NULL, e) == SPARQ_OK) {
                cJSON *j = cJSON_ParseWithLength(buf, strcspn(buf, "\n"));
                const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "answer");
                use_lab = !a || (cJSON_IsString(a) && !a->valuestring[0]);
                cJSON_Delete(j);
                free(buf);
            }
        }
        if (use_lab) rc = labels_read(labpath, &lab, e);
    }
    if (!rc) {
        out->kind = ZS_MULTIPLE_CHOICE;
        out->acc_norm = true;
        switch (which) {
        case 0: rc = read_jsonl(&b, use_lab ? &lab : NULL, limit, item_piqa, e); break;
        case 1:
        case 2: rc = read_jsonl(&b, NULL, limit, item_arc, e); break;
        case 3: rc = read_jsonl(&b, NULL, limit, item_hellaswag, e); break;
        case 4:
            out->acc_norm = false;
            rc = read_jsonl(&b, use_lab ? &lab : NULL, limit, item_winogrande, e);
            break;
        case 5:
            out->acc_norm = false;
            rc = read_jsonl(&b, NULL, limit, item_boolq, e);
            break;
        case 6:
            out->kind = ZS_LOGLIKELIHOOD;
            out->acc_norm = false;
            rc = read_jsonl(&b, NULL, limit, item_lambada, e);
            break;
        default: {
            text_list docs;
            rc = text_read_documents(data, &docs, e);
            if (rc) break;
            if (which == 7) {
                out->kind = ZS_LOGLIKELIHOOD;
                out->acc_norm = false;
                rc = build_cloze(&b, &docs, limit, e);
            } else {
                rc = build_ending(&b, &docs, limit, seed, e);
            }
            if (!rc && out->n_docs == 0)
                rc = err_set(e, SPARQ_EINPUT, "%s: no document gives a %s item", data, name);
            text_list_free(&docs);
        }
        }
    }
    if (!rc) rc = tokenize_all(tk, out, which >= 7, e);
    labels_free(&lab);
    free(data);
    free(labpath);
    if (rc) zeroshot_task_free(out);
    return rc;
}
