// binary.cu — elementwise a ∘ b with NumPy broadcasting, into a dense output.
//
// The host gives both operands as strided views of the output's shape: a broadcast axis has
// stride 0, so every output element reads "its" a and b without any copy of the smaller operand.
// op: 0 add, 1 sub, 2 mul, 3 div. The backward rules (src/ops/binary/mod.rs) reuse this kernel
// (g ⊙ b, g / b, …) and then sum the result back to each operand's shape.

// Launch: one thread per output element (n of them); shape and strides as in view.cu.
extern "C" __global__ void binary_broadcast(int op, const float* a, long long a_off, const float* b, long long b_off,
                                            float* out, long long n, int rank, long long n0, long long n1, long long n2,
                                            long long n3, long long n4, long long n5, long long a0, long long a1,
                                            long long a2, long long a3, long long a4, long long a5, long long b0,
                                            long long b1, long long b2, long long b3, long long b4, long long b5) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const long long shape[6] = {n0, n1, n2, n3, n4, n5};
    const long long sa[6] = {a0, a1, a2, a3, a4, a5};
    const long long sb[6] = {b0, b1, b2, b3, b4, b5};
    long long oa = 0, ob = 0, rest = i;
    for (int ax = rank - 1; ax >= 0; ax--) {
        long long idx = rest % shape[ax];
        rest /= shape[ax];
        oa += idx * sa[ax];
        ob += idx * sb[ax];
    }
    float x = a[a_off + oa], y = b[b_off + ob];
    float r;
    switch (op) {
        case 0: r = x + y; break;
        case 1: r = x - y; break;
        case 2: r = x * y; break;
        default: r = x / y; break;
    }
    out[i] = r;
}
