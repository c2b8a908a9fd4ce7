// A CPU stand-in for the CUDA execution model, for testing kernels/*.cu on machines without a GPU.
//
// kernel_emulator.py compiles a .cu file with g++ after this header: every CUDA thread of a block becomes a
// cooperative fiber (ucontext), blocks run one after another. __syncthreads releases a block when all of
// its live threads arrive; warp shuffles and votes release a warp when all 32 lanes arrive, and exchange
// values through per-warp slots. Scheduling is deterministic, in a different thread order after every
// barrier (so a read of shared data that a barrier does not order after its write tends to see stale
// data). What it checks beyond the values: a barrier or warp collective that can never complete (deadlock:
// a lane exited, or threads wait at different barriers) is reported as an error instead of hanging. What
// it cannot see: races between two threads inside one barrier interval (a thread runs to its next barrier
// or collective without interruption), memory-model effects, speed.
//
// Static __shared__ variables become function statics: one instance, reused block after block, which is
// the CUDA contract (no values carried between blocks). Dynamic shared memory (extern __shared__) is
// rewritten by kernel_emulator.py into a pointer to emu::dynamic_shared().
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>
#include <csignal>
#include <ucontext.h>

// The CUDA headers a kernel may include, first, so that the redefinitions below do not reach them.
#include <vector_types.h>
#include <vector_functions.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __noinline__
#undef __restrict__
#undef __launch_bounds__
#undef __shared__
#undef __align__
#undef __constant__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)
#define __constant__ static

namespace emu {

enum State { READY, AT_BARRIER, AT_WARP, DONE };

struct Fiber {
    ucontext_t ctx;
    uint3 tid;
    int linear;  // threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)
    State state;
    unsigned warp_gen;
};

struct Warp {
    unsigned long long slots[2][32];
};

struct Launch {
    uint3 grid, block, block_idx;
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    std::vector<char*> stacks;
    std::vector<unsigned char> dynamic_shared;
    std::function<void()> body;
    ucontext_t scheduler;
    Fiber* current = nullptr;
    std::string error;
};

inline Launch*& launch_state() {
    static Launch* l = nullptr;
    return l;
}
inline Fiber* current() { return launch_state()->current; }

inline void fail(const std::string& msg) {
    Launch* l = launch_state();
    if (l->error.empty()) l->error = msg;
}

inline void yield(State s) {
    Launch* l = launch_state();
    Fiber* f = l->current;
    f->state = s;
    swapcontext(&f->ctx, &l->scheduler);
}

inline void fiber_entry() {
    Launch* l = launch_state();
    l->body();
    l->current->state = DONE;
    // returns to uc_link (the scheduler)
}

inline std::string where() {
    Launch* l = launch_state();
    char buf[160];
    snprintf(buf, sizeof buf, "block (%u, %u, %u)", l->block_idx.x, l->block_idx.y, l->block_idx.z);
    return buf;
}

// Run one block to completion. Returns false on a deadlock (error set).
inline bool run_block(Launch* l) {
    const int n = (int)l->fibers.size();
    for (int i = 0; i < n; ++i) {
        Fiber& f = l->fibers[i];
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = l->stacks[i];
        f.ctx.uc_stack.ss_size = 256 * 1024;
        f.ctx.uc_link = &l->scheduler;
        f.state = READY;
        f.warp_gen = 0;
        makecontext(&f.ctx, fiber_entry, 0);
    }
    const int nwarps = (n + 31) / 32;
    for (unsigned round = 0;; ++round) {
        // NOTE: each round runs the ready threads in another order (forward, backward, rotated), so code that
        // reads shared data before a barrier makes it visible is likely to read it too early here as well
        const int start = (int)((round * 7919u + l->block_idx.x * 31u) % (unsigned)n);
        const bool backward = round & 1;
        for (int k = 0; k < n; ++k) {
            const int i = backward ? (start + n - k) % n : (start + k) % n;
            Fiber& f = l->fibers[i];
            if (f.state != READY) continue;
            l->current = &f;
            swapcontext(&l->scheduler, &f.ctx);
            if (!l->error.empty()) return false;
        }
        int done = 0, at_barrier = 0;
        for (int i = 0; i < n; ++i) {
            done += l->fibers[i].state == DONE;
            at_barrier += l->fibers[i].state == AT_BARRIER;
        }
        if (done == n) return true;
        bool released = false;
        for (int w = 0; w < nwarps; ++w) {
            const int lo = w * 32, hi = std::min(n, lo + 32);
            int waiting = 0, exited = 0;
            for (int i = lo; i < hi; ++i) {
                waiting += l->fibers[i].state == AT_WARP;
                exited += l->fibers[i].state == DONE;
            }
            if (waiting == 0) continue;
            if (waiting == hi - lo) {
                for (int i = lo; i < hi; ++i) l->fibers[i].state = READY;
                released = true;
            } else if (waiting + exited == hi - lo) {
                fail(where() + ": warp " + std::to_string(w) + ": a full-warp shuffle/vote with " +
                     std::to_string(exited) + " lane(s) already exited");
                return false;
            }
        }
        if (!released && at_barrier > 0 && at_barrier + done == n) {
            for (int i = 0; i < n; ++i)
                if (l->fibers[i].state == AT_BARRIER) l->fibers[i].state = READY;
            released = true;
        }
        if (!released) {
            fail(where() + ": deadlock: " + std::to_string(at_barrier) + " thread(s) at __syncthreads, " +
                 std::to_string(n - done - at_barrier) + " at warp collectives, " + std::to_string(done) +
                 " exited");
            return false;
        }
    }
}

inline unsigned char* dynamic_shared() { return launch_state()->dynamic_shared.data(); }

// A fault inside a kernel (a misaligned vector access, a wild address, an integer division by zero) ends the
// launch with an error instead of the process: the handler records it and resumes the scheduler, as if the
// thread had yielded.
inline void on_fault(int sig) {
    Launch* l = launch_state();
    const char* what = sig == SIGSEGV ? "segmentation fault (a wild or misaligned address)"
                       : sig == SIGBUS ? "bus error (a misaligned address)"
                       : sig == SIGFPE ? "arithmetic fault (integer division by zero)"
                                       : "illegal instruction";
    Fiber* f = l->current;
    char buf[96];
    snprintf(buf, sizeof buf, ", thread (%u, %u, %u): ", f->tid.x, f->tid.y, f->tid.z);
    fail(where() + buf + what);
    f->state = DONE;
    setcontext(&l->scheduler);
}

struct FaultGuard {
    struct sigaction saved[4];
    static constexpr int kSignals[4] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    FaultGuard() {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fault;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_NODEFER;
        for (int i = 0; i < 4; ++i) sigaction(kSignals[i], &sa, &saved[i]);
    }
    ~FaultGuard() {
        for (int i = 0; i < 4; ++i) sigaction(kSignals[i], &saved[i], nullptr);
    }
};

template <typename... P, size_t... I>
void call_with(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<P>>*>(args[I])...);
}

