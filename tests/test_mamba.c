/* Mamba beside LLaMA and OPT: the families/ fixtures (random weights in Hugging Face layout,
 * references from Hugging Face's modeling_mamba.py, cross-checked against mamba_ssm's reference
 * scan) through the batched forward pass, the recurrent single-token path, greedy decoding,
 * perplexity on ids, compression, writing and reloading, and bad configs. */
#include <criterion/criterion.h>
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/dtype.h"
#include "../core/family.h"
#include "../core/forward.h"
#include "../core/generate.h"
#include "../eval/perplexity.h"
#include "../experiments/calib.h"
#include "../experiments/compress.h"
#include "util.h"

static const char *const mamba_models[] = {"mamba-tiny", "mamba-tiny-f16"};
#define V 512

static double max_diff(const float *a, const float *b, size_t n) {
    double worst = 0;
    for (size_t k = 0; k < n; k++) worst = fmax(worst, fabs((double)a[k] - b[k]));
    return worst;
}

Test(mamba, fixtures_load_as_the_mamba_family) {
    for (int i = 0; i < 2; i++) {
        model *m = fixture_model(mamba_models[i]);
        const model_config *c = &m->cfg;
        cr_assert_str_eq(m->fam->name, "mamba");
        cr_assert_eq(model_n_linear(m), 4);
        cr_assert_str_eq(model_linear_name(m, MAMBA_DT), "dt_proj");
        cr_assert_eq(c->dim, 64);
        cr_assert_eq(c->hidden_dim, 128);
        cr_assert_eq(c->state_size, 16);
        cr_assert_eq(c->conv_kernel, 4);
        cr_assert_eq(c->dt_rank, 4);
        cr_assert(c->conv_bias && !c->linear_bias);
        cr_assert_eq(m->blocks[1].lin[MAMBA_IN].rows, 256);
        cr_assert_eq(m->blocks[1].lin[MAMBA_X].rows, 36);
        cr_assert_eq(m->blocks[1].lin[MAMBA_X].cols, 128);
        cr_assert_eq(m->blocks[1].lin[MAMBA_DT].cols, 4);
        cr_assert(m->blocks[0].lin[MAMBA_DT].b != NULL);
        cr_assert(m->blocks[0].lin[MAMBA_IN].b == NULL && m->blocks[0].lin[MAMBA_OUT].b == NULL);
        cr_assert(m->shared_cls && m->wcls == m->tok_emb);
        /* A_log is log(1..16) in every channel (f16: to half an f16 step at 2.77, 1e-3) */
        cr_assert_float_eq(m->blocks[0].p[MAMBA_A_LOG][5 * 16 + 15], logf(16.0f), i ? 2e-3 : 1e-6);
        cr_assert_float_eq(m->blocks[1].p[MAMBA_A_LOG][127 * 16 + 1], logf(2.0f), i ? 2e-3 : 1e-6);
        cr_assert_eq(m->fam->bos, 0);
        /* in_proj 256x64 + x_proj 36x128 + dt_proj 128x4 + out_proj 64x128 per block, 2 blocks */
        cr_assert_eq(model_linear_params(m), 2u * (256 * 64 + 36 * 128 + 128 * 4 + 64 * 128));
        /* + embedding, norms, conv weight and bias, dt bias, A_log, D, final norm */
        cr_assert_eq(model_params(m), model_linear_params(m) + 512 * 64 + 64 +
                     2u * (64 + 128 * 4 + 128 + 128 + 128 * 16 + 128));
        model_free(m);
    }
}

/* The batched (parallel) forward pass against Hugging Face's logits: max |diff| <= 1e-5. */
Test(mamba, logits_match_hugging_face) {
    for (int i = 0; i < 2; i++) {
        model *m = fixture_model(mamba_models[i]);
        cJSON *r = fixture_ref_json(mamba_models[i]);
        int ids[64], n = json_ints(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "seqA"), "input_ids"), ids, 64);
        cr_assert_eq(n, 32);
        cr_assert_eq(ids[0], 0);
        float *ref = fixture_floats(mamba_models[i], "ref_logits_seqA.f32", 32 * V);
        float *lg = malloc(32 * V * sizeof(float));
        fwd_batch b = {.n_seq = 1, .lens = &n, .n_tok = n};
        fwd_scratch *s = fwd_scratch_new();
        err e = {0};
        cr_assert_eq(forward_logits(m, ids, &b, lg, s, &e), 0, "%s", e.msg);
        double worst = max_diff(lg, ref, 32 * V);
        cr_log_info("%s: max |logit - ref| = %.3g", mamba_models[i], worst);
        cr_assert(worst <= 1e-5, "%s: max |logit - ref| = %g", mamba_models[i], worst);
        fwd_scratch_free(s);
        free(lg);
        free(ref);
        cJSON_Delete(r);
        model_free(m);
    }
}

