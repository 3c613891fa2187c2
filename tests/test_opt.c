/* OPT beside LLaMA: the families/ fixtures (random weights in Hugging Face layout, references
 * from Hugging Face's modeling_opt.py) through the forward pass, greedy decoding, perplexity on
 * ids, compression, writing and reloading, and bad configs. */
#include <criterion/criterion.h>
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/family.h"
#include "../core/forward.h"
#include "../core/generate.h"
#include "../eval/perplexity.h"
#include "../experiments/calib.h"
#include "../experiments/compress.h"
#include "util.h"

static const char *const opt_models[] = {"opt-tiny", "opt-tiny-proj", "opt-tiny-f16"};

Test(opt, fixtures_load_as_the_opt_family) {
    for (int i = 0; i < 3; i++) {
        model *m = fixture_model(opt_models[i]);
        cr_assert_str_eq(m->fam->name, "opt");
        cr_assert_eq(model_n_linear(m), 6);
        cr_assert_str_eq(model_linear_name(m, OPT_FC1), "fc1");
        cr_assert_eq(m->blocks[1].lin[OPT_FC1].rows, 256);
        cr_assert_eq(m->blocks[1].lin[OPT_FC2].cols, 256);
        cr_assert(m->blocks[0].lin[OPT_Q].b != NULL);
        cr_assert(m->shared_cls && m->wcls == m->tok_emb);
        cr_assert_eq(m->cfg.n_pos, 258);
        /* 6 linear layers of 64 x 64 (4) and 64 x 256 (2) per block, 2 blocks */
        cr_assert_eq(model_linear_params(m), 2u * (4 * 64 * 64 + 2 * 64 * 256));
        model_free(m);
    }
}

/* The batched forward pass against Hugging Face's logits: max |diff| <= 1e-5. */
Test(opt, logits_match_hugging_face) {
    for (int i = 0; i < 3; i++) {
        model *m = fixture_model(opt_models[i]);
        cJSON *r = fixture_ref_json(opt_models[i]);
        int ids[64], n = json_ints(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "seqA"), "input_ids"), ids, 64);
        cr_assert_eq(n, 32);
        float *ref = fixture_floats(opt_models[i], "ref_logits_seqA.f32", 32 * 512);
        float *lg = malloc(32 * 512 * sizeof(float));
        fwd_batch b = {.n_seq = 1, .lens = &n, .n_tok = n};
        fwd_scratch *s = fwd_scratch_new();
        err e = {0};
        cr_assert_eq(forward_logits(m, ids, &b, lg, s, &e), 0, "%s", e.msg);
        double worst = 0;
        for (int k = 0; k < 32 * 512; k++) worst = fmax(worst, fabs((double)lg[k] - ref[k]));
        cr_log_info("%s: max |logit - ref| = %.3g", opt_models[i], worst);
        cr_assert(worst <= 1e-5, "%s: max |logit - ref| = %g", opt_models[i], worst);
        fwd_scratch_free(s);
        free(lg);
        free(ref);
        cJSON_Delete(r);
        model_free(m);
    }
}

/* Hugging Face's left-padded batch (row 1: 12 pads, then 20 tokens at positions 0..19) is, in
 * sparq's packed batches, the 32 + 20 tokens of two sequences. */
