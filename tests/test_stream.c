/* Streamed models (core/stream.h): a model read from safetensors or GGUF holds its blocks in the
 * file and makes them float32 only while they are used. The same numbers as the resident
 * llama2.c model, bit for bit: eval, compression (whose blocks go through the spill file), the
 * sweep's restore to the pristine blocks, --blocks, and a spill file that cannot be written. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/family.h"
#include "../core/stream.h"
#include "../eval/perplexity.h"
#include "../experiments/calib.h"
#include "../experiments/compress.h"
#include "util.h"

#define C4 data_path("text/c4-en-train-first1000.jsonl")
#define WIKI data_path("text/wiki.test.raw")

/* stories260K written as a Hugging Face folder (f32) and loaded back: streamed. */
static model *streamed_stories(const char *name) {
    model *a = load_stories();
    char dir[600];
    snprintf(dir, sizeof dir, "%s", tmp_path(name));
    model_save_options o = {.format = MODEL_FORMAT_SAFETENSORS, .dtype = DTYPE_F32};
    err e = {0};
    cr_assert_eq(model_save_opts(a, dir, &o, &e), 0, "%s", e.msg);
    model_free(a);
    model *m = NULL;
    cr_assert_eq(model_load(&m, dir, &e), 0, "%s", e.msg);
    cr_assert(model_streamed(m));
    return m;
}

static double ppl_of(const model *m, const tokenizer *t) {
    token_seqs s;
    err e = {0};
    cr_assert_eq(ppl_prepare(t, WIKI, PPL_WINDOWS, 128, 40, &s, &e), 0, "%s", e.msg);
    ppl_result r;
    cr_assert_eq(ppl_score(m, &s, &r, NULL, NULL, &e), 0, "%s", e.msg);
    token_seqs_free(&s);
    return r.ppl;
}

static bool none_resident(const model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < model_n_linear(m); k++)
            if (m->blocks[l].lin[k].w) return false;
    return true;
}

Test(stream, blocks_are_float32_only_while_used_and_give_the_resident_numbers) {
    model *r = load_stories(), *s = streamed_stories("st-a");
    tokenizer *t = load_tok512();
    /* Only the embedding, norms and classifier are held; the blocks' shapes are known. */
    cr_assert_lt(s->data_floats, r->data_floats / 2);
    cr_assert_eq(s->data_floats + (size_t)s->cfg.n_layers * model_block_floats(s), model_params(r));
    cr_assert(none_resident(s));
    cr_assert_eq(s->blocks[3].lin[LLAMA_DOWN].cols, 172);
    cr_assert(model_weights_equal(r, s));
    double pr = ppl_of(r, t), ps = ppl_of(s, t);
    cr_assert_eq(pr, ps, "resident %.17g vs streamed %.17g", pr, ps);
    cr_assert(none_resident(s), "a block stayed float32 after eval");
    /* Acquires are counted: the block stays until its last release. */
    err e = {0};
    cr_assert_eq(model_block_acquire(s, 2, &e), 0);
    cr_assert_eq(model_block_acquire(s, 2, &e), 0);
    model_block_release(s, 2);
    cr_assert_not_null(s->blocks[2].lin[LLAMA_Q].w);
    model_block_release(s, 2);
    cr_assert_null(s->blocks[2].lin[LLAMA_Q].w);
    cr_assert_eq(model_block_acquire(s, 5, &e), SPARQ_EINPUT);
    tokenizer_free(t);
    model_free(r);
    model_free(s);
}

