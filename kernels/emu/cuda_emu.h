// cuda_emu.h — run unmodified CUDA kernels on the CPU, for tests on machines without a GPU.
//
// Compile a `.cu` file with g++ after this header (`-include cuda_emu.h`) and its kernels become
// ordinary C++ functions; `emu::launch` then runs a grid the way the hardware would, as far as a
// correct kernel can tell:
//   * one OS thread per block in flight (blocks are independent; several run at once),
//   * one fiber (a ucontext with its own stack) per CUDA thread of the block, switched
//     cooperatively: a thread runs until it reaches __syncthreads(), a warp shuffle or its end,
//   * __syncthreads() releases only when every live thread of the block has arrived — a thread
//     that exits while others wait at a barrier is reported as a divergent barrier (an error on
//     real hardware too, where it hangs or corrupts silently),
//   * warp shuffles are a rendezvous of the warp's lanes: each lane publishes its value, waits for
//     the others, reads its partner's, waits again,
//   * __shared__ variables are `static thread_local`: one copy per OS thread, i.e. per block in
//     flight, shared by that block's fibers — exactly CUDA's scope; the build rewrites every
//     declaration to be followed by EMU_POISON_SHARED, which fills the variable with NaN bits
//     (0xFF bytes) when the first thread of each block reaches it, so a read before any write
//     shows as on fresh hardware, never as the last block's leftovers,
//   * the order in which a block's ready threads run is a schedule: forward, reverse, or one of
//     two seeded shuffles (deterministic); a kernel missing a __syncthreads gives a wrong result
//     under at least one of them,
//   * each launch's argument kinds (pointer, 32/64-bit integer, float) are checked against the
//     kernel's parameter list, so a launcher passing the wrong number or type of arguments is
//     an error naming the argument, not a silent misread,
//   * atomics are real atomics (blocks run in parallel), math intrinsics map to <cmath>.
// Not modelled: memory-model subtleties between warps without barriers, timing, and warp-level
// lockstep (a kernel that relies on implicit warp synchrony without __syncwarp is wrong on Volta+
// anyway). Out-of-bounds accesses are caught by building with -fsanitize=address.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <type_traits>
#include <ucontext.h>
#include <utility>
#include <vector>

