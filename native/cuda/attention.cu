/*
 * Causal grouped-query attention: the forward over packed rows against a KV cache, and the backward for dense
 * batches. fp32 throughout (the ABI's tensors are f32), scores and softmax like the CPU library.
 *
 * Forward: one block per (row, KV head, group of query heads sharing it), so each K/V row is read once for the
 * whole group. Keys are walked in tiles of TILE: warps score them (lanes over head_dim, shuffle-reduced), one warp
 * per head updates the running max/sum (online softmax), then every thread rescales and accumulates its own
 * (head, dim) outputs. When that grid is too small to fill the GPU (decode), the keys are split into ranges whose
 * partial results a second kernel merges (flash-decoding). A tensor-core flash kernel for long prefill would be the
 * next step.
 *
 * Backward (recomputing P from the forward's log-sum-exp): D = rowsum(dout * out); dq per query row in a forward-
 * shaped kernel; dk/dv per key row in a kernel that walks the query rows after it, so every output element has one
 * owner: no atomics, deterministic.
 */
#include "common.cuh"

#define THREADS 128
#define WARPS (THREADS / 32)
#define TILE 64
#define KEYS 4                      /* key rows a warp loads together when scoring (the float4 path) */
#define MAX_ACC 8                   /* outputs per thread: heads-in-block * head_dim <= THREADS * MAX_ACC */
#define MAX_QD (THREADS * MAX_ACC)  /* 1024 */
#define MAX_GROUP (MAX_QD / TILE)   /* 16 heads per block (score tile gsub x TILE <= 1024) */

/* Heads per block for a group of `group` query heads of size head_dim. */
static int heads_per_block(int group, int head_dim) {
    int g = MAX_QD / head_dim;
    if (g > MAX_GROUP) g = MAX_GROUP;
    if (g > group) g = group;
    return g < 1 ? 1 : g;
}

/* The head layout of the forward and backward grids: each KV head's group of query heads in n_sub blocks of gsub
 * heads. 1 (recorded) when n_kv_heads * n_sub blocks do not fit the grid's y dimension. */
template <typename Args>
static int set_heads(Args& a, const char* what, int n_heads, int n_kv_heads, int head_dim, float scale) {
    a.n_heads = n_heads;
    a.n_kv_heads = n_kv_heads;
    a.head_dim = head_dim;
    a.group = n_heads / n_kv_heads;
    a.gsub = heads_per_block(a.group, head_dim);
    a.n_sub = (a.group + a.gsub - 1) / a.gsub;
    a.scale = scale;
    return (int64_t)n_kv_heads * a.n_sub > 65535 ? ee_fail("%s: too many heads (%d)", what, n_heads) : 0;
}

/* The outputs a thread owns in a block's heads x head_dim values: element threadIdx.x + i * THREADS is head my_g[i],
 * dimension my_d[i]; their accumulators start at 0. */
__device__ __forceinline__ void thread_outputs(int* my_g, int* my_d, float* acc, int D) {
#pragma unroll
    for (int i = 0; i < MAX_ACC; i++) {
        int idx = threadIdx.x + i * THREADS;
        my_g[i] = idx / D;
        my_d[i] = idx % D;
        acc[i] = 0.0f;
    }
}

struct attn_fwd_args {
    float* out;
    float* lse;
    const float* q;
    const float* k_cache;
    const float* v_cache;
    const int32_t* row_seq;
    const int32_t* row_pos;
    int n_heads, n_kv_heads, head_dim, n_seq, max_len, group, gsub, n_sub;
    int splits, chunk;  /* splits > 1: block z owns keys [z * chunk, (z + 1) * chunk) and writes a partial result */
    int k_vec4;         /* head_dim <= 128, a multiple of 4, K 16-byte aligned: a key row is at most one float4 per lane */
    float* part_ml;     /* [row][head][split][2]: running max and sum of exp */
    float* part_acc;    /* [row][head][split][head_dim]: unnormalised output */
    float scale;
    ee_index_error* err;
};