/* The recurrent path fed seq A token by token gives the batched path's logits at every
 * position, and both sequences of a packed batch equal each run alone (state and convolution
 * restart per sequence). */
Test(mamba, parallel_and_recurrent_paths_agree_on_every_position) {
    model *m = fixture_model("mamba-tiny");
    cJSON *r = fixture_ref_json("mamba-tiny");
    int ids[64], n = json_ints(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "seqA"), "input_ids"), ids, 64);
    float *lg = malloc(52 * V * sizeof(float)), *one = malloc(V * sizeof(float));
    fwd_batch b = {.n_seq = 1, .lens = &n, .n_tok = n};
    fwd_scratch *s = fwd_scratch_new();
    err e = {0};
    cr_assert_eq(forward_logits(m, ids, &b, lg, s, &e), 0, "%s", e.msg);
    fwd_cache *c;
    cr_assert_eq(fwd_cache_new(&c, m, &e), 0, "%s", e.msg);
    double worst = 0;
    for (int p = 0; p < n; p++) {
        cr_assert_eq(forward_token(m, c, ids[p], p, one, &e), 0, "%s", e.msg);
        worst = fmax(worst, max_diff(one, lg + (size_t)p * V, V));
    }
    cr_log_info("parallel vs recurrent: max |diff| = %.3g", worst);
    cr_assert(worst <= 1e-5, "parallel vs recurrent: max |diff| = %g", worst);
    /* A cache reused from position 0 starts again from zero state. */
    cr_assert_eq(forward_token(m, c, ids[0], 0, one, &e), 0, "%s", e.msg);
    cr_assert(max_diff(one, lg, V) <= 1e-5);
    fwd_cache_free(c);

    /* seq A's last 20 tokens as a second sequence of the same batch */
    int toks[52], lens[2] = {32, 20};
    memcpy(toks, ids, 32 * sizeof(int));
    memcpy(toks + 32, ids + 12, 20 * sizeof(int));
    float *alone = malloc(20 * V * sizeof(float));
    fwd_batch b2 = {.n_seq = 1, .lens = &lens[1], .n_tok = 20};
    cr_assert_eq(forward_logits(m, ids + 12, &b2, alone, s, &e), 0, "%s", e.msg);
    float *first = malloc(32 * V * sizeof(float));
    memcpy(first, lg, 32 * V * sizeof(float));
    fwd_batch bb = {.n_seq = 2, .lens = lens, .n_tok = 52};
    cr_assert_eq(forward_logits(m, toks, &bb, lg, s, &e), 0, "%s", e.msg);
    cr_assert(max_diff(lg, first, 32 * V) <= 1e-6);
    cr_assert(max_diff(lg + 32 * V, alone, 20 * V) <= 1e-6);
    /* ... and differ from the same tokens read after seq A's first 12 */
    cr_assert(max_diff(alone, first + 12 * V, 20 * V) > 1e-2);
    free(first);
    free(alone);
    fwd_scratch_free(s);
    free(lg);
    free(one);
    cJSON_Delete(r);
    model_free(m);
}

/* The 32 greedy ids from the recurrent path after the 4-token prompt, and the logits each was
 * picked from, against ref_greedy_logits.f32 (1e-5). */
