/* Compression metrics against hand-computed values: bits per weight as packed (algorithms.md §9
 * examples), theoretical bits, model bytes, TCr and compression ratio at the paper's operating
 * points (§7), retention Sr and its chance-corrected variant, and the SrCr formulas by name. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "../eval/metrics.h"

/* Every value here is a short sum of dyadic fractions or one sqrt/log2, so doubles agree to
 * rounding: 1e-12 is far below any difference that would matter and far above rounding. */
#define EQ(a, b) cr_assert(fabs((a) - (b)) < 1e-12, "%s = %.15g, want %.15g", #a, (double)(a), (double)(b))

Test(metrics, bpw_packed_of_2_4_with_4_bit_group_128_is_3_25) {
    /* Two kept of four at 4 bits (2), a 2-bit index per kept weight (1), 32 bits per 128 (0.25). */
    EQ(metrics_bpw_packed(0.5, 4, false, 2, 4, 128, 4096), 3.25);
}

Test(metrics, bpw_packed_matches_the_examples_of_algorithms_md_9) {
    EQ(metrics_bpw_packed(0.0, 3, false, 0, 0, 128, 4096), 3.25);     /* 3-bit dense g128              */
    EQ(metrics_bpw_packed(0.0, 4, false, 0, 0, 128, 4096), 4.25);     /* 4-bit dense g128              */
    EQ(metrics_bpw_packed(0.5, 4, false, 0, 0, 128, 4096), 3.25);     /* 50% + 4-bit, bitmask          */
    EQ(metrics_bpw_packed(0.25, 4, false, 0, 0, 128, 4096), 4.25);    /* 25% + 4-bit: 1 + 3 + 0.25     */
    EQ(metrics_bpw_packed(0.7, 4, false, 0, 0, 128, 4096), 2.45);
    EQ(metrics_bpw_packed(0.7, 3, false, 0, 0, 128, 4096), 2.15);
    EQ(metrics_bpw_packed(0.8, 4, false, 0, 0, 128, 4096), 2.05);
    EQ(metrics_bpw_packed(0.5, 16, false, 4, 8, 128, 4096), 0.5 * (16 + 3));   /* 4:8 fp16: 3-bit index */
    EQ(metrics_bpw_packed(0.0, 16, false, 0, 0, -1, 4096), 16.0);     /* dense fp16: no grid           */
    EQ(metrics_bpw_packed(0.0, 4, false, 0, 0, -1, 4096), 4.0 + 32.0 / 4096);  /* per-row grid          */
}

/* Issue 20, part 2: every storage layout against a hand count of the bits of one 4 x 64 layer
 * (256 weights): values, then the bitmask (1 bit per weight) or the N:M index (ceil(log2 M) bits
 * per kept weight), then the grid: 16 bits (scale) per group when symmetric, 32 (scale + zero)
 * when asymmetric; groups of 32 give 4 x 2 = 8 groups, per row 4. A symmetric grid's zero is the
 * fixed midpoint and is not stored, so the old count (a zero for every grid) misses every sym row. */
