// Network composition: shape deduction, parameter counts, summaries, the embedding API
// (const thread-safe predict, Eigen views) and a user-defined layer outside lamina.
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

#include <lamina/lamina.hpp>

namespace lm = lamina;

using lenet5 = lm::sequential<lm::input<1, 28, 28>, lm::conv2d<6, 5>, lm::relu, lm::max_pool<2>, lm::conv2d<16, 5>,
                              lm::relu, lm::max_pool<2>, lm::flatten, lm::dense<120>, lm::relu, lm::dense<84>, lm::relu,
                              lm::dense<10>>;

TEST_CASE("shapes are deduced at compile time", "[network]") {
    using model = lenet5::model<lm::reference>;
    STATIC_REQUIRE(std::is_same_v<model::shape_at<1>, lm::shape<6, 24, 24>>);
    STATIC_REQUIRE(std::is_same_v<model::shape_at<3>, lm::shape<6, 12, 12>>);
    STATIC_REQUIRE(std::is_same_v<model::shape_at<4>, lm::shape<16, 8, 8>>);
    STATIC_REQUIRE(std::is_same_v<model::shape_at<7>, lm::shape<256>>);
    STATIC_REQUIRE(std::is_same_v<model::shape_at<9>, lm::shape<120>>);  // between dense<120> and its fused relu
    STATIC_REQUIRE(std::is_same_v<lenet5::output_shape, lm::shape<10>>);
    // Stride and padding: (32 + 2*1 - 3)/2 + 1 = 16.
    using strided = lm::sequential<lm::input<3, 32, 32>, lm::conv2d<8, 3, 2, 1>, lm::avg_pool<2>>;
    STATIC_REQUIRE(std::is_same_v<strided::output_shape, lm::shape<8, 8, 8>>);
}

TEST_CASE("parameter count and FLOPs follow the layer table", "[network]") {
    // LeNet-5 as in the issue: 156 + 2416 + 30840 + 10164 + 850 = 44,426 parameters.
    STATIC_REQUIRE(lenet5::model<lm::reference>::parameter_count == 44426);
    // conv1 forward: 2 * 6 * 1 * 25 * 24 * 24 = 172,800 FLOPs.
    lenet5::model<lm::reference> net{lm::seed{1}};
    CHECK(net.graph().leaves()[0].flops_per_sample == 172800.0);
    auto s = net.summary();
    CHECK_THAT(s, Catch::Contains("conv2d<6,5x5>"));
    CHECK_THAT(s, Catch::Contains("(16,8,8)"));
    CHECK_THAT(s, Catch::Contains("44426 parameters"));
    REQUIRE(net.parameter_segments().size() == 10);
    CHECK(net.parameter_segments()[1].name == "0:conv2d<6,5x5>.bias");
    CHECK_FALSE(net.parameter_segments()[1].decay);
    CHECK(net.parameter_segments()[2].offset == 156);
}

TEST_CASE("the same seed gives the same parameters on every backend", "[network][rng]") {
    lenet5::model<lm::reference> a{lm::seed{7}};
    lenet5::model<lm::host> b{lm::seed{7}, lm::threads{2}};
    lenet5::model<lm::host> c{lm::seed{8}, lm::threads{1}};
    CHECK(a.get_parameters() == b.get_parameters());
    CHECK(a.get_parameters() != c.get_parameters());
}

TEST_CASE("predict on host pointers and Eigen matrices matches the reference", "[network][embed]") {
    lenet5::model<lm::reference> ref{lm::seed{3}};
    lenet5::model<lm::host> net{lm::seed{3}, lm::threads{2}};
    const std::size_t n = 5;
    std::vector<float> x(n * 784), y_ref(n * 10), y(n * 10);
    lm::random_stream r{11, 0};
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = r.uniform(i);
    ref.predict(x.data(), y_ref.data(), n);
    net.predict(x.data(), y.data(), n);
    float m = 0;
    for (float v : y_ref) m = std::max(m, std::abs(v));
    for (std::size_t i = 0; i < y.size(); ++i)
        CHECK(std::abs(y[i] - y_ref[i]) <= 1e-5f * std::max(std::abs(y[i]), std::abs(y_ref[i])) + 1e-6f * m);

    Eigen::Map<const lenet5::model<lm::host>::matrix> xin(x.data(), n, 784);
    auto out = net.predict(xin);
    REQUIRE(out.rows() == 5);
    REQUIRE(out.cols() == 10);
    for (std::size_t i = 0; i < y.size(); ++i) CHECK(out.data()[i] == y[i]);

    lenet5::model<lm::host>::matrix wrong(2, 100);
    CHECK_THROWS_AS(net.predict(wrong), lm::shape_error);
    CHECK_THROWS_WITH(net.predict(wrong), Catch::Contains("100 columns") && Catch::Contains("784"));
}

