// embedding.cu — the embedding lookup (a row gather) and its gradient (a scatter-add).
//
// Forward: out[p, :] = w[ids[p], :]   (the book's tok_emb(in_idx), and pos_emb(arange(T))).
// A lookup is a gather, so its backward is a scatter-add: every position that read row v of w
// sends its output gradient back to row v. Ids are checked on the host before upload.

// out[p, :] = w[ids[p], :]. Launch: one thread per output element.
extern "C" __global__ void embedding_gather(const int* ids, const float* w, float* out, long long rows, int cols) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    long long r = i / cols;
    int c = (int)(i % cols);
    out[i] = w[(long long)ids[r] * cols + c];
}

// The gradient without atomics (deterministic): the host groups the positions by id — unique
// ids `uniq[u]`, and for each the positions positions[offsets[u] .. offsets[u+1]] in ascending
// order — and block u adds, column by column and in that fixed order,
//   dw[uniq[u], c] += Σ_{p in positions of u} dout[p, c].
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
