// elementwise.cu — one thread per element: sums, scaling, GELU and dropout, forward and backward.
//
// Launch: 1-D grid, any block size (256 is used); each kernel guards `i < n`.

// out = a + b  (also used for the residual "shortcut" connections: x + block(x)).
// Backward of a sum is the identity for each input: da = db = dout.
extern "C" __global__ void add_forward(const float* a, const float* b, float* out, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}

// y += x: accumulate a gradient into an existing buffer.
extern "C" __global__ void accumulate(float* y, const float* x, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += x[i];
}

// out = alpha · x.  Backward: dx = alpha · dout.
extern "C" __global__ void scale_forward(const float* x, float* out, float alpha, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = alpha * x[i];
}

// out[i] = value.
extern "C" __global__ void fill(float* out, float value, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = value;
}

#define GELU_SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_COEF 0.044715f

// GELU, tanh approximation (GPT-2's):  y = ½·x·(1 + tanh u),  u = √(2/π)·(x + 0.044715·x³).
extern "C" __global__ void gelu_forward(const float* x, float* out, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = x[i];
        float u = GELU_SQRT_2_OVER_PI * (v + GELU_COEF * v * v * v);
        out[i] = 0.5f * v * (1.0f + tanhf(u));
    }
}

// GELU backward. With t = tanh u:
//   dy/dx = ½(1 + t) + ½·x·(1 − t²)·du/dx,   du/dx = √(2/π)·(1 + 3·0.044715·x²)
// so dx = dout · dy/dx. `accumulate` ≠ 0 adds into dx instead of overwriting it.
extern "C" __global__ void gelu_backward(const float* x, const float* dout, float* dx, long long n, int accumulate) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = x[i];
        float u = GELU_SQRT_2_OVER_PI * (v + GELU_COEF * v * v * v);
        float t = tanhf(u);
        float du = GELU_SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_COEF * v * v);
        float g = dout[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
        dx[i] = accumulate ? dx[i] + g : g;
    }
}

// Inverted dropout: out = x · m / (1 − p), m ~ Bernoulli(1 − p) regenerated from (seed, i) by
// dropout_keep. Backward: dx = dout · m / (1 − p) — the same mask, regenerated, not stored.
extern "C" __global__ void dropout_forward(const float* x, float* out, long long n, float p, unsigned long long seed) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = dropout_keep(seed, (unsigned long long)i, p) ? x[i] * (1.0f / (1.0f - p)) : 0.0f;
}

extern "C" __global__ void dropout_backward(const float* dout, float* dx, long long n, float p, unsigned long long seed) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dx[i] = dropout_keep(seed, (unsigned long long)i, p) ? dout[i] * (1.0f / (1.0f - p)) : 0.0f;
}
