/* ggml's 32-weight blocks: hand-computed blocks of ggml's reference rules (Q4_0's signed scale,
 * round half up, clamp at 15; Q5_0's fifth bits; Q4_1's min; Q8_0's roundf), exact packing of
 * values on a fitted grid, llama.cpp's own files (stories3M by llama-quantize --pure) byte for
 * byte from the float32 source, rtn --ggml through the GGUF writer byte for byte, and a
 * compressed model written in every block type and read back equal to the one sparq evaluated. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/family.h"
#include "../core/ggml_blocks.h"
#include "../core/gguf.h"
#include "../core/model.h"
#include "../experiments/options.h"
#include "../experiments/run.h"
#include "../solvers/quantizer.h"
#include "../solvers/solver.h"
#include "../core/family.h"
#include "util.h"

static const ggml_block_type *type_of(const char *name) {
    const ggml_block_type *b = ggml_block_by_name(name);
    cr_assert_not_null(b, "%s", name);
    return b;
}

static void expect_bytes(const unsigned char *got, const unsigned char *want, int n, const char *what) {
    for (int i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "%s: byte %d is 0x%02x, expected 0x%02x", what, i, got[i], want[i]);
}

Test(ggml_blocks, q4_0_rule_reproduces_hand_computed_blocks) {
    const ggml_block_type *b = type_of("q4_0");
    cr_assert_eq(b->bytes, 18);
    /* Largest magnitude -2: d = -2 / -8 = 0.25, id = 4, code = trunc(4 x + 8.5) clamped at 15.
     * 0.125 -> 9 (ties go up, unlike rint's 8); 1.875 -> 16 -> 15: the positive end is +7 d. */
    float x[32] = {-2.0f, 1.0f, 0.5f, 0.125f, -0.125f, 1.875f};
    x[16] = 0.25f;
    unsigned char blk[18], want[18] = {0x00, 0x34, 0x90, 0x8C, 0x8A, 0x89, 0x88, 0x8F};
    for (int j = 8; j < 18; j++) want[j] = 0x88;
    ggml_block_quantize_ref(b, x, blk, 1);
    expect_bytes(blk, want, 18, "q4_0 block A");
    float y[32];
    cr_assert_eq(ggml_block_dequantize(b, blk, y, 1), 0);
    const float yv[6] = {-2.0f, 1.0f, 0.5f, 0.25f, 0.0f, 1.75f};
    for (int j = 0; j < 6; j++) cr_assert_eq(y[j], yv[j], "A[%d] = %g", j, (double)y[j]);
    cr_assert_eq(y[16], 0.25f);
    /* Largest magnitude +3: d = -0.375 (f16 0xB600), so 3 is code 0 exactly and -3 clamps at
     * code 15 = -2.625; 1.5 -> code 4. */
    float z[32] = {3.0f, -3.0f, 1.5f};
    unsigned char wantb[18] = {0x00, 0xB6, 0x80, 0x8F, 0x84};
    for (int j = 5; j < 18; j++) wantb[j] = 0x88;
    ggml_block_quantize_ref(b, z, blk, 1);
    expect_bytes(blk, wantb, 18, "q4_0 block B");
    ggml_block_dequantize(b, blk, y, 1);
    cr_assert_eq(y[0], 3.0f);
    cr_assert_eq(y[1], -2.625f);
    cr_assert_eq(y[2], 1.5f);
    /* ggml's rule as sparq's grid: the largest weight is a level; quant.py's symmetric grid
     * (scale 2 * 3 / 15 = 0.4) cannot reach it. */
    quant_params pg, pm;
    err e = {0};
    cr_assert_eq(quant_fit(z, 32, 1, 4, true, false, QUANT_GRID_GGML, &pg, &e), 0, "%s", e.msg);
    cr_assert_eq(pg.scale, -0.375f);
    cr_assert_eq(pg.zero, 8.0f);
    cr_assert_eq(quant_value(3.0f, &pg), 3.0f);
    cr_assert_eq(quant_value(-3.0f, &pg), -2.625f);
    cr_assert_eq(quant_fit(z, 32, 1, 4, true, false, QUANT_GRID_MINMAX, &pm, &e), 0);
    cr_assert_eq(quant_value(3.0f, &pm), 0.4f * 7.0f);
}

