/* Forward pass: greedy generation against llama2.c's outputs, batched logits against the
 * reference logits and the single-token path, batching invariance, block input capture, and
 * the rotate-half RoPE layout against the adjacent-pair one. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/blas.h"
#include "../core/forward.h"
#include "../core/forward_ops.h"
#include "../core/family.h"
#include "util.h"

/* Greedy decoding with the single-token path, as llama2.c's generate loop. */
static int greedy(const model *m, int steps, int *ids) {
    fwd_cache *c;
    err e = {0};
    cr_assert_eq(fwd_cache_new(&c, m, &e), 0);
    float *logits = malloc(m->cfg.vocab_size * sizeof(float));
    int n = 0, token = TOKEN_BOS;
    ids[n++] = token;
    for (int pos = 0; pos < steps; pos++) {
        cr_assert_eq(forward_token(m, c, token, pos, logits, &e), 0, "%s", e.msg);
        int next = 0;
        for (int i = 1; i < m->cfg.vocab_size; i++) if (logits[i] > logits[next]) next = i;
        if (next == TOKEN_BOS) break;
        ids[n++] = token = next;
    }
    free(logits);
    fwd_cache_free(c);
    return n;
}

static char *detok(const tokenizer *t, const int *ids, int n) {
    char *s = calloc(1, 8 * n + 1);
    size_t len = 0;
    for (int i = 1; i < n; i++) {
        int l;
        const char *p = tokenizer_decode(t, ids[i - 1], ids[i], &l);
        memcpy(s + len, p, l);
        len += l;
    }
    return s;
}

Test(forward, greedy_256_steps_reproduce_llama2c_ids_and_text) {
    model *m = load_stories();
    tokenizer *t = load_tok512();
    int ids[300];
    int n = greedy(m, 256, ids);
    cr_assert_eq(n, 257);
    for (int i = 0; i < n; i++) cr_assert_eq(ids[i], ref_greedy_ids[i], "token %d", i);
    char *s = detok(t, ids, n);
    cr_assert_str_eq(s, ref_story_256);
    free(s);
    tokenizer_free(t);
    model_free(m);
}

Test(forward, greedy_200_steps_reproduce_llama2c_test_all) {
    model *m = load_stories();
    tokenizer *t = load_tok512();
    int ids[300];
    int n = greedy(m, 200, ids);
    cr_assert_eq(n, 201);
    char *s = detok(t, ids, n);
    /* A1 is A2 cut after "Lily didn't want to help her mom, so she". */
    const char *cut = strstr(ref_story_256, "so she said");
    size_t want = (size_t)(cut - ref_story_256) + strlen("so she");
    cr_assert_eq(strlen(s), want);
    cr_assert(strncmp(s, ref_story_256, want) == 0);
    free(s);
    tokenizer_free(t);
    model_free(m);
}

/* 1e-4 absolute: reference-outputs.md B3's tolerance for another summation order. */
#define LOGIT_TOL 1e-4f

Test(forward, batched_logits_match_reference_file_and_single_token_path) {
    model *m = load_stories();
    size_t n;
    float *ref = (float *)read_all(data_path("stories260K/ref_logits_bos_greedy_16x512.f32"), &n);
    cr_assert_eq(n, 16 * 512 * sizeof(float));
    float *logits = malloc(16 * 512 * sizeof(float));
    int len = 16;
    fwd_batch b = {.n_seq = 1, .lens = &len, .n_tok = 16};
    fwd_scratch *s = fwd_scratch_new();
    err e = {0};
    cr_assert_eq(forward_logits(m, ref_greedy_ids, &b, logits, s, &e), 0, "%s", e.msg);
    fwd_cache *c;
    cr_assert_eq(fwd_cache_new(&c, m, &e), 0);
    float one[512];
    float worst = 0.0f;
    for (int p = 0; p < 16; p++) {
        cr_assert_eq(forward_token(m, c, ref_greedy_ids[p], p, one, &e), 0);
        int am = 0;
        for (int v = 0; v < 512; v++) {
            float a = logits[p * 512 + v], r = ref[p * 512 + v];
            cr_assert(fabsf(a - r) <= LOGIT_TOL, "pos %d id %d: %f vs reference %f", p, v, a, r);
            cr_assert(fabsf(a - one[v]) <= LOGIT_TOL, "pos %d id %d: %f vs single %f", p, v, a, one[v]);
            worst = fmaxf(worst, fabsf(a - r));
            if (a > logits[p * 512 + am]) am = v;
        }
        cr_assert_eq(am, ref_greedy_ids[p + 1], "argmax at position %d", p);
    }
    cr_log_info("largest difference to the reference logits: %g", worst);
    fwd_cache_free(c);
    fwd_scratch_free(s);
    free(logits);
    free(ref);
    model_free(m);
}