template <typename... P>
int launch(void (*kernel)(P...), uint3 grid, uint3 block, size_t shared_bytes, void** args, char* err,
           size_t err_len) {
    Launch l;
    l.grid = grid;
    l.block = block;
    const int n = (int)(block.x * block.y * block.z);
    l.fibers.resize(n);
    l.warps.resize((n + 31) / 32);
    l.stacks.resize(n);
    for (int i = 0; i < n; ++i) l.stacks[i] = static_cast<char*>(malloc(256 * 1024));
    l.dynamic_shared.assign(shared_bytes + 16, 0xCD);  // NOTE: filled with junk: kernels must not read unset smem
    for (int z = 0, i = 0; z < (int)block.z; ++z)
        for (int y = 0; y < (int)block.y; ++y)
            for (int x = 0; x < (int)block.x; ++x, ++i) {
                l.fibers[i].tid = make_uint3(x, y, z);
                l.fibers[i].linear = i;
            }
    l.body = [&]() { call_with(kernel, args, std::index_sequence_for<P...>{}); };
    Launch* saved = launch_state();
    launch_state() = &l;
    FaultGuard guard;
    bool ok = true;
    for (unsigned bz = 0; ok && bz < grid.z; ++bz)
        for (unsigned by = 0; ok && by < grid.y; ++by)
            for (unsigned bx = 0; ok && bx < grid.x; ++bx) {
                l.block_idx = make_uint3(bx, by, bz);
                ok = run_block(&l);
            }
    launch_state() = saved;
    for (char* s : l.stacks) free(s);
    if (!ok) {
        snprintf(err, err_len, "%s", l.error.c_str());
        return 1;
    }
    return 0;
}

// ---- warp collectives: write this lane's value, wait for the warp, read the source lane's value
template <typename V>
V shuffle_from(V v, int src_of_lane(int lane, int arg, int width), int arg, int width) {
    static_assert(sizeof(V) <= 8, "emulated shuffles move at most 8 bytes");
    Launch* l = launch_state();
    Fiber* f = l->current;
    Warp& w = l->warps[f->linear / 32];
    const int lane = f->linear % 32;
    const unsigned g = f->warp_gen & 1;
    unsigned long long bits = 0;
    memcpy(&bits, &v, sizeof(V));
    w.slots[g][lane] = bits;
    yield(AT_WARP);
    f->warp_gen++;
    int src = src_of_lane(lane, arg, width);
    V out;
    memcpy(&out, &w.slots[g][src], sizeof(V));
    return out;
}
inline int src_xor(int lane, int m, int width) {
    int s = lane ^ m;
    return ((s / width) == (lane / width)) ? s : lane;
}
inline int src_down(int lane, int d, int width) {
    int s = lane + d;
    return ((s / width) == (lane / width) && s < 32) ? s : lane;
}
inline int src_up(int lane, int d, int width) {
    int s = lane - d;
    return (s >= 0 && (s / width) == (lane / width)) ? s : lane;
}
inline int src_idx(int lane, int s, int width) { return (lane / width) * width + (s % width); }

