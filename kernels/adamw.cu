// adamw.cu — the fused AdamW update, in torch.optim.AdamW's order of operations (the same float
// operations as src/optim/adamw.rs, so CPU and GPU agree to rounding — NVRTC may contract a·b + c into one FMA):
//   θ ← θ · decay,  decay = 1 − lr·λ                       decoupled weight decay (host computes)
//   m ← m + (1 − β₁)(g − m)      (torch's lerp: the same as β₁ m + (1 − β₁) g)
//   v ← β₂ v + (1 − β₂) g²
//   θ ← θ − step_size · m / (√v / √c₂ + ε),  step_size = lr / c₁,  c₁ = 1 − β₁ᵗ, c₂ = 1 − β₂ᵗ
// One thread per parameter element.
extern "C" __global__ void adamw_update(float* param, const float* grad, float* m, float* v, long long n,
                                        float step_size, float decay, float beta1, float beta2, float eps,
                                        float bias_correction2_sqrt) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grad[i];
    float p = param[i] * decay;
    float mi = m[i] + (1.0f - beta1) * (g - m[i]);
    float vi = v[i] * beta2 + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) / bias_correction2_sqrt + eps;
    param[i] = p - step_size * (mi / denom);
}
