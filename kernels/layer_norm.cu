// layer_norm.cu — LayerNorm over the last axis (GPT-2's, eps inside the square root), with the
// book's parameter names: y = scale · x̂ + shift,  x̂ = (x − μ) · rstd,  rstd = 1/√(σ² + eps),
// σ² the biased variance (divide by C, as torch.var(unbiased=False)).
//
// Launch for the row kernels: blockDim.x = 32·k; one warp per row; grid = ceil(rows / k).

extern "C" __global__ void layer_norm_forward(const float* x, const float* scale, const float* shift, float* y,
                                              float* mean_out, float* rstd_out, long long rows, int cols, float eps) {
    long long row = (long long)blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;
    int lane = threadIdx.x % WARP_SIZE;
    // Whole warps leave together (row is uniform across a warp), so the shuffles below stay convergent.
    if (row >= rows) return;
    const float* xr = x + row * cols;
    float s = 0.0f;
    for (int c = lane; c < cols; c += WARP_SIZE) s += xr[c];
    float mean = warp_sum(s) / cols;
    float v = 0.0f;
    for (int c = lane; c < cols; c += WARP_SIZE) { float d = xr[c] - mean; v += d * d; }
    float rstd = rsqrtf(warp_sum(v) / cols + eps);
    float* yr = y + row * cols;
    for (int c = lane; c < cols; c += WARP_SIZE) yr[c] = (xr[c] - mean) * rstd * scale[c] + shift[c];
    if (lane == 0) { mean_out[row] = mean; rstd_out[row] = rstd; }
}

// Input gradient. With g = dy ⊙ scale (the gradient reaching x̂), x̂ depends on every x_j of the
// row through μ and rstd; differentiating x̂_i = (x_i − μ)·rstd gives
//   dx_i = rstd · ( g_i − mean_j(g_j) − x̂_i · mean_j(g_j x̂_j) ).
// `accumulate` ≠ 0 adds into dx (the residual stream's gradient already holds the skip path's).
extern "C" __global__ void layer_norm_backward_input(const float* x, const float* scale, const float* mean_in,
                                                     const float* rstd_in, const float* dy, float* dx, long long rows,
                                                     int cols, int accumulate) {
    long long row = (long long)blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;
    int lane = threadIdx.x % WARP_SIZE;
    if (row >= rows) return;
    const float* xr = x + row * cols;
    const float* dyr = dy + row * cols;
    float mean = mean_in[row], rstd = rstd_in[row];
    float sum_g = 0.0f, sum_gx = 0.0f;
    for (int c = lane; c < cols; c += WARP_SIZE) {
        float g = dyr[c] * scale[c];
        sum_g += g;
        sum_gx += g * (xr[c] - mean) * rstd;
    }
    float mean_g = warp_sum(sum_g) / cols, mean_gx = warp_sum(sum_gx) / cols;
    float* dxr = dx + row * cols;
    for (int c = lane; c < cols; c += WARP_SIZE) {
        float xhat = (xr[c] - mean) * rstd;
        float g = rstd * (dyr[c] * scale[c] - mean_g - xhat * mean_gx);
        dxr[c] = accumulate ? dxr[c] + g : g;
    }
}

// Parameter gradients, stage 1 (deterministic, see reduce.cu): for the chunk of rows blockIdx.y,
//   partial_scale[chunk, c] = Σ_r dy[r,c] · x̂[r,c],   partial_shift[chunk, c] = Σ_r dy[r,c].
// Stage 2 is column_sum_finish on each partial (accumulating into the parameter gradients).
extern "C" __global__ void layer_norm_backward_params_partial(const float* x, const float* mean_in, const float* rstd_in,
                                                              const float* dy, float* partial_scale, float* partial_shift,
                                                              long long rows, int cols, int rows_per_chunk) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    long long r0 = (long long)blockIdx.y * rows_per_chunk;
    long long r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    float ds = 0.0f, db = 0.0f;
    for (long long r = r0; r < r1; r++) {
        float d = dy[r * cols + c];
        ds += d * (x[r * cols + c] - mean_in[r]) * rstd_in[r];
        db += d;
    }
    partial_scale[(long long)blockIdx.y * cols + c] = ds;
    partial_shift[(long long)blockIdx.y * cols + c] = db;
}
