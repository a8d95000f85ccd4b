// lamina model benchmarks, issue 11's science models (linked into bench_models; the definitions
// and batches are in common/model_specs.hpp, the twins in bench_torch_models.cpp):
//   fcae             models::conv_autoencoder<1, 128, 128>, MSE against the input, batch 16
//   deepgalaxy_fcae  the DeepGalaxy FCAE at 256x256: deepgalaxy::paper's layer table (VGG16
//                    encoder, centre 512, decoder 256-128-64-32-16) on 256x256 images, MAE, batch 4
//   hep_cnn          models::hep_cnn<> (224x224x3, 128 filters, dropout 0.5), batch 8
//   mcnn             models::mcnn<13, 3, 256, 320> (both sides multiples of 64), batch 4
// A separate translation unit: these networks do not lengthen the compile of the other rows.
#include <lamina/lamina.hpp>
#include <lamina/models/conv_autoencoder.hpp>
#include <lamina/models/deepgalaxy.hpp>
#include <lamina/models/hep_cnn.hpp>
#include <lamina/models/mcnn.hpp>

#include "common/lamina_run_model.hpp"
#include "common/model_specs.hpp"

namespace lm = lamina;
namespace dg = lamina::models::deepgalaxy;

namespace {
using fcae_net = lm::models::conv_autoencoder<1, 128, 128>;
// The paper's 512x512 configuration (deepgalaxy::paper) with Size 256: the same layers, an 8x8x512
// latent map. Only fcae is built; the class count does not enter it.
using deepgalaxy_config = dg::config<256, dg::widths<64, 128, 256, 512, 512>, dg::convs<2, 2, 3, 3, 3>, 512,
                                     dg::widths<256, 128, 64, 32, 16>, 2>;
using deepgalaxy_fcae_net = deepgalaxy_config::fcae;
using hep_cnn_net = lm::models::hep_cnn<2, 3, 224, 224, 128, 50>;
using mcnn_net = lm::models::mcnn<13, 3, 256, 320>;

static_assert(fcae_net::model<lm::host>::parameter_count == bench::fcae_spec.parameters);
static_assert(deepgalaxy_fcae_net::model<lm::host>::parameter_count == bench::deepgalaxy_fcae_spec.parameters);
static_assert(hep_cnn_net::model<lm::host>::parameter_count == bench::hep_cnn_spec.parameters);
static_assert(mcnn_net::model<lm::host>::parameter_count == bench::mcnn_spec.parameters);
}  // namespace

bool run_science_models(const bench::args& a, const bench::protocol& p, unsigned threads) {
    bool any = false;
    if (a.selects("model", "fcae")) {
        bench::run_model<fcae_net, lm::loss::mse>(bench::fcae_spec, a, p, threads);
        any = true;
    }
    if (a.selects("model", "deepgalaxy_fcae")) {
        bench::run_model<deepgalaxy_fcae_net, lm::loss::mae>(bench::deepgalaxy_fcae_spec, a, p, threads);
        any = true;
    }
    if (a.selects("model", "hep_cnn")) {
        bench::run_model<hep_cnn_net>(bench::hep_cnn_spec, a, p, threads);
        any = true;
    }
    if (a.selects("model", "mcnn")) {
        bench::run_model<mcnn_net>(bench::mcnn_spec, a, p, threads);
        any = true;
    }
    return any;
}
