// common.cuh — helpers shared by every kernel file.
//
// This header is prepended to each `kernels/*.cu` before NVRTC compiles it (NVRTC has no
// <math.h> and no include path here), and included by the CPU emulator (kernels/emu/cuda_emu.h)
// so the very same source also runs under g++. Keep it valid CUDA C++ *and* plain C++ with the
// emulator's definitions.
#pragma once

#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

// Threads per warp. Every reduction below assumes it.
#define WARP_SIZE 32

// Sum of `v` over the 32 lanes of a warp (butterfly: after log2(32) xor-shuffles every lane holds
// the total). All 32 lanes must call it.
__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// Maximum of `v` over the 32 lanes of a warp.
__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024). Every thread of the block
// must call it; every thread gets the total. `scratch` is 32 floats of shared memory, and the two
// barriers make the function safe to call twice in a row with the same scratch.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    const int n_warps = blockDim.x / WARP_SIZE;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = lane < n_warps ? scratch[lane] : 0.0f;
    total = warp_sum(total);
    __syncthreads();
    return total;
}

// Maximum over the whole block; same contract as block_sum.
__device__ __forceinline__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    const int n_warps = blockDim.x / WARP_SIZE;
    v = warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float m = lane < n_warps ? scratch[lane] : -INFINITY;
    m = warp_max(m);
    __syncthreads();
    return m;
}

// Online log-sum-exp over a strided slice of the row: keeps a running max m and Σ exp(x − m),
// rescaling the sum whenever the max grows, so the row is read once for lse. Masked entries
// (−∞, as causal scores are) contribute exp(−∞) = 0 and are skipped: before any finite value,
// exp(−∞ − (−∞)) would be NaN. Every thread of the block must call it.
__device__ __forceinline__ float row_logsumexp(const float* row, int cols, float* scratch) {
    float m = -INFINITY, s = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float v = row[j];
        if (v == -INFINITY) continue;
        if (v > m) { s *= expf(m - v); m = v; }
        s += expf(v - m);
    }
    float block_m = block_max(m, scratch);
    s = (m == -INFINITY) ? 0.0f : s * expf(m - block_m);
    s = block_sum(s, scratch);
    return block_m + logf(s);
}

// SplitMix64's output function, the mixer of src/tensor/rng.rs (mix64): bit for bit the same, so a
// GPU draws exactly the CPU's dropout masks.
__device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// A counter-based uniform draw u(seed, index) in [0, 1) with 24 random bits: hash_uniform of
// src/tensor/rng.rs. Dropout needs no stored mask — the backward regenerates exactly the forward's
// mask from the same seed and element index, on either device.
__device__ __forceinline__ float hash_uniform(unsigned long long seed, unsigned long long index) {
    unsigned long long z = mix64(mix64(seed ^ 0x9e3779b97f4a7c15ull) + index * 0x9e3779b97f4a7c15ull);
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

// Dropout's keep decision for element `index`: uniform u in [0, 1) from the top 24 bits, kept when
// u >= p, so each element is dropped with probability p.
__device__ __forceinline__ bool dropout_keep(unsigned long long seed, unsigned long long index, float p) {
    return hash_uniform(seed, index) >= p;
}