TEST_CASE("predict is const and thread-safe", "[network][embed]") {
    using mlp = lm::sequential<lm::input<32>, lm::dense<64>, lm::tanh, lm::dense<8>>;
    const mlp::model<lm::host> net{lm::seed{5}, lm::threads{2}};
    std::vector<float> x(32), expect(8);
    for (std::size_t i = 0; i < 32; ++i) x[i] = std::sin(float(i));
    net.predict(x.data(), expect.data(), 1);
    std::atomic<int> mismatches{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
        ts.emplace_back([&] {
            std::vector<float> y(8);
            for (int k = 0; k < 200; ++k) {
                net.predict(x.data(), y.data(), 1);
                if (y != expect) ++mismatches;
            }
        });
    for (auto& t : ts) t.join();
    CHECK(mismatches == 0);
}

// ---- a user-defined layer, outside namespace lamina: y = scale * x^3 with a learned scale ----
namespace user {
struct scaled_cube : lm::layer_descriptor_base {
    static std::string name() { return "scaled_cube"; }
    template <class In, class Backend, class T>
    class impl : public lm::layer_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t parameter_count = 1;
        static constexpr double flops_per_sample = 3.0 * In::size;
        std::vector<lm::parameter_spec> parameter_specs() const { return {{"scale", 1, 1, 1, lm::init::kind::ones, false}}; }
        void bind_parameters(T* w, T* g) { w_ = w; g_ = g; }
        void forward(const context& c, const T* x, T* y, std::size_t batch, T*) const {
            const T* w = w_;
            Backend::for_each_index(c, batch * In::size, [=](std::size_t i) { y[i] = w[0] * x[i] * x[i] * x[i]; });
        }
        void forward_train(const context& c, const T* x, T* y, std::size_t batch, T* ws, std::uint64_t) {
            forward(c, x, y, batch, ws);
        }
        void backward(const context& c, const T* x, const T*, const T* dy, T* dx, std::size_t batch, T*) {
            const T* w = w_;
            std::size_t n = batch * In::size;
            if (dx) Backend::for_each_index(c, n, [=](std::size_t i) { dx[i] = dy[i] * T(3) * w[0] * x[i] * x[i]; });
            // d scale = sum dy * x^3 (serial reduction through a 1-element index space).
            T* g = g_;
            Backend::for_each_index(c, 1, [=](std::size_t) {
                T s = 0;
                for (std::size_t i = 0; i < n; ++i) s += dy[i] * x[i] * x[i] * x[i];
                g[0] = s;
            });
        }

    private:
        T* w_ = nullptr;
        T* g_ = nullptr;
    };
};
}  // namespace user

TEST_CASE("a user-defined layer trains inside a network", "[network][custom]") {
    // Target: y = 0.5 * x^3; the layer starts at scale 1 and must learn 0.5.
    using net_t = lm::sequential<lm::input<4>, user::scaled_cube>;
    net_t::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    REQUIRE(net.get_parameters() == std::vector<float>{1.0f});
    lm::dataset<float> d(64, 4, 4);
    lm::random_stream r{2, 0};
    for (std::size_t i = 0; i < 64; ++i)
        for (std::size_t k = 0; k < 4; ++k) {
            float v = 2 * r.uniform(i * 4 + k) - 1;
            d.sample(i)[k] = v;
            d.target(i)[k] = 0.5f * v * v * v;
        }
    lm::trainer fit{net, lm::loss::mse{}, lm::optim::sgd{0.5}};
    fit.run(d, lm::epochs{30}, lm::batch{16});
    CHECK(net.get_parameters()[0] == Approx(0.5f).margin(1e-3));
    CHECK(fit.evaluate(d).loss < 1e-6);
}

