/* Row softmax, greedy decoding (argmax with its probability) and top-p sampling. */
#include <math.h>
#include <stdlib.h>

#include "candidates.h"
#include "internal.h"
#include "vexp.h"

static int check_rows(const char* fn, int32_t rows, int32_t n, float temperature) {
    if (rows < 0 || n < 0) return ee_fail("%s: negative size", fn);
    if (!(temperature > 0.0f)) return ee_fail("%s: temperature %g is not positive", fn, temperature);
    return 0;
}

static void softmax_row(float* out, const float* x, int32_t n, float inv_t) {
    const double sum = ee_row_exp(out, x, n, ee_row_max(x, n), inv_t, 1.0f);
    const float inv_sum = (float)(1.0 / sum);
    for (int32_t j = 0; j < n; j++) out[j] *= inv_sum;
}

typedef struct {
    float* out;
    const float* x;
    int32_t n;
    float inv_t;
} softmax_job;

static void softmax_rows(void* ctx, int64_t r0, int64_t r1) {
    const softmax_job* j = ctx;
    for (int64_t r = r0; r < r1; r++) softmax_row(j->out + r * j->n, j->x + r * j->n, j->n, j->inv_t);
}

EE_API int32_t ee_softmax(float* out, const float* x, int32_t rows, int32_t n, float temperature) {
    if (check_rows("ee_softmax", rows, n, temperature)) return 1;
    if (rows == 0 || n == 0) return 0;
    if (!out || !x) return ee_fail("ee_softmax: null pointer");
    softmax_job job = {out, x, n, 1.0f / temperature};
    ee_parallel_range(ee_threads_for(20.0 * rows * n), rows, softmax_rows, &job);
    return 0;
}

static int row_has_nan(const float* x, int32_t n) {
    int nan = 0;
    for (int32_t j = 0; j < n; j++) nan |= x[j] != x[j];
    return nan;
}

static void argmax_row(int32_t* idx, float* max_prob, const float* x, int32_t n, float inv_t) {
    const int32_t best = (int32_t)ee_row_argmax(x, n); /* the lowest index wins ties */
    *idx = best;
    if (!max_prob) return;
    /* a row with a NaN or an infinite maximum has no probability: NaN (as on the GPU), never a confident 1 or inf;
     * the vector exp maps NaN to 0, so the sum alone cannot tell */
    *max_prob = !isfinite(x[best]) || row_has_nan(x, n) ? NAN : (float)(1.0 / ee_row_exp(0, x, n, x[best], inv_t, 1.0f));
}

typedef struct {
    int32_t* idx;
    float* max_prob;
    const float* logits;
    int32_t n;
    float inv_t;
} argmax_job;

static void argmax_rows(void* ctx, int64_t r0, int64_t r1) {
    const argmax_job* j = ctx;
    for (int64_t r = r0; r < r1; r++) argmax_row(j->idx + r, j->max_prob ? j->max_prob + r : 0, j->logits + r * j->n, j->n, j->inv_t);
}

EE_API int32_t ee_argmax(int32_t* idx, float* max_prob, const float* logits, int32_t rows, int32_t n, float temperature) {
    if (check_rows("ee_argmax", rows, n, temperature)) return 1;
    if (rows == 0) return 0;
    if (n == 0) return ee_fail("ee_argmax: empty rows");
    if (!idx || !logits) return ee_fail("ee_argmax: null pointer");
    argmax_job job = {idx, max_prob, logits, n, 1.0f / temperature};
    ee_parallel_range(ee_threads_for((max_prob ? 20.0 : 1.0) * rows * n), rows, argmax_rows, &job);
    return 0;
}

typedef struct {
    int32_t *groups, *counts;
    const float *scores, *radius, *scale;
    int32_t ld, n, group, max_groups;
} candidates_job;

/* floor = max_j (s_j - B_j) (candidates.h's B_j), then the groups of every j with s_j + B_j >= floor. The running
 * maxima side by side in the vector lanes (max is exact in any order); any non-finite score, radius or scale turns
 * `bad` into NaN. The second pass asks each group whole whether any of its scores reaches the floor (a vectorised OR, no
 * branch per score): a greedy decode step of 8 rows x 32,000 scores spent ~5% of its time in the branchy loop. */
EE_INLINE void candidates_row(const candidates_job* jb, int64_t r) {
    const float* s = jb->scores + r * jb->ld;
    const float* radius = jb->radius;
    const float scale = jb->scale[r];
    int32_t* groups = jb->groups + r * jb->max_groups;
    float floor = -INFINITY, bad = scale - scale;
#pragma omp simd reduction(max : floor) reduction(+ : bad)
    for (int32_t j = 0; j < jb->n; j++) {
        const float lo = s[j] - ee_candidate_bound(radius[j], scale);
        floor = lo > floor ? lo : floor;
        bad += lo - lo;
    }
    int32_t count = 0;
    for (int32_t g0 = 0; g0 < jb->n && bad == 0.0f; g0 += jb->group) {
        const int32_t g1 = ee_min(jb->n, g0 + jb->group);
        int hit = 0;
#pragma omp simd reduction(| : hit)
        for (int32_t i = g0; i < g1; i++) hit |= s[i] + ee_candidate_bound(radius[i], scale) >= floor;
        if (!hit) continue;
        if (count == jb->max_groups) {
            count = -1;
            break;
        }
        groups[count++] = g0 / jb->group;
    }
    jb->counts[r] = bad == 0.0f ? count : -1;
}

