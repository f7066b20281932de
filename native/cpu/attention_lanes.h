/*
 * The keys-in-lanes decode attention for tiny heads (head_dim <= LANES_MAX_D), included by attention.c once per vector
 * width with these macros set (and undefined again at the end):
 *   LV, LVI        the float and int vector types of LW lanes;     LTARGET  the function attribute (EE_AVX512, EE_AVX2)
 *   LNAME(x)       x with the width's suffix;                      LEXP, LSEL, LMAX, LSPLAT  exp, select, max, splat
 *   LTRANSPOSE8(t, base, stride, valid)  t[d] = column d of LW rows of 8 floats, rows from valid on read as zero (not read);  LREDUCE_MAX, LREDUCE_ADD  across the lanes
 *   LREDUCE_ADD8(s, v)  s[i] = LREDUCE_ADD(v[i]) for 8 vectors, the same bits
 *
 * The per-(row, head) path pays a horizontal sum per key and head, as much as the products when a head is 8 floats,
 * and the slot path fills few of its 16 lanes with one or two rows. Here the queries of one KV head -- rows r of one
 * sequence (positions pos[r]) times its nh query heads; q, out rows q_width apart at the first head, lse rows n_heads
 * apart -- go LW keys a step: a chunk of LANE_KEYS keys has its K and V columns transposed once for all queries (in
 * registers for head_dim 8, element by element otherwise), then each query computes the chunk's scores as D
 * broadcast-FMAs, rescales its per-lane online softmax once per chunk and accumulates its D output columns; the lanes
 * are merged once at the end. A query's result does not depend on the other queries of the call.
 */

#define LSTEPS (LANE_KEYS / LW) /* steps of LW keys per chunk */

/* One query's running state: per lane, the online softmax of the keys it has seen. */
typedef struct {
    LV max, sum, acc[LANES_MAX_D];
} LNAME(lane_state);

/* One query (q: D floats, already scaled; keys below n_keys) against a transposed chunk of ns steps (kt, vt: step j's
 * D columns at [j * D]) whose first key is j0: scores, the chunk's lane-wise max, one rescale of the state, then exp
 * and the output columns. D is a constant where the caller specialises it (accumulators in registers). */
EE_INLINE LTARGET void LNAME(lanes_chunk)(LNAME(lane_state) * st, const float* q, int32_t n_keys, const LV* kt, const LV* vt, int ns, int32_t j0, const int D) {
    LV s[LSTEPS], mx = st->max, acc[LANES_MAX_D], lane;
    for (int i = 0; i < LW; i++) lane[i] = (float)i;
    ns = ee_min(ns, (int)ee_ceil_div(n_keys - j0, LW));
    for (int j = 0; j < ns; j++) {
        LV sc = (LV){0};
        for (int d = 0; d < D; d++) sc += q[d] * kt[j * D + d];
        const int32_t first = j0 + LW * j; /* only the last step can reach past the keys */
        s[j] = first + LW <= n_keys ? sc : LSEL(lane + (float)first < (float)n_keys, sc, LSPLAT(-INFINITY));
        mx = LMAX(mx, s[j]);
    }
    /* a lane with no key yet has max -inf: -inf - -inf is NaN, which the exp turns into 0 */
    const LV corr = LEXP(st->max - mx);
    LV sum = st->sum * corr;
    for (int d = 0; d < D; d++) acc[d] = st->acc[d] * corr;
    for (int j = 0; j < ns; j++) {
        const LV p = LEXP(s[j] - mx);
        sum += p;
        for (int d = 0; d < D; d++) acc[d] += p * vt[j * D + d];
    }
    for (int d = 0; d < D; d++) st->acc[d] = acc[d];
    st->sum = sum, st->max = mx;
}