/* Four windows of different content and length in one batch give what four separate runs give.
 * Not bit for bit: OpenBLAS picks different kernels for the edge rows of a different M, which
 * changes float summation order (seen: 1e-5 on logits of magnitude 11), hence LOGIT_TOL. */
Test(forward, batch_of_four_windows_equals_four_single_runs) {
    model *m = load_stories();
    int lens[4] = {100, 37, 256, 1};
    int total = 394, *toks = malloc(total * sizeof(int));
    unsigned x = 12345;
    for (int i = 0; i < total; i++) {
        x = x * 1103515245u + 12345u;
        toks[i] = (int)((x >> 8) % 512);
    }
    for (int k = 0, o = 0; k < 4; o += lens[k], k++) toks[o] = TOKEN_BOS;
    float *all = malloc((size_t)total * 512 * sizeof(float));
    float *one = malloc(256 * 512 * sizeof(float));
    fwd_batch b = {.n_seq = 4, .lens = lens, .n_tok = total};
    fwd_scratch *s = fwd_scratch_new();
    err e = {0};
    cr_assert_eq(forward_logits(m, toks, &b, all, s, &e), 0, "%s", e.msg);
    for (int k = 0, o = 0; k < 4; o += lens[k], k++) {
        fwd_batch b1 = {.n_seq = 1, .lens = &lens[k], .n_tok = lens[k]};
        cr_assert_eq(forward_logits(m, toks + o, &b1, one, s, &e), 0);
        for (int i = 0; i < lens[k] * 512; i++)
            cr_assert(fabsf(one[i] - all[(size_t)o * 512 + i]) <= LOGIT_TOL,
                      "window %d, entry %d: %f alone vs %f in the batch", k, i, one[i],
                      all[(size_t)o * 512 + i]);
    }
    fwd_scratch_free(s);
    free(one);
    free(all);
    free(toks);
    model_free(m);
}

/* forward_block reports its linear layers' inputs: the block output must equal x plus the
 * attention output projected by Wo plus the captured down input projected by Wdown. */
