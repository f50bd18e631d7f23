// cross_entropy.cu — fused softmax + cross-entropy over [rows, vocab] logits, with ignore_index.
//
// Launch: one block per row, blockDim.x a multiple of 32. A row whose target is negative (the book
// uses −100) is ignored: loss 0 and gradient 0.
//
// Loss of a row: ℓ = log Σ_j exp(x_j) − x_target = lse − x_target.
// Gradient: ∂ℓ/∂x_j = softmax_j − [j = target] = exp(x_j − lse) − [j = target].
// The mean over the n counted rows multiplies each row's gradient by dloss/n (`grad_scale`).
// lse comes from row_logsumexp (common.cuh): one pass over the vocabulary.

// Forward only (evaluation): losses[row] = ℓ (0 for ignored rows).
extern "C" __global__ void cross_entropy_forward(const float* logits, const int* targets, float* losses, int cols) {
    __shared__ float scratch[32];
    const float* row = logits + (long long)blockIdx.x * cols;
    float lse = row_logsumexp(row, cols, scratch);
    int t = targets[blockIdx.x];
    if (threadIdx.x == 0) losses[blockIdx.x] = t < 0 ? 0.0f : lse - row[t];
}

// The backward of the autograd's mean cross-entropy, with the upstream gradient read on the
// device (no copy to the host): dlogits[row, j] = (*dloss)·inv_count·(softmax_j − [j = target]),
// 0 for ignored rows. lse is recomputed (one more read of the row) rather than saved.
extern "C" __global__ void cross_entropy_backward(const float* logits, const int* targets, const float* dloss,
                                                  float* dlogits, int cols, float inv_count) {
    __shared__ float scratch[32];
    long long base = (long long)blockIdx.x * cols;
    const float* row = logits + base;
    float lse = row_logsumexp(row, cols, scratch);
    int t = targets[blockIdx.x];
    float scale = dloss[0] * inv_count;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float g = t < 0 ? 0.0f : scale * (expf(row[j] - lse) - (j == t ? 1.0f : 0.0f));
        dlogits[base + j] = g;
    }
}
