// unary.cu — elementwise y = f(x) (with a scalar c where f has one) and its backward
// dx = g ⊙ f'(·), for the ops of src/ops/unary/mod.rs. The op codes, f and f':
//   0 add_scalar  y = x + c      f' = 1
//   1 mul_scalar  y = c·x        f' = c
//   2 powf        y = x^c        f' = c·x^(c−1)   (from the saved input x)
//   3 exp         y = eˣ         f' = y           (from the saved output y)
//   4 log         y = ln x       f' = 1/x
//   5 sqrt        y = √x         f' = 1/(2y)
//   6 tanh        y = tanh x     f' = 1 − y²
//   7 relu        y = max(x, 0)  f' = [x > 0]
//   8 sigmoid     y = σ(x)       f' = y(1 − y)
//   9 log_sigmoid y = ln σ(x)    f' = 1 − σ(x) = σ(−x)   (from the saved input x)
//  10 silu        y = x·σ(x)     f' = σ(x)·(1 + x·(1 − σ(x)))   (from the saved input x)
// The backward receives `s`, the input or the output as the CPU op saves it (its table says which).

// σ(x) without exponentiating a large positive number.
__device__ float stable_sigmoid(float v) {
    return v >= 0.0f ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
}

// Launch: one thread per element.
extern "C" __global__ void unary_forward(int op, const float* x, float* y, long long n, float c) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i], r;
    switch (op) {
        case 0: r = v + c; break;
        case 1: r = c * v; break;
        case 2: r = powf(v, c); break;
        case 3: r = expf(v); break;
        case 4: r = logf(v); break;
        case 5: r = sqrtf(v); break;
        case 6: r = tanhf(v); break;
        case 7: r = v > 0.0f ? v : 0.0f; break;
        case 8: r = v >= 0.0f ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v)); break;
        // ln σ(x) = min(x, 0) − ln(1 + e^{−|x|}): no overflow on either tail.
        case 9: r = fminf(v, 0.0f) - log1pf(expf(-fabsf(v))); break;
        default: r = v * stable_sigmoid(v); break;
    }
    y[i] = r;
}

// Launch: one thread per element. dx = g ⊙ f'(s).
extern "C" __global__ void unary_backward(int op, const float* s, const float* g, float* dx, long long n, float c) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = s[i], d;
    switch (op) {
        case 0: d = 1.0f; break;
        case 1: d = c; break;
        case 2: d = c * powf(v, c - 1.0f); break;
        case 3: d = v; break;
        case 4: d = 1.0f / v; break;
        case 5: d = 1.0f / (v + v); break;
        case 6: d = 1.0f - v * v; break;
        case 7: d = v > 0.0f ? 1.0f : 0.0f; break;
        case 8: d = v * (1.0f - v); break;
        // σ(−x), written so that no large positive number is exponentiated.
        case 9: d = v >= 0.0f ? expf(-v) / (1.0f + expf(-v)) : 1.0f / (1.0f + expf(v)); break;
        default: { float sg = stable_sigmoid(v); d = sg * (1.0f + v * (1.0f - sg)); } break;
    }
    dx[i] = g[i] * d;
}
