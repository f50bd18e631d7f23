// softmax.cu — row-wise softmax and log-softmax, forward and backward.
//
// Launch: one block per row (grid = rows), blockDim.x a multiple of 32 (≤ 1024); threads stride
// over the row's columns and combine with block reductions.

// y_j = exp(x_j − lse), lse = log Σ_k exp(x_k) computed stably (row_logsumexp in common.cuh
// subtracts a running max, so exp never overflows). Same as exp(x_j − max) / Σ exp(x_k − max).
extern "C" __global__ void softmax_forward(const float* x, float* y, int cols) {
    __shared__ float scratch[32];
    const float* row = x + (long long)blockIdx.x * cols;
    float* out = y + (long long)blockIdx.x * cols;
    float lse = row_logsumexp(row, cols, scratch);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) out[j] = expf(row[j] - lse);
}

// Softmax backward. The Jacobian is ∂y_i/∂x_j = y_i(δ_ij − y_j), so
//   dx_j = Σ_i dy_i · y_i(δ_ij − y_j) = y_j · (dy_j − Σ_i dy_i y_i).
extern "C" __global__ void softmax_backward(const float* y, const float* dy, float* dx, int cols) {
    __shared__ float scratch[32];
    long long base = (long long)blockIdx.x * cols;
    float dot = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) dot += dy[base + j] * y[base + j];
    dot = block_sum(dot, scratch);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) dx[base + j] = y[base + j] * (dy[base + j] - dot);
}

// log_softmax: z_j = x_j − lse.
extern "C" __global__ void log_softmax_forward(const float* x, float* z, int cols) {
    __shared__ float scratch[32];
    const float* row = x + (long long)blockIdx.x * cols;
    float* out = z + (long long)blockIdx.x * cols;
    float lse = row_logsumexp(row, cols, scratch);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) out[j] = row[j] - lse;
}

// log_softmax backward: ∂z_i/∂x_j = δ_ij − softmax_j, so dx_j = dz_j − softmax_j · Σ_i dz_i,
// with softmax_j = exp(z_j).
extern "C" __global__ void log_softmax_backward(const float* z, const float* dz, float* dx, int cols) {
    __shared__ float scratch[32];
    long long base = (long long)blockIdx.x * cols;
    float total = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) total += dz[base + j];
    total = block_sum(total, scratch);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) dx[base + j] = dz[base + j] - expf(z[base + j]) * total;
}
