// lamina: Philox4x32-10, a counter-based random number generator (Salmon et al., SC11).
// Counter-based means the n-th number of a stream is a pure function of (seed, stream, n):
// initialisation, shuffling and dropout give the same numbers on any compiler, thread count
// or backend, and a checkpoint only needs the seed and counters to resume bit-identically.
#pragma once

#include <cmath>
#include <cstdint>

#include "config.hpp"

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
