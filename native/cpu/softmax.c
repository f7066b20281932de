/* Row softmax, greedy decoding (argmax with its probability) and top-p sampling. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "internal.h"

static int check_rows(const char* fn, int32_t rows, int32_t n, float temperature) {
    if (rows < 0 || n < 0) return ee_fail("%s: negative size", fn);
    if (!(temperature > 0.0f)) return ee_fail("%s: temperature %g is not positive", fn, temperature);
    return 0;
}

EE_API int32_t ee_softmax(float* out, const float* x, int32_t rows, int32_t n, float temperature) {
    if (check_rows("ee_softmax", rows, n, temperature)) return 1;
    if (rows == 0 || n == 0) return 0;
    if (!out || !x) return ee_fail("ee_softmax: null pointer");
    const float inv_t = 1.0f / temperature;
#pragma omp parallel for num_threads(ee_threads_for(20.0 * rows * n)) schedule(static)
    for (int32_t r = 0; r < rows; r++) {
        const float* xr = x + (size_t)r * n;
        float* o = out + (size_t)r * n;
        float mx = xr[0];
        for (int32_t j = 1; j < n; j++) mx = xr[j] > mx ? xr[j] : mx;
        double sum = 0.0;
        for (int32_t j = 0; j < n; j++) {
            o[j] = expf((xr[j] - mx) * inv_t);
            sum += o[j];
        }
        float inv_sum = (float)(1.0 / sum);
        for (int32_t j = 0; j < n; j++) o[j] *= inv_sum;
    }
    return 0;
}

EE_API int32_t ee_argmax(int32_t* idx, float* max_prob, const float* logits, int32_t rows, int32_t n, float temperature) {
    if (check_rows("ee_argmax", rows, n, temperature)) return 1;
    if (rows == 0) return 0;
    if (n == 0) return ee_fail("ee_argmax: empty rows");
    if (!idx || !logits) return ee_fail("ee_argmax: null pointer");
    const float inv_t = 1.0f / temperature;
#pragma omp parallel for num_threads(ee_threads_for((max_prob ? 20.0 : 1.0) * rows * n)) schedule(static)
    for (int32_t r = 0; r < rows; r++) {
        const float* xr = logits + (size_t)r * n;
        int32_t best = 0;
        for (int32_t j = 1; j < n; j++)
            if (xr[j] > xr[best]) best = j; /* strict: the lowest index wins ties */
        idx[r] = best;
        if (max_prob) {
            double sum = 0.0;
            for (int32_t j = 0; j < n; j++) sum += expf((xr[j] - xr[best]) * inv_t);
            max_prob[r] = (float)(1.0 / sum);
        }
    }
    return 0;
}

/*
 * Sort key of one token: probability descending, then index ascending. Non-negative floats order like their bits,
 * so ~bits in the high half sorts larger probabilities first and the index in the low half breaks ties.
 */
static int cmp_u64(const void* a, const void* b) {
    uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
    return (x > y) - (x < y);
}

static int32_t sample_row(uint64_t* keys, float* probs, const float* xr, int32_t n, float inv_t, float top_p, float u) {
    float mx = xr[0];
    for (int32_t j = 1; j < n; j++) mx = xr[j] > mx ? xr[j] : mx;
    double sum = 0.0;
    for (int32_t j = 0; j < n; j++) {
        probs[j] = expf((xr[j] - mx) * inv_t);
        sum += probs[j];
    }
    float inv_sum = (float)(1.0 / sum);
    for (int32_t j = 0; j < n; j++) probs[j] *= inv_sum;
    /* A token with p < (1 - top_p) / (n - 1) can never be in the nucleus (everything after it in sorted order sums
     * to less than 1 - top_p), so only the candidates above that cutoff need sorting (llama2.c's trick). */
    float cutoff = top_p < 1.0f && n > 1 ? (1.0f - top_p) / (float)(n - 1) : 0.0f;
    int32_t count = 0;
    for (int32_t j = 0; j < n; j++)
        if (probs[j] >= cutoff) keys[count++] = (uint64_t)(~ee_f32_bits(probs[j])) << 32 | (uint32_t)j;
    qsort(keys, (size_t)count, sizeof *keys, cmp_u64);
    /* the nucleus: the shortest sorted prefix whose mass reaches top_p */
    int32_t kept = count;
    double mass = 0.0;
    for (int32_t i = 0; i < count; i++) {
        mass += probs[(uint32_t)keys[i]];
        if (mass >= top_p) {
            kept = i + 1;
            break;
        }
    }
    double target = (double)u * mass, cdf = 0.0;
    for (int32_t i = 0; i < kept; i++) {
        cdf += probs[(uint32_t)keys[i]];
        if (cdf > target) return (int32_t)(uint32_t)keys[i];
    }
    return (int32_t)(uint32_t)keys[kept - 1]; /* rounding left u * mass at the very end */
}

EE_API int32_t ee_sample_top_p(int32_t* out, const float* logits, const float* uniforms, int32_t rows, int32_t n, float temperature, float top_p) {
    if (check_rows("ee_sample_top_p", rows, n, temperature)) return 1;
    if (rows == 0) return 0;
    if (n == 0) return ee_fail("ee_sample_top_p: empty rows");
    if (!out || !logits || !uniforms) return ee_fail("ee_sample_top_p: null pointer");
    int nt = ee_threads_for(40.0 * rows * n);
    nt = ee_min(nt, rows);
    /* per-thread sort keys and probabilities */
    char* buf = malloc((size_t)nt * n * (sizeof(uint64_t) + sizeof(float)));
    if (!buf) return ee_fail("ee_sample_top_p: out of memory");
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num();
        uint64_t* keys = (uint64_t*)buf + (size_t)t * n;
        float* probs = (float*)((uint64_t*)buf + (size_t)nt * n) + (size_t)t * n;
#pragma omp for schedule(static)
        for (int32_t r = 0; r < rows; r++)
            out[r] = sample_row(keys, probs, logits + (size_t)r * n, n, 1.0f / temperature, top_p, uniforms[r]);
    }
    free(buf);
    return 0;
}
