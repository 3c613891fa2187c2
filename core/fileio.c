/* madvise(MADV_DONTNEED) is not POSIX (posix_madvise ignores DONTNEED in glibc). */
#define _DEFAULT_SOURCE
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int mapped_open(mapped_file *f, const char *path, const char *what, err *e) {
    f->data = NULL;
    f->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return err_set(e, SPARQ_EINPUT, "%s: cannot open %s: %s", path, what, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(e, SPARQ_EINPUT, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        if ((uint64_t)st.st_size > SIZE_MAX) {
            close(fd);
            return err_set(e, SPARQ_EINPUT, "%s: %lld bytes do not fit in the address space", path,
                           (long long)st.st_size);
        }
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int er = errno;
            close(fd);
            return err_set(e, SPARQ_ERUNTIME, "%s: cannot map %s: %s", path, what, strerror(er));
        }
        /* Loaders read each tensor once, front to back: let the kernel read ahead. */
        madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
        f->data = p;
        f->size = (uint64_t)st.st_size;
    }
    close(fd);   /* the mapping keeps the file */
    return SPARQ_OK;
}

void mapped_close(mapped_file *f) {
    if (f && f->data) munmap((void *)f->data, (size_t)f->size);
    if (f) {
        f->data = NULL;
        f->size = 0;
    }
}

void mapped_release(const mapped_file *f, uint64_t off, uint64_t len) {
    if (!f->data || len == 0 || off >= f->size) return;
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t end = off + len > f->size ? f->size : off + len;
    uint64_t a = (off + page - 1) / page * page;
    uint64_t b = end == f->size ? (end + page - 1) / page * page : end / page * page;
    if (b > a) madvise((void *)(f->data + a), (size_t)(b - a), MADV_DONTNEED);
}

int atomic_open(atomic_file *a, const char *path, err *e) {
    a->f = NULL;
    a->tmp = a->path = NULL;
    a->errno_first = 0;
    size_t n = strlen(path);
    a->tmp = malloc(n + 32);
    a->path = strdup(path);
    if (!a->tmp || !a->path) {
        free(a->tmp);
        free(a->path);
        return err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    snprintf(a->tmp, n + 32, "%s.tmp.%ld", path, (long)getpid());
    a->f = fopen(a->tmp, "wb");
    if (!a->f) {
        int rc = err_set(e, SPARQ_EINPUT, "%s: cannot write: %s", a->tmp, strerror(errno));
        free(a->tmp);
        free(a->path);
        a->tmp = a->path = NULL;
        return rc;
    }
    return SPARQ_OK;
}

void atomic_write(atomic_file *a, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, a->f) != n && !a->errno_first) a->errno_first = errno ? errno : EIO;
}

void atomic_pad(atomic_file *a, size_t n, unsigned char byte) {
    for (size_t i = 0; i < n; i++)
        if (fputc(byte, a->f) == EOF && !a->errno_first) a->errno_first = errno ? errno : EIO;
}

int atomic_commit(atomic_file *a, err *e) {
    /* The first failure's errno (a full disk, a file-size limit) names the cause. */
    int why = a->errno_first;
    bool ok = !ferror(a->f) && !why;
    if (fflush(a->f) != 0 && !why) why = errno;
    if (fsync(fileno(a->f)) != 0 && !why) why = errno;
    if (fclose(a->f) != 0 && !why) why = errno;
    ok = ok && !why;
    a->f = NULL;
    int rc = SPARQ_OK;
    if (!ok || rename(a->tmp, a->path) != 0) {
        if (ok) why = errno;
        rc = err_set(e, SPARQ_ERUNTIME, "%s: write failed: %s (nothing written under this name)", a->path,
                     strerror(why ? why : EIO));
        remove(a->tmp);
    }
    free(a->tmp);
    free(a->path);
    a->tmp = a->path = NULL;
    return rc;
}

void atomic_abort(atomic_file *a) {
    if (a->f) fclose(a->f);
    if (a->tmp) remove(a->tmp);
    free(a->tmp);
    free(a->path);
    a->f = NULL;
    a->tmp = a->path = NULL;
}

bool path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

bool path_has_suffix(const char *path, const char *suffix) {
    size_t n = strlen(path), k = strlen(suffix);
    return n >= k && strcmp(path + n - k, suffix) == 0;
}

void path_dir(const char *path, char *buf, size_t cap) {
    const char *slash = strrchr(path, '/');
    int len = slash ? (int)(slash - path) + 1 : 0;
    snprintf(buf, cap, "%.*s", len, path);
}

/* Does dir hold a sparq checkout? The two files only a checkout has at its top. */
static bool is_checkout(const char *dir) {
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/Makefile", dir);
    if (!path_exists(p)) return false;
    snprintf(p, sizeof p, "%s/sparq.c", dir);
    return path_exists(p);
}

/* Cut path (absolute, no trailing '/') to its parent: "/a/b" -> "/a", "/a" -> "". */
static void cut_last(char *path) {
    char *slash = strrchr(path, '/');
    if (slash) *slash = '\0';
}

int data_root(char *out, size_t cap, err *e) {
    const char *env = getenv("SPARQ_DATA");
    if (env && *env) {
        if (strlen(env) >= cap) return err_set(e, SPARQ_EINPUT, "SPARQ_DATA: %zu characters, at most %zu",
                                               strlen(env), cap - 1);
        memcpy(out, env, strlen(env) + 1);
        return SPARQ_OK;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return err_set(e, SPARQ_ERUNTIME, "/proc/self/exe: cannot find the running executable (%s); "
                       "set SPARQ_DATA", n < 0 ? strerror(errno) : "empty link");
    exe[n] = '\0';
    cut_last(exe);                              /* now the executable's folder */
    char dir[PATH_MAX];
    memcpy(dir, exe, strlen(exe) + 1);
    while (dir[0] && !is_checkout(dir)) cut_last(dir);
    if (!dir[0]) memcpy(dir, exe, strlen(exe) + 1);   /* outside a checkout: its own folder */
    cut_last(dir);                              /* the folder holding the checkout */
    int w = snprintf(out, cap, "%s/shared/data", dir);
    if (w < 0 || (size_t)w >= cap)
        return err_set(e, SPARQ_EINPUT, "%s/shared/data: path longer than %zu characters", dir, cap - 1);
    return SPARQ_OK;
}
