// The hot path allocates nothing: training steps 2..N and batch-1 predict after the first
// call, counted with a replaced global operator new.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <new>

#include <lamina/lamina.hpp>

static std::atomic<long> g_allocations{0};

#if defined(__SANITIZE_ADDRESS__)
// Under ASan, memory from ASan's own operator new (used inside the sanitizer runtime's
// libstdc++ calls) can reach this file's operator delete; the pairing is sound here (both
// sides use malloc/free), so the mismatch check is switched off for this test only.
extern "C" const char* __asan_default_options() { return "alloc_dealloc_mismatch=0"; }
#endif

void* operator new(std::size_t n) {
    ++g_allocations;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
// free() matches the malloc() above; GCC cannot see that the two replacements pair up.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace lm = lamina;
using lenet5 = lm::sequential<lm::input<1, 28, 28>, lm::conv2d<6, 5>, lm::relu, lm::max_pool<2>, lm::conv2d<16, 5>,
                              lm::relu, lm::max_pool<2>, lm::flatten, lm::dense<120>, lm::relu, lm::dense<84>, lm::relu,
                              lm::dense<10>>;

template <class Net, class Backend, class Loss>
void check_training_allocates_nothing(unsigned threads, Loss loss, std::size_t target_size = 1) {
    using model_t = typename Net::template model<Backend>;
    model_t net{lm::seed{1}, lm::threads{threads}};
    constexpr std::size_t in = model_t::input_size;
    lm::dataset<float> d(40, in, target_size);
    for (std::size_t i = 0; i < 40; ++i) {
        for (std::size_t t = 0; t < target_size; ++t) d.target(i)[t] = float((i + t) % 3);
        for (std::size_t k = 0; k < in; ++k) d.sample(i)[k] = float((i * 7 + k) % 13) / 13.0f;
    }
    lm::trainer fit{net, loss, lm::optim::adam{1e-3}};
    std::vector<std::size_t> idx(16), tail(8);
    for (std::size_t i = 0; i < 16; ++i) idx[i] = i;
    for (std::size_t i = 0; i < 8; ++i) tail[i] = 16 + i;
    fit.train_batch(d, idx.data(), 16, 1e-3);  // step 1 plans the buffers
    long before = g_allocations.load();
    for (int s = 0; s < 5; ++s) fit.train_batch(d, idx.data(), 16, 1e-3);
    fit.train_batch(d, tail.data(), 8, 1e-3);  // a smaller last batch reuses the buffers
    long used = g_allocations.load() - before;  // read before Catch's own INFO/CHECK allocate
    INFO(Net::name() << ", backend " << Backend::name << ", " << threads << " thread(s)");
    CHECK(used == 0);
}

using residual_net = lm::sequential<lm::input<2, 8, 8>, lm::conv2d<4, 3, 1, 1>, lm::batch_norm, lm::relu,
                                    lm::models::basic_block<4, 1>, lm::models::basic_block<6, 2>, lm::global_avg_pool,
                                    lm::dense<3>>;
using multi_output_net = lm::sequential<lm::input<10>, lm::dense<12>, lm::relu, lm::dropout_p<10>,
                                        lm::heads<lm::dense<3>, lm::sequential<lm::dense<4>, lm::sigmoid>>>;

TEST_CASE("training steps 2..N allocate nothing", "[alloc]") {
    const lm::loss::softmax_cross_entropy ce{};
    check_training_allocates_nothing<lenet5, lm::reference>(1, ce);
    check_training_allocates_nothing<lenet5, lm::host>(1, ce);
    check_training_allocates_nothing<lenet5, lm::host>(2, ce);
    check_training_allocates_nothing<residual_net, lm::host>(2, ce);
    check_training_allocates_nothing<residual_net, lm::reference>(1, ce);
    lm::loss::per_output two{lm::loss::weighted{1.0, lm::loss::softmax_cross_entropy{}},
                             lm::loss::weighted{0.5, lm::loss::mse{}}};
    check_training_allocates_nothing<multi_output_net, lm::host>(2, two, 5);
}

TEST_CASE("batch-1 predict allocates nothing after the first call", "[alloc][embed]") {
    lenet5::model<lm::host> net{lm::seed{1}, lm::threads{2}};
    std::vector<float> x(784, 0.5f), y(10);
    net.predict(x.data(), y.data(), 1);
    long before = g_allocations.load();
    for (int i = 0; i < 10; ++i) net.predict(x.data(), y.data(), 1);
    long used = g_allocations.load() - before;
    CHECK(used == 0);
}
