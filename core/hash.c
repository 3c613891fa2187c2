#include "hash.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

uint64_t hash_bytes(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int file_hash(const char *path, uint64_t *h, err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(e, SPARQ_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    unsigned char buf[1 << 16];
    size_t n;
    *h = HASH_INIT;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) *h = hash_bytes(*h, buf, n);
    int bad = ferror(f);
    fclose(f);
    return bad ? err_set(e, SPARQ_EINPUT, "%s: read failed", path) : SPARQ_OK;
}

static int folder_hash(const char *path, uint64_t *h, err *e) {
    DIR *d = opendir(path);
    if (!d) return err_set(e, SPARQ_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0, rc = SPARQ_OK;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (de->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **p = realloc(names, (size_t)cap * sizeof *p);
            if (!p) { rc = err_set(e, SPARQ_ERUNTIME, "out of memory"); break; }
            names = p;
        }
        names[n] = strdup(de->d_name);
        if (!names[n]) { rc = err_set(e, SPARQ_ERUNTIME, "out of memory"); break; }
        n++;
    }
    closedir(d);
    if (!rc) qsort(names, (size_t)n, sizeof *names, cmp_name);
    *h = HASH_INIT;
    for (int i = 0; !rc && i < n; i++) {
        char sub[4200];
        snprintf(sub, sizeof sub, "%s/%s", path, names[i]);
        struct stat st;
        if (stat(sub, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        uint64_t fh;
        rc = file_hash(sub, &fh, e);
        *h = hash_bytes(hash_bytes(*h, names[i], strlen(names[i])), &fh, sizeof fh);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int hash_path(const char *path, uint64_t *h, err *e) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return folder_hash(path, h, e);
    return file_hash(path, h, e);
}
