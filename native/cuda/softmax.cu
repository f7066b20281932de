/*
 * Row softmax, greedy decoding (argmax with its probability) and top-p sampling: one block per row, row sums in
 * double as in the CPU library, fixed-order reductions (deterministic).
 */
#include "candidates.h"
#include "common.cuh"

#define THREADS 256

static int check_rows(const char* fn, int32_t rows, int32_t n, float temperature) {
    if (rows < 0 || n < 0) return ee_fail("%s: negative size", fn);
    if (!(temperature > 0.0f)) return ee_fail("%s: temperature %g is not positive", fn, temperature);
    return 0;
}

__device__ float row_max(const float* x, int n, float* shared) {
    float m = -INFINITY;
    for (int j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, x[j]);
    return ee_block_max(m, shared);
}

/* p = softmax(x * inv_t) of one row, by the whole block; p may alias x (each element is read and written by one
 * thread, after the max). */
__device__ void row_softmax(float* p, const float* x, int n, float inv_t, float* fshared, double* dshared) {
    const float mx = row_max(x, n, fshared);
    double sum = 0.0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        float e = expf((x[j] - mx) * inv_t);
        p[j] = e;
        sum += e;
    }
    sum = ee_block_sum(sum, dshared);
    const float inv_sum = (float)(1.0 / sum);
    for (int j = threadIdx.x; j < n; j += blockDim.x) p[j] *= inv_sum;
}

/* out = softmax(x / T); out may alias x. */
__global__ void softmax_kernel(float* out, const float* x, int n, float inv_t) {
    __shared__ float fshared[32];
    __shared__ double dshared[32];
    row_softmax(out + (int64_t)blockIdx.x * n, x + (int64_t)blockIdx.x * n, n, inv_t, fshared, dshared);
}

EE_API int32_t ee_softmax(float* out, const float* x, int32_t rows, int32_t n, float temperature) {
    if (check_rows("ee_softmax", rows, n, temperature)) return 1;
    if (rows == 0 || n == 0) return 0;
    if (!out || !x) return ee_fail("ee_softmax: null pointer");
    softmax_kernel<<<rows, THREADS, 0, ee_stream()>>>(out, x, n, 1.0f / temperature);
    return ee_launched("ee_softmax");
}

/* idx = first maximum; max_prob = 1 / sum exp((x - max) / T). */
__global__ void argmax_kernel(int32_t* idx, float* max_prob, const float* logits, int n, float inv_t) {
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ double dshared[32];
    const float* xr = logits + (int64_t)blockIdx.x * n;
    float best = -INFINITY;
    int at = 0x7fffffff;
    for (int j = threadIdx.x; j < n; j += blockDim.x) ee_argmax_merge(best, at, xr[j], j);
    ee_block_argmax(best, at, sv, si);
    if (at == 0x7fffffff) at = 0; /* a row of NaN */
    if (threadIdx.x == 0) idx[blockIdx.x] = at;
    if (!max_prob) return;
    const float mx = xr[at];
    double sum = 0.0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) sum += expf((xr[j] - mx) * inv_t);
    sum = ee_block_sum(sum, dshared);
    if (threadIdx.x == 0) max_prob[blockIdx.x] = (float)(1.0 / sum);
}

EE_API int32_t ee_argmax(int32_t* idx, float* max_prob, const float* logits, int32_t rows, int32_t n, float temperature) {
    if (check_rows("ee_argmax", rows, n, temperature)) return 1;
    if (rows == 0) return 0;
    if (n == 0) return ee_fail("ee_argmax: empty rows");
    if (!idx || !logits) return ee_fail("ee_argmax: null pointer");
    argmax_kernel<<<rows, THREADS, 0, ee_stream()>>>(idx, max_prob, logits, n, 1.0f / temperature);
    return ee_launched("ee_argmax");
}

/* Whether group g holds a j with s_j + B_j >= floor */
__device__ __forceinline__ bool group_has_candidate(const float* s, const float* radius, float sc, float floor, int n, int group, int g) {
    for (int j = g * group; j < min(n, (g + 1) * group); j++)
        if (s[j] + ee_candidate_bound(radius[j], sc) >= floor) return true;
    return false;
}

/* The twin of cpu/softmax.c's ee_argmax_candidates: one block per row. floor and the row's finiteness by block
 * reductions; then each thread takes a contiguous run of groups, counts its candidate groups, and a serial scan of
 * the counts (thread 0) gives each its place, so the groups come out in increasing order. */