Test(mamba, greedy_ids_and_their_logits_match_hugging_face) {
    for (int i = 0; i < 2; i++) {
        model *m = fixture_model(mamba_models[i]);
        cJSON *r = fixture_ref_json(mamba_models[i]);
        const cJSON *g = cJSON_GetObjectItem(r, "greedy");
        int prompt[8], want[64];
        int np = json_ints(cJSON_GetObjectItem(g, "prompt"), prompt, 8);
        int nw = json_ints(cJSON_GetObjectItem(g, "new_ids"), want, 64);
        cr_assert_eq(nw, 32);
        float *ref = fixture_floats(mamba_models[i], "ref_greedy_logits.f32", 32 * V);
        float *lg = malloc(V * sizeof(float));
        fwd_cache *c;
        err e = {0};
        cr_assert_eq(fwd_cache_new(&c, m, &e), 0, "%s", e.msg);
        int tok = prompt[0];
        double worst = 0;
        for (int pos = 0; pos < np + nw - 1; pos++) {
            cr_assert_eq(forward_token(m, c, tok, pos, lg, &e), 0, "%s", e.msg);
            if (pos + 1 < np) {
                tok = prompt[pos + 1];
                continue;
            }
            int k = pos + 1 - np, best = 0;
            for (int v = 1; v < V; v++) best = lg[v] > lg[best] ? v : best;
            worst = fmax(worst, max_diff(lg, ref + (size_t)k * V, V));
            cr_assert_eq(best, want[k], "%s: new id %d is %d, want %d", mamba_models[i], k, best, want[k]);
            tok = best;
        }
        cr_log_info("%s: greedy logits max |diff| = %.3g", mamba_models[i], worst);
        cr_assert(worst <= 1e-5, "%s: greedy logits max |diff| = %g", mamba_models[i], worst);
        fwd_cache_free(c);

        generation out;
        cr_assert_eq(generate_greedy_ids(m, prompt, np, np + nw, &out, &e), 0, "%s", e.msg);
        cr_assert_eq(out.n, np + nw);
        for (int k = 0; k < nw; k++) cr_assert_eq(out.tokens[np + k], want[k]);
        generation_free(&out);
        free(lg);
        free(ref);
        cJSON_Delete(r);
        model_free(m);
    }
}

/* eval --ids in both protocols gives the reference mean NLL; generate --prompt-ids the ids. */
Test(mamba, eval_ids_and_generate_on_the_cli_give_the_reference) {
    for (int i = 0; i < 2; i++) {
        cJSON *r = fixture_ref_json(mamba_models[i]);
        const cJSON *sa = cJSON_GetObjectItem(r, "seqA");
        int ids[64], n = json_ints(cJSON_GetObjectItem(sa, "input_ids"), ids, 64);
        char line[512] = "";
        for (int k = 0; k < n; k++) snprintf(line + strlen(line), sizeof line - strlen(line), "%s%d", k ? " " : "", ids[k]);
        strcat(line, "\n");
        const char *path = tmp_path("seqA.ids");
        cr_assert_eq(write_file(path, line, strlen(line)), 0);
        char rel[128];
        snprintf(rel, sizeof rel, "families/%s", mamba_models[i]);
        const char *protos[2] = {"documents", "windows --seqlen 32"};
        for (int p = 0; p < 2; p++) {
            char args[1024], *out, *er;
            snprintf(args, sizeof args, "eval --model '%s' --ids '%s' --protocol %s --json", data_path(rel),
                     path, protos[p]);
            cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
            cJSON *j = cJSON_Parse(out);
            cr_assert(j, "%s", out);
            double nll = cJSON_GetObjectItem(j, "nll")->valuedouble;
            double want = cJSON_GetObjectItem(sa, "nll_mean")->valuedouble;
            cr_assert(fabs(nll - want) <= 1e-5, "%s %s: nll %.9f, want %.9f", mamba_models[i], protos[p], nll, want);
            cr_assert_eq(cJSON_GetObjectItem(j, "tokens")->valueint, 31);
            cJSON_Delete(j);
            free(out);
            free(er);
        }
        char args[512], *out, *er;
        snprintf(args, sizeof args, "generate --model '%s' --prompt-ids '0 11 22 33' -n 36 --json", data_path(rel));
        cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
        cJSON *j = cJSON_Parse(out);
        int got[64], want[64];
        int ng = json_ints(cJSON_GetObjectItem(j, "tokens"), got, 64);
        int nw = json_ints(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "greedy"), "new_ids"), want, 64);
        cr_assert_eq(ng, 4 + nw);
        cr_assert_eq(got[0], 0);
        for (int k = 0; k < nw; k++) cr_assert_eq(got[4 + k], want[k]);
        cJSON_Delete(j);
        free(out);
        free(er);
        cJSON_Delete(r);
    }
}

static uint64_t lcg_state = 12345;
static float urand(void) {   /* uniform in [-1, 1) */
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((lcg_state >> 40) * (1.0 / (1 << 24))) * 2.0f - 1.0f;
}

/* A generated Mamba whose inner width 300 is neither a multiple of the vector lanes nor of the
 * scan's channel chunk (256 + 44 = 2 x 16 + 12), with use_bias and dt_rank 3: the batched path
 * (chunked, vectorised, threaded) against the recurrent one on every position of two sequences. */
