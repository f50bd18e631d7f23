// attention.cu — fused causal multi-head attention in the flash-attention style: the T×T score
// matrix is never stored. Forward keeps, per query row, a running max m, a running normaliser
// l = Σ exp(s − m) and a running output; the backward recomputes the probabilities from the saved
// log-sum-exp L = m + log l instead of reading a stored matrix.
//
// Layout: q, o, dq are [B, T, H·D] and k, v, dk, dv [B, T, KVH·D] (the Linear layers' output,
// heads side by side), so no transposes are needed; lse and delta are [B, H, T]. Scores
// s_ij = (q_i · k_j)/√D for j ≤ i (causal), P = softmax_j(s), O_i = Σ_j P̃_ij v_j where P̃ is P
// after dropout.
//
// Grouped-query attention: KVH divides H, and query head h reads KV head h / (H/KVH) (KVH = H is
// ordinary multi-head attention). K and V are indexed, never copied; the dk/dv kernel runs one
// block per KV head and key rows, and walks the group's query heads in turn, so the sum of the
// group's gradients builds up in registers — no atomics.
//
// Work split: a block of 128 threads handles 64 rows (query rows in forward and dq, key rows in
// dk/dv); each row is owned by a *pair* of threads, each holding half of the head's D values in
// registers, with dot products combined by one xor-shuffle. Key (or query) tiles of 64 rows are
// staged in shared memory and read by all 64 row-pairs. All threads of a block walk the same
// tiles and run the same shuffles; causality and the sequence end are predicates, never early exits.
//
// Dropout on the attention weights uses the counter-based mask of common.cuh, indexed by
// ((b·H + h)·T + i)·T + j, so the backward regenerates the forward's mask exactly.
//
// Backward (per head; ds, dp are ∂L/∂s, ∂L/∂P̃-scaled):
//   dV_j = Σ_i P̃_ij dO_i
//   dP_ij = (dO_i · v_j) · keep_ij/(1 − p)          (the dropout mask's gradient)
//   ds_ij = P_ij (dP_ij − Δ_i),   Δ_i = Σ_j P_ij dP_ij = dO_i · O_i  (softmax backward, row-wise)
//   dq_i = Σ_j ds_ij k_j /√D,     dk_j = Σ_i ds_ij q_i /√D.
// Kernels: attention_backward_delta (Δ), attention_backward_dq (one pass over keys per query row),
// attention_backward_dkdv (one pass over queries per key row). No atomics: deterministic.
//
// The head dimension D must be ≤ DM of the chosen instantiation (16, 32 or 64; GPT-2's is 64).

#define ATT_ROWS 64   // rows (queries or keys) per block; 2 threads per row → 128 threads
#define ATT_TILE 64   // rows of the other side staged in shared memory at a time

// Stage rows r0 .. r0+ATT_TILE of head h of two [B, T, H·D] tensors into shared memory (x scaled
// by x_scale), zero-filling rows past T and columns past D. All threads of the block take part.
template <int DM>
__device__ __forceinline__ void attention_stage_tile(float (*xs)[DM], float (*ys)[DM], const float* x, const float* y,
                                                     float x_scale, int b, int h, int r0, int T, int H, int D) {
    const long long ld = (long long)H * D;
    for (int e = threadIdx.x; e < ATT_TILE * DM; e += blockDim.x) {
        int rr = e / DM, d = e % DM, r = r0 + rr;
        bool in = r < T && d < D;
        long long off = ((long long)b * T + r) * ld + h * D + d;
        xs[rr][d] = in ? x[off] * x_scale : 0.0f;
        ys[rr][d] = in ? y[off] : 0.0f;
    }
}

