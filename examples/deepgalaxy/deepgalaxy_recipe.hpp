// The DeepGalaxy recipe shared by examples/deepgalaxy (host backend) and its Kokkos twin
// (examples/kokkos/deepgalaxy_kokkos.cpp): a simulation that trains its surrogate in process.
//
//  1. simulate galaxy mergers with the N-body code (merger_dataset.hpp): 3 mass ratios x 4
//     runs, imaged from 14 cameras every 4.9 Myr (64x64 surface-density images)
//  2. write them in DeepGalaxy's HDF5 layout (lamina/data/deepgalaxy_hdf5.hpp) and read the
//     file back with the reader that loads the paper's files (from memory without HDF5)
//  3. labels: mass-ratio class (3) x time bin (4: each run's snapshots in 4 equal spans) = 12
//     classes; the last run of every mass ratio is held out (mergers the network never saw)
//  4. train the FCAE with a classifier head on its latent map jointly (one network, two
//     heads: MAE on the reconstruction + weighted softmax cross-entropy), Adam, cosine decay;
//     or with --staged the paper's order: the FCAE alone, then the VAE, then the classifier
//  5. the VAE on the (RMS-normalised) latent maps, Beta = 1/D with D the latent map's size,
//     so the loss is (sum of squared errors + KL) / D: a Gaussian ELBO up to constants
//  6. report reconstruction error, KL, classifier accuracy on the held-out mergers against
//     chance, and the 5 nearest neighbours in z of a held-out query image; write
//     reconstruction.png (inputs above reconstructions), neighbours.png and a loss curve
//     per training run (SVG); PGM instead of PNG without libpng
//
// The network (models::deepgalaxy, 64x64 instead of the paper's 512x512): encoder groups of
// 8, 16, 32 filters (1, 1, 2 convolutions) to an 8x8x32 latent map, centre 32, decoder
// 16-8-8, classifier conv1x1 16 -> dense 64 -> 12, VAE 256-256-(16 + 16).
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <ratio>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <lamina/communicators/none.hpp>
#include <lamina/data/deepgalaxy_hdf5.hpp>
#include <lamina/data/distributed_sampler.hpp>
#include <lamina/io/image_writer.hpp>
#include <lamina/io/svg_plot.hpp>
#include <lamina/models/deepgalaxy.hpp>

#include "merger_dataset.hpp"