Test(mamba, parallel_and_recurrent_agree_with_partial_chunks_and_biases) {
    model_config c = {.dim = 40, .hidden_dim = 300, .n_layers = 2, .n_heads = 1, .n_kv_heads = 1,
                      .vocab_size = 97, .seq_len = 2048, .head_size = 40, .norm_eps = 1e-5f,
                      .state_size = 16, .conv_kernel = 4, .dt_rank = 3, .conv_bias = true,
                      .linear_bias = true, .family = &family_mamba};
    model *m;
    err e = {0};
    cr_assert_eq(model_alloc(&m, &c, true, &e), 0, "%s", e.msg);
    for (size_t i = 0; i < m->data_floats; i++) m->data[i] = 0.3f * urand();
    for (int l = 0; l < 2; l++) {
        block *b = &m->blocks[l];
        for (int d = 0; d < 300; d++) {
            for (int k = 0; k < 16; k++) b->p[MAMBA_A_LOG][d * 16 + k] = logf((float)(k + 1));
            b->lin[MAMBA_DT].b[d] = -3.0f + urand();      /* dt of a few hundredths */
        }
        for (int k = 0; k < 40; k++) b->p[MAMBA_NORM][k] = 1.0f + 0.2f * urand();
    }
    cr_assert(m->blocks[1].lin[MAMBA_IN].b && m->blocks[1].lin[MAMBA_OUT].b);
    int toks[70], lens[2] = {45, 25};
    for (int t = 0; t < 70; t++) toks[t] = (t * 37 + 5) % 97;
    float *lg = malloc(70 * 97 * sizeof(float)), *one = malloc(97 * sizeof(float));
    fwd_batch b = {.n_seq = 2, .lens = lens, .n_tok = 70};
    fwd_scratch *s = fwd_scratch_new();
    cr_assert_eq(forward_logits(m, toks, &b, lg, s, &e), 0, "%s", e.msg);
    fwd_cache *fc;
    cr_assert_eq(fwd_cache_new(&fc, m, &e), 0, "%s", e.msg);
    double worst = 0, spread = 0;
    for (int q = 0, t = 0; q < 2; q++)
        for (int p = 0; p < lens[q]; p++, t++) {
            cr_assert_eq(forward_token(m, fc, toks[t], p, one, &e), 0, "%s", e.msg);
            worst = fmax(worst, max_diff(one, lg + (size_t)t * 97, 97));
            spread = fmax(spread, fabs(one[3] - one[0]));
        }
    cr_log_info("generated: max |parallel - recurrent| = %.3g (logit spread %.3g)", worst, spread);
    cr_assert(spread > 0.1, "the logits are flat (%g): the test would see nothing", spread);
    cr_assert(worst <= 1e-4, "max |parallel - recurrent| = %g", worst);

    /* written with its biases and read back: the same logits */
    const char *dir = tmp_path("mamba-bias");
    cr_assert_eq(model_save(m, dir, &e), 0, "%s", e.msg);
    model *back;
    cr_assert_eq(model_load(&back, dir, &e), 0, "%s", e.msg);
    model_pin(back);
    cr_assert(back->cfg.linear_bias && back->cfg.dt_rank == 3 && back->cfg.hidden_dim == 300);
    float *lg2 = malloc(70 * 97 * sizeof(float));
    cr_assert_eq(forward_logits(back, toks, &b, lg2, s, &e), 0, "%s", e.msg);
    cr_assert(memcmp(lg, lg2, 70 * 97 * sizeof(float)) == 0);
    model_free(back);
    free(lg2);
    fwd_cache_free(fc);
    fwd_scratch_free(s);
    free(lg);
    free(one);
    model_free(m);
}

/* SparseGPT and APT at 50% on mamba-tiny: every linear layer's loss below magnitude's, conv,
 * A_log, D, norms and the embedding untouched, and the written safetensors (conv1d written back
 * [128, 1, 4]) reload to the same perplexity. */