Test(metrics, bpw_packed_of_every_layout_matches_a_hand_count_of_a_4x64_layer) {
    static const struct {
        double s; int bits; bool sym; int n, m, group; double total_bits;
    } rows[] = {
        {0.0,  8, true,  0, 0, 32, 256 * 8 + 8 * 16},              /* 8.5: the sym g32 */
        {0.0,  8, false, 0, 0, 32, 256 * 8 + 8 * 32},              /* 9                        */
        {0.0,  5, true,  0, 0, 32, 256 * 5 + 8 * 16},              /* 5.5                      */
        {0.0,  5, false, 0, 0, 32, 256 * 5 + 8 * 32},              /* 6                        */
        {0.0,  4, true,  0, 0, 32, 256 * 4 + 8 * 16},              /* 4.5                      */
        {0.0,  4, false, 0, 0, 32, 256 * 4 + 8 * 32},              /* 5                        */
        {0.0,  4, true,  0, 0, -1, 256 * 4 + 4 * 16},              /* per row                  */
        {0.0,  4, false, 0, 0, -1, 256 * 4 + 4 * 32},
        {0.0,  3, true,  0, 0, 64, 256 * 3 + 4 * 16},              /* a group = the row        */
        {0.5,  4, true,  0, 0, 32, 256 + 128 * 4 + 8 * 16},        /* bitmask + kept values    */
        {0.5,  4, false, 0, 0, 32, 256 + 128 * 4 + 8 * 32},
        {0.75, 3, true,  0, 0, -1, 256 + 64 * 3 + 4 * 16},
        {0.75, 3, false, 0, 0, -1, 256 + 64 * 3 + 4 * 32},
        {0.5,  4, true,  2, 4, 32, 128 * (4 + 2) + 8 * 16},        /* 2:4: 2-bit index         */
        {0.5,  4, false, 2, 4, 32, 128 * (4 + 2) + 8 * 32},
        {0.5,  3, true,  4, 8, -1, 128 * (3 + 3) + 4 * 16},        /* 4:8: 3-bit index         */
        {0.5,  3, false, 4, 8, -1, 128 * (3 + 3) + 4 * 32},
        {0.0, 16, true,  0, 0, 32, 256 * 16},                      /* fp16: no grid, sym or not */
        {0.0, 16, false, 0, 0, -1, 256 * 16},
        {0.5, 16, true,  0, 0, 32, 256 + 128 * 16},
        {0.5, 16, false, 2, 4, -1, 128 * (16 + 2)},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        double got = metrics_bpw_packed(rows[i].s, rows[i].bits, rows[i].sym, rows[i].n, rows[i].m,
                                        rows[i].group, 64);
        cr_assert(fabs(got - rows[i].total_bits / 256) < 1e-12, "row %zu (s %g, %d-bit, %s, %d:%d, g%d): "
                  "%.15g bits per weight, hand count %.15g", i, rows[i].s, rows[i].bits,
                  rows[i].sym ? "sym" : "asym", rows[i].n, rows[i].m, rows[i].group, got, rows[i].total_bits / 256);
    }
    EQ(metrics_grid_bits(4, true), 16.0);
    EQ(metrics_grid_bits(4, false), 32.0);
    EQ(metrics_grid_bits(16, false), 0.0);
}

/* The model's storage sums its layers each with its own grid: a 4 x 64 layer at 4-bit g32 sym
 * (1152 bits) and a 2 x 32 layer at 50% + 4-bit per-row asym (64 + 128 + 64 = 256 bits), plus 100
 * other parameters at fp16: 1408 bits over 320 linear weights, 176 + 200 bytes. */
Test(metrics, model_storage_counts_each_layers_own_grid) {
    metrics_layer l[2] = {{256, 0.0, 4, 32, 64, true}, {64, 0.5, 4, -1, 32, false}};
    metrics_storage st = metrics_model_storage(l, 2, 0, 0, 320, 100);
    EQ(st.bpw, 1408.0 / 320);
    EQ(st.bytes, 176.0 + 200.0);
    EQ(st.sparsity, 32.0 / 320);
    l[0].sym = false;   /* the same layer asymmetric: 8 more zeros of 16 bits */
    EQ(metrics_model_storage(l, 2, 0, 0, 320, 100).bpw, (1408.0 + 128) / 320);
}

Test(metrics, theoretical_bits_and_model_bytes) {
    EQ(metrics_bpw_theoretical(0.25, 4), 3.0);
    EQ(metrics_bpw_theoretical(0.5, 4), 2.0);
    EQ(metrics_bpw_theoretical(0.0, 16), 16.0);
    /* 1000 linear weights at 3.25 bits = 406.25 bytes, 100 other parameters at 2 bytes. */
    EQ(metrics_model_bytes(1000, 3.25, 100), 606.25);
    /* stories260K dense in fp16: every one of its 260032 parameters at 2 bytes. */
    EQ(metrics_model_bytes(226560, 16.0, 260032 - 226560), 2.0 * 260032);
    /* ... and with its 226560 linear weights at 2:4 + 4-bit g128: 92040 + 66944 bytes. */
    EQ(metrics_model_bytes(226560, 3.25, 260032 - 226560), 92040.0 + 66944.0);
}