namespace deepgalaxy_example {

namespace lm = lamina;
namespace dg = lamina::models::deepgalaxy;

inline constexpr std::size_t image_size = 64, mass_classes = 3, time_bins = 4, classes = mass_classes * time_bins;
using network_config = dg::config<image_size, dg::widths<8, 16, 32>, dg::convs<1, 1, 2>, 32, dg::widths<16, 8, 8>, classes,
                                  16, 256, 16, 64, std::ratio<1, 2048>>;
static_assert(network_config::latent_map_size == 2048, "VaeBeta must be 1 / D, D the latent map's size");

struct options {
    galaxy_sim::dataset_options data;
    std::size_t epochs = 8, vae_epochs = 30, batch = 32;
    double lr = 2e-3, class_weight = 0.2;
    unsigned threads = 0;
    bool staged = false;
    std::string out = "deepgalaxy_out";
    // with several ranks (deepgalaxy_mpi): which samples each rank trains on (DeepGalaxy's
    // three modes), and the linear scaling rule for the global batch
    lamina::distributed_sampler sampling = lamina::distributed_sampler::reshuffle_every(1);
    bool scale_lr = false;
};

inline void usage(const char* prog) {
    std::fprintf(stderr,
                 "usage: %s [--seed N] [--threads N] [--out DIR] [--particles N] [--image PIXELS] [--cameras N]\n"
                 "          [--runs N] [--steps N] [--snapshot-every N] [--epochs N] [--vae-epochs N] [--batch N]\n"
                 "          [--class-weight W] [--staged] [--data-mode fixed|reshuffle|all] [--reshuffle-every M]\n"
                 "          [--scale-lr]\n"
                 "Simulates galaxy mergers, writes them in DeepGalaxy's HDF5 layout (DIR/mergers.h5), trains the\n"
                 "FCAE + classifier and the VAE, writes pictures to DIR (default deepgalaxy_out).\n"
                 "Defaults: 2048 particles in the primary, 64x64 images (--image takes 64 times a power of two;\n"
                 "the network sees 64x64), 14 cameras, 4 runs per mass ratio, 800 steps, a snapshot every 20.\n"
                 "Under mpirun (deepgalaxy_mpi), --batch is per rank and --data-mode says what each rank trains on:\n"
                 "a fixed shard, shards redrawn every M epochs (reshuffle, the default, M = 1), or all the data;\n"
                 "--scale-lr applies the linear scaling rule to the global batch (one warm-up epoch).\n",
                 prog);
}

inline options parse_options(int argc, char** argv) {
    options o;
    std::string data_mode = "reshuffle";
    std::size_t reshuffle_every = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string s = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s: %s needs a value\n", argv[0], s.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        auto number = [&]() -> unsigned long {
            const std::string v = value();
            char* end = nullptr;
            const unsigned long n = std::strtoul(v.c_str(), &end, 10);
            if (v.empty() || *end || v[0] == '-') {
                std::fprintf(stderr, "%s: %s expects a non-negative integer, got '%s'\n", argv[0], s.c_str(), v.c_str());
                std::exit(2);
            }
            return n;
        };
        if (s == "--seed") o.data.seed = number();
        else if (s == "--threads") o.threads = static_cast<unsigned>(number());
        else if (s == "--out") o.out = value();
        else if (s == "--particles") o.data.particles = number();
        else if (s == "--image") o.data.image_size = number();
        else if (s == "--cameras") o.data.cameras = number();
        else if (s == "--runs") o.data.runs_per_ratio = number();
        else if (s == "--steps") o.data.steps = number();
        else if (s == "--snapshot-every") o.data.snapshot_every = number();
        else if (s == "--epochs") o.epochs = number();
        else if (s == "--vae-epochs") o.vae_epochs = number();
        else if (s == "--batch") o.batch = number();
        else if (s == "--class-weight") o.class_weight = std::atof(value().c_str());
        else if (s == "--staged") o.staged = true;
        else if (s == "--data-mode") {
            const std::string m = value();
            if (m == "fixed") o.sampling = lamina::distributed_sampler::fixed_shards();
            else if (m == "all") o.sampling = lamina::distributed_sampler::all_data();
            else if (m == "reshuffle") o.sampling = lamina::distributed_sampler::reshuffle_every(reshuffle_every);
            else {
                std::fprintf(stderr, "%s: --data-mode takes fixed, reshuffle or all, got '%s'\n", argv[0], m.c_str());
                std::exit(2);
            }
            data_mode = m;
        } else if (s == "--reshuffle-every") {
            reshuffle_every = number();
            if (reshuffle_every == 0) {
                std::fprintf(stderr, "%s: --reshuffle-every must be at least 1\n", argv[0]);
                std::exit(2);
            }
            if (data_mode == "reshuffle") o.sampling = lamina::distributed_sampler::reshuffle_every(reshuffle_every);
        } else if (s == "--scale-lr") o.scale_lr = true;
        else if (s == "-h" || s == "--help") {
            usage(argv[0]);
            std::exit(0);
        } else {
            std::fprintf(stderr, "%s: unknown argument %s\n", argv[0], s.c_str());
            usage(argv[0]);
            std::exit(2);
        }
    }
    const std::size_t f = o.data.image_size / image_size;
    const bool power_of_two = f >= 1 && (f & (f - 1)) == 0;
    if (o.data.image_size % image_size != 0 || !power_of_two || o.data.image_size > 4096) {
        std::fprintf(stderr, "%s: --image must be 64 times a power of two (64, 128, ..., 4096), got %zu\n", argv[0],
                     o.data.image_size);
        std::exit(2);
    }
    if (o.data.runs_per_ratio < 2 || o.data.particles < 16 || o.data.cameras < 1 || o.data.cameras > 14 ||
        o.data.snapshot_every == 0 || o.data.steps < time_bins * o.data.snapshot_every || o.epochs == 0 ||
        o.vae_epochs == 0 || o.batch == 0 || !(o.class_weight >= 0)) {
        std::fprintf(stderr,
                     "%s: need --runs >= 2 (one is held out), --particles >= 16, 1 <= --cameras <= 14, at least %zu "
                     "snapshots (--steps / --snapshot-every), positive --epochs, --vae-epochs and --batch, and "
                     "--class-weight >= 0\n",
                     argv[0], time_bins);
        std::exit(2);
    }
    return o;
}

/// Labels and provenance of one image.
struct sample_info {
    std::size_t mass_class = 0, time_bin = 0, run = 0;
    int camera = 0;
    double t_myr = 0, mass_ratio = 0;
    std::size_t label() const { return mass_class * time_bins + time_bin; }
};