__global__ void argmax_candidates_kernel(int32_t* groups, int32_t* counts, const float* scores, int ld, const float* radius, const float* scale, int n, int group,
                                         int max_groups) {
    __shared__ float fshared[32];
    __shared__ int start[THREADS + 1];
    const float* s = scores + (int64_t)blockIdx.x * ld;
    const float sc = scale[blockIdx.x];
    float floor = -INFINITY, bad = sc - sc;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const float lo = s[j] - ee_candidate_bound(radius[j], sc);
        floor = lo > floor ? lo : floor;
        bad += lo - lo;
    }
    floor = ee_block_max(floor, fshared);
    bad = ee_block_sum(bad, fshared);
    if (bad != 0.0f) { /* NaN */
        if (threadIdx.x == 0) counts[blockIdx.x] = -1;
        return;
    }
    const int n_groups = (n + group - 1) / group, g0 = (int)((int64_t)n_groups * threadIdx.x / blockDim.x),
              g1 = (int)((int64_t)n_groups * (threadIdx.x + 1) / blockDim.x);
    int mine = 0;
    for (int g = g0; g < g1; g++) mine += group_has_candidate(s, radius, sc, floor, n, group, g);
    start[threadIdx.x + 1] = mine;
    __syncthreads();
    if (threadIdx.x == 0) {
        start[0] = 0;
        for (int t = 0; t < blockDim.x; t++) start[t + 1] += start[t];
        counts[blockIdx.x] = start[blockDim.x] > max_groups ? -1 : start[blockDim.x];
    }
    __syncthreads();
    if (start[blockDim.x] > max_groups) return;
    int32_t* out = groups + (int64_t)blockIdx.x * max_groups + start[threadIdx.x];
    for (int g = g0; g < g1; g++)
        if (group_has_candidate(s, radius, sc, floor, n, group, g)) *out++ = g;
}

EE_API int32_t ee_argmax_candidates(int32_t* groups, int32_t* counts, const float* scores, int32_t ld, const float* radius, const float* scale, int32_t rows, int32_t n,
                                    int32_t group, int32_t max_groups) {
    if (ee_argmax_candidates_check(groups, counts, scores, ld, radius, scale, rows, n, group, max_groups)) return 1;
    if (rows == 0) return 0;
    argmax_candidates_kernel<<<rows, THREADS, 0, ee_stream()>>>(groups, counts, scores, ld, radius, scale, n, group, max_groups);
    return ee_launched("ee_argmax_candidates");
}

/* The twin of cpu/softmax.c's ee_max_prob_upper: one block per row, H and the finiteness by block reductions, the
 * exponentials summed in double per thread and by a block reduction (another order than the CPU's: both are bounds). */
__global__ void max_prob_upper_kernel(float* upper, const float* scores, int ld, const float* radius, const float* scale, int n, float temperature) {
    __shared__ float fshared[32];
    __shared__ double dshared[32];
    const float* s = scores + (int64_t)blockIdx.x * ld;
    const float sc = scale[blockIdx.x], inv_t = 1.0f / temperature;
    float top = -INFINITY, bad = sc - sc;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const float hi = s[j] + ee_candidate_bound(radius[j], sc);
        top = hi > top ? hi : top;
        bad += hi - hi;
    }
    top = ee_block_max(top, fshared);
    bad = ee_block_sum(bad, fshared);
    if (bad != 0.0f) { /* NaN */
        if (threadIdx.x == 0) upper[blockIdx.x] = INFINITY;
        return;
    }
    double sum = 0.0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) sum += expf((s[j] - ee_candidate_bound(radius[j], sc) - top) * inv_t);
    sum = ee_block_sum(sum, dshared);
    if (threadIdx.x == 0) upper[blockIdx.x] = ee_max_prob_upper_of(sum, top, temperature);
}

EE_API int32_t ee_max_prob_upper(float* upper, const float* scores, int32_t ld, const float* radius, const float* scale, int32_t rows, int32_t n, float temperature) {
    if (ee_max_prob_upper_check(upper, scores, ld, radius, scale, rows, n, temperature)) return 1;
    if (rows == 0) return 0;
    max_prob_upper_kernel<<<rows, THREADS, 0, ee_stream()>>>(upper, scores, ld, radius, scale, n, temperature);
    return ee_launched("ee_max_prob_upper");
}

/* ---- top-p sampling ----------------------------------------------------------------------------------------------
 * The sorted order (probability descending, index ascending) is never materialised. Non-negative floats order like
 * their bit patterns, so with M(v) = sum of p over tokens whose bits are >= v, everything is a search over v:
 *   nucleus:  v* = the largest v with M(v) >= top_p; tokens above v* are kept, and of the tokens equal to v* the
 *             first c in index order, c the fewest that bring the mass to top_p; K = the kept mass;
 *   sample:   w* = the largest w with kept-mass(>= w) > u K; the pick is the j-th token (index order) equal to w*,
 *             j from the mass above w*.
 * Each step of a search is one block-wide sum over the row: about 62 passes over probabilities kept in scratch. */

#define SAMPLE_THREADS 1024

__device__ double mass_at_least(const float* p, int n, uint32_t v, double* shared) {
    double s = 0.0;
    for (int j = threadIdx.x; j < n; j += blockDim.x)
        if (__float_as_uint(p[j]) >= v) s += p[j];
    return ee_block_sum(s, shared);
}

__device__ int count_equal(const float* p, int n, uint32_t v, int* shared) {
    int c = 0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) c += __float_as_uint(p[j]) == v;
    return ee_block_sum(c, shared);
}

/* Index of the k-th (0-based) token, in index order, whose bits equal v (k < their count). Each thread scans a
 * contiguous segment; an exclusive scan of the per-thread counts finds the segment that holds it. */
