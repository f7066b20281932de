/*
 * Time per call of ee_attention_fwd / ee_attention_bwd on the training shapes (dense batch x seq) and decode shapes
 * (a few rows, each its own sequence, against cached positions, GQA; or, as in an early-exit pass where a pending row
 * joins the newest one, consecutive rows of one sequence). Best of interleaved trials.
 * Usage: attnbench [threads]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <math.h>

#include "eetune/eetune.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static float* randn(size_t n, unsigned* seed) {
    float* x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1103515245u + 12345u;
        x[i] = ((*seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    return x;
}

typedef struct {
    const char* name;
    int batch, seq, heads, kv, hd, decode_rows, cached, one_seq;
} shape;

int main(int argc, char** argv) {
    int threads = ee_set_num_threads(argc > 1 ? atoi(argv[1]) : 1);
    printf("features %d, threads %d\n", ee_features(), threads);
    const shape shapes[] = {
        {"train B8 T256 H4 hd32", 8, 256, 4, 4, 32, 0, 0},
        {"train B8 T256 H6 hd48", 8, 256, 6, 6, 48, 0, 0},
        {"decode 1 row, 512 pos, H8 KV4 hd64", 0, 0, 8, 4, 64, 1, 512},
        {"decode 8 rows, 512 pos, H8 KV4 hd64", 0, 0, 8, 4, 64, 8, 512},
        {"decode 1 row, 201 pos, H8 KV4 hd8", 0, 0, 8, 4, 8, 1, 201},          /* stories260K */
        {"2 rows of 1 seq, 201 pos, H8 KV4 hd8", 0, 0, 8, 4, 8, 2, 201, 1},   /* its early-exit pass */
        {"2 rows of 1 seq, 201 pos, H6 KV6 hd48", 0, 0, 6, 6, 48, 2, 201, 1}, /* the 15M config's */
        {"decode 8 rows, 201 pos, H6 KV6 hd48", 0, 0, 6, 6, 48, 8, 201},      /* the 15M config at batch 8 */
        {"decode 8 rows, 201 pos, H12 KV12 hd64", 0, 0, 12, 12, 64, 8, 201}, /* the 110M config at batch 8 */
    };
    unsigned seed = 1;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const shape* s = &shapes[si];
        const int dense = s->decode_rows == 0;
        const int rows = dense ? s->batch * s->seq : s->decode_rows, n_seq = dense ? s->batch : s->one_seq ? 1 : s->decode_rows;
        const int max_len = dense ? s->seq : s->cached;
        const size_t qw = (size_t)s->heads * s->hd, kw = (size_t)s->kv * s->hd;
        float *q = randn(rows * qw, &seed), *k = randn((size_t)n_seq * max_len * kw, &seed), *v = randn((size_t)n_seq * max_len * kw, &seed);
        float *g = randn(rows * qw, &seed), *out = calloc(rows * qw, 4), *lse = calloc((size_t)rows * s->heads, 4);
        float *dq = calloc(rows * qw, 4), *dk = calloc((size_t)n_seq * max_len * kw, 4), *dv = calloc((size_t)n_seq * max_len * kw, 4);
        int32_t *seq = malloc(rows * 4), *pos = malloc(rows * 4);
        for (int r = 0; r < rows; r++) seq[r] = dense ? r / s->seq : s->one_seq ? 0 : r, pos[r] = dense ? r % s->seq : max_len - 1 - (s->one_seq ? r : 0);
        const float scale = 1.0f / sqrtf((float)s->hd);
        double flops = 0;
        for (int r = 0; r < rows; r++) flops += 4.0 * (pos[r] + 1) * qw;
        double best_f = 1e30, best_b = 1e30;
        const int reps = (int)(2e8 / flops) + 1;
        for (int trial = 0; trial < 7; trial++) {
            double t = now();
            for (int i = 0; i < reps; i++) ee_attention_fwd(out, lse, q, k, v, seq, pos, rows, s->heads, s->kv, s->hd, n_seq, max_len, scale);
            t = (now() - t) / reps;
            best_f = t < best_f ? t : best_f;
            if (dense) {
                t = now();
                for (int i = 0; i < reps; i++) ee_attention_bwd(dq, dk, dv, g, out, lse, q, k, v, s->batch, s->seq, s->heads, s->kv, s->hd, scale);
                t = (now() - t) / reps;
                best_b = t < best_b ? t : best_b;
            }
        }
        printf("%-38s fwd %9.1f us (%6.1f GFLOP/s)", s->name, best_f * 1e6, flops / best_f / 1e9);
        if (dense) printf("   bwd %9.1f us (%6.1f GFLOP/s)", best_b * 1e6, 2.5 * flops / best_b / 1e9);
        printf("\n");
        free(q), free(k), free(v), free(g), free(out), free(lse), free(dq), free(dk), free(dv), free(seq), free(pos);
    }
    return 0;
}
