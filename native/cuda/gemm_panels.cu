/*
 * Panel-packed f32, f16, bf16 and 8-bit weights (EE_F32_PANELS, EE_F16_PANELS, EE_BF16_PANELS, EE_I8_PANELS; the CPU
 * twin is cpu/gemm_panels.c): the same layouts and semantics (f16 and bf16: f32's layout and sums on the widened
 * weights; 8-bit: scale_j times the sum of a_p q_j[p]). On the
 * GPU the layout buys nothing (cuBLAS reads the plain weight), so the GEMM is one plain fp32 kernel: a thread per
 * output, consecutive threads on consecutive outputs of a panel, which read consecutive floats of each column step.
 */
#include "common.cuh"

#define THREADS 256

EE_API int64_t ee_panels_size(int32_t n, int32_t k) {
    if (n < 0 || k < 0) {
        ee_fail("ee_panels_size: negative size %d x %d", n, k);
        return -1;
    }
    return ee_ceil_div64(n, EE_PANEL_ROWS) * EE_PANEL_ROWS * k;
}

/* element e of dst = w[q * 32 + j][p] with e = (q * k + p) * 32 + j, 0 past n (f32, f16 or bf16 elements alike) */
template <typename T>
__global__ void pack_panels_kernel(T* dst, const T* w, int n, int k, int ldw, int64_t total) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t j = e % EE_PANEL_ROWS, qp = e / EE_PANEL_ROWS, p = qp % k, row = qp / k * EE_PANEL_ROWS + j;
        dst[e] = row < n ? w[row * ldw + p] : T(0);
    }
}

template <typename T>
static int32_t pack_panels(const char* name, T* dst, const T* w, int32_t n, int32_t k, int32_t ldw) {
    if (n < 0 || k < 0 || ldw < k) return ee_fail("%s: size %d x %d with rows %d apart", name, n, k, ldw);
    if (n == 0 || k == 0) return 0;
    if (!dst || !w) return ee_fail("%s: null pointer", name);
    const int64_t total = ee_panels_size(n, k);
    pack_panels_kernel<<<ee_grid_for(total, THREADS), THREADS, 0, ee_stream()>>>(dst, w, n, k, ldw, total);
    return ee_launched(name);
}

EE_API int32_t ee_pack_panels(float* dst, const float* w, int32_t n, int32_t k, int32_t ldw) { return pack_panels("ee_pack_panels", dst, w, n, k, ldw); }

EE_API int32_t ee_pack_panels_f16(uint16_t* dst, const uint16_t* w, int32_t n, int32_t k, int32_t ldw) { return pack_panels("ee_pack_panels_f16", dst, w, n, k, ldw); }

EE_API int32_t ee_pack_panels_bf16(uint16_t* dst, const uint16_t* w, int32_t n, int32_t k, int32_t ldw) { return pack_panels("ee_pack_panels_bf16", dst, w, n, k, ldw); }

/* 8-bit panels (the CPU twin's comment in cpu/gemm_panels.c has the layout and why): 32 scales, then ceil(k / 2)
 * steps of 32 column pairs, byte 2j + t of step s holding row j's q_j[2s + t] */
__host__ __device__ inline int64_t i8_panel_bytes(int k) { return (int64_t)EE_PANEL_ROWS * (4 + 2 * ((k + 1) / 2)); }
__host__ __device__ inline int64_t i8_at(int c) { return (int64_t)(c >> 1) * 2 * EE_PANEL_ROWS + (c & 1); }

EE_API int64_t ee_panels_i8_bytes(int32_t n, int32_t k) {
    if (n < 0 || k < 0) {
        ee_fail("ee_panels_i8_bytes: negative size %d x %d", n, k);
        return -1;
    }
    return ee_ceil_div64(n, EE_PANEL_ROWS) * i8_panel_bytes(k);
}

/* one thread per row j (q = j / 32): the row's scale, its 8-bit values in the panel's column steps, resid[j] and norm[j]; the
 * padding rows of the last panel get scale 0 and zeros */
__global__ void pack_panels_i8_kernel(char* dst, float* resid, float* norm, const float* w, int n, int k, int ldw, int rows) {
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < rows; j += gridDim.x * blockDim.x) {
        float* scales = (float*)(dst + (int64_t)(j / EE_PANEL_ROWS) * i8_panel_bytes(k));
        int8_t* steps = (int8_t*)(scales + EE_PANEL_ROWS) + 2 * (j % EE_PANEL_ROWS);
        if (k & 1) steps[i8_at(k)] = 0;
        const float* row = w + (int64_t)j * ldw;
        float top = 0.0f;
        bool finite = true;
        for (int c = 0; j < n && c < k; c++) {
            finite &= isfinite(row[c]);
            top = fmaxf(top, fabsf(row[c]));
        }
        finite = finite && (top == 0.0f || isfinite(127.0f / top)); /* as the CPU's i8_scalable */
        const float scale = j >= n ? 0.0f : !finite ? nanf("") : top / 127.0f, inv = j < n && finite && top > 0.0f ? 127.0f / top : 0.0f;
        double err = 0.0, sum = 0.0;
        for (int c = 0; c < k; c++) {
            const float v = j < n && finite ? (float)fmin(fmax(rint((double)row[c] * inv), -127.0), 127.0) : 0.0f; /* as the CPU's rounding: of the exact product */
            steps[i8_at(c)] = (int8_t)v;
            if (j < n) {
                const double d = (double)row[c] - (double)(finite ? scale : 0.0f) * v;
                err += d * d, sum += (double)row[c] * row[c];
            }
        }
        scales[j % EE_PANEL_ROWS] = scale;
        if (resid && j < n) resid[j] = finite ? nextafterf((float)sqrt(err), INFINITY) : INFINITY;
        if (norm && j < n) norm[j] = finite ? nextafterf((float)sqrt(sum), INFINITY) : INFINITY;
    }
}