Test(opt, padded_batch_matches_as_a_packed_batch) {
    model *m = fixture_model("opt-tiny");
    cJSON *r = fixture_ref_json("opt-tiny");
    const cJSON *in = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "batch"), "input_ids");
    int row0[32], row1[32];
    cr_assert_eq(json_ints(cJSON_GetArrayItem(in, 0), row0, 32), 32);
    cr_assert_eq(json_ints(cJSON_GetArrayItem(in, 1), row1, 32), 32);
    int toks[52], lens[2] = {32, 20};
    memcpy(toks, row0, sizeof row0);
    memcpy(toks + 32, row1 + 12, 20 * sizeof(int));
    float *ref = fixture_floats("opt-tiny", "ref_logits_batch.f32", 2 * 32 * 512);
    float *lg = malloc(52 * 512 * sizeof(float));
    fwd_batch b = {.n_seq = 2, .lens = lens, .n_tok = 52};
    fwd_scratch *s = fwd_scratch_new();
    err e = {0};
    cr_assert_eq(forward_logits(m, toks, &b, lg, s, &e), 0, "%s", e.msg);
    double worst = 0;
    for (int t = 0; t < 52; t++) {
        const float *want = t < 32 ? ref + (size_t)t * 512 : ref + (size_t)(32 + 12 + t - 32) * 512;
        for (int k = 0; k < 512; k++) worst = fmax(worst, fabs((double)lg[t * 512 + k] - want[k]));
    }
    cr_assert(worst <= 1e-5, "max |logit - ref| = %g", worst);
    fwd_scratch_free(s);
    free(lg);
    free(ref);
    cJSON_Delete(r);
    model_free(m);
}

Test(opt, greedy_ids_match_hugging_face) {
    for (int i = 0; i < 3; i++) {
        model *m = fixture_model(opt_models[i]);
        cJSON *r = fixture_ref_json(opt_models[i]);
        const cJSON *g = cJSON_GetObjectItem(r, "greedy");
        int prompt[8], want[64];
        int np = json_ints(cJSON_GetObjectItem(g, "prompt"), prompt, 8);
        int nw = json_ints(cJSON_GetObjectItem(g, "new_ids"), want, 64);
        generation out;
        err e = {0};
        cr_assert_eq(generate_greedy_ids(m, prompt, np, np + nw, &out, &e), 0, "%s", e.msg);
        cr_assert_eq(out.n, np + nw);
        for (int k = 0; k < nw; k++)
            cr_assert_eq(out.tokens[np + k], want[k], "%s: new id %d is %d, want %d", opt_models[i], k,
                         out.tokens[np + k], want[k]);
        generation_free(&out);
        cJSON_Delete(r);
        model_free(m);
    }
}

/* eval --ids in both protocols gives the reference mean NLL; the CLI's --json carries it. */
Test(opt, eval_ids_gives_the_reference_nll) {
    for (int i = 0; i < 3; i++) {
        cJSON *r = fixture_ref_json(opt_models[i]);
        const cJSON *sa = cJSON_GetObjectItem(r, "seqA");
        int ids[64], n = json_ints(cJSON_GetObjectItem(sa, "input_ids"), ids, 64);
        char line[512] = "";
        for (int k = 0; k < n; k++) snprintf(line + strlen(line), sizeof line - strlen(line), "%s%d", k ? " " : "", ids[k]);
        strcat(line, "\n");
        const char *path = tmp_path("seqA.ids");
        cr_assert_eq(write_file(path, line, strlen(line)), 0);
        char rel[128];
        snprintf(rel, sizeof rel, "families/%s", opt_models[i]);
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
            cr_assert(fabs(nll - want) <= 1e-5, "%s %s: nll %.9f, want %.9f", opt_models[i], protos[p], nll, want);
            cr_assert_eq(cJSON_GetObjectItem(j, "tokens")->valueint, 31);
            cJSON_Delete(j);
            free(out);
            free(er);
        }
        cJSON_Delete(r);
    }
}

Test(opt, generate_prompt_ids_on_the_cli) {
    char args[512], *out, *er;
    snprintf(args, sizeof args, "generate --model '%s' --prompt-ids '2 10 20 30' -n 36 --json",
             data_path("families/opt-tiny"));
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    cJSON *j = cJSON_Parse(out), *r = fixture_ref_json("opt-tiny");
    int got[64], want[64];
    int ng = json_ints(cJSON_GetObjectItem(j, "tokens"), got, 64);
    int nw = json_ints(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "greedy"), "new_ids"), want, 64);
    cr_assert_eq(ng, 4 + nw);
    cr_assert_eq(got[0], 2);
    for (int k = 0; k < nw; k++) cr_assert_eq(got[4 + k], want[k]);
    cJSON_Delete(j);
    cJSON_Delete(r);
    free(out);
    free(er);
}