static void candidates_rows(void* ctx, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) candidates_row(ctx, r);
}

#if EE_X86
EE_AVX2 static void candidates_rows_avx2(void* ctx, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) candidates_row(ctx, r);
}
#endif

EE_API int32_t ee_argmax_candidates(int32_t* groups, int32_t* counts, const float* scores, int32_t ld, const float* radius, const float* scale, int32_t rows, int32_t n,
                                    int32_t group, int32_t max_groups) {
    if (ee_argmax_candidates_check(groups, counts, scores, ld, radius, scale, rows, n, group, max_groups)) return 1;
    if (rows == 0) return 0;
    candidates_job job = {groups, counts, scores, radius, scale, ld, n, group, max_groups};
    ee_range_fn kernel = candidates_rows;
#if EE_X86
    if (ee_cpu_get()->avx2) kernel = candidates_rows_avx2;
#endif
    ee_parallel_range(ee_threads_for(4.0 * rows * n), rows, kernel, &job);
    return 0;
}

/* ---- ee_max_prob_upper ------------------------------------------------------------------------------------------ */

typedef struct {
    float* upper;
    const float *scores, *radius, *scale;
    int32_t ld, n;
    float temperature;
} upper_job;

/* H = max_j (s_j + B_j), NaN where anything of the row is not finite (as candidates_row) */
EE_INLINE float upper_top(const upper_job* jb, const float* s, float scale) {
    float top = -INFINITY, bad = scale - scale;
#pragma omp simd reduction(max : top) reduction(+ : bad)
    for (int32_t j = 0; j < jb->n; j++) {
        const float hi = s[j] + ee_candidate_bound(jb->radius[j], scale);
        top = hi > top ? hi : top;
        bad += hi - hi;
    }
    return bad == 0.0f ? top : NAN;
}

static double upper_sum_scalar(const upper_job* jb, const float* s, float scale, float top, float inv_t) {
    double sum = 0.0;
    for (int32_t j = 0; j < jb->n; j++) sum += expf((s[j] - ee_candidate_bound(jb->radius[j], scale) - top) * inv_t);
    return sum;
}

#if EE_X86
EE_AVX2 static double upper_sum_avx2(const upper_job* jb, const float* s, float scale, float top, float inv_t) {
    const __m256 vscale = _mm256_set1_ps(scale), tiny = _mm256_set1_ps(1e-30f), vtop = _mm256_set1_ps(top), vinv = _mm256_set1_ps(inv_t);
    __m256d sum = _mm256_setzero_pd();
    int32_t j = 0;
    for (; j + 8 <= jb->n; j += 8) {
        const __m256 bound = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(jb->radius + j), vscale), tiny);
        const __m256 e = exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(s + j), bound), vtop), vinv));
        sum = _mm256_add_pd(sum, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(e)), _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1))));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, sum);
    double total = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    for (; j < jb->n; j++) total += expf((s[j] - ee_candidate_bound(jb->radius[j], scale) - top) * inv_t);
    return total;
}

EE_AVX512 static double upper_sum_avx512(const upper_job* jb, const float* s, float scale, float top, float inv_t) {
    const __m512 vscale = _mm512_set1_ps(scale), tiny = _mm512_set1_ps(1e-30f), vtop = _mm512_set1_ps(top), vinv = _mm512_set1_ps(inv_t);
    __m512d sum = _mm512_setzero_pd();
    for (int32_t j = 0; j < jb->n; j += 16) {
        const __mmask16 mask = jb->n - j >= 16 ? 0xffff : (__mmask16)((1u << (jb->n - j)) - 1);
        const __m512 bound = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, jb->radius + j), vscale), tiny);
        const __m512 x = _mm512_mul_ps(_mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, s + j), bound), vtop), vinv);
        const __m512 e = _mm512_maskz_mov_ps(mask, exp16(x));
        sum = _mm512_add_pd(sum, _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(e)), _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)))));
    }
    return _mm512_reduce_add_pd(sum);
}
#endif

static void upper_rows(void* ctx, int64_t r0, int64_t r1) {
    const upper_job* jb = ctx;
    for (int64_t r = r0; r < r1; r++) {
        const float* s = jb->scores + r * jb->ld;
        const float scale = jb->scale[r], top = upper_top(jb, s, scale), inv_t = 1.0f / jb->temperature;
        if (top != top) { /* NaN: not finite */
            jb->upper[r] = INFINITY;
            continue;
        }
        double sum;
#if EE_X86
        const ee_cpu* cpu = ee_cpu_get();
        if (cpu->avx512) sum = upper_sum_avx512(jb, s, scale, top, inv_t);
        else if (cpu->avx2) sum = upper_sum_avx2(jb, s, scale, top, inv_t);
        else
#endif
            sum = upper_sum_scalar(jb, s, scale, top, inv_t);
        jb->upper[r] = ee_max_prob_upper_of(sum, top, jb->temperature);
    }
}