EE_API int32_t ee_pack_panels_i8(void* dst, float* resid, float* norm, const float* w, int32_t n, int32_t k, int32_t ldw) {
    if (n < 0 || k < 0 || ldw < k) return ee_fail("ee_pack_panels_i8: size %d x %d with rows %d apart", n, k, ldw);
    if (n == 0 || k == 0) return 0;
    if (!dst || !w) return ee_fail("ee_pack_panels_i8: null pointer");
    const int rows = (int)(ee_ceil_div64(n, EE_PANEL_ROWS) * EE_PANEL_ROWS);
    pack_panels_i8_kernel<<<ee_grid_for(rows, THREADS), THREADS, 0, ee_stream()>>>((char*)dst, resid, norm, w, n, k, ldw, rows);
    return ee_launched("ee_pack_panels_i8");
}

/* an element of a panel as f32 (dtype: EE_F32_PANELS, EE_F16_PANELS or EE_BF16_PANELS) */
template <int DTYPE>
__device__ inline float panel_weight(const void* b, int64_t e) {
    if (DTYPE == EE_F32_PANELS) return ((const float*)b)[e];
    const uint16_t h = ((const uint16_t*)b)[e];
    return DTYPE == EE_F16_PANELS ? ee_f16_to_f32(h) : ee_bf16_to_f32(h);
}

/* C[i][j] = alpha A_i . W_j + beta C[i][j], W_j read from its panel; thread t of the grid: i = t / n, j = t % n */
template <int DTYPE>
__global__ void gemm_panels_kernel(ee_gemm_args g) {
    const int64_t total = (int64_t)g.m * g.n;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)(t / g.n), j = (int)(t % g.n);
        const float* a = (const float*)g.a + (int64_t)i * g.lda;
        const int64_t w = (int64_t)(j / EE_PANEL_ROWS) * g.k * EE_PANEL_ROWS + j % EE_PANEL_ROWS;
        float acc = 0.0f;
        for (int p = 0; p < g.k; p++) acc += a[p] * panel_weight<DTYPE>(g.b, w + (int64_t)p * EE_PANEL_ROWS);
        float* c = g.c + (int64_t)i * g.ldc + j;
        *c = g.beta == 0.0f ? g.alpha * acc : g.alpha * acc + g.beta * *c;
    }
}

/* the same for 8-bit panels, in the CPU's rounding sequence (eetune.h, ee_pack_panels_i8): A's row rounded to 8-bit
 * integers, exact integer sums in blocks of 512 columns, the blocks added in f32, times scale_j and A's scale. Each
 * thread finds its row's max |a| itself: the screen's passes are a few rows. A's values are rounded from the exact
 * (double) product, as on the CPU. */
__global__ void gemm_panels_i8_kernel(ee_gemm_args g) {
    const int64_t total = (int64_t)g.m * g.n;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)(t / g.n), j = (int)(t % g.n);
        const float* a = (const float*)g.a + (int64_t)i * g.lda;
        const float* scales = (const float*)((const char*)g.b + (int64_t)(j / EE_PANEL_ROWS) * i8_panel_bytes(g.k));
        const int8_t* w = (const int8_t*)(scales + EE_PANEL_ROWS) + 2 * (j % EE_PANEL_ROWS);
        float top = 0.0f, bad = 0.0f;
        for (int p = 0; p < g.k; p++) top = fmaxf(top, fabsf(a[p])), bad += a[p] - a[p];
        const bool finite = bad == 0.0f && (top == 0.0f || isfinite(127.0f / top)); /* as the CPU's i8_scalable */
        const float inv = finite && top > 0.0f ? 127.0f / top : 0.0f, sa = finite ? top / 127.0f : nanf("");
        float sum = 0.0f;
        for (int p0 = 0; p0 < g.k; p0 += 512) {
            int acc = 0;
            for (int p = p0; p < g.k && p < p0 + 512; p++) acc += (int)fmin(fmax(rint((double)a[p] * inv), -127.0), 127.0) * w[i8_at(p)];
            sum = p0 == 0 ? (float)acc : sum + (float)acc;
        }
        const float v = sum * scales[j % EE_PANEL_ROWS] * sa;
        float* c = g.c + (int64_t)i * g.ldc + j;
        *c = g.beta == 0.0f ? g.alpha * v : g.alpha * v + g.beta * *c;
    }
}

int ee_gemm_panels(const ee_gemm_args* g) {
    const int blocks = ee_grid_for((int64_t)g->m * g->n, THREADS);
    if (g->b_dtype == EE_I8_PANELS) gemm_panels_i8_kernel<<<blocks, THREADS, 0, ee_stream()>>>(*g);
    else if (g->b_dtype == EE_BF16_PANELS) gemm_panels_kernel<EE_BF16_PANELS><<<blocks, THREADS, 0, ee_stream()>>>(*g);
    else if (g->b_dtype == EE_F16_PANELS) gemm_panels_kernel<EE_F16_PANELS><<<blocks, THREADS, 0, ee_stream()>>>(*g);
    else gemm_panels_kernel<EE_F32_PANELS><<<blocks, THREADS, 0, ee_stream()>>>(*g);
    return ee_launched("ee_gemm (panel-packed B)");
}