Test(stream, compression_spills_blocks_and_reset_brings_back_the_file) {
    model *r = load_stories(), *s = streamed_stories("st-b"), *orig = load_stories();
    tokenizer *t = load_tok512();
    token_seqs cs;
    err e = {0};
    cr_assert_eq(calib_from_text(t, C4, 8, 64, 0, &cs, &e), 0, "%s", e.msg);
    compress_options o = {.target = target_default()};
    cr_assert_eq(solver_spec_parse("sparsegpt", false, &o.solver, &e), 0);
    o.target.sparsity = 0.5f;
    compress_report rr, rs;
    cr_assert_eq(compress_model(r, &cs, &o, &rr, NULL, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(compress_model(s, &cs, &o, &rs, NULL, NULL, &e), 0, "%s", e.msg);
    cr_assert(none_resident(s));
    /* The compressed blocks come back from the spill file exactly as the solver left them. */
    cr_assert(model_weights_equal(r, s), "streamed compression differs from resident");
    for (int i = 0; i < rr.n; i++) cr_assert_eq(rr.layers[i].report.loss, rs.layers[i].report.loss);
    cr_assert_eq(ppl_of(r, t), ppl_of(s, t));
    cr_assert(!model_weights_equal(orig, s));
    cr_assert_eq(model_blocks_reset(s, &e), 0, "%s", e.msg);
    cr_assert(model_weights_equal(orig, s), "reset did not bring back the file's blocks");
    /* A block still in use cannot be reset away. */
    cr_assert_eq(model_block_acquire(s, 0, &e), 0);
    cr_assert_neq(model_blocks_reset(s, &e), 0);
    model_block_release(s, 0);

    /* --blocks 1-2: those two blocks change, the others are the file's. */
    o.block_first = 1;
    o.block_count = 2;
    compress_report rb;
    cr_assert_eq(compress_model(s, &cs, &o, &rb, NULL, NULL, &e), 0, "%s", e.msg);
    for (int l = 0; l < 5; l++) {
        cr_assert_eq(model_block_acquire(s, l, &e), 0);
        cr_assert_eq(model_block_acquire(orig, l, &e), 0);
        const linear *a = &s->blocks[l].lin[LLAMA_UP], *b = &orig->blocks[l].lin[LLAMA_UP];
        bool same = memcmp(a->w, b->w, (size_t)a->rows * a->cols * sizeof(float)) == 0;
        cr_assert_eq(same, l < 1 || l > 2, "block %d", l);
        cr_assert_eq(rb.layers[l * 7 + LLAMA_UP].report.sparsity > 0.4, l >= 1 && l <= 2, "block %d", l);
        model_block_release(s, l);
        model_block_release(orig, l);
    }
    compress_report_free(&rb);
    o.block_first = 4;
    cr_assert_eq(compress_model(s, &cs, &o, &rb, NULL, NULL, &e), SPARQ_EINPUT);
    cr_assert(strstr(e.msg, "--blocks 4-5: the model has blocks 0-4"), "%s", e.msg);
    compress_report_free(&rr);
    compress_report_free(&rs);
    compress_report_free(&rb);
    token_seqs_free(&cs);
    tokenizer_free(t);
    model_free(r);
    model_free(s);
    model_free(orig);
}

/* Where compressed blocks cannot be kept, compression stops with one line naming the spill file. */
Test(stream, an_unwritable_spill_folder_is_one_clear_error) {
    model *s = streamed_stories("st-c");
    tokenizer *t = load_tok512();
    token_seqs cs;
    err e = {0};
    cr_assert_eq(calib_from_text(t, C4, 4, 32, 0, &cs, &e), 0, "%s", e.msg);
    compress_options o = {.target = target_default()};
    cr_assert_eq(solver_spec_parse("magnitude", false, &o.solver, &e), 0);
    o.target.sparsity = 0.5f;
    const char *old = getenv("TMPDIR");
    char *keep = old ? strdup(old) : NULL;
    setenv("TMPDIR", "/nonexistent-sparq-dir", 1);
    compress_report rep;
    int rc = compress_model(s, &cs, &o, &rep, NULL, NULL, &e);
    if (keep) setenv("TMPDIR", keep, 1);
    else unsetenv("TMPDIR");
    free(keep);
    cr_assert_eq(rc, SPARQ_ERUNTIME);
    cr_assert(strstr(e.msg, "/nonexistent-sparq-dir/sparq-spill-") && strstr(e.msg, "spill file"), "%s", e.msg);
    cr_assert(none_resident(s));
    token_seqs_free(&cs);
    tokenizer_free(t);
    model_free(s);
}

/* An output the writer cannot make is refused before calibration, not after hours of work. */
Test(stream, an_impossible_output_is_refused_before_the_work) {
    char args[2048], *out, *er;
    snprintf(args, sizeof args, "compress --model '%s' --tokenizer '%s' --calib '%s' --nsamples 2 "
             "--calib-seqlen 16 --solver sparsegpt --sparsity 0.5 --out '%s' --dtype f16",
             data_path("stories260K/stories260K.bin"), data_path("stories260K/tok512.model"), C4,
             tmp_path("no-extension"));
    cr_assert_eq(run_sparq(args, &out, &er), 2, "%s", er);
    cr_assert(strstr(er, "llama2.c checkpoints are float32 only, not f16"), "%s", er);
    cr_assert_null(strstr(er, "layer"), "the compression ran: %s", er);
    free(out);
    free(er);
}