/* 8 resident blocks per multiprocessor (at most 64 registers): see choose_splits */
__global__ void __launch_bounds__(THREADS, 8) attention_fwd_kernel(attn_fwd_args a) {
    __shared__ __align__(16) float q_s[MAX_QD];
    __shared__ float s_s[MAX_GROUP * TILE];
    __shared__ float m_s[MAX_GROUP], l_s[MAX_GROUP], c_s[MAX_GROUP];
    const int D = a.head_dim, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t r = blockIdx.x;
    const int kh = blockIdx.y / a.n_sub, sub = blockIdx.y % a.n_sub, split = blockIdx.z;
    const int h0 = kh * a.group + sub * a.gsub, hn = min(a.gsub, a.group - sub * a.gsub);
    const int64_t q_width = (int64_t)a.n_heads * D, kv_width = (int64_t)a.n_kv_heads * D;
    const int seq = a.row_seq[r], pos = a.row_pos[r];
    float* out = a.out + r * q_width + (int64_t)h0 * D;
    /* partial results of head h0 + g of this row and split */
    const int64_t part0 = (r * a.n_heads + h0) * a.splits + split;
    if (seq < 0 || seq >= a.n_seq || pos < 0 || pos >= a.max_len) { /* outside the cache: NaN output, recorded */
        if (a.splits == 1) {
            for (int i = threadIdx.x; i < hn * D; i += THREADS) out[i] = NAN;
            if (a.lse && threadIdx.x < hn) a.lse[r * a.n_heads + h0 + threadIdx.x] = NAN;
        } else {
            for (int i = threadIdx.x; i < hn * D; i += THREADS) a.part_acc[(part0 + (int64_t)(i / D) * a.splits) * D + i % D] = NAN;
            if (threadIdx.x < hn) a.part_ml[2 * (part0 + (int64_t)threadIdx.x * a.splits)] = NAN;
            if (threadIdx.x < hn) a.part_ml[2 * (part0 + (int64_t)threadIdx.x * a.splits) + 1] = NAN;
        }
        if (threadIdx.x == 0 && blockIdx.y == 0 && split == 0) {
            if (seq < 0 || seq >= a.n_seq) ee_report_index(a.err, EE_BAD_ATTENTION_SEQ, r, seq, a.n_seq);
            else ee_report_index(a.err, EE_BAD_ATTENTION_POS, r, pos, a.max_len);
        }
        return;
    }
    const float* qr = a.q + r * q_width + (int64_t)h0 * D;
    for (int i = threadIdx.x; i < hn * D; i += THREADS) q_s[i] = qr[i];
    if (threadIdx.x < hn) {
        m_s[threadIdx.x] = -INFINITY;
        l_s[threadIdx.x] = 0.0f;
    }
    int my_g[MAX_ACC], my_d[MAX_ACC];
    float acc[MAX_ACC];
    thread_outputs(my_g, my_d, acc, D);
    const int64_t base = (int64_t)seq * a.max_len * kv_width + (int64_t)kh * D;
    const float* kb = a.k_cache + base;
    const float* vb = a.v_cache + base;
    const int k_begin = a.splits == 1 ? 0 : split * a.chunk;
    const int k_end = a.splits == 1 ? pos + 1 : min(pos + 1, k_begin + a.chunk); /* empty for splits past the row */
    __syncthreads();
    for (int p0 = k_begin; p0 < k_end; p0 += TILE) {
        const int nb = min(TILE, k_end - p0);
        if (a.k_vec4) { /* KEYS consecutive key rows per warp, each one 16-byte load per lane, all in flight at once */
            const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            for (int j0 = warp * KEYS; j0 < nb; j0 += WARPS * KEYS) {
                float4 kk[KEYS];
#pragma unroll
                for (int u = 0; u < KEYS; u++)
                    kk[u] = j0 + u < nb && 4 * lane < D ? __ldg((const float4*)(kb + (int64_t)(p0 + j0 + u) * kv_width) + lane) : zero;
                for (int g = 0; g < hn; g++) {
                    const float4 qq = 4 * lane < D ? ((const float4*)(q_s + g * D))[lane] : zero;
                    float part[KEYS];
#pragma unroll
                    for (int u = 0; u < KEYS; u++) part[u] = ee_warp_sum(qq.x * kk[u].x + qq.y * kk[u].y + qq.z * kk[u].z + qq.w * kk[u].w);
                    if (lane == 0)
#pragma unroll
                        for (int u = 0; u < KEYS; u++)
                            if (j0 + u < nb) s_s[g * TILE + j0 + u] = a.scale * part[u];
                }
            }
        } else {
            for (int j = warp; j < nb; j += WARPS) { /* scores of key p0 + j for every head of the block */
                const float* kr = kb + (int64_t)(p0 + j) * kv_width;
                for (int g = 0; g < hn; g++) {
                    float part = 0.0f;
                    for (int d = lane; d < D; d += 32) part += q_s[g * D + d] * __ldg(kr + d);
                    part = ee_warp_sum(part);
                    if (lane == 0) s_s[g * TILE + j] = a.scale * part;
                }
            }
        }
        __syncthreads();
        for (int g = warp; g < hn; g += WARPS) { /* online softmax update of head g */
            float* sc = s_s + g * TILE;
            float bm = -INFINITY;
            for (int j = lane; j < nb; j += 32) bm = fmaxf(bm, sc[j]);
            bm = ee_warp_max(bm);
            const float m_old = m_s[g], m_new = fmaxf(m_old, bm);
            float sum = 0.0f;
            for (int j = lane; j < nb; j += 32) {
                float e = expf(sc[j] - m_new);
                sc[j] = e;
                sum += e;
            }
            sum = ee_warp_sum(sum);
            __syncwarp(); /* every lane has read m_s[g] before lane 0 replaces it */
            if (lane == 0) {
                float corr = expf(m_old - m_new); /* 0 on the first tile */
                c_s[g] = corr;
                l_s[g] = l_s[g] * corr + sum;
                m_s[g] = m_new;
            }
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < MAX_ACC; i++)
            if (my_g[i] < hn) acc[i] *= c_s[my_g[i]];
#pragma unroll 2 /* several value rows' loads in flight */
        for (int j = 0; j < nb; j++) {
            const float* vr = vb + (int64_t)(p0 + j) * kv_width;
#pragma unroll
            for (int i = 0; i < MAX_ACC; i++)
                if (my_g[i] < hn) acc[i] += s_s[my_g[i] * TILE + j] * __ldg(vr + my_d[i]);
        }
        __syncthreads();
    }
    if (a.splits == 1) {
#pragma unroll
        for (int i = 0; i < MAX_ACC; i++)
            if (my_g[i] < hn) out[my_g[i] * D + my_d[i]] = acc[i] * (1.0f / l_s[my_g[i]]);
        if (a.lse && threadIdx.x < hn) a.lse[r * a.n_heads + h0 + threadIdx.x] = m_s[threadIdx.x] + logf(l_s[threadIdx.x]);
        return;
    }
#pragma unroll
    for (int i = 0; i < MAX_ACC; i++)
        if (my_g[i] < hn) a.part_acc[(part0 + (int64_t)my_g[i] * a.splits) * D + my_d[i]] = acc[i];
    if (threadIdx.x < hn) { /* an empty split leaves max -inf and sum 0: it weighs nothing in the combine */
        a.part_ml[2 * (part0 + (int64_t)threadIdx.x * a.splits)] = m_s[threadIdx.x];
        a.part_ml[2 * (part0 + (int64_t)threadIdx.x * a.splits) + 1] = l_s[threadIdx.x];
    }
}

