// The memory planner: a model whose edges share one arena (with in-place leaves and aliased
// gradients) computes bit-for-bit what the same model computes with every edge in memory of
// its own (set_memory_sharing(false)), over training steps, inference, input gradients and
// running statistics, for networks with residuals, branches, heads, batch norm and dropout;
// and it does share: the arena is smaller and the expected leaves run in place.
#include <catch2/catch.hpp>

#include <lamina/lamina.hpp>

#include <cstring>
#include <string>
#include <vector>

namespace lm = lamina;

namespace {

template <class Net, class B>
void require_same_with_and_without_sharing(std::size_t batch, std::size_t steps = 3) {
    using model_t = typename Net::template model<B, float>;
    model_t shared{lm::seed{11}, lm::threads{2}}, own{lm::seed{11}, lm::threads{2}};
    own.set_memory_sharing(false);
    constexpr std::size_t in = model_t::input_size;
    lm::random_stream r{3, 4};
    std::vector<float> x(batch * in);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = 2 * r.uniform(i) - 1;
    std::vector<float> dx_a(x.size()), dx_b(x.size());
    lm::sgd_step<float> s;
    s.lr = 0.05f;
    for (std::size_t step = 0; step < steps; ++step) {
        shared.forward_train(x.data(), batch, step);
        own.forward_train(x.data(), batch, step);
        for (std::size_t k = 0; k < model_t::outputs; ++k) {
            const std::size_t n = batch * model_t::output_sizes[k];
            REQUIRE(std::memcmp(shared.output(k), own.output(k), n * sizeof(float)) == 0);
            for (std::size_t i = 0; i < n; ++i) {  // dLoss/dy: something not symmetric
                const float g = 0.1f * float((i * 7 + k) % 5) - 0.2f + 0.01f * shared.output(k)[i];
                shared.output_gradient(k)[i] = g;
                own.output_gradient(k)[i] = g;
            }
        }
        shared.backward(dx_a.data());
        own.backward(dx_b.data());
        REQUIRE(dx_a == dx_b);
        REQUIRE(shared.get_gradients() == own.get_gradients());
        // a plain SGD step on both (through the backend's kernel)
        std::vector<float> v(model_t::parameter_count, 0.0f);
        B::sgd_update(shared.context(), shared.parameters(), static_cast<const float*>(shared.gradients()), v.data(),
                      model_t::parameter_count, s);
        std::fill(v.begin(), v.end(), 0.0f);
        B::sgd_update(own.context(), own.parameters(), static_cast<const float*>(own.gradients()), v.data(),
                      model_t::parameter_count, s);
        REQUIRE(shared.get_parameters() == own.get_parameters());
        REQUIRE(shared.get_state() == own.get_state());
    }
    std::vector<float> ya(batch * model_t::output_size), yb(ya.size());
    shared.predict(x.data(), ya.data(), batch);
    own.predict(x.data(), yb.data(), batch);
    REQUIRE(ya == yb);
    shared.plan(batch);
    own.plan(batch);
    CHECK(shared.training_plan().arena_elements < own.training_plan().arena_elements);
}

using conv3 = lm::conv2d<6, 3, 1, 1, lm::init::he_uniform, false>;
using block_a = lm::models::basic_block<6, 1>;
using net_resnet_a = lm::sequential<lm::input<3, 8, 8>, conv3, lm::batch_norm, lm::relu, block_a,
                                    lm::models::basic_block<8, 2>, lm::global_avg_pool, lm::dense<5>>;
using net_resnet_b =
    lm::sequential<lm::input<3, 8, 8>, conv3, lm::batch_norm, lm::relu,
                   lm::models::basic_block<8, 2, lm::shortcut_option::projection>,
                   lm::models::bottleneck<4, 8, 1>, lm::models::bottleneck<4, 12, 2>, lm::global_avg_pool, lm::dense<5>>;
using net_branches = lm::sequential<
    lm::input<2, 6, 6>, lm::conv2d<4, 3, 1, 1>, lm::relu,
    lm::branches<lm::concat, lm::sequential<lm::conv2d<3, 1>, lm::batch_norm, lm::relu>, lm::identity,
                 lm::sequential<lm::max_pool<3, 1, 1>, lm::dropout_p<30>>>,
    lm::branches<lm::add, lm::conv2d<5, 1>, lm::sequential<lm::conv2d<5, 3, 1, 1>, lm::tanh>>, lm::flatten,
    lm::dense<16>, lm::relu, lm::dropout_p<20>, lm::dense<4>>;
using net_heads = lm::sequential<lm::input<12>, lm::dense<10>, lm::batch_norm, lm::relu,
                                 lm::heads<lm::sequential<lm::dense<8>, lm::sigmoid>,
                                           lm::sequential<lm::dense<6>, lm::relu, lm::dense<3>>, lm::identity>>;

}  // namespace

TEMPLATE_TEST_CASE("shared memory computes exactly what unshared memory computes", "[memory][network]", lm::reference,
                   lm::host) {
    require_same_with_and_without_sharing<net_resnet_a, TestType>(3);
    require_same_with_and_without_sharing<net_resnet_b, TestType>(2);
    require_same_with_and_without_sharing<net_branches, TestType>(3);
    require_same_with_and_without_sharing<net_heads, TestType>(4);
}

TEST_CASE("the planner runs the expected leaves in place and shares memory", "[memory][network]") {
    using lenet = lm::sequential<lm::input<1, 28, 28>, lm::conv2d<6, 5>, lm::relu, lm::max_pool<2>, lm::flatten,
                                 lm::dense<32>, lm::relu, lm::dense<10>>;
    lenet::model<lm::reference> net{lm::seed{1}};
    net.plan(16);
    const auto& p = net.training_plan();
    const auto& leaves = net.graph().leaves();
    REQUIRE(leaves[1].name == "relu");
    CHECK(p.leaves[1].in_place);        // relu over the conv output (conv does not read its output)
    CHECK_FALSE(p.leaves[0].in_place);  // nothing writes over the caller's input
    CHECK(leaves[3].name == "flatten");  // a view: no storage of its own
    CHECK(leaves[3].output == leaves[3].inputs[0]);
    CHECK(p.arena_elements < p.unshared_elements);

    // residual: the join runs in place over the main path; batch norm + relu in place
    using res = lm::sequential<lm::input<4, 6, 6>, lm::models::basic_block<4, 1>>;
    res::model<lm::reference> r{lm::seed{1}};
    r.plan(2);
    std::string in_place;
    for (std::size_t l = 0; l < r.graph().leaves().size(); ++l)
        if (r.training_plan().leaves[l].in_place) in_place += r.graph().leaves()[l].name + " ";
    CHECK(in_place == "relu add relu ");
    // the identity shortcut is a view, and the add's main-path gradient is the block output's
    std::string s = r.summary(2);
    CHECK_THAT(s, Catch::Contains("planned memory at batch 2"));
}

TEST_CASE("predict at a new batch size plans once, then reuses", "[memory][embed]") {
    using net_t = lm::sequential<lm::input<6>, lm::dense<8>, lm::relu, lm::dense<2>>;
    net_t::model<lm::host> net{lm::seed{2}, lm::threads{1}};
    std::vector<float> x(5 * 6, 0.25f), y(5 * 2), y2(5 * 2);
    net.predict(x.data(), y.data(), 5);
    net.predict(x.data(), y2.data(), 5);
    CHECK(y == y2);
    std::vector<float> one(2);
    net.predict(x.data(), one.data(), 1);
    CHECK(one[0] == y[0]);
}
