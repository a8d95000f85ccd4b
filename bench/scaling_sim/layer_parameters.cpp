// Prints, for the two models of the simulated scaling study, each leaf node's index, name,
// parameter count and first element in the flat gradient buffer, as CSV on stdout:
//   layer_parameters resnet50|deepgalaxy_fcae
// The profiler's trace (bench_models --profile) names each leaf by its index but carries no
// parameter counts; profile_to_layers.py joins the two into the simulator's per-layer table.
// The model types are the ones bench_models trains (bench/bench_models.cpp,
// bench/bench_models_science.cpp); the static_asserts tie them to bench/common/model_specs.hpp.
#include <lamina/lamina.hpp>
#include <lamina/models/deepgalaxy.hpp>

#include "common/model_specs.hpp"

#include <cstdio>
#include <cstring>
#include <memory>

namespace lm = lamina;
namespace dg = lamina::models::deepgalaxy;

namespace {
using resnet50_net = lm::models::resnet50<1000>;
using deepgalaxy_fcae_net = dg::config<256, dg::widths<64, 128, 256, 512, 512>, dg::convs<2, 2, 3, 3, 3>, 512,
                                       dg::widths<256, 128, 64, 32, 16>, 2>::fcae;
static_assert(resnet50_net::model<lm::host>::parameter_count == bench::resnet50_spec.parameters);
static_assert(deepgalaxy_fcae_net::model<lm::host>::parameter_count == bench::deepgalaxy_fcae_spec.parameters);

template <class Net>
int print() {
    auto net = std::make_unique<typename Net::template model<lm::host>>(lm::seed{1}, lm::threads{1});
    std::printf("layer,name,parameters,offset\n");
    const auto& leaves = net->graph().leaves();
    for (std::size_t l = 0; l < leaves.size(); ++l)
        std::printf("%zu,\"%s\",%zu,%zu\n", l, leaves[l].name.c_str(), leaves[l].parameters, leaves[l].parameter_offset);
    return 0;
}
}  // namespace

int main(int argc, char** argv) {
    if (argc == 2 && !std::strcmp(argv[1], "resnet50")) return print<resnet50_net>();
    if (argc == 2 && !std::strcmp(argv[1], "deepgalaxy_fcae")) return print<deepgalaxy_fcae_net>();
    std::fprintf(stderr, "usage: layer_parameters resnet50|deepgalaxy_fcae\n");
    return 2;
}