struct merger_data {
    std::vector<float> train_x, test_x;  // 64x64 images in [0, 1]
    std::vector<sample_info> train, test;
    std::vector<double> mass_ratios;  // class index -> mass ratio (ascending)
};

/// Labels the images of every (group, camera): mass class from the group's mass ratio, run
/// from its suffix run_<k> (held out: the highest k of each mass ratio), time bin from the
/// snapshot times (each camera's span in time_bins equal parts); images larger than 64x64
/// are averaged down.
inline merger_data assemble(const std::vector<lm::data::deepgalaxy_images>& all) {
    merger_data d;
    std::map<double, std::size_t> last_run;
    struct parsed {
        double m;
        std::size_t run;
    };
    std::vector<parsed> p;
    for (const auto& im : all) {
        const auto name = lm::data::parse_deepgalaxy_group_name(im.group);
        if (!name) throw lm::format_error("group /" + im.group + " is not named s_<size>_m_<mass>[_run_<k>]");
        std::size_t run = 0;
        if (name->suffix.compare(0, 4, "run_") == 0) run = std::strtoul(name->suffix.c_str() + 4, nullptr, 10);
        p.push_back({name->mass_ratio, run});
        last_run[name->mass_ratio] = std::max(last_run[name->mass_ratio], run);
    }
    if (last_run.size() > mass_classes)
        throw lm::format_error("the data hold " + std::to_string(last_run.size()) + " mass ratios; this example's network has " +
                               std::to_string(mass_classes) + " mass-ratio classes");
    for (const auto& [m, r] : last_run) d.mass_ratios.push_back(m);
    const std::size_t px = image_size * image_size;
    std::vector<float> small(px);
    for (std::size_t g = 0; g < all.size(); ++g) {
        const auto& im = all[g];
        if (im.height != im.width || im.height % image_size != 0)
            throw lm::format_error("group /" + im.group + " camera " + std::to_string(im.camera) + ": images of " +
                                   std::to_string(im.height) + "x" + std::to_string(im.width) + " are not 64 times k square");
        if (im.t_myr.size() != im.count)
            throw lm::format_error("group /" + im.group + " camera " + std::to_string(im.camera) + " has no snapshot times");
        const double t0 = *std::min_element(im.t_myr.begin(), im.t_myr.end());
        const double t1 = *std::max_element(im.t_myr.begin(), im.t_myr.end());
        const std::size_t mc = static_cast<std::size_t>(
            std::find(d.mass_ratios.begin(), d.mass_ratios.end(), p[g].m) - d.mass_ratios.begin());
        const bool held_out = p[g].run == last_run[p[g].m];
        for (std::size_t i = 0; i < im.count; ++i) {
            sample_info s;
            s.mass_class = mc;
            s.mass_ratio = p[g].m;
            s.run = p[g].run;
            s.camera = im.camera;
            s.t_myr = im.t_myr[i];
            const double f = t1 > t0 ? (im.t_myr[i] - t0) / (t1 - t0) : 0.0;
            s.time_bin = std::min<std::size_t>(time_bins - 1, static_cast<std::size_t>(f * time_bins));
            galaxy_sim::downsample(im.image(i), image_size, im.height / image_size, small.data());
            auto& x = held_out ? d.test_x : d.train_x;
            x.insert(x.end(), small.begin(), small.end());
            (held_out ? d.test : d.train).push_back(s);
        }
    }
    return d;
}

/// The simulation's images as the reader returns them (when there is no HDF5).
inline std::vector<lm::data::deepgalaxy_images> as_images(const std::vector<galaxy_sim::merger_run>& runs,
                                                          const galaxy_sim::dataset_options& o) {
    std::vector<lm::data::deepgalaxy_images> all;
    for (const auto& r : runs)
        for (std::size_t c = 0; c < r.images.size(); ++c) {
            lm::data::deepgalaxy_images im;
            im.group = lm::data::deepgalaxy_group_name(r.size_ratio, r.mass_ratio, "run_" + std::to_string(r.run));
            im.camera = static_cast<int>(c);
            im.count = r.t_myr.size();
            im.height = im.width = o.image_size;
            im.pixels.resize(r.images[c].size());
            // as stored in the file: 8 bits per pixel
            for (std::size_t i = 0; i < im.pixels.size(); ++i)
                im.pixels[i] = std::round(std::clamp(r.images[c][i], 0.0f, 1.0f) * 255.0f) / 255.0f;
            im.t_myr = r.t_myr;
            all.push_back(std::move(im));
        }
    return all;
}

