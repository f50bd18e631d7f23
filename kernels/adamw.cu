// adamw.cu — the fused AdamW update, in torch.optim.AdamW's order of operations (the same float
// operations as src/optim/adamw.rs, so CPU and GPU agree to rounding — NVRTC may contract a·b + c into one FMA):
//   θ ← θ · decay,  decay = 1 − lr·λ                       decoupled weight decay (host computes)
//   m ← m + (1 − β₁)(g − m)      (torch's lerp: the same as β₁ m + (1 − β₁) g)
//   v ← β₂ v + (1 − β₂) g²
//   θ ← θ − step_size · m / (√v / √c₂ + ε),  step_size = lr / c₁,  c₁ = 1 − β₁ᵗ, c₂ = 1 − β₂ᵗ
__device__ __forceinline__ void adamw_element(float* param, const float* grad, float* m, float* v, long long i,
                                              float step_size, float decay, float beta1, float beta2, float eps,
                                              float bias_correction2_sqrt) {
    float g = grad[i];
    float p = param[i] * decay;
    float mi = m[i] + (1.0f - beta1) * (g - m[i]);
    float vi = v[i] * beta2 + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) / bias_correction2_sqrt + eps;
    param[i] = p - step_size * (mi / denom);
}

// Every tensor of a model in one launch (PyTorch's "foreach"/multi-tensor apply): `ptrs` holds
// 4·n_tensors device addresses (param, grad, m, v of tensor 0, then tensor 1, …), `offsets` the
// running element counts (n_tensors + 1 of them, offsets[0] = 0) and `decays` each tensor's decay
// factor (1 for tensors exempt from weight decay). One thread per element of the concatenation;
// a binary search over `offsets` finds its tensor.
extern "C" __global__ void adamw_update_multi(const unsigned long long* ptrs, const long long* offsets,
                                              const float* decays, int n_tensors, float step_size, float beta1,
                                              float beta2, float eps, float bias_correction2_sqrt) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= offsets[n_tensors]) return;
    int lo = 0, hi = n_tensors - 1;  // the last tensor whose offset is ≤ i
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (offsets[mid] <= i) lo = mid; else hi = mid - 1;
    }
    const unsigned long long* t = ptrs + 4 * lo;
    adamw_element((float*)t[0], (const float*)t[1], (float*)t[2], (float*)t[3], i - offsets[lo], step_size,
                  decays[lo], beta1, beta2, eps, bias_correction2_sqrt);
}