template <int DM>
__device__ __forceinline__ void attention_forward_impl(const float* q, const float* k, const float* v, float* o,
                                                       float* lse, int T, int H, int KVH, int D, float dropout_p,
                                                       unsigned long long seed) {
    constexpr int HALF = DM / 2;
    __shared__ float Ks[ATT_TILE][DM];
    __shared__ float Vs[ATT_TILE][DM];
    const int b = blockIdx.z, h = blockIdx.y, kh = h / (H / KVH);
    const int r = threadIdx.x / 2, half = threadIdx.x & 1;
    const int i = (int)blockIdx.x * ATT_ROWS + r;
    const bool valid = i < T;
    const long long ld = (long long)H * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float keep_scale = 1.0f / (1.0f - dropout_p);

    float qr[HALF], acc[HALF];
#pragma unroll
    for (int dd = 0; dd < HALF; dd++) {
        int d = half * HALF + dd;
        qr[dd] = (valid && d < D) ? q[((long long)b * T + i) * ld + h * D + d] * scale : 0.0f;
        acc[dd] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int last_key = min(T - 1, (int)blockIdx.x * ATT_ROWS + ATT_ROWS - 1);
    for (int j0 = 0; j0 <= last_key; j0 += ATT_TILE) {
        attention_stage_tile<DM>(Ks, Vs, k, v, 1.0f, b, kh, j0, T, KVH, D);
        __syncthreads();
        const int jmax = min(ATT_TILE, last_key - j0 + 1);
        for (int jj = 0; jj < jmax; jj++) {
            float s = 0.0f;
#pragma unroll
            for (int dd = 0; dd < HALF; dd++) s = fmaf(qr[dd], Ks[jj][half * HALF + dd], s);
            s += __shfl_xor_sync(0xffffffffu, s, 1);
            const int j = j0 + jj;
            if (valid && j <= i) {
                if (s > m) {  // the running max grew: rescale what was accumulated so far
                    float corr = expf(m - s);
                    l *= corr;
#pragma unroll
                    for (int dd = 0; dd < HALF; dd++) acc[dd] *= corr;
                    m = s;
                }
                float p = expf(s - m);
                l += p;
                if (dropout_p > 0.0f)
                    p = dropout_keep(seed, (((unsigned long long)(b * H + h) * T + i) * T + j), dropout_p) ? p * keep_scale : 0.0f;
#pragma unroll
                for (int dd = 0; dd < HALF; dd++) acc[dd] = fmaf(p, Vs[jj][half * HALF + dd], acc[dd]);
            }
        }
        __syncthreads();
    }
    if (valid) {
        float inv = 1.0f / l;
#pragma unroll
        for (int dd = 0; dd < HALF; dd++) {
            int d = half * HALF + dd;
            if (d < D) o[((long long)b * T + i) * ld + h * D + d] = acc[dd] * inv;
        }
        if (half == 0) lse[((long long)b * H + h) * T + i] = m + logf(l);
    }
}

// Δ_i = dO_i · O_i for every (b, h, i). One thread per row; grid-stride over B·H·T.
extern "C" __global__ void attention_backward_delta(const float* o, const float* dout, float* delta, int B, int T,
                                                   int H, int D) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)B * H * T) return;
    int i = (int)(idx % T);
    int h = (int)((idx / T) % H);
    int b = (int)(idx / ((long long)T * H));
    long long off = ((long long)b * T + i) * H * D + (long long)h * D;
    float s = 0.0f;
    for (int d = 0; d < D; d++) s += dout[off + d] * o[off + d];
    delta[idx] = s;
}