/* Merges the splits of one (row, head): M = max m_s, L = sum l_s e^(m_s - M), out = sum acc_s e^(m_s - M) / L. */
__global__ void attention_combine_kernel(float* out, float* lse, const float* part_ml, const float* part_acc, int n_heads, int head_dim, int splits) {
    const int64_t rh = (int64_t)blockIdx.x * n_heads + blockIdx.y; /* row * n_heads + head */
    const float* ml = part_ml + rh * splits * 2;
    const float* acc = part_acc + rh * splits * head_dim;
    float m = -INFINITY;
    for (int s = 0; s < splits; s++) m = fmaxf(m, ml[2 * s]);
    for (int s = 0; s < splits; s++) m = ml[2 * s] != ml[2 * s] ? ml[2 * s] : m; /* a NaN (bad row) propagates */
    float l = 0.0f;
    for (int s = 0; s < splits; s++) l += ml[2 * s + 1] * expf(ml[2 * s] - m);
    const float inv_l = 1.0f / l;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < splits; s++) o += acc[(int64_t)s * head_dim + d] * expf(ml[2 * s] - m);
        out[rh * head_dim + d] = o * inv_l;
    }
    if (lse && threadIdx.x == 0) lse[rh] = m + logf(l);
}

/* Key-range splits ("flash-decoding") when the (row, KV head) grid alone would leave the GPU mostly idle, as in
 * decode: about eight blocks per multiprocessor, each split a whole number of key tiles. Decode streams the cache
 * from memory, and only many resident warps keep enough loads in flight for it: with two blocks (8 warps) per
 * multiprocessor an H200 read the f32 cache at 338 GB/s, 7% of its bandwidth. Positions live on the device, so the
 * split count follows max_len; splits past a row's position exit at once. */
