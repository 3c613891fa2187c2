/* Helpers shared by the tests: data paths through SPARQ_DATA, temporary files, running the
 * sparq binary and capturing its output, and the reference sequences of reference-outputs.md. */
#ifndef SPARQ_TEST_UTIL_H
#define SPARQ_TEST_UTIL_H

#include <stddef.h>

#include "../core/model.h"
#include "../core/tokenizer.h"

/* <data root>/rel: $SPARQ_DATA/rel, else beside the checkout (core/fileio.h data_root); a static
 * buffer ring (8 slots). */
const char *data_path(const char *rel);

/* A fresh file path in a per-process temporary folder (static buffer ring, 8 slots). */
const char *tmp_path(const char *name);

/* Write n bytes to path; returns 0 on success. */
int write_file(const char *path, const void *buf, size_t n);

/* Read a whole file (NUL-terminated); caller frees. NULL on failure. */
char *read_all(const char *path, size_t *n);

/* Run "$SPARQ_BIN args..." (args is one shell-quoted string); stdout and stderr are captured
 * into malloc'ed strings (caller frees). Returns the exit status, or -1 if it did not exit. */
int run_sparq(const char *args, char **out, char **errout);
/* The same, run from folder dir (the binary's path is made absolute first). */
int run_sparq_in(const char *dir, const char *args, char **out, char **errout);

/* stories260K and its tokenizer, loaded once per test (asserts on failure). */
model *load_stories(void);
/* Every block of a (streamed) model made float32 for good, so a test may read and write
 * m->blocks directly (stream.h); model_free lets go. */
void   model_pin(model *m);
/* Every weight of m in the family table's order (each per-block tensor for all blocks: a
 * resident model's m->data), model_params(m) floats, acquiring streamed blocks as it goes. */
float *model_flat(const model *m);
bool   model_weights_equal(const model *a, const model *b);
tokenizer *load_tok512(void);

/* reference-outputs.md B2: BOS then the 256 greedy ids. */
extern const int ref_greedy_ids[257];
/* reference-outputs.md A2: the 256-step greedy story, without run.c's final newline. */
extern const char *ref_story_256;

/* Dense Hessians of every block input of stories260K on nsamples x seqlen C4 windows (seed 0):
 * H[l][input], input 0 = q/k/v, 1 = o, 2 = gate/up, 3 = down (width 64, 64, 64, 172). */
typedef struct { float *H[5][4]; int width[4]; } real_h;
real_h *real_hessians(int nsamples, int seqlen);
void real_h_free(real_h *r);
/* The input (0..3 above) each linear_kind reads. */
extern const int linear_input[7];

/* The families/ fixtures (OPT, Mamba: Hugging Face layout with reference outputs). */
struct cJSON;
/* families/FIXTURE/ref.json, parsed (asserts on failure); caller deletes. */
struct cJSON *fixture_ref_json(const char *fixture);
/* The integers of a JSON array into out[cap]; returns the count. */
int json_ints(const struct cJSON *a, int *out, int cap);
/* families/FIXTURE loaded (asserts on failure). */
model *fixture_model(const char *fixture);
/* families/FIXTURE/FILE as want floats (asserts on its size); caller frees. */
float *fixture_floats(const char *fixture, const char *file, size_t want);
/* A temporary copy of families/FIXTURE named `name` whose config.json has `key` set to the JSON
 * `value` (NULL: removed), its weights a symlink to the fixture's. */
const char *fixture_bad_copy(const char *fixture, const char *name, const char *key, const char *value);
/* Perplexity of m on an ids file, windows of 64. */
double ppl_of_ids(const model *m, const char *ids_path);

#endif