Test(mamba, sparsegpt_and_apt_beat_magnitude_and_the_written_model_reloads) {
    model *ref = fixture_model("mamba-tiny"), *mag = fixture_model("mamba-tiny");
    model *ms[2] = {fixture_model("mamba-tiny"), fixture_model("mamba-tiny")};
    const char *solvers[2] = {"sparsegpt", "apt"};
    tokenizer *t = load_tok512();      /* 512 pieces, as the fixture's vocabulary: any text will do */
    token_seqs cs;
    err e = {0};
    cr_assert_eq(calib_from_text(t, data_path("text/c4-en-train-first1000.jsonl"), 16, 64, 0, &cs, &e), 0, "%s", e.msg);
    compress_options o = {0};
    o.target = target_default();
    o.target.sparsity = 0.5;
    compress_report rm, ra[2];
    cr_assert_eq(solver_spec_parse("magnitude", false, &o.solver, &e), 0, "%s", e.msg);
    cr_assert_eq(compress_model(mag, &cs, &o, &rm, NULL, NULL, &e), 0, "%s", e.msg);
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(solver_spec_parse(solvers[k], false, &o.solver, &e), 0, "%s", e.msg);
        cr_assert_eq(compress_model(ms[k], &cs, &o, &ra[k], NULL, NULL, &e), 0, "%s", e.msg);
        cr_assert_eq(ra[k].n, 8);
        cr_assert_str_eq(ra[k].layers[1 * 4 + MAMBA_OUT].name, "1.out_proj");
        for (int i = 0; i < ra[k].n; i++) {
            cr_log_info("%s: %s %.6g  magnitude %.6g", ra[k].layers[i].name, solvers[k],
                        ra[k].layers[i].report.loss, rm.layers[i].report.loss);
            cr_assert(ra[k].layers[i].report.loss < rm.layers[i].report.loss, "%s: %s %g >= magnitude %g",
                      ra[k].layers[i].name, solvers[k], ra[k].layers[i].report.loss, rm.layers[i].report.loss);
            cr_assert(ra[k].layers[i].report.sparsity >= 0.49);
        }
        for (int l = 0; l < 2; l++) {
            const block *a = &ms[k]->blocks[l], *b = &ref->blocks[l];
            cr_assert(memcmp(a->p[MAMBA_CONV_W], b->p[MAMBA_CONV_W], 128 * 4 * sizeof(float)) == 0);
            cr_assert(memcmp(a->p[MAMBA_A_LOG], b->p[MAMBA_A_LOG], 128 * 16 * sizeof(float)) == 0);
            cr_assert(memcmp(a->p[MAMBA_D], b->p[MAMBA_D], 128 * sizeof(float)) == 0);
            cr_assert(memcmp(a->lin[MAMBA_DT].b, b->lin[MAMBA_DT].b, 128 * sizeof(float)) == 0);
        }
        cr_assert(memcmp(ms[k]->tok_emb, ref->tok_emb, 512 * 64 * sizeof(float)) == 0);
    }

    char *txt = malloc(1 << 16);
    size_t at = 0;
    for (int i = 0; i < 16; i++, txt[at++] = '\n')
        for (int k = 0; k < 64; k++) at += (size_t)sprintf(txt + at, "%d ", cs.tokens[cs.offs[i] + k]);
    const char *ids = tmp_path("calib.ids");
    cr_assert_eq(write_file(ids, txt, at), 0);
    free(txt);
    double p0 = ppl_of_ids(ref, ids), p1 = ppl_of_ids(ms[1], ids), pm = ppl_of_ids(mag, ids);
    cr_log_info("ppl on the calibration ids: dense %.4f  apt %.4f  magnitude %.4f", p0, p1, pm);
    cr_assert(p1 != p0);
    const char *dir = tmp_path("mamba-sparse");
    cr_assert_eq(model_save(ms[1], dir, &e), 0, "%s", e.msg);
    char hdr[4200];
    snprintf(hdr, sizeof hdr, "%s/model.safetensors", dir);
    char *file = read_all(hdr, NULL);
    cr_assert(file && strstr(file + 8, "\"backbone.layers.0.mixer.conv1d.weight\":{\"dtype\":\"F32\",\"shape\":[128,1,4]"),
              "conv1d is not written [128, 1, 4]");
    free(file);
    model *back = NULL;
    cr_assert_eq(model_load(&back, dir, &e), 0, "%s", e.msg);
    model_pin(back);
    cr_assert_str_eq(back->fam->name, "mamba");
    cr_assert_eq(ppl_of_ids(back, ids), p1);
    cr_assert(memcmp(back->blocks[1].lin[MAMBA_IN].w, ms[1]->blocks[1].lin[MAMBA_IN].w, 256 * 64 * sizeof(float)) == 0);
    model_free(back);
    for (int k = 0; k < 2; k++) {
        compress_report_free(&ra[k]);
        model_free(ms[k]);
    }
    compress_report_free(&rm);
    token_seqs_free(&cs);
    tokenizer_free(t);
    model_free(ref);
    model_free(mag);
}