/// Every output of `m` on n samples of x, in batches.
template <class Model>
std::array<std::vector<float>, Model::outputs> predict_batches(const Model& m, const float* x, std::size_t n,
                                                               std::size_t bs = 128) {
    std::array<std::vector<float>, Model::outputs> out;
    for (std::size_t k = 0; k < Model::outputs; ++k) out[k].resize(n * Model::output_sizes[k]);
    for (std::size_t lo = 0; lo < n; lo += bs) {
        const std::size_t c = std::min(bs, n - lo);
        float* ptrs[Model::outputs];
        for (std::size_t k = 0; k < Model::outputs; ++k) ptrs[k] = out[k].data() + lo * Model::output_sizes[k];
        m.predict_all(x + lo * Model::input_size, ptrs, c);
    }
    return out;
}

/// A training run's loss curve, written as SVG.
struct curve {
    std::vector<double> epoch, train, test;
    void write(const std::string& path, const std::string& title, const std::string& train_name,
               const std::string& test_name) const {
        lm::io::line_chart c{title, "epoch", "loss"};
        c.add(train_name, epoch, train).add(test_name, epoch, test);
        lm::io::write_svg(path, c);
    }
};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Mean |a - b|.
inline double mean_abs(const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) s += std::abs(double(a[i]) - double(b[i]));
    return a.empty() ? 0.0 : s / static_cast<double>(a.size());
}

struct result {
    double accuracy = 0, chance = 1.0 / classes, mass_accuracy = 0, time_accuracy = 0;
    double reconstruction_mae = 0, baseline_mae = 0, vae_mse = 0, kl = 0;
    std::size_t neighbours_same_mass = 0, neighbours_same_time = 0;
};

/// Accuracies of predicted logits (rows of `classes`) against the samples' labels.
inline void score(const std::vector<float>& logits, const std::vector<sample_info>& s, result& r) {
    std::size_t ok = 0, ok_m = 0, ok_t = 0;
    std::size_t confusion[mass_classes][mass_classes] = {};
    for (std::size_t i = 0; i < s.size(); ++i) {
        const float* l = logits.data() + i * classes;
        const std::size_t p = static_cast<std::size_t>(std::max_element(l, l + classes) - l);
        ok += p == s[i].label();
        ok_m += p / time_bins == s[i].mass_class;
        ok_t += p % time_bins == s[i].time_bin;
        ++confusion[s[i].mass_class][p / time_bins];
    }
    const double n = static_cast<double>(std::max<std::size_t>(1, s.size()));
    r.accuracy = ok / n, r.mass_accuracy = ok_m / n, r.time_accuracy = ok_t / n;
    std::printf("held-out mass-ratio confusion (rows: true, columns: predicted):\n");
    for (std::size_t a = 0; a < mass_classes; ++a) {
        std::printf("  ");
        for (std::size_t b = 0; b < mass_classes; ++b) std::printf(" %6zu", confusion[a][b]);
        std::printf("\n");
    }
}

