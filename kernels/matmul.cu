// matmul.cu — single-precision GEMM, tiled through shared memory with register blocking.
//
//   C[z] = alpha · op(A[z]) · op(B[z]) + beta · C[z]  (+ bias broadcast over rows)
//
// for z in the batch (blockIdx.z), where op(A) is M×K and op(B) is K×N, all row-major:
//   trans_a = 0: A is stored M×K, A(m,k) = A[m·K + k];   trans_a = 1: stored K×M, A(m,k) = A[k·M + m]
//   trans_b = 0: B is stored K×N, B(k,n) = B[k·N + n];   trans_b = 1: stored N×K, B(k,n) = B[n·K + k]
// The four forms cover a Linear layer's forward (y = x·Wᵀ: trans_b) and both halves of its
// backward (dx = dy·W: plain; dW += dyᵀ·x: trans_a with beta = 1 to accumulate).
// With beta = 0, C is never read (it may hold garbage or NaN).
//
// How it is fast. Each 256-thread block computes a 128×128 tile of C, walking K in slabs of 16:
//  1. the block copies the 128×16 slab of op(A) and the 16×128 slab of op(B) into shared memory,
//     both stored k-major (As[k][m], Bs[k][n]) whatever the transposes, so the inner loop is the
//     same for all four forms;
//  2. every thread keeps an 8×8 block of C in registers — as 2×2 sub-tiles of 4×4, rows
//     {4ty.., 64+4ty..} and columns {4tx.., 64+4tx..} — and for each k reads 8 values of A and 8
//     of B with four 16-byte shared loads, then does 64 FMAs: 4 loads per 64 FMAs. (Splitting the
//     8 columns into two groups 64 apart makes a warp's 16 distinct B reads one contiguous 256-byte
//     row: no shared-memory bank conflicts.)
//  3. while computing on one slab, each thread already holds the next slab's 16 values in
//     registers (loaded from global memory before the math), hiding global-memory latency, and
//     writes them into the second shared-memory buffer afterwards (double buffering: one barrier
//     per slab).
// Out-of-range rows/columns/k load as zero, so any M, N, K works.
#define MM_BM 128
#define MM_BN 128
#define MM_BK 16

// This thread's share of one slab: 8 values of op(A) and 8 of op(B), fetched from global memory.
struct MatmulSlab {
    float a[8];
    float b[8];
};

// Which elements a thread loads. The 128×16 slab of op(A) has 2048 values, 8 per thread, read
// along A's contiguous axis so neighbouring threads touch neighbouring addresses.
__device__ __forceinline__ void matmul_load_slab(const float* A, const float* B, int M, int N, int K, int trans_a,
                                                 int trans_b, int row0, int col0, int k0, int tid, MatmulSlab& s) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
        if (!trans_a) {  // contiguous along k: thread reads 4 k of one row (rows tid/4 and +64)
            int m = tid / 4 + 64 * h, kk = (tid % 4) * 4;
#pragma unroll
            for (int q = 0; q < 4; q++) {
                int gm = row0 + m, gk = k0 + kk + q;
                s.a[4 * h + q] = (gm < M && gk < K) ? A[(long long)gm * K + gk] : 0.0f;
            }
        } else {  // contiguous along m: thread reads 4 m of one k (k = tid/32 and +8)
            int kk = tid / 32 + 8 * h, m = (tid % 32) * 4;
#pragma unroll
            for (int q = 0; q < 4; q++) {
                int gm = row0 + m + q, gk = k0 + kk;
                s.a[4 * h + q] = (gm < M && gk < K) ? A[(long long)gk * M + gm] : 0.0f;
            }
        }
        if (!trans_b) {  // contiguous along n
            int kk = tid / 32 + 8 * h, n = (tid % 32) * 4;
#pragma unroll
            for (int q = 0; q < 4; q++) {
                int gk = k0 + kk, gn = col0 + n + q;
                s.b[4 * h + q] = (gk < K && gn < N) ? B[(long long)gk * N + gn] : 0.0f;
            }
        } else {  // contiguous along k
            int n = tid / 4 + 64 * h, kk = (tid % 4) * 4;
#pragma unroll
            for (int q = 0; q < 4; q++) {
                int gk = k0 + kk + q, gn = col0 + n;
                s.b[4 * h + q] = (gk < K && gn < N) ? B[(long long)gn * K + gk] : 0.0f;
            }
        }
    }
}

