// rope.cu — rotary position embedding, Hugging Face's rotate-half convention: each head vector
// of length d is split into halves (x1, x2), and pair (x1[i], x2[i]) at position t turns by the
// angle θ = t·inv_freq[i]:
//   y1[i] = x1[i]·cos θ − x2[i]·sin θ,   y2[i] = x2[i]·cos θ + x1[i]·sin θ.
// A rotation's transpose is the rotation by −θ, so the backward is this kernel with sign = −1
// (sin negated) applied to the incoming gradient.
//
// x and y: (rows, T, d) contiguous (rows = batch·heads); cos, sin: (T, d/2), computed on the host.
// Launch: one thread per pair, rows·T·(d/2) threads.
extern "C" __global__ void rope_rotate(const float* x, const float* cos_t, const float* sin_t, float* y,
                                       long long rows, int t_len, int half, float sign) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long pairs_per_row = (long long)t_len * half;
    if (i >= rows * pairs_per_row) return;
    long long row = i / pairs_per_row;
    int rest = (int)(i % pairs_per_row);
    int t = rest / half, k = rest % half;
    long long base = (row * t_len + t) * (2LL * half);
    float c = cos_t[t * half + k], s = sign * sin_t[t * half + k];
    float a = x[base + k], b = x[base + half + k];
    y[base + k] = a * c - b * s;
    y[base + half + k] = b * c + a * s;
}