/* A query's output (D floats) and log-sum-exp from its lanes: each lane's softmax rescaled to the overall max */
EE_INLINE LTARGET void LNAME(lanes_merge)(const LNAME(lane_state) * st, float* out, float* lse, int D) {
    const float m = LREDUCE_MAX(st->max);
    const LV w = LEXP(st->max - m);
    const float sum = LREDUCE_ADD(st->sum * w), inv_sum = 1.0f / sum;
    int d = 0;
    for (; d + 8 <= D; d += 8) { /* eight columns' sums at once */
        LV x[8];
        float sums[8];
        for (int i = 0; i < 8; i++) x[i] = st->acc[d + i] * w;
        LREDUCE_ADD8(sums, x);
        for (int i = 0; i < 8; i++) out[d + i] = sums[i] * inv_sum;
    }
    for (; d < D; d++) out[d] = LREDUCE_ADD(st->acc[d] * w) * inv_sum;
    if (lse) *lse = m + logf(sum);
}

/* Steps j0 / LW .. + ns of the cache block k (rows kv_width apart) transposed into kt: keys at or past n_valid read as
 * zero (they may be stale or past the allocation). */
EE_INLINE LTARGET void LNAME(lanes_transpose)(LV* kt, const float* k, size_t kv_width, int32_t j0, int ns, int32_t n_valid, int D) {
    for (int j = 0; j < ns; j++) {
        const int32_t first = j0 + LW * j, valid = ee_min(LW, n_valid - first);
        const float* kb = k + (size_t)first * kv_width;
        if (D == 8) { /* stories260K's heads: a transpose in registers */
            LTRANSPOSE8(kt + j * D, kb, kv_width, valid);
        } else {
            for (int d = 0; d < D; d++) {
                LV c = (LV){0};
                for (int i = 0; i < valid; i++) c[i] = kb[(size_t)i * kv_width + d];
                kt[j * D + d] = c;
            }
        }
    }
}

LTARGET static void LNAME(attend_lanes)(float* out, float* lse, const float* q, const int32_t* pos, int nr, int nh, size_t q_width, int32_t n_heads, const float* k, const float* v, size_t kv_width, int D, float scale) {
    LV kt[LSTEPS * LANES_MAX_D], vt[LSTEPS * LANES_MAX_D];
    LNAME(lane_state) st[LANE_QUERIES];
    float qs[LANE_QUERIES][LANES_MAX_D];
    for (int g0 = 0; g0 < nr * nh; g0 += LANE_QUERIES) {
        const int ng = ee_min(LANE_QUERIES, nr * nh - g0);
        int32_t n_max = 0;
        for (int g = 0; g < ng; g++) {
            const int r = (g0 + g) / nh, h = (g0 + g) % nh;
            st[g].max = LSPLAT(-INFINITY), st[g].sum = (LV){0};
            for (int d = 0; d < D; d++) st[g].acc[d] = (LV){0}, qs[g][d] = scale * q[(size_t)r * q_width + (size_t)h * D + d];
            n_max = pos[r] + 1 > n_max ? pos[r] + 1 : n_max;
        }
        for (int32_t j0 = 0; j0 < n_max; j0 += LANE_KEYS) {
            const int ns = ee_min(LSTEPS, (int)ee_ceil_div(n_max - j0, LW));
            LNAME(lanes_transpose)(kt, k, kv_width, j0, ns, n_max, D);
            LNAME(lanes_transpose)(vt, v, kv_width, j0, ns, n_max, D);
            for (int g = 0; g < ng; g++) {
                const int32_t n_keys = pos[(g0 + g) / nh] + 1;
                if (j0 >= n_keys) continue;
                if (D == 8) LNAME(lanes_chunk)(&st[g], qs[g], n_keys, kt, vt, ns, j0, 8);
                else if (D == 16) LNAME(lanes_chunk)(&st[g], qs[g], n_keys, kt, vt, ns, j0, 16);
                else LNAME(lanes_chunk)(&st[g], qs[g], n_keys, kt, vt, ns, j0, D);
            }
        }
        for (int g = 0; g < ng; g++) {
            const int r = (g0 + g) / nh, h = (g0 + g) % nh;
            LNAME(lanes_merge)(&st[g], out + (size_t)r * q_width + (size_t)h * D, lse ? lse + (size_t)r * n_heads + h : 0, D);
        }
    }
}

#undef LSTEPS
#undef LV
#undef LVI
#undef LW
#undef LTARGET
#undef LNAME
#undef LEXP
#undef LSEL
#undef LMAX
#undef LSPLAT
#undef LTRANSPOSE8
#undef LREDUCE_MAX
#undef LREDUCE_ADD
#undef LREDUCE_ADD8
