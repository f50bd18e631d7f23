// reduce.cu — deterministic reductions: column sums (bias gradients), whole-buffer sums and sums of
// squares (loss totals, the global gradient norm).
//
// Floating-point addition is not associative, so a reduction that used atomics would give
// run-to-run different bits. Every reduction here is two-stage with a fixed order instead:
// partial sums over fixed chunks, then one pass over the partials. Same input → same bits.

// Stage 1 of a column sum of an [rows, cols] matrix: partial[chunk, c] = Σ_{r in chunk} x[r, c],
// chunks of `rows_per_chunk` rows. Grid (ceil(cols/blockDim.x), n_chunks); one thread per column,
// so neighbouring threads read neighbouring addresses (coalesced).
extern "C" __global__ void column_sum_partial(const float* x, float* partial, long long rows, int cols, int rows_per_chunk) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    long long r0 = (long long)blockIdx.y * rows_per_chunk;
    if (c >= cols) return;
    long long r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    float s = 0.0f;
    for (long long r = r0; r < r1; r++) s += x[r * cols + c];
    partial[(long long)blockIdx.y * cols + c] = s;
}

// Stage 2: out[c] (+)= Σ_chunk partial[chunk, c].
extern "C" __global__ void column_sum_finish(const float* partial, float* out, int n_chunks, int cols, int accumulate) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float s = 0.0f;
    for (int k = 0; k < n_chunks; k++) s += partial[(long long)k * cols + c];
    out[c] = accumulate ? out[c] + s : s;
}

// Stage 1 of Σ x (squares = 0) or Σ x² (squares ≠ 0): each block sums a grid-stride slice into
// partial[blockIdx.x]. Block size a multiple of 32.
extern "C" __global__ void sum_partial(const float* x, float* partial, long long n, int squares) {
    __shared__ float scratch[32];
    float s = 0.0f;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = x[i];
        s += squares ? v * v : v;
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Stage 2: out[0] = Σ partial (one block).
extern "C" __global__ void sum_finish(const float* partial, float* out, int n) {
    __shared__ float scratch[32];
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) out[0] = s;
}

// Maximum over the middle axis of an [outer, n, inner] tensor, with its index (the first maximum;
// a NaN counts as maximal, as the CPU op). One thread per (outer, inner) lane.
extern "C" __global__ void max_axis_forward(const float* x, float* y, int* index, long long outer, int n,
                                            long long inner) {
    long long lane = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (lane >= outer * inner) return;
    long long o = lane / inner, i = lane % inner;
    const float* p = x + o * n * inner + i;
    int best = 0;
    float bv = p[0];
    for (int j = 1; j < n; j++) {
        float v = p[(long long)j * inner];
        if (v > bv || (v != v && bv == bv)) {
            best = j;
            bv = v;
        }
    }
    y[lane] = bv;
    index[lane] = best;
}

// Its backward: dx is g at each lane's maximum and 0 elsewhere. One thread per element of dx.
extern "C" __global__ void max_axis_backward(const float* g, const int* index, float* dx, long long outer, int n,
                                             long long inner) {
    long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= outer * n * inner) return;
    long long o = e / ((long long)n * inner), j = (e / inner) % n, i = e % inner;
    long long lane = o * inner + i;
    dx[e] = index[lane] == j ? g[lane] : 0.0f;
}