// ---- the CUDA vocabulary ---------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local
// Follows every __shared__ declaration (inserted by crates/cuda-emu/build.rs): see poison_shared.
#define EMU_POISON_SHARED(name)                                        \
    static thread_local unsigned long long emu_epoch_##name = 0;      \
    emu::poison_shared((void*)&(name), sizeof(name), emu_epoch_##name)

struct uint3 { unsigned int x, y, z; };
struct alignas(16) float4 { float x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {

enum class State { Ready, AtBarrier, AtWarpSync, Done };

struct Block;

// Switching between fibers. glibc's swapcontext makes a system call on every switch (it saves
// and restores the signal mask). On x86-64 we switch stacks ourselves: push the six
// callee-saved registers, swap stack pointers, pop them (15 instructions) — the System V ABI
// says nothing else survives a call. Elsewhere, and under AddressSanitizer (which must be told
// about stack switches), ucontext is used. (Measured on the GPT-step tests: this alone changed
// little, 49 s → 47 s; reusing fiber stacks, StackCache below, took them to 1.6 s.)
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define EMU_FAST_SWITCH 1
extern "C" void emu_switch_stack(void** save_sp, void* load_sp);
// Defined once, in the translation unit that defines EMU_DEFINE_RUNTIME (the generated registry).
#ifdef EMU_DEFINE_RUNTIME
asm(R"(
.text
.globl emu_switch_stack
.type emu_switch_stack,@function
emu_switch_stack:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size emu_switch_stack, .-emu_switch_stack
.section .note.GNU-stack,"",@progbits
.text
)");
#endif
struct Context {
    void* sp = nullptr;
};
#else
#define EMU_FAST_SWITCH 0
struct Context {
    ucontext_t uc;
};
#endif

struct Fiber {
    Context ctx;
    uint3 tid;
    unsigned linear;  // threadIdx.x + blockDim.x·(threadIdx.y + blockDim.y·threadIdx.z)
    State state;
};

// Everything one OS thread needs to run one block at a time.
struct Block {
    uint3 block_idx;
    dim3 block_dim, grid_dim;
    std::vector<Fiber> fibers;
    char* stacks = nullptr;  // n fibers × kStackBytes, from the stack cache
    size_t stacks_bytes = 0;
    std::vector<uint64_t> warp_slots;  // one per thread: the value it offers to a shuffle
    Context scheduler;
    Fiber* current = nullptr;
    void (*body)(void*) = nullptr;
    void* body_arg = nullptr;
    std::string error;
    unsigned schedule = 0;          // 0 forward, 1 reverse, 2 and 3 seeded shuffles
    unsigned long long epoch = 0;   // unique per block run: when shared memory is re-poisoned
    std::vector<unsigned> order;    // the schedule's order of the block's threads
};

// Block runs get distinct epochs, process-wide, so a shared variable's per-OS-thread epoch tells
// whether it was already poisoned for the block now running.
inline std::atomic<unsigned long long>& epoch_counter() {
    static std::atomic<unsigned long long> c{1};
    return c;
}

inline thread_local Block* tl_block = nullptr;
constexpr size_t kStackBytes = 128 * 1024;

// Save the current context into `from` and resume `to`.
inline void switch_context(Context& from, Context& to) {
#if EMU_FAST_SWITCH
    emu_switch_stack(&from.sp, to.sp);
#else
    swapcontext(&from.uc, &to.uc);
#endif
}

// Fiber stacks are big (128 KiB each, 1024 fibers for a full block) and allocating and touching
// fresh ones on every launch cost more than the kernels. Finished launches return their stacks
// here and later launches reuse them (never zero-filled; a stack needs no initial contents).
struct StackCache {
    std::mutex lock;
    std::vector<std::pair<char*, size_t>> free;

    std::pair<char*, size_t> acquire(size_t bytes) {
        std::lock_guard<std::mutex> g(lock);
        for (size_t i = 0; i < free.size(); i++) {
            if (free[i].second >= bytes) {
                auto s = free[i];
                free.erase(free.begin() + (long)i);
                return s;
            }
        }
        return {static_cast<char*>(std::malloc(bytes)), bytes};
    }

    void release(std::pair<char*, size_t> s) {
        if (!s.first) return;
        std::lock_guard<std::mutex> g(lock);
        free.push_back(s);
    }
};

inline StackCache& stack_cache() {
    static StackCache cache;
    return cache;
}

inline Block& block() { return *tl_block; }

// The first thread of a block to reach a __shared__ declaration fills the variable with 0xFF
// bytes (NaN as a float, −1 as an int); `seen` is that variable's epoch on this OS thread.
inline void poison_shared(void* p, size_t bytes, unsigned long long& seen) {
    if (seen != block().epoch) {
        std::memset(p, 0xFF, bytes);
        seen = block().epoch;
    }
}
inline Fiber& fiber() { return *tl_block->current; }

// Give control back to the scheduler (the fiber's state says why).
inline void yield(State why) {
    Block& b = block();
    Fiber& f = fiber();
    f.state = why;
    switch_context(f.ctx, b.scheduler);
}

inline void syncthreads() { yield(State::AtBarrier); }
inline void syncwarp() { yield(State::AtWarpSync); }

// Lane `src_lane` of the caller's warp's value (or the caller's own if that lane does not exist).
template <class T>
inline T shuffle_from(T value, int src_lane) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    Block& b = block();
    Fiber& f = fiber();
    uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    b.warp_slots[f.linear] = bits;
    syncwarp();  // every lane has published
    unsigned warp_base = f.linear / 32 * 32;
    unsigned src = warp_base + (unsigned)src_lane;
    T out = value;
    if (src_lane >= 0 && src_lane < 32 && src < b.fibers.size()) std::memcpy(&out, &b.warp_slots[src], sizeof(T));
    syncwarp();  // every lane has read before anyone publishes again
    return out;
}

inline unsigned lane_id() { return fiber().linear % 32; }

// The fiber body: run the kernel for this thread, then report Done and never return.
inline void fiber_body() {
    Block* b = tl_block;
    b->body(b->body_arg);
    b->current->state = State::Done;
    switch_context(b->current->ctx, b->scheduler);
    std::abort();  // a finished fiber is never resumed
}

#if EMU_FAST_SWITCH
// First entry of a fresh fiber: emu_switch_stack "returns" here. Realign the stack as a call
// would have (rsp ≡ 8 mod 16 at function entry) and run the body.
extern "C" inline void emu_fiber_start() { fiber_body(); }

inline void init_fiber(Fiber& f, char* stack, size_t bytes) {
    uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + bytes) & ~uintptr_t(15);
    void** sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;                                   // fake return address of emu_fiber_start
    *--sp = reinterpret_cast<void*>(&emu_fiber_start); // where the first switch's `ret` goes
    for (int i = 0; i < 6; i++) *--sp = nullptr;       // rbp rbx r12 r13 r14 r15, popped first
    f.ctx.sp = sp;
}
#else
inline void fiber_entry() { fiber_body(); }

inline void init_fiber(Fiber& f, char* stack, size_t bytes) {
    getcontext(&f.ctx.uc);
    f.ctx.uc.uc_stack.ss_sp = stack;
    f.ctx.uc.uc_stack.ss_size = bytes;
    f.ctx.uc.uc_link = nullptr;
    makecontext(&f.ctx.uc, fiber_entry, 0);
}
#endif

// Run one block to completion on the calling OS thread. Returns false with b.error set when the
// kernel's synchronisation is broken (a divergent barrier or an unmatched warp shuffle).
inline bool run_block(Block& b) {
    const unsigned n = b.block_dim.x * b.block_dim.y * b.block_dim.z;
    b.fibers.resize(n);
    if (b.stacks_bytes < n * kStackBytes) {
        stack_cache().release({b.stacks, b.stacks_bytes});
        auto s = stack_cache().acquire(n * kStackBytes);
        b.stacks = s.first;
        b.stacks_bytes = s.second;
    }
    b.warp_slots.assign(n, 0);
    b.epoch = epoch_counter().fetch_add(1);
    b.order.resize(n);
    for (unsigned t = 0; t < n; t++) b.order[t] = b.schedule == 1 ? n - 1 - t : t;
    if (b.schedule >= 2) {
        // Fisher–Yates with SplitMix64, seeded by the schedule and the block's index.
        unsigned long long s = 0x9e3779b97f4a7c15ull * b.schedule ^
                               ((unsigned long long)b.block_idx.x << 32 | b.block_idx.y << 16 | b.block_idx.z);
        for (unsigned t = n; t > 1; t--) {
            s += 0x9e3779b97f4a7c15ull;
            unsigned long long z = s;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            z ^= z >> 31;
            std::swap(b.order[t - 1], b.order[z % t]);
        }
    }
    tl_block = &b;
    for (unsigned t = 0; t < n; t++) {
        Fiber& f = b.fibers[t];
        f.linear = t;
        f.tid = uint3{t % b.block_dim.x, (t / b.block_dim.x) % b.block_dim.y, t / (b.block_dim.x * b.block_dim.y)};
        f.state = State::Ready;
        init_fiber(f, b.stacks + (size_t)t * kStackBytes, kStackBytes);
    }
    for (;;) {
        // Run every ready fiber, in the schedule's order, until it blocks or ends.
        for (unsigned t : b.order) {
            Fiber& f = b.fibers[t];
            if (f.state != State::Ready) continue;
            b.current = &f;
            switch_context(b.scheduler, f.ctx);
        }
        unsigned done = 0, at_barrier = 0, at_warp = 0;
        for (auto& f : b.fibers) {
            done += f.state == State::Done;
            at_barrier += f.state == State::AtBarrier;
            at_warp += f.state == State::AtWarpSync;
        }
        if (done == n) return true;
        bool progressed = false;
        // Warp rendezvous: release a warp whose live lanes all wait at a warp sync.
        for (unsigned w0 = 0; w0 < n; w0 += 32) {
            unsigned w1 = std::min(n, w0 + 32), waiting = 0, live = 0;
            for (unsigned t = w0; t < w1; t++) {
                if (b.fibers[t].state != State::Done) live++;
                if (b.fibers[t].state == State::AtWarpSync) waiting++;
            }
            if (waiting > 0 && waiting == live) {
                if (live != w1 - w0) {
                    b.error = "warp shuffle/__syncwarp reached by " + std::to_string(live) + " of " +
                              std::to_string(w1 - w0) + " lanes of warp " + std::to_string(w0 / 32) +
                              " (the others had exited)";
                    return false;
                }
                for (unsigned t = w0; t < w1; t++) b.fibers[t].state = State::Ready;
                progressed = true;
            }
        }
        if (progressed) continue;
        // Block barrier: every live thread must be there, and none may have exited.
        if (at_barrier > 0 && at_barrier + done == n) {
            if (done > 0) {
                b.error = "__syncthreads reached by " + std::to_string(at_barrier) + " of " + std::to_string(n) +
                          " threads; " + std::to_string(done) + " had already exited (divergent barrier)";
                return false;
            }
            for (auto& f : b.fibers) f.state = State::Ready;
            continue;
        }
        b.error = "deadlock: " + std::to_string(at_barrier) + " threads at __syncthreads, " + std::to_string(at_warp) +
                  " at a warp sync, " + std::to_string(done) + " exited (mixed barrier kinds)";
        return false;
    }
}

}  // namespace emu

