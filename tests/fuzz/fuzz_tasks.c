/* Zero-shot task files (eval/tasks.c, zeroshot_load_task) for every adapter. Input layout:
 *   byte 0: the adapter, zeroshot_task_names[byte % count] (piqa, arc_easy, arc_challenge,
 *           hellaswag, winogrande, boolq, lambada, cloze, ending);
 *   byte 1: bits 0-1 the limit (0 = all, 1, 2, 5), bit 2 a labels file named explicitly
 *           ("DATA,LABELS") rather than found beside the data (X-labels.lst), bits 3-7 the seed;
 *   the rest: the data file, then, after a NUL byte if there is one, the labels file.
 * Requests are tokenized with stories260K/tok512.bin under the data root (core/fileio.h data_root),
 * or byte pieces without it. */
#include "../../core/fileio.h"
#include "../../eval/zeroshot.h"
#include "fuzz.h"

static tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char root[1024], p[1100];
    err e = {0};
    snprintf(p, sizeof p, "%s/stories260K/tok512.bin", data_root(root, sizeof root, &e) == SPARQ_OK ? root : ".");
    if (tokenizer_load(&tok, p, &e) == SPARQ_OK) return 0;
    /* <unk>, BOS, EOS and the 256 byte pieces. */
    static char bytes[256][8];
    const char *pieces[259];
    float scores[259] = {0};
    pieces[0] = "<unk>";
    pieces[1] = "\n<s>\n";
    pieces[2] = "\n</s>\n";
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        pieces[3 + b] = bytes[b];
    }
    if (tokenizer_from_pieces(&tok, 259, pieces, scores, "bytes", &e) != SPARQ_OK) {
        fprintf(stderr, "fuzz_tasks: %s\n", e.msg);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[512], labels[512], both[1100];
    if (!path[0]) {
        fuzz_path(path, sizeof path, "tasks", "task.jsonl");
        fuzz_path(labels, sizeof labels, "tasks", "task-labels.lst");
        snprintf(both, sizeof both, "%s,%s", path, labels);
    }
    if (size < 2) return 0;
    int count = 0;
    while (zeroshot_task_names[count]) count++;
    const char *name = zeroshot_task_names[data[0] % count];
    static const int limits[4] = {0, 1, 2, 5};
    int limit = limits[data[1] & 3];
    bool explicit_lab = data[1] & 4;
    unsigned long seed = data[1] >> 3;
    data += 2;
    size -= 2;
    const uint8_t *nul = memchr(data, 0, size);
    size_t ndata = nul ? (size_t)(nul - data) : size;
    fuzz_write(path, data, ndata);
    if (nul) fuzz_write(labels, nul + 1, size - ndata - 1);
    else unlink(labels);
    zeroshot_task t;
    err e = {0};
    if (zeroshot_load_task(tok, name, nul && explicit_lab ? both : path, limit, seed, &t, &e) == SPARQ_OK) {
        volatile long sink = t.n_docs;
        for (int i = 0; i < t.n_req; i++) sink += t.req[i].n_ctx + t.req[i].n_cont + t.req[i].chars;
        (void)sink;
    }
    zeroshot_task_free(&t);   /* after a failed load: already freed and zeroed, harmless */
    return 0;
}