Test(ggml_blocks, q5_0_q4_1_q8_0_hand_computed_blocks) {
    /* Q5_0: d = -4 / -16 = 0.25; codes 0, 31, 20 and 16 for the zeros; the fifth bits go to qh
     * (bit j for code j): all set but bit 0. */
    float x[32] = {-4.0f, 3.75f};
    x[17] = 1.0f;
    unsigned char blk[34], w5[22] = {0x00, 0x34, 0xFE, 0xFF, 0xFF, 0xFF, 0x00, 0x4F};
    ggml_block_quantize_ref(type_of("q5_0"), x, blk, 1);
    expect_bytes(blk, w5, 22, "q5_0");
    float y[32];
    ggml_block_dequantize(type_of("q5_0"), blk, y, 1);
    cr_assert_eq(y[1], 3.75f);
    cr_assert_eq(y[17], 1.0f);
    /* Q4_1: min -1, max 0.875: d = 0.125 (0x3000), m = -1 (0xBC00); 0.0625 -> code 9 (a tie,
     * up), 0.5 -> 12. */
    float a[32];
    for (int j = 0; j < 32; j++) a[j] = 0.5f;
    a[0] = -1.0f, a[1] = 0.875f, a[2] = 0.0f, a[3] = 0.0625f;
    unsigned char w41[20] = {0x00, 0x30, 0x00, 0xBC, 0xC0, 0xCF, 0xC8, 0xC9};
    for (int j = 8; j < 20; j++) w41[j] = 0xCC;
    ggml_block_quantize_ref(type_of("q4_1"), a, blk, 1);
    expect_bytes(blk, w41, 20, "q4_1");
    ggml_block_dequantize(type_of("q4_1"), blk, y, 1);
    cr_assert_eq(y[3], 0.125f);
    cr_assert_eq(y[0], -1.0f);
    /* Q8_0: amax 127, d = 1; roundf takes ties away from zero (2.5 -> 3, -2.5 -> -3). */
    float q[32] = {127.0f, 2.5f, -2.5f, -127.0f, 0.49f};
    unsigned char w8[34] = {0x00, 0x3C, 0x7F, 0x03, 0xFD, 0x81, 0x00};
    ggml_block_quantize_ref(type_of("q8_0"), q, blk, 1);
    expect_bytes(blk, w8, 34, "q8_0");
}

/* A small deterministic generator: weights of a few scales, with outliers. */
static float rnd(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    float u = (float)(*s >> 8) / 16777216.0f - 0.5f;
    return (*s & 0x70u) == 0 ? 8.0f * u : 0.05f * u;
}

Test(ggml_blocks, values_on_a_fitted_ggml_grid_pack_and_read_back_bit_for_bit) {
    unsigned seed = 7;
    for (int t = 0; t < ggml_block_count; t++) {
        const ggml_block_type *b = &ggml_block_types[t];
        enum { NB = 64 };
        float x[NB * 32], v[NB * 32], d[NB], m[NB], y[NB * 32];
        unsigned char buf[NB * 34];
        for (int i = 0; i < NB * 32; i++) x[i] = rnd(&seed);
        for (int k = 32; k < 64; k++) x[k] = 0.0f;   /* an all-zero block: scale 0 */
        for (int i = 0; i < NB; i++) {
            quant_params p;
            err e = {0};
            cr_assert_eq(quant_fit(x + 32 * i, 32, 1, b->bits, !b->has_min, i % 3 == 0, QUANT_GRID_GGML, &p, &e), 0);
            cr_assert_eq(p.affine, b->has_min);
            d[i] = p.scale;
            m[i] = p.min;
            for (int j = 0; j < 32; j++) v[32 * i + j] = quant_value(x[32 * i + j], &p);
        }
        cr_assert_eq(ggml_block_pack(b, v, d, m, buf, NB), (size_t)NB * 32, "%s", b->name);
        cr_assert_eq(ggml_block_dequantize(b, buf, y, NB), 0);
        cr_assert_eq(memcmp(y, v, sizeof v), 0, "%s: the blocks read back differ from the grid values", b->name);
        /* A value one float off its grid is refused, by index. */
        v[5 * 32 + 3] = nextafterf(v[5 * 32 + 3], INFINITY);
        cr_assert_eq(ggml_block_pack(b, v, d, m, buf, NB), (size_t)5 * 32 + 3, "%s", b->name);
    }
}

