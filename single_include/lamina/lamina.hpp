// lamina 0.1.0 - header-only C++17 deep learning templates for HPC: single-header edition.
//
// GENERATED FILE, DO NOT EDIT. It was produced by
//     python3 scripts/amalgamate.py
// from include/lamina/lamina.hpp.
// Edit the headers under include/lamina/ instead and rerun that command.
// Needs Eigen 3.4 and xsimd 8 on the include path, like the multi-header library.
// SPDX-License-Identifier: MIT (see LICENSE).
#pragma once

// ---- begin include/lamina/lamina.hpp ----
// lamina: header-only C++17 deep learning templates for HPC. Include this one header.
//
//   #include <lamina/lamina.hpp>
//   using net_t = lamina::sequential<lamina::input<784>, lamina::dense<128>, lamina::relu, lamina::dense<10>>;
//   net_t::model<lamina::host> net{lamina::seed{1}};
//
// Folders: core (tensors, shapes, RNG, threads), backends (host, reference, kokkos), layers,
// network (nodes, composites, graph, memory plan, the model), init, losses, optimizers,
// schedules, train, data, io, models. With Kokkos include <lamina/kokkos.hpp> instead (or first).

// ---- begin include/lamina/core/config.hpp ----
// lamina: compile-time configuration, version and portability macros.

#include <cstddef>
#include <cstdint>

#define LAMINA_VERSION_MAJOR 0
#define LAMINA_VERSION_MINOR 1
#define LAMINA_VERSION_PATCH 0

// Marks functions that kernels may call on any backend. On the host this is plain
// `inline`; when Kokkos_Core.hpp was included first (backends/kokkos does that) it is
// KOKKOS_INLINE_FUNCTION, so the same scalar helpers (activations, RNG) compile for devices.
#ifndef LAMINA_HOST_DEVICE
#if defined(KOKKOS_INLINE_FUNCTION)  // Kokkos_Core.hpp came first: device-callable helpers
#define LAMINA_HOST_DEVICE KOKKOS_INLINE_FUNCTION
#define LAMINA_HOST_DEVICE_IS_KOKKOS 1
#else
#define LAMINA_HOST_DEVICE inline
#endif
#endif

// The lambda that kernels written once for every backend hand to Backend::for_each_index:
// KOKKOS_LAMBDA when Kokkos_Core.hpp came first (a __host__ __device__ lambda under CUDA),
// a plain by-value lambda otherwise. Capture only values and device pointers.
#ifndef LAMINA_LAMBDA
#if defined(KOKKOS_LAMBDA)
#define LAMINA_LAMBDA KOKKOS_LAMBDA
#else
#define LAMINA_LAMBDA [=]
#endif
#endif

namespace lamina {

using index_t = std::ptrdiff_t;

/// Alignment of every buffer lamina allocates: one cache line, which also covers AVX-512.
inline constexpr std::size_t buffer_alignment = 64;

}  // namespace lamina
// ---- end include/lamina/core/config.hpp ----

// ---- begin include/lamina/backends/reference/reference_backend.hpp ----
// lamina: the reference backend. Deliberately naive loops, single-threaded, written for
// obviousness rather than speed: it is the oracle every other backend is tested against,
// and the executable specification of the backend kernel interface.
//
// A backend is a policy type providing: a `context` (execution resources), a `buffer<T>`
// (owning device memory), upload/download at the edges, and the kernels below. Layer code
// is written once against this interface; pointers handed to kernels are device pointers.

#include <algorithm>
#include <cmath>
#include <utility>
#include <limits>

// ---- begin include/lamina/core/activation.hpp ----
// lamina: the elementwise activation functions as a runtime-tagged value type, so one
// kernel entry point per backend serves every activation layer.



namespace lamina {

enum class activation_kind { identity, relu, leaky_relu, sigmoid, tanh, gelu };

struct activation {
    activation_kind kind = activation_kind::identity;
    double alpha = 0.0;  // leaky_relu's negative slope
};

inline const char* to_string(activation_kind k) {
    switch (k) {
        case activation_kind::identity: return "identity";
        case activation_kind::relu: return "relu";
        case activation_kind::leaky_relu: return "leaky_relu";
        case activation_kind::sigmoid: return "sigmoid";
        case activation_kind::tanh: return "tanh";
        case activation_kind::gelu: return "gelu";
    }
    return "?";
}

/// Scalar definitions, used by the reference and Kokkos backends (the host backend has
/// its own vectorised versions and is tested against these). GELU is the exact erf form
/// (PyTorch's default), d/dx = Phi(x) + x * phi(x).
template <class T>
LAMINA_HOST_DEVICE T activation_value(activation_kind k, T alpha, T x) {
    switch (k) {
        case activation_kind::identity: return x;
        case activation_kind::relu: return x < T(0) ? T(0) : x;  // NaN stays NaN (PyTorch)
        case activation_kind::leaky_relu: return x > T(0) ? x : alpha * x;
        case activation_kind::sigmoid: return T(1) / (T(1) + std::exp(-x));
        case activation_kind::tanh: return std::tanh(x);
        case activation_kind::gelu: return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
    }
    return x;
}

/// Derivative dy/dx given the input x and the output y = f(x). For relu and leaky_relu use
/// activation_gradient, which selects rather than multiplies (as PyTorch does).
template <class T>
LAMINA_HOST_DEVICE T activation_derivative(activation_kind k, T alpha, T x, T y) {
    switch (k) {
        case activation_kind::identity: return T(1);
        case activation_kind::relu: return x > T(0) ? T(1) : T(0);
        case activation_kind::leaky_relu: return x > T(0) ? T(1) : alpha;
        case activation_kind::sigmoid: return y * (T(1) - y);
        case activation_kind::tanh: return T(1) - y * y;
        case activation_kind::gelu: {
            T cdf = T(0.5) * (T(1) + std::erf(x * T(0.70710678118654752440)));
            T pdf = T(0.39894228040143267794) * std::exp(T(-0.5) * x * x);
            return cdf + x * pdf;
        }
    }
    return T(1);
}

/// dx for one element: f'(x) * dy, except that relu and leaky_relu select dy (PyTorch's
/// threshold_backward: a NaN upstream gradient is dropped where the unit is off, a NaN input
/// passes dy through). With y in place of x (fused or in-place use) the result is the same,
/// since y <= 0 exactly when x <= 0 and y is NaN exactly when x is.
template <class T>
LAMINA_HOST_DEVICE T activation_gradient(activation_kind k, T alpha, T x, T y, T dy) {
    switch (k) {
        case activation_kind::relu: return x <= T(0) ? T(0) : dy;
        case activation_kind::leaky_relu: return x > T(0) ? dy : alpha * dy;
        default: return dy * activation_derivative<T>(k, alpha, x, y);
    }
}

}  // namespace lamina
// ---- end include/lamina/core/activation.hpp ----

// ---- begin include/lamina/core/aligned_buffer.hpp ----
// lamina: an owning, cache-line aligned, move-only array in host memory.

#include <cstdlib>
#include <cstring>
#include <new>


namespace lamina {

template <class T>
class aligned_buffer {
public:
    aligned_buffer() noexcept = default;
    explicit aligned_buffer(std::size_t n) { allocate(n); }
    aligned_buffer(const aligned_buffer&) = delete;
    aligned_buffer& operator=(const aligned_buffer&) = delete;
    aligned_buffer(aligned_buffer&& o) noexcept
        : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    aligned_buffer& operator=(aligned_buffer&& o) noexcept {
        if (this != &o) {
            release();
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    ~aligned_buffer() { release(); }

    /// Reallocates to n elements (contents undefined, zero-filled for determinism).
    void allocate(std::size_t n) {
        release();
        if (n == 0) return;
        if (n > (std::size_t(-1) - buffer_alignment) / sizeof(T)) throw std::bad_alloc();  // bytes would wrap
        std::size_t bytes = (n * sizeof(T) + buffer_alignment - 1) / buffer_alignment * buffer_alignment;
        void* p = std::aligned_alloc(buffer_alignment, bytes);
        if (!p) throw std::bad_alloc();
        std::memset(p, 0, bytes);
        data_ = static_cast<T*>(p);
        size_ = n;
    }
    void release() noexcept {
        std::free(data_);
        data_ = nullptr;
        size_ = 0;
    }

    T* data() noexcept { return data_; }
    const T* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    T& operator[](std::size_t i) noexcept { return data_[i]; }
    const T& operator[](std::size_t i) const noexcept { return data_[i]; }
    T* begin() noexcept { return data_; }
    T* end() noexcept { return data_ + size_; }
    const T* begin() const noexcept { return data_; }
    const T* end() const noexcept { return data_ + size_; }

private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace lamina
// ---- end include/lamina/core/aligned_buffer.hpp ----

// ---- begin include/lamina/core/geometry.hpp ----
// lamina: runtime descriptions of convolution and pooling problems handed to kernels.
// Layouts are NCHW for activations and KCRS (PyTorch's OIHW) for convolution weights.


namespace lamina {

struct conv_geometry {
    std::size_t n = 0;               // batch
    std::size_t c = 0, h = 0, w = 0; // input channels, height, width
    std::size_t k = 0;               // output channels
    std::size_t r = 0, s = 0;        // kernel height, width
    std::size_t stride_h = 1, stride_w = 1;
    std::size_t pad_h = 0, pad_w = 0;
    std::size_t p = 0, q = 0;        // output height, width
    std::size_t dilation_h = 1, dilation_w = 1;  // spacing of the kernel taps (1: adjacent)
    // Channels and filters split into `groups` equal parts; filter k sees only the c/groups
    // channels of its group k / (k/groups). Weights are [K][C/groups][R][S] as in PyTorch.
    std::size_t groups = 1;

    /// (in + 2 pad - dilation (kernel - 1) - 1) / stride + 1, PyTorch's Conv2d rule.
    static constexpr std::size_t out_extent(std::size_t in, std::size_t kernel, std::size_t stride, std::size_t pad,
                                            std::size_t dilation = 1) {
        return (in + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
    }
    constexpr std::size_t input_size() const { return n * c * h * w; }
    constexpr std::size_t output_size() const { return n * k * p * q; }
    constexpr std::size_t weight_size() const { return k * (c / groups) * r * s; }
    constexpr std::size_t group_channels() const { return c / groups; }
    constexpr std::size_t group_filters() const { return k / groups; }
    /// No groups and no dilation: the plain convolution every fast kernel serves.
    constexpr bool plain() const { return groups == 1 && dilation_h == 1 && dilation_w == 1; }
};

/// Compile-time shape of one convolution layer (square stride, padding and dilation), passed
/// by the conv layers as a trailing tag argument so that a backend can pick and specialise
/// its kernel per layer at compile time (the runtime conv_geometry is passed as well).
template <std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
          std::size_t Stride, std::size_t Pad, std::size_t Dilation = 1, std::size_t Groups = 1>
struct conv_shape {
    static constexpr std::size_t c = C, h = H, w = W, k = K, r = R, s = S, stride = Stride, pad = Pad,
                                 dilation = Dilation, groups = Groups;
    static constexpr std::size_t p = conv_geometry::out_extent(H, R, Stride, Pad, Dilation);
    static constexpr std::size_t q = conv_geometry::out_extent(W, S, Stride, Pad, Dilation);
    static constexpr bool plain = Dilation == 1 && Groups == 1;
    static constexpr bool pointwise = R == 1 && S == 1 && Stride == 1 && Pad == 0;
};

struct pool_geometry {
    std::size_t n = 0, c = 0, h = 0, w = 0;
    std::size_t kh = 1, kw = 1;
    std::size_t stride_h = 1, stride_w = 1;
    std::size_t pad_h = 0, pad_w = 0;
    std::size_t p = 0, q = 0;

    constexpr std::size_t input_size() const { return n * c * h * w; }
    constexpr std::size_t output_size() const { return n * c * p * q; }
};

/// Parameters of one SGD step (PyTorch semantics: L2 weight decay added to the gradient,
/// velocity v = momentum * v + g, Nesterov uses g + momentum * v).
template <class T>
struct sgd_step {
    T lr = T(0.01), momentum = T(0), weight_decay = T(0);
    bool nesterov = false;
};

/// Parameters of one Adam/AdamW step. bias_correction1/2 are 1 - beta^t, computed on the
/// host once per step. decoupled = AdamW (w -= lr * wd * w before the Adam update).
template <class T>
struct adam_step {
    T lr = T(1e-3), beta1 = T(0.9), beta2 = T(0.999), eps = T(1e-8), weight_decay = T(0);
    T bias_correction1 = T(1), bias_correction2 = T(1);
    bool decoupled = false;
};

enum class transpose { no, yes };

}  // namespace lamina
// ---- end include/lamina/core/geometry.hpp ----

// ---- begin include/lamina/core/philox.hpp ----
// lamina: Philox4x32-10, a counter-based random number generator (Salmon et al., SC11).
// Counter-based means the n-th number of a stream is a pure function of (seed, stream, n):
// initialisation, shuffling and dropout give the same numbers on any compiler, thread count
// or backend, and a checkpoint only needs the seed and counters to resume bit-identically.



namespace lamina {

struct philox4x32 {
    using block = struct { std::uint32_t v[4]; };

    LAMINA_HOST_DEVICE static void mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi,
                                           std::uint32_t& lo) {
        std::uint64_t p = static_cast<std::uint64_t>(a) * b;
        hi = static_cast<std::uint32_t>(p >> 32);
        lo = static_cast<std::uint32_t>(p);
    }

    /// The raw generator: 4 x 32 bits from a 128-bit counter and a 64-bit key.
    LAMINA_HOST_DEVICE static block generate(const std::uint32_t ctr_in[4], const std::uint32_t key_in[2]) {
        std::uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
        std::uint32_t k0 = key_in[0], k1 = key_in[1];
        for (int round = 0; round < 10; ++round) {
            if (round > 0) {
                k0 += 0x9E3779B9u;
                k1 += 0xBB67AE85u;
            }
            std::uint32_t hi0, lo0, hi1, lo1;
            mulhilo(0xD2511F53u, c0, hi0, lo0);
            mulhilo(0xCD9E8D57u, c2, hi1, lo1);
            std::uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
            c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        }
        block b{};
        b.v[0] = c0; b.v[1] = c1; b.v[2] = c2; b.v[3] = c3;
        return b;
    }
};

/// A stream of random numbers: a 64-bit seed and a 64-bit stream id form the key/counter
/// high half; the element index forms the low half. Element i of a stream never depends on
/// how many other elements were drawn, so parallel and serial code draw identical numbers.
struct random_stream {
    std::uint64_t seed = 0;
    std::uint64_t stream = 0;

    /// Four independent 32-bit words for element `index`.
    LAMINA_HOST_DEVICE philox4x32::block bits(std::uint64_t index) const {
        std::uint32_t ctr[4] = {static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32),
                                static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)};
        std::uint32_t key[2] = {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)};
        return philox4x32::generate(ctr, key);
    }

    /// Uniform in [0, 1) with 24 random bits (exactly representable as float).
    LAMINA_HOST_DEVICE float uniform(std::uint64_t index) const {
        return static_cast<float>(bits(index).v[0] >> 8) * (1.0f / 16777216.0f);
    }

    /// Uniform in [0, 1) with 53 random bits.
    LAMINA_HOST_DEVICE double uniform_double(std::uint64_t index) const {
        auto b = bits(index);
        std::uint64_t x = (static_cast<std::uint64_t>(b.v[0]) << 21) ^ (b.v[1] >> 11);
        return static_cast<double>(x & ((std::uint64_t(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
    }

    /// Standard normal by Box-Muller on two words of the same block.
    double normal(std::uint64_t index) const {
        auto b = bits(index);
        double u1 = (static_cast<double>(b.v[0]) + 1.0) * (1.0 / 4294967296.0);  // (0, 1]
        double u2 = static_cast<double>(b.v[1]) * (1.0 / 4294967296.0);
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }

    /// Standard normal callable inside kernels on every backend (gaussian_noise, vae_sampling):
    /// the same Box-Muller transform as normal(), which stays host-only because initialisation
    /// must not change with a device math library's last bits. On host backends both agree.
    LAMINA_HOST_DEVICE double gaussian(std::uint64_t index) const {
        const philox4x32::block b = bits(index);
        const double u1 = (static_cast<double>(b.v[0]) + 1.0) * (1.0 / 4294967296.0);  // (0, 1]: log is finite
        const double u2 = static_cast<double>(b.v[1]) * (1.0 / 4294967296.0);
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }

    /// Uniform integer in [0, n) without modulo bias worth measuring (64-bit multiply-shift).
    std::uint64_t below(std::uint64_t index, std::uint64_t n) const {
        auto b = bits(index);
        std::uint64_t x = (static_cast<std::uint64_t>(b.v[0]) << 32) | b.v[1];
        return mulhi64(x, n);
    }

    /// High 64 bits of the 128-bit product (portable; no __int128 under -Wpedantic).
    static std::uint64_t mulhi64(std::uint64_t a, std::uint64_t b) {
        std::uint64_t a_lo = a & 0xFFFFFFFFu, a_hi = a >> 32, b_lo = b & 0xFFFFFFFFu, b_hi = b >> 32;
        std::uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
        std::uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xFFFFFFFFu) + lo_hi;
        return (hi_lo >> 32) + (cross >> 32) + hi_hi;
    }

    /// A derived, independent stream (for a layer, an epoch, a parameter tensor ...).
    random_stream child(std::uint64_t id) const {
        auto b = random_stream{seed, stream ^ 0xA5A5A5A5A5A5A5A5ull}.bits(id);
        return {seed, (static_cast<std::uint64_t>(b.v[0]) << 32) | b.v[1]};
    }
};

/// The user-facing seed type: `model{lamina::seed{42}}`.
struct seed {
    std::uint64_t value = 0;
};

}  // namespace lamina
// ---- end include/lamina/core/philox.hpp ----

// ---- begin include/lamina/core/thread_pool.hpp ----
// lamina: the host backend's thread pool.
//
// Why std::thread and not OpenMP: lamina is embedded in simulation codes that often run
// their own OpenMP (possibly another runtime: libgomp vs libomp) or many MPI ranks per node.
// An explicit pool with an explicit thread count never nests into or fights the caller's
// runtime, never oversubscribes behind the user's back, and needs no compiler flag.
//
// Defining LAMINA_NO_THREADS (before including lamina) replaces the pool with a trivial serial
// one: no std::thread, no atomics, no locks; every context has one thread.

#include <string>

#ifndef LAMINA_NO_THREADS
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>
#endif

// ---- begin include/lamina/core/error.hpp ----
// lamina: the exception types. Every message names what was wrong (shape, file, field).

#include <stdexcept>

namespace lamina {

/// Base of every error lamina throws.
struct error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A runtime size or shape does not match what a network or kernel expects.
struct shape_error : error {
    using error::error;
};

/// A file could not be opened, read or written.
struct io_error : error {
    using error::error;
};

/// A file was read but its contents are malformed (bad magic, truncated, count mismatch).
struct format_error : error {
    using error::error;
};

/// A checkpoint is corrupt, truncated, of another version or of another architecture.
struct checkpoint_error : error {
    using error::error;
};

/// An argument is out of its valid range (learning rate, batch size, probability, ...).
struct argument_error : error {
    using error::error;
};

/// A value that must be finite is not: a diverged loss, a NaN or infinite parameter that is
/// about to be saved. The message names where it was found (epoch, step, tensor).
struct numeric_error : error {
    using error::error;
};

/// Memory for a planned buffer could not be allocated (the message names the size and why).
struct allocation_error : error {
    using error::error;
};

namespace detail {
inline void require(bool ok, const std::string& what) {
    if (!ok) throw argument_error("lamina: " + what);
}
}  // namespace detail

}  // namespace lamina
// ---- end include/lamina/core/error.hpp ----


namespace lamina {

/// True when lamina was built with a real thread pool (LAMINA_NO_THREADS not defined).
#ifdef LAMINA_NO_THREADS
inline constexpr bool threading_enabled = false;
#else
inline constexpr bool threading_enabled = true;
#endif

/// The thread count to use: an explicit request, else LAMINA_NUM_THREADS, else the cores.
inline unsigned default_thread_count() {
    if (const char* s = std::getenv("LAMINA_NUM_THREADS")) {
        char* end = nullptr;
        long v = std::strtol(s, &end, 10);
        if (end == s || *end != '\0' || v < 1 || v > 4096)
            throw argument_error(std::string("lamina: LAMINA_NUM_THREADS must be a positive integer, got '") + s + "'");
        return static_cast<unsigned>(v);
    }
#ifdef LAMINA_NO_THREADS
    return 1;
#else
    unsigned hc = std::thread::hardware_concurrency();
    return hc ? hc : 1;
#endif
}

/// The user-facing thread-count type: `model{seed{1}, threads{2}}`. 0 means the default.
struct threads {
    unsigned count = 0;
};

#ifdef LAMINA_NO_THREADS
/// The serial stand-in: same interface, always one thread, everything runs inline.
class thread_pool {
public:
    explicit thread_pool(unsigned = 0) noexcept {}
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    unsigned size() const noexcept { return 1; }
    template <class F>
    void run(F&& f) {
        f(0u, 1u);
    }
    template <class F>
    void parallel_for(std::size_t n, F&& f, std::size_t = 1) {
        if (n) f(std::size_t(0), n);
    }
};
#else
/// A fixed set of worker threads that run one job at a time. Handoff: the caller publishes the
/// job and bumps an atomic generation; workers spin on it (with a CPU pause) for up to
/// spin_time before they sleep on a condition variable, so consecutive kernels of a training
/// step (microseconds apart) never pay a futex wake-up; the caller only locks and notifies
/// when some worker is actually asleep.
class thread_pool {
public:
    /// How long an idle worker spins before sleeping (OpenMP runtimes spin for a similar
    /// time); LAMINA_POOL_SPIN_US overrides it at compile time (0: sleep at once, for heavily
    /// oversubscribed machines).
#ifdef LAMINA_POOL_SPIN_US
    static constexpr std::chrono::microseconds spin_time{LAMINA_POOL_SPIN_US};
#else
    static constexpr std::chrono::microseconds spin_time{100};
#endif

    explicit thread_pool(unsigned n_threads = 0) : n_(n_threads ? n_threads : default_thread_count()) {
        // More threads than cores: spinning would steal the core a working thread needs
        // (libgomp throttles its spinning the same way).
        const unsigned cores = std::thread::hardware_concurrency();
        spin_ = cores != 0 && n_ > cores ? std::chrono::microseconds(0) : spin_time;
        workers_.reserve(n_ - 1);
        for (unsigned t = 1; t < n_; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
    }
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    ~thread_pool() {
        stop_ = true;
        publish();
        for (auto& w : workers_) w.join();
    }

    unsigned size() const noexcept { return n_; }

    /// Runs f(thread_index, thread_count) on every thread of the pool and waits. When the pool
    /// is already busy (another caller thread, e.g. concurrent predict), f runs inline as
    /// f(0, 1) on the calling thread: no deadlock, no oversubscription.
    template <class F>
    void run(F&& f) {
        // Serial when the pool has one thread, when called from inside a pool task (a kernel
        // nested in a for_each_index callback), or when another caller holds the pool.
        if (n_ == 1 || inside_task()) {
            f(0u, 1u);
            return;
        }
        std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
        if (!busy.owns_lock()) {
            f(0u, 1u);
            return;
        }
        task_scope scope;
        using Fn = std::remove_reference_t<F>;
        job_ctx_ = static_cast<void*>(std::addressof(f));
        job_fn_ = [](void* ctx, unsigned t, unsigned n) { (*static_cast<Fn*>(ctx))(t, n); };
        pending_.store(n_ - 1, std::memory_order_relaxed);
        publish();
        f(0u, n_);
        // Spin (kernels are short), then yield, until every worker is done.
        for (unsigned spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
            if (spins < 4096)
                cpu_relax();
            else
                std::this_thread::yield();
        }
    }

    /// Splits [0, n) into contiguous chunks, one per thread, and runs f(begin, end) on each.
    /// Chunk boundaries depend only on n and the thread count (deterministic results).
    template <class F>
    void parallel_for(std::size_t n, F&& f, std::size_t min_chunk = 1) {
        if (n == 0) return;
        std::size_t max_parts = std::max<std::size_t>(1, n / std::max<std::size_t>(1, min_chunk));
        if (max_parts == 1 || n_ == 1) {
            f(std::size_t(0), n);
            return;
        }
        run([&](unsigned t, unsigned nt) {
            std::size_t parts = std::min<std::size_t>(nt, max_parts);
            if (t >= parts) return;
            std::size_t lo = n * t / parts, hi = n * (t + 1) / parts;
            if (lo < hi) f(lo, hi);
        });
    }

private:
    static bool& inside_task() noexcept {
        thread_local bool inside = false;
        return inside;
    }
    struct task_scope {
        task_scope() noexcept { inside_task() = true; }
        ~task_scope() { inside_task() = false; }
    };

    static void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        asm volatile("yield" ::: "memory");
#endif
    }

    /// Makes the job (or stop_) visible to the workers and wakes any that sleep. The sequentially
    /// consistent generation bump and sleepers_ read pair with the worker's sleepers_ increment
    /// and generation re-check: a worker either sees the new generation or is counted here.
    void publish() {
        generation_.fetch_add(1, std::memory_order_seq_cst);
        if (sleepers_.load(std::memory_order_seq_cst) != 0) {
            { std::lock_guard<std::mutex> lk(m_); }
            cv_.notify_all();
        }
    }

    void worker_loop(unsigned t) {
        inside_task() = true;  // workers only ever run pool tasks
        std::uint64_t seen = 0;
        for (;;) {
            std::uint64_t g = generation_.load(std::memory_order_acquire);
            if (g == seen && spin_.count() > 0) {
                const auto start = std::chrono::steady_clock::now();
                for (unsigned i = 1; (g = generation_.load(std::memory_order_acquire)) == seen; ++i) {
                    cpu_relax();
                    if (i % 64 == 0 && std::chrono::steady_clock::now() - start > spin_) break;
                }
            }
            if (g == seen) {
                std::unique_lock<std::mutex> lk(m_);
                sleepers_.fetch_add(1, std::memory_order_seq_cst);
                cv_.wait(lk, [&] { return (g = generation_.load(std::memory_order_seq_cst)) != seen; });
                sleepers_.fetch_sub(1, std::memory_order_relaxed);
            }
            seen = g;
            if (stop_) return;
            job_fn_(job_ctx_, t, n_);
            pending_.fetch_sub(1, std::memory_order_acq_rel);
        }
    }

    unsigned n_;
    std::chrono::microseconds spin_{0};
    std::vector<std::thread> workers_;
    std::mutex m_;
    std::condition_variable cv_;
    std::atomic<std::uint64_t> generation_{0};
    std::atomic<unsigned> sleepers_{0};
    bool stop_ = false;  // written before a generation bump, read after seeing it
    std::mutex run_mutex_;
    void (*job_fn_)(void*, unsigned, unsigned) = nullptr;
    void* job_ctx_ = nullptr;
    std::atomic<unsigned> pending_{0};
};
#endif  // LAMINA_NO_THREADS

}  // namespace lamina
// ---- end include/lamina/core/thread_pool.hpp ----


namespace lamina {

struct reference {
    static constexpr const char* name = "reference";

    /// Execution resources. The reference backend is serial; `threads` is accepted and ignored
    /// so code can construct any backend's context the same way.
    class context {
    public:
        context() = default;
        explicit context(threads) {}
        unsigned thread_count() const noexcept { return 1; }
    };

    template <class T>
    using buffer = aligned_buffer<T>;

    /// Host memory: pointers may be dereferenced on the host (used only by edge code).
    static constexpr bool host_accessible = true;

    // ---- memory at the edges -------------------------------------------------------------
    template <class T>
    static void upload(const context&, T* dst, const T* host_src, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) dst[i] = host_src[i];
    }
    template <class T>
    static void download(const context&, T* host_dst, const T* src, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) host_dst[i] = src[i];
    }

    // ---- elementwise and reductions --------------------------------------------------------
    template <class T>
    static void fill(const context&, T* x, std::size_t n, T v) {
        for (std::size_t i = 0; i < n; ++i) x[i] = v;
    }
    template <class T>
    static void copy(const context&, T* dst, const T* src, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) dst[i] = src[i];
    }
    /// y += a * x
    template <class T>
    static void axpy(const context&, std::size_t n, T a, const T* x, T* y) {
        for (std::size_t i = 0; i < n; ++i) y[i] += a * x[i];
    }
    template <class T>
    static void scale(const context&, std::size_t n, T a, T* x) {
        for (std::size_t i = 0; i < n; ++i) x[i] *= a;
    }
    /// y = a * b elementwise
    template <class T>
    static void multiply(const context&, std::size_t n, const T* a, const T* b, T* y) {
        for (std::size_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
    }
    /// Sum of x, returned to the host. Accumulates in double.
    template <class T>
    static T sum(const context&, const T* x, std::size_t n) {
        double s = 0;
        for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(x[i]);
        return static_cast<T>(s);
    }
    /// Index of the largest entry of each row (first one on ties).
    template <class T>
    static void argmax_rows(const context&, const T* x, std::int32_t* idx, std::size_t rows, std::size_t cols) {
        for (std::size_t r = 0; r < rows; ++r) {
            std::size_t best = 0;
            for (std::size_t c = 1; c < cols; ++c)
                if (x[r * cols + c] > x[r * cols + best]) best = c;
            idx[r] = static_cast<std::int32_t>(best);
        }
    }
    /// Calls f(i) for i in [0, n): the hook for user-written layers (any order, any thread).
    template <class F>
    static void for_each_index(const context&, std::size_t n, F&& f) {
        for (std::size_t i = 0; i < n; ++i) f(i);
    }
    /// The same with a per-item cost hint (ignored: the reference is serial).
    template <class F>
    static void for_each_index(const context&, std::size_t n, F&& f, std::size_t) {
        for (std::size_t i = 0; i < n; ++i) f(i);
    }

    // ---- bias over channels: y is [outer][channels][inner] ---------------------------------
    template <class T>
    static void add_channel_bias(const context&, T* y, const T* b, std::size_t outer, std::size_t channels,
                                 std::size_t inner) {
        for (std::size_t o = 0; o < outer; ++o)
            for (std::size_t c = 0; c < channels; ++c)
                for (std::size_t i = 0; i < inner; ++i) y[(o * channels + c) * inner + i] += b[c];
    }
    /// db[c] = sum over outer and inner of dy (overwrites db).
    template <class T>
    static void channel_bias_grad(const context&, const T* dy, T* db, std::size_t outer, std::size_t channels,
                                  std::size_t inner) {
        for (std::size_t c = 0; c < channels; ++c) {
            T s = 0;
            for (std::size_t o = 0; o < outer; ++o)
                for (std::size_t i = 0; i < inner; ++i) s += dy[(o * channels + c) * inner + i];
            db[c] = s;
        }
    }

    // ---- GEMM: C = alpha * op(A) * op(B) + beta * C, row-major ------------------------------
    // op(A) is M x K: A is M x K (lda >= K) or, transposed, K x M (lda >= M). Likewise B.
    // beta == 0 overwrites C without reading it (C may hold NaN).
    template <class T>
    static void gemm(const context&, transpose ta, transpose tb, std::size_t M, std::size_t N, std::size_t K, T alpha,
                     const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
        for (std::size_t i = 0; i < M; ++i)
            for (std::size_t j = 0; j < N; ++j) {
                T s = 0;
                for (std::size_t p = 0; p < K; ++p) {
                    T a = ta == transpose::no ? A[i * lda + p] : A[p * lda + i];
                    T b = tb == transpose::no ? B[p * ldb + j] : B[j * ldb + p];
                    s += a * b;
                }
                C[i * ldc + j] = alpha * s + (beta == T(0) ? T(0) : beta * C[i * ldc + j]);
            }
    }
    /// GEMM with a fused epilogue: C = act(alpha * op(A) * op(B) + beta * C + bias), where
    /// bias (N entries, one per column of C) may be null. Naive: gemm, then the epilogue.
    template <class T>
    static void gemm_bias_act(const context& ctx, transpose ta, transpose tb, std::size_t M, std::size_t N,
                              std::size_t K, T alpha, const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta,
                              T* C, std::size_t ldc, const T* bias, activation act) {
        gemm(ctx, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        for (std::size_t i = 0; i < M; ++i)
            for (std::size_t j = 0; j < N; ++j) {
                T& c = C[i * ldc + j];
                c = activation_value<T>(act.kind, static_cast<T>(act.alpha), bias ? c + bias[j] : c);
            }
    }

    // ---- activations -------------------------------------------------------------------------
    template <class T>
    static void activation_forward(const context&, activation a, const T* x, T* y, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) y[i] = activation_value<T>(a.kind, static_cast<T>(a.alpha), x[i]);
    }
    /// dx = f'(x) * dy, with y = f(x) available (sigmoid and tanh use it).
    template <class T>
    static void activation_backward(const context&, activation a, const T* x, const T* y, const T* dy, T* dx,
                                    std::size_t n) {
        for (std::size_t i = 0; i < n; ++i)
            dx[i] = activation_gradient<T>(a.kind, static_cast<T>(a.alpha), x[i], y[i], dy[i]);
    }

    // ---- softmax over the last dimension of a rows x cols matrix -------------------------------
    template <class T>
    static void softmax_forward(const context&, const T* x, T* y, std::size_t rows, std::size_t cols) {
        for (std::size_t r = 0; r < rows; ++r) {
            const T* xr = x + r * cols;
            T* yr = y + r * cols;
            T m = xr[0];
            for (std::size_t c = 1; c < cols; ++c) m = std::max(m, xr[c]);
            T s = 0;
            for (std::size_t c = 0; c < cols; ++c) s += (yr[c] = std::exp(xr[c] - m));
            for (std::size_t c = 0; c < cols; ++c) yr[c] /= s;
        }
    }
    /// dx_i = y_i * (dy_i - sum_j dy_j y_j)
    template <class T>
    static void softmax_backward(const context&, const T* y, const T* dy, T* dx, std::size_t rows, std::size_t cols) {
        for (std::size_t r = 0; r < rows; ++r) {
            T dot = 0;
            for (std::size_t c = 0; c < cols; ++c) dot += dy[r * cols + c] * y[r * cols + c];
            for (std::size_t c = 0; c < cols; ++c) dx[r * cols + c] = y[r * cols + c] * (dy[r * cols + c] - dot);
        }
    }

    // ---- losses: per-row loss into loss_rows, gradient w.r.t. the prediction times grad_scale ---
    /// Softmax cross-entropy on logits. labels[r] holds the class index (exact in float up to
    /// 2^24). With label smoothing e the target is (1-e) one-hot + e/cols uniform.
    template <class T>
    static void softmax_cross_entropy(const context&, const T* logits, const T* labels, T* grad, T* loss_rows,
                                      std::size_t rows, std::size_t cols, T smoothing, T grad_scale) {
        for (std::size_t r = 0; r < rows; ++r) {
            const T* x = logits + r * cols;
            T m = x[0];
            for (std::size_t c = 1; c < cols; ++c) m = std::max(m, x[c]);
            T s = 0;
            for (std::size_t c = 0; c < cols; ++c) s += std::exp(x[c] - m);
            T log_s = std::log(s) + m;
            auto label = static_cast<std::size_t>(labels[r]);
            T loss = 0;
            for (std::size_t c = 0; c < cols; ++c) {
                T target = (c == label ? T(1) - smoothing : T(0)) + smoothing / static_cast<T>(cols);
                T logp = x[c] - log_s;
                loss -= target * logp;
                grad[r * cols + c] = (std::exp(logp) - target) * grad_scale;
            }
            loss_rows[r] = loss;
        }
    }
    /// Mean squared error per row: mean_c (p - t)^2; gradient 2 (p - t) / cols * grad_scale.
    template <class T>
    static void mse(const context&, const T* pred, const T* target, T* grad, T* loss_rows, std::size_t rows,
                    std::size_t cols, T grad_scale) {
        for (std::size_t r = 0; r < rows; ++r) {
            T loss = 0;
            for (std::size_t c = 0; c < cols; ++c) {
                T d = pred[r * cols + c] - target[r * cols + c];
                loss += d * d;
                grad[r * cols + c] = T(2) * d / static_cast<T>(cols) * grad_scale;
            }
            loss_rows[r] = loss / static_cast<T>(cols);
        }
    }
    /// Mean absolute error per row: mean_c |p - t|; gradient sign(p - t) / cols * grad_scale
    /// (0 at p == t, the subgradient PyTorch uses).
    template <class T>
    static void mae(const context&, const T* pred, const T* target, T* grad, T* loss_rows, std::size_t rows,
                    std::size_t cols, T grad_scale) {
        for (std::size_t r = 0; r < rows; ++r) {
            T loss = 0;
            for (std::size_t c = 0; c < cols; ++c) {
                T d = pred[r * cols + c] - target[r * cols + c];
                loss += std::abs(d);
                T sign = d > T(0) ? T(1) : (d < T(0) ? T(-1) : d * T(0));  // 0 at d == 0, NaN for NaN
                grad[r * cols + c] = sign / static_cast<T>(cols) * grad_scale;
            }
            loss_rows[r] = loss / static_cast<T>(cols);
        }
    }

    // ---- pooling (NCHW); padded cells never win a max and count as zero in an average; a NaN in
    // a window wins the max (the first NaN, then nothing replaces it), as in PyTorch ---------
    /// argmax may be null (inference): then only y is written.
    template <class T>
    static void max_pool_forward(const context&, const pool_geometry& g, const T* x, T* y, std::int32_t* argmax) {
        for (std::size_t nc = 0; nc < g.n * g.c; ++nc)
            for (std::size_t p = 0; p < g.p; ++p)
                for (std::size_t q = 0; q < g.q; ++q) {
                    T best = -std::numeric_limits<T>::infinity();
                    std::int32_t where = -1;
                    for (std::size_t i = 0; i < g.kh; ++i)
                        for (std::size_t j = 0; j < g.kw; ++j) {
                            auto hh = static_cast<std::ptrdiff_t>(p * g.stride_h + i) - static_cast<std::ptrdiff_t>(g.pad_h);
                            auto ww = static_cast<std::ptrdiff_t>(q * g.stride_w + j) - static_cast<std::ptrdiff_t>(g.pad_w);
                            if (hh < 0 || ww < 0 || hh >= static_cast<std::ptrdiff_t>(g.h) || ww >= static_cast<std::ptrdiff_t>(g.w))
                                continue;
                            std::size_t off = static_cast<std::size_t>(hh) * g.w + static_cast<std::size_t>(ww);
                            T v = x[nc * g.h * g.w + off];
                            if (where < 0 || v > best || (v != v && best == best)) {  // a NaN wins, as in PyTorch
                                best = v;
                                where = static_cast<std::int32_t>(off);
                            }
                        }
                    y[(nc * g.p + p) * g.q + q] = best;
                    if (argmax) argmax[(nc * g.p + p) * g.q + q] = where;
                }
    }
    /// dx = 0, then each dy is added to the input cell that won the max.
    template <class T>
    static void max_pool_backward(const context&, const pool_geometry& g, const T* dy, const std::int32_t* argmax, T* dx) {
        for (std::size_t i = 0; i < g.input_size(); ++i) dx[i] = 0;
        for (std::size_t nc = 0; nc < g.n * g.c; ++nc)
            for (std::size_t o = 0; o < g.p * g.q; ++o) {
                std::int32_t where = argmax[nc * g.p * g.q + o];
                if (where >= 0) dx[nc * g.h * g.w + static_cast<std::size_t>(where)] += dy[nc * g.p * g.q + o];
            }
    }
    /// Average over the window including padding (count_include_pad, PyTorch's default).
    template <class T>
    static void avg_pool_forward(const context&, const pool_geometry& g, const T* x, T* y) {
        T inv = T(1) / static_cast<T>(g.kh * g.kw);
        for (std::size_t nc = 0; nc < g.n * g.c; ++nc)
            for (std::size_t p = 0; p < g.p; ++p)
                for (std::size_t q = 0; q < g.q; ++q) {
                    T s = 0;
                    for (std::size_t i = 0; i < g.kh; ++i)
                        for (std::size_t j = 0; j < g.kw; ++j) {
                            auto hh = static_cast<std::ptrdiff_t>(p * g.stride_h + i) - static_cast<std::ptrdiff_t>(g.pad_h);
                            auto ww = static_cast<std::ptrdiff_t>(q * g.stride_w + j) - static_cast<std::ptrdiff_t>(g.pad_w);
                            if (hh < 0 || ww < 0 || hh >= static_cast<std::ptrdiff_t>(g.h) || ww >= static_cast<std::ptrdiff_t>(g.w))
                                continue;
                            s += x[nc * g.h * g.w + static_cast<std::size_t>(hh) * g.w + static_cast<std::size_t>(ww)];
                        }
                    y[(nc * g.p + p) * g.q + q] = s * inv;
                }
    }
    template <class T>
    static void avg_pool_backward(const context&, const pool_geometry& g, const T* dy, T* dx) {
        T inv = T(1) / static_cast<T>(g.kh * g.kw);
        for (std::size_t i = 0; i < g.input_size(); ++i) dx[i] = 0;
        for (std::size_t nc = 0; nc < g.n * g.c; ++nc)
            for (std::size_t p = 0; p < g.p; ++p)
                for (std::size_t q = 0; q < g.q; ++q)
                    for (std::size_t i = 0; i < g.kh; ++i)
                        for (std::size_t j = 0; j < g.kw; ++j) {
                            auto hh = static_cast<std::ptrdiff_t>(p * g.stride_h + i) - static_cast<std::ptrdiff_t>(g.pad_h);
                            auto ww = static_cast<std::ptrdiff_t>(q * g.stride_w + j) - static_cast<std::ptrdiff_t>(g.pad_w);
                            if (hh < 0 || ww < 0 || hh >= static_cast<std::ptrdiff_t>(g.h) || ww >= static_cast<std::ptrdiff_t>(g.w))
                                continue;
                            dx[nc * g.h * g.w + static_cast<std::size_t>(hh) * g.w + static_cast<std::size_t>(ww)] +=
                                dy[(nc * g.p + p) * g.q + q] * inv;
                        }
    }

    // ---- convolution: direct loops, no workspace ---------------------------------------------
    // Groups G split the C channels and K filters into G parts: filter k belongs to group
    // gi = k / (K/G) and sees channels gi*(C/G) + c for c < C/G; w is [K][C/G][R][S].
    // Taps are dilation apart: tap (r, s) of output (p, q) reads input row p*sh + r*dh - ph and
    // column q*sw + s*dw - pw (zero outside the image).
    template <class T>
    static std::size_t conv2d_workspace(const conv_geometry&) {
        return 0;
    }
    /// Helper of the conv kernels: the offset in x of the cell that tap (r, t) of output (p, q)
    /// reads in channel c of image n; false when the cell lies in the zero padding.
    static bool conv_input_cell(const conv_geometry& g, std::size_t n, std::size_t c, std::size_t p, std::size_t q,
                                std::size_t r, std::size_t t, std::size_t& off) {
        auto hh = static_cast<std::ptrdiff_t>(p * g.stride_h + r * g.dilation_h) - static_cast<std::ptrdiff_t>(g.pad_h);
        auto ww = static_cast<std::ptrdiff_t>(q * g.stride_w + t * g.dilation_w) - static_cast<std::ptrdiff_t>(g.pad_w);
        if (hh < 0 || ww < 0 || hh >= static_cast<std::ptrdiff_t>(g.h) || ww >= static_cast<std::ptrdiff_t>(g.w))
            return false;
        off = ((n * g.c + c) * g.h + static_cast<std::size_t>(hh)) * g.w + static_cast<std::size_t>(ww);
        return true;
    }
    /// y[n][k][p][q] = bias[k] + sum_{c<C/G,r,s} x[n][gi*C/G + c][p*sh + r*dh - ph][q*sw + s*dw - pw] * w[k][c][r][s]
    template <class T>
    static void conv2d_forward(const context&, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y, T*) {
        const std::size_t cg = g.group_channels(), kg = g.group_filters();
        for (std::size_t n = 0; n < g.n; ++n)
            for (std::size_t k = 0; k < g.k; ++k)
                for (std::size_t p = 0; p < g.p; ++p)
                    for (std::size_t q = 0; q < g.q; ++q) {
                        T s = bias ? bias[k] : T(0);
                        for (std::size_t c = 0; c < cg; ++c)
                            for (std::size_t r = 0; r < g.r; ++r)
                                for (std::size_t t = 0; t < g.s; ++t) {
                                    std::size_t off;
                                    if (!conv_input_cell(g, n, k / kg * cg + c, p, q, r, t, off)) continue;
                                    s += x[off] * w[((k * cg + c) * g.r + r) * g.s + t];
                                }
                        y[((n * g.k + k) * g.p + p) * g.q + q] = s;
                    }
    }
    /// dx = conv2d^T(dy, w) (overwrites dx).
    template <class T>
    static void conv2d_backward_data(const context&, const conv_geometry& g, const T* dy, const T* w, T* dx, T*) {
        const std::size_t cg = g.group_channels(), kg = g.group_filters();
        for (std::size_t i = 0; i < g.input_size(); ++i) dx[i] = 0;
        for (std::size_t n = 0; n < g.n; ++n)
            for (std::size_t k = 0; k < g.k; ++k)
                for (std::size_t p = 0; p < g.p; ++p)
                    for (std::size_t q = 0; q < g.q; ++q) {
                        T d = dy[((n * g.k + k) * g.p + p) * g.q + q];
                        for (std::size_t c = 0; c < cg; ++c)
                            for (std::size_t r = 0; r < g.r; ++r)
                                for (std::size_t t = 0; t < g.s; ++t) {
                                    std::size_t off;
                                    if (!conv_input_cell(g, n, k / kg * cg + c, p, q, r, t, off)) continue;
                                    dx[off] += d * w[((k * cg + c) * g.r + r) * g.s + t];
                                }
                    }
    }
    /// dw = sum over the batch of x (*) dy (overwrites dw); db[k] = sum of dy over n, p, q
    /// when db is not null (overwrites db).
    template <class T>
    static void conv2d_backward_weights(const context&, const conv_geometry& g, const T* x, const T* dy, T* dw, T* db, T*) {
        const std::size_t cg = g.group_channels(), kg = g.group_filters();
        for (std::size_t i = 0; i < g.weight_size(); ++i) dw[i] = 0;
        if (db)
            for (std::size_t k = 0; k < g.k; ++k) db[k] = 0;
        for (std::size_t n = 0; n < g.n; ++n)
            for (std::size_t k = 0; k < g.k; ++k)
                for (std::size_t p = 0; p < g.p; ++p)
                    for (std::size_t q = 0; q < g.q; ++q) {
                        T d = dy[((n * g.k + k) * g.p + p) * g.q + q];
                        if (db) db[k] += d;
                        for (std::size_t c = 0; c < cg; ++c)
                            for (std::size_t r = 0; r < g.r; ++r)
                                for (std::size_t t = 0; t < g.s; ++t) {
                                    std::size_t off;
                                    if (!conv_input_cell(g, n, k / kg * cg + c, p, q, r, t, off)) continue;
                                    dw[((k * cg + c) * g.r + r) * g.s + t] += d * x[off];
                                }
                    }
    }

    /// The conv kernels may also be called with the layer's compile-time shape as a trailing
    /// tag (geometry.hpp's conv_shape) so that a backend can specialise per layer; the
    /// reference ignores it.
    template <class T, std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
              std::size_t St, std::size_t Pd, std::size_t Dl, std::size_t Gr>
    static void conv2d_forward(const context& ctx, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y,
                               T* ws, conv_shape<C, H, W, K, R, S, St, Pd, Dl, Gr>) {
        conv2d_forward(ctx, g, x, w, bias, y, ws);
    }
    template <class T, std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
              std::size_t St, std::size_t Pd, std::size_t Dl, std::size_t Gr>
    static void conv2d_backward_data(const context& ctx, const conv_geometry& g, const T* dy, const T* w, T* dx, T* ws,
                                     conv_shape<C, H, W, K, R, S, St, Pd, Dl, Gr>) {
        conv2d_backward_data(ctx, g, dy, w, dx, ws);
    }
    template <class T, std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
              std::size_t St, std::size_t Pd, std::size_t Dl, std::size_t Gr>
    static void conv2d_backward_weights(const context& ctx, const conv_geometry& g, const T* x, const T* dy, T* dw, T* db,
                                        T* ws, conv_shape<C, H, W, K, R, S, St, Pd, Dl, Gr>) {
        conv2d_backward_weights(ctx, g, x, dy, dw, db, ws);
    }

    // ---- dropout: element i is kept iff stream.uniform(i) >= p; mask holds 0 or 1/(1-p) ------
    template <class T>
    static void dropout_forward(const context&, const T* x, T* y, T* mask, std::size_t n, T p, random_stream stream) {
        T keep_scale = T(1) / (T(1) - p);
        for (std::size_t i = 0; i < n; ++i) {
            mask[i] = static_cast<T>(stream.uniform(i)) >= p ? keep_scale : T(0);
            y[i] = x[i] * mask[i];
        }
    }

    // ---- optimizer updates ---------------------------------------------------------------
    template <class T>
    static void sgd_update(const context&, T* w, const T* g, T* velocity, std::size_t n, const sgd_step<T>& s) {
        for (std::size_t i = 0; i < n; ++i) {
            T grad = g[i] + s.weight_decay * w[i];
            if (s.momentum != T(0)) {
                velocity[i] = s.momentum * velocity[i] + grad;
                grad = s.nesterov ? grad + s.momentum * velocity[i] : velocity[i];
            }
            w[i] -= s.lr * grad;
        }
    }
    template <class T>
    static void adam_update(const context&, T* w, const T* g, T* m, T* v, std::size_t n, const adam_step<T>& s) {
        for (std::size_t i = 0; i < n; ++i) {
            T grad = g[i];
            if (s.decoupled)
                w[i] -= s.lr * s.weight_decay * w[i];
            else
                grad += s.weight_decay * w[i];
            m[i] = s.beta1 * m[i] + (T(1) - s.beta1) * grad;
            v[i] = s.beta2 * v[i] + (T(1) - s.beta2) * grad * grad;
            T mhat = m[i] / s.bias_correction1;
            T vhat = v[i] / s.bias_correction2;
            w[i] -= s.lr * mhat / (std::sqrt(vhat) + s.eps);
        }
    }
};

}  // namespace lamina
// ---- end include/lamina/backends/reference/reference_backend.hpp ----

// ---- begin include/lamina/backends/host/host_backend.hpp ----
// lamina: the host backend, lamina's fast default. Same kernel interface as the reference
// backend (backends/reference/reference_backend.hpp, the specification), implemented with
// xsimd vectors and the context's thread pool. Kernels live in one header per concern:
//   simd.hpp (helpers, scratch), gemm.hpp, conv.hpp, pooling.hpp, elementwise.hpp
//   (elementwise, reductions, activations), losses.hpp (softmax, losses),
//   optimizer_updates.hpp.
// Work too small to repay a thread handoff runs on the calling thread. Every reduction uses a
// partition fixed by the size and the thread count, so results are deterministic for a given
// thread count and differ across thread counts only by floating-point reassociation.

#include <memory>
#include <vector>

// ---- begin include/lamina/backends/host/conv.hpp ----
// lamina host backend: 2-D convolution (NCHW activations, KCRS weights).
//
// Forward, chosen per shape (at compile time when the conv2d layer passes its conv_shape tag):
//   - few filters (K <= 32), stride 1: direct kernel on a zero-padded copy of each image
//     (conv_direct.hpp; ResNet-20, LeNet);
//   - otherwise an implicit GEMM over the whole batch, Y[K][N*P*Q] = W * col, whose B-packing
//     gathers col panels straight from the input (conv_igemm.hpp: no im2col buffer, batch
//     folded into the columns for 7x7/14x14 maps);
//   - a 1x1 stride-1 unpadded convolution on a large map (P*Q >= 2048): per-image GEMM on x.
// Backward data: with stride 1 and few input channels (2 <= C <= 32), the direct forward kernel
// on dy with the weights transposed and rotated (conv_direct.hpp); otherwise implicit GEMM col = W^T * dY per column block, scattered (col2im) into dx
// by threads owning disjoint channel ranges (conv_igemm.hpp); per-image GEMM + col2im when
// there are fewer channels than threads; per-image dx_n = W^T * dy_n for 1x1 (no col2im).
// Backward weights: per image, with col = im2col(x) of shape [C*R*S][P*Q] (x itself for 1x1),
//   dW += dy_n[K][PQ] * col^T.
//
// Grouped or dilated convolutions (conv_geometry::plain() false) take their own paths and leave
// the ones above untouched: depthwise (one channel per group) by direct plane kernels
// (conv_depthwise.hpp); any other group count by the per-image route above run per (image,
// group), with an im2col that spaces the taps by the dilation.
//
// Per-image threading: with at least as many images as threads, images are split across
// threads, each running the serial GEMM with its own im2col scratch (thread 0 uses the layer's
// workspace, the others thread-local scratch); weight gradients are accumulated per thread and
// summed in thread order (deterministic for a given thread count). With fewer images, images
// run in turn and each GEMM is threaded. The forward paths are bit-identical across thread
// counts.


// ---- begin include/lamina/backends/host/conv_depthwise.hpp ----
// lamina host backend: depthwise convolution (groups == C: one input channel per group,
// K = C * multiplier filters), any stride, padding and dilation.
//
// An im2col + GEMM per channel would be a 1 x R*S by R*S x P*Q product: all packing, little
// arithmetic. These kernels work on planes instead. Each input plane is copied once into a
// zero-padded buffer whose columns are split by the stride's phase (depthwise_plane), so the
// input a tap reads along an output row is one contiguous run at any stride and dilation, and
// every tap of every output row is a vector axpy (forward, backward data into the padded
// buffer) or dot product (weight gradient) without bounds checks. Threads own input planes
// (n, c) with the multiplier filters reading them (forward, backward data) or channels
// (weight gradient): no reduction between threads, results independent of the thread count.


// ---- begin include/lamina/backends/host/pooling.hpp ----
// lamina host backend: max and average pooling (NCHW). Work is split across threads by whole
// (image, channel) planes, which never write to each other. Within a plane the valid window is
// clipped once per output row/column, so the inner loops carry no bounds tests; windows are
// tiny (2x2, 3x3), so these loops are bound by memory traffic rather than arithmetic, and
// the scalar code visits cells in the reference's order (identical argmax ties and sums).


// ---- begin include/lamina/backends/host/simd.hpp ----
// lamina host backend: the SIMD and threading helpers shared by every host kernel.
//
// Kernels use xsimd's default architecture (whatever the translation unit is compiled for:
// SSE2 on a plain x86-64 build, AVX2/FMA with -march=native, AVX-512 with -mavx512f), so the
// same source serves every target without runtime dispatch.


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
// ---- end include/lamina/backends/host/simd.hpp ----


namespace lamina::host_detail {

/// Valid window rows [lo, hi) for output index o: o*stride + i - pad in [0, extent).
inline void pool_window(std::size_t o, std::size_t stride, std::size_t pad, std::size_t k, std::size_t extent,
                        std::size_t& lo, std::size_t& hi) {
    const std::size_t start = o * stride;  // window cell i sits at start + i - pad
    lo = start >= pad ? 0 : pad - start;
    const std::size_t end = extent + pad;  // need start + i < extent + pad
    hi = end > start ? std::min(k, end - start) : 0;
    if (hi < lo) hi = lo;
}

inline std::size_t plane_grain(std::size_t plane_elems) {
    return std::max<std::size_t>(1, elementwise_grain / std::max<std::size_t>(1, plane_elems));
}

/// Whether window cell v replaces the running max: strictly larger, or the first NaN (a NaN
/// in the window makes the max NaN, as in PyTorch; the reference's rule).
template <class T>
inline bool wins(T v, T best) {
    return v > best || (v != v && best == best);
}

/// The common 2x2, stride 2, unpadded window, unrolled (same visiting order and tie rule as
/// the general loop: the first cell, then strictly greater ones).
template <class T>
inline void max_pool_planes_2x2(const pool_geometry& g, const T* x, T* y, std::int32_t* argmax, std::size_t lo,
                                std::size_t hi) {
    for (std::size_t nc = lo; nc < hi; ++nc) {
        const T* xp = x + nc * g.h * g.w;
        T* yp = y + nc * g.p * g.q;
        std::int32_t* ap = argmax ? argmax + nc * g.p * g.q : nullptr;
        for (std::size_t p = 0; p < g.p; ++p) {
            const std::size_t row0 = 2 * p * g.w, row1 = row0 + g.w;
            for (std::size_t q = 0; q < g.q; ++q) {
                const std::size_t o0 = row0 + 2 * q, o1 = row1 + 2 * q;
                T best = xp[o0];
                std::size_t where = o0;
                if (wins(xp[o0 + 1], best)) { best = xp[o0 + 1]; where = o0 + 1; }
                if (wins(xp[o1], best)) { best = xp[o1]; where = o1; }
                if (wins(xp[o1 + 1], best)) { best = xp[o1 + 1]; where = o1 + 1; }
                yp[p * g.q + q] = best;
                if (ap) ap[p * g.q + q] = static_cast<std::int32_t>(where);
            }
        }
    }
}

template <class T>
inline void max_pool_planes(const pool_geometry& g, const T* x, T* y, std::int32_t* argmax, std::size_t lo,
                            std::size_t hi) {
    if (g.kh == 2 && g.kw == 2 && g.stride_h == 2 && g.stride_w == 2 && g.pad_h == 0 && g.pad_w == 0 &&
        2 * g.p <= g.h && 2 * g.q <= g.w) {
        max_pool_planes_2x2(g, x, y, argmax, lo, hi);
        return;
    }
    for (std::size_t nc = lo; nc < hi; ++nc) {
        const T* xp = x + nc * g.h * g.w;
        T* yp = y + nc * g.p * g.q;
        std::int32_t* ap = argmax ? argmax + nc * g.p * g.q : nullptr;
        for (std::size_t p = 0; p < g.p; ++p) {
            std::size_t i0, i1;
            pool_window(p, g.stride_h, g.pad_h, g.kh, g.h, i0, i1);
            for (std::size_t q = 0; q < g.q; ++q) {
                std::size_t j0, j1;
                pool_window(q, g.stride_w, g.pad_w, g.kw, g.w, j0, j1);
                T best = -std::numeric_limits<T>::infinity();
                std::int32_t where = -1;
                for (std::size_t i = i0; i < i1; ++i) {
                    const std::size_t row = (p * g.stride_h + i - g.pad_h) * g.w;
                    for (std::size_t j = j0; j < j1; ++j) {
                        const std::size_t off = row + q * g.stride_w + j - g.pad_w;
                        const T v = xp[off];
                        if (where < 0 || wins(v, best)) {
                            best = v;
                            where = static_cast<std::int32_t>(off);
                        }
                    }
                }
                yp[p * g.q + q] = best;
                if (ap) ap[p * g.q + q] = where;
            }
        }
    }
}

template <class T>
inline void max_pool_backward_planes(const pool_geometry& g, const T* dy, const std::int32_t* argmax, T* dx,
                                     std::size_t lo, std::size_t hi) {
    std::memset(static_cast<void*>(dx + lo * g.h * g.w), 0, (hi - lo) * g.h * g.w * sizeof(T));
    for (std::size_t nc = lo; nc < hi; ++nc) {
        T* dxp = dx + nc * g.h * g.w;
        const T* dyp = dy + nc * g.p * g.q;
        const std::int32_t* ap = argmax + nc * g.p * g.q;
        for (std::size_t o = 0; o < g.p * g.q; ++o)
            if (ap[o] >= 0) dxp[static_cast<std::size_t>(ap[o])] += dyp[o];
    }
}

template <class T>
inline void avg_pool_planes(const pool_geometry& g, const T* x, T* y, std::size_t lo, std::size_t hi) {
    const T inv = T(1) / static_cast<T>(g.kh * g.kw);
    for (std::size_t nc = lo; nc < hi; ++nc) {
        const T* xp = x + nc * g.h * g.w;
        T* yp = y + nc * g.p * g.q;
        for (std::size_t p = 0; p < g.p; ++p) {
            std::size_t i0, i1;
            pool_window(p, g.stride_h, g.pad_h, g.kh, g.h, i0, i1);
            for (std::size_t q = 0; q < g.q; ++q) {
                std::size_t j0, j1;
                pool_window(q, g.stride_w, g.pad_w, g.kw, g.w, j0, j1);
                T s = 0;
                for (std::size_t i = i0; i < i1; ++i) {
                    const T* row = xp + (p * g.stride_h + i - g.pad_h) * g.w + (q * g.stride_w + j0 - g.pad_w);
                    for (std::size_t j = 0; j < j1 - j0; ++j) s += row[j];
                }
                yp[p * g.q + q] = s * inv;
            }
        }
    }
}

template <class T>
inline void avg_pool_backward_planes(const pool_geometry& g, const T* dy, T* dx, std::size_t lo, std::size_t hi) {
    const T inv = T(1) / static_cast<T>(g.kh * g.kw);
    std::memset(static_cast<void*>(dx + lo * g.h * g.w), 0, (hi - lo) * g.h * g.w * sizeof(T));
    for (std::size_t nc = lo; nc < hi; ++nc) {
        T* dxp = dx + nc * g.h * g.w;
        const T* dyp = dy + nc * g.p * g.q;
        for (std::size_t p = 0; p < g.p; ++p) {
            std::size_t i0, i1;
            pool_window(p, g.stride_h, g.pad_h, g.kh, g.h, i0, i1);
            for (std::size_t q = 0; q < g.q; ++q) {
                std::size_t j0, j1;
                pool_window(q, g.stride_w, g.pad_w, g.kw, g.w, j0, j1);
                const T d = dyp[p * g.q + q] * inv;
                for (std::size_t i = i0; i < i1; ++i) {
                    T* row = dxp + (p * g.stride_h + i - g.pad_h) * g.w + (q * g.stride_w + j0 - g.pad_w);
                    for (std::size_t j = 0; j < j1 - j0; ++j) row[j] += d;
                }
            }
        }
    }
}

}  // namespace lamina::host_detail
// ---- end include/lamina/backends/host/pooling.hpp ----


namespace lamina::host_detail {

/// Output positions q in [lo, hi) whose input column q*stride + s - pad lies in [0, extent)
/// (s is the tap's offset, s * dilation; conv.hpp's im2col and col2im use it too).
inline void conv_valid_range(std::size_t s, std::size_t stride, std::size_t pad, std::size_t extent, std::size_t outs,
                             std::size_t& lo, std::size_t& hi) {
    lo = s >= pad ? 0 : (pad - s + stride - 1) / stride;
    hi = extent + pad > s ? std::min(outs, (extent + pad - s + stride - 1) / stride) : 0;
    if (hi < lo) hi = lo;
}

/// One input channel per group: the depthwise kernels serve g.
inline bool conv_is_depthwise(const conv_geometry& g) { return g.groups > 1 && g.groups == g.c; }

/// out[i] += a * in[i] for i < n.
template <class T>
inline void depthwise_axpy(T* out, const T* in, T a, std::size_t n) {
    using V = vec<T>;
    constexpr std::size_t W = vec_size<T>;
    const V va(a);
    std::size_t i = 0;
    for (; i + W <= n; i += W) xsimd::fma(va, V::load_unaligned(in + i), V::load_unaligned(out + i)).store_unaligned(out + i);
    for (; i < n; ++i) out[i] += a * in[i];
}

inline constexpr int slot_depthwise_plane = 46;  // one padded, phase-split plane (each thread)
inline constexpr int slot_depthwise_acc = 47;    // one channel's weight-gradient sums (each thread)
inline constexpr int slot_depthwise_taps = 48;   // the taps' offsets in the plane (each thread)

/// One zero-padded plane with its columns split by the stride's phase, so that the columns
/// one tap reads along an output row, q * sw + off for q = 0, 1, ..., are contiguous: padded
/// row h, phase f holds padded columns f, f + sw, f + 2 sw, ... at [(h * sw + f) * len + j].
/// Output row p's run for tap (r, s) starts at p * row_step + tap(r, s).
struct depthwise_plane {
    std::size_t hp, wp, sw, len, row_step, slack;
    depthwise_plane(const conv_geometry& g, std::size_t vector)
        : hp(g.h + 2 * g.pad_h), wp(g.w + 2 * g.pad_w), sw(g.stride_w), len((wp + sw - 1) / sw),
          row_step(g.stride_h * sw * len), slack(vector) {}
    /// Elements to allocate: the plane, then zeros that whole-vector reads past a run's end
    /// (forward only; those lanes are discarded) may touch.
    std::size_t size() const { return hp * sw * len + slack; }
    std::size_t at(std::size_t h, std::size_t off) const { return (h * sw + off % sw) * len + off / sw; }
    /// taps[r * S + s] = the start of tap (r, s)'s run for output row 0.
    void taps(const conv_geometry& g, std::size_t* t) const {
        for (std::size_t r = 0; r < g.r; ++r)
            for (std::size_t s = 0; s < g.s; ++s) t[r * g.s + s] = at(r * g.dilation_h, s * g.dilation_w);
    }
};

/// buf = the padded, phase-split copy of the input plane x.
template <class T>
inline void depthwise_pack(const conv_geometry& g, const depthwise_plane& l, const T* x, T* buf) {
    std::fill(buf, buf + l.size(), T(0));
    for (std::size_t h = 0; h < g.h; ++h) {
        const T* in = x + h * g.w;
        T* row = buf + (h + g.pad_h) * l.sw * l.len;
        if (l.sw == 1) {
            std::copy(in, in + g.w, row + g.pad_w);
            continue;
        }
        for (std::size_t f = 0; f < l.sw; ++f) {  // the input columns w with (w + pad) % sw == f
            const std::size_t w0 = (f + l.sw - g.pad_w % l.sw) % l.sw;
            T* out = row + f * l.len + (w0 + g.pad_w) / l.sw;
            for (std::size_t w = w0, j = 0; w < g.w; w += l.sw, ++j) out[j] = in[w];
        }
    }
}

/// n <= NV * W outputs of one row: the accumulators stay in registers over all taps (whole
/// vectors are read; lanes past n are discarded).
template <std::size_t NV, class T>
inline void depthwise_row_chunk(const T* base, const std::size_t* taps, const T* wk, std::size_t rs, T bias, T* out,
                                std::size_t n) {
    using V = vec<T>;
    constexpr std::size_t W = vec_size<T>;
    V acc[NV];
    for (std::size_t v = 0; v < NV; ++v) acc[v] = V(bias);
    for (std::size_t e = 0; e < rs; ++e) {
        const V wv(wk[e]);
        const T* in = base + taps[e];
        for (std::size_t v = 0; v < NV; ++v) acc[v] = xsimd::fma(wv, V::load_unaligned(in + v * W), acc[v]);
    }
    if (n == NV * W) {
        for (std::size_t v = 0; v < NV; ++v) acc[v].store_unaligned(out + v * W);
    } else {
        alignas(64) T t[NV * W];
        for (std::size_t v = 0; v < NV; ++v) acc[v].store_aligned(t + v * W);
        std::copy(t, t + n, out);
    }
}

/// va (vector part) and tail (scalar part) += sum of a[i] * b[i] for i < n.
template <class T>
inline void depthwise_dot(const T* a, const T* b, std::size_t n, vec<T>& va, T& tail) {
    using V = vec<T>;
    constexpr std::size_t W = vec_size<T>;
    std::size_t i = 0;
    for (; i + W <= n; i += W) va = xsimd::fma(V::load_unaligned(a + i), V::load_unaligned(b + i), va);
    for (; i < n; ++i) tail += a[i] * b[i];
}

/// y = depthwise conv(x, w) + bias. Threads own input planes (n, c) and compute the
/// multiplier output planes that read it from one padded copy, row by row in register tiles
/// of up to 4 vectors.
template <class T>
inline void conv_forward_depthwise(thread_pool& pool, const conv_geometry& g, const T* x, const T* w, const T* bias,
                                   T* y) {
    constexpr std::size_t W = vec_size<T>;
    const std::size_t mult = g.k / g.c, hw = g.h * g.w, pq = g.p * g.q, rs = g.r * g.s;
    const depthwise_plane l(g, W);
    parallel_range(pool, g.n * g.c, plane_grain(mult * pq * rs), [&](std::size_t lo, std::size_t hi) {
        T* buf = thread_scratch<T, slot_depthwise_plane>(l.size());
        std::size_t* taps = thread_scratch<std::size_t, slot_depthwise_taps>(rs);
        l.taps(g, taps);
        for (std::size_t nc = lo; nc < hi; ++nc) {
            depthwise_pack(g, l, x + nc * hw, buf);
            for (std::size_t k = nc % g.c * mult; k < (nc % g.c + 1) * mult; ++k) {
                const T* wk = w + k * rs;
                const T b = bias ? bias[k] : T(0);
                T* yk = y + (nc / g.c * g.k + k) * pq;
                for (std::size_t p = 0; p < g.p; ++p) {
                    const T* base = buf + p * l.row_step;
                    T* out = yk + p * g.q;
                    std::size_t q0 = 0;
                    for (; q0 + 4 * W <= g.q; q0 += 4 * W) depthwise_row_chunk<4>(base + q0, taps, wk, rs, b, out + q0, 4 * W);
                    const std::size_t n = g.q - q0;
                    switch ((n + W - 1) / W) {
                        case 0: break;
                        case 1: depthwise_row_chunk<1>(base + q0, taps, wk, rs, b, out + q0, n); break;
                        case 2: depthwise_row_chunk<2>(base + q0, taps, wk, rs, b, out + q0, n); break;
                        case 3: depthwise_row_chunk<3>(base + q0, taps, wk, rs, b, out + q0, n); break;
                        default: depthwise_row_chunk<4>(base + q0, taps, wk, rs, b, out + q0, n); break;
                    }
                }
            }
        }
    });
}

/// dx = depthwise conv^T(dy, w) (overwrites dx): each input plane gathers its multiplier
/// filters' scatters (vector axpys) into a padded, phase-split plane, then its interior is
/// copied out.
template <class T>
inline void conv_backward_data_depthwise(thread_pool& pool, const conv_geometry& g, const T* dy, const T* w, T* dx) {
    const std::size_t mult = g.k / g.c, hw = g.h * g.w, pq = g.p * g.q, rs = g.r * g.s;
    const depthwise_plane l(g, vec_size<T>);
    parallel_range(pool, g.n * g.c, plane_grain(mult * pq * rs), [&](std::size_t lo, std::size_t hi) {
        T* buf = thread_scratch<T, slot_depthwise_plane>(l.size());
        std::size_t* taps = thread_scratch<std::size_t, slot_depthwise_taps>(rs);
        l.taps(g, taps);
        for (std::size_t nc = lo; nc < hi; ++nc) {
            std::fill(buf, buf + l.size(), T(0));
            for (std::size_t k = nc % g.c * mult; k < (nc % g.c + 1) * mult; ++k) {
                const T* wk = w + k * rs;
                const T* dyk = dy + (nc / g.c * g.k + k) * pq;
                for (std::size_t p = 0; p < g.p; ++p) {
                    T* base = buf + p * l.row_step;
                    for (std::size_t e = 0; e < rs; ++e) depthwise_axpy(base + taps[e], dyk + p * g.q, wk[e], g.q);
                }
            }
            T* dxc = dx + nc * hw;
            for (std::size_t h = 0; h < g.h; ++h) {
                const T* row = buf + (h + g.pad_h) * l.sw * l.len;
                T* out = dxc + h * g.w;
                if (l.sw == 1) {
                    std::copy(row + g.pad_w, row + g.pad_w + g.w, out);
                    continue;
                }
                for (std::size_t f = 0; f < l.sw; ++f) {
                    const std::size_t w0 = (f + l.sw - g.pad_w % l.sw) % l.sw;
                    const T* in = row + f * l.len + (w0 + g.pad_w) / l.sw;
                    for (std::size_t v = w0, j = 0; v < g.w; v += l.sw, ++j) out[v] = in[j];
                }
            }
        }
    });
}

/// dw[k][r][s] = sum over n, p, q of dy[n][k][p][q] * x[n][k / mult][tap] (overwrites dw).
/// Threads own channels (the multiplier filters reading one): no reduction between threads.
template <class T>
inline void conv_backward_weights_depthwise(thread_pool& pool, const conv_geometry& g, const T* x, const T* dy, T* dw) {
    const std::size_t mult = g.k / g.c, hw = g.h * g.w, pq = g.p * g.q, rs = g.r * g.s;
    const depthwise_plane l(g, vec_size<T>);
    parallel_range(pool, g.c, plane_grain(g.n * mult * pq * rs), [&](std::size_t lo, std::size_t hi) {
        T* buf = thread_scratch<T, slot_depthwise_plane>(l.size());
        T* acc = thread_scratch<T, slot_depthwise_acc>(mult * rs);
        std::size_t* taps = thread_scratch<std::size_t, slot_depthwise_taps>(rs);
        l.taps(g, taps);
        for (std::size_t c = lo; c < hi; ++c) {
            std::fill(acc, acc + mult * rs, T(0));
            for (std::size_t n = 0; n < g.n; ++n) {
                depthwise_pack(g, l, x + (n * g.c + c) * hw, buf);
                for (std::size_t m = 0; m < mult; ++m) {
                    const T* dyk = dy + (n * g.k + c * mult + m) * pq;
                    for (std::size_t e = 0; e < rs; ++e) {
                        vec<T> va(T(0));
                        T tail = 0;
                        for (std::size_t p = 0; p < g.p; ++p)
                            depthwise_dot(dyk + p * g.q, buf + p * l.row_step + taps[e], g.q, va, tail);
                        acc[m * rs + e] += hsum(va) + tail;
                    }
                }
            }
            std::copy(acc, acc + mult * rs, dw + c * mult * rs);
        }
    });
}

}  // namespace lamina::host_detail
// ---- end include/lamina/backends/host/conv_depthwise.hpp ----

// ---- begin include/lamina/backends/host/conv_direct.hpp ----
// lamina host backend: direct forward convolution for few output channels (stride 1).
//
// With few filters (K <= 32: ResNet-20's 16/32, LeNet's 6/16), every implicit-im2col element
// would be used only K times, so packing it costs as much as the arithmetic. This kernel reads
// the input instead: each image is copied once into a zero-padded buffer (so the inner loop
// has no bounds checks), then for a block of KB <= 6 filters and NV vectors of output columns
// it keeps KB x NV accumulators in registers and, per tap (c, r, s), loads NV input vectors and
// broadcasts KB weights. Images are split across threads; every output sums its taps in (c, r,
// s) order whatever the thread count (bit-identical results).



namespace lamina::host_detail {

inline constexpr int slot_conv_pad = 44;   // padded input image (each thread)
inline constexpr int slot_conv_flip = 45;  // flipped, transposed weights for backward-data (calling thread)

/// Whether the direct kernel serves g.
inline bool conv_use_direct(const conv_geometry& g) {
    return g.stride_h == 1 && g.stride_w == 1 && g.k <= 32;
}
constexpr bool conv_use_direct(std::size_t k, std::size_t stride) { return stride == 1 && k <= 32; }

/// KB filters x NV vectors of output columns at output row p, columns [q0, q0 + NV*W).
template <std::size_t KB, std::size_t NV, class T>
inline void conv_direct_tile(const conv_geometry& g, const T* xp, std::size_t hp, std::size_t wp, const T* w,
                             std::size_t k0, const T* bias, T* y, std::size_t p, std::size_t q0) {
    using V = vec<T>;
    constexpr std::size_t W = vec_size<T>;
    const std::size_t rs = g.r * g.s, crs = g.c * rs, pq = g.p * g.q;
    V acc[KB][NV];
    for (std::size_t i = 0; i < KB; ++i)
        for (std::size_t v = 0; v < NV; ++v) acc[i][v] = V(T(0));
    const T* wk = w + k0 * crs;
    for (std::size_t c = 0; c < g.c; ++c)
        for (std::size_t r = 0; r < g.r; ++r) {
            const T* row = xp + (c * hp + p + r) * wp + q0;
            const T* wr = wk + c * rs + r * g.s;
            for (std::size_t s = 0; s < g.s; ++s) {
                V xv[NV];
                for (std::size_t v = 0; v < NV; ++v) xv[v] = V::load_unaligned(row + s + v * W);
                for (std::size_t i = 0; i < KB; ++i) {
                    const V wv(wr[i * crs + s]);
                    for (std::size_t v = 0; v < NV; ++v) acc[i][v] = xsimd::fma(wv, xv[v], acc[i][v]);
                }
            }
        }
    const std::size_t n = std::min(NV * W, g.q - q0);
    for (std::size_t i = 0; i < KB; ++i) {
        const V b(bias ? bias[k0 + i] : T(0));
        T* out = y + (k0 + i) * pq + p * g.q + q0;
        if (n == NV * W) {
            for (std::size_t v = 0; v < NV; ++v) (acc[i][v] + b).store_unaligned(out + v * W);
        } else {
            alignas(64) T t[NV * W];
            for (std::size_t v = 0; v < NV; ++v) (acc[i][v] + b).store_aligned(t + v * W);
            for (std::size_t j = 0; j < n; ++j) out[j] = t[j];
        }
    }
}

template <std::size_t NV, class T>
inline void conv_direct_image(const conv_geometry& g, const T* xp, std::size_t hp, std::size_t wp, const T* w,
                              const T* bias, T* y) {
    constexpr std::size_t W = vec_size<T>;
    for (std::size_t k0 = 0; k0 < g.k; k0 += 6) {
        const std::size_t kb = std::min<std::size_t>(6, g.k - k0);
        for (std::size_t p = 0; p < g.p; ++p)
            for (std::size_t q0 = 0; q0 < g.q; q0 += NV * W) switch (kb) {
                    case 6: conv_direct_tile<6, NV>(g, xp, hp, wp, w, k0, bias, y, p, q0); break;
                    case 5: conv_direct_tile<5, NV>(g, xp, hp, wp, w, k0, bias, y, p, q0); break;
                    case 4: conv_direct_tile<4, NV>(g, xp, hp, wp, w, k0, bias, y, p, q0); break;
                    case 3: conv_direct_tile<3, NV>(g, xp, hp, wp, w, k0, bias, y, p, q0); break;
                    case 2: conv_direct_tile<2, NV>(g, xp, hp, wp, w, k0, bias, y, p, q0); break;
                    default: conv_direct_tile<1, NV>(g, xp, hp, wp, w, k0, bias, y, p, q0); break;
                }
    }
}

/// y = conv(x, w) + bias, stride 1 (pool may be null: serial).
template <class T>
inline void conv_forward_direct(thread_pool* pool, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y) {
    constexpr std::size_t W = vec_size<T>;
    // Two vectors of columns per tile unless that would waste a vector on every row.
    const bool two = g.q % (2 * W) == 0 || (g.q % W != 0 && g.q > W);
    const std::size_t nv = two ? 2 : 1;
    const std::size_t qr = (g.q + nv * W - 1) / (nv * W) * (nv * W);
    const std::size_t hp = g.h + 2 * g.pad_h, wp = qr + g.s - 1;  // >= w + 2 * pad_w
    const std::size_t in = g.c * g.h * g.w, out = g.k * g.p * g.q;
    auto images = [&](std::size_t lo, std::size_t hi) {
        T* xp = thread_scratch<T, slot_conv_pad>(g.c * hp * wp + W);
        std::fill(xp, xp + g.c * hp * wp + W, T(0));
        for (std::size_t n = lo; n < hi; ++n) {
            const T* xn = x + n * in;
            for (std::size_t c = 0; c < g.c; ++c)
                for (std::size_t h = 0; h < g.h; ++h)
                    std::memcpy(static_cast<void*>(xp + (c * hp + h + g.pad_h) * wp + g.pad_w), xn + (c * g.h + h) * g.w,
                                g.w * sizeof(T));
            if (two)
                conv_direct_image<2>(g, xp, hp, wp, w, bias, y + n * out);
            else
                conv_direct_image<1>(g, xp, hp, wp, w, bias, y + n * out);
        }
    };
    if (pool && pool->size() > 1 && g.n > 1)
        pool->parallel_for(g.n, images);
    else
        images(0, g.n);
}

/// Whether backward-data runs as a direct convolution: with stride 1, dx is the forward
/// convolution of dy with the weights transposed (K <-> C) and rotated by 180 degrees, padded
/// by R-1-pad; the direct kernel serves it when C (its filter count) is small. A single input
/// channel (LeNet's first layer) would leave one accumulator row: the implicit GEMM does better.
inline bool conv_use_direct_backward_data(const conv_geometry& g) {
    return g.stride_h == 1 && g.stride_w == 1 && g.c >= 2 && g.c <= 32 && g.pad_h < g.r && g.pad_w < g.s;
}

/// dx = conv2d^T(dy, w) for conv_use_direct_backward_data(g) (overwrites dx).
template <class T>
inline void conv_backward_data_direct(thread_pool* pool, const conv_geometry& g, const T* dy, const T* w, T* dx) {
    conv_geometry t = g;
    t.c = g.k;
    t.k = g.c;
    t.h = g.p;
    t.w = g.q;
    t.p = g.h;
    t.q = g.w;
    t.pad_h = g.r - 1 - g.pad_h;
    t.pad_w = g.s - 1 - g.pad_w;
    const std::size_t r = g.r, s = g.s;
    T* wt = thread_scratch<T, slot_conv_flip>(g.k * g.c * r * s);
    for (std::size_t k = 0; k < g.k; ++k)
        for (std::size_t c = 0; c < g.c; ++c)
            for (std::size_t i = 0; i < r; ++i)
                for (std::size_t j = 0; j < s; ++j)
                    wt[((c * g.k + k) * r + i) * s + j] = w[((k * g.c + c) * r + (r - 1 - i)) * s + (s - 1 - j)];
    conv_forward_direct(pool, t, dy, static_cast<const T*>(wt), static_cast<const T*>(nullptr), dx);
}

}  // namespace lamina::host_detail
// ---- end include/lamina/backends/host/conv_direct.hpp ----

// ---- begin include/lamina/backends/host/conv_igemm.hpp ----
// lamina host backend: forward convolution as an implicit GEMM (no im2col buffer).
//
// The whole batch is one GEMM, Y[K][N*P*Q] = W[K][C*R*S] * col[C*R*S][N*P*Q], with the batch
// folded into the columns so that small feature maps (7x7, 14x14) still give long panels.
// col is never materialised: GEMM's B-packing routine gathers each KC x NR panel straight
// from the NCHW input (gemm_pack_b_conv), so the only copy of the input is the cache-resident
// packed panel the micro-kernel needs anyway. W is packed once per call (shared, read-only).
//
// Threads split the columns into blocks (and the rows into halves when there are too few
// blocks). Each block is computed into a thread-local row-padded tile (full micro-tiles, no
// partial stores) and written out to NCHW with the bias added. Every output element sums its
// C*R*S products in the same KC-blocked order whatever the thread count: results are
// bit-identical across thread counts.


// ---- begin include/lamina/backends/host/elementwise.hpp ----
// lamina host backend: streaming elementwise kernels, reductions, channel bias, activations
// and dropout. Each is an xsimd loop over [lo, hi) run by parallel_range, so chunking (and thus
// every reduction's summation order) depends only on the size and the thread count.



namespace lamina::host_detail {

/// Loads the rem < W trailing elements into a zero-padded vector (so tails use the same
/// vector code, and give the same result, as the body).
template <class T>
inline vec<T> load_tail(const T* p, std::size_t rem) {
    alignas(64) T t[vec_size<T>] = {};
    for (std::size_t i = 0; i < rem; ++i) t[i] = p[i];
    return vec<T>::load_aligned(t);
}
template <class T>
inline void store_tail(T* p, const vec<T>& v, std::size_t rem) {
    alignas(64) T t[vec_size<T>];
    v.store_aligned(t);
    for (std::size_t i = 0; i < rem; ++i) p[i] = t[i];
}

/// y[i] = op(x[i]) over [lo, hi), vectorised, tail included.
template <class T, class Op>
inline void map1(const T* x, T* y, std::size_t lo, std::size_t hi, Op op) {
    constexpr std::size_t W = vec_size<T>;
    std::size_t i = lo;
    for (; i + W <= hi; i += W) store(y + i, op(load(x + i)));
    if (i < hi) store_tail(y + i, op(load_tail(x + i, hi - i)), hi - i);
}
/// z[i] = op(x[i], y[i])
template <class T, class Op>
inline void map2(const T* x, const T* y, T* z, std::size_t lo, std::size_t hi, Op op) {
    constexpr std::size_t W = vec_size<T>;
    std::size_t i = lo;
    for (; i + W <= hi; i += W) store(z + i, op(load(x + i), load(y + i)));
    if (i < hi) store_tail(z + i, op(load_tail(x + i, hi - i), load_tail(y + i, hi - i)), hi - i);
}
/// out[i] = op(x[i], y[i], z[i])
template <class T, class Op>
inline void map3(const T* x, const T* y, const T* z, T* out, std::size_t lo, std::size_t hi, Op op) {
    constexpr std::size_t W = vec_size<T>;
    std::size_t i = lo;
    for (; i + W <= hi; i += W) store(out + i, op(load(x + i), load(y + i), load(z + i)));
    if (i < hi)
        store_tail(out + i, op(load_tail(x + i, hi - i), load_tail(y + i, hi - i), load_tail(z + i, hi - i)), hi - i);
}

// ---- activations ----------------------------------------------------------------------------
inline constexpr double inv_sqrt2 = 0.70710678118654752440;
inline constexpr double inv_sqrt_2pi = 0.39894228040143267794;

template <class T>
inline void activation_forward_range(activation a, const T* x, T* y, std::size_t lo, std::size_t hi) {
    using V = vec<T>;
    const V zero(T(0)), one(T(1)), half(T(0.5)), alpha(static_cast<T>(a.alpha)), c(static_cast<T>(inv_sqrt2));
    switch (a.kind) {
        case activation_kind::identity:
            if (x != y) std::memmove(y + lo, x + lo, (hi - lo) * sizeof(T));
            break;
        case activation_kind::relu: map1(x, y, lo, hi, [&](V v) { return xsimd::select(v < zero, zero, v); }); break;
        case activation_kind::leaky_relu:
            map1(x, y, lo, hi, [&](V v) { return xsimd::select(v > zero, v, alpha * v); });
            break;
        case activation_kind::sigmoid: map1(x, y, lo, hi, [&](V v) { return one / (one + xsimd::exp(-v)); }); break;
        case activation_kind::tanh: map1(x, y, lo, hi, [&](V v) { return xsimd::tanh(v); }); break;
        case activation_kind::gelu:
            map1(x, y, lo, hi, [&](V v) { return half * v * (one + xsimd::erf(v * c)); });
            break;
    }
}

template <class T>
inline void activation_backward_range(activation a, const T* x, const T* y, const T* dy, T* dx, std::size_t lo,
                                      std::size_t hi) {
    using V = vec<T>;
    const V zero(T(0)), one(T(1)), half(T(0.5)), alpha(static_cast<T>(a.alpha)), c(static_cast<T>(inv_sqrt2)),
        pdf_scale(static_cast<T>(inv_sqrt_2pi));
    switch (a.kind) {
        case activation_kind::identity:
            if (dy != dx) std::memmove(dx + lo, dy + lo, (hi - lo) * sizeof(T));
            break;
        case activation_kind::relu:
            map2(x, dy, dx, lo, hi, [&](V xv, V d) { return xsimd::select(xv <= zero, zero, d); });
            break;
        case activation_kind::leaky_relu:
            map2(x, dy, dx, lo, hi, [&](V xv, V d) { return xsimd::select(xv > zero, d, alpha * d); });
            break;
        case activation_kind::sigmoid:
            map2(y, dy, dx, lo, hi, [&](V yv, V d) { return d * (yv * (one - yv)); });
            break;
        case activation_kind::tanh: map2(y, dy, dx, lo, hi, [&](V yv, V d) { return d * (one - yv * yv); }); break;
        case activation_kind::gelu:
            map2(x, dy, dx, lo, hi, [&](V xv, V d) {
                V cdf = half * (one + xsimd::erf(xv * c));
                V pdf = pdf_scale * xsimd::exp(-half * xv * xv);
                return d * (cdf + xv * pdf);
            });
            break;
    }
}

inline std::size_t activation_grain(activation_kind k) {
    switch (k) {
        case activation_kind::identity:
        case activation_kind::relu:
        case activation_kind::leaky_relu: return elementwise_grain;
        default: return transcendental_grain;
    }
}

// ---- reductions -------------------------------------------------------------------------------
/// Sum in double with four independent accumulators (the reference accumulates in double too).
template <class T>
inline double sum_range(const T* x, std::size_t lo, std::size_t hi) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    std::size_t i = lo;
    for (; i + 4 <= hi; i += 4) {
        s0 += static_cast<double>(x[i]);
        s1 += static_cast<double>(x[i + 1]);
        s2 += static_cast<double>(x[i + 2]);
        s3 += static_cast<double>(x[i + 3]);
    }
    // Tail as a bounded count: GCC 12 otherwise misjudges the trip count once the serial
    // path is inlined (a false -Waggressive-loop-optimizations).
    const std::size_t rem = hi - i;
    for (std::size_t k = 0; k < rem && k < 4; ++k) s0 += static_cast<double>(x[i + k]);
    return (s0 + s1) + (s2 + s3);
}

/// Deterministic parallel reduction: per-thread partials over fixed chunks, combined in order.
template <class T>
inline double sum_parallel(thread_pool& pool, const T* x, std::size_t n) {
    if (pool.size() == 1 || n < 2 * elementwise_grain) return sum_range(x, 0, n);
    // Grow-only, no allocation after the first call; bound to a local reference because inside
    // the pool lambda the name would denote each worker's own thread_local.
    thread_local std::vector<double> part_storage;
    std::vector<double>& part = part_storage;
    part.assign(std::max<std::size_t>(part.size(), pool.size()), 0.0);
    pool.run([&](unsigned t, unsigned nt) {
        std::size_t lo = n * t / nt, hi = n * (t + 1) / nt;
        part[t] = sum_range(x, lo, hi);
    });
    double s = 0;
    for (double p : part) s += p;
    return s;
}

/// db[c] += column sums of a rows x channels block (vectorised across channels; each db[c]
/// is summed over rows in order, as in the reference).
template <class T>
inline void column_sums(const T* dy, T* db, std::size_t rows, std::size_t channels, std::size_t c_lo,
                        std::size_t c_hi) {
    constexpr std::size_t W = vec_size<T>;
    std::size_t c = c_lo;
    for (; c + W <= c_hi; c += W) {
        vec<T> acc(T(0));
        for (std::size_t o = 0; o < rows; ++o) acc += load(dy + o * channels + c);
        store(db + c, acc);
    }
    // Scalar tail, written as a count so GCC 12 does not misjudge the trip count after
    // inlining (a false -Waggressive-loop-optimizations).
    const std::size_t tail = c_hi > c ? c_hi - c : 0;
    for (std::size_t k = 0; k < tail && k < W; ++k) {
        T s = 0;
        for (std::size_t o = 0; o < rows; ++o) s += dy[o * channels + c + k];
        db[c + k] = s;
    }
}

template <class T>
inline T contiguous_sum(const T* x, std::size_t n) {
    constexpr std::size_t W = vec_size<T>;
    vec<T> a0(T(0)), a1(T(0));
    std::size_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        a0 += load(x + i);
        a1 += load(x + i + W);
    }
    for (; i + W <= n; i += W) a0 += load(x + i);
    T s = hsum(a0 + a1);
    const std::size_t rem = n - i;  // < W; a bounded count (GCC 12's false -Waggressive-loop-optimizations)
    for (std::size_t k = 0; k < rem && k < W; ++k) s += x[i + k];
    return s;
}

}  // namespace lamina::host_detail
// ---- end include/lamina/backends/host/elementwise.hpp ----

// ---- begin include/lamina/backends/host/gemm.hpp ----
// lamina host backend: GEMM, C = alpha * op(A) * op(B) + beta * C, row-major.
//
// GotoBLAS/BLIS structure: op(B) is packed KC x NC into NR-wide column panels, op(A) is packed
// MC x KC into MR-high row panels, and an MR x NR register-tiled micro-kernel (2*MR FMA
// accumulators) runs over each pair of panels. Packing makes the micro-kernel's loads
// contiguous and aligned whatever the transposes, and zero-pads edge panels so one kernel
// handles every size; only the final store knows about partial tiles.
//
// Threading splits C into row (or column) slices, one per thread, each computed by the serial
// algorithm with its own thread-local packing buffers (no shared packed panel, so no barrier).
// Slices are whole micro-tiles and never take the small path, so every C element is
// accumulated in the same order whatever the thread count: results are bit-identical across
// thread counts.
//
// GEMV: op(A) B^T with at most 4 rows of A (a dense layer's forward at batch 1..4) skips the
// packing, which would copy all of B on every call, and streams B's rows once in place
// (gemv_bt, below; also bit-identical across thread counts).

#include <type_traits>
#if defined(__SSE2__)
#include <immintrin.h>
#endif


namespace lamina::host_detail {

template <class T>
struct gemm_blocking {
    static constexpr std::size_t W = vec_size<T>;
    static constexpr std::size_t NR = 2 * W;  // two vectors per accumulator row
    static constexpr std::size_t MR = 6;      // 12 accumulators: fits 16 registers (AVX2/SSE2)
    static constexpr std::size_t KC = 256;    // a KC x NR panel of B stays in L1
    static constexpr std::size_t MC = 120;    // an MC x KC block of A stays in L2
    static constexpr std::size_t NC = 2048 / NR * NR;  // KC x NC of B lives in L3
};

// Below this many multiply-adds, packing costs more than it saves.
inline constexpr std::size_t gemm_small_flops = 32768;
// Below this many multiply-adds, the thread handoff costs more than it saves.
inline constexpr std::size_t gemm_parallel_flops = 1u << 18;

template <class T>
inline void gemm_pack_a(transpose ta, const T* A, std::size_t lda, std::size_t i0, std::size_t p0, std::size_t mc,
                        std::size_t kc, T* dst) {
    constexpr std::size_t MR = gemm_blocking<T>::MR;
    for (std::size_t ir = 0; ir < mc; ir += MR) {
        const std::size_t mr = std::min(MR, mc - ir);
        T* d = dst + ir * kc;
        if (ta == transpose::no) {
            const T* a = A + (i0 + ir) * lda + p0;
            if (mr == MR) {
                for (std::size_t p = 0; p < kc; ++p)
                    for (std::size_t r = 0; r < MR; ++r) d[p * MR + r] = a[r * lda + p];
            } else {
                for (std::size_t p = 0; p < kc; ++p)
                    for (std::size_t r = 0; r < MR; ++r) d[p * MR + r] = r < mr ? a[r * lda + p] : T(0);
            }
        } else {
            const T* a = A + p0 * lda + i0 + ir;
            for (std::size_t p = 0; p < kc; ++p)
                for (std::size_t r = 0; r < MR; ++r) d[p * MR + r] = r < mr ? a[p * lda + r] : T(0);
        }
    }
}

/// Packs one transposed-B panel (rows j of B are columns of op(B)): d[p * NR + c] = b[c * ldb + p]
/// for c < nr (zero beyond), p < kc. Floats with AVX: 8 x 8 in-register transposes.
template <class T>
inline void gemm_pack_b_panel_t(const T* b, std::size_t ldb, std::size_t nr, std::size_t kc, T* d) {
    constexpr std::size_t NR = gemm_blocking<T>::NR;
    std::size_t p0 = 0;
#if defined(__AVX__)
    if constexpr (std::is_same<T, float>::value && NR % 8 == 0) {
        const __m256 zero = _mm256_setzero_ps();
        for (; p0 + 8 <= kc; p0 += 8) {
            for (std::size_t cg = 0; cg < NR; cg += 8) {
                __m256 r[8];
                for (std::size_t i = 0; i < 8; ++i)
                    r[i] = cg + i < nr ? _mm256_loadu_ps(b + (cg + i) * ldb + p0) : zero;
                const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
                const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
                const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
                const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
                const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
                const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
                const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
                const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
                T* o = d + p0 * NR + cg;
                _mm256_store_ps(o + 0 * NR, _mm256_permute2f128_ps(s0, s4, 0x20));
                _mm256_store_ps(o + 1 * NR, _mm256_permute2f128_ps(s1, s5, 0x20));
                _mm256_store_ps(o + 2 * NR, _mm256_permute2f128_ps(s2, s6, 0x20));
                _mm256_store_ps(o + 3 * NR, _mm256_permute2f128_ps(s3, s7, 0x20));
                _mm256_store_ps(o + 4 * NR, _mm256_permute2f128_ps(s0, s4, 0x31));
                _mm256_store_ps(o + 5 * NR, _mm256_permute2f128_ps(s1, s5, 0x31));
                _mm256_store_ps(o + 6 * NR, _mm256_permute2f128_ps(s2, s6, 0x31));
                _mm256_store_ps(o + 7 * NR, _mm256_permute2f128_ps(s3, s7, 0x31));
            }
        }
    }
#endif
    // kc <= KC always; the bound says so to GCC 12, which otherwise misjudges the trip count after
    // inlining (a false -Waggressive-loop-optimizations).
    for (std::size_t p = p0; p < kc && p < gemm_blocking<T>::KC; ++p)
        for (std::size_t c = 0; c < NR; ++c) d[p * NR + c] = c < nr ? b[c * ldb + p] : T(0);
}

template <class T>
inline void gemm_pack_b(transpose tb, const T* B, std::size_t ldb, std::size_t p0, std::size_t j0, std::size_t kc,
                        std::size_t nc, T* dst) {
    constexpr std::size_t NR = gemm_blocking<T>::NR, W = gemm_blocking<T>::W;
    for (std::size_t jr = 0; jr < nc; jr += NR) {
        const std::size_t nr = std::min(NR, nc - jr);
        T* d = dst + jr * kc;
        if (tb == transpose::no) {
            const T* b = B + p0 * ldb + j0 + jr;
            if (nr == NR) {
                for (std::size_t p = 0; p < kc; ++p) {
                    vec<T>::load_unaligned(b + p * ldb).store_aligned(d + p * NR);
                    vec<T>::load_unaligned(b + p * ldb + W).store_aligned(d + p * NR + W);
                }
            } else {
                for (std::size_t p = 0; p < kc; ++p)
                    for (std::size_t c = 0; c < NR; ++c) d[p * NR + c] = c < nr ? b[p * ldb + c] : T(0);
            }
        } else {
            gemm_pack_b_panel_t(B + (j0 + jr) * ldb + p0, ldb, nr, kc, d);
        }
    }
}

/// How the micro-kernel combines its tile with C: overwrite (first K block, beta == 0),
/// scale (first K block, beta != 0) or accumulate (later K blocks).
enum class gemm_store { overwrite, scale, accumulate };

/// Fused epilogue, applied to each MR x NR C tile right after its last K block is stored (the
/// tile is still in L1):
/// C[i][j] = act(C[i][j] + bias[j] + row_bias[i]). Either bias may be null; the default does
/// nothing. (row_bias: a convolution's per-filter bias when C is one image's K x P*Q output.)
template <class T>
struct gemm_epilogue {
    const T* bias = nullptr;  // N entries, indexed by column of C
    activation act{};
    const T* row_bias = nullptr;  // M entries, indexed by row of C
    bool active() const noexcept {
        return bias != nullptr || row_bias != nullptr || act.kind != activation_kind::identity;
    }
    /// The same epilogue for the column slice starting at j0.
    gemm_epilogue shifted(std::size_t j0) const noexcept { return {bias ? bias + j0 : nullptr, act, row_bias}; }
    /// The same epilogue for the row slice starting at i0.
    gemm_epilogue shifted_rows(std::size_t i0) const noexcept { return {bias, act, row_bias ? row_bias + i0 : nullptr}; }
};

/// The activation on one vector (the host's vectorised definitions, same as
/// activation_forward_range).
template <class T>
inline vec<T> apply_activation(activation a, vec<T> v) {
    using V = vec<T>;
    switch (a.kind) {
        case activation_kind::identity: return v;
        case activation_kind::relu: return xsimd::select(v < V(T(0)), V(T(0)), v);  // keeps NaN
        case activation_kind::leaky_relu: return xsimd::select(v > V(T(0)), v, V(static_cast<T>(a.alpha)) * v);
        case activation_kind::sigmoid: return V(T(1)) / (V(T(1)) + xsimd::exp(-v));
        case activation_kind::tanh: return xsimd::tanh(v);
        case activation_kind::gelu:
            return V(T(0.5)) * v * (V(T(1)) + xsimd::erf(v * V(static_cast<T>(0.70710678118654752440))));
    }
    return v;
}

/// The epilogue on the m x n block of row-major C at C (one micro-tile, or the whole of C on
/// the small path and for K == 0).
template <class T>
inline void gemm_apply_epilogue(const gemm_epilogue<T>& ep, T* C, std::size_t ldc, std::size_t m, std::size_t n) {
    if (!ep.active()) return;
    constexpr std::size_t W = vec_size<T>;
    for (std::size_t i = 0; i < m; ++i) {
        T* c = C + i * ldc;
        const T rb = ep.row_bias ? ep.row_bias[i] : T(0);
        const vec<T> vrb(rb);
        std::size_t j = 0;
        for (; j + W <= n; j += W) {
            vec<T> v = load(c + j);
            if (ep.bias) v += load(ep.bias + j);
            if (ep.row_bias) v += vrb;
            store(c + j, apply_activation(ep.act, v));
        }
        if (j < n) {
            alignas(64) T t[W] = {};
            const std::size_t rem = n - j;  // < W (bounded loops keep GCC 12's trip-count analysis quiet)
            for (std::size_t k = 0; k < rem && k < W; ++k) t[k] = c[j + k] + (ep.bias ? ep.bias[j + k] : T(0)) + rb;
            vec<T> v = apply_activation(ep.act, vec<T>::load_aligned(t));
            v.store_aligned(t);
            for (std::size_t k = 0; k < rem && k < W; ++k) c[j + k] = t[k];
        }
    }
}

template <class T>
inline vec<T> gemm_combine(const vec<T>& acc, const T* c, const vec<T>& valpha, const vec<T>& vbeta,
                           gemm_store mode) {
    switch (mode) {
        case gemm_store::overwrite: return valpha * acc;
        case gemm_store::scale: return xsimd::fma(valpha, acc, vbeta * load(c));
        case gemm_store::accumulate: return xsimd::fma(valpha, acc, load(c));
    }
    return acc;
}

template <class T>
inline void gemm_store_row(T* c, const vec<T>& acc, const vec<T>& valpha, const vec<T>& vbeta, gemm_store mode) {
    store(c, gemm_combine(acc, c, valpha, vbeta, mode));
}
/// The MR x NR micro-kernel (MR = 6, written out so the accumulators stay in registers).
template <class T>
inline void gemm_micro_kernel(std::size_t kc, const T* a, const T* b, T* c, std::size_t ldc, std::size_t mr,
                              std::size_t nr, T alpha, T beta, gemm_store mode) {
    using V = vec<T>;
    constexpr std::size_t MR = gemm_blocking<T>::MR, NR = gemm_blocking<T>::NR, W = gemm_blocking<T>::W;
    static_assert(MR == 6, "the micro-kernel is written for MR = 6");
    V c00(T(0)), c01(T(0)), c10(T(0)), c11(T(0)), c20(T(0)), c21(T(0)), c30(T(0)), c31(T(0)), c40(T(0)),
        c41(T(0)), c50(T(0)), c51(T(0));
    for (std::size_t p = 0; p < kc; ++p) {
        const V b0 = V::load_aligned(b), b1 = V::load_aligned(b + W);
        V av(a[0]);
        c00 = xsimd::fma(av, b0, c00);
        c01 = xsimd::fma(av, b1, c01);
        av = V(a[1]);
        c10 = xsimd::fma(av, b0, c10);
        c11 = xsimd::fma(av, b1, c11);
        av = V(a[2]);
        c20 = xsimd::fma(av, b0, c20);
        c21 = xsimd::fma(av, b1, c21);
        av = V(a[3]);
        c30 = xsimd::fma(av, b0, c30);
        c31 = xsimd::fma(av, b1, c31);
        av = V(a[4]);
        c40 = xsimd::fma(av, b0, c40);
        c41 = xsimd::fma(av, b1, c41);
        av = V(a[5]);
        c50 = xsimd::fma(av, b0, c50);
        c51 = xsimd::fma(av, b1, c51);
        a += MR;
        b += NR;
    }
    const V valpha(alpha), vbeta(beta);
    if (mr == MR && nr == NR) {
        gemm_store_row(c + 0 * ldc, c00, valpha, vbeta, mode);
        gemm_store_row(c + 0 * ldc + W, c01, valpha, vbeta, mode);
        gemm_store_row(c + 1 * ldc, c10, valpha, vbeta, mode);
        gemm_store_row(c + 1 * ldc + W, c11, valpha, vbeta, mode);
        gemm_store_row(c + 2 * ldc, c20, valpha, vbeta, mode);
        gemm_store_row(c + 2 * ldc + W, c21, valpha, vbeta, mode);
        gemm_store_row(c + 3 * ldc, c30, valpha, vbeta, mode);
        gemm_store_row(c + 3 * ldc + W, c31, valpha, vbeta, mode);
        gemm_store_row(c + 4 * ldc, c40, valpha, vbeta, mode);
        gemm_store_row(c + 4 * ldc + W, c41, valpha, vbeta, mode);
        gemm_store_row(c + 5 * ldc, c50, valpha, vbeta, mode);
        gemm_store_row(c + 5 * ldc + W, c51, valpha, vbeta, mode);
        return;
    }
    // Partial tile: spill the accumulators and store only the valid part.
    alignas(64) T t[MR * NR];
    c00.store_aligned(t + 0 * NR); c01.store_aligned(t + 0 * NR + W);
    c10.store_aligned(t + 1 * NR); c11.store_aligned(t + 1 * NR + W);
    c20.store_aligned(t + 2 * NR); c21.store_aligned(t + 2 * NR + W);
    c30.store_aligned(t + 3 * NR); c31.store_aligned(t + 3 * NR + W);
    c40.store_aligned(t + 4 * NR); c41.store_aligned(t + 4 * NR + W);
    c50.store_aligned(t + 5 * NR); c51.store_aligned(t + 5 * NR + W);
    for (std::size_t r = 0; r < mr; ++r)
        for (std::size_t j = 0; j < nr; ++j) {
            T& cc = c[r * ldc + j];
            const T v = t[r * NR + j];
            switch (mode) {
                case gemm_store::overwrite: cc = alpha * v; break;
                case gemm_store::scale: cc = alpha * v + beta * cc; break;
                case gemm_store::accumulate: cc = alpha * v + cc; break;
            }
        }
}

// ---- row dots: C = op(A) B^T for few rows of A (GEMV) and the small path ------------------------
//
// With B transposed (a dense layer's weights, [out][in]) every C element is the dot product of a
// row of A with a row of B, both contiguous: B's own layout is already the one a matrix-vector
// product streams, so nothing is packed (no copy of the weights, nothing to refresh after a
// training step). gemv_bt_block computes MB rows of A against R rows of B with MB * R vector
// accumulators, so each row of B is read once for all MB rows of A. Every C element is summed
// in one fixed order whatever the blocking, the thread split or the number of rows: vector
// partial sums over K in steps of W, reduced as hsum does (halving), then the K % W tail in
// order. So one sample's output does not depend on the batch it is computed in (up to 4 rows
// here and on the small path, which shares this code).

/// s = s + a * b, as one fused operation where the target has FMA (the same rounding in every
/// caller: a compiler contracts a plain `s += a * b` or not depending on the context).
template <class T>
inline T fma_scalar(T a, T b, T s) {
#if defined(__FMA__) || defined(__AVX512F__)
    return std::fma(a, b, s);
#else
    return s + a * b;
#endif
}

/// hsum of four vectors at once, each summed in hsum's (halving) order, into out[0..3]: the
/// 256/512-bit halves are folded onto 128 bits, then a 4x4 transpose adds the lanes.
template <class T>
inline void hsum4(const vec<T>& a, const vec<T>& b, const vec<T>& c, const vec<T>& d, T* out) {
#if defined(__SSE2__)
    if constexpr (std::is_same<T, float>::value) {
        // xsimd's float batch is the widest the target has: 16 lanes with AVX-512, 8 with AVX.
        auto fold = [](const vec<float>& v) -> __m128 {
#if defined(__AVX512F__)
            static_assert(vec_size<float> == 16, "hsum4: AVX-512 float batches have 16 lanes");
            const __m512 x = v;
            const __m256 lo = _mm512_castps512_ps256(x);
            const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1));
            const __m256 h = _mm256_add_ps(lo, hi);
            return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
#elif defined(__AVX__)
            static_assert(vec_size<float> == 8, "hsum4: AVX float batches have 8 lanes");
            const __m256 x = v;
            return _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
#else
            static_assert(vec_size<float> == 4, "hsum4: SSE float batches have 4 lanes");
            return v;
#endif
        };
        __m128 r0 = fold(a), r1 = fold(b), r2 = fold(c), r3 = fold(d);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);  // r_j = lane j of a, b, c, d
        _mm_storeu_ps(out, _mm_add_ps(_mm_add_ps(r0, r2), _mm_add_ps(r1, r3)));
        return;
    }
#endif
    out[0] = hsum(a);
    out[1] = hsum(b);
    out[2] = hsum(c);
    out[3] = hsum(d);
}

/// s[m * R + r] = sum over p < K of A[m * lda + p] * B[r * ldb + p], for m < MB, r < R.
template <class T, std::size_t MB, std::size_t R>
inline void gemv_bt_block(std::size_t K, const T* A, std::size_t lda, const T* B, std::size_t ldb, T* s) {
    using V = vec<T>;
    constexpr std::size_t W = vec_size<T>, NA = MB * R, NG = (NA + 3) / 4 * 4;
    V acc[NG];
    for (std::size_t i = 0; i < NG; ++i) acc[i] = V(T(0));
    std::size_t p = 0;
    for (; p + W <= K; p += W) {
        V a[MB];
        for (std::size_t m = 0; m < MB; ++m) a[m] = load(A + m * lda + p);
        for (std::size_t r = 0; r < R; ++r) {
            const V b = load(B + r * ldb + p);
            for (std::size_t m = 0; m < MB; ++m) acc[m * R + r] = xsimd::fma(a[m], b, acc[m * R + r]);
        }
    }
    alignas(16) T sums[NG];
    for (std::size_t g = 0; g < NG; g += 4) hsum4(acc[g], acc[g + 1], acc[g + 2], acc[g + 3], sums + g);
    const std::size_t rem = K - p;  // < W
    for (std::size_t m = 0; m < MB; ++m)
        for (std::size_t r = 0; r < R; ++r) {
            T v = sums[m * R + r];
            const T* a = A + m * lda + p;
            const T* b = B + r * ldb + p;
            for (std::size_t t = 0; t < rem && t < W; ++t) v = fma_scalar(a[t], b[t], v);
            s[m * R + r] = v;
        }
}

/// C[m][j] = alpha * s + beta * C[m][j] (C not read when beta == 0).
template <class T>
inline void gemv_store(T* c, T s, T alpha, T beta) {
    *c = beta == T(0) ? alpha * s : fma_scalar(alpha, s, beta * *c);
}

/// Rows of B handled together for MB rows of A: MB * R accumulators plus MB + 1 loaded vectors
/// fit 16 vector registers (AVX2, SSE2).
template <std::size_t MB>
inline constexpr std::size_t gemv_rows_of_b = MB == 1 ? 8 : MB <= 3 ? 4 : 2;

/// C[m][j] for m < MB and j in [n0, n1): blocks of R rows of B, then smaller blocks for the rest.
template <class T, std::size_t MB>
inline void gemv_bt_range(std::size_t n0, std::size_t n1, std::size_t K, T alpha, const T* A, std::size_t lda,
                          const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
    constexpr std::size_t R = gemv_rows_of_b<MB>;
    T s[MB * R];
    std::size_t j = n0;
    auto put = [&](std::size_t j0, std::size_t r_count) {
        for (std::size_t m = 0; m < MB; ++m)
            for (std::size_t r = 0; r < r_count; ++r) gemv_store(C + m * ldc + j0 + r, s[m * r_count + r], alpha, beta);
    };
    for (; j + R <= n1; j += R) {
        gemv_bt_block<T, MB, R>(K, A, lda, B + j * ldb, ldb, s);
        put(j, R);
    }
    if constexpr (R > 4) {
        for (; j + 4 <= n1; j += 4) {
            gemv_bt_block<T, MB, 4>(K, A, lda, B + j * ldb, ldb, s);
            put(j, 4);
        }
    }
    for (; j < n1; ++j) {
        gemv_bt_block<T, MB, 1>(K, A, lda, B + j * ldb, ldb, s);
        put(j, 1);
    }
}

/// C[0..M)[n0..n1) = alpha * A B^T + beta * C for any M, four rows of A at a time.
template <class T>
inline void gemv_bt_rows(std::size_t M, std::size_t n0, std::size_t n1, std::size_t K, T alpha, const T* A,
                         std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
    std::size_t m = 0;
    for (; m + 4 <= M; m += 4) gemv_bt_range<T, 4>(n0, n1, K, alpha, A + m * lda, lda, B, ldb, beta, C + m * ldc, ldc);
    switch (M - m) {
        case 3: gemv_bt_range<T, 3>(n0, n1, K, alpha, A + m * lda, lda, B, ldb, beta, C + m * ldc, ldc); break;
        case 2: gemv_bt_range<T, 2>(n0, n1, K, alpha, A + m * lda, lda, B, ldb, beta, C + m * ldc, ldc); break;
        case 1: gemv_bt_range<T, 1>(n0, n1, K, alpha, A + m * lda, lda, B, ldb, beta, C + m * ldc, ldc); break;
        default: break;
    }
}

/// Direct path for tiny problems (small dense layers, small convolutions).
template <class T>
inline void gemm_small(transpose ta, transpose tb, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A,
                       std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
    constexpr std::size_t W = vec_size<T>;
    if (ta == transpose::no && tb == transpose::yes) {  // row dots, in the GEMV's order
        gemv_bt_rows(M, 0, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    for (std::size_t i = 0; i < M; ++i) {
        T* c = C + i * ldc;
        if (tb == transpose::no) {
            // C row = beta * C row + sum_p (alpha * a(i,p)) * B row p: vectorised over j.
            if (beta == T(0))
                std::fill(c, c + N, T(0));
            else if (beta != T(1))
                for (std::size_t j = 0; j < N; ++j) c[j] *= beta;
            for (std::size_t p = 0; p < K; ++p) {
                const T av = alpha * (ta == transpose::no ? A[i * lda + p] : A[p * lda + i]);
                const T* b = B + p * ldb;
                const vec<T> va(av);
                std::size_t j = 0;
                for (; j + W <= N; j += W) store(c + j, xsimd::fma(va, load(b + j), load(c + j)));
                // Tails as bounded counts: GCC 12 otherwise misjudges the trip count after
                // inlining (a false -Waggressive-loop-optimizations).
                for (std::size_t t = 0, rem = N - j; t < rem && t < W; ++t) c[j + t] += av * b[j + t];
            }
        } else {  // both transposed
            for (std::size_t j = 0; j < N; ++j) {
                const T* b = B + j * ldb;
                T s = 0;
                for (std::size_t p = 0; p < K; ++p) s += A[p * lda + i] * b[p];
                c[j] = alpha * s + (beta == T(0) ? T(0) : beta * c[j]);
            }
        }
    }
}

/// At most this many rows of op(A) take the GEMV path (gemv_bt) instead of the packed GEMM:
/// each group of 4 rows streams B once, where packing would copy all of B on every call.
inline constexpr std::size_t gemv_max_rows = 4;
// Below this many multiply-adds a GEMV stays on the calling thread (it streams B at memory
// speed: 64K multiply-adds are 256 KiB of float weights, a few microseconds).
inline constexpr std::size_t gemv_parallel_macs = 1u << 16;

/// C = act(alpha * A B^T + beta * C + bias) for few rows of A (a dense layer's forward at batch
/// 1..4): the rows of B (outputs) are split across the pool's threads in blocks of 8, each
/// thread streaming its own rows of B once. Bitwise the same at every thread count.
template <class T>
inline void gemv_bt(thread_pool* pool, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A,
                    std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc,
                    const gemm_epilogue<T>& ep) {
    constexpr std::size_t block = 8;
    auto slice = [&](std::size_t n0, std::size_t n1) {
        gemv_bt_rows(M, n0, n1, K, alpha, A, lda, B, ldb, beta, C, ldc);
        gemm_apply_epilogue(ep.shifted(n0), C + n0, ldc, M, n1 - n0);  // the slice, still in L1
    };
    const std::size_t units = (N + block - 1) / block;
    if (!pool || pool->size() == 1 || units < 2 || M * N * K < gemv_parallel_macs) {
        slice(0, N);
        return;
    }
    pool->parallel_for(units, [&](std::size_t lo, std::size_t hi) { slice(lo * block, std::min(N, hi * block)); });
}

template <class T>
inline void gemm_serial(transpose ta, transpose tb, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A,
                        std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc,
                        bool allow_small = true, const gemm_epilogue<T>& epilogue = {}) {
    using blk = gemm_blocking<T>;
    if (M == 0 || N == 0) return;
    if (K == 0) {
        for (std::size_t i = 0; i < M; ++i)
            for (std::size_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
        gemm_apply_epilogue(epilogue, C, ldc, M, N);
        return;
    }
    if (allow_small && M * N * K < gemm_small_flops) {
        gemm_small(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        gemm_apply_epilogue(epilogue, C, ldc, M, N);
        return;
    }
    const bool fused = epilogue.active();
    T* pa = thread_scratch<T, slot_pack_a>(blk::MC * blk::KC);
    T* pb = thread_scratch<T, slot_pack_b>(blk::KC * blk::NC);
    for (std::size_t jc = 0; jc < N; jc += blk::NC) {
        const std::size_t nc = std::min(blk::NC, N - jc);
        for (std::size_t pc = 0; pc < K; pc += blk::KC) {
            const std::size_t kc = std::min(blk::KC, K - pc);
            const gemm_store mode =
                pc > 0 ? gemm_store::accumulate : (beta == T(0) ? gemm_store::overwrite : gemm_store::scale);
            const bool last = fused && pc + kc == K;
            gemm_pack_b(tb, B, ldb, pc, jc, kc, nc, pb);
            for (std::size_t ic = 0; ic < M; ic += blk::MC) {
                const std::size_t mc = std::min(blk::MC, M - ic);
                gemm_pack_a(ta, A, lda, ic, pc, mc, kc, pa);
                for (std::size_t jr = 0; jr < nc; jr += blk::NR) {
                    const gemm_epilogue<T> ep = last ? epilogue.shifted(jc + jr) : gemm_epilogue<T>{};
                    const std::size_t nr = std::min(blk::NR, nc - jr);
                    for (std::size_t ir = 0; ir < mc; ir += blk::MR) {
                        T* c = C + (ic + ir) * ldc + jc + jr;
                        const std::size_t mr = std::min(blk::MR, mc - ir);
                        gemm_micro_kernel(kc, pa + ir * kc, pb + jr * kc, c, ldc, mr, nr, alpha, beta, mode);
                        // Fused epilogue on the tile just stored, still in L1 (doing it inside the
                        // micro-kernel costs the k-loop registers).
                        if (last) gemm_apply_epilogue(ep.shifted_rows(ic + ir), c, ldc, mr, nr);
                    }
                }
            }
        }
    }
}

/// Threaded GEMM: C is cut into one row slice (or column slice, when N is the longer side)
/// per thread, in whole micro-tiles. pool == nullptr runs serially (nested use).
template <class T>
inline void gemm_parallel(thread_pool* pool, transpose ta, transpose tb, std::size_t M, std::size_t N, std::size_t K,
                          T alpha, const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C,
                          std::size_t ldc, const gemm_epilogue<T>& ep = {}) {
    using blk = gemm_blocking<T>;
    if (ta == transpose::no && tb == transpose::yes && M <= gemv_max_rows && M > 0 && N > 0 && K > 0) {
        gemv_bt(pool, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
        return;
    }
    if (!pool || pool->size() == 1 || M * N * K < gemm_parallel_flops) {
        gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, true, ep);
        return;
    }
    const std::size_t units_m = (M + blk::MR - 1) / blk::MR, units_n = (N + blk::NR - 1) / blk::NR;
    const bool split_rows = M >= N ? units_m >= 2 : units_n < 2;
    if (split_rows) {
        pool->parallel_for(units_m, [&](std::size_t lo, std::size_t hi) {
            const std::size_t i0 = lo * blk::MR, i1 = std::min(M, hi * blk::MR);
            const T* a = ta == transpose::no ? A + i0 * lda : A + i0;
            gemm_serial(ta, tb, i1 - i0, N, K, alpha, a, lda, B, ldb, beta, C + i0 * ldc, ldc, false,
                        ep.shifted_rows(i0));
        });
    } else {
        pool->parallel_for(units_n, [&](std::size_t lo, std::size_t hi) {
            const std::size_t j0 = lo * blk::NR, j1 = std::min(N, hi * blk::NR);
            const T* b = tb == transpose::no ? B + j0 : B + j0 * ldb;
            gemm_serial(ta, tb, M, j1 - j0, K, alpha, A, lda, b, ldb, beta, C + j0, ldc, false, ep.shifted(j0));  // rows whole
        });
    }
}

}  // namespace lamina::host_detail
// ---- end include/lamina/backends/host/gemm.hpp ----


namespace lamina::host_detail {

inline constexpr int slot_conv_w = 40;     // packed weights (calling thread)
inline constexpr int slot_conv_tile = 41;  // output tile (each thread)

inline constexpr int slot_conv_row = 42;   // one row of the implicit im2col block (each thread)
inline constexpr int slot_conv_seg = 43;   // the block's column runs (each thread)

/// A run of consecutive columns lying in one image and one output row: input columns iw0,
/// iw0 + stride, ... of input row ih0 (before the kernel offsets r, s are added).
struct conv_segment {
    long col, len;   // first column within the block, length
    long image;      // offset of the image in x
    long ih0, iw0;   // p*stride - pad, q*stride - pad
};

/// Splits columns [j0, j0 + nc) into runs within one image and output row; returns the count.
inline std::size_t conv_segments(const conv_geometry& g, std::size_t j0, std::size_t nc, conv_segment* seg) {
    const std::size_t pq = g.p * g.q, chw = g.c * g.h * g.w;
    std::size_t nseg = 0;
    for (std::size_t j = j0; j < j0 + nc;) {
        const std::size_t n = j / pq, rem = j % pq, p = rem / g.q, q = rem % g.q;
        const std::size_t len = std::min(j0 + nc - j, g.q - q);
        seg[nseg++] = {static_cast<long>(j - j0), static_cast<long>(len), static_cast<long>(n * chw),
                       static_cast<long>(p * g.stride_h) - static_cast<long>(g.pad_h),
                       static_cast<long>(q * g.stride_w) - static_cast<long>(g.pad_w)};
        j += len;
    }
    return nseg;
}

/// Valid t range of a run: 0 <= iw + t*sw < W, clamped to [0, len].
inline void conv_run_range(long iw, long sw, long Wd, long len, long& tlo, long& thi) {
    tlo = iw >= 0 ? 0 : (-iw + sw - 1) / sw;
    thi = iw < Wd ? std::min(len, (Wd - iw + sw - 1) / sw) : 0;
    if (tlo > len) tlo = len;
    if (thi < tlo) thi = tlo;
}

/// Packs rows [p0, p0 + kc) (index (c*R + r)*S + s) and columns [j0, j0 + nc) (index
/// (n*P + p)*Q + q) of the implicit im2col matrix into NR-wide panels, zero-padded.
/// Each row is first gathered into a linear buffer (contiguous copies of the input rows, zeros
/// for padding), then cut into panels with vector moves.
template <class T>
inline void gemm_pack_b_conv(const conv_geometry& g, const T* x, std::size_t p0, std::size_t j0, std::size_t kc,
                             std::size_t nc, T* dst) {
    constexpr std::size_t NR = gemm_blocking<T>::NR, W = gemm_blocking<T>::W;
    const std::size_t hw = g.h * g.w;
    const long H = static_cast<long>(g.h), Wd = static_cast<long>(g.w), sw = static_cast<long>(g.stride_w);
    const std::size_t ncp = (nc + NR - 1) / NR * NR;
    T* line = thread_scratch<T, slot_conv_row>(ncp);
    conv_segment* seg = reinterpret_cast<conv_segment*>(thread_scratch<long, slot_conv_seg>(5 * (nc + 2)));
    const std::size_t nseg = conv_segments(g, j0, nc, seg);
    for (std::size_t t = nc; t < ncp; ++t) line[t] = T(0);
    std::size_t c = p0 / (g.r * g.s), r = (p0 / g.s) % g.r, s = p0 % g.s;
    for (std::size_t p = 0; p < kc; ++p) {
        const T* xc = x + c * hw;
        for (std::size_t k = 0; k < nseg; ++k) {
            const conv_segment& sg = seg[k];
            T* o = line + sg.col;
            const long ih = sg.ih0 + static_cast<long>(r);
            const long len = sg.len;
            if (ih < 0 || ih >= H) {
                for (long t = 0; t < len; ++t) o[t] = T(0);
                continue;
            }
            const T* src = xc + sg.image + ih * Wd;
            const long iw = sg.iw0 + static_cast<long>(s);
            long tlo, thi;
            conv_run_range(iw, sw, Wd, len, tlo, thi);
            for (long t = 0; t < tlo; ++t) o[t] = T(0);
            if (sw == 1) {  // short runs: inline vector copy (a memcpy call costs more)
                const T* in = src + iw;
                long t = tlo;
                for (; t + static_cast<long>(W) <= thi; t += static_cast<long>(W))
                    vec<T>::load_unaligned(in + t).store_unaligned(o + t);
                for (; t < thi; ++t) o[t] = in[t];
            } else {
                for (long t = tlo; t < thi; ++t) o[t] = src[iw + t * sw];
            }
            for (long t = thi; t < len; ++t) o[t] = T(0);
        }
        T* d = dst + p * NR;
        for (std::size_t jr = 0; jr < ncp; jr += NR) {
            vec<T>::load_aligned(line + jr).store_aligned(d + jr * kc);
            vec<T>::load_aligned(line + jr + W).store_aligned(d + jr * kc + W);
        }
        if (++s == g.s) {
            s = 0;
            if (++r == g.r) {
                r = 0;
                ++c;
            }
        }
    }
}

/// Column block width (a multiple of NR) and row split for a conv GEMM with ncols columns.
template <class T>
inline void conv_igemm_blocks(std::size_t ncols, std::size_t kpad, unsigned nt, std::size_t& nb, std::size_t& jblocks,
                              std::size_t& kblocks) {
    constexpr std::size_t NR = gemm_blocking<T>::NR, MR = gemm_blocking<T>::MR;
    constexpr std::size_t target = 192;  // KC x target panel block stays in L2
    std::size_t blocks = std::max<std::size_t>(1, (ncols + target - 1) / target);
    if (nt > 1) blocks = (blocks + nt - 1) / nt * nt;  // whole rounds: balanced threads
    nb = ((ncols + blocks - 1) / blocks + NR - 1) / NR * NR;
    jblocks = (ncols + nb - 1) / nb;
    // Too few column blocks to keep every thread busy: split the rows too.
    kblocks = 1;
    const std::size_t row_panels = kpad / MR;
    while (jblocks * kblocks < nt && kblocks * 2 <= row_panels) kblocks *= 2;
}

/// y = conv(x, w) + bias over the whole batch (pool may be null: serial).
template <class T>
inline void conv_forward_igemm(thread_pool* pool, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y) {
    using blk = gemm_blocking<T>;
    constexpr std::size_t MR = blk::MR, NR = blk::NR, KC = blk::KC, MC = blk::MC;
    const std::size_t crs = g.c * g.r * g.s, pq = g.p * g.q, ncols = g.n * pq;
    if (ncols == 0 || g.k == 0) return;
    if (crs == 0) {
        for (std::size_t n = 0; n < g.n; ++n)
            for (std::size_t k = 0; k < g.k; ++k) std::fill(y + (n * g.k + k) * pq, y + (n * g.k + k + 1) * pq, bias ? bias[k] : T(0));
        return;
    }
    // A 1x1 stride-1 unpadded convolution reads each image plane as one row: longer runs.
    conv_geometry gp = g;
    if (g.r == 1 && g.s == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0) {
        gp.h = gp.p = 1;
        gp.w = gp.q = pq;
    }
    const std::size_t kpad = (g.k + MR - 1) / MR * MR;
    const unsigned nt = pool ? pool->size() : 1u;
    // Pack W once: for each KC block pc, all kpad rows as MR panels at wp + pc*kpad.
    T* wp = thread_scratch<T, slot_conv_w>(kpad * crs);
    const std::size_t pblocks = (crs + KC - 1) / KC;
    auto pack_w = [&](std::size_t lo, std::size_t hi) {
        for (std::size_t b = lo; b < hi; ++b) {
            const std::size_t pc = b * KC, kc = std::min(KC, crs - pc);
            gemm_pack_a(transpose::no, w, crs, 0, pc, g.k, kc, wp + pc * kpad);
        }
    };
    if (pool && nt > 1 && pblocks > 1 && g.k * crs >= 65536)
        pool->parallel_for(pblocks, pack_w);
    else
        pack_w(0, pblocks);

    std::size_t nb, jblocks, kblocks;
    conv_igemm_blocks<T>(ncols, kpad, nt, nb, jblocks, kblocks);
    const std::size_t kpanels = kpad / MR;
    auto work = [&](std::size_t lo, std::size_t hi) {
        T* pb = thread_scratch<T, slot_pack_b>(KC * nb);
        T* tile = thread_scratch<T, slot_conv_tile>(kpad * nb);
        for (std::size_t item = lo; item < hi; ++item) {
            const std::size_t jb = item / kblocks, kb = item % kblocks;
            const std::size_t j0 = jb * nb, ncb = std::min(nb, ncols - j0), ncp = (ncb + NR - 1) / NR * NR;
            const std::size_t r0 = kpanels * kb / kblocks * MR, r1 = kpanels * (kb + 1) / kblocks * MR;
            for (std::size_t pc = 0; pc < crs; pc += KC) {
                const std::size_t kc = std::min(KC, crs - pc);
                const gemm_store mode = pc == 0 ? gemm_store::overwrite : gemm_store::accumulate;
                gemm_pack_b_conv(gp, x, pc, j0, kc, ncb, pb);
                const T* wblk = wp + pc * kpad;
                for (std::size_t ic = r0; ic < r1; ic += MC) {
                    const std::size_t ic1 = std::min(r1, ic + MC);
                    for (std::size_t jr = 0; jr < ncp; jr += NR)
                        for (std::size_t ir = ic; ir < ic1; ir += MR)
                            gemm_micro_kernel(kc, wblk + ir * kc, pb + jr * kc, tile + ir * nb + jr, nb, MR, NR, T(1),
                                              T(0), mode);
                }
            }
            // Write out rows [r0, min(r1, K)) of the block to NCHW, adding the bias.
            const std::size_t k1 = std::min(r1, g.k);
            std::size_t j = j0;
            while (j < j0 + ncb) {
                const std::size_t n = j / pq, rem = j % pq, len = std::min(j0 + ncb - j, pq - rem);
                for (std::size_t k = r0; k < k1; ++k) {
                    const T* src = tile + k * nb + (j - j0);
                    T* dst = y + (n * g.k + k) * pq + rem;
                    if (bias) {
                        const vec<T> vb(bias[k]);
                        map1(src, dst, 0, len, [&](vec<T> v) { return v + vb; });
                    } else {
                        std::memcpy(static_cast<void*>(dst), src, len * sizeof(T));
                    }
                }
                j += len;
            }
        }
    };
    const std::size_t items = jblocks * kblocks;
    if (pool && nt > 1 && items > 1)
        pool->parallel_for(items, work);
    else
        work(0, items);
}

/// dx = conv2d^T(dy, w) over the whole batch as an implicit GEMM, col[C*R*S][N*P*Q] =
/// W^T * dY, one column block at a time into a tile that is scattered (col2im) straight into
/// dx. Threads own disjoint input-channel ranges (rows (c, r, s) of col), so their scatters
/// never overlap; each packs the dY block itself (dY is read as a 1x1 convolution's input).
/// Every dx element sums its contributions in the same order whatever the thread count.
/// Needs at least as many channels as threads (pool may be null: serial).
template <class T>
inline void conv_backward_data_igemm(thread_pool* pool, const conv_geometry& g, const T* dy, const T* w, T* dx) {
    using blk = gemm_blocking<T>;
    constexpr std::size_t MR = blk::MR, NR = blk::NR, KC = blk::KC, MC = blk::MC;
    const std::size_t rs = g.r * g.s, crs = g.c * rs, pq = g.p * g.q, ncols = g.n * pq, hw = g.h * g.w;
    const std::size_t chw = g.c * hw;
    const std::size_t mpad = (crs + MR - 1) / MR * MR;
    const unsigned nt = pool ? pool->size() : 1u;
    // W^T packed once: for each KC block of K, all mpad rows as MR panels at wp + pc*mpad.
    T* wp = thread_scratch<T, slot_conv_w>(mpad * std::max<std::size_t>(g.k, 1));
    const std::size_t pblocks = (g.k + KC - 1) / KC;
    auto pack_w = [&](std::size_t lo, std::size_t hi) {
        for (std::size_t b = lo; b < hi; ++b) {
            const std::size_t pc = b * KC, kc = std::min(KC, g.k - pc);
            gemm_pack_a(transpose::yes, w, crs, 0, pc, crs, kc, wp + pc * mpad);
        }
    };
    if (pool && nt > 1 && pblocks > 1 && g.k * crs >= 65536)
        pool->parallel_for(pblocks, pack_w);
    else
        pack_w(0, pblocks);
    // dY as the input of a 1x1 convolution with K channels and one P*Q-long row per image.
    conv_geometry gd;
    gd.n = g.n; gd.c = g.k; gd.h = 1; gd.w = pq; gd.k = g.c; gd.r = gd.s = 1; gd.p = 1; gd.q = pq;
    // Column blocks: the tile (this thread's rows x nb) stays around L2 size. Fixed by the
    // geometry alone (not the thread count): deterministic summation order.
    const std::size_t nb = std::clamp<std::size_t>((65536 / std::max<std::size_t>(crs, 1)) / NR * NR, 2 * NR, 192);
    const long H = static_cast<long>(g.h), Wd = static_cast<long>(g.w), sw = static_cast<long>(g.stride_w);
    auto work = [&](unsigned t, unsigned parts) {
        const std::size_t c0 = g.c * t / parts, c1 = g.c * (t + 1) / parts;
        if (c0 == c1) return;
        for (std::size_t n = 0; n < g.n; ++n)
            std::memset(static_cast<void*>(dx + n * chw + c0 * hw), 0, (c1 - c0) * hw * sizeof(T));
        if (g.k == 0 || ncols == 0) return;
        const std::size_t row0 = c0 * rs, row1 = c1 * rs;
        const std::size_t m0 = row0 / MR * MR, m1 = (row1 + MR - 1) / MR * MR;
        T* pb = thread_scratch<T, slot_pack_b>(KC * nb);
        T* tile = thread_scratch<T, slot_conv_tile>((m1 - m0) * nb);
        conv_segment* seg = reinterpret_cast<conv_segment*>(thread_scratch<long, slot_conv_seg>(5 * (nb + 2)));
        for (std::size_t j0 = 0; j0 < ncols; j0 += nb) {
            const std::size_t ncb = std::min(nb, ncols - j0), ncp = (ncb + NR - 1) / NR * NR;
            for (std::size_t pc = 0; pc < g.k; pc += KC) {
                const std::size_t kc = std::min(KC, g.k - pc);
                const gemm_store mode = pc == 0 ? gemm_store::overwrite : gemm_store::accumulate;
                gemm_pack_b_conv(gd, dy, pc, j0, kc, ncb, pb);
                const T* wblk = wp + pc * mpad;
                for (std::size_t ic = m0; ic < m1; ic += MC) {
                    const std::size_t ic1 = std::min(m1, ic + MC);
                    for (std::size_t jr = 0; jr < ncp; jr += NR)
                        for (std::size_t ir = ic; ir < ic1; ir += MR)
                            gemm_micro_kernel(kc, wblk + ir * kc, pb + jr * kc, tile + (ir - m0) * nb + jr, nb, MR, NR,
                                              T(1), T(0), mode);
                }
            }
            // col2im: scatter rows [row0, row1) of the block into dx.
            const std::size_t nseg = conv_segments(g, j0, ncb, seg);
            for (std::size_t row = row0; row < row1; ++row) {
                const std::size_t c = row / rs, r = (row / g.s) % g.r, s = row % g.s;
                const T* trow = tile + (row - m0) * nb;
                for (std::size_t k = 0; k < nseg; ++k) {
                    const conv_segment& sg = seg[k];
                    const long ih = sg.ih0 + static_cast<long>(r);
                    if (ih < 0 || ih >= H) continue;
                    T* drow = dx + sg.image + c * hw + ih * Wd;
                    const long iw = sg.iw0 + static_cast<long>(s);
                    long tlo, thi;
                    conv_run_range(iw, sw, Wd, sg.len, tlo, thi);
                    const T* src = trow + sg.col;
                    if (sw == 1) {
                        T* o = drow + iw;
                        long u = tlo;
                        for (; u + static_cast<long>(vec_size<T>) <= thi; u += static_cast<long>(vec_size<T>))
                            (vec<T>::load_unaligned(o + u) + vec<T>::load_unaligned(src + u)).store_unaligned(o + u);
                        for (; u < thi; ++u) o[u] += src[u];
                    } else {
                        for (long u = tlo; u < thi; ++u) drow[iw + u * sw] += src[u];
                    }
                }
            }
        }
    };
    if (pool && nt > 1 && g.c >= nt)
        pool->run([&](unsigned t, unsigned parts) { work(t, parts); });
    else
        work(0, 1);
}

}  // namespace lamina::host_detail
// ---- end include/lamina/backends/host/conv_igemm.hpp ----


namespace lamina::host_detail {

inline bool conv_is_pointwise(const conv_geometry& g) {
    return g.r == 1 && g.s == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0;
}
inline std::size_t conv_col_size(const conv_geometry& g) {
    return conv_is_pointwise(g) ? 0 : g.c * g.r * g.s * g.p * g.q;
}

/// col[(c*R + r)*S + s][p*Q + q] = x[c][p*sh + r*dh - ph][q*sw + s*dw - pw], 0 outside the
/// image (one group of one image: g.c channels, g.groups ignored).
template <class T>
inline void im2col(const conv_geometry& g, const T* x, T* col) {
    const std::size_t pq = g.p * g.q;
    for (std::size_t c = 0; c < g.c; ++c)
        for (std::size_t r = 0; r < g.r; ++r)
            for (std::size_t s = 0; s < g.s; ++s) {
                T* row = col + ((c * g.r + r) * g.s + s) * pq;
                const std::size_t rd = r * g.dilation_h, sd = s * g.dilation_w;
                std::size_t q0, q1;
                conv_valid_range(sd, g.stride_w, g.pad_w, g.w, g.q, q0, q1);
                for (std::size_t p = 0; p < g.p; ++p) {
                    T* out = row + p * g.q;
                    const std::size_t hh = p * g.stride_h + rd;
                    if (hh < g.pad_h || hh - g.pad_h >= g.h) {
                        std::fill(out, out + g.q, T(0));
                        continue;
                    }
                    const T* in = x + (c * g.h + hh - g.pad_h) * g.w;
                    std::fill(out, out + q0, T(0));
                    if (g.stride_w == 1) {
                        if (q1 > q0) std::memcpy(out + q0, in + (q0 + sd - g.pad_w), (q1 - q0) * sizeof(T));
                    } else {
                        for (std::size_t q = q0; q < q1; ++q) out[q] = in[q * g.stride_w + sd - g.pad_w];
                    }
                    std::fill(out + q1, out + g.q, T(0));
                }
            }
}

/// dx (one group of one image, zeroed here) = sum of col's entries at the input cells they
/// were read from.
template <class T>
inline void col2im(const conv_geometry& g, const T* col, T* dx) {
    const std::size_t pq = g.p * g.q;
    std::memset(static_cast<void*>(dx), 0, g.c * g.h * g.w * sizeof(T));
    for (std::size_t c = 0; c < g.c; ++c)
        for (std::size_t r = 0; r < g.r; ++r)
            for (std::size_t s = 0; s < g.s; ++s) {
                const T* row = col + ((c * g.r + r) * g.s + s) * pq;
                const std::size_t rd = r * g.dilation_h, sd = s * g.dilation_w;
                std::size_t q0, q1;
                conv_valid_range(sd, g.stride_w, g.pad_w, g.w, g.q, q0, q1);
                for (std::size_t p = 0; p < g.p; ++p) {
                    const std::size_t hh = p * g.stride_h + rd;
                    if (hh < g.pad_h || hh - g.pad_h >= g.h) continue;
                    T* out = dx + (c * g.h + hh - g.pad_h) * g.w;
                    const T* in = row + p * g.q;
                    if (g.stride_w == 1) {
                        T* o = out + (q0 + sd - g.pad_w);
                        for (std::size_t q = 0; q < q1 - q0; ++q) o[q] += in[q0 + q];
                    } else {
                        for (std::size_t q = q0; q < q1; ++q) out[q * g.stride_w + sd - g.pad_w] += in[q];
                    }
                }
            }
}

/// Image split: true when every thread gets an image and the split is not badly unbalanced.
inline bool conv_split_images(const conv_geometry& g, unsigned nt) {
    return nt > 1 && g.n >= nt && (g.n % nt == 0 || g.n >= 4 * static_cast<std::size_t>(nt));
}

template <class T>
inline void conv_forward_image(thread_pool* pool, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y,
                               T* col) {
    const std::size_t crs = g.c * g.r * g.s, pq = g.p * g.q;
    const T* b = x;
    if (!conv_is_pointwise(g)) {
        im2col(g, x, col);
        b = col;
    }
    // The per-filter bias is a row bias of this K x P*Q GEMM: added in the epilogue, tile by tile.
    gemm_parallel(pool, transpose::no, transpose::no, g.k, pq, crs, T(1), w, crs, b, pq, T(0), y, pq,
                  gemm_epilogue<T>{nullptr, activation{}, bias});
}

template <class T>
inline void conv_backward_data_image(thread_pool* pool, const conv_geometry& g, const T* dy, const T* w, T* dx,
                                     T* col) {
    const std::size_t crs = g.c * g.r * g.s, pq = g.p * g.q;
    if (conv_is_pointwise(g)) {
        gemm_parallel(pool, transpose::yes, transpose::no, g.c, pq, g.k, T(1), w, crs, dy, pq, T(0), dx, pq);
        return;
    }
    gemm_parallel(pool, transpose::yes, transpose::no, crs, pq, g.k, T(1), w, crs, dy, pq, T(0), col, pq);
    col2im(g, col, dx);
}

/// dw (+)= dy_n * col^T; accumulate == false overwrites dw.
template <class T>
inline void conv_backward_weights_image(thread_pool* pool, const conv_geometry& g, const T* x, const T* dy, T* dw,
                                        T* col, bool accumulate) {
    const std::size_t crs = g.c * g.r * g.s, pq = g.p * g.q;
    const T* b = x;
    if (!conv_is_pointwise(g)) {
        im2col(g, x, col);
        b = col;
    }
    gemm_parallel(pool, transpose::no, transpose::yes, g.k, crs, pq, T(1), dy, pq, b, pq, accumulate ? T(1) : T(0), dw,
                  crs);
}

/// Runs per-image work: images split across threads, or in turn with threaded GEMMs.
/// f(pool_or_null, image, col_scratch, thread_index).
template <class T, class F>
inline void conv_for_images(thread_pool& pool, const conv_geometry& g, T* ws, F&& f) {
    const std::size_t col_n = conv_col_size(g);
    if (conv_split_images(g, pool.size())) {
        pool.run([&](unsigned t, unsigned nt) {
            const std::size_t lo = g.n * t / nt, hi = g.n * (t + 1) / nt;
            T* col = (t == 0 && ws) || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
            for (std::size_t n = lo; n < hi; ++n) f(static_cast<thread_pool*>(nullptr), n, col, t, nt);
        });
    } else {
        T* col = ws || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
        for (std::size_t n = 0; n < g.n; ++n) f(&pool, n, col, 0u, 1u);
    }
}

// ---- grouped and dilated convolutions -------------------------------------------------------

/// One group of one image of g: g.c / groups channels to g.k / groups filters, groups = 1,
/// same kernel, stride, padding and dilation. Its input, output and weights are contiguous
/// slices of g's: group gi of image n starts at unit u = n * groups + gi.
inline conv_geometry conv_group_geometry(const conv_geometry& g) {
    conv_geometry t = g;
    t.n = 1;
    t.c = g.group_channels();
    t.k = g.group_filters();
    t.groups = 1;
    return t;
}

/// Runs f(pool_or_null, unit, col_scratch) for units [0, units): split across threads (serial
/// GEMMs, each thread its own scratch) when every thread gets some and the split is balanced,
/// else in turn with threaded GEMMs (conv_for_images' rule, for (image, group) units).
template <class T, class F>
inline void conv_for_units(thread_pool& pool, std::size_t units, std::size_t col_n, T* ws, F&& f) {
    const std::size_t nt = pool.size();
    if (nt > 1 && units >= nt && (units % nt == 0 || units >= 4 * nt)) {
        pool.run([&](unsigned t, unsigned parts) {
            const std::size_t lo = units * t / parts, hi = units * (t + 1) / parts;
            T* col = (t == 0 && ws) || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
            for (std::size_t u = lo; u < hi; ++u) f(static_cast<thread_pool*>(nullptr), u, col);
        });
    } else {
        T* col = ws || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
        for (std::size_t u = 0; u < units; ++u) f(&pool, u, col);
    }
}

/// Forward of a grouped or dilated convolution: per (image, group), im2col + GEMM.
template <class T>
inline void conv_forward_grouped(thread_pool& pool, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y,
                                 T* ws) {
    const conv_geometry t = conv_group_geometry(g);
    const std::size_t G = g.groups, xs = t.c * t.h * t.w, ys = t.k * t.p * t.q, wn = t.weight_size();
    conv_for_units(pool, g.n * G, conv_col_size(t), ws, [&](thread_pool* p, std::size_t u, T* col) {
        const std::size_t gi = u % G;
        conv_forward_image(p, t, x + u * xs, w + gi * wn, bias ? bias + gi * t.k : bias, y + u * ys, col);
    });
}

/// dx (overwritten) of a grouped or dilated convolution: per (image, group), GEMM + col2im.
template <class T>
inline void conv_backward_data_grouped(thread_pool& pool, const conv_geometry& g, const T* dy, const T* w, T* dx,
                                       T* ws) {
    const conv_geometry t = conv_group_geometry(g);
    const std::size_t G = g.groups, xs = t.c * t.h * t.w, ys = t.k * t.p * t.q, wn = t.weight_size();
    conv_for_units(pool, g.n * G, conv_col_size(t), ws, [&](thread_pool* p, std::size_t u, T* col) {
        conv_backward_data_image(p, t, dy + u * ys, w + (u % G) * wn, dx + u * xs, col);
    });
}

/// dw (overwritten) of a grouped or dilated convolution: each group's slice of dw sums its
/// images' dy_n * col^T. Threads own whole groups when there are enough; else they split the
/// images into private partials added in thread order (as the plain path does); else the
/// GEMMs are threaded.
template <class T>
inline void conv_backward_weights_grouped(thread_pool& pool, const conv_geometry& g, const T* x, const T* dy, T* dw,
                                          T* ws) {
    const conv_geometry t = conv_group_geometry(g);
    const std::size_t G = g.groups, xs = t.c * t.h * t.w, ys = t.k * t.p * t.q, wn = t.weight_size();
    const std::size_t all = g.weight_size(), col_n = conv_col_size(t);
    if (g.n == 0 || g.p * g.q == 0) {
        std::fill(dw, dw + all, T(0));
        return;
    }
    auto image_group = [&](thread_pool* p, std::size_t n, std::size_t gi, T* acc, T* col, bool accumulate) {
        conv_backward_weights_image(p, t, x + (n * G + gi) * xs, dy + (n * G + gi) * ys, acc + gi * wn, col, accumulate);
    };
    const std::size_t nt = pool.size();
    if (nt > 1 && G >= nt) {
        pool.run([&](unsigned th, unsigned parts) {
            T* col = (th == 0 && ws) || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
            for (std::size_t gi = G * th / parts; gi < G * (th + 1) / parts; ++gi)
                for (std::size_t n = 0; n < g.n; ++n) image_group(nullptr, n, gi, dw, col, n > 0);
        });
        return;
    }
    if (!conv_split_images(g, pool.size())) {
        T* col = ws || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
        for (std::size_t n = 0; n < g.n; ++n)
            for (std::size_t gi = 0; gi < G; ++gi) image_group(&pool, n, gi, dw, col, n > 0);
        return;
    }
    // (Bound to a local reference: inside the pool lambda the name would denote each worker's
    // own thread_local.)
    thread_local std::vector<T*> partial_storage;
    std::vector<T*>& partial = partial_storage;
    partial.assign(std::max<std::size_t>(partial.size(), pool.size()), nullptr);
    unsigned used = 1;
    pool.run([&](unsigned th, unsigned parts) {
        if (th == 0) used = parts;
        const std::size_t lo = g.n * th / parts, hi = g.n * (th + 1) / parts;
        T* acc = th == 0 ? dw : thread_scratch<T, slot_partial>(all);
        partial[th] = acc;
        T* col = (th == 0 && ws) || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
        if (lo == hi) std::fill(acc, acc + all, T(0));
        for (std::size_t n = lo; n < hi; ++n)
            for (std::size_t gi = 0; gi < G; ++gi) image_group(nullptr, n, gi, acc, col, n > lo);
    });
    for (unsigned th = 1; th < used; ++th) {
        const T* src = partial[th];
        parallel_range(pool, all, elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            map2(src, dw, dw, lo, hi, [](vec<T> a, vec<T> b) { return a + b; });
        });
    }
}

// ---- the backend's conv kernels (host::conv2d_* forward here) ---------------------------------

/// Forward path choice. Few filters (K <= 32) at stride 1: the direct kernel
/// (conv_direct.hpp). Otherwise the implicit GEMM (whole batch, no im2col buffer) everywhere except a
/// 1x1 stride-1 unpadded convolution on a large map: there each image already is a GEMM
/// operand (no im2col), and P*Q is long enough to feed the per-image GEMMs directly.
constexpr bool conv_use_igemm(bool pointwise, std::size_t pq) { return !(pointwise && pq >= 2048); }
inline bool conv_use_igemm(const conv_geometry& g) { return conv_use_igemm(conv_is_pointwise(g), g.p * g.q); }

/// Scratch (in T elements) the caller passes to the conv kernels: one image's im2col matrix
/// (C*R*S x P*Q), or 0 for a 1x1 stride-1 unpadded convolution. Other threads use their own
/// thread-local scratch; a null workspace is also accepted.
inline std::size_t conv2d_workspace_size(const conv_geometry& g) {
    if (g.plain()) return conv_col_size(g);
    return conv_is_depthwise(g) ? 0 : conv_col_size(conv_group_geometry(g));  // one group's im2col
}

/// Forward of a grouped or dilated convolution (g.plain() false).
template <class T>
inline void conv2d_forward_general(thread_pool& pool, const conv_geometry& g, const T* x, const T* w, const T* bias,
                                   T* y, T* ws) {
    if (conv_is_depthwise(g))
        conv_forward_depthwise(pool, g, x, w, bias, y);
    else
        conv_forward_grouped(pool, g, x, w, bias, y, ws);
}

/// Forward by per-image im2col (skipped for 1x1) + GEMM.
template <class T>
inline void conv2d_forward_per_image(thread_pool& pool, const conv_geometry& g, const T* x, const T* w, const T* bias,
                                     T* y, T* ws) {
    const std::size_t in = g.c * g.h * g.w, out = g.k * g.p * g.q;
    conv_for_images(pool, g, ws, [&](thread_pool* p, std::size_t n, T* col, unsigned, unsigned) {
        conv_forward_image(p, g, x + n * in, w, bias, y + n * out, col);
    });
}

template <class T>
inline void conv2d_forward(thread_pool& pool, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y,
                           T* ws) {
    if (!g.plain()) {
        conv2d_forward_general(pool, g, x, w, bias, y, ws);
        return;
    }
    if (conv_use_direct(g))
        conv_forward_direct(&pool, g, x, w, bias, y);
    else if (conv_use_igemm(g))
        conv_forward_igemm(&pool, g, x, w, bias, y);
    else
        conv2d_forward_per_image(pool, g, x, w, bias, y, ws);
}

/// Forward with the layer's shape known at compile time: the path is fixed per layer.
template <class Shape, class T>
inline void conv2d_forward(thread_pool& pool, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y,
                           T* ws, Shape) {
    if constexpr (!Shape::plain)
        conv2d_forward_general(pool, g, x, w, bias, y, ws);
    else if constexpr (conv_use_direct(Shape::k, Shape::stride))
        conv_forward_direct(&pool, g, x, w, bias, y);
    else if constexpr (conv_use_igemm(Shape::pointwise, Shape::p * Shape::q))
        conv_forward_igemm(&pool, g, x, w, bias, y);
    else
        conv2d_forward_per_image(pool, g, x, w, bias, y, ws);
}

/// dx = conv2d^T(dy, w) (overwrites dx).
template <class T>
inline void conv2d_backward_data(thread_pool& pool, const conv_geometry& g, const T* dy, const T* w, T* dx, T* ws) {
    if (!g.plain()) {
        if (conv_is_depthwise(g))
            conv_backward_data_depthwise(pool, g, dy, w, dx);
        else
            conv_backward_data_grouped(pool, g, dy, w, dx, ws);
        return;
    }
    if (conv_use_direct_backward_data(g)) {
        conv_backward_data_direct(&pool, g, dy, w, dx);
        return;
    }
    // 1x1 stride-1 unpadded: dx_n = W^T * dy_n directly (no col2im), per image.
    if (!conv_is_pointwise(g) && (pool.size() == 1 || g.c >= pool.size())) {
        conv_backward_data_igemm(&pool, g, dy, w, dx);
        return;
    }
    const std::size_t in = g.c * g.h * g.w, out = g.k * g.p * g.q;
    conv_for_images(pool, g, ws, [&](thread_pool* p, std::size_t n, T* col, unsigned, unsigned) {
        conv_backward_data_image(p, g, dy + n * out, w, dx + n * in, col);
    });
}

/// db[k] = sum of dy over n, p, q (overwrites db).
template <class T>
inline void conv_bias_grad(thread_pool& pool, const conv_geometry& g, const T* dy, T* db) {
    const std::size_t pq = g.p * g.q;
    parallel_range(pool, g.k, plane_grain(g.n * pq), [&](std::size_t lo, std::size_t hi) {
        for (std::size_t k = lo; k < hi; ++k) {
            T s = 0;
            for (std::size_t n = 0; n < g.n; ++n) s += contiguous_sum(dy + (n * g.k + k) * pq, pq);
            db[k] = s;
        }
    });
}

/// dw = sum over the batch of x (*) dy (overwrites dw); db[k] = sum of dy over n, p, q when
/// db is not null (overwrites db).
template <class T>
inline void conv2d_backward_weights(thread_pool& pool, const conv_geometry& g, const T* x, const T* dy, T* dw, T* db,
                                    T* ws) {
    const std::size_t in = g.c * g.h * g.w, out = g.k * g.p * g.q, wn = g.weight_size();
    if (db) conv_bias_grad(pool, g, dy, db);
    if (!g.plain()) {
        if (conv_is_depthwise(g))
            conv_backward_weights_depthwise(pool, g, x, dy, dw);
        else
            conv_backward_weights_grouped(pool, g, x, dy, dw, ws);
        return;
    }
    if (g.n == 0 || g.p * g.q == 0) {
        std::fill(dw, dw + wn, T(0));
        return;
    }
    if (!conv_split_images(g, pool.size())) {
        conv_for_images(pool, g, ws, [&](thread_pool* p, std::size_t n, T* col, unsigned, unsigned) {
            conv_backward_weights_image(p, g, x + n * in, dy + n * out, dw, col, n > 0);
        });
        return;
    }
    // Images split across threads: thread t accumulates its images into its own partial
    // (thread 0 into dw), then the partials are added to dw in thread order.
    // Grow-only per calling thread: no allocation on the hot path after the first call.
    // (Bound to a local reference: inside the pool lambda the name would denote each
    // worker's own thread_local.)
    thread_local std::vector<T*> partial_storage;
    std::vector<T*>& partial = partial_storage;
    partial.assign(std::max<std::size_t>(partial.size(), pool.size()), nullptr);
    unsigned used = 1;
    const std::size_t col_n = conv_col_size(g);
    pool.run([&](unsigned t, unsigned nt) {
        if (t == 0) used = nt;
        const std::size_t lo = g.n * t / nt, hi = g.n * (t + 1) / nt;
        T* acc = t == 0 ? dw : thread_scratch<T, slot_partial>(wn);
        partial[t] = acc;
        T* col = (t == 0 && ws) || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
        if (lo == hi) std::fill(acc, acc + wn, T(0));
        for (std::size_t n = lo; n < hi; ++n)
            conv_backward_weights_image<T>(nullptr, g, x + n * in, dy + n * out, acc, col, n > lo);
    });
    for (unsigned t = 1; t < used; ++t) {
        const T* src = partial[t];
        parallel_range(pool, wn, elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            map2(src, dw, dw, lo, hi, [](vec<T> a, vec<T> b) { return a + b; });
        });
    }
}

}  // namespace lamina::host_detail
// ---- end include/lamina/backends/host/conv.hpp ----

// ---- begin include/lamina/backends/host/losses.hpp ----
// lamina host backend: row-wise softmax and the losses. Rows are independent, so rows are
// split across threads and each row is a few vectorised passes over contiguous memory.



namespace lamina::host_detail {

template <class T>
inline T row_max(const T* x, std::size_t n) {
    constexpr std::size_t W = vec_size<T>;
    T m = x[0];
    std::size_t i = 0;
    if (n >= W) {
        vec<T> vm = load(x);
        for (i = W; i + W <= n; i += W) vm = xsimd::max(vm, load(x + i));
        alignas(64) T t[W];
        vm.store_aligned(t);
        for (std::size_t j = 0; j < W; ++j) m = std::max(m, t[j]);
    }
    // The tail (< W elements) as a bounded count: GCC 12 otherwise misjudges the trip count
    // once a small constant n is inlined (a false -Waggressive-loop-optimizations).
    const std::size_t rem = n - i;
    for (std::size_t k = 0; k < rem && k < W; ++k) m = std::max(m, x[i + k]);
    return m;
}

/// y = exp(x - shift), returns the sum of y.
template <class T>
inline T exp_shifted(const T* x, T* y, std::size_t n, T shift) {
    constexpr std::size_t W = vec_size<T>;
    const vec<T> vs(shift);
    vec<T> acc(T(0));
    std::size_t i = 0;
    for (; i + W <= n; i += W) {
        vec<T> e = xsimd::exp(load(x + i) - vs);
        store(y + i, e);
        acc += e;
    }
    T s = hsum(acc);
    if (i < n) {
        vec<T> e = xsimd::exp(load_tail(x + i, n - i) - vs);
        alignas(64) T t[W];
        e.store_aligned(t);
        for (std::size_t j = 0; j < n - i; ++j) {
            y[i + j] = t[j];
            s += t[j];
        }
    }
    return s;
}

template <class T>
inline void softmax_rows(const T* x, T* y, std::size_t cols, std::size_t r_lo, std::size_t r_hi) {
    for (std::size_t r = r_lo; r < r_hi; ++r) {
        const T* xr = x + r * cols;
        T* yr = y + r * cols;
        const T s = exp_shifted(xr, yr, cols, row_max(xr, cols));
        const vec<T> vs(s);
        map1(yr, yr, 0, cols, [&](vec<T> v) { return v / vs; });
    }
}

template <class T>
inline void softmax_backward_rows(const T* y, const T* dy, T* dx, std::size_t cols, std::size_t r_lo,
                                  std::size_t r_hi) {
    constexpr std::size_t W = vec_size<T>;
    for (std::size_t r = r_lo; r < r_hi; ++r) {
        const T* yr = y + r * cols;
        const T* dyr = dy + r * cols;
        vec<T> acc(T(0));
        std::size_t c = 0;
        for (; c + W <= cols; c += W) acc = xsimd::fma(load(dyr + c), load(yr + c), acc);
        T dot = hsum(acc);
        const std::size_t rem = cols - c;  // < W; a bounded count (GCC 12's false -Waggressive-loop-optimizations)
        for (std::size_t k = 0; k < rem && k < W; ++k) dot += dyr[c + k] * yr[c + k];
        const vec<T> vdot(dot);
        map2(yr, dyr, dx + r * cols, 0, cols, [&](vec<T> yv, vec<T> d) { return yv * (d - vdot); });
    }
}

template <class T>
inline void softmax_cross_entropy_rows(const T* logits, const T* labels, T* grad, T* loss_rows, std::size_t cols,
                                       T smoothing, T grad_scale, std::size_t r_lo, std::size_t r_hi) {
    constexpr std::size_t W = vec_size<T>;
    const T off = smoothing / static_cast<T>(cols);  // every class's target share
    for (std::size_t r = r_lo; r < r_hi; ++r) {
        const T* x = logits + r * cols;
        T* g = grad + r * cols;
        const T m = row_max(x, cols);
        // exp(x - m) goes to g as scratch; its sum gives log-sum-exp.
        const T log_s = std::log(exp_shifted(x, g, cols, m)) + m;
        const vec<T> vls(log_s), voff(off), vscale(grad_scale);
        // loss = -sum_c target_c * (x_c - log_s) = -off * sum_c (x_c - log_s) - (1 - e) * (x_l - log_s)
        vec<T> acc(T(0));
        std::size_t c = 0;
        for (; c + W <= cols; c += W) {
            vec<T> logp = load(x + c) - vls;
            acc += logp;
            store(g + c, (xsimd::exp(logp) - voff) * vscale);
        }
        T sum_logp = hsum(acc);
        for (; c < cols; ++c) {
            T logp = x[c] - log_s;
            sum_logp += logp;
            g[c] = (std::exp(logp) - off) * grad_scale;
        }
        T loss = -off * sum_logp;
        const auto label = static_cast<std::size_t>(labels[r]);
        if (label < cols) {
            const T target = (T(1) - smoothing) + off;
            const T logp = x[label] - log_s;
            loss -= (T(1) - smoothing) * logp;
            g[label] = (std::exp(logp) - target) * grad_scale;
        }
        loss_rows[r] = loss;
    }
}

/// Mean squared (Abs = false) or absolute (Abs = true) error of each row, with gradient.
template <bool Abs, class T>
inline void regression_loss_rows(const T* pred, const T* target, T* grad, T* loss_rows, std::size_t cols,
                                 T grad_scale, std::size_t r_lo, std::size_t r_hi) {
    constexpr std::size_t W = vec_size<T>;
    using V = vec<T>;
    const T inv_cols = T(1) / static_cast<T>(cols);
    const V zero(T(0)), one(T(1)), gs(Abs ? grad_scale * inv_cols : T(2) * inv_cols * grad_scale);
    auto row_op = [&](V d, V& acc) {
        if constexpr (Abs) {
            acc += xsimd::abs(d);
            V sign = xsimd::select(d > zero, one, xsimd::select(d < zero, -one, d * zero));  // NaN stays NaN
            return sign * gs;
        } else {
            acc = xsimd::fma(d, d, acc);
            return d * gs;
        }
    };
    for (std::size_t r = r_lo; r < r_hi; ++r) {
        const T* p = pred + r * cols;
        const T* t = target + r * cols;
        T* g = grad + r * cols;
        V acc(T(0));
        std::size_t c = 0;
        for (; c + W <= cols; c += W) store(g + c, row_op(load(p + c) - load(t + c), acc));
        if (c < cols) {
            // Padding lanes are 0 - 0: they add nothing to the loss.
            store_tail(g + c, row_op(load_tail(p + c, cols - c) - load_tail(t + c, cols - c), acc), cols - c);
        }
        loss_rows[r] = hsum(acc) * inv_cols;
    }
}

}  // namespace lamina::host_detail
// ---- end include/lamina/backends/host/losses.hpp ----

// ---- begin include/lamina/backends/host/optimizer_updates.hpp ----
// lamina host backend: fused optimizer updates (one pass over w, g and the state).


namespace lamina::host_detail {

template <class T>
inline void sgd_range(T* w, const T* g, T* velocity, const sgd_step<T>& s, std::size_t lo, std::size_t hi) {
    using V = vec<T>;
    constexpr std::size_t W = vec_size<T>;
    const V lr(s.lr), mom(s.momentum), wd(s.weight_decay);
    const bool use_momentum = s.momentum != T(0);
    auto step = [&](V wv, V gv, V& vv) {
        V grad = gv + wd * wv;
        if (use_momentum) {
            vv = mom * vv + grad;
            grad = s.nesterov ? grad + mom * vv : vv;
        }
        return wv - lr * grad;
    };
    std::size_t i = lo;
    for (; i + W <= hi; i += W) {
        V vv = use_momentum ? load(velocity + i) : V(T(0));
        store(w + i, step(load(w + i), load(g + i), vv));
        if (use_momentum) store(velocity + i, vv);
    }
    if (i < hi) {
        const std::size_t rem = hi - i;
        V vv = use_momentum ? load_tail(velocity + i, rem) : V(T(0));
        store_tail(w + i, step(load_tail(w + i, rem), load_tail(g + i, rem), vv), rem);
        if (use_momentum) store_tail(velocity + i, vv, rem);
    }
}

template <class T>
inline void adam_range(T* w, const T* g, T* m, T* v, const adam_step<T>& s, std::size_t lo, std::size_t hi) {
    using V = vec<T>;
    constexpr std::size_t W = vec_size<T>;
    const V lr(s.lr), b1(s.beta1), b2(s.beta2), omb1(T(1) - s.beta1), omb2(T(1) - s.beta2), eps(s.eps),
        wd(s.weight_decay), lrwd(s.lr * s.weight_decay), bc1(s.bias_correction1), bc2(s.bias_correction2);
    auto step = [&](V wv, V gv, V& mv, V& vv) {
        if (s.decoupled)
            wv = wv - lrwd * wv;
        else
            gv = gv + wd * wv;
        mv = b1 * mv + omb1 * gv;
        vv = b2 * vv + omb2 * gv * gv;
        V mhat = mv / bc1, vhat = vv / bc2;
        return wv - lr * mhat / (xsimd::sqrt(vhat) + eps);
    };
    std::size_t i = lo;
    for (; i + W <= hi; i += W) {
        V mv = load(m + i), vv = load(v + i);
        store(w + i, step(load(w + i), load(g + i), mv, vv));
        store(m + i, mv);
        store(v + i, vv);
    }
    if (i < hi) {
        const std::size_t rem = hi - i;
        V mv = load_tail(m + i, rem), vv = load_tail(v + i, rem);
        store_tail(w + i, step(load_tail(w + i, rem), load_tail(g + i, rem), mv, vv), rem);
        store_tail(m + i, mv, rem);
        store_tail(v + i, vv, rem);
    }
}

}  // namespace lamina::host_detail
// ---- end include/lamina/backends/host/optimizer_updates.hpp ----


namespace lamina {

struct host {
    static constexpr const char* name = "host";

    /// Execution resources: a thread pool shared by all copies of the context (kernels take
    /// the context by const reference and still run the pool).
    class context {
    public:
        context() : context(threads{}) {}
        explicit context(threads t) : pool_(std::make_shared<thread_pool>(t.count)) {}
        unsigned thread_count() const noexcept { return pool_->size(); }
        thread_pool& pool() const noexcept { return *pool_; }

    private:
        std::shared_ptr<thread_pool> pool_;
    };

    template <class T>
    using buffer = aligned_buffer<T>;

    static constexpr bool host_accessible = true;

    // ---- memory at the edges -------------------------------------------------------------
    template <class T>
    static void upload(const context&, T* dst, const T* host_src, std::size_t n) {
        if (n) std::memcpy(static_cast<void*>(dst), host_src, n * sizeof(T));
    }
    template <class T>
    static void download(const context&, T* host_dst, const T* src, std::size_t n) {
        if (n) std::memcpy(static_cast<void*>(host_dst), src, n * sizeof(T));
    }

    // ---- elementwise and reductions --------------------------------------------------------
    template <class T>
    static void fill(const context& ctx, T* x, std::size_t n, T v) {
        host_detail::parallel_range(ctx.pool(), n, host_detail::elementwise_grain,
                                    [&](std::size_t lo, std::size_t hi) { std::fill(x + lo, x + hi, v); });
    }
    template <class T>
    static void copy(const context& ctx, T* dst, const T* src, std::size_t n) {
        if (dst == src) return;
        host_detail::parallel_range(ctx.pool(), n, host_detail::elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            std::memmove(static_cast<void*>(dst + lo), src + lo, (hi - lo) * sizeof(T));
        });
    }
    /// y += a * x
    template <class T>
    static void axpy(const context& ctx, std::size_t n, T a, const T* x, T* y) {
        const host_detail::vec<T> va(a);
        host_detail::parallel_range(ctx.pool(), n, host_detail::elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            host_detail::map2(x, y, y, lo, hi, [&](host_detail::vec<T> xv, host_detail::vec<T> yv) { return yv + va * xv; });
        });
    }
    template <class T>
    static void scale(const context& ctx, std::size_t n, T a, T* x) {
        const host_detail::vec<T> va(a);
        host_detail::parallel_range(ctx.pool(), n, host_detail::elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            host_detail::map1(x, x, lo, hi, [&](host_detail::vec<T> v) { return v * va; });
        });
    }
    /// y = a * b elementwise
    template <class T>
    static void multiply(const context& ctx, std::size_t n, const T* a, const T* b, T* y) {
        host_detail::parallel_range(ctx.pool(), n, host_detail::elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            host_detail::map2(a, b, y, lo, hi, [](host_detail::vec<T> u, host_detail::vec<T> v) { return u * v; });
        });
    }
    /// Sum of x, accumulated in double (per-thread partials combined in thread order).
    template <class T>
    static T sum(const context& ctx, const T* x, std::size_t n) {
        return static_cast<T>(host_detail::sum_parallel(ctx.pool(), x, n));
    }
    /// Index of the largest entry of each row (first one on ties).
    template <class T>
    static void argmax_rows(const context& ctx, const T* x, std::int32_t* idx, std::size_t rows, std::size_t cols) {
        host_detail::parallel_range(ctx.pool(), rows, host_detail::plane_grain(cols), [&](std::size_t lo, std::size_t hi) {
            for (std::size_t r = lo; r < hi; ++r) {
                const T* xr = x + r * cols;
                std::size_t best = 0;
                for (std::size_t c = 1; c < cols; ++c)
                    if (xr[c] > xr[best]) best = c;
                idx[r] = static_cast<std::int32_t>(best);
            }
        });
    }
    /// Calls f(i) for i in [0, n), split across the pool's threads.
    template <class F>
    static void for_each_index(const context& ctx, std::size_t n, F&& f) {
        for_each_index(ctx, n, std::forward<F>(f), 1);
    }
    /// The same with the cost of one item in elementary operations (a per-channel reduction
    /// over a whole batch is one item of many), so that few heavy items still spread over
    /// the threads while many light ones are chunked.
    template <class F>
    static void for_each_index(const context& ctx, std::size_t n, F&& f, std::size_t work_per_item) {
        const std::size_t grain = std::max<std::size_t>(1, 1024 / std::max<std::size_t>(1, work_per_item));
        host_detail::parallel_range(ctx.pool(), n, grain, [&](std::size_t lo, std::size_t hi) {
            for (std::size_t i = lo; i < hi; ++i) f(i);
        });
    }

    // ---- bias over channels: y is [outer][channels][inner] ---------------------------------
    template <class T>
    static void add_channel_bias(const context& ctx, T* y, const T* b, std::size_t outer, std::size_t channels,
                                 std::size_t inner) {
        using V = host_detail::vec<T>;
        if (inner == 1) {  // dense layers: add the bias vector to each row
            host_detail::parallel_range(ctx.pool(), outer, host_detail::plane_grain(channels),
                                        [&](std::size_t lo, std::size_t hi) {
                                            for (std::size_t o = lo; o < hi; ++o)
                                                host_detail::map2(y + o * channels, b, y + o * channels, 0, channels,
                                                                  [](V u, V v) { return u + v; });
                                        });
            return;
        }
        host_detail::parallel_range(ctx.pool(), outer * channels, host_detail::plane_grain(inner),
                                    [&](std::size_t lo, std::size_t hi) {
                                        for (std::size_t oc = lo; oc < hi; ++oc) {
                                            const V vb(b[oc % channels]);
                                            host_detail::map1(y + oc * inner, y + oc * inner, 0, inner,
                                                              [&](V v) { return v + vb; });
                                        }
                                    });
    }
    /// db[c] = sum over outer and inner of dy (overwrites db).
    template <class T>
    static void channel_bias_grad(const context& ctx, const T* dy, T* db, std::size_t outer, std::size_t channels,
                                  std::size_t inner) {
        if (inner == 1) {  // column sums of an outer x channels matrix, split by channel blocks
            constexpr std::size_t W = host_detail::vec_size<T>;
            const std::size_t blocks = (channels + W - 1) / W;
            host_detail::parallel_range(ctx.pool(), blocks, host_detail::plane_grain(outer * W),
                                        [&](std::size_t lo, std::size_t hi) {
                                            host_detail::column_sums(dy, db, outer, channels, lo * W,
                                                                     std::min(channels, hi * W));
                                        });
            return;
        }
        host_detail::parallel_range(ctx.pool(), channels, host_detail::plane_grain(outer * inner),
                                    [&](std::size_t lo, std::size_t hi) {
                                        for (std::size_t c = lo; c < hi; ++c) {
                                            T s = 0;
                                            for (std::size_t o = 0; o < outer; ++o)
                                                s += host_detail::contiguous_sum(dy + (o * channels + c) * inner, inner);
                                            db[c] = s;
                                        }
                                    });
    }

    // ---- GEMM: C = alpha * op(A) * op(B) + beta * C, row-major ------------------------------
    template <class T>
    static void gemm(const context& ctx, transpose ta, transpose tb, std::size_t M, std::size_t N, std::size_t K, T alpha,
                     const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
        host_detail::gemm_parallel(&ctx.pool(), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
    /// GEMM with a fused epilogue: C = act(alpha * op(A) * op(B) + beta * C + bias), bias
    /// (N entries, one per column of C) may be null. Applied while each C tile is in registers.
    template <class T>
    static void gemm_bias_act(const context& ctx, transpose ta, transpose tb, std::size_t M, std::size_t N,
                              std::size_t K, T alpha, const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta,
                              T* C, std::size_t ldc, const T* bias, activation act) {
        host_detail::gemm_parallel(&ctx.pool(), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                                   host_detail::gemm_epilogue<T>{bias, act});
    }

    // ---- activations -------------------------------------------------------------------------
    template <class T>
    static void activation_forward(const context& ctx, activation a, const T* x, T* y, std::size_t n) {
        host_detail::parallel_range(ctx.pool(), n, host_detail::activation_grain(a.kind),
                                    [&](std::size_t lo, std::size_t hi) {
                                        host_detail::activation_forward_range(a, x, y, lo, hi);
                                    });
    }
    /// dx = f'(x) * dy, with y = f(x) available (sigmoid and tanh use it).
    template <class T>
    static void activation_backward(const context& ctx, activation a, const T* x, const T* y, const T* dy, T* dx,
                                    std::size_t n) {
        host_detail::parallel_range(ctx.pool(), n, host_detail::activation_grain(a.kind),
                                    [&](std::size_t lo, std::size_t hi) {
                                        host_detail::activation_backward_range(a, x, y, dy, dx, lo, hi);
                                    });
    }

    // ---- softmax over the last dimension of a rows x cols matrix -------------------------------
    template <class T>
    static void softmax_forward(const context& ctx, const T* x, T* y, std::size_t rows, std::size_t cols) {
        host_detail::parallel_range(ctx.pool(), rows, row_grain(cols), [&](std::size_t lo, std::size_t hi) {
            host_detail::softmax_rows(x, y, cols, lo, hi);
        });
    }
    template <class T>
    static void softmax_backward(const context& ctx, const T* y, const T* dy, T* dx, std::size_t rows, std::size_t cols) {
        host_detail::parallel_range(ctx.pool(), rows, host_detail::plane_grain(cols),
                                    [&](std::size_t lo, std::size_t hi) {
                                        host_detail::softmax_backward_rows(y, dy, dx, cols, lo, hi);
                                    });
    }

    // ---- losses --------------------------------------------------------------------------------
    template <class T>
    static void softmax_cross_entropy(const context& ctx, const T* logits, const T* labels, T* grad, T* loss_rows,
                                      std::size_t rows, std::size_t cols, T smoothing, T grad_scale) {
        host_detail::parallel_range(ctx.pool(), rows, row_grain(cols), [&](std::size_t lo, std::size_t hi) {
            host_detail::softmax_cross_entropy_rows(logits, labels, grad, loss_rows, cols, smoothing, grad_scale, lo, hi);
        });
    }
    template <class T>
    static void mse(const context& ctx, const T* pred, const T* target, T* grad, T* loss_rows, std::size_t rows,
                    std::size_t cols, T grad_scale) {
        host_detail::parallel_range(ctx.pool(), rows, host_detail::plane_grain(cols), [&](std::size_t lo, std::size_t hi) {
            host_detail::regression_loss_rows<false>(pred, target, grad, loss_rows, cols, grad_scale, lo, hi);
        });
    }
    template <class T>
    static void mae(const context& ctx, const T* pred, const T* target, T* grad, T* loss_rows, std::size_t rows,
                    std::size_t cols, T grad_scale) {
        host_detail::parallel_range(ctx.pool(), rows, host_detail::plane_grain(cols), [&](std::size_t lo, std::size_t hi) {
            host_detail::regression_loss_rows<true>(pred, target, grad, loss_rows, cols, grad_scale, lo, hi);
        });
    }

    // ---- pooling (NCHW) -------------------------------------------------------------------------
    /// argmax may be null (inference): then only y is written.
    template <class T>
    static void max_pool_forward(const context& ctx, const pool_geometry& g, const T* x, T* y, std::int32_t* argmax) {
        host_detail::parallel_range(ctx.pool(), g.n * g.c, host_detail::plane_grain(g.h * g.w),
                                    [&](std::size_t lo, std::size_t hi) {
                                        host_detail::max_pool_planes(g, x, y, argmax, lo, hi);
                                    });
    }
    template <class T>
    static void max_pool_backward(const context& ctx, const pool_geometry& g, const T* dy, const std::int32_t* argmax,
                                  T* dx) {
        host_detail::parallel_range(ctx.pool(), g.n * g.c, host_detail::plane_grain(g.h * g.w),
                                    [&](std::size_t lo, std::size_t hi) {
                                        host_detail::max_pool_backward_planes(g, dy, argmax, dx, lo, hi);
                                    });
    }
    template <class T>
    static void avg_pool_forward(const context& ctx, const pool_geometry& g, const T* x, T* y) {
        host_detail::parallel_range(ctx.pool(), g.n * g.c, host_detail::plane_grain(g.h * g.w),
                                    [&](std::size_t lo, std::size_t hi) {
                                        host_detail::avg_pool_planes(g, x, y, lo, hi);
                                    });
    }
    template <class T>
    static void avg_pool_backward(const context& ctx, const pool_geometry& g, const T* dy, T* dx) {
        host_detail::parallel_range(ctx.pool(), g.n * g.c, host_detail::plane_grain(g.h * g.w),
                                    [&](std::size_t lo, std::size_t hi) {
                                        host_detail::avg_pool_backward_planes(g, dy, dx, lo, hi);
                                    });
    }

    // ---- convolution (conv.hpp: implicit GEMM forward, im2col + GEMM backward; grouped,
    // dilated and depthwise convolutions on their own paths) -----------------------------------
    template <class T>
    static std::size_t conv2d_workspace(const conv_geometry& g) {
        return host_detail::conv2d_workspace_size(g);
    }
    template <class T>
    static void conv2d_forward(const context& ctx, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y,
                               T* ws) {
        host_detail::conv2d_forward(ctx.pool(), g, x, w, bias, y, ws);
    }
    /// dx = conv2d^T(dy, w) (overwrites dx).
    template <class T>
    static void conv2d_backward_data(const context& ctx, const conv_geometry& g, const T* dy, const T* w, T* dx, T* ws) {
        host_detail::conv2d_backward_data(ctx.pool(), g, dy, w, dx, ws);
    }
    /// dw = sum over the batch of x (*) dy (overwrites dw); db = sum of dy over n, p, q when
    /// not null (overwrites db).
    template <class T>
    static void conv2d_backward_weights(const context& ctx, const conv_geometry& g, const T* x, const T* dy, T* dw, T* db,
                                        T* ws) {
        host_detail::conv2d_backward_weights(ctx.pool(), g, x, dy, dw, db, ws);
    }
    /// The same kernels with the layer's compile-time shape (geometry.hpp's conv_shape) as a
    /// trailing tag: the path is chosen per layer at compile time.
    template <class T, std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
              std::size_t St, std::size_t Pd, std::size_t Dl, std::size_t Gr>
    static void conv2d_forward(const context& ctx, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y,
                               T* ws, conv_shape<C, H, W, K, R, S, St, Pd, Dl, Gr> shape) {
        host_detail::conv2d_forward(ctx.pool(), g, x, w, bias, y, ws, shape);
    }
    template <class T, std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
              std::size_t St, std::size_t Pd, std::size_t Dl, std::size_t Gr>
    static void conv2d_backward_data(const context& ctx, const conv_geometry& g, const T* dy, const T* w, T* dx, T* ws,
                                     conv_shape<C, H, W, K, R, S, St, Pd, Dl, Gr>) {
        host_detail::conv2d_backward_data(ctx.pool(), g, dy, w, dx, ws);
    }
    template <class T, std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
              std::size_t St, std::size_t Pd, std::size_t Dl, std::size_t Gr>
    static void conv2d_backward_weights(const context& ctx, const conv_geometry& g, const T* x, const T* dy, T* dw, T* db,
                                        T* ws, conv_shape<C, H, W, K, R, S, St, Pd, Dl, Gr>) {
        host_detail::conv2d_backward_weights(ctx.pool(), g, x, dy, dw, db, ws);
    }

    // ---- dropout: element i is kept iff stream.uniform(i) >= p; mask holds 0 or 1/(1-p) ------
    template <class T>
    static void dropout_forward(const context& ctx, const T* x, T* y, T* mask, std::size_t n, T p, random_stream stream) {
        const T keep_scale = T(1) / (T(1) - p);
        host_detail::parallel_range(ctx.pool(), n, host_detail::transcendental_grain, [&](std::size_t lo, std::size_t hi) {
            for (std::size_t i = lo; i < hi; ++i) mask[i] = static_cast<T>(stream.uniform(i)) >= p ? keep_scale : T(0);
            host_detail::map2(x, mask, y, lo, hi, [](host_detail::vec<T> u, host_detail::vec<T> v) { return u * v; });
        });
    }

    // ---- optimizer updates ---------------------------------------------------------------
    template <class T>
    static void sgd_update(const context& ctx, T* w, const T* g, T* velocity, std::size_t n, const sgd_step<T>& s) {
        host_detail::parallel_range(ctx.pool(), n, host_detail::elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            host_detail::sgd_range(w, g, velocity, s, lo, hi);
        });
    }
    template <class T>
    static void adam_update(const context& ctx, T* w, const T* g, T* m, T* v, std::size_t n, const adam_step<T>& s) {
        host_detail::parallel_range(ctx.pool(), n, host_detail::elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            host_detail::adam_range(w, g, m, v, s, lo, hi);
        });
    }

private:
    // Rows of softmax-like work: exp dominates, so fewer elements justify a thread.
    static std::size_t row_grain(std::size_t cols) {
        return std::max<std::size_t>(1, host_detail::transcendental_grain / std::max<std::size_t>(1, cols));
    }
};

}  // namespace lamina

// Kernel sets the host backend specialises (after `host` is complete).
// ---- begin include/lamina/backends/host/batch_norm.hpp ----
// lamina host backend: batch norm's kernels (the specialisation of batch_norm_kernels in
// backends/portable/batch_norm.hpp). Every pass walks whole (image, channel) planes, which are
// contiguous in NCHW, with xsimd vectors:
//   - statistics: one pass per channel, sums of x - x0 and (x - x0)^2 shifted by the channel's
//     first value (no cancellation for data far from zero), vector partial sums per plane
//     combined in double; channels split across the pool's threads;
//   - normalise: y = x a_c + b_c per plane;
//   - backward: per channel sum dy and sum dy x in one pass, then dx = k1 dy + k2 x + k3 per
//     plane (x-hat expanded, so no second pass over the statistics).
// Results match the portable kernels up to floating-point reassociation. The *_synced kernels
// (synchronised batch norm) compute the per-channel sums in double about the running mean (the
// shift every process shares) and reduce them before they are used.


// ---- begin include/lamina/backends/portable/batch_norm.hpp ----
// lamina: batch norm's kernels written once for every backend with Backend::for_each_index
// (one work item per channel for the reductions, one per element for the passes). A backend
// with faster ones specialises batch_norm_kernels (backends/host/batch_norm.hpp does);
// layers/batch_norm.hpp calls only these.
//
// Layout: x, y, dy, dx are [n][channels][inner] (NCHW, or [n][features] with inner = 1).
//
// The *_synced kernels are synchronised batch norm (`Sync` is layers/batch_statistics.hpp's
// batch_statistics_sync: a reducer and 2C + 1 doubles of scratch on the device and host): the
// per-channel sums go through the reducer between the statistics pass and the pass that
// uses them. Statistics are summed about the running mean, which is the same on every
// process (it is updated from the global statistics), so every process shifts by the same
// value and sums of squares do not cancel for data far from zero.



namespace lamina {

template <class Backend, class = void>
struct batch_norm_kernels {
    using context = typename Backend::context;

    /// Training: per channel the batch mean and 1/sqrt(biased var + eps) into mean/invstd,
    /// the running statistics updated with momentum (unbiased variance), and
    /// y = (x - mean) invstd gamma + beta.
    template <class T>
    static void forward_train(const context& c, const T* x, T* y, T* mean, T* invstd, T* rmean, T* rvar,
                              const T* gamma, const T* beta, std::size_t n, std::size_t C, std::size_t HW, double eps,
                              double momentum) {
        const double count = double(n * HW);
        const double unbias = count > 1 ? count / (count - 1) : 1.0;
        const double e = eps, m = momentum;
        Backend::for_each_index(
            c, C,
            LAMINA_LAMBDA(std::size_t ch) {
                double s = 0;
                for (std::size_t b = 0; b < n; ++b)
                    for (std::size_t j = 0; j < HW; ++j) s += double(x[(b * C + ch) * HW + j]);
                const double mu = s / count;
                double v = 0;
                for (std::size_t b = 0; b < n; ++b)
                    for (std::size_t j = 0; j < HW; ++j) {
                        const double d = double(x[(b * C + ch) * HW + j]) - mu;
                        v += d * d;
                    }
                v /= count;
                mean[ch] = static_cast<T>(mu);
                invstd[ch] = static_cast<T>(1.0 / std::sqrt(v + e));
                rmean[ch] = static_cast<T>((1.0 - m) * double(rmean[ch]) + m * mu);
                rvar[ch] = static_cast<T>((1.0 - m) * double(rvar[ch]) + m * v * unbias);
            },
            3 * n * HW);
        Backend::for_each_index(c, n * C * HW, LAMINA_LAMBDA(std::size_t i) {
            const std::size_t ch = (i / HW) % C;
            y[i] = (x[i] - mean[ch]) * invstd[ch] * gamma[ch] + beta[ch];
        });
    }

    /// Inference: y = (x - running mean) / sqrt(running var + eps) gamma + beta.
    template <class T>
    static void forward(const context& c, const T* x, T* y, const T* rmean, const T* rvar, const T* gamma,
                        const T* beta, std::size_t n, std::size_t C, std::size_t HW, double eps) {
        const T e = static_cast<T>(eps);
        Backend::for_each_index(c, n * C * HW, LAMINA_LAMBDA(std::size_t i) {
            const std::size_t ch = (i / HW) % C;
            y[i] = (x[i] - rmean[ch]) / std::sqrt(rvar[ch] + e) * gamma[ch] + beta[ch];
        });
    }

    /// dgamma = sum dy x-hat, dbeta = sum dy (overwritten); then, when dx is not null,
    /// dx (+)= gamma invstd / M (M dy - dbeta - x-hat dgamma), M = n * HW. Reports through
    /// `ready()` between the two (the sink contract: parameter gradients before dx).
    template <class T, class Ready>
    static void backward(const context& c, const T* x, const T* dy, const T* mean, const T* invstd, const T* gamma,
                         T* dgamma, T* dbeta, T* dx, bool accumulate, std::size_t n, std::size_t C, std::size_t HW,
                         Ready&& ready) {
        Backend::for_each_index(
            c, C,
            LAMINA_LAMBDA(std::size_t ch) {
                double sb = 0, sg = 0;
                const double mu = double(mean[ch]), is = double(invstd[ch]);
                for (std::size_t b = 0; b < n; ++b)
                    for (std::size_t j = 0; j < HW; ++j) {
                        const std::size_t i = (b * C + ch) * HW + j;
                        sb += double(dy[i]);
                        sg += double(dy[i]) * (double(x[i]) - mu) * is;
                    }
                dbeta[ch] = static_cast<T>(sb);
                dgamma[ch] = static_cast<T>(sg);
            },
            3 * n * HW);
        ready();
        if (!dx) return;
        const T inv_count = T(1) / static_cast<T>(n * HW);
        const bool acc = accumulate;
        Backend::for_each_index(c, n * C * HW, LAMINA_LAMBDA(std::size_t i) {
            const std::size_t ch = (i / HW) % C;
            const T xhat = (x[i] - mean[ch]) * invstd[ch];
            const T g = gamma[ch] * invstd[ch] * (dy[i] - (dbeta[ch] + xhat * dgamma[ch]) * inv_count);
            dx[i] = acc ? dx[i] + g : g;  // a select: dx may hold garbage when overwritten
        });
    }

    /// forward_train with the statistics of the global batch: per channel the sums of
    /// x - running mean and of its square, summed over the processes with the count, then as
    /// forward_train. Sets sync.global_count.
    template <class T, class Sync>
    static void forward_train_synced(const context& c, const T* x, T* y, T* mean, T* invstd, T* rmean, T* rvar,
                                     const T* gamma, const T* beta, std::size_t n, std::size_t C, std::size_t HW,
                                     double eps, double momentum, Sync& sync) {
        double* sums = sync.device;
        Backend::for_each_index(
            c, C,
            LAMINA_LAMBDA(std::size_t ch) {
                const double shift = double(rmean[ch]);
                double s1 = 0, s2 = 0;
                for (std::size_t b = 0; b < n; ++b)
                    for (std::size_t j = 0; j < HW; ++j) {
                        const double d = double(x[(b * C + ch) * HW + j]) - shift;
                        s1 += d;
                        s2 += d * d;
                    }
                sums[ch] = s1;
                sums[C + ch] = s2;
            },
            2 * n * HW);
        Backend::download(c, sync.host, static_cast<const double*>(sums), 2 * C);
        sync.host[2 * C] = double(n * HW);
        sync.reducer->sum(sync.host, 2 * C + 1);
        const double count = sync.host[2 * C];
        sync.global_count = count;
        Backend::upload(c, sums, static_cast<const double*>(sync.host), 2 * C);
        const double unbias = count > 1 ? count / (count - 1) : 1.0;
        const double e = eps, m = momentum;
        Backend::for_each_index(c, C, LAMINA_LAMBDA(std::size_t ch) {
            const double shift = double(rmean[ch]);
            const double d = sums[ch] / count;
            const double mu = shift + d;
            double v = sums[C + ch] / count - d * d;
            v = v > 0 ? v : 0.0;
            mean[ch] = static_cast<T>(mu);
            invstd[ch] = static_cast<T>(1.0 / std::sqrt(v + e));
            rmean[ch] = static_cast<T>((1.0 - m) * shift + m * mu);
            rvar[ch] = static_cast<T>((1.0 - m) * double(rvar[ch]) + m * v * unbias);
        });
        Backend::for_each_index(c, n * C * HW, LAMINA_LAMBDA(std::size_t i) {
            const std::size_t ch = (i / HW) % C;
            y[i] = (x[i] - mean[ch]) * invstd[ch] * gamma[ch] + beta[ch];
        });
    }

    /// backward after forward_train_synced: dgamma and dbeta are this process's sums (the
    /// gradient averaging adds them up); dx uses the sums of dy and dy x-hat over every
    /// process and the global count.
    template <class T, class Sync, class Ready>
    static void backward_synced(const context& c, const T* x, const T* dy, const T* mean, const T* invstd,
                                const T* gamma, T* dgamma, T* dbeta, T* dx, bool accumulate, std::size_t n,
                                std::size_t C, std::size_t HW, Sync& sync, Ready&& ready) {
        double* sums = sync.device;
        Backend::for_each_index(
            c, C,
            LAMINA_LAMBDA(std::size_t ch) {
                double sb = 0, sg = 0;
                const double mu = double(mean[ch]), is = double(invstd[ch]);
                for (std::size_t b = 0; b < n; ++b)
                    for (std::size_t j = 0; j < HW; ++j) {
                        const std::size_t i = (b * C + ch) * HW + j;
                        sb += double(dy[i]);
                        sg += double(dy[i]) * (double(x[i]) - mu) * is;
                    }
                dbeta[ch] = static_cast<T>(sb);
                dgamma[ch] = static_cast<T>(sg);
                sums[ch] = sb;
                sums[C + ch] = sg;
            },
            3 * n * HW);
        ready();
        if (!dx) return;  // the same on every process: the network input's gradient was not asked for
        Backend::download(c, sync.host, static_cast<const double*>(sums), 2 * C);
        sync.reducer->sum(sync.host, 2 * C);
        Backend::upload(c, sums, static_cast<const double*>(sync.host), 2 * C);
        const T inv_count = static_cast<T>(1.0 / sync.global_count);
        const bool acc = accumulate;
        Backend::for_each_index(c, n * C * HW, LAMINA_LAMBDA(std::size_t i) {
            const std::size_t ch = (i / HW) % C;
            const T xhat = (x[i] - mean[ch]) * invstd[ch];
            const T sb = static_cast<T>(sums[ch]), sg = static_cast<T>(sums[C + ch]);
            const T g = gamma[ch] * invstd[ch] * (dy[i] - (sb + xhat * sg) * inv_count);
            dx[i] = acc ? dx[i] + g : g;
        });
    }
};

}  // namespace lamina
// ---- end include/lamina/backends/portable/batch_norm.hpp ----


namespace lamina {

struct host;

namespace host_detail {

/// Sums of (v - shift) and (v - shift)^2 over one contiguous plane, in double.
template <class T>
inline void plane_shifted_sums(const T* p, std::size_t n, T shift, double& s1, double& s2) {
    constexpr std::size_t W = vec_size<T>;
    const vec<T> sh(shift);
    vec<T> a0(T(0)), a1(T(0)), b0(T(0)), b1(T(0));
    std::size_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        const vec<T> d0 = load(p + i) - sh, d1 = load(p + i + W) - sh;
        a0 += d0;
        a1 += d1;
        b0 = xsimd::fma(d0, d0, b0);
        b1 = xsimd::fma(d1, d1, b1);
    }
    double t1 = double(hsum(a0 + a1)), t2 = double(hsum(b0 + b1));
    for (; i < n; ++i) {
        const double d = double(p[i]) - double(shift);
        t1 += d;
        t2 += d * d;
    }
    s1 += t1;
    s2 += t2;
}

/// Sums of dy and dy * x over one plane, in double.
template <class T>
inline void plane_dot_sums(const T* dy, const T* x, std::size_t n, double& sdy, double& sdyx) {
    constexpr std::size_t W = vec_size<T>;
    vec<T> a0(T(0)), a1(T(0)), b0(T(0)), b1(T(0));
    std::size_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        const vec<T> g0 = load(dy + i), g1 = load(dy + i + W);
        a0 += g0;
        a1 += g1;
        b0 = xsimd::fma(g0, load(x + i), b0);
        b1 = xsimd::fma(g1, load(x + i + W), b1);
    }
    double t1 = double(hsum(a0 + a1)), t2 = double(hsum(b0 + b1));
    for (; i < n; ++i) {
        t1 += double(dy[i]);
        t2 += double(dy[i]) * double(x[i]);
    }
    sdy += t1;
    sdyx += t2;
}

/// y = x a_c + b_c over every (image, channel) plane, planes split across threads.
template <class T>
inline void plane_affine(thread_pool& pool, const T* x, T* y, const T* a, const T* b, std::size_t n, std::size_t C,
                         std::size_t HW) {
    parallel_range(pool, n * C, plane_grain(HW), [&](std::size_t lo, std::size_t hi) {
        for (std::size_t nc = lo; nc < hi; ++nc) {
            const std::size_t ch = nc % C;
            const vec<T> va(a[ch]), vb(b[ch]);
            map1(x + nc * HW, y + nc * HW, 0, HW, [&](vec<T> v) { return xsimd::fma(v, va, vb); });
        }
    });
}

}  // namespace host_detail

template <>
struct batch_norm_kernels<host> {
    template <class Ctx, class T>
    static void forward_train(const Ctx& c, const T* x, T* y, T* mean, T* invstd, T* rmean, T* rvar, const T* gamma,
                              const T* beta, std::size_t n, std::size_t C, std::size_t HW, double eps, double momentum) {
        thread_pool& pool = c.pool();
        const double count = double(n * HW);
        const double unbias = count > 1 ? count / (count - 1) : 1.0;
        std::vector<T>& a = scratch<T>(0, 2 * C);
        T* b = a.data() + C;
        host_detail::parallel_range(pool, C, std::max<std::size_t>(1, host_detail::elementwise_grain / (n * HW + 1)),
                                    [&](std::size_t lo, std::size_t hi) {
                                        for (std::size_t ch = lo; ch < hi; ++ch) {
                                            const T shift = x[ch * HW];  // the channel's first value
                                            double s1 = 0, s2 = 0;
                                            for (std::size_t i = 0; i < n; ++i)
                                                host_detail::plane_shifted_sums(x + (i * C + ch) * HW, HW, shift, s1, s2);
                                            const double d = s1 / count;
                                            const double mu = double(shift) + d;
                                            const double var = std::max(0.0, s2 / count - d * d);
                                            const double is = 1.0 / std::sqrt(var + eps);
                                            mean[ch] = static_cast<T>(mu);
                                            invstd[ch] = static_cast<T>(is);
                                            rmean[ch] = static_cast<T>((1.0 - momentum) * double(rmean[ch]) + momentum * mu);
                                            rvar[ch] = static_cast<T>((1.0 - momentum) * double(rvar[ch]) +
                                                                      momentum * var * unbias);
                                            a[ch] = static_cast<T>(double(gamma[ch]) * is);
                                            b[ch] = static_cast<T>(double(beta[ch]) - mu * double(gamma[ch]) * is);
                                        }
                                    });
        host_detail::plane_affine(pool, x, y, a.data(), b, n, C, HW);
    }

    template <class Ctx, class T>
    static void forward(const Ctx& c, const T* x, T* y, const T* rmean, const T* rvar, const T* gamma, const T* beta,
                        std::size_t n, std::size_t C, std::size_t HW, double eps) {
        std::vector<T>& a = scratch<T>(1, 2 * C);
        T* b = a.data() + C;
        for (std::size_t ch = 0; ch < C; ++ch) {
            const double s = double(gamma[ch]) / std::sqrt(double(rvar[ch]) + eps);
            a[ch] = static_cast<T>(s);
            b[ch] = static_cast<T>(double(beta[ch]) - double(rmean[ch]) * s);
        }
        host_detail::plane_affine(c.pool(), x, y, a.data(), b, n, C, HW);
    }

    template <class Ctx, class T, class Ready>
    static void backward(const Ctx& c, const T* x, const T* dy, const T* mean, const T* invstd, const T* gamma,
                         T* dgamma, T* dbeta, T* dx, bool accumulate, std::size_t n, std::size_t C, std::size_t HW,
                         Ready&& ready) {
        thread_pool& pool = c.pool();
        const double M = double(n * HW);
        std::vector<T>& k = scratch<T>(2, 3 * C);
        host_detail::parallel_range(pool, C, std::max<std::size_t>(1, host_detail::elementwise_grain / (n * HW + 1)),
                                    [&](std::size_t lo, std::size_t hi) {
                                        for (std::size_t ch = lo; ch < hi; ++ch) {
                                            double sdy = 0, sdyx = 0;
                                            for (std::size_t i = 0; i < n; ++i) {
                                                const T* g = dy + (i * C + ch) * HW;
                                                const T* p = x + (i * C + ch) * HW;
                                                for (std::size_t j = 0; j < HW; ++j) {
                                                    sdy += double(g[j]);
                                                    sdyx += double(g[j]) * double(p[j]);
                                                }
                                            }
                                            const double mu = mean[ch], is = invstd[ch], g = gamma[ch];
                                            const double dg = (sdyx - mu * sdy) * is;  // sum dy * x-hat
                                            dbeta[ch] = static_cast<T>(sdy);
                                            dgamma[ch] = static_cast<T>(dg);
                                            // dx = g is (dy - (sdy + xhat dg) / M), xhat = (x - mu) is
                                            const double k1 = g * is, k2 = -g * is * is * dg / M;
                                            k[ch] = static_cast<T>(k1);
                                            k[C + ch] = static_cast<T>(k2);
                                            k[2 * C + ch] = static_cast<T>(-k1 * sdy / M - k2 * mu);
                                        }
                                    });
        ready();
        if (!dx) return;
        apply_dx(pool, x, dy, dx, k.data(), accumulate, n, C, HW);
    }

    template <class Ctx, class T, class Sync>
    static void forward_train_synced(const Ctx& c, const T* x, T* y, T* mean, T* invstd, T* rmean, T* rvar,
                                     const T* gamma, const T* beta, std::size_t n, std::size_t C, std::size_t HW,
                                     double eps, double momentum, Sync& sync) {
        thread_pool& pool = c.pool();
        double* sums = sync.host;
        const double local = double(n * HW);
        host_detail::parallel_range(pool, C, std::max<std::size_t>(1, host_detail::elementwise_grain / (n * HW + 1)),
                                    [&](std::size_t lo, std::size_t hi) {
                                        for (std::size_t ch = lo; ch < hi; ++ch) {
                                            // sums of x - r and (x - r)^2 for the shift r every
                                            // process shares (scalar double loops: this path
                                            // is about agreement between processes, not speed)
                                            const double r = double(rmean[ch]);
                                            double s1 = 0, s2 = 0;
                                            for (std::size_t i = 0; i < n; ++i) {
                                                const T* p = x + (i * C + ch) * HW;
                                                for (std::size_t j = 0; j < HW; ++j) {
                                                    const double d = double(p[j]) - r;
                                                    s1 += d;
                                                    s2 += d * d;
                                                }
                                            }
                                            sums[ch] = s1;
                                            sums[C + ch] = s2;
                                        }
                                    });
        sums[2 * C] = local;
        sync.reducer->sum(sums, 2 * C + 1);
        const double count = sums[2 * C];
        sync.global_count = count;
        const double unbias = count > 1 ? count / (count - 1) : 1.0;
        std::vector<T>& a = scratch<T>(0, 2 * C);
        T* b = a.data() + C;
        for (std::size_t ch = 0; ch < C; ++ch) {
            const double r = rmean[ch], d = sums[ch] / count;
            const double mu = r + d;
            const double var = std::max(0.0, sums[C + ch] / count - d * d);
            const double is = 1.0 / std::sqrt(var + eps);
            mean[ch] = static_cast<T>(mu);
            invstd[ch] = static_cast<T>(is);
            rmean[ch] = static_cast<T>((1.0 - momentum) * r + momentum * mu);
            rvar[ch] = static_cast<T>((1.0 - momentum) * double(rvar[ch]) + momentum * var * unbias);
            a[ch] = static_cast<T>(double(gamma[ch]) * is);
            b[ch] = static_cast<T>(double(beta[ch]) - mu * double(gamma[ch]) * is);
        }
        host_detail::plane_affine(pool, x, y, a.data(), b, n, C, HW);
    }

    template <class Ctx, class T, class Sync, class Ready>
    static void backward_synced(const Ctx& c, const T* x, const T* dy, const T* mean, const T* invstd, const T* gamma,
                                T* dgamma, T* dbeta, T* dx, bool accumulate, std::size_t n, std::size_t C,
                                std::size_t HW, Sync& sync, Ready&& ready) {
        thread_pool& pool = c.pool();
        double* sums = sync.host;
        host_detail::parallel_range(pool, C, std::max<std::size_t>(1, host_detail::elementwise_grain / (n * HW + 1)),
                                    [&](std::size_t lo, std::size_t hi) {
                                        for (std::size_t ch = lo; ch < hi; ++ch) {
                                            double sdy = 0, sdyx = 0;
                                            for (std::size_t i = 0; i < n; ++i) {
                                                const T* g = dy + (i * C + ch) * HW;
                                                const T* p = x + (i * C + ch) * HW;
                                                for (std::size_t j = 0; j < HW; ++j) {
                                                    sdy += double(g[j]);
                                                    sdyx += double(g[j]) * double(p[j]);
                                                }
                                            }
                                            const double dg = (sdyx - double(mean[ch]) * sdy) * double(invstd[ch]);
                                            dbeta[ch] = static_cast<T>(sdy);
                                            dgamma[ch] = static_cast<T>(dg);
                                            sums[ch] = sdy;
                                            sums[C + ch] = dg;
                                        }
                                    });
        ready();
        if (!dx) return;  // the same on every process: the network input's gradient was not asked for
        sync.reducer->sum(sums, 2 * C);
        const double M = sync.global_count;
        std::vector<T>& k = scratch<T>(2, 3 * C);
        for (std::size_t ch = 0; ch < C; ++ch) {
            const double mu = mean[ch], is = invstd[ch], g = gamma[ch], sdy = sums[ch], dg = sums[C + ch];
            const double k1 = g * is, k2 = -g * is * is * dg / M;
            k[ch] = static_cast<T>(k1);
            k[C + ch] = static_cast<T>(k2);
            k[2 * C + ch] = static_cast<T>(-k1 * sdy / M - k2 * mu);
        }
        apply_dx(pool, x, dy, dx, k.data(), accumulate, n, C, HW);
    }

private:
    /// dx (+)= k1 dy + k2 x + k3 per channel (x-hat expanded).
    template <class T>
    static void apply_dx(thread_pool& pool, const T* x, const T* dy, T* dx, const T* k1, bool accumulate, std::size_t n,
                         std::size_t C, std::size_t HW) {
        const T* k2 = k1 + C;
        const T* k3 = k2 + C;
        host_detail::parallel_range(pool, n * C, host_detail::plane_grain(HW), [&](std::size_t lo, std::size_t hi) {
            using V = host_detail::vec<T>;
            for (std::size_t nc = lo; nc < hi; ++nc) {
                const std::size_t ch = nc % C;
                const V a(k1[ch]), b(k2[ch]), o(k3[ch]);
                const std::size_t at = nc * HW;
                if (accumulate)
                    host_detail::map3(dy + at, x + at, dx + at, dx + at, 0, HW,
                                      [&](V g, V v, V d) { return d + xsimd::fma(g, a, xsimd::fma(v, b, o)); });
                else
                    host_detail::map2(dy + at, x + at, dx + at, 0, HW,
                                      [&](V g, V v) { return xsimd::fma(g, a, xsimd::fma(v, b, o)); });
            }
        });
    }

    /// Per-thread, per-use coefficient scratch, grown once (the hot path then allocates nothing).
    template <class T>
    static std::vector<T>& scratch(int which, std::size_t n) {
        thread_local std::vector<T> s[3];
        if (s[which].size() < n) s[which].resize(n);
        return s[which];
    }
};

}  // namespace lamina
// ---- end include/lamina/backends/host/batch_norm.hpp ----

// ---- end include/lamina/backends/host/host_backend.hpp ----


// ---- begin include/lamina/framework.hpp ----
// lamina without any backend's kernels: shapes, layers, composites, networks, losses,
// optimizers, schedules, training, data and checkpoints. The umbrella headers include it after
// their backends: lamina.hpp (reference + host) and kokkos.hpp (the Kokkos backend).

// ---- begin include/lamina/core/shape.hpp ----
// lamina: compile-time shapes of one sample (the batch size is a runtime value).

#include <array>

namespace lamina {

/// The shape of one sample, e.g. shape<1, 28, 28> for a grey MNIST image (C, H, W) or
/// shape<10> for a vector. Shapes are types so layers deduce their outputs while compiling.
template <std::size_t... Dims>
struct shape {
    static_assert(sizeof...(Dims) >= 1, "lamina::shape needs at least one dimension");
    static constexpr std::size_t rank = sizeof...(Dims);
    static constexpr std::size_t size = (Dims * ...);
    static constexpr std::array<std::size_t, rank> dims{Dims...};

    static std::string str() {
        std::string s = "(";
        std::size_t i = 0;
        ((s += (i++ ? "," : "") + std::to_string(Dims)), ...);
        return s + ")";
    }
};

/// The shapes of several ports (the inputs of concat and add, the outputs of a network with
/// several heads), e.g. shapes<shape<16, 8, 8>, shape<32, 8, 8>>.
template <class... S>
struct shapes {
    static constexpr std::size_t count = sizeof...(S);
    static constexpr std::array<std::size_t, sizeof...(S)> sizes{S::size...};
    static constexpr std::size_t size = (std::size_t(0) + ... + S::size);  // all ports together
    static std::string str() {
        std::string s = "[";
        std::size_t i = 0;
        ((s += (i++ ? ", " : "") + S::str()), ...);
        return s + "]";
    }
};

template <class S>
struct is_shape : std::false_type {};
template <std::size_t... D>
struct is_shape<shape<D...>> : std::true_type {};

/// Channels, height and width of a rank-3 shape (C, H, W); a rank-1 shape is (N, 1, 1).
template <class S>
struct chw;
template <std::size_t C, std::size_t H, std::size_t W>
struct chw<shape<C, H, W>> {
    static constexpr std::size_t c = C, h = H, w = W;
};
template <std::size_t N>
struct chw<shape<N>> {
    static constexpr std::size_t c = N, h = 1, w = 1;
};

}  // namespace lamina
// ---- end include/lamina/core/shape.hpp ----

// ---- begin include/lamina/core/tensor.hpp ----
// lamina: an owning tensor of up to four dimensions (N, C, H, W), in a backend's memory.
// The public layout is NCHW, row-major. Kernels may keep internal blocked layouts; what
// users see through a tensor is always NCHW.

#include <initializer_list>

#include <Eigen/Core>


namespace lamina {

template <class T, class Backend>
class tensor {
public:
    using value_type = T;
    using backend = Backend;
    using context = typename Backend::context;

    tensor() = default;
    /// A zero-filled tensor of the given extents (1 to 4 of them).
    explicit tensor(std::initializer_list<std::size_t> extents) { resize(extents); }

    void resize(std::initializer_list<std::size_t> extents) {
        if (extents.size() == 0 || extents.size() > 4)
            throw shape_error("lamina: a tensor has 1 to 4 extents, got " + std::to_string(extents.size()));
        rank_ = extents.size();
        std::size_t i = 0, n = 1;
        for (auto e : extents) {
            dims_[i++] = e;
            n *= e;
        }
        buf_.allocate(n);
        size_ = n;
    }

    std::size_t rank() const noexcept { return rank_; }
    std::size_t extent(std::size_t i) const noexcept { return i < rank_ ? dims_[i] : 1; }
    std::size_t size() const noexcept { return size_; }
    std::string shape_string() const {
        std::string s = "(";
        for (std::size_t i = 0; i < rank_; ++i) s += (i ? "," : "") + std::to_string(dims_[i]);
        return s + ")";
    }

    /// Device pointer (host pointer for host backends).
    T* data() noexcept { return buf_.data(); }
    const T* data() const noexcept { return buf_.data(); }

    /// Copies host values in; the count must match.
    void from_host(const context& c, const T* src, std::size_t n) {
        if (n != size_)
            throw shape_error("lamina: tensor " + shape_string() + " holds " + std::to_string(size_) + " values, got " +
                              std::to_string(n));
        Backend::upload(c, buf_.data(), src, n);
    }
    void from_host(const context& c, const std::vector<T>& v) { from_host(c, v.data(), v.size()); }
    std::vector<T> to_host(const context& c) const {
        std::vector<T> v(size_);
        if (size_) Backend::download(c, v.data(), buf_.data(), size_);
        return v;
    }

    /// For host-accessible backends: the tensor as an Eigen row-major matrix of
    /// extent(0) rows (the batch) and size/extent(0) columns.
    Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> matrix() {
        static_assert(Backend::host_accessible, "lamina: tensor::matrix() needs a host-accessible backend; use to_host()");
        auto rows = static_cast<Eigen::Index>(extent(0));
        return {buf_.data(), rows, rows ? static_cast<Eigen::Index>(size_ / extent(0)) : 0};
    }

private:
    typename Backend::template buffer<T> buf_;
    std::array<std::size_t, 4> dims_{};
    std::size_t rank_ = 0, size_ = 0;
};

}  // namespace lamina
// ---- end include/lamina/core/tensor.hpp ----


// ---- begin include/lamina/layers/input.hpp ----
// lamina: the first element of every network: the shape of one sample.



namespace lamina {

/// input<1, 28, 28> for a (C, H, W) image, input<784> for a vector.
template <std::size_t... Dims>
struct input {
    using shape_type = shape<Dims...>;
    static_assert(sizeof...(Dims) == 1 || sizeof...(Dims) == 3,
                  "lamina::input takes one extent (a vector) or three (channels, height, width)");
};

template <class T>
struct is_input : std::false_type {};
template <std::size_t... D>
struct is_input<input<D...>> : std::true_type {};

}  // namespace lamina
// ---- end include/lamina/layers/input.hpp ----

// ---- begin include/lamina/layers/dense.hpp ----
// lamina: fully connected layer y = x W^T + b, W stored [out][in] as in PyTorch's Linear.


// ---- begin include/lamina/network/shape_check.hpp ----
// lamina: compile-time shape checks with diagnostics that name the layer and both shapes.
//
// When a layer cannot take its input, the compiler instantiates
//   lamina::layer_shape_mismatch<Layer, GivenShape, ExpectedShape>
// and fails the static_assert inside it; g++ and clang print that instantiation, so the
// error shows e.g. `layer_shape_mismatch<lamina::dense<10>, lamina::shape<1, 28, 28>,
// lamina::any_shape_of_rank<1>>` right next to the message.



namespace lamina {

/// Expected-shape descriptions used in diagnostics.
template <std::size_t Rank>
struct any_shape_of_rank {};
/// A rank-3 (C, H, W) input whose H and W are at least the given extents.
template <std::size_t MinH, std::size_t MinW>
struct spatial_at_least {};
/// Any input with exactly this many elements (reshape).
template <std::size_t Size>
struct any_shape_of_size {};
/// A rank-3 input whose H and W are divisible by the given window (pooling without padding).
template <std::size_t DivH, std::size_t DivW>
struct spatial_divisible_by {};

template <class Layer, class Given, class Expected>
struct layer_shape_mismatch {
    static_assert(sizeof(Layer) == 0,
                  "lamina: layer shape mismatch: the layer (1st argument of layer_shape_mismatch) cannot "
                  "take the given input shape (2nd argument); it expects the 3rd argument");
    using type = Given;
};

/// Inside a composite (residual, branches, repeat), two parts that must agree do not: the
/// diagnostic shows the composite, the node whose output does not fit, its shape and the
/// shape it had to match, e.g. composite_shape_mismatch<lamina::residual<...>,
/// lamina::conv2d<32, 3>, lamina::shape<32, 6, 6>, lamina::shape<16, 8, 8>>.
template <class Composite, class Node, class Shape, class MustMatch>
struct composite_shape_mismatch {
    static_assert(sizeof(Composite) == 0,
                  "lamina: shape mismatch inside a composite (1st argument): the node (2nd argument) produces the "
                  "3rd argument, which must match the 4th");
    using type = MustMatch;
};

namespace detail {
template <class D, class = void>
struct is_composite : std::false_type {};
template <class D>
struct is_composite<D, std::enable_if_t<D::is_composite>> : std::true_type {};

/// A leaf's shape rule is `output_shape<In>`; a composite's is `output_for<In>` (so that a
/// network type can also name its own `output_shape`).
template <class Layer, class In, bool = is_composite<Layer>::value>
struct rule_output {
    using type = typename Layer::template output_shape<In>;
};
template <class Layer, class In>
struct rule_output<Layer, In, true> {
    using type = typename Layer::template output_for<In>;
};
}  // namespace detail

/// Output shape of Layer on In, after checking that Layer accepts In. On a mismatch the
/// diagnostic comes from layer_shape_mismatch and compilation carries on with In as the
/// output so that only one error is printed.
template <class Layer, class In, bool Ok = Layer::template accepts<In>>
struct checked_output {
    using type = typename detail::rule_output<Layer, In>::type;
};
template <class Layer, class In>
struct checked_output<Layer, In, false> {
    using type = typename layer_shape_mismatch<Layer, In, typename Layer::template expected_input<In>>::type;
};

template <class Layer, class In>
using checked_output_t = typename checked_output<Layer, In>::type;

}  // namespace lamina
// ---- end include/lamina/network/shape_check.hpp ----

// ---- begin include/lamina/layers/layer_concept.hpp ----
// lamina: what a layer is. Read this to write your own layer (tests/unit/test_network.cpp
// defines two outside the lamina namespace and trains through them).
//
// A layer is a *descriptor* type, the thing users list in a network:
//
//   struct my_layer {
//       static std::string name();                               // for summaries
//       template <class In> static constexpr bool accepts = ...; // may it take shape In?
//       template <class In> using expected_input = ...;          // shown when it may not
//       template <class In> using output_shape = ...;            // compile-time shape rule
//       template <class In, class Backend, class T> class impl;  // the runtime node
//   };
//
// `impl<In, Backend, T>` is written once for every backend: it calls only Backend's kernels
// and never dereferences device pointers. It derives from node_base (defaults below) and has:
//
//   static constexpr std::size_t parameter_count;   // trainable scalars (compile-time counts)
//   static constexpr std::size_t state_count;       // running-state scalars (batch norm)
//   static constexpr double flops_per_sample;       // forward FLOPs of one sample
//   static constexpr graph::leaf_traits traits;     // in place? needs x or y in backward? e.g.
//                                                   // graph::leaf_traits{}.no_input().accumulating()
//   std::vector<tensor_spec> tensor_specs() const;  // name, count, kind, init, fans, decay
//   void bind(const tensor_binding<T>&);            // its slices of the model's flat buffers
//   std::size_t workspace_size(std::size_t batch) const;  // T elements of scratch per call
//   std::size_t saved_bytes(std::size_t batch) const;     // kept from forward_train to backward
//   void forward(const context&, const node_io<T>&) const;             // inference
//   void forward_train(const context&, const node_io<T>&, std::uint64_t step);
//   template <class Sink> void backward(const context&, const node_io<T>&, Sink&);
//
// The contract (network/node_io.hpp): input gradients accumulate when io.accumulate says so
// (dx += ...), parameter gradients are overwritten; backward calls sink.ready(grad, count)
// for its parameter gradients before it computes input gradients. A node with several inputs
// (concat, add) has `static constexpr std::size_t inputs = N` and takes node_io<T, N>. A node
// that adds a term to the loss (a VAE's KL) has `static constexpr bool adds_loss = true` and
// `double added_loss(const context&, const node_io<T>&) const`. Inference `forward` is const
// and touches no member state, so one model serves concurrent `predict` calls.
//
// Layers written against lamina 0.1's contract (forward(c, x, y, batch, ws), backward(c, x, y,
// dy, dx, batch, ws) overwriting dx, bind_parameters, plan; base class layer_base) still work:
// the model runs them through an adapter that accumulates through a temporary.


// ---- begin include/lamina/init/initializers.hpp ----
// lamina: weight initialisation (He, Glorot, LeCun; uniform and normal), drawn from the
// counter-based RNG so that a seed gives the same weights on every backend and thread count.



namespace lamina::init {

enum class kind { zeros, ones, he_uniform, he_normal, glorot_uniform, glorot_normal, lecun_uniform, lecun_normal };

inline const char* to_string(kind k) {
    switch (k) {
        case kind::zeros: return "zeros";
        case kind::ones: return "ones";
        case kind::he_uniform: return "he_uniform";
        case kind::he_normal: return "he_normal";
        case kind::glorot_uniform: return "glorot_uniform";
        case kind::glorot_normal: return "glorot_normal";
        case kind::lecun_uniform: return "lecun_uniform";
        case kind::lecun_normal: return "lecun_normal";
    }
    return "?";
}

/// Variance of the target distribution: He 2/fan_in, Glorot 2/(fan_in+fan_out), LeCun 1/fan_in.
inline double variance(kind k, std::size_t fan_in, std::size_t fan_out) {
    double fi = static_cast<double>(fan_in ? fan_in : 1), fo = static_cast<double>(fan_out ? fan_out : 1);
    switch (k) {
        case kind::he_uniform:
        case kind::he_normal: return 2.0 / fi;
        case kind::glorot_uniform:
        case kind::glorot_normal: return 2.0 / (fi + fo);
        case kind::lecun_uniform:
        case kind::lecun_normal: return 1.0 / fi;
        default: return 0.0;
    }
}

/// The index-th value of a parameter tensor initialised with `k` from stream `s`.
/// Uniform: U(-a, a) with a = sqrt(3 var). Normal: N(0, var) (not truncated).
inline double sample(kind k, const random_stream& s, std::uint64_t index, std::size_t fan_in, std::size_t fan_out) {
    switch (k) {
        case kind::zeros: return 0.0;
        case kind::ones: return 1.0;
        case kind::he_uniform:
        case kind::glorot_uniform:
        case kind::lecun_uniform: {
            double a = std::sqrt(3.0 * variance(k, fan_in, fan_out));
            return (2.0 * s.uniform_double(index) - 1.0) * a;
        }
        default: return s.normal(index) * std::sqrt(variance(k, fan_in, fan_out));
    }
}

/// Policy types for layer templates: dense<120, init::he_uniform>.
struct he_uniform { static constexpr kind value = kind::he_uniform; };
struct he_normal { static constexpr kind value = kind::he_normal; };
struct glorot_uniform { static constexpr kind value = kind::glorot_uniform; };
struct glorot_normal { static constexpr kind value = kind::glorot_normal; };
struct lecun_uniform { static constexpr kind value = kind::lecun_uniform; };
struct lecun_normal { static constexpr kind value = kind::lecun_normal; };

}  // namespace lamina::init
// ---- end include/lamina/init/initializers.hpp ----

// ---- begin include/lamina/network/graph.hpp ----
// lamina: a network as the model sees it at run time: leaves (the nodes that compute) joined
// by edges (activation tensors). Composites only wire; what runs is the leaves, in the order
// they were wired, forward in that order and backward in reverse.
//
// The description is built once per model (`wire`), from the nested composite types. The
// memory planner (network/memory_plan.hpp) turns it into one arena per batch size.



namespace lamina::graph {

using edge_id = std::uint32_t;
inline constexpr edge_id no_edge = 0xFFFFFFFFu;

/// How a leaf uses memory; the planner relies on these to alias and free buffers.
struct leaf_traits {
    bool view = false;                  // y is x reinterpreted (flatten, reshape, identity): no storage, no work
    bool in_place_forward = false;      // y may overwrite x[0]; backward then reads y where it would read x[0]
    bool in_place_backward = false;     // dx[0] may overwrite dy (an elementwise gradient)
    bool gradient_passthrough = false;  // dx[i] equals dy for every input (a sum): may alias; the leaf skips dx[i] == dy
    bool needs_input = true;            // backward reads x
    bool needs_output = false;          // backward reads y
    bool accumulates = false;           // honours node_io::accumulate itself (else the model adds through a temporary)

    // A layer states its traits in one line, e.g.
    //   static constexpr auto traits = graph::leaf_traits{}.no_input().accumulating();
    constexpr leaf_traits as_view() const { return with(&leaf_traits::view).no_input(); }
    constexpr leaf_traits in_place() const { return with(&leaf_traits::in_place_forward); }
    constexpr leaf_traits in_place_gradient() const { return with(&leaf_traits::in_place_backward); }
    constexpr leaf_traits passthrough() const { return with(&leaf_traits::gradient_passthrough); }
    constexpr leaf_traits no_input() const { return with(&leaf_traits::needs_input, false); }
    constexpr leaf_traits reads_output() const { return with(&leaf_traits::needs_output); }
    constexpr leaf_traits accumulating() const { return with(&leaf_traits::accumulates); }

private:
    constexpr leaf_traits with(bool leaf_traits::*flag, bool value = true) const {
        leaf_traits t = *this;
        t.*flag = value;
        return t;
    }
};

/// Sizes a leaf needs per batch size, asked when a plan is made (never on the hot path).
class leaf_sizes {
public:
    virtual ~leaf_sizes() = default;
    virtual std::size_t saved_bytes(std::size_t batch) const = 0;
    virtual std::size_t workspace_elements(std::size_t batch) const = 0;
};

struct leaf {
    std::string name;                // as in the summary, e.g. "conv2d<16,3x3,p1>"
    std::string path;                // position in the nested node lists, e.g. "4.0.1"
    std::string output_shape;        // e.g. "(16,32,32)"
    unsigned depth = 0;              // nesting depth inside composites (for the summary)
    std::vector<edge_id> inputs;
    edge_id output = no_edge;
    leaf_traits traits;
    const leaf_sizes* sizes = nullptr;
    double flops_per_sample = 0;     // forward FLOPs of one sample
    std::size_t parameters = 0;      // trainable scalars
    std::size_t parameter_offset = 0;  // first trainable scalar in the flat buffer
    std::size_t state = 0;           // running-state scalars
};

struct edge {
    std::size_t size = 0;                 // elements per sample
    std::int64_t producer = -1;           // leaf index; -1: the network input
    std::vector<std::uint32_t> consumers;  // leaf index per consuming port (a leaf reading it twice is listed twice)
    std::int32_t output = -1;             // which network output this edge is, -1 if none
};

/// A summary row: a leaf, or the heading of a composite.
struct row {
    bool is_leaf = true;
    std::uint32_t leaf = 0;  // when is_leaf
    std::string heading;     // when not
    unsigned depth = 0;
};

class description {
public:
    edge_id add_input(std::size_t per_sample) {
        if (!edges_.empty()) throw error("lamina: internal error: a network has one input edge");
        edges_.push_back(edge{per_sample, -1, {}, -1});
        return 0;
    }

    /// Registers the next leaf in execution order; returns its index. Its output edge is a new
    /// edge of `out_size` elements per sample, or, for a view, its input edge.
    std::uint32_t add_leaf(leaf l, std::size_t out_size) {
        const auto id = static_cast<std::uint32_t>(leaves_.size());
        for (edge_id e : l.inputs) {
            if (e >= edges_.size()) throw error("lamina: internal error: leaf '" + l.name + "' reads an unknown edge");
            if (!l.traits.view) edges_[e].consumers.push_back(id);  // a view's readers read the edge itself
        }
        if (l.traits.view) {
            if (l.inputs.size() != 1 || edges_[l.inputs[0]].size != out_size)
                throw error("lamina: internal error: view '" + l.name + "' must keep its input's size");
            l.output = l.inputs[0];
        } else {
            l.output = static_cast<edge_id>(edges_.size());
            edges_.push_back(edge{out_size, static_cast<std::int64_t>(id), {}, -1});
        }
        rows_.push_back(row{true, id, {}, depth_});
        leaves_.push_back(std::move(l));
        return id;
    }

    void mark_output(edge_id e, std::int32_t index) {
        if (edges_.at(e).output >= 0)
            throw error("lamina: internal error: an edge is already network output " +
                        std::to_string(edges_[e].output));
        edges_[e].output = index;
        if (static_cast<std::size_t>(index) >= outputs_.size()) outputs_.resize(static_cast<std::size_t>(index) + 1, no_edge);
        outputs_[static_cast<std::size_t>(index)] = e;
    }

    /// Composites open and close a level of the summary.
    void begin_composite(std::string heading) {
        rows_.push_back(row{false, 0, std::move(heading), depth_});
        ++depth_;
    }
    void end_composite() { --depth_; }
    unsigned depth() const noexcept { return depth_; }

    const std::vector<leaf>& leaves() const noexcept { return leaves_; }
    std::vector<leaf>& leaves() noexcept { return leaves_; }
    const std::vector<edge>& edges() const noexcept { return edges_; }
    const std::vector<edge_id>& outputs() const noexcept { return outputs_; }
    const std::vector<row>& rows() const noexcept { return rows_; }
    std::size_t input_size() const noexcept { return edges_.empty() ? 0 : edges_[0].size; }

private:
    std::vector<leaf> leaves_;
    std::vector<edge> edges_;
    std::vector<edge_id> outputs_;
    std::vector<row> rows_;
    unsigned depth_ = 0;
};

}  // namespace lamina::graph
// ---- end include/lamina/network/graph.hpp ----

// ---- begin include/lamina/network/node_io.hpp ----
// lamina: one call's view of a node's ports, and the gradient-ready sink.
//
// Pointers are device pointers (host pointers on host backends). The model plans them: y may
// alias x[0] (an in-place node), dx[i] may alias dy (an elementwise or pass-through
// gradient), dx[i] is null when that input's gradient is not wanted (the network input).
// accumulate[i] says whether dx[i] already holds another consumer's contribution:
//   accumulate[i] == false   dx[i] = gradient   (the first writer overwrites)
//   accumulate[i] == true    dx[i] += gradient  (input gradients accumulate)
// Parameter gradients are always overwritten.


namespace lamina {

template <class T, std::size_t Inputs = 1>
struct node_io {
    static constexpr std::size_t inputs = Inputs;
    std::array<const T*, Inputs> x{};
    T* y = nullptr;
    const T* dy = nullptr;
    std::array<T*, Inputs> dx{};
    std::array<bool, Inputs> accumulate{};
    std::size_t batch = 0;
    T* workspace = nullptr;  // workspace_size(batch) elements, valid during this call only
    void* saved = nullptr;   // saved_bytes(batch) bytes, kept from forward_train to backward
    bool in_place = false;   // y aliases x[0]; backward then reads y where it would read x

    // one-input shorthands
    const T* in() const noexcept { return x[0]; }
    T* in_grad() const noexcept { return dx[0]; }
    /// The GEMM-style beta of input i's gradient: 0 overwrites, 1 accumulates.
    T beta(std::size_t i = 0) const noexcept { return accumulate[i] ? T(1) : T(0); }
    template <class U>
    U* saved_as() const noexcept {
        return static_cast<U*>(saved);
    }
};

/// The sink that backward reports each parameter gradient to as soon as it is final, before
/// the node computes its input gradients: the MPI communicator's sink starts an allreduce
/// there. This one does nothing and compiles to nothing.
struct no_gradient_sink {
    template <class T>
    void ready(const T*, std::size_t) noexcept {}
};

}  // namespace lamina
// ---- end include/lamina/network/node_io.hpp ----

// ---- begin include/lamina/network/tensor_spec.hpp ----
// lamina: what a node declares about each of its tensors: size, kind, data type, how to
// initialise it and whether weight decay applies.
//
// Kinds decide where a tensor lives and who touches it:
//   trainable  the flat parameter buffer and its twin gradient buffer; optimized; allreduced
//   state      running statistics (batch norm): checkpointed, not optimized, not allreduced
//   frozen     checkpointed and read in forward, never updated (no gradient)
// The model keeps one flat buffer per kind, so an optimizer step is a handful of kernel calls,
// a checkpoint one record per kind and a gradient allreduce one message.



namespace lamina {

enum class tensor_kind : std::uint8_t { trainable, state, frozen };

inline const char* to_string(tensor_kind k) {
    switch (k) {
        case tensor_kind::trainable: return "trainable";
        case tensor_kind::state: return "state";
        case tensor_kind::frozen: return "frozen";
    }
    return "?";
}

/// Element type of a tensor or edge (INT8 inference will add per-tensor scales beside it).
enum class dtype : std::uint8_t { f32, f64, i32, i8, u8 };

inline const char* to_string(dtype d) {
    switch (d) {
        case dtype::f32: return "f32";
        case dtype::f64: return "f64";
        case dtype::i32: return "i32";
        case dtype::i8: return "i8";
        case dtype::u8: return "u8";
    }
    return "?";
}

template <class T>
constexpr dtype dtype_of() {
    if constexpr (std::is_same_v<T, float>) return dtype::f32;
    else if constexpr (std::is_same_v<T, double>) return dtype::f64;
    else if constexpr (std::is_same_v<T, std::int32_t>) return dtype::i32;
    else if constexpr (std::is_same_v<T, std::int8_t>) return dtype::i8;
    else {
        static_assert(std::is_same_v<T, std::uint8_t>, "lamina: no dtype for this element type");
        return dtype::u8;
    }
}

/// One tensor of a node. The first six fields keep the order of the earlier parameter_spec,
/// so `{"weight", count, fan_in, fan_out, init::kind::he_uniform, true}` still reads as before.
struct tensor_spec {
    std::string name;
    std::size_t count = 0;
    std::size_t fan_in = 0, fan_out = 0;
    init::kind init = init::kind::zeros;
    bool decay = true;  // weight decay applies (not to biases and normalisation parameters)
    tensor_kind kind = tensor_kind::trainable;
    dtype type = dtype::f32;  // the model's element type unless a node says otherwise
};

/// The earlier name of tensor_spec (layers written against it keep compiling).
using parameter_spec = tensor_spec;

}  // namespace lamina
// ---- end include/lamina/network/tensor_spec.hpp ----


namespace lamina {

/// A node's slices of the model's flat buffers, one per tensor kind (null where it has none).
template <class T>
struct tensor_binding {
    T* parameters = nullptr;  // trainable, in tensor_specs() order
    T* gradients = nullptr;   // their gradients
    T* state = nullptr;       // running state, in tensor_specs() order
    T* frozen = nullptr;
};

/// Defaults for the descriptor side: accepts any shape, output equals input.
struct layer_descriptor_base {
    template <class In>
    static constexpr bool accepts = true;
    template <class In>
    using expected_input = In;
    template <class In>
    using output_shape = In;
};

/// Defaults for the runtime side of a node without tensors, workspace or saved state.
template <class Backend, class T>
class node_base {
public:
    using context = typename Backend::context;
    using io = node_io<T>;
    static constexpr std::size_t parameter_count = 0;
    static constexpr std::size_t state_count = 0;
    static constexpr double flops_per_sample = 0;
    static constexpr graph::leaf_traits traits{};
    std::vector<tensor_spec> tensor_specs() const { return {}; }
    void bind(const tensor_binding<T>&) {}
    std::size_t workspace_size(std::size_t) const { return 0; }
    std::size_t saved_bytes(std::size_t) const { return 0; }
};

/// Defaults for a layer written against lamina 0.1's contract (see the file comment).
template <class Backend, class T>
class layer_base {
public:
    using context = typename Backend::context;
    static constexpr std::size_t parameter_count = 0;
    static constexpr double flops_per_sample = 0;
    std::vector<parameter_spec> parameter_specs() const { return {}; }
    void bind_parameters(T*, T*) {}
    void plan(const context&, std::size_t) {}
    std::size_t workspace_size(std::size_t) const { return 0; }
};

}  // namespace lamina
// ---- end include/lamina/layers/layer_concept.hpp ----


namespace lamina {

template <std::size_t Outputs, class Init = init::glorot_uniform, bool Bias = true>
struct dense : layer_descriptor_base {
    static_assert(Outputs > 0, "lamina::dense needs at least one output");
    static std::string name() { return "dense<" + std::to_string(Outputs) + ">"; }

    template <class In>
    static constexpr bool accepts = In::rank == 1;
    template <class In>
    using expected_input = any_shape_of_rank<1>;
    template <class In>
    using output_shape = shape<Outputs>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t inputs = 1;
        static constexpr std::size_t fan_in = In::size;
        static constexpr std::size_t parameter_count = Outputs * fan_in + (Bias ? Outputs : 0);
        static constexpr double flops_per_sample = 2.0 * Outputs * fan_in;
        static constexpr auto traits = graph::leaf_traits{}.accumulating();  // dx through the GEMM's beta

        std::vector<tensor_spec> tensor_specs() const {
            std::vector<tensor_spec> p{{"weight", Outputs * fan_in, fan_in, Outputs, Init::value, true}};
            if (Bias) p.push_back({"bias", Outputs, fan_in, Outputs, init::kind::zeros, false});
            return p;
        }
        void bind(const tensor_binding<T>& b) {
            w_ = b.parameters;
            dw_ = b.gradients;
        }

        void forward(const context& c, const node_io<T>& io) const { forward_fused(c, io, activation{}); }
        /// y = act(x W^T + b): bias and activation in the GEMM's epilogue, while each C tile is
        /// still in L1. The chain runs this for dense + activation as one leaf
        /// (network/leaf_node.hpp's fused_leaf_node), whose backward never reads y as this
        /// layer's own output.
        static constexpr bool fuses_activation = true;
        void forward_fused(const context& c, const node_io<T>& io, activation act) const {
            Backend::gemm_bias_act(c, transpose::no, transpose::yes, io.batch, Outputs, fan_in, T(1), io.x[0], fan_in,
                                   static_cast<const T*>(w_), fan_in, T(0), io.y, Outputs,
                                   Bias ? static_cast<const T*>(w_ + Outputs * fan_in) : static_cast<const T*>(nullptr),
                                   act);
        }
        template <class Sink>
        void backward(const context& c, const node_io<T>& io, Sink& sink) {
            // dW = dy^T x, db = column sums of dy (reported), then dx (+)= dy W
            Backend::gemm(c, transpose::yes, transpose::no, Outputs, fan_in, io.batch, T(1), io.dy, Outputs, io.x[0],
                          fan_in, T(0), dw_, fan_in);
            if (Bias) Backend::channel_bias_grad(c, io.dy, dw_ + Outputs * fan_in, io.batch, Outputs, std::size_t(1));
            sink.ready(static_cast<const T*>(dw_), parameter_count);
            if (io.dx[0])
                Backend::gemm(c, transpose::no, transpose::no, io.batch, fan_in, Outputs, T(1), io.dy, Outputs,
                              static_cast<const T*>(w_), fan_in, io.beta(0), io.dx[0], fan_in);
        }

    private:
        T* w_ = nullptr;
        T* dw_ = nullptr;
    };
};

}  // namespace lamina
// ---- end include/lamina/layers/dense.hpp ----

// ---- begin include/lamina/layers/conv2d.hpp ----
// lamina: 2-D convolution (cross-correlation, as in every framework), NCHW activations,
// weights [K][C/groups][R][S] as in PyTorch's Conv2d. Kernel size, stride, padding, dilation
// and groups are template arguments, so the backend sees compile-time-fixed geometry per layer.
//
//   conv2d<64, 3, 1, 1>                                    3x3, padding 1
//   conv2d<64, 3, 1, 2, init::he_normal, false, 2>         3x3 taps 2 apart (a 5x5 field), no bias
//   conv2d<64, 3, 1, 1, init::glorot_uniform, true, 1, 4>  4 groups of 16 filters, each on C/4 channels
//   depthwise_conv2d<3, 1, 1>                              one 3x3 filter per channel (groups = C)



namespace lamina {

/// Expected-shape description for diagnostics: a rank-3 (C, H, W) input whose channel count
/// C divides by the given group count (grouped convolutions).
template <std::size_t Groups>
struct channels_divisible_by {};

namespace conv2d_detail {
/// Whether Backend's conv kernels take the compile-time conv_shape tag (lamina's backends
/// do); other backends are called with the runtime geometry alone.
template <class Backend, class T, class Shape, class = void>
struct takes_shape : std::false_type {};
template <class Backend, class T, class Shape>
struct takes_shape<Backend, T, Shape,
                   std::void_t<decltype(Backend::conv2d_forward(
                       std::declval<const typename Backend::context&>(), std::declval<const conv_geometry&>(),
                       std::declval<const T*>(), std::declval<const T*>(), std::declval<const T*>(), std::declval<T*>(),
                       std::declval<T*>(), Shape{}))>> : std::true_type {};

/// The summary's geometry suffix: ",s2,p1,d2,g4" with the defaults left out.
inline std::string suffix(std::size_t stride, std::size_t padding, std::size_t dilation, std::size_t groups) {
    return (stride != 1 ? ",s" + std::to_string(stride) : std::string()) +
           (padding != 0 ? ",p" + std::to_string(padding) : std::string()) +
           (dilation != 1 ? ",d" + std::to_string(dilation) : std::string()) +
           (groups != 1 ? ",g" + std::to_string(groups) : std::string());
}

/// The smallest spatial extent a convolution with this (dilated) kernel extent and padding
/// can take.
constexpr std::size_t min_extent(std::size_t span, std::size_t padding) {
    return span > 2 * padding ? span - 2 * padding : 1;
}
}  // namespace conv2d_detail

/// Filters output channels, Kernel x Kernel taps Dilation apart, Groups channel groups (the
/// input's channels and Filters must divide by Groups; filter k reads only the channels of its
/// group k / (Filters / Groups)).
template <std::size_t Filters, std::size_t Kernel, std::size_t Stride = 1, std::size_t Padding = 0,
          class Init = init::glorot_uniform, bool Bias = true, std::size_t Dilation = 1, std::size_t Groups = 1>
struct conv2d : layer_descriptor_base {
    static_assert(Filters > 0 && Kernel > 0 && Stride > 0, "lamina::conv2d needs positive filters, kernel and stride");
    static_assert(Dilation > 0 && Groups > 0, "lamina::conv2d needs positive dilation and groups");
    static_assert(Filters % Groups == 0, "lamina::conv2d: the filter count must be divisible by the groups");
    /// Extent of the dilated kernel: Dilation * (Kernel - 1) + 1.
    static constexpr std::size_t span = Dilation * (Kernel - 1) + 1;

    static std::string name() {
        return "conv2d<" + std::to_string(Filters) + "," + std::to_string(Kernel) + "x" + std::to_string(Kernel) +
               conv2d_detail::suffix(Stride, Padding, Dilation, Groups) + ">";
    }

    template <class In>
    static constexpr bool groups_fit = [] {
        if constexpr (In::rank != 3) return true;
        else return In::dims[0] % Groups == 0;
    }();
    template <class In>
    static constexpr bool accepts = [] {
        if constexpr (In::rank != 3) return false;
        else return groups_fit<In> && In::dims[1] + 2 * Padding >= span && In::dims[2] + 2 * Padding >= span;
    }();
    template <class In>
    using expected_input =
        std::conditional_t<groups_fit<In>,
                           spatial_at_least<conv2d_detail::min_extent(span, Padding), conv2d_detail::min_extent(span, Padding)>,
                           channels_divisible_by<Groups>>;
    template <class In>
    using output_shape = shape<Filters, conv_geometry::out_extent(chw<In>::h, Kernel, Stride, Padding, Dilation),
                               conv_geometry::out_extent(chw<In>::w, Kernel, Stride, Padding, Dilation)>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t C = In::dims[0], H = In::dims[1], W = In::dims[2];
        static constexpr std::size_t CG = C / Groups, KG = Filters / Groups;  // channels, filters per group
        static constexpr std::size_t P = conv_geometry::out_extent(H, Kernel, Stride, Padding, Dilation);
        static constexpr std::size_t Q = conv_geometry::out_extent(W, Kernel, Stride, Padding, Dilation);
        static constexpr std::size_t weight_count = Filters * CG * Kernel * Kernel;
        static constexpr std::size_t parameter_count = weight_count + (Bias ? Filters : 0);
        static constexpr double flops_per_sample = 2.0 * Filters * CG * Kernel * Kernel * P * Q;

        static conv_geometry geometry(std::size_t batch) {
            conv_geometry g;
            g.n = batch; g.c = C; g.h = H; g.w = W; g.k = Filters; g.r = Kernel; g.s = Kernel;
            g.stride_h = g.stride_w = Stride; g.pad_h = g.pad_w = Padding; g.p = P; g.q = Q;
            g.dilation_h = g.dilation_w = Dilation;
            g.groups = Groups;
            return g;
        }

        /// Fans count the connections each weight takes part in: an output reads CG channels
        /// x taps, an input feeds KG filters x taps. (PyTorch's fan computation uses all
        /// Filters for fan_out; with groups == 1 the two agree.)
        std::vector<tensor_spec> tensor_specs() const {
            std::vector<tensor_spec> p{
                {"weight", weight_count, CG * Kernel * Kernel, KG * Kernel * Kernel, Init::value, true}};
            if (Bias) p.push_back({"bias", Filters, CG * Kernel * Kernel, KG * Kernel * Kernel, init::kind::zeros, false});
            return p;
        }
        void bind(const tensor_binding<T>& b) {
            w_ = b.parameters;
            dw_ = b.gradients;
        }
        std::size_t workspace_size(std::size_t batch) const {
            return Backend::template conv2d_workspace<T>(geometry(batch));
        }

        /// The layer's compile-time shape, the trailing tag of the backend's conv kernels.
        using shape_tag = conv_shape<C, H, W, Filters, Kernel, Kernel, Stride, Padding, Dilation, Groups>;
        static constexpr bool tagged = conv2d_detail::takes_shape<Backend, T, shape_tag>::value;

        void forward(const context& c, const node_io<T>& io) const {
            const T* b = Bias ? w_ + weight_count : static_cast<const T*>(nullptr);
            if constexpr (tagged)
                Backend::conv2d_forward(c, geometry(io.batch), io.x[0], static_cast<const T*>(w_), b, io.y, io.workspace,
                                        shape_tag{});
            else
                Backend::conv2d_forward(c, geometry(io.batch), io.x[0], static_cast<const T*>(w_), b, io.y, io.workspace);
        }
        template <class Sink>
        void backward(const context& c, const node_io<T>& io, Sink& sink) {
            auto g = geometry(io.batch);
            T* db = Bias ? dw_ + weight_count : static_cast<T*>(nullptr);
            if constexpr (tagged) Backend::conv2d_backward_weights(c, g, io.x[0], io.dy, dw_, db, io.workspace, shape_tag{});
            else Backend::conv2d_backward_weights(c, g, io.x[0], io.dy, dw_, db, io.workspace);
            sink.ready(static_cast<const T*>(dw_), parameter_count);
            if (!io.dx[0]) return;
            if constexpr (tagged)
                Backend::conv2d_backward_data(c, g, io.dy, static_cast<const T*>(w_), io.dx[0], io.workspace, shape_tag{});
            else Backend::conv2d_backward_data(c, g, io.dy, static_cast<const T*>(w_), io.dx[0], io.workspace);
        }

    private:
        T* w_ = nullptr;
        T* dw_ = nullptr;
    };
};

/// Depthwise convolution: one group per input channel (groups = C), Multiplier filters per
/// channel (filters = C * Multiplier, filter k reads channel k / Multiplier); weights
/// [C * Multiplier][1][R][S] as in PyTorch's Conv2d(C, C * M, K, groups=C). It is the
/// grouped conv2d once the input's channel count is known.
template <std::size_t Kernel, std::size_t Stride = 1, std::size_t Padding = 0, std::size_t Multiplier = 1,
          class Init = init::glorot_uniform, bool Bias = true, std::size_t Dilation = 1>
struct depthwise_conv2d : layer_descriptor_base {
    static_assert(Kernel > 0 && Stride > 0 && Multiplier > 0 && Dilation > 0,
                  "lamina::depthwise_conv2d needs positive kernel, stride, multiplier and dilation");
    template <class In>
    using conv = conv2d<chw<In>::c * Multiplier, Kernel, Stride, Padding, Init, Bias, Dilation, chw<In>::c>;
    static constexpr std::size_t span = Dilation * (Kernel - 1) + 1;

    static std::string name() {
        return "depthwise_conv2d<" + std::to_string(Kernel) + "x" + std::to_string(Kernel) +
               conv2d_detail::suffix(Stride, Padding, Dilation, 1) +
               (Multiplier != 1 ? ",m" + std::to_string(Multiplier) : std::string()) + ">";
    }
    template <class In>
    static constexpr bool accepts = [] {
        if constexpr (In::rank != 3) return false;
        else return In::dims[1] + 2 * Padding >= span && In::dims[2] + 2 * Padding >= span;
    }();
    template <class In>
    using expected_input =
        spatial_at_least<conv2d_detail::min_extent(span, Padding), conv2d_detail::min_extent(span, Padding)>;
    template <class In>
    using output_shape = shape<chw<In>::c * Multiplier,
                               conv_geometry::out_extent(chw<In>::h, Kernel, Stride, Padding, Dilation),
                               conv_geometry::out_extent(chw<In>::w, Kernel, Stride, Padding, Dilation)>;

    template <class In, class Backend, class T>
    class impl : public conv<In>::template impl<In, Backend, T> {};
};

}  // namespace lamina
// ---- end include/lamina/layers/conv2d.hpp ----

// ---- begin include/lamina/layers/conv_transpose2d.hpp ----
// lamina: 2-D transposed convolution with PyTorch's ConvTranspose2d semantics (no groups, no
// dilation): every input cell adds its value times the kernel into the output, Stride apart;
// the result is cropped by Padding on each side and extended by OutputPadding at the bottom
// and right, so an H x W input gives
//     ((H - 1) * Stride - 2 * Padding + Kernel + OutputPadding) x (same for W).
// Weights are [C_in][C_out][R][S] as in PyTorch; OutputPadding < Stride.
//
//   conv_transpose2d<16, 3, 2, 1, 1>     16 filters, 3x3, stride 2: 8x8 -> 16x16
//
// No kernels of its own. The "adjoint" convolution maps this layer's output shape
// (C_out, Ho, Wo) back to its input shape (C_in, H, W) with the same kernel, stride and
// padding, and its weights [K = C_in][C = C_out][R][S] are exactly this layer's tensor
// (Ho + 2P - K = (H - 1) S + OutputPadding, so its output extent is H again). Then
//   forward          y  = conv2d_backward_data(adjoint, dy := x) + bias
//   input gradient   dx = conv2d_forward(adjoint, x := dy)
//   weight gradient  dw = conv2d_backward_weights(adjoint, x := dy, dy := x)
// and every backend's conv paths serve it, chosen per layer at compile time through the
// adjoint's conv_shape tag where the backend takes one.



namespace lamina {

namespace conv_transpose2d_detail {
/// Output extent of a transposed convolution (0 when cropping leaves nothing).
constexpr std::size_t out_extent(std::size_t in, std::size_t kernel, std::size_t stride, std::size_t pad,
                                 std::size_t output_pad) {
    const std::size_t full = (in - 1) * stride + kernel + output_pad;
    return full > 2 * pad ? full - 2 * pad : 0;
}
/// The smallest input extent with a non-empty output.
constexpr std::size_t min_extent(std::size_t kernel, std::size_t stride, std::size_t pad, std::size_t output_pad) {
    const std::size_t have = kernel + output_pad, need = 2 * pad + 1;
    return have >= need ? 1 : 1 + (need - have + stride - 1) / stride;
}
}  // namespace conv_transpose2d_detail

template <std::size_t Filters, std::size_t Kernel, std::size_t Stride = 1, std::size_t Padding = 0,
          std::size_t OutputPadding = 0, class Init = init::glorot_uniform, bool Bias = true>
struct conv_transpose2d : layer_descriptor_base {
    static_assert(Filters > 0 && Kernel > 0 && Stride > 0,
                  "lamina::conv_transpose2d needs positive filters, kernel and stride");
    static_assert(OutputPadding < Stride,
                  "lamina::conv_transpose2d: the output padding must be smaller than the stride (as in PyTorch)");

    static std::string name() {
        return "conv_transpose2d<" + std::to_string(Filters) + "," + std::to_string(Kernel) + "x" +
               std::to_string(Kernel) + conv2d_detail::suffix(Stride, Padding, 1, 1) +
               (OutputPadding != 0 ? ",op" + std::to_string(OutputPadding) : std::string()) + ">";
    }

    static constexpr std::size_t min_in = conv_transpose2d_detail::min_extent(Kernel, Stride, Padding, OutputPadding);
    template <class In>
    static constexpr bool accepts = [] {
        if constexpr (In::rank != 3) return false;
        else return In::dims[1] >= min_in && In::dims[2] >= min_in;
    }();
    template <class In>
    using expected_input = spatial_at_least<min_in, min_in>;
    template <class In>
    using output_shape =
        shape<Filters, conv_transpose2d_detail::out_extent(chw<In>::h, Kernel, Stride, Padding, OutputPadding),
              conv_transpose2d_detail::out_extent(chw<In>::w, Kernel, Stride, Padding, OutputPadding)>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t C = In::dims[0], H = In::dims[1], W = In::dims[2];
        static constexpr std::size_t HO = conv_transpose2d_detail::out_extent(H, Kernel, Stride, Padding, OutputPadding);
        static constexpr std::size_t WO = conv_transpose2d_detail::out_extent(W, Kernel, Stride, Padding, OutputPadding);
        static constexpr std::size_t weight_count = C * Filters * Kernel * Kernel;
        static constexpr std::size_t parameter_count = weight_count + (Bias ? Filters : 0);
        // Every input cell scatters into Filters x Kernel x Kernel outputs (cropped ones included).
        static constexpr double flops_per_sample = 2.0 * C * Filters * Kernel * Kernel * H * W;

        /// The adjoint convolution: from (Filters, HO, WO) to (C, H, W).
        static conv_geometry adjoint(std::size_t batch) {
            conv_geometry g;
            g.n = batch; g.c = Filters; g.h = HO; g.w = WO; g.k = C; g.r = Kernel; g.s = Kernel;
            g.stride_h = g.stride_w = Stride; g.pad_h = g.pad_w = Padding; g.p = H; g.q = W;
            return g;
        }
        using shape_tag = conv_shape<Filters, HO, WO, C, Kernel, Kernel, Stride, Padding>;
        static_assert(!accepts<In> || (shape_tag::p == H && shape_tag::q == W),
                      "lamina::conv_transpose2d: internal error: the adjoint convolution does not map back");
        static constexpr bool tagged = conv2d_detail::takes_shape<Backend, T, shape_tag>::value;

        /// Fans as for conv2d, with this layer's input and output channels: an output reads C
        /// channels x taps, an input feeds Filters x taps. (PyTorch reads fan_in off the
        /// weight's second dimension, which for ConvTranspose2d is the output channels.)
        std::vector<tensor_spec> tensor_specs() const {
            std::vector<tensor_spec> p{
                {"weight", weight_count, C * Kernel * Kernel, Filters * Kernel * Kernel, Init::value, true}};
            if (Bias) p.push_back({"bias", Filters, C * Kernel * Kernel, Filters * Kernel * Kernel, init::kind::zeros, false});
            return p;
        }
        void bind(const tensor_binding<T>& b) {
            w_ = b.parameters;
            dw_ = b.gradients;
        }
        std::size_t workspace_size(std::size_t batch) const {
            return Backend::template conv2d_workspace<T>(adjoint(batch));
        }

        void forward(const context& c, const node_io<T>& io) const {
            const conv_geometry g = adjoint(io.batch);
            if constexpr (tagged)
                Backend::conv2d_backward_data(c, g, io.x[0], static_cast<const T*>(w_), io.y, io.workspace, shape_tag{});
            else
                Backend::conv2d_backward_data(c, g, io.x[0], static_cast<const T*>(w_), io.y, io.workspace);
            if (Bias) Backend::add_channel_bias(c, io.y, static_cast<const T*>(w_ + weight_count), io.batch, Filters, plane_);
        }
        template <class Sink>
        void backward(const context& c, const node_io<T>& io, Sink& sink) {
            const conv_geometry g = adjoint(io.batch);
            if constexpr (tagged)
                Backend::conv2d_backward_weights(c, g, io.dy, io.x[0], dw_, static_cast<T*>(nullptr), io.workspace,
                                                 shape_tag{});
            else
                Backend::conv2d_backward_weights(c, g, io.dy, io.x[0], dw_, static_cast<T*>(nullptr), io.workspace);
            if (Bias) Backend::channel_bias_grad(c, io.dy, dw_ + weight_count, io.batch, Filters, plane_);
            sink.ready(static_cast<const T*>(dw_), parameter_count);
            if (!io.dx[0]) return;
            if constexpr (tagged)
                Backend::conv2d_forward(c, g, io.dy, static_cast<const T*>(w_), static_cast<const T*>(nullptr), io.dx[0],
                                        io.workspace, shape_tag{});
            else
                Backend::conv2d_forward(c, g, io.dy, static_cast<const T*>(w_), static_cast<const T*>(nullptr), io.dx[0],
                                        io.workspace);
        }

    private:
        T* w_ = nullptr;
        T* dw_ = nullptr;
        // HO * WO read at run time: with the compile-time constant inlined, g++ 12 warns
        // (-Waggressive-loop-optimizations, a false positive) on the host's bias-gradient sum.
        std::size_t plane_ = HO * WO;
    };
};

}  // namespace lamina
// ---- end include/lamina/layers/conv_transpose2d.hpp ----

// ---- begin include/lamina/layers/pooling.hpp ----
// lamina: max and average pooling over square windows (stride defaults to the window).



namespace lamina {

namespace detail {
template <std::size_t Window, std::size_t Stride, std::size_t Padding>
struct pool_shape_rule : layer_descriptor_base {
    template <class In>
    static constexpr bool accepts = [] {
        if constexpr (In::rank != 3) return false;
        else return In::dims[1] + 2 * Padding >= Window && In::dims[2] + 2 * Padding >= Window;
    }();
    template <class In>
    using expected_input = spatial_at_least<(Window > 2 * Padding ? Window - 2 * Padding : 1),
                                            (Window > 2 * Padding ? Window - 2 * Padding : 1)>;
    template <class In>
    using output_shape = shape<chw<In>::c, conv_geometry::out_extent(chw<In>::h, Window, Stride, Padding),
                               conv_geometry::out_extent(chw<In>::w, Window, Stride, Padding)>;

    template <class In>
    static pool_geometry geometry(std::size_t batch) {
        pool_geometry g;
        g.n = batch; g.c = In::dims[0]; g.h = In::dims[1]; g.w = In::dims[2];
        g.kh = g.kw = Window; g.stride_h = g.stride_w = Stride; g.pad_h = g.pad_w = Padding;
        g.p = conv_geometry::out_extent(g.h, Window, Stride, Padding);
        g.q = conv_geometry::out_extent(g.w, Window, Stride, Padding);
        return g;
    }
};
}  // namespace detail

template <std::size_t Window, std::size_t Stride = Window, std::size_t Padding = 0>
struct max_pool : detail::pool_shape_rule<Window, Stride, Padding> {
    static_assert(Window > 0 && Stride > 0, "lamina::max_pool needs a positive window and stride");
    static_assert(Padding * 2 < Window + 1, "lamina::max_pool: padding must be at most half the window");
    static std::string name() { return "max_pool<" + std::to_string(Window) + (Stride != Window ? ",s" + std::to_string(Stride) : std::string()) + ">"; }

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
        using rule = detail::pool_shape_rule<Window, Stride, Padding>;
        static constexpr std::size_t out_size = rule::template output_shape<In>::size;

    public:
        using context = typename Backend::context;
        static constexpr double flops_per_sample = double(out_size) * Window * Window;
        static constexpr auto traits = graph::leaf_traits{}.no_input();  // backward routes dy through the saved argmax
        /// The winning input cell of every output, from forward_train to backward.
        std::size_t saved_bytes(std::size_t batch) const { return batch * out_size * sizeof(std::int32_t); }

        void forward(const context& c, const node_io<T>& io) const {
            Backend::max_pool_forward(c, rule::template geometry<In>(io.batch), io.x[0], io.y,
                                      static_cast<std::int32_t*>(nullptr));
        }
        void forward_train(const context& c, const node_io<T>& io, std::uint64_t) {
            Backend::max_pool_forward(c, rule::template geometry<In>(io.batch), io.x[0], io.y,
                                      io.template saved_as<std::int32_t>());
        }
        void backward(const context& c, const node_io<T>& io) {
            if (io.dx[0])
                Backend::max_pool_backward(c, rule::template geometry<In>(io.batch), io.dy,
                                           static_cast<const std::int32_t*>(io.template saved_as<std::int32_t>()),
                                           io.dx[0]);
        }
    };
};

template <std::size_t Window, std::size_t Stride = Window, std::size_t Padding = 0>
struct avg_pool : detail::pool_shape_rule<Window, Stride, Padding> {
    static_assert(Window > 0 && Stride > 0, "lamina::avg_pool needs a positive window and stride");
    static std::string name() { return "avg_pool<" + std::to_string(Window) + (Stride != Window ? ",s" + std::to_string(Stride) : std::string()) + ">"; }

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
        using rule = detail::pool_shape_rule<Window, Stride, Padding>;

    public:
        using context = typename Backend::context;
        static constexpr double flops_per_sample =
            double(rule::template output_shape<In>::size) * Window * Window;
        static constexpr auto traits = graph::leaf_traits{}.no_input();

        void forward(const context& c, const node_io<T>& io) const {
            Backend::avg_pool_forward(c, rule::template geometry<In>(io.batch), io.x[0], io.y);
        }
        void backward(const context& c, const node_io<T>& io) {
            if (io.dx[0]) Backend::avg_pool_backward(c, rule::template geometry<In>(io.batch), io.dy, io.dx[0]);
        }
    };
};

}  // namespace lamina
// ---- end include/lamina/layers/pooling.hpp ----

// ---- begin include/lamina/layers/flatten.hpp ----
// lamina: flatten (C, H, W) to a vector, and reshape to any shape of the same size. NCHW is
// already contiguous per sample, so both are views: the model gives their output the input's
// storage, and neither runs a kernel in forward or backward.



namespace lamina {

namespace detail {
/// The runtime side of every view: nothing to do, the model aliases the edge.
template <class Backend, class T>
class view_impl : public node_base<Backend, T> {
public:
    using context = typename Backend::context;
    static constexpr auto traits = graph::leaf_traits{}.as_view();
    void forward(const context&, const node_io<T>&) const {}
    void backward(const context&, const node_io<T>&) {}
};
}  // namespace detail

struct flatten : layer_descriptor_base {
    static std::string name() { return "flatten"; }
    template <class In>
    using output_shape = shape<In::size>;
    template <class In, class Backend, class T>
    using impl = detail::view_impl<Backend, T>;
};

/// reshape<Dims...>: the same values seen with another shape of the same size, e.g.
/// reshape<512, 16, 16> after a dense<131072> (the VAE decoder back to a latent map).
template <std::size_t... Dims>
struct reshape : layer_descriptor_base {
    static_assert(sizeof...(Dims) >= 1, "lamina::reshape needs at least one extent");
    static std::string name() { return "reshape<" + shape<Dims...>::str().substr(1, shape<Dims...>::str().size() - 2) + ">"; }
    template <class In>
    static constexpr bool accepts = In::size == shape<Dims...>::size;
    template <class In>
    using expected_input = any_shape_of_size<shape<Dims...>::size>;
    template <class In>
    using output_shape = shape<Dims...>;
    template <class In, class Backend, class T>
    using impl = detail::view_impl<Backend, T>;
};

/// identity: passes its input through (a residual's shortcut; a placeholder).
struct identity : layer_descriptor_base {
    static std::string name() { return "identity"; }
    template <class In, class Backend, class T>
    using impl = detail::view_impl<Backend, T>;
};

}  // namespace lamina
// ---- end include/lamina/layers/flatten.hpp ----

// ---- begin include/lamina/layers/dropout.hpp ----
// lamina: inverted dropout. Training keeps each element with probability 1 - p and scales
// it by 1/(1 - p); inference is the identity. The mask comes from the counter-based RNG,
// keyed by the model seed, the layer and the training step, so it is the same on every
// backend and thread count and a resumed run draws the same masks. The mask is the node's
// saved-for-backward block (planned by the model), so the layer holds no buffers.

#include <ratio>


namespace lamina {

/// dropout<P> with P a std::ratio, e.g. dropout<std::ratio<1, 2>>; `dropout_p<Percent>` for
/// an integer percentage.
template <class P = std::ratio<1, 2>>
struct dropout : layer_descriptor_base {
    static constexpr double p = double(P::num) / double(P::den);
    static_assert(P::num >= 0 && P::num < P::den, "lamina::dropout: probability must be in [0, 1)");
    static std::string name() { return "dropout<" + std::to_string(p).substr(0, 4) + ">"; }

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        // y = x * mask and dx = dy * mask, elementwise: both may run in place
        static constexpr auto traits = graph::leaf_traits{}.in_place().in_place_gradient().no_input();
        std::size_t saved_bytes(std::size_t batch) const { return batch * In::size * sizeof(T); }
        /// Set by the model: distinguishes this layer's stream from every other layer's.
        void set_stream(random_stream s) { stream_ = s; }

        void forward(const context& c, const node_io<T>& io) const {
            Backend::copy(c, io.y, io.x[0], io.batch * In::size);
        }
        void forward_train(const context& c, const node_io<T>& io, std::uint64_t step) {
            Backend::dropout_forward(c, io.x[0], io.y, io.template saved_as<T>(), io.batch * In::size, static_cast<T>(p),
                                     stream_.child(step));
        }
        void backward(const context& c, const node_io<T>& io) {
            if (io.dx[0])
                Backend::multiply(c, io.batch * In::size, io.dy, static_cast<const T*>(io.template saved_as<T>()),
                                  io.dx[0]);
        }

    private:
        random_stream stream_{};
    };
};

template <int Percent>
using dropout_p = dropout<std::ratio<Percent, 100>>;

}  // namespace lamina
// ---- end include/lamina/layers/dropout.hpp ----

// ---- begin include/lamina/layers/activations.hpp ----
// lamina: elementwise activation layers (relu, leaky_relu, sigmoid, tanh, gelu), one
// template over the activation kind, so each backend needs one forward and one backward kernel.



namespace lamina {

/// Slope is a std::ratio (only used by leaky_relu).
template <activation_kind Kind, class Slope = std::ratio<0>>
struct activation_layer : layer_descriptor_base {
    static constexpr double alpha = double(Slope::num) / double(Slope::den);
    static std::string name() {
        return Kind == activation_kind::leaky_relu ? "leaky_relu<" + std::to_string(alpha).substr(0, 6) + ">"
                                                   : std::string(to_string(Kind));
    }

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr double flops_per_sample = double(In::size);
        /// Whether the derivative can be taken from the output y alone (relu, leaky_relu with a
        /// non-negative slope: y > 0 exactly when x > 0; sigmoid, tanh: f' is a function of y).
        /// Such an activation may run in place, be applied in a preceding layer's epilogue
        /// (network/chain.hpp), and its backward reads y where it would read x. GELU needs x.
        static constexpr bool fusable_into_producer =
            Kind == activation_kind::relu || Kind == activation_kind::sigmoid || Kind == activation_kind::tanh ||
            (Kind == activation_kind::leaky_relu && alpha >= 0.0);
        static constexpr graph::leaf_traits traits = [] {
            graph::leaf_traits t;
            t.in_place_forward = fusable_into_producer;
            t.in_place_backward = true;  // dx[i] depends on dy[i] alone
            t.needs_input = !fusable_into_producer;
            t.needs_output = fusable_into_producer;
            return t;
        }();
        static activation fused_activation() { return activation{Kind, alpha}; }

        void forward(const context& c, const node_io<T>& io) const {
            Backend::activation_forward(c, activation{Kind, alpha}, io.x[0], io.y, io.batch * In::size);
        }
        void backward(const context& c, const node_io<T>& io) {
            if (!io.dx[0]) return;
            const T* x = fusable_into_producer ? static_cast<const T*>(io.y) : io.x[0];
            Backend::activation_backward(c, activation{Kind, alpha}, x, static_cast<const T*>(io.y), io.dy, io.dx[0],
                                         io.batch * In::size);
        }
    };
};

using relu = activation_layer<activation_kind::relu>;
using sigmoid = activation_layer<activation_kind::sigmoid>;
using tanh = activation_layer<activation_kind::tanh>;
using tanh_layer = tanh;  // for code that also uses std::tanh unqualified
using gelu = activation_layer<activation_kind::gelu>;
/// leaky_relu with PyTorch's default negative slope 0.01.
using leaky_relu = activation_layer<activation_kind::leaky_relu, std::ratio<1, 100>>;
template <class Slope>
using leaky_relu_slope = activation_layer<activation_kind::leaky_relu, Slope>;

}  // namespace lamina
// ---- end include/lamina/layers/activations.hpp ----

// ---- begin include/lamina/layers/softmax.hpp ----
// lamina: softmax over a vector (for probabilities at inference; train on logits with
// loss::softmax_cross_entropy, which fuses the softmax and is numerically stable).



namespace lamina {

struct softmax : layer_descriptor_base {
    static std::string name() { return "softmax"; }
    template <class In>
    static constexpr bool accepts = In::rank == 1;
    template <class In>
    using expected_input = any_shape_of_rank<1>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr double flops_per_sample = 3.0 * In::size;
        static constexpr auto traits = graph::leaf_traits{}.no_input().reads_output();
        void forward(const context& c, const node_io<T>& io) const {
            Backend::softmax_forward(c, io.x[0], io.y, io.batch, In::size);
        }
        void backward(const context& c, const node_io<T>& io) {
            if (io.dx[0]) Backend::softmax_backward(c, static_cast<const T*>(io.y), io.dy, io.dx[0], io.batch, In::size);
        }
    };
};

}  // namespace lamina
// ---- end include/lamina/layers/softmax.hpp ----

// ---- begin include/lamina/layers/batch_norm.hpp ----
// lamina: batch normalization (Ioffe & Szegedy), PyTorch semantics: per channel for images
// (C, H, W), per feature for vectors; training normalises with the batch's mean and biased
// variance and updates the running mean and the running unbiased variance with momentum
// (running = (1 - m) running + m batch); inference uses the running statistics.
//
//   lm::conv2d<64, 3, 1, 1, lm::init::he_normal, false>, lm::batch_norm, lm::relu
//
// gamma and beta are trainable (no weight decay); running_mean and running_var are running
// state: checkpointed, never optimized. batch_norm_zero_gamma starts gamma at 0 (the last
// BN of a residual block, Goyal et al.). The kernels are batch_norm_kernels<Backend>
// (backends/portable/batch_norm.hpp, specialised by backends that have faster ones).
//
// Synchronised batch norm: while a batch_statistics_scope is active (layers/batch_statistics.hpp;
// the trainer installs one when its communicator is asked to synchronise batch norm), training
// normalises with the mean and variance of the global batch of every process, the running
// statistics follow them (so they stay equal on every process), and backward uses the global
// sums for dx. Without one, each process uses its own batch (the default).


// ---- begin include/lamina/layers/batch_statistics.hpp ----
// lamina: the hook through which batch norm combines its per-channel batch statistics across
// the processes that train one model together (synchronised batch norm).
//
// A reducer sums small arrays of doubles over the processes (an allreduce; the MPI
// communicator, communicators/mpi.hpp, implements one). Training code installs it for the
// passes it runs with a batch_statistics_scope; while one is active on the calling thread,
// batch norm's forward_train sums the per-channel sums and sums of squares of every process's
// batch before normalising, and its backward sums the per-channel sums of dy and dy x-hat
// before computing dx (dgamma and dbeta stay this process's own: the gradient averaging adds
// them up). Without a scope batch norm is unchanged: statistics of the local batch.
//
//   lamina::batch_statistics_scope sync{&reducer};   // the trainer does this when asked to
//   net.forward_train(x, batch, step);
//   net.backward(sink);


namespace lamina {

/// Sums arrays of doubles over the processes that train one model together.
class batch_statistics_reducer {
public:
    virtual ~batch_statistics_reducer() = default;
    /// values[0..n) becomes the sum over every process of its values[0..n). Every process
    /// calls it with the same n, in the same order (it is a collective operation).
    virtual void sum(double* values, std::size_t n) = 0;
};

namespace detail {
/// The reducer active on this thread (null: batch norm uses its local batch only).
inline batch_statistics_reducer*& active_batch_statistics_reducer() noexcept {
    thread_local batch_statistics_reducer* active = nullptr;
    return active;
}
}  // namespace detail

/// Makes `r` the active reducer of the calling thread while it lives (null: none), restoring
/// the previous one afterwards. A thread-local rather than a model setting: the passes that
/// run under the scope are exactly the ones the caller synchronises, and no layer, model or
/// backend context needs a field for it.
class batch_statistics_scope {
public:
    explicit batch_statistics_scope(batch_statistics_reducer* r) noexcept
        : previous_(detail::active_batch_statistics_reducer()) {
        detail::active_batch_statistics_reducer() = r;
    }
    ~batch_statistics_scope() { detail::active_batch_statistics_reducer() = previous_; }
    batch_statistics_scope(const batch_statistics_scope&) = delete;
    batch_statistics_scope& operator=(const batch_statistics_scope&) = delete;

    static batch_statistics_reducer* current() noexcept { return detail::active_batch_statistics_reducer(); }

private:
    batch_statistics_reducer* previous_;
};

/// What one synchronised batch norm pass hands its kernels: the reducer, 2C + 1 doubles of
/// scratch in the backend's memory (`device`) and on the host (`host`), and the number of
/// values per channel in the global batch (written by forward_train, read by backward).
struct batch_statistics_sync {
    batch_statistics_reducer* reducer = nullptr;
    double* device = nullptr;
    double* host = nullptr;
    double global_count = 0;
};

}  // namespace lamina
// ---- end include/lamina/layers/batch_statistics.hpp ----


namespace lamina {

/// Momentum and Eps are std::ratio; GammaInit is how gamma starts (init::kind::ones, or zeros).
template <class Momentum = std::ratio<1, 10>, class Eps = std::ratio<1, 100000>, init::kind GammaInit = init::kind::ones>
struct batch_norm_t : layer_descriptor_base {
    static constexpr double momentum = double(Momentum::num) / double(Momentum::den);
    static constexpr double eps = double(Eps::num) / double(Eps::den);
    static_assert(momentum >= 0.0 && momentum <= 1.0, "lamina::batch_norm: momentum must be in [0, 1]");
    static_assert(eps > 0.0, "lamina::batch_norm: eps must be positive");
    static std::string name() {
        std::string n = "batch_norm";
        if (GammaInit == init::kind::zeros) n += "<gamma=0>";
        return n;
    }
    template <class In>
    static constexpr bool accepts = In::rank == 1 || In::rank == 3;
    template <class In>
    using expected_input = any_shape_of_rank<3>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t channels = chw<In>::c;
        static constexpr std::size_t inner = chw<In>::h * chw<In>::w;  // spatial size per channel
        static constexpr std::size_t parameter_count = 2 * channels;   // gamma, beta
        static constexpr std::size_t state_count = 2 * channels;       // running mean, running variance
        static constexpr double flops_per_sample = 4.0 * In::size;
        static constexpr graph::leaf_traits traits = [] {
            graph::leaf_traits t;
            t.needs_input = true;        // backward recomputes x-hat from x and the saved statistics
            t.in_place_backward = true;  // dx[i] needs dy[i] only, after the per-channel sums
            t.accumulates = true;
            return t;
        }();

        std::vector<tensor_spec> tensor_specs() const {
            return {{"gamma", channels, 0, 0, GammaInit, false, tensor_kind::trainable},
                    {"beta", channels, 0, 0, init::kind::zeros, false, tensor_kind::trainable},
                    {"running_mean", channels, 0, 0, init::kind::zeros, false, tensor_kind::state},
                    {"running_var", channels, 0, 0, init::kind::ones, false, tensor_kind::state}};
        }
        void bind(const tensor_binding<T>& b) {
            p_ = b.parameters;
            g_ = b.gradients;
            s_ = b.state;
        }
        /// The batch mean and 1/sqrt(var + eps) of each channel, kept for backward.
        std::size_t saved_bytes(std::size_t) const { return 2 * channels * sizeof(T); }

        /// Inference: the running statistics.
        void forward(const context& c, const node_io<T>& io) const {
            batch_norm_kernels<Backend>::forward(c, io.x[0], io.y, s_, s_ + channels, p_, p_ + channels, io.batch,
                                                 channels, inner, eps);
        }
        /// Training: batch statistics (of the global batch under a batch_statistics_scope);
        /// updates the running statistics.
        void forward_train(const context& c, const node_io<T>& io, std::uint64_t) {
            T* mean = io.template saved_as<T>();
            synced_ = false;
            if (batch_statistics_reducer* r = batch_statistics_scope::current()) {
                prepare_sync(r);
                batch_norm_kernels<Backend>::forward_train_synced(c, io.x[0], io.y, mean, mean + channels, s_,
                                                                  s_ + channels, p_, p_ + channels, io.batch, channels,
                                                                  inner, eps, momentum, sync_);
                synced_ = true;
                return;
            }
            batch_norm_kernels<Backend>::forward_train(c, io.x[0], io.y, mean, mean + channels, s_, s_ + channels, p_,
                                                       p_ + channels, io.batch, channels, inner, eps, momentum);
        }
        /// Reports the parameter gradients to the sink. A named type, not a lambda: nvcc rejects
        /// a device lambda inside a function template instantiated with a function-local type.
        template <class Sink>
        struct report_gradients {
            Sink* sink;
            const T* gradients;
            void operator()() const { sink->ready(gradients, parameter_count); }
        };
        template <class Sink>
        void backward(const context& c, const node_io<T>& io, Sink& sink) {
            const T* mean = io.template saved_as<T>();
            report_gradients<Sink> ready{&sink, g_};
            if (synced_) {
                sync_.reducer = batch_statistics_scope::current();
                if (!sync_.reducer)
                    throw error("lamina: batch_norm: forward_train normalised with synchronised statistics, but backward "
                                "runs without a batch_statistics_scope (install the same reducer for both passes)");
                batch_norm_kernels<Backend>::backward_synced(c, io.x[0], io.dy, mean, mean + channels, p_, g_,
                                                             g_ + channels, io.dx[0], io.accumulate[0], io.batch,
                                                             channels, inner, sync_, ready);
                return;
            }
            batch_norm_kernels<Backend>::backward(c, io.x[0], io.dy, mean, mean + channels, p_, g_, g_ + channels,
                                                  io.dx[0], io.accumulate[0], io.batch, channels, inner, ready);
        }

        /// "eps" and "momentum" (fold_batch_norm reads eps).
        double constant(const std::string& what) const {
            if (what == "eps") return eps;
            if (what == "momentum") return momentum;
            throw error("lamina: batch_norm has no constant '" + what + "'");
        }
        const T* running_mean() const noexcept { return s_; }
        const T* running_var() const noexcept { return s_ + channels; }

    private:
        /// The 2C + 1 doubles of synchronisation scratch, allocated at the first synchronised
        /// step (later steps allocate nothing).
        void prepare_sync(batch_statistics_reducer* r) {
            if (sync_host_.empty()) {
                sync_host_.assign(2 * channels + 1, 0.0);
                sync_device_.allocate(2 * channels + 1);
            }
            sync_.reducer = r;
            sync_.host = sync_host_.data();
            sync_.device = sync_device_.data();
        }

        T* p_ = nullptr;  // gamma, beta
        T* g_ = nullptr;  // their gradients
        T* s_ = nullptr;  // running mean, running variance
        bool synced_ = false;  // the last forward_train used global statistics
        batch_statistics_sync sync_;
        std::vector<double> sync_host_;
        typename Backend::template buffer<double> sync_device_;
    };
};

using batch_norm = batch_norm_t<>;
/// Batch norm whose gamma starts at 0: a residual block then starts as its shortcut.
using batch_norm_zero_gamma = batch_norm_t<std::ratio<1, 10>, std::ratio<1, 100000>, init::kind::zeros>;

}  // namespace lamina
// ---- end include/lamina/layers/batch_norm.hpp ----

// ---- begin include/lamina/layers/merge.hpp ----
// lamina: the nodes that join several inputs: `add` (elementwise sum, a residual's join) and
// `concat` (channels of images, features of vectors; the multi-scale CNN's join). They take
// shapes<S...> and node_io<T, N>; branches<Merge, Paths...> and residual<...> use them.
//
// add:    y = x0 + x1 + ...; may run in place over x0; every dx[i] is dy, so the model gives
//         each input gradient the output gradient's storage when add is its only writer
//         (a residual's backward then copies nothing on its main path).
// concat: y[n] = [x0[n], x1[n], ...] per sample; backward copies (or adds) each slice.

#include <tuple>


namespace lamina {

namespace detail {
template <class S, class... Ss>
struct all_same : std::bool_constant<(std::is_same_v<S, Ss> && ...)> {};

template <class A, class B>
struct same_spatial : std::false_type {};
template <std::size_t C1, std::size_t C2, std::size_t H, std::size_t W>
struct same_spatial<shape<C1, H, W>, shape<C2, H, W>> : std::true_type {};
template <std::size_t N1, std::size_t N2>
struct same_spatial<shape<N1>, shape<N2>> : std::true_type {};

template <class A, class B>
struct concat2;
template <std::size_t C1, std::size_t C2, std::size_t H, std::size_t W>
struct concat2<shape<C1, H, W>, shape<C2, H, W>> {
    using type = shape<C1 + C2, H, W>;
};
template <std::size_t N1, std::size_t N2>
struct concat2<shape<N1>, shape<N2>> {
    using type = shape<N1 + N2>;
};
template <class S, class... Ss>
struct concat_shape {
    using type = S;
};
template <class S1, class S2, class... Ss>
struct concat_shape<S1, S2, Ss...> {
    using type = typename concat_shape<typename concat2<S1, S2>::type, Ss...>::type;
};
template <class Ins>
struct concat_output;
template <class... S>
struct concat_output<shapes<S...>> {
    using type = typename concat_shape<S...>::type;
};
template <class Ins>
struct add_output;
template <class S, class... Ss>
struct add_output<shapes<S, Ss...>> {
    using type = S;
};
}  // namespace detail

/// Elementwise sum of inputs of one shape.
struct add : layer_descriptor_base {
    static std::string name() { return "add"; }
    template <class Ins>
    using output_shape = typename detail::add_output<Ins>::type;

    template <class Ins, class Backend, class T>
    class impl;
    template <class S, class... Ss, class Backend, class T>
    class impl<shapes<S, Ss...>, Backend, T> : public node_base<Backend, T> {
        static_assert(detail::all_same<S, Ss...>::value, "lamina::add: every input must have the same shape");

    public:
        using context = typename Backend::context;
        static constexpr std::size_t inputs = 1 + sizeof...(Ss);
        static constexpr double flops_per_sample = double(inputs - 1) * S::size;
        static constexpr auto traits = graph::leaf_traits{}.in_place().passthrough().no_input().accumulating();
        void forward(const context& c, const node_io<T, inputs>& io) const {
            const std::size_t n = io.batch * S::size;
            Backend::copy(c, io.y, io.x[0], n);  // a no-op in place
            for (std::size_t i = 1; i < inputs; ++i) Backend::axpy(c, n, T(1), io.x[i], io.y);
        }
        void backward(const context& c, const node_io<T, inputs>& io) {
            const std::size_t n = io.batch * S::size;
            for (std::size_t i = 0; i < inputs; ++i) {
                if (!io.dx[i] || io.dx[i] == io.dy) continue;  // aliased by the model: nothing to do
                if (io.accumulate[i]) Backend::axpy(c, n, T(1), io.dy, io.dx[i]);
                else Backend::copy(c, io.dx[i], io.dy, n);
            }
        }
    };
};

/// Concatenation along channels (C, H, W inputs of equal H and W) or features (vectors).
struct concat : layer_descriptor_base {
    static std::string name() { return "concat"; }
    template <class Ins>
    using output_shape = typename detail::concat_output<Ins>::type;

    template <class Ins, class Backend, class T>
    class impl;
    template <class... S, class Backend, class T>
    class impl<shapes<S...>, Backend, T> : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        using out_shape = typename detail::concat_shape<S...>::type;
        static constexpr std::size_t inputs = sizeof...(S);
        static constexpr double flops_per_sample = 0;
        static constexpr auto traits = graph::leaf_traits{}.no_input().accumulating();
        static constexpr std::size_t sizes[inputs] = {S::size...};

        void forward(const context& c, const node_io<T, inputs>& io) const {
            std::size_t offset = 0;
            for (std::size_t k = 0; k < inputs; ++k) {
                copy_slice(c, io.x[k], io.y, io.batch, sizes[k], offset, false, true);
                offset += sizes[k];
            }
        }
        void backward(const context& c, const node_io<T, inputs>& io) {
            std::size_t offset = 0;
            for (std::size_t k = 0; k < inputs; ++k) {
                if (io.dx[k]) copy_slice(c, io.dy, io.dx[k], io.batch, sizes[k], offset, io.accumulate[k], false);
                offset += sizes[k];
            }
        }

        // Public, not private: nvcc rejects an extended __host__ __device__ lambda (LAMINA_LAMBDA)
        // whose enclosing function is private or protected within its class.
        /// Per sample n: the `size` values at `offset` of the concatenated row and the whole row of
        /// input k. to_whole: input -> concatenated; else concatenated -> input (maybe adding).
        static void copy_slice(const context& c, const T* from, T* to, std::size_t batch, std::size_t size,
                               std::size_t offset, bool accumulate, bool to_whole) {
            constexpr std::size_t total = out_shape::size;
            Backend::for_each_index(c, batch * size, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t n = i / size, j = i % size;
                const std::size_t whole = n * total + offset + j;
                if (to_whole) to[whole] = from[i];
                else to[i] = accumulate ? to[i] + from[whole] : from[whole];
            });
        }
    };
};

}  // namespace lamina
// ---- end include/lamina/layers/merge.hpp ----

// ---- begin include/lamina/layers/global_avg_pool.hpp ----
// lamina: global average pooling, (C, H, W) -> (C): the mean of each channel's plane
// (ResNet's and the HEP CNN's head). Written once for every backend (Backend::for_each_index).



namespace lamina {

struct global_avg_pool : layer_descriptor_base {
    static std::string name() { return "global_avg_pool"; }
    template <class In>
    static constexpr bool accepts = In::rank == 3;
    template <class In>
    using expected_input = any_shape_of_rank<3>;
    template <class In>
    using output_shape = shape<chw<In>::c>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t C = chw<In>::c, HW = chw<In>::h * chw<In>::w;
        static constexpr double flops_per_sample = double(In::size);
        static constexpr auto traits = graph::leaf_traits{}.no_input().accumulating();

        void forward(const context& c, const node_io<T>& io) const {
            const T* x = io.x[0];
            T* y = io.y;
            const T inv = T(1) / static_cast<T>(HW);
            Backend::for_each_index(
                c, io.batch * C,
                LAMINA_LAMBDA(std::size_t nc) {
                    const T* p = x + nc * HW;
                    T s = 0;
                    for (std::size_t j = 0; j < HW; ++j) s += p[j];
                    y[nc] = s * inv;
                },
                HW);
        }
        void backward(const context& c, const node_io<T>& io) {
            T* dx = io.dx[0];
            if (!dx) return;
            const T* dy = io.dy;
            const T inv = T(1) / static_cast<T>(HW);
            const bool acc = io.accumulate[0];
            Backend::for_each_index(c, io.batch * In::size, LAMINA_LAMBDA(std::size_t i) {
                const T g = dy[i / HW] * inv;
                dx[i] = acc ? dx[i] + g : g;
            });
        }
    };
};

}  // namespace lamina
// ---- end include/lamina/layers/global_avg_pool.hpp ----

// ---- begin include/lamina/layers/shortcut.hpp ----
// lamina: subsample_pad<Cout, Stride>, He et al.'s parameter-free residual shortcut (option A)
// for blocks that change the number of channels or the resolution: every Stride-th pixel, the
// channels zero-padded equally on both sides to Cout (network/composites.hpp's shortcut_for
// picks it).



namespace lamina {

template <std::size_t Cout, std::size_t Stride = 2>
struct subsample_pad : layer_descriptor_base {
    static_assert(Stride >= 1, "lamina::subsample_pad needs a positive stride");
    static std::string name() { return "subsample_pad<" + std::to_string(Cout) + ",s" + std::to_string(Stride) + ">"; }
    template <class In>
    static constexpr bool accepts = In::rank == 3 && Cout >= chw<In>::c && (Cout - chw<In>::c) % 2 == 0;
    template <class In>
    using expected_input = any_shape_of_rank<3>;
    template <class In>
    using output_shape = shape<Cout, (chw<In>::h + Stride - 1) / Stride, (chw<In>::w + Stride - 1) / Stride>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t C = chw<In>::c, H = chw<In>::h, W = chw<In>::w;
        static constexpr std::size_t P = (H + Stride - 1) / Stride, Q = (W + Stride - 1) / Stride;
        static constexpr std::size_t pad = (Cout - C) / 2;
        static constexpr auto traits = graph::leaf_traits{}.no_input().accumulating();

        void forward(const context& c, const node_io<T>& io) const {
            const T* x = io.x[0];
            T* y = io.y;
            Backend::for_each_index(c, io.batch * Cout * P * Q, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t q = i % Q, p = (i / Q) % P, k = (i / (P * Q)) % Cout, n = i / (Cout * P * Q);
                y[i] = (k >= pad && k < pad + C) ? x[((n * C + (k - pad)) * H + p * Stride) * W + q * Stride] : T(0);
            });
        }
        void backward(const context& c, const node_io<T>& io) {
            T* dx = io.dx[0];
            if (!dx) return;
            const T* dy = io.dy;
            const bool acc = io.accumulate[0];
            Backend::for_each_index(c, io.batch * C * H * W, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t w = i % W, h = (i / W) % H, ch = (i / (H * W)) % C, n = i / (C * H * W);
                const T g = (h % Stride == 0 && w % Stride == 0)
                                ? dy[((n * Cout + ch + pad) * P + h / Stride) * Q + w / Stride]
                                : T(0);
                dx[i] = acc ? dx[i] + g : g;
            });
        }
    };
};

}  // namespace lamina
// ---- end include/lamina/layers/shortcut.hpp ----

// ---- begin include/lamina/layers/layer_norm.hpp ----
// lamina: layer normalization (Ba et al.), PyTorch's LayerNorm over the whole sample shape:
// each sample is normalised with its own mean and biased variance over all of its elements
// ((C, H, W) for images, N for vectors), then scaled and shifted elementwise by gamma and beta
// of the sample's size (elementwise_affine = True). Training and inference compute the same
// thing (no running statistics).
//
//   lm::dense<256>, lm::layer_norm, lm::gelu
//
// gamma (ones) and beta (zeros) are trainable without weight decay. Eps is a std::ratio
// (default 1e-5, PyTorch's). Written once for every backend: per-sample reductions, per-feature
// reductions and elementwise passes through Backend::for_each_index.



namespace lamina {

template <class Eps = std::ratio<1, 100000>>
struct layer_norm_t : layer_descriptor_base {
    static constexpr double eps = double(Eps::num) / double(Eps::den);
    static_assert(eps > 0.0, "lamina::layer_norm: eps must be positive");
    static std::string name() { return "layer_norm"; }
    template <class In>
    static constexpr bool accepts = is_shape<In>::value;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t features = In::size;  // normalised together, per sample
        static constexpr std::size_t parameter_count = 2 * features;  // gamma, beta
        static constexpr double flops_per_sample = 8.0 * In::size;
        // backward recomputes x-hat from x and the saved statistics; dx[i] needs dy[i] only, after
        // the per-sample sums
        static constexpr auto traits = graph::leaf_traits{}.in_place_gradient().accumulating();

        std::vector<tensor_spec> tensor_specs() const {
            return {{"gamma", features, 0, 0, init::kind::ones, false, tensor_kind::trainable},
                    {"beta", features, 0, 0, init::kind::zeros, false, tensor_kind::trainable}};
        }
        void bind(const tensor_binding<T>& b) {
            p_ = b.parameters;
            g_ = b.gradients;
        }
        /// Inference keeps each sample's mean and 1/sqrt(var + eps) here; backward its two sums.
        std::size_t workspace_size(std::size_t batch) const { return 2 * batch; }
        /// Each sample's mean and 1/sqrt(var + eps), kept for backward.
        std::size_t saved_bytes(std::size_t batch) const { return 2 * batch * sizeof(T); }

        void forward(const context& c, const node_io<T>& io) const {
            normalize(c, io.x[0], io.y, p_, io.workspace, io.batch);
        }
        void forward_train(const context& c, const node_io<T>& io, std::uint64_t) {
            normalize(c, io.x[0], io.y, p_, io.template saved_as<T>(), io.batch);
        }

        /// y = (x - mean) invstd gamma + beta; stats receives mean[batch] then invstd[batch].
        /// (Public: a device lambda may not live in a private member function under CUDA.)
        static void normalize(const context& c, const T* x, T* y, const T* p, T* stats, std::size_t n) {
            T* mean = stats;
            T* invstd = stats + n;
            const T* gamma = p;
            const T* beta = p + features;
            const double e = eps;
            constexpr std::size_t D = features;
            // per sample: mean, then the variance around it (two passes, in double)
            Backend::for_each_index(
                c, n,
                LAMINA_LAMBDA(std::size_t b) {
                    const T* xb = x + b * D;
                    double s = 0;
                    for (std::size_t j = 0; j < D; ++j) s += double(xb[j]);
                    const double mu = s / double(D);
                    double v = 0;
                    for (std::size_t j = 0; j < D; ++j) {
                        const double d = double(xb[j]) - mu;
                        v += d * d;
                    }
                    mean[b] = static_cast<T>(mu);
                    invstd[b] = static_cast<T>(1.0 / std::sqrt(v / double(D) + e));
                },
                3 * D);
            Backend::for_each_index(c, n * D, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t b = i / D, j = i % D;
                y[i] = (x[i] - mean[b]) * invstd[b] * gamma[j] + beta[j];
            });
        }

        template <class Sink>
        void backward(const context& c, const node_io<T>& io, Sink& sink) {
            const std::size_t n = io.batch;
            const T* x = io.x[0];
            const T* dy = io.dy;
            const T* mean = io.template saved_as<T>();
            const T* invstd = mean + n;
            const T* gamma = p_;
            T* dgamma = g_;
            T* dbeta = g_ + features;
            constexpr std::size_t D = features;
            // dgamma = sum over the batch of dy * x-hat, dbeta = sum of dy
            Backend::for_each_index(
                c, D,
                LAMINA_LAMBDA(std::size_t j) {
                    double sg = 0, sb = 0;
                    for (std::size_t b = 0; b < n; ++b) {
                        const std::size_t i = b * D + j;
                        sb += double(dy[i]);
                        sg += double(dy[i]) * (double(x[i]) - double(mean[b])) * double(invstd[b]);
                    }
                    dgamma[j] = static_cast<T>(sg);
                    dbeta[j] = static_cast<T>(sb);
                },
                3 * n);
            sink.ready(static_cast<const T*>(g_), parameter_count);
            T* dx = io.dx[0];
            if (!dx) return;
            // With g = gamma dy: dx = invstd (g - mean_j(g) - x-hat mean_j(g x-hat)), per sample.
            T* sum_g = io.workspace;
            T* sum_gx = io.workspace + n;
            Backend::for_each_index(
                c, n,
                LAMINA_LAMBDA(std::size_t b) {
                    double s1 = 0, s2 = 0;
                    const double mu = double(mean[b]), is = double(invstd[b]);
                    for (std::size_t j = 0; j < D; ++j) {
                        const std::size_t i = b * D + j;
                        const double g = double(gamma[j]) * double(dy[i]);
                        s1 += g;
                        s2 += g * (double(x[i]) - mu) * is;
                    }
                    sum_g[b] = static_cast<T>(s1);
                    sum_gx[b] = static_cast<T>(s2);
                },
                4 * D);
            const T inv_d = T(1) / static_cast<T>(D);
            const bool acc = io.accumulate[0];
            Backend::for_each_index(c, n * D, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t b = i / D, j = i % D;
                const T xhat = (x[i] - mean[b]) * invstd[b];
                const T g = invstd[b] * (gamma[j] * dy[i] - (sum_g[b] + xhat * sum_gx[b]) * inv_d);
                dx[i] = acc ? dx[i] + g : g;  // a select: dx may hold garbage when overwritten
            });
        }

    private:
        T* p_ = nullptr;  // gamma, beta
        T* g_ = nullptr;  // their gradients
    };
};

/// PyTorch's default: eps = 1e-5.
using layer_norm = layer_norm_t<>;

}  // namespace lamina
// ---- end include/lamina/layers/layer_norm.hpp ----

// ---- begin include/lamina/layers/gaussian_noise.hpp ----
// lamina: additive Gaussian noise, a regulariser (Keras' GaussianNoise). Training adds
// independent N(0, sigma^2) noise to every element; inference is the identity; the gradient
// passes through unchanged (dx = dy). The noise comes from the counter-based RNG keyed by the
// model seed, the layer and the training step (as dropout's mask), so it is the same on every
// backend and thread count and a resumed run draws the same noise. Written once for every
// backend (Backend::for_each_index); nothing is kept for backward.
//
//   lm::input<1, 28, 28>, lm::gaussian_noise<std::ratio<1, 10>>, lm::conv2d<8, 3>, ...



namespace lamina {

/// Sigma (the noise's standard deviation) is a std::ratio, e.g. std::ratio<1, 10>.
template <class Sigma>
struct gaussian_noise : layer_descriptor_base {
    static constexpr double sigma = double(Sigma::num) / double(Sigma::den);
    static_assert(Sigma::num >= 0, "lamina::gaussian_noise: sigma must be non-negative");
    static std::string name() { return "gaussian_noise<" + std::to_string(sigma).substr(0, 6) + ">"; }
    template <class In>
    static constexpr bool accepts = is_shape<In>::value;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr double flops_per_sample = double(In::size);
        // y = x + noise elementwise; dx = dy, so the model may give dx dy's storage
        static constexpr auto traits = graph::leaf_traits{}.in_place().passthrough().no_input().accumulating();
        /// Set by the model: distinguishes this layer's stream from every other layer's.
        void set_stream(random_stream s) { stream_ = s; }

        void forward(const context& c, const node_io<T>& io) const {
            Backend::copy(c, io.y, io.x[0], io.batch * In::size);
        }
        void forward_train(const context& c, const node_io<T>& io, std::uint64_t step) {
            const random_stream s = stream_.child(step);  // element i of the batch draws number i
            const T* x = io.x[0];
            T* y = io.y;
            const double sd = sigma;
            Backend::for_each_index(c, io.batch * In::size, LAMINA_LAMBDA(std::size_t i) {
                y[i] = x[i] + static_cast<T>(sd * s.gaussian(i));
            }, 40);
        }
        void backward(const context& c, const node_io<T>& io) {
            T* dx = io.dx[0];
            if (!dx || dx == io.dy) return;  // aliased by the model: nothing to do
            const std::size_t n = io.batch * In::size;
            if (io.accumulate[0]) Backend::axpy(c, n, T(1), io.dy, dx);
            else Backend::copy(c, dx, io.dy, n);
        }

    private:
        random_stream stream_{};
    };
};

}  // namespace lamina
// ---- end include/lamina/layers/gaussian_noise.hpp ----

// ---- begin include/lamina/layers/upsample.hpp ----
// lamina: nearest-neighbour upsampling by an integer factor (PyTorch's
// nn.Upsample(scale_factor=Factor, mode="nearest")): (C, H, W) -> (C, H * Factor, W * Factor),
// every input pixel becomes a Factor x Factor block; backward sums each block's gradient.
// Written once for every backend (Backend::for_each_index).
//
//   ..., lm::upsample_nearest<2>, lm::conv2d<16, 3, 1, 1>, ...   // a decoder stage



namespace lamina {

template <std::size_t Factor>
struct upsample_nearest : layer_descriptor_base {
    static_assert(Factor >= 1, "lamina::upsample_nearest: the factor must be at least 1");
    static std::string name() { return "upsample_nearest<" + std::to_string(Factor) + ">"; }
    template <class In>
    static constexpr bool accepts = In::rank == 3;
    template <class In>
    using expected_input = any_shape_of_rank<3>;
    template <class In>
    using output_shape = shape<chw<In>::c, chw<In>::h * Factor, chw<In>::w * Factor>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t H = chw<In>::h, W = chw<In>::w;
        static constexpr std::size_t OH = H * Factor, OW = W * Factor;
        static constexpr auto traits = graph::leaf_traits{}.no_input().accumulating();

        void forward(const context& c, const node_io<T>& io) const {
            const T* x = io.x[0];
            T* y = io.y;
            constexpr std::size_t h = H, w = W, oh = OH, ow = OW, f = Factor;
            Backend::for_each_index(c, io.batch * chw<In>::c * OH * OW, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t col = i % ow, row = (i / ow) % oh, plane = i / (oh * ow);
                y[i] = x[(plane * h + row / f) * w + col / f];
            });
        }
        void backward(const context& c, const node_io<T>& io) {
            T* dx = io.dx[0];
            if (!dx) return;
            const T* dy = io.dy;
            const bool acc = io.accumulate[0];
            constexpr std::size_t h = H, w = W, oh = OH, ow = OW, f = Factor;
            Backend::for_each_index(
                c, io.batch * In::size,
                LAMINA_LAMBDA(std::size_t i) {
                    const std::size_t col = i % w, row = (i / w) % h, plane = i / (h * w);
                    const T* block = dy + (plane * oh + row * f) * ow + col * f;
                    T s = 0;
                    for (std::size_t a = 0; a < f; ++a)
                        for (std::size_t b = 0; b < f; ++b) s += block[a * ow + b];
                    dx[i] = acc ? dx[i] + s : s;  // a select: dx may hold garbage when overwritten
                },
                Factor * Factor);
        }
    };
};

}  // namespace lamina
// ---- end include/lamina/layers/upsample.hpp ----

// ---- begin include/lamina/layers/zero_pad.hpp ----
// lamina: zero padding of images (PyTorch's nn.ZeroPad2d): (C, H, W) ->
// (C, Top + H + Bottom, Left + W + Right) with zeros around the input; backward crops the
// gradient. zero_pad2d<Pad> pads every side by Pad; zero_pad2d_tblr<Top, Bottom, Left, Right>
// pads each side on its own (an asymmetric "same" padding before a strided conv).
// Written once for every backend (Backend::for_each_index).



namespace lamina {

template <std::size_t Top, std::size_t Bottom, std::size_t Left, std::size_t Right>
struct zero_pad2d_tblr : layer_descriptor_base {
    static std::string name() {
        if (Top == Bottom && Top == Left && Top == Right) return "zero_pad2d<" + std::to_string(Top) + ">";
        return "zero_pad2d<" + std::to_string(Top) + "," + std::to_string(Bottom) + "," + std::to_string(Left) + "," +
               std::to_string(Right) + ">";
    }
    template <class In>
    static constexpr bool accepts = In::rank == 3;
    template <class In>
    using expected_input = any_shape_of_rank<3>;
    template <class In>
    using output_shape = shape<chw<In>::c, Top + chw<In>::h + Bottom, Left + chw<In>::w + Right>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t H = chw<In>::h, W = chw<In>::w;
        static constexpr std::size_t OH = Top + H + Bottom, OW = Left + W + Right;
        static constexpr auto traits = graph::leaf_traits{}.no_input().accumulating();

        void forward(const context& c, const node_io<T>& io) const {
            const T* x = io.x[0];
            T* y = io.y;
            constexpr std::size_t h = H, w = W, oh = OH, ow = OW, top = Top, left = Left;
            Backend::for_each_index(c, io.batch * chw<In>::c * OH * OW, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t col = i % ow, row = (i / ow) % oh, plane = i / (oh * ow);
                // unsigned wrap-around makes rows/columns above or left of the input out of range
                const std::size_t r = row - top, q = col - left;
                y[i] = (r < h && q < w) ? x[(plane * h + r) * w + q] : T(0);
            });
        }
        void backward(const context& c, const node_io<T>& io) {
            T* dx = io.dx[0];
            if (!dx) return;
            const T* dy = io.dy;
            const bool acc = io.accumulate[0];
            constexpr std::size_t h = H, w = W, oh = OH, ow = OW, top = Top, left = Left;
            Backend::for_each_index(c, io.batch * In::size, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t col = i % w, row = (i / w) % h, plane = i / (h * w);
                const T g = dy[(plane * oh + row + top) * ow + col + left];
                dx[i] = acc ? dx[i] + g : g;  // a select: dx may hold garbage when overwritten
            });
        }
    };
};

template <std::size_t Pad>
using zero_pad2d = zero_pad2d_tblr<Pad, Pad, Pad, Pad>;

}  // namespace lamina
// ---- end include/lamina/layers/zero_pad.hpp ----

// ---- begin include/lamina/layers/vae_sampling.hpp ----
// lamina: the reparameterisation step of a variational autoencoder (Kingma & Welling).
// Input: one vector per sample holding [mu (Z values), logvar (Z values)], size 2Z; output:
// z (Z values).
//
//   training:   z = mu + exp(0.5 logvar) * eps,  eps ~ N(0, 1)
//   inference:  z = mu  (the posterior mean: deterministic predictions)
//
// eps comes from the counter-based RNG keyed by the model seed, the layer and the training
// step (as dropout's mask), so it is the same on every backend and thread count; it is kept
// in the node's saved block for backward.
//
// In training the node adds Beta * KL(q(z|x) || N(0, I)) to the loss, with the conventions
//   KL per sample  = -0.5 * sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))   (sum over latents)
//   added loss     = Beta * mean over the batch of KL per sample
// (the batch mean matches the losses, which are batch means too). forward_train writes each
// sample's KL into the saved block; added_loss() reduces it with Backend::sum. Backward adds
// the KL's gradient to the sampling path's:
//   d mu     = dz + Beta mu / batch
//   d logvar = dz * 0.5 exp(0.5 logvar) eps + Beta 0.5 (exp(logvar) - 1) / batch
//
//   lm::dense<64>, lm::relu, lm::dense<2 * 8>, lm::vae_sampling<>, lm::dense<64>, ...  // Z = 8



namespace lamina {

/// What vae_sampling expects, named in its shape diagnostic: a vector [mu, logvar] of even size.
struct mu_logvar_vector_of_even_size {};

/// Beta (the KL term's weight, beta-VAE) is a std::ratio; std::ratio<0> trains without the KL.
template <class Beta = std::ratio<1>>
struct vae_sampling : layer_descriptor_base {
    static constexpr double beta = double(Beta::num) / double(Beta::den);
    static_assert(Beta::num >= 0, "lamina::vae_sampling: Beta must be non-negative");
    static std::string name() {
        return Beta::num == Beta::den ? std::string("vae_sampling")
                                      : "vae_sampling<beta=" + std::to_string(beta).substr(0, 6) + ">";
    }
    template <class In>
    static constexpr bool accepts = In::rank == 1 && In::size % 2 == 0 && In::size > 0;
    template <class In>
    using expected_input = mu_logvar_vector_of_even_size;
    template <class In>
    using output_shape = shape<In::size / 2>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t latent = In::size / 2;  // Z
        static constexpr bool adds_loss = true;
        static constexpr double flops_per_sample = double(latent);  // inference: a copy
        static constexpr auto traits = graph::leaf_traits{}.accumulating();  // backward reads mu and logvar
        /// eps (batch x Z), then each sample's KL (batch).
        std::size_t saved_bytes(std::size_t batch) const { return (batch * latent + batch) * sizeof(T); }
        /// Set by the model: distinguishes this layer's stream from every other layer's.
        void set_stream(random_stream s) { stream_ = s; }

        /// Inference: z = mu.
        void forward(const context& c, const node_io<T>& io) const {
            const T* x = io.x[0];
            T* y = io.y;
            constexpr std::size_t Z = latent;
            Backend::for_each_index(c, io.batch * Z, LAMINA_LAMBDA(std::size_t i) {
                y[i] = x[(i / Z) * 2 * Z + i % Z];
            });
        }
        void forward_train(const context& c, const node_io<T>& io, std::uint64_t step) {
            const random_stream s = stream_.child(step);  // element i of the batch's z draws number i
            const T* x = io.x[0];
            T* y = io.y;
            T* eps = io.template saved_as<T>();
            T* kl = eps + io.batch * latent;
            constexpr std::size_t Z = latent;
            Backend::for_each_index(
                c, io.batch * Z,
                LAMINA_LAMBDA(std::size_t i) {
                    const std::size_t b = i / Z, j = i % Z;
                    const T mu = x[b * 2 * Z + j], logvar = x[b * 2 * Z + Z + j];
                    const T e = static_cast<T>(s.gaussian(i));
                    eps[i] = e;
                    y[i] = mu + std::exp(T(0.5) * logvar) * e;
                },
                40);
            Backend::for_each_index(
                c, io.batch,
                LAMINA_LAMBDA(std::size_t b) {
                    double sum = 0;  // in double
                    for (std::size_t j = 0; j < Z; ++j) {
                        const double mu = double(x[b * 2 * Z + j]), logvar = double(x[b * 2 * Z + Z + j]);
                        sum += 1.0 + logvar - mu * mu - std::exp(logvar);
                    }
                    kl[b] = static_cast<T>(-0.5 * sum);
                },
                4 * Z);
        }
        /// Beta times the batch mean of the KL of the last forward_train.
        double added_loss(const context& c, const node_io<T>& io) const {
            if (io.batch == 0) return 0.0;
            const T* kl = io.template saved_as<T>() + io.batch * latent;
            return beta * static_cast<double>(Backend::sum(c, kl, io.batch)) / static_cast<double>(io.batch);
        }
        void backward(const context& c, const node_io<T>& io) {
            T* dx = io.dx[0];
            if (!dx) return;
            const T* x = io.x[0];
            const T* dy = io.dy;
            const T* eps = io.template saved_as<T>();
            const T scale = static_cast<T>(beta / static_cast<double>(io.batch));  // d(added loss)/d(KL of a sample)
            const bool acc = io.accumulate[0];
            constexpr std::size_t Z = latent;
            Backend::for_each_index(c, io.batch * Z, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t b = i / Z, j = i % Z;
                const std::size_t im = b * 2 * Z + j, iv = im + Z;
                const T mu = x[im], logvar = x[iv], g = dy[i];
                const T dmu = g + scale * mu;
                const T dlogvar = g * T(0.5) * std::exp(T(0.5) * logvar) * eps[i] + scale * T(0.5) * (std::exp(logvar) - T(1));
                dx[im] = acc ? dx[im] + dmu : dmu;  // selects: dx may hold garbage when overwritten
                dx[iv] = acc ? dx[iv] + dlogvar : dlogvar;
            });
        }

    private:
        random_stream stream_{};
    };
};

}  // namespace lamina
// ---- end include/lamina/layers/vae_sampling.hpp ----


// ---- begin include/lamina/network/sequential.hpp ----
// lamina: sequential networks as types.
//
//   using lenet5 = lamina::sequential<lamina::input<1, 28, 28>, lamina::conv2d<6, 5>, lamina::relu, ...>;
//   lenet5::model<lamina::host> net{lamina::seed{42}};
//
// Every node's input and output shape is deduced while compiling; a node that cannot take
// its input fails to compile with a diagnostic naming it and both shapes. A sequential that
// starts with input<...> is a network (it has ::model); one without is a chain to nest in
// composites (residual<sequential<conv2d<...>, batch_norm, relu>, ...>). The batch size is a
// runtime value: buffers are planned once per batch size (network/model.hpp).


// ---- begin include/lamina/core/backend_fwd.hpp ----
// lamina: forward declarations of the backends, so network types can name the default.

namespace lamina {
struct host;       // backends/host: xsimd kernels and a thread pool (the embedded default)
struct reference;  // backends/reference: naive loops, the test oracle
}  // namespace lamina
// ---- end include/lamina/core/backend_fwd.hpp ----

// ---- begin include/lamina/network/chain.hpp ----
// lamina: the runtime side of a chain of nodes (what sequential<...> becomes), and the
// mapping from descriptors to nodes.
//
// chain_of<In, Backend, T, L1, ..., Ln>::type is a nested chain_link: each link holds one node
// (a leaf, a fused leaf or a composite) and the rest of the chain, and knows the shape at its
// input. Each suffix is instantiated once and every count is a running sum, so compile time
// grows linearly with depth. A producer with an activation epilogue followed by a fusable
// activation becomes one fused_leaf_node (leaf_node.hpp) spanning two positions.


// ---- begin include/lamina/network/leaf_node.hpp ----
// lamina: the model's handle on each leaf (a layer's impl), through which it binds tensors,
// plans memory and runs passes. Composites only wire; the model runs the leaves' handles in
// wiring order (one virtual call per leaf and pass: nothing next to a kernel launch).
//
// leaf_node<D, In, Backend, T> adapts a descriptor's impl to that handle:
//   - builds the node_io of each call from the memory plan (exec.hpp);
//   - for a leaf that does not accumulate input gradients itself, writes them to the planned
//     temporary and adds it (dx += tmp), so every leaf honours the accumulate contract;
//   - reports parameter gradients to the sink after backward when the impl takes no sink;
//   - runs layers written against lamina 0.1's contract (see layers/layer_concept.hpp);
//   - times each call when a profiler is attached.
// fused_leaf_node runs a producer with an activation epilogue (dense + relu) as one leaf.


// ---- begin include/lamina/network/exec.hpp ----
// lamina: one pass's resolution of a memory plan into pointers (the arena, the caller's
// input, input-gradient and output buffers), plus the shared workspace and the optional
// per-node profiler. Leaves build their node_io from it by their index.


// ---- begin include/lamina/network/memory_plan.hpp ----
// lamina: the memory plan of a network for one batch size: every activation edge, every
// gradient edge, every saved-for-backward block and every accumulation temporary gets an
// offset in one arena, and blocks whose lifetimes do not overlap share memory.
//
// Time runs over the leaves: forward of leaf l at l, the loss at L, backward of leaf l at
// 2L - l. A value lives from its producer's forward to its last reader (a consumer's forward,
// a consumer's backward when it needs its input, the producer's backward when it needs its
// output, the end for network outputs); a gradient lives from its first writer's backward
// (the loss, for outputs) to its producer's backward. Aliasing, decided from the leaves' traits:
//   - views (flatten, reshape) are their input edge;
//   - an in-place leaf's output shares its input's storage when that input has no other
//     reader, is not the network input or an output, and its producer does not read it back;
//   - an elementwise or pass-through gradient shares its output gradient's storage when the
//     leaf is the only writer of that input gradient (one input per leaf, so that a shared
//     gradient buffer is a chain of leaves that each read it and then rewrite it).
// Input gradients with several writers: the first writer (in backward order) overwrites, the
// others accumulate; a leaf that cannot accumulate writes a temporary that the model adds.
// Placement is greedy, largest block first, at the lowest offset free for its lifetime.

#include <numeric>


namespace lamina::graph {

/// Where a pointer comes from when a leaf runs.
enum space : std::uint8_t {
    space_none = 0,        // no pointer (a gradient nobody wants)
    space_arena = 1,       // the plan's arena
    space_input = 2,       // the caller's network input
    space_input_grad = 3,  // the caller's buffer for the network input's gradient
    space_output0 = 4,     // the caller's buffer for output k is space_output0 + k (inference)
};
inline constexpr std::size_t max_outputs = 8;
inline constexpr std::size_t space_count = space_output0 + max_outputs;

struct ref {
    std::uint8_t space = space_none;
    std::size_t offset = 0;  // elements from the start of that space
};

struct port_plan {
    ref x, dx;
    ref temp;                 // accumulation temporary (arena) when the leaf cannot accumulate
    bool accumulate = false;  // dx already holds another writer's contribution
    bool first_input_writer = false;  // first writer of the network input's gradient: accumulates
                                      // when the caller asks backward to add into its buffer
};

struct leaf_plan {
    std::uint32_t first_port = 0;
    ref y, dy, saved;
    bool in_place = false;  // y shares x[0]'s storage
};

struct memory_plan {
    std::size_t batch = 0;
    bool training = false;
    std::size_t arena_elements = 0;      // the arena, in elements of the model's scalar type
    std::size_t workspace_elements = 0;  // the largest leaf workspace (one buffer, reused by every leaf)
    std::size_t unshared_elements = 0;   // the arena if no block shared memory (for the summary)
    std::size_t value_elements = 0, gradient_elements = 0, saved_elements = 0, temp_elements = 0;
    std::vector<leaf_plan> leaves;
    std::vector<port_plan> ports;
    std::vector<ref> outputs, output_grads;
};

namespace detail {

struct union_find {
    std::vector<std::uint32_t> parent;
    explicit union_find(std::size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0u); }
    std::uint32_t find(std::uint32_t a) {
        while (parent[a] != a) a = parent[a] = parent[parent[a]];
        return a;
    }
    void join(std::uint32_t a, std::uint32_t b) { parent[find(b)] = find(a); }
};

struct block {
    std::size_t size = 0, start = 0, end = 0, offset = 0;
};

/// Greedy placement: largest first, each at the lowest offset not used by a block alive at
/// the same time. Returns the arena size. Without sharing every block gets its own memory.
inline std::size_t place(std::vector<block>& blocks, bool share = true) {
    if (!share) {
        std::size_t top = 0;
        for (auto& b : blocks) {
            b.offset = top;
            top += b.size;
        }
        return top;
    }
    std::vector<std::size_t> order(blocks.size());
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        if (blocks[a].size != blocks[b].size) return blocks[a].size > blocks[b].size;
        return blocks[a].start < blocks[b].start;
    });
    std::vector<std::size_t> placed;
    std::vector<std::pair<std::size_t, std::size_t>> busy;  // [offset, offset + size) of overlapping blocks
    std::size_t top = 0;
    for (std::size_t i : order) {
        block& b = blocks[i];
        busy.clear();
        for (std::size_t j : placed) {
            const block& o = blocks[j];
            if (o.start <= b.end && b.start <= o.end) busy.emplace_back(o.offset, o.offset + o.size);
        }
        std::sort(busy.begin(), busy.end());
        std::size_t at = 0;
        for (auto& [lo, hi] : busy) {
            if (lo >= at + b.size) break;
            at = std::max(at, hi);
        }
        b.offset = at;
        top = std::max(top, at + b.size);
        placed.push_back(i);
    }
    return top;
}

class planner {
public:
    planner(const description& d, std::size_t batch, std::size_t element_bytes, bool share)
        : d_(d), batch_(batch), align_(std::max<std::size_t>(1, 64 / element_bytes)), element_bytes_(element_bytes),
          L_(d.leaves().size()), share_(share) {}

    memory_plan training(bool input_gradient) {
        const auto& leaves = d_.leaves();
        const auto& edges = d_.edges();
        const std::size_t E = edges.size();
        memory_plan p = skeleton(true);
        union_find val(E), grad(E);
        std::vector<bool> in_place(L_, false);

        for (std::size_t l = 0; l < L_; ++l) {
            const leaf& lf = leaves[l];
            if (lf.traits.view) continue;
            if (!share_) continue;
            if (lf.traits.in_place_forward && can_alias_value(lf.inputs[0], lf.output, /*training=*/true)) {
                val.join(lf.inputs[0], lf.output);
                in_place[l] = true;
            }
            // At most one input gradient per leaf joins the output gradient's storage: each
            // shared gradient buffer is then a path read and rewritten by one leaf after another
            // in backward order (two paths sharing it would overwrite each other's dy).
            for (std::size_t i = 0; i < lf.inputs.size(); ++i) {
                const bool elementwise = lf.traits.in_place_backward && i == 0;
                if ((lf.traits.gradient_passthrough || elementwise) && sole_writer(lf.inputs[i], lf.output)) {
                    grad.join(lf.output, lf.inputs[i]);
                    break;
                }
            }
        }

        // lifetimes, per storage group
        std::vector<std::size_t> vstart(E, npos), vend(E, 0), gstart(E, npos), gend(E, 0);
        for (std::size_t e = 1; e < E; ++e) {
            const edge& ed = edges[e];
            if (ed.producer < 0) continue;
            const auto p_ = static_cast<std::size_t>(ed.producer);
            std::size_t s = fwd(p_), t = fwd(p_);
            for (std::uint32_t c : ed.consumers) {
                t = std::max(t, fwd(c));
                if (leaves[c].traits.needs_input && !(in_place[c] && leaves[c].inputs[0] == e)) t = std::max(t, bwd(c));
            }
            if (leaves[p_].traits.needs_output) t = std::max(t, bwd(p_));
            if (ed.output >= 0) t = end_time();
            if (ed.consumers.empty() && ed.output < 0)
                throw error("lamina: internal error: edge " + std::to_string(e) + " (output of '" + leaves[p_].name +
                            "') is never read");
            widen(vstart, vend, val.find(static_cast<std::uint32_t>(e)), s, t);
            // gradient: from the first writer to the producer's backward
            std::size_t gs = ed.output >= 0 ? loss_time() : npos;
            for (std::uint32_t c : ed.consumers) gs = std::min(gs, bwd(c));
            widen(gstart, gend, grad.find(static_cast<std::uint32_t>(e)), gs, bwd(p_));
        }

        std::vector<block> blocks;
        std::vector<std::size_t> vblock(E, npos), gblock(E, npos);
        for (std::size_t e = 1; e < E; ++e) {
            if (edges[e].producer < 0) continue;
            add_group_block(blocks, vblock, val.find(static_cast<std::uint32_t>(e)), vstart, vend, edges[e].size,
                            p.value_elements);
            add_group_block(blocks, gblock, grad.find(static_cast<std::uint32_t>(e)), gstart, gend, edges[e].size,
                            p.gradient_elements);
        }
        // saved-for-backward blocks
        std::vector<std::size_t> sblock(L_, npos);
        for (std::size_t l = 0; l < L_; ++l) {
            const leaf& lf = leaves[l];
            if (lf.traits.view || !lf.sizes) continue;
            std::size_t bytes = lf.sizes->saved_bytes(batch_);
            if (!bytes) continue;
            std::size_t n = round((bytes + element_bytes_ - 1) / element_bytes_);
            sblock[l] = blocks.size();
            blocks.push_back({n, fwd(l), bwd(l), 0});
            p.saved_elements += n;
        }
        // accumulation: in backward order the first writer of a gradient overwrites
        std::vector<std::size_t> tblock(p.ports.size(), npos);
        for (std::size_t e = 0; e < E; ++e) {
            const edge& ed = edges[e];
            std::vector<std::pair<std::size_t, std::size_t>> writers;  // (bwd time, port index)
            for (std::size_t l = 0; l < L_; ++l) {
                const leaf& lf = leaves[l];
                if (lf.traits.view) continue;
                for (std::size_t i = 0; i < lf.inputs.size(); ++i)
                    if (lf.inputs[i] == e) writers.emplace_back(bwd(l), p.leaves[l].first_port + i);
            }
            std::sort(writers.begin(), writers.end());
            // a network output that is also read inside the network: the loss writes first
            const bool loss_writes = ed.output >= 0;
            for (std::size_t k = 0; k < writers.size(); ++k)
                p.ports[writers[k].second].accumulate = k > 0 || loss_writes;
            if (e == 0 && !writers.empty()) p.ports[writers[0].second].first_input_writer = true;
        }
        for (std::size_t l = 0; l < L_; ++l) {
            const leaf& lf = leaves[l];
            if (lf.traits.view || lf.traits.accumulates) continue;
            for (std::size_t i = 0; i < lf.inputs.size(); ++i) {
                const std::size_t port = p.leaves[l].first_port + i;
                const edge_id e = lf.inputs[i];
                const bool may_accumulate = p.ports[port].accumulate || p.ports[port].first_input_writer;
                if (!may_accumulate || (e == 0 && !input_gradient)) continue;
                std::size_t n = round(edges[e].size * batch_);
                tblock[port] = blocks.size();
                blocks.push_back({n, bwd(l), bwd(l), 0});
                p.temp_elements += n;
            }
        }

        p.unshared_elements = 0;
        for (auto& b : blocks) p.unshared_elements += b.size;
        p.arena_elements = place(blocks, share_);

        auto vref = [&](edge_id e) -> ref {
            if (e == 0) return {space_input, 0};
            return {space_arena, blocks[vblock[val.find(e)]].offset};
        };
        auto gref = [&](edge_id e) -> ref {
            if (e == 0) return input_gradient ? ref{space_input_grad, 0} : ref{};
            return {space_arena, blocks[gblock[grad.find(e)]].offset};
        };
        for (std::size_t l = 0; l < L_; ++l) {
            const leaf& lf = leaves[l];
            leaf_plan& lp = p.leaves[l];
            lp.y = vref(lf.output);
            lp.dy = gref(lf.output);
            lp.in_place = in_place[l];
            if (sblock[l] != npos) lp.saved = {space_arena, blocks[sblock[l]].offset};
            for (std::size_t i = 0; i < lf.inputs.size(); ++i) {
                port_plan& pp = p.ports[lp.first_port + i];
                pp.x = vref(lf.inputs[i]);
                pp.dx = gref(lf.inputs[i]);
                if (!pp.dx.space) pp.accumulate = false;
                if (tblock[lp.first_port + i] != npos) pp.temp = {space_arena, blocks[tblock[lp.first_port + i]].offset};
            }
        }
        for (std::size_t k = 0; k < d_.outputs().size(); ++k) {
            p.outputs[k] = vref(d_.outputs()[k]);
            p.output_grads[k] = gref(d_.outputs()[k]);
        }
        return p;
    }

    memory_plan inference(bool external_outputs) {
        const auto& leaves = d_.leaves();
        const auto& edges = d_.edges();
        const std::size_t E = edges.size();
        memory_plan p = skeleton(false);
        union_find val(E);
        std::vector<bool> in_place(L_, false);
        for (std::size_t l = 0; l < L_; ++l) {
            const leaf& lf = leaves[l];
            if (share_ && !lf.traits.view && lf.traits.in_place_forward && can_alias_value(lf.inputs[0], lf.output, false)) {
                val.join(lf.inputs[0], lf.output);
                in_place[l] = true;
            }
        }
        std::vector<std::size_t> vstart(E, npos), vend(E, 0);
        std::vector<std::int32_t> group_output(E, -1);
        for (std::size_t e = 1; e < E; ++e) {
            const edge& ed = edges[e];
            if (ed.producer < 0) continue;
            std::size_t s = fwd(static_cast<std::size_t>(ed.producer)), t = s;
            for (std::uint32_t c : ed.consumers) t = std::max(t, fwd(c));
            if (ed.output >= 0) {
                t = end_time();
                group_output[val.find(static_cast<std::uint32_t>(e))] = ed.output;
            }
            widen(vstart, vend, val.find(static_cast<std::uint32_t>(e)), s, t);
        }
        std::vector<block> blocks;
        std::vector<std::size_t> vblock(E, npos);
        for (std::size_t e = 1; e < E; ++e) {
            if (edges[e].producer < 0) continue;
            const std::uint32_t g = val.find(static_cast<std::uint32_t>(e));
            if (external_outputs && group_output[g] >= 0) continue;
            add_group_block(blocks, vblock, g, vstart, vend, edges[e].size, p.value_elements);
        }
        p.unshared_elements = 0;
        for (auto& b : blocks) p.unshared_elements += b.size;
        p.arena_elements = place(blocks, share_);
        auto vref = [&](edge_id e) -> ref {
            if (e == 0) return {space_input, 0};
            const std::uint32_t g = val.find(e);
            if (external_outputs && group_output[g] >= 0)
                return {static_cast<std::uint8_t>(space_output0 + group_output[g]), 0};
            return {space_arena, blocks[vblock[g]].offset};
        };
        for (std::size_t l = 0; l < L_; ++l) {
            const leaf& lf = leaves[l];
            leaf_plan& lp = p.leaves[l];
            lp.y = vref(lf.output);
            lp.in_place = in_place[l];
            for (std::size_t i = 0; i < lf.inputs.size(); ++i) p.ports[lp.first_port + i].x = vref(lf.inputs[i]);
        }
        for (std::size_t k = 0; k < d_.outputs().size(); ++k) p.outputs[k] = vref(d_.outputs()[k]);
        return p;
    }

private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);
    std::size_t fwd(std::size_t l) const { return l; }
    std::size_t loss_time() const { return L_; }
    std::size_t bwd(std::size_t l) const { return 2 * L_ - l; }
    std::size_t end_time() const { return 2 * L_ + 1; }
    std::size_t round(std::size_t n) const { return (n + align_ - 1) / align_ * align_; }

    memory_plan skeleton(bool training) const {
        memory_plan p;
        p.batch = batch_;
        p.training = training;
        p.leaves.resize(L_);
        std::uint32_t port = 0;
        for (std::size_t l = 0; l < L_; ++l) {
            p.leaves[l].first_port = port;
            port += static_cast<std::uint32_t>(d_.leaves()[l].inputs.size());
            if (const leaf_sizes* s = d_.leaves()[l].sizes)
                p.workspace_elements = std::max(p.workspace_elements, s->workspace_elements(batch_));
        }
        p.ports.resize(port);
        if (d_.outputs().size() > max_outputs)
            throw error("lamina: a network has at most " + std::to_string(max_outputs) + " outputs");
        p.outputs.resize(d_.outputs().size());
        p.output_grads.resize(d_.outputs().size());
        return p;
    }

    /// May leaf output `o` take over the storage of its input `e`?
    bool can_alias_value(edge_id e, edge_id o, bool training) const {
        const edge& ed = d_.edges()[e];
        if (ed.producer < 0 || ed.output >= 0 || ed.consumers.size() != 1) return false;
        if (ed.size != d_.edges()[o].size) return false;
        if (training && d_.leaves()[static_cast<std::size_t>(ed.producer)].traits.needs_output) return false;
        return true;
    }
    /// Is the leaf producing `o` the only writer of e's gradient (so it may alias it)?
    bool sole_writer(edge_id e, edge_id o) const {
        const edge& ed = d_.edges()[e];
        return ed.producer >= 0 && ed.output < 0 && ed.consumers.size() == 1 && ed.size == d_.edges()[o].size;
    }

    void widen(std::vector<std::size_t>& s, std::vector<std::size_t>& t, std::uint32_t g, std::size_t a,
               std::size_t b) const {
        s[g] = std::min(s[g], a);
        t[g] = std::max(t[g], b);
    }
    void add_group_block(std::vector<block>& blocks, std::vector<std::size_t>& of_group, std::uint32_t g,
                         const std::vector<std::size_t>& s, const std::vector<std::size_t>& t, std::size_t per_sample,
                         std::size_t& tally) const {
        if (of_group[g] != npos) {
            // in-place groups hold edges of one size; keep the largest to be safe
            blocks[of_group[g]].size = std::max(blocks[of_group[g]].size, round(per_sample * batch_));
            return;
        }
        of_group[g] = blocks.size();
        const std::size_t n = round(per_sample * batch_);
        blocks.push_back({n, s[g], t[g], 0});
        tally += n;
    }

    const description& d_;
    std::size_t batch_, align_, element_bytes_, L_;
    bool share_;
};

}  // namespace detail

/// The plan of a training step (forward_train, loss, backward) at `batch` samples.
/// `input_gradient`: the caller wants the network input's gradient (backward(dx)).
/// `share`: false gives every block its own memory and runs nothing in place (a check of
/// the planner: results must be bit-identical either way).
inline memory_plan plan_training(const description& d, std::size_t batch, std::size_t element_bytes,
                                 bool input_gradient, bool share = true) {
    return detail::planner(d, batch, element_bytes, share).training(input_gradient);
}

/// The plan of an inference forward at `batch` samples; with `external_outputs` the outputs
/// are written straight into the caller's buffers (host-accessible backends).
inline memory_plan plan_inference(const description& d, std::size_t batch, std::size_t element_bytes,
                                  bool external_outputs, bool share = true) {
    return detail::planner(d, batch, element_bytes, share).inference(external_outputs);
}

}  // namespace lamina::graph
// ---- end include/lamina/network/memory_plan.hpp ----


namespace lamina {

class node_profiler;

template <class T>
struct exec {
    const graph::memory_plan* plan = nullptr;
    std::array<T*, graph::space_count> base{};  // by graph::space; base[space_none] stays null
    T* workspace = nullptr;
    std::size_t batch = 0;                     // this pass's batch (at most plan->batch)
    node_profiler* profiler = nullptr;         // null: not profiling (the default, no cost)
    bool accumulate_input_gradient = false;    // backward adds into the caller's input-gradient buffer

    T* at(const graph::ref& r) const noexcept {
        T* b = base[r.space];
        return b ? b + r.offset : nullptr;
    }
};

}  // namespace lamina
// ---- end include/lamina/network/exec.hpp ----

// ---- begin include/lamina/network/profiler.hpp ----
// lamina: the opt-in per-node profiler. When a model has one attached (model::profile()),
// every leaf's forward and backward is timed (the backend is fenced around each call, so
// device time is measured, not launch time), and report() prints a table named as the
// summary names the nodes, with FLOPs, GFLOP/s and bytes moved; write_chrome_trace() writes
// the events as Chrome trace JSON (open it in chrome://tracing or https://ui.perfetto.dev).
// Detached (the default) the model passes a null profiler and each leaf pays one branch.

#include <chrono>
#include <cstdio>
#include <fstream>


namespace lamina {

class node_profiler {
public:
    enum phase : std::uint8_t { forward = 0, forward_train = 1, backward = 2 };
    struct event {
        std::uint32_t leaf;
        phase what;
        std::size_t batch;
        double start_us, duration_us;
    };

    node_profiler() : t0_(clock::now()) { events_.reserve(4096); }

    double now_us() const { return std::chrono::duration<double, std::micro>(clock::now() - t0_).count(); }
    void record(std::uint32_t leaf, phase what, std::size_t batch, double start_us, double end_us) {
        events_.push_back({leaf, what, batch, start_us, end_us - start_us});
    }
    void clear() { events_.clear(); }
    const std::vector<event>& events() const noexcept { return events_; }

    /// One row per leaf: mean forward (inference or training) and backward milliseconds per
    /// call, forward FLOPs (backward counted as 2x forward), GFLOP/s and bytes moved (inputs,
    /// output and parameters once per pass; backward twice that), then totals.
    std::string report(const graph::description& d, std::size_t element_bytes) const {
        const auto& leaves = d.leaves();
        struct acc {
            double fwd_us = 0, bwd_us = 0;
            std::size_t fwd_n = 0, bwd_n = 0, batch = 0;
        };
        std::vector<acc> a(leaves.size());
        for (const auto& e : events_) {
            auto& x = a[e.leaf];
            x.batch = std::max(x.batch, e.batch);
            if (e.what == backward) {
                x.bwd_us += e.duration_us;
                ++x.bwd_n;
            } else {
                x.fwd_us += e.duration_us;
                ++x.fwd_n;
            }
        }
        std::string out;
        char line[256];
        std::snprintf(line, sizeof line, "%-4s %-34s %10s %10s %12s %9s %9s %12s\n", "#", "node", "fwd ms", "bwd ms",
                      "MFLOP/call", "fwd GF/s", "bwd GF/s", "MB moved");
        out += line;
        double tf = 0, tb = 0, tflop = 0, tbytes = 0;
        for (std::size_t l = 0; l < leaves.size(); ++l) {
            const auto& x = a[l];
            if (!x.fwd_n && !x.bwd_n) continue;
            const double fms = x.fwd_n ? x.fwd_us / 1000.0 / double(x.fwd_n) : 0;
            const double bms = x.bwd_n ? x.bwd_us / 1000.0 / double(x.bwd_n) : 0;
            const double flop = leaves[l].flops_per_sample * double(x.batch);
            double bytes = double(leaves[l].parameters);
            for (auto e : leaves[l].inputs) bytes += double(d.edges()[e].size) * double(x.batch);
            bytes += double(d.edges()[leaves[l].output].size) * double(x.batch);
            bytes *= double(element_bytes);
            const double moved = bytes * ((x.fwd_n ? 1.0 : 0.0) + (x.bwd_n ? 2.0 : 0.0));
            std::string name = std::string(2 * leaves[l].depth, ' ') + leaves[l].name;
            std::snprintf(line, sizeof line, "%-4zu %-34.34s %10.3f %10.3f %12.3f %9.1f %9.1f %12.2f\n", l,
                          name.c_str(), fms, bms, flop / 1e6, fms > 0 ? flop / (fms * 1e6) : 0.0,
                          bms > 0 ? 2 * flop / (bms * 1e6) : 0.0, moved / 1e6);
            out += line;
            tf += fms;
            tb += bms;
            tflop += flop * ((x.fwd_n ? 1.0 : 0.0) + (x.bwd_n ? 2.0 : 0.0));
            tbytes += moved;
        }
        std::snprintf(line, sizeof line, "total: forward %.3f ms, backward %.3f ms, %.1f MFLOP, %.1f GFLOP/s, %.1f MB moved\n",
                      tf, tb, tflop / 1e6, (tf + tb) > 0 ? tflop / ((tf + tb) * 1e6) : 0.0, tbytes / 1e6);
        out += line;
        return out;
    }

    /// Chrome trace JSON ("X" complete events, microseconds): one row for forward, one for backward.
    void write_chrome_trace(const std::string& path, const graph::description& d) const {
        std::ofstream f(path);
        if (!f) throw io_error("lamina: cannot write the profile trace '" + path + "'");
        f << "{\"traceEvents\":[\n";
        bool first = true;
        for (const auto& e : events_) {
            const auto& lf = d.leaves()[e.leaf];
            if (!first) f << ",\n";
            first = false;
            f << "{\"name\":\"" << escape(std::to_string(e.leaf) + " " + lf.name) << "\",\"cat\":\""
              << (e.what == backward ? "backward" : e.what == forward ? "inference" : "forward") << "\",\"ph\":\"X\",\"ts\":"
              << e.start_us << ",\"dur\":" << e.duration_us << ",\"pid\":1,\"tid\":" << (e.what == backward ? 2 : 1)
              << ",\"args\":{\"batch\":" << e.batch << ",\"shape\":\"" << escape(lf.output_shape)
              << "\",\"mflop\":" << lf.flops_per_sample * double(e.batch) * (e.what == backward ? 2.0 : 1.0) / 1e6 << "}}";
        }
        f << "\n],\"displayTimeUnit\":\"ms\"}\n";
        if (!f) throw io_error("lamina: failed writing the profile trace '" + path + "'");
    }

private:
    using clock = std::chrono::steady_clock;
    static std::string escape(const std::string& s) {
        std::string o;
        for (char c : s) {
            if (c == '"' || c == '\\') o += '\\';
            o += c;
        }
        return o;
    }
    clock::time_point t0_;
    std::vector<event> events_;
};

}  // namespace lamina
// ---- end include/lamina/network/profiler.hpp ----


namespace lamina {

/// Where a node sits in the network: "3" (the fourth node of the top chain), "3.1.0" nested;
/// `key` keys its random streams (equal to the position for the top chain, as in lamina 0.1).
struct node_path {
    std::string text;
    std::uint64_t key = 0;
    node_path child(std::size_t i) const {
        return {text.empty() ? std::to_string(i) : text + "." + std::to_string(i),
                text.empty() ? i : (key + 1) * 1000003ull + i};
    }
};

/// Parameter gradients reported by backward (type-erased so the model's loop over leaves
/// needs no template per sink). The MPI communicator implements one.
template <class T>
class gradient_sink {
public:
    virtual ~gradient_sink() = default;
    virtual void ready(const T* gradient, std::size_t count) = 0;
};

/// What the impl's backward sees: forwards to the model's sink, or to nothing.
template <class T>
struct sink_ref {
    gradient_sink<T>* to = nullptr;
    void ready(const T* g, std::size_t n) {
        if (to) to->ready(g, n);
    }
};

template <class Backend, class T>
class leaf_handle : public graph::leaf_sizes {
public:
    using context = typename Backend::context;
    node_path path;
    std::uint32_t id = 0;  // index in the graph (execution order)
    std::string owner;     // the name its tensors are listed under (a fused leaf's producer)

    virtual std::vector<tensor_spec> specs() const = 0;
    virtual void bind(const tensor_binding<T>& b) = 0;
    virtual void set_stream(random_stream root) = 0;
    virtual void plan_state(const context& c, std::size_t batch) = 0;  // lamina 0.1 layers' own buffers
    virtual void forward(const context& c, const exec<T>& e) const = 0;
    virtual void forward_train(const context& c, const exec<T>& e, std::uint64_t step) = 0;
    virtual void backward(const context& c, const exec<T>& e, gradient_sink<T>* sink) = 0;
    virtual bool adds_loss() const { return false; }
    /// A named constant of the node (batch norm's "eps"), for tools that rewrite networks.
    virtual double constant(const std::string& name) const {
        throw error("lamina: node '" + owner + "' has no constant '" + name + "'");
    }
    virtual double added_loss(const context&, const exec<T>&) const { return 0.0; }
};

namespace node_detail {

template <class I, class = void>
struct inputs_of : std::integral_constant<std::size_t, 1> {};
template <class I>
struct inputs_of<I, std::void_t<decltype(I::inputs)>> : std::integral_constant<std::size_t, I::inputs> {};

template <class I, class = void>
struct state_count_of : std::integral_constant<std::size_t, 0> {};
template <class I>
struct state_count_of<I, std::void_t<decltype(I::state_count)>> : std::integral_constant<std::size_t, I::state_count> {};

template <class I, class Ctx, class IO, class = void>
struct has_node_forward : std::false_type {};
template <class I, class Ctx, class IO>
struct has_node_forward<I, Ctx, IO,
                        std::void_t<decltype(std::declval<const I&>().forward(std::declval<const Ctx&>(),
                                                                               std::declval<const IO&>()))>>
    : std::true_type {};

template <class I, class Ctx, class IO, class = void>
struct has_node_forward_train : std::false_type {};
template <class I, class Ctx, class IO>
struct has_node_forward_train<I, Ctx, IO,
                              std::void_t<decltype(std::declval<I&>().forward_train(
                                  std::declval<const Ctx&>(), std::declval<const IO&>(), std::uint64_t(0)))>>
    : std::true_type {};

template <class I, class Ctx, class IO, class T, class = void>
struct has_sink_backward : std::false_type {};
template <class I, class Ctx, class IO, class T>
struct has_sink_backward<I, Ctx, IO, T,
                         std::void_t<decltype(std::declval<I&>().backward(std::declval<const Ctx&>(),
                                                                          std::declval<const IO&>(),
                                                                          std::declval<sink_ref<T>&>()))>>
    : std::true_type {};

template <class I, class = void>
struct has_set_stream : std::false_type {};
template <class I>
struct has_set_stream<I, std::void_t<decltype(std::declval<I&>().set_stream(random_stream{}))>> : std::true_type {};

template <class I, class Ctx, class = void>
struct has_plan : std::false_type {};
template <class I, class Ctx>
struct has_plan<I, Ctx, std::void_t<decltype(std::declval<I&>().plan(std::declval<const Ctx&>(), std::size_t(1)))>>
    : std::true_type {};

template <class I, class = void>
struct has_constant : std::false_type {};
template <class I>
struct has_constant<I, std::void_t<decltype(std::declval<const I&>().constant(std::string()))>> : std::true_type {};

template <class I, class = void>
struct adds_loss : std::false_type {};
template <class I>
struct adds_loss<I, std::enable_if_t<I::adds_loss>> : std::true_type {};

template <class I, class = void>
struct fuses_activation : std::false_type {};
template <class I>
struct fuses_activation<I, std::enable_if_t<I::fuses_activation>> : std::true_type {};
template <class I, class = void>
struct fusable_activation : std::false_type {};
template <class I>
struct fusable_activation<I, std::enable_if_t<I::fusable_into_producer>> : std::true_type {};

template <class Backend, class = void>
struct has_fence : std::false_type {};
template <class Backend>
struct has_fence<Backend, std::void_t<decltype(Backend::fence(std::declval<const typename Backend::context&>()))>>
    : std::true_type {};

template <class Backend>
void fence(const typename Backend::context& c) {
    if constexpr (has_fence<Backend>::value) Backend::fence(c);
    else (void)c;
}

/// Times one call when a profiler is attached.
template <class Backend, class F>
void timed(const typename Backend::context& c, node_profiler* p, std::uint32_t id, node_profiler::phase what,
           std::size_t batch, F&& f) {
    if (!p) {
        f();
        return;
    }
    fence<Backend>(c);
    const double t0 = p->now_us();
    f();
    fence<Backend>(c);
    p->record(id, what, batch, t0, p->now_us());
}

}  // namespace node_detail

template <class D, class In, class Backend, class T>
class leaf_node final : public leaf_handle<Backend, T> {
public:
    using impl_type = typename D::template impl<In, Backend, T>;
    using context = typename Backend::context;
    static constexpr std::size_t inputs = node_detail::inputs_of<impl_type>::value;
    using io_type = node_io<T, inputs>;
    static constexpr bool legacy = !node_detail::has_node_forward<impl_type, context, io_type>::value;
    static_assert(!legacy || inputs == 1, "lamina: a layer with several inputs must use the node_io contract");
    static constexpr std::size_t parameter_count = impl_type::parameter_count;
    static constexpr std::size_t state_count = node_detail::state_count_of<impl_type>::value;
    static constexpr double flops_per_sample = impl_type::flops_per_sample;
    static constexpr std::size_t leaf_count = 1;
    static constexpr graph::leaf_traits traits = [] {
        if constexpr (legacy) {
            graph::leaf_traits t;
            t.needs_input = true;
            t.needs_output = true;
            return t;
        } else {
            return impl_type::traits;
        }
    }();
    static constexpr bool is_view = traits.view;

    impl_type& impl() noexcept { return impl_; }
    const impl_type& impl() const noexcept { return impl_; }

    using output_shape = typename D::template output_shape<In>;
    static constexpr std::size_t outputs = 1;

    /// Registers this leaf; `in` holds `inputs` edges, `out` receives the output edge.
    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, node_path p,
              std::vector<leaf_handle<Backend, T>*>& handles) {
        graph::leaf l;
        l.name = D::name();
        l.path = p.text;
        l.output_shape = output_shape::str();
        l.depth = g.depth();
        l.inputs.assign(in, in + inputs);
        l.traits = traits;
        l.sizes = this;
        l.flops_per_sample = flops_per_sample;
        l.parameters = parameter_count;
        l.state = state_count;
        this->path = std::move(p);
        this->owner = D::name();
        this->id = g.add_leaf(std::move(l), output_shape::size);
        handles.push_back(this);
        out[0] = g.leaves()[this->id].output;
    }

    // ---- graph::leaf_sizes
    std::size_t saved_bytes(std::size_t batch) const override {
        if constexpr (legacy) return 0;
        else return impl_.saved_bytes(batch);
    }
    std::size_t workspace_elements(std::size_t batch) const override { return impl_.workspace_size(batch); }

    // ---- leaf_handle
    std::vector<tensor_spec> specs() const override {
        if constexpr (legacy) return impl_.parameter_specs();
        else return impl_.tensor_specs();
    }
    void bind(const tensor_binding<T>& b) override {
        gradients_ = b.gradients;
        if constexpr (legacy) impl_.bind_parameters(b.parameters, b.gradients);
        else impl_.bind(b);
    }
    void set_stream(random_stream root) override {
        if constexpr (node_detail::has_set_stream<impl_type>::value) impl_.set_stream(root.child(this->path.key));
        else (void)root;
    }
    void plan_state(const context& c, std::size_t batch) override {
        if constexpr (node_detail::has_plan<impl_type, context>::value) impl_.plan(c, batch);
        else (void)c, (void)batch;
    }

    void forward(const context& c, const exec<T>& e) const override {
        if constexpr (is_view) {
            (void)c, (void)e;
        } else {
            const io_type io = make_io(e, false);
            node_detail::timed<Backend>(c, e.profiler, this->id, node_profiler::forward, e.batch, [&] {
                if constexpr (legacy) impl_.forward(c, io.x[0], io.y, io.batch, io.workspace);
                else impl_.forward(c, io);
            });
        }
    }
    void forward_train(const context& c, const exec<T>& e, std::uint64_t step) override {
        if constexpr (is_view) {
            (void)c, (void)e, (void)step;
        } else {
            const io_type io = make_io(e, false);
            node_detail::timed<Backend>(c, e.profiler, this->id, node_profiler::forward_train, e.batch, [&] {
                if constexpr (legacy) impl_.forward_train(c, io.x[0], io.y, io.batch, io.workspace, step);
                else if constexpr (node_detail::has_node_forward_train<impl_type, context, io_type>::value)
                    impl_.forward_train(c, io, step);
                else impl_.forward(c, io);
            });
        }
    }
    void backward(const context& c, const exec<T>& e, gradient_sink<T>* sink) override {
        if constexpr (is_view) {
            (void)c, (void)e, (void)sink;
        } else {
            io_type io = make_io(e, true);
            // A leaf that cannot accumulate writes its accumulated ports into planned temporaries.
            T* target[inputs] = {};
            std::size_t count[inputs] = {};
            if constexpr (!traits.accumulates) {
                const graph::leaf_plan& lp = e.plan->leaves[this->id];
                for (std::size_t i = 0; i < inputs; ++i) {
                    const graph::port_plan& pp = e.plan->ports[lp.first_port + i];
                    if (io.dx[i] && io.accumulate[i]) {
                        target[i] = io.dx[i];
                        count[i] = e.batch * input_size(i);
                        io.dx[i] = e.at(pp.temp);
                        io.accumulate[i] = false;
                    }
                }
            }
            sink_ref<T> s{sink};
            node_detail::timed<Backend>(c, e.profiler, this->id, node_profiler::backward, e.batch, [&] {
                if constexpr (legacy) {
                    impl_.backward(c, io.x[0], io.y, io.dy, io.dx[0], io.batch, io.workspace);
                    report_all(s);
                } else if constexpr (node_detail::has_sink_backward<impl_type, context, io_type, T>::value) {
                    impl_.backward(c, io, s);
                } else {
                    impl_.backward(c, io);
                    report_all(s);
                }
                for (std::size_t i = 0; i < inputs; ++i)
                    if (target[i]) Backend::axpy(c, count[i], T(1), static_cast<const T*>(io.dx[i]), target[i]);
            });
        }
    }
    bool adds_loss() const override { return node_detail::adds_loss<impl_type>::value; }
    double constant(const std::string& name) const override {
        if constexpr (node_detail::has_constant<impl_type>::value) return impl_.constant(name);
        else return leaf_handle<Backend, T>::constant(name);
    }
    double added_loss(const context& c, const exec<T>& e) const override {
        if constexpr (node_detail::adds_loss<impl_type>::value) return impl_.added_loss(c, make_io(e, false));
        else return (void)c, (void)e, 0.0;
    }

private:
    static constexpr std::size_t input_size(std::size_t i) {
        if constexpr (inputs == 1) return (void)i, In::size;
        else return In::sizes[i];
    }
    io_type make_io(const exec<T>& e, bool grads) const {
        const graph::leaf_plan& lp = e.plan->leaves[this->id];
        io_type io;
        io.batch = e.batch;
        io.workspace = e.workspace;
        io.saved = e.at(lp.saved);
        io.y = e.at(lp.y);
        io.in_place = lp.in_place;
        for (std::size_t i = 0; i < inputs; ++i) {
            const graph::port_plan& pp = e.plan->ports[lp.first_port + i];
            io.x[i] = e.at(pp.x);
            if (grads) {
                io.dx[i] = e.at(pp.dx);
                io.accumulate[i] = pp.accumulate || (pp.first_input_writer && e.accumulate_input_gradient);
            }
        }
        if (grads) io.dy = e.at(lp.dy);
        return io;
    }
    void report_all(sink_ref<T>& s) const {
        if constexpr (parameter_count > 0) {
            if (s.to) s.ready(gradients_, parameter_count);
        }
    }

    impl_type impl_{};
    T* gradients_ = nullptr;  // reported to the sink for impls whose backward takes none
};

/// A copy of the network input as an output: the leaf a model adds when a network's output is
/// its input (a network of views only), so the output has storage and its gradient a writer.
template <class Backend, class T>
class copy_leaf final : public leaf_handle<Backend, T> {
public:
    using context = typename Backend::context;
    explicit copy_leaf(std::size_t size) : size_(size) {}
    void wire(graph::description& g, graph::edge_id in, graph::edge_id* out,
              std::vector<leaf_handle<Backend, T>*>& handles) {
        graph::leaf l;
        l.name = "copy";
        l.output_shape = "(" + std::to_string(size_) + ")";
        l.depth = g.depth();
        l.inputs = {in};
        l.traits.needs_input = false;
        l.traits.accumulates = true;
        l.sizes = this;
        this->owner = "copy";
        this->id = g.add_leaf(std::move(l), size_);
        handles.push_back(this);
        *out = g.leaves()[this->id].output;
    }
    std::size_t saved_bytes(std::size_t) const override { return 0; }
    std::size_t workspace_elements(std::size_t) const override { return 0; }
    std::vector<tensor_spec> specs() const override { return {}; }
    void bind(const tensor_binding<T>&) override {}
    void set_stream(random_stream) override {}
    void plan_state(const context&, std::size_t) override {}
    void forward(const context& c, const exec<T>& e) const override {
        const graph::leaf_plan& lp = e.plan->leaves[this->id];
        Backend::copy(c, e.at(lp.y), static_cast<const T*>(e.at(e.plan->ports[lp.first_port].x)), e.batch * size_);
    }
    void forward_train(const context& c, const exec<T>& e, std::uint64_t) override { forward(c, e); }
    void backward(const context& c, const exec<T>& e, gradient_sink<T>*) override {
        const graph::leaf_plan& lp = e.plan->leaves[this->id];
        const graph::port_plan& pp = e.plan->ports[lp.first_port];
        T* dx = e.at(pp.dx);
        if (!dx) return;
        const T* dy = e.at(lp.dy);
        if (pp.accumulate || (pp.first_input_writer && e.accumulate_input_gradient))
            Backend::axpy(c, e.batch * size_, T(1), dy, dx);
        else
            Backend::copy(c, dx, dy, e.batch * size_);
    }

private:
    std::size_t size_;
};

/// A producer whose impl can apply an activation in its epilogue (`fuses_activation`, e.g.
/// dense) followed by an activation whose derivative needs only its output
/// (`fusable_into_producer`: relu, sigmoid, tanh, leaky_relu with slope >= 0), run as one
/// leaf: the producer writes act(...) straight into the output, no buffer holds the
/// pre-activation, and backward applies the activation's derivative (from y) into the
/// workspace before the producer's backward. Define LAMINA_NO_LAYER_FUSION to turn it off.
template <class P, class A, class In, class Backend, class T>
class fused_leaf_node final : public leaf_handle<Backend, T> {
public:
    using mid_shape = checked_output_t<P, In>;
    using out_shape = checked_output_t<A, mid_shape>;
    using producer_type = typename P::template impl<In, Backend, T>;
    using activation_type = typename A::template impl<mid_shape, Backend, T>;
    using context = typename Backend::context;
    using io_type = node_io<T>;
    static constexpr std::size_t parameter_count = producer_type::parameter_count;
    static constexpr std::size_t state_count = 0;
    static constexpr double flops_per_sample = producer_type::flops_per_sample + activation_type::flops_per_sample;
    static constexpr std::size_t leaf_count = 1;
    static constexpr graph::leaf_traits traits = [] {
        graph::leaf_traits t;
        t.needs_input = true;
        t.needs_output = true;
        t.accumulates = producer_type::traits.accumulates;
        return t;
    }();

    using output_shape = out_shape;
    static constexpr std::size_t outputs = 1;

    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, node_path p,
              std::vector<leaf_handle<Backend, T>*>& handles) {
        graph::leaf l;
        l.name = P::name() + "+" + A::name();
        l.path = p.text;
        l.output_shape = out_shape::str();
        l.depth = g.depth();
        l.inputs.assign(in, in + 1);
        l.traits = traits;
        l.sizes = this;
        l.flops_per_sample = flops_per_sample;
        l.parameters = parameter_count;
        this->path = std::move(p);
        this->owner = P::name();
        this->id = g.add_leaf(std::move(l), out_shape::size);
        handles.push_back(this);
        out[0] = g.leaves()[this->id].output;
    }

    std::size_t saved_bytes(std::size_t batch) const override { return producer_.saved_bytes(batch); }
    std::size_t workspace_elements(std::size_t batch) const override {
        return producer_.workspace_size(batch) + align(batch * out_shape::size);
    }
    std::vector<tensor_spec> specs() const override { return producer_.tensor_specs(); }
    void bind(const tensor_binding<T>& b) override { producer_.bind(b); }
    void set_stream(random_stream) override {}
    void plan_state(const context&, std::size_t) override {}

    void forward(const context& c, const exec<T>& e) const override {
        io_type io = make_io(e, false);
        node_detail::timed<Backend>(c, e.profiler, this->id, node_profiler::forward, e.batch,
                                    [&] { producer_.forward_fused(c, io, activation_type::fused_activation()); });
    }
    void forward_train(const context& c, const exec<T>& e, std::uint64_t) override { forward(c, e); }
    void backward(const context& c, const exec<T>& e, gradient_sink<T>* sink) override {
        io_type io = make_io(e, true);
        const std::size_t n = e.batch * out_shape::size;
        T* dmid = e.workspace + producer_.workspace_size(e.plan->batch);
        sink_ref<T> s{sink};
        node_detail::timed<Backend>(c, e.profiler, this->id, node_profiler::backward, e.batch, [&] {
            // d(pre-activation) from y alone
            Backend::activation_backward(c, activation_type::fused_activation(), static_cast<const T*>(io.y),
                                         static_cast<const T*>(io.y), io.dy, dmid, n);
            io_type pio = io;
            pio.dy = dmid;
            producer_.backward(c, pio, s);
        });
    }

private:
    static constexpr std::size_t align(std::size_t n) { return (n + 15) / 16 * 16; }
    io_type make_io(const exec<T>& e, bool grads) const {
        const graph::leaf_plan& lp = e.plan->leaves[this->id];
        const graph::port_plan& pp = e.plan->ports[lp.first_port];
        io_type io;
        io.batch = e.batch;
        io.workspace = e.workspace;
        io.saved = e.at(lp.saved);
        io.y = e.at(lp.y);
        io.x[0] = e.at(pp.x);
        if (grads) {
            io.dy = e.at(lp.dy);
            io.dx[0] = e.at(pp.dx);
            io.accumulate[0] = pp.accumulate || (pp.first_input_writer && e.accumulate_input_gradient);
        }
        return io;
    }
    producer_type producer_{};
};

}  // namespace lamina
// ---- end include/lamina/network/leaf_node.hpp ----


namespace lamina {

namespace detail {

template <class D, class In, class Backend, class T, bool = is_composite<D>::value>
struct node_type {
    using type = leaf_node<D, In, Backend, T>;
};
template <class D, class In, class Backend, class T>
struct node_type<D, In, Backend, T, true> {
    using type = typename D::template node<In, Backend, T>;
};

template <class S>
struct port_count : std::integral_constant<std::size_t, 1> {};
template <class... S>
struct port_count<shapes<S...>> : std::integral_constant<std::size_t, sizeof...(S)> {};

}  // namespace detail

/// The runtime node of descriptor D on input shape In.
template <class D, class In, class Backend, class T>
using node_t = typename detail::node_type<D, In, Backend, T>::type;

/// The end of a chain: passes its input edges through.
template <class In, class Backend, class T>
class chain_end {
public:
    using input_shape = In;
    using output_shape = In;
    static constexpr std::size_t outputs = detail::port_count<In>::value;
    static constexpr std::size_t parameter_count = 0, state_count = 0, leaf_count = 0, positions = 0;
    static constexpr double flops_per_sample = 0;
    template <std::size_t I>
    using shape_at = In;

    template <class Handles>
    void wire(graph::description&, const graph::edge_id* in, graph::edge_id* out, const node_path&, std::size_t,
              Handles&) {
        for (std::size_t i = 0; i < outputs; ++i) out[i] = in[i];
    }
};

template <class In, class Head, class Tail, std::size_t Span>
class chain_link {
public:
    using input_shape = In;
    using output_shape = typename Tail::output_shape;
    static constexpr std::size_t outputs = Tail::outputs;
    static_assert(Head::outputs == 1 || Tail::positions == 0,
                  "lamina: a node with several outputs (heads<...>) must be the last node of its sequential");
    static constexpr std::size_t parameter_count = Head::parameter_count + Tail::parameter_count;
    static constexpr std::size_t state_count = Head::state_count + Tail::state_count;
    static constexpr std::size_t leaf_count = Head::leaf_count + Tail::leaf_count;
    static constexpr std::size_t positions = Span + Tail::positions;
    static constexpr double flops_per_sample = Head::flops_per_sample + Tail::flops_per_sample;

    template <class Handles>
    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, const node_path& parent,
              std::size_t index, Handles& h) {
        graph::edge_id mid[Head::outputs];
        head.wire(g, in, mid, parent.child(index), h);
        tail.wire(g, mid, out, parent, index + Span, h);
    }

    Head head;
    Tail tail;

private:
    template <class H, std::size_t S, class Tl>
    struct at_one {
        using type = typename Tl::template shape_at<0>;
    };
    template <class H, class Tl>
    struct at_one<H, 2, Tl> {
        using type = typename H::mid_shape;  // between a fused producer and its activation
    };
    template <std::size_t I, class Dummy = void>
    struct shape_at_impl {
        using type = typename Tail::template shape_at<I - Span>;
    };
    template <class Dummy>
    struct shape_at_impl<0, Dummy> {
        using type = In;
    };
    template <class Dummy>
    struct shape_at_impl<1, Dummy> {
        using type = typename at_one<Head, Span, Tail>::type;
    };

public:
    /// The input shape of position I of this chain (I == positions: the output).
    template <std::size_t I>
    using shape_at = typename shape_at_impl<I>::type;
};

namespace detail {

template <class In, class Backend, class T, class... Ls>
struct chain_of;

/// Do L1 (on In) and L2 fuse into one leaf? Evaluated lazily, so a layer that cannot take its
/// input reports only its own shape diagnostic.
template <class In, class Backend, class T, class L1, class L2>
struct fusable_pair {
    template <class = void>
    struct producer_fuses {
        static constexpr bool value = node_detail::fuses_activation<typename L1::template impl<In, Backend, T>>::value;
    };
    template <class = void>
    struct activation_fusable {
        static constexpr bool value = node_detail::fusable_activation<
            typename L2::template impl<checked_output_t<L1, In>, Backend, T>>::value;
    };
#if defined(LAMINA_NO_LAYER_FUSION)
    static constexpr bool value = false;
#else
    static constexpr bool value =
        std::conjunction_v<std::negation<is_composite<L1>>, std::negation<is_composite<L2>>,
                           std::bool_constant<L1::template accepts<In>>, producer_fuses<>, activation_fusable<>>;
#endif
};

template <bool Fuse, class In, class Backend, class T, class L, class... Ls>
struct chain_pick {
    using type = chain_link<In, node_t<L, In, Backend, T>,
                            typename chain_of<checked_output_t<L, In>, Backend, T, Ls...>::type, 1>;
};
template <class In, class Backend, class T, class L1, class L2, class... Ls>
struct chain_pick<true, In, Backend, T, L1, L2, Ls...> {
    using head = fused_leaf_node<L1, L2, In, Backend, T>;
    using type = chain_link<In, head, typename chain_of<typename head::out_shape, Backend, T, Ls...>::type, 2>;
};

template <class In, class Backend, class T, class... Ls>
struct fuse_first : std::false_type {};
template <class In, class Backend, class T, class L1, class L2, class... Ls>
struct fuse_first<In, Backend, T, L1, L2, Ls...> : std::bool_constant<fusable_pair<In, Backend, T, L1, L2>::value> {};

template <class In, class Backend, class T, class... Ls>
struct chain_of {
    using type = chain_end<In, Backend, T>;
};
template <class In, class Backend, class T, class L, class... Ls>
struct chain_of<In, Backend, T, L, Ls...> {
    using type = typename chain_pick<fuse_first<In, Backend, T, L, Ls...>::value, In, Backend, T, L, Ls...>::type;
};

/// The output shape of layers Ls on In (shape-checked), without building nodes.
template <class In, class... Ls>
struct chain_shape {
    using type = In;
};
template <class In, class L, class... Ls>
struct chain_shape<In, L, Ls...> {
    using type = typename chain_shape<checked_output_t<L, In>, Ls...>::type;
};

}  // namespace detail

template <class In, class Backend, class T, class... Ls>
using chain_of_t = typename detail::chain_of<In, Backend, T, Ls...>::type;

}  // namespace lamina
// ---- end include/lamina/network/chain.hpp ----


namespace lamina {

template <class... Ts>
struct type_list {};

template <class Net, class Backend, class T>
class network_model;

namespace detail {

template <class... Ls>
struct seq_split {
    using input_shape = void;
    using layers = type_list<Ls...>;
};
template <std::size_t... D, class... Ls>
struct seq_split<input<D...>, Ls...> {
    using input_shape = shape<D...>;
    using layers = type_list<Ls...>;
};

template <class In, class Backend, class T, class List>
struct chain_from;
template <class In, class Backend, class T, class... Ls>
struct chain_from<In, Backend, T, type_list<Ls...>> {
    using type = chain_of_t<In, Backend, T, Ls...>;
};
template <class In, class List>
struct shape_from;
template <class In, class... Ls>
struct shape_from<In, type_list<Ls...>> {
    using type = typename chain_shape<In, Ls...>::type;
};
template <class List>
struct names_of;
template <class... Ls>
struct names_of<type_list<Ls...>> {
    static std::string get() {
        std::string s;
        ((s += (s.empty() ? "" : ", ") + Ls::name()), ...);
        return s;
    }
    static constexpr std::size_t count = sizeof...(Ls);
};

template <bool IsNetwork, class Parts>
struct network_output {
    using type = void;
};
template <class Parts>
struct network_output<true, Parts> {
    using type = typename shape_from<typename Parts::input_shape, typename Parts::layers>::type;
};

}  // namespace detail

/// The runtime node of a nested sequential: its chain, under its own heading in the summary.
template <class Desc, class In, class Backend, class T>
class sequential_node {
public:
    using chain = typename detail::chain_from<In, Backend, T, typename Desc::parts::layers>::type;
    using output_shape = typename chain::output_shape;
    static constexpr std::size_t outputs = chain::outputs;
    static constexpr std::size_t parameter_count = chain::parameter_count;
    static constexpr std::size_t state_count = chain::state_count;
    static constexpr std::size_t leaf_count = chain::leaf_count;
    static constexpr double flops_per_sample = chain::flops_per_sample;

    template <class Handles>
    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, const node_path& p, Handles& h) {
        g.begin_composite(Desc::name());
        chain_.wire(g, in, out, p, 0, h);
        g.end_composite();
    }
    /// The top of a network: no heading, positions numbered from 0 (as in lamina 0.1).
    template <class Handles>
    void wire_top(graph::description& g, const graph::edge_id* in, graph::edge_id* out, Handles& h) {
        chain_.wire(g, in, out, node_path{}, 0, h);
    }
    chain& nodes() noexcept { return chain_; }
    const chain& nodes() const noexcept { return chain_; }

private:
    chain chain_;
};

template <class... Ls>
struct sequential {
    using parts = detail::seq_split<Ls...>;
    static constexpr bool is_composite = true;
    static constexpr bool is_network = !std::is_void_v<typename parts::input_shape>;
    static_assert(detail::names_of<typename parts::layers>::count >= 1,
                  "lamina::sequential needs at least one node (after its input<...>)");

    static std::string name() { return "sequential<" + detail::names_of<typename parts::layers>::get() + ">"; }
    /// The node names, comma separated (checkpoints store them as the architecture).
    static std::string layer_names() { return detail::names_of<typename parts::layers>::get(); }
    /// Number of nodes in the list (input<...> not counted).
    static constexpr std::size_t length = detail::names_of<typename parts::layers>::count;

    // descriptor protocol (as a node inside a composite)
    template <class In>
    static constexpr bool accepts = !is_network || std::is_same_v<In, typename parts::input_shape>;
    template <class In>
    using expected_input = std::conditional_t<is_network, typename parts::input_shape, In>;
    template <class In>
    using output_for = typename detail::shape_from<In, typename parts::layers>::type;
    template <class In, class Backend, class T>
    using node = sequential_node<sequential, In, Backend, T>;

    // as a network
    using input_shape = typename parts::input_shape;
    using output_shape = typename detail::network_output<is_network, parts>::type;  // void for a bare chain
    template <class Backend = host, class T = float>
    using model = network_model<sequential, Backend, T>;
};

}  // namespace lamina

// ---- begin include/lamina/network/model.hpp ----
// lamina: a network with its memory: the model of a network type on a backend.
//
//   lenet5::model<lamina::host> net{lamina::seed{42}};            // = network_model<lenet5, host, float>
//   std::cout << net.summary(64);                                  // layers, shapes, FLOPs, planned bytes
//   net.predict(in, out, batch);                                   // const, thread-safe
//
// The model wires its node tree into a graph once (network/graph.hpp), keeps one flat buffer
// per tensor kind (trainable parameters and their gradients, running state, frozen), and
// plans memory per batch size (network/memory_plan.hpp): training steps 2..N and inference
// at a batch size seen before allocate nothing.

#include <mutex>
#include <sstream>


// ---- begin include/lamina/network/parameter_segment.hpp ----
// lamina: where each parameter tensor lives in a network's flat parameter buffer.
// One contiguous buffer for all parameters (and one for all gradients) makes the optimizer
// a handful of kernel calls, a checkpoint one write, and a gradient allreduce one message.


namespace lamina {

struct parameter_segment {
    std::string name;        // e.g. "3:dense<120>.weight"
    std::size_t layer = 0;   // index in the network's layer list
    std::size_t offset = 0;  // first element in the flat buffer
    std::size_t count = 0;
    bool decay = true;       // weight decay applies
};

}  // namespace lamina
// ---- end include/lamina/network/parameter_segment.hpp ----


namespace lamina {

namespace detail {
template <class S>
struct output_sizes {
    static constexpr std::size_t count = 1;
    static constexpr std::array<std::size_t, 1> sizes{S::size};
};
template <class... S>
struct output_sizes<shapes<S...>> {
    static constexpr std::size_t count = sizeof...(S);
    static constexpr std::array<std::size_t, sizeof...(S)> sizes{S::size...};
};
}  // namespace detail

template <class Net, class Backend, class T>
class network_model {
    static_assert(Net::is_network, "lamina: only a sequential that starts with input<...> has a model");

public:
    using network = Net;
    using backend = Backend;
    using value_type = T;
    using context_type = typename Backend::context;
    using input_shape = typename Net::input_shape;
    using node_type = typename Net::template node<input_shape, Backend, T>;
    using output_shape = typename node_type::output_shape;  // a shape, or shapes<...> for several heads
    using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

    static constexpr std::size_t outputs = detail::output_sizes<output_shape>::count;
    static constexpr std::array<std::size_t, outputs> output_sizes = detail::output_sizes<output_shape>::sizes;
    static constexpr std::size_t input_size = input_shape::size;
    /// Elements per sample of the (first) output.
    static constexpr std::size_t output_size = output_sizes[0];
    static constexpr std::size_t parameter_count = node_type::parameter_count;
    static constexpr std::size_t state_count = node_type::state_count;
    static constexpr double flops_per_sample = node_type::flops_per_sample;
    static constexpr std::size_t depth = Net::length;  // nodes in the top-level list
    template <std::size_t I>
    using shape_at = typename node_type::chain::template shape_at<I>;

    /// A network with freshly initialised parameters. `threads` bounds the host backend's
    /// worker threads (default: LAMINA_NUM_THREADS or the available cores).
    explicit network_model(seed s = seed{0}, threads t = threads{}) : ctx_(t) {
        const graph::edge_id in = graph_.add_input(input_size);
        graph::edge_id out[outputs];
        node_.wire_top(graph_, &in, out, handles_);
        for (std::size_t k = 0; k < outputs; ++k) {
            if (out[k] == in) {  // a network of views: its output needs storage of its own
                copies_.push_back(std::make_unique<copy_leaf<Backend, T>>(input_size));
                copies_.back()->wire(graph_, in, &out[k], handles_);
            }
            graph_.mark_output(out[k], static_cast<std::int32_t>(k));
        }
        std::size_t per_sample = 1;
        for (const auto& e : graph_.edges()) per_sample += 2 * e.size;  // values and gradients
        max_batch_ = std::size_t(-1) / 1024 / sizeof(T) / per_sample;
        lay_out_tensors();
        initialize(s);
    }
    network_model(const network_model&) = delete;
    network_model& operator=(const network_model&) = delete;

    /// Re-draws every trainable parameter from `s` (counter-based: identical on every backend)
    /// and resets running state to its initial values.
    void initialize(seed s) {
        seed_ = s.value;
        random_stream root{s.value, 0};
        std::vector<T> host(parameter_count), st(state_count);
        std::size_t trainable_index = 0;
        for (const auto& t : tensors_) {
            if (t.spec.kind == tensor_kind::trainable) {
                random_stream r = root.child(handles_[t.leaf]->path.key * 1024 + trainable_index++);
                for (std::size_t k = 0; k < t.spec.count; ++k)
                    host[t.offset + k] = static_cast<T>(init::sample(t.spec.init, r, k, t.spec.fan_in, t.spec.fan_out));
            } else if (t.spec.kind == tensor_kind::state) {
                random_stream r = root.child(0x57A7Eull).child(handles_[t.leaf]->path.key);
                for (std::size_t k = 0; k < t.spec.count; ++k)
                    st[t.offset + k] = static_cast<T>(init::sample(t.spec.init, r, k, t.spec.fan_in, t.spec.fan_out));
            }
        }
        if (parameter_count) Backend::upload(ctx_, params_.data(), host.data(), parameter_count);
        if (state_count) Backend::upload(ctx_, state_.data(), st.data(), state_count);
        if (!grads_.empty()) Backend::fill(ctx_, grads_.data(), grads_.size(), T(0));
        restore_seed(s.value);
    }
    std::uint64_t seed_value() const noexcept { return seed_; }
    /// Sets the seed that keys dropout masks without re-drawing parameters (checkpoint resume).
    void restore_seed(std::uint64_t s) {
        seed_ = s;
        random_stream root = random_stream{s, 0}.child(0xD0D0D0D0ull);
        for (auto* h : handles_) h->set_stream(root);
    }

    // ---- description ------------------------------------------------------------------------
    static std::string name_of_layers() { return Net::layer_names(); }
    const graph::description& graph() const noexcept { return graph_; }

    /// A table of nodes (composites indented under their heading), output shapes, parameter
    /// counts and forward FLOPs per sample; with a batch size, also the memory planned for a
    /// training step and for inference at that batch.
    std::string summary(std::size_t batch = 0) const {
        std::ostringstream os;
        char line[640];
        std::snprintf(line, sizeof line, "%-12s %-34s %-16s %12s %14s\n", "#", "layer", "output", "params", "FLOPs/sample");
        os << line;
        std::snprintf(line, sizeof line, "%-12s %-34s %-16s %12s %14s\n", "", "input", input_shape::str().c_str(), "0", "0");
        os << line;
        for (const auto& r : graph_.rows()) {
            std::string indent(2 * r.depth, ' ');
            if (!r.is_leaf) {
                std::snprintf(line, sizeof line, "%-12s %s\n", "", (indent + r.heading).c_str());
            } else {
                const auto& l = graph_.leaves()[r.leaf];
                std::snprintf(line, sizeof line, "%-12s %-34.34s %-16s %12zu %14.0f\n", l.path.c_str(), (indent + l.name).c_str(),
                              l.output_shape.c_str(), l.parameters, l.flops_per_sample);
            }
            os << line;
        }
        std::snprintf(line, sizeof line, "total: %zu parameters, %.4g MFLOPs per sample (forward), backend %s\n",
                      parameter_count, flops_per_sample / 1e6, Backend::name);
        os << line;
        if (state_count) {
            std::snprintf(line, sizeof line, "running state: %zu values (not trained, checkpointed)\n", state_count);
            os << line;
        }
        if (batch) {
            const auto tp = graph::plan_training(graph_, batch, sizeof(T), true);
            const auto ip = graph::plan_inference(graph_, batch, sizeof(T), Backend::host_accessible);
            auto mib = [](std::size_t elements) { return double(elements) * sizeof(T) / 1048576.0; };
            std::snprintf(line, sizeof line,
                          "planned memory at batch %zu: training %.2f MiB (activations %.2f, gradients %.2f, saved "
                          "%.2f, temporaries %.2f MiB, shared down from %.2f MiB) + workspace %.2f MiB; inference %.2f "
                          "MiB + workspace %.2f MiB; parameters and gradients %.2f MiB\n",
                          batch, mib(tp.arena_elements), mib(tp.value_elements), mib(tp.gradient_elements),
                          mib(tp.saved_elements), mib(tp.temp_elements), mib(tp.unshared_elements),
                          mib(tp.workspace_elements), mib(ip.arena_elements), mib(ip.workspace_elements),
                          mib(2 * parameter_count + state_count));
            os << line;
        }
        return os.str();
    }

    // ---- parameters and state -----------------------------------------------------------------
    T* parameters() noexcept { return params_.data(); }
    const T* parameters() const noexcept { return params_.data(); }
    /// Device pointer of the flat gradient buffer (null until the model has planned training).
    T* gradients() noexcept { return grads_.data(); }
    const T* gradients() const noexcept { return grads_.data(); }
    T* state() noexcept { return state_.data(); }
    const T* state() const noexcept { return state_.data(); }
    const std::vector<parameter_segment>& parameter_segments() const noexcept { return segments_; }
    const std::vector<parameter_segment>& state_segments() const noexcept { return state_segments_; }
    /// Host copy of all parameters, in the flat layout.
    std::vector<T> get_parameters() const { return download(params_, parameter_count); }
    void set_parameters(const std::vector<T>& h) { upload(params_, h, parameter_count, "set_parameters", "parameters"); }
    /// Host copy of the parameter gradients (zeros before the model has trained).
    std::vector<T> get_gradients() const {
        return grads_.empty() ? std::vector<T>(parameter_count, T(0)) : download(grads_, parameter_count);
    }
    /// Host copy of the running state (batch norm statistics), in the flat layout.
    std::vector<T> get_state() const { return download(state_, state_count); }
    void set_state(const std::vector<T>& h) { upload(state_, h, state_count, "set_state", "running-state values"); }

    // ---- training interface (used by trainer; usable directly) -----------------------------
    /// Plans the training buffers for batches of up to `batch` samples (done once; calls with a
    /// batch that fits are free, so the last, smaller batch of an epoch allocates nothing).
    void plan(std::size_t batch) {
        check_batch(batch, "plan");
        if (batch <= planned_) return;
        allocating(batch, [&] {
            allocate_gradients();
            train_plan_ = graph::plan_training(graph_, batch, sizeof(T), true, share_memory_);
            train_arena_.allocate(std::max<std::size_t>(train_plan_.arena_elements, 1));
            grow_workspace(train_plan_.workspace_elements);
            for (auto* h : handles_) h->plan_state(ctx_, batch);
        });
        planned_ = batch;
    }
    std::size_t planned_batch() const noexcept { return planned_; }
    /// Plans forward_infer's buffers for batches of up to `batch` samples (only those: an
    /// evaluation at a larger batch than training plans no training memory for it).
    void plan_inference(std::size_t batch) {
        check_batch(batch, "plan_inference");
        if (batch <= infer_planned_) return;
        allocating(batch, [&] {
            infer_plan_ = graph::plan_inference(graph_, batch, sizeof(T), false, share_memory_);
            infer_arena_.allocate(std::max<std::size_t>(infer_plan_.arena_elements, 1));
            grow_workspace(infer_plan_.workspace_elements);
        });
        infer_planned_ = batch;
    }
    /// The training step's memory plan (planned bytes per edge kind: summary(batch)).
    const graph::memory_plan& training_plan() const noexcept { return train_plan_; }
    /// false: plan every edge in memory of its own and run nothing in place (for checking
    /// the planner; results are bit-identical). Takes effect at the next plan; call before use.
    void set_memory_sharing(bool share) {
        share_memory_ = share;
        planned_ = infer_planned_ = 0;
        std::lock_guard<std::mutex> lk(scratch_mutex_);
        scratch_pool_.clear();
    }

    /// Forward pass of a training step on device memory `x` (batch x input_size); returns the
    /// device pointer of the (first) output. `step` keys the dropout masks.
    const T* forward_train(const T* x, std::size_t batch, std::uint64_t step) {
        plan(batch);
        current_batch_ = batch;
        last_input_ = x;
        exec<T> e = training_exec(x, nullptr);
        for (auto* h : handles_) h->forward_train(ctx_, e, step);
        return output(0);
    }
    /// Device pointer to output k of the last forward_train.
    const T* output(std::size_t k = 0) const {
        return resolve(train_plan_.outputs.at(k), last_input_, nullptr);
    }
    /// Device buffer the loss writes dLoss/d(output k) into (batch x output_sizes[k]).
    T* output_gradient(std::size_t k = 0) noexcept { return resolve(train_plan_.output_grads.at(k), last_input_, nullptr); }
    /// The sum of the terms nodes add to the loss (a VAE's KL) in the last forward_train.
    double added_loss() const {
        double s = 0;
        if (!has_added_loss_) return s;
        exec<T> e = training_exec(last_input_, nullptr);
        for (auto* h : handles_)
            if (h->adds_loss()) s += h->added_loss(ctx_, e);
        return s;
    }
    static constexpr bool adds_loss_possible = true;
    /// Backward pass after forward_train: fills gradients() from output_gradient(); each
    /// parameter gradient is reported to `sink` as soon as it is final.
    void backward(gradient_sink<T>* sink = nullptr) { run_backward(nullptr, sink); }
    /// Backward that also writes dLoss/dInput into `dx` (device, batch x input_size).
    void backward(T* dx, gradient_sink<T>* sink = nullptr) { run_backward(dx, sink); }
    /// Backward that adds dLoss/dInput into `dx` (dx += ...; a simulation accumulating
    /// sensitivities, or a caller's own graph around the model).
    void backward_accumulate(T* dx, gradient_sink<T>* sink = nullptr) { run_backward(dx, sink, true); }

    /// Inference forward on device memory through the model's own buffers (not thread-safe; the
    /// trainer's evaluation uses it). Returns the device pointer of output k.
    const T* forward_infer(const T* x, std::size_t batch, std::size_t k = 0) {
        plan_inference(batch);
        exec<T> e;
        e.plan = &infer_plan_;
        e.base[graph::space_arena] = infer_arena_.data();
        e.base[graph::space_input] = const_cast<T*>(x);
        e.workspace = workspace_.data();
        e.batch = batch;
        e.profiler = profiler_;
        for (const auto* h : handles_) h->forward(ctx_, e);
        last_infer_input_ = x;
        return infer_output(k);
    }
    /// Device pointer to output k of the last forward_infer.
    const T* infer_output(std::size_t k) const {
        const graph::ref r = infer_plan_.outputs.at(k);
        if (r.space == graph::space_input) return last_infer_input_ + r.offset;
        return infer_arena_.data() + r.offset;
    }

    context_type& context() noexcept { return ctx_; }
    const context_type& context() const noexcept { return ctx_; }
    node_type& nodes() noexcept { return node_; }
    const node_type& nodes() const noexcept { return node_; }
    /// The leaves in execution order (for tools: profilers, communicators, tests).
    const std::vector<leaf_handle<Backend, T>*>& leaves() const noexcept { return handles_; }

    // ---- profiling ------------------------------------------------------------------------------
    /// Attaches a profiler (null detaches): every leaf's forward and backward is then timed.
    void profile(node_profiler* p) noexcept { profiler_ = p; }
    node_profiler* profiler() const noexcept { return profiler_; }

    // ---- embedding: inference on the caller's memory ----------------------------------------
    /// out[batch x output_size] = net(in[batch x input_size]), both host pointers. Const and
    /// thread-safe: concurrent callers each take their own planned scratch. At a batch size
    /// seen before, nothing is allocated. A network with several outputs writes output 0 here;
    /// predict_all writes every one.
    void predict(const T* in, T* out, std::size_t batch) const {
        T* outs[outputs] = {out};
        run_predict(in, outs, batch, 1);
    }
    /// Every output: outs[k] receives batch x output_sizes[k] values.
    void predict_all(const T* in, T* const* outs, std::size_t batch) const { run_predict(in, outs, batch, outputs); }
    /// Eigen interop: rows are samples. Checks the column counts.
    void predict(const Eigen::Ref<const matrix>& in, Eigen::Ref<matrix> out) const {
        if (static_cast<std::size_t>(in.cols()) != input_size)
            throw shape_error("lamina: predict input has " + std::to_string(in.cols()) + " columns, the network takes " +
                              std::to_string(input_size) + " (shape " + input_shape::str() + ")");
        if (static_cast<std::size_t>(out.cols()) != output_size || out.rows() != in.rows())
            throw shape_error("lamina: predict output is " + std::to_string(out.rows()) + "x" + std::to_string(out.cols()) +
                              ", expected " + std::to_string(in.rows()) + "x" + std::to_string(output_size));
        if (in.outerStride() != static_cast<Eigen::Index>(input_size) ||
            out.outerStride() != static_cast<Eigen::Index>(output_size))
            throw shape_error("lamina: predict needs contiguous row-major matrices");
        predict(in.data(), out.data(), static_cast<std::size_t>(in.rows()));
    }
    matrix predict(const Eigen::Ref<const matrix>& in) const {
        matrix out(in.rows(), static_cast<Eigen::Index>(output_size));
        predict(in, out);
        return out;
    }
    /// Every output as a matrix (rows are samples).
    std::array<matrix, outputs> predict_all(const Eigen::Ref<const matrix>& in) const {
        if (static_cast<std::size_t>(in.cols()) != input_size || in.outerStride() != in.cols())
            throw shape_error("lamina: predict_all input has " + std::to_string(in.cols()) +
                              " columns (contiguous rows needed), the network takes " + std::to_string(input_size));
        std::array<matrix, outputs> r;
        T* outs[outputs];
        for (std::size_t k = 0; k < outputs; ++k) {
            r[k].resize(in.rows(), static_cast<Eigen::Index>(output_sizes[k]));
            outs[k] = r[k].data();
        }
        predict_all(in.data(), outs, static_cast<std::size_t>(in.rows()));
        return r;
    }

    /// The largest batch whose buffer sizes are sure not to wrap size_t: every buffer a node
    /// or kernel plans is at most 1024 elements per element of the network's edges.
    std::size_t max_batch() const noexcept { return max_batch_; }

private:
    struct placed_tensor {
        std::size_t leaf;  // index into handles_
        tensor_spec spec;
        std::size_t offset;  // in its kind's flat buffer
    };
    struct scratch_set {
        std::size_t batch = 0;
        graph::memory_plan plan;
        typename Backend::template buffer<T> arena, workspace, input;
        std::array<typename Backend::template buffer<T>, outputs> output;
    };

    void lay_out_tensors() {
        std::size_t off[3] = {0, 0, 0};
        for (std::size_t i = 0; i < handles_.size(); ++i) {
            for (auto& spec : handles_[i]->specs()) {
                spec.type = dtype_of<T>();
                auto k = static_cast<std::size_t>(spec.kind);
                tensors_.push_back({i, spec, off[k]});
                off[k] += spec.count;
            }
        }
        if (off[0] != parameter_count || off[1] != state_count)
            throw error("lamina: internal error: tensor specs cover " + std::to_string(off[0]) + " of " +
                        std::to_string(parameter_count) + " parameters and " + std::to_string(off[1]) + " of " +
                        std::to_string(state_count) + " state values");
        params_.allocate(std::max<std::size_t>(parameter_count, 1));
        state_.allocate(std::max<std::size_t>(state_count, 1));
        frozen_.allocate(std::max<std::size_t>(off[2], 1));
        // each leaf gets pointers to its first tensor of each kind (its tensors of a kind are contiguous)
        std::vector<tensor_binding<T>> b(handles_.size());
        std::vector<std::array<bool, 3>> seen(handles_.size(), {false, false, false});
        for (const auto& t : tensors_) {
            auto k = static_cast<std::size_t>(t.spec.kind);
            if (seen[t.leaf][k]) continue;
            seen[t.leaf][k] = true;
            if (k == 0) {
                b[t.leaf].parameters = params_.data() + t.offset;
            } else if (k == 1) {
                b[t.leaf].state = state_.data() + t.offset;
            } else {
                b[t.leaf].frozen = frozen_.data() + t.offset;
            }
        }
        bindings_ = b;
        for (std::size_t i = 0; i < handles_.size(); ++i) {
            handles_[i]->bind(b[i]);
            graph_.leaves()[handles_[i]->id].parameter_offset =
                b[i].parameters ? static_cast<std::size_t>(b[i].parameters - params_.data()) : 0;
            if (handles_[i]->adds_loss()) has_added_loss_ = true;
        }
        for (const auto& t : tensors_) {
            const auto& h = *handles_[t.leaf];
            parameter_segment seg{h.path.text + ":" + h.owner + "." + t.spec.name, h.id, t.offset,
                                  t.spec.count, t.spec.decay};
            if (t.spec.kind == tensor_kind::trainable) segments_.push_back(seg);
            else if (t.spec.kind == tensor_kind::state) state_segments_.push_back(seg);
        }
    }

    /// Parameter gradients exist only once the model trains (inference-only models, e.g. a
    /// ResNet-50 embedded for prediction, never hold them): allocated and bound at the first
    /// training plan.
    void allocate_gradients() {
        if (!grads_.empty() || parameter_count == 0) return;
        grads_.allocate(parameter_count);
        for (std::size_t i = 0; i < handles_.size(); ++i) {
            if (bindings_[i].parameters) bindings_[i].gradients = grads_.data() + (bindings_[i].parameters - params_.data());
            handles_[i]->bind(bindings_[i]);
        }
    }
    void grow_workspace(std::size_t n) {
        if (workspace_.size() < std::max<std::size_t>(n, 1)) workspace_.allocate(std::max<std::size_t>(n, 1));
    }

    std::vector<T> download(const typename Backend::template buffer<T>& b, std::size_t n) const {
        std::vector<T> h(n);
        if (n) Backend::download(ctx_, h.data(), b.data(), n);
        return h;
    }
    void upload(typename Backend::template buffer<T>& b, const std::vector<T>& h, std::size_t n, const char* where,
                const char* what) {
        if (h.size() != n)
            throw shape_error(std::string("lamina: ") + where + " got " + std::to_string(h.size()) + " values, the network has " +
                              std::to_string(n) + " " + what);
        if (n) Backend::upload(ctx_, b.data(), h.data(), n);
    }

    exec<T> training_exec(const T* x, T* dx) const {
        exec<T> e;
        e.plan = &train_plan_;
        e.base[graph::space_arena] = const_cast<T*>(train_arena_.data());
        e.base[graph::space_input] = const_cast<T*>(x);
        e.base[graph::space_input_grad] = dx;
        e.workspace = const_cast<T*>(workspace_.data());
        e.batch = current_batch_;
        e.profiler = profiler_;
        return e;
    }
    T* resolve(const graph::ref& r, const T* x, T* dx) const { return training_exec(x, dx).at(r); }

    void run_backward(T* dx, gradient_sink<T>* sink, bool accumulate = false) {
        if (!current_batch_) throw argument_error("lamina: backward() needs a forward_train() first");
        exec<T> e = training_exec(last_input_, dx);
        e.accumulate_input_gradient = accumulate;
        for (auto it = handles_.rbegin(); it != handles_.rend(); ++it) (*it)->backward(ctx_, e, sink);
    }

    void run_predict(const T* in, T* const* outs, std::size_t batch, std::size_t n_out) const {
        if (batch == 0) return;
        if (!in) throw argument_error("lamina: predict got a null input pointer");
        for (std::size_t k = 0; k < n_out; ++k)
            if (!outs[k]) throw argument_error("lamina: predict got a null pointer for output " + std::to_string(k));
        check_batch(batch, "predict");
        auto s = acquire_scratch(batch);
        exec<T> e;
        e.plan = &s->plan;
        e.base[graph::space_arena] = s->arena.data();
        e.workspace = s->workspace.data();
        e.batch = batch;
        e.profiler = profiler_;
        if constexpr (Backend::host_accessible) {
            e.base[graph::space_input] = const_cast<T*>(in);
            for (std::size_t k = 0; k < outputs; ++k) e.base[graph::space_output0 + k] = k < n_out ? outs[k] : s->output[k].data();
        } else {
            Backend::upload(ctx_, s->input.data(), in, batch * input_size);
            e.base[graph::space_input] = s->input.data();
        }
        for (const auto* h : handles_) h->forward(ctx_, e);
        for (std::size_t k = 0; k < n_out; ++k) {
            const T* y = e.at(s->plan.outputs[k]);
            if constexpr (Backend::host_accessible) {
                if (y != outs[k]) Backend::copy(ctx_, outs[k], y, batch * output_sizes[k]);  // output is a view of the input
            } else {
                Backend::download(ctx_, outs[k], y, batch * output_sizes[k]);
            }
        }
        release_scratch(std::move(s));
    }

    std::unique_ptr<scratch_set> acquire_scratch(std::size_t batch) const {
        {
            std::lock_guard<std::mutex> lk(scratch_mutex_);
            for (auto it = scratch_pool_.begin(); it != scratch_pool_.end(); ++it)
                if ((*it)->batch == batch) {
                    auto s = std::move(*it);
                    scratch_pool_.erase(it);
                    return s;
                }
        }
        auto s = std::make_unique<scratch_set>();
        s->batch = batch;
        allocating(batch, [&] {
            s->plan = graph::plan_inference(graph_, batch, sizeof(T), Backend::host_accessible, share_memory_);
            s->arena.allocate(std::max<std::size_t>(s->plan.arena_elements, 1));
            s->workspace.allocate(std::max<std::size_t>(s->plan.workspace_elements, 1));
            if constexpr (!Backend::host_accessible) s->input.allocate(batch * input_size);
            // device outputs, and on host backends the outputs predict() does not return
            for (std::size_t k = Backend::host_accessible ? 1 : 0; k < outputs; ++k)
                s->output[k].allocate(batch * output_sizes[k]);
        });
        return s;
    }
    void release_scratch(std::unique_ptr<scratch_set> s) const {
        std::lock_guard<std::mutex> lk(scratch_mutex_);
        if (scratch_pool_.size() == scratch_pool_.capacity()) scratch_pool_.reserve(scratch_pool_.size() * 2 + 4);
        scratch_pool_.push_back(std::move(s));
    }

    void check_batch(std::size_t batch, const char* where) const {
        if (batch == 0) throw argument_error(std::string("lamina: ") + where + ": batch size must be positive");
        if (batch > max_batch_)
            throw argument_error(std::string("lamina: ") + where + ": batch size " + std::to_string(batch) +
                                 " is too large: its buffers would not fit in the address space (at most " +
                                 std::to_string(max_batch_) + " samples for this network)");
    }
    /// Runs the allocations of a plan, turning an allocation failure into a lamina error that
    /// names the batch.
    template <class F>
    static void allocating(std::size_t batch, F&& f) {
        try {
            f();
        } catch (const std::bad_alloc&) {
            throw allocation_error("lamina: out of memory planning buffers for batch size " + std::to_string(batch) +
                                   " (see summary(batch) for the planned bytes)");
        }
    }

    context_type ctx_;
    graph::description graph_;
    node_type node_;
    std::vector<leaf_handle<Backend, T>*> handles_;
    std::vector<std::unique_ptr<copy_leaf<Backend, T>>> copies_;
    std::vector<placed_tensor> tensors_;
    std::vector<tensor_binding<T>> bindings_;
    typename Backend::template buffer<T> params_, grads_, state_, frozen_;
    std::vector<parameter_segment> segments_, state_segments_;
    std::uint64_t seed_ = 0;
    std::size_t max_batch_ = 0;
    std::size_t planned_ = 0, infer_planned_ = 0, current_batch_ = 0;
    const T* last_input_ = nullptr;
    const T* last_infer_input_ = nullptr;
    bool has_added_loss_ = false;
    bool share_memory_ = true;
    graph::memory_plan train_plan_, infer_plan_;
    typename Backend::template buffer<T> train_arena_, infer_arena_, workspace_;
    node_profiler* profiler_ = nullptr;
    mutable std::mutex scratch_mutex_;
    mutable std::vector<std::unique_ptr<scratch_set>> scratch_pool_;
};

}  // namespace lamina
// ---- end include/lamina/network/model.hpp ----

// ---- end include/lamina/network/sequential.hpp ----

// ---- begin include/lamina/network/composites.hpp ----
// lamina: composite nodes. Each is a descriptor like a layer (accepts, output shape, a node
// type), so composites nest in sequential<...> and in each other, and each is checked while
// compiling: a mismatch inside is one diagnostic naming the composite, the node and both
// shapes (composite_shape_mismatch, network/shape_check.hpp).
//
//   residual<Main, Shortcut = identity>   y = Main(x) + Shortcut(x)            (ResNet blocks)
//   branches<Merge, Paths...>             y = Merge(Path1(x), Path2(x), ...)   (Merge: concat or add)
//   repeat<N, Block>                      Block applied N times; one instantiated type
//   heads<Heads...>                       several outputs from one input; the last node of a network
//   shortcut_for<Cout, Stride, Option>    a residual's shortcut: identity, or option A or B
//
// Composites only wire: their children's leaves run in wiring order (main path, shortcut,
// join), backward in reverse, and the model plans every edge (network/memory_plan.hpp).



namespace lamina {

namespace detail {

/// The shape `Got` must equal `Want`; else the composite's diagnostic (and carry on with Want).
template <class Composite, class Node, class Got, class Want, bool = std::is_same_v<Got, Want>>
struct require_same_shape {
    using type = Want;
};
template <class Composite, class Node, class Got, class Want>
struct require_same_shape<Composite, Node, Got, Want, false> {
    using type = typename composite_shape_mismatch<Composite, Node, Got, Want>::type;
};

template <class Composite, class Node, class Got, class First, bool = same_spatial<Got, First>::value>
struct require_concatenable {
    using type = Got;
};
template <class Composite, class Node, class Got, class First>
struct require_concatenable<Composite, Node, Got, First, false> {
    using type = typename composite_shape_mismatch<Composite, Node, Got, First>::type;
};

template <class D, class In>
struct accepts_of : std::bool_constant<D::template accepts<In>> {};

}  // namespace detail

// ---- residual ---------------------------------------------------------------------------------

template <class Main, class Shortcut, class In, class Backend, class T>
class residual_node;

template <class Main, class Shortcut = identity>
struct residual {
    static constexpr bool is_composite = true;
    static std::string name() { return "residual<" + Main::name() + ", " + Shortcut::name() + ">"; }
    template <class In>
    static constexpr bool accepts = Main::template accepts<In> && Shortcut::template accepts<In>;
    template <class In>
    using expected_input = std::conditional_t<Main::template accepts<In>, typename Shortcut::template expected_input<In>,
                                              typename Main::template expected_input<In>>;
    template <class In>
    using output_for =
        typename detail::require_same_shape<residual, Shortcut, checked_output_t<Shortcut, In>,
                                            checked_output_t<Main, In>>::type;
    template <class In, class Backend, class T>
    using node = residual_node<Main, Shortcut, In, Backend, T>;
};

template <class Main, class Shortcut, class In, class Backend, class T>
class residual_node {
public:
    using desc = residual<Main, Shortcut>;
    using output_shape = typename desc::template output_for<In>;
    using main_type = node_t<Main, In, Backend, T>;
    using shortcut_type = node_t<Shortcut, In, Backend, T>;
    using join_type = leaf_node<add, shapes<output_shape, output_shape>, Backend, T>;
    static constexpr std::size_t outputs = 1;
    static constexpr std::size_t parameter_count = main_type::parameter_count + shortcut_type::parameter_count;
    static constexpr std::size_t state_count = main_type::state_count + shortcut_type::state_count;
    static constexpr std::size_t leaf_count = main_type::leaf_count + shortcut_type::leaf_count + 1;
    static constexpr double flops_per_sample =
        main_type::flops_per_sample + shortcut_type::flops_per_sample + join_type::flops_per_sample;

    template <class Handles>
    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, const node_path& p, Handles& h) {
        g.begin_composite(desc::name());
        graph::edge_id joined[2];
        main_.wire(g, in, &joined[0], p.child(0), h);
        shortcut_.wire(g, in, &joined[1], p.child(1), h);
        join_.wire(g, joined, out, p.child(2), h);
        g.end_composite();
    }
    main_type& main() noexcept { return main_; }
    shortcut_type& shortcut() noexcept { return shortcut_; }

private:
    main_type main_;
    shortcut_type shortcut_;
    join_type join_;
};

// ---- branches ---------------------------------------------------------------------------------

template <class Merge, class In, class Backend, class T, class... Paths>
class branches_node;

template <class Merge, class... Paths>
struct branches {
    static_assert(sizeof...(Paths) >= 2, "lamina::branches needs at least two paths");
    static_assert(std::is_same_v<Merge, concat> || std::is_same_v<Merge, add>,
                  "lamina::branches joins its paths with lamina::concat or lamina::add");
    static constexpr bool is_composite = true;
    static std::string name() {
        std::string s = "branches<" + Merge::name();
        ((s += ", " + Paths::name()), ...);
        return s + ">";
    }
    template <class In>
    static constexpr bool accepts = (Paths::template accepts<In> && ...);
    template <class In>
    using expected_input = In;

private:
    using first = std::tuple_element_t<0, std::tuple<Paths...>>;
    template <class In>
    using first_out = checked_output_t<first, In>;
    // every path's output checked against the first path's (the diagnostic names the path)
    template <class In, class P>
    using checked_path = typename std::conditional_t<
        std::is_same_v<Merge, add>, detail::require_same_shape<branches, P, checked_output_t<P, In>, first_out<In>>,
        detail::require_concatenable<branches, P, checked_output_t<P, In>, first_out<In>>>::type;  // only one instantiated

public:
    template <class In>
    using path_outputs = shapes<checked_path<In, Paths>...>;
    template <class In>
    using output_for = typename Merge::template output_shape<path_outputs<In>>;
    template <class In, class Backend, class T>
    using node = branches_node<Merge, In, Backend, T, Paths...>;
};

template <class Merge, class In, class Backend, class T, class... Paths>
class branches_node {
public:
    using desc = branches<Merge, Paths...>;
    using output_shape = typename desc::template output_for<In>;
    using paths_type = std::tuple<node_t<Paths, In, Backend, T>...>;
    using join_type = leaf_node<Merge, typename desc::template path_outputs<In>, Backend, T>;
    static constexpr std::size_t count = sizeof...(Paths);
    static constexpr std::size_t outputs = 1;
    static constexpr std::size_t parameter_count = (node_t<Paths, In, Backend, T>::parameter_count + ... + 0);
    static constexpr std::size_t state_count = (node_t<Paths, In, Backend, T>::state_count + ... + 0);
    static constexpr std::size_t leaf_count = (node_t<Paths, In, Backend, T>::leaf_count + ... + 1);
    static constexpr double flops_per_sample =
        (node_t<Paths, In, Backend, T>::flops_per_sample + ... + join_type::flops_per_sample);

    template <class Handles>
    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, const node_path& p, Handles& h) {
        g.begin_composite(desc::name());
        graph::edge_id joined[count];
        wire_paths(g, in, joined, p, h, std::make_index_sequence<count>{});
        join_.wire(g, joined, out, p.child(count), h);
        g.end_composite();
    }
    template <std::size_t I>
    auto& path() noexcept {
        return std::get<I>(paths_);
    }

private:
    template <class Handles, std::size_t... I>
    void wire_paths(graph::description& g, const graph::edge_id* in, graph::edge_id* joined, const node_path& p,
                    Handles& h, std::index_sequence<I...>) {
        (std::get<I>(paths_).wire(g, in, &joined[I], p.child(I), h), ...);
    }
    paths_type paths_;
    join_type join_;
};

// ---- repeat -----------------------------------------------------------------------------------

template <std::size_t N, class Block, class In, class Backend, class T>
class repeat_node;

template <std::size_t N, class Block>
struct repeat {
    static_assert(N >= 1, "lamina::repeat needs N >= 1");
    static constexpr bool is_composite = true;
    static std::string name() { return "repeat<" + std::to_string(N) + ", " + Block::name() + ">"; }
    template <class In>
    static constexpr bool accepts = Block::template accepts<In>;
    template <class In>
    using expected_input = typename Block::template expected_input<In>;
    /// The block must keep its input shape (so one instantiation serves every repetition).
    template <class In>
    using output_for = typename detail::require_same_shape<repeat, Block, checked_output_t<Block, In>, In>::type;
    template <class In, class Backend, class T>
    using node = repeat_node<N, Block, In, Backend, T>;
};

template <std::size_t N, class Block, class In, class Backend, class T>
class repeat_node {
public:
    using desc = repeat<N, Block>;
    using output_shape = typename desc::template output_for<In>;
    using block_type = node_t<Block, In, Backend, T>;
    static constexpr std::size_t outputs = 1;
    static constexpr std::size_t parameter_count = N * block_type::parameter_count;
    static constexpr std::size_t state_count = N * block_type::state_count;
    static constexpr std::size_t leaf_count = N * block_type::leaf_count;
    static constexpr double flops_per_sample = double(N) * block_type::flops_per_sample;

    template <class Handles>
    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, const node_path& p, Handles& h) {
        g.begin_composite(desc::name());
        graph::edge_id e = in[0];
        for (std::size_t i = 0; i < N; ++i) {
            graph::edge_id next;
            blocks_[i].wire(g, &e, &next, p.child(i), h);
            e = next;
        }
        out[0] = e;
        g.end_composite();
    }
    block_type& block(std::size_t i) noexcept { return blocks_[i]; }

private:
    std::array<block_type, N> blocks_;
};

// ---- shortcuts --------------------------------------------------------------------------------

/// shortcut_for<Cout, Stride, Option>: a residual block's shortcut, picked from its input
/// shape: identity when the block keeps it, else He et al.'s option A, subsample_pad
/// (shortcut_option::zero_pad, parameter-free) or option B, a strided 1x1 projection conv
/// and batch norm (shortcut_option::projection).
enum class shortcut_option { zero_pad, projection };


/// Folded: the projection's batch norm folded into its conv (network/fold_batch_norm.hpp).
template <std::size_t Cout, std::size_t Stride = 1, shortcut_option Option = shortcut_option::zero_pad,
          bool Folded = false>
struct shortcut_for {
    static constexpr bool is_composite = true;
    template <class In>
    static constexpr bool keeps = Stride == 1 && chw<In>::c == Cout;
    template <class In>
    using chosen = std::conditional_t<
        keeps<In>, identity,
        std::conditional_t<Option == shortcut_option::zero_pad, subsample_pad<Cout, Stride>,
                           std::conditional_t<Folded, sequential<conv2d<Cout, 1, Stride, 0, init::he_normal, true>>,
                                              sequential<conv2d<Cout, 1, Stride, 0, init::he_normal, false>, batch_norm>>>>;
    static std::string name() {
        return "shortcut_for<" + std::to_string(Cout) + ",s" + std::to_string(Stride) +
               (Option == shortcut_option::zero_pad ? ",A>" : ",B>");
    }
    template <class In>
    static constexpr bool accepts = In::rank == 3;
    template <class In>
    using expected_input = any_shape_of_rank<3>;
    template <class In>
    using output_for = checked_output_t<chosen<In>, In>;
    template <class In, class Backend, class T>
    using node = node_t<chosen<In>, In, Backend, T>;
};


// ---- heads ------------------------------------------------------------------------------------

template <class In, class Backend, class T, class... Heads>
class heads_node;

/// Several outputs from one input (a trunk feeding a decoder and a classifier): the last node
/// of a network; the model then has one output per head (predict_all, one loss per head).
template <class... Heads>
struct heads {
    static_assert(sizeof...(Heads) >= 2, "lamina::heads needs at least two heads");
    static constexpr bool is_composite = true;
    static std::string name() {
        std::string s = "heads<";
        std::size_t i = 0;
        ((s += (i++ ? ", " : "") + Heads::name()), ...);
        return s + ">";
    }
    template <class In>
    static constexpr bool accepts = (Heads::template accepts<In> && ...);
    template <class In>
    using expected_input = In;
    template <class In>
    using output_for = shapes<checked_output_t<Heads, In>...>;
    template <class In, class Backend, class T>
    using node = heads_node<In, Backend, T, Heads...>;
};

template <class In, class Backend, class T, class... Heads>
class heads_node {
public:
    using desc = heads<Heads...>;
    using output_shape = typename desc::template output_for<In>;
    static constexpr std::size_t outputs = sizeof...(Heads);
    static constexpr std::size_t parameter_count = (node_t<Heads, In, Backend, T>::parameter_count + ... + 0);
    static constexpr std::size_t state_count = (node_t<Heads, In, Backend, T>::state_count + ... + 0);
    static constexpr std::size_t leaf_count = (node_t<Heads, In, Backend, T>::leaf_count + ... + 0);
    static constexpr double flops_per_sample = (node_t<Heads, In, Backend, T>::flops_per_sample + ... + 0.0);

    template <class Handles>
    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, const node_path& p, Handles& h) {
        g.begin_composite(desc::name());
        wire_heads(g, in, out, p, h, std::make_index_sequence<outputs>{});
        g.end_composite();
    }
    template <std::size_t I>
    auto& head() noexcept {
        return std::get<I>(heads_);
    }

private:
    template <class Handles, std::size_t... I>
    void wire_heads(graph::description& g, const graph::edge_id* in, graph::edge_id* out, const node_path& p,
                    Handles& h, std::index_sequence<I...>) {
        (std::get<I>(heads_).wire(g, in, &out[I], p.child(I), h), ...);
    }
    std::tuple<node_t<Heads, In, Backend, T>...> heads_;
};

}  // namespace lamina
// ---- end include/lamina/network/composites.hpp ----

// ---- begin include/lamina/network/fold_batch_norm.hpp ----
// lamina: batch norm folded into the convolution before it, for inference.
//
//   using infer_net = lm::fold_batch_norm_t<resnet20>;       // conv2d + batch_norm -> conv2d with bias
//   infer_net::model<lm::host> fast{lm::seed{0}};
//   lm::fold_batch_norm(trained, fast);                      // w' = w s, b' = (b - mean) s + beta, s = gamma / sqrt(var + eps)
//
// In eval mode a batch norm is an affine map per channel, so it disappears into the
// preceding conv's weights and bias: one pass over the activations less per conv. The type
// transformation walks sequential, residual, branches, repeat, heads and shortcut_for; the
// values are copied leaf by leaf (every other tensor verbatim), so the folded network gives
// the same outputs up to rounding (the tests hold it to 1e-5).

#include <map>


namespace lamina {

template <class D>
struct fold_batch_norm_type {
    using type = D;  // leaves are unchanged
};
template <class D>
using fold_batch_norm_t = typename fold_batch_norm_type<D>::type;

namespace detail {

template <class L>
struct is_batch_norm : std::false_type {};
template <class M, class E, init::kind G>
struct is_batch_norm<batch_norm_t<M, E, G>> : std::true_type {};

template <class Conv>
struct with_bias {
    using type = Conv;
};
template <std::size_t F, std::size_t K, std::size_t S, std::size_t P, class I, bool B, std::size_t... Rest>
struct with_bias<conv2d<F, K, S, P, I, B, Rest...>> {
    using type = conv2d<F, K, S, P, I, true, Rest...>;
};
template <class L>
struct is_conv2d : std::false_type {};
template <std::size_t F, std::size_t K, std::size_t S, std::size_t P, class I, bool B, std::size_t... Rest>
struct is_conv2d<conv2d<F, K, S, P, I, B, Rest...>> : std::true_type {};

/// Folds a list: conv2d followed by batch_norm becomes one conv2d with bias.
template <class Done, class... Ls>
struct fold_list {
    using type = Done;
};
template <class... Done, class L, class... Ls>
struct fold_list<type_list<Done...>, L, Ls...> {
    using type = typename fold_list<type_list<Done..., fold_batch_norm_t<L>>, Ls...>::type;
};
template <class... Done, class C, class N, class... Ls>
struct fold_list<type_list<Done...>, C, N, Ls...> {
    static constexpr bool pair = is_conv2d<C>::value && is_batch_norm<N>::value;
    using type = typename std::conditional_t<
        pair, fold_list<type_list<Done..., typename with_bias<C>::type>, Ls...>,
        fold_list<type_list<Done..., fold_batch_norm_t<C>>, N, Ls...>>::type;
};

template <class List>
struct as_sequential;
template <class... Ls>
struct as_sequential<type_list<Ls...>> {
    using type = sequential<Ls...>;
};

}  // namespace detail

template <class... Ls>
struct fold_batch_norm_type<sequential<Ls...>> {
    using type = typename detail::as_sequential<typename detail::fold_list<type_list<>, Ls...>::type>::type;
};
template <class M, class S>
struct fold_batch_norm_type<residual<M, S>> {
    using type = residual<fold_batch_norm_t<M>, fold_batch_norm_t<S>>;
};
template <class Merge, class... P>
struct fold_batch_norm_type<branches<Merge, P...>> {
    using type = branches<Merge, fold_batch_norm_t<P>...>;
};
template <std::size_t N, class B>
struct fold_batch_norm_type<repeat<N, B>> {
    using type = repeat<N, fold_batch_norm_t<B>>;
};
template <class... H>
struct fold_batch_norm_type<heads<H...>> {
    using type = heads<fold_batch_norm_t<H>...>;
};
template <std::size_t C, std::size_t S, shortcut_option O, bool Folded>
struct fold_batch_norm_type<shortcut_for<C, S, O, Folded>> {
    using type = shortcut_for<C, S, O, true>;
};

/// Copies a trained model into its folded twin (Dst = fold_batch_norm_t<Src's network>).
/// Each conv2d followed by a batch_norm that reads only its output becomes the folded conv;
/// every other leaf's parameters and running state are copied as they are.
template <class Src, class Dst>
void fold_batch_norm(const Src& src, Dst& dst) {
    using T = typename Src::value_type;
    static_assert(std::is_same_v<typename Dst::network, fold_batch_norm_t<typename Src::network>>,
                  "lamina::fold_batch_norm: the destination must be a model of fold_batch_norm_t<source network>");
    const auto& sl = src.graph().leaves();
    const auto& dl = dst.graph().leaves();
    auto by_leaf = [](const std::vector<parameter_segment>& segs) {
        std::map<std::size_t, std::vector<parameter_segment>> m;
        for (const auto& s : segs) m[s.layer].push_back(s);
        return m;
    };
    const auto sp = by_leaf(src.parameter_segments()), ss = by_leaf(src.state_segments());
    const auto dp = by_leaf(dst.parameter_segments()), ds = by_leaf(dst.state_segments());
    const std::vector<T> src_p = src.get_parameters(), src_s = src.get_state();
    std::vector<T> dst_p(Dst::parameter_count), dst_s(Dst::state_count);
    auto segs_of = [](const auto& m, std::size_t leaf) {
        auto it = m.find(leaf);
        return it == m.end() ? std::vector<parameter_segment>{} : it->second;
    };
    auto copy_all = [&](const std::vector<parameter_segment>& from, const std::vector<T>& fv,
                        const std::vector<parameter_segment>& to, std::vector<T>& tv, const std::string& leaf) {
        if (from.size() != to.size())
            throw error("lamina: fold_batch_norm: leaf '" + leaf + "' has " + std::to_string(from.size()) +
                        " tensors in the source and " + std::to_string(to.size()) + " in the folded network");
        for (std::size_t k = 0; k < from.size(); ++k)
            for (std::size_t i = 0; i < from[k].count; ++i) tv[to[k].offset + i] = fv[from[k].offset + i];
    };
    std::size_t j = 0;
    for (std::size_t l = 0; l < sl.size(); ++l, ++j) {
        if (j >= dl.size()) throw error("lamina: fold_batch_norm: the folded network has fewer leaves than expected");
        const bool conv = sl[l].name.rfind("conv2d", 0) == 0;
        const bool bn_next = l + 1 < sl.size() && sl[l + 1].name.rfind("batch_norm", 0) == 0 &&
                             sl[l + 1].inputs.size() == 1 && sl[l + 1].inputs[0] == sl[l].output &&
                             src.graph().edges()[sl[l].output].consumers.size() == 1;
        if (conv && bn_next) {
            // conv: weight [K][C/g][R][S] (+ bias [K]); batch norm: gamma, beta; running mean, var
            const auto cw = segs_of(sp, l), bnp = segs_of(sp, l + 1), bns = segs_of(ss, l + 1), out = segs_of(dp, j);
            if (bnp.size() != 2 || bns.size() != 2 || out.size() != 2 || cw.empty())
                throw error("lamina: fold_batch_norm: unexpected tensors around leaf '" + sl[l].name + "'");
            const std::size_t K = bnp[0].count, per = cw[0].count / K;
            const double eps = src.leaves()[l + 1]->constant("eps");
            for (std::size_t k = 0; k < K; ++k) {
                const double gamma = src_p[bnp[0].offset + k], beta = src_p[bnp[1].offset + k];
                const double mean = src_s[bns[0].offset + k], var = src_s[bns[1].offset + k];
                const double s = gamma / std::sqrt(var + eps);
                for (std::size_t i = 0; i < per; ++i)
                    dst_p[out[0].offset + k * per + i] = static_cast<T>(double(src_p[cw[0].offset + k * per + i]) * s);
                const double b = cw.size() > 1 ? double(src_p[cw[1].offset + k]) : 0.0;
                dst_p[out[1].offset + k] = static_cast<T>((b - mean) * s + beta);
            }
            ++l;  // the batch norm is done
            continue;
        }
        if (sl[l].name != dl[j].name)
            throw error("lamina: fold_batch_norm: source leaf '" + sl[l].name + "' meets folded leaf '" + dl[j].name + "'");
        copy_all(segs_of(sp, l), src_p, segs_of(dp, j), dst_p, sl[l].name);
        copy_all(segs_of(ss, l), src_s, segs_of(ds, j), dst_s, sl[l].name);
    }
    if (j != dl.size()) throw error("lamina: fold_batch_norm: the folded network has more leaves than expected");
    dst.set_parameters(dst_p);
    dst.set_state(dst_s);
}

}  // namespace lamina
// ---- end include/lamina/network/fold_batch_norm.hpp ----


// ---- begin include/lamina/losses/softmax_cross_entropy.hpp ----
// lamina: softmax cross-entropy on logits, optionally with label smoothing. Targets are
// class indices (one value per sample). The loss is the batch mean; its gradient is written
// into the model's output-gradient buffer.



namespace lamina::loss {

struct softmax_cross_entropy {
    double label_smoothing = 0.0;

    static constexpr bool classification = true;
    static std::string name() { return "softmax_cross_entropy"; }
    static constexpr std::size_t target_size(std::size_t /*outputs*/) { return 1; }

    /// Mean loss over the batch; grad = d(mean loss)/d(logits). loss_rows: `rows` scratch.
    template <class Backend, class T>
    T operator()(const typename Backend::context& c, const T* logits, const T* targets, T* grad, T* loss_rows,
                 std::size_t rows, std::size_t cols) const {
        if (label_smoothing < 0.0 || label_smoothing >= 1.0)
            throw argument_error("lamina: label_smoothing must be in [0, 1), got " + std::to_string(label_smoothing));
        Backend::softmax_cross_entropy(c, logits, targets, grad, loss_rows, rows, cols, static_cast<T>(label_smoothing),
                                       T(1) / static_cast<T>(rows));
        return Backend::sum(c, static_cast<const T*>(loss_rows), rows) / static_cast<T>(rows);
    }
};

}  // namespace lamina::loss
// ---- end include/lamina/losses/softmax_cross_entropy.hpp ----

// ---- begin include/lamina/losses/mse.hpp ----
// lamina: mean squared error, averaged over outputs and the batch (PyTorch's MSELoss).


namespace lamina::loss {

struct mse {
    static constexpr bool classification = false;
    static std::string name() { return "mse"; }
    static constexpr std::size_t target_size(std::size_t outputs) { return outputs; }

    template <class Backend, class T>
    T operator()(const typename Backend::context& c, const T* pred, const T* targets, T* grad, T* loss_rows,
                 std::size_t rows, std::size_t cols) const {
        Backend::mse(c, pred, targets, grad, loss_rows, rows, cols, T(1) / static_cast<T>(rows));
        return Backend::sum(c, static_cast<const T*>(loss_rows), rows) / static_cast<T>(rows);
    }
};

}  // namespace lamina::loss
// ---- end include/lamina/losses/mse.hpp ----

// ---- begin include/lamina/losses/mae.hpp ----
// lamina: mean absolute error, averaged over outputs and the batch (PyTorch's L1Loss);
// DeepGalaxy's autoencoder loss.


namespace lamina::loss {

struct mae {
    static constexpr bool classification = false;
    static std::string name() { return "mae"; }
    static constexpr std::size_t target_size(std::size_t outputs) { return outputs; }

    template <class Backend, class T>
    T operator()(const typename Backend::context& c, const T* pred, const T* targets, T* grad, T* loss_rows,
                 std::size_t rows, std::size_t cols) const {
        Backend::mae(c, pred, targets, grad, loss_rows, rows, cols, T(1) / static_cast<T>(rows));
        return Backend::sum(c, static_cast<const T*>(loss_rows), rows) / static_cast<T>(rows);
    }
};

}  // namespace lamina::loss
// ---- end include/lamina/losses/mae.hpp ----

// ---- begin include/lamina/losses/per_output.hpp ----
// lamina: one loss per output of a network with several heads, summed with weights.
//
//   lm::loss::per_output losses{lm::loss::weighted{1.0, lm::loss::mae{}},
//                               lm::loss::weighted{0.5, lm::loss::softmax_cross_entropy{}}};
//   lm::trainer fit{net, losses, opt};   // net: sequential<..., heads<decoder, classifier>>
//
// A sample's targets are the heads' targets side by side: [targets of output 0 | of output 1
// | ...], each of its loss's target_size (an image for a reconstruction, one class index for
// a classifier). The trainer reports the weighted sum (plus any loss a node adds, such as a
// VAE's KL) and evaluates accuracy on the first classification head.


namespace lamina::loss {

template <class L>
struct weighted {
    double weight = 1.0;
    L loss{};
};
template <class L>
weighted(double, L) -> weighted<L>;

template <class... W>
struct per_output {
    static_assert(sizeof...(W) >= 1, "lamina::loss::per_output needs one loss per output");
    std::tuple<W...> parts;

    explicit per_output(W... w) : parts(std::move(w)...) {}
    static constexpr std::size_t count = sizeof...(W);
    static std::string name() {
        std::string s = "per_output<";
        std::size_t i = 0;
        ((s += (i++ ? ", " : "") + decltype(W::loss)::name()), ...);
        return s + ">";
    }
    /// Index of the first classification loss, or count when there is none.
    static constexpr std::size_t first_classifier = [] {
        constexpr bool c[] = {decltype(W::loss)::classification...};
        for (std::size_t i = 0; i < sizeof...(W); ++i)
            if (c[i]) return i;
        return sizeof...(W);
    }();
    static constexpr bool classification = first_classifier < count;
};
template <class... W>
per_output(W...) -> per_output<W...>;

template <class L>
struct is_per_output : std::false_type {};
template <class... W>
struct is_per_output<per_output<W...>> : std::true_type {};

}  // namespace lamina::loss
// ---- end include/lamina/losses/per_output.hpp ----

// ---- begin include/lamina/losses/binary_cross_entropy.hpp ----
// lamina: binary cross-entropy on logits (PyTorch's BCEWithLogitsLoss, reduction "mean"):
// per output, loss = -(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))) for a target t in
// [0, 1] of the output's size, averaged over outputs and the batch. Computed in PyTorch's
// numerically stable form (1 - t) x - log_sigmoid(x), log_sigmoid(x) = min(x, 0) -
// log1p(exp(-|x|)), so large |x| neither overflows nor loses the loss; NaN propagates to the
// loss and the gradient, and infinities give what PyTorch's form gives. The gradient is
// (sigmoid(x) - t) / (outputs * batch).
//
// Written once for every backend: one Backend::for_each_index over the rows (each writes its
// gradient row and its row loss), then Backend::sum over the row losses.



namespace lamina::loss {

namespace bce_detail {
/// log(sigmoid(x)) without overflow for either sign of x.
template <class T>
LAMINA_HOST_DEVICE T log_sigmoid(T x) {
    const T neg_abs = x < T(0) ? x : -x;  // -|x|; NaN stays NaN
    return (x < T(0) ? x : T(0)) - std::log1p(std::exp(neg_abs));
}
/// sigmoid(x) without overflow: exp of a non-positive argument on both branches (NaN takes the
/// second branch and stays NaN).
template <class T>
LAMINA_HOST_DEVICE T sigmoid(T x) {
    if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
    const T e = std::exp(x);
    return e / (T(1) + e);
}
}  // namespace bce_detail

struct binary_cross_entropy_with_logits {
    static constexpr bool classification = false;
    static std::string name() { return "binary_cross_entropy_with_logits"; }
    static constexpr std::size_t target_size(std::size_t outputs) { return outputs; }

    /// Mean loss over outputs and the batch; grad = d(mean loss)/d(logits). loss_rows: `rows`
    /// scratch, receives each row's mean over its outputs.
    template <class Backend, class T>
    T operator()(const typename Backend::context& c, const T* logits, const T* targets, T* grad, T* loss_rows,
                 std::size_t rows, std::size_t cols) const {
        const T grad_scale = T(1) / (static_cast<T>(cols) * static_cast<T>(rows));
        const double inv_cols = 1.0 / static_cast<double>(cols);
        Backend::for_each_index(
            c, rows,
            LAMINA_LAMBDA(std::size_t r) {
                double loss = 0;  // the row's sum, in double
                for (std::size_t k = 0; k < cols; ++k) {
                    const std::size_t i = r * cols + k;
                    const T x = logits[i], t = targets[i];
                    loss += static_cast<double>((T(1) - t) * x - bce_detail::log_sigmoid(x));
                    grad[i] = (bce_detail::sigmoid(x) - t) * grad_scale;
                }
                loss_rows[r] = static_cast<T>(loss * inv_cols);
            },
            30 * cols);
        return Backend::sum(c, static_cast<const T*>(loss_rows), rows) / static_cast<T>(rows);
    }
};

}  // namespace lamina::loss
// ---- end include/lamina/losses/binary_cross_entropy.hpp ----


// ---- begin include/lamina/optimizers/sgd.hpp ----
// lamina: stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay
// (PyTorch's torch.optim.SGD semantics, dampening 0). Weight decay skips parameter segments
// marked decay = false (biases), as large-batch recipes require; set_weight_decay_scale()
// scales it at run time (optimizers/weight_decay.hpp).


// ---- begin include/lamina/optimizers/weight_decay.hpp ----
// lamina: what every optimizer shares about weight decay: it applies only to parameter
// segments marked decay = true (not to biases and normalisation parameters), and it can be
// scaled at run time (the Collapsed Ensemble doubles it while a cycle collapses,
// train/collapsed_ensemble.hpp), through each optimizer state's set_weight_decay_scale().



namespace lamina::detail {

/// Throws argument_error unless `s` is a finite scale >= 0 (`who` names the optimizer).
inline void check_weight_decay_scale(double s, const char* who) {
    if (!(s >= 0) || !std::isfinite(s))
        throw argument_error(std::string("lamina: ") + who + ": weight decay scale must be finite and >= 0, got " +
                             std::to_string(s));
}

/// Throws argument_error naming the segment when one does not lie inside the n parameters
/// (checked without arithmetic that can wrap). Allocates nothing unless it throws.
inline void check_segments(const std::vector<parameter_segment>& segs, std::size_t n, const char* who) {
    for (const auto& s : segs)
        if (s.offset > n || s.count > n - s.offset)
            throw argument_error(std::string("lamina: ") + who + ": parameter segment '" + s.name + "' (offset " +
                                 std::to_string(s.offset) + ", " + std::to_string(s.count) +
                                 " values) lies outside the " + std::to_string(n) + " parameters");
}

/// Calls f(offset, count, decay) over the parameters: once over all n when the decay is 0
/// (one kernel), else once per segment with `wd` on decay = true segments and 0 on the others
/// (elements outside every segment are then left alone, as sgd and adam do).
template <class F>
void for_decay_ranges(const std::vector<parameter_segment>& segs, std::size_t n, double wd, F&& f) {
    if (wd == 0.0) {
        if (n) f(std::size_t(0), n, 0.0);
        return;
    }
    for (const auto& s : segs)
        if (s.count) f(s.offset, s.count, s.decay ? wd : 0.0);
}

}  // namespace lamina::detail
// ---- end include/lamina/optimizers/weight_decay.hpp ----


namespace lamina::optim {

struct sgd {
    double lr = 0.01;
    double momentum = 0.0;
    bool nesterov = false;
    double weight_decay = 0.0;

    sgd(double lr_, double momentum_ = 0.0, bool nesterov_ = false, double weight_decay_ = 0.0)
        : lr(lr_), momentum(momentum_), nesterov(nesterov_), weight_decay(weight_decay_) {
        detail::require(lr > 0, "sgd learning rate must be positive, got " + std::to_string(lr));
        detail::require(momentum >= 0 && momentum < 1, "sgd momentum must be in [0, 1), got " + std::to_string(momentum));
        detail::require(weight_decay >= 0, "sgd weight_decay must be >= 0");
        detail::require(!nesterov || momentum > 0, "sgd: Nesterov momentum needs momentum > 0");
    }
    static std::string name() { return "sgd"; }

    template <class Backend, class T>
    class state {
    public:
        state(const sgd& o, std::size_t n)
            : momentum_(o.momentum), weight_decay_(o.weight_decay), nesterov_(o.nesterov), n_(n) {
            velocity_.allocate(std::max<std::size_t>(n, 1));
        }
        /// One update of all parameters with learning rate `lr` (from the schedule).
        void step(const typename Backend::context& c, T* w, const T* g, const std::vector<parameter_segment>& segs,
                  double lr) {
            sgd_step<T> s;
            s.lr = static_cast<T>(lr);
            s.momentum = static_cast<T>(momentum_);
            s.nesterov = nesterov_;
            const double wd = weight_decay_ * scale_;
            if (wd == 0.0) {
                s.weight_decay = T(0);
                Backend::sgd_update(c, w, g, velocity_.data(), n_, s);
            } else {
                for (const auto& seg : segs) {
                    s.weight_decay = seg.decay ? static_cast<T>(wd) : T(0);
                    Backend::sgd_update(c, w + seg.offset, g + seg.offset, velocity_.data() + seg.offset, seg.count, s);
                }
            }
            ++steps_;
        }
        /// Multiplies the weight decay from the next step on (1: as constructed).
        void set_weight_decay_scale(double s) {
            detail::check_weight_decay_scale(s, "sgd");
            scale_ = s;
        }
        double weight_decay_scale() const noexcept { return scale_; }
        std::uint64_t steps() const noexcept { return steps_; }
        /// Names and sizes of what save() returns, without copying (checkpoint validation).
        std::vector<std::pair<std::string, std::size_t>> layout() const { return {{"velocity", n_}}; }
        /// Named state tensors for checkpoints (host copies).
        std::vector<std::pair<std::string, std::vector<T>>> save(const typename Backend::context& c) const {
            std::vector<T> v(n_);
            if (n_) Backend::download(c, v.data(), velocity_.data(), n_);
            return {{"velocity", std::move(v)}};
        }
        void load(const typename Backend::context& c, const std::vector<std::pair<std::string, std::vector<T>>>& st,
                  std::uint64_t steps) {
            if (st.size() != 1 || st[0].first != "velocity" || st[0].second.size() != n_)
                throw checkpoint_error("lamina: sgd state in checkpoint does not match (expected one 'velocity' of " +
                                       std::to_string(n_) + " values)");
            if (n_) Backend::upload(c, velocity_.data(), st[0].second.data(), n_);
            steps_ = steps;
        }

    private:
        double momentum_, weight_decay_;
        double scale_ = 1.0;
        bool nesterov_;
        std::size_t n_;
        typename Backend::template buffer<T> velocity_;
        std::uint64_t steps_ = 0;
    };
};

}  // namespace lamina::optim
// ---- end include/lamina/optimizers/sgd.hpp ----

// ---- begin include/lamina/optimizers/adam.hpp ----
// lamina: Adam (Kingma & Ba) with L2 weight decay added to the gradient, and AdamW
// (Loshchilov & Hutter) with decoupled weight decay; PyTorch semantics for both.
// set_weight_decay_scale() scales the decay at run time (optimizers/weight_decay.hpp).



namespace lamina::optim {

struct adam {
    double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
    bool decoupled = false;

    explicit adam(double lr_ = 1e-3, double beta1_ = 0.9, double beta2_ = 0.999, double eps_ = 1e-8,
                  double weight_decay_ = 0.0)
        : lr(lr_), beta1(beta1_), beta2(beta2_), eps(eps_), weight_decay(weight_decay_) {
        detail::require(lr > 0, "adam learning rate must be positive, got " + std::to_string(lr));
        detail::require(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "adam betas must be in [0, 1)");
        detail::require(eps > 0, "adam eps must be positive");
        detail::require(weight_decay >= 0, "adam weight_decay must be >= 0");
    }
    static std::string name() { return "adam"; }

    template <class Backend, class T>
    class state {
    public:
        state(const adam& o, std::size_t n)
            : beta1_(o.beta1), beta2_(o.beta2), eps_(o.eps), weight_decay_(o.weight_decay), decoupled_(o.decoupled), n_(n) {
            m_.allocate(std::max<std::size_t>(n, 1));
            v_.allocate(std::max<std::size_t>(n, 1));
        }
        void step(const typename Backend::context& c, T* w, const T* g, const std::vector<parameter_segment>& segs,
                  double lr) {
            ++steps_;
            adam_step<T> s;
            s.lr = static_cast<T>(lr);
            s.beta1 = static_cast<T>(beta1_);
            s.beta2 = static_cast<T>(beta2_);
            s.eps = static_cast<T>(eps_);
            s.decoupled = decoupled_;
            s.bias_correction1 = static_cast<T>(1.0 - std::pow(beta1_, static_cast<double>(steps_)));
            s.bias_correction2 = static_cast<T>(1.0 - std::pow(beta2_, static_cast<double>(steps_)));
            const double wd = weight_decay_ * scale_;
            if (wd == 0.0) {
                s.weight_decay = T(0);
                Backend::adam_update(c, w, g, m_.data(), v_.data(), n_, s);
            } else {
                for (const auto& seg : segs) {
                    s.weight_decay = seg.decay ? static_cast<T>(wd) : T(0);
                    Backend::adam_update(c, w + seg.offset, g + seg.offset, m_.data() + seg.offset, v_.data() + seg.offset,
                                         seg.count, s);
                }
            }
        }
        /// Multiplies the weight decay from the next step on (1: as constructed).
        void set_weight_decay_scale(double s) {
            detail::check_weight_decay_scale(s, "adam");
            scale_ = s;
        }
        double weight_decay_scale() const noexcept { return scale_; }
        std::uint64_t steps() const noexcept { return steps_; }
        /// Names and sizes of what save() returns, without copying (checkpoint validation).
        std::vector<std::pair<std::string, std::size_t>> layout() const { return {{"m", n_}, {"v", n_}}; }
        std::vector<std::pair<std::string, std::vector<T>>> save(const typename Backend::context& c) const {
            std::vector<T> m(n_), v(n_);
            if (n_) {
                Backend::download(c, m.data(), m_.data(), n_);
                Backend::download(c, v.data(), v_.data(), n_);
            }
            return {{"m", std::move(m)}, {"v", std::move(v)}};
        }
        void load(const typename Backend::context& c, const std::vector<std::pair<std::string, std::vector<T>>>& st,
                  std::uint64_t steps) {
            if (st.size() != 2 || st[0].first != "m" || st[1].first != "v" || st[0].second.size() != n_ ||
                st[1].second.size() != n_)
                throw checkpoint_error("lamina: adam state in checkpoint does not match (expected 'm' and 'v' of " +
                                       std::to_string(n_) + " values)");
            if (n_) {
                Backend::upload(c, m_.data(), st[0].second.data(), n_);
                Backend::upload(c, v_.data(), st[1].second.data(), n_);
            }
            steps_ = steps;
        }

    private:
        double beta1_, beta2_, eps_, weight_decay_;
        double scale_ = 1.0;
        bool decoupled_;
        std::size_t n_;
        typename Backend::template buffer<T> m_, v_;
        std::uint64_t steps_ = 0;
    };
};

/// AdamW: Adam with decoupled weight decay (default 0.01, as in PyTorch).
struct adamw : adam {
    explicit adamw(double lr_ = 1e-3, double weight_decay_ = 0.01, double beta1_ = 0.9, double beta2_ = 0.999,
                   double eps_ = 1e-8)
        : adam(lr_, beta1_, beta2_, eps_, weight_decay_) {
        decoupled = true;
    }
    static std::string name() { return "adamw"; }
};

}  // namespace lamina::optim
// ---- end include/lamina/optimizers/adam.hpp ----

// ---- begin include/lamina/optimizers/rmsprop.hpp ----
// lamina: RMSProp (Hinton's lecture 6e), torch.optim.RMSprop semantics:
//
//   g' = g + wd w                      (L2 decay; skipped on decay = false segments)
//   s = alpha s + (1 - alpha) g'^2
//   centered: a = alpha a + (1 - alpha) g';  d = sqrt(s - a^2) + eps   else d = sqrt(s) + eps
//   momentum > 0: b = momentum b + g' / d;  w -= lr b                  else w -= lr g' / d
//
// eps is added after the square root, as in PyTorch (not inside it, as in Keras). The centered
// variance s - a^2 is clamped at 0 against rounding (PyTorch takes the root of a tiny negative
// value, which gives NaN). The element-wise update is written once for every backend.



namespace lamina::optim {

namespace rmsprop_detail {
/// One RMSProp update of elements [off, off + n) (state pointers not used may be null).
template <class Backend, class T>
void update(const typename Backend::context& c, T* w, const T* g, T* sq, T* buf, T* avg, std::size_t off,
            std::size_t n, T lr, T alpha, T eps, T wd, T momentum) {
    Backend::for_each_index(c, n, LAMINA_LAMBDA(std::size_t k) {
        const std::size_t i = off + k;
        const T grad = g[i] + wd * w[i];
        sq[i] = alpha * sq[i] + (T(1) - alpha) * grad * grad;
        T d;
        if (avg) {
            avg[i] = alpha * avg[i] + (T(1) - alpha) * grad;
            const T var = sq[i] - avg[i] * avg[i];
            d = std::sqrt(var > T(0) ? var : T(0)) + eps;
        } else {
            d = std::sqrt(sq[i]) + eps;
        }
        if (buf) {
            buf[i] = momentum * buf[i] + grad / d;
            w[i] -= lr * buf[i];
        } else {
            w[i] -= lr * grad / d;
        }
    });
}
}  // namespace rmsprop_detail

struct rmsprop {
    double lr = 0.01, alpha = 0.99, eps = 1e-8, weight_decay = 0.0, momentum = 0.0;
    bool centered = false;

    /// PyTorch's argument order and defaults.
    explicit rmsprop(double lr_ = 0.01, double alpha_ = 0.99, double eps_ = 1e-8, double weight_decay_ = 0.0,
                     double momentum_ = 0.0, bool centered_ = false)
        : lr(lr_), alpha(alpha_), eps(eps_), weight_decay(weight_decay_), momentum(momentum_), centered(centered_) {
        lamina::detail::require(lr > 0, "rmsprop learning rate must be positive, got " + std::to_string(lr));
        lamina::detail::require(alpha >= 0 && alpha < 1, "rmsprop alpha must be in [0, 1), got " + std::to_string(alpha));
        lamina::detail::require(eps > 0, "rmsprop eps must be positive, got " + std::to_string(eps));
        lamina::detail::require(weight_decay >= 0, "rmsprop weight_decay must be >= 0, got " + std::to_string(weight_decay));
        lamina::detail::require(momentum >= 0 && momentum < 1,
                                "rmsprop momentum must be in [0, 1), got " + std::to_string(momentum));
    }
    static std::string name() { return "rmsprop"; }

    template <class Backend, class T>
    class state {
    public:
        state(const rmsprop& o, std::size_t n)
            : alpha_(o.alpha), eps_(o.eps), weight_decay_(o.weight_decay), momentum_(o.momentum),
              centered_(o.centered), n_(n) {
            const std::size_t size = std::max<std::size_t>(n, 1);
            square_avg_.allocate(size);
            if (momentum_ > 0) momentum_buffer_.allocate(size);
            if (centered_) grad_avg_.allocate(size);
        }
        void step(const typename Backend::context& c, T* w, const T* g, const std::vector<parameter_segment>& segs,
                  double lr) {
            const double wd = weight_decay_ * scale_;
            if (wd != 0.0) detail::check_segments(segs, n_, "rmsprop");
            T* buf = momentum_ > 0 ? momentum_buffer_.data() : nullptr;
            T* avg = centered_ ? grad_avg_.data() : nullptr;
            detail::for_decay_ranges(segs, n_, wd, [&](std::size_t off, std::size_t count, double d) {
                rmsprop_detail::update<Backend, T>(c, w, g, square_avg_.data(), buf, avg, off, count,
                                                   static_cast<T>(lr), static_cast<T>(alpha_), static_cast<T>(eps_),
                                                   static_cast<T>(d), static_cast<T>(momentum_));
            });
            ++steps_;
        }
        /// Multiplies the weight decay from the next step on (1: as constructed).
        void set_weight_decay_scale(double s) {
            detail::check_weight_decay_scale(s, "rmsprop");
            scale_ = s;
        }
        double weight_decay_scale() const noexcept { return scale_; }
        std::uint64_t steps() const noexcept { return steps_; }
        /// "square_avg", then "momentum_buffer" (momentum > 0) and "grad_avg" (centered).
        std::vector<std::pair<std::string, std::size_t>> layout() const {
            std::vector<std::pair<std::string, std::size_t>> l{{"square_avg", n_}};
            if (momentum_ > 0) l.emplace_back("momentum_buffer", n_);
            if (centered_) l.emplace_back("grad_avg", n_);
            return l;
        }
        std::vector<std::pair<std::string, std::vector<T>>> save(const typename Backend::context& c) const {
            std::vector<std::pair<std::string, std::vector<T>>> out;
            for (const auto& [name, size] : layout()) {
                std::vector<T> h(size);
                if (size) Backend::download(c, h.data(), buffer(name).data(), size);
                out.emplace_back(name, std::move(h));
            }
            return out;
        }
        void load(const typename Backend::context& c, const std::vector<std::pair<std::string, std::vector<T>>>& st,
                  std::uint64_t steps) {
            const auto l = layout();
            bool ok = st.size() == l.size();
            for (std::size_t k = 0; ok && k < l.size(); ++k) ok = st[k].first == l[k].first && st[k].second.size() == n_;
            if (!ok) {
                std::string want;
                for (const auto& e : l) want += (want.empty() ? "'" : ", '") + e.first + "'";
                throw checkpoint_error("lamina: rmsprop state in checkpoint does not match (expected " + want + " of " +
                                       std::to_string(n_) + " values each)");
            }
            for (const auto& [name, values] : st)
                if (n_) Backend::upload(c, buffer(name).data(), values.data(), n_);
            steps_ = steps;
        }

    private:
        const typename Backend::template buffer<T>& buffer(const std::string& name) const {
            return name == "square_avg" ? square_avg_ : name == "momentum_buffer" ? momentum_buffer_ : grad_avg_;
        }
        typename Backend::template buffer<T>& buffer(const std::string& name) {
            return name == "square_avg" ? square_avg_ : name == "momentum_buffer" ? momentum_buffer_ : grad_avg_;
        }

        double alpha_, eps_, weight_decay_, momentum_;
        bool centered_;
        double scale_ = 1.0;
        std::size_t n_;
        typename Backend::template buffer<T> square_avg_, momentum_buffer_, grad_avg_;
        std::uint64_t steps_ = 0;
    };
};

}  // namespace lamina::optim
// ---- end include/lamina/optimizers/rmsprop.hpp ----

// ---- begin include/lamina/optimizers/adadelta.hpp ----
// lamina: Adadelta (Zeiler 2012), torch.optim.Adadelta semantics:
//
//   g' = g + wd w                                  (L2 decay; skipped on decay = false segments)
//   s = rho s + (1 - rho) g'^2
//   delta = sqrt(a + eps) / sqrt(s + eps) * g'
//   a = rho a + (1 - rho) delta^2
//   w -= lr delta                                  (lr 1 is Zeiler's method; PyTorch's default)
//
// The element-wise update is written once for every backend.



namespace lamina::optim {

namespace adadelta_detail {
/// One Adadelta update of elements [off, off + n).
template <class Backend, class T>
void update(const typename Backend::context& c, T* w, const T* g, T* sq, T* acc, std::size_t off, std::size_t n, T lr,
            T rho, T eps, T wd) {
    Backend::for_each_index(c, n, LAMINA_LAMBDA(std::size_t k) {
        const std::size_t i = off + k;
        const T grad = g[i] + wd * w[i];
        sq[i] = rho * sq[i] + (T(1) - rho) * grad * grad;
        const T delta = std::sqrt(acc[i] + eps) / std::sqrt(sq[i] + eps) * grad;
        acc[i] = rho * acc[i] + (T(1) - rho) * delta * delta;
        w[i] -= lr * delta;
    });
}
}  // namespace adadelta_detail

struct adadelta {
    double lr = 1.0, rho = 0.9, eps = 1e-6, weight_decay = 0.0;

    /// PyTorch's argument order and defaults.
    explicit adadelta(double lr_ = 1.0, double rho_ = 0.9, double eps_ = 1e-6, double weight_decay_ = 0.0)
        : lr(lr_), rho(rho_), eps(eps_), weight_decay(weight_decay_) {
        lamina::detail::require(lr > 0, "adadelta learning rate must be positive, got " + std::to_string(lr));
        lamina::detail::require(rho >= 0 && rho < 1, "adadelta rho must be in [0, 1), got " + std::to_string(rho));
        lamina::detail::require(eps > 0, "adadelta eps must be positive, got " + std::to_string(eps));
        lamina::detail::require(weight_decay >= 0,
                                "adadelta weight_decay must be >= 0, got " + std::to_string(weight_decay));
    }
    static std::string name() { return "adadelta"; }

    template <class Backend, class T>
    class state {
    public:
        state(const adadelta& o, std::size_t n) : rho_(o.rho), eps_(o.eps), weight_decay_(o.weight_decay), n_(n) {
            square_avg_.allocate(std::max<std::size_t>(n, 1));
            acc_delta_.allocate(std::max<std::size_t>(n, 1));
        }
        void step(const typename Backend::context& c, T* w, const T* g, const std::vector<parameter_segment>& segs,
                  double lr) {
            const double wd = weight_decay_ * scale_;
            if (wd != 0.0) detail::check_segments(segs, n_, "adadelta");
            detail::for_decay_ranges(segs, n_, wd, [&](std::size_t off, std::size_t count, double d) {
                adadelta_detail::update<Backend, T>(c, w, g, square_avg_.data(), acc_delta_.data(), off, count,
                                                    static_cast<T>(lr), static_cast<T>(rho_), static_cast<T>(eps_),
                                                    static_cast<T>(d));
            });
            ++steps_;
        }
        /// Multiplies the weight decay from the next step on (1: as constructed).
        void set_weight_decay_scale(double s) {
            detail::check_weight_decay_scale(s, "adadelta");
            scale_ = s;
        }
        double weight_decay_scale() const noexcept { return scale_; }
        std::uint64_t steps() const noexcept { return steps_; }
        std::vector<std::pair<std::string, std::size_t>> layout() const {
            return {{"square_avg", n_}, {"acc_delta", n_}};
        }
        std::vector<std::pair<std::string, std::vector<T>>> save(const typename Backend::context& c) const {
            std::vector<T> s(n_), a(n_);
            if (n_) {
                Backend::download(c, s.data(), square_avg_.data(), n_);
                Backend::download(c, a.data(), acc_delta_.data(), n_);
            }
            return {{"square_avg", std::move(s)}, {"acc_delta", std::move(a)}};
        }
        void load(const typename Backend::context& c, const std::vector<std::pair<std::string, std::vector<T>>>& st,
                  std::uint64_t steps) {
            if (st.size() != 2 || st[0].first != "square_avg" || st[1].first != "acc_delta" ||
                st[0].second.size() != n_ || st[1].second.size() != n_)
                throw checkpoint_error(
                    "lamina: adadelta state in checkpoint does not match (expected 'square_avg' and 'acc_delta' of " +
                    std::to_string(n_) + " values)");
            if (n_) {
                Backend::upload(c, square_avg_.data(), st[0].second.data(), n_);
                Backend::upload(c, acc_delta_.data(), st[1].second.data(), n_);
            }
            steps_ = steps;
        }

    private:
        double rho_, eps_, weight_decay_;
        double scale_ = 1.0;
        std::size_t n_;
        typename Backend::template buffer<T> square_avg_, acc_delta_;
        std::uint64_t steps_ = 0;
    };
};

}  // namespace lamina::optim
// ---- end include/lamina/optimizers/adadelta.hpp ----

// ---- begin include/lamina/optimizers/lars.hpp ----
// lamina: LARS, layer-wise adaptive rate scaling (You, Gitman & Ginsburg 2017, "Large Batch
// Training of Convolutional Networks"), in the form PyTorch implementations use (timm's Lars,
// NVIDIA apex's LARC): per parameter tensor (segment) w with gradient g,
//
//   trust = eta ||w|| / (||g|| + wd ||w|| + eps)       (1 when ||w|| or ||g|| is 0)
//   u = trust (g + wd w);   v = momentum v + u;   w -= lr v
//
// The norms are per tensor (one weight or bias of one layer), computed on the device
// (optimizers/segment_norms.hpp). Tensors marked decay = false (biases, normalisation
// parameters) skip both the trust ratio and the weight decay, u = g, as is common; unlike
// timm, the ratio also applies when wd is 0. The rate is not folded into v (PyTorch's
// momentum form), so v carries over a changing schedule as torch.optim.SGD's does.


// ---- begin include/lamina/optimizers/segment_norms.hpp ----
// lamina: per-tensor L2 norms on any backend, for the layer-wise trust ratios of LARS and LAMB
// (optimizers/lars.hpp, optimizers/lamb.hpp). A tensor is a parameter segment
// (network/parameter_segment.hpp): one weight or bias of one layer, as in the papers and in
// PyTorch implementations, where the ratio is computed per parameter tensor.
//
// Each segment is tiled by fixed-size chunks that never straddle two segments. One kernel
// sums squares per chunk (in double, a serial loop per chunk, so the result does not depend
// on the thread count and a resumed run stays bit-identical), a second adds each segment's
// chunks; element-wise passes run over chunks x chunk_size indices and find an element's
// segment through its chunk. Everything stays on the device: no host round trip per tensor.
// The layout is built once (again only if the segments change): steps allocate nothing.



namespace lamina::optim {

template <class Backend>
class segment_chunks {
public:
    using context = typename Backend::context;
    static constexpr std::size_t chunk_size = 256;

    /// Lays out the chunks of `segs` over n parameters; free when they are the ones of the
    /// last call. Throws argument_error (naming `who` and the segment) for a segment outside n.
    void prepare(const context& c, const std::vector<parameter_segment>& segs, std::size_t n, const char* who) {
        if (n == n_ && segs.size() == seg_offset_.size()) {
            bool same = true;
            for (std::size_t s = 0; s < segs.size() && same; ++s)
                same = segs[s].offset == seg_offset_[s] && segs[s].count == seg_count_[s] &&
                       (segs[s].decay ? 1u : 0u) == seg_decay_[s];
            if (same && built_) return;
        }
        detail::check_segments(segs, n, who);
        std::vector<std::size_t> off, cnt, seg, first(segs.size()), nch(segs.size());
        seg_offset_.assign(segs.size(), 0);
        seg_count_.assign(segs.size(), 0);
        seg_decay_.assign(segs.size(), 0);
        for (std::size_t s = 0; s < segs.size(); ++s) {
            seg_offset_[s] = segs[s].offset;
            seg_count_[s] = segs[s].count;
            seg_decay_[s] = segs[s].decay ? 1u : 0u;
            first[s] = off.size();
            for (std::size_t o = 0; o < segs[s].count; o += chunk_size) {
                off.push_back(segs[s].offset + o);
                cnt.push_back(std::min(chunk_size, segs[s].count - o));
                seg.push_back(s);
            }
            nch[s] = off.size() - first[s];
        }
        chunks_ = off.size();
        segments_ = segs.size();
        n_ = n;
        put(c, offset_, off);
        put(c, count_, cnt);
        put(c, segment_, seg);
        put(c, first_, first);
        put(c, nchunks_, nch);
        put(c, decay_, seg_decay_);
        partial_a_.allocate(std::max<std::size_t>(chunks_, 1));
        partial_b_.allocate(std::max<std::size_t>(chunks_, 1));
        norm_a_.allocate(std::max<std::size_t>(segments_, 1));
        norm_b_.allocate(std::max<std::size_t>(segments_, 1));
        ratio_.allocate(std::max<std::size_t>(segments_, 1));
        built_ = true;
    }

    /// norm_a()[s] = ||a over segment s||, norm_b()[s] = ||b over segment s|| (device, double).
    template <class T>
    void norms(const context& c, const T* a, const T* b) {
        const std::size_t* off = offset_.data();
        const std::size_t* cnt = count_.data();
        double* pa = partial_a_.data();
        double* pb = partial_b_.data();
        Backend::for_each_index(
            c, chunks_,
            LAMINA_LAMBDA(std::size_t k) {
                double sa = 0, sb = 0;
                const std::size_t lo = off[k], hi = off[k] + cnt[k];
                for (std::size_t i = lo; i < hi; ++i) {
                    const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
                    sa += x * x;
                    sb += y * y;
                }
                pa[k] = sa;
                pb[k] = sb;
            },
            2 * chunk_size);
        const std::size_t* first = first_.data();
        const std::size_t* nch = nchunks_.data();
        double* na = norm_a_.data();
        double* nb = norm_b_.data();
        Backend::for_each_index(c, segments_, LAMINA_LAMBDA(std::size_t s) {
            double sa = 0, sb = 0;
            for (std::size_t k = first[s]; k < first[s] + nch[s]; ++k) {
                sa += pa[k];
                sb += pb[k];
            }
            na[s] = std::sqrt(sa);
            nb[s] = std::sqrt(sb);
        });
    }

    /// Calls f(element, segment) for every element of every segment (device-callable f).
    template <class F>
    void for_each_element(const context& c, F f) const {
        const std::size_t* off = offset_.data();
        const std::size_t* cnt = count_.data();
        const std::size_t* seg = segment_.data();
        constexpr std::size_t cs = chunk_size;
        Backend::for_each_index(c, chunks_ * cs, LAMINA_LAMBDA(std::size_t i) {
            const std::size_t k = i / cs, j = i - k * cs;
            if (j < cnt[k]) f(off[k] + j, seg[k]);
        });
    }

    std::size_t chunks() const noexcept { return chunks_; }
    std::size_t segments() const noexcept { return segments_; }
    const double* norm_a() const noexcept { return norm_a_.data(); }
    const double* norm_b() const noexcept { return norm_b_.data(); }
    /// Per-segment scratch the optimizer fills with its trust ratios (device).
    double* ratio() noexcept { return ratio_.data(); }
    const double* ratio() const noexcept { return ratio_.data(); }
    /// 1 where the segment takes weight decay and a trust ratio (device).
    const unsigned* decay() const noexcept { return decay_.data(); }

private:
    template <class U>
    static void put(const context& c, typename Backend::template buffer<U>& b, const std::vector<U>& h) {
        b.allocate(std::max<std::size_t>(h.size(), 1));
        if (!h.empty()) Backend::upload(c, b.data(), h.data(), h.size());
    }

    bool built_ = false;
    std::size_t n_ = 0, chunks_ = 0, segments_ = 0;
    std::vector<std::size_t> seg_offset_, seg_count_;  // the segments the layout was built for
    std::vector<unsigned> seg_decay_;
    typename Backend::template buffer<std::size_t> offset_, count_, segment_, first_, nchunks_;
    typename Backend::template buffer<unsigned> decay_;
    typename Backend::template buffer<double> partial_a_, partial_b_, norm_a_, norm_b_, ratio_;
};

}  // namespace lamina::optim
// ---- end include/lamina/optimizers/segment_norms.hpp ----


namespace lamina::optim {

struct lars {
    double lr = 0.1;
    double momentum = 0.9;
    double weight_decay = 0.0;
    double trust_coefficient = 0.001;  // eta
    double eps = 1e-8;

    explicit lars(double lr_, double momentum_ = 0.9, double weight_decay_ = 0.0, double trust_coefficient_ = 0.001,
                  double eps_ = 1e-8)
        : lr(lr_), momentum(momentum_), weight_decay(weight_decay_), trust_coefficient(trust_coefficient_), eps(eps_) {
        lamina::detail::require(lr > 0, "lars learning rate must be positive, got " + std::to_string(lr));
        lamina::detail::require(momentum >= 0 && momentum < 1,
                                "lars momentum must be in [0, 1), got " + std::to_string(momentum));
        lamina::detail::require(weight_decay >= 0, "lars weight_decay must be >= 0, got " + std::to_string(weight_decay));
        lamina::detail::require(trust_coefficient > 0,
                                "lars trust_coefficient must be positive, got " + std::to_string(trust_coefficient));
        lamina::detail::require(eps >= 0, "lars eps must be >= 0, got " + std::to_string(eps));
    }
    static std::string name() { return "lars"; }

    template <class Backend, class T>
    class state {
    public:
        state(const lars& o, std::size_t n)
            : momentum_(o.momentum), weight_decay_(o.weight_decay), eta_(o.trust_coefficient), eps_(o.eps), n_(n) {
            velocity_.allocate(std::max<std::size_t>(n, 1));
        }
        void step(const typename Backend::context& c, T* w, const T* g, const std::vector<parameter_segment>& segs,
                  double lr) {
            chunks_.prepare(c, segs, n_, "lars");
            chunks_.norms(c, static_cast<const T*>(w), g);
            const double wd = weight_decay_ * scale_, eta = eta_, eps = eps_;
            const double* wn = chunks_.norm_a();
            const double* gn = chunks_.norm_b();
            const unsigned* dec = chunks_.decay();
            double* ratio = chunks_.ratio();
            Backend::for_each_index(c, chunks_.segments(), LAMINA_LAMBDA(std::size_t s) {
                double r = 1.0;
                if (dec[s] && wn[s] > 0 && gn[s] > 0) r = eta * wn[s] / (gn[s] + wd * wn[s] + eps);
                ratio[s] = r;
            });
            const T tlr = static_cast<T>(lr), mom = static_cast<T>(momentum_), twd = static_cast<T>(wd);
            const double* rat = ratio;
            T* v = velocity_.data();
            chunks_.for_each_element(c, LAMINA_LAMBDA(std::size_t i, std::size_t s) {
                const T d = dec[s] ? twd : T(0);
                const T u = static_cast<T>(rat[s]) * (g[i] + d * w[i]);
                v[i] = mom * v[i] + u;
                w[i] -= tlr * v[i];
            });
            ++steps_;
        }
        /// The trust ratio of every segment in the last step (host copy; empty before it).
        std::vector<double> trust_ratios(const typename Backend::context& c) const {
            std::vector<double> r(chunks_.segments());
            if (!r.empty()) Backend::download(c, r.data(), chunks_.ratio(), r.size());
            return r;
        }
        /// Multiplies the weight decay from the next step on (1: as constructed).
        void set_weight_decay_scale(double s) {
            detail::check_weight_decay_scale(s, "lars");
            scale_ = s;
        }
        double weight_decay_scale() const noexcept { return scale_; }
        std::uint64_t steps() const noexcept { return steps_; }
        std::vector<std::pair<std::string, std::size_t>> layout() const { return {{"velocity", n_}}; }
        std::vector<std::pair<std::string, std::vector<T>>> save(const typename Backend::context& c) const {
            std::vector<T> v(n_);
            if (n_) Backend::download(c, v.data(), velocity_.data(), n_);
            return {{"velocity", std::move(v)}};
        }
        void load(const typename Backend::context& c, const std::vector<std::pair<std::string, std::vector<T>>>& st,
                  std::uint64_t steps) {
            if (st.size() != 1 || st[0].first != "velocity" || st[0].second.size() != n_)
                throw checkpoint_error("lamina: lars state in checkpoint does not match (expected one 'velocity' of " +
                                       std::to_string(n_) + " values)");
            if (n_) Backend::upload(c, velocity_.data(), st[0].second.data(), n_);
            steps_ = steps;
        }

    private:
        double momentum_, weight_decay_, eta_, eps_;
        double scale_ = 1.0;
        std::size_t n_;
        typename Backend::template buffer<T> velocity_;
        segment_chunks<Backend> chunks_;
        std::uint64_t steps_ = 0;
    };
};

}  // namespace lamina::optim
// ---- end include/lamina/optimizers/lars.hpp ----

// ---- begin include/lamina/optimizers/lamb.hpp ----
// lamina: LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in
// 76 minutes", Algorithm 2): Adam's bias-corrected moments, decoupled weight decay inside the
// update, and a per-tensor trust ratio:
//
//   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
//   u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + wd w
//   w -= lr (||w|| / ||u||) u                  (ratio 1 when ||w|| or ||u|| is 0)
//
// phi is the identity (no clipping of ||w||) and gradients are not clipped (timm's Lamb clips
// them by global norm by default; clip before the step if wanted). The norms are per tensor
// (one weight or bias of one layer, optimizers/segment_norms.hpp), ||w|| before the update.
// Tensors marked decay = false (biases, normalisation parameters) skip the weight decay and the
// trust ratio (w -= lr u), as timm does for parameters without decay.



namespace lamina::optim {

struct lamb {
    double lr = 1e-3, weight_decay = 0.01, beta1 = 0.9, beta2 = 0.999, eps = 1e-6;

    explicit lamb(double lr_ = 1e-3, double weight_decay_ = 0.01, double beta1_ = 0.9, double beta2_ = 0.999,
                  double eps_ = 1e-6)
        : lr(lr_), weight_decay(weight_decay_), beta1(beta1_), beta2(beta2_), eps(eps_) {
        lamina::detail::require(lr > 0, "lamb learning rate must be positive, got " + std::to_string(lr));
        lamina::detail::require(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1,
                                "lamb betas must be in [0, 1), got " + std::to_string(beta1) + ", " +
                                    std::to_string(beta2));
        lamina::detail::require(eps > 0, "lamb eps must be positive, got " + std::to_string(eps));
        lamina::detail::require(weight_decay >= 0, "lamb weight_decay must be >= 0, got " + std::to_string(weight_decay));
    }
    static std::string name() { return "lamb"; }

    template <class Backend, class T>
    class state {
    public:
        state(const lamb& o, std::size_t n)
            : beta1_(o.beta1), beta2_(o.beta2), eps_(o.eps), weight_decay_(o.weight_decay), n_(n) {
            m_.allocate(std::max<std::size_t>(n, 1));
            v_.allocate(std::max<std::size_t>(n, 1));
            u_.allocate(std::max<std::size_t>(n, 1));
        }
        void step(const typename Backend::context& c, T* w, const T* g, const std::vector<parameter_segment>& segs,
                  double lr) {
            chunks_.prepare(c, segs, n_, "lamb");
            ++steps_;
            const T b1 = static_cast<T>(beta1_), b2 = static_cast<T>(beta2_), eps = static_cast<T>(eps_),
                    twd = static_cast<T>(weight_decay_ * scale_),
                    bc1 = static_cast<T>(1.0 - std::pow(beta1_, static_cast<double>(steps_))),
                    bc2 = static_cast<T>(1.0 - std::pow(beta2_, static_cast<double>(steps_)));
            const unsigned* dec = chunks_.decay();
            T* m = m_.data();
            T* v = v_.data();
            T* u = u_.data();
            // 1. moments and the update direction u (before the weights change)
            chunks_.for_each_element(c, LAMINA_LAMBDA(std::size_t i, std::size_t s) {
                m[i] = b1 * m[i] + (T(1) - b1) * g[i];
                v[i] = b2 * v[i] + (T(1) - b2) * g[i] * g[i];
                const T r = (m[i] / bc1) / (std::sqrt(v[i] / bc2) + eps);
                u[i] = dec[s] ? r + twd * w[i] : r;
            });
            // 2. per-tensor ||w|| and ||u||, 3. the trust ratios
            chunks_.norms(c, static_cast<const T*>(w), static_cast<const T*>(u));
            const double* wn = chunks_.norm_a();
            const double* un = chunks_.norm_b();
            double* ratio = chunks_.ratio();
            Backend::for_each_index(c, chunks_.segments(), LAMINA_LAMBDA(std::size_t s) {
                ratio[s] = dec[s] && wn[s] > 0 && un[s] > 0 ? wn[s] / un[s] : 1.0;
            });
            // 4. the update
            const T tlr = static_cast<T>(lr);
            const double* rat = ratio;
            chunks_.for_each_element(c, LAMINA_LAMBDA(std::size_t i, std::size_t s) {
                w[i] -= tlr * static_cast<T>(rat[s]) * u[i];
            });
        }
        /// The trust ratio of every segment in the last step (host copy; empty before it).
        std::vector<double> trust_ratios(const typename Backend::context& c) const {
            std::vector<double> r(chunks_.segments());
            if (!r.empty()) Backend::download(c, r.data(), chunks_.ratio(), r.size());
            return r;
        }
        /// Multiplies the weight decay from the next step on (1: as constructed).
        void set_weight_decay_scale(double s) {
            detail::check_weight_decay_scale(s, "lamb");
            scale_ = s;
        }
        double weight_decay_scale() const noexcept { return scale_; }
        std::uint64_t steps() const noexcept { return steps_; }
        std::vector<std::pair<std::string, std::size_t>> layout() const { return {{"m", n_}, {"v", n_}}; }
        std::vector<std::pair<std::string, std::vector<T>>> save(const typename Backend::context& c) const {
            std::vector<T> m(n_), v(n_);
            if (n_) {
                Backend::download(c, m.data(), m_.data(), n_);
                Backend::download(c, v.data(), v_.data(), n_);
            }
            return {{"m", std::move(m)}, {"v", std::move(v)}};
        }
        void load(const typename Backend::context& c, const std::vector<std::pair<std::string, std::vector<T>>>& st,
                  std::uint64_t steps) {
            if (st.size() != 2 || st[0].first != "m" || st[1].first != "v" || st[0].second.size() != n_ ||
                st[1].second.size() != n_)
                throw checkpoint_error("lamina: lamb state in checkpoint does not match (expected 'm' and 'v' of " +
                                       std::to_string(n_) + " values)");
            if (n_) {
                Backend::upload(c, m_.data(), st[0].second.data(), n_);
                Backend::upload(c, v_.data(), st[1].second.data(), n_);
            }
            steps_ = steps;
        }

    private:
        double beta1_, beta2_, eps_, weight_decay_;
        double scale_ = 1.0;
        std::size_t n_;
        typename Backend::template buffer<T> m_, v_, u_;  // u_: this step's update direction (scratch)
        segment_chunks<Backend> chunks_;
        std::uint64_t steps_ = 0;
    };
};

}  // namespace lamina::optim
// ---- end include/lamina/optimizers/lamb.hpp ----


// ---- begin include/lamina/schedules/schedules.hpp ----
// lamina: learning-rate schedules. A schedule maps the optimizer's base rate and the
// training clock to the rate of this step. Durations are in epochs (fractional epochs are
// fine: the clock is step / steps_per_epoch), as the papers' recipes state them.

#include <functional>


namespace lamina::schedule {

/// Where training stands: the global step (0-based, the step about to run) and the number
/// of steps per epoch.
struct clock {
    std::uint64_t step = 0;
    std::uint64_t steps_per_epoch = 1;
    double epoch() const { return static_cast<double>(step) / static_cast<double>(steps_per_epoch ? steps_per_epoch : 1); }
};

/// lr = base.
struct constant {
    double operator()(double base, const clock&) const { return base; }
};

/// Linear warm-up from `start_lr` to base over `epochs`, then base:
/// lr = (t * base + (W - t) * start) / W for t < W (Goyal et al.; Codreanu et al.).
struct linear_warmup {
    double epochs = 5;
    double start_lr = 0;
    double operator()(double base, const clock& c) const {
        double t = c.epoch();
        return t < epochs ? (t * base + (epochs - t) * start_lr) / epochs : base;
    }
};

/// lr = base * gamma^floor(epoch / every).
struct step_decay {
    double every = 30;
    double gamma = 0.1;
    double operator()(double base, const clock& c) const {
        detail::require(every > 0, "step_decay: 'every' must be positive");
        return base * std::pow(gamma, std::floor(c.epoch() / every));
    }
};

/// Cosine annealing from base to min_lr over `epochs`, then min_lr.
struct cosine {
    double epochs = 10;
    double min_lr = 0;
    double operator()(double base, const clock& c) const {
        detail::require(epochs > 0, "cosine: 'epochs' must be positive");
        double t = std::min(c.epoch() / epochs, 1.0);
        return min_lr + (base - min_lr) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * t));
    }
};

/// Polynomial decay: lr = (base - end_lr) * (1 - epoch/epochs)^power + end_lr, then end_lr.
struct polynomial {
    double epochs = 90;
    double power = 2;
    double end_lr = 0;
    double operator()(double base, const clock& c) const {
        detail::require(epochs > 0, "polynomial: 'epochs' must be positive");
        double t = std::min(c.epoch() / epochs, 1.0);
        return (base - end_lr) * std::pow(1.0 - t, power) + end_lr;
    }
};

/// Linear warm-up, then `After` evaluated on the clock shifted by the warm-up (so a cosine
/// or polynomial decay starts where the warm-up ends).
template <class After>
struct warmup_then {
    linear_warmup warmup;
    After after;
    double operator()(double base, const clock& c) const {
        if (c.epoch() < warmup.epochs) return warmup(base, c);
        clock shifted = c;
        auto warm_steps = static_cast<std::uint64_t>(std::ceil(warmup.epochs * static_cast<double>(c.steps_per_epoch)));  // first step past the warm-up
        shifted.step = c.step >= warm_steps ? c.step - warm_steps : 0;
        return after(base, shifted);
    }
};
template <class After>
warmup_then(linear_warmup, After) -> warmup_then<After>;

/// The linear scaling rule (Goyal et al. 2017): the learning rate grows with the global
/// batch, lr = base_lr * global_batch / base_batch.
inline double linear_scaling(double base_lr, std::size_t base_batch, std::size_t global_batch) {
    detail::require(base_batch > 0, "linear_scaling: base batch must be positive");
    return base_lr * static_cast<double>(global_batch) / static_cast<double>(base_batch);
}

/// Type-erased schedule, for code that picks one at run time.
using any = std::function<double(double, const clock&)>;

}  // namespace lamina::schedule
// ---- end include/lamina/schedules/schedules.hpp ----

// ---- begin include/lamina/schedules/cyclic.hpp ----
// lamina: the cyclic polynomial schedule with re-warm-up of the Collapsed Ensemble (Codreanu et
// al. 2017, ResNet-50 at scale): training runs in cycles; each cycle warms up linearly from
// start_lr to the base rate, lr = (t * base + (W - t) * start) / W for t < W epochs into the
// cycle, then decays polynomially to end_lr at the cycle's end,
// lr = (base - end) * (1 - (t - W) / (L - W))^power + end. The next cycle warms up again.
// train/collapsed_ensemble.hpp keeps a snapshot where each cycle ends ("collapses").
//
//   lm::schedule::cyclic_polynomial s;   // fields by name: cycle_epochs, warmup_epochs, power, ...
//   s.first_cycle_epochs = 6; s.cycle_epochs = 3; s.warmup_epochs = 0.5; s.cycles = 4;
//
// Cycle boundaries are in epochs (fractional allowed) and are met by the first step whose
// clock reaches them; a step short of a boundary by at most 1e-9 of a cycle counts as past it,
// so the boundary of e.g. 3 cycles of 0.1 epochs is not lost to rounding.



namespace lamina::schedule {

struct cyclic_polynomial {
    double cycle_epochs = 10;       // L: length of every cycle (after the first)
    double warmup_epochs = 1;       // W: linear re-warm-up at the start of every cycle
    double power = 2;               // of the decay (Codreanu et al.: 2)
    double start_lr = 0;            // where each warm-up starts
    double end_lr = 0;              // where each decay ends
    std::size_t cycles = 0;         // how many; 0: no limit. After the last one lr = end_lr
    double first_cycle_epochs = 0;  // length of the first cycle; 0: cycle_epochs

    /// Where an epoch falls: its cycle (0-based; `cycles` once past the last), the epochs since
    /// that cycle began, and the cycle's length.
    struct position {
        std::size_t cycle = 0;
        double into = 0;
        double length = 0;
        bool finished = false;  // past the last cycle
    };

    /// Throws argument_error naming the field that cannot describe a schedule.
    void validate() const {
        if (!(cycle_epochs > 0) || !std::isfinite(cycle_epochs))
            throw argument_error("lamina: cyclic_polynomial: cycle_epochs must be positive, got " +
                                 std::to_string(cycle_epochs));
        if (!(first_cycle_epochs >= 0) || !std::isfinite(first_cycle_epochs))
            throw argument_error("lamina: cyclic_polynomial: first_cycle_epochs must be >= 0 (0: cycle_epochs), got " +
                                 std::to_string(first_cycle_epochs));
        if (!(warmup_epochs >= 0) || !(warmup_epochs < cycle_epochs) || !(warmup_epochs < first_length()))
            throw argument_error("lamina: cyclic_polynomial: warmup_epochs (" + std::to_string(warmup_epochs) +
                                 ") must be >= 0 and shorter than every cycle (" + std::to_string(first_length()) +
                                 " and " + std::to_string(cycle_epochs) + " epochs)");
        if (!(power > 0) || !std::isfinite(power))
            throw argument_error("lamina: cyclic_polynomial: power must be positive, got " + std::to_string(power));
    }

    double first_length() const noexcept { return first_cycle_epochs > 0 ? first_cycle_epochs : cycle_epochs; }
    /// The epoch at which cycle k begins (cycle `cycles` begins where the last one ends).
    double cycle_begin(std::size_t k) const noexcept {
        return k == 0 ? 0.0 : first_length() + static_cast<double>(k - 1) * cycle_epochs;
    }
    /// The epochs all cycles take (infinity without a limit).
    double total_epochs() const noexcept { return cycles ? cycle_begin(cycles) : HUGE_VAL; }

    position at(double epoch) const {
        validate();
        position p;
        const double first = first_length(), tol = 1e-9 * std::min(first, cycle_epochs);
        double k = 0;
        if (epoch >= first - tol) k = 1 + std::floor((epoch - first + tol) / cycle_epochs);
        if (cycles && k >= static_cast<double>(cycles)) {
            p.cycle = cycles;
            p.finished = true;
            p.into = epoch - total_epochs();
            p.length = cycle_epochs;
            return p;
        }
        p.cycle = static_cast<std::size_t>(k);
        p.length = p.cycle == 0 ? first : cycle_epochs;
        p.into = std::max(0.0, epoch - cycle_begin(p.cycle));
        if (p.into > p.length) p.into = p.length;
        return p;
    }
    position at(const clock& c) const { return at(c.epoch()); }

    /// The rate of the step at clock c for base rate `base`.
    double rate(double base, const position& p) const {
        if (p.finished) return end_lr;
        if (p.into < warmup_epochs) return (p.into * base + (warmup_epochs - p.into) * start_lr) / warmup_epochs;
        const double x = std::min(1.0, (p.into - warmup_epochs) / (p.length - warmup_epochs));
        return (base - end_lr) * std::pow(1.0 - x, power) + end_lr;
    }
    double operator()(double base, const clock& c) const { return rate(base, at(c)); }
};

}  // namespace lamina::schedule
// ---- end include/lamina/schedules/cyclic.hpp ----


// ---- begin include/lamina/data/dataset.hpp ----
// lamina: in-memory datasets. `dataset` owns samples and targets in host memory;
// `dataset_view` is a non-owning view of anyone's memory (a simulation's own arrays), and
// is what trainers and evaluation read. Samples are stored row-major, one row per sample.



namespace lamina {

/// A non-owning view of n samples of `sample_size` values and their `target_size` targets.
/// For classification, target_size is 1 and the target is the class index (as T).
template <class T = float>
struct dataset_view {
    const T* inputs = nullptr;
    const T* targets = nullptr;
    std::size_t count = 0;
    std::size_t sample_size = 0;
    std::size_t target_size = 0;

    std::size_t size() const noexcept { return count; }
    const T* sample(std::size_t i) const noexcept { return inputs + i * sample_size; }
    const T* target(std::size_t i) const noexcept { return targets + i * target_size; }

    /// Samples [begin, end) as a view (no copy).
    dataset_view slice(std::size_t begin, std::size_t end) const {
        if (begin > end || end > count)
            throw argument_error("lamina: dataset slice [" + std::to_string(begin) + ", " + std::to_string(end) +
                                 ") is outside the " + std::to_string(count) + " samples");
        return {inputs + begin * sample_size, targets + begin * target_size, end - begin, sample_size, target_size};
    }
    /// The first `first_count` samples and the rest, as views.
    std::pair<dataset_view, dataset_view> split(std::size_t first_count) const {
        return {slice(0, first_count), slice(first_count, count)};
    }
};

/// Owning dataset in host memory.
template <class T = float>
class dataset {
public:
    dataset() = default;
    dataset(std::size_t count, std::size_t sample_size, std::size_t target_size)
        : inputs_(count * sample_size), targets_(count * target_size), count_(count), sample_size_(sample_size),
          target_size_(target_size) {}
    /// Takes ownership of filled vectors; sizes are checked.
    dataset(std::vector<T> inputs, std::vector<T> targets, std::size_t sample_size, std::size_t target_size)
        : inputs_(std::move(inputs)), targets_(std::move(targets)), sample_size_(sample_size), target_size_(target_size) {
        if (sample_size_ == 0 || inputs_.size() % sample_size_ != 0)
            throw shape_error("lamina: dataset inputs hold " + std::to_string(inputs_.size()) +
                              " values, not a multiple of the sample size " + std::to_string(sample_size_));
        count_ = inputs_.size() / sample_size_;
        if (targets_.size() != count_ * target_size_)
            throw shape_error("lamina: dataset has " + std::to_string(count_) + " samples but " +
                              std::to_string(targets_.size()) + " target values (expected " +
                              std::to_string(count_ * target_size_) + ")");
    }

    std::size_t size() const noexcept { return count_; }
    std::size_t sample_size() const noexcept { return sample_size_; }
    std::size_t target_size() const noexcept { return target_size_; }
    T* sample(std::size_t i) noexcept { return inputs_.data() + i * sample_size_; }
    const T* sample(std::size_t i) const noexcept { return inputs_.data() + i * sample_size_; }
    T* target(std::size_t i) noexcept { return targets_.data() + i * target_size_; }
    const T* target(std::size_t i) const noexcept { return targets_.data() + i * target_size_; }
    std::vector<T>& inputs() noexcept { return inputs_; }
    std::vector<T>& targets() noexcept { return targets_; }
    const std::vector<T>& inputs() const noexcept { return inputs_; }
    const std::vector<T>& targets() const noexcept { return targets_; }

    dataset_view<T> view() const noexcept {
        return {inputs_.data(), targets_.data(), count_, sample_size_, target_size_};
    }
    operator dataset_view<T>() const noexcept { return view(); }  // NOLINT: intended implicit view
    dataset_view<T> slice(std::size_t begin, std::size_t end) const { return view().slice(begin, end); }
    std::pair<dataset_view<T>, dataset_view<T>> split(std::size_t first_count) const { return view().split(first_count); }

private:
    std::vector<T> inputs_, targets_;
    std::size_t count_ = 0, sample_size_ = 0, target_size_ = 0;
};

}  // namespace lamina
// ---- end include/lamina/data/dataset.hpp ----

// ---- begin include/lamina/data/gzip_file.hpp ----
// lamina: read a whole file into memory, transparently gunzipping gzip files.
//
// `read_file_bytes(path)` returns the file's bytes; when the file starts with the gzip magic
// bytes 1f 8b (whatever its extension), it returns the decompressed bytes instead
// (concatenated gzip members are decompressed one after the other, as `gunzip` does).
//
// zlib is opt-in: define LAMINA_WITH_ZLIB and link zlib (`-lz`). The CMake target
// lamina::lamina does both when it finds zlib, so CMake users need nothing. Without it,
// plain files are read as usual and a gzip file throws io_error saying how to enable zlib.
// (Opt-in rather than detected with __has_include, so that including lamina where zlib.h
// happens to be installed never adds an undeclared link dependency.)
//
// Errors: io_error when the file cannot be opened or read; format_error when a gzip file is
// truncated or corrupt. Every message names the file.

#include <cerrno>


#if defined(LAMINA_WITH_ZLIB) && !defined(LAMINA_NO_ZLIB)
#include <zlib.h>
#define LAMINA_HAS_ZLIB 1
#else
#define LAMINA_HAS_ZLIB 0
#endif

namespace lamina {
namespace data {

/// True when this build can decompress gzip files (LAMINA_WITH_ZLIB is defined).
constexpr bool zlib_available() noexcept { return LAMINA_HAS_ZLIB != 0; }

/// True when `bytes` starts with the gzip magic bytes 1f 8b.
inline bool is_gzip(const unsigned char* bytes, std::size_t size) noexcept {
    return size >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}
inline bool is_gzip(const std::vector<unsigned char>& bytes) noexcept { return is_gzip(bytes.data(), bytes.size()); }

/// The file's bytes exactly as stored (no decompression). Throws io_error naming the file and
/// the system's reason when it cannot be opened or read.
inline std::vector<unsigned char> read_raw_file(const std::string& path) {
    errno = 0;
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        const int err = errno;
        throw io_error("lamina: cannot open '" + path + "': " + (err ? std::strerror(err) : "unknown error"));
    }
    std::vector<unsigned char> bytes;
    unsigned char chunk[1 << 16];
    for (;;) {
        const std::size_t n = std::fread(chunk, 1, sizeof chunk, f);
        bytes.insert(bytes.end(), chunk, chunk + n);
        if (n < sizeof chunk) break;
    }
    const bool failed = std::ferror(f) != 0;
    const int err = errno;
    std::fclose(f);
    if (failed)
        throw io_error("lamina: cannot read '" + path + "': " + (err ? std::strerror(err) : "read error"));
    return bytes;
}

/// Decompresses gzip data (one or more concatenated members; trailing zero padding is
/// ignored). `name` is used in error messages. Throws format_error when the data is
/// truncated or corrupt (bad header, bad deflate data, CRC or length mismatch), io_error
/// when lamina was built without zlib.
inline std::vector<unsigned char> gunzip(const std::vector<unsigned char>& gz, const std::string& name) {
#if LAMINA_HAS_ZLIB
    if (!is_gzip(gz))
        throw format_error("lamina: '" + name + "' is not gzip data (does not start with the gzip magic bytes 1f 8b)");
    std::vector<unsigned char> out;
    // ISIZE (the last 4 bytes, little-endian) is the uncompressed size modulo 2^32: a good hint
    // for a sound file, garbage for a truncated one, so it is bounded by deflate's maximum
    // ratio (1032:1) and 1 GiB; the reserved space is only filled as data is decompressed.
    if (gz.size() >= 18) {
        const std::size_t n = gz.size();
        const std::uint32_t isize = std::uint32_t(gz[n - 4]) | (std::uint32_t(gz[n - 3]) << 8) |
                                    (std::uint32_t(gz[n - 2]) << 16) | (std::uint32_t(gz[n - 1]) << 24);
        const std::size_t ratio_bound = n > std::numeric_limits<std::size_t>::max() / 1032
                                            ? std::numeric_limits<std::size_t>::max() : n * 1032;
        out.reserve(std::min({std::size_t(isize), ratio_bound, std::size_t(1) << 30}));
    }

    z_stream zs;
    std::memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK)  // 15-bit window, gzip wrapper only
        throw io_error("lamina: cannot decompress '" + name + "': zlib initialisation failed");
    struct guard {
        z_stream* s;
        ~guard() { inflateEnd(s); }
    } g{&zs};

    std::size_t pos = 0;  // input consumed so far
    const std::size_t chunk = std::size_t(1) << 16;
    for (;;) {
        // One gzip member.
        int ret = Z_OK;
        for (;;) {
            const std::size_t in_left = gz.size() - pos;
            zs.next_in = const_cast<Bytef*>(gz.data() + pos);
            zs.avail_in = static_cast<uInt>(std::min<std::size_t>(in_left, 1u << 30));
            const std::size_t old_size = out.size();
            // Fill the reserved space in steps of at most 16 MiB (resize zero-fills).
            const std::size_t want = std::max(chunk, std::min(out.capacity() - old_size, std::size_t(1) << 24));
            out.resize(old_size + want);
            zs.next_out = out.data() + old_size;
            zs.avail_out = static_cast<uInt>(std::min<std::size_t>(want, 1u << 30));
            const uInt avail_in_before = zs.avail_in;
            const uInt avail_out_before = zs.avail_out;
            ret = inflate(&zs, Z_NO_FLUSH);
            pos += avail_in_before - zs.avail_in;
            out.resize(old_size + (avail_out_before - zs.avail_out));
            if (ret == Z_STREAM_END) break;
            if (ret == Z_DATA_ERROR || ret == Z_NEED_DICT)
                throw format_error("lamina: '" + name + "' is a corrupt gzip file (zlib: " +
                                   (zs.msg ? zs.msg : "invalid compressed data") + ", after " +
                                   std::to_string(pos) + " of " + std::to_string(gz.size()) +
                                   " compressed bytes)");
            if (ret == Z_MEM_ERROR)
                throw io_error("lamina: out of memory while decompressing '" + name + "'");
            const bool progressed = zs.avail_in != avail_in_before || zs.avail_out != avail_out_before;
            if (pos == gz.size() && (ret == Z_BUF_ERROR || !progressed || zs.avail_out != 0))
                throw format_error("lamina: '" + name + "' is a truncated gzip file: the compressed data ends after " +
                                   std::to_string(gz.size()) + " bytes, before the end of the gzip stream (" +
                                   std::to_string(out.size()) + " bytes decompressed so far)");
            if (ret != Z_OK && ret != Z_BUF_ERROR)
                throw format_error("lamina: cannot decompress '" + name + "' (zlib error " + std::to_string(ret) + ")");
        }
        // Another member follows? Trailing zero padding (tape blocks) is ignored, like gunzip.
        std::size_t next = pos;
        while (next < gz.size() && gz[next] == 0) ++next;
        if (next == gz.size()) break;
        if (next != pos || !is_gzip(gz.data() + pos, gz.size() - pos))
            throw format_error("lamina: '" + name + "' has " + std::to_string(gz.size() - pos) +
                               " bytes of trailing garbage after the gzip stream (at compressed offset " +
                               std::to_string(pos) + ")");
        if (inflateReset(&zs) != Z_OK)
            throw io_error("lamina: cannot decompress '" + name + "': zlib reset failed");
    }
    out.shrink_to_fit();
    return out;
#else
    (void)gz;
    throw io_error("lamina: cannot read '" + name +
                   "': it is gzip-compressed but lamina was built without zlib (define "
                   "LAMINA_WITH_ZLIB and link zlib, e.g. -DLAMINA_WITH_ZLIB -lz; Debian: zlib1g-dev), or gunzip the file first");
#endif
}

/// The file's contents, gunzipped when it is a gzip file (detected by the magic bytes 1f 8b,
/// not by the extension). Throws io_error (cannot open/read; gzip without zlib) or
/// format_error (truncated or corrupt gzip), naming the file.
inline std::vector<unsigned char> read_file_bytes(const std::string& path) {
    std::vector<unsigned char> bytes = read_raw_file(path);
    if (is_gzip(bytes)) return gunzip(bytes, path);
    return bytes;
}

}  // namespace data
}  // namespace lamina
// ---- end include/lamina/data/gzip_file.hpp ----

// ---- begin include/lamina/data/idx.hpp ----
// lamina: the IDX file format (LeCun's MNIST format) and MNIST loading.
//
// An IDX file is: two zero bytes, a type code, the number of dimensions n, then n big-endian
// uint32 dimension sizes, then the elements in row-major order, big-endian. Files may be
// gzip-compressed (detected by their magic bytes; see gzip_file.hpp, which needs zlib).
//
//   idx_array a = lamina::data::read_idx("t10k-labels-idx1-ubyte.gz");   // any IDX file
//   lamina::dataset<float> test = lamina::data::read_mnist_dir(dir);        // t10k, scaled to [0,1]
//   auto split = lamina::data::mnist_train_test(dir);                      // the agreed split
//
// Errors: io_error when a file cannot be found, opened or read; format_error when its
// contents are malformed (wrong magic number, unsupported type, truncated header or data,
// image/label count mismatch, label out of range). Every message names the file and what
// is wrong (the field, what was expected and what was found).

#include <filesystem>
#include <system_error>


namespace lamina {
namespace data {

/// IDX element type codes (the third byte of the magic number).
enum class idx_type : unsigned char {
    u8 = 0x08,   ///< unsigned byte
    i8 = 0x09,   ///< signed byte
    i16 = 0x0B,  ///< short (2 bytes, big-endian)
    i32 = 0x0C,  ///< int (4 bytes, big-endian)
    f32 = 0x0D,  ///< float (4 bytes, big-endian IEEE 754)
    f64 = 0x0E,  ///< double (8 bytes, big-endian IEEE 754)
};

/// Size in bytes of one element of `t` (0 for an unknown code).
constexpr std::size_t idx_element_size(idx_type t) noexcept {
    switch (t) {
        case idx_type::u8:
        case idx_type::i8: return 1;
        case idx_type::i16: return 2;
        case idx_type::i32:
        case idx_type::f32: return 4;
        case idx_type::f64: return 8;
    }
    return 0;
}

/// Name of an IDX type code, e.g. "0x08 (unsigned byte)"; unknown codes are named "unknown".
inline std::string idx_type_name(unsigned code) {
    static const char hex[] = "0123456789ABCDEF";
    std::string s = "0x";
    s += hex[(code >> 4) & 0xF];
    s += hex[code & 0xF];
    switch (code) {
        case 0x08: return s + " (unsigned byte)";
        case 0x09: return s + " (signed byte)";
        case 0x0B: return s + " (int16)";
        case 0x0C: return s + " (int32)";
        case 0x0D: return s + " (float32)";
        case 0x0E: return s + " (float64)";
        default: return s + " (unknown)";
    }
}

/// The contents of one IDX file.
///
/// `data` holds the element bytes exactly as stored in the file: row-major, big-endian for
/// multi-byte types (for ubyte files it is simply the values). Use `value(i)` or `values<T>()`
/// for decoded numbers: every IDX type converts to double exactly.
struct idx_array {
    idx_type type = idx_type::u8;
    std::vector<std::size_t> dims;   ///< dimension sizes, outermost first
    std::vector<unsigned char> data; ///< size() * idx_element_size(type) bytes
    std::string source;              ///< the file it was read from (for messages)

    /// Number of elements (the product of the dimensions).
    std::size_t size() const noexcept {
        std::size_t n = 1;
        for (std::size_t d : dims) n *= d;
        return n;
    }
    std::size_t element_size() const noexcept { return idx_element_size(type); }

    /// Element i (row-major), decoded to double (exact for all IDX types). No bounds check.
    double value(std::size_t i) const noexcept {
        const unsigned char* p = data.data() + i * element_size();
        auto be = [p](int n) {
            std::uint64_t v = 0;
            for (int k = 0; k < n; ++k) v = (v << 8) | p[k];
            return v;
        };
        switch (type) {
            case idx_type::u8: return p[0];
            case idx_type::i8: return static_cast<std::int8_t>(p[0]);
            case idx_type::i16: return static_cast<std::int16_t>(static_cast<std::uint16_t>(be(2)));
            case idx_type::i32: return static_cast<std::int32_t>(static_cast<std::uint32_t>(be(4)));
            case idx_type::f32: {
                const std::uint32_t bits = static_cast<std::uint32_t>(be(4));
                float f;
                std::memcpy(&f, &bits, sizeof f);
                return f;
            }
            case idx_type::f64: {
                const std::uint64_t bits = be(8);
                double d;
                std::memcpy(&d, &bits, sizeof d);
                return d;
            }
        }
        return 0.0;
    }

    /// All elements decoded and converted to T, row-major.
    template <class T = double>
    std::vector<T> values() const {
        std::vector<T> out(size());
        if (type == idx_type::u8) {
            for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(data[i]);
        } else {
            for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(value(i));
        }
        return out;
    }
};

namespace detail {

inline std::string hex_bytes(const unsigned char* p, std::size_t n) {
    static const char hex[] = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        if (i) s += ' ';
        s += hex[p[i] >> 4];
        s += hex[p[i] & 0xF];
    }
    return s;
}

inline std::string dims_string(const std::vector<std::size_t>& dims) {
    std::string s;
    for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? "x" : "") + std::to_string(dims[i]);
    return s.empty() ? "(scalar)" : s;
}

inline std::string plural(std::size_t n, const char* word) {
    return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

/// a * b, or SIZE_MAX when that overflows (no size that large can be in memory).
inline std::size_t checked_product(std::size_t a, std::size_t b) noexcept {
    if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) return std::numeric_limits<std::size_t>::max();
    return a * b;
}

}  // namespace detail

/// Parses the `n` bytes at `bytes` of an IDX file (already decompressed). `name` names the
/// file in messages. Throws format_error: file shorter than the 4-byte magic number, wrong
/// magic number (the bytes found are shown), unsupported type code, 0 dimensions, truncated
/// header, dimensions whose byte size overflows, data size different from what the
/// dimensions need (truncated, or trailing bytes). Never reads outside [bytes, bytes + n).
inline idx_array parse_idx(const unsigned char* bytes, std::size_t n, const std::string& name) {
    const std::string where = "lamina: IDX file '" + name + "'";
    if (n < 4)
        throw format_error(where + ": truncated header: the file holds " + detail::plural(n, "byte") +
                           ", fewer than the 4-byte magic number" +
                           (n == 0 ? std::string() : " (found " + detail::hex_bytes(bytes, n) + ")"));
    if (bytes[0] != 0 || bytes[1] != 0)
        throw format_error(where + ": wrong magic number: expected 00 00 <type> <ndims>, found " +
                           detail::hex_bytes(bytes, 4) +
                           (is_gzip(bytes, n) ? " (gzip data: the file is compressed but was not decompressed)" : ""));
    const unsigned code = bytes[2];
    const idx_type type = static_cast<idx_type>(code);
    if (idx_element_size(type) == 0)
        throw format_error(where + ": unsupported IDX type code " + idx_type_name(code) + " in magic number " +
                           detail::hex_bytes(bytes, 4) +
                           "; supported: 0x08 ubyte, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64");
    const std::size_t ndims = bytes[3];  // at most 255: the header size below cannot overflow
    if (ndims == 0)
        throw format_error(where + ": the magic number " + detail::hex_bytes(bytes, 4) +
                           " declares 0 dimensions (expected at least 1)");
    const std::size_t header = 4 + 4 * ndims;
    if (n < header)
        throw format_error(where + ": truncated header: " + detail::plural(ndims, "dimension") + " need a " +
                           std::to_string(header) + "-byte header, but the file holds only " + detail::plural(n, "byte"));

    idx_array a;
    a.type = type;
    a.source = name;
    a.dims.resize(ndims);
    const std::size_t esize = idx_element_size(type);
    // Byte size of the data, esize * product of dims, checked against overflow at every factor.
    std::size_t expected = esize;
    bool overflow = false;
    for (std::size_t d = 0; d < ndims; ++d) {
        const unsigned char* p = bytes + 4 + 4 * d;
        a.dims[d] = (std::size_t(p[0]) << 24) | (std::size_t(p[1]) << 16) | (std::size_t(p[2]) << 8) | std::size_t(p[3]);
        if (a.dims[d] != 0 && expected > std::numeric_limits<std::size_t>::max() / a.dims[d]) overflow = true;
        else expected *= a.dims[d];
    }
    // A zero dimension makes the data empty whatever the other dimensions say.
    if (std::find(a.dims.begin(), a.dims.end(), std::size_t(0)) != a.dims.end()) {
        overflow = false;
        expected = 0;
    }
    const std::size_t found = n - header;
    if (overflow)
        throw format_error(where + ": dimensions " + detail::dims_string(a.dims) + " of " + idx_type_name(code) +
                           " are too large (their byte size overflows; the file holds " +
                           detail::plural(found, "data byte") + ")");
    if (found != expected) {
        const std::string what = "expected " + detail::plural(expected, "byte") + " of data (dimensions " +
                                 detail::dims_string(a.dims) + " of " + idx_type_name(code) + "), found " +
                                 std::to_string(found);
        if (found < expected) throw format_error(where + ": truncated data: " + what);
        throw format_error(where + ": " + detail::plural(found - expected, "unexpected trailing byte") +
                           " after the data: " + what);
    }
    a.data.assign(bytes + header, bytes + n);
    return a;
}

/// Parses the bytes of an IDX file (already decompressed); see the overload above.
inline idx_array parse_idx(const std::vector<unsigned char>& bytes, const std::string& name) {
    return parse_idx(bytes.data(), bytes.size(), name);
}

/// Reads an IDX file, gunzipping it first when it is gzip-compressed.
/// Throws io_error (missing/unreadable file, gzip without zlib) or format_error (see parse_idx;
/// corrupt gzip).
inline idx_array read_idx(const std::string& path) { return parse_idx(read_file_bytes(path), path); }

/// Number of MNIST classes (digits 0..9).
constexpr std::size_t mnist_classes = 10;

/// Builds a classification dataset from an IDX image array (ubyte, count x rows x cols) and
/// an IDX label array (ubyte, count), checking types, dimensions, counts and label range.
/// Pixels become p / 255 (in [0,1]) when `scale_to_unit`, else their raw value 0..255.
/// sample_size = rows * cols (784 for MNIST), target_size = 1 (the label as float).
inline dataset<float> mnist_from_idx(const idx_array& images, const idx_array& labels, bool scale_to_unit = true) {
    const std::string wi = "lamina: MNIST images file '" + images.source + "'";
    const std::string wl = "lamina: MNIST labels file '" + labels.source + "'";
    if (images.type != idx_type::u8)
        throw format_error(wi + ": wrong element type: expected " + idx_type_name(0x08) + ", found " +
                           idx_type_name(static_cast<unsigned>(images.type)));
    if (images.dims.size() != 3)
        throw format_error(wi + ": wrong number of dimensions: expected 3 (count x rows x columns), found " +
                           std::to_string(images.dims.size()) + " (" + detail::dims_string(images.dims) + ")");
    if (labels.type != idx_type::u8)
        throw format_error(wl + ": wrong element type: expected " + idx_type_name(0x08) + ", found " +
                           idx_type_name(static_cast<unsigned>(labels.type)));
    if (labels.dims.size() != 1)
        throw format_error(wl + ": wrong number of dimensions: expected 1 (count), found " +
                           std::to_string(labels.dims.size()) + " (" + detail::dims_string(labels.dims) + ")");
    const std::size_t n = images.dims[0];
    const std::size_t pixels = detail::checked_product(images.dims[1], images.dims[2]);
    if (pixels == 0)
        throw format_error(wi + ": empty images: " + detail::dims_string(images.dims));
    // idx_array is a plain struct: one built by hand may disagree with its own dimensions.
    const std::size_t need = detail::checked_product(n, pixels);
    const bool too_big = pixels == std::numeric_limits<std::size_t>::max() || need == std::numeric_limits<std::size_t>::max();
    if (too_big || need != images.data.size())
        throw format_error(wi + ": holds " + detail::plural(images.data.size(), "data byte") + ", its dimensions " +
                           detail::dims_string(images.dims) + " need " +
                           (too_big ? std::string("more than size_t can count") : std::to_string(need)));
    if (labels.dims[0] != labels.data.size())
        throw format_error(wl + ": holds " + detail::plural(labels.data.size(), "data byte") + ", its dimensions " +
                           detail::dims_string(labels.dims) + " need " + std::to_string(labels.dims[0]));
    if (labels.dims[0] != n)
        throw format_error("lamina: MNIST image count does not match the label count: '" + images.source + "' holds " +
                           detail::plural(n, "image") + ", '" + labels.source + "' holds " +
                           detail::plural(labels.dims[0], "label"));
    std::vector<float> targets(n);
    for (std::size_t i = 0; i < n; ++i) {
        const unsigned label = labels.data[i];
        if (label >= mnist_classes)
            throw format_error(wl + ": label " + std::to_string(label) + " of sample " + std::to_string(i) +
                               " is out of range (expected 0.." + std::to_string(mnist_classes - 1) + ")");
        targets[i] = static_cast<float>(label);
    }
    std::vector<float> inputs(n * pixels);
    const float k = scale_to_unit ? 1.0f / 255.0f : 1.0f;
    for (std::size_t i = 0; i < inputs.size(); ++i) inputs[i] = static_cast<float>(images.data[i]) * k;
    return dataset<float>(std::move(inputs), std::move(targets), pixels, 1);
}

/// Reads an MNIST image file and its label file (IDX, plain or gzipped) into a dataset:
/// one sample of rows*cols pixels (784 for MNIST) per image, pixels scaled to [0,1] (p / 255)
/// by default or kept as 0..255 when `scale_to_unit` is false; target_size 1, the label
/// 0..9 as float. Throws io_error / format_error naming the file (see mnist_from_idx).
inline dataset<float> read_mnist(const std::string& images_path, const std::string& labels_path,
                                 bool scale_to_unit = true) {
    const idx_array images = read_idx(images_path);
    const idx_array labels = read_idx(labels_path);
    return mnist_from_idx(images, labels, scale_to_unit);
}

namespace detail {

inline std::string join_path(const std::string& dir, const std::string& file) {
    if (dir.empty()) return file;
    return (dir.back() == '/') ? dir + file : dir + "/" + file;
}

inline bool is_file(const std::string& path) {
    std::error_code ec;
    return std::filesystem::is_regular_file(path, ec);
}

/// `<dir>/<base>` or `<dir>/<base>.gz`, whichever exists (the uncompressed one first);
/// empty when neither does. `looked` receives the candidates, for messages.
inline std::string find_idx_file(const std::string& dir, const std::string& base, std::string* looked = nullptr) {
    const std::string plain = join_path(dir, base), gz = plain + ".gz";
    if (looked) *looked = "'" + gz + "' and '" + plain + "'";
    if (is_file(plain)) return plain;
    if (is_file(gz)) return gz;
    return {};
}

}  // namespace detail

/// Reads the MNIST set `which` ("t10k" or "train") from `dir`: the files
/// `<which>-images-idx3-ubyte[.gz]` and `<which>-labels-idx1-ubyte[.gz]` (uncompressed
/// preferred when both exist). Throws io_error listing the paths looked for when a file is
/// absent; otherwise as read_mnist.
inline dataset<float> read_mnist_dir(const std::string& dir, const std::string& which = "t10k",
                                     bool scale_to_unit = true) {
    if (dir.empty())
        throw io_error("lamina: no MNIST data directory given (pass a path, or set LAMINA_DATA_DIR)");
    std::string looked_i, looked_l;
    const std::string images = detail::find_idx_file(dir, which + "-images-idx3-ubyte", &looked_i);
    const std::string labels = detail::find_idx_file(dir, which + "-labels-idx1-ubyte", &looked_l);
    if (images.empty() || labels.empty()) {
        std::string msg = "lamina: MNIST '" + which + "' files not found in '" + dir + "':";
        if (images.empty()) msg += " no images file (looked for " + looked_i + ")";
        if (images.empty() && labels.empty()) msg += ";";
        if (labels.empty()) msg += " no labels file (looked for " + looked_l + ")";
        throw io_error(msg);
    }
    return read_mnist(images, labels, scale_to_unit);
}

/// The MNIST data directory: `argv_path_or_null` when given and non-empty, else the
/// environment variable LAMINA_DATA_DIR when set and non-empty (both returned as given,
/// unchecked, so that a wrong path gives a clear error when read), else
/// "../shared/data/mnist" when that directory exists relative to the current directory,
/// else the empty string.
inline std::string find_data_dir(const char* argv_path_or_null = nullptr) {
    if (argv_path_or_null && *argv_path_or_null) return argv_path_or_null;
    if (const char* env = std::getenv("LAMINA_DATA_DIR"); env && *env) return env;
    const std::string fallback = "../shared/data/mnist";
    std::error_code ec;
    if (std::filesystem::is_directory(fallback, ec)) return fallback;
    return {};
}

/// Number of t10k images used for training when the 60,000-image training set is absent;
/// the remaining t10k images (8000..9999) are held out.
constexpr std::size_t mnist_t10k_train_count = 8000;

/// The train / test datasets of the project's agreed MNIST split (both owning).
struct mnist_split {
    dataset<float> train;
    dataset<float> test;       ///< the held-out set
    bool full_training_set = false;  ///< true: 60k train + 10k t10k; false: t10k 0..7999 / 8000..9999
    std::string description;   ///< human-readable: which split, from which folder
};

namespace detail {
inline dataset<float> copy_slice(const dataset<float>& d, std::size_t begin, std::size_t end) {
    const dataset_view<float> v = d.slice(begin, end);
    std::vector<float> in(v.inputs, v.inputs + v.count * v.sample_size);
    std::vector<float> tg(v.targets, v.targets + v.count * v.target_size);
    return dataset<float>(std::move(in), std::move(tg), v.sample_size, v.target_size);
}
}  // namespace detail

/// The project's agreed MNIST split from the files in `dir`: when the 60,000-image training
/// files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]) are present, train =
/// all of them and test = all 10,000 t10k images; otherwise train = t10k images 0..7999 and
/// test (held out) = t10k images 8000..9999. Pixels as in read_mnist. Throws io_error when
/// the t10k files are absent or only one of the two training files is present, format_error
/// when a file is malformed or the t10k set holds fewer than 8001 images (no split possible).
inline mnist_split mnist_train_test(const std::string& dir, bool scale_to_unit = true) {
    if (dir.empty())
        throw io_error("lamina: no MNIST data directory given (pass a path, or set LAMINA_DATA_DIR)");
    mnist_split s;
    const bool has_ti = !detail::find_idx_file(dir, "train-images-idx3-ubyte").empty();
    const bool has_tl = !detail::find_idx_file(dir, "train-labels-idx1-ubyte").empty();
    if (has_ti != has_tl)
        throw io_error("lamina: incomplete MNIST training set in '" + dir + "': found the training " +
                       (has_ti ? "images" : "labels") + " but not the training " + (has_ti ? "labels" : "images") +
                       " (train-" + (has_ti ? "labels-idx1" : "images-idx3") + "-ubyte[.gz])");
    if (has_ti) {
        s.train = read_mnist_dir(dir, "train", scale_to_unit);
        s.test = read_mnist_dir(dir, "t10k", scale_to_unit);
        s.full_training_set = true;
        s.description = "MNIST standard split from '" + dir + "': train = " + std::to_string(s.train.size()) +
                        " training images, test = " + std::to_string(s.test.size()) + " t10k images";
        return s;
    }
    dataset<float> all = read_mnist_dir(dir, "t10k", scale_to_unit);
    const std::size_t n = all.size();
    if (n <= mnist_t10k_train_count)
        throw format_error("lamina: the MNIST t10k set in '" + dir + "' holds " + detail::plural(n, "image") +
                           ", too few for the " + std::to_string(mnist_t10k_train_count) +
                           "-image training part of the t10k split (expected 10000)");
    s.train = detail::copy_slice(all, 0, mnist_t10k_train_count);
    s.test = detail::copy_slice(all, mnist_t10k_train_count, n);
    s.full_training_set = false;
    s.description = "MNIST t10k split from '" + dir + "' (60,000-image training files not found): train = t10k images 0.." +
                    std::to_string(mnist_t10k_train_count - 1) + " (" + std::to_string(s.train.size()) +
                    "), held out = t10k images " + std::to_string(mnist_t10k_train_count) + ".." +
                    std::to_string(n - 1) + " (" + std::to_string(s.test.size()) + ")";
    return s;
}

}  // namespace data
}  // namespace lamina
// ---- end include/lamina/data/idx.hpp ----

// ---- begin include/lamina/data/image_transforms.hpp ----
// lamina: transforms of image datasets kept as rows of (C, H, W) values.
//
//   auto padded = lamina::data::pad_images(mnist.train, 1, 28, 28, 2);   // 28x28 -> 32x32, zeros



namespace lamina::data {

/// A copy of `d` whose images (channels x height x width per sample) get `pad` rows and
/// columns of `value` on every side; targets are copied unchanged.
template <class T>
dataset<T> pad_images(dataset_view<T> d, std::size_t channels, std::size_t height, std::size_t width, std::size_t pad,
                      T value = T(0)) {
    if (channels == 0 || height == 0 || width == 0 || d.sample_size != channels * height * width)
        throw shape_error("lamina: pad_images: samples hold " + std::to_string(d.sample_size) + " values, not " +
                          std::to_string(channels) + " x " + std::to_string(height) + " x " + std::to_string(width));
    const std::size_t H = height + 2 * pad, W = width + 2 * pad, out = channels * H * W;
    std::vector<T> in(d.count * out, value);
    for (std::size_t i = 0; i < d.count; ++i)
        for (std::size_t c = 0; c < channels; ++c)
            for (std::size_t y = 0; y < height; ++y) {
                const T* src = d.sample(i) + (c * height + y) * width;
                T* dst = in.data() + i * out + (c * H + y + pad) * W + pad;
                for (std::size_t x = 0; x < width; ++x) dst[x] = src[x];
            }
    std::vector<T> t(d.targets, d.targets + d.count * d.target_size);
    return dataset<T>(std::move(in), std::move(t), out, d.target_size);
}

}  // namespace lamina::data
// ---- end include/lamina/data/image_transforms.hpp ----

// ---- begin include/lamina/data/synthetic_cells.hpp ----
// lamina: synthetic microscopy images of cells, 13 phenotype classes: test data for image
// classifiers such as the M-CNN (models/mcnn.hpp) when no BBBC021 images are at hand.
//
//   auto train = lamina::data::synthetic_cells(1300, {128, 128, /*seed*/ 1});
//   auto test  = lamina::data::synthetic_cells(390, {128, 128, 1, /*first*/ 1300});
//
// Each image (3 x H x W floats, channels first) shows 3 to 6 textured cells on a dim, noisy
// background. The channels imitate BBBC021's stains: 0 the nucleus (a bright ellipse at half
// the cell's size), 1 the cytoplasm (the class's intensity pattern over the whole cell), 2
// fibres (stripes along the cell's long axis). Every cell has a fine multiplicative texture.
//
// What differs between classes (synthetic_cell_classes() lists them): the cell's size (radius
// 4.5%, 6.5% or 9% of the image's smaller side), its shape (round, or elongated with axes 2:1 at
// the same area) and the cytoplasm's pattern (uniform, a bright rim, or coarse speckles whose
// grain is a quarter of the radius). All three patterns have the same mean brightness, so a
// class is told by its geometry and texture, not by how bright it is. Every class differs from
// some other class in one attribute only.
//
// What varies within a class (how hard it is): the number and places of the cells (which
// overlap and are cut by the border; their stains add), each cell's orientation, its radius
// and brightness by +-jitter (default 15%: the size classes stay apart by about 1.4x but
// border cuts and overlaps blur that), the aspect by +-jitter/2, and Gaussian background noise
// (default sd 0.05 against a cell brightness of about 0.55 to 0.9). Sizes are relative to the
// image, so the task is the same at 128x128 and at 1024x1280.
//
// Deterministic: image i is a pure function of (seed, i) through lamina's counter-based
// random_stream (core/philox.hpp), the same on every compiler and machine and whatever the
// count or the first index; disjoint index ranges give independent sets. Labels are balanced,
// image i has class i mod 13.


// ---- begin include/lamina/data/synthetic_common.hpp ----
// lamina: what the synthetic data generators share (data/synthetic_cells.hpp,
// data/synthetic_calorimeter.hpp): size arithmetic that fails loudly, and numbers drawn from
// Philox blocks.



namespace lamina::data::detail {

/// a * b, or an argument_error naming the generator and `what` when it overflows std::size_t.
inline std::size_t synthetic_product(std::size_t a, std::size_t b, const char* generator, const std::string& what) {
    if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a)
        throw argument_error(std::string("lamina: ") + generator + ": " + what + " overflows std::size_t");
    return a * b;
}

/// Four standard normals from one Philox block (Box-Muller on both word pairs).
inline void normals4(const philox4x32::block& b, double out[4]) {
    constexpr double two_pi = 6.283185307179586, inv32 = 1.0 / 4294967296.0;
    for (int k = 0; k < 2; ++k) {
        const double u1 = (static_cast<double>(b.v[2 * k]) + 1.0) * inv32;  // (0, 1]: the log is finite
        const double u2 = static_cast<double>(b.v[2 * k + 1]) * inv32;
        const double r = std::sqrt(-2.0 * std::log(u1));
        out[2 * k] = r * std::cos(two_pi * u2);
        out[2 * k + 1] = r * std::sin(two_pi * u2);
    }
}

/// Uniform in [0, 1) from word w of a block.
inline double unit(const philox4x32::block& b, int w) { return static_cast<double>(b.v[w]) * (1.0 / 4294967296.0); }

}  // namespace lamina::data::detail
// ---- end include/lamina/data/synthetic_common.hpp ----


namespace lamina::data {

/// The cytoplasm's intensity pattern of a class.
enum class cell_pattern { uniform, rim, speckled };

/// What makes a class: size, shape, pattern.
struct cell_class {
    double radius;         ///< mean radius sqrt(a * b) as a fraction of min(height, width)
    double aspect;         ///< long axis / short axis (1: round)
    cell_pattern pattern;  ///< the cytoplasm channel's pattern
};

inline constexpr std::size_t synthetic_cell_channels = 3;
inline constexpr std::size_t synthetic_cell_class_count = 13;

/// The 13 classes: (size, shape, pattern) with sizes S/M/L = 0.045/0.065/0.09.
inline const std::array<cell_class, synthetic_cell_class_count>& synthetic_cell_classes() {
    constexpr double S = 0.045, M = 0.065, L = 0.09, round = 1.0, elong = 2.0;
    static const std::array<cell_class, synthetic_cell_class_count> table{{
        {S, round, cell_pattern::uniform},  {M, round, cell_pattern::uniform},  {L, round, cell_pattern::uniform},
        {S, elong, cell_pattern::uniform},  {M, elong, cell_pattern::uniform},  {L, elong, cell_pattern::uniform},
        {S, round, cell_pattern::rim},      {M, round, cell_pattern::rim},      {L, round, cell_pattern::rim},
        {M, elong, cell_pattern::rim},      {S, round, cell_pattern::speckled}, {M, elong, cell_pattern::speckled},
        {L, elong, cell_pattern::speckled},
    }};
    return table;
}

struct synthetic_cells_options {
    std::size_t height = 128;
    std::size_t width = 128;
    std::uint64_t seed = 1;
    std::uint64_t first = 0;   ///< index of the first image (disjoint ranges: independent sets)
    double noise = 0.05;       ///< standard deviation of the Gaussian background noise
    double jitter = 0.15;      ///< relative spread of each cell's radius and brightness, in [0, 0.5]
    std::size_t min_cells = 3;  ///< cells per image, drawn uniformly in [min_cells, max_cells]
    std::size_t max_cells = 6;
};

namespace detail {

inline void check_cells_options(const synthetic_cells_options& o) {
    auto fail = [](const std::string& m) { throw argument_error("lamina: synthetic_cells: " + m); };
    if (o.height < 16 || o.width < 16)
        fail("the image must be at least 16x16 pixels (height " + std::to_string(o.height) + ", width " +
             std::to_string(o.width) + ")");
    if (!(o.noise >= 0) || !std::isfinite(o.noise)) fail("noise must be finite and non-negative, got " + std::to_string(o.noise));
    if (!(o.jitter >= 0 && o.jitter <= 0.5)) fail("jitter must be in [0, 0.5], got " + std::to_string(o.jitter));
    if (o.min_cells == 0 || o.min_cells > o.max_cells || o.max_cells > 64)
        fail("cells per image must satisfy 1 <= min_cells <= max_cells <= 64 (got " + std::to_string(o.min_cells) +
             ", " + std::to_string(o.max_cells) + ")");
}

/// A stream identifier for synthetic data ("cells"), apart from lamina's other streams.
inline constexpr std::uint64_t cells_stream = 0x63656c6c73ull;

}  // namespace detail

/// Renders image `index` (3 x height x width floats, channels first) into `out`; returns its
/// class (index mod 13). `out` must hold 3 * height * width floats.
inline std::size_t synthetic_cell_image(const synthetic_cells_options& o, std::uint64_t index, float* out) {
    detail::check_cells_options(o);
    const std::size_t H = o.height, W = o.width;
    const std::size_t plane = detail::synthetic_product(H, W, "synthetic_cells", "height x width");
    const std::size_t n_values = detail::synthetic_product(plane, synthetic_cell_channels, "synthetic_cells", "3 x height x width");
    const std::size_t label = static_cast<std::size_t>(index % synthetic_cell_class_count);
    const cell_class& cls = synthetic_cell_classes()[label];
    const random_stream image = random_stream{o.seed, detail::cells_stream}.child(index);
    const random_stream noise = image.child(0), shape_draws = image.child(1);

    // Background: a dim level plus Gaussian noise, four values per Philox block.
    constexpr double background = 0.05;
    for (std::size_t i = 0; i < n_values; i += 4) {
        double z[4];
        detail::normals4(noise.bits(i / 4), z);
        for (std::size_t k = 0; k < 4 && i + k < n_values; ++k)
            out[i + k] = static_cast<float>(background + o.noise * z[k]);
    }

    const double side = static_cast<double>(std::min(H, W));
    const auto counts = shape_draws.bits(0);
    const std::size_t cells = o.min_cells + static_cast<std::size_t>(detail::unit(counts, 0) *
                                                                     static_cast<double>(o.max_cells - o.min_cells + 1));
    constexpr double pi = 3.14159265358979323846;
    for (std::size_t j = 0; j < std::min(cells, o.max_cells); ++j) {
        const auto d0 = shape_draws.bits(1 + 2 * j), d1 = shape_draws.bits(2 + 2 * j);
        const double cx = detail::unit(d0, 0) * static_cast<double>(W), cy = detail::unit(d0, 1) * static_cast<double>(H);
        const double r = cls.radius * side * (1.0 + o.jitter * (2 * detail::unit(d0, 2) - 1));
        const double aspect = cls.aspect * (1.0 + 0.5 * o.jitter * (2 * detail::unit(d0, 3) - 1));
        const double theta = pi * detail::unit(d1, 0), bright = 1.0 + o.jitter * (2 * detail::unit(d1, 1) - 1);
        const double a = r * std::sqrt(aspect), b = r / std::sqrt(aspect);  // semi-axes: area pi r^2 whatever the shape
        const double ct = std::cos(theta), st = std::sin(theta);
        const double grain = std::max(1.0, r / 4), stripe = 2 * pi / std::max(2.0, r / 2);
        const random_stream texture = image.child(2 + j);
        const std::uint64_t tex_base = 0, speckle_base = std::uint64_t(1) << 62;  // two disjoint index ranges
        const double reach = std::max(a, b) + 1;
        const long y0 = std::max(0L, static_cast<long>(std::floor(cy - reach)));
        const long y1 = std::min(static_cast<long>(H) - 1, static_cast<long>(std::ceil(cy + reach)));
        const long x0 = std::max(0L, static_cast<long>(std::floor(cx - reach)));
        const long x1 = std::min(static_cast<long>(W) - 1, static_cast<long>(std::ceil(cx + reach)));
        for (long y = y0; y <= y1; ++y)
            for (long x = x0; x <= x1; ++x) {
                const double dx = static_cast<double>(x) + 0.5 - cx, dy = static_cast<double>(y) + 0.5 - cy;
                const double u = dx * ct + dy * st, v = -dx * st + dy * ct;  // along the long and the short axis
                const double rho = std::sqrt((u / a) * (u / a) + (v / b) * (v / b));
                const double inside = std::clamp((1 - rho) * b + 0.5, 0.0, 1.0);  // a one-pixel soft edge
                if (inside <= 0) continue;
                const double nucleus = std::clamp((0.5 - rho) * b + 0.5, 0.0, 1.0);
                const std::size_t p = static_cast<std::size_t>(y) * W + static_cast<std::size_t>(x);
                const auto t = texture.bits(tex_base + p);
                const double fine0 = 0.8 + 0.4 * detail::unit(t, 0), fine1 = 0.8 + 0.4 * detail::unit(t, 1),
                             fine2 = 0.8 + 0.4 * detail::unit(t, 2);
                double cyto = 0.55;
                if (cls.pattern == cell_pattern::rim) {
                    cyto = 0.2 + 1.05 * rho * rho * rho * rho;  // mean over the ellipse: 0.2 + 1.05/3 = 0.55
                } else if (cls.pattern == cell_pattern::speckled) {
                    const auto gu = static_cast<std::int64_t>(std::floor(u / grain)) + (std::int64_t(1) << 20);
                    const auto gv = static_cast<std::int64_t>(std::floor(v / grain)) + (std::int64_t(1) << 20);
                    const auto g = texture.bits(speckle_base + (static_cast<std::uint64_t>(gv) << 21) +
                                                static_cast<std::uint64_t>(gu));
                    cyto = detail::unit(g, 0) < 0.3 ? 1.2 : 0.2714;  // mean 0.3 * 1.2 + 0.7 * 0.2714 = 0.55
                }
                const double fibres = 0.5 * (0.5 + 0.5 * std::cos(stripe * v));
                out[p] += static_cast<float>(bright * inside * nucleus * 0.9 * fine0);
                out[plane + p] += static_cast<float>(bright * inside * cyto * fine1);
                out[2 * plane + p] += static_cast<float>(bright * inside * fibres * fine2);
            }
    }
    return label;
}

/// `count` images from index o.first on, with their classes as targets (one value each).
inline dataset<float> synthetic_cells(std::size_t count, const synthetic_cells_options& o = {}) {
    detail::check_cells_options(o);
    const std::size_t per = detail::synthetic_product(
        detail::synthetic_product(o.height, o.width, "synthetic_cells", "height x width"), synthetic_cell_channels,
        "synthetic_cells", "3 x height x width");
    const std::size_t all = detail::synthetic_product(per, count, "synthetic_cells", "count x 3 x height x width");
    if (count > std::numeric_limits<std::uint64_t>::max() - o.first)
        throw argument_error("lamina: synthetic_cells: first + count overflows the image index");
    std::vector<float> x(all), y(count);
    for (std::size_t i = 0; i < count; ++i)
        y[i] = static_cast<float>(synthetic_cell_image(o, o.first + i, x.data() + i * per));
    return dataset<float>(std::move(x), std::move(y), per, 1);
}

}  // namespace lamina::data
// ---- end include/lamina/data/synthetic_cells.hpp ----

// ---- begin include/lamina/data/synthetic_calorimeter.hpp ----
// lamina: synthetic calorimeter images of collider events, signal against background: test
// data for the HEP CNN (models/hep_cnn.hpp) in the spirit of Kurth et al.'s RPV-SUSY against
// QCD multi-jet task, without the ATLAS simulation.
//
//   auto train = lamina::data::synthetic_calorimeter(4000, {64, 64, /*seed*/ 1});
//   auto test  = lamina::data::synthetic_calorimeter(1000, {64, 64, 1, /*first*/ 4000});
//
// An image is 3 x H x W floats (channels first) over (eta, phi) bins, phi periodic along the
// width: channel 0 is log(1 + E) of the energy deposited in the bin, channel 1 the bin's
// electromagnetic fraction (EM energy / energy, 0 where empty), channel 2 the number of
// charged tracks pointing at it. The images are sparse, as real ones are.
//
// An event is a set of jets plus soft underlying-event particles. A jet of energy E is a spray
// of 4 + E/6 particles (at most 64) around its axis, Gaussian with sd 2.5% of the width, sharing
// E by exponential weights; a particle is a photon (30%: all EM, no track), a charged hadron
// (55%: 20% EM, one track) or a neutral hadron (15%: no EM, no track). The underlying event adds
// 30 to 59 particles of mean energy 0.5 anywhere.
//
// What differs between the classes: background (class 0) has 2 to 5 jets of energy
// 20 + 50 Exp(1); signal (class 1, "new physics") has 4 to 8 jets of energy 20 + 80 Exp(1):
// more, harder jets. How hard it is: the jet counts overlap (4 and 5 occur in both) and the
// energy spectra overlap, so no classifier is always right; a cut on the total energy alone
// is a useful baseline (examples/hep_cnn prints it next to the network's accuracy).
//
// Deterministic: event i is a pure function of (seed, i) through lamina's counter-based
// random_stream (core/philox.hpp). Labels are balanced: event i has class i mod 2.



namespace lamina::data {

inline constexpr std::size_t synthetic_calorimeter_channels = 3;

struct synthetic_calorimeter_options {
    std::size_t height = 224;  ///< eta bins
    std::size_t width = 224;   ///< phi bins (periodic)
    std::uint64_t seed = 1;
    std::uint64_t first = 0;   ///< index of the first event (disjoint ranges: independent sets)
};

/// The event-level truth of one synthetic event, for baselines and tests.
struct calorimeter_event_truth {
    std::size_t label = 0;   ///< 1 signal, 0 background
    std::size_t jets = 0;
    double jet_energy = 0;   ///< sum of the jets' energies
    double total_energy = 0; ///< everything deposited, underlying event included
    std::size_t tracks = 0;
};

namespace detail {

inline void check_calorimeter_options(const synthetic_calorimeter_options& o) {
    if (o.height < 8 || o.width < 8)
        throw argument_error("lamina: synthetic_calorimeter: the image must be at least 8x8 bins (height " +
                             std::to_string(o.height) + ", width " + std::to_string(o.width) + ")");
}

/// Stream identifier of the calorimeter generator ("calo").
inline constexpr std::uint64_t calorimeter_stream = 0x63616c6full;

}  // namespace detail

/// Renders event `index` into `out` (3 x height x width floats, overwritten) and returns its
/// truth; its class is index mod 2.
inline calorimeter_event_truth synthetic_calorimeter_event(const synthetic_calorimeter_options& o, std::uint64_t index,
                                                           float* out) {
    detail::check_calorimeter_options(o);
    const std::size_t H = o.height, W = o.width;
    const std::size_t plane = detail::synthetic_product(H, W, "synthetic_calorimeter", "height x width");
    const std::size_t n_values =
        detail::synthetic_product(plane, synthetic_calorimeter_channels, "synthetic_calorimeter", "3 x height x width");
    calorimeter_event_truth truth;
    truth.label = static_cast<std::size_t>(index % 2);
    const bool signal = truth.label == 1;
    const random_stream event = random_stream{o.seed, detail::calorimeter_stream}.child(index);
    const random_stream jets_s = event.child(0), particles_s = event.child(1);

    // channel 0 accumulates energy, channel 1 EM energy, channel 2 tracks; finished below
    std::fill(out, out + n_values, 0.0f);
    float* energy = out;
    float* em = out + plane;
    float* tracks = out + 2 * plane;
    std::uint64_t draw = 0;  // the particle counter: each particle uses one Philox block
    auto deposit = [&](double eta, double phi, double e) {
        const double kind = detail::unit(particles_s.bits(draw++), 0);
        const double em_share = kind < 0.30 ? 1.0 : (kind < 0.85 ? 0.2 : 0.0);
        const bool charged = kind >= 0.30 && kind < 0.85;
        const long row = static_cast<long>(std::floor(eta));
        if (row < 0 || row >= static_cast<long>(H)) return;  // outside the detector's eta range
        double col = std::fmod(phi, static_cast<double>(W));
        if (col < 0) col += static_cast<double>(W);
        const std::size_t c = std::min(W - 1, static_cast<std::size_t>(col));
        const std::size_t p = static_cast<std::size_t>(row) * W + c;
        energy[p] += static_cast<float>(e);
        em[p] += static_cast<float>(e * em_share);
        if (charged) {
            tracks[p] += 1.0f;
            ++truth.tracks;
        }
        truth.total_energy += e;
    };

    const auto head = jets_s.bits(0);
    truth.jets = signal ? 4 + static_cast<std::size_t>(detail::unit(head, 0) * 5)
                        : 2 + static_cast<std::size_t>(detail::unit(head, 0) * 4);
    const double mean = signal ? 80.0 : 50.0;
    const double spread = 0.025 * static_cast<double>(W);
    for (std::size_t j = 0; j < truth.jets; ++j) {
        const auto jb = jets_s.bits(1 + j);
        const double e = 20.0 - mean * std::log(1.0 - detail::unit(jb, 0));  // 20 + mean Exp(1)
        const double eta0 = (0.1 + 0.8 * detail::unit(jb, 1)) * static_cast<double>(H);
        const double phi0 = detail::unit(jb, 2) * static_cast<double>(W);
        truth.jet_energy += e;
        const std::size_t n = std::min<std::size_t>(64, 4 + static_cast<std::size_t>(e / 6));
        // exponential weights share the jet's energy among its particles
        double weights[64], sum = 0;
        const random_stream jet_s = jets_s.child(1 + j);
        for (std::size_t k = 0; k < n; ++k) sum += (weights[k] = -std::log(1.0 - detail::unit(jet_s.bits(k), 0)) + 1e-12);
        for (std::size_t k = 0; k < n; ++k) {
            double z[4];
            detail::normals4(jet_s.bits(1000 + k), z);
            deposit(eta0 + spread * z[0], phi0 + spread * z[1], e * weights[k] / sum);
        }
    }
    const auto ue = jets_s.bits(100);
    const std::size_t soft = 30 + static_cast<std::size_t>(detail::unit(ue, 0) * 30);
    const random_stream soft_s = jets_s.child(100);
    for (std::size_t k = 0; k < soft; ++k) {
        const auto sb = soft_s.bits(k);
        deposit(detail::unit(sb, 0) * static_cast<double>(H), detail::unit(sb, 1) * static_cast<double>(W),
                -0.5 * std::log(1.0 - detail::unit(sb, 2)));
    }
    for (std::size_t p = 0; p < plane; ++p) {
        const double e = energy[p];
        em[p] = e > 0 ? static_cast<float>(std::min(1.0, static_cast<double>(em[p]) / e)) : 0.0f;
        energy[p] = static_cast<float>(std::log1p(e));
    }
    return truth;
}

/// `count` events from index o.first on, with their classes as targets (one value each).
/// `truths`, when given, receives each event's truth.
inline dataset<float> synthetic_calorimeter(std::size_t count, const synthetic_calorimeter_options& o = {},
                                            std::vector<calorimeter_event_truth>* truths = nullptr) {
    detail::check_calorimeter_options(o);
    const std::size_t per = detail::synthetic_product(
        detail::synthetic_product(o.height, o.width, "synthetic_calorimeter", "height x width"),
        synthetic_calorimeter_channels, "synthetic_calorimeter", "3 x height x width");
    const std::size_t all = detail::synthetic_product(per, count, "synthetic_calorimeter", "count x 3 x height x width");
    if (count > std::numeric_limits<std::uint64_t>::max() - o.first)
        throw argument_error("lamina: synthetic_calorimeter: first + count overflows the event index");
    std::vector<float> x(all), y(count);
    if (truths) truths->resize(count);
    for (std::size_t i = 0; i < count; ++i) {
        const auto t = synthetic_calorimeter_event(o, o.first + i, x.data() + i * per);
        y[i] = static_cast<float>(t.label);
        if (truths) (*truths)[i] = t;
    }
    return dataset<float>(std::move(x), std::move(y), per, 1);
}

}  // namespace lamina::data
// ---- end include/lamina/data/synthetic_calorimeter.hpp ----

// ---- begin include/lamina/data/deepgalaxy_hdf5.hpp ----
// lamina: DeepGalaxy's HDF5 layout (Cai et al. 2020): galaxy-merger images in one group per
// simulation, one dataset of images per camera, the snapshot times beside them.
//
//   /s_<size>_m_<mass>[_<suffix>]/images_camera_XX   (N, H, W) or (N, H, W, 1); uint8 (0..255,
//                                                    read as value / 255) or float32/float64
//                                                    (already in [0, 1], read as they are)
//   /s_<size>_m_<mass>[_<suffix>]/t_myr_camera_XX    (N) snapshot times in Myr, any numeric type
//
// XX is the camera number, two digits (the paper's files have cameras 00..13). <size> and
// <mass> are the secondary's size and mass ratios as decimal numbers (s_1_m_0.5,
// s_0.25_m_1.5); lamina also accepts a suffix after them (s_1_m_0.5_run_3: several
// simulations with the same ratios; DeepGalaxy's own loader, which splits the name at '_'
// and reads fields 1 and 3, reads such names too). Other groups and datasets are ignored.
//
//   lamina::data::deepgalaxy_file f{"output_bw_512.hdf5"};       // the paper's files, unchanged
//   for (const auto& g : f.groups())                              // s_*_m_* groups and their cameras
//       auto im = f.read(g.name, g.cameras[0]);                   // im.pixels: N x H x W floats
//   lamina::data::deepgalaxy_writer w{"mergers.h5"};              // the same layout (uint8 or float)
//   w.write(lamina::data::deepgalaxy_group_name(1, 0.5, "run_0"), 3, pixels, n, 64, 64, t_myr);
//   w.commit();                                                   // temporary file renamed into place
//
// HDF5 is opt-in: define LAMINA_WITH_HDF5 and link the HDF5 C library (CMake: the target
// lamina::hdf5 does both when find_package(HDF5) succeeds; Debian: libhdf5-dev).
// Without it this header still compiles: parse_deepgalaxy_group_name works, and opening a
// file throws io_error saying how to enable HDF5 (hdf5_available() tells in advance).
// (Opt-in rather than detected with __has_include so that including lamina never adds an
// undeclared link dependency, as with zlib in data/gzip_file.hpp.)
//
// Reading trusts nothing: a missing group or dataset names what is there instead; every
// rank, dimension and element type is checked before use (the element count and byte size
// with overflow-safe arithmetic); non-finite pixels or times are refused. Errors: io_error
// when a file cannot be opened, created or renamed; format_error for contents that do not fit
// the layout; allocation_error when the images do not fit in memory. Each names the file and
// the dataset. HDF5's own error printing is silenced while lamina calls it.

#include <cctype>
#include <optional>


#if defined(LAMINA_WITH_HDF5) && !defined(LAMINA_NO_HDF5)
#include <hdf5.h>
#include <unistd.h>  // getpid: the writer's temporary file name
#define LAMINA_HAS_HDF5 1
#else
#define LAMINA_HAS_HDF5 0
#endif

namespace lamina {
namespace data {

/// True when this build can read and write HDF5 files (LAMINA_WITH_HDF5 is defined).
constexpr bool hdf5_available() noexcept { return LAMINA_HAS_HDF5 != 0; }

/// The parts of a group name s_<size>_m_<mass>[_<suffix>].
struct deepgalaxy_name {
    double size_ratio = 0;
    double mass_ratio = 0;
    std::string suffix;  // after the mass and its '_' (empty when none)
};

namespace detail {
/// A decimal number as the paper writes them ("1", "0.25", "1.5"): digits with at most one
/// point, at least one digit. Returns the length parsed (0: none).
inline std::size_t parse_ratio(const std::string& s, std::size_t at, double& value) {
    std::size_t i = at, digits = 0, points = 0;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) {
        if (s[i] == '.') ++points;
        else ++digits;
        ++i;
    }
    if (digits == 0 || points > 1 || i - at > 32) return 0;
    value = std::strtod(s.substr(at, i - at).c_str(), nullptr);
    return i - at;
}
}  // namespace detail

/// Parses s_<size>_m_<mass>[_<suffix>] (a leading '/' is allowed); nullopt for other names.
inline std::optional<deepgalaxy_name> parse_deepgalaxy_group_name(std::string s) {
    if (!s.empty() && s[0] == '/') s.erase(0, 1);
    deepgalaxy_name n;
    if (s.compare(0, 2, "s_") != 0) return std::nullopt;
    std::size_t i = 2, len = detail::parse_ratio(s, i, n.size_ratio);
    if (!len) return std::nullopt;
    i += len;
    if (s.compare(i, 3, "_m_") != 0) return std::nullopt;
    i += 3;
    len = detail::parse_ratio(s, i, n.mass_ratio);
    if (!len) return std::nullopt;
    i += len;
    if (i < s.size()) {
        if (s[i] != '_' || i + 1 == s.size()) return std::nullopt;
        n.suffix = s.substr(i + 1);
    }
    return n;
}

/// The group name for these ratios ("%g": s_1_m_0.5), with "_<suffix>" when one is given.
inline std::string deepgalaxy_group_name(double size_ratio, double mass_ratio, const std::string& suffix = "") {
    if (!(size_ratio > 0) || !(mass_ratio > 0) || !std::isfinite(size_ratio) || !std::isfinite(mass_ratio))
        throw argument_error("lamina: deepgalaxy_group_name: size and mass ratios must be positive and finite, got " +
                             std::to_string(size_ratio) + " and " + std::to_string(mass_ratio));
    if (suffix.find('/') != std::string::npos)
        throw argument_error("lamina: deepgalaxy_group_name: the suffix '" + suffix + "' must not contain '/'");
    char b[96];
    std::snprintf(b, sizeof b, "s_%g_m_%g", size_ratio, mass_ratio);
    return suffix.empty() ? std::string(b) : std::string(b) + "_" + suffix;
}

/// "images_camera_07", "t_myr_camera_07".
inline std::string deepgalaxy_images_name(int camera) {
    if (camera < 0 || camera > 99)
        throw argument_error("lamina: DeepGalaxy camera numbers have two digits (0..99), got " + std::to_string(camera));
    char b[32];
    std::snprintf(b, sizeof b, "images_camera_%02d", camera);
    return b;
}
inline std::string deepgalaxy_times_name(int camera) {
    return "t_myr" + deepgalaxy_images_name(camera).substr(6);
}

/// One simulation's group: its name, the parsed ratios and its cameras (ascending).
struct deepgalaxy_group {
    std::string name;
    deepgalaxy_name parsed;
    std::vector<int> cameras;
};

/// One camera's images of one group.
struct deepgalaxy_images {
    std::string group;
    int camera = 0;
    std::size_t count = 0, height = 0, width = 0;
    std::vector<float> pixels;  // count x height x width, row-major
    std::vector<double> t_myr;  // count snapshot times, or empty when the group has none for this camera
    const float* image(std::size_t i) const noexcept { return pixels.data() + i * height * width; }
};

#if LAMINA_HAS_HDF5
namespace detail {

/// Silences HDF5's automatic error printing for its lifetime (lamina reports errors itself).
class hdf5_quiet {
public:
    hdf5_quiet() {
        H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    }
    ~hdf5_quiet() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
    hdf5_quiet(const hdf5_quiet&) = delete;
    hdf5_quiet& operator=(const hdf5_quiet&) = delete;

private:
    H5E_auto2_t func_ = nullptr;
    void* data_ = nullptr;
};

/// An HDF5 identifier closed with its own close function.
class hdf5_id {
public:
    using closer = herr_t (*)(hid_t);
    hdf5_id() = default;
    hdf5_id(hid_t id, closer c) : id_(id), close_(c) {}
    hdf5_id(hdf5_id&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
    hdf5_id& operator=(hdf5_id&& o) noexcept {
        if (this != &o) {
            reset();
            id_ = o.id_;
            close_ = o.close_;
            o.id_ = -1;
        }
        return *this;
    }
    hdf5_id(const hdf5_id&) = delete;
    hdf5_id& operator=(const hdf5_id&) = delete;
    ~hdf5_id() { reset(); }
    void reset() {
        if (id_ >= 0 && close_) close_(id_);
        id_ = -1;
    }
    hid_t get() const noexcept { return id_; }
    bool valid() const noexcept { return id_ >= 0; }

private:
    hid_t id_ = -1;
    closer close_ = nullptr;
};

inline bool hdf5_link_exists(hid_t loc, const std::string& name) {
    return H5Lexists(loc, name.c_str(), H5P_DEFAULT) > 0;
}

/// The names of the links in a group, in name order.
inline std::vector<std::string> hdf5_link_names(hid_t group, const std::string& where) {
    H5G_info_t info;
    if (H5Gget_info(group, &info) < 0) throw format_error("lamina: cannot list the members of " + where);
    std::vector<std::string> names;
    for (hsize_t i = 0; i < info.nlinks; ++i) {
        const ssize_t len = H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
        if (len < 0 || len > 4096) throw format_error("lamina: member " + std::to_string(i) + " of " + where + " has no readable name");
        std::string s(static_cast<std::size_t>(len) + 1, '\0');
        if (H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, &s[0], s.size(), H5P_DEFAULT) < 0)
            throw format_error("lamina: member " + std::to_string(i) + " of " + where + " has no readable name");
        s.resize(static_cast<std::size_t>(len));
        names.push_back(std::move(s));
    }
    return names;
}

/// The identifier type (H5I_GROUP, H5I_DATASET, ...) of a member, or H5I_BADID.
inline H5I_type_t hdf5_member_type(hid_t loc, const std::string& name) {
    if (!hdf5_link_exists(loc, name)) return H5I_BADID;
    hdf5_id o(H5Oopen(loc, name.c_str(), H5P_DEFAULT), H5Oclose);
    return o.valid() ? H5Iget_type(o.get()) : H5I_BADID;
}

/// Camera number of "images_camera_XX" (exactly two digits), or -1.
inline int camera_of(const std::string& name) {
    const std::string prefix = "images_camera_";
    if (name.size() != prefix.size() + 2 || name.compare(0, prefix.size(), prefix) != 0) return -1;
    const char a = name[prefix.size()], b = name[prefix.size() + 1];
    if (!std::isdigit(static_cast<unsigned char>(a)) || !std::isdigit(static_cast<unsigned char>(b))) return -1;
    return (a - '0') * 10 + (b - '0');
}

/// A dataset's extents, checked: rank within [1, 8], each read into size_t.
inline std::vector<std::size_t> hdf5_extents(hid_t dset, const std::string& where) {
    hdf5_id space(H5Dget_space(dset), H5Sclose);
    if (!space.valid()) throw format_error("lamina: " + where + ": cannot read its dataspace");
    const int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 0) throw format_error("lamina: " + where + ": cannot read its rank");
    if (rank > 8) throw format_error("lamina: " + where + " has rank " + std::to_string(rank) + ", more than any layout here uses");
    hsize_t dims[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (rank > 0 && H5Sget_simple_extent_dims(space.get(), dims, nullptr) != rank)
        throw format_error("lamina: " + where + ": cannot read its dimensions");
    std::vector<std::size_t> out;
    for (int i = 0; i < rank; ++i) {
        if (dims[i] > static_cast<hsize_t>(std::numeric_limits<std::size_t>::max()))
            throw format_error("lamina: " + where + ": dimension " + std::to_string(i) + " (" + std::to_string(dims[i]) +
                               ") does not fit in size_t");
        out.push_back(static_cast<std::size_t>(dims[i]));
    }
    return out;
}

inline std::string dims_text(const std::vector<std::size_t>& d) {
    std::string s = "(";
    for (std::size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + ")";
}

/// a * b, or false when it overflows size_t.
inline bool checked_mul(std::size_t a, std::size_t b, std::size_t& out) {
    if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) return false;
    out = a * b;
    return true;
}

/// The bytes HDF5 has stored for a dataset must be able to hold `count` elements of `element`
/// bytes before anything that size is allocated: exactly (or more, for partial edge chunks)
/// without filters; with compression, at most deflate's ratio of about 1032:1 (1100 allowed).
inline void check_stored_bytes(hid_t dset, std::size_t count, std::size_t element, const std::string& where) {
    if (count == 0) return;
    std::size_t want = 0;
    if (!checked_mul(count, element, want)) throw format_error("lamina: " + where + ": its byte size overflows size_t");
    const hsize_t stored = H5Dget_storage_size(dset);
    hdf5_id plist(H5Dget_create_plist(dset), H5Pclose);
    const int filters = plist.valid() ? H5Pget_nfilters(plist.get()) : 0;
    const long double have = static_cast<long double>(stored) * (filters > 0 ? 1100.0L : 1.0L);
    if (stored == 0 || have < static_cast<long double>(want))
        throw format_error("lamina: " + where + " declares " + std::to_string(count) + " elements (" + std::to_string(want) +
                           " bytes) but the file stores " + std::to_string(stored) + " bytes for it" +
                           (filters > 0 ? " (compressed)" : "") + ": truncated, or its data were never written");
}

enum class pixel_type { u8, f32, f64 };

/// What a dataset's element type is, or an error naming what it is instead.
inline pixel_type hdf5_pixel_type(hid_t dset, const std::string& where) {
    hdf5_id type(H5Dget_type(dset), H5Tclose);
    if (!type.valid()) throw format_error("lamina: " + where + ": cannot read its element type");
    const H5T_class_t cls = H5Tget_class(type.get());
    const std::size_t size = H5Tget_size(type.get());
    if (cls == H5T_INTEGER && size == 1 && H5Tget_sign(type.get()) == H5T_SGN_NONE) return pixel_type::u8;
    if (cls == H5T_FLOAT && size == 4) return pixel_type::f32;
    if (cls == H5T_FLOAT && size == 8) return pixel_type::f64;
    std::string what = cls == H5T_INTEGER ? (H5Tget_sign(type.get()) == H5T_SGN_NONE ? "unsigned integers" : "signed integers")
                       : cls == H5T_FLOAT ? "floats"
                       : cls == H5T_STRING ? "strings"
                                           : "a non-numeric type (HDF5 class " + std::to_string(static_cast<int>(cls)) + ")";
    throw format_error("lamina: " + where + " holds " + what + " of " + std::to_string(size) +
                       " bytes; DeepGalaxy images are uint8 (0..255), float32 or float64 (0..1)");
}

}  // namespace detail

/// A DeepGalaxy HDF5 file opened for reading.
class deepgalaxy_file {
public:
    explicit deepgalaxy_file(std::string path) : path_(std::move(path)) {
        detail::hdf5_quiet quiet;
        errno = 0;
        if (std::FILE* f = std::fopen(path_.c_str(), "rb")) {
            std::fclose(f);
        } else {
            const int err = errno;
            throw io_error("lamina: cannot open '" + path_ + "': " + (err ? std::strerror(err) : "unknown error"));
        }
        if (H5Fis_hdf5(path_.c_str()) <= 0) throw format_error("lamina: '" + path_ + "' is not an HDF5 file");
        file_ = detail::hdf5_id(H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
        if (!file_.valid()) throw io_error("lamina: HDF5 cannot open '" + path_ + "' (corrupt or truncated file?)");
    }

    const std::string& path() const noexcept { return path_; }

    /// The groups named s_<size>_m_<mass>[_<suffix>] and the cameras each has images for.
    std::vector<deepgalaxy_group> groups() const {
        detail::hdf5_quiet quiet;
        std::vector<deepgalaxy_group> out;
        for (const auto& name : detail::hdf5_link_names(file_.get(), "the root group of '" + path_ + "'")) {
            auto parsed = parse_deepgalaxy_group_name(name);
            if (!parsed || detail::hdf5_member_type(file_.get(), name) != H5I_GROUP) continue;
            detail::hdf5_id g(H5Gopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Gclose);
            if (!g.valid()) throw format_error("lamina: '" + path_ + "': cannot open group /" + name);
            deepgalaxy_group dg{name, *parsed, {}};
            for (const auto& member : detail::hdf5_link_names(g.get(), "group /" + name + " of '" + path_ + "'")) {
                const int cam = detail::camera_of(member);
                if (cam >= 0 && detail::hdf5_member_type(g.get(), member) == H5I_DATASET) dg.cameras.push_back(cam);
            }
            std::sort(dg.cameras.begin(), dg.cameras.end());
            out.push_back(std::move(dg));
        }
        return out;
    }

    /// The images of one camera of one group, as floats in the stored scale (uint8 / 255),
    /// with their snapshot times when the group has them for this camera.
    deepgalaxy_images read(const std::string& group_name, int camera) const {
        detail::hdf5_quiet quiet;
        std::string group = group_name;
        if (!group.empty() && group[0] == '/') group.erase(0, 1);
        const std::string images = deepgalaxy_images_name(camera), times = deepgalaxy_times_name(camera);
        if (group.empty() || group.find('/') != std::string::npos || detail::hdf5_member_type(file_.get(), group) != H5I_GROUP)
            throw format_error("lamina: '" + path_ + "' has no group /" + group + " (its DeepGalaxy groups: " +
                               group_list() + ")");
        detail::hdf5_id g(H5Gopen2(file_.get(), group.c_str(), H5P_DEFAULT), H5Gclose);
        if (!g.valid()) throw format_error("lamina: '" + path_ + "': cannot open group /" + group);
        if (detail::hdf5_member_type(g.get(), images) != H5I_DATASET)
            throw format_error("lamina: '" + path_ + "': group /" + group + " has no dataset " + images + " (cameras there: " +
                               camera_list(g.get(), group) + ")");
        const std::string where = "'" + path_ + "' /" + group + "/" + images;
        detail::hdf5_id d(H5Dopen2(g.get(), images.c_str(), H5P_DEFAULT), H5Dclose);
        if (!d.valid()) throw format_error("lamina: " + where + ": cannot open the dataset");

        const auto dims = detail::hdf5_extents(d.get(), where);
        const bool rank4 = dims.size() == 4 && dims[3] == 1;
        if (dims.size() != 3 && !rank4)
            throw format_error("lamina: " + where + " has rank " + std::to_string(dims.size()) + ", dimensions " +
                               detail::dims_text(dims) + "; expected (N, H, W) or (N, H, W, 1)");
        deepgalaxy_images out;
        out.group = group;
        out.camera = camera;
        out.count = dims[0];
        out.height = dims[1];
        out.width = dims[2];
        if (out.height == 0 || out.width == 0)
            throw format_error("lamina: " + where + " has empty images: dimensions " + detail::dims_text(dims));
        std::size_t pixels = 0, per = 0, bytes = 0;
        if (!detail::checked_mul(out.height, out.width, per) || !detail::checked_mul(per, out.count, pixels) ||
            !detail::checked_mul(pixels, sizeof(double), bytes))
            throw format_error("lamina: " + where + ": dimensions " + detail::dims_text(dims) +
                               " overflow the address space (N * H * W values)");
        const detail::pixel_type type = detail::hdf5_pixel_type(d.get(), where);
        const std::size_t element = type == detail::pixel_type::u8 ? 1 : type == detail::pixel_type::f32 ? 4 : 8;
        detail::check_stored_bytes(d.get(), pixels, element, where);
        try {
            out.pixels.resize(pixels);
            if (pixels) {
                if (type == detail::pixel_type::u8) {
                    std::vector<unsigned char> raw(pixels);
                    if (H5Dread(d.get(), H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()) < 0)
                        throw format_error("lamina: " + where + ": reading the images failed (truncated or corrupt file?)");
                    for (std::size_t i = 0; i < pixels; ++i) out.pixels[i] = static_cast<float>(raw[i]) / 255.0f;
                } else {
                    if (H5Dread(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.pixels.data()) < 0)
                        throw format_error("lamina: " + where + ": reading the images failed (truncated or corrupt file?)");
                    for (std::size_t i = 0; i < pixels; ++i)
                        if (!std::isfinite(out.pixels[i]))
                            throw format_error("lamina: " + where + ": pixel " + std::to_string(i % per) + " of image " +
                                               std::to_string(i / per) + " is not finite (" +
                                               std::to_string(out.pixels[i]) + ")");
                }
            }
        } catch (const std::bad_alloc&) {
            throw allocation_error("lamina: " + where + ": no memory for " + std::to_string(pixels) + " pixels (" +
                                   detail::dims_text(dims) + ")");
        }

        if (detail::hdf5_member_type(g.get(), times) == H5I_DATASET) {
            const std::string tw = "'" + path_ + "' /" + group + "/" + times;
            detail::hdf5_id t(H5Dopen2(g.get(), times.c_str(), H5P_DEFAULT), H5Dclose);
            if (!t.valid()) throw format_error("lamina: " + tw + ": cannot open the dataset");
            const auto td = detail::hdf5_extents(t.get(), tw);
            if (td.size() != 1 && !(td.size() == 2 && td[1] == 1))
                throw format_error("lamina: " + tw + " has rank " + std::to_string(td.size()) + ", dimensions " +
                                   detail::dims_text(td) + "; expected (N) snapshot times");
            if (td[0] != out.count)
                throw format_error("lamina: " + tw + " has " + std::to_string(td[0]) + " times for " +
                                   std::to_string(out.count) + " images in " + images);
            detail::hdf5_id tt(H5Dget_type(t.get()), H5Tclose);
            const H5T_class_t cls = tt.valid() ? H5Tget_class(tt.get()) : H5T_NO_CLASS;
            if (cls != H5T_INTEGER && cls != H5T_FLOAT)
                throw format_error("lamina: " + tw + " is not numeric (HDF5 class " + std::to_string(static_cast<int>(cls)) + ")");
            detail::check_stored_bytes(t.get(), out.count, tt.valid() ? std::max<std::size_t>(1, H5Tget_size(tt.get())) : 1, tw);
            out.t_myr.resize(out.count);
            if (out.count && H5Dread(t.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.t_myr.data()) < 0)
                throw format_error("lamina: " + tw + ": reading the times failed");
            for (std::size_t i = 0; i < out.count; ++i)
                if (!std::isfinite(out.t_myr[i]))
                    throw format_error("lamina: " + tw + ": time " + std::to_string(i) + " is not finite");
        }
        return out;
    }

private:
    std::string group_list() const {
        std::string s;
        for (const auto& g : groups()) s += (s.empty() ? "" : ", ") + g.name;
        return s.empty() ? "none" : s;
    }
    std::string camera_list(hid_t g, const std::string& group) const {
        std::string s;
        for (const auto& m : detail::hdf5_link_names(g, "group /" + group + " of '" + path_ + "'"))
            if (detail::camera_of(m) >= 0) s += (s.empty() ? "" : ", ") + m.substr(m.size() - 2);
        return s.empty() ? "none" : s;
    }

    std::string path_;
    detail::hdf5_id file_;
};

/// Writes DeepGalaxy's layout into a temporary file beside `path`; commit() closes it and
/// renames it over `path`, so an interrupted write never leaves a half-written file there
/// (without commit the destructor removes the temporary file).
class deepgalaxy_writer {
public:
    explicit deepgalaxy_writer(std::string path) : path_(std::move(path)) {
        detail::hdf5_quiet quiet;
        tmp_ = path_ + ".tmp-" + std::to_string(static_cast<long>(::getpid()));
        file_ = detail::hdf5_id(H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
        if (!file_.valid()) throw io_error("lamina: cannot create the HDF5 file '" + tmp_ + "' (for '" + path_ + "')");
    }
    deepgalaxy_writer(const deepgalaxy_writer&) = delete;
    deepgalaxy_writer& operator=(const deepgalaxy_writer&) = delete;
    ~deepgalaxy_writer() {
        if (file_.valid()) {
            file_.reset();
            std::remove(tmp_.c_str());
        }
    }

    /// count images of height x width as uint8 (the paper's black-and-white files), and
    /// their times (t_myr may be null: no times dataset).
    void write(const std::string& group, int camera, const std::uint8_t* images, std::size_t count, std::size_t height,
               std::size_t width, const double* t_myr) {
        write_any(group, camera, images, H5T_STD_U8LE, H5T_NATIVE_UCHAR, count, height, width, t_myr);
    }
    /// The same as float32 (values as given, in [0, 1] by DeepGalaxy's convention).
    void write(const std::string& group, int camera, const float* images, std::size_t count, std::size_t height,
               std::size_t width, const double* t_myr) {
        write_any(group, camera, images, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, count, height, width, t_myr);
    }

    /// Closes the file and renames it to the path given at construction.
    void commit() {
        if (!file_.valid()) throw io_error("lamina: '" + path_ + "' was already committed");
        detail::hdf5_quiet quiet;
        if (H5Fflush(file_.get(), H5F_SCOPE_GLOBAL) < 0) throw io_error("lamina: flushing '" + tmp_ + "' failed");
        file_.reset();
        if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
            const int err = errno;
            std::remove(tmp_.c_str());
            throw io_error("lamina: cannot rename '" + tmp_ + "' to '" + path_ + "': " + std::strerror(err));
        }
    }

private:
    void write_any(const std::string& group_name, int camera, const void* images, hid_t file_type, hid_t mem_type,
                   std::size_t count, std::size_t height, std::size_t width, const double* t_myr) {
        detail::hdf5_quiet quiet;
        if (!file_.valid()) throw io_error("lamina: '" + path_ + "' was already committed");
        if (!parse_deepgalaxy_group_name(group_name))
            throw argument_error("lamina: '" + group_name + "' is not a DeepGalaxy group name (s_<size>_m_<mass>[_<suffix>])");
        if (height == 0 || width == 0) throw argument_error("lamina: DeepGalaxy images need a positive height and width");
        std::size_t per = 0, all = 0;
        if (!detail::checked_mul(height, width, per) || !detail::checked_mul(per, count, all))
            throw argument_error("lamina: " + std::to_string(count) + " images of " + std::to_string(height) + "x" +
                                 std::to_string(width) + " overflow size_t");
        if (count && !images) throw argument_error("lamina: deepgalaxy_writer::write got a null image pointer");
        const std::string name = group_name[0] == '/' ? group_name.substr(1) : group_name;
        const std::string dset = deepgalaxy_images_name(camera), where = "'" + tmp_ + "' /" + name + "/" + dset;
        detail::hdf5_id g;
        if (detail::hdf5_link_exists(file_.get(), name))
            g = detail::hdf5_id(H5Gopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Gclose);
        else
            g = detail::hdf5_id(H5Gcreate2(file_.get(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
        if (!g.valid()) throw io_error("lamina: cannot create group /" + name + " in '" + tmp_ + "'");
        if (detail::hdf5_link_exists(g.get(), dset)) throw argument_error("lamina: " + where + " was already written");

        const hsize_t dims[3] = {static_cast<hsize_t>(count), static_cast<hsize_t>(height), static_cast<hsize_t>(width)};
        detail::hdf5_id space(H5Screate_simple(3, dims, nullptr), H5Sclose);
        detail::hdf5_id plist(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
        if (!space.valid() || !plist.valid()) throw io_error("lamina: " + where + ": cannot describe the dataset");
        // One chunk per image, deflated when HDF5 has zlib (the paper's files are gigabytes).
        if (count && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {
            const hsize_t chunk[3] = {1, static_cast<hsize_t>(height), static_cast<hsize_t>(width)};
            if (H5Pset_chunk(plist.get(), 3, chunk) < 0 || H5Pset_deflate(plist.get(), 4) < 0)
                throw io_error("lamina: " + where + ": cannot set up compression");
        }
        detail::hdf5_id d(H5Dcreate2(g.get(), dset.c_str(), file_type, space.get(), H5P_DEFAULT, plist.get(), H5P_DEFAULT),
                          H5Dclose);
        if (!d.valid()) throw io_error("lamina: " + where + ": cannot create the dataset");
        if (count && H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, images) < 0)
            throw io_error("lamina: " + where + ": writing the images failed");
        if (t_myr) {
            const std::string tname = deepgalaxy_times_name(camera);
            const hsize_t tdims[1] = {static_cast<hsize_t>(count)};
            detail::hdf5_id ts(H5Screate_simple(1, tdims, nullptr), H5Sclose);
            detail::hdf5_id t(H5Dcreate2(g.get(), tname.c_str(), H5T_IEEE_F64LE, ts.get(), H5P_DEFAULT, H5P_DEFAULT,
                                         H5P_DEFAULT),
                              H5Dclose);
            if (!ts.valid() || !t.valid()) throw io_error("lamina: '" + tmp_ + "' /" + name + "/" + tname + ": cannot create");
            if (count && H5Dwrite(t.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, t_myr) < 0)
                throw io_error("lamina: '" + tmp_ + "' /" + name + "/" + tname + ": writing the times failed");
        }
    }

    std::string path_, tmp_;
    detail::hdf5_id file_;
};

#else  // no HDF5: the same interface, every file operation explains how to enable it

namespace detail {
[[noreturn]] inline void no_hdf5(const std::string& path) {
    throw io_error("lamina: '" + path +
                   "': DeepGalaxy HDF5 files need HDF5, which this build does not use: define LAMINA_WITH_HDF5 and link "
                   "the HDF5 C library (CMake: target lamina::hdf5; Debian: apt-get install libhdf5-dev)");
}
}  // namespace detail

class deepgalaxy_file {
public:
    explicit deepgalaxy_file(std::string path) { detail::no_hdf5(path); }
    const std::string& path() const noexcept { return path_; }
    std::vector<deepgalaxy_group> groups() const { detail::no_hdf5(path_); }
    deepgalaxy_images read(const std::string&, int) const { detail::no_hdf5(path_); }

private:
    std::string path_;
};

class deepgalaxy_writer {
public:
    explicit deepgalaxy_writer(std::string path) { detail::no_hdf5(path); }
    void write(const std::string&, int, const std::uint8_t*, std::size_t, std::size_t, std::size_t, const double*) {
        detail::no_hdf5(path_);
    }
    void write(const std::string&, int, const float*, std::size_t, std::size_t, std::size_t, const double*) {
        detail::no_hdf5(path_);
    }
    void commit() { detail::no_hdf5(path_); }

private:
    std::string path_;
};

#endif

}  // namespace data
}  // namespace lamina
// ---- end include/lamina/data/deepgalaxy_hdf5.hpp ----


// ---- begin include/lamina/train/trainer.hpp ----
// lamina: the training loop. A trainer binds a model, a loss, an optimizer and a learning
// rate schedule; run() trains for epochs with shuffling and callbacks, evaluate() measures.
//
//   lamina::trainer fit{net, lamina::loss::softmax_cross_entropy{}, lamina::optim::sgd{0.05, 0.9}};
//   fit.run(train, lamina::epochs{12}, lamina::batch{64}, lamina::progress_bar{});
//
// All buffers are planned on the first step; steps 2..N allocate nothing. Every step's loss
// is checked (one scalar, already on the host): by default a NaN or infinite loss stops the
// run with a numeric_error; on_non_finite() chooses to skip such batches or to carry on.
// A network with several outputs (heads<...>) takes a loss::per_output (one weighted loss per
// output); the reported loss includes what nodes add (a VAE's KL term).
//
// The communicator is the last template argument (communicators/none.hpp): comm::none, one
// process, compiles to exactly the loop above; with comm::mpi (communicators/mpi.hpp) every
// rank runs the same program on its part of each global batch:
//
//   lm::trainer fit{net, loss, opt, sched, lm::comm::mpi{MPI_COMM_WORLD}};
//   fit.sampling(lm::distributed_sampler::reshuffle_every(1));   // the default
//   fit.scale_learning_rate({256, 5});     // linear scaling rule for the global batch, 5-epoch warm-up
//   fit.run(train, lm::epochs{90}, lm::batch{32});               // batch per rank
//
// run() and train_batch() then average gradients over the ranks (overlapped with backward),
// report losses averaged over the ranks and global images/s, and run callbacks marked
// root_only (progress_bar, csv_log, checkpoint_every) on rank 0 only; evaluate() splits the
// dataset over the ranks and returns the metrics of the whole of it on every rank. Every call
// on a distributed trainer is collective: every rank makes it, with the same arguments.
// With comm::hybrid (communicators/hybrid.hpp) groups of ranks train as above and meet through
// parameter-server ranks; the servers serve inside run(), so the program is the same on all.

#include <exception>

// ---- begin include/lamina/communicators/bucketed_optimizer.hpp ----
// lamina: an optimizer's state split by fusion bucket, so the update of each bucket runs as soon
// as that bucket's gradient average has arrived, while later buckets are still on the wire
// ("the optimizer step waits only for what it needs").
//
// No optimizer API change: each bucket gets a state of the optimizer's own type sized to the
// bucket, and its step() is called on the bucket's slice of the parameters and gradients with
// the bucket's segments re-based to the slice. That is exact for optimizers whose update of a
// parameter tensor depends only on that tensor (element-wise ones such as SGD and Adam, and
// per-tensor ones such as LARS and LAMB, since buckets hold whole tensors); each bucket state
// counts the steps itself, so bias corrections see the same step number. Such optimizers are
// listed by steps_by_segment (an optimizer opts in with `static constexpr bool
// steps_by_segment = true;`); for the others the trainer waits for every bucket and steps once.
//
// For checkpoints the state looks like the optimizer's own: layout(), save() and load() give
// and take each state tensor whole (the buckets' slices joined in parameter order), so a
// checkpoint does not depend on the bucket sizes or the number of ranks.


// ---- begin include/lamina/communicators/fusion_buckets.hpp ----
// lamina: tensor fusion buckets over a model's flat gradient buffer, and the per-step record of
// which bucket is complete. No MPI here: communicators/mpi.hpp starts one collective per bucket.
//
// The model keeps every parameter gradient in one flat buffer, each leaf's gradients contiguous,
// leaves in forward order (network/parameter_segment.hpp), and backward reports each leaf's
// gradients once, last leaf first. A bucket is therefore a contiguous range of that buffer made
// of whole leaves taken in report order: "packing" a gradient into its bucket costs nothing, and
// a bucket is handed to MPI in place (as PyTorch DDP's gradient views into its buckets).
//
// Buckets close when they reach their byte threshold: the first bucket at `first_bucket_bytes`
// (small, so the first collective starts early in backward; DDP uses 1 MiB), the others at
// `bucket_bytes` (DDP 25 MiB, Horovod 64-128 MiB). A leaf larger than the threshold is a bucket
// of its own; a threshold of 0 gives one bucket per leaf (no fusion).



namespace lamina::comm {

/// One fusion bucket: elements [offset, offset + count) of the flat gradient buffer.
struct bucket_range {
    std::size_t offset = 0;
    std::size_t count = 0;
    std::size_t first_segment = 0;  // its parameter segments: [first_segment, first_segment + segments)
    std::size_t segments = 0;
};

/// The buckets of one model, in the order backward fills them (bucket 0 holds the last layers).
class fusion_plan {
public:
    fusion_plan() = default;

    /// Groups `segments` (in forward order, as the model lists them) into the leaves that
    /// report them (equal `layer`) and the leaves into buckets in reverse order.
    /// `element_bytes` is sizeof the gradient's scalar type.
    static fusion_plan build(const std::vector<parameter_segment>& segments, std::size_t element_bytes,
                             std::size_t first_bucket_bytes, std::size_t bucket_bytes) {
        fusion_plan p;
        // leaves: runs of segments with the same layer; they must tile [0, total)
        struct leaf {
            std::size_t offset, count, first_segment, segments;
        };
        std::vector<leaf> leaves;
        std::size_t expect = 0;
        for (std::size_t s = 0; s < segments.size(); ++s) {
            const parameter_segment& seg = segments[s];
            if (seg.offset != expect)
                throw error("lamina: fusion buckets: parameter segment '" + seg.name + "' starts at " +
                            std::to_string(seg.offset) + ", expected " + std::to_string(expect) +
                            " (segments must tile the flat gradient buffer in order)");
            if (!leaves.empty() && segments[leaves.back().first_segment].layer == seg.layer) {
                leaves.back().count += seg.count;
                ++leaves.back().segments;
            } else {
                leaves.push_back({seg.offset, seg.count, s, 1});
            }
            expect += seg.count;
        }
        p.total_ = expect;
        bucket_range cur;
        std::size_t bytes = 0;
        bool open = false;
        auto close = [&] {
            p.buckets_.push_back(cur);
            open = false;
            bytes = 0;
        };
        for (auto it = leaves.rbegin(); it != leaves.rend(); ++it) {
            if (it->count == 0) continue;
            if (!open) {
                cur = bucket_range{it->offset, it->count, it->first_segment, it->segments};
                open = true;
            } else {  // the next leaf in report order sits just below the bucket
                cur.offset = it->offset;
                cur.count += it->count;
                cur.first_segment = it->first_segment;
                cur.segments += it->segments;
            }
            bytes += it->count * element_bytes;
            const std::size_t threshold = p.buckets_.empty() ? first_bucket_bytes : bucket_bytes;
            if (bytes >= threshold) close();
        }
        if (open) close();
        // lookup table: bucket starts in increasing offset order
        p.by_offset_.resize(p.buckets_.size());
        for (std::size_t k = 0; k < p.buckets_.size(); ++k) p.by_offset_[k] = p.buckets_.size() - 1 - k;
        return p;
    }

    const std::vector<bucket_range>& buckets() const noexcept { return buckets_; }
    std::size_t size() const noexcept { return buckets_.size(); }
    const bucket_range& operator[](std::size_t k) const { return buckets_[k]; }
    /// Elements covered (the model's parameter count).
    std::size_t total() const noexcept { return total_; }
    std::size_t largest() const noexcept {
        std::size_t m = 0;
        for (const auto& b : buckets_) m = std::max(m, b.count);
        return m;
    }

    /// The bucket holding element `offset` (offset < total()).
    std::size_t bucket_of(std::size_t offset) const {
        // by_offset_ lists buckets by increasing offset: the last one starting at or before `offset`
        std::size_t lo = 0, hi = by_offset_.size();
        while (hi - lo > 1) {
            const std::size_t mid = (lo + hi) / 2;
            if (buckets_[by_offset_[mid]].offset <= offset) lo = mid;
            else hi = mid;
        }
        return by_offset_[lo];
    }

private:
    std::vector<bucket_range> buckets_;
    std::vector<std::size_t> by_offset_;
    std::size_t total_ = 0;
};

/// Which buckets one backward pass has filled. report() takes each gradient as backward hands
/// it over; ready_prefix() is how many buckets, counted from bucket 0, are complete, which is
/// the order collectives must start in (the same on every rank). Allocation-free after reset's
/// first call.
class bucket_fill {
public:
    explicit bucket_fill(const fusion_plan* plan = nullptr) : plan_(plan) {}
    void reset() {
        remaining_.resize(plan_->size());
        for (std::size_t k = 0; k < plan_->size(); ++k) remaining_[k] = (*plan_)[k].count;
        prefix_ = 0;
        advance();
    }
    /// Elements [offset, offset + count) of the gradient buffer are final. Throws when they lie
    /// outside the buffer or were reported already (a bucket could then be sent incomplete).
    void report(std::size_t offset, std::size_t count) {
        if (count > plan_->total() || offset > plan_->total() - count)
            throw error("lamina: fusion buckets: a gradient of " + std::to_string(count) + " values at offset " +
                        std::to_string(offset) + " lies outside the model's " + std::to_string(plan_->total()) +
                        " parameters");
        while (count) {
            const std::size_t k = plan_->bucket_of(offset);
            const bucket_range& b = (*plan_)[k];
            const std::size_t take = std::min(count, b.offset + b.count - offset);
            if (take > remaining_[k])
                throw error("lamina: fusion buckets: bucket " + std::to_string(k) + " got " + std::to_string(take) +
                            " more gradient values than it holds (a layer reported its gradients twice)");
            remaining_[k] -= take;
            offset += take;
            count -= take;
        }
        advance();
    }
    /// Treats every bucket as complete (after backward: a layer that never reported keeps the
    /// gradient it has).
    void complete_all() {
        for (auto& r : remaining_) r = 0;
        prefix_ = remaining_.size();
    }
    std::size_t ready_prefix() const noexcept { return prefix_; }
    bool complete(std::size_t k) const { return remaining_[k] == 0; }

private:
    void advance() {
        while (prefix_ < remaining_.size() && remaining_[prefix_] == 0) ++prefix_;
    }
    const fusion_plan* plan_;
    std::vector<std::size_t> remaining_;
    std::size_t prefix_ = 0;
};

}  // namespace lamina::comm
// ---- end include/lamina/communicators/fusion_buckets.hpp ----


namespace lamina::comm {

/// Whether an optimizer's update of one parameter tensor depends on that tensor alone.
template <class O, class = void>
struct steps_by_segment : std::false_type {};
template <class O>
struct steps_by_segment<O, std::enable_if_t<O::steps_by_segment>> : std::true_type {};
template <>
struct steps_by_segment<optim::sgd> : std::true_type {};
template <>
struct steps_by_segment<optim::adam> : std::true_type {};
template <>
struct steps_by_segment<optim::adamw> : std::true_type {};
template <>
struct steps_by_segment<optim::rmsprop> : std::true_type {};
template <>
struct steps_by_segment<optim::adadelta> : std::true_type {};
template <>
struct steps_by_segment<optim::lars> : std::true_type {};  // norms per tensor; buckets hold whole tensors
template <>
struct steps_by_segment<optim::lamb> : std::true_type {};

template <class Optimizer, class Backend, class T>
class bucketed_state {
public:
    using inner_state = typename Optimizer::template state<Backend, T>;
    using context = typename Backend::context;

    bucketed_state(const Optimizer& o, const fusion_plan& plan, const std::vector<parameter_segment>& segments)
        : plan_(plan), total_(plan.total()) {
        states_.reserve(plan.size());
        segments_.resize(plan.size());
        for (std::size_t k = 0; k < plan.size(); ++k) {
            const bucket_range& b = plan[k];
            states_.emplace_back(o, b.count);
            for (std::size_t s = b.first_segment; s < b.first_segment + b.segments; ++s) {
                parameter_segment seg = segments[s];
                seg.offset -= b.offset;
                segments_[k].push_back(std::move(seg));
            }
        }
        // Joining the buckets' state tensors needs one value per parameter in each of them.
        for (std::size_t k = 0; k < states_.size(); ++k)
            for (const auto& [name, size] : layout_of(states_[k]))
                if (size != plan[k].count)
                    throw error("lamina: optimizer '" + Optimizer::name() + "' keeps state '" + name + "' of " +
                                std::to_string(size) + " values for " + std::to_string(plan[k].count) +
                                " parameters: it cannot step bucket by bucket (do not declare steps_by_segment)");
    }

    /// Updates the parameters of bucket k (w and g are the model's whole flat buffers).
    void step_bucket(std::size_t k, const context& c, T* w, const T* g, double lr) {
        const std::size_t off = plan_[k].offset;
        states_[k].step(c, w + off, g + off, segments_[k], lr);
    }
    /// Updates every bucket (the segments are the model's; each bucket uses its own).
    void step(const context& c, T* w, const T* g, const std::vector<parameter_segment>&, double lr) {
        for (std::size_t k = 0; k < states_.size(); ++k) step_bucket(k, c, w, g, lr);
    }

    /// Scales every bucket's weight decay (train/collapsed_ensemble.hpp drives it).
    void set_weight_decay_scale(double s) {
        for (auto& st : states_) st.set_weight_decay_scale(s);
        scale_ = s;
    }
    double weight_decay_scale() const noexcept { return scale_; }

    std::uint64_t steps() const noexcept { return states_.empty() ? 0 : states_[0].steps(); }
    std::vector<std::pair<std::string, std::size_t>> layout() const {
        std::vector<std::pair<std::string, std::size_t>> l;
        if (states_.empty()) return l;
        for (auto& [name, size] : layout_of(states_[0])) l.emplace_back(name, total_);
        return l;
    }
    std::vector<std::pair<std::string, std::vector<T>>> save(const context& c) const {
        std::vector<std::pair<std::string, std::vector<T>>> out;
        for (std::size_t k = 0; k < states_.size(); ++k) {
            auto part = states_[k].save(c);
            if (k == 0)
                for (auto& [name, values] : part) out.emplace_back(name, std::vector<T>(total_));
            for (std::size_t j = 0; j < part.size(); ++j)
                std::copy(part[j].second.begin(), part[j].second.end(),
                          out[j].second.begin() + static_cast<std::ptrdiff_t>(plan_[k].offset));
        }
        return out;
    }
    /// Checks every tensor's name and size before any bucket changes.
    void load(const context& c, const std::vector<std::pair<std::string, std::vector<T>>>& st, std::uint64_t steps) {
        const auto want = layout();
        bool ok = st.size() == want.size();
        for (std::size_t j = 0; ok && j < st.size(); ++j)
            ok = st[j].first == want[j].first && st[j].second.size() == want[j].second;
        if (!ok) {
            std::string names;
            for (const auto& w : want) names += (names.empty() ? "'" : ", '") + w.first + "'";
            throw checkpoint_error("lamina: " + Optimizer::name() + " state in checkpoint does not match (expected " +
                                   names + " of " + std::to_string(total_) + " values)");
        }
        for (std::size_t k = 0; k < states_.size(); ++k) {
            const bucket_range& b = plan_[k];
            std::vector<std::pair<std::string, std::vector<T>>> part;
            for (const auto& [name, values] : st)
                part.emplace_back(name, std::vector<T>(values.begin() + static_cast<std::ptrdiff_t>(b.offset),
                                                       values.begin() + static_cast<std::ptrdiff_t>(b.offset + b.count)));
            states_[k].load(c, part, steps);
        }
    }

private:
    template <class S, class = void>
    struct has_layout : std::false_type {};
    template <class S>
    struct has_layout<S, std::void_t<decltype(std::declval<const S&>().layout())>> : std::true_type {};
    static std::vector<std::pair<std::string, std::size_t>> layout_of(const inner_state& s) {
        if constexpr (has_layout<inner_state>::value) {
            return s.layout();
        } else {
            std::vector<std::pair<std::string, std::size_t>> l;
            for (auto& [name, values] : s.save(context{})) l.emplace_back(name, values.size());
            return l;
        }
    }

    fusion_plan plan_;
    std::size_t total_;
    double scale_ = 1.0;
    std::vector<inner_state> states_;
    std::vector<std::vector<parameter_segment>> segments_;
};

}  // namespace lamina::comm
// ---- end include/lamina/communicators/bucketed_optimizer.hpp ----

// ---- begin include/lamina/communicators/none.hpp ----
// lamina: communicators are compile-time policies of the trainer, like its loss or optimizer.
// comm::none is one process (the default): the trainer compiles exactly as without one.
// comm::mpi (communicators/mpi.hpp) averages gradients over the ranks of an MPI communicator.
//
//   lm::trainer fit{net, loss, opt};                                          // comm::none
//   lm::trainer fit{net, loss, opt, sched, lm::comm::mpi{MPI_COMM_WORLD}};    // data-parallel
//
// A distributed communicator C has `static constexpr bool distributed = true` and a
// `C::session<Model>` the trainer builds from it and the model; communicators/mpi.hpp documents
// what a session does (the protocol a further communicator implements to plug in).


namespace lamina::comm {

/// One process: nothing to communicate, nothing stored, nothing called.
struct none {
    static constexpr bool distributed = false;
    static constexpr bool is_communicator = true;
    int rank() const noexcept { return 0; }
    int size() const noexcept { return 1; }
};

/// Whether C is a communicator policy (the trainer's deduction guides tell a schedule from a
/// communicator by it).
template <class C, class = void>
struct is_communicator : std::false_type {};
template <class C>
struct is_communicator<C, std::enable_if_t<C::is_communicator>> : std::true_type {};

/// What the trainer holds for comm::none: nothing.
struct no_session {};

}  // namespace lamina::comm
// ---- end include/lamina/communicators/none.hpp ----

// ---- begin include/lamina/data/distributed_sampler.hpp ----
// lamina: which samples each rank trains on, epoch by epoch, in data-parallel training.
// DeepGalaxy's three modes (Wang et al. 2020, distributed training with Horovod):
//
//   distributed_sampler::reshuffle_every(m)  shards drawn from a new global permutation every m
//                                            epochs (m = 1, the default: every epoch); between
//                                            redraws each rank reshuffles its own shard;
//   distributed_sampler::fixed_shards()      rank r always trains on the same contiguous part of
//                                            the dataset (a rank may hold only that part),
//                                            reshuffled within the shard every epoch;
//   distributed_sampler::all_data()          every rank sees the whole dataset every epoch, in its
//                                            own order (an epoch is then ranks x the dataset).
//
// Every rank gets the same number of samples per epoch, so every rank runs the same number of
// steps (a rank with one step more would wait forever in its gradient average): shards of
// uneven size are padded by repeating their first samples, as PyTorch's DistributedSampler
// does (at most ranks - 1 repeated samples per epoch).
//
// With m = 1 the shards interleave batch by batch: rank r's step-s batch is positions
// [s*N*B + r*b, s*N*B + (r+1)*b) of the epoch's permutation (b = B, or the last step's size).
// N ranks with batch B therefore train on exactly the global batches one process with batch
// N*B trains on, and on one rank every mode gives the trainer's own order (the permutation of
// lamina::trainer::run for that epoch and shuffle seed).



namespace lamina {

enum class sharding {
    reshuffle,  ///< shards from a global permutation redrawn every `every` epochs
    fixed,      ///< a fixed contiguous shard per rank
    all_data,   ///< every rank sees every sample
};

class distributed_sampler {
public:
    /// Shards redrawn from a new global permutation every `m` epochs (m >= 1).
    static distributed_sampler reshuffle_every(std::size_t m = 1) {
        if (m == 0) throw argument_error("lamina: distributed_sampler::reshuffle_every needs m >= 1 epochs, got 0");
        return distributed_sampler{sharding::reshuffle, m};
    }
    static distributed_sampler fixed_shards() { return distributed_sampler{sharding::fixed, 1}; }
    static distributed_sampler all_data() { return distributed_sampler{sharding::all_data, 1}; }

    distributed_sampler() = default;
    sharding mode() const noexcept { return mode_; }
    std::size_t every() const noexcept { return every_; }
    std::string describe() const {
        switch (mode_) {
            case sharding::reshuffle:
                return every_ == 1 ? "shards reshuffled every epoch" : "shards reshuffled every " + std::to_string(every_) + " epochs";
            case sharding::fixed: return "fixed shard per rank";
            case sharding::all_data: return "every rank sees all data";
        }
        return "";
    }

    /// Samples each rank visits per epoch, for `n` samples over `ranks` ranks.
    std::size_t samples_per_rank(std::size_t n, std::size_t ranks) const {
        check(n, 0, ranks, 1);
        if (mode_ == sharding::all_data) return n;
        return n / ranks + (n % ranks ? 1 : 0);
    }

    /// Rank `rank`'s sample indices for `epoch`, in the order it visits them, in batches of
    /// `batch`: out[0 .. samples_per_rank(n, ranks)). `seed` is the trainer's shuffle seed.
    void order(std::size_t* out, std::size_t n, std::size_t epoch, std::size_t rank, std::size_t ranks,
               std::size_t batch, std::uint64_t seed) const {
        check(n, rank, ranks, batch);
        const std::size_t L = samples_per_rank(n, ranks);
        if (mode_ == sharding::all_data) {
            permutation(out, n, rank_seed(seed, rank), epoch);
            return;
        }
        if (mode_ == sharding::fixed) {
            const std::size_t lo = shard_begin(n, rank, ranks), size = shard_begin(n, rank + 1, ranks) - lo;
            for (std::size_t i = 0; i < L; ++i) out[i] = lo + i % size;  // pads by repeating its first samples
            shuffle(out, L, rank_seed(seed, rank), epoch);
            return;
        }
        // reshuffle: the global permutation of the block's first epoch, padded cyclically to
        // ranks * L, dealt out batch by batch
        const std::size_t first = epoch / every_ * every_;
        perm_.resize(n);
        permutation(perm_.data(), n, seed, first);
        const std::size_t steps = (L + batch - 1) / batch;
        std::size_t j = 0;
        for (std::size_t s = 0; s < steps; ++s) {
            const std::size_t b = std::min(batch, L - s * batch);
            const std::size_t base = s * ranks * batch + rank * b;
            for (std::size_t w = 0; w < b; ++w) out[j++] = perm_[(base + w) % n];
        }
        if (epoch != first) shuffle(out, L, rank_seed(seed, rank) ^ 0x4C4F43414CULL, epoch);
    }

    /// The trainer's permutation of epoch `epoch`: Fisher-Yates with the counter-based RNG, so
    /// it depends only on (seed, epoch) and a resumed run shuffles as an uninterrupted one.
    static void permutation(std::size_t* out, std::size_t n, std::uint64_t seed, std::size_t epoch) {
        for (std::size_t i = 0; i < n; ++i) out[i] = i;
        shuffle(out, n, seed, epoch);
    }

    /// First sample of rank r's contiguous shard (fixed_shards): shards differ by at most one.
    static std::size_t shard_begin(std::size_t n, std::size_t r, std::size_t ranks) {
        return r * (n / ranks) + std::min(r, n % ranks);
    }

private:
    distributed_sampler(sharding m, std::size_t every) : mode_(m), every_(every) {}

    static void shuffle(std::size_t* a, std::size_t n, std::uint64_t seed, std::size_t epoch) {
        random_stream s{seed, 0x5348554646ull + epoch};
        for (std::size_t i = n; i > 1; --i) std::swap(a[i - 1], a[s.below(i, i)]);
    }
    /// Rank 0 keeps the trainer's seed (one rank shuffles exactly as the plain trainer).
    static std::uint64_t rank_seed(std::uint64_t seed, std::size_t rank) {
        return seed ^ (static_cast<std::uint64_t>(rank) * 0x9E3779B97F4A7C15ull);
    }
    void check(std::size_t n, std::size_t rank, std::size_t ranks, std::size_t batch) const {
        if (ranks == 0 || rank >= ranks)
            throw argument_error("lamina: distributed_sampler: rank " + std::to_string(rank) + " of " +
                                 std::to_string(ranks) + " ranks");
        if (batch == 0) throw argument_error("lamina: distributed_sampler: batch size must be positive");
        if (mode_ != sharding::all_data && n < ranks)
            throw argument_error("lamina: distributed_sampler: " + std::to_string(n) + " samples cannot be shared by " +
                                 std::to_string(ranks) + " ranks (" + describe() + ")");
    }

    sharding mode_ = sharding::reshuffle;
    std::size_t every_ = 1;
    mutable std::vector<std::size_t> perm_;  // the global permutation (kept: no allocation per epoch)
};

}  // namespace lamina
// ---- end include/lamina/data/distributed_sampler.hpp ----

// ---- begin include/lamina/train/training_types.hpp ----
// lamina: small value types of the training API: epochs{n}, batch{n}, and what callbacks see.


namespace lamina {

struct epochs {
    std::size_t count = 1;
};
struct batch {
    std::size_t size = 32;
};

/// What the trainer does when a step's loss is NaN or infinite (a diverging run).
enum class non_finite {
    stop,        ///< the default: throw numeric_error naming epoch, step and the last finite loss
    skip_batch,  ///< drop that batch (no backward, no update), count it, and go on
    keep_going,  ///< update anyway (the loss is reported as it is)
};

/// What a callback sees after each step and each epoch.
struct step_info {
    std::size_t epoch = 0;            // 0-based epoch being run
    std::size_t epochs_total = 0;     // epoch index the run stops before
    std::size_t step_in_epoch = 0;    // steps done in this epoch
    std::size_t steps_per_epoch = 0;
    std::uint64_t global_step = 0;    // steps done since the start of training
    double loss = 0;                  // this step's loss
    double epoch_loss = 0;            // mean loss so far in this epoch
    double learning_rate = 0;
    double images_per_second = 0;     // over this epoch so far
    double elapsed_seconds = 0;       // this epoch so far
    double eta_seconds = 0;           // rest of this run at the current speed
    std::uint64_t skipped_steps = 0;  // batches dropped for a non-finite loss (non_finite::skip_batch)
};

/// Result of evaluate(): mean loss, and accuracy for classification losses.
struct evaluation {
    double loss = 0;
    double accuracy = 0;  // fraction in [0, 1]; 0 for regression
    std::size_t samples = 0;
};

}  // namespace lamina
// ---- end include/lamina/train/training_types.hpp ----


namespace lamina {

namespace detail {
/// A single loss or a loss::per_output seen the same way: part K applies to output K, its
/// targets sit at target_offset<K> of a sample's targets.
template <class Model, class Loss>
struct loss_parts {
    static constexpr bool multi = loss::is_per_output<Loss>::value;
    static constexpr std::size_t count = [] {
        if constexpr (multi) return Loss::count;
        else return std::size_t(1);
    }();
    static_assert(count == Model::outputs,
                  "lamina::trainer: a network with several outputs needs one loss per output (loss::per_output)");
    template <std::size_t K, bool = multi>
    struct part_type {
        using type = Loss;
    };
    template <std::size_t K>
    struct part_type<K, true> {
        using type = decltype(std::get<K>(std::declval<Loss&>().parts).loss);
    };
    template <std::size_t K>
    using loss_type = typename part_type<K>::type;
    template <std::size_t K>
    static auto& loss(Loss& l) {
        if constexpr (multi) return std::get<K>(l.parts).loss;
        else return l;
    }
    template <std::size_t K>
    static double weight(const Loss& l) {
        if constexpr (multi) return std::get<K>(l.parts).weight;
        else return (void)l, 1.0;
    }
    template <std::size_t K>
    static constexpr std::size_t target_size = std::decay_t<loss_type<K>>::target_size(Model::output_sizes[K]);
    template <std::size_t... K>
    static constexpr std::size_t sum_sizes(std::index_sequence<K...>) {
        return (std::size_t(0) + ... + target_size<K>);
    }
    template <std::size_t K>
    static constexpr std::size_t target_offset = sum_sizes(std::make_index_sequence<K>{});
    static constexpr std::size_t total_target_size = target_offset<count - 1> + target_size<count - 1>;
    /// The output whose accuracy evaluate() reports: the first classification part.
    static constexpr std::size_t classifier = [] {
        if constexpr (multi) return Loss::first_classifier;
        else return Loss::classification ? std::size_t(0) : std::size_t(1);
    }();
    static constexpr bool has_classifier = classifier < count;
};

/// What the trainer holds for its communicator: nothing for comm::none, a session otherwise.
template <class Comm, class Model, bool = Comm::distributed>
struct session_of {
    using type = comm::no_session;
};
template <class Comm, class Model>
struct session_of<Comm, Model, true> {
    using type = typename Comm::template session<Model>;
};

/// Whether a session may hand the optimizer step to other ranks (comm::hybrid's parameter
/// servers, communicators/hybrid.hpp): it then also serves, finishes runs and abandons them.
template <class Session, class = void>
struct updates_remotely : std::false_type {};
template <class Session>
struct updates_remotely<Session, std::enable_if_t<Session::remote_update>> : std::true_type {};

/// A callback that writes checkpoints (io/checkpoint.hpp's checkpoint_every) has
/// `static constexpr bool writes_checkpoints = true` and `bool enabled() const`.
template <class C, class = void>
struct writes_checkpoints : std::false_type {};
template <class C>
struct writes_checkpoints<C, std::enable_if_t<C::writes_checkpoints>> : std::true_type {};

/// Calls session.abandon() when destroyed by an exception (comm::hybrid: the servers stop
/// waiting for the group); nothing for other communicators.
template <class Session, bool Remote>
struct abandon_on_error {
    explicit abandon_on_error(Session&) noexcept {}
};
template <class Session>
struct abandon_on_error<Session, true> {
    explicit abandon_on_error(Session& s) noexcept : session(&s), exceptions(std::uncaught_exceptions()) {}
    ~abandon_on_error() {
        if (std::uncaught_exceptions() > exceptions) session->abandon();
    }
    abandon_on_error(const abandon_on_error&) = delete;
    abandon_on_error& operator=(const abandon_on_error&) = delete;
    Session* session;
    int exceptions;
};

/// A callback with `static constexpr bool root_only = true` (output, files) runs on rank 0 only.
template <class C, class = void>
struct root_only_callback : std::false_type {};
template <class C>
struct root_only_callback<C, std::enable_if_t<C::root_only>> : std::true_type {};
}  // namespace detail

/// The linear scaling rule with gradual warm-up (Goyal et al. 2017), applied to the global
/// batch (batch per rank x ranks): the schedule's rate, given for `base_batch`, is multiplied
/// by k = global batch / base_batch, ramping linearly from 1 to k over `warmup_epochs`.
struct linear_scaling_rule {
    std::size_t base_batch = 256;
    double warmup_epochs = 5;
};

template <class Model, class Loss, class Optimizer, class Schedule = schedule::constant, class Comm = comm::none>
class trainer {
public:
    using backend = typename Model::backend;
    using T = typename Model::value_type;
    using communicator = Comm;
    static constexpr bool distributed = Comm::distributed;
    using session_type = typename detail::session_of<Comm, Model>::type;
    /// With a distributed communicator, optimizers that update each tensor on its own update
    /// each fusion bucket as soon as its average has arrived (communicators/bucketed_optimizer.hpp).
    static constexpr bool steps_by_bucket = distributed && comm::steps_by_segment<Optimizer>::value;
    using optimizer_state = std::conditional_t<steps_by_bucket, comm::bucketed_state<Optimizer, backend, T>,
                                               typename Optimizer::template state<backend, T>>;
    using parts = detail::loss_parts<Model, Loss>;
    /// With comm::hybrid the optimizer state that counts lives on the parameter servers.
    static constexpr bool optimizer_on_servers = detail::updates_remotely<session_type>::value;
    static_assert(!optimizer_on_servers || steps_by_bucket,
                  "lamina::trainer: comm::hybrid's servers update bucket by bucket: the optimizer must declare "
                  "steps_by_segment (communicators/bucketed_optimizer.hpp)");

    trainer(Model& net, Loss loss, Optimizer opt, Schedule sched = Schedule{}, Comm comm = Comm{})
        : net_(net), loss_(loss), opt_(opt), sched_(sched), comm_(comm), session_(make_session(comm_, net)),
          opt_state_(make_state(opt, session_, net)), shuffle_seed_(net.seed_value() ^ 0x5bd1e995u) {}
    /// trainer{net, loss, opt, lm::comm::mpi{...}}: a communicator without a schedule.
    template <class C, std::enable_if_t<std::is_same_v<C, Comm> && !std::is_same_v<C, Schedule> &&
                                            comm::is_communicator<C>::value,
                                        int> = 0>
    trainer(Model& net, Loss loss, Optimizer opt, C comm) : trainer(net, loss, opt, Schedule{}, comm) {}

    Model& model() noexcept { return net_; }
    const Loss& loss() const noexcept { return loss_; }
    const Optimizer& optimizer() const noexcept { return opt_; }
    optimizer_state& optimizer_state_ref() noexcept { return opt_state_; }
    std::size_t epoch() const noexcept { return epoch_; }
    std::uint64_t global_step() const noexcept { return step_; }
    std::uint64_t shuffle_seed() const noexcept { return shuffle_seed_; }
    void set_shuffle_seed(std::uint64_t s) noexcept { shuffle_seed_ = s; }
    /// What a non-finite loss does (default non_finite::stop).
    trainer& on_non_finite(non_finite policy) noexcept {
        non_finite_ = policy;
        return *this;
    }
    non_finite non_finite_policy() const noexcept { return non_finite_; }
    /// Batches dropped so far for a non-finite loss (non_finite::skip_batch).
    std::uint64_t skipped_steps() const noexcept { return skipped_; }
    /// Restores the position in training (used when resuming from a checkpoint). A distributed
    /// trainer broadcasts rank 0's state again before its next step.
    void set_position(std::size_t epoch, std::uint64_t step) noexcept {
        epoch_ = epoch;
        step_ = step;
        synchronized_ = false;
    }

    // ---- distribution ---------------------------------------------------------------------
    const Comm& communicator_policy() const noexcept { return comm_; }
    /// This process's rank and the number of ranks (0 and 1 for comm::none).
    int rank() const noexcept {
        if constexpr (distributed) return session_.rank();
        else return 0;
    }
    int ranks() const noexcept {
        if constexpr (distributed) return session_.size();
        else return 1;
    }
    /// Rank 0: the one that prints and writes files.
    bool is_root() const noexcept { return rank() == 0; }
    /// The communicator's session (fusion plan, last step's exchange statistics).
    session_type& session() noexcept { return session_; }
    /// How run() spreads the dataset over the ranks (data/distributed_sampler.hpp).
    trainer& sampling(distributed_sampler s) noexcept {
        sampler_ = s;
        return *this;
    }
    const distributed_sampler& sampler() const noexcept { return sampler_; }
    /// Applies the linear scaling rule to the global batch in run() (off by default).
    trainer& scale_learning_rate(linear_scaling_rule r) {
        if (r.base_batch == 0) throw argument_error("lamina: linear_scaling_rule: base_batch must be positive");
        if (!(r.warmup_epochs >= 0)) throw argument_error("lamina: linear_scaling_rule: warmup_epochs must be >= 0");
        scaling_ = r;
        scaling_on_ = true;
        return *this;
    }
    /// The factor the linear scaling rule gives after warm-up for `batch` samples per rank
    /// (1 when the rule is off).
    double learning_rate_scale(std::size_t batch) const noexcept {
        return scaling_on_ ? static_cast<double>(batch) * ranks_per_update() / static_cast<double>(scaling_.base_batch)
                           : 1.0;
    }
    /// The ranks whose batches make one update: ranks(), or with comm::hybrid a group's.
    int ranks_per_update() const noexcept {
        if constexpr (optimizer_on_servers) return session_.ranks_per_update();
        else return ranks();
    }
    /// Makes every rank hold rank 0's parameters, running state, optimizer state and position
    /// (collective). run() does it at its start and train_batch() before its first step and
    /// after set_position (a checkpoint load); call it after loading a checkpoint on some ranks only.
    void synchronize() {
        if constexpr (distributed) {
            auto& c = net_.context();
            std::vector<T> p = net_.get_parameters();
            session_.broadcast(p);
            net_.set_parameters(p);
            if constexpr (Model::state_count > 0) {
                std::vector<T> st = net_.get_state();
                session_.broadcast(st);
                net_.set_state(st);
            }
            auto opt = opt_state_.save(c);
            for (auto& entry : opt) session_.broadcast(entry.second);
            std::uint64_t pos[6] = {epoch_, step_, shuffle_seed_, net_.seed_value(), opt_state_.steps(), skipped_};
            session_.broadcast(pos, sizeof pos);
            opt_state_.load(c, opt, pos[4]);
            epoch_ = static_cast<std::size_t>(pos[0]);
            step_ = pos[1];
            shuffle_seed_ = pos[2];
            if (pos[3] != net_.seed_value()) net_.restore_seed(pos[3]);
            skipped_ = pos[5];
        }
        synchronized_ = true;
    }

    /// comm::hybrid, after run(): every rank gets the servers' optimizer state (each fusion
    /// bucket's from the server that owns it) and their step count, so that a checkpoint written
    /// now holds it (collective over the world). Nothing to do for other communicators.
    void gather_optimizer_state() {
        if constexpr (optimizer_on_servers) {
            auto& c = net_.context();
            auto st = opt_state_.save(c);
            for (auto& entry : st) session_.collect_shards(entry.second);
            const std::uint64_t steps = session_.max_over_world(opt_state_.steps());
            opt_state_.load(c, st, steps);
            state_gathered_ = true;
        }
    }
    /// Whether optimizer_state_ref() holds the state training uses (false with comm::hybrid
    /// until gather_optimizer_state(), and again after the next run()).
    bool optimizer_state_current() const noexcept { return !optimizer_on_servers || state_gathered_; }

    /// Trains `e.count` more epochs on `data` in batches of `b.size` samples (the last batch
    /// of an epoch may be smaller), shuffling every epoch.
    template <class... Callbacks>
    void run(dataset_view<T> data, epochs e, batch b, Callbacks&&... callbacks) {
        check_data(data, "run");
        check_targets(data, nullptr, data.size(), "run");
        if (b.size == 0) throw argument_error("lamina: batch size must be positive");
        std::size_t samples = data.size();  // this rank's samples per epoch
        if constexpr (distributed) {
            const std::uint64_t v[5] = {data.size(), b.size, e.count, static_cast<std::uint64_t>(sampler_.mode()),
                                        sampler_.every()};
            const char* names[5] = {"the dataset size", "the batch size", "the number of epochs", "the sampling mode",
                                    "the sampler's reshuffle period"};
            session_.agree(v, names, 5, "run()");
            if constexpr (optimizer_on_servers) {
                const char* which = nullptr;
                (refuse_checkpoints(callbacks, which), ...);
                if (which) throw argument_error(which);
                // Later runs keep the servers' optimizer state (world rank 0's is not stepped).
                state_gathered_ = false;
                if (!synchronized_) synchronize();
                if (session_.is_server()) {
                    net_.plan(1);  // the gradient buffer the groups' gradients are received into
                    auto& c = net_.context();
                    T* w = net_.parameters();
                    const T* g = net_.gradients();
                    session_.serve([&](std::size_t k, double lr) { opt_state_.step_bucket(k, c, w, g, lr); });
                    epoch_ += e.count;
                    return;
                }
            } else {
                synchronize();
            }
            samples = sampler_.samples_per_rank(data.size(), static_cast<std::size_t>(ranks()));
        }
        std::size_t bs = std::min(b.size, samples);
        std::size_t steps_per_epoch = (samples + bs - 1) / bs;
        steps_per_epoch_ = steps_per_epoch;
        prepare(bs, data.size());  // order_ holds data.size() >= samples indices (step_on must not grow it)
        std::size_t last = epoch_ + e.count;
        auto run_start = std::chrono::steady_clock::now();
        std::size_t steps_this_run = 0, total_run_steps = e.count * steps_per_epoch;
        // comm::hybrid: an error leaving the epochs tells the servers to stop waiting for this group.
        [[maybe_unused]] const detail::abandon_on_error<session_type, optimizer_on_servers> abandon{session_};
        for (; epoch_ < last;) {
            if constexpr (distributed)
                sampler_.order(order_.data(), data.size(), epoch_, static_cast<std::size_t>(rank()),
                               static_cast<std::size_t>(ranks()), bs, shuffle_seed_);
            else
                shuffle(data.size(), epoch_);
            (call_epoch_begin(callbacks), ...);
            auto t0 = std::chrono::steady_clock::now();
            double loss_sum = 0;
            std::size_t seen = 0;
            step_info info;
            info.epoch = epoch_;
            info.epochs_total = last;
            info.steps_per_epoch = steps_per_epoch;
            // A run resumed from a mid-epoch checkpoint skips the batches already done.
            std::size_t first = 0;
            if (step_ > epoch_ * steps_per_epoch && step_ < (epoch_ + 1) * steps_per_epoch)
                first = static_cast<std::size_t>(step_ - epoch_ * steps_per_epoch);
            for (std::size_t s = first; s < steps_per_epoch; ++s) {
                std::size_t lo = s * bs, hi = std::min(samples, lo + bs);
                const schedule::clock clk{step_, steps_per_epoch};
                double lr = sched_(opt_.lr, clk);
                if (scaling_on_) lr *= scaling_factor(clk, bs);
                step_in_epoch_ = s + 1;
                double l = step_on(data, order_.data() + lo, hi - lo, lr);
                if (std::isfinite(l) || non_finite_ == non_finite::keep_going) {
                    loss_sum += l * static_cast<double>(hi - lo);
                    seen += hi - lo;
                }
                ++steps_this_run;
                double el = seconds_since(t0);
                info.step_in_epoch = s + 1;
                info.global_step = step_;
                info.loss = l;
                info.epoch_loss = seen ? loss_sum / static_cast<double>(seen) : l;
                info.skipped_steps = skipped_;
                info.learning_rate = lr;
                info.elapsed_seconds = el;
                info.images_per_second = el > 0 ? static_cast<double>(seen) * ranks() / el : 0;  // global
                double run_el = seconds_since(run_start);
                info.eta_seconds = run_el / static_cast<double>(steps_this_run) *
                                   static_cast<double>(total_run_steps - steps_this_run);
                (call_step_end(callbacks, info), ...);
            }
            step_in_epoch_ = 0;
            ++epoch_;
            (call_epoch_end(callbacks, info), ...);
        }
        if constexpr (optimizer_on_servers) session_.finish_run();
    }

    /// One optimisation step on `count` samples of `data` picked by `indices` (host array).
    /// Returns the batch's mean loss. Checks the data's shapes, the indices and the batch's
    /// targets as run() and evaluate() do, and applies the non-finite policy.
    double train_batch(dataset_view<T> data, const std::size_t* indices, std::size_t count, double lr) {
        check_data(data, "train_batch");
        if (count == 0) throw argument_error("lamina: train_batch: the batch is empty (count 0)");
        if (!indices) throw argument_error("lamina: train_batch: null index array");
        for (std::size_t i = 0; i < count; ++i)
            if (indices[i] >= data.size())
                throw argument_error("lamina: train_batch: index " + std::to_string(indices[i]) + " (batch position " +
                                     std::to_string(i) + ") is outside the " + std::to_string(data.size()) + " samples");
        check_targets(data, indices, count, "train_batch");
        if constexpr (optimizer_on_servers)
            throw argument_error("lamina: train_batch: comm::hybrid trains with run() only (its servers serve inside run())");
        step_in_epoch_ = 0;
        if constexpr (distributed)
            if (!synchronized_) synchronize();
        return step_on(data, indices, count, lr);
    }

    /// Mean loss and (for classification) accuracy on `data`, in inference mode. Distributed:
    /// every rank passes the same dataset, evaluates its contiguous part of it, and gets the
    /// metrics of the whole dataset.
    evaluation evaluate(dataset_view<T> data, batch b = batch{256}) {
        check_data(data, "evaluate");
        check_targets(data, nullptr, data.size(), "evaluate");
        evaluation ev;
        std::size_t first = 0, end = data.size();
        if constexpr (optimizer_on_servers)
            if (session_.is_server()) return ev;  // evaluation is the workers' (communicators/hybrid.hpp)
        if constexpr (distributed) {
            const auto r = static_cast<std::size_t>(rank()), n = static_cast<std::size_t>(ranks());
            first = distributed_sampler::shard_begin(data.size(), r, n);
            end = distributed_sampler::shard_begin(data.size(), r + 1, n);
        } else if (data.size() == 0) {
            return ev;
        }
        double loss_sum = 0;
        std::size_t correct = 0;
        if (end > first) evaluate_range(data, first, end, b, loss_sum, correct);
        double totals[3] = {loss_sum, static_cast<double>(correct), static_cast<double>(end - first)};
        if constexpr (distributed) session_.sum(totals, 3);
        if (totals[2] == 0) return ev;
        ev.samples = data.size();
        ev.loss = totals[0] / totals[2];
        ev.accuracy = parts::has_classifier ? totals[1] / totals[2] : 0.0;
        return ev;
    }

    std::size_t steps_per_epoch() const noexcept { return steps_per_epoch_; }

private:
    /// Sums of the loss and correct predictions over samples [first, end).
    void evaluate_range(const dataset_view<T>& data, std::size_t first, std::size_t end, batch b, double& loss_sum,
                        std::size_t& correct) {
        std::size_t bs = std::min(b.size ? b.size : 256, end - first);
        prepare(bs, data.size(), false);
        std::vector<std::size_t> idx(bs);
        std::vector<std::int32_t> predicted(bs);
        auto& c = net_.context();
        for (std::size_t lo = first; lo < end; lo += bs) {
            std::size_t n = std::min(bs, end - lo);
            for (std::size_t i = 0; i < n; ++i) idx[i] = lo + i;
            gather(data, idx.data(), n);
            net_.forward_infer(x_dev(), n);
            loss_sum += apply_losses(n, false) * static_cast<double>(n);
            if constexpr (parts::has_classifier) {
                constexpr std::size_t K = parts::classifier;
                backend::argmax_rows(c, net_.infer_output(K), argmax_dev_.data(), n, Model::output_sizes[K]);
                backend::download(c, predicted.data(), static_cast<const std::int32_t*>(argmax_dev_.data()), n);
                for (std::size_t i = 0; i < n; ++i)
                    if (predicted[i] == static_cast<std::int32_t>(data.target(lo + i)[parts::template target_offset<K>]))
                        ++correct;
            }
        }
    }

    /// The step itself, on data already validated.
    double step_on(const dataset_view<T>& data, const std::size_t* indices, std::size_t count, double lr) {
        prepare(count, data.size());
        gather(data, indices, count);
        if constexpr (distributed) return distributed_step(count, lr);
        auto& c = net_.context();
        net_.forward_train(x_dev(), count, step_);
        const double l = apply_losses(count, true) + net_.added_loss();
        if (!std::isfinite(l)) {
            if (non_finite_ == non_finite::stop) throw diverged(l);
            if (non_finite_ == non_finite::skip_batch) {
                ++skipped_;
                ++step_;
                return l;
            }
        } else {
            last_finite_loss_ = l;
            last_finite_step_ = step_;
            has_finite_loss_ = true;
        }
        net_.backward();
        opt_state_.step(c, net_.parameters(), net_.gradients(), net_.parameter_segments(), lr);
        ++step_;
        return l;
    }

    /// A data-parallel step: backward hands each gradient to the session as it is final, the
    /// session sums the buckets over the ranks, and the optimizer updates each bucket when its
    /// sum has arrived. The loss deciding the non-finite policy is the mean over the ranks, so
    /// every rank decides the same.
    double distributed_step(std::size_t count, double lr) {
        auto& c = net_.context();
        {
            batch_statistics_scope sync_bn{session_.statistics_reducer()};
            net_.forward_train(x_dev(), count, step_);
            const double l = apply_losses(count, true) + net_.added_loss();
            const double scale = session_.loss_gradient_scale();
            if (scale != 1.0)
                for (std::size_t k = 0; k < Model::outputs; ++k)
                    backend::scale(c, count * Model::output_sizes[k], static_cast<T>(scale), net_.output_gradient(k));
            metrics_[0] = l * static_cast<double>(count);
            metrics_[1] = static_cast<double>(count);
            session_.begin_step(metrics_, 2);
            net_.backward(session_.sink());
        }
        session_.end_backward();
        session_.finish_metrics();
        const double l = metrics_[0] / metrics_[1];
        if (!std::isfinite(l)) {
            if (non_finite_ != non_finite::keep_going) {
                session_.drain();
                if (non_finite_ == non_finite::stop) throw diverged(l);
                ++skipped_;
                ++step_;
                return l;
            }
        } else {
            last_finite_loss_ = l;
            last_finite_step_ = step_;
            has_finite_loss_ = true;
        }
        T* w = net_.parameters();
        const T* g = net_.gradients();
        if constexpr (optimizer_on_servers) {
            if (session_.updates_on_servers()) {
                session_.complete_remote(step_, lr);
                ++step_;
                return l;
            }
        }
        if constexpr (steps_by_bucket) {
            session_.complete([&](std::size_t k) { opt_state_.step_bucket(k, c, w, g, lr); });
        } else {
            session_.complete([](std::size_t) {});
            opt_state_.step(c, w, g, net_.parameter_segments(), lr);
        }
        ++step_;
        return l;
    }

    double scaling_factor(const schedule::clock& clk, std::size_t bs) const {
        const double k = learning_rate_scale(bs);
        const double t = clk.epoch();
        if (scaling_.warmup_epochs <= 0 || t >= scaling_.warmup_epochs) return k;
        return 1.0 + (k - 1.0) * t / scaling_.warmup_epochs;
    }

    static session_type make_session(const Comm& comm, Model& net) {
        if constexpr (distributed) return session_type(comm, net);
        else return (void)comm, (void)net, session_type{};
    }
    static optimizer_state make_state(const Optimizer& opt, const session_type& session, const Model& net) {
        if constexpr (steps_by_bucket) return optimizer_state(opt, session.plan(), net.parameter_segments());
        else return (void)session, (void)net, optimizer_state(opt, Model::parameter_count);
    }

    /// The weighted sum of the losses on the last forward (training or inference); each loss
    /// writes its weighted gradient into its output's gradient buffer.
    double apply_losses(std::size_t count, bool training) {
        return apply_losses(count, training, std::make_index_sequence<parts::count>{});
    }
    template <std::size_t... K>
    double apply_losses(std::size_t count, bool training, std::index_sequence<K...>) {
        return (0.0 + ... + apply_loss<K>(count, training));
    }
    template <std::size_t K>
    double apply_loss(std::size_t count, bool training) {
        auto& c = net_.context();
        const std::size_t out = Model::output_sizes[K];
        const T* y = training ? net_.output(K) : net_.infer_output(K);
        std::size_t before = 0;
        for (std::size_t j = 0; j != K; ++j) before += Model::output_sizes[j];  // != : nvcc warns on j < 0
        T* grad = training ? net_.output_gradient(K) : eval_grad_.data() + before * capacity_;
        const T* t = t_dev() + parts::template target_offset<K> * capacity_;
        const double l = static_cast<double>(
            parts::template loss<K>(loss_).template operator()<backend, T>(c, y, t, grad, loss_rows_.data(), count, out));
        const double w = parts::template weight<K>(loss_);
        if (w != 1.0) backend::scale(c, count * out, static_cast<T>(w), grad);
        return w * l;
    }

    numeric_error diverged(double l) const {
        std::string where = "global step " + std::to_string(step_);
        if (step_in_epoch_)
            where = "epoch " + std::to_string(epoch_ + 1) + ", step " + std::to_string(step_in_epoch_) + " of " +
                    std::to_string(steps_per_epoch_) + " (" + where + ")";
        std::string last = has_finite_loss_ ? "the last finite loss was " + std::to_string(last_finite_loss_) +
                                                  " at global step " + std::to_string(last_finite_step_)
                                            : "no step had a finite loss yet";
        return numeric_error("lamina: training diverged: the loss is " + std::to_string(l) + " at " + where + "; " +
                             last + ". The parameters were not updated by this step. Lower the learning rate, check "
                             "the inputs for NaN/Inf, or choose trainer::on_non_finite(non_finite::skip_batch)");
    }

    static double seconds_since(std::chrono::steady_clock::time_point t0) {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }

    void check_data(const dataset_view<T>& d, const char* where) const {
        if (d.size() && d.sample_size != Model::input_size)
            throw shape_error(std::string("lamina: ") + where + ": samples have " + std::to_string(d.sample_size) +
                              " values, the network input " + Model::input_shape::str() + " takes " +
                              std::to_string(Model::input_size));
        std::size_t want = parts::total_target_size;
        if (d.size() && d.target_size != want)
            throw shape_error(std::string("lamina: ") + where + ": targets have " + std::to_string(d.target_size) +
                              " values per sample, loss " + Loss::name() + " on output " + Model::output_shape::str() +
                              " needs " + std::to_string(want));
    }
    /// Class labels must be whole numbers in 0..outputs-1 (a NaN, 2.5, -1 or 10 of 10 classes is
    /// rejected before any kernel sees it); regression targets must be finite. `idx` selects
    /// the samples (null: samples 0..n-1).
    void check_targets(const dataset_view<T>& d, const std::size_t* idx, std::size_t n, const char* where) const {
        check_targets(d, idx, n, where, std::make_index_sequence<parts::count>{});
    }
    template <std::size_t... K>
    void check_targets(const dataset_view<T>& d, const std::size_t* idx, std::size_t n, const char* where,
                       std::index_sequence<K...>) const {
        (check_part_targets<K>(d, idx, n, where), ...);
    }
    template <std::size_t K>
    void check_part_targets(const dataset_view<T>& d, const std::size_t* idx, std::size_t n, const char* where) const {
        constexpr std::size_t off = parts::template target_offset<K>, size = parts::template target_size<K>;
        constexpr std::size_t classes = Model::output_sizes[K];
        auto head = [] { return parts::count > 1 ? " (output " + std::to_string(K) + ")" : std::string(); };
        for (std::size_t k = 0; k < n; ++k) {
            const std::size_t i = idx ? idx[k] : k;
            if constexpr (std::decay_t<typename parts::template loss_type<K>>::classification) {
                T t = d.target(i)[off];
                if (!(t >= T(0)) || t >= static_cast<T>(classes) || t != std::floor(t))
                    throw shape_error(std::string("lamina: ") + where + ": sample " + std::to_string(i) +
                                      " has class label " + std::to_string(static_cast<double>(t)) + head() +
                                      ", not a whole number in 0.." + std::to_string(classes - 1));
            } else {
                for (std::size_t j = 0; j < size; ++j)
                    if (!std::isfinite(static_cast<double>(d.target(i)[off + j])))
                        throw shape_error(std::string("lamina: ") + where + ": sample " + std::to_string(i) +
                                          " has a non-finite target value " +
                                          std::to_string(static_cast<double>(d.target(i)[off + j])) + head() +
                                          " at position " + std::to_string(off + j));
            }
        }
    }

    /// Plans every buffer for batches of up to `bs` samples (once): the model's training
    /// buffers, or for evaluation only its inference buffers.
    void prepare(std::size_t bs, std::size_t n, bool training = true) {
        if (training) net_.plan(bs);
        else net_.plan_inference(bs);
        if (bs > capacity_) {
            std::size_t ts = parts::total_target_size;
            stage_x_.assign(bs * Model::input_size, T(0));
            stage_t_.assign(bs * ts, T(0));
            if constexpr (!backend::host_accessible) {
                x_buf_.allocate(bs * Model::input_size);
                t_buf_.allocate(bs * ts);
            }
            loss_rows_.allocate(bs);
            argmax_dev_.allocate(bs);
            std::size_t outs = 0;
            for (std::size_t s : Model::output_sizes) outs += s;
            eval_grad_.allocate(bs * outs);  // evaluation's loss gradients (not used)
            capacity_ = bs;
        }
        if (order_.size() < n) order_.resize(n);
    }
    T* x_dev() {
        if constexpr (backend::host_accessible) return stage_x_.data();
        else return x_buf_.data();
    }
    T* t_dev() {
        if constexpr (backend::host_accessible) return stage_t_.data();
        else return t_buf_.data();
    }
    /// Copies the chosen samples into the staging buffers (and to the device at the edge).
    /// Targets are staged output by output: part K's rows start at target_offset<K> * capacity.
    void gather(const dataset_view<T>& d, const std::size_t* idx, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i)
            std::copy(d.sample(idx[i]), d.sample(idx[i]) + d.sample_size, stage_x_.data() + i * d.sample_size);
        gather_targets(d, idx, n, std::make_index_sequence<parts::count>{});
        if constexpr (!backend::host_accessible) {
            backend::upload(net_.context(), x_buf_.data(), stage_x_.data(), n * d.sample_size);
            backend::upload(net_.context(), t_buf_.data(), stage_t_.data(), capacity_ * parts::total_target_size);
        }
    }
    template <std::size_t... K>
    void gather_targets(const dataset_view<T>& d, const std::size_t* idx, std::size_t n, std::index_sequence<K...>) {
        (gather_part<K>(d, idx, n), ...);
    }
    template <std::size_t K>
    void gather_part(const dataset_view<T>& d, const std::size_t* idx, std::size_t n) {
        constexpr std::size_t off = parts::template target_offset<K>, ts = parts::template target_size<K>;
        T* to = stage_t_.data() + off * capacity_;
        for (std::size_t i = 0; i < n; ++i) std::copy(d.target(idx[i]) + off, d.target(idx[i]) + off + ts, to + i * ts);
    }
    /// Fisher-Yates with the counter-based RNG: the permutation of epoch e depends only on
    /// (shuffle seed, e), so a resumed run shuffles exactly like an uninterrupted one.
    void shuffle(std::size_t n, std::size_t epoch) {
        distributed_sampler::permutation(order_.data(), n, shuffle_seed_, epoch);
    }

    /// Sets `which` to the reason when `cb` would write checkpoints of a trainer whose optimizer
    /// state lives on servers.
    template <class C>
    static void refuse_checkpoints(const C& cb, const char*& which) {
        if constexpr (detail::writes_checkpoints<std::decay_t<C>>::value)
            if (cb.enabled())
                which = "lamina: run(): comm::hybrid cannot write checkpoints during a run: the optimizer state lives "
                        "sharded on the parameter servers (communicators/hybrid.hpp); pass checkpoint_every an empty "
                        "prefix, and after run() call gather_optimizer_state() on every rank and save_checkpoint on rank 0";
    }
    template <class C>
    bool runs_here() const noexcept {
        if constexpr (detail::root_only_callback<std::decay_t<C>>::value) return is_root();
        else return true;
    }
    template <class C>
    void call_epoch_begin(C& cb) {
        if constexpr (has_epoch_begin<C>::value)
            if (runs_here<C>()) cb.on_epoch_begin(*this);
    }
    template <class C>
    void call_step_end(C& cb, const step_info& info) {
        if constexpr (has_step_end<C>::value)
            if (runs_here<C>()) cb.on_step_end(*this, info);
    }
    template <class C>
    void call_epoch_end(C& cb, const step_info& info) {
        if constexpr (has_epoch_end<C>::value)
            if (runs_here<C>()) cb.on_epoch_end(*this, info);
    }
    template <class C, class = void>
    struct has_epoch_begin : std::false_type {};
    template <class C>
    struct has_epoch_begin<C, std::void_t<decltype(std::declval<C&>().on_epoch_begin(std::declval<trainer&>()))>>
        : std::true_type {};
    template <class C, class = void>
    struct has_step_end : std::false_type {};
    template <class C>
    struct has_step_end<C, std::void_t<decltype(std::declval<C&>().on_step_end(std::declval<trainer&>(),
                                                                                std::declval<const step_info&>()))>>
        : std::true_type {};
    template <class C, class = void>
    struct has_epoch_end : std::false_type {};
    template <class C>
    struct has_epoch_end<C, std::void_t<decltype(std::declval<C&>().on_epoch_end(std::declval<trainer&>(),
                                                                                  std::declval<const step_info&>()))>>
        : std::true_type {};

    Model& net_;
    Loss loss_;
    Optimizer opt_;
    Schedule sched_;
    Comm comm_;
    session_type session_;  // before opt_state_: a bucketed state is built from its fusion plan
    optimizer_state opt_state_;
    std::uint64_t shuffle_seed_;
    std::size_t epoch_ = 0;
    std::uint64_t step_ = 0;
    std::size_t steps_per_epoch_ = 0;
    std::size_t capacity_ = 0;
    std::size_t step_in_epoch_ = 0;  // 1-based inside run(), 0 outside (for messages)
    non_finite non_finite_ = non_finite::stop;
    std::uint64_t skipped_ = 0;
    double last_finite_loss_ = 0;
    std::uint64_t last_finite_step_ = 0;
    bool has_finite_loss_ = false;
    bool synchronized_ = false;
    bool state_gathered_ = false;  // comm::hybrid: optimizer state gathered from the servers
    distributed_sampler sampler_;
    linear_scaling_rule scaling_;
    bool scaling_on_ = false;
    double metrics_[2] = {0, 0};
    std::vector<T> stage_x_, stage_t_;
    std::vector<std::size_t> order_;
    typename backend::template buffer<T> x_buf_, t_buf_, loss_rows_, eval_grad_;
    typename backend::template buffer<std::int32_t> argmax_dev_;
};

template <class Model, class Loss, class Optimizer>
trainer(Model&, Loss, Optimizer) -> trainer<Model, Loss, Optimizer>;
template <class Model, class Loss, class Optimizer, class Schedule,
          std::enable_if_t<!comm::is_communicator<Schedule>::value, int> = 0>
trainer(Model&, Loss, Optimizer, Schedule) -> trainer<Model, Loss, Optimizer, Schedule>;
template <class Model, class Loss, class Optimizer, class Comm,
          std::enable_if_t<comm::is_communicator<Comm>::value, int> = 0>
trainer(Model&, Loss, Optimizer, Comm) -> trainer<Model, Loss, Optimizer, schedule::constant, Comm>;
template <class Model, class Loss, class Optimizer, class Schedule, class Comm>
trainer(Model&, Loss, Optimizer, Schedule, Comm) -> trainer<Model, Loss, Optimizer, Schedule, Comm>;

}  // namespace lamina
// ---- end include/lamina/train/trainer.hpp ----

// ---- begin include/lamina/train/progress_bar.hpp ----
// lamina: a live progress line (epoch, step, loss, images/s, ETA) on a terminal; plain lines,
// one per epoch, when the output is not a terminal (CI logs, files).


#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif


namespace lamina {

class progress_bar {
public:
    static constexpr bool root_only = true;  // a distributed trainer prints from rank 0 only
    explicit progress_bar(std::FILE* out = stdout) : out_(out) {
#if defined(__unix__) || defined(__APPLE__)
        tty_ = isatty(fileno(out)) != 0;
#endif
    }
    /// Forces the plain (non-terminal) format; used by tests.
    progress_bar& plain() {
        tty_ = false;
        return *this;
    }

    template <class Trainer>
    void on_step_end(Trainer&, const step_info& i) {
        if (!tty_) return;
        // Redraw at most ~10 times a second: printing is slow next to a small step.
        double now = i.elapsed_seconds;
        if (i.step_in_epoch != i.steps_per_epoch && now - last_draw_ < 0.1 && i.step_in_epoch > 1) return;
        last_draw_ = now;
        std::fprintf(out_, "\r%s", format(i).c_str());
        std::fflush(out_);
    }
    template <class Trainer>
    void on_epoch_end(Trainer&, const step_info& i) {
        std::fprintf(out_, tty_ ? "\r%s\n" : "%s\n", format(i).c_str());
        std::fflush(out_);
        last_draw_ = -1;
    }

    static std::string format(const step_info& i) {
        char buf[320];
        int width = 0;
        for (std::size_t n = i.steps_per_epoch; n && width < 12; n /= 10) ++width;
        std::snprintf(buf, sizeof buf, "epoch %zu/%zu  step %*zu/%zu  loss %.4f  lr %.3g  %.0f img/s  ETA %s",
                      i.epoch + 1, i.epochs_total, width, i.step_in_epoch, i.steps_per_epoch, i.epoch_loss,
                      i.learning_rate, i.images_per_second, duration(i.eta_seconds).c_str());
        return buf;
    }
    static std::string duration(double s) {
        char buf[32];
        auto t = static_cast<long>(s + 0.5);
        if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
        else std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
        return buf;
    }

private:
    std::FILE* out_;
    bool tty_ = false;
    double last_draw_ = -1;
};

}  // namespace lamina
// ---- end include/lamina/train/progress_bar.hpp ----

// ---- begin include/lamina/train/csv_log.hpp ----
// lamina: writes one CSV row of metrics per epoch (epoch, step, loss, lr, images/s, and the
// value of any extra metric callbacks such as held-out accuracy).



namespace lamina {

class csv_log {
public:
    explicit csv_log(std::string path) : path_(std::move(path)) {}
    csv_log(const csv_log&) = delete;
    csv_log(csv_log&& o) noexcept : path_(std::move(o.path_)), file_(o.file_), extra_(std::move(o.extra_)) { o.file_ = nullptr; }
    ~csv_log() {
        if (file_) std::fclose(file_);
    }

    /// Adds a column computed at each epoch end, e.g. held-out accuracy.
    template <class Trainer, class F>
    csv_log& column(std::string name, F f) {
        extra_.emplace_back(std::move(name), [f](void* t) { return f(*static_cast<Trainer*>(t)); });
        return *this;
    }

    template <class Trainer>
    void on_epoch_end(Trainer& t, const step_info& i) {
        if (path_.empty()) return;  // an empty path disables the log
        // A distributed trainer: every rank computes the columns (one may be collective, e.g.
        // an evaluate()), rank 0 writes.
        values_.clear();
        for (auto& e : extra_) values_.push_back(e.second(static_cast<void*>(&t)));
        if constexpr (has_is_root<Trainer>::value)
            if (!t.is_root()) return;
        if (!file_) {
            bool exists = false;
            if (std::FILE* f = std::fopen(path_.c_str(), "r")) {
                exists = true;
                std::fclose(f);
            }
            file_ = std::fopen(path_.c_str(), "a");
            if (!file_) throw io_error("lamina: csv_log cannot open '" + path_ + "' for writing");
            if (!exists) {
                std::fprintf(file_, "epoch,global_step,loss,learning_rate,images_per_second");
                for (auto& e : extra_) std::fprintf(file_, ",%s", e.first.c_str());
                std::fprintf(file_, "\n");
            }
        }
        std::fprintf(file_, "%zu,%llu,%.6g,%.6g,%.1f", i.epoch + 1, static_cast<unsigned long long>(i.global_step),
                     i.epoch_loss, i.learning_rate, i.images_per_second);
        for (double v : values_) std::fprintf(file_, ",%.6g", v);
        std::fprintf(file_, "\n");
        if (std::fflush(file_) != 0) throw io_error("lamina: csv_log failed writing '" + path_ + "'");
    }

private:
    template <class Tr, class = void>
    struct has_is_root : std::false_type {};
    template <class Tr>
    struct has_is_root<Tr, std::void_t<decltype(std::declval<const Tr&>().is_root())>> : std::true_type {};

    std::string path_;
    std::FILE* file_ = nullptr;
    std::vector<std::pair<std::string, std::function<double(void*)>>> extra_;
    std::vector<double> values_;  // this epoch's extra columns
};

/// Runs f(trainer, info) at every epoch end: the simplest custom callback.
template <class F>
struct at_epoch_end {
    F f;
    template <class Trainer>
    void on_epoch_end(Trainer& t, const step_info& i) { f(t, i); }
};
template <class F>
at_epoch_end(F) -> at_epoch_end<F>;

}  // namespace lamina
// ---- end include/lamina/train/csv_log.hpp ----

// ---- begin include/lamina/train/snapshot_ensemble.hpp ----
// lamina: an ensemble of snapshots of one classifier (its parameters and running state at
// chosen moments of one training run), predicting the average of the snapshots' softmax
// outputs. The Collapsed Ensemble (train/collapsed_ensemble.hpp) fills one at every collapse.
//
//   lm::snapshot_ensemble<decltype(net)> ens{lm::threads{2}};
//   ens.add(net);                                   // after each cycle, say
//   auto r = ens.evaluate(test);                    // r.snapshots[k], r.ensemble: accuracy, loss
//   ens.predict_proba(x, probs, batch);             // host arrays: batch x classes probabilities
//
// The snapshots live in host memory; inference runs on a model of its own (built on first use
// with the thread count given here), into which each snapshot is loaded in turn, so the
// trained model is never touched. Softmax, averaging and the loss are computed in double:
// the ensemble's loss is -log(mean_k p_k[label]), through log-sum-exp of the snapshots'
// log-probabilities (no underflow to log 0). Argmax ties go to the lowest class, as in evaluate().



namespace lamina {

template <class Model>
class snapshot_ensemble {
public:
    using T = typename Model::value_type;
    static_assert(Model::outputs == 1, "lamina::snapshot_ensemble: the model must have one (classifier) output");
    static constexpr std::size_t classes = Model::output_size;

    struct snapshot {
        std::size_t cycle = 0;   // which cycle (or any label the caller gives)
        std::uint64_t step = 0;  // training steps done when it was taken
        std::vector<T> parameters, state;
    };
    /// evaluate()'s answer: every snapshot on its own, and the ensemble.
    struct report {
        std::vector<evaluation> snapshots;
        evaluation ensemble;
        /// The snapshot with the highest accuracy (ties: the lower loss).
        std::size_t best_snapshot() const {
            std::size_t b = 0;
            for (std::size_t k = 1; k < snapshots.size(); ++k)
                if (snapshots[k].accuracy > snapshots[b].accuracy ||
                    (snapshots[k].accuracy == snapshots[b].accuracy && snapshots[k].loss < snapshots[b].loss))
                    b = k;
            return b;
        }
    };

    explicit snapshot_ensemble(threads t = threads{}) : threads_(t) {}

    /// Keeps a copy of `net`'s parameters and running state.
    void add(const Model& net, std::size_t cycle = 0, std::uint64_t step = 0) {
        snapshot s;
        s.cycle = cycle;
        s.step = step;
        s.parameters = net.get_parameters();
        s.state = net.get_state();
        snaps_.push_back(std::move(s));
    }
    /// Keeps a snapshot given as host arrays (checked against the model's sizes).
    void add(snapshot s) {
        if (s.parameters.size() != Model::parameter_count || s.state.size() != Model::state_count)
            throw shape_error("lamina: snapshot_ensemble: a snapshot has " + std::to_string(s.parameters.size()) +
                              " parameters and " + std::to_string(s.state.size()) +
                              " running-state values, the model has " + std::to_string(Model::parameter_count) +
                              " and " + std::to_string(Model::state_count));
        snaps_.push_back(std::move(s));
    }
    std::size_t size() const noexcept { return snaps_.size(); }
    bool empty() const noexcept { return snaps_.empty(); }
    const snapshot& operator[](std::size_t k) const { return snaps_.at(k); }
    const std::vector<snapshot>& snapshots() const noexcept { return snaps_; }
    void clear() noexcept {
        snaps_.clear();
        loaded_ = npos;
    }
    /// The model snapshots are loaded into (for summaries; its parameters are the last loaded).
    Model& model() { return work(); }

    /// probs[batch x classes] = mean over the snapshots of softmax(snapshot(x)); host arrays,
    /// x is batch x Model::input_size.
    void predict_proba(const T* x, T* probs, std::size_t batch) {
        require_snapshots("predict_proba");
        check_pointers(x, probs, batch);
        acc_.assign(batch * classes, 0.0);
        for (std::size_t k = 0; k < snaps_.size(); ++k) {
            log_softmax(k, x, batch);
            for (std::size_t i = 0; i < batch * classes; ++i) acc_[i] += std::exp(logp_[i]);
        }
        const double inv = 1.0 / static_cast<double>(snaps_.size());
        for (std::size_t i = 0; i < batch * classes; ++i) probs[i] = static_cast<T>(acc_[i] * inv);
    }
    /// Softmax outputs of snapshot k alone.
    void predict_proba(std::size_t k, const T* x, T* probs, std::size_t batch) {
        require_snapshots("predict_proba");
        if (k >= snaps_.size())
            throw argument_error("lamina: snapshot_ensemble::predict_proba: snapshot " + std::to_string(k) +
                                 " of " + std::to_string(snaps_.size()));
        check_pointers(x, probs, batch);
        log_softmax(k, x, batch);
        for (std::size_t i = 0; i < batch * classes; ++i) probs[i] = static_cast<T>(std::exp(logp_[i]));
    }

    /// Accuracy and mean cross-entropy of every snapshot and of the ensemble on `data`
    /// (targets: class labels), in batches of `b.size` samples.
    report evaluate(dataset_view<T> data, batch b = batch{256}) {
        require_snapshots("evaluate");
        check_data(data);
        report r;
        r.snapshots.assign(snaps_.size(), evaluation{});
        if (data.size() == 0) return r;
        const std::size_t bs = std::min(b.size ? b.size : 256, data.size());
        const std::size_t K = snaps_.size();
        std::vector<double> loss(K, 0.0);
        std::vector<std::size_t> correct(K, 0);
        std::vector<double> lse(bs);
        double ens_loss = 0;
        std::size_t ens_correct = 0;
        const double log_k = std::log(static_cast<double>(K));
        for (std::size_t lo = 0; lo < data.size(); lo += bs) {
            const std::size_t n = std::min(bs, data.size() - lo);
            acc_.assign(n * classes, 0.0);
            std::fill(lse.begin(), lse.end(), -std::numeric_limits<double>::infinity());
            for (std::size_t k = 0; k < K; ++k) {
                log_softmax(k, data.sample(lo), n);
                for (std::size_t i = 0; i < n; ++i) {
                    const double* lp = logp_.data() + i * classes;
                    const auto y = static_cast<std::size_t>(*data.target(lo + i));
                    loss[k] -= lp[y];
                    if (argmax(lp) == y) ++correct[k];
                    lse[i] = log_add_exp(lse[i], lp[y]);
                    for (std::size_t j = 0; j < classes; ++j) acc_[i * classes + j] += std::exp(lp[j]);
                }
            }
            for (std::size_t i = 0; i < n; ++i) {
                ens_loss += log_k - lse[i];
                if (argmax(acc_.data() + i * classes) == static_cast<std::size_t>(*data.target(lo + i))) ++ens_correct;
            }
        }
        const double count = static_cast<double>(data.size());
        for (std::size_t k = 0; k < K; ++k) {
            r.snapshots[k].loss = loss[k] / count;
            r.snapshots[k].accuracy = static_cast<double>(correct[k]) / count;
            r.snapshots[k].samples = data.size();
        }
        r.ensemble.loss = ens_loss / count;
        r.ensemble.accuracy = static_cast<double>(ens_correct) / count;
        r.ensemble.samples = data.size();
        return r;
    }

private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    Model& work() {
        if (!work_) work_ = std::make_unique<Model>(seed{0}, threads_);
        return *work_;
    }
    void load(std::size_t k) {
        if (loaded_ == k) return;
        Model& m = work();
        m.set_parameters(snaps_[k].parameters);
        if constexpr (Model::state_count > 0) m.set_state(snaps_[k].state);
        loaded_ = k;
    }
    /// logp_[batch x classes] = log softmax of snapshot k's outputs on x (double).
    void log_softmax(std::size_t k, const T* x, std::size_t n) {
        load(k);
        logits_.resize(n * classes);
        logp_.resize(n * classes);
        work().predict(x, logits_.data(), n);
        for (std::size_t i = 0; i < n; ++i) {
            const T* z = logits_.data() + i * classes;
            double* lp = logp_.data() + i * classes;
            double mx = static_cast<double>(z[0]);
            for (std::size_t j = 1; j < classes; ++j) mx = std::max(mx, static_cast<double>(z[j]));
            double s = 0;
            for (std::size_t j = 0; j < classes; ++j) s += std::exp(static_cast<double>(z[j]) - mx);
            const double log_s = std::log(s);
            for (std::size_t j = 0; j < classes; ++j) lp[j] = static_cast<double>(z[j]) - mx - log_s;
        }
    }
    static double log_add_exp(double a, double b) {
        if (a == -std::numeric_limits<double>::infinity()) return b;
        if (b == -std::numeric_limits<double>::infinity()) return a;
        const double m = std::max(a, b);
        return m + std::log(std::exp(a - m) + std::exp(b - m));
    }
    static std::size_t argmax(const double* p) {
        std::size_t b = 0;
        for (std::size_t j = 1; j < classes; ++j)
            if (p[j] > p[b]) b = j;
        return b;
    }
    void require_snapshots(const char* where) const {
        if (snaps_.empty())
            throw argument_error(std::string("lamina: snapshot_ensemble::") + where + ": the ensemble has no snapshots");
    }
    static void check_pointers(const T* x, const T* probs, std::size_t batch) {
        if (batch && (!x || !probs))
            throw argument_error("lamina: snapshot_ensemble::predict_proba: null input or output array");
    }
    static void check_data(const dataset_view<T>& d) {
        if (d.size() == 0) return;
        if (d.sample_size != Model::input_size)
            throw shape_error("lamina: snapshot_ensemble::evaluate: samples have " + std::to_string(d.sample_size) +
                              " values, the network input " + Model::input_shape::str() + " takes " +
                              std::to_string(Model::input_size));
        if (d.target_size != 1)
            throw shape_error("lamina: snapshot_ensemble::evaluate: targets have " + std::to_string(d.target_size) +
                              " values per sample, a classifier's target is one class label");
        for (std::size_t i = 0; i < d.size(); ++i) {
            const T t = *d.target(i);
            if (!(t >= T(0)) || t >= static_cast<T>(classes) || t != std::floor(t))
                throw shape_error("lamina: snapshot_ensemble::evaluate: sample " + std::to_string(i) +
                                  " has class label " + std::to_string(static_cast<double>(t)) +
                                  ", not a whole number in 0.." + std::to_string(classes - 1));
        }
    }

    std::vector<snapshot> snaps_;
    threads threads_;
    std::unique_ptr<Model> work_;
    std::size_t loaded_ = npos;
    std::vector<T> logits_;
    std::vector<double> logp_, acc_;
};

}  // namespace lamina
// ---- end include/lamina/train/snapshot_ensemble.hpp ----

// ---- begin include/lamina/train/collapsed_ensemble.hpp ----
// lamina: the Collapsed Ensemble (Codreanu et al. 2017, ResNet-50 at scale). One training run
// in cycles of a cyclic polynomial schedule (schedules/cyclic.hpp: linear re-warm-up, then
// power-2 decay to zero); the last `collapse_epochs` of every cycle are its "collapse": the
// rate decays to zero while the weight decay is doubled (scaled by collapse_weight_decay_scale).
// Where a cycle ends, the collapsed model (parameters and running state) is kept; at inference
// the kept snapshots average their softmax outputs (train/snapshot_ensemble.hpp; the paper's
// averaging detail is not published, averaged softmax is the usual choice). The paper's light
// augmentation during the collapse is left to the data pipeline.
//
//   lm::schedule::cyclic_polynomial cyc;  cyc.cycle_epochs = 3; cyc.warmup_epochs = 0.5; cyc.cycles = 4;
//   lm::collapsed_ensemble<decltype(net)> ce{cyc, 1.0};          // 1-epoch collapses
//   lm::trainer fit{net, loss, lm::optim::sgd{0.1, 0.9, false, 5e-4}, ce.schedule()};
//   fit.run(train, lm::epochs{12}, lm::batch{64}, ce);          // ce is the callback
//   auto r = ce.ensemble().evaluate(test);                      // r.ensemble, r.snapshots[k]
//
// The callback sets the optimizer's weight-decay scale before every step from the training
// clock alone (on_epoch_begin and on_step_end), so a run resumed from a checkpoint collapses
// where an uninterrupted one does. Snapshots live in memory and are not part of a checkpoint:
// a resumed run holds only those taken after it resumed (snapshots() gives the host arrays to
// keep elsewhere). The trainer must run the same schedule (ce.schedule()), and its optimizer
// state must have set_weight_decay_scale (every lamina optimizer does).



namespace lamina {

namespace detail {
template <class S, class = void>
struct has_weight_decay_scale : std::false_type {};
template <class S>
struct has_weight_decay_scale<S, std::void_t<decltype(std::declval<S&>().set_weight_decay_scale(1.0))>>
    : std::true_type {};
}  // namespace detail

template <class Model>
class collapsed_ensemble {
public:
    /// `collapse_epochs`: how long each cycle's collapse lasts (its last epochs, after the
    /// warm-up); `collapse_weight_decay_scale`: the weight decay's factor meanwhile (2: doubled).
    collapsed_ensemble(schedule::cyclic_polynomial s, double collapse_epochs, double collapse_weight_decay_scale = 2.0,
                       threads t = threads{})
        : sched_(s), collapse_(collapse_epochs), scale_(collapse_weight_decay_scale), ens_(t) {
        sched_.validate();
        const double shortest = std::min(sched_.first_length(), sched_.cycle_epochs);
        if (!(collapse_ > 0) || !(collapse_ <= shortest - sched_.warmup_epochs))
            throw argument_error("lamina: collapsed_ensemble: collapse_epochs must be positive and fit in every cycle "
                                 "after its warm-up (at most " +
                                 std::to_string(shortest - sched_.warmup_epochs) + " epochs), got " +
                                 std::to_string(collapse_));
        if (!(scale_ >= 0) || !std::isfinite(scale_))
            throw argument_error("lamina: collapsed_ensemble: collapse_weight_decay_scale must be finite and >= 0, got " +
                                 std::to_string(scale_));
    }

    /// The schedule the trainer must run.
    const schedule::cyclic_polynomial& schedule() const noexcept { return sched_; }
    snapshot_ensemble<Model>& ensemble() noexcept { return ens_; }
    const snapshot_ensemble<Model>& ensemble() const noexcept { return ens_; }
    double collapse_epochs() const noexcept { return collapse_; }
    double collapse_weight_decay_scale() const noexcept { return scale_; }

    /// Whether the step at clock c belongs to a collapse (the last collapse_epochs of a cycle).
    bool collapsing(const schedule::clock& c) const {
        const auto p = sched_.at(c);
        return !p.finished && p.into >= p.length - collapse_ - 1e-9 * p.length;
    }
    /// The weight-decay scale of the step at clock c.
    double weight_decay_scale(const schedule::clock& c) const { return collapsing(c) ? scale_ : 1.0; }

    // ---- trainer callback -------------------------------------------------------------------
    template <class Trainer>
    void on_epoch_begin(Trainer& t) {
        check_trainer<Trainer>();
        apply(t, t.global_step(), t.steps_per_epoch());
    }
    template <class Trainer>
    void on_step_end(Trainer& t, const step_info& info) {
        check_trainer<Trainer>();
        const std::uint64_t done = info.global_step, spe = info.steps_per_epoch;
        if (done > 0) {
            const auto last = sched_.at(schedule::clock{done - 1, spe});
            const auto next = sched_.at(schedule::clock{done, spe});
            if (!last.finished && next.cycle != last.cycle) ens_.add(t.model(), last.cycle, done);  // a collapse ended
        }
        apply(t, done, spe);
    }

private:
    template <class Trainer>
    static void check_trainer() {
        static_assert(std::is_same_v<std::decay_t<decltype(std::declval<Trainer&>().model())>, Model>,
                      "lamina::collapsed_ensemble<Model>: the trainer trains another model type");
        static_assert(detail::has_weight_decay_scale<std::decay_t<decltype(std::declval<Trainer&>().optimizer_state_ref())>>::value,
                      "lamina::collapsed_ensemble: the optimizer state has no set_weight_decay_scale(double)");
    }
    template <class Trainer>
    void apply(Trainer& t, std::uint64_t step, std::uint64_t spe) {
        t.optimizer_state_ref().set_weight_decay_scale(weight_decay_scale(schedule::clock{step, spe ? spe : 1}));
    }

    schedule::cyclic_polynomial sched_;
    double collapse_, scale_;
    snapshot_ensemble<Model> ens_;
};

}  // namespace lamina
// ---- end include/lamina/train/collapsed_ensemble.hpp ----

// ---- begin include/lamina/io/checkpoint.hpp ----
// lamina: checkpoints. A checkpoint is one binary file:
//
//   "LAMINACK"  magic (8 bytes)
//   u32         format version (1)
//   u64         payload size in bytes
//   payload     records: u32 name length, name, u8 type (1 f32, 2 f64, 3 u64, 4 bytes),
//               u64 element count, elements (little-endian)
//   u32         CRC-32 of the payload
//
// Records: "architecture" (the layer list, input shape and scalar type, as text),
// "parameters", "state" (running statistics such as batch norm's, when the model has any),
// "optimizer" (its name), "optimizer.steps", "optimizer.<state>" tensors, "epoch", "step",
// "seed", "shuffle_seed".
//
// Loading trusts nothing in the file: every length, count and offset is checked against the
// bytes that are actually there before it is used (no arithmetic that can wrap), then the
// CRC, then every record a load needs (presence, type, element count) before anything is
// changed, so a failed load leaves the model and trainer as they were. Every message names
// the file and the field or record that is wrong. Saving is atomic (io/atomic_file.hpp) and
// refuses a model holding NaN or infinity (numeric_error), so a good checkpoint is never
// replaced by a diverged one.

#include <iostream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

// ---- begin include/lamina/io/atomic_file.hpp ----
// lamina: write a file so that a failed or killed write never destroys the previous one:
// write `path.tmp-<pid>`, flush, fsync, rename over `path`, fsync the directory. A killed
// save leaves its `path.tmp-<pid>` behind; the next successful save of the same path removes
// those whose process is gone (remove_stale_temp_files).

#include <climits>

#include <dirent.h>
#include <signal.h>
#include <sys/file.h>


namespace lamina::io {

namespace detail {
/// Test hook: called before each chunk is written with the bytes written so far; a test
/// makes it throw (an injected write failure) or kill the process midway.
inline std::function<void(std::size_t)>& write_fault_hook() {
    static std::function<void(std::size_t)> hook;
    return hook;
}
/// The pid in a directory entry named exactly `<prefix><digits>` (decimal as std::to_string
/// writes it: no sign, no leading zero, at most INT_MAX), else 0.
inline long temp_file_pid(const char* entry, const std::string& prefix) {
    if (std::strncmp(entry, prefix.c_str(), prefix.size()) != 0) return 0;
    const char* d = entry + prefix.size();
    if (*d < '1' || *d > '9') return 0;
    long pid = 0;
    for (; *d; ++d) {
        if (*d < '0' || *d > '9') return 0;
        const int digit = *d - '0';
        if (pid > (INT_MAX - digit) / 10) return 0;  // checked before it could overflow
        pid = pid * 10 + digit;
    }
    return pid;
}
}  // namespace detail

/// Removes `<path>.tmp-<pid>` files left by killed saves of `path`: only names of exactly that
/// form, only regular files, only when kill(pid, 0) fails with ESRCH (no such process here) and
/// no one holds the file's lock (write_file_atomically locks its temporary file, so a writer on
/// another host of a shared file system, whose pid means nothing here, keeps its file where the
/// file system supports flock). Best effort: errors are ignored.
inline void remove_stale_temp_files(const std::string& path) noexcept {
    try {
        const std::size_t slash = path.find_last_of('/');
        const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
        const std::string dir_prefix = slash == std::string::npos ? "" : path.substr(0, slash + 1);
        const std::string prefix = path.substr(slash == std::string::npos ? 0 : slash + 1) + ".tmp-";
        std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
        if (!d) return;
        const long self = static_cast<long>(::getpid());
        while (const dirent* e = ::readdir(d.get())) {
            const long pid = detail::temp_file_pid(e->d_name, prefix);
            if (pid <= 0 || pid == self) continue;
            if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
            const std::string file = dir_prefix + e->d_name;
            int fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
            if (fd < 0) continue;
            struct stat st;
            const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
            const bool locked = ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
            if (regular && !locked) ::unlink(file.c_str());
            ::close(fd);
        }
    } catch (...) {
        // Only std::string allocation can throw here; cleanup is never worth failing a save.
    }
}

inline void write_file_atomically(const std::string& path, const void* data, std::size_t n) {
    std::string tmp = path + ".tmp-" + std::to_string(static_cast<long>(::getpid()));
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw io_error("lamina: cannot create '" + tmp + "': " + std::strerror(errno));
    // Held until close: tells remove_stale_temp_files of other processes that this file is live.
    (void)::flock(fd, LOCK_EX | LOCK_NB);
    auto error_for = [&](const std::string& what) {
        return io_error("lamina: " + what + " '" + tmp + "' (for '" + path + "'): " + std::strerror(errno) +
                        "; the previous file is untouched");
    };
    auto p = static_cast<const char*>(data);
    std::size_t done = 0;
    const std::size_t chunk = std::size_t(1) << 20;
    try {
        while (done < n) {
            if (auto& hook = detail::write_fault_hook()) hook(done);
            std::size_t k = std::min(chunk, n - done);
            ssize_t w = ::write(fd, p + done, k);
            if (w < 0) {
                if (errno == EINTR) continue;
                throw error_for("write failed on");
            }
            done += static_cast<std::size_t>(w);
        }
        if (::fsync(fd) != 0) throw error_for("fsync failed on");
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    if (::close(fd) != 0) {
        ::unlink(tmp.c_str());
        throw io_error("lamina: closing '" + tmp + "' failed: " + std::strerror(errno));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        throw io_error("lamina: cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(e));
    }
    // Make the rename itself durable.
    std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.find_last_of('/'));
    if (dir.empty()) dir = "/";
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
    remove_stale_temp_files(path);
}

}  // namespace lamina::io
// ---- end include/lamina/io/atomic_file.hpp ----

// ---- begin include/lamina/io/crc32.hpp ----
// lamina: CRC-32 (IEEE 802.3, the zlib/PNG polynomial), to detect corrupted checkpoints.


namespace lamina::io {

inline std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t n) {
    static const auto table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    auto p = static_cast<const unsigned char*>(data);
    crc = ~crc;
    for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

inline std::uint32_t crc32(const void* data, std::size_t n) { return crc32_update(0, data, n); }

}  // namespace lamina::io
// ---- end include/lamina/io/crc32.hpp ----


namespace lamina {

namespace io {

inline constexpr char checkpoint_magic[8] = {'L', 'A', 'M', 'I', 'N', 'A', 'C', 'K'};
inline constexpr std::uint32_t checkpoint_version = 1;
/// Magic, version and payload size.
inline constexpr std::size_t checkpoint_header_size = 20;
/// The CRC-32 after the payload.
inline constexpr std::size_t checkpoint_trailer_size = 4;

enum class record_type : std::uint8_t { f32 = 1, f64 = 2, u64 = 3, bytes = 4 };

/// Name of a record type code for messages, e.g. "1 (f32)"; unknown codes are named "unknown".
inline std::string record_type_name(unsigned code) {
    const char* n = code == 1 ? "f32" : code == 2 ? "f64" : code == 3 ? "u64" : code == 4 ? "bytes" : "unknown";
    return std::to_string(code) + " (" + n + ")";
}

namespace detail {
/// Text from a file as it appears in a message: at most `limit` characters, unprintable bytes
/// as \xNN (names come from files, which may hold anything).
inline std::string printable(const std::string& s, std::size_t limit = 64) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < s.size() && i < limit; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out += static_cast<char>(c);
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0xF];
        }
    }
    if (s.size() > limit) out += "...(" + std::to_string(s.size()) + " bytes)";
    return out;
}

/// The whole file. Throws io_error naming the file when it cannot be opened or read.
inline std::vector<unsigned char> read_whole_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw io_error("lamina: cannot open checkpoint '" + path + "': " + std::strerror(errno));
    std::vector<unsigned char> bytes;
    struct stat st;
    // The size is only a hint (the file may change while it is read); reading decides.
    if (::fstat(fd, &st) == 0 && st.st_size > 0) bytes.reserve(static_cast<std::size_t>(st.st_size));
    unsigned char chunk[1 << 16];
    for (;;) {
        ssize_t k = ::read(fd, chunk, sizeof chunk);
        if (k < 0) {
            if (errno == EINTR) continue;
            const int e = errno;
            ::close(fd);
            throw io_error("lamina: cannot read checkpoint '" + path + "': " + std::strerror(e));
        }
        if (k == 0) break;
        bytes.insert(bytes.end(), chunk, chunk + k);
    }
    ::close(fd);
    return bytes;
}
}  // namespace detail

/// An in-memory checkpoint: named records.
class record_set {
public:
    struct record {
        record_type type;
        std::uint64_t count;
        std::vector<unsigned char> data;
    };

    template <class T>
    void put(const std::string& name, const std::vector<T>& v) {
        record r{type_of<T>(), v.size(), {}};
        r.data.resize(v.size() * sizeof(T));
        if (!v.empty()) std::memcpy(r.data.data(), v.data(), r.data.size());
        set(name, std::move(r));
    }
    void put_u64(const std::string& name, std::uint64_t v) { put<std::uint64_t>(name, {v}); }
    void put_string(const std::string& name, const std::string& s) {
        record r{record_type::bytes, s.size(), std::vector<unsigned char>(s.begin(), s.end())};
        set(name, std::move(r));
    }

    bool has(const std::string& name) const { return index_.count(name) != 0; }
    /// The record `name`, or nullptr when there is none.
    const record* lookup(const std::string& name) const noexcept {
        auto it = index_.find(name);
        return it == index_.end() ? nullptr : &records_[it->second];
    }
    template <class T>
    std::vector<T> get(const std::string& name, const std::string& file) const {
        const record& r = find(name, file);
        if (r.type != type_of<T>())
            throw checkpoint_error("lamina: checkpoint '" + file + "': record '" + detail::printable(name) +
                                   "' has type code " + record_type_name(unsigned(r.type)) + ", expected " +
                                   record_type_name(unsigned(type_of<T>())));
        std::vector<T> v(r.data.size() / sizeof(T));
        if (!v.empty()) std::memcpy(v.data(), r.data.data(), v.size() * sizeof(T));
        return v;
    }
    std::uint64_t get_u64(const std::string& name, const std::string& file) const {
        auto v = get<std::uint64_t>(name, file);
        if (v.size() != 1)
            throw checkpoint_error("lamina: checkpoint '" + file + "': record '" + detail::printable(name) + "' holds " +
                                   std::to_string(v.size()) + " elements, expected 1 (a scalar)");
        return v[0];
    }
    std::string get_string(const std::string& name, const std::string& file) const {
        const record& r = find(name, file);
        if (r.type != record_type::bytes)
            throw checkpoint_error("lamina: checkpoint '" + file + "': record '" + detail::printable(name) +
                                   "' has type code " + record_type_name(unsigned(r.type)) + ", expected " +
                                   record_type_name(unsigned(record_type::bytes)) + " (text)");
        return std::string(r.data.begin(), r.data.end());
    }
    std::vector<std::string> names() const {
        std::vector<std::string> n;
        for (auto& [k, i] : index_) n.push_back(k);
        return n;
    }

    /// The payload: every record, in the order they were put.
    std::vector<unsigned char> payload() const {
        std::vector<unsigned char> p;
        for (auto& [name, i] : order_) {
            const record& r = records_[i];
            append_u32(p, static_cast<std::uint32_t>(name.size()));
            p.insert(p.end(), name.begin(), name.end());
            p.push_back(static_cast<unsigned char>(r.type));
            append_u64(p, r.count);
            p.insert(p.end(), r.data.begin(), r.data.end());
        }
        return p;
    }
    /// The whole file: header, payload, CRC-32.
    std::vector<unsigned char> bytes() const {
        std::vector<unsigned char> p = payload();
        std::vector<unsigned char> file(checkpoint_magic, checkpoint_magic + 8);
        append_u32(file, checkpoint_version);
        append_u64(file, p.size());
        file.insert(file.end(), p.begin(), p.end());
        append_u32(file, crc32(p.data(), p.size()));
        return file;
    }

    /// Serialises and writes atomically.
    void save(const std::string& path) const {
        for (auto& [name, i] : order_)
            if (name.size() > std::numeric_limits<std::uint32_t>::max())
                throw argument_error("lamina: checkpoint record name of " + std::to_string(name.size()) +
                                     " bytes is longer than the format's 32-bit name length");
        const std::vector<unsigned char> file = bytes();
        write_file_atomically(path, file.data(), file.size());
    }

    /// Reads and validates a checkpoint file (see parse).
    static record_set load(const std::string& path) {
        const std::vector<unsigned char> f = detail::read_whole_file(path);
        return parse(f.data(), f.size(), path);
    }

    /// Parses the `n` bytes of a checkpoint file at `f`; `name` names it in messages. Checks
    /// magic, version, payload size, CRC and every record's name length, type and element
    /// count against the bytes present; throws checkpoint_error saying which field is wrong.
    /// Never reads outside [f, f + n) and never allocates more than n bytes per record.
    static record_set parse(const unsigned char* f, std::size_t n, const std::string& name) {
        const std::string where = "lamina: checkpoint '" + name + "'";
        if (n < 8 || std::memcmp(f, checkpoint_magic, 8) != 0)
            throw checkpoint_error("lamina: '" + name + "' is not a lamina checkpoint (bad magic number)");
        if (n < checkpoint_header_size)
            throw checkpoint_error(where + " is truncated: " + std::to_string(n) +
                                   " bytes, the header alone is 20 (magic, version, payload size)");
        const std::uint32_t version = read_u32(f + 8);
        if (version != checkpoint_version)
            throw checkpoint_error(where + " has format version " + std::to_string(version) +
                                   ", this lamina reads version " + std::to_string(checkpoint_version));
        // The payload size field is compared with what the file holds, never added to
        // anything: a huge value must not wrap into a plausible one.
        const std::uint64_t announced = read_u64(f + 12);
        const std::size_t body = n - checkpoint_header_size;  // payload + CRC actually present
        const bool room = body >= checkpoint_trailer_size;
        const std::size_t payload_room = room ? body - checkpoint_trailer_size : 0;
        if (!room || announced > payload_room)
            throw checkpoint_error(where + " is truncated: the file holds " + std::to_string(n) +
                                   " bytes, its header's payload size field announces " + std::to_string(announced) +
                                   " payload bytes (plus the 20-byte header and the 4-byte CRC-32), only " +
                                   std::to_string(payload_room) + " payload bytes are there");
        if (announced < payload_room)
            throw checkpoint_error(where + " is padded: the file holds " + std::to_string(n) +
                                   " bytes, its header's payload size field announces " + std::to_string(announced) +
                                   " payload bytes (plus the 20-byte header and the 4-byte CRC-32): " +
                                   std::to_string(payload_room - static_cast<std::size_t>(announced)) +
                                   (payload_room - announced == 1 ? " unexpected byte" : " unexpected bytes"));
        const std::size_t psize = payload_room;
        const unsigned char* payload = f + checkpoint_header_size;
        const std::uint32_t stored = read_u32(payload + psize), actual = crc32(payload, psize);
        if (stored != actual)
            throw checkpoint_error(where + " is corrupt: CRC-32 mismatch (stored " + std::to_string(stored) +
                                   ", computed " + std::to_string(actual) + ")");
        record_set rs;
        std::size_t pos = 0, index = 0;
        while (pos < psize) {
            const std::size_t start = pos;
            std::size_t left = psize - pos;
            auto malformed = [&](const std::string& what) {
                return checkpoint_error(where + " has a malformed record #" + std::to_string(index) + " at byte " +
                                        std::to_string(checkpoint_header_size + start) + ": " + what);
            };
            if (left < 4)
                throw malformed("its name length field needs 4 bytes, only " + std::to_string(left) +
                                " remain in the payload");
            const std::uint32_t nlen = read_u32(payload + pos);
            pos += 4;
            left -= 4;
            if (nlen > left)
                throw malformed("its name length field says " + std::to_string(nlen) + " bytes, only " +
                                std::to_string(left) + " remain in the payload");
            std::string rname(payload + pos, payload + pos + nlen);
            pos += nlen;
            left -= nlen;
            const std::string rec = "record '" + detail::printable(rname) + "'";
            if (left < 9)
                throw malformed(rec + ": its type and element count fields need 9 bytes, only " + std::to_string(left) +
                                " remain in the payload");
            const unsigned code = payload[pos];
            const std::uint64_t count = read_u64(payload + pos + 1);
            pos += 9;
            left -= 9;
            const std::size_t esize = element_size(code);
            if (esize == 0)
                throw malformed(rec + " has unknown type code " + std::to_string(code) +
                                " (expected 1 f32, 2 f64, 3 u64 or 4 bytes)");
            if (count > left / esize)  // count * esize > left, without the product
                throw malformed(rec + ": its element count field says " + std::to_string(count) + " elements of " +
                                std::to_string(esize) + " bytes, only " + std::to_string(left) +
                                " bytes remain in the payload");
            const std::size_t len = static_cast<std::size_t>(count) * esize;
            if (rs.has(rname)) throw malformed(rec + " appears twice");
            record r{static_cast<record_type>(code), count, std::vector<unsigned char>(payload + pos, payload + pos + len)};
            pos += len;
            rs.set(rname, std::move(r));
            ++index;
        }
        return rs;
    }
    static record_set parse(const std::vector<unsigned char>& f, const std::string& name) {
        return parse(f.data(), f.size(), name);
    }

    template <class T>
    static constexpr record_type type_of() {
        if constexpr (std::is_same_v<T, float>) return record_type::f32;
        else if constexpr (std::is_same_v<T, double>) return record_type::f64;
        else {
            static_assert(std::is_same_v<T, std::uint64_t>, "lamina: checkpoint records hold float, double or uint64");
            return record_type::u64;
        }
    }

private:
    static std::size_t element_size(unsigned code) {
        switch (code) {
            case unsigned(record_type::f32): return 4;
            case unsigned(record_type::f64): return 8;
            case unsigned(record_type::u64): return 8;
            case unsigned(record_type::bytes): return 1;
        }
        return 0;
    }
    void set(const std::string& name, record r) {
        auto it = index_.find(name);
        if (it != index_.end()) {
            records_[it->second] = std::move(r);
            return;
        }
        index_[name] = records_.size();
        order_.emplace_back(name, records_.size());
        records_.push_back(std::move(r));
    }
    const record& find(const std::string& name, const std::string& file) const {
        auto it = index_.find(name);
        if (it == index_.end())
            throw checkpoint_error("lamina: checkpoint '" + file + "' has no record '" + detail::printable(name) + "'");
        return records_[it->second];
    }
    static void append_u32(std::vector<unsigned char>& b, std::uint32_t v) {
        for (int i = 0; i < 4; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
    }
    static void append_u64(std::vector<unsigned char>& b, std::uint64_t v) {
        for (int i = 0; i < 8; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
    }
    static std::uint32_t read_u32(const unsigned char* p) {
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i) v |= std::uint32_t(p[i]) << (8 * i);
        return v;
    }
    static std::uint64_t read_u64(const unsigned char* p) {
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i) v |= std::uint64_t(p[i]) << (8 * i);
        return v;
    }

    std::vector<record> records_;
    std::map<std::string, std::size_t> index_;
    std::vector<std::pair<std::string, std::size_t>> order_;
};

/// The architecture fingerprint stored in and checked against checkpoints.
template <class Model>
std::string architecture_of() {
    return "input" + Model::input_shape::str() + " -> " + Model::name_of_layers() + " | scalar " +
           (std::is_same_v<typename Model::value_type, float> ? "f32" : "f64") + " | parameters " +
           std::to_string(Model::parameter_count);
}

template <class Model>
void check_architecture(const record_set& rs, const std::string& path) {
    std::string stored = rs.get_string("architecture", path), mine = architecture_of<Model>();
    if (stored != mine)
        throw checkpoint_error("lamina: checkpoint '" + path + "' is for another architecture:\n  checkpoint: " +
                               detail::printable(stored, 4096) + "\n  this model: " + mine);
}

/// Checks that record `name` exists, has type `type` and holds `count` elements; `what`
/// says what the count is (for the message). Throws checkpoint_error naming file and record.
inline void expect_record(const record_set& rs, const std::string& file, const std::string& name, record_type type,
                          std::uint64_t count, const std::string& what) {
    const record_set::record* r = rs.lookup(name);
    if (!r) throw checkpoint_error("lamina: checkpoint '" + file + "' has no record '" + name + "'");
    if (r->type != type)
        throw checkpoint_error("lamina: checkpoint '" + file + "': record '" + name + "' has type code " +
                               record_type_name(unsigned(r->type)) + ", expected " + record_type_name(unsigned(type)));
    if (r->count != count)
        throw checkpoint_error("lamina: checkpoint '" + file + "': record '" + name + "' holds " +
                               std::to_string(r->count) + " elements, expected " + std::to_string(count) + " (" + what +
                               ")");
}

namespace detail {

/// "parameter segment '<name>' holds NaN at element k of n" for the first segment (in
/// parameter_segments() order) with a NaN or infinity, or "" when every parameter is finite.
template <class Model, class T>
std::string first_non_finite(const Model& net, const std::vector<T>& params) {
    for (const auto& seg : net.parameter_segments())
        for (std::size_t k = 0; k < seg.count && seg.offset + k < params.size(); ++k) {
            const T v = params[seg.offset + k];
            if (std::isfinite(v)) continue;
            return "parameter segment '" + seg.name + "' holds " + (std::isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf") +
                   " at element " + std::to_string(k) + " of " + std::to_string(seg.count);
        }
    return {};
}

/// Throws numeric_error when `params` (the model's) hold a NaN or infinity: such a model is
/// never written over a checkpoint (which may be the last good one).
template <class Model, class T>
void refuse_non_finite(const Model& net, const std::vector<T>& params, const std::string& path) {
    const std::string bad = first_non_finite(net, params);
    if (!bad.empty())
        throw numeric_error("lamina: not saving '" + path + "': " + bad + " (a checkpoint never stores a non-finite "
                            "model); the existing file is untouched");
}

/// Adds the model's running state (batch norm statistics) as record "state", refusing NaN or
/// infinity there too.
template <class Model>
void put_state(record_set& rs, const Model& net, const std::string& path) {
    using T = typename Model::value_type;
    if constexpr (Model::state_count > 0) {
        std::vector<T> st = net.get_state();
        for (const auto& seg : net.state_segments())
            for (std::size_t k = 0; k < seg.count; ++k)
                if (!std::isfinite(st[seg.offset + k]))
                    throw numeric_error("lamina: not saving '" + path + "': running-state segment '" + seg.name +
                                        "' holds a non-finite value at element " + std::to_string(k) + " of " +
                                        std::to_string(seg.count) + "; the existing file is untouched");
        rs.put("state", st);
    } else {
        (void)rs, (void)net, (void)path;
    }
}

/// Names and sizes of an optimizer state's tensors: its layout() when it has one (no copies),
/// else what save() returns.
template <class S, class = void>
struct has_layout : std::false_type {};
template <class S>
struct has_layout<S, std::void_t<decltype(std::declval<const S&>().layout())>> : std::true_type {};

template <class State, class Context>
std::vector<std::pair<std::string, std::size_t>> optimizer_layout(const State& s, const Context& c) {
    if constexpr (has_layout<State>::value) {
        return s.layout();
    } else {
        std::vector<std::pair<std::string, std::size_t>> l;
        for (auto& [name, values] : s.save(c)) l.emplace_back(name, values.size());
        return l;
    }
}

}  // namespace detail

}  // namespace io

/// Saves a model's parameters (no training state): for inference and transfer. Throws
/// numeric_error (and leaves an existing file untouched) when a parameter is NaN or infinite.
template <class Model>
void save_weights(const std::string& path, const Model& net) {
    auto params = net.get_parameters();
    io::detail::refuse_non_finite(net, params, path);
    io::record_set rs;
    rs.put_string("architecture", io::architecture_of<Model>());
    rs.put("parameters", params);
    io::detail::put_state(rs, net, path);
    rs.put_u64("seed", net.seed_value());
    rs.save(path);
}

/// Loads parameters from an in-memory checkpoint (record_set::parse); `source` names it in
/// messages. Checks the architecture and the parameters record before changing the model.
template <class Model>
void load_weights(const io::record_set& rs, Model& net, const std::string& source) {
    using T = typename Model::value_type;
    io::check_architecture<Model>(rs, source);
    io::expect_record(rs, source, "parameters", io::record_set::type_of<T>(), Model::parameter_count,
                      "the model's parameter count");
    if (Model::state_count)
        io::expect_record(rs, source, "state", io::record_set::type_of<T>(), Model::state_count,
                          "the model's running-state count");
    net.set_parameters(rs.get<T>("parameters", source));
    if (Model::state_count) net.set_state(rs.get<T>("state", source));
}

/// Loads parameters saved by save_weights or save_checkpoint into a model of the same architecture.
template <class Model>
void load_weights(const std::string& path, Model& net) {
    load_weights(io::record_set::load(path), net, path);
}

namespace io::detail {
template <class Trainer, class = void>
struct optimizer_on_servers : std::false_type {};
template <class Trainer>
struct optimizer_on_servers<Trainer, std::enable_if_t<Trainer::optimizer_on_servers>> : std::true_type {};
}  // namespace io::detail

/// Saves the whole training state: parameters, optimizer state, RNG seeds, epoch and step,
/// so that a resumed run continues bit-identically. Throws numeric_error (and leaves an
/// existing file untouched) when a parameter is NaN or infinite.
template <class Trainer>
void save_checkpoint(const std::string& path, Trainer& t) {
    if constexpr (io::detail::optimizer_on_servers<Trainer>::value)
        if (!t.optimizer_state_current())
            throw error("lamina: save_checkpoint('" + path + "'): a comm::hybrid trainer's optimizer state lives sharded "
                        "on its parameter servers: call gather_optimizer_state() on every rank after run() first "
                        "(communicators/hybrid.hpp); nothing was written");
    using Model = std::decay_t<decltype(t.model())>;
    auto& net = t.model();
    auto params = net.get_parameters();
    io::detail::refuse_non_finite(net, params, path);
    io::record_set rs;
    rs.put_string("architecture", io::architecture_of<Model>());
    rs.put("parameters", params);
    io::detail::put_state(rs, net, path);
    rs.put_string("optimizer", t.optimizer().name());
    rs.put_u64("optimizer.steps", t.optimizer_state_ref().steps());
    for (auto& [name, values] : t.optimizer_state_ref().save(net.context())) rs.put("optimizer." + name, values);
    rs.put_u64("epoch", t.epoch());
    rs.put_u64("step", t.global_step());
    rs.put_u64("seed", net.seed_value());
    rs.put_u64("shuffle_seed", t.shuffle_seed());
    rs.save(path);
}

/// Restores an in-memory checkpoint (record_set::parse) into a trainer; `source` names it in
/// messages. Transactional: every record is checked (architecture, parameters, optimizer name,
/// each optimizer state tensor's name, type and size, and the scalars optimizer.steps, epoch,
/// step, seed, shuffle_seed) before the model, optimizer or trainer is changed.
template <class Trainer>
void load_checkpoint(const io::record_set& rs, Trainer& t, const std::string& source) {
    using Model = std::decay_t<decltype(t.model())>;
    using T = typename Model::value_type;
    auto& net = t.model();
    auto& opt_state = t.optimizer_state_ref();
    const auto u64 = io::record_type::u64;
    const auto scalar = [&](const std::string& name) { io::expect_record(rs, source, name, u64, 1, "a scalar"); };

    // 1. Validate everything.
    io::check_architecture<Model>(rs, source);
    io::expect_record(rs, source, "parameters", io::record_set::type_of<T>(), Model::parameter_count,
                      "the model's parameter count");
    if (Model::state_count)
        io::expect_record(rs, source, "state", io::record_set::type_of<T>(), Model::state_count,
                          "the model's running-state count");
    const std::string opt = rs.get_string("optimizer", source);
    if (opt != t.optimizer().name())
        throw checkpoint_error("lamina: checkpoint '" + source + "' holds optimizer state of '" + io::detail::printable(opt) +
                               "', the trainer uses '" + t.optimizer().name() + "'");
    const auto layout = io::detail::optimizer_layout(opt_state, net.context());
    const std::string prefix = "optimizer.";
    for (const auto& [name, size] : layout)
        io::expect_record(rs, source, prefix + name, io::record_set::type_of<T>(), size,
                          "the size of " + t.optimizer().name() + "'s state '" + name + "'");
    for (const auto& name : rs.names()) {
        if (name.rfind(prefix, 0) != 0 || name == "optimizer.steps") continue;
        const std::string state = name.substr(prefix.size());
        if (std::none_of(layout.begin(), layout.end(), [&](const auto& l) { return l.first == state; }))
            throw checkpoint_error("lamina: checkpoint '" + source + "' has a record '" + io::detail::printable(name) +
                                   "', a state that optimizer '" + t.optimizer().name() + "' does not keep");
    }
    for (const char* name : {"optimizer.steps", "epoch", "step", "seed", "shuffle_seed"}) scalar(name);
    const std::uint64_t epoch = rs.get_u64("epoch", source);
    if (sizeof(std::size_t) < sizeof(std::uint64_t) && epoch > std::numeric_limits<std::size_t>::max())
        throw checkpoint_error("lamina: checkpoint '" + source + "': record 'epoch' holds " + std::to_string(epoch) +
                               ", more than this platform's size_t");

    // 2. Read everything into host memory (may allocate, so may throw: still nothing changed).
    std::vector<T> params = rs.get<T>("parameters", source);
    std::vector<T> running = Model::state_count ? rs.get<T>("state", source) : std::vector<T>{};
    std::vector<std::pair<std::string, std::vector<T>>> state;
    for (const auto& entry : layout) state.emplace_back(entry.first, rs.get<T>(prefix + entry.first, source));
    const std::uint64_t steps = rs.get_u64("optimizer.steps", source), step = rs.get_u64("step", source),
                        seed = rs.get_u64("seed", source), shuffle_seed = rs.get_u64("shuffle_seed", source);

    // 3. Apply. The optimizer's own load re-checks its state first (so it is the step that
    // may still refuse); the rest cannot fail on validated sizes.
    opt_state.load(net.context(), state, steps);
    net.set_parameters(params);
    if (Model::state_count) net.set_state(running);
    net.restore_seed(seed);
    t.set_position(static_cast<std::size_t>(epoch), step);
    t.set_shuffle_seed(shuffle_seed);
}

/// Restores what save_checkpoint saved into a trainer of the same architecture and optimizer.
/// Nothing is changed when the file or any record in it is wrong.
template <class Trainer>
void load_checkpoint(const std::string& path, Trainer& t) {
    load_checkpoint(io::record_set::load(path), t, path);
}

/// Callback: saves `<prefix>.lmck` every `every` epochs (atomically replacing the last one).
/// A model holding NaN or infinity is not saved (the last good checkpoint stays): the save is
/// skipped with one line on stderr naming the epoch and the parameter segment.
struct checkpoint_every {
    static constexpr bool root_only = true;  // a distributed trainer's checkpoints are written by rank 0
    static constexpr bool writes_checkpoints = true;  // comm::hybrid refuses it (train/trainer.hpp)
    std::string prefix;
    std::size_t every = 1;
    checkpoint_every(std::string p, std::size_t n = 1) : prefix(std::move(p)), every(n ? n : 1) {}
    std::string path() const { return prefix + ".lmck"; }
    bool enabled() const noexcept { return !prefix.empty(); }
    template <class Trainer, class Info>
    void on_epoch_end(Trainer& t, const Info&) {
        if (prefix.empty() || t.epoch() % every != 0) return;  // empty prefix: disabled
        try {
            save_checkpoint(path(), t);
        } catch (const numeric_error& e) {
            std::string why = e.what();
            if (why.rfind("lamina: ", 0) == 0) why.erase(0, 8);
            std::cerr << "lamina: checkpoint_every: after epoch " << t.epoch() << ", skipped the save: " << why << "\n";
        }
    }
};

}  // namespace lamina
// ---- end include/lamina/io/checkpoint.hpp ----

// ---- begin include/lamina/io/image_writer.hpp ----
// lamina: greyscale pictures a person can look at: a simulation's field, a network's input
// beside its reconstruction. Values in [0, 1] map to 0..255 (clamped; NaN is written as 0).
//
//   lamina::io::image_grid g{2, 8, 64, 64};                  // 2 rows of 8 tiles of 64x64
//   g.set(0, k, input_k);  g.set(1, k, reconstruction_k);
//   std::string written = lamina::io::write_greyscale_image("recon", g.pixels(), g.height(), g.width());
//   // "recon.png" with libpng, else "recon.pgm"
//
// PNG is opt-in: define LAMINA_WITH_PNG and link libpng (CMake: the target lamina::png does
// both when find_package(PNG) succeeds; Debian: libpng-dev). Without it write_png throws an
// io_error saying so and write_greyscale_image writes binary PGM (P5), which every image
// viewer reads. Files are written atomically (io/atomic_file.hpp): a failed write leaves the
// previous file intact.



#if defined(LAMINA_WITH_PNG) && !defined(LAMINA_NO_PNG)
#include <png.h>
#define LAMINA_HAS_PNG 1
#else
#define LAMINA_HAS_PNG 0
#endif

namespace lamina::io {

/// True when this build writes PNG (LAMINA_WITH_PNG is defined).
constexpr bool png_available() noexcept { return LAMINA_HAS_PNG != 0; }

namespace detail {
inline void check_image(const std::string& path, const float* pixels, std::size_t height, std::size_t width) {
    if (height == 0 || width == 0)
        throw argument_error("lamina: image '" + path + "' must have a positive size, got " + std::to_string(height) + "x" +
                             std::to_string(width));
    if (height > (std::size_t(1) << 20) || width > (std::size_t(1) << 20))
        throw argument_error("lamina: image '" + path + "' is too large (" + std::to_string(height) + "x" +
                             std::to_string(width) + "; at most 1048576 per side)");
    if (!pixels) throw argument_error("lamina: image '" + path + "' got a null pixel pointer");
}
/// [0, 1] -> 0..255, rounded; clamped; NaN -> 0.
inline std::uint8_t to_byte(float v) {
    if (!(v > 0.0f)) return 0;
    if (v >= 1.0f) return 255;
    return static_cast<std::uint8_t>(v * 255.0f + 0.5f);
}
inline std::vector<std::uint8_t> to_bytes(const float* pixels, std::size_t n) {
    std::vector<std::uint8_t> b(n);
    for (std::size_t i = 0; i < n; ++i) b[i] = to_byte(pixels[i]);
    return b;
}
}  // namespace detail

/// Binary PGM (P5, maxval 255) of height x width values in [0, 1], row-major.
inline void write_pgm(const std::string& path, const float* pixels, std::size_t height, std::size_t width) {
    detail::check_image(path, pixels, height, width);
    const std::string header = "P5\n" + std::to_string(width) + " " + std::to_string(height) + "\n255\n";
    std::vector<std::uint8_t> bytes(header.begin(), header.end());
    const auto body = detail::to_bytes(pixels, height * width);
    bytes.insert(bytes.end(), body.begin(), body.end());
    write_file_atomically(path, bytes.data(), bytes.size());
}

/// 8-bit greyscale PNG (libpng's simplified API); io_error without LAMINA_WITH_PNG.
inline void write_png(const std::string& path, const float* pixels, std::size_t height, std::size_t width) {
    detail::check_image(path, pixels, height, width);
#if LAMINA_HAS_PNG
    const auto body = detail::to_bytes(pixels, height * width);
    png_image image;
    std::memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = static_cast<png_uint_32>(width);
    image.height = static_cast<png_uint_32>(height);
    image.format = PNG_FORMAT_GRAY;
    png_alloc_size_t size = 0;
    if (!png_image_write_get_memory_size(image, size, 0, body.data(), 0, nullptr))
        throw io_error("lamina: libpng cannot encode '" + path + "': " + image.message);
    std::vector<std::uint8_t> out(size);
    if (!png_image_write_to_memory(&image, out.data(), &size, 0, body.data(), 0, nullptr))
        throw io_error("lamina: libpng cannot encode '" + path + "': " + image.message);
    png_image_free(&image);
    write_file_atomically(path, out.data(), size);
#else
    throw io_error("lamina: cannot write '" + path +
                   "': PNG needs libpng, which this build does not use: define LAMINA_WITH_PNG and link libpng "
                   "(CMake: target lamina::png; Debian: apt-get install libpng-dev), or write PGM (write_pgm)");
#endif
}

/// PNG when libpng is available, else PGM; `stem` gets the extension. Returns the path written.
inline std::string write_greyscale_image(const std::string& stem, const float* pixels, std::size_t height,
                                         std::size_t width) {
    const std::string path = stem + (png_available() ? ".png" : ".pgm");
    if (png_available()) write_png(path, pixels, height, width);
    else write_pgm(path, pixels, height, width);
    return path;
}

/// A canvas of rows x cols tiles of tile_h x tile_w pixels, `gap` pixels apart on a
/// background of `background`, each tile magnified `scale` times (nearest neighbour).
class image_grid {
public:
    image_grid(std::size_t rows, std::size_t cols, std::size_t tile_h, std::size_t tile_w, std::size_t gap = 2,
               std::size_t scale = 1, float background = 1.0f)
        : rows_(rows), cols_(cols), th_(tile_h), tw_(tile_w), gap_(gap), scale_(scale) {
        if (!rows || !cols || !tile_h || !tile_w || !scale)
            throw argument_error("lamina: image_grid needs positive rows, columns, tile size and scale");
        const std::size_t lim = std::size_t(1) << 20;  // per side, as the writers allow
        // every factor bounded first, so the products below cannot overflow
        if (tile_h > lim || tile_w > lim || scale > lim || gap > lim || tile_h * scale > lim || tile_w * scale > lim ||
            rows > lim / (tile_h * scale + gap) || cols > lim / (tile_w * scale + gap))
            throw argument_error("lamina: image_grid of " + std::to_string(rows) + "x" + std::to_string(cols) +
                                 " tiles is too large");
        h_ = rows * (th_ * scale_ + gap_) + gap_;
        w_ = cols * (tw_ * scale_ + gap_) + gap_;
        pixels_.assign(h_ * w_, background);
    }
    /// Copies a tile_h x tile_w image into tile (row, col).
    void set(std::size_t row, std::size_t col, const float* tile) {
        if (row >= rows_ || col >= cols_)
            throw argument_error("lamina: image_grid tile (" + std::to_string(row) + ", " + std::to_string(col) +
                                 ") is outside " + std::to_string(rows_) + "x" + std::to_string(cols_));
        const std::size_t y0 = gap_ + row * (th_ * scale_ + gap_), x0 = gap_ + col * (tw_ * scale_ + gap_);
        for (std::size_t y = 0; y < th_ * scale_; ++y)
            for (std::size_t x = 0; x < tw_ * scale_; ++x)
                pixels_[(y0 + y) * w_ + x0 + x] = tile[(y / scale_) * tw_ + x / scale_];
    }
    const float* pixels() const noexcept { return pixels_.data(); }
    std::size_t height() const noexcept { return h_; }
    std::size_t width() const noexcept { return w_; }

private:
    std::size_t rows_, cols_, th_, tw_, gap_, scale_, h_ = 0, w_ = 0;
    std::vector<float> pixels_;
};

}  // namespace lamina::io
// ---- end include/lamina/io/image_writer.hpp ----

// ---- begin include/lamina/io/svg_plot.hpp ----
// lamina: line charts as SVG (a loss curve per training run), readable in any browser.
//
//   lamina::io::line_chart c{"FCAE + classifier", "epoch", "loss"};
//   c.add("training", epochs, train_loss);
//   c.add("held-out", epochs, test_loss);
//   lamina::io::write_svg("loss.svg", c);      // atomically (io/atomic_file.hpp)
//
// Axes span the data (y from 0 unless a value is negative; log_y() for losses spanning
// decades, then every value must be positive), five ticks each, one colour per series and a
// legend. Non-finite points are left out of a line (it breaks there). Text is XML-escaped.



namespace lamina::io {

class line_chart {
public:
    struct series {
        std::string name;
        std::vector<double> x, y;
    };

    line_chart(std::string title, std::string x_label, std::string y_label)
        : title_(std::move(title)), xl_(std::move(x_label)), yl_(std::move(y_label)) {}

    /// A series of points (x[i], y[i]); the sizes must agree.
    line_chart& add(std::string name, std::vector<double> x, std::vector<double> y) {
        if (x.size() != y.size())
            throw argument_error("lamina: line_chart series '" + name + "' has " + std::to_string(x.size()) + " x values and " +
                                 std::to_string(y.size()) + " y values");
        series_.push_back({std::move(name), std::move(x), std::move(y)});
        return *this;
    }
    line_chart& log_y(bool on = true) {
        log_y_ = on;
        return *this;
    }
    const std::vector<series>& all_series() const noexcept { return series_; }

    /// The chart as an SVG document of width x height pixels.
    std::string svg(int width = 640, int height = 400) const {
        const double left = 70, right = 20, top = 40, bottom = 50;
        const double pw = width - left - right, ph = height - top - bottom;
        double x0 = inf(), x1 = -inf(), y0 = inf(), y1 = -inf();
        for (const auto& s : series_)
            for (std::size_t i = 0; i < s.x.size(); ++i) {
                if (!usable(s.x[i], s.y[i])) continue;
                x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
                const double v = ty(s.y[i]);
                y0 = std::min(y0, v), y1 = std::max(y1, v);
            }
        if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;  // nothing to draw: empty axes
        if (!log_y_ && y0 > 0) y0 = 0;
        if (x1 == x0) x1 = x0 + 1;
        if (y1 == y0) y1 = y0 + 1;
        auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
        auto py = [&](double y) { return top + ph - (ty(y) - y0) / (y1 - y0) * ph; };

        std::string o;
        o += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) + "\" height=\"" +
             std::to_string(height) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
        o += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
        o += text(width / 2.0, 22, escape(title_), "middle", 15);
        o += "<rect x=\"" + num(left) + "\" y=\"" + num(top) + "\" width=\"" + num(pw) + "\" height=\"" + num(ph) +
             "\" fill=\"none\" stroke=\"black\"/>\n";
        for (int k = 0; k <= 4; ++k) {  // ticks and grid lines
            const double fx = x0 + (x1 - x0) * k / 4, fy = y0 + (y1 - y0) * k / 4;
            const double gx = left + pw * k / 4, gy = top + ph - ph * k / 4;
            o += "<line x1=\"" + num(gx) + "\" y1=\"" + num(top) + "\" x2=\"" + num(gx) + "\" y2=\"" + num(top + ph) +
                 "\" stroke=\"#ddd\"/>\n";
            o += "<line x1=\"" + num(left) + "\" y1=\"" + num(gy) + "\" x2=\"" + num(left + pw) + "\" y2=\"" + num(gy) +
                 "\" stroke=\"#ddd\"/>\n";
            o += text(gx, top + ph + 16, label(fx), "middle");
            o += text(left - 6, gy + 4, label(log_y_ ? std::pow(10.0, fy) : fy), "end");
        }
        o += text(left + pw / 2, height - 10.0, escape(xl_), "middle");
        o += "<text x=\"16\" y=\"" + num(top + ph / 2) + "\" text-anchor=\"middle\" transform=\"rotate(-90 16 " +
             num(top + ph / 2) + ")\">" + escape(yl_) + (log_y_ ? " (log scale)" : "") + "</text>\n";
        static const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
        for (std::size_t k = 0; k < series_.size(); ++k) {
            const auto& s = series_[k];
            const std::string colour = colours[k % 6];
            std::string points;
            auto flush = [&] {
                if (!points.empty())
                    o += "<polyline fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"2\" points=\"" + points + "\"/>\n";
                points.clear();
            };
            for (std::size_t i = 0; i < s.x.size(); ++i) {
                if (!usable(s.x[i], s.y[i])) {
                    flush();
                    continue;
                }
                points += (points.empty() ? "" : " ") + num(px(s.x[i])) + "," + num(py(s.y[i]));
            }
            flush();
            const double ly = top + 16 + 16.0 * static_cast<double>(k);
            o += "<line x1=\"" + num(left + pw - 150) + "\" y1=\"" + num(ly - 4) + "\" x2=\"" + num(left + pw - 128) +
                 "\" y2=\"" + num(ly - 4) + "\" stroke=\"" + colour + "\" stroke-width=\"2\"/>\n";
            o += text(left + pw - 122, ly, escape(s.name), "start");
        }
        o += "</svg>\n";
        return o;
    }

private:
    static double inf() { return std::numeric_limits<double>::infinity(); }
    bool usable(double x, double y) const { return std::isfinite(x) && std::isfinite(y) && (!log_y_ || y > 0); }
    double ty(double y) const { return log_y_ ? std::log10(y) : y; }
    static std::string num(double v) {
        char b[32];
        std::snprintf(b, sizeof b, "%.1f", v);
        return b;
    }
    static std::string label(double v) {
        char b[32];
        std::snprintf(b, sizeof b, "%.3g", v);
        return b;
    }
    static std::string text(double x, double y, const std::string& s, const char* anchor, int size = 12) {
        return "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" text-anchor=\"" + anchor + "\" font-size=\"" +
               std::to_string(size) + "\">" + s + "</text>\n";
    }
    static std::string escape(const std::string& s) {
        std::string o;
        for (char c : s) {
            switch (c) {
                case '&': o += "&amp;"; break;
                case '<': o += "&lt;"; break;
                case '>': o += "&gt;"; break;
                case '"': o += "&quot;"; break;
                default: o += c;
            }
        }
        return o;
    }

    std::string title_, xl_, yl_;
    std::vector<series> series_;
    bool log_y_ = false;
};

/// Writes c.svg() to `path` atomically.
inline void write_svg(const std::string& path, const line_chart& c, int width = 640, int height = 400) {
    const std::string s = c.svg(width, height);
    write_file_atomically(path, s.data(), s.size());
}

}  // namespace lamina::io
// ---- end include/lamina/io/svg_plot.hpp ----


// ---- begin include/lamina/models/resnet.hpp ----
// lamina: the ResNet family, written as the papers' layer tables.
//
//   models::cifar_resnet<20, 10>          He et al. 2016, section 4.2: 3 stages of n basic blocks
//                                         (16, 32, 64 channels), depth 6n + 2; option A
//                                         shortcuts by default (269,722 parameters for ResNet-20)
//   models::resnet50<1000>                ResNet-50 v1.5 (torchvision): bottlenecks 3-4-6-3, the
//                                         stride on the 3x3 conv (25,557,032 parameters)
//
// Convolutions have no bias (batch norm follows each), He-normal initialisation; batch norm
// statistics are running state. The input shape and class count are parameters, e.g.
// cifar_resnet<20, 10, 1, 32, 32> for MNIST padded to 32x32.



namespace lamina::models {

/// conv KxK with C filters, no bias (a batch norm follows), He-normal init.
template <std::size_t C, std::size_t K, std::size_t Stride = 1, std::size_t Pad = K / 2>
using conv_bn = conv2d<C, K, Stride, Pad, init::he_normal, false>;

// ---- CIFAR ResNets ----------------------------------------------------------------------------

/// Two 3x3 convolutions with batch norm, added to the shortcut, then relu.
template <std::size_t C, std::size_t Stride = 1, shortcut_option Shortcut = shortcut_option::zero_pad>
using basic_block = sequential<
    residual<sequential<conv_bn<C, 3, Stride>, batch_norm, relu,
                        conv_bn<C, 3>, batch_norm>,
             shortcut_for<C, Stride, Shortcut>>,
    relu>;

namespace detail {
template <std::size_t C, std::size_t N, std::size_t Stride, shortcut_option S>
struct basic_stage {
    using type = sequential<basic_block<C, Stride, S>, repeat<N - 1, basic_block<C, 1, S>>>;
};
template <std::size_t C, std::size_t Stride, shortcut_option S>
struct basic_stage<C, 1, Stride, S> {
    using type = sequential<basic_block<C, Stride, S>>;
};
}  // namespace detail

/// N basic blocks of C channels, the first with the stride (ResNet's stage).
template <std::size_t C, std::size_t N, std::size_t Stride, shortcut_option S = shortcut_option::zero_pad>
using basic_stage = typename detail::basic_stage<C, N, Stride, S>::type;

template <std::size_t Depth, std::size_t Classes = 10, std::size_t Channels = 3, std::size_t H = 32, std::size_t W = 32,
          shortcut_option Shortcut = shortcut_option::zero_pad>
struct cifar_resnet_def {
    static_assert(Depth >= 8 && (Depth - 2) % 6 == 0, "lamina::models::cifar_resnet: depth must be 6n + 2 (20, 32, 44, 56, 110)");
    static constexpr std::size_t n = (Depth - 2) / 6;
    using type = sequential<input<Channels, H, W>,
                            conv_bn<16, 3>, batch_norm, relu,
                            basic_stage<16, n, 1, Shortcut>,
                            basic_stage<32, n, 2, Shortcut>,
                            basic_stage<64, n, 2, Shortcut>,
                            global_avg_pool,
                            dense<Classes>>;
};

template <std::size_t Depth, std::size_t Classes = 10, std::size_t Channels = 3, std::size_t H = 32, std::size_t W = 32,
          shortcut_option Shortcut = shortcut_option::zero_pad>
using cifar_resnet = typename cifar_resnet_def<Depth, Classes, Channels, H, W, Shortcut>::type;

template <std::size_t Classes = 10, std::size_t Channels = 3, std::size_t H = 32, std::size_t W = 32,
          shortcut_option S = shortcut_option::zero_pad>
using resnet20 = cifar_resnet<20, Classes, Channels, H, W, S>;
template <std::size_t Classes = 10, std::size_t Channels = 3, std::size_t H = 32, std::size_t W = 32,
          shortcut_option S = shortcut_option::zero_pad>
using resnet32 = cifar_resnet<32, Classes, Channels, H, W, S>;
template <std::size_t Classes = 10, std::size_t Channels = 3, std::size_t H = 32, std::size_t W = 32,
          shortcut_option S = shortcut_option::zero_pad>
using resnet56 = cifar_resnet<56, Classes, Channels, H, W, S>;

// ---- ResNet-50 v1.5 ---------------------------------------------------------------------------

/// 1x1 (Mid), 3x3 (Mid, the stride), 1x1 (Out), each with batch norm; projection shortcut
/// where the shape changes. ZeroGamma: the last batch norm starts at gamma = 0.
template <std::size_t Mid, std::size_t Out, std::size_t Stride = 1, bool ZeroGamma = false>
using bottleneck = sequential<
    residual<sequential<conv_bn<Mid, 1>, batch_norm, relu,
                        conv_bn<Mid, 3, Stride>, batch_norm, relu,
                        conv_bn<Out, 1>, std::conditional_t<ZeroGamma, batch_norm_zero_gamma, batch_norm>>,
             shortcut_for<Out, Stride, shortcut_option::projection>>,
    relu>;

template <std::size_t Mid, std::size_t Out, std::size_t N, std::size_t Stride, bool ZeroGamma>
using bottleneck_stage = sequential<bottleneck<Mid, Out, Stride, ZeroGamma>, repeat<N - 1, bottleneck<Mid, Out, 1, ZeroGamma>>>;

template <std::size_t Classes = 1000, bool ZeroGamma = false, std::size_t H = 224, std::size_t W = 224>
using resnet50 = sequential<input<3, H, W>,
                            conv_bn<64, 7, 2, 3>, batch_norm, relu, max_pool<3, 2, 1>,
                            bottleneck_stage<64, 256, 3, 1, ZeroGamma>,
                            bottleneck_stage<128, 512, 4, 2, ZeroGamma>,
                            bottleneck_stage<256, 1024, 6, 2, ZeroGamma>,
                            bottleneck_stage<512, 2048, 3, 2, ZeroGamma>,
                            global_avg_pool,
                            dense<Classes>>;

}  // namespace lamina::models
// ---- end include/lamina/models/resnet.hpp ----

// ---- begin include/lamina/models/mcnn.hpp ----
// lamina: the multi-scale CNN (M-CNN) of Godinez et al. 2017 ("A multi-scale convolutional
// neural network for phenotyping high-content cellular images"), as trained at scale on CPUs by
// Datta et al. 2019: BBBC021 microscopy images, 1024x1280x3, 13 classes.
//
//   models::mcnn<13>                      the paper's network: 42,577,261 parameters
//   models::mcnn<13, 3, 128, 128>         the same layer table on 128x128 images
//
// Layer table (s = scale, F = filters):
//   7 branches, s = 1, 2, 4, 8, 16, 32, 64 with F = 16, 16, 16, 32, 32, 32, 64:
//     pre-pool s x s (none for s = 1), 3x [conv5x5 F, SAME, stride 1, bias + relu],
//     max-pool (64/s) x (64/s) (none for s = 64): every branch ends at H/64 x W/64
//   concat (208 channels), conv1x1 1024 + relu, max-pool 2, FC 512 + relu, FC Classes
// Softmax is in the loss (loss::softmax_cross_entropy). Xavier (Glorot uniform) initialisation,
// zero biases, no batch norm, no dropout. At 1024x1280 the branches meet at 16x20x208 and FC
// 512 reads 8x10x1024 = 81,920 values: 98.5% of the parameters are in that layer.
//
// Training recipe (Datta et al.): label smoothing 0.1, L2 5e-5, Nesterov momentum 0.9, linear
// warm-up over 5 epochs then linear decay, the linear scaling rule:
//   lamina::trainer fit{net, lamina::loss::softmax_cross_entropy{0.1},
//                       lamina::optim::sgd{lamina::schedule::linear_scaling(base, base_batch, batch), 0.9, true, 5e-5},
//                       lamina::schedule::warmup_then<lamina::schedule::polynomial>{{5, 0}, {epochs - 5, 1, 0}}};
//
// The pre-pooling kind is a parameter (PrePool: max_pool or avg_pool); the published table
// does not say which (lamina's default is max-pooling, as the post-pools).



namespace lamina::models {

/// The factor by which every branch reduces the image: branches meet at H/64 x W/64.
inline constexpr std::size_t mcnn_reduction = 64;

/// conv5x5 with F filters, SAME padding, stride 1, bias, Glorot-uniform (Xavier).
template <std::size_t F>
using mcnn_conv = conv2d<F, 5, 1, 2>;

namespace detail {
template <std::size_t S, std::size_t F, template <std::size_t, std::size_t, std::size_t> class PrePool,
          bool = (S == 1), bool = (S == mcnn_reduction)>
struct mcnn_branch_def {  // pre-pool s, convs, post-pool 64/s
    using type = sequential<PrePool<S, S, 0>, mcnn_conv<F>, relu, mcnn_conv<F>, relu, mcnn_conv<F>, relu,
                            max_pool<mcnn_reduction / S, mcnn_reduction / S, 0>>;
};
template <std::size_t S, std::size_t F, template <std::size_t, std::size_t, std::size_t> class PrePool>
struct mcnn_branch_def<S, F, PrePool, true, false> {  // scale 1: full resolution, no pre-pool
    using type = sequential<mcnn_conv<F>, relu, mcnn_conv<F>, relu, mcnn_conv<F>, relu,
                            max_pool<mcnn_reduction, mcnn_reduction, 0>>;
};
template <std::size_t S, std::size_t F, template <std::size_t, std::size_t, std::size_t> class PrePool>
struct mcnn_branch_def<S, F, PrePool, false, true> {  // scale 64: already at the meeting size
    using type = sequential<PrePool<S, S, 0>, mcnn_conv<F>, relu, mcnn_conv<F>, relu, mcnn_conv<F>, relu>;
};
}  // namespace detail

/// One branch: the image at 1/S of its size, three conv5x5 of F filters, then pooled to 1/64.
template <std::size_t S, std::size_t F, template <std::size_t, std::size_t, std::size_t> class PrePool = max_pool>
using mcnn_branch = typename detail::mcnn_branch_def<S, F, PrePool>::type;

/// The seven branches joined by channel concatenation: 16*3 + 32*3 + 64 = 208 channels.
template <template <std::size_t, std::size_t, std::size_t> class PrePool = max_pool>
using mcnn_scales = branches<concat,
                             mcnn_branch<1, 16, PrePool>, mcnn_branch<2, 16, PrePool>, mcnn_branch<4, 16, PrePool>,
                             mcnn_branch<8, 32, PrePool>, mcnn_branch<16, 32, PrePool>, mcnn_branch<32, 32, PrePool>,
                             mcnn_branch<64, 64, PrePool>>;

template <std::size_t Classes = 13, std::size_t Channels = 3, std::size_t H = 1024, std::size_t W = 1280,
          template <std::size_t, std::size_t, std::size_t> class PrePool = max_pool>
struct mcnn_def {
    static_assert(H % mcnn_reduction == 0 && W % mcnn_reduction == 0,
                  "lamina::models::mcnn: height and width must be multiples of 64 (every branch meets at H/64 x W/64)");
    static_assert(H >= 2 * mcnn_reduction && W >= 2 * mcnn_reduction,
                  "lamina::models::mcnn: height and width must be at least 128 (the max-pool 2 after the 1x1 conv "
                  "needs a 2x2 map at 1/64)");
    static_assert(Classes >= 2, "lamina::models::mcnn: at least two classes");
    using type = sequential<input<Channels, H, W>,
                            mcnn_scales<PrePool>,
                            conv2d<1024, 1>, relu,
                            max_pool<2>,
                            flatten,
                            dense<512>, relu,
                            dense<Classes>>;
};

/// M-CNN on Channels x H x W images (H and W multiples of 64, at least 128).
template <std::size_t Classes = 13, std::size_t Channels = 3, std::size_t H = 1024, std::size_t W = 1280,
          template <std::size_t, std::size_t, std::size_t> class PrePool = max_pool>
using mcnn = typename mcnn_def<Classes, Channels, H, W, PrePool>::type;

}  // namespace lamina::models
// ---- end include/lamina/models/mcnn.hpp ----

// ---- begin include/lamina/models/hep_cnn.hpp ----
// lamina: the HEP CNN of Kurth et al., "Deep Learning at 15PF" (SC17): signal (RPV SUSY) against
// background (QCD multi-jet) events, from calorimeter images of 3 channels (energy, EM
// fraction, track count).
//
//   models::hep_cnn<>                          224x224x3, 128 filters, 2 classes: 594,178 parameters
//   models::hep_cnn<2, 3, 64, 64, 32, 10>      64x64 images, 32 filters, dropout 10%
//
// Layer table (the public benchmark code, NERSC/hep_cnn_benchmark on GitHub, "scaling
// improvements" variant):
//   4x [conv3x3 F, SAME, bias + relu, max-pool 2, dropout]
//   conv3x3 F, SAME, bias + relu, global average pool, FC Classes
// Softmax is in the loss (loss::softmax_cross_entropy). That code initialises with He's rule
// and sets the dropout probability to 0.5 in its configurations; both are the defaults here.
// 224 -> 112 -> 56 -> 28 -> 14: the last conv runs at 14x14 and the global average pool makes
// the classifier independent of the input size.



namespace lamina::models {

/// conv3x3 with F filters (SAME, bias, He-normal).
template <std::size_t F>
using hep_cnn_conv = conv2d<F, 3, 1, 1, init::he_normal>;

/// One of the four downsampling blocks: conv3x3 + relu, max-pool 2, dropout.
template <std::size_t F, int DropoutPercent>
using hep_cnn_block = sequential<hep_cnn_conv<F>, relu, max_pool<2>, dropout_p<DropoutPercent>>;

template <std::size_t Classes = 2, std::size_t Channels = 3, std::size_t H = 224, std::size_t W = 224,
          std::size_t Filters = 128, int DropoutPercent = 50>
struct hep_cnn_def {
    static_assert(H >= 16 && W >= 16, "lamina::models::hep_cnn: four max-pools of 2 need images of at least 16x16");
    static_assert(DropoutPercent >= 0 && DropoutPercent < 100,
                  "lamina::models::hep_cnn: the dropout percentage must be in [0, 100)");
    static_assert(Classes >= 2 && Filters >= 1, "lamina::models::hep_cnn: at least two classes and one filter");
    using type = sequential<input<Channels, H, W>,
                            hep_cnn_block<Filters, DropoutPercent>,
                            hep_cnn_block<Filters, DropoutPercent>,
                            hep_cnn_block<Filters, DropoutPercent>,
                            hep_cnn_block<Filters, DropoutPercent>,
                            hep_cnn_conv<Filters>, relu,
                            global_avg_pool,
                            dense<Classes, init::he_normal>>;
};

/// The HEP CNN on Channels x H x W images: Filters per conv, DropoutPercent after each pool.
template <std::size_t Classes = 2, std::size_t Channels = 3, std::size_t H = 224, std::size_t W = 224,
          std::size_t Filters = 128, int DropoutPercent = 50>
using hep_cnn = typename hep_cnn_def<Classes, Channels, H, W, Filters, DropoutPercent>::type;

}  // namespace lamina::models
// ---- end include/lamina/models/hep_cnn.hpp ----

// ---- begin include/lamina/models/deepgalaxy.hpp ----
// lamina: DeepGalaxy (Cai et al. 2020, arXiv:2010.11630), written as the paper's layer table:
// a fully convolutional autoencoder (FCAE) of galaxy-merger images, a variational autoencoder
// (VAE) on its latent map, and a classifier head on the latent map.
//
//   FCAE encoder   VGG-style groups: Convs x (conv3x3 Width + ReLU), then max-pool 2; the last
//                  group's output is the "3D latent map" (16x16x512 from 512x512 in the paper)
//   centre         2x (conv3x3 CentreWidth, batch norm, ReLU)
//   decoder        per stage: nearest upsample x2, 2x (conv3x3 Width, batch norm, ReLU); then
//                  conv3x3 to 1 channel and a sigmoid (images in [0, 1])
//   classifier     on the latent map: conv1x1 ClassifierChannels + ReLU, flatten, dense
//                  ClassifierHidden + ReLU, dense Classes (logits)
//   VAE            on the flattened latent map (D = C*H*W values): dense 256, tanh, dense 256,
//                  dense 2Z (mu and logvar, Z = 16); z = mu + exp(logvar / 2) eps with
//                  Beta * KL(q || N(0, I)) added to the loss (vae_sampling; the public code
//                  computes the KL but never adds it, and samples with exp(logvar)); the
//                  decoder mirrors the encoder: dense 256, dense 256, tanh, dense D, reshape
//
// Sizes are template parameters: config<Size, widths<...>, convs<...>, CentreWidth,
// widths<...>, Classes, ...>; the depth is the number of encoder groups (the decoder has as
// many stages, so the reconstruction has the input's size). models::deepgalaxy::paper<Classes>
// is the paper's 512x512 VGG16 configuration. Each config gives the network types
//
//   fcae             image -> reconstruction                       (loss: MAE, the paper's)
//   fcae_classifier  image -> heads<reconstruction, class logits>  (loss::per_output: MAE + CE)
//   encoder          image -> latent map                           (features for the VAE)
//   vae              latent map -> latent map, adds its KL         (loss: MSE; Beta is VaeBeta)
//   vae_encoder      latent map -> [mu, logvar]                    (z for the similarity search)
//   classifier       latent map -> class logits                    (the staged recipe's third stage)
//
// An autoencoder's targets are its inputs: put the images (or latent maps) in the dataset's
// targets, beside the class label for fcae_classifier ([image | label] per sample). The
// staged recipe trains fcae, then vae on encoder's output, then classifier;
// copy_leading_parameters moves a trained network's leading layers into a shorter network
// with the same leading layers (fcae or fcae_classifier -> encoder, vae -> vae_encoder).
// nearest_in_latent finds similar images by L2 distance in z.



namespace lamina::models::deepgalaxy {

/// A list of channel widths, one per encoder group or decoder stage.
template <std::size_t... W>
struct widths {
    static constexpr std::size_t count = sizeof...(W);
};
/// The number of 3x3 convolutions in each encoder group.
template <std::size_t... N>
struct convs {
    static constexpr std::size_t count = sizeof...(N);
};

/// conv3x3 with padding 1 (shape-preserving), He-uniform initialisation.
template <std::size_t C, bool Bias>
using conv3x3 = conv2d<C, 3, 1, 1, init::he_uniform, Bias>;
/// conv3x3 (no bias: a batch norm follows), batch norm, ReLU.
template <std::size_t C>
using conv_bn_relu = sequential<conv3x3<C, false>, batch_norm, relu>;

namespace detail {
template <std::size_t Width, std::size_t Convs>
struct vgg_group {
    static_assert(Convs >= 1, "lamina::models::deepgalaxy: an encoder group needs at least one convolution");
    using type = sequential<conv3x3<Width, true>, relu, repeat<Convs - 1, sequential<conv3x3<Width, true>, relu>>, max_pool<2>>;
};
template <std::size_t Width>
struct vgg_group<Width, 1> {
    using type = sequential<conv3x3<Width, true>, relu, max_pool<2>>;
};

template <class Widths, class Convs>
struct encoder_def;
template <std::size_t... W, std::size_t... N>
struct encoder_def<widths<W...>, convs<N...>> {
    static_assert(sizeof...(W) == sizeof...(N),
                  "lamina::models::deepgalaxy: the encoder needs one convolution count per group width");
    static_assert(sizeof...(W) >= 1, "lamina::models::deepgalaxy: the encoder needs at least one group");
    using type = sequential<typename vgg_group<W, N>::type...>;
};

template <class Widths>
struct decoder_def;
template <std::size_t... W>
struct decoder_def<widths<W...>> {
    using type = sequential<sequential<upsample_nearest<2>, conv_bn_relu<W>, conv_bn_relu<W>>...,
                            conv3x3<1, true>, sigmoid>;
};

template <class S>
struct input_for;
template <std::size_t... D>
struct input_for<shape<D...>> {
    using type = input<D...>;
};
template <class S>
struct reshape_for;
template <std::size_t... D>
struct reshape_for<shape<D...>> {
    using type = reshape<D...>;
};
}  // namespace detail

/// One VGG encoder group: Convs x (conv3x3 Width + ReLU), max-pool 2.
template <std::size_t Width, std::size_t Convs>
using vgg_group = typename detail::vgg_group<Width, Convs>::type;

template <std::size_t Size, class EncoderWidths, class EncoderConvs, std::size_t CentreWidth, class DecoderWidths,
          std::size_t Classes, std::size_t Latent = 16, std::size_t VaeHidden = 256, std::size_t ClassifierChannels = 32,
          std::size_t ClassifierHidden = 256, class VaeBeta = std::ratio<1>>
struct config {
    static constexpr std::size_t depth = EncoderWidths::count;
    static_assert(DecoderWidths::count == depth,
                  "lamina::models::deepgalaxy: the decoder needs one stage per encoder group (the reconstruction "
                  "then has the input's size)");
    static_assert(depth < 20 && Size % (std::size_t(1) << depth) == 0,
                  "lamina::models::deepgalaxy: the image size must divide by 2^depth (one max-pool per group)");
    static_assert(Classes >= 2 && Latent >= 1, "lamina::models::deepgalaxy: need at least 2 classes and 1 latent");
    static constexpr std::size_t image_size = Size;
    static constexpr std::size_t classes = Classes;
    static constexpr std::size_t latent = Latent;  // Z, the VAE's code size

    using image_input = input<1, Size, Size>;
    using encoder_layers = typename detail::encoder_def<EncoderWidths, EncoderConvs>::type;
    using latent_shape = checked_output_t<encoder_layers, shape<1, Size, Size>>;  // (C, H, W) of the latent map
    static constexpr std::size_t latent_map_size = latent_shape::size;            // D
    using latent_input = typename detail::input_for<latent_shape>::type;

    using centre_layers = sequential<conv_bn_relu<CentreWidth>, conv_bn_relu<CentreWidth>>;
    using decoder_layers = typename detail::decoder_def<DecoderWidths>::type;
    using reconstruction_head = sequential<centre_layers, decoder_layers>;
    using classifier_head = sequential<conv2d<ClassifierChannels, 1, 1, 0, init::he_uniform, true>, relu, flatten,
                                       dense<ClassifierHidden, init::he_uniform>, relu, dense<Classes>>;
    using vae_encoder_layers = sequential<dense<VaeHidden>, tanh, dense<VaeHidden>, dense<2 * Latent>>;
    using vae_decoder_layers = sequential<dense<VaeHidden>, dense<VaeHidden>, tanh, dense<latent_map_size>>;

    // ---- the networks ------------------------------------------------------------------------
    using fcae = sequential<image_input, encoder_layers, reconstruction_head>;
    using fcae_classifier = sequential<image_input, encoder_layers, heads<reconstruction_head, classifier_head>>;
    using encoder = sequential<image_input, encoder_layers>;
    using vae = sequential<latent_input, flatten, vae_encoder_layers, vae_sampling<VaeBeta>, vae_decoder_layers,
                           typename detail::reshape_for<latent_shape>::type>;
    using vae_encoder = sequential<latent_input, flatten, vae_encoder_layers>;
    using classifier = sequential<latent_input, classifier_head>;
};

/// The paper's configuration: 512x512 images, the VGG16 encoder (13 convolutions in 5 groups,
/// 64-128-256-512-512) to a 16x16x512 latent map, centre 512, decoder 256-128-64-32-16, Z = 16.
/// (The paper's classifier is a separate network, unverified in form; this head is lamina's.)
template <std::size_t Classes, class VaeBeta = std::ratio<1>>
using paper = config<512, widths<64, 128, 256, 512, 512>, convs<2, 2, 3, 3, 3>, 512, widths<256, 128, 64, 32, 16>, Classes,
                     16, 256, 32, 256, VaeBeta>;

/// Copies the parameters and running state of `to`'s layers from the same leading layers of
/// `from` (a trained fcae_classifier into an encoder, a vae into a vae_encoder). Checks that
/// every tensor of `to` has the name (position and layer) and size of `from`'s at that place.
template <class From, class To>
void copy_leading_parameters(const From& from, To& to) {
    auto check = [](const auto& fs, const auto& ts, const char* what) {
        if (ts.size() > fs.size())
            throw shape_error(std::string("lamina: copy_leading_parameters: the target has more ") + what + " tensors (" +
                              std::to_string(ts.size()) + ") than the source (" + std::to_string(fs.size()) + ")");
        for (std::size_t i = 0; i < ts.size(); ++i)
            if (ts[i].name != fs[i].name || ts[i].count != fs[i].count || ts[i].offset != fs[i].offset)
                throw shape_error(std::string("lamina: copy_leading_parameters: ") + what + " tensor " + std::to_string(i) +
                                  " is '" + ts[i].name + "' (" + std::to_string(ts[i].count) + " values) in the target but '" +
                                  fs[i].name + "' (" + std::to_string(fs[i].count) + ") in the source");
    };
    check(from.parameter_segments(), to.parameter_segments(), "parameter");
    check(from.state_segments(), to.state_segments(), "running-state");
    if (To::parameter_count) {
        auto p = from.get_parameters();
        p.resize(To::parameter_count);
        to.set_parameters(p);
    }
    if (To::state_count) {
        auto s = from.get_state();
        s.resize(To::state_count);
        to.set_state(s);
    }
}

/// Indices of the k codes nearest to `query` by L2 distance (ascending; ties by index) among
/// `count` codes of `size` values (row-major), skipping index `exclude` (the query itself
/// when it is one of them; pass count or more to skip nothing). Returns (index, distance).
template <class T>
std::vector<std::pair<std::size_t, double>> nearest_in_latent(const T* codes, std::size_t count, std::size_t size,
                                                              const T* query, std::size_t k,
                                                              std::size_t exclude = static_cast<std::size_t>(-1)) {
    if (size == 0) throw argument_error("lamina: nearest_in_latent: codes of size 0");
    if (count && (!codes || !query)) throw argument_error("lamina: nearest_in_latent: null pointer");
    std::vector<std::pair<std::size_t, double>> all;
    all.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        if (i == exclude) continue;
        double d = 0;
        for (std::size_t j = 0; j < size; ++j) {
            const double e = static_cast<double>(codes[i * size + j]) - static_cast<double>(query[j]);
            d += e * e;
        }
        all.emplace_back(i, std::sqrt(d));
    }
    const std::size_t n = std::min(k, all.size());
    std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(), [](const auto& a, const auto& b) {
        return a.second < b.second || (a.second == b.second && a.first < b.first);
    });
    all.resize(n);
    return all;
}

}  // namespace lamina::models::deepgalaxy
// ---- end include/lamina/models/deepgalaxy.hpp ----

// ---- begin include/lamina/models/conv_autoencoder.hpp ----
// lamina: a small fully convolutional autoencoder (the "fcae" benchmark row of issue 11): strided
// 3x3 convolutions down, transposed 3x3 convolutions back up, trained with MSE against its input.
//
//   models::conv_autoencoder<>                 1x128x128, filters 32-64-128-256: 775,425 parameters
//   models::conv_autoencoder<1, 64, 64>        the same layer table on 64x64 images
//
// Layer table (C x H x W input, H and W multiples of 16):
//   encoder  4x [conv3x3 stride 2 pad 1 + bias, relu] with 32, 64, 128, 256 filters: H -> H/16
//   decoder  4x [transposed conv3x3 stride 2 pad 1 output padding 1 + bias] to 128, 64, 32, C
//            channels (each doubles H and W), relu between them, sigmoid at the end
// The sigmoid keeps reconstructions in [0, 1]: feed images scaled to [0, 1]. Glorot-uniform
// (Xavier) initialisation, zero biases. Put the images in the dataset's targets (loss::mse).



namespace lamina::models {

/// conv3x3, stride 2, padding 1: halves H and W (H even).
template <std::size_t F>
using autoencoder_down = sequential<conv2d<F, 3, 2, 1>, relu>;

/// transposed conv3x3, stride 2, padding 1, output padding 1: (H - 1) * 2 - 2 + 3 + 1 = 2H.
template <std::size_t F>
using autoencoder_up = conv_transpose2d<F, 3, 2, 1, 1>;

template <std::size_t Channels = 1, std::size_t H = 128, std::size_t W = 128>
struct conv_autoencoder_def {
    static_assert(Channels >= 1, "lamina::models::conv_autoencoder: at least one channel");
    static_assert(H % 16 == 0 && W % 16 == 0 && H >= 16 && W >= 16,
                  "lamina::models::conv_autoencoder: height and width must be multiples of 16 (four stride-2 "
                  "convolutions, undone exactly by four transposed ones)");
    using type = sequential<input<Channels, H, W>,
                            autoencoder_down<32>, autoencoder_down<64>, autoencoder_down<128>, autoencoder_down<256>,
                            autoencoder_up<128>, relu,
                            autoencoder_up<64>, relu,
                            autoencoder_up<32>, relu,
                            autoencoder_up<Channels>, sigmoid>;
};

/// The convolutional autoencoder on Channels x H x W images in [0, 1].
template <std::size_t Channels = 1, std::size_t H = 128, std::size_t W = 128>
using conv_autoencoder = typename conv_autoencoder_def<Channels, H, W>::type;

// Parameters at one channel, by hand (conv: Cin*Cout*9 + Cout; transposed: the same with Cin
// the layer's input): encoder 1*32*9+32 = 320, 32*64*9+64 = 18,496, 64*128*9+128 = 73,856,
// 128*256*9+256 = 295,168 (387,840); decoder 256*128*9+128 = 295,040, 128*64*9+64 = 73,792,
// 64*32*9+32 = 18,464, 32*1*9+1 = 289 (387,585); total 775,425.
static_assert(conv_autoencoder<>::output_shape::size == 128 * 128,
              "lamina::models::conv_autoencoder: the reconstruction has the input's size");

}  // namespace lamina::models
// ---- end include/lamina/models/conv_autoencoder.hpp ----

// ---- end include/lamina/framework.hpp ----

// ---- end include/lamina/lamina.hpp ----
