// lamina host backend: fused optimizer updates (one pass over w, g and the state).
#pragma once

#include "../../core/geometry.hpp"
#include "elementwise.hpp"

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