/* Every solver, chain and schedule runs on Mamba through the CLI, and self-calibration starts
 * from the family's BOS (0). */
Test(mamba, every_solver_and_schedule_compresses_mamba) {
    static const char *const runs[] = {
        "--solver magnitude --sparsity 0.5", "--solver wanda --nm 2:4", "--solver sparsegpt --sparsity 0.6 --true-sequential",
        "--solver apt --sparsity 0.5", "--solver apt --nm 2:4 --bits 4", "--solver rtn --bits 4 --group 32",
        "--solver gptq --bits 3 --act-order", "--solver sparsegpt+gptq --sparsity 0.5 --bits 4",
        "--solver sparsegpt --sparsity 0.7 --schedule owl", "--solver sparsegpt --sparsity 0.7 --schedule hessian"};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        char args[1024], *out, *er;
        snprintf(args, sizeof args, "compress --model '%s' --tokenizer '%s' --calib '%s' --nsamples 4 "
                 "--calib-seqlen 64 %s --json", data_path("families/mamba-tiny"),
                 data_path("stories260K/tok512.bin"), data_path("text/c4-en-train-first1000.jsonl"), runs[i]);
        int st = run_sparq(args, &out, &er);
        cr_assert_eq(st, 0, "%s: %s", runs[i], er);
        cJSON *j = cJSON_Parse(out);
        cr_assert(j, "%s", out);
        cJSON *layers = cJSON_GetObjectItem(j, "layers");
        cr_assert_eq(cJSON_GetArraySize(layers), 8, "%s", runs[i]);
        cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(layers, 6), "name")->valuestring, "1.dt_proj");
        cJSON_Delete(j);
        free(out);
        free(er);
    }
    model *m = fixture_model("mamba-tiny");
    token_seqs s;
    err e = {0};
    cr_assert_eq(calib_from_model(m, 2, 16, 0, &s, &e), 0, "%s", e.msg);
    cr_assert_eq(s.tokens[s.offs[0]], 0);
    cr_assert_eq(s.tokens[s.offs[1]], 0);
    token_seqs_free(&s);
    model_free(m);
}

