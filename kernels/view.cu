// view.cu — copies between strided views: what makes a transposed, narrowed or broadcast tensor
// dense for a kernel that reads rows, and what writes a slice into a larger tensor (concat, the
// backward of narrow). Views themselves cost nothing on the device: a tensor is a buffer plus a
// shape, strides and an offset (src/tensor/storage.rs); only this copy touches the data.
//
// Element i (row-major over `shape`) has the multi-index (i₀, …, i_{r−1}); it is read at
// src_off + Σ_a i_a·src_stride_a and written at dst_off + Σ_a i_a·dst_stride_a. Up to 6 axes
// (the host merges or refuses more); shape and strides are passed by value, unused axes as 1/0.

#define VIEW_MAX_RANK 6

__device__ __forceinline__ void view_offsets(long long i, int rank, const long long* shape, const long long* sa,
                                             const long long* sb, long long* oa, long long* ob) {
    long long a = 0, b = 0;
    for (int ax = rank - 1; ax >= 0; ax--) {
        long long idx = i % shape[ax];
        i /= shape[ax];
        a += idx * sa[ax];
        b += idx * sb[ax];
    }
    *oa = a;
    *ob = b;
}

// Launch: one thread per element of `shape` (n of them).
extern "C" __global__ void strided_copy(const float* src, long long src_off, float* dst, long long dst_off, long long n,
                                        int rank, long long n0, long long n1, long long n2, long long n3, long long n4,
                                        long long n5, long long s0, long long s1, long long s2, long long s3, long long s4,
                                        long long s5, long long d0, long long d1, long long d2, long long d3, long long d4,
                                        long long d5) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const long long shape[VIEW_MAX_RANK] = {n0, n1, n2, n3, n4, n5};
    const long long ss[VIEW_MAX_RANK] = {s0, s1, s2, s3, s4, s5};
    const long long ds[VIEW_MAX_RANK] = {d0, d1, d2, d3, d4, d5};
    long long a, b;
    view_offsets(i, rank, shape, ss, ds, &a, &b);
    dst[dst_off + b] = src[src_off + a];
}
