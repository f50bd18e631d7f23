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
// Tiling. Each 256-thread block computes a 128×128 tile of C. It walks K in steps of 8: the block
// copies the 128×8 slab of op(A) and the 8×128 slab of op(B) into shared memory (each element is
// then read by 16 threads from fast shared memory instead of 16 times from global memory), syncs,
// and every thread updates its own 8×8 sub-tile of C held in registers: 64 FMAs per 16 shared
// loads. Out-of-range rows/columns load as zero, so any M, N, K works.
#define MM_BM 128
#define MM_BN 128
#define MM_BK 8
#define MM_TM 8
#define MM_TN 8

extern "C" __global__ void __launch_bounds__(256) matmul(const float* A, const float* B, float* C, const float* bias,
                                                         int M, int N, int K, int trans_a, int trans_b,
                                                         long long stride_a, long long stride_b, long long stride_c,
                                                         float alpha, float beta) {
    __shared__ float As[MM_BK][MM_BM];
    __shared__ float Bs[MM_BK][MM_BN];
    const int tid = threadIdx.x;
    const int row0 = blockIdx.y * MM_BM, col0 = blockIdx.x * MM_BN;
    A += blockIdx.z * stride_a;
    B += blockIdx.z * stride_b;
    C += blockIdx.z * stride_c;
    const int ty = tid / 16, tx = tid % 16;  // this thread's 8×8 sub-tile: rows ty·8.., cols tx·8..

    float acc[MM_TM][MM_TN];
#pragma unroll
    for (int i = 0; i < MM_TM; i++)
#pragma unroll
        for (int j = 0; j < MM_TN; j++) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += MM_BK) {
        // Load the A slab: 128×8 = 1024 elements, 4 per thread, along A's contiguous axis.
        if (!trans_a) {
            int m = tid / 2, kk = (tid % 2) * 4;  // row m, four consecutive k
#pragma unroll
            for (int q = 0; q < 4; q++) {
                int gm = row0 + m, gk = k0 + kk + q;
                As[kk + q][m] = (gm < M && gk < K) ? A[(long long)gm * K + gk] : 0.0f;
            }
        } else {
            int kk = tid / 32, m = (tid % 32) * 4;  // one k, four consecutive m
#pragma unroll
            for (int q = 0; q < 4; q++) {
                int gm = row0 + m + q, gk = k0 + kk;
                As[kk][m + q] = (gm < M && gk < K) ? A[(long long)gk * M + gm] : 0.0f;
            }
        }
        // Load the B slab: 8×128.
        if (!trans_b) {
            int kk = tid / 32, n = (tid % 32) * 4;
#pragma unroll
            for (int q = 0; q < 4; q++) {
                int gk = k0 + kk, gn = col0 + n + q;
                Bs[kk][n + q] = (gk < K && gn < N) ? B[(long long)gk * N + gn] : 0.0f;
            }
        } else {
            int n = tid / 2, kk = (tid % 2) * 4;
#pragma unroll
            for (int q = 0; q < 4; q++) {
                int gk = k0 + kk + q, gn = col0 + n;
                Bs[kk + q][n] = (gk < K && gn < N) ? B[(long long)gn * K + gk] : 0.0f;
            }
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < MM_BK; kk++) {
            float a[MM_TM], b[MM_TN];
#pragma unroll
            for (int i = 0; i < MM_TM; i++) a[i] = As[kk][ty * MM_TM + i];
#pragma unroll
            for (int j = 0; j < MM_TN; j++) b[j] = Bs[kk][tx * MM_TN + j];
#pragma unroll
            for (int i = 0; i < MM_TM; i++)
#pragma unroll
                for (int j = 0; j < MM_TN; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        // Everyone must finish reading this slab before the next iteration overwrites it.
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < MM_TM; i++) {
        int gm = row0 + ty * MM_TM + i;
        if (gm >= M) continue;
#pragma unroll
        for (int j = 0; j < MM_TN; j++) {
            int gn = col0 + tx * MM_TN + j;
            if (gn >= N) continue;
            float r = alpha * acc[i][j];
            if (beta != 0.0f) r += beta * C[(long long)gm * N + gn];
            if (bias) r += bias[gn];
            C[(long long)gm * N + gn] = r;
        }
    }
}