/* SparseGPT 50% on opt-tiny: every layer's loss at most magnitude's, biases and norms untouched,
 * half of each linear layer zero, and the written safetensors reload to the same perplexity. */
Test(opt, sparsegpt_beats_magnitude_and_the_written_model_reloads) {
    model *m = fixture_model("opt-tiny"), *ref = fixture_model("opt-tiny"), *mag = fixture_model("opt-tiny");
    tokenizer *t = load_tok512();      /* 512 pieces, as the fixture's vocabulary: any text will do */
    token_seqs cs;
    err e = {0};
    cr_assert_eq(calib_from_text(t, data_path("text/c4-en-train-first1000.jsonl"), 16, 64, 0, &cs, &e), 0, "%s", e.msg);
    compress_options o = {0};
    cr_assert_eq(solver_spec_parse("sparsegpt", false, &o.solver, &e), 0, "%s", e.msg);
    o.target = target_default();
    o.target.sparsity = 0.5;
    compress_report ra, rb;
    cr_assert_eq(compress_model(m, &cs, &o, &ra, NULL, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(solver_spec_parse("magnitude", false, &o.solver, &e), 0, "%s", e.msg);
    cr_assert_eq(compress_model(mag, &cs, &o, &rb, NULL, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(ra.n, 12);
    cr_assert_str_eq(ra.layers[1 * 6 + OPT_FC2].name, "1.fc2");
    for (int i = 0; i < ra.n; i++) {
        cr_log_info("%s: sparsegpt %.6g  magnitude %.6g", ra.layers[i].name, ra.layers[i].report.loss,
                    rb.layers[i].report.loss);
        cr_assert(ra.layers[i].report.loss <= rb.layers[i].report.loss, "%s: sparsegpt %g > magnitude %g",
                  ra.layers[i].name, ra.layers[i].report.loss, rb.layers[i].report.loss);
        cr_assert(ra.layers[i].report.sparsity >= 0.49);
    }
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 6; k++)
            cr_assert(memcmp(m->blocks[l].lin[k].b, ref->blocks[l].lin[k].b, m->blocks[l].lin[k].rows * sizeof(float)) == 0);
    cr_assert(memcmp(m->tok_emb, ref->tok_emb, 512 * 64 * sizeof(float)) == 0);

    /* 20 lines of calibration-like ids as an evaluation text. */
    char *txt = malloc(1 << 16);
    size_t at = 0;
    for (int i = 0; i < 16; i++, txt[at++] = '\n')
        for (int k = 0; k < 64; k++) at += (size_t)sprintf(txt + at, "%d ", cs.tokens[cs.offs[i] + k]);
    const char *ids = tmp_path("calib.ids");
    cr_assert_eq(write_file(ids, txt, at), 0);
    free(txt);
    double p0 = ppl_of_ids(ref, ids), p1 = ppl_of_ids(m, ids);
    cr_assert(p1 != p0);
    const char *dir = tmp_path("opt-sparse");
    cr_assert_eq(model_save(m, dir, &e), 0, "%s", e.msg);
    model *back = NULL;
    cr_assert_eq(model_load(&back, dir, &e), 0, "%s", e.msg);
    model_pin(back);
    cr_assert_str_eq(back->fam->name, "opt");
    cr_assert_eq(ppl_of_ids(back, ids), p1);
    cr_assert(memcmp(back->blocks[1].lin[OPT_FC1].w, m->blocks[1].lin[OPT_FC1].w, 256 * 64 * sizeof(float)) == 0);
    model_free(back);
    compress_report_free(&ra);
    compress_report_free(&rb);
    token_seqs_free(&cs);
    tokenizer_free(t);
    model_free(m);
    model_free(ref);
    model_free(mag);
}

/* Every solver, chain and schedule runs on OPT through the CLI. */
Test(opt, every_solver_and_schedule_compresses_opt) {
    static const char *const runs[] = {
        "--solver magnitude --sparsity 0.5", "--solver wanda --nm 2:4", "--solver sparsegpt --sparsity 0.6 --true-sequential",
        "--solver apt --sparsity 0.5", "--solver rtn --bits 4 --group 32", "--solver gptq --bits 3 --act-order",
        "--solver sparsegpt+gptq --sparsity 0.5 --bits 4", "--solver sparsegpt --sparsity 0.7 --schedule owl",
        "--solver sparsegpt --sparsity 0.7 --schedule hessian"};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        char args[1024], *out, *er;
        snprintf(args, sizeof args, "compress --model '%s' --tokenizer '%s' --calib '%s' --nsamples 4 "
                 "--calib-seqlen 64 %s --json", data_path("families/opt-tiny"),
                 data_path("stories260K/tok512.bin"), data_path("text/c4-en-train-first1000.jsonl"), runs[i]);
        int st = run_sparq(args, &out, &er);
        cr_assert_eq(st, 0, "%s: %s", runs[i], er);
        cJSON *j = cJSON_Parse(out);
        cr_assert(j, "%s", out);
        cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "layers")), 12, "%s", runs[i]);
        cJSON_Delete(j);
        free(out);
        free(er);
    }
}

