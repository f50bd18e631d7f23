// embedding.cu — GPT input embeddings: token lookup plus position lookup, and their gradients.
//
// Forward: out[b, t, :] = wte[ids[b, t], :] + wpe[t, :]   (book: tok_emb(in_idx) + pos_emb(arange(T))).
// A lookup is a gather, so its backward is a scatter-add: every position that read row v of wte
// sends its output gradient back to row v. Token ids are checked on the host before upload.

// Launch: grid-stride over rows·cols elements.
extern "C" __global__ void embedding_forward(const int* ids, const float* wte, const float* wpe, float* out,
                                             long long rows, int seq_len, int cols) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    long long r = i / cols;
    int c = (int)(i % cols);
    int t = (int)(r % seq_len);
    out[i] = wte[(long long)ids[r] * cols + c] + wpe[(long long)t * cols + c];
}

// Token-embedding gradient without atomics (deterministic): the host groups the positions by token
// id — unique ids `uniq[u]`, and for each the positions positions[offsets[u] .. offsets[u+1]] in
// ascending order — and block u adds, column by column and in that fixed order,
//   dwte[uniq[u], c] += Σ_{p in positions of u} dout[p, c].
// Launch: grid = number of unique ids, threads stride over columns.
extern "C" __global__ void embedding_backward_tokens(const int* uniq, const int* offsets, const int* positions,
                                                     const float* dout, float* dwte, int cols) {
    int u = blockIdx.x;
    long long row = uniq[u];
    int p0 = offsets[u], p1 = offsets[u + 1];
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float s = 0.0f;
        for (int p = p0; p < p1; p++) s += dout[(long long)positions[p] * cols + c];
        dwte[row * cols + c] += s;
    }
}

// Position-embedding gradient: dwpe[t, c] += Σ_b dout[b, t, c]. One thread per (t, c).
extern "C" __global__ void embedding_backward_positions(const float* dout, float* dwpe, int batch, int seq_len, int cols) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)seq_len * cols) return;
    float s = 0.0f;
    for (int b = 0; b < batch; b++) s += dout[(long long)b * seq_len * cols + i];
    dwpe[i] += s;
}

// A plain row gather (the `embedding` op of the autograd, any table): out[p, :] = w[ids[p], :].
// Its backward is embedding_backward_tokens above (into a zeroed gradient). Launch: one thread per
// output element.
extern "C" __global__ void embedding_gather(const int* ids, const float* w, float* out, long long rows, int cols) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    long long r = i / cols;
    int c = (int)(i % cols);
    out[i] = w[(long long)ids[r] * cols + c];
}