/* stories3M's float32 weights (the version-2 file dequantized) by GGUF tensor name, through
 * the family's tensor table. */
static const float *source_tensor(const model *m, const char *name, size_t *n) {
    const family *f = m->fam;
    char nm[96];
    for (int i = 0; i < f->n_tensor; i++) {
        const family_tensor *t = &f->tensor[i];
        int copies = family_tensor_per_block(t) ? m->cfg.n_layers : 1;
        for (int l = 0; l < copies; l++) {
            snprintf(nm, sizeof nm, t->gguf, l);
            if (strcmp(nm, name) != 0) continue;
            *n = family_size(&m->cfg, t->rows) * family_size(&m->cfg, t->cols);
            return model_tensor_ptr(m, t, l);
        }
    }
    cr_assert_fail("unexpected tensor %s", name);
    return NULL;
}

static const char *const TYPES[5] = {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1"};

static const char *llamacpp_file(const char *type) {
    char rel[128];
    snprintf(rel, sizeof rel, "gguf/stories3M-llamacpp/s3m-%s.gguf", type);
    return data_path(rel);
}

Test(ggml_blocks, llama_cpp_files_are_ggml_reference_quantization_of_the_float32_source, .timeout = 120) {
    model *src;
    err e = {0};
    cr_assert_eq(model_load(&src, data_path("stories3M/stories3M-q80.bin"), &e), 0, "%s", e.msg);
    model_pin(src);
    for (int f = 0; f < 5; f++) {
        const ggml_block_type *b = type_of(TYPES[f]);
        gguf_file *g;
        cr_assert_eq(gguf_open(&g, llamacpp_file(TYPES[f]), &e), 0, "%s", e.msg);
        gguf_tensor_info t;
        int blocks = 0;
        for (uint64_t i = 0; gguf_tensor_at(g, i, &t); i++) {
            size_t n;
            const float *w = source_tensor(src, t.name, &n);
            if (t.ggml_type == 0) {   /* the norms stay F32, the source's floats */
                cr_assert_eq(t.nbytes, n * 4);
                cr_assert_eq(memcmp(t.data, w, n * 4), 0, "%s %s", TYPES[f], t.name);
                continue;
            }
            cr_assert_eq(t.ggml_type, b->ggml_type, "%s: %s is %s", TYPES[f], t.name, gguf_type_name(t.ggml_type));
            cr_assert_eq(t.nbytes, n / 32 * (size_t)b->bytes);
            unsigned char *mine = malloc(t.nbytes);
            ggml_block_quantize_ref(b, w, mine, n / 32);
            const unsigned char *theirs = t.data;
            for (size_t k = 0; k < t.nbytes; k++)
                if (mine[k] != theirs[k])
                    cr_assert_fail("%s %s: block %zu byte %zu is 0x%02x, llama.cpp wrote 0x%02x", TYPES[f], t.name,
                                   k / b->bytes, k % b->bytes, mine[k], theirs[k]);
            free(mine);
            blocks++;
        }
        cr_assert_eq(blocks, 1 + 7 * src->cfg.n_layers, "%s: embedding + every linear layer", TYPES[f]);
        gguf_close(g);
        /* sparq reads the file, embedding (the shared head) included: every weight within one
         * step of its block's grid of the source (wrong nibble or bit order would be many). */
        model *q;
        cr_assert_eq(model_load(&q, llamacpp_file(TYPES[f]), &e), 0, "%s", e.msg);
        model_pin(q);
        cr_assert(q->shared_cls);
        size_t n = (size_t)src->cfg.vocab_size * src->cfg.dim;
        for (size_t blk = 0; blk < n / 32; blk++) {
            float lo = INFINITY, hi = -INFINITY;
            for (int j = 0; j < 32; j++) {
                lo = fminf(lo, src->tok_emb[blk * 32 + j]);
                hi = fmaxf(hi, src->tok_emb[blk * 32 + j]);
            }
            float step = (hi - lo) / ((1 << b->bits) - 1) * (b->has_min ? 1.0f : 2.0f) * 1.01f;
            for (int j = 0; j < 32; j++)
                cr_assert_leq(fabsf(q->tok_emb[blk * 32 + j] - src->tok_emb[blk * 32 + j]), step + 1e-6f,
                              "%s token_embd block %zu weight %d", TYPES[f], blk, j);
        }
        model_free(q);
    }
    model_free(src);
}

/* With pure (the embedding in the block type too, as --pure) the whole file's tensors are
 * llama.cpp's. */
Test(ggml_blocks, rtn_ggml_pure_writes_llama_cpp_s_bytes_for_every_tensor, .timeout = 180) {
    for (int f = 0; f < 5; f++) {
        const ggml_block_type *b = type_of(TYPES[f]);
        model *m;
        err e = {0};
        cr_assert_eq(model_load(&m, data_path("stories3M/stories3M-q80.bin"), &e), 0, "%s", e.msg);
        model_pin(m);
        target t = target_default();
        t.bits = b->bits;
        t.group = 32;
        t.sym = !b->has_min;
        t.ggml = (int)(b - ggml_block_types) + 1;
        int nl = m->cfg.n_layers * model_n_linear(m);
        layer_report *r = calloc((size_t)nl, sizeof *r);
        gguf_block_grid *gr = calloc((size_t)nl, sizeof *gr);
        for (int i = 0; i < nl; i++) {
            linear *x = &m->blocks[i / model_n_linear(m)].lin[i % model_n_linear(m)];
            cr_assert_eq(solver_run(solver_find("rtn"), x->w, x->rows, x->cols, NULL, &t, &r[i], &e), 0, "%s", e.msg);
            gr[i] = (gguf_block_grid){r[i].scale, r[i].min};
        }
        const char *path = tmp_path("rtn-ggml.gguf");
        gguf_save_info info;
        cr_assert_eq(gguf_save_model_blocks(m, NULL, path, b->dt, gr, true, &info, &e), 0, "%s", e.msg);
        cr_assert_eq(info.n_kept, 0);
        cr_assert_float_eq(info.linear_bits_per_weight, 8.0 * b->bytes / 32, 1e-12);
        gguf_file *mine, *ref;
        cr_assert_eq(gguf_open(&mine, path, &e), 0, "%s", e.msg);
        cr_assert_eq(gguf_open(&ref, llamacpp_file(TYPES[f]), &e), 0, "%s", e.msg);
        cr_assert_eq(gguf_n_tensors(mine), gguf_n_tensors(ref));
        int same = 0;
        gguf_tensor_info a, c;
        for (uint64_t i = 0; gguf_tensor_at(mine, i, &a); i++) {
            cr_assert(gguf_tensor_at(ref, i, &c));
            cr_assert_str_eq(a.name, c.name);
            cr_assert_eq(a.ggml_type, c.ggml_type, "%s", a.name);
            cr_assert_eq(a.nbytes, c.nbytes, "%s", a.name);
            cr_assert_eq(memcmp(a.data, c.data, a.nbytes), 0, "%s %s: bytes differ from llama.cpp's", TYPES[f], a.name);
            same++;
        }
        cr_assert_eq(same, nl + 2 * m->cfg.n_layers + 2, "every tensor: linear layers, norms, embedding");
        gguf_close(mine);
        gguf_close(ref);
        for (int i = 0; i < nl; i++) layer_report_free(&r[i]);
        free(r);
        free(gr);
        model_free(m);
    }
}

/* == : a pruned +0 may read back as -0 (a block with a negative scale). */
static void same_floats(const float *file, const float *mem, size_t n, const char *what, const char *type,
                        const char *solver) {
    for (size_t i = 0; i < n; i++)
        if (file[i] != mem[i])
            cr_assert_fail("%s %s: %s weight %zu is %.9g in the file, %.9g in memory", type, solver, what, i,
                           (double)file[i], (double)mem[i]);
}

/* A run (GPTQ on ggml's grid, or rtn --ggml) on stories260K written in a block type: the file
 * read back equals the in-memory model weight for weight, and `sparq eval` on the file gives
 * the run's perplexity to the last digit. stories260K's 172-wide ffn_down stays f16. */
static void check_exact(const char *type, const char *solver, bool act_order, bool pure) {
    const ggml_block_type *b = type_of(type);
    run_setup s;
    run_setup_default(&s);
    snprintf(s.model, sizeof s.model, "%s", data_path("stories260K/stories260K.bin"));
    snprintf(s.tokenizer, sizeof s.tokenizer, "%s", data_path("stories260K/tok512.bin"));
    snprintf(s.calib, sizeof s.calib, "%s", data_path("text/c4-en-train-first1000.jsonl"));
    s.nsamples = 8;
    s.calib_seqlen = 64;
    snprintf(s.ppl[0].path, sizeof s.ppl[0].path, "%s", data_path("text/TinyStories-valid-first1000.txt"));
    snprintf(s.ppl[0].name, sizeof s.ppl[0].name, "ts");
    s.ppl[0].protocol = PPL_DOCUMENTS;
    s.ppl[0].seqlen = 128;
    s.n_ppl = 1;
    s.limit = 6;
    run_spec r = {.opts = options_default()};
    err e = {0};
    cr_assert_eq(options_set(&r.opts, options_find("solver"), solver, "", &e), 0, "%s", e.msg);
    target *t = &r.opts.target;
    t->bits = b->bits;
    t->group = 32;
    t->sym = !b->has_min;
    if (!strcmp(solver, "sparsegpt")) t->sparsity = 0.5;
    if (!strcmp(solver, "rtn")) t->ggml = (int)(b - ggml_block_types) + 1;
    else t->grid = QUANT_GRID_GGML;
    t->act_order = t->static_groups = act_order;
    run_output out = {.path = tmp_path("exact.gguf"), .dtype = b->dt, .pure = pure};
    cr_assert_eq(run_check_output(&r, &out, &e), 0, "%s", e.msg);
    run_context *ctx;
    cJSON *rec;
    cr_assert_eq(run_context_new(&ctx, &s, false, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(run_execute(ctx, &r, &out, NULL, NULL, &rec, &e), 0, "%s %s: %s", type, solver, e.msg);
    cr_assert_eq(out.info.n_kept, 5, "%s: ffn_down of 5 layers kept f16: %s", type, out.info.kept);
    cr_assert_eq(out.info.embd_dtype, pure ? b->dt : DTYPE_F16);
    model *f;
    cr_assert_eq(model_load(&f, out.path, &e), 0, "%s", e.msg);
    model_pin(f);
    const model *m = run_context_model(ctx);
    size_t nd = (size_t)m->cfg.vocab_size * m->cfg.dim;
    same_floats(f->tok_emb, m->tok_emb, nd, "token_embd", type, solver);
    same_floats(f->g[LLAMA_FINAL_NORM], m->g[LLAMA_FINAL_NORM], (size_t)m->cfg.dim, "output_norm", type, solver);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        same_floats(f->blocks[l].p[LLAMA_ATTN_NORM], m->blocks[l].p[LLAMA_ATTN_NORM], (size_t)m->cfg.dim, "attn_norm", type, solver);
        same_floats(f->blocks[l].p[LLAMA_FFN_NORM], m->blocks[l].p[LLAMA_FFN_NORM], (size_t)m->cfg.dim, "ffn_norm", type, solver);
        for (int k = 0; k < model_n_linear(m); k++) {
            const linear *x = &m->blocks[l].lin[k];
            same_floats(f->blocks[l].lin[k].w, x->w, (size_t)x->rows * x->cols, model_linear_name(m, k), type, solver);
        }
    }
    /* The 172-wide ffn_down no block can hold is left dense: the source's weights at f16. */
    model *src;
    cr_assert_eq(model_load(&src, s.model, &e), 0, "%s", e.msg);
    model_pin(src);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const linear *x = &src->blocks[l].lin[LLAMA_DOWN];
        cr_assert_eq(x->cols % 32 != 0, true);
        for (size_t i = 0; i < (size_t)x->rows * x->cols; i++)
            cr_assert_eq(f->blocks[l].lin[LLAMA_DOWN].w[i], f16_to_f32(f32_to_f16(x->w[i])), "%s down %d", type, l);
    }
    model_free(src);
    double ppl = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(rec, "ppl"), "ts"), "ppl")->valuedouble;
    char args[2048], *o, *er;
    snprintf(args, sizeof args, "eval --model '%s' --text '%s' --protocol documents --seqlen 128 --limit 6 --json",
             out.path, s.ppl[0].path);
    cr_assert_eq(run_sparq(args, &o, &er), 0, "%s", er);
    cJSON *j = cJSON_Parse(o);
    cr_assert_eq(cJSON_GetObjectItem(j, "ppl")->valuedouble, ppl, "%s %s: file ppl %.17g, in memory %.17g", type,
                 solver, cJSON_GetObjectItem(j, "ppl")->valuedouble, ppl);
    cJSON_Delete(j);
    free(o);
    free(er);
    cJSON_Delete(rec);
    model_free(f);
    run_context_free(ctx);
}

