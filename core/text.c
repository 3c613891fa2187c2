#include "text.h"

#include <cJSON.h>
#include <limits.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int text_read_file(const char *path, char **out, size_t *len, err *e) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(e, SPARQ_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return err_set(e, SPARQ_EINPUT, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) { fclose(f); return err_set(e, SPARQ_ERUNTIME, "%s: out of memory (%zu bytes)", path, n); }
    if (fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return err_set(e, SPARQ_EINPUT, "%s: read failed", path);
    }
    fclose(f);
    buf[n] = '\0';
    if (strlen(buf) != n) {
        size_t at = strlen(buf);
        free(buf);
        return err_set(e, SPARQ_EINPUT, "%s: NUL byte at offset %zu; expected text", path, at);
    }
    *out = buf;
    if (len) *len = n;
    return SPARQ_OK;
}

void text_list_free(text_list *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Append a stripped copy of s[0..n) to l unless it is empty. */
static int list_push_stripped(text_list *l, const char *s, size_t n, int *cap, err *e) {
    while (n > 0 && is_space(*s)) { s++; n--; }
    while (n > 0 && is_space(s[n - 1])) n--;
    if (n == 0) return SPARQ_OK;
    if (l->n == *cap) {
        int nc = *cap ? 2 * *cap : 64;
        char **p = realloc(l->items, (size_t)nc * sizeof(char *));
        if (!p) return err_set(e, SPARQ_ERUNTIME, "out of memory");
        l->items = p;
        *cap = nc;
    }
    char *d = malloc(n + 1);
    if (!d) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    memcpy(d, s, n);
    d[n] = '\0';
    l->items[l->n++] = d;
    return SPARQ_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Each non-blank line is one JSON object with a string field "text". */
static int read_jsonl(const char *path, char *buf, text_list *out, int *cap, err *e) {
    int lineno = 0;
    for (char *line = buf; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        lineno++;
        bool blank = true;
        for (size_t i = 0; i < n && blank; i++) blank = is_space(line[i]);
        if (!blank) {
            cJSON *j = cJSON_ParseWithLength(line, n);
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text");
            if (!cJSON_IsString(t)) {
                cJSON_Delete(j);
                return err_set(e, SPARQ_EINPUT, "%s:%d: not a JSON object with a string \"text\"",
                               path, lineno);
            }
            int rc = list_push_stripped(out, t->valuestring, strlen(t->valuestring), cap, e);
            cJSON_Delete(j);
            if (rc) return rc;
        }
        line += n + (nl ? 1 : 0);
    }
    return SPARQ_OK;
}

int text_read_documents(const char *path, text_list *out, err *e) {
    out->items = NULL;
    out->n = 0;
    char *buf;
    int rc = text_read_file(path, &buf, NULL, e);
    if (rc) return rc;
    int cap = 0;
    if (ends_with(path, ".jsonl")) {
        rc = read_jsonl(path, buf, out, &cap, e);
    } else {
        const char *p = buf;
        size_t sl = strlen(TEXT_DOC_SEPARATOR);
        for (;;) {
            const char *q = strstr(p, TEXT_DOC_SEPARATOR);
            size_t n = q ? (size_t)(q - p) : strlen(p);
            rc = list_push_stripped(out, p, n, &cap, e);
            if (rc || !q) break;
            p = q + sl;
        }
    }
    free(buf);
    if (rc) text_list_free(out);
    return rc;
}

int text_read_joined(const char *path, char **out, err *e) {
    *out = NULL;
    if (ends_with(path, ".jsonl")) {
        text_list docs;
        int rc = text_read_documents(path, &docs, e);
        if (rc) return rc;
        size_t n = 1;
        for (int i = 0; i < docs.n; i++) n += strlen(docs.items[i]) + 1;
        char *s = malloc(n), *d = s;
        if (!s) { text_list_free(&docs); return err_set(e, SPARQ_ERUNTIME, "out of memory"); }
        for (int i = 0; i < docs.n; i++) {
            if (i) *d++ = ' ';
            size_t k = strlen(docs.items[i]);
            memcpy(d, docs.items[i], k);
            d += k;
        }
        *d = '\0';
        text_list_free(&docs);
        *out = s;
        return SPARQ_OK;
    }
    char *buf;
    size_t len;
    int rc = text_read_file(path, &buf, &len, e);
    if (rc) return rc;
    /* Rows are lines with their "\n"; joining adds "\n\n" between rows: at most 3x growth. */
    char *s = malloc(3 * len + 1), *d = s;
    if (!s) { free(buf); return err_set(e, SPARQ_ERUNTIME, "out of memory"); }
    bool first = true;
    for (char *line = buf; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
        bool blank = true;
        for (size_t i = 0; i < n && blank; i++) blank = is_space(line[i]);
        if (!first) { *d++ = '\n'; *d++ = '\n'; }
        first = false;
        if (!blank) { memcpy(d, line, n); d += n; }
        line += n;
    }
    *d = '\0';
    free(buf);
    *out = s;
    return SPARQ_OK;
}

int text_parse_ids(const char *s, size_t len, const char *what, int **ids, int *n, err *e) {
    *ids = NULL;
    *n = 0;
    int cap = 0;
    size_t i = 0;
    while (i < len) {
        if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r') { i++; continue; }
        size_t j = i;
        long long v = 0;
        while (j < len && s[j] >= '0' && s[j] <= '9' && v <= INT_MAX) v = v * 10 + (s[j++] - '0');
        bool end = j == len || s[j] == ' ' || s[j] == '\t' || s[j] == '\r';
        if (j == i || !end || v > INT_MAX) {
            size_t k = i;
            while (k < len && s[k] != ' ' && s[k] != '\t' && s[k] != '\r' && k - i < 24) k++;
            free(*ids);
            *ids = NULL;
            *n = 0;
            return err_set(e, SPARQ_EINPUT, "%s: \"%.*s\" is not a token id (a non-negative integer)",
                           what, (int)(k - i), s + i);
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            int *q = realloc(*ids, (size_t)cap * sizeof(int));
            if (!q) {
                free(*ids);
                *ids = NULL;
                return err_set(e, SPARQ_ERUNTIME, "out of memory");
            }
            *ids = q;
        }
        (*ids)[(*n)++] = (int)v;
        i = j;
    }
    return SPARQ_OK;
}
