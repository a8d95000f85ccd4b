// Energy conservation of the N-body code of examples/deepgalaxy (examples/deepgalaxy/nbody.hpp)
// over the example's default run: 2,048 + 2,048 particles, 800 kick-drift-kick steps of
// dt = 0.025 with Plummer softening 0.05 (196 Myr, through the first pericentre passage): the
// total energy (kinetic + softened potential, both in double) stays within a relative 1e-3 of
// its start (2.4e-4 measured). Seconds in Release; label "slow" (tests/cmake/deepgalaxy.cmake)
// because the sanitizer build takes minutes.
#include <catch2/catch.hpp>

#include "../../examples/deepgalaxy/merger_dataset.hpp"

#include <algorithm>
#include <cmath>

namespace gs = galaxy_sim;

TEST_CASE("N-body: the example's default run conserves energy to 1e-3", "[deepgalaxy][nbody]") {
    // the default of examples/deepgalaxy: 2,048 particles in the primary, mass ratio 1, 800
    // steps of dt = 0.025 (196 Myr) with softening 0.05; the galaxies pass their pericentre
    lamina::thread_pool pool(2);
    gs::dataset_options d;
    gs::merger_setup s = gs::run_setup(d, 0, 0);
    gs::particle_set p = gs::make_merger(s);
    REQUIRE(p.size() == 4096);
    gs::integrator_options o;
    o.dt = d.dt;
    o.softening = d.softening;
    gs::leapfrog sim{p, o, pool};
    const double e0 = sim.total_energy();
    CHECK(e0 < 0);  // bound
    double worst = 0, closest = 1e9;
    for (std::size_t k = 0; k < d.steps; ++k) {
        sim.step();
        if (k % 50 == 49) worst = std::max(worst, std::abs(sim.total_energy() - e0) / std::abs(e0));
        // the separation of the two galaxies' centres of mass
        double c[2][3] = {}, m[2] = {};
        for (std::size_t i = 0; i < p.size(); ++i) {
            const int g = p.galaxy[i];
            c[g][0] += p.m[i] * p.x[i], c[g][1] += p.m[i] * p.y[i], c[g][2] += p.m[i] * p.z[i], m[g] += p.m[i];
        }
        if (k % 10 == 9)
            closest = std::min(closest, std::hypot(c[0][0] / m[0] - c[1][0] / m[1], c[0][1] / m[0] - c[1][1] / m[1],
                                                   c[0][2] / m[0] - c[1][2] / m[1]));
    }
    INFO("largest relative energy error " << worst << ", closest approach " << closest);
    CHECK(worst < 1e-3);  // 2.4e-4 measured
    CHECK(closest < 1.5);  // they merge (start 5 apart, pericentre about 1)
}
