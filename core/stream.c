/* Streamed models (stream.h): per-block float32 buffers made on demand from the file or the
 * spill file, counted, and freed on the last release. */
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "family.h"

typedef struct {
    float *buf;      /* the block as float32 while acquired, else NULL */
    int    refs;
    bool   spilled;  /* its current weights are in the spill file, not the model file */
} slot;

struct model_store {
    model_source    src;
    pthread_mutex_t mu;
    size_t          floats;      /* per block */
    slot           *b;           /* [n_layers] */
    int             spill;       /* the spill file, unlinked at creation; -1 until needed */
};

int model_alloc_streamed(model **out, const model_config *c, bool shared, model_source src, err *e) {
    *out = NULL;
    model *m = NULL;
    int rc = model_alloc_parts(&m, c, shared, false, e);
    struct model_store *s = rc ? NULL : calloc(1, sizeof *s);
    if (!rc && s) s->b = calloc((size_t)c->n_layers, sizeof *s->b);
    if (!rc && (!s || !s->b)) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (rc) {
        if (s) free(s->b);
        free(s);
        model_free(m);
        if (src.close) src.close(src.src);
        return rc;
    }
    s->src = src;
    s->floats = model_block_floats(m);
    s->spill = -1;
    pthread_mutex_init(&s->mu, NULL);
    m->store = s;
    *out = m;
    return SPARQ_OK;
}

bool model_streamed(const model *m) { return m->store != NULL; }

void model_store_free(model *m) {
    struct model_store *s = m->store;
    if (!s) return;
    for (int l = 0; l < m->cfg.n_layers; l++) free(s->b[l].buf);
    if (s->spill >= 0) close(s->spill);
    if (s->src.close) s->src.close(s->src.src);
    pthread_mutex_destroy(&s->mu);
    free(s->b);
    free(s);
    m->store = NULL;
}

/* The spill file: in $TMPDIR (else /tmp), unlinked at once so that nothing is left behind
 * however the process ends. */
static int spill_open(struct model_store *s, err *e) {
    if (s->spill >= 0) return SPARQ_OK;
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/sparq-spill-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0)
        return err_set(e, SPARQ_ERUNTIME, "%s: cannot create the spill file for compressed blocks: %s",
                       path, strerror(errno));
    unlink(path);
    s->spill = fd;
    return SPARQ_OK;
}

/* pread/pwrite of n bytes at off, in pieces (a call moves at most about 2 GB). */
static int spill_io(int fd, void *p, size_t n, off_t off, bool wr, err *e) {
    char *c = p;
    while (n > 0) {
        size_t k = n > (1u << 30) ? (1u << 30) : n;
        ssize_t got = wr ? pwrite(fd, c, k, off) : pread(fd, c, k, off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            return err_set(e, SPARQ_ERUNTIME, "spill file ($TMPDIR): %s of a compressed block failed: %s",
                           wr ? "writing" : "reading", got < 0 ? strerror(errno) : "short file");
        c += got;
        off += got;
        n -= (size_t)got;
    }
    return SPARQ_OK;
}

int model_block_acquire(const model *m, int l, err *e) {
    struct model_store *s = m->store;
    if (!s) return SPARQ_OK;
    if (l < 0 || l >= m->cfg.n_layers) return err_set(e, SPARQ_EINPUT, "block %d does not exist", l);
    pthread_mutex_lock(&s->mu);
    slot *b = &s->b[l];
    int rc = SPARQ_OK;
    if (b->buf) {
        b->refs++;
    } else {
        /* Converted under the lock: a second thread wanting the same block waits for it rather
         * than converting it twice. */
        b->buf = malloc(s->floats * sizeof(float));
        if (!b->buf) {
            rc = err_set(e, SPARQ_ERUNTIME, "out of memory for block %d (%.2f GB as float32)", l,
                         s->floats * 4.0 / 1e9);
        } else {
            model_block_point((model *)m, l, b->buf);
            rc = b->spilled ? spill_io(s->spill, b->buf, s->floats * sizeof(float),
                                       (off_t)l * (off_t)(s->floats * sizeof(float)), false, e)
                            : s->src.fill(s->src.src, m, l, e);
            if (rc) {
                model_block_point((model *)m, l, NULL);
                free(b->buf);
                b->buf = NULL;
            } else {
                b->refs = 1;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void model_block_release(const model *m, int l) {
    struct model_store *s = m->store;
    if (!s || l < 0 || l >= m->cfg.n_layers) return;
    pthread_mutex_lock(&s->mu);
    slot *b = &s->b[l];
    if (b->buf && --b->refs == 0) {
        model_block_point((model *)m, l, NULL);
        free(b->buf);
        b->buf = NULL;
    }
    pthread_mutex_unlock(&s->mu);
}

int model_block_store(const model *m, int l, err *e) {
    struct model_store *s = m->store;
    if (!s) return SPARQ_OK;
    pthread_mutex_lock(&s->mu);
    slot *b = &s->b[l];
    int rc = b->buf ? spill_open(s, e) : err_set(e, SPARQ_ERUNTIME, "block %d is not acquired", l);
    if (!rc) rc = spill_io(s->spill, b->buf, s->floats * sizeof(float),
                           (off_t)l * (off_t)(s->floats * sizeof(float)), true, e);
    if (!rc) b->spilled = true;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int model_block_hold(const model *m, int *held, int want, err *e) {
    if (*held == want) return SPARQ_OK;
    if (*held >= 0) model_block_release(m, *held);
    *held = -1;
    int rc = want >= 0 ? model_block_acquire(m, want, e) : SPARQ_OK;
    if (!rc) *held = want;
    return rc;
}

int model_blocks_acquire_all(const model *m, err *e) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        int rc = model_block_acquire(m, l, e);
        if (rc) {
            while (l-- > 0) model_block_release(m, l);
            return rc;
        }
    }
    return SPARQ_OK;
}

void model_blocks_release_all(const model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++) model_block_release(m, l);
}

int model_blocks_reset(model *m, err *e) {
    struct model_store *s = m->store;
    if (!s) return SPARQ_OK;
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (s->b[l].buf) return err_set(e, SPARQ_ERUNTIME, "block %d is still in use", l);
    for (int l = 0; l < m->cfg.n_layers; l++) s->b[l].spilled = false;
    if (s->spill >= 0 && ftruncate(s->spill, 0) != 0)
        return err_set(e, SPARQ_ERUNTIME, "spill file: %s", strerror(errno));
    return SPARQ_OK;
}