Test(forward, block_capture_reconstructs_the_block_output) {
    model *m = load_stories();
    int len = 40, n = 40, dim = 64, hid = 172;
    float *x = malloc(n * dim * sizeof(float)), *x0 = malloc(n * dim * sizeof(float));
    float *qkv = malloc(n * dim * sizeof(float)), *o = malloc(n * dim * sizeof(float));
    float *ffn = malloc(n * dim * sizeof(float)), *down = malloc(n * hid * sizeof(float));
    err e = {0};
    fwd_batch b = {.n_seq = 1, .lens = &len, .n_tok = n};
    cr_assert_eq(forward_embed(m, ref_greedy_ids, &b, x, &e), 0);
    memcpy(x0, x, n * dim * sizeof(float));
    block_inputs cap = {{qkv, o, ffn, down}};
    fwd_scratch *s = fwd_scratch_new();
    cr_assert_eq(forward_block(m, 0, x, &b, &cap, s, &e), 0);
    const block *bl = &m->blocks[0];
    for (int t = 0; t < n; t++) {
        double ss = 0;
        for (int j = 0; j < dim; j++) ss += (double)x0[t * dim + j] * x0[t * dim + j];
        double inv = 1.0 / sqrt(ss / dim + 1e-5);
        for (int j = 0; j < dim; j++) {
            double want = bl->p[LLAMA_ATTN_NORM][j] * x0[t * dim + j] * inv;
            cr_assert(fabs(qkv[t * dim + j] - want) < 1e-5, "qkv input %d,%d", t, j);
        }
        for (int i = 0; i < dim; i++) {
            double y = x0[t * dim + i];
            for (int j = 0; j < dim; j++) y += (double)bl->lin[LLAMA_O].w[i * dim + j] * o[t * dim + j];
            for (int j = 0; j < hid; j++) y += (double)bl->lin[LLAMA_DOWN].w[i * hid + j] * down[t * hid + j];
            cr_assert(fabs(y - x[t * dim + i]) < 1e-4, "output %d,%d: %f vs %f", t, i, y, x[t * dim + i]);
        }
    }
    fwd_scratch_free(s);
    free(x); free(x0); free(qkv); free(o); free(ffn); free(down);
    model_free(m);
}

/* Hugging Face checkpoints permute the rows of Wq and Wk so that rotate-half RoPE computes what
 * Meta's adjacent-pair RoPE computes. Applying that permutation and switching the layout must
 * leave the logits unchanged: a check of ROPE_HALF that does not reuse its own code path. */
static void permute_rows_to_half(float *w, int n_heads, int hs, int cols) {
    float *tmp = malloc((size_t)hs * cols * sizeof(float));
    for (int h = 0; h < n_heads; h++) {
        float *wh = w + (size_t)h * hs * cols;
        for (int j = 0; j < hs / 2; j++) {
            memcpy(tmp + (size_t)j * cols, wh + (size_t)(2 * j) * cols, cols * sizeof(float));
            memcpy(tmp + (size_t)(j + hs / 2) * cols, wh + (size_t)(2 * j + 1) * cols, cols * sizeof(float));
        }
        memcpy(wh, tmp, (size_t)hs * cols * sizeof(float));
    }
    free(tmp);
}

Test(forward, rotate_half_layout_matches_adjacent_after_hf_permutation) {
    model *a = load_stories(), *h = load_stories();
    const model_config *c = &h->cfg;
    for (int l = 0; l < c->n_layers; l++) {
        permute_rows_to_half(h->blocks[l].lin[LLAMA_Q].w, c->n_heads, c->head_size, c->dim);
        permute_rows_to_half(h->blocks[l].lin[LLAMA_K].w, c->n_kv_heads, c->head_size, c->dim);
    }
    h->cfg.rope = ROPE_HALF;
    int len = 64;
    float *la = malloc(64 * 512 * sizeof(float)), *lh = malloc(64 * 512 * sizeof(float));
    fwd_batch b = {.n_seq = 1, .lens = &len, .n_tok = len};
    fwd_scratch *s = fwd_scratch_new();
    err e = {0};
    cr_assert_eq(forward_logits(a, ref_greedy_ids, &b, la, s, &e), 0);
    cr_assert_eq(forward_logits(h, ref_greedy_ids, &b, lh, s, &e), 0);
    for (int i = 0; i < 64 * 512; i++)
        cr_assert(fabsf(la[i] - lh[i]) <= 1e-4f, "entry %d: %f vs %f", i, la[i], lh[i]);
    /* And the layout matters: without the permutation the logits must differ. */
    h->cfg.rope = ROPE_ADJACENT;
    cr_assert_eq(forward_logits(h, ref_greedy_ids, &b, lh, s, &e), 0);
    float diff = 0;
    for (int i = 0; i < 64 * 512; i++) diff = fmaxf(diff, fabsf(la[i] - lh[i]));
    cr_assert(diff > 1e-2f, "permuted weights with adjacent RoPE should change the logits");
    fwd_scratch_free(s);
    free(la); free(lh);
    model_free(a); model_free(h);
}

