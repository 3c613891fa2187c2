#include "results.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int results_mkdir(const char *dir, err *e) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return err_set(e, SPARQ_EINPUT, "%s: cannot create folder: %s", buf, strerror(errno));
            *p = c;
            if (c == '\0') break;
        }
    }
    return SPARQ_OK;
}

int results_write_atomic(const char *path, const void *text, size_t n, err *e) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return err_set(e, SPARQ_ERUNTIME, "%s: cannot write: %s", tmp, strerror(errno));
    const char *p = text;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            close(fd);
            unlink(tmp);
            return err_set(e, SPARQ_ERUNTIME, "%s: write failed: %s", tmp, strerror(errno));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        int rc = err_set(e, SPARQ_ERUNTIME, "%s: cannot replace: %s", path, strerror(errno));
        unlink(tmp);
        return rc;
    }
    return SPARQ_OK;
}

void results_free(cJSON **recs, int n) {
    for (int i = 0; i < n; i++) cJSON_Delete(recs[i]);
    free(recs);
}

int results_load(const char *dir, cJSON ***recs, int *n, err *e) {
    *recs = NULL;
    *n = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/runs.jsonl", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? SPARQ_OK : err_set(e, SPARQ_EINPUT, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = SPARQ_OK, have = 0;
    while (rc == SPARQ_OK && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (len <= 1) continue;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
        if (!cJSON_IsObject(j) || !cJSON_IsString(cJSON_GetObjectItem(j, "key"))) {
            cJSON_Delete(j);
            rc = err_set(e, SPARQ_EINPUT, "%s:%d: not a run record (a JSON object with a \"key\")", path, lineno);
            break;
        }
        if (*n == have) {
            have = have ? 2 * have : 64;
            cJSON **r = realloc(*recs, (size_t)have * sizeof *r);
            if (!r) { cJSON_Delete(j); rc = err_set(e, SPARQ_ERUNTIME, "out of memory"); break; }
            *recs = r;
        }
        (*recs)[(*n)++] = j;
    }
    free(line);
    fclose(f);
    if (rc) { results_free(*recs, *n); *recs = NULL; *n = 0; }
    return rc;
}

const cJSON *results_find(cJSON *const *recs, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (strcmp(cJSON_GetObjectItem(recs[i], "key")->valuestring, key) == 0) return recs[i];
    return NULL;
}

int results_append(const char *dir, const cJSON *rec, bool *added, err *e) {
    *added = false;
    char lock[4200], path[4200];
    snprintf(lock, sizeof lock, "%s/runs.lock", dir);
    snprintf(path, sizeof path, "%s/runs.jsonl", dir);
    int fd = open(lock, O_RDWR | O_CREAT, 0666);
    if (fd < 0) return err_set(e, SPARQ_ERUNTIME, "%s: %s", lock, strerror(errno));
    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR) { close(fd); return err_set(e, SPARQ_ERUNTIME, "%s: flock: %s", lock, strerror(errno)); }
    /* Under the lock: the file as it is now (another shard may have appended), our line, and
     * the whole thing renamed over the old one. */
    char *old = NULL;
    size_t oldn = 0;
    int rc = SPARQ_OK;
    FILE *f = fopen(path, "rb");
    if (f) {
        fseek(f, 0, SEEK_END);
        long sz = ftell(f);
        fseek(f, 0, SEEK_SET);
        old = malloc((size_t)sz + 1);
        if (!old || fread(old, 1, (size_t)sz, f) != (size_t)sz) rc = err_set(e, SPARQ_ERUNTIME, "%s: read failed", path);
        oldn = (size_t)sz;
        fclose(f);
    }
    const char *key = cJSON_GetObjectItem(rec, "key")->valuestring;
    char needle[64];
    snprintf(needle, sizeof needle, "\"key\":\"%s\"", key);
    if (!rc && old) {
        old[oldn] = '\0';
        if (strstr(old, needle)) goto unlock;      /* done by someone else meanwhile */
    }
    if (!rc) {
        char *line = cJSON_PrintUnformatted(rec);
        size_t ln = line ? strlen(line) : 0;
        char *all = line ? malloc(oldn + ln + 2) : NULL;
        if (!all) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
        else {
            if (oldn) memcpy(all, old, oldn);
            memcpy(all + oldn, line, ln);
            all[oldn + ln] = '\n';
            rc = results_write_atomic(path, all, oldn + ln + 1, e);
            if (!rc) *added = true;
        }
        free(all);
        free(line);
    }
unlock:
    free(old);
    flock(fd, LOCK_UN);
    close(fd);
    return rc;
}
