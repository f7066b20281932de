/*
 * eecuda_check: the native device check of libeecuda, needing no JDK.
 *
 *   eecuda_check check    CUDA_LIB [CPU_LIB]   every kernel on fresh random inputs (odd sizes), outputs poisoned with
 *                                              NaN first, compared with libeecpu (the reference) when given
 *   eecuda_check sanitize CUDA_LIB [CPU_LIB]   the same on small shapes: run it under compute-sanitizer
 *   eecuda_check bench    CUDA_LIB             one table of timings (GEMM, decode GEMM bandwidth, attention, fused
 *                                              cross-entropy, copy bandwidth, launch cost)
 *
 * Both libraries export the same ee_* names, so each is dlopen'ed with RTLD_LOCAL and called through its own table.
 * Host code only (it calls the kernels through the ABI); timings synchronise with ee_synchronize around batches.
 * Prints one PASS/FAIL line per check and exits non-zero when any check failed.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "eetune/eetune.h"

#define EE_FUNCS(X)                                                                                                 \
    X(ee_abi_version) X(ee_noop) X(ee_last_error) X(ee_features) X(ee_device_count) X(ee_set_gemm_path) X(ee_set_num_threads) \
    X(ee_synchronize) X(ee_alloc) X(ee_free) X(ee_copy) X(ee_fill_bytes) X(ee_cast) X(ee_add) X(ee_axpby)            \
    X(ee_add_bias) X(ee_scale) X(ee_sum_squares) X(ee_embedding_fwd) X(ee_embedding_bwd) X(ee_rmsnorm_fwd)          \
    X(ee_rmsnorm_bwd) X(ee_gemm) X(ee_panels_size) X(ee_pack_panels) X(ee_pack_panels_bf16) X(ee_pack_panels_f16) X(ee_panels_i8_bytes) X(ee_pack_panels_i8) X(ee_rope) X(ee_attention_fwd) X(ee_attention_bwd) X(ee_kv_write)                 \
    X(ee_gather_rows) X(ee_swiglu_fwd) X(ee_swiglu_bwd) X(ee_softmax) X(ee_argmax) X(ee_sample_top_p)             \
    X(ee_linear_cross_entropy) X(ee_adamw) X(ee_decoder_layer_fwd) X(ee_decoder_layers_fwd) X(ee_feed_forward_fwd) X(ee_gate_score) X(ee_argmax_candidates) X(ee_max_prob_upper) X(ee_decode_steps) X(ee_exit_steps)

struct Api {
#define DECL(f) decltype(&::f) f;
    EE_FUNCS(DECL)
#undef DECL
    const char* name;
    bool ok;
};

/* A library that loads but lacks a function is another build (a stale reference compares nothing): *stale is set. */
static bool load(Api& api, const char* path, const char* name, bool* stale = nullptr) {
    api.name = name;
    api.ok = false;
    void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("cannot load %s: %s\n", path, dlerror());
        return false;
    }
