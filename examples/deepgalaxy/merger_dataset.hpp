// The galaxy-merger data set of examples/deepgalaxy (not part of the lamina library): N-body
// runs of the merger code (nbody.hpp) for several mass ratios and orbits, each imaged from
// every camera at regular time steps (merger_images.hpp), as DeepGalaxy imaged its Bonsai
// runs every 5 Myr from 14 cameras.
//
// Defaults: mass ratios 1, 0.5 and 0.25 (secondary sizes 1, 0.75, 0.5: constant surface
// density), 4 runs each (spin axes drawn at random, pericentre 0.8..1.2), 2,048 particles in
// the primary, 800 steps of dt = 0.025 (20 time units, 196 Myr), a snapshot every 20 steps
// (4.9 Myr: 40 snapshots), 14 cameras, 64x64 images. Everything is drawn from the seed:
// the same seed gives the same images for any thread count.
#pragma once

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <lamina/core/philox.hpp>
#include <lamina/core/thread_pool.hpp>

#include "merger_images.hpp"
#include "nbody.hpp"

namespace galaxy_sim {

struct dataset_options {
    std::size_t particles = 2048;  // in the primary galaxy
    std::size_t steps = 800;
    std::size_t snapshot_every = 20;
    std::size_t cameras = 14;
    std::size_t runs_per_ratio = 4;
    std::size_t image_size = 64;
    double dt = 0.025;
    double softening = 0.05;
    std::vector<double> mass_ratios{1.0, 0.5, 0.25};
    std::vector<double> size_ratios{1.0, 0.75, 0.5};
    std::uint64_t seed = 1;
};

/// One simulation imaged: per camera, snapshots x size x size pixels in [0, 1].
struct merger_run {
    double mass_ratio = 1, size_ratio = 1, pericentre = 1;
    std::size_t ratio_index = 0, run = 0;
    std::vector<double> t_myr;                  // snapshot times
    std::vector<std::vector<float>> images;     // [camera][snapshot * size * size]
    double energy_error = 0;                    // |E_end - E_start| / |E_start|
    double seconds = 0;
};

/// The setup of run `run` of mass ratio number `ratio` (deterministic in the seed).
inline merger_setup run_setup(const dataset_options& o, std::size_t ratio, std::size_t run) {
    const lamina::random_stream s = lamina::random_stream{o.seed, 0x72756e73ull}.child(ratio * 1000 + run);
    merger_setup m;
    m.particles = o.particles;
    m.mass_ratio = o.mass_ratios.at(ratio);
    m.size_ratio = o.size_ratios.at(ratio);
    m.pericentre = 0.8 + 0.4 * s.uniform_double(0);
    m.softening = o.softening;
    const auto b = s.bits(1);
    m.seed = (static_cast<std::uint64_t>(b.v[0]) << 32) | b.v[1];
    return m;
}

/// Runs one merger and images it.
inline merger_run simulate_run(const dataset_options& o, std::size_t ratio, std::size_t run, lamina::thread_pool& pool) {
    if (o.snapshot_every == 0 || o.steps < o.snapshot_every)
        throw std::invalid_argument("simulate_run: need 0 < snapshot_every <= steps");
    const auto t0 = std::chrono::steady_clock::now();
    const merger_setup setup = run_setup(o, ratio, run);
    merger_run r;
    r.mass_ratio = setup.mass_ratio;
    r.size_ratio = setup.size_ratio;
    r.pericentre = setup.pericentre;
    r.ratio_index = ratio;
    r.run = run;
    particle_set p = make_merger(setup);
    integrator_options io;
    io.dt = o.dt;
    io.softening = o.softening;
    leapfrog sim{p, io, pool};
    const double e0 = sim.total_energy();
    const auto cams = cameras(o.cameras);
    image_options im;
    im.size = o.image_size;
    const std::size_t pixels = o.image_size * o.image_size, snaps = o.steps / o.snapshot_every;
    r.images.assign(cams.size(), std::vector<float>(snaps * pixels));
    for (std::size_t s = 0; s < snaps; ++s) {
        for (std::size_t k = 0; k < o.snapshot_every; ++k) sim.step();
        r.t_myr.push_back(sim.time() * time_unit_myr());
        pool.parallel_for(cams.size(), [&](std::size_t lo, std::size_t hi) {
            for (std::size_t c = lo; c < hi; ++c) render(p, cams[c], im, r.images[c].data() + s * pixels);
        });
    }
    r.energy_error = std::abs(sim.total_energy() - e0) / std::abs(e0);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

/// Every run of every mass ratio; `report` is called after each.
inline std::vector<merger_run> simulate_mergers(const dataset_options& o, lamina::thread_pool& pool,
                                                const std::function<void(const merger_run&)>& report = {}) {
    if (o.mass_ratios.size() != o.size_ratios.size() || o.mass_ratios.empty())
        throw std::invalid_argument("simulate_mergers: one size ratio per mass ratio");
    std::vector<merger_run> runs;
    for (std::size_t m = 0; m < o.mass_ratios.size(); ++m)
        for (std::size_t k = 0; k < o.runs_per_ratio; ++k) {
            runs.push_back(simulate_run(o, m, k, pool));
            if (report) report(runs.back());
        }
    return runs;
}

}  // namespace galaxy_sim