Test(mamba, bad_configs_are_one_clear_error) {
    struct { const char *name, *key, *value, *says; } cases[] = {
        {"no-state", "state_size", NULL, "state_size is missing"},
        {"no-use-bias", "use_bias", NULL, "use_bias is missing (transformers and mamba_ssm default it"},
        {"no-conv-bias-key", "use_conv_bias", NULL, "use_conv_bias is missing"},
        {"use-bias", "use_bias", "true", "tensor backbone.layers.0.mixer.in_proj.bias is missing"},
        {"no-conv-bias", "use_conv_bias", "false", "unexpected tensor backbone.layers.0.mixer.conv1d.bias"},
        {"gelu", "hidden_act", "\"gelu\"", "hidden_act must be \"silu\""},
        {"dt-rank", "time_step_rank", "\"big\"", "time_step_rank is \"big\""},
        {"dt-rank8", "time_step_rank", "8", "tensor backbone.layers.0.mixer.x_proj.weight has shape [36, 128] but"},
        {"inner", "intermediate_size", "96", "tensor backbone.layers.0.mixer.in_proj.weight has shape [256, 64] but"},
        {"conv", "conv_kernel", "3", "tensor backbone.layers.0.mixer.conv1d.weight has shape [128, 1, 4] but"},
        {"untied", "tie_word_embeddings", "false", "tensor lm_head.weight is missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *dir = fixture_bad_copy("mamba-tiny", cases[i].name, cases[i].key, cases[i].value);
        char args[4200], *out, *er;
        snprintf(args, sizeof args, "generate --model '%s' --prompt-ids '0 3'", dir);
        int st = run_sparq(args, &out, &er);
        cr_assert_eq(st, 2, "%s: exit %d", cases[i].name, st);
        cr_assert(strstr(er, cases[i].says), "%s: \"%s\" lacks \"%s\"", cases[i].name, er, cases[i].says);
        cr_assert(strstr(er, dir), "%s: \"%s\" does not name the checkpoint", cases[i].name, er);
        char *nl = strchr(er, '\n');
        cr_assert(nl && nl[1] == '\0', "%s: not one line: %s", cases[i].name, er);
        free(out);
        free(er);
    }
    /* expand in place of intermediate_size, time_step_rank "auto" = ceil(64 / 16) = 4 */
    const char *dir = fixture_bad_copy("mamba-tiny", "expand-auto", "intermediate_size", NULL);
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    char *cfg = read_all(p, NULL);
    cJSON *j = cJSON_Parse(cfg);
    free(cfg);
    cJSON_ReplaceItemInObject(j, "time_step_rank", cJSON_CreateString("auto"));
    char *s = cJSON_Print(j);
    cr_assert_eq(write_file(p, s, strlen(s)), 0);
    free(s);
    cJSON_Delete(j);
    model *m;
    err e = {0};
    cr_assert_eq(model_load(&m, dir, &e), 0, "%s", e.msg);
    model_pin(m);
    cr_assert_eq(m->cfg.hidden_dim, 128);
    cr_assert_eq(m->cfg.dt_rank, 4);
    model_free(m);
}

/* Mamba has no llama2.c form and sparq writes no GGUF for it (llama.cpp's mamba tensors differ):
 * refused by name; safetensors out keeps the logits and the Hugging Face config. */
Test(mamba, convert_writes_safetensors_and_refuses_other_formats_by_name) {
    const struct { const char *out, *says; } cases[] = {
        {"mamba.bin", "llama2.c format holds LLaMA models only; this model is mamba"},
        {"mamba.gguf", "this model is mamba (use safetensors)"},
    };
    for (int i = 0; i < 2; i++) {
        char args[1024], *out, *er;
        snprintf(args, sizeof args, "convert --model '%s' --out '%s' --no-vocab", data_path("families/mamba-tiny"), tmp_path(cases[i].out));
        cr_assert_eq(run_sparq(args, &out, &er), 2, "%s", er);
        cr_assert(strstr(er, cases[i].says), "%s", er);
        free(out);
        free(er);
    }
    const char *dir = tmp_path("mamba-f16");
    char args[1024], *out, *er;
    snprintf(args, sizeof args, "convert --model '%s' --out '%s' --format safetensors --dtype f16 --no-vocab",
             data_path("families/mamba-tiny"), dir);
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    free(out);
    free(er);
    /* mamba-tiny rounded to f16 is mamba-tiny-f16: the same logits as that fixture's loader gives */
    model *a = fixture_model("mamba-tiny-f16"), *b;
    err e = {0};
    cr_assert_eq(model_load(&b, dir, &e), 0, "%s", e.msg);
    model_pin(b);
    cr_assert(model_weights_equal(a, b));
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    char *cfg = read_all(p, NULL);
    cJSON *j = cJSON_Parse(cfg);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "model_type")->valuestring, "mamba");
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(j, "use_bias")));
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "use_conv_bias")));
    cr_assert_eq(cJSON_GetObjectItem(j, "time_step_rank")->valueint, 4);
    cJSON_Delete(j);
    free(cfg);
    model_free(a);
    model_free(b);

    /* inspect reports the state-space sizes */
    snprintf(args, sizeof args, "inspect --model '%s' --json", dir);
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    j = cJSON_Parse(out);
    cJSON *ic = cJSON_GetObjectItem(j, "config");
    cr_assert_str_eq(cJSON_GetObjectItem(ic, "family")->valuestring, "mamba");
    cr_assert_eq(cJSON_GetObjectItem(ic, "state_size")->valueint, 16);
    cr_assert_eq(cJSON_GetObjectItem(ic, "dt_rank")->valueint, 4);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "layers")), 8);
    cJSON_Delete(j);
    free(out);
    free(er);
}

/* A Mamba folder holding GPT-NeoX's tokenizer.json (50277 ids for 50280 embedding rows, as
 * mamba-130m-hf) is read with it: text in, text out. The tokenizer adds no BOS, so the prompt's
 * first token is text, and an empty prompt starts from the family's BOS 0 (<|endoftext|>). */