__device__ int kth_equal(const float* p, int n, uint32_t v, int k, int* counts) {
    const int seg = (n + blockDim.x - 1) / blockDim.x, lo = min(n, (int)threadIdx.x * seg), hi = min(n, lo + seg);
    int c = 0;
    for (int j = lo; j < hi; j++) c += __float_as_uint(p[j]) == v;
    __syncthreads();
    counts[threadIdx.x] = c;
    __syncthreads();
    if (threadIdx.x == 0) { /* serial exclusive scan over 1024 counts: cheap next to the passes over the row */
        int run = 0;
        for (int t = 0; t < (int)blockDim.x; t++) {
            int ct = counts[t];
            counts[t] = run;
            run += ct;
        }
    }
    __syncthreads();
    int before = counts[threadIdx.x];
    __shared__ int found;
    if (threadIdx.x == 0) found = -1;
    __syncthreads();
    if (k >= before && k < before + c) {
        int seen = before;
        for (int j = lo; j < hi; j++) {
            if (__float_as_uint(p[j]) == v) {
                if (seen == k) {
                    found = j;
                    break;
                }
                seen++;
            }
        }
    }
    __syncthreads();
    return found;
}

__global__ void __launch_bounds__(SAMPLE_THREADS) sample_top_p_kernel(int32_t* out, float* probs, const float* logits, const float* uniforms, int n, float inv_t, float top_p) {
    __shared__ float fshared[32];
    __shared__ double dshared[32];
    __shared__ int ishared[SAMPLE_THREADS];
    float* p = probs + (int64_t)blockIdx.x * n;
    row_softmax(p, logits + (int64_t)blockIdx.x * n, n, inv_t, fshared, dshared);
    __syncthreads();
    const uint32_t TOP = 0x7f800001u; /* above every finite probability: M(TOP) = 0 */

    /* the nucleus: cut value v*, c tokens kept at v*, kept mass K */
    uint32_t vstar = 0;
    int ties_kept;
    double kept;
    const double total = mass_at_least(p, n, 0, dshared);
    if (top_p >= 1.0f || total < (double)top_p) { /* keep everything: v* is the smallest probability */
        float mn = INFINITY;
        for (int j = threadIdx.x; j < n; j += blockDim.x) mn = fminf(mn, p[j]);
        mn = -ee_block_max(-mn, fshared);
        vstar = __float_as_uint(fabsf(mn));
        ties_kept = count_equal(p, n, vstar, ishared);
        kept = total;
    } else {
        uint32_t lo = 0, hi = TOP; /* M(lo) >= top_p > M(hi) */
        while (hi - lo > 1) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (mass_at_least(p, n, mid, dshared) >= (double)top_p) lo = mid;
            else hi = mid;
        }
        vstar = lo;
        const double above = mass_at_least(p, n, vstar + 1, dshared);
        const int ties = count_equal(p, n, vstar, ishared);
        const double val = (double)__uint_as_float(vstar);
        int c = val > 0.0 ? (int)ceil(((double)top_p - above) / val) : ties;
        ties_kept = max(1, min(c, ties));
        kept = above + ties_kept * val;
    }

    /* the sample: w* and the tie rank j there */
    const double target = (double)uniforms[blockIdx.x] * kept;
    uint32_t wstar = vstar;
    int rank;
    if (!(kept > target)) { /* u * K rounded to K: the last kept token */
        rank = ties_kept - 1;
    } else {
        uint32_t lo = vstar, hi = TOP; /* kept-mass(>= lo) > target >= kept-mass(>= hi) */
        while (hi - lo > 1) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (mass_at_least(p, n, mid, dshared) > target) lo = mid; /* mid > v*: kept-mass = M */
            else hi = mid;
        }
        wstar = lo;
        const double above = mass_at_least(p, n, wstar + 1, dshared);
        const double val = (double)__uint_as_float(wstar);
        const int ties = wstar == vstar ? ties_kept : count_equal(p, n, wstar, ishared);
        int j = val > 0.0 ? (int)floor((target - above) / val) : 0;
        rank = max(0, min(j, ties - 1));
    }
    int pick = kth_equal(p, n, wstar, rank, ishared);
    if (threadIdx.x == 0) out[blockIdx.x] = pick >= 0 ? pick : 0;
}

EE_API int32_t ee_sample_top_p(int32_t* out, const float* logits, const float* uniforms, int32_t rows, int32_t n, float temperature, float top_p) {
    if (check_rows("ee_sample_top_p", rows, n, temperature)) return 1;
    if (rows == 0) return 0;
    if (n == 0) return ee_fail("ee_sample_top_p: empty rows");
    if (!out || !logits || !uniforms) return ee_fail("ee_sample_top_p: null pointer");
    ee_op_lock lock;
    float* probs = (float*)ee_scratch(EE_SCRATCH_SAMPLE, (size_t)rows * n * sizeof(float));
    if (!probs) return 1;
    sample_top_p_kernel<<<rows, SAMPLE_THREADS, 0, ee_stream()>>>(out, probs, logits, uniforms, n, 1.0f / temperature, top_p);
    return ee_launched("ee_sample_top_p");
}
