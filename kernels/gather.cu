// gather.cu — a differentiable gather along the last axis and its gradient.
//
// Forward: out[r, j] = x[r, idx[r, j]] for rows r of x (..., V) and idx/out (..., K): what picks
// each token's log-probability of its target out of a (B, T, V) log-softmax (DPO's
// compute_logprobs). Indices are checked on the host before upload.

// out[r, j] = x[r, idx[r, j]]. Launch: one thread per output element.
extern "C" __global__ void gather_last(const float* x, const int* idx, float* out, long long rows, int v, int k) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * k) return;
    long long r = i / k;
    out[i] = x[r * v + idx[i]];
}

// The gradient, a scatter-add within each row: dx[r, idx[r, j]] += g[r, j]. dx starts at zero.
// One thread per row walks j in order, so an index repeated within a row accumulates in a fixed
// order (deterministic, no atomics); rows are independent. Launch: one thread per row.
extern "C" __global__ void gather_last_backward(const float* g, const int* idx, float* dx, long long rows, int v, int k) {
    long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    for (int j = 0; j < k; j++) dx[r * v + idx[r * k + j]] += g[r * k + j];
}