EE_API int32_t ee_max_prob_upper(float* upper, const float* scores, int32_t ld, const float* radius, const float* scale, int32_t rows, int32_t n, float temperature) {
    if (ee_max_prob_upper_check(upper, scores, ld, radius, scale, rows, n, temperature)) return 1;
    if (rows == 0) return 0;
    upper_job job = {upper, scores, radius, scale, ld, n, temperature};
    ee_parallel_range(ee_threads_for(8.0 * rows * n), rows, upper_rows, &job);
    return 0;
}

/*
 * Candidates are sorted as 64-bit keys: ~bits(p) in the high half (non-negative floats order like their bits, so
 * larger probabilities come first) and the index in the low half. Keys are built in index order and the LSD radix
 * sort on the high half is stable, so ties keep the lower index first. Returns keys or tmp, whichever ends sorted.
 */
static uint64_t* sort_by_probability(uint64_t* keys, uint64_t* tmp, int32_t n) {
    for (int shift = 32; shift < 64; shift += 8) {
        int32_t start[257] = {0};
        for (int32_t i = 0; i < n; i++) start[((keys[i] >> shift) & 255) + 1]++;
        if (start[((keys[0] >> shift) & 255) + 1] == n) continue; /* one digit value: nothing moves */
        for (int d = 0; d < 256; d++) start[d + 1] += start[d];
        for (int32_t i = 0; i < n; i++) tmp[start[(keys[i] >> shift) & 255]++] = keys[i];
        uint64_t* t = keys;
        keys = tmp;
        tmp = t;
    }
    return keys;
}

/* keys, tmp and probs: n elements of scratch each */
static int32_t sample_row(uint64_t* keys, uint64_t* tmp, float* probs, const float* x, int32_t n, float inv_t, float top_p, float u) {
    softmax_row(probs, x, n, inv_t);
    /* A token with p < (1 - top_p) / (n - 1) can never be in the nucleus unless it is the first in sorted order
     * (everything from it on sums to less than 1 - top_p), so only candidates above that cutoff, which is capped at
     * the max probability, need sorting (llama2.c's trick). */
    float cutoff = top_p < 1.0f && n > 1 ? fminf((1.0f - top_p) / (float)(n - 1), ee_row_max(probs, n)) : 0.0f;
    int32_t count = 0;
    for (int32_t j = 0; j < n; j++)
        if (probs[j] >= cutoff) keys[count++] = (uint64_t)(~ee_f32_bits(probs[j])) << 32 | (uint32_t)j;
    keys = sort_by_probability(keys, tmp, count);
    /* the nucleus: the shortest sorted prefix whose mass reaches top_p */
    int32_t kept = count;
    double mass = 0.0;
    for (int32_t i = 0; i < count; i++) {
        mass += probs[(uint32_t)keys[i]];
        if (mass >= top_p && top_p < 1.0f) { /* top_p >= 1 keeps all, whatever the rounding of the sum */
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

typedef struct {
    int32_t* out;
    uint64_t *keys, *tmp;
    float* probs;
    const float *logits, *uniforms;
    int32_t n;
    float inv_t, top_p;
} sample_job;

static void sample_rows(void* ctx, int64_t r0, int64_t r1) {
    const sample_job* j = ctx;
    for (int64_t r = r0; r < r1; r++)
        j->out[r] = sample_row(j->keys + r * j->n, j->tmp + r * j->n, j->probs + r * j->n, j->logits + r * j->n, j->n, j->inv_t, j->top_p, j->uniforms[r]);
}

EE_API int32_t ee_sample_top_p(int32_t* out, const float* logits, const float* uniforms, int32_t rows, int32_t n, float temperature, float top_p) {
    if (check_rows("ee_sample_top_p", rows, n, temperature)) return 1;
    if (rows == 0) return 0;
    if (n == 0) return ee_fail("ee_sample_top_p: empty rows");
    if (!out || !logits || !uniforms) return ee_fail("ee_sample_top_p: null pointer");
    /* two key buffers and the probabilities for each row (rows are few: this is decoding) */
    uint64_t* keys = malloc((size_t)rows * n * (2 * sizeof(uint64_t) + sizeof(float)));
    if (!keys) return ee_fail("ee_sample_top_p: out of memory");
    uint64_t* tmp = keys + (size_t)rows * n;
    float* probs = (float*)(tmp + (size_t)rows * n);
    sample_job job = {out, keys, tmp, probs, logits, uniforms, n, 1.0f / temperature, top_p};
    ee_parallel_range(ee_threads_for(40.0 * rows * n), rows, sample_rows, &job);
    free(keys);
    return 0;
}
