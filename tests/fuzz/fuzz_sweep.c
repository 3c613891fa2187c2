/* Sweep INI configs (experiments/config.c, config_load): the input is the config file. $SPARQ_DATA
 * is pointed at the scratch folder, which holds small stand-ins under the names the project's
 * configs use (stories260K/stories260K.bin, text/...) and short ones for hand-made seeds
 * (model.bin, tok.bin, calib.txt, text.txt), so that configs get past the file hashing to the
 * grid expansion without reading the real data on every input. */
#include "../../experiments/config.h"
#include "fuzz.h"

static const char *const stand_ins[] = {
    "stories260K/tok512.bin", "text/c4-en-train-first1000.jsonl",
    "text/TinyStories-valid-first1000.txt", "text/wiki.test.raw", "tok.bin", "calib.txt",
    "text.txt", "tasks.jsonl", NULL,
};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = fuzz_dir("sweep");
    char p[512];
    snprintf(p, sizeof p, "%s/stories260K", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/text", dir);
    mkdir(p, 0700);
    /* A llama2.c header (dim, hidden, layers, heads, kv heads, vocab, seq): the layer shapes
     * solver specs are checked against. */
    const int32_t hdr[7] = {64, 172, 5, 8, 4, 512, 512};
    fuzz_path(p, sizeof p, "sweep", "stories260K/stories260K.bin");
    fuzz_write(p, hdr, sizeof hdr);
    fuzz_path(p, sizeof p, "sweep", "model.bin");
    fuzz_write(p, hdr, sizeof hdr);
    for (int i = 0; stand_ins[i]; i++) {
        fuzz_path(p, sizeof p, "sweep", stand_ins[i]);
        fuzz_write(p, "Once upon a time.\n", 18);
    }
    setenv("SPARQ_DATA", dir, 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input("sweep", "sweep.ini", data, size);
    sweep_config *cfg = malloc(sizeof *cfg);   /* ~20 kB: off the stack */
    if (!cfg) return 0;
    run_spec *runs = NULL;
    int n = 0;
    err e = {0};
    if (config_load(path, cfg, &runs, &n, &e) == SPARQ_OK) {
        volatile size_t sink = 0;
        for (int i = 0; i < n; i++) sink += strlen(runs[i].label) + strlen(runs[i].invalid);
        (void)sink;
    }
    free(runs);
    free(cfg);
    return 0;
}