// Write the fetched slab into shared memory, k-major.
__device__ __forceinline__ void matmul_store_slab(float (*As)[MM_BM], float (*Bs)[MM_BN], int trans_a, int trans_b,
                                                  int tid, const MatmulSlab& s) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
        if (!trans_a) {
            int m = tid / 4 + 64 * h, kk = (tid % 4) * 4;
#pragma unroll
            for (int q = 0; q < 4; q++) As[kk + q][m] = s.a[4 * h + q];
        } else {
            int kk = tid / 32 + 8 * h, m = (tid % 32) * 4;
#pragma unroll
            for (int q = 0; q < 4; q++) As[kk][m + q] = s.a[4 * h + q];
        }
        if (!trans_b) {
            int kk = tid / 32 + 8 * h, n = (tid % 32) * 4;
#pragma unroll
            for (int q = 0; q < 4; q++) Bs[kk][n + q] = s.b[4 * h + q];
        } else {
            int n = tid / 4 + 64 * h, kk = (tid % 4) * 4;
#pragma unroll
            for (int q = 0; q < 4; q++) Bs[kk + q][n] = s.b[4 * h + q];
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) matmul(const float* A, const float* B, float* C, const float* bias,
                                                         int M, int N, int K, int trans_a, int trans_b,
                                                         long long stride_a, long long stride_b, long long stride_c,
                                                         float alpha, float beta) {
    // Two buffers per operand (32 KiB): the block computes on one while the next slab is written
    // into the other, so one barrier per slab suffices.
    __shared__ __align__(16) float As[2][MM_BK][MM_BM];
    __shared__ __align__(16) float Bs[2][MM_BK][MM_BN];
    const int tid = threadIdx.x;
    const int row0 = blockIdx.y * MM_BM, col0 = blockIdx.x * MM_BN;
    A += blockIdx.z * stride_a;
    B += blockIdx.z * stride_b;
    C += blockIdx.z * stride_c;
    const int ty = tid / 16, tx = tid % 16;

    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
        for (int j = 0; j < 8; j++) acc[i][j] = 0.0f;

    MatmulSlab slab;
    matmul_load_slab(A, B, M, N, K, trans_a, trans_b, row0, col0, 0, tid, slab);
    matmul_store_slab(As[0], Bs[0], trans_a, trans_b, tid, slab);
    __syncthreads();
    int buf = 0;
    for (int k0 = 0; k0 < K; k0 += MM_BK) {
        const bool more = k0 + MM_BK < K;
        // Fetch the next slab now; the loads complete while the FMAs below run.
        if (more) matmul_load_slab(A, B, M, N, K, trans_a, trans_b, row0, col0, k0 + MM_BK, tid, slab);
#pragma unroll
        for (int kk = 0; kk < MM_BK; kk++) {
            float4 a0 = *reinterpret_cast<const float4*>(&As[buf][kk][ty * 4]);
            float4 a1 = *reinterpret_cast<const float4*>(&As[buf][kk][64 + ty * 4]);
            float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][kk][tx * 4]);
            float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][kk][64 + tx * 4]);
            float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
            float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int j = 0; j < 8; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        // The other buffer was last read before the previous barrier: safe to overwrite now.
        if (more) matmul_store_slab(As[buf ^ 1], Bs[buf ^ 1], trans_a, trans_b, tid, slab);
        // The new slab must be complete before anyone computes on it.
        __syncthreads();
        buf ^= 1;
    }

#pragma unroll
    for (int i = 0; i < 8; i++) {
        int gm = row0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
        if (gm >= M) continue;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            int gn = col0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4));
            if (gn >= N) continue;
            float r = alpha * acc[i][j];
            if (beta != 0.0f) r += beta * C[(long long)gm * N + gn];
            if (bias) r += bias[gn];
            C[(long long)gm * N + gn] = r;
        }
    }
}