static void choose_splits(int64_t base_blocks, int max_len, int* splits, int* chunk) {
    const int64_t target = 8 * (int64_t)ee_sm_count();
    const int tiles = (max_len + TILE - 1) / TILE;
    int s = base_blocks >= target || tiles < 2 ? 1 : (int)((target + base_blocks - 1) / base_blocks);
    if (s > tiles) s = tiles;
    if (s > 64) s = 64;
    if (s <= 1) {
        *splits = 1;
        *chunk = max_len;
        return;
    }
    int c = ((tiles + s - 1) / s) * TILE;
    *chunk = c;
    *splits = (max_len + c - 1) / c;
}

EE_API int32_t ee_attention_fwd(float* out, float* lse, const float* q, const float* k_cache, const float* v_cache, const int32_t* row_seq, const int32_t* row_pos, int32_t rows, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, int32_t n_seq, int32_t max_len, float scale) {
    if (rows < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_seq <= 0 || max_len <= 0 || n_heads % n_kv_heads)
        return ee_fail("ee_attention_fwd: bad shape (heads %d, kv heads %d, head_dim %d, n_seq %d, max_len %d)", n_heads, n_kv_heads, head_dim, n_seq, max_len);
    if (head_dim > MAX_QD) return ee_fail("ee_attention_fwd: head_dim %d is above the CUDA kernel's limit of %d", head_dim, MAX_QD);
    if (rows == 0) return 0;
    if (!out || !q || !k_cache || !v_cache || !row_seq || !row_pos) return ee_fail("ee_attention_fwd: null pointer");
    attn_fwd_args a;
    a.out = out;
    a.lse = lse;
    a.q = q;
    a.k_cache = k_cache;
    a.v_cache = v_cache;
    a.row_seq = row_seq;
    a.row_pos = row_pos;
    a.n_seq = n_seq;
    a.max_len = max_len;
    a.err = ee_index_error_record();
    a.part_ml = a.part_acc = 0;
    a.k_vec4 = head_dim <= 128 && head_dim % 4 == 0 && (uintptr_t)k_cache % 16 == 0; /* then every key row is 16-byte aligned too */
    if (set_heads(a, "ee_attention_fwd", n_heads, n_kv_heads, head_dim, scale)) return 1;
    choose_splits((int64_t)rows * n_kv_heads * a.n_sub, max_len, &a.splits, &a.chunk);
    if (a.splits == 1) {
        attention_fwd_kernel<<<dim3(rows, n_kv_heads * a.n_sub, 1), THREADS, 0, ee_stream()>>>(a);
        return ee_launched("ee_attention_fwd");
    }
    ee_op_lock lock;
    const int64_t parts = (int64_t)rows * n_heads * a.splits;
    float* scratch = (float*)ee_scratch(EE_SCRATCH_ATTN, (size_t)parts * (head_dim + 2) * sizeof(float));
    if (!scratch) return 1;
    a.part_ml = scratch;
    a.part_acc = scratch + parts * 2;
    attention_fwd_kernel<<<dim3(rows, n_kv_heads * a.n_sub, a.splits), THREADS, 0, ee_stream()>>>(a);
    if (ee_launched("ee_attention_fwd (splits)")) return 1;
    attention_combine_kernel<<<dim3(rows, n_heads), 128, 0, ee_stream()>>>(out, lse, a.part_ml, a.part_acc, n_heads, head_dim, a.splits);
    return ee_launched("ee_attention_fwd (combine)");
}

/* ---- backward ------------------------------------------------------------------------------------------------- */

/* delta[row][h] = dout . out for each (row, head): one warp each. */
__global__ void attention_delta_kernel(float* delta, const float* dout, const float* out, int64_t pairs, int head_dim) {
    const int lane = threadIdx.x & 31;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    for (int64_t w = blockIdx.x * (int64_t)(blockDim.x / 32) + (threadIdx.x >> 5); w < pairs; w += warps) {
        const float *g = dout + w * head_dim, *o = out + w * head_dim;
        float s = 0.0f;
        for (int d = lane; d < head_dim; d += 32) s += g[d] * o[d];
        s = ee_warp_sum(s);
        if (lane == 0) delta[w] = s;
    }
}