template <int DM>
__device__ __forceinline__ void attention_backward_dq_impl(const float* q, const float* k, const float* v,
                                                           const float* dout, const float* lse, const float* delta,
                                                           float* dq, int T, int H, int KVH, int D, float dropout_p,
                                                           unsigned long long seed) {
    constexpr int HALF = DM / 2;
    __shared__ float Ks[ATT_TILE][DM];
    __shared__ float Vs[ATT_TILE][DM];
    const int b = blockIdx.z, h = blockIdx.y, kh = h / (H / KVH);
    const int r = threadIdx.x / 2, half = threadIdx.x & 1;
    const int i = (int)blockIdx.x * ATT_ROWS + r;
    const bool valid = i < T;
    const long long ld = (long long)H * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float keep_scale = 1.0f / (1.0f - dropout_p);

    float qr[HALF], dor[HALF], acc[HALF];
#pragma unroll
    for (int dd = 0; dd < HALF; dd++) {
        int d = half * HALF + dd;
        long long off = ((long long)b * T + i) * ld + h * D + d;
        qr[dd] = (valid && d < D) ? q[off] * scale : 0.0f;
        dor[dd] = (valid && d < D) ? dout[off] : 0.0f;
        acc[dd] = 0.0f;
    }
    const long long stat = ((long long)b * H + h) * T + i;
    const float L = valid ? lse[stat] : 0.0f, Di = valid ? delta[stat] : 0.0f;
    const int last_key = min(T - 1, (int)blockIdx.x * ATT_ROWS + ATT_ROWS - 1);
    for (int j0 = 0; j0 <= last_key; j0 += ATT_TILE) {
        attention_stage_tile<DM>(Ks, Vs, k, v, 1.0f, b, kh, j0, T, KVH, D);
        __syncthreads();
        const int jmax = min(ATT_TILE, last_key - j0 + 1);
        for (int jj = 0; jj < jmax; jj++) {
            float s = 0.0f, dp = 0.0f;
#pragma unroll
            for (int dd = 0; dd < HALF; dd++) {
                s = fmaf(qr[dd], Ks[jj][half * HALF + dd], s);
                dp = fmaf(dor[dd], Vs[jj][half * HALF + dd], dp);
            }
            s += __shfl_xor_sync(0xffffffffu, s, 1);
            dp += __shfl_xor_sync(0xffffffffu, dp, 1);
            const int j = j0 + jj;
            if (valid && j <= i) {
                float p = expf(s - L);
                if (dropout_p > 0.0f)
                    dp = dropout_keep(seed, (((unsigned long long)(b * H + h) * T + i) * T + j), dropout_p) ? dp * keep_scale : 0.0f;
                float ds = p * (dp - Di);
#pragma unroll
                for (int dd = 0; dd < HALF; dd++) acc[dd] = fmaf(ds, Ks[jj][half * HALF + dd], acc[dd]);
            }
        }
        __syncthreads();
    }
    if (valid) {
#pragma unroll
        for (int dd = 0; dd < HALF; dd++) {
            int d = half * HALF + dd;
            if (d < D) dq[((long long)b * T + i) * ld + h * D + d] = acc[dd] * scale;
        }
    }
}

