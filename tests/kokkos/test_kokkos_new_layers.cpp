// layer_norm, gaussian_noise, upsample_nearest, zero_pad2d, vae_sampling and the BCE loss on
// the Kokkos backend against the reference backend (the executable spec), on every execution
// space of this build: inference, training forward (the noise layers draw the same numbers:
// the generator is counter-based), the added KL loss, backward (input gradients overwritten
// and accumulated, parameter gradients).
#include <lamina/backends/kokkos/kokkos_backend.hpp>  // first: Kokkos, then lamina

#include "kokkos_test_support.hpp"

#include <lamina/backends/reference/reference_backend.hpp>
#include <lamina/layers/dense.hpp>
#include <lamina/layers/flatten.hpp>
#include <lamina/layers/gaussian_noise.hpp>
#include <lamina/layers/layer_norm.hpp>
#include <lamina/layers/upsample.hpp>
#include <lamina/layers/vae_sampling.hpp>
#include <lamina/layers/zero_pad.hpp>
#include <lamina/losses/binary_cross_entropy.hpp>
#include <lamina/network/sequential.hpp>

#include <cmath>
#include <limits>
#include <ratio>
#include <string>
#include <vector>

namespace lm = lamina;
using kt::dev;
using kt::random_vector;

namespace {

/// One network on the reference backend and on Kokkos backend B with the same random
/// parameters and input: every pass agrees.
template <class Net, class B>
void compare_with_reference(std::size_t batch, std::uint64_t step) {
    using T = float;
    typename Net::template model<lm::reference, T> r{lm::seed{3}};
    typename Net::template model<B, T> k{lm::seed{3}};
    constexpr std::size_t in = Net::input_shape::size, out = Net::output_shape::size;
    const std::size_t P = r.parameter_count;
    INFO(r.name_of_layers() << ", batch " << batch);
    REQUIRE(k.get_parameters() == r.get_parameters());
    if (P) {
        const auto w = random_vector<T>(P, 11, -1, 1);  // gamma, beta and weights away from their init
        r.set_parameters(w);
        k.set_parameters(w);
    }
    const auto x = random_vector<T>(batch * in, 12, -2, 2);
    const auto dy = random_vector<T>(batch * out, 13, -1, 1);

    // inference
    std::vector<T> pr(batch * out), pk(batch * out);
    r.predict(x.data(), pr.data(), batch);
    k.predict(x.data(), pk.data(), batch);
    KT_REQUIRE_CLOSE(pk, pr);

    // training forward and the added loss
    dev<B, T> xd(x), dxd(batch * in);
    const T* yr = r.forward_train(x.data(), batch, step);
    std::vector<T> tr(yr, yr + batch * out), tk(batch * out);
    B::download(k.context(), tk.data(), k.forward_train(xd.data(), batch, step), tk.size());
    KT_REQUIRE_CLOSE(tk, tr);
    KT_REQUIRE_CLOSE(std::vector<double>{k.added_loss()}, std::vector<double>{r.added_loss()});

    // backward: dx overwritten (over garbage), parameter gradients
    std::vector<T> dxr(batch * in, T(777));
    std::copy(dy.begin(), dy.end(), r.output_gradient());
    B::upload(k.context(), k.output_gradient(), dy.data(), dy.size());
    B::fill(k.context(), dxd.data(), batch * in, T(777));
    r.backward(dxr.data());
    k.backward(dxd.data());
    KT_REQUIRE_CLOSE(dxd.host(), dxr);
    if (P) KT_REQUIRE_CLOSE(k.get_gradients(), r.get_gradients());

    // backward_accumulate adds into the caller's buffer
    const auto base = random_vector<T>(batch * in, 14, 5, 6);
    std::vector<T> accr = base;
    r.forward_train(x.data(), batch, step);
    std::copy(dy.begin(), dy.end(), r.output_gradient());
    r.backward_accumulate(accr.data());
    dev<B, T> accd(base);
    k.forward_train(xd.data(), batch, step);
    B::upload(k.context(), k.output_gradient(), dy.data(), dy.size());
    k.backward_accumulate(accd.data());
    KT_REQUIRE_CLOSE(accd.host(), accr);

    // another step: other noise on both, still equal
    const T* yr2 = r.forward_train(x.data(), batch, step + 1);
    std::copy(yr2, yr2 + batch * out, tr.begin());
    B::download(k.context(), tk.data(), k.forward_train(xd.data(), batch, step + 1), tk.size());
    KT_REQUIRE_CLOSE(tk, tr);
}

/// Equal within the agreed tolerance, or NaN in both.
bool close_or_both_nan(const std::vector<float>& got, const std::vector<float>& ref, std::string* why) {
    if (got.size() != ref.size()) return false;
    std::vector<float> g, r;
    for (std::size_t i = 0; i < got.size(); ++i) {
        if (std::isnan(got[i]) || std::isnan(ref[i])) {
            if (std::isnan(got[i]) != std::isnan(ref[i])) {
                *why = "element " + std::to_string(i) + ": " + std::to_string(got[i]) + " vs reference " +
                       std::to_string(ref[i]);
                return false;
            }
            continue;
        }
        g.push_back(got[i]);
        r.push_back(ref[i]);
    }
    return kt::close(g, r, why);
}

using noise = lm::gaussian_noise<std::ratio<1, 2>>;
// every new layer in one chain: zero_pad and upsample on images, layer_norm in place of
// dense's output gradient, noise in place over layer_norm's output, then the VAE head
using chain = lm::sequential<lm::input<2, 5, 5>, lm::zero_pad2d<1>, lm::upsample_nearest<2>, lm::flatten, lm::dense<16>,
                             lm::layer_norm, noise, lm::dense<8>, lm::vae_sampling<std::ratio<1, 2>>>;

}  // namespace

