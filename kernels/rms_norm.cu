// rms_norm.cu — RMSNorm over the last axis (Llama's, Qwen's): y = weight · x · rstd,
// rstd = 1/√(mean(x²) + eps). No centering and no shift: layer norm without its mean.
//
// Launch for the row kernels: blockDim.x = 32·k; one warp per row; grid = ceil(rows / k).

extern "C" __global__ void rms_norm_forward(const float* x, const float* weight, float* y, float* rstd_out,
                                            long long rows, int cols, float eps) {
    long long row = (long long)blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;
    int lane = threadIdx.x % WARP_SIZE;
    // Whole warps leave together (row is uniform across a warp), so the shuffles stay convergent.
    if (row >= rows) return;
    const float* xr = x + row * cols;
    float s = 0.0f;
    for (int c = lane; c < cols; c += WARP_SIZE) s += xr[c] * xr[c];
    float rstd = rsqrtf(warp_sum(s) / cols + eps);
    float* yr = y + row * cols;
    for (int c = lane; c < cols; c += WARP_SIZE) yr[c] = xr[c] * rstd * weight[c];
    if (lane == 0) rstd_out[row] = rstd;
}

// Input gradient. With g = dy ⊙ weight (the gradient reaching x̂ = x·rstd), and
// ∂rstd/∂x_j = −rstd³·x_j/n:
//   dx_i = rstd · ( g_i − x̂_i · mean_j(g_j x̂_j) ).
extern "C" __global__ void rms_norm_backward_input(const float* x, const float* weight, const float* rstd_in,
                                                   const float* dy, float* dx, long long rows, int cols) {
    long long row = (long long)blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;
    int lane = threadIdx.x % WARP_SIZE;
    if (row >= rows) return;
    const float* xr = x + row * cols;
    const float* dyr = dy + row * cols;
    float rstd = rstd_in[row];
    float sum_gx = 0.0f;
    for (int c = lane; c < cols; c += WARP_SIZE) sum_gx += dyr[c] * weight[c] * xr[c] * rstd;
    float mean_gx = warp_sum(sum_gx) / cols;
    float* dxr = dx + row * cols;
    for (int c = lane; c < cols; c += WARP_SIZE) {
        float xhat = xr[c] * rstd;
        dxr[c] = rstd * (dyr[c] * weight[c] - xhat * mean_gx);
    }
}

// Weight gradient, stage 1 (deterministic, see reduce.cu): for the chunk of rows blockIdx.y,
//   partial[chunk, c] = Σ_r dy[r,c] · x̂[r,c].
// Stage 2 is column_sum_finish (accumulating into the weight's gradient).
extern "C" __global__ void rms_norm_backward_weight_partial(const float* x, const float* rstd_in, const float* dy,
                                                            float* partial, long long rows, int cols,
                                                            int rows_per_chunk) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    long long r0 = (long long)blockIdx.y * rows_per_chunk;
    long long r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    float dw = 0.0f;
    for (long long r = r0; r < r1; r++) dw += dy[r * cols + c] * x[r * cols + c] * rstd_in[r];
    partial[(long long)blockIdx.y * cols + c] = dw;
}