/// Runs the recipe on `comm`'s ranks (comm::none: one process). With several ranks every rank
/// calls it alike: rank 0 simulates, writes the HDF5 file and the pictures; `barrier` (an
/// MPI_Barrier of the caller's) lets the others read the file once it is complete. Every
/// training run is data-parallel over the ranks, `o.sampling` choosing each rank's samples.
template <class Backend, class Comm = lm::comm::none>
result run(const options& o, const Comm& comm = Comm{}, const std::function<void()>& barrier = {}) {
    using cfg = network_config;
    const bool root = comm.rank() == 0, several = comm.size() > 1;
    auto setup = [&](auto& fit) {  // the same data modes and scaling for every training run
        fit.sampling(o.sampling);
        if (o.scale_lr) fit.scale_learning_rate({o.batch, 1.0});
    };
    const auto start = std::chrono::steady_clock::now();
    ::mkdir(o.out.c_str(), 0755);  // exists already: fine; unwritable: the first write says so
    lm::thread_pool pool(o.threads);

    // 1. simulate -----------------------------------------------------------------------------
    std::printf("simulating %zu mergers (mass ratios 1, 0.5, 0.25; %zu runs each), %zu particles in the primary, "
                "%zu steps of dt %.3g (%.1f Myr), softening %.3g, %zu cameras, %zux%zu images every %zu steps, %u threads\n",
                o.data.mass_ratios.size() * o.data.runs_per_ratio, o.data.runs_per_ratio, o.data.particles, o.data.steps,
                o.data.dt, o.data.dt * o.data.steps * galaxy_sim::time_unit_myr(), o.data.softening, o.data.cameras,
                o.data.image_size, o.data.image_size, o.data.snapshot_every, pool.size());
    // With HDF5 the other ranks read rank 0's file instead of simulating again.
    const bool simulate_here = root || !lm::data::hdf5_available();
    std::vector<galaxy_sim::merger_run> runs;
    if (simulate_here)
        runs = galaxy_sim::simulate_mergers(o.data, pool, [&](const galaxy_sim::merger_run& r) {
            std::printf("  run m=%-4g s=%-4g #%zu: pericentre %.2f, relative energy error %.1e, %.1f s\n", r.mass_ratio,
                        r.size_ratio, r.run, r.pericentre, r.energy_error, r.seconds);
            std::fflush(stdout);
        });
    const double sim_seconds = seconds_since(start);
    std::printf("simulation: %.0f s\n", sim_seconds);

    // 2. HDF5 -------------------------------------------------------------------------------
    std::vector<lm::data::deepgalaxy_images> images;
    if (lm::data::hdf5_available()) {
        const std::string path = o.out + "/mergers.h5";
        if (root) {
            lm::data::deepgalaxy_writer w{path};
            std::vector<std::uint8_t> bytes;
            for (const auto& r : runs)
                for (std::size_t c = 0; c < r.images.size(); ++c) {
                    bytes.resize(r.images[c].size());
                    for (std::size_t i = 0; i < bytes.size(); ++i)
                        bytes[i] = static_cast<std::uint8_t>(std::lround(std::clamp(r.images[c][i], 0.0f, 1.0f) * 255.0f));
                    w.write(lm::data::deepgalaxy_group_name(r.size_ratio, r.mass_ratio, "run_" + std::to_string(r.run)),
                            static_cast<int>(c), bytes.data(), r.t_myr.size(), o.data.image_size, o.data.image_size,
                            r.t_myr.data());
                }
            w.commit();
        }
        if (several) barrier();  // the file is complete
        lm::data::deepgalaxy_file f{path};
        for (const auto& g : f.groups())
            for (int c : g.cameras) images.push_back(f.read(g.name, c));
        std::printf("wrote %s in DeepGalaxy's layout and read back %zu datasets (/s_<size>_m_<mass>_run_<k>/images_camera_XX)\n",
                    path.c_str(), images.size());
    } else {
        std::printf("HDF5 is not available in this build (Debian: libhdf5-dev): no file written, training from memory\n");
        images = as_images(runs, o.data);
    }
    const merger_data d = assemble(images);
    const std::size_t n_train = d.train.size(), n_test = d.test.size(), px = image_size * image_size;
    std::printf("data: %zu training images, %zu held-out images (the last run of each mass ratio), %zu classes "
                "(%zu mass ratios x %zu time bins)\n",
                n_train, n_test, classes, mass_classes, time_bins);

    // targets: [image | label] for the joint network, the image for the FCAE, the label for the classifier
    auto joint_targets = [&](const std::vector<float>& x, const std::vector<sample_info>& s) {
        std::vector<float> t(s.size() * (px + 1));
        for (std::size_t i = 0; i < s.size(); ++i) {
            std::copy(x.begin() + static_cast<std::ptrdiff_t>(i * px), x.begin() + static_cast<std::ptrdiff_t>((i + 1) * px),
                      t.begin() + static_cast<std::ptrdiff_t>(i * (px + 1)));
            t[i * (px + 1) + px] = static_cast<float>(s[i].label());
        }
        return t;
    };
    result r;
    {  // reference: the MAE of predicting the training images' mean image
        std::vector<double> mean(px, 0.0);
        for (std::size_t i = 0; i < n_train; ++i)
            for (std::size_t j = 0; j < px; ++j) mean[j] += d.train_x[i * px + j];
        double s = 0;
        for (std::size_t i = 0; i < n_test; ++i)
            for (std::size_t j = 0; j < px; ++j) s += std::abs(d.test_x[i * px + j] - mean[j] / double(n_train));
        r.baseline_mae = s / double(n_test * px);
    }

    typename cfg::encoder::template model<Backend> encoder{lm::seed{o.data.seed}, lm::threads{o.threads}};
    std::vector<float> test_recon, test_logits;
    const auto train_start = std::chrono::steady_clock::now();
    curve fcae_curve;
    if (!o.staged) {
        // 3. one network, two heads, trained jointly --------------------------------------------
        typename cfg::fcae_classifier::template model<Backend> net{lm::seed{o.data.seed}, lm::threads{o.threads}};
        std::printf("%s", net.summary(o.batch).c_str());
        const auto tt = joint_targets(d.train_x, d.train), vt = joint_targets(d.test_x, d.test);
        const lm::dataset_view<float> train{d.train_x.data(), tt.data(), n_train, px, px + 1};
        const lm::dataset_view<float> test{d.test_x.data(), vt.data(), n_test, px, px + 1};
        lm::loss::per_output losses{lm::loss::weighted{1.0, lm::loss::mae{}},
                                    lm::loss::weighted{o.class_weight, lm::loss::softmax_cross_entropy{}}};
        lm::trainer fit{net, losses, lm::optim::adam{o.lr}, lm::schedule::cosine{double(o.epochs), 0.0}, comm};
        setup(fit);
        auto report = lm::at_epoch_end{[&](auto& t, const lm::step_info& info) {
            const auto ev = t.evaluate(test);
            fcae_curve.epoch.push_back(double(info.epoch + 1));
            fcae_curve.train.push_back(info.epoch_loss);
            fcae_curve.test.push_back(ev.loss);
            std::printf("  epoch %zu: training loss %.4f, held-out loss %.4f, held-out accuracy %.1f%%, %.0f s\n",
                        info.epoch + 1, info.epoch_loss, ev.loss, 100 * ev.accuracy, seconds_since(train_start));
            std::fflush(stdout);
        }};
        std::printf("training the FCAE + classifier (MAE + %.2g x cross-entropy, Adam %.1e, cosine decay, batch %zu, %zu epochs)\n",
                    o.class_weight, o.lr, o.batch, o.epochs);
        fit.run(train, lm::epochs{o.epochs}, lm::batch{o.batch}, report);
        auto outs = predict_batches(net, d.test_x.data(), n_test);
        test_recon = std::move(outs[0]);
        test_logits = std::move(outs[1]);
        dg::copy_leading_parameters(net, encoder);
        if (root) fcae_curve.write(o.out + "/loss_fcae_classifier.svg", "FCAE + classifier (MAE + weighted cross-entropy)",
                         "training", "held-out");
    } else {
        // 3'. the staged recipe: the FCAE alone (the classifier comes after the VAE) -------------
        typename cfg::fcae::template model<Backend> net{lm::seed{o.data.seed}, lm::threads{o.threads}};
        std::printf("%s", net.summary(o.batch).c_str());
        const lm::dataset_view<float> train{d.train_x.data(), d.train_x.data(), n_train, px, px};
        const lm::dataset_view<float> test{d.test_x.data(), d.test_x.data(), n_test, px, px};
        lm::trainer fit{net, lm::loss::mae{}, lm::optim::adam{o.lr}, lm::schedule::cosine{double(o.epochs), 0.0}, comm};
        setup(fit);
        auto report = lm::at_epoch_end{[&](auto& t, const lm::step_info& info) {
            const auto ev = t.evaluate(test);
            fcae_curve.epoch.push_back(double(info.epoch + 1));
            fcae_curve.train.push_back(info.epoch_loss);
            fcae_curve.test.push_back(ev.loss);
            std::printf("  epoch %zu: training MAE %.4f, held-out MAE %.4f, %.0f s\n", info.epoch + 1, info.epoch_loss,
                        ev.loss, seconds_since(train_start));
            std::fflush(stdout);
        }};
        std::printf("training the FCAE (MAE, Adam %.1e, cosine decay, batch %zu, %zu epochs)\n", o.lr, o.batch, o.epochs);
        fit.run(train, lm::epochs{o.epochs}, lm::batch{o.batch}, report);
        test_recon = predict_batches(net, d.test_x.data(), n_test)[0];
        dg::copy_leading_parameters(net, encoder);
        if (root) fcae_curve.write(o.out + "/loss_fcae.svg", "FCAE (MAE)", "training", "held-out");
    }
    r.reconstruction_mae = mean_abs(test_recon, d.test_x);

    // pictures: held-out inputs (top) above their reconstructions (bottom)
    if (root) {
        const std::size_t cols = 8;
        lm::io::image_grid g{2, cols, image_size, image_size, 2, 2};
        for (std::size_t k = 0; k < cols; ++k) {
            const std::size_t i = (k * n_test) / cols + (k * 37) % std::max<std::size_t>(1, n_test / cols);
            g.set(0, k, d.test_x.data() + i * px);
            g.set(1, k, test_recon.data() + i * px);
        }
        const std::string p = lm::io::write_greyscale_image(o.out + "/reconstruction", g.pixels(), g.height(), g.width());
        std::printf("wrote %s (held-out inputs above their reconstructions)\n", p.c_str());
    }

    // 4. latent maps, normalised by the training maps' RMS ------------------------------------
    constexpr std::size_t D = cfg::latent_map_size;
    auto train_maps = predict_batches(encoder, d.train_x.data(), n_train)[0];
    auto test_maps = predict_batches(encoder, d.test_x.data(), n_test)[0];
    double ss = 0;
    for (float v : train_maps) ss += double(v) * v;
    const float rms = static_cast<float>(std::sqrt(ss / double(std::max<std::size_t>(1, train_maps.size()))));
    const float inv = rms > 0 ? 1.0f / rms : 1.0f;
    for (float& v : train_maps) v *= inv;
    for (float& v : test_maps) v *= inv;

    // 5. the VAE ------------------------------------------------------------------------------
    typename cfg::vae::template model<Backend> vae{lm::seed{o.data.seed + 1}, lm::threads{o.threads}};
    curve vae_curve;
    {
        const lm::dataset_view<float> train{train_maps.data(), train_maps.data(), n_train, D, D};
        const lm::dataset_view<float> test{test_maps.data(), test_maps.data(), n_test, D, D};
        lm::trainer fit{vae, lm::loss::mse{}, lm::optim::adam{1e-3}, lm::schedule::cosine{double(o.vae_epochs), 0.0},
                        comm};
        setup(fit);
        auto report = lm::at_epoch_end{[&](auto& t, const lm::step_info& info) {
            const auto ev = t.evaluate(test);
            vae_curve.epoch.push_back(double(info.epoch + 1));
            vae_curve.train.push_back(info.epoch_loss);
            vae_curve.test.push_back(ev.loss);
            if ((info.epoch + 1) % 5 == 0 || info.epoch + 1 == o.vae_epochs)
                std::printf("  epoch %zu: training loss (MSE + KL / D) %.4f, held-out MSE at z = mu %.4f\n", info.epoch + 1,
                            info.epoch_loss, ev.loss);
        }};
        std::printf("training the VAE on the %zu-value latent maps (MSE + KL / %zu, Adam 1e-3, cosine decay, %zu epochs)\n",
                    D, D, o.vae_epochs);
        fit.run(train, lm::epochs{o.vae_epochs}, lm::batch{64}, report);
        r.vae_mse = fit.evaluate(test).loss;
        if (root) vae_curve.write(o.out + "/loss_vae.svg", "VAE on the latent maps", "training (MSE + KL / D)", "held-out MSE (z = mu)");
    }
    typename cfg::vae_encoder::template model<Backend> vae_encoder{lm::seed{o.data.seed}, lm::threads{o.threads}};
    dg::copy_leading_parameters(vae, vae_encoder);
    constexpr std::size_t Z = cfg::latent;
    const auto train_code = predict_batches(vae_encoder, train_maps.data(), n_train)[0];  // [mu | logvar]
    const auto test_code = predict_batches(vae_encoder, test_maps.data(), n_test)[0];
    std::vector<float> train_z(n_train * Z), test_z(n_test * Z);
    double kl = 0;
    for (std::size_t i = 0; i < n_test; ++i) {
        double k = 0;
        for (std::size_t j = 0; j < Z; ++j) {
            const double mu = test_code[i * 2 * Z + j], lv = test_code[i * 2 * Z + Z + j];
            k += -0.5 * (1 + lv - mu * mu - std::exp(lv));
            test_z[i * Z + j] = static_cast<float>(mu);
        }
        kl += k;
    }
    for (std::size_t i = 0; i < n_train; ++i)
        for (std::size_t j = 0; j < Z; ++j) train_z[i * Z + j] = train_code[i * 2 * Z + j];
    r.kl = kl / double(std::max<std::size_t>(1, n_test));

    // 6. the classifier: the joint head, or (staged) a classifier trained on the latent maps -----
    if (o.staged) {
        typename cfg::classifier::template model<Backend> cls{lm::seed{o.data.seed + 2}, lm::threads{o.threads}};
        std::vector<float> tl(n_train), vl(n_test);
        for (std::size_t i = 0; i < n_train; ++i) tl[i] = static_cast<float>(d.train[i].label());
        for (std::size_t i = 0; i < n_test; ++i) vl[i] = static_cast<float>(d.test[i].label());
        const lm::dataset_view<float> train{train_maps.data(), tl.data(), n_train, D, 1};
        const lm::dataset_view<float> test{test_maps.data(), vl.data(), n_test, D, 1};
        lm::trainer fit{cls, lm::loss::softmax_cross_entropy{}, lm::optim::adam{1e-3},
                        lm::schedule::cosine{double(o.epochs), 0.0}, comm};
        setup(fit);
        curve cc;
        auto report = lm::at_epoch_end{[&](auto& t, const lm::step_info& info) {
            const auto ev = t.evaluate(test);
            cc.epoch.push_back(double(info.epoch + 1));
            cc.train.push_back(info.epoch_loss);
            cc.test.push_back(ev.loss);
            std::printf("  epoch %zu: training loss %.4f, held-out accuracy %.1f%%\n", info.epoch + 1, info.epoch_loss,
                        100 * ev.accuracy);
        }};
        std::printf("training the classifier on the frozen latent maps (cross-entropy, Adam 1e-3, %zu epochs)\n", o.epochs);
        fit.run(train, lm::epochs{o.epochs}, lm::batch{o.batch}, report);
        test_logits = predict_batches(cls, test_maps.data(), n_test)[0];
        if (root) cc.write(o.out + "/loss_classifier.svg", "classifier on the latent maps (cross-entropy)", "training", "held-out");
    }
    score(test_logits, d.test, r);

    // 7. similar images: nearest neighbours in z ------------------------------------------------
    std::size_t query = 0;  // the first held-out image of the middle mass ratio in time bin 1
    for (std::size_t i = 0; i < n_test; ++i)
        if (d.test[i].mass_class == mass_classes / 2 && d.test[i].time_bin == 1) {
            query = i;
            break;
        }
    const auto nn = dg::nearest_in_latent(train_z.data(), n_train, Z, test_z.data() + query * Z, 5);
    const auto& q = d.test[query];
    std::printf("\nquery: held-out image %zu (mass ratio %g, run %zu, camera %02d, t = %.0f Myr, time bin %zu)\n", query,
                q.mass_ratio, q.run, q.camera, q.t_myr, q.time_bin);
    lm::io::image_grid ng{1, 6, image_size, image_size, 2, 2};
    ng.set(0, 0, d.test_x.data() + query * px);
    for (std::size_t k = 0; k < nn.size(); ++k) {
        const auto& s = d.train[nn[k].first];
        std::printf("  neighbour %zu: training image %5zu, distance %.3f: mass ratio %g, run %zu, camera %02d, t = %.0f Myr, "
                    "time bin %zu\n",
                    k + 1, nn[k].first, nn[k].second, s.mass_ratio, s.run, s.camera, s.t_myr, s.time_bin);
        r.neighbours_same_mass += s.mass_class == q.mass_class;
        r.neighbours_same_time += s.time_bin == q.time_bin;
        ng.set(0, k + 1, d.train_x.data() + nn[k].first * px);
    }
    const std::string np =
        root ? lm::io::write_greyscale_image(o.out + "/neighbours", ng.pixels(), ng.height(), ng.width()) : std::string();
    std::printf("  %zu of 5 share the query's mass ratio (chance 1 in %zu), %zu its time bin (chance 1 in %zu); wrote %s\n",
                r.neighbours_same_mass, mass_classes, r.neighbours_same_time, time_bins, np.c_str());

    // summary -----------------------------------------------------------------------------------
    std::printf("\nheld-out mergers (%zu images of %zu runs the networks never saw):\n", n_test, mass_classes);
    std::printf("  reconstruction error (MAE)  %.4f  (predicting the mean training image: %.4f)\n", r.reconstruction_mae,
                r.baseline_mae);
    std::printf("  VAE: MSE %.4f of normalised latent maps at z = mu, KL %.2f nats per image (Z = %zu)\n", r.vae_mse, r.kl, Z);
    std::printf("  classifier accuracy         %.1f%%  (chance %.1f%%: 1 of %zu classes)\n", 100 * r.accuracy,
                100 * r.chance, classes);
    std::printf("    mass ratio alone          %.1f%%  (chance %.1f%%)\n", 100 * r.mass_accuracy, 100.0 / mass_classes);
    std::printf("    time bin alone            %.1f%%  (chance %.1f%%)\n", 100 * r.time_accuracy, 100.0 / time_bins);
    std::printf("pictures and loss curves in %s/; total %.0f s (simulation %.0f s)\n", o.out.c_str(), seconds_since(start),
                sim_seconds);
    return r;
}

}  // namespace deepgalaxy_example