TEMPLATE_TEST_CASE("layer_norm on Kokkos matches the reference", "[kokkos][layers][layer_norm]",
                   LAMINA_KOKKOS_TEST_SPACES) {
    using B = lm::kokkos_backend<TestType>;
    compare_with_reference<lm::sequential<lm::input<3, 4, 5>, lm::layer_norm>, B>(3, 1);
    compare_with_reference<lm::sequential<lm::input<37>, lm::layer_norm>, B>(5, 1);
    compare_with_reference<lm::sequential<lm::input<7>, lm::layer_norm_t<std::ratio<1, 10>>>, B>(1, 1);
}

TEMPLATE_TEST_CASE("gaussian_noise on Kokkos draws the reference's noise", "[kokkos][layers][gaussian_noise]",
                   LAMINA_KOKKOS_TEST_SPACES) {
    using B = lm::kokkos_backend<TestType>;
    compare_with_reference<lm::sequential<lm::input<2, 5, 7>, noise>, B>(3, 4);
    compare_with_reference<lm::sequential<lm::input<1000>, noise>, B>(2, 9);
}

TEMPLATE_TEST_CASE("upsample_nearest and zero_pad2d on Kokkos match the reference", "[kokkos][layers][upsample]",
                   LAMINA_KOKKOS_TEST_SPACES) {
    using B = lm::kokkos_backend<TestType>;
    compare_with_reference<lm::sequential<lm::input<2, 3, 4>, lm::upsample_nearest<2>>, B>(3, 1);
    compare_with_reference<lm::sequential<lm::input<3, 2, 5>, lm::upsample_nearest<3>>, B>(2, 1);
    compare_with_reference<lm::sequential<lm::input<2, 3, 4>, lm::zero_pad2d<1>>, B>(3, 1);
    compare_with_reference<lm::sequential<lm::input<3, 4, 5>, lm::zero_pad2d_tblr<2, 1, 0, 3>>, B>(2, 1);
}

TEMPLATE_TEST_CASE("vae_sampling on Kokkos matches the reference (eps, KL, gradients)", "[kokkos][layers][vae]",
                   LAMINA_KOKKOS_TEST_SPACES) {
    using B = lm::kokkos_backend<TestType>;
    compare_with_reference<lm::sequential<lm::input<16>, lm::vae_sampling<>>, B>(4, 2);
    compare_with_reference<lm::sequential<lm::input<600>, lm::vae_sampling<std::ratio<1, 2>>>, B>(3, 5);
}

TEMPLATE_TEST_CASE("the new layers chained on Kokkos match the reference", "[kokkos][layers]",
                   LAMINA_KOKKOS_TEST_SPACES) {
    using B = lm::kokkos_backend<TestType>;
    compare_with_reference<chain, B>(3, 6);
}

TEMPLATE_TEST_CASE("binary_cross_entropy_with_logits on Kokkos matches the reference", "[kokkos][loss][bce]",
                   LAMINA_KOKKOS_TEST_SPACES) {
    using B = lm::kokkos_backend<TestType>;
    typename B::context c;
    lm::reference::context rc;
    const lm::loss::binary_cross_entropy_with_logits bce{};
    for (std::size_t rows : {std::size_t(1), std::size_t(5), std::size_t(64)})
        for (std::size_t cols : {std::size_t(1), std::size_t(7)}) {
            auto x = random_vector<float>(rows * cols, 21, -30, 30);  // large logits: the stable form matters
            const auto t = random_vector<float>(rows * cols, 22, 0, 1);
            if (rows > 1) x[cols] = std::numeric_limits<float>::quiet_NaN();  // row 1 turns NaN
            std::vector<float> gr(rows * cols), lr(rows);
            const float want = bce.operator()<lm::reference, float>(rc, x.data(), t.data(), gr.data(), lr.data(), rows, cols);
            dev<B, float> xd(x), td(t), gd(rows * cols), ld(rows);
            const float got = bce.operator()<B, float>(c, xd.data(), td.data(), gd.data(), ld.data(), rows, cols);
            INFO(rows << " x " << cols);
            CHECK(std::isnan(got) == (rows > 1));
            CHECK(std::isnan(want) == (rows > 1));
            if (rows == 1) KT_REQUIRE_CLOSE(std::vector<float>{got}, std::vector<float>{want});
            std::string why_g, why_l;
            const bool grad_ok = close_or_both_nan(gd.host(), gr, &why_g);
            const bool rows_ok = close_or_both_nan(ld.host(), lr, &why_l);
            INFO("gradient: " << why_g << "; row losses: " << why_l);
            CHECK(grad_ok);
            CHECK(rows_ok);
        }
}