Test(forward, results_do_not_depend_on_thread_count) {
    model *m = load_stories();
    int lens[3] = {200, 150, 90}, total = 440;
    int *toks = malloc(total * sizeof(int));
    for (int i = 0; i < total; i++) toks[i] = ref_greedy_ids[i % 257];
    float *l1 = malloc((size_t)total * 512 * sizeof(float)), *l2 = malloc((size_t)total * 512 * sizeof(float));
    fwd_batch b = {.n_seq = 3, .lens = lens, .n_tok = total};
    fwd_scratch *s = fwd_scratch_new();
    err e = {0};
    blas_set_threads(1);
    cr_assert_eq(forward_logits(m, toks, &b, l1, s, &e), 0);
    blas_set_threads(2);
    cr_assert_eq(forward_logits(m, toks, &b, l2, s, &e), 0);
    for (int i = 0; i < total * 512; i++)
        cr_assert(fabsf(l1[i] - l2[i]) <= LOGIT_TOL, "entry %d: %f vs %f", i, l1[i], l2[i]);
    fwd_scratch_free(s);
    free(l1); free(l2); free(toks);
    model_free(m);
}

/* A copy of the n matrices w[i] (sizes n_i floats) back to back, each w[i] repointed into it. */
static float *relay(float **w[], const size_t *n, int k) {
    size_t total = 0;
    for (int i = 0; i < k; i++) total += n[i];
    float *p = malloc(total * sizeof(float)), *at = p;
    for (int i = 0; i < k; i++) {
        memcpy(at, *w[i], n[i] * sizeof(float));
        *w[i] = at;
        at += n[i];
    }
    return p;
}

/* Two sequences (120 and 77 tokens of the reference ids) of stories260K, a scratch, and room for
 * two sets of their logits: the fixture of the bit-for-bit comparisons below. */
typedef struct {
    model *m;
    int lens[2], total, *toks;
    size_t nl;
    float *l1, *l2;
    fwd_batch b;
    fwd_scratch *s;
} two_seqs;

static void two_seqs_open(two_seqs *f) {
    f->m = load_stories();
    f->lens[0] = 120, f->lens[1] = 77, f->total = 197;
    f->toks = malloc(f->total * sizeof(int));
    for (int i = 0; i < f->total; i++) f->toks[i] = ref_greedy_ids[i % 257];
    f->nl = (size_t)f->total * f->m->cfg.vocab_size;
    f->l1 = malloc(f->nl * sizeof(float));
    f->l2 = malloc(f->nl * sizeof(float));
    f->b = (fwd_batch){.n_seq = 2, .lens = f->lens, .n_tok = f->total};
    f->s = fwd_scratch_new();
}

static void two_seqs_close(two_seqs *f) {
    fwd_scratch_free(f->s);
    free(f->l1); free(f->l2); free(f->toks);
    model_free(f->m);
}

/* Without packs, fwd_linear_in takes q, k, v (and gate, up) in one GEMM when their weights lie
 * back to back; each output is the same dot product, so the logits must not move by a bit. Layer
 * 0 gets up before gate, which stays two GEMMs. */