#define LOAD(f)                                                    \
    api.f = (decltype(api.f))dlsym(h, #f);                         \
    if (!api.f) {                                                  \
        printf("%s lacks %s\n", path, #f);                         \
        if (stale) *stale = true;                                  \
        return false;                                              \
    }
    EE_FUNCS(LOAD)
#undef LOAD
    api.ok = true;
    return true;
}

static Api gpu, cpu;
static const char* gpu_path; /* libeecuda's file, for the emulation's launch counter */
static bool have_cpu;
static int failures, passes;
static std::mt19937_64 rng;

static void die_if(int rc, const Api& api, const char* what) {
    if (rc) {
        printf("FAIL %s: %s returned %d: %s\n", what, api.name, rc, api.ee_last_error());
        failures++;
    }
}

/* Launches (kernels, device copies, cuBLAS GEMMs) so far, when libeecuda is the CPU emulation (test/emu counts
 * them; the fake cuBLAS counts its GEMMs); -1 on a real GPU. */
static long long emulated_launches() {
    void* h = dlopen(gpu_path, RTLD_NOW | RTLD_NOLOAD);
    auto kernels = h ? (long long (*)(void))dlsym(h, "ee_emu_launches") : nullptr;
    if (!kernels) return -1;
    const char* blas = getenv("EETUNE_CUBLAS");
    void* b = blas && strcmp(blas, "none") ? dlopen(blas, RTLD_NOW | RTLD_NOLOAD) : nullptr;
    auto gemms = b ? (long long (*)(void))dlsym(b, "ee_fake_cublas_gemms") : nullptr;
    return kernels() + (gemms ? gemms() : 0);
}

/* ---- buffers on one backend ---------------------------------------------------------------------------------- */

struct Buf {
    const Api* api;
    void* p;
    size_t bytes;
};

static Buf make(const Api& api, size_t bytes) {
    void* p = api.ee_alloc((int64_t)bytes);
    if (!p) {
        printf("FAIL alloc %zu bytes on %s: %s\n", bytes, api.name, api.ee_last_error());
        exit(2);
    }
    return Buf{&api, p, bytes};
}

template <typename T>
static Buf upload(const Api& api, const std::vector<T>& v) {
    Buf b = make(api, v.size() * sizeof(T) + 1);
    if (!v.empty()) die_if(api.ee_copy(b.p, v.data(), (int64_t)(v.size() * sizeof(T)), 1), api, "upload");
    return b;
}

template <typename T>
static std::vector<T> download(const Buf& b, size_t n) {
    std::vector<T> v(n);
    if (n) die_if(b.api->ee_copy(v.data(), b.p, (int64_t)(n * sizeof(T)), 2), *b.api, "download");
    return v;
}

static void poison(const Buf& b) { b.api->ee_fill_bytes(b.p, 0xff, (int64_t)b.bytes); } /* f32 NaN, i32 -1 */
static void release(Buf& b) {
    b.api->ee_free(b.p);
    b.p = 0;
}

/* A pair of buffers with the same contents on the reference and on the GPU. */
struct Pair {
    Buf c, g;
    size_t bytes;
};

template <typename T>
static Pair pair_of(const std::vector<T>& v) {
    Pair p;
    p.g = upload(gpu, v);
    p.c = have_cpu ? upload(cpu, v) : Buf{&cpu, 0, 0};
    p.bytes = v.size() * sizeof(T);
    return p;
}

static Pair pair_out(size_t bytes) {
    Pair p;
    p.g = make(gpu, bytes);
    p.c = have_cpu ? make(cpu, bytes) : Buf{&cpu, 0, 0};
    p.bytes = bytes;
    poison(p.g);
    if (have_cpu) poison(p.c);
    return p;
}

static void free_pair(Pair& p) {
    release(p.g);
    if (have_cpu) release(p.c);
}

static std::vector<float> randn(size_t n, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

static std::vector<float> uniform(size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

static std::vector<int32_t> randint(size_t n, int lo, int hi) {
    std::uniform_int_distribution<int> d(lo, hi - 1);
    std::vector<int32_t> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

static std::vector<uint16_t> bf16_of(const std::vector<float>& v) {
    std::vector<uint16_t> o(v.size());
    for (size_t i = 0; i < v.size(); i++) o[i] = to_bf16(v[i]);
    return o;
}

/* ---- comparison ------------------------------------------------------------------------------------------------ */

/* ||got - ref|| / ||ref|| (ref norm floored), NaN anywhere fails. */
static void expect_close(const char* what, const std::vector<float>& got, const std::vector<float>& ref, double tol) {
    double num = 0, den = 0, maxabs = 0;
    size_t nan_at = (size_t)-1;
    for (size_t i = 0; i < ref.size(); i++) {
        if (std::isnan(got[i]) != std::isnan(ref[i]) && nan_at == (size_t)-1) nan_at = i;
        if (std::isnan(got[i]) || std::isnan(ref[i])) continue;
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
        maxabs = std::max(maxabs, fabs(d));
    }
    double rel = sqrt(num) / std::max(sqrt(den), 1e-30);
    bool ok = nan_at == (size_t)-1 && rel <= tol;
    if (ok) passes++;
    else failures++;
    if (nan_at != (size_t)-1)
        printf("FAIL %-44s NaN mismatch at %zu (got %g, ref %g)\n", what, nan_at, got[nan_at], ref[nan_at]);
    else
        printf("%s %-44s rel %.2e (tol %.0e) max|d| %.2e n=%zu\n", ok ? "PASS" : "FAIL", what, rel, tol, maxabs, ref.size());
}

template <typename T>
static void expect_equal(const char* what, const std::vector<T>& got, const std::vector<T>& ref) {
    size_t bad = 0, first = (size_t)-1;
    for (size_t i = 0; i < ref.size(); i++)
        if (memcmp(&got[i], &ref[i], sizeof(T)) != 0) {
            if (first == (size_t)-1) first = i;
            bad++;
        }
    if (bad == 0) {
        passes++;
        printf("PASS %-44s exact n=%zu\n", what, ref.size());
    } else {
        failures++;
        printf("FAIL %-44s %zu of %zu differ (first at %zu)\n", what, bad, ref.size(), first);
    }
}

/* Without the CPU library only "ran, wrote everything, no NaN" is checked. */
static void expect_finite(const char* what, const std::vector<float>& got) {
    size_t bad = 0;
    for (float f : got) bad += !std::isfinite(f);
    if (bad == 0) passes++;
    else failures++;
    printf("%s %-44s %s\n", bad ? "FAIL" : "PASS", what, bad ? "non-finite outputs (no CPU reference)" : "finite (no CPU reference)");
}

static void compare(const char* what, const Pair& p, size_t n, double tol) {
    std::vector<float> g = download<float>(p.g, n);
    if (!have_cpu) return expect_finite(what, g);
    expect_close(what, g, download<float>(p.c, n), tol);
}

/* An m x n matrix at leading dimension ldc: only its entries (the padding columns keep their old contents). */
static void compare_matrix(const char* what, const Pair& p, int m, int n, int ldc, double tol) {
    std::vector<float> g = download<float>(p.g, (size_t)m * ldc), r = have_cpu ? download<float>(p.c, (size_t)m * ldc) : g, gs, rs;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            gs.push_back(g[(size_t)i * ldc + j]);
            rs.push_back(r[(size_t)i * ldc + j]);
        }
    if (have_cpu) expect_close(what, gs, rs, tol);
    else expect_finite(what, gs);
}

/* An output the call writes only in part (the rest keeps its poison): without the reference only "it ran" is known. */
static void compare_partly_written(const char* what, const Pair& p, size_t n, double tol) {
    if (have_cpu) return expect_close(what, download<float>(p.g, n), download<float>(p.c, n), tol);
    passes++;
    printf("PASS %-44s ran (partly written; no CPU reference)\n", what);
}

template <typename T>
static void compare_exact(const char* what, const Pair& p, size_t n) {
    std::vector<T> g = download<T>(p.g, n);
    if (!have_cpu) {
        passes++;
        printf("PASS %-44s ran (no CPU reference)\n", what);
        return;
    }
    expect_equal(what, g, download<T>(p.c, n));
}

/* Runs the same call on both backends: F(api, which) with which 0 = cpu, 1 = gpu. */
template <typename F>
static void both(const char* what, F f) {
    die_if(f(gpu, 1), gpu, what);
    if (have_cpu) die_if(f(cpu, 0), cpu, what);
    int rc = gpu.ee_synchronize();
    if (rc) {
        printf("FAIL %s: ee_synchronize: %s\n", what, gpu.ee_last_error());
        failures++;
    }
}

#define P(pair) ((w) ? (pair).g.p : (pair).c.p)

/* ---- the checks --------------------------------------------------------------------------------------------------- */

static void check_elementwise(int n) {
    char name[96];
    Pair a = pair_of(randn(n)), b = pair_of(randn(n)), out = pair_out(n * 4);
    both("add", [&](const Api& api, int w) { return api.ee_add((float*)P(out), (float*)P(a), (float*)P(b), n); });
    snprintf(name, sizeof name, "add n=%d", n);
    compare(name, out, n, 1e-7);
    poison(out.g);
    if (have_cpu) poison(out.c);
    both("axpby", [&](const Api& api, int w) { return api.ee_axpby((float*)P(out), (float*)P(a), -0.7f, (float*)P(b), n); });
    snprintf(name, sizeof name, "axpby n=%d", n);
    compare(name, out, n, 1e-6);
    both("scale", [&](const Api& api, int w) { return api.ee_scale((float*)P(out), 1.3f, n); });
    snprintf(name, sizeof name, "scale n=%d", n);
    compare(name, out, n, 1e-7);
    int cols = std::min(n, 37), rows = n / cols; /* rows * cols <= n */
    Pair bias = pair_of(randn(cols));
    both("add_bias", [&](const Api& api, int w) { return api.ee_add_bias((float*)P(out), (float*)P(bias), rows, cols); });
    snprintf(name, sizeof name, "add_bias %dx%d", rows, cols);
    compare(name, out, (size_t)rows * cols, 1e-6);
    double sg = gpu.ee_sum_squares((float*)a.g.p, n), sc = have_cpu ? cpu.ee_sum_squares((float*)a.c.p, n) : sg;
    bool ok = std::isfinite(sg) && fabs(sg - sc) <= 1e-12 * fabs(sc);
    ok ? passes++ : failures++;
    printf("%s %-44s gpu %.15g cpu %.15g\n", ok ? "PASS" : "FAIL", ("sum_squares n=" + std::to_string(n)).c_str(), sg, sc);
    /* swiglu */
    Pair dgate = pair_out(n * 4), dup = pair_out(n * 4);
    both("swiglu_fwd", [&](const Api& api, int w) { return api.ee_swiglu_fwd((float*)P(out), (float*)P(a), (float*)P(b), n); });
    snprintf(name, sizeof name, "swiglu_fwd n=%d", n);
    compare(name, out, n, 1e-6);
    both("swiglu_bwd", [&](const Api& api, int w) { return api.ee_swiglu_bwd((float*)P(dgate), (float*)P(dup), (float*)P(out), (float*)P(a), (float*)P(b), n); });
    snprintf(name, sizeof name, "swiglu_bwd dgate n=%d", n);
    /* silu'(g) = s (1 + g (1 - s)) cancels near g = -1.28, so a few ulps of the two sides' sigmoids become a larger
     * relative error there: CI's run once drew n = 1 with dgate ~1e-3 and a difference of 1.6e-9 (rel 1.5e-6) */
    compare(name, dgate, n, 1e-5);
    snprintf(name, sizeof name, "swiglu_bwd dup n=%d", n);
    compare(name, dup, n, 1e-6);
    /* adamw: p, m, v updated in place from the same start */
    std::vector<float> p0 = randn(n), g0 = randn(n), m0 = randn(n, 0.1f), v0 = uniform(n, 0.0f, 0.1f);
    Pair p = pair_of(p0), g = pair_of(g0), m = pair_of(m0), v = pair_of(v0);
    both("adamw", [&](const Api& api, int w) {
        return api.ee_adamw((float*)P(p), (float*)P(g), (float*)P(m), (float*)P(v), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.19f, 0.0975f, 0.5f);
    });
    snprintf(name, sizeof name, "adamw p n=%d", n);
    compare(name, p, n, 1e-6);
    snprintf(name, sizeof name, "adamw m n=%d", n);
    compare(name, m, n, 1e-6);
    snprintf(name, sizeof name, "adamw v n=%d", n);
    compare(name, v, n, 1e-6);
    for (Pair* q : {&a, &b, &out, &bias, &dgate, &dup, &p, &g, &m, &v}) free_pair(*q);
}

static void check_casts(int n) {
    char name[96];
    std::vector<float> src = randn(n, 100.0f);
    src[0] = NAN;
    if (n > 3) {
        src[1] = INFINITY;
        src[2] = 1e-8f;  /* f16 subnormal */
        src[3] = 70000.f; /* f16 overflow */
    }
    Pair s = pair_of(src), h = pair_out(n * 2), f = pair_out(n * 4);
    for (int dt : {EE_BF16, EE_F16}) {
        both("cast", [&](const Api& api, int w) { return api.ee_cast(P(h), dt, P(s), EE_F32, n); });
        snprintf(name, sizeof name, "cast f32->%s n=%d", dt == EE_BF16 ? "bf16" : "f16", n);
        compare_exact<uint16_t>(name, h, n);
        both("cast", [&](const Api& api, int w) { return api.ee_cast(P(f), EE_F32, P(h), dt, n); });
        snprintf(name, sizeof name, "cast %s->f32 n=%d", dt == EE_BF16 ? "bf16" : "f16", n);
        compare_exact<uint32_t>(name, f, n);
    }
    free_pair(s), free_pair(h), free_pair(f);
}

static void check_embedding(int vocab, int dim, int n) {
    char name[96];
    std::vector<float> table = randn((size_t)vocab * dim);
    Pair t32 = pair_of(table), t16 = pair_of(bf16_of(table)), ids = pair_of(randint(n, 0, vocab)), out = pair_out((size_t)n * dim * 4);
    both("embedding_fwd", [&](const Api& api, int w) { return api.ee_embedding_fwd((float*)P(out), P(t16), EE_BF16, (int32_t*)P(ids), n, dim, vocab); });
    snprintf(name, sizeof name, "embedding_fwd bf16 %d ids x %d", n, dim);
    compare_exact<uint32_t>(name, out, (size_t)n * dim);
    both("embedding_fwd", [&](const Api& api, int w) { return api.ee_embedding_fwd((float*)P(out), P(t32), EE_F32, (int32_t*)P(ids), n, dim, vocab); });
    snprintf(name, sizeof name, "embedding_fwd f32 %d ids x %d", n, dim);
    compare_exact<uint32_t>(name, out, (size_t)n * dim);
    /* backward with many repeated ids, into a non-zero gradient */
    Pair rep = pair_of(randint(n, 0, std::max(1, vocab / 8))), dtable = pair_of(randn((size_t)vocab * dim)), dout = pair_of(randn((size_t)n * dim));
    both("embedding_bwd", [&](const Api& api, int w) { return api.ee_embedding_bwd((float*)P(dtable), (float*)P(dout), (int32_t*)P(rep), n, dim, vocab); });
    snprintf(name, sizeof name, "embedding_bwd %d ids x %d", n, dim);
    compare(name, dtable, (size_t)vocab * dim, 1e-6);
    for (Pair* q : {&t32, &t16, &ids, &out, &rep, &dtable, &dout}) free_pair(*q);
}

/* Linear (units 0) and MLP gates; one row of NaN and one with an infinity score NaN */
static void check_gate(int rows, int dim, int units) {
    char name[96];
    std::vector<float> h = randn((size_t)rows * dim, 3.0f);
    if (rows > 2 && have_cpu) h[(size_t)1 * dim + dim / 2] = NAN, h[(size_t)2 * dim] = INFINITY;
    const int n1 = units > 0 ? units : 1;
    Pair x = pair_of(h), w1 = pair_of(randn((size_t)n1 * dim, 0.2f)), b1 = pair_of(randn(n1)), wt = pair_of(randn(units > 0 ? units : dim, 0.3f)),
         b = pair_of(randn(1)), score = pair_out(rows * 4);
    both("gate_score", [&](const Api& api, int w) { return api.ee_gate_score((float*)P(score), (float*)P(x), (float*)P(w1), (float*)P(b1), (float*)P(wt), (float*)P(b), rows, dim, units, 1e-5f); });
    snprintf(name, sizeof name, "gate_score %d rows x %d, %d units", rows, dim, units);
    compare(name, score, rows, 1e-5);
    for (Pair* q : {&x, &w1, &b1, &wt, &b, &score}) free_pair(*q);
}

static void check_rmsnorm(int rows, int dim) {
    char name[96];
    Pair x = pair_of(randn((size_t)rows * dim, 3.0f)), wt = pair_of(randn(dim)), out = pair_out((size_t)rows * dim * 4), inv = pair_out(rows * 4);
    both("rmsnorm_fwd", [&](const Api& api, int w) { return api.ee_rmsnorm_fwd((float*)P(out), (float*)P(inv), (float*)P(x), (float*)P(wt), rows, dim, 1e-5f); });
    snprintf(name, sizeof name, "rmsnorm_fwd %dx%d", rows, dim);
    compare(name, out, (size_t)rows * dim, 1e-6);
    snprintf(name, sizeof name, "rmsnorm_fwd inv_rms %d", rows);
    compare(name, inv, rows, 1e-6);
    Pair dout = pair_of(randn((size_t)rows * dim)), dx = pair_out((size_t)rows * dim * 4), dw = pair_of(randn(dim));
    both("rmsnorm_bwd", [&](const Api& api, int w) {
        return api.ee_rmsnorm_bwd((float*)P(dx), (float*)P(dw), (float*)P(dout), (float*)P(x), (float*)P(wt), (float*)P(inv), rows, dim);
    });
    snprintf(name, sizeof name, "rmsnorm_bwd dx %dx%d", rows, dim);
    compare(name, dx, (size_t)rows * dim, 1e-5);
    snprintf(name, sizeof name, "rmsnorm_bwd dw %d", dim);
    compare(name, dw, dim, 1e-5);
    for (Pair* q : {&x, &wt, &out, &inv, &dout, &dx, &dw}) free_pair(*q);
}

static void check_gemm(int m, int n, int k, int path) {
    char name[128];
    for (int dt : {EE_F32, EE_BF16, EE_F16}) {
        for (int ta = 0; ta < 2; ta++) {
            for (int tb = 0; tb < 2; tb++) {
                int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2; /* padded leading dimensions */
                int arows = ta ? k : m, brows = tb ? n : k;
                std::vector<float> bv = randn((size_t)brows * ldb);
                Pair a = pair_of(randn((size_t)arows * lda));
                Pair b = dt == EE_F32 ? pair_of(bv) : dt == EE_BF16 ? pair_of(bf16_of(bv)) : Pair{};
                if (dt == EE_F16) { /* f16 bits through the library's own cast */
                    b = pair_out((size_t)brows * ldb * 2);
                    Pair tmp = pair_of(bv);
                    both("cast", [&](const Api& api, int w) { return api.ee_cast(P(b), EE_F16, P(tmp), EE_F32, (int64_t)brows * ldb); });
                    free_pair(tmp);
                }
                for (float beta : {0.0f, 0.5f}) {
                    Pair c = beta == 0.0f ? pair_out((size_t)m * ldc * 4) : pair_of(randn((size_t)m * ldc));
                    both("gemm", [&](const Api& api, int w) {
                        api.ee_set_gemm_path(w ? path : 0);
                        return api.ee_gemm(ta, tb, m, n, k, 0.75f, (float*)P(a), lda, P(b), dt, ldb, beta, (float*)P(c), ldc);
                    });
                    /* cuBLAS rounds f32 A to B's 16-bit dtype: a bf16-sized error is expected there */
                    double tol = path == 2 || dt == EE_F32 ? 1e-5 : dt == EE_BF16 ? 1e-2 : 2e-3;
                    snprintf(name, sizeof name, "gemm %s %s%s %dx%dx%d beta %.1f path %d", dt == EE_F32 ? "f32" : dt == EE_BF16 ? "bf16" : "f16",
                             ta ? "T" : "N", tb ? "T" : "N", m, n, k, beta, path);
                    compare_matrix(name, c, m, n, ldc, tol);
                    free_pair(c);
                }
                free_pair(a);
                free_pair(b);
            }
        }
    }
    gpu.ee_set_gemm_path(0);
}

/* ee_pack_panels, ee_pack_panels_bf16 or ee_pack_panels_f16 (the layout, zero padding) and ee_gemm with the packed
 * weight, m = 1 .. EE_PANELS_MAX_M; dtype EE_F32, EE_BF16 or EE_F16 */
static void check_gemm_panels(int n, int k, int dtype) {
    char name[96];
    const int ldw = k + 2, ldc = n + 1;
    const char* dt = dtype == EE_BF16 ? "bf16" : dtype == EE_F16 ? "f16" : "f32";
    const int64_t size = gpu.ee_panels_size(n, k);
    if (have_cpu && cpu.ee_panels_size(n, k) != size) {
        printf("FAIL panels_size %dx%d: %lld vs %lld\n", n, k, (long long)size, (long long)cpu.ee_panels_size(n, k));
        failures++;
    }
    Pair wt = dtype == EE_BF16 ? pair_of(bf16_of(randn((size_t)n * ldw))) : pair_of(randn((size_t)n * ldw)), packed = pair_out((size_t)size * 4);
    if (dtype == EE_F16) { /* the f16 weight, rounded by each library's ee_cast (the same bits: common/dtype.h) */
        Pair h = pair_out((size_t)n * ldw * 2);
        both("cast f16", [&](const Api& api, int w) { return api.ee_cast(P(h), EE_F16, P(wt), EE_F32, (int64_t)n * ldw); });
        free_pair(wt);
        wt = h;
    }
    snprintf(name, sizeof name, "pack_panels %s %dx%d", dt, n, k);
    if (dtype == EE_F32) {
        both("pack_panels", [&](const Api& api, int w) { return api.ee_pack_panels((float*)P(packed), (float*)P(wt), n, k, ldw); });
        std::vector<float> gp = download<float>(packed.g, (size_t)size);
        if (have_cpu) expect_equal(name, gp, download<float>(packed.c, (size_t)size));
        else expect_finite(name, gp);
    } else {
        both(name, [&](const Api& api, int w) {
            return dtype == EE_BF16 ? api.ee_pack_panels_bf16((uint16_t*)P(packed), (uint16_t*)P(wt), n, k, ldw) : api.ee_pack_panels_f16((uint16_t*)P(packed), (uint16_t*)P(wt), n, k, ldw);
        });
        std::vector<uint16_t> gp = download<uint16_t>(packed.g, (size_t)size);
        if (have_cpu && gp != download<uint16_t>(packed.c, (size_t)size)) printf("FAIL %s: the layouts differ\n", name), failures++;
    }
    const int packed_dtype = dtype == EE_BF16 ? EE_BF16_PANELS : dtype == EE_F16 ? EE_F16_PANELS : EE_F32_PANELS;
    for (int m = 1; m <= EE_PANELS_MAX_M; m += m < 8 ? 1 : 8) {
        const float beta = m % 2 ? 0.0f : 0.5f;
        Pair a = pair_of(randn((size_t)m * k)), c = beta == 0.0f ? pair_out((size_t)m * ldc * 4) : pair_of(randn((size_t)m * ldc));
        both("gemm panels", [&](const Api& api, int w) { return api.ee_gemm(0, 1, m, n, k, 0.75f, (float*)P(a), k, P(packed), packed_dtype, k, beta, (float*)P(c), ldc); });
        snprintf(name, sizeof name, "gemm %s panels %dx%dx%d beta %.1f", dt, m, n, k, beta);
        compare_matrix(name, c, m, n, ldc, 1e-5);
        free_pair(a);
        free_pair(c);
    }
    free_pair(wt);
    free_pair(packed);
}

static void check_rope(int rows, int heads, int dim) {
    char name[96];
    std::vector<float> inv(dim / 2);
    for (int i = 0; i < dim / 2; i++) inv[i] = (float)pow(10000.0, -2.0 * i / dim);
    Pair invf = pair_of(inv), pos = pair_of(randint(rows, 0, 8192));
    for (int il = 0; il < 2; il++)
        for (int invs = 0; invs < 2; invs++) {
            Pair x = pair_of(randn((size_t)rows * heads * dim));
            both("rope", [&](const Api& api, int w) { return api.ee_rope((float*)P(x), (int32_t*)P(pos), (float*)P(invf), rows, heads, dim, il, invs); });
            snprintf(name, sizeof name, "rope %s%s %dx%dx%d", il ? "interleaved" : "rotate-half", invs ? " inverse" : "", rows, heads, dim);
            compare(name, x, (size_t)rows * heads * dim, 1e-6);
            free_pair(x);
        }
    free_pair(invf), free_pair(pos);
}

static void check_attention(int n_seq, int max_len, int rows, int heads, int kv, int dim) {
    char name[128];
    const int kvw = kv * dim;
    Pair kc = pair_of(randn((size_t)n_seq * max_len * kvw)), vc = pair_of(randn((size_t)n_seq * max_len * kvw));
    std::vector<int32_t> seq = randint(rows, 0, n_seq), pos = randint(rows, 0, max_len);
    if (rows > 1) pos[rows - 1] = max_len - 1, pos[0] = 0;
    Pair s = pair_of(seq), p = pair_of(pos), q = pair_of(randn((size_t)rows * heads * dim)), out = pair_out((size_t)rows * heads * dim * 4), lse = pair_out((size_t)rows * heads * 4);
    const float scale = 1.0f / sqrtf((float)dim);
    both("attention_fwd", [&](const Api& api, int w) {
        return api.ee_attention_fwd((float*)P(out), (float*)P(lse), (float*)P(q), (float*)P(kc), (float*)P(vc), (int32_t*)P(s), (int32_t*)P(p), rows, heads, kv, dim, n_seq, max_len, scale);
    });
    snprintf(name, sizeof name, "attention_fwd out rows %d heads %d/%d d %d len %d", rows, heads, kv, dim, max_len);
    compare(name, out, (size_t)rows * heads * dim, 1e-5);
    snprintf(name, sizeof name, "attention_fwd lse rows %d heads %d/%d", rows, heads, kv);
    compare(name, lse, (size_t)rows * heads, 1e-5);
    /* kv_write and gather_rows on the same shapes */
    Pair src = pair_of(randn((size_t)rows * kvw));
    std::vector<int32_t> uniq_pos(rows);
    for (int r = 0; r < rows; r++) uniq_pos[r] = r % max_len, seq[r] = (r / max_len) % n_seq; /* distinct cells */
    Pair us = pair_of(seq), up = pair_of(uniq_pos);
    both("kv_write", [&](const Api& api, int w) { return api.ee_kv_write((float*)P(kc), (float*)P(src), (int32_t*)P(us), (int32_t*)P(up), rows, kvw, n_seq, max_len); });
    snprintf(name, sizeof name, "kv_write %d rows x %d", rows, kvw);
    compare_exact<uint32_t>(name, kc, (size_t)n_seq * max_len * kvw);
    std::vector<int32_t> idx(rows);
    for (int r = 0; r < rows; r++) idx[r] = std::min(rows - 1, r + (int)(rng() % 3)); /* in-place compaction: idx[r] >= r */
    Pair ix = pair_of(idx);
    both("gather_rows", [&](const Api& api, int w) { return api.ee_gather_rows((float*)P(src), (float*)P(src), (int32_t*)P(ix), rows, kvw, rows); });
    snprintf(name, sizeof name, "gather_rows in place %d x %d", rows, kvw);
    compare_exact<uint32_t>(name, src, (size_t)rows * kvw);
    for (Pair* x : {&kc, &vc, &s, &p, &q, &out, &lse, &src, &us, &up, &ix}) free_pair(*x);
}

static void check_attention_bwd(int batch, int seq, int heads, int kv, int dim) {
    char name[128];
    const int rows = batch * seq, kvw = kv * dim;
    const float scale = 1.0f / sqrtf((float)dim);
    Pair q = pair_of(randn((size_t)rows * heads * dim)), k = pair_of(randn((size_t)rows * kvw)), v = pair_of(randn((size_t)rows * kvw));
    /* the forward through the cache layout: n_seq = batch, max_len = seq, row (b, t) */
    std::vector<int32_t> sq(rows), ps(rows);
    for (int r = 0; r < rows; r++) sq[r] = r / seq, ps[r] = r % seq;
    Pair s = pair_of(sq), p = pair_of(ps), out = pair_out((size_t)rows * heads * dim * 4), lse = pair_out((size_t)rows * heads * 4);
    both("attention_fwd (for bwd)", [&](const Api& api, int w) {
        return api.ee_attention_fwd((float*)P(out), (float*)P(lse), (float*)P(q), (float*)P(k), (float*)P(v), (int32_t*)P(s), (int32_t*)P(p), rows, heads, kv, dim, batch, seq, scale);
    });
    /* the reference's forward feeds both backward passes, so only the backward differs */
    if (have_cpu) {
        gpu.ee_copy(out.g.p, download<float>(out.c, (size_t)rows * heads * dim).data(), (int64_t)rows * heads * dim * 4, 1);
        gpu.ee_copy(lse.g.p, download<float>(lse.c, (size_t)rows * heads).data(), (int64_t)rows * heads * 4, 1);
    }
    Pair dout = pair_of(randn((size_t)rows * heads * dim)), dq = pair_out((size_t)rows * heads * dim * 4), dk = pair_of(randn((size_t)rows * kvw)), dv = pair_of(randn((size_t)rows * kvw));
    both("attention_bwd", [&](const Api& api, int w) {
        return api.ee_attention_bwd((float*)P(dq), (float*)P(dk), (float*)P(dv), (float*)P(dout), (float*)P(out), (float*)P(lse), (float*)P(q), (float*)P(k), (float*)P(v),
                                    batch, seq, heads, kv, dim, scale);
    });
    snprintf(name, sizeof name, "attention_bwd dq b %d t %d heads %d/%d d %d", batch, seq, heads, kv, dim);
    compare(name, dq, (size_t)rows * heads * dim, 1e-4);
    snprintf(name, sizeof name, "attention_bwd dk b %d t %d heads %d/%d d %d", batch, seq, heads, kv, dim);
    compare(name, dk, (size_t)rows * kvw, 1e-4);
    snprintf(name, sizeof name, "attention_bwd dv b %d t %d heads %d/%d d %d", batch, seq, heads, kv, dim);
    compare(name, dv, (size_t)rows * kvw, 1e-4);
    for (Pair* x : {&q, &k, &v, &s, &p, &out, &lse, &dout, &dq, &dk, &dv}) free_pair(*x);
}

/* ee_pack_panels_i8 (the bytes, the residuals and norms: the same on both) and ee_gemm with the 8-bit panels, m = 1 .. EE_PANELS_MAX_M */
static void check_gemm_panels_i8(int n, int k) {
    char name[96];
    const int ldw = k + 2, ldc = n + 1;
    const int64_t bytes = gpu.ee_panels_i8_bytes(n, k);
    if (have_cpu && cpu.ee_panels_i8_bytes(n, k) != bytes) printf("FAIL panels_i8_bytes %dx%d\n", n, k), failures++;
    Pair wt = pair_of(randn((size_t)n * ldw)), packed = pair_out((size_t)bytes), resid = pair_out((size_t)n * 4), norm = pair_out((size_t)n * 4);
    both("pack_panels_i8", [&](const Api& api, int w) { return api.ee_pack_panels_i8(P(packed), (float*)P(resid), (float*)P(norm), (float*)P(wt), n, k, ldw); });
    snprintf(name, sizeof name, "pack_panels_i8 %dx%d bytes", n, k);
    compare_exact<uint8_t>(name, packed, (size_t)bytes);
    snprintf(name, sizeof name, "pack_panels_i8 %dx%d residuals", n, k);
    compare(name, resid, n, 1e-6);
    snprintf(name, sizeof name, "pack_panels_i8 %dx%d norms", n, k);
    compare(name, norm, n, 1e-6);
    for (int m = 1; m <= EE_PANELS_MAX_M; m += m < 8 ? 1 : 8) {
        const float beta = m % 2 ? 0.0f : 0.5f;
        Pair a = pair_of(randn((size_t)m * k)), c = beta == 0.0f ? pair_out((size_t)m * ldc * 4) : pair_of(randn((size_t)m * ldc));
        both("gemm i8 panels", [&](const Api& api, int w) { return api.ee_gemm(0, 1, m, n, k, 0.75f, (float*)P(a), k, P(packed), EE_I8_PANELS, k, beta, (float*)P(c), ldc); });
        snprintf(name, sizeof name, "gemm i8 panels %dx%dx%d beta %.1f", m, n, k, beta);
        compare_matrix(name, c, m, n, ldc, 1e-5);
        free_pair(a);
        free_pair(c);
    }
    for (Pair* x : {&wt, &packed, &resid, &norm}) free_pair(*x);
}

/* ee_max_prob_upper: the bound of rows of scores (another summation order on each side), a NaN row, an infinite scale */
static void check_max_prob_upper(int rows, int n) {
    char name[96];
    std::vector<float> sv = randn((size_t)rows * n, 3.0f), rv = randn(n, 1.0f), scv = uniform(rows, 0.0f, 0.05f);
    for (float& r : rv) r = std::fabs(r);
    if (rows > 2) sv[(size_t)1 * n + n / 2] = NAN, scv[2] = INFINITY;
    Pair sc = pair_of(sv), radius = pair_of(rv), scale = pair_of(scv), upper = pair_out(rows * 4);
    both("max_prob_upper", [&](const Api& api, int w) { return api.ee_max_prob_upper((float*)P(upper), (float*)P(sc), n, (float*)P(radius), (float*)P(scale), rows, n, 0.8f); });
    std::vector<float> g = download<float>(upper.g, rows), r = have_cpu ? download<float>(upper.c, rows) : g, gf, rf;
    int infinite = 0;
    for (int i = 0; i < rows; i++) {
        if (std::isinf(g[i]) || std::isinf(r[i])) {
            infinite += std::isinf(g[i]) && g[i] == r[i] ? 1 : 100;
            continue;
        }
        gf.push_back(g[i]);
        rf.push_back(r[i]);
    }
    snprintf(name, sizeof name, "max_prob_upper %dx%d (+inf rows)", rows, n);
    if (infinite != (rows > 2 ? 2 : 0)) printf("FAIL %s: %d\n", name, infinite), failures++;
    snprintf(name, sizeof name, "max_prob_upper %dx%d", rows, n);
    if (have_cpu) expect_close(name, gf, rf, 1e-5);
    else expect_finite(name, gf);
    for (Pair* q : {&sc, &radius, &scale, &upper}) free_pair(*q);
}

/* Screened greedy decode's candidate groups: rows of few candidates (the groups compared), a NaN row and an
 * infinite scale (-1); then too few groups allowed (the counts compared: -1 rows' groups are unspecified) */
static void check_argmax_candidates(int rows, int n, int group) {
    char name[96];
    std::vector<float> sv = randn((size_t)rows * n, 1.0f), rv = randn(n, 1.0f), scv = uniform(rows, 0.0f, 0.05f);
    for (float& r : rv) r = std::fabs(r);
    if (rows > 2) sv[(size_t)1 * n + n / 2] = NAN, scv[2] = INFINITY;
    Pair sc = pair_of(sv), radius = pair_of(rv), scale = pair_of(scv), counts = pair_out(rows * 4);
    for (int max_groups : {64, 2}) {
        Pair groups = pair_of(std::vector<int32_t>((size_t)rows * max_groups, 0));
        both("argmax_candidates", [&](const Api& api, int w) {
            return api.ee_argmax_candidates((int32_t*)P(groups), (int32_t*)P(counts), (float*)P(sc), n, (float*)P(radius), (float*)P(scale), rows, n, group, max_groups);
        });
        snprintf(name, sizeof name, "argmax_candidates counts %dx%d, group %d, max %d", rows, n, group, max_groups);
        compare_exact<int32_t>(name, counts, rows);
        snprintf(name, sizeof name, "argmax_candidates groups %dx%d, group %d", rows, n, group);
        if (max_groups == 64) compare_exact<int32_t>(name, groups, (size_t)rows * max_groups);
        free_pair(groups);
    }
    for (Pair* q : {&sc, &radius, &scale, &counts}) free_pair(*q);
}

static void check_softmax(int rows, int n) {
    char name[96];
    Pair x = pair_of(randn((size_t)rows * n, 3.0f)), out = pair_out((size_t)rows * n * 4), idx = pair_out(rows * 4), mp = pair_out(rows * 4);
    both("softmax", [&](const Api& api, int w) { return api.ee_softmax((float*)P(out), (float*)P(x), rows, n, 0.8f); });
    snprintf(name, sizeof name, "softmax %dx%d", rows, n);
    compare(name, out, (size_t)rows * n, 1e-5);
    both("argmax", [&](const Api& api, int w) { return api.ee_argmax((int32_t*)P(idx), (float*)P(mp), (float*)P(x), rows, n, 0.8f); });
    snprintf(name, sizeof name, "argmax idx %dx%d", rows, n);
    compare_exact<int32_t>(name, idx, rows);
    snprintf(name, sizeof name, "argmax max_prob %dx%d", rows, n);
    compare(name, mp, rows, 1e-5);
    Pair u = pair_of(uniform(rows, 0.0f, 1.0f));
    for (float top_p : {0.9f, 0.5f, 1.0f}) {
        both("sample_top_p", [&](const Api& api, int w) { return api.ee_sample_top_p((int32_t*)P(idx), (float*)P(x), (float*)P(u), rows, n, 0.8f, top_p); });
        snprintf(name, sizeof name, "sample_top_p p=%.1f %dx%d", top_p, rows, n);
        compare_exact<int32_t>(name, idx, rows);
    }
    for (Pair* q : {&x, &out, &idx, &mp, &u}) free_pair(*q);
}

static void check_cross_entropy(int rows, int dim, int vocab, int row_block, int w_dtype, int path) {
    char name[128];
    std::vector<float> wv = randn((size_t)vocab * dim, 0.05f);
    Pair x = pair_of(randn((size_t)rows * dim)), wt = w_dtype == EE_F32 ? pair_of(wv) : pair_of(bf16_of(wv));
    std::vector<int32_t> tg = randint(rows, 0, vocab);
    tg[0] = -1; /* ignored row */
    Pair t = pair_of(tg), gw = pair_of(uniform(rows, 0.1f, 1.0f)), loss = pair_out(rows * 4), dx = pair_out((size_t)rows * dim * 4),
         dw = pair_of(randn((size_t)vocab * dim, 0.01f)), am = pair_out(rows * 4), mp = pair_out(rows * 4);
    both("linear_cross_entropy", [&](const Api& api, int w) {
        api.ee_set_gemm_path(w ? path : 0);
        int rc = api.ee_linear_cross_entropy((float*)P(loss), (float*)P(dx), (float*)P(dw), (int32_t*)P(am), (float*)P(mp), (float*)P(x), P(wt), w_dtype,
                                             (int32_t*)P(t), (float*)P(gw), rows, dim, vocab, row_block, 0.7f);
        api.ee_set_gemm_path(0);
        return rc;
    });
    const char* dt = w_dtype == EE_F32 ? "f32" : "bf16";
    bool exact = w_dtype == EE_F32 || path == 2;
    snprintf(name, sizeof name, "linear_ce loss %s %dx%d V %d row block %d path %d", dt, rows, dim, vocab, row_block, path);
    compare(name, loss, rows, exact ? 1e-5 : 1e-2);
    snprintf(name, sizeof name, "linear_ce dx %s path %d", dt, path);
    compare(name, dx, (size_t)rows * dim, exact ? 1e-4 : 2e-2);
    snprintf(name, sizeof name, "linear_ce dw %s path %d", dt, path);
    compare(name, dw, (size_t)vocab * dim, exact ? 1e-4 : 2e-2);
    snprintf(name, sizeof name, "linear_ce max_prob %s path %d", dt, path);
    compare(name, mp, rows, exact ? 1e-5 : 1e-2);
    if (exact) {
        snprintf(name, sizeof name, "linear_ce argmax %s path %d", dt, path);
        compare_exact<int32_t>(name, am, rows);
    }
    for (Pair* q : {&x, &wt, &t, &gw, &loss, &dx, &dw, &am, &mp}) free_pair(*q);
}

/* An impossible index: the reference fails the call itself; the CUDA library launches it and fails the next
 * synchronizing call (`sync`: ee_synchronize or a copy to the host) with the same message, then is clean again. */
template <typename F, typename S>
static void expect_index_error(const char* what, const char* want, F f, S sync) {
    bool ok = true;
    if (f(gpu, 1)) printf("FAIL %-44s launch: %s\n", what, gpu.ee_last_error()), ok = false;
    std::string got = sync() ? gpu.ee_last_error() : "(no error)";
    if (got.rfind(want, 0) != 0) printf("FAIL %-44s libeecuda reported '%s', want '%s...'\n", what, got.c_str(), want), ok = false;
    if (gpu.ee_synchronize()) printf("FAIL %-44s the error was reported twice: %s\n", what, gpu.ee_last_error()), ok = false;
    if (have_cpu) {
        std::string ref = f(cpu, 0) ? cpu.ee_last_error() : "(no error)";
        if (ref != want) printf("FAIL %-44s libeecpu reported '%s', want '%s'\n", what, ref.c_str(), want), ok = false;
    }
    if (ok) printf("PASS %-44s %s\n", what, want), passes++;
    else failures++;
}

static void check_index_errors() {
    const int width = 8, n_seq = 2, max_len = 4, rows = 3;
    Pair cache = pair_out((size_t)n_seq * max_len * width * 4), src = pair_of(randn((size_t)rows * width)), out = pair_out((size_t)rows * width * 4);
    Pair good = pair_of(std::vector<int32_t>{0, 1, 1}), bad_seq = pair_of(std::vector<int32_t>{0, 1, 7}), bad_pos = pair_of(std::vector<int32_t>{0, -2, 1});
    Pair lse = pair_out(rows * 4), tg = pair_of(std::vector<int32_t>{1, 9, -1});
    auto sync = [] { return gpu.ee_synchronize(); };
    expect_index_error("index error: kv_write seq", "ee_kv_write: row 2 has seq 7, outside the cache's 2 sequences", [&](const Api& api, int w) {
        return api.ee_kv_write((float*)P(cache), (float*)P(src), (int32_t*)P(bad_seq), (int32_t*)P(good), rows, width, n_seq, max_len);
    }, sync);
    expect_index_error("index error: kv_write pos", "ee_kv_write: row 1 has pos -2, outside the cache's 4 positions", [&](const Api& api, int w) {
        return api.ee_kv_write((float*)P(cache), (float*)P(src), (int32_t*)P(good), (int32_t*)P(bad_pos), rows, width, n_seq, max_len);
    }, sync);
    expect_index_error("index error: attention seq", "ee_attention_fwd: row 2 has seq 7, outside the cache's 2 sequences", [&](const Api& api, int w) {
        return api.ee_attention_fwd((float*)P(out), (float*)P(lse), (float*)P(src), (float*)P(cache), (float*)P(cache), (int32_t*)P(bad_seq), (int32_t*)P(good), rows, 1, 1, width, n_seq, max_len, 0.5f);
    }, sync);
    expect_index_error("index error: gather_rows (copy reports)", "ee_gather_rows: row 2 has index 7, outside src's 3 rows", [&](const Api& api, int w) {
        return api.ee_gather_rows((float*)P(out), (float*)P(src), (int32_t*)P(bad_seq), rows, width, rows);
    }, [&] { float v; return gpu.ee_copy(&v, out.g.p, 4, 2); });
    expect_index_error("index error: embedding id", "ee_embedding_fwd: row 2 has id 7, outside the table's 3 rows", [&](const Api& api, int w) {
        return api.ee_embedding_fwd((float*)P(out), P(src), EE_F32, (int32_t*)P(bad_seq), rows, width, rows);
    }, sync);
    expect_index_error("index error: cross-entropy target", "ee_linear_cross_entropy: row 1 has target 9, outside the vocabulary of 3", [&](const Api& api, int w) {
        return api.ee_linear_cross_entropy((float*)P(lse), 0, 0, 0, 0, (float*)P(src), P(src), EE_F32, (int32_t*)P(tg), 0, rows, width, rows, 0, 1.0f);
    }, sync);
    /* a whole layer (cache width = 2 KV heads of 4): the CUDA library writes the cache in its fused RoPE kernel */
    const int dim = width, hidden = 8, heads = 2, kv = 2, head_dim = 4;
    Pair wa = pair_of(randn((size_t)dim * dim, 0.1f)), wf = pair_of(randn((size_t)hidden * dim, 0.1f)), norm = pair_of(uniform(dim, 0.5f, 1.5f));
    Pair invf = pair_of(std::vector<float>{1.0f, 0.01f}), vcache = pair_out((size_t)n_seq * max_len * width * 4);
    std::vector<Pair> scratch;
    for (int i = 0; i < 12; i++) scratch.push_back(pair_out((size_t)rows * std::max(dim, hidden) * 4));
    expect_index_error("index error: decoder_layer kv pos", "ee_kv_write: row 1 has pos -2, outside the cache's 4 positions", [&](const Api& api, int w) {
        auto S = [&](int i) { return (float*)P(scratch[i]); };
        return api.ee_decoder_layer_fwd((float*)P(src), S(0), S(1), S(2), S(3), S(4), S(5), S(6), S(7), S(8), S(9), S(10), S(11), S(4), S(11), (float*)P(norm),
                                        P(wa), P(wa), P(wa), P(wa), 0, 0, 0, (float*)P(norm), P(wf), P(wf), P(wf), EE_F32, (float*)P(cache), (float*)P(vcache), 1, n_seq,
                                        max_len, (int32_t*)P(good), (int32_t*)P(bad_pos), (float*)P(invf), rows, dim, heads, kv, head_dim, hidden, 0, 1e-5f, 0.5f);
    }, sync);
    for (Pair& q : scratch) free_pair(q);
    for (Pair* q : {&cache, &src, &out, &good, &bad_seq, &bad_pos, &lse, &tg, &wa, &wf, &norm, &invf, &vcache}) free_pair(*q);
}

/* A whole layer in one call, cache path (with biases, GQA, out = x in place, xn1 = xn2 and act = gate aliased as
 * the Java workspace does), and the dense path (write_kv = 0, the rows' own k/v as the cache). */
static void check_decoder_layer_on_path(int n_seq, int max_len, int rows, int dim, int heads, int kv, int head_dim, int hidden, int w_dtype, bool dense) {
    char name[160];
    const int qd = heads * head_dim, kd = kv * head_dim;
    auto weights = [&](size_t n) { return w_dtype == EE_BF16 ? pair_of(bf16_of(randn(n, 0.1f))) : pair_of(randn(n, 0.1f)); };
    Pair wq = weights((size_t)qd * dim), wk = weights((size_t)kd * dim), wv = weights((size_t)kd * dim), wo = weights((size_t)dim * qd);
    Pair wg = weights((size_t)hidden * dim), wu = weights((size_t)hidden * dim), wd = weights((size_t)dim * hidden);
    Pair n1 = pair_of(uniform(dim, 0.5f, 1.5f)), n2 = pair_of(uniform(dim, 0.5f, 1.5f));
    Pair bq = pair_of(randn(qd, 0.1f)), bk = pair_of(randn(kd, 0.1f)), bv = pair_of(randn(kd, 0.1f));
    std::vector<float> half_freq((size_t)head_dim / 2);
    for (int i = 0; i < head_dim / 2; i++) half_freq[i] = powf(10000.0f, -2.0f * i / head_dim);
    Pair invf = pair_of(half_freq);
    std::vector<int32_t> seq(rows), pos(rows);
    if (dense) {
        n_seq = rows / max_len;
        for (int r = 0; r < rows; r++) seq[r] = r / max_len, pos[r] = r % max_len;
    } else {
        for (int r = 0; r < rows; r++) seq[r] = r % n_seq, pos[r] = max_len - 1 - r / n_seq; /* distinct cells */
    }
    Pair s = pair_of(seq), p = pair_of(pos);
    Pair x = pair_of(randn((size_t)rows * dim)), kc = pair_of(randn((size_t)n_seq * max_len * kd)), vc = pair_of(randn((size_t)n_seq * max_len * kd));
    Pair xn = pair_out((size_t)rows * dim * 4), res = pair_out((size_t)rows * dim * 4), q = pair_out((size_t)rows * qd * 4);
    Pair k = pair_out((size_t)rows * kd * 4), v = pair_out((size_t)rows * kd * 4), att = pair_out((size_t)rows * qd * 4), lse = pair_out((size_t)rows * heads * 4);
    Pair g = pair_out((size_t)rows * hidden * 4), u = pair_out((size_t)rows * hidden * 4), i1 = pair_out((size_t)rows * 4), i2 = pair_out((size_t)rows * 4);
    const float scale = 1.0f / sqrtf((float)head_dim);
    both("decoder_layer_fwd", [&](const Api& api, int w) {
        return api.ee_decoder_layer_fwd((float*)P(x), (float*)P(x), (float*)P(res), (float*)P(xn), (float*)P(i1), (float*)P(q), (float*)P(k), (float*)P(v),
            (float*)P(att), (float*)P(lse), (float*)P(xn), (float*)P(i2), (float*)P(g), (float*)P(u), (float*)P(g), (float*)P(n1), P(wq), P(wk), P(wv), P(wo),
            (float*)P(bq), (float*)P(bk), (float*)P(bv), (float*)P(n2), P(wg), P(wu), P(wd), w_dtype, dense ? (float*)P(k) : (float*)P(kc), dense ? (float*)P(v) : (float*)P(vc),
            dense ? 0 : 1, n_seq, max_len, (int32_t*)P(s), (int32_t*)P(p), (float*)P(invf), rows, dim, heads, kv, head_dim, hidden, 1, 1e-5f, scale);
    });
    snprintf(name, sizeof name, "decoder_layer_fwd %s%s out rows %d dim %d heads %d/%d hidden %d", dense ? "dense " : "", w_dtype == EE_BF16 ? "bf16" : "f32", rows, dim, heads, kv, hidden);
    compare(name, x, (size_t)rows * dim, 1e-4);
    snprintf(name, sizeof name, "decoder_layer_fwd %s lse and residual", dense ? "dense" : "cached");
    compare(name, lse, (size_t)rows * heads, 1e-4);
    compare(name, res, (size_t)rows * dim, 1e-4);
    if (!dense) {
        snprintf(name, sizeof name, "decoder_layer_fwd K cache rows %d", rows);
        compare(name, kc, (size_t)n_seq * max_len * kd, 1e-5);
        /* the layer twice through ee_decoder_layers_fwd's host table (the same weights, a second cache for layer 1) */
        Pair kc2 = pair_of(randn((size_t)n_seq * max_len * kd)), vc2 = pair_of(randn((size_t)n_seq * max_len * kd));
        /* the host table of two layers with these weights, layer 0 on the caches kc / vc, layer 1 on its own */
        auto two_layers = [&](int w, const Pair& k1, const Pair& v1) {
            std::vector<int64_t> table;
            for (int l = 0; l < 2; l++)
                for (void* ptr : {P(n1), P(wq), P(wk), P(wv), P(wo), P(bq), P(bk), P(bv), P(n2), P(wg), P(wu), P(wd), l ? P(k1) : P(kc), l ? P(v1) : P(vc)})
                    table.push_back((int64_t)(intptr_t)ptr);
            return table;
        };
        both("decoder_layers_fwd", [&](const Api& api, int w) {
            std::vector<int64_t> table = two_layers(w, kc2, vc2);
            return api.ee_decoder_layers_fwd(table.data(), 0, 2, (float*)P(x), (float*)P(x), (float*)P(res), (float*)P(xn), (float*)P(i1), (float*)P(q), (float*)P(k),
                (float*)P(v), (float*)P(att), (float*)P(lse), (float*)P(xn), (float*)P(i2), (float*)P(g), (float*)P(u), (float*)P(g), w_dtype, 1, n_seq, max_len,
                (int32_t*)P(s), (int32_t*)P(p), (float*)P(invf), rows, dim, heads, kv, head_dim, hidden, 1, 1e-5f, scale);
        });
        snprintf(name, sizeof name, "decoder_layers_fwd 2 layers, rows %d: out and layer 1's K cache", rows);
        compare(name, x, (size_t)rows * dim, 1e-4);
        compare(name, kc2, (size_t)n_seq * max_len * kd, 1e-5);
        free_pair(kc2), free_pair(vc2);
        /* three steps through ee_decode_steps' plan, greedy and sampled: the same 2-layer table, an embedding and a classifier */
        const int vocab = 37, steps = 3, per = (rows + n_seq - 1) / n_seq;
        /* the plan over this layer's buffers on library w (eetune.h gives the fields' order); uni null: greedy */
        auto decode_plan = [&](int w, const std::vector<int64_t>& table, const Pair& emb, const Pair& cls, const Pair& ids, const Pair& out_ids, const Pair& sp,
                               const Pair& normed, const Pair& logits, const Pair* uni) {
            auto bits = [](float f) { uint32_t b; memcpy(&b, &f, 4); return (int64_t)b; };
            auto addr = [](void* ptr) { return (int64_t)(intptr_t)ptr; };
            return std::vector<int64_t>{addr((void*)table.data()), 2, addr(P(emb)), w_dtype, addr(P(n2)), addr(P(cls)), w_dtype, vocab, addr(P(ids)), addr(P(out_ids)),
                addr(P(x)), addr(P(res)), addr(P(xn)), addr(P(q)), addr(P(k)), addr(P(v)), addr(P(att)), addr(P(xn)), addr(P(g)), addr(P(u)), addr(P(g)),
                addr(P(normed)), addr(P(logits)), w_dtype, n_seq, max_len, addr(P(s)), addr(P(sp)), addr(P(invf)), rows, dim, heads, kv, head_dim, hidden, 1,
                bits(1e-5f), bits(scale), uni ? addr(P(*uni)) : 0, bits(0.9f), bits(0.95f)};
        };
        for (int sampled = 0; sampled < 2 && steps * per <= max_len; sampled++) {
            std::vector<int32_t> step_pos((size_t)steps * rows);
            for (int t = 0; t < steps; t++)
                for (int r = 0; r < rows; r++) step_pos[(size_t)t * rows + r] = t * per + r / n_seq; /* distinct cells, rising */
            Pair emb = weights((size_t)vocab * dim), cls = weights((size_t)vocab * dim), ids = pair_of(randint(rows, 0, vocab)), sp = pair_of(step_pos);
            Pair uni = pair_of(uniform((size_t)steps * rows, 0.0f, 1.0f));
            Pair out_ids = pair_out((size_t)steps * rows * 4), normed = pair_out((size_t)rows * dim * 4), logits = pair_out((size_t)rows * vocab * 4);
            Pair kc3 = pair_of(randn((size_t)n_seq * max_len * kd)), vc3 = pair_of(randn((size_t)n_seq * max_len * kd));
            both("decode_steps", [&](const Api& api, int w) {
                std::vector<int64_t> table = two_layers(w, kc3, vc3);
                std::vector<int64_t> plan = decode_plan(w, table, emb, cls, ids, out_ids, sp, normed, logits, sampled ? &uni : nullptr);
                if (plan.size() != EE_DECODE_PLAN_FIELDS) return (int32_t)-1;
                return api.ee_decode_steps(plan.data(), steps);
            });
            snprintf(name, sizeof name, "decode_steps %s, %d steps, rows %d: tokens", sampled ? "sampled" : "greedy", steps, rows);
            compare_exact<int32_t>(name, out_ids, (size_t)steps * rows);
            snprintf(name, sizeof name, "decode_steps: the last step's logits, layer 1's K cache");
            compare(name, logits, (size_t)rows * vocab, 1e-4);
            compare(name, kc3, (size_t)n_seq * max_len * kd, 1e-5);
            for (Pair* z : {&emb, &cls, &ids, &sp, &uni, &out_ids, &normed, &logits, &kc3, &vc3}) free_pair(*z);
        }
        /* chunks of steps through one plan, as the Java decoder makes them (the same id, position and token buffers,
         * each chunk starting from the last one's tokens): with EETUNE_CUDA_GRAPHS=1 libeecuda runs the first chunk
         * eagerly, captures the plan's step on the second and replays it after, and must choose the same tokens and
         * write the same cache as the reference decoding eagerly. In the emulation only on its own GEMM kernels: the
         * fake cuBLAS computes when called, not when a graph replays. */
        const char* blas = getenv("EETUNE_CUBLAS");
        const int chunks[] = {2, 3, 3}, total = 8;
        if ((emulated_launches() < 0 || (blas && !strcmp(blas, "none"))) && total * per <= max_len) {
            for (int sampled = 0; sampled < 2; sampled++) {
                Pair emb = weights((size_t)vocab * dim), cls = weights((size_t)vocab * dim), ids = pair_of(randint(rows, 0, vocab)), sp = pair_out((size_t)3 * rows * 4);
                Pair uni = pair_of(uniform((size_t)3 * rows, 0.0f, 1.0f)), out_ids = pair_out((size_t)3 * rows * 4), normed = pair_out((size_t)rows * dim * 4);
                Pair logits = pair_out((size_t)rows * vocab * 4), kc3 = pair_of(randn((size_t)n_seq * max_len * kd)), vc3 = pair_of(randn((size_t)n_seq * max_len * kd));
                std::vector<int32_t> tokens[2];
                long long launched[3] = {-1, -1, -1}; /* launches of each GPU call, in the emulation */
                setenv("EETUNE_CUDA_GRAPHS", "1", 1);
                for (int w = 0; w < 2; w++) {
                    const Api& api = w ? gpu : cpu;
                    if (!w && !have_cpu) continue;
                    std::vector<int64_t> table = two_layers(w, kc3, vc3);
                    std::vector<int64_t> plan = decode_plan(w, table, emb, cls, ids, out_ids, sp, normed, logits, sampled ? &uni : nullptr);
                    for (int c = 0, t0 = 0; c < 3; t0 += chunks[c++]) {
                        std::vector<int32_t> pos((size_t)chunks[c] * rows);
                        for (int t = 0; t < chunks[c]; t++)
                            for (int r = 0; r < rows; r++) pos[(size_t)t * rows + r] = (t0 + t) * per + r / n_seq;
                        die_if(api.ee_copy(P(sp), pos.data(), (int64_t)pos.size() * 4, 1), api, "decode chunks: positions");
                        long long before = emulated_launches();
                        die_if(api.ee_decode_steps(plan.data(), chunks[c]), api, "decode chunks");
                        if (w) launched[c] = emulated_launches() - before;
                        std::vector<int32_t> out(download<int32_t>(w ? out_ids.g : out_ids.c, (size_t)chunks[c] * rows));
                        tokens[w].insert(tokens[w].end(), out.begin(), out.end());
                        die_if(api.ee_copy(P(ids), out.data() + (size_t)(chunks[c] - 1) * rows, (int64_t)rows * 4, 1), api, "decode chunks: next ids");
                    }
                }
                unsetenv("EETUNE_CUDA_GRAPHS");
                snprintf(name, sizeof name, "decode chunks %s, CUDA graphs, rows %d: tokens", sampled ? "sampled" : "greedy", rows);
                bool same = !have_cpu || tokens[0] == tokens[1];
                printf("%s %-44s %s\n", same ? "PASS" : "FAIL", name, have_cpu ? (same ? "the reference's, 8 steps in 3 calls" : "differ from the reference's") : "(no reference)");
                same ? passes++ : failures++;
                if (launched[2] >= 0) { /* the third call replays the graph: no launch of its own but the graph's */
                    bool replayed = launched[2] == 0 && launched[0] > 0;
                    snprintf(name, sizeof name, "decode chunks %s, CUDA graphs: replayed", sampled ? "sampled" : "greedy");
                    printf("%s %-44s launches per call %lld, %lld, %lld (eager, captured, replayed)\n", replayed ? "PASS" : "FAIL", name, launched[0], launched[1], launched[2]);
                    replayed ? passes++ : failures++;
                }
                snprintf(name, sizeof name, "decode chunks, CUDA graphs: layer 1's K cache");
                compare(name, kc3, (size_t)n_seq * max_len * kd, 1e-5);
                for (Pair* z : {&emb, &cls, &ids, &sp, &uni, &out_ids, &normed, &logits, &kc3, &vc3}) free_pair(*z);
            }
        }
        /* six early-exit steps through ee_exit_steps of one sequence (cache slot 0), then of two together (slots 1 and 0,
         * in that order), in two calls that continue one another: the 2-layer table, an mlp head after layer 1 scored by
         * a gate; the first call's 2 steps at threshold 0 (every sequence exits each step: its row waits, having run
         * layer 1), the second's 4 at threshold 2 (none exits: the first pass takes each sequence's 2 waiting rows into
         * layer 2 beside the newest, 1 + 3 row-layers per sequence, and completes them), in passes of up to 4 rows a
         * sequence */
        for (int nseq = 1; nseq <= 2 && rows >= 3 && max_len >= 9 && nseq <= n_seq; nseq++) {
            const int vocab = 37, steps = 6, first = 2, units = 4, cap = 4 * nseq, stride = nseq * EE_EXIT_RECORD;
            Pair emb = weights((size_t)vocab * dim), lm = weights((size_t)vocab * dim), cls = weights((size_t)vocab * dim), ids = pair_of(randint(nseq, 0, vocab));
            Pair gw1 = pair_of(randn((size_t)units * dim, 0.05f)), gb1 = pair_of(randn(units, 0.1f)), gw = pair_of(randn(units)), gb = pair_of(std::vector<float>{0.0f});
            Pair seqs = pair_out((size_t)cap * 4), states = pair_out((size_t)n_seq * max_len * dim * 4), out_ids = pair_out((size_t)steps * nseq * 4);
            Pair normed = pair_out((size_t)nseq * dim * 4), logits = pair_out((size_t)nseq * vocab * 4), pos = pair_out((size_t)cap * 4), score = pair_out((nseq + 1) * 4);
            Pair chosen = pair_out(nseq * 4), pre = pair_out((size_t)nseq * dim * 4), zb = pair_out((size_t)nseq * dim * 4);
            Pair xc = pair_out((size_t)cap * dim * 4), resc = pair_out((size_t)cap * dim * 4), xnc = pair_out((size_t)cap * dim * 4), qc = pair_out((size_t)cap * qd * 4);
            Pair kcur = pair_out((size_t)cap * kd * 4), vcur = pair_out((size_t)cap * kd * 4), attc = pair_out((size_t)cap * qd * 4);
            Pair gc = pair_out((size_t)cap * hidden * 4), uc = pair_out((size_t)cap * hidden * 4);
            Pair kc4 = pair_of(randn((size_t)n_seq * max_len * kd)), vc4 = pair_of(randn((size_t)n_seq * max_len * kd));
            std::vector<int32_t> state_of[2], record_of[2];
            /* the CPU library's serial loop, which the CUDA library's is: with two threads it would run one sequence as its
             * pipeline (cpu/exit_pipeline.c: the same tokens and cache, but no row left waiting) */
            if (have_cpu) cpu.ee_set_num_threads(1);
            both("exit_steps", [&](const Api& api, int w) {
                std::vector<int64_t> table = two_layers(w, kc4, vc4), tables(4 * (cap + 1), 0);
                for (int r = 1; r <= cap; r++)
                    tables[4 * r] = (int64_t)(intptr_t)table.data(), tables[4 * r + 1] = w_dtype, tables[4 * r + 2] = (int64_t)(intptr_t)P(cls), tables[4 * r + 3] = w_dtype;
                auto bits = [](float f) { uint32_t b; memcpy(&b, &f, 4); return (int64_t)b; };
                auto addr = [](void* ptr) { return (int64_t)(intptr_t)ptr; };
                std::vector<int64_t> plan = {addr(table.data()), 2, addr(P(emb)), w_dtype, addr(P(n2)), addr(P(cls)), w_dtype, vocab, addr(P(ids)), addr(P(out_ids)),
                    addr(P(xc)), addr(P(resc)), addr(P(xnc)), addr(P(qc)), addr(P(kcur)), addr(P(vcur)), addr(P(attc)), addr(P(xnc)), addr(P(gc)), addr(P(uc)), addr(P(gc)),
                    addr(P(normed)), addr(P(logits)), w_dtype, n_seq, max_len, addr(P(seqs)), addr(P(pos)), addr(P(invf)), cap, dim, heads, kv, head_dim, hidden, 1,
                    bits(1e-5f), bits(scale), 0, bits(1.0f), bits(1.0f)};
                std::vector<int32_t>& state = state_of[w];
                state.assign(3 + nseq * (3 + max_len), 0);
                state[1] = nseq;
                for (int i = 0; i < nseq; i++) state[3 + i * (3 + max_len)] = nseq - 1 - i, state[3 + i * (3 + max_len) + 2] = 1; /* slots ..., 1, 0; length 1 */
                record_of[w].assign((size_t)steps * stride, -1);
                std::vector<int32_t> pos_host(cap), seq_host(cap);
                std::vector<float> z_host(dim), score_host(nseq);
                std::vector<int64_t> exits = {1, EE_EXIT_GATE, nseq, cap, addr(tables.data()), addr(state.data()), addr(P(states)), addr(record_of[w].data()), addr(P(pos)),
                    addr(pos_host.data()), addr(seq_host.data()), addr(P(score)), addr(score_host.data()), addr(P(chosen)), addr(P(pre)), addr(P(zb)), addr(z_host.data()),
                    1, EE_HEAD_MLP, addr(P(n2)), addr(P(n2)), addr(P(wg)), addr(P(wu)), addr(P(wd)), w_dtype, hidden, addr(P(lm)), w_dtype, bits(1.0f),
                    addr(P(gw1)), addr(P(gb1)), addr(P(gw)), addr(P(gb)), units, bits(1e-5f), bits(0.0f), 0, 0, 0, bits(1.0f), 0};
                if (plan.size() != EE_DECODE_PLAN_FIELDS || exits.size() != EE_EXIT_PLAN_HEADER + EE_EXIT_PLAN_FIELDS) return (int32_t)-1;
                int32_t rc = api.ee_exit_steps(plan.data(), exits.data(), first);
                if (rc) return rc;
                /* the second call goes on from the first one's last tokens, state and kept rows (eetune.h's field order: the
                 * plan's first_ids 8 and out_ids 9, the exit plan's record 7 and its exit's tau 18) */
                plan[8] = addr((int32_t*)P(out_ids) + (first - 1) * nseq);
                plan[9] = addr((int32_t*)P(out_ids) + first * nseq);
                exits[7] = addr(record_of[w].data() + (size_t)first * stride);
                exits[EE_EXIT_PLAN_HEADER + 18] = bits(2.0f);
                return api.ee_exit_steps(plan.data(), exits.data(), steps - first);
            });
            if (have_cpu) cpu.ee_set_num_threads(0);
            snprintf(name, sizeof name, "exit_steps %d sequence(s): tokens", nseq);
            compare_exact<int32_t>(name, out_ids, (size_t)steps * nseq);
            if (have_cpu) {
                snprintf(name, sizeof name, "exit_steps %d sequence(s): record and state", nseq);
                expect_equal(name, record_of[1], record_of[0]);
                expect_equal(name, state_of[1], state_of[0]);
                /* what the reference did, per sequence: steps 0-1 exit after layer 1, step 2 takes their rows through layer 2 and completes them */
                bool joined = state_of[0][0] == steps - first;
                for (int i = 0; i < nseq; i++) {
                    const int32_t* rec = record_of[0].data() + i * EE_EXIT_RECORD;
                    joined = joined && rec[0] == 1 && rec[stride] == 1 && rec[2 * stride] == 2 && rec[2 * stride + 1] == 3 && rec[2 * stride + 2] == 4 &&
                             state_of[0][3 + i * (3 + max_len) + 1] == steps;
                }
                if (joined) passes++;
                else failures++;
                snprintf(name, sizeof name, "exit_steps %d sequence(s): rows join", nseq);
                printf("%s %-44s steps run %d, sequence 0 step 2: layer %d, complete %d, %d row-layers\n", joined ? "PASS" : "FAIL", name, state_of[0][0],
                       record_of[0][2 * stride], record_of[0][2 * stride + 1], record_of[0][2 * stride + 2]);
            }
            snprintf(name, sizeof name, "exit_steps %d sequence(s): kept states, layer 1's K cache", nseq);
            compare_partly_written(name, states, (size_t)n_seq * max_len * dim, 1e-4);
            compare(name, kc4, (size_t)n_seq * max_len * kd, 1e-5);
            for (Pair* z : {&emb, &lm, &cls, &ids, &gw1, &gb1, &gw, &gb, &seqs, &states, &out_ids, &normed, &logits, &pos, &score, &chosen, &pre, &zb, &xc, &resc, &xnc, &qc,
                            &kcur, &vcur, &attc, &gc, &uc, &kc4, &vc4})
                free_pair(*z);
        }
        /* the second half alone, out apart from h */
        Pair ffo = pair_out((size_t)rows * dim * 4);
        both("feed_forward_fwd", [&](const Api& api, int w) {
            return api.ee_feed_forward_fwd((float*)P(res), (float*)P(ffo), (float*)P(xn), (float*)P(i2), (float*)P(g), (float*)P(u), (float*)P(g), (float*)P(n2), P(wg), P(wu),
                P(wd), w_dtype, rows, dim, hidden, 1e-5f);
        });
        snprintf(name, sizeof name, "feed_forward_fwd rows %d dim %d hidden %d", rows, dim, hidden);
        compare(name, ffo, (size_t)rows * dim, 1e-4);
        free_pair(ffo);
    }
    for (Pair* z : {&wq, &wk, &wv, &wo, &wg, &wu, &wd, &n1, &n2, &bq, &bk, &bv, &invf, &s, &p, &x, &kc, &vc, &xn, &res, &q, &k, &v, &att, &lse, &g, &u, &i1, &i2})
        free_pair(*z);
}

/* The CUDA layer's fused steps (ee_gemm_group's one rounding of q/k/v's and gate/up's input, ee_rope_qk_kv) against
 * the ops they replace, called one by one on the same library and GEMM path: the same bits in the output, the
 * residual, lse and both caches. 16-bit weights, so that on the cuBLAS path (the fake one in the emulation, the real
 * one on a device) the shared rounding runs. In the emulation also the launch budget of a decode layer. */
static void check_layer_fusions(int n_seq, int max_len, int rows, int dim, int heads, int kv, int head_dim, int hidden) {
    const int qd = heads * head_dim, kd = kv * head_dim;
    auto bf16 = [&](size_t n) { return upload(gpu, bf16_of(randn(n, 0.1f))); };
    auto f32 = [&](const std::vector<float>& v) { return upload(gpu, v); };
    Buf wq = bf16((size_t)qd * dim), wk = bf16((size_t)kd * dim), wv = bf16((size_t)kd * dim), wo = bf16((size_t)dim * qd);
    Buf wg = bf16((size_t)hidden * dim), wu = bf16((size_t)hidden * dim), wd = bf16((size_t)dim * hidden);
    Buf n1 = f32(uniform(dim, 0.5f, 1.5f)), n2 = f32(uniform(dim, 0.5f, 1.5f)), bq = f32(randn(qd, 0.1f)), bk = f32(randn(kd, 0.1f)), bv = f32(randn(kd, 0.1f));
    std::vector<float> half_freq((size_t)head_dim / 2);
    for (int i = 0; i < head_dim / 2; i++) half_freq[i] = powf(10000.0f, -2.0f * i / head_dim);
    std::vector<int32_t> seq(rows), pos(rows);
    for (int r = 0; r < rows; r++) seq[r] = r % n_seq, pos[r] = max_len - 1 - r / n_seq;
    Buf invf = f32(half_freq), s = upload(gpu, seq), p = upload(gpu, pos);
    const std::vector<float> x0 = randn((size_t)rows * dim), k0 = randn((size_t)n_seq * max_len * kd), v0 = randn((size_t)n_seq * max_len * kd);
    const float scale = 1.0f / sqrtf((float)head_dim), eps = 1e-5f;
    struct Outs { std::vector<float> out, res, lse, kc, vc; };
    auto run = [&](bool fused, bool biases) {
        Buf x = f32(x0), out = make(gpu, (size_t)rows * dim * 4), res = make(gpu, (size_t)rows * dim * 4), kc = f32(k0), vc = f32(v0);
        Buf xn1 = make(gpu, (size_t)rows * dim * 4), xn2 = make(gpu, (size_t)rows * dim * 4), i1 = make(gpu, (size_t)rows * 4), i2 = make(gpu, (size_t)rows * 4);
        Buf q = make(gpu, (size_t)rows * qd * 4), k = make(gpu, (size_t)rows * kd * 4), v = make(gpu, (size_t)rows * kd * 4), att = make(gpu, (size_t)rows * qd * 4);
        Buf lse = make(gpu, (size_t)rows * heads * 4), g = make(gpu, (size_t)rows * hidden * 4), u = make(gpu, (size_t)rows * hidden * 4), a = make(gpu, (size_t)rows * hidden * 4);
        const float *b_q = biases ? (float*)bq.p : 0, *b_k = biases ? (float*)bk.p : 0, *b_v = biases ? (float*)bv.p : 0;
        auto F = [](const Buf& b) { return (float*)b.p; };
        int rc = 0;
        long long before = emulated_launches();
        if (fused) {
            rc = gpu.ee_decoder_layer_fwd(F(x), F(out), F(res), F(xn1), F(i1), F(q), F(k), F(v), F(att), F(lse), F(xn2), F(i2), F(g), F(u), F(a), F(n1), wq.p, wk.p, wv.p,
                                          wo.p, b_q, b_k, b_v, F(n2), wg.p, wu.p, wd.p, EE_BF16, F(kc), F(vc), 1, n_seq, max_len, (int32_t*)s.p, (int32_t*)p.p, F(invf),
                                          rows, dim, heads, kv, head_dim, hidden, 1, eps, scale);
        } else { /* cuda/layer.cu before the fusions, op by op */
            rc |= gpu.ee_rmsnorm_fwd(F(xn1), F(i1), F(x), F(n1), rows, dim, eps);
            rc |= gpu.ee_gemm(0, 1, rows, qd, dim, 1.0f, F(xn1), dim, wq.p, EE_BF16, dim, 0.0f, F(q), qd);
            rc |= gpu.ee_gemm(0, 1, rows, kd, dim, 1.0f, F(xn1), dim, wk.p, EE_BF16, dim, 0.0f, F(k), kd);
            rc |= gpu.ee_gemm(0, 1, rows, kd, dim, 1.0f, F(xn1), dim, wv.p, EE_BF16, dim, 0.0f, F(v), kd);
            if (biases) rc |= gpu.ee_add_bias(F(q), b_q, rows, qd) | gpu.ee_add_bias(F(k), b_k, rows, kd) | gpu.ee_add_bias(F(v), b_v, rows, kd);
            rc |= gpu.ee_rope(F(q), (int32_t*)p.p, F(invf), rows, heads, head_dim, 1, 0);
            rc |= gpu.ee_rope(F(k), (int32_t*)p.p, F(invf), rows, kv, head_dim, 1, 0);
            rc |= gpu.ee_kv_write(F(kc), F(k), (int32_t*)s.p, (int32_t*)p.p, rows, kd, n_seq, max_len);
            rc |= gpu.ee_kv_write(F(vc), F(v), (int32_t*)s.p, (int32_t*)p.p, rows, kd, n_seq, max_len);
            rc |= gpu.ee_attention_fwd(F(att), F(lse), F(q), F(kc), F(vc), (int32_t*)s.p, (int32_t*)p.p, rows, heads, kv, head_dim, n_seq, max_len, scale);
            rc |= gpu.ee_copy(F(res), F(x), (int64_t)rows * dim * 4, 0);
            rc |= gpu.ee_gemm(0, 1, rows, dim, qd, 1.0f, F(att), qd, wo.p, EE_BF16, qd, 1.0f, F(res), dim);
            rc |= gpu.ee_rmsnorm_fwd(F(xn2), F(i2), F(res), F(n2), rows, dim, eps);
            rc |= gpu.ee_gemm(0, 1, rows, hidden, dim, 1.0f, F(xn2), dim, wg.p, EE_BF16, dim, 0.0f, F(g), hidden);
            rc |= gpu.ee_gemm(0, 1, rows, hidden, dim, 1.0f, F(xn2), dim, wu.p, EE_BF16, dim, 0.0f, F(u), hidden);
            rc |= gpu.ee_swiglu_fwd(F(a), F(g), F(u), (int64_t)rows * hidden);
            rc |= gpu.ee_copy(F(out), F(res), (int64_t)rows * dim * 4, 0);
            rc |= gpu.ee_gemm(0, 1, rows, dim, hidden, 1.0f, F(a), hidden, wd.p, EE_BF16, hidden, 1.0f, F(out), dim);
        }
        long long launched = emulated_launches() - before;
        die_if(rc | gpu.ee_synchronize(), gpu, fused ? "layer fusions: the fused layer" : "layer fusions: the ops one by one");
        Outs o{download<float>(out, (size_t)rows * dim), download<float>(res, (size_t)rows * dim), download<float>(lse, (size_t)rows * heads),
               download<float>(kc, (size_t)n_seq * max_len * kd), download<float>(vc, (size_t)n_seq * max_len * kd)};
        for (Buf* b : {&x, &out, &res, &kc, &vc, &xn1, &xn2, &i1, &i2, &q, &k, &v, &att, &lse, &g, &u, &a}) release(*b);
        return std::make_pair(o, launched);
    };
    char name[160];
    for (int biases = 0; biases < 2; biases++) {
        auto fused = run(true, biases), plain = run(false, biases);
        const Outs &f = fused.first, &o = plain.first;
        bool same = f.out == o.out && f.res == o.res && f.lse == o.lse && f.kc == o.kc && f.vc == o.vc;
        snprintf(name, sizeof name, "layer fusions bf16 rows %d%s", rows, biases ? " biases" : "");
        printf("%s %-44s %s\n", same ? "PASS" : "FAIL", name, same ? "the same bits as the ops one by one" : "differs from the ops one by one");
        same ? passes++ : failures++;
        /* the launch budget of a layer without biases: 2 norms (writing the GEMMs' rounded input), 7 GEMMs and the
         * rounding of attention's output on cuBLAS, RoPE with the cache writes, attention and its combine, SwiGLU, 2
         * residual copies */
        if (!biases && fused.second >= 0) {
            bool ok = fused.second <= 16;
            snprintf(name, sizeof name, "layer launches rows %d", rows);
            printf("%s %-44s %lld launches (the ops one by one: %lld; budget 16)\n", ok ? "PASS" : "FAIL", name, fused.second, plain.second);
            ok ? passes++ : failures++;
        }
    }
    for (Buf* b : {&wq, &wk, &wv, &wo, &wg, &wu, &wd, &n1, &n2, &bq, &bk, &bv, &invf, &s, &p}) release(*b);
}

/* 16-bit weights run on the exact fallback GEMM: the layers' composition is what check_decoder_layer_on_path checks,
 * at f32 tolerances; on cuBLAS a 16-bit GEMM rounds its f32 operand (gemm.cu's precision contract, which check_gemm
 * holds it to), and a few layers of that exceed those tolerances and change sampled tokens. */
static void check_decoder_layer(int n_seq, int max_len, int rows, int dim, int heads, int kv, int head_dim, int hidden, int w_dtype, bool dense) {
    if (w_dtype != EE_F32) gpu.ee_set_gemm_path(2);
    check_decoder_layer_on_path(n_seq, max_len, rows, dim, heads, kv, head_dim, hidden, w_dtype, dense);
    gpu.ee_set_gemm_path(0);
}

static void run_checks(bool small) {
    check_index_errors();
    if (small) { /* each kernel once, small shapes: for compute-sanitizer */
        check_casts(1001);
        check_elementwise(1003);
        check_embedding(50, 33, 17);
        check_rmsnorm(5, 67);
        check_gate(5, 67, 16);
        check_gemm(13, 21, 35, 0);
        check_gemm(13, 21, 35, 2);
        check_gemm_panels(45, 19, EE_F32);
        check_gemm_panels(45, 19, EE_BF16);
        check_gemm_panels(45, 19, EE_F16);
        check_rope(5, 3, 16);
        check_attention(2, 70, 9, 8, 2, 32);
        check_attention_bwd(2, 19, 4, 2, 32);
        check_softmax(3, 301);
        check_argmax_candidates(4, 301, 32);
        check_gemm_panels_i8(45, 19);
        check_gemm_panels_i8(40, 1100); /* three blocks of integer sums */
        check_max_prob_upper(4, 301);
        check_cross_entropy(9, 48, 301, 4, EE_BF16, 0);
        check_cross_entropy(9, 48, 301, 1000, EE_F32, 2);
        check_cross_entropy(1, 8, 1, 0, EE_F32, 0); /* one row, one word */
        check_decoder_layer(2, 17, 3, 48, 4, 2, 12, 70, EE_F32, false); /* room for 8 steps of 2 positions (decode chunks) */
        check_decoder_layer(0, 5, 10, 32, 2, 2, 16, 40, EE_F32, true);
        check_layer_fusions(2, 9, 1, 48, 4, 2, 12, 70);
        return;
    }
    for (int n : {1, 7, 4097, 1000003}) check_elementwise(n);
    for (int n : {1, 4099, 100001}) check_casts(n);
    check_embedding(1000, 129, 300);
    check_embedding(32000, 64, 2049);
    for (int rows : {1, 7, 130}) check_rmsnorm(rows, rows == 130 ? 4096 : 1000);
    check_rmsnorm(1030, 64); /* more than one dw chunk */
    for (int units : {0, 1, 16, 70}) check_gate(9, units == 70 ? 1000 : 64, units);
    check_gemm(37, 53, 129, 0);
    check_gemm(37, 53, 129, 2);
    check_gemm(1, 300, 257, 0);
    check_gemm(130, 70, 1, 0);
    check_gemm_panels(1, 1, EE_F32);
    check_gemm_panels(97, 130, EE_F32);
    check_gemm_panels(1, 1, EE_BF16);
    check_gemm_panels(97, 131, EE_BF16);
    check_gemm_panels(1, 1, EE_F16);
    check_gemm_panels(97, 131, EE_F16);
    check_argmax_candidates(9, 32000, 32);
    check_argmax_candidates(5, 1001, 7);
    check_gemm_panels_i8(1, 1);
    check_gemm_panels_i8(97, 130);
    check_max_prob_upper(9, 32000);
    check_rope(7, 5, 64);
    check_rope(33, 4, 128);
    check_attention(3, 200, 40, 8, 2, 64);
    check_attention(2, 300, 17, 32, 8, 128);
    check_attention(1, 90, 5, 6, 6, 80);   /* no grouping, head_dim not a multiple of 32 */
    check_attention(1, 64, 4, 16, 1, 256); /* MQA, several head blocks */
    check_attention_bwd(2, 37, 8, 2, 64);
    check_attention_bwd(1, 70, 4, 4, 128);
    check_attention_bwd(1, 20, 32, 4, 64);
    check_decoder_layer(3, 40, 7, 288, 6, 6, 48, 768, EE_F32, false); /* the 15M config's shape, a few decode rows */
    check_decoder_layer(2, 33, 5, 64, 8, 4, 8, 172, EE_BF16, false);
    check_decoder_layer(0, 17, 34, 96, 4, 2, 24, 130, EE_F32, true);
    check_layer_fusions(2, 33, 1, 64, 8, 4, 8, 172); /* decode: one row */
    check_layer_fusions(3, 40, 7, 288, 6, 2, 48, 768);
    check_softmax(4, 32000);
    check_softmax(7, 1001);
    check_softmax(2, 128256);
    check_cross_entropy(33, 64, 1001, 7, EE_F32, 0); /* the last row block short */
    check_cross_entropy(33, 64, 1001, 7, EE_BF16, 2);
    check_cross_entropy(40, 256, 32001, 16, EE_BF16, 0);
    check_cross_entropy(17, 128, 500, 0, EE_F32, 0); /* row block 0: as many rows as the scratch holds (all) */
    check_cross_entropy(6, 16, 1, 4, EE_F32, 0);     /* a one-word vocabulary */
}

/* ---- bench ---------------------------------------------------------------------------------------------------- */

static double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

/* Median over `samples` of the mean time of `batch` calls between synchronisations. */
template <typename F>
static double time_it(F f, int batch, int samples = 7) {
    f();
    gpu.ee_synchronize();
    std::vector<double> t;
    for (int s = 0; s < samples; s++) {
        double t0 = now_s();
        for (int i = 0; i < batch; i++) f();
        if (gpu.ee_synchronize()) printf("FAIL bench: %s\n", gpu.ee_last_error()), failures++;
        t.push_back((now_s() - t0) / batch);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

struct Row {
    std::string what;
    double ms;
    std::string rate;
};

static void run_bench() {
    std::vector<Row> rows;
    char rate[128];
    auto dev = [&](size_t bytes) { return make(gpu, bytes); };
    auto fill = [&](Buf& b, size_t n_floats, float scale) { std::vector<float> h = randn(n_floats, scale); gpu.ee_copy(b.p, h.data(), (int64_t)n_floats * 4, 1); };
    auto fill16 = [&](Buf& b, size_t n) { Buf t = dev(n * 4); fill(t, n, 0.05f); gpu.ee_cast(b.p, EE_BF16, t.p, EE_F32, (int64_t)n); gpu.ee_synchronize(); release(t); };

    /* copy bandwidth: 2 GiB device to device */
    {
        size_t bytes = (size_t)2 << 30;
        Buf a = dev(bytes), b = dev(bytes);
        gpu.ee_fill_bytes(a.p, 0x3c, (int64_t)bytes);
        double t = time_it([&] { gpu.ee_copy(b.p, a.p, (int64_t)bytes, 0); }, 3);
        snprintf(rate, sizeof rate, "%.0f GB/s (read+write; HBM peak ~4800)", 2.0 * bytes / t / 1e9);
        rows.push_back({"copy D2D 2 GiB", t * 1e3, rate});
        release(a), release(b);
    }
    /* launch cost */
    {
        Buf a = dev(256);
        double t = time_it([&] { gpu.ee_scale((float*)a.p, 1.0f, 1); }, 2000);
        snprintf(rate, sizeof rate, "%.1f us per call (ee_scale of 1 element)", t * 1e6);
        rows.push_back({"launch + call", t * 1e3, rate});
        release(a);
    }
    /* GEMMs: y[m x n] = x[m x k] W^T, W [n x k] bf16 (x is f32 per the ABI, rounded to bf16 in scratch) */
    struct G { const char* what; int m, n, k, dt; };
    for (G g : {G{"gemm bf16 4096^3", 4096, 4096, 4096, EE_BF16}, G{"gemm bf16 7B MLP 8192x11008x4096", 8192, 11008, 4096, EE_BF16},
                G{"gemm bf16 7B down 8192x4096x11008", 8192, 4096, 11008, EE_BF16}, G{"gemm f32 4096^3 (fp32, no TF32)", 4096, 4096, 4096, EE_F32}}) {
        Buf x = dev((size_t)g.m * g.k * 4), w = dev((size_t)g.n * g.k * (g.dt == EE_F32 ? 4 : 2)), y = dev((size_t)g.m * g.n * 4);
        fill(x, (size_t)g.m * g.k, 1.0f);
        if (g.dt == EE_F32) fill(w, (size_t)g.n * g.k, 0.05f);
        else fill16(w, (size_t)g.n * g.k);
        double t = time_it([&] { gpu.ee_gemm(0, 1, g.m, g.n, g.k, 1.0f, (float*)x.p, g.k, w.p, g.dt, g.k, 0.0f, (float*)y.p, g.n); }, 5);
        snprintf(rate, sizeof rate, "%.0f TFLOP/s", 2.0 * g.m * g.n * g.k / t / 1e12);
        rows.push_back({g.what, t * 1e3, rate});
        release(x), release(w), release(y);
    }
    /* the fallback kernel, for scale */
    {
        int n = 2048;
        Buf x = dev((size_t)n * n * 4), w = dev((size_t)n * n * 2), y = dev((size_t)n * n * 4);
        fill(x, (size_t)n * n, 1.0f);
        fill16(w, (size_t)n * n);
        gpu.ee_set_gemm_path(2);
        double t = time_it([&] { gpu.ee_gemm(0, 1, n, n, n, 1.0f, (float*)x.p, n, w.p, EE_BF16, n, 0.0f, (float*)y.p, n); }, 3);
        gpu.ee_set_gemm_path(0);
        snprintf(rate, sizeof rate, "%.1f TFLOP/s (fp32 SIMT)", 2.0 * n * n * n / t / 1e12);
        rows.push_back({"gemm fallback kernel 2048^3 bf16 B", t * 1e3, rate});
        release(x), release(w), release(y);
    }
    /* decode-like GEMMs: m tokens against 4 rotating 11008 x 4096 bf16 weights (90 MB each: beyond L2) */
    for (int m : {1, 8, 64}) {
        const int n = 11008, k = 4096, sets = 4;
        std::vector<Buf> ws;
        for (int s = 0; s < sets; s++) {
            ws.push_back(dev((size_t)n * k * 2));
            fill16(ws.back(), (size_t)n * k);
        }
        Buf x = dev((size_t)m * k * 4), y = dev((size_t)m * n * 4);
        fill(x, (size_t)m * k, 1.0f);
        int it = 0;
        double t = time_it([&] { gpu.ee_gemm(0, 1, m, n, k, 1.0f, (float*)x.p, k, ws[it++ % sets].p, EE_BF16, k, 0.0f, (float*)y.p, n); }, 40);
        snprintf(rate, sizeof rate, "%.0f GB/s of weights (%.0f%% of 4800)", (double)n * k * 2 / t / 1e9, (double)n * k * 2 / t / 4.8e12 * 100);
        rows.push_back({"decode gemm m=" + std::to_string(m) + " 11008x4096 bf16", t * 1e3, rate});
        for (auto& b : ws) release(b);
        release(x), release(y);
    }
    /* attention: prefill (one sequence, 2048 rows, causal) and decode (8 sequences at position 4095) */
    {
        const int heads = 32, kv = 8, d = 128, T = 2048;
        Buf kc = dev((size_t)T * kv * d * 4), vc = dev((size_t)T * kv * d * 4), q = dev((size_t)T * heads * d * 4), o = dev((size_t)T * heads * d * 4), lse = dev((size_t)T * heads * 4);
        fill(kc, (size_t)T * kv * d, 1.0f), fill(vc, (size_t)T * kv * d, 1.0f), fill(q, (size_t)T * heads * d, 1.0f);
        std::vector<int32_t> s(T, 0), p(T);
        for (int i = 0; i < T; i++) p[i] = i;
        Buf sb = upload(gpu, s), pb = upload(gpu, p);
        double t = time_it([&] { gpu.ee_attention_fwd((float*)o.p, (float*)lse.p, (float*)q.p, (float*)kc.p, (float*)vc.p, (int32_t*)sb.p, (int32_t*)pb.p, T, heads, kv, d, 1, T, 0.088f); }, 3);
        double flops = 4.0 * d * heads * (double)T * (T + 1) / 2;
        snprintf(rate, sizeof rate, "%.1f TFLOP/s (fp32, causal, GQA 32/8, d 128)", flops / t / 1e12);
        rows.push_back({"attention prefill T=2048", t * 1e3, rate});
        release(kc), release(vc), release(q), release(o), release(lse), release(sb), release(pb);
    }
    {
        const int heads = 32, kv = 8, d = 128, L = 4096, B = 8;
        Buf kc = dev((size_t)B * L * kv * d * 4), vc = dev((size_t)B * L * kv * d * 4), q = dev((size_t)B * heads * d * 4), o = dev((size_t)B * heads * d * 4);
        fill(kc, (size_t)B * L * kv * d, 1.0f), fill(vc, (size_t)B * L * kv * d, 1.0f), fill(q, (size_t)B * heads * d, 1.0f);
        std::vector<int32_t> s(B), p(B, L - 1);
        for (int i = 0; i < B; i++) s[i] = i;
        Buf sb = upload(gpu, s), pb = upload(gpu, p);
        double t = time_it([&] { gpu.ee_attention_fwd((float*)o.p, 0, (float*)q.p, (float*)kc.p, (float*)vc.p, (int32_t*)sb.p, (int32_t*)pb.p, B, heads, kv, d, B, L, 0.088f); }, 10);
        double bytes = 2.0 * B * L * kv * d * 4;
        snprintf(rate, sizeof rate, "%.0f GB/s of f32 K/V (%.0f%% of 4800)", bytes / t / 1e9, bytes / t / 4.8e12 * 100);
        rows.push_back({"attention decode 8 seqs x 4096", t * 1e3, rate});
        release(kc), release(vc), release(q), release(o), release(sb), release(pb);
    }
    /* one token's decode pass on the TinyLlama-1.1B shape (dim 2048, 22 layers, 32/4 heads of 64, ffn 5632, vocab
     * 32000), bf16 weights, f32 KV cache at position 1023: the 22 ee_decoder_layer_fwd calls and the LM head GEMM,
     * everything streamed from memory (2 GB a token against a 50 MB L2); the values do not matter for the timing */
    {
        const int dim = 2048, n_layers = 22, heads = 32, kvh = 4, hd = 64, hidden = 5632, vocab = 32000, L = 1024;
        const int qd = heads * hd, kd = kvh * hd;
        const size_t mats[7] = {(size_t)qd * dim, (size_t)kd * dim, (size_t)kd * dim, (size_t)dim * qd, (size_t)hidden * dim, (size_t)hidden * dim, (size_t)dim * hidden};
        std::vector<std::vector<Buf>> w(n_layers);
        std::vector<Buf> kc, vc;
        double bytes = 0;
        for (int l = 0; l < n_layers; l++) {
            for (size_t n : mats) {
                w[l].push_back(dev(n * 2));
                gpu.ee_fill_bytes(w[l].back().p, 0x3c, (int64_t)n * 2);
                bytes += n * 2.0;
            }
            kc.push_back(dev((size_t)L * kd * 4)), vc.push_back(dev((size_t)L * kd * 4));
            gpu.ee_fill_bytes(kc.back().p, 0x3c, (int64_t)L * kd * 4), gpu.ee_fill_bytes(vc.back().p, 0x3c, (int64_t)L * kd * 4);
            bytes += 2.0 * L * kd * 4;
        }
        Buf lm = dev((size_t)vocab * dim * 2), norm = dev((size_t)dim * 4), x = dev((size_t)dim * 4), logits = dev((size_t)vocab * 4);
        gpu.ee_fill_bytes(lm.p, 0x3c, (int64_t)vocab * dim * 2);
        bytes += (double)vocab * dim * 2;
        fill(norm, dim, 1.0f), fill(x, dim, 1.0f);
        Buf res = dev((size_t)dim * 4), xn = dev((size_t)dim * 4), i1 = dev(4), i2 = dev(4), q = dev((size_t)qd * 4), k = dev((size_t)kd * 4), v = dev((size_t)kd * 4);
        Buf att = dev((size_t)qd * 4), lse = dev((size_t)heads * 4), g = dev((size_t)hidden * 4), u = dev((size_t)hidden * 4);
        std::vector<float> half_freq(hd / 2);
        for (int i = 0; i < hd / 2; i++) half_freq[i] = powf(10000.0f, -2.0f * i / hd);
        Buf invf = upload(gpu, half_freq), sb = upload(gpu, std::vector<int32_t>{0}), pb = upload(gpu, std::vector<int32_t>{L - 1});
        double t = time_it([&] {
            for (int l = 0; l < n_layers; l++) /* a call that failed would time nothing: counted as a failure */
                die_if(gpu.ee_decoder_layer_fwd((float*)x.p, (float*)x.p, (float*)res.p, (float*)xn.p, (float*)i1.p, (float*)q.p, (float*)k.p, (float*)v.p, (float*)att.p, (float*)lse.p,
                    (float*)xn.p, (float*)i2.p, (float*)g.p, (float*)u.p, (float*)g.p, (float*)norm.p, w[l][0].p, w[l][1].p, w[l][2].p, w[l][3].p, 0, 0, 0, (float*)norm.p,
                    w[l][4].p, w[l][5].p, w[l][6].p, EE_BF16, (float*)kc[l].p, (float*)vc[l].p, 1, 1, L, (int32_t*)sb.p, (int32_t*)pb.p, (float*)invf.p, 1, dim, heads, kvh, hd,
                    hidden, 1, 1e-5f, 0.125f), gpu, "bench: decode pass layer");
            die_if(gpu.ee_gemm(0, 1, 1, vocab, dim, 1.0f, (float*)x.p, dim, lm.p, EE_BF16, dim, 0.0f, (float*)logits.p, vocab), gpu, "bench: decode pass LM head");
        }, 5);
        snprintf(rate, sizeof rate, "%.0f tok/s, %.0f GB/s of weights + K/V (%.0f%% of 4800)", 1.0 / t, bytes / t / 1e9, bytes / t / 4.8e12 * 100);
        rows.push_back({"decode pass 1.1B shape bf16, batch 1", t * 1e3, rate});
        /* the same model decoding through ee_decode_steps (embedding, 22 layers, final norm, LM head, argmax; 16 steps a
         * call at positions 1008..1023), eagerly and with EETUNE_CUDA_GRAPHS=1 (the plan's step captured once, then one
         * graph launch a step): the launches' cost is the difference; both must choose the same tokens */
        {
            const int steps = 16;
            std::vector<int64_t> table;
            for (int l = 0; l < n_layers; l++)
                for (void* ptr : {norm.p, w[l][0].p, w[l][1].p, w[l][2].p, w[l][3].p, (void*)0, (void*)0, (void*)0, norm.p, w[l][4].p, w[l][5].p, w[l][6].p, kc[l].p, vc[l].p})
                    table.push_back((int64_t)(intptr_t)ptr);
            std::vector<int32_t> positions(steps);
            for (int i = 0; i < steps; i++) positions[i] = L - steps + i;
            Buf first = upload(gpu, std::vector<int32_t>{1}), out = dev(steps * 4), sp = upload(gpu, positions), normed = dev((size_t)dim * 4);
            auto bits = [](float f) { uint32_t b; memcpy(&b, &f, 4); return (int64_t)b; };
            auto addr = [](void* ptr) { return (int64_t)(intptr_t)ptr; };
            std::vector<int64_t> plan = {addr(table.data()), n_layers, addr(lm.p), EE_BF16, addr(norm.p), addr(lm.p), EE_BF16, vocab, addr(first.p), addr(out.p),
                addr(x.p), addr(res.p), addr(xn.p), addr(q.p), addr(k.p), addr(v.p), addr(att.p), addr(xn.p), addr(g.p), addr(u.p), addr(g.p), addr(normed.p),
                addr(logits.p), EE_BF16, 1, L, addr(sb.p), addr(sp.p), addr(invf.p), 1, dim, heads, kvh, hd, hidden, 1, bits(1e-5f), bits(0.125f), 0, 0, 0};
            std::vector<int32_t> tokens[2];
            for (int graphs = 0; graphs < 2; graphs++) {
                if (graphs) setenv("EETUNE_CUDA_GRAPHS", "1", 1);
                double ts = time_it([&] { die_if(gpu.ee_decode_steps(plan.data(), steps), gpu, "bench: decode steps"); }, 3) / steps;
                tokens[graphs] = download<int32_t>(out, steps);
                unsetenv("EETUNE_CUDA_GRAPHS");
                snprintf(rate, sizeof rate, "%.0f tok/s, %.0f GB/s (%.0f%% of 4800)", 1.0 / ts, bytes / ts / 1e9, bytes / ts / 4.8e12 * 100);
                rows.push_back({graphs ? "decode steps 1.1B bf16 b1, CUDA graphs" : "decode steps 1.1B bf16 b1, eager", ts * 1e3, rate});
            }
            if (tokens[0] != tokens[1]) printf("FAIL bench: decode steps chose other tokens with CUDA graphs than eagerly\n"), failures++;
            for (Buf* b : {&first, &out, &sp, &normed}) release(*b);
        }
        for (auto& layer : w)
            for (Buf& b : layer) release(b);
        for (Buf& b : kc) release(b);
        for (Buf& b : vc) release(b);
        for (Buf* b : {&lm, &norm, &x, &logits, &res, &xn, &i1, &i2, &q, &k, &v, &att, &lse, &g, &u, &invf, &sb, &pb}) release(*b);
    }
    /* fused linear + cross-entropy with backward: 4 GEMMs of rows x V x dim */
    for (int V : {32000, 128256}) {
        const int R = 4096, d = 4096;
        Buf x = dev((size_t)R * d * 4), w = dev((size_t)V * d * 2), dx = dev((size_t)R * d * 4), dw = dev((size_t)V * d * 4), loss = dev(R * 4), gw = dev(R * 4);
        fill(x, (size_t)R * d, 1.0f);
        fill16(w, (size_t)V * d);
        std::vector<float> g(R, 1.0f / R);
        gpu.ee_copy(gw.p, g.data(), R * 4, 1);
        Buf tg = upload(gpu, randint(R, 0, V));
        gpu.ee_fill_bytes(dw.p, 0, (int64_t)V * d * 4);
        double t = time_it([&] { gpu.ee_linear_cross_entropy((float*)loss.p, (float*)dx.p, (float*)dw.p, 0, 0, (float*)x.p, w.p, EE_BF16, (int32_t*)tg.p, (float*)gw.p, R, d, V, 0, 1.0f); }, 2, 3);
        snprintf(rate, sizeof rate, "%.0f TFLOP/s (6 R V d FLOPs: logits, dx, dw)", 6.0 * R * V * d / t / 1e12);
        rows.push_back({"fused CE fwd+bwd R=4096 d=4096 V=" + std::to_string(V), t * 1e3, rate});
        release(x), release(w), release(dx), release(dw), release(loss), release(gw), release(tg);
    }

    printf("\n%-44s %10s  %s\n", "benchmark", "ms", "rate");
    printf("%-44s %10s  %s\n", "--------------------------------------------", "----------", "----");
    for (auto& r : rows) printf("%-44s %10.3f  %s\n", r.what.c_str(), r.ms, r.rate.c_str());
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s check|sanitize|bench CUDA_LIB [CPU_LIB]\n", argv[0]);
        return 2;
    }
    std::string mode = argv[1];
    setvbuf(stdout, 0, _IOLBF, 0);
    if (!load(gpu, argv[2], "libeecuda")) return 2;
    gpu_path = argv[2];
    int devices = gpu.ee_device_count();
    if (devices <= 0) {
        printf("FAIL no CUDA device: %s\n", gpu.ee_last_error());
        return 1;
    }
    if (argc > 3 && mode != "bench") {
        bool stale = false;
        have_cpu = load(cpu, argv[3], "libeecpu", &stale);
        if (stale) {
            printf("FAIL the CPU reference %s is another build than this driver's header: rebuild it\n", argv[3]);
            return 1;
        }
        if (!have_cpu) printf("NOTE the CPU reference %s did not load: checking only that kernels run and write finite values\n", argv[3]);
    }
    uint64_t seed = (uint64_t)std::chrono::steady_clock::now().time_since_epoch().count();
    if (getenv("EE_SEED")) seed = strtoull(getenv("EE_SEED"), 0, 10);
    rng.seed(seed);
    printf("libeecuda: abi %d, %d device(s), features %d; seed %llu; reference: %s\n", gpu.ee_abi_version(), devices, gpu.ee_features(),
           (unsigned long long)seed, have_cpu ? "libeecpu" : "none");
    if (mode == "check") run_checks(false);
    else if (mode == "sanitize") run_checks(true);
    else if (mode == "bench") run_bench();
    else {
        fprintf(stderr, "unknown mode %s\n", mode.c_str());
        return 2;
    }
    int rc = gpu.ee_synchronize();
    if (rc) printf("FAIL final ee_synchronize: %s\n", gpu.ee_last_error()), failures++;
    if (mode != "bench") printf("%s eecuda_check %s: %d passed, %d failed\n", failures ? "FAIL" : "PASS", mode.c_str(), passes, failures);
    else printf("%s eecuda_check bench\n", failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