// ---- a user-defined layer on the node contract (layers/layer_concept.hpp): y = a * x + b with
// a learned per-feature pair, accumulating its input gradient, reporting to the sink ----------
namespace user {
struct affine : lm::layer_descriptor_base {
    static std::string name() { return "affine"; }
    template <class In, class Backend, class T>
    class impl : public lm::node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t n_features = In::size;
        static constexpr std::size_t parameter_count = 2 * n_features;
        static constexpr double flops_per_sample = 2.0 * n_features;
        static constexpr lm::graph::leaf_traits traits = [] {
            lm::graph::leaf_traits t;
            t.needs_input = true;   // da = sum dy x
            t.accumulates = true;   // honours io.accumulate
            return t;
        }();
        std::vector<lm::tensor_spec> tensor_specs() const {
            return {{"a", n_features, 0, 0, lm::init::kind::ones, false}, {"b", n_features, 0, 0, lm::init::kind::zeros, false}};
        }
        void bind(const lm::tensor_binding<T>& b) {
            p_ = b.parameters;
            g_ = b.gradients;
        }
        void forward(const context& c, const lm::node_io<T>& io) const {
            const T* p = p_;
            const T* x = io.x[0];
            T* y = io.y;
            constexpr std::size_t F = n_features;
            Backend::for_each_index(c, io.batch * F, LAMINA_LAMBDA(std::size_t i) { y[i] = p[i % F] * x[i] + p[F + i % F]; });
        }
        template <class Sink>
        void backward(const context& c, const lm::node_io<T>& io, Sink& sink) {
            const T* p = p_;
            const T* x = io.x[0];
            const T* dy = io.dy;
            T* g = g_;
            const std::size_t n = io.batch;
            constexpr std::size_t F = n_features;
            Backend::for_each_index(c, F, LAMINA_LAMBDA(std::size_t f) {
                T da = 0, db = 0;
                for (std::size_t b = 0; b < n; ++b) {
                    da += dy[b * F + f] * x[b * F + f];
                    db += dy[b * F + f];
                }
                g[f] = da;
                g[F + f] = db;
            });
            sink.ready(static_cast<const T*>(g_), parameter_count);
            if (T* dx = io.dx[0]) {
                const bool acc = io.accumulate[0];
                Backend::for_each_index(c, n * F, LAMINA_LAMBDA(std::size_t i) {
                    const T v = dy[i] * p[i % F];
                    dx[i] = acc ? dx[i] + v : v;
                });
            }
        }

    private:
        T* p_ = nullptr;
        T* g_ = nullptr;
    };
};
}  // namespace user

TEST_CASE("a user-defined layer on the node contract trains, accumulates and inside a residual", "[network][custom]") {
    using net_t = lm::sequential<lm::input<3>, lm::residual<lm::sequential<user::affine, lm::tanh>>, user::affine>;
    net_t::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    REQUIRE(net.parameter_count == 12);
    // target: y = 2 x - 1 per feature through the last affine (the residual starts near 2x)
    lm::dataset<float> d(64, 3, 3);
    lm::random_stream r{5, 0};
    for (std::size_t i = 0; i < 64; ++i)
        for (std::size_t k = 0; k < 3; ++k) {
            float v = 2 * r.uniform(i * 3 + k) - 1;
            d.sample(i)[k] = v;
            d.target(i)[k] = 2 * (v + std::tanh(v)) - 1;
        }
    lm::trainer fit{net, lm::loss::mse{}, lm::optim::sgd{0.2}};
    fit.run(d, lm::epochs{200}, lm::batch{16});
    CHECK(fit.evaluate(d).loss < 1e-4);
    auto p = net.get_parameters();  // residual's affine (a, b), then the last affine (a, b)
    for (std::size_t k = 0; k < 3; ++k) {
        CHECK(p[6 + k] == Approx(2.0f).margin(0.02));
        CHECK(p[9 + k] == Approx(-1.0f).margin(0.02));
    }
}
