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
#pragma once

#include <cmath>
#include <cstddef>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "composites.hpp"
#include "sequential.hpp"

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
