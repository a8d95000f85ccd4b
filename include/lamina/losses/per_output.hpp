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
#pragma once

#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>

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
