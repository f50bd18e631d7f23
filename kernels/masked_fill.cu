// masked_fill.cu — out = mask ? value : x, and its backward dx = mask ? 0 : g (src/ops/masked_fill).
// The mask arrives as floats (1 masked, 0 kept), broadcast to x's shape on the host.

// One thread per element.
extern "C" __global__ void masked_fill_forward(const float* x, const float* mask, float* out, long long n,
                                               float value) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = mask[i] != 0.0f ? value : x[i];
}

// One thread per element.
extern "C" __global__ void masked_fill_backward(const float* g, const float* mask, float* dx, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dx[i] = mask[i] != 0.0f ? 0.0f : g[i];
}