Test(forward, fused_qkv_and_gate_up_gemms_give_the_same_bits) {
    two_seqs f;
    two_seqs_open(&f);
    model *m = f.m;
    const model_config *c = &m->cfg;
    err e = {0};
    cr_assert_eq(forward_logits(m, f.toks, &f.b, f.l1, f.s, &e), 0, "%s", e.msg);
    cr_assert_eq(m->blocks[0].lin[LLAMA_K].w == m->blocks[0].lin[LLAMA_Q].w + (size_t)c->dim * c->dim,
                 false, "the fixture already has q, k, v back to back: nothing to compare");
    float *orig[64][7], *copies[64][2];
    cr_assert(c->n_layers <= 64);
    for (int l = 0; l < c->n_layers; l++) {
        linear *li = m->blocks[l].lin;
        for (int j = 0; j < 7; j++) orig[l][j] = li[j].w;
        size_t q = (size_t)li[LLAMA_Q].rows * li[LLAMA_Q].cols;
        size_t kv = (size_t)li[LLAMA_K].rows * li[LLAMA_K].cols;
        size_t h = (size_t)li[LLAMA_GATE].rows * li[LLAMA_GATE].cols;
        float **qkv[3] = {&li[LLAMA_Q].w, &li[LLAMA_K].w, &li[LLAMA_V].w};
        size_t nqkv[3] = {q, kv, kv}, nh[2] = {h, h};
        float **gu[2] = {&li[LLAMA_GATE].w, &li[LLAMA_UP].w};
        float **ug[2] = {&li[LLAMA_UP].w, &li[LLAMA_GATE].w};
        copies[l][0] = relay(qkv, nqkv, 3);
        copies[l][1] = relay(l == 0 ? ug : gu, nh, 2);
    }
    cr_assert_eq(forward_logits(m, f.toks, &f.b, f.l2, f.s, &e), 0, "%s", e.msg);
    cr_assert_eq(memcmp(f.l1, f.l2, f.nl * sizeof(float)), 0, "fused GEMMs changed the logits");
    for (int l = 0; l < c->n_layers; l++) {
        for (int j = 0; j < 7; j++) m->blocks[l].lin[j].w = orig[l][j];
        free(copies[l][0]);
        free(copies[l][1]);
    }
    two_seqs_close(&f);
}

/* An evaluation packs the weights once (forward_pack); the logits must be the same bits as
 * without, the classifier's column slices included. */
Test(forward, packed_weights_give_the_same_bits) {
    two_seqs f;
    two_seqs_open(&f);
    const model *m = f.m;
    const model_config *c = &m->cfg;
    float *slice = malloc((size_t)f.total * 64 * sizeof(float));
    err e = {0};
    cr_assert_eq(forward_logits(m, f.toks, &f.b, f.l1, f.s, &e), 0, "%s", e.msg);
    fwd_packs *p = forward_pack(m);
    if (!p) {
        free(slice);
        two_seqs_close(&f);
        cr_skip_test("forward_pack: no packed kernel on this machine");
    }
    fwd_scratch_use(f.s, p);
    cr_assert_eq(forward_logits(m, f.toks, &f.b, f.l2, f.s, &e), 0, "%s", e.msg);
    cr_assert_eq(memcmp(f.l1, f.l2, f.nl * sizeof(float)), 0, "packed weights changed the logits");
    /* The head in slices, as perplexity takes it: x through the blocks, normed, then columns
     * 64 .. 127 of the classifier. */
    float *x = malloc((size_t)f.total * c->dim * sizeof(float));
    cr_assert_eq(forward_embed(m, f.toks, &f.b, x, &e), 0);
    for (int l = 0; l < c->n_layers; l++) cr_assert_eq(forward_block(m, l, x, &f.b, NULL, f.s, &e), 0);
    cr_assert_eq(forward_head_norm(m, x, f.total, &e), 0);
    fwd_head_slice(m, f.s, x, f.total, 64, 64, slice);
    for (int t = 0; t < f.total; t++)
        cr_assert_eq(memcmp(slice + (size_t)t * 64, f.l1 + (size_t)t * c->vocab_size + 64, 64 * sizeof(float)), 0,
                     "row %d of the classifier slice", t);
    forward_packs_free(p);
    free(x); free(slice);
    two_seqs_close(&f);
}