inline void check_mask(unsigned mask, const char* op) {
    if (mask != 0xffffffffu) fail(where() + ": " + op + " with mask != 0xffffffff is not emulated");
    Launch* l = launch_state();
    const int base = (l->current->linear / 32) * 32;
    const int lanes = std::min(32, (int)l->fibers.size() - base);
    if (lanes < 32)
        fail(where() + ": " + op + " with a full mask in a warp of " + std::to_string(lanes) +
             " threads (the block size is not a multiple of 32)");
}

inline unsigned vote(unsigned mask, int pred) {
    check_mask(mask, "a vote");
    Launch* l = launch_state();
    Fiber* f = l->current;
    Warp& w = l->warps[f->linear / 32];
    const int lane = f->linear % 32;
    const unsigned g = f->warp_gen & 1;
    w.slots[g][lane] = pred ? 1 : 0;
    yield(AT_WARP);
    f->warp_gen++;
    const int base = (f->linear / 32) * 32;
    const int n = std::min(32, (int)l->fibers.size() - base);
    unsigned bits = 0;
    for (int i = 0; i < n; ++i) bits |= (w.slots[g][i] ? 1u : 0u) << i;
    return bits;
}

}  // namespace emu

#define threadIdx (::emu::current()->tid)
#define blockIdx (::emu::launch_state()->block_idx)
#define blockDim (::emu::launch_state()->block)
#define gridDim (::emu::launch_state()->grid)
static const int warpSize = 32;

inline void __syncthreads() { emu::yield(emu::AT_BARRIER); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::vote(mask, 0); }
inline void __threadfence() {}
inline void __threadfence_block() {}

template <typename V> V __shfl_xor_sync(unsigned mask, V v, int m, int width = 32) {
    emu::check_mask(mask, "__shfl_xor_sync");
    return emu::shuffle_from(v, emu::src_xor, m, width);
}
template <typename V> V __shfl_down_sync(unsigned mask, V v, unsigned d, int width = 32) {
    emu::check_mask(mask, "__shfl_down_sync");
    return emu::shuffle_from(v, emu::src_down, (int)d, width);
}
template <typename V> V __shfl_up_sync(unsigned mask, V v, unsigned d, int width = 32) {
    emu::check_mask(mask, "__shfl_up_sync");
    return emu::shuffle_from(v, emu::src_up, (int)d, width);
}
template <typename V> V __shfl_sync(unsigned mask, V v, int src, int width = 32) {
    emu::check_mask(mask, "__shfl_sync");
    return emu::shuffle_from(v, emu::src_idx, src, width);
}
inline unsigned __ballot_sync(unsigned mask, int pred) { return emu::vote(mask, pred); }
inline int __any_sync(unsigned mask, int pred) { return emu::vote(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return emu::vote(mask, pred) == mask; }

// ---- atomics: fibers never interleave inside a call, so plain read-modify-write is atomic here
template <typename V> V atomicAdd(V* p, V v) { V old = *p; *p = old + v; return old; }
template <typename V> V atomicMax(V* p, V v) { V old = *p; *p = std::max(old, v); return old; }
template <typename V> V atomicMin(V* p, V v) { V old = *p; *p = std::min(old, v); return old; }
template <typename V> V atomicExch(V* p, V v) { V old = *p; *p = v; return old; }
template <typename V> V atomicCAS(V* p, V cmp, V v) { V old = *p; if (old == cmp) *p = v; return old; }

// ---- bit casts and integer intrinsics
inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
inline float __uint_as_float(unsigned v) { float f; memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float f) { int v; memcpy(&v, &f, 4); return v; }
inline unsigned __float_as_uint(float f) { unsigned v; memcpy(&v, &f, 4); return v; }
inline double __longlong_as_double(long long v) { double d; memcpy(&d, &v, 8); return d; }
inline long long __double_as_longlong(double d) { long long v; memcpy(&v, &d, 8); return v; }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz((unsigned)v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
template <typename V> V __ldg(const V* p) { return *p; }
using std::max;
using std::min;

// ---- math: CUDA's single-precision functions and intrinsics, on the host libm
inline float rsqrtf(float v) { return 1.0f / sqrtf(v); }
inline double rsqrt(double v) { return 1.0 / sqrt(v); }
inline float __expf(float v) { return expf(v); }
inline float __logf(float v) { return logf(v); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float v) { return 1.0f / v; }
inline double __drcp_rn(double v) { return 1.0 / v; }
inline float __saturatef(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }
inline void sincospif(float x, float* s, float* c) {
    const double a = (double)x * M_PI;
    *s = (float)sin(a);
    *c = (float)cos(a);
}
inline void sincospi(double x, double* s, double* c) {
    *s = sin(x * M_PI);
    *c = cos(x * M_PI);
}
inline float sinpif(float x) { return (float)sin((double)x * M_PI); }
inline float cospif(float x) { return (float)cos((double)x * M_PI); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