Test(metrics, tcr_and_compression_ratio_at_the_papers_operating_points) {
    EQ(metrics_tcr(0.25, 4), 0.8125);     /* 25% pruning + 4-bit                     */
    EQ(metrics_tcr(0.0, 3), 0.8125);      /* 3-bit alone: the same TCr               */
    EQ(metrics_tcr(0.0, 4), 0.75);
    EQ(metrics_tcr(0.5, 8), 0.75);
    EQ(metrics_tcr(0.0, 2), 0.875);
    EQ(metrics_tcr(0.5, 4), 0.875);
    EQ(metrics_tcr(0.5, 16), 0.5);        /* pruning alone: TCr = s                  */
    EQ(metrics_tcr(0.0, 16), 0.0);
    EQ(metrics_tcr(0.0, 32), 0.0);        /* fp32 counts as the fp16 baseline        */
    EQ(metrics_compression_ratio(0.25, 4), 16.0 / 3.0);
    EQ(metrics_compression_ratio(0.5, 4), 8.0);
    EQ(metrics_compression_ratio(0.0, 16), 1.0);
    EQ(metrics_compression_ratio(0.25, 4), 1.0 / (1.0 - metrics_tcr(0.25, 4)));
    cr_assert(isinf(metrics_compression_ratio(1.0, 4)));
}

Test(metrics, retention_plain_and_chance_corrected) {
    double acc[2] = {0.6, 0.3}, dense[2] = {0.8, 0.4}, chance[2] = {0.5, 0.25};
    EQ(metrics_sr(acc, dense, 2), 0.75);                     /* (0.75 + 0.75) / 2             */
    /* (0.1 / 0.3 + 0.05 / 0.15) / 2 = 1/3. */
    EQ(metrics_sr_chance(acc, dense, chance, 2), 1.0 / 3.0);
    EQ(metrics_sr(dense, dense, 2), 1.0);
    EQ(metrics_sr_chance(dense, dense, chance, 2), 1.0);
    double at_chance[2] = {0.5, 0.4};
    cr_assert(isnan(metrics_sr_chance(acc, at_chance, chance, 2)), "dense at chance: nothing to retain");
    double zero[2] = {0.0, 0.4};
    cr_assert(isnan(metrics_sr(acc, zero, 2)));
    cr_assert(isnan(metrics_sr(acc, dense, 0)));
}

Test(metrics, srcr_recon_is_the_default_and_other_formulas_are_selected_by_name) {
    double v;
    err e = {0};
    cr_assert_str_eq(metrics_srcr_names[0], "recon");
    /* SrCr = Sr / (sqrt(1 - s) log2(q) / 4): the dense fp16 model keeps Sr. */
    cr_assert_eq(metrics_srcr(NULL, 0.9, 0.0, 16, &v, &e), 0, "%s", e.msg);
    EQ(v, 0.9);
    cr_assert_eq(metrics_srcr("", 0.9, 0.0, 16, &v, &e), 0);
    EQ(v, 0.9);
    cr_assert_eq(metrics_srcr("recon", 0.9, 0.75, 16, &v, &e), 0);
    EQ(v, 0.9 / 0.5);                                      /* pruning alone: Sr / sqrt(1 - s) */
    cr_assert_eq(metrics_srcr("recon", 0.9, 0.0, 4, &v, &e), 0);
    EQ(v, 1.8);                                            /* 4-bit: Sr * 4 / log2(4)         */
    cr_assert_eq(metrics_srcr("recon", 0.8, 0.25, 4, &v, &e), 0);
    EQ(v, 0.8 / (sqrt(0.75) * 0.5));
    cr_assert_eq(metrics_srcr("recon", 0.9, 0.0, 32, &v, &e), 0);
    EQ(v, 0.9);                                            /* fp32 counts as 16 bits          */
    cr_assert_eq(metrics_srcr("ratio", 0.9, 0.5, 4, &v, &e), 0);
    EQ(v, 0.9 * 8.0);
    cr_assert_eq(metrics_srcr("recon", 0.9, 0.0, 1, &v, &e), SPARQ_EINPUT, "log2(1) = 0: undefined");
    cr_assert(strstr(e.msg, "undefined"), "%s", e.msg);
    cr_assert_eq(metrics_srcr("recon", 0.9, 1.0, 4, &v, &e), SPARQ_EINPUT);
    cr_assert_eq(metrics_srcr("paper", 0.9, 0.0, 4, &v, &e), SPARQ_EINPUT);
    cr_assert(strstr(e.msg, "unknown SrCr formula 'paper'"), "%s", e.msg);
}