/* Attention's AVX-512 kernel (scores stored key-major) and the portable one give the same bits,
 * for heads of 16 to 64 floats, kv groups of 1 to 4 heads (4: a pass of 3 heads, then 1) and
 * sequences of 1 to 300 tokens batched together (tiles with 1..16 rows, 8-key blocks cut short).
 * On a machine without AVX-512 both calls run the portable kernel. The values are also checked
 * against a plain double-precision attention, so the two cannot agree on something wrong. */
Test(forward, attention_kernels_give_the_same_bits) {
    static const struct { int heads, kv, hs; } cfgs[] = {{6, 2, 32}, {4, 4, 16}, {8, 2, 64}, {2, 1, 48}};
    int lens[] = {1, 7, 16, 33, 100, 300}, n_seq = 6, n_tok = 0, maxT = 300, offs[6];
    for (int i = 0; i < n_seq; i++) offs[i] = n_tok, n_tok += lens[i];
    fwd_batch b = {.n_seq = n_seq, .lens = lens, .n_tok = n_tok};
    srand(7);
    for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
        model m;
        memset(&m, 0, sizeof m);
        m.cfg.n_heads = cfgs[ci].heads, m.cfg.n_kv_heads = cfgs[ci].kv, m.cfg.head_size = cfgs[ci].hs;
        m.cfg.seq_len = maxT;
        int hs = cfgs[ci].hs, qdim = m.cfg.n_heads * hs, kvd = m.cfg.n_kv_heads * hs, ld = qdim + 2 * kvd;
        float *qkv = malloc((size_t)n_tok * ld * sizeof(float));
        for (size_t i = 0; i < (size_t)n_tok * ld; i++) qkv[i] = 4.0f * ((float)rand() / RAND_MAX - 0.5f);
        size_t per = fwd_att_scratch_floats(&m, maxT) * (size_t)blas_threads();
        float *scr = malloc(per * sizeof(float));
        float *a = malloc((size_t)n_tok * qdim * sizeof(float)), *p = malloc((size_t)n_tok * qdim * sizeof(float));
        const float *q = qkv, *k = qkv + qdim, *v = qkv + qdim + kvd;
        fwd_attention(&m, &b, offs, q, ld, k, v, ld, a, scr, maxT);
        fwd_attention_portable(&m, &b, offs, q, ld, k, v, ld, p, scr, maxT);
        cr_assert(memcmp(a, p, (size_t)n_tok * qdim * sizeof(float)) == 0, "config %zu: bits differ", ci);
        int group = m.cfg.n_heads / m.cfg.n_kv_heads;
        for (int s = 0; s < n_seq; s++)
            for (int t = 0; t < lens[s]; t += 13)
                for (int h = 0; h < m.cfg.n_heads; h++) {
                    const float *qt = q + (size_t)(offs[s] + t) * ld + h * hs;
                    double w[300], mx = -1e300, sum = 0;
                    for (int u = 0; u <= t; u++) {
                        const float *ku = k + (size_t)(offs[s] + u) * ld + (h / group) * hs;
                        double dot = 0;
                        for (int d = 0; d < hs; d++) dot += (double)qt[d] * ku[d];
                        w[u] = dot / sqrt((double)hs);
                        mx = w[u] > mx ? w[u] : mx;
                    }
                    for (int u = 0; u <= t; u++) sum += (w[u] = exp(w[u] - mx));
                    for (int d = 0; d < hs; d++) {
                        double o = 0;
                        for (int u = 0; u <= t; u++) o += w[u] / sum * v[(size_t)(offs[s] + u) * ld + (h / group) * hs + d];
                        float got = a[(size_t)(offs[s] + t) * qdim + h * hs + d];
                        cr_assert(fabs(got - o) <= 1e-5 * (1 + fabs(o)), "config %zu seq %d pos %d head %d: %g vs %g",
                                  ci, s, t, h, got, o);
                    }
                }
        free(qkv); free(scr); free(a); free(p);
    }
}