// ---- built-in variables and intrinsics --------------------------------------------------------
#define threadIdx (emu::fiber().tid)
#define blockIdx (emu::block().block_idx)
#define blockDim (emu::block().block_dim)
#define gridDim (emu::block().grid_dim)

inline void __syncthreads() { emu::syncthreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::syncwarp(); }

template <class T> inline T __shfl_sync(unsigned, T v, int src) { return emu::shuffle_from(v, src); }
template <class T> inline T __shfl_xor_sync(unsigned, T v, int mask) { return emu::shuffle_from(v, (int)(emu::lane_id() ^ (unsigned)mask)); }
template <class T> inline T __shfl_down_sync(unsigned, T v, unsigned delta) {
    unsigned src = emu::lane_id() + delta;
    return emu::shuffle_from(v, src < 32 ? (int)src : (int)emu::lane_id());
}
template <class T> inline T __shfl_up_sync(unsigned, T v, unsigned delta) {
    int src = (int)emu::lane_id() - (int)delta;
    return emu::shuffle_from(v, src >= 0 ? src : (int)emu::lane_id());
}

inline float atomicAdd(float* addr, float v) {
    uint32_t* p = reinterpret_cast<uint32_t*>(addr);
    uint32_t old = __atomic_load_n(p, __ATOMIC_RELAXED), desired;
    do {
        float f;
        std::memcpy(&f, &old, 4);
        f += v;
        std::memcpy(&desired, &f, 4);
    } while (!__atomic_compare_exchange_n(p, &old, desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    float r;
    std::memcpy(&r, &old, 4);
    return r;
}
inline int atomicAdd(int* addr, int v) { return __atomic_fetch_add(addr, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* addr, unsigned v) { return __atomic_fetch_add(addr, v, __ATOMIC_RELAXED); }
inline int atomicMax(int* addr, int v) {
    int old = __atomic_load_n(addr, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(addr, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    return old;
}

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __ldg(const float* p) { return *p; }
// expf, logf, tanhf, sqrtf, fmaxf, fmaf, … come from <math.h> (through <cmath>) as in CUDA.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }

// ---- launching --------------------------------------------------------------------------------
namespace emu {

// A kernel as the launcher sees it: a trampoline that unpacks cuLaunchKernel-style `void** args`
// (one pointer to each argument's value, in order) into the kernel's typed parameters.
using Trampoline = void (*)(void* kernel, void** args);

template <class... A, size_t... I>
inline void call_unpacked(void (*k)(A...), void** args, std::index_sequence<I...>) {
    k(*reinterpret_cast<std::remove_reference_t<A>*>(args[I])...);
}
template <class... A>
inline void trampoline_for(void* kernel, void** args) {
    call_unpacked(reinterpret_cast<void (*)(A...)>(kernel), args, std::index_sequence_for<A...>{});
}
template <class... A>
inline Trampoline trampoline_of(void (*)(A...)) { return &trampoline_for<A...>; }

// A parameter's kind as the launch checks it: 'p' pointer, 'i' 32-bit integer, 'l' 64-bit
// integer, 'f' float, 'd' double, '?' anything else.
template <class T> constexpr char kind_of() {
    using U = std::remove_cv_t<std::remove_reference_t<T>>;
    if constexpr (std::is_pointer_v<U>) return 'p';
    else if constexpr (std::is_floating_point_v<U>) return sizeof(U) == 4 ? 'f' : 'd';
    else if constexpr (std::is_integral_v<U>) return sizeof(U) == 8 ? 'l' : sizeof(U) == 4 ? 'i' : '?';
    else return '?';
}
template <class... A>
inline const char* kinds_of(void (*)(A...)) {
    static const char s[] = {kind_of<A>()..., 0};
    return s;
}

inline const char* kind_name(char k) {
    switch (k) {
        case 'p': return "a pointer";
        case 'i': return "a 32-bit integer";
        case 'l': return "a 64-bit integer";
        case 'f': return "a float";
        case 'd': return "a double";
        default: return "an unsupported type";
    }
}

// An error naming the first argument whose kind differs from the kernel's parameter, or the
// counts; empty when they agree.
inline std::string check_args(const char* kernel, const char* want, const char* got) {
    size_t nw = std::strlen(want), ng = std::strlen(got);
    if (nw != ng)
        return std::string(kernel) + " takes " + std::to_string(nw) + " arguments, the launch passed " +
               std::to_string(ng);
    for (size_t i = 0; i < nw; i++)
        if (want[i] != got[i])
            return std::string(kernel) + ": argument " + std::to_string(i + 1) + " is " + kind_name(want[i]) +
                   " in the kernel, " + kind_name(got[i]) + " at the launch";
    return {};
}

struct KernelEntry {
    const char* name;
    void* kernel;
    Trampoline trampoline;
    const char* kinds;
};

struct LaunchCall {
    void* kernel;
    Trampoline trampoline;
    void** args;
};

inline void launch_body(void* p) {
    auto* c = static_cast<LaunchCall*>(p);
    c->trampoline(c->kernel, c->args);
}

// Run the grid: blocks are handed to `workers` OS threads through an atomic counter. Returns an
// empty string on success, else the first block's error.
inline std::string launch(const KernelEntry& k, dim3 grid, dim3 block_dim, void** args, const char* arg_kinds,
                          unsigned workers, unsigned schedule) {
    std::string bad = check_args(k.name, k.kinds, arg_kinds);
    if (!bad.empty()) return bad;
    if (schedule > 3) return "schedule " + std::to_string(schedule) + " (must be 0..=3)";
    const unsigned long long n_blocks = (unsigned long long)grid.x * grid.y * grid.z;
    if (block_dim.x * block_dim.y * block_dim.z == 0 || block_dim.x * block_dim.y * block_dim.z > 1024)
        return "block of " + std::to_string(block_dim.x * block_dim.y * block_dim.z) + " threads (must be 1..=1024)";
    std::atomic<unsigned long long> next{0};
    std::atomic<bool> failed{false};
    std::string first_error;
    std::atomic_flag error_lock = ATOMIC_FLAG_INIT;
    LaunchCall call{k.kernel, k.trampoline, args};
    auto worker = [&]() {
        Block b;
        b.block_dim = block_dim;
        b.grid_dim = grid;
        b.body = launch_body;
        b.body_arg = &call;
        b.schedule = schedule;
        for (;;) {
            unsigned long long i = next.fetch_add(1);
            if (i >= n_blocks || failed.load()) break;
            b.block_idx = uint3{(unsigned)(i % grid.x), (unsigned)((i / grid.x) % grid.y), (unsigned)(i / ((unsigned long long)grid.x * grid.y))};
            if (!run_block(b)) {
                while (error_lock.test_and_set()) {}
                if (!failed.exchange(true))
                    first_error = std::string(k.name) + " block (" + std::to_string(b.block_idx.x) + "," +
                                  std::to_string(b.block_idx.y) + "," + std::to_string(b.block_idx.z) + "): " + b.error;
                error_lock.clear();
                break;
            }
        }
        stack_cache().release({b.stacks, b.stacks_bytes});
        tl_block = nullptr;
    };
    unsigned n_threads = (unsigned)std::min<unsigned long long>(std::max(1u, workers), n_blocks);
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < n_threads; t++) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
    return first_error;
}

}  // namespace emu