Test(ggml_blocks, gptq_on_ggml_grid_file_equals_the_evaluated_model_q4_0_q4_1, .timeout = 120) {
    check_exact("q4_0", "gptq", false, false);
    check_exact("q4_1", "gptq", true, true);
}

Test(ggml_blocks, gptq_on_ggml_grid_file_equals_the_evaluated_model_q5_0_q5_1_q8_0, .timeout = 120) {
    check_exact("q5_0", "gptq", false, false);
    check_exact("q5_1", "gptq", false, true);
    check_exact("q8_0", "gptq", false, false);
}

Test(ggml_blocks, rtn_ggml_and_sparsegpt_file_equals_the_evaluated_model, .timeout = 120) {
    check_exact("q4_1", "rtn", false, false);
    check_exact("q4_0", "sparsegpt", false, true);
}

Test(ggml_blocks, block_types_refuse_targets_whose_grids_do_not_map) {
    struct { const char *type, *set[6][2], *msg; } cases[] = {
        {"q4_0", {{"solver", "gptq"}, {"bits", "4"}, {"group", "32"}, {"sym", "1"}},
         "q4_0 needs --bits 4 --group 32 --sym --grid ggml"},
        {"q4_1", {{"solver", "gptq"}, {"bits", "4"}, {"group", "32"}, {"sym", "1"}, {"grid", "ggml"}},
         "q4_1 needs --bits 4 --group 32 --grid ggml"},
        {"q5_0", {{"solver", "gptq"}, {"bits", "4"}, {"group", "32"}, {"sym", "1"}, {"grid", "ggml"}},
         "q5_0 needs --bits 5"},
        {"q8_0", {{"solver", "gptq"}, {"bits", "8"}, {"group", "64"}, {"sym", "1"}, {"grid", "ggml"}},
         "q8_0 needs --bits 8 --group 32"},
        {"q4_0", {{"solver", "gptq"}, {"bits", "4"}, {"group", "32"}, {"sym", "1"}, {"grid", "ggml"}, {"act_order", "1"}},
         "add --static-groups"},
        {"q4_1", {{"solver", "sparsegpt"}, {"sparsity", "0.5"}, {"bits", "4"}, {"group", "32"}, {"grid", "ggml"}},
         "q4_1 cannot hold pruned weights"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_spec r = {.opts = options_default()};
        err e = {0};
        for (int k = 0; k < 6 && cases[i].set[k][0]; k++)
            cr_assert_eq(options_set(&r.opts, options_find(cases[i].set[k][0]), cases[i].set[k][1], "", &e), 0);
        run_output out = {.path = "x.gguf", .dtype = type_of(cases[i].type)->dt};
        cr_assert_eq(run_check_output(&r, &out, &e), SPARQ_EINPUT, "case %zu accepted", i);
        cr_assert_not_null(strstr(e.msg, cases[i].msg), "case %zu: %s", i, e.msg);
    }
    /* act-order is fine once groups are static (column order), and a .bin cannot hold blocks. */
    run_spec r = {.opts = options_default()};
    err e = {0};
    const char *ok[][2] = {{"solver", "gptq"}, {"bits", "4"}, {"group", "32"}, {"sym", "1"}, {"grid", "ggml"},
                           {"act_order", "1"}, {"static_groups", "1"}};
    for (int k = 0; k < 7; k++) options_set(&r.opts, options_find(ok[k][0]), ok[k][1], "", &e);
    run_output out = {.path = "x.gguf", .dtype = DTYPE_Q4_0};
    cr_assert_eq(run_check_output(&r, &out, &e), 0, "%s", e.msg);
    out.path = "x.bin";
    cr_assert_eq(run_check_output(&r, &out, &e), SPARQ_EINPUT);
    /* rtn --ggml takes only its own type's bits, group and symmetry, and only in rtn. */
    target t = target_default();
    t.bits = 4, t.group = 32, t.ggml = 2;   /* q4_1, but --sym */
    t.sym = true;
    cr_assert_eq(solver_check(solver_find("rtn"), &t, 8, 64, &e), SPARQ_EINPUT);
    cr_assert_not_null(strstr(e.msg, "--ggml q4_1 needs --bits 4 --group 32 without --sym"), "%s", e.msg);
    t.sym = false;
    cr_assert_eq(solver_check(solver_find("rtn"), &t, 8, 64, &e), 0, "%s", e.msg);
    cr_assert_eq(solver_check(solver_find("gptq"), &t, 8, 64, &e), SPARQ_EINPUT);
}

/* `inspect` names each tensor's GGUF type and the file's bits per weight: llama.cpp's q4_1 file
 * holds 3,145,728 weights in 20-byte blocks of 32 (5 bits) and 13 norms of 192 in F32. */
Test(ggml_blocks, inspect_reports_tensor_types_and_bits_per_weight) {
    char args[1024], *o, *er;
    snprintf(args, sizeof args, "inspect --model '%s' --json", llamacpp_file("q4_1"));
    cr_assert_eq(run_sparq(args, &o, &er), 0, "%s", er);
    cJSON *j = cJSON_Parse(o), *g = cJSON_GetObjectItem(j, "gguf"), *t;
    cr_assert_not_null(g, "%s", o);
    int n = 0, q41 = 0;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(g, "tensors")) {
        const char *type = cJSON_GetObjectItem(t, "type")->valuestring;
        n++;
        q41 += strcmp(type, "Q4_1") == 0;
        if (strstr(cJSON_GetObjectItem(t, "name")->valuestring, "norm")) cr_assert_str_eq(type, "F32");
    }
    cr_assert_eq(n, 56);
    cr_assert_eq(q41, 43);
    double want = (3145728.0 * 5 + 13 * 192 * 32.0) / (3145728.0 + 13 * 192);
    cr_assert_float_eq(cJSON_GetObjectItem(g, "bits_per_weight")->valuedouble, want, 1e-12);
    cJSON_Delete(j);
    free(o);
    free(er);
}
