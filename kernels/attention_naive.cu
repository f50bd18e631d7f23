// attention_naive.cu — the textbook causal attention, kept as the baseline the fused kernel is
// measured against (and as a second reference in tests): materialise S = QKᵀ/√D as a [B, H, T, T]
// matrix, softmax each row (softmax.cu), then O = P·V. It reads and writes T² numbers per head
// where the fused kernel keeps them on chip.

// S[b,h,i,j] = q_i·k_j/√D for j ≤ i, −∞ above the diagonal. One thread per (b, h, i, j).
extern "C" __global__ void attention_naive_scores(const float* q, const float* k, float* scores, int B, int T, int H, int D) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)B * H * T * T) return;
    int j = (int)(idx % T);
    int i = (int)((idx / T) % T);
    int h = (int)((idx / ((long long)T * T)) % H);
    int b = (int)(idx / ((long long)T * T * H));
    if (j > i) { scores[idx] = -INFINITY; return; }
    long long ld = (long long)H * D;
    const float* qi = q + ((long long)b * T + i) * ld + (long long)h * D;
    const float* kj = k + ((long long)b * T + j) * ld + (long long)h * D;
    float s = 0.0f;
    for (int d = 0; d < D; d++) s += qi[d] * kj[d];
    scores[idx] = s / sqrtf((float)D);
}

// O[b,i,h·D+d] = Σ_j P[b,h,i,j] · v[b,j,h·D+d]. One thread per output element.
extern "C" __global__ void attention_naive_output(const float* probs, const float* v, float* o, int B, int T, int H, int D) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)B * T * H * D) return;
    int d = (int)(idx % D);
    int h = (int)((idx / D) % H);
    int i = (int)((idx / ((long long)D * H)) % T);
    int b = (int)(idx / ((long long)D * H * T));
    long long ld = (long long)H * D;
    const float* p = probs + (((long long)b * H + h) * T + i) * T;
    float s = 0.0f;
    for (int j = 0; j <= i; j++) s += p[j] * v[((long long)b * T + j) * ld + (long long)h * D + d];
    o[idx] = s;
}