template <int DM>
__device__ __forceinline__ void attention_backward_dkdv_impl(const float* q, const float* k, const float* v,
                                                             const float* dout, const float* lse, const float* delta,
                                                             float* dk, float* dv, int T, int H, int KVH, int D,
                                                             float dropout_p, unsigned long long seed) {
    constexpr int HALF = DM / 2;
    __shared__ float Qs[ATT_TILE][DM];
    __shared__ float dOs[ATT_TILE][DM];
    __shared__ float Ls[ATT_TILE];
    __shared__ float Ds[ATT_TILE];
    const int b = blockIdx.z, kh = blockIdx.y, group = H / KVH;
    const int r = threadIdx.x / 2, half = threadIdx.x & 1;
    const int j = (int)blockIdx.x * ATT_ROWS + r;  // this pair's key row
    const bool valid = j < T;
    const long long ld_kv = (long long)KVH * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float keep_scale = 1.0f / (1.0f - dropout_p);

    float kr[HALF], vr[HALF], dk_acc[HALF], dv_acc[HALF];
#pragma unroll
    for (int dd = 0; dd < HALF; dd++) {
        int d = half * HALF + dd;
        long long off = ((long long)b * T + j) * ld_kv + kh * D + d;
        kr[dd] = (valid && d < D) ? k[off] : 0.0f;
        vr[dd] = (valid && d < D) ? v[off] : 0.0f;
        dk_acc[dd] = 0.0f;
        dv_acc[dd] = 0.0f;
    }
    // The query heads sharing this KV head, in turn: their contributions add up (the group sum).
    for (int h = kh * group; h < (kh + 1) * group; h++) {
        // Only queries i ≥ j see key j: start at this block's first key row.
        for (int i0 = (int)blockIdx.x * ATT_ROWS; i0 < T; i0 += ATT_TILE) {
            attention_stage_tile<DM>(Qs, dOs, q, dout, scale, b, h, i0, T, H, D);
            for (int ii = threadIdx.x; ii < ATT_TILE; ii += blockDim.x) {
                int i = i0 + ii;
                long long stat = ((long long)b * H + h) * T + i;
                Ls[ii] = i < T ? lse[stat] : 0.0f;
                Ds[ii] = i < T ? delta[stat] : 0.0f;
            }
            __syncthreads();
            const int imax = min(ATT_TILE, T - i0);
            for (int ii = 0; ii < imax; ii++) {
                float s = 0.0f, dp = 0.0f;
#pragma unroll
                for (int dd = 0; dd < HALF; dd++) {
                    s = fmaf(Qs[ii][half * HALF + dd], kr[dd], s);
                    dp = fmaf(dOs[ii][half * HALF + dd], vr[dd], dp);
                }
                s += __shfl_xor_sync(0xffffffffu, s, 1);
                dp += __shfl_xor_sync(0xffffffffu, dp, 1);
                const int i = i0 + ii;
                if (valid && i >= j) {
                    float p = expf(s - Ls[ii]);
                    float p_kept = p;
                    if (dropout_p > 0.0f) {
                        bool keep = dropout_keep(seed, (((unsigned long long)(b * H + h) * T + i) * T + j), dropout_p);
                        p_kept = keep ? p * keep_scale : 0.0f;
                        dp = keep ? dp * keep_scale : 0.0f;
                    }
                    float ds = p * (dp - Ds[ii]);
#pragma unroll
                    for (int dd = 0; dd < HALF; dd++) {
                        dv_acc[dd] = fmaf(p_kept, dOs[ii][half * HALF + dd], dv_acc[dd]);
                        dk_acc[dd] = fmaf(ds, Qs[ii][half * HALF + dd], dk_acc[dd]);  // Qs holds q/√D
                    }
                }
            }
            __syncthreads();
        }
    }
    if (valid) {
#pragma unroll
        for (int dd = 0; dd < HALF; dd++) {
            int d = half * HALF + dd;
            if (d < D) {
                long long off = ((long long)b * T + j) * ld_kv + kh * D + d;
                dk[off] = dk_acc[dd];
                dv[off] = dv_acc[dd];
            }
        }
    }
}

// Entry points, one per head-dimension bound. Launch: grid (ceil(T/64), H, B) for forward and dq,
// (ceil(T/64), KVH, B) for dk/dv; block 128.
#define ATTENTION_ENTRY_POINTS(DM)                                                                                  \
    extern "C" __global__ void __launch_bounds__(128) attention_forward_d##DM(                                    \
        const float* q, const float* k, const float* v, float* o, float* lse, int T, int H, int KVH, int D,         \
        float dropout_p, unsigned long long seed) {                                                                 \
        attention_forward_impl<DM>(q, k, v, o, lse, T, H, KVH, D, dropout_p, seed);                                 \
    }                                                                                                               \
    extern "C" __global__ void __launch_bounds__(128) attention_backward_dq_d##DM(                                \
        const float* q, const float* k, const float* v, const float* dout, const float* lse, const float* delta,    \
        float* dq, int T, int H, int KVH, int D, float dropout_p, unsigned long long seed) {                        \
        attention_backward_dq_impl<DM>(q, k, v, dout, lse, delta, dq, T, H, KVH, D, dropout_p, seed);               \
    }                                                                                                               \
    extern "C" __global__ void __launch_bounds__(128) attention_backward_dkdv_d##DM(                              \
        const float* q, const float* k, const float* v, const float* dout, const float* lse, const float* delta,    \
        float* dk, float* dv, int T, int H, int KVH, int D, float dropout_p, unsigned long long seed) {             \
        attention_backward_dkdv_impl<DM>(q, k, v, dout, lse, delta, dk, dv, T, H, KVH, D, dropout_p, seed);         \
    }

ATTENTION_ENTRY_POINTS(16)
ATTENTION_ENTRY_POINTS(32)
ATTENTION_ENTRY_POINTS(64)