struct attn_bwd_args {
    float* dq;
    float* dk;
    float* dv;
    const float* dout;
    const float* lse;
    const float* delta;
    const float* q;
    const float* k;
    const float* v;
    int seq, n_heads, n_kv_heads, head_dim, group, gsub, n_sub;
    float scale;
};

/* dq of one query row (b, t) for a block of heads: dq = scale * sum_j P (dout.v_j - delta) k_j, j <= t. */
__global__ void __launch_bounds__(THREADS) attention_dq_kernel(attn_bwd_args a) {
    __shared__ float q_s[MAX_QD];
    __shared__ float g_s[MAX_QD];
    __shared__ float ds_s[MAX_GROUP * TILE];
    __shared__ float lse_s[MAX_GROUP], delta_s[MAX_GROUP];
    const int D = a.head_dim, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t row = blockIdx.x;                 /* b * seq + t */
    const int t = (int)(row % a.seq);
    const int64_t kv_row0 = row - t;                /* b * seq */
    const int kh = blockIdx.y / a.n_sub, sub = blockIdx.y % a.n_sub;
    const int h0 = kh * a.group + sub * a.gsub, hn = min(a.gsub, a.group - sub * a.gsub);
    const int64_t q_width = (int64_t)a.n_heads * D, kv_width = (int64_t)a.n_kv_heads * D;
    const int64_t q_off = row * q_width + (int64_t)h0 * D;
    for (int i = threadIdx.x; i < hn * D; i += THREADS) {
        q_s[i] = a.q[q_off + i];
        g_s[i] = a.dout[q_off + i];
    }
    if (threadIdx.x < hn) {
        lse_s[threadIdx.x] = a.lse[row * a.n_heads + h0 + threadIdx.x];
        delta_s[threadIdx.x] = a.delta[row * a.n_heads + h0 + threadIdx.x];
    }
    int my_g[MAX_ACC], my_d[MAX_ACC];
    float acc[MAX_ACC];
    thread_outputs(my_g, my_d, acc, D);
    const float* kb = a.k + kv_row0 * kv_width + (int64_t)kh * D;
    const float* vb = a.v + kv_row0 * kv_width + (int64_t)kh * D;
    __syncthreads();
    for (int p0 = 0; p0 <= t; p0 += TILE) {
        const int nb = min(TILE, t + 1 - p0);
        for (int j = warp; j < nb; j += WARPS) {
            const float* kr = kb + (int64_t)(p0 + j) * kv_width;
            const float* vr = vb + (int64_t)(p0 + j) * kv_width;
            for (int g = 0; g < hn; g++) {
                float qk = 0.0f, gv = 0.0f;
                for (int d = lane; d < D; d += 32) {
                    qk += q_s[g * D + d] * __ldg(kr + d);
                    gv += g_s[g * D + d] * __ldg(vr + d);
                }
                qk = ee_warp_sum(qk);
                gv = ee_warp_sum(gv);
                if (lane == 0) {
                    float p = expf(a.scale * qk - lse_s[g]);
                    ds_s[g * TILE + j] = p * (gv - delta_s[g]);
                }
            }
        }
        __syncthreads();
        for (int j = 0; j < nb; j++) {
            const float* kr = kb + (int64_t)(p0 + j) * kv_width;
#pragma unroll
            for (int i = 0; i < MAX_ACC; i++)
                if (my_g[i] < hn) acc[i] += ds_s[my_g[i] * TILE + j] * __ldg(kr + my_d[i]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < MAX_ACC; i++)
        if (my_g[i] < hn) a.dq[q_off + my_g[i] * D + my_d[i]] = acc[i] * a.scale;
}

/* dk, dv of one key row (b, j) of one KV head, over the query rows t >= j of every head in its group:
 * dv_j += sum P dout;  dk_j += scale * sum P (dout.v_j - delta) q. Items (t, g) are walked in tiles of TILE. */
__global__ void __launch_bounds__(THREADS) attention_dkv_kernel(attn_bwd_args a) {
    __shared__ float k_s[MAX_QD];
    __shared__ float v_s[MAX_QD];
    __shared__ float p_s[TILE], ds_s[TILE];
    const int D = a.head_dim, G = a.group, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t krow = blockIdx.x;                /* b * seq + j */
    const int j = (int)(krow % a.seq);
    const int64_t row0 = krow - j;                  /* b * seq */
    const int kh = blockIdx.y;
    const int64_t q_width = (int64_t)a.n_heads * D, kv_width = (int64_t)a.n_kv_heads * D;
    const int64_t kv_off = krow * kv_width + (int64_t)kh * D;
    for (int i = threadIdx.x; i < D; i += THREADS) {
        k_s[i] = a.k[kv_off + i];
        v_s[i] = a.v[kv_off + i];
    }
    float acc_k[MAX_ACC], acc_v[MAX_ACC];
#pragma unroll
    for (int i = 0; i < MAX_ACC; i++) acc_k[i] = acc_v[i] = 0.0f;
    __syncthreads();
    const int64_t items = (int64_t)(a.seq - j) * G; /* item = (t - j) * G + g */
    for (int64_t i0 = 0; i0 < items; i0 += TILE) {
        const int nb = (int)min((int64_t)TILE, items - i0);
        for (int it = warp; it < nb; it += WARPS) {
            const int64_t item = i0 + it;
            const int t = j + (int)(item / G), g = (int)(item % G), h = kh * G + g;
            const int64_t off = (row0 + t) * q_width + (int64_t)h * D;
            float qk = 0.0f, gv = 0.0f;
            for (int d = lane; d < D; d += 32) {
                qk += __ldg(a.q + off + d) * k_s[d];
                gv += __ldg(a.dout + off + d) * v_s[d];
            }
            qk = ee_warp_sum(qk);
            gv = ee_warp_sum(gv);
            if (lane == 0) {
                const int64_t lrow = (row0 + t) * a.n_heads + h;
                float p = expf(a.scale * qk - a.lse[lrow]);
                p_s[it] = p;
                ds_s[it] = a.scale * p * (gv - a.delta[lrow]);
            }
        }
        __syncthreads();
        for (int it = 0; it < nb; it++) {
            const int64_t item = i0 + it;
            const int t = j + (int)(item / G), h = kh * G + (int)(item % G);
            const int64_t off = (row0 + t) * q_width + (int64_t)h * D;
            const float p = p_s[it], ds = ds_s[it];
#pragma unroll
            for (int i = 0; i < MAX_ACC; i++) {
                int d = threadIdx.x + i * THREADS;
                if (d < D) {
                    acc_v[i] += p * __ldg(a.dout + off + d);
                    acc_k[i] += ds * __ldg(a.q + off + d);
                }
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < MAX_ACC; i++) {
        int d = threadIdx.x + i * THREADS;
        if (d < D) {
            a.dk[kv_off + d] += acc_k[i];
            a.dv[kv_off + d] += acc_v[i];
        }
    }
}

EE_API int32_t ee_attention_bwd(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse, const float* q, const float* k, const float* v, int32_t batch, int32_t seq, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, float scale) {
    if (batch < 0 || seq < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads)
        return ee_fail("ee_attention_bwd: bad shape (heads %d, kv heads %d, head_dim %d)", n_heads, n_kv_heads, head_dim);
    if (head_dim > MAX_QD) return ee_fail("ee_attention_bwd: head_dim %d is above the CUDA kernel's limit of %d", head_dim, MAX_QD);
    if (batch == 0 || seq == 0) return 0;
    if (!dq || !dk || !dv || !dout || !out || !lse || !q || !k || !v) return ee_fail("ee_attention_bwd: null pointer");
    const int64_t rows = (int64_t)batch * seq, pairs = rows * n_heads;
    ee_op_lock lock;
    float* delta = (float*)ee_scratch(EE_SCRATCH_ATTN, (size_t)pairs * sizeof(float));
    if (!delta) return 1;
    attention_delta_kernel<<<ee_grid_for(pairs * 32, 256), 256, 0, ee_stream()>>>(delta, dout, out, pairs, head_dim);
    if (ee_launched("ee_attention_bwd (delta)")) return 1;
    attn_bwd_args a;
    a.dq = dq;
    a.dk = dk;
    a.dv = dv;
    a.dout = dout;
    a.lse = lse;
    a.delta = delta;
    a.q = q;
    a.k = k;
    a.v = v;
    a.seq = seq;
    if (set_heads(a, "ee_attention_bwd", n_heads, n_kv_heads, head_dim, scale)) return 1;
    attention_dq_kernel<<<dim3(rows, n_kv_heads * a.n_sub), THREADS, 0, ee_stream()>>>(a);
    if (ee_launched("ee_attention_bwd (dq)")) return 1;
    attention_dkv_kernel<<<dim3(rows, n_kv_heads), THREADS, 0, ee_stream()>>>(a);
    return ee_launched("ee_attention_bwd (dk, dv)");
}
