// The per-node profiler: off by default; attached, it times every leaf's forward and backward,
// names them as the summary does, and writes a Chrome trace of the events.
#include <catch2/catch.hpp>

#include <lamina/lamina.hpp>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

namespace lm = lamina;

TEST_CASE("the profiler times every leaf and writes a Chrome trace", "[profiler]") {
    using net_t = lm::sequential<lm::input<1, 8, 8>, lm::conv2d<4, 3, 1, 1>, lm::batch_norm, lm::relu,
                                 lm::models::basic_block<4, 1>, lm::global_avg_pool, lm::dense<3>>;
    net_t::model<lm::host> net{lm::seed{1}, lm::threads{2}};
    CHECK(net.profiler() == nullptr);  // off by default
    lm::dataset<float> d(8, 64, 1);
    for (std::size_t i = 0; i < 8; ++i) {
        *d.target(i) = float(i % 3);
        for (std::size_t k = 0; k < 64; ++k) d.sample(i)[k] = float((i + k) % 7) / 7.0f;
    }
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1}};
    lm::node_profiler prof;
    net.profile(&prof);
    fit.run(d, lm::epochs{2}, lm::batch{4});  // 4 training steps
    std::vector<float> y(8 * 3);
    net.predict(d.view().inputs, y.data(), 8);
    net.profile(nullptr);

    const auto& leaves = net.graph().leaves();
    std::size_t views = 0;
    for (const auto& l : leaves) views += l.traits.view ? 1 : 0;
    // every non-view leaf: 4 training forwards, 4 backwards, 1 inference forward
    std::vector<int> fwd(leaves.size()), bwd(leaves.size()), inf(leaves.size());
    for (const auto& e : prof.events()) {
        if (e.what == lm::node_profiler::forward_train) ++fwd[e.leaf];
        else if (e.what == lm::node_profiler::backward) ++bwd[e.leaf];
        else ++inf[e.leaf];
        CHECK(e.duration_us >= 0);
    }
    for (std::size_t l = 0; l < leaves.size(); ++l) {
        INFO(leaves[l].name);
        const int want = leaves[l].traits.view ? 0 : 1;
        CHECK(fwd[l] == 4 * want);
        CHECK(bwd[l] == 4 * want);
        CHECK(inf[l] == want);
    }
    CHECK(prof.events().size() == 9 * (leaves.size() - views));

    const std::string table = prof.report(net.graph(), sizeof(float));
    CHECK_THAT(table, Catch::Contains("conv2d<4,3x3,p1>") && Catch::Contains("batch_norm") &&
                          Catch::Contains("GF/s") && Catch::Contains("total: forward"));

    const std::string path = "/tmp/lamina_test_profile_" + std::to_string(::getpid()) + ".json";
    prof.write_chrome_trace(path, net.graph());
    std::ifstream f(path);
    std::string json((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    CHECK(json.rfind("{\"traceEvents\":[", 0) == 0);
    std::size_t complete = 0;
    for (std::size_t at = json.find("\"ph\":\"X\""); at != std::string::npos; at = json.find("\"ph\":\"X\"", at + 1))
        ++complete;
    CHECK(complete == prof.events().size());
    CHECK(json.find("\"cat\":\"backward\"") != std::string::npos);
    std::remove(path.c_str());
}