Test(opt, bad_configs_are_one_clear_error) {
    struct { const char *name, *key, *value, *says; } cases[] = {
        {"no-hidden", "hidden_size", NULL, "hidden_size is missing"},
        {"no-ffn", "ffn_dim", NULL, "ffn_dim is missing"},
        {"odd-heads", "num_attention_heads", "5", "not a multiple of num_attention_heads"},
        {"post-ln", "do_layer_norm_before", "false", "do_layer_norm_before: false is not supported (OPT-350M"},
        {"gelu", "activation_function", "\"gelu\"", "activation_function must be \"relu\""},
        {"no-bias", "enable_bias", "false", "enable_bias"},
        {"wide", "hidden_size", "128", "has shape"},
        {"proj", "word_embed_proj_dim", "32", "tensor model.decoder.embed_tokens.weight has shape [512, 64]"},
        {"untied", "tie_word_embeddings", "false", "tensor lm_head.weight is missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *dir = fixture_bad_copy("opt-tiny", cases[i].name, cases[i].key, cases[i].value);
        char args[4200], *out, *er;
        snprintf(args, sizeof args, "generate --model '%s' --prompt-ids '2 3'", dir);
        int st = run_sparq(args, &out, &er);
        cr_assert_eq(st, 2, "%s: exit %d", cases[i].name, st);
        cr_assert(strstr(er, cases[i].says), "%s: \"%s\" lacks \"%s\"", cases[i].name, er, cases[i].says);
        cr_assert(strstr(er, dir), "%s: \"%s\" does not name the checkpoint", cases[i].name, er);
        char *nl = strchr(er, '\n');
        cr_assert(nl && nl[1] == '\0', "%s: not one line: %s", cases[i].name, er);
        free(out);
        free(er);
    }
}

/* OPT has no llama2.c or GGUF form: refused by name, not written wrong. */
Test(opt, formats_without_opt_refuse_by_name) {
    const struct { const char *out, *says; } cases[] = {
        {"opt.bin", "llama2.c format holds LLaMA models only; this model is opt"},
        {"opt.gguf", "this model is opt (use safetensors)"},
    };
    for (int i = 0; i < 2; i++) {
        char args[1024], *out, *er;
        snprintf(args, sizeof args, "convert --model '%s' --out '%s' --no-vocab", data_path("families/opt-tiny"), tmp_path(cases[i].out));
        cr_assert_eq(run_sparq(args, &out, &er), 2, "%s", er);
        cr_assert(strstr(er, cases[i].says), "%s", er);
        free(out);
        free(er);
    }
}
