/* Shared by the libFuzzer harnesses: a per-process scratch folder under /tmp and whole-file
 * writes into it, for readers that take a path. Harness-only code: failures here abort, since
 * they are the harness's fault, not the reader's. */
#ifndef SPARQ_FUZZ_H
#define SPARQ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir_path[256];

static void fuzz_rmtree(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        for (struct dirent *de; (de = readdir(d)) != NULL;) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            fuzz_rmtree(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void fuzz_cleanup(void) {
    if (fuzz_dir_path[0]) fuzz_rmtree(fuzz_dir_path);
}

/* /tmp/sparq-fuzz-NAME-PID, created once (the same folder for every input of this process) and
 * removed at exit. */
static const char *fuzz_dir(const char *name) {
    if (!fuzz_dir_path[0]) {
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "/tmp/sparq-fuzz-%s-%ld", name, (long)getpid());
        if (mkdir(fuzz_dir_path, 0700) != 0 && access(fuzz_dir_path, W_OK) != 0) {
            perror(fuzz_dir_path);
            abort();
        }
        atexit(fuzz_cleanup);
    }
    return fuzz_dir_path;
}

/* out = the scratch folder / file. */
static void fuzz_path(char *out, size_t cap, const char *name, const char *file) {
    snprintf(out, cap, "%s/%s", fuzz_dir(name), file);
}

static void fuzz_write(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

/* The input written to the scratch file `file` of harness `name`, for a reader that takes one
 * path: the path (the same for every input of this process). */
static inline const char *fuzz_input(const char *name, const char *file, const uint8_t *data, size_t size) {
    static char path[512];
    if (!path[0]) fuzz_path(path, sizeof path, name, file);
    fuzz_write(path, data, size);
    return path;
}

#endif
