// selftest.cu — deliberately broken kernels (and one correct one) that show what the emulator
// catches. Compiled into the emulator only (the CUDA build reads kernels/*.cu, not this folder).

// Correct: a block-wide sum through shared memory with the barriers it needs.
extern "C" __global__ void emu_selftest_block_sum(const float* x, float* out) {
    __shared__ float scratch[32];
    float v = block_sum(x[threadIdx.x], scratch);
    if (threadIdx.x == 0) out[0] = v;
}

// Broken: the barrier sits behind an early exit, so half the block never reaches it.
extern "C" __global__ void emu_selftest_divergent_barrier(float* out) {
    if (threadIdx.x % 2 == 1) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

// Broken: thread 0 reads the other threads' shared-memory values without waiting for them.
extern "C" __global__ void emu_selftest_missing_barrier(const float* x, float* out) {
    __shared__ float tile[256];
    tile[threadIdx.x] = x[threadIdx.x];
    // missing: __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.0f;
        for (int i = 0; i < (int)blockDim.x; i++) s += tile[i];
        out[0] = s;
    }
}

// Broken: a warp shuffle that only some lanes of the warp execute.
extern "C" __global__ void emu_selftest_divergent_shuffle(float* out) {
    if (threadIdx.x >= 16) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (float)threadIdx.x, 1);
}

// Broken the other way round: the last thread reads what thread 0 wrote, without a barrier. It
// happens to work when thread 0 runs first (the forward schedule); the reverse schedule shows it.
extern "C" __global__ void emu_selftest_missing_barrier_last_reads_first(const float* x, float* out) {
    __shared__ float tile[256];
    tile[threadIdx.x] = x[threadIdx.x];
    // missing: __syncthreads();
    if (threadIdx.x == blockDim.x - 1) out[0] = tile[0];
}

// Reads shared memory it never wrote in this launch (`write` = 0 after a launch with 1): on a
// GPU the contents are undefined; the emulator poisons shared memory per block, so this reads
// NaN rather than the previous launch's values.
extern "C" __global__ void emu_selftest_stale_shared(const float* x, float* out, int write) {
    __shared__ float tile[32];
    if (write) {
        tile[threadIdx.x] = x[threadIdx.x];
        __syncthreads();
    }
    out[threadIdx.x] = tile[threadIdx.x];
}
