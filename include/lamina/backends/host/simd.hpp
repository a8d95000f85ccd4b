// lamina host backend: the SIMD and threading helpers shared by every host kernel.
//
// Kernels use xsimd's default architecture (whatever the translation unit is compiled for:
// SSE2 on a plain x86-64 build, AVX2/FMA with -march=native, AVX-512 with -mavx512f), so the
// same source serves every target without runtime dispatch.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

// GCC 12's AVX-512 intrinsics (_mm512_undefined_*, used by xsimd's exp/round/ldexp) trip
// -Wuninitialized/-Wmaybe-uninitialized false positives (GCC PR 105593, fixed in GCC 13);
// the diagnostics are attributed to where xsimd's functions are defined, i.e. here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <xsimd/xsimd.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "../../core/config.hpp"
#include "../../core/thread_pool.hpp"

namespace lamina::host_detail {

template <class T>
using vec = xsimd::batch<T>;

template <class T>
inline constexpr std::size_t vec_size = vec<T>::size;

template <class T>
inline vec<T> load(const T* p) {
    return vec<T>::load_unaligned(p);
}
template <class T>
inline void store(T* p, const vec<T>& v) {
    v.store_unaligned(p);
}

/// Horizontal sum. Not xsimd::hadd: xsimd 8.1's float hadd for plain avx512f uses an
/// AVX512DQ instruction and fails to compile with -mavx512f alone. Pairwise, fixed order.
template <class T>
inline T hsum(const vec<T>& v) {
    constexpr std::size_t W = vec<T>::size;
    alignas(64) T t[W];
    v.store_aligned(t);
    for (std::size_t half = W / 2; half > 0; half /= 2)
        for (std::size_t i = 0; i < half; ++i) t[i] += t[i + half];
    return t[0];
}

// Work below these sizes stays on the calling thread: a pool handoff costs microseconds,
// which is more than a streaming kernel needs for tens of thousands of elements.
inline constexpr std::size_t elementwise_grain = 32768;  // elements per thread, cheap ops
inline constexpr std::size_t transcendental_grain = 4096;  // elements per thread, exp/erf/...

/// Runs f(lo, hi) over [0, n), on the pool when each thread gets at least `grain` items.
/// Chunking depends only on n and the thread count, so results are deterministic.
template <class F>
inline void parallel_range(thread_pool& pool, std::size_t n, std::size_t grain, F&& f) {
    if (n == 0) return;
    if (pool.size() == 1 || n < 2 * grain) {
        f(std::size_t(0), n);
        return;
    }
    pool.parallel_for(n, f, grain);
}

/// Grow-only, 64-byte aligned scratch owned by the calling OS thread. Thread-local rather
/// than per-pool-index because a busy pool runs a second caller inline as "thread 0": two
/// callers sharing one context must never share scratch. Pool workers are long-lived, so each
/// allocates once and then reuses its buffers (no allocation on the hot path).
/// Slot distinguishes concurrent uses within one kernel (packed A, packed B, im2col, ...).
template <class T, int Slot>
inline T* thread_scratch(std::size_t n) {
    struct deleter {
        void operator()(T* p) const noexcept { std::free(p); }
    };
    thread_local std::unique_ptr<T, deleter> buf;
    thread_local std::size_t cap = 0;
    if (n > cap) {
        std::size_t bytes = (n * sizeof(T) + buffer_alignment - 1) / buffer_alignment * buffer_alignment;
        void* p = std::aligned_alloc(buffer_alignment, bytes);
        if (!p) throw std::bad_alloc();
        buf.reset(static_cast<T*>(p));
        cap = n;
    }
    return buf.get();
}

// Scratch slots (see thread_scratch).
inline constexpr int slot_pack_a = 0;
inline constexpr int slot_pack_b = 1;
inline constexpr int slot_col = 2;
inline constexpr int slot_partial = 3;

}  // namespace lamina::host_detail