Test(mamba, a_folder_with_the_neox_tokenizer_evaluates_and_generates_text) {
    model_config c = {.dim = 16, .hidden_dim = 32, .n_layers = 1, .n_heads = 1, .n_kv_heads = 1,
                      .vocab_size = 50280, .seq_len = 2048, .head_size = 16, .norm_eps = 1e-5f,
                      .state_size = 4, .conv_kernel = 4, .dt_rank = 1, .conv_bias = true,
                      .family = &family_mamba};
    model *m;
    err e = {0};
    cr_assert_eq(model_alloc(&m, &c, true, &e), 0, "%s", e.msg);
    for (size_t i = 0; i < m->data_floats; i++) m->data[i] = 0.3f * urand();
    const char *dir = tmp_path("mamba-neox");
    cr_assert_eq(model_save(m, dir, &e), 0, "%s", e.msg);
    model_free(m);
    size_t n;
    char *tj = read_all(data_path("tokenizers/neox/tokenizer.json"), &n), p[4200];
    cr_assert(tj);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    cr_assert_eq(write_file(p, tj, n), 0);
    free(tj);

    char args[4400], *out, *er;
    snprintf(args, sizeof args, "generate --model '%s' --prompt 'Hello world' -n 6 --json", dir);
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    cJSON *j = cJSON_Parse(out);
    int ids[16];
    int nt = json_ints(cJSON_GetObjectItem(j, "tokens"), ids, 16);
    cr_assert(nt >= 2 && nt <= 7, "%d tokens", nt);   /* -n 6: 6 steps after the first; stops at id 1 */
    cr_assert(ids[0] == 12092 && ids[1] == 1533, "Hello world is %d %d", ids[0], ids[1]);   /* NeoX ids */
    cr_assert(strncmp(cJSON_GetObjectItem(j, "text")->valuestring, "Hello world", 11) == 0, "%s",
              cJSON_GetObjectItem(j, "text")->valuestring);
    cJSON_Delete(j);
    free(out);
    free(er);
    snprintf(args, sizeof args, "generate --model '%s' -n 4 --json", dir);
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    j = cJSON_Parse(out);
    nt = json_ints(cJSON_GetObjectItem(j, "tokens"), ids, 16);
    cr_assert(nt >= 1 && nt <= 5, "%d tokens", nt);
    cr_assert_eq(ids[0], 0);
    cJSON_Delete(j);
    free(out);
    free(er);
    snprintf(args, sizeof args, "eval --model '%s' --text '%s' --limit 2 --seqlen 64 --json", dir,
             data_path("text/wiki.test.raw"));
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    j = cJSON_Parse(out);
    cr_assert_eq(cJSON_GetObjectItem(j, "tokens")->valueint, 126);
    cr_assert(isfinite(cJSON_GetObjectItem(j, "ppl")->valuedouble));
    cJSON_Delete(j);
    free(out);
    free(er);
}

/* bf16 out and back in: every weight (A_log, D and the conv taps included) is its bf16 rounding,
 * and the logits stay within bf16's reach of the float32 reference (8 mantissa bits: ~0.4%
 * per weight moves these logits by a few hundredths; a wrong tensor moves them by units). */
Test(mamba, bf16_safetensors_round_trip) {
    const char *dir = tmp_path("mamba-bf16");
    char args[1024], *out, *er;
    snprintf(args, sizeof args, "convert --model '%s' --out '%s' --format safetensors --dtype bf16 --no-vocab",
             data_path("families/mamba-tiny"), dir);
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    free(out);
    free(er);
    model *a = fixture_model("mamba-tiny"), *b;
    err e = {0};
    cr_assert_eq(model_load(&b, dir, &e), 0, "%s", e.msg);
    model_pin(b);
    size_t nw = model_params(a);
    cr_assert_eq(nw, model_params(b));
    float *af = model_flat(a), *bf = model_flat(b), *r = malloc(nw * sizeof(float));
    uint16_t *h = malloc(nw * sizeof(uint16_t));
    dtype_from_f32(h, af, DTYPE_BF16, nw);
    dtype_to_f32(r, h, DTYPE_BF16, nw);
    cr_assert(memcmp(r, bf, nw * sizeof(float)) == 0);
    cr_assert(memcmp(r, af, nw * sizeof(float)) != 0);
    free(af);
    free(bf);
    int ids[32], n = 32;
    for (int k = 0; k < 32; k++) ids[k] = 11 * k;
    float *ref = fixture_floats("mamba-tiny", "ref_logits_seqA.f32", 32 * V), *lg = malloc(32 * V * sizeof(float));
    fwd_batch bt = {.n_seq = 1, .lens = &n, .n_tok = n};
    fwd_scratch *s = fwd_scratch_new();
    cr_assert_eq(forward_logits(b, ids, &bt, lg, s, &e), 0, "%s", e.msg);
    double worst = max_diff(lg, ref, 32 * V);
    cr_log_info("bf16: max |logit - f32 ref| = %.3g", worst);
    cr_assert(worst > 1e-4 && worst < 0.1, "bf16: max |logit - f32 ref| = %g", worst);
    fwd_scratch_free(s);
    free(lg);
    free(ref);
    free(h);
    free(r);
    model_free(a);
    model_free(b);
}
