// The N-body code of examples/deepgalaxy (examples/deepgalaxy/nbody.hpp, merger_images.hpp,
// merger_dataset.hpp): accelerations and potential energy against a naive double-precision
// loop written here; the kick-drift-kick leapfrog's time reversibility; a two-body circular
// orbit's radius, energy and period; determinism per seed and across thread counts; the camera
// images' geometry. Energy conservation over the example's default run is in
// tests/unit/test_deepgalaxy_nbody_energy.cpp (label "slow").
#include <catch2/catch.hpp>

#include "../../examples/deepgalaxy/merger_dataset.hpp"

#include <cmath>
#include <vector>

namespace gs = galaxy_sim;

namespace {
/// Naive accelerations in double: a_i = sum_{j != i} m_j (r_j - r_i) / (r^2 + eps^2)^1.5.
void naive_accelerations(const gs::particle_set& p, double eps, std::vector<double>& ax, std::vector<double>& ay,
                         std::vector<double>& az) {
    const std::size_t n = p.size();
    ax.assign(n, 0), ay.assign(n, 0), az.assign(n, 0);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            if (i == j) continue;
            const double dx = p.x[j] - p.x[i], dy = p.y[j] - p.y[i], dz = p.z[j] - p.z[i];
            const double r2 = dx * dx + dy * dy + dz * dz + eps * eps;
            const double w = p.m[j] / (r2 * std::sqrt(r2));
            ax[i] += w * dx, ay[i] += w * dy, az[i] += w * dz;
        }
}
double naive_potential(const gs::particle_set& p, double eps) {
    double u = 0;
    for (std::size_t i = 0; i < p.size(); ++i)
        for (std::size_t j = 0; j < i; ++j) {
            const double dx = p.x[j] - p.x[i], dy = p.y[j] - p.y[i], dz = p.z[j] - p.z[i];
            u -= p.m[i] * p.m[j] / std::sqrt(dx * dx + dy * dy + dz * dz + eps * eps);
        }
    return u;
}
gs::merger_setup small_merger(std::size_t particles, std::uint64_t seed) {
    gs::merger_setup s;
    s.particles = particles;
    s.mass_ratio = 0.5;
    s.size_ratio = 0.75;
    s.seed = seed;
    return s;
}
}  // namespace

TEST_CASE("N-body: accelerations and potential energy match a naive double loop", "[deepgalaxy][nbody]") {
    lamina::thread_pool pool(2);
    // 67 + 34 particles: not a multiple of any SIMD width (the padding must add nothing)
    gs::particle_set p = gs::make_merger(small_merger(67, 3));
    REQUIRE(p.size() == 67 + 34);
    gs::integrator_options o;
    gs::leapfrog sim{p, o, pool};
    std::vector<double> ax, ay, az;
    naive_accelerations(p, o.softening, ax, ay, az);
    double scale = 0;
    for (std::size_t i = 0; i < p.size(); ++i) scale = std::max({scale, std::abs(ax[i]), std::abs(ay[i]), std::abs(az[i])});
    REQUIRE(scale > 0.1);
    for (std::size_t i = 0; i < p.size(); ++i) {
        INFO("particle " << i);
        // the force loop runs in float: relative to the largest acceleration
        CHECK(std::abs(sim.ax()[i] - ax[i]) < 1e-5 * scale);
        CHECK(std::abs(sim.ay()[i] - ay[i]) < 1e-5 * scale);
        CHECK(std::abs(sim.az()[i] - az[i]) < 1e-5 * scale);
    }
    CHECK(sim.potential_energy() == Approx(naive_potential(p, o.softening)).epsilon(1e-12));
    double k = 0;
    for (std::size_t i = 0; i < p.size(); ++i)
        k += 0.5 * p.m[i] * (p.vx[i] * p.vx[i] + p.vy[i] * p.vy[i] + p.vz[i] * p.vz[i]);
    CHECK(sim.kinetic_energy() == Approx(k).epsilon(1e-12));
    // the merger: total mass 1.5, centre of mass at rest at the origin
    CHECK(p.total_mass() == Approx(1.5).epsilon(1e-12));
    double cx = 0, cvx = 0;
    for (std::size_t i = 0; i < p.size(); ++i) cx += p.m[i] * p.x[i], cvx += p.m[i] * p.vx[i];
    CHECK(std::abs(cx) < 1e-12);
    CHECK(std::abs(cvx) < 1e-12);
}

TEST_CASE("N-body: two equal masses on a circular orbit keep their radius and return after one period",
          "[deepgalaxy][nbody]") {
    lamina::thread_pool pool(1);
    // masses 0.5 at +-0.5: separation d = 1, M = 1, relative speed sqrt(M/d) (softening 1e-4
    // changes the force by ~1e-8), period 2 pi sqrt(d^3 / M)
    gs::particle_set p;
    p.resize(2);
    p.m = {0.5, 0.5};
    p.x = {-0.5, 0.5};
    p.vy = {-0.5, 0.5};
    gs::integrator_options o;
    o.softening = 1e-4;
    const double period = 2 * 3.141592653589793;
    const std::size_t steps = 2000;
    o.dt = period / double(steps);
    gs::leapfrog sim{p, o, pool};
    const double e0 = sim.total_energy();
    CHECK(e0 == Approx(0.5 * 0.5 * 0.25 * 2 - 0.25).epsilon(1e-6));  // K = 2 x 0.5 m v^2 = 0.125, U = -0.25
    double rmin = 10, rmax = 0;
    for (std::size_t s = 0; s < steps; ++s) {
        sim.step();
        const double r = std::hypot(p.x[1] - p.x[0], p.y[1] - p.y[0]);
        rmin = std::min(rmin, r), rmax = std::max(rmax, r);
    }
    CHECK(rmin > 1 - 1e-4);
    CHECK(rmax < 1 + 1e-4);
    // back where it started (leapfrog's phase error over one orbit is O(dt^2))
    CHECK(p.x[1] == Approx(0.5).margin(2e-3));
    CHECK(p.y[1] == Approx(0.0).margin(2e-3));
    CHECK(sim.time() == Approx(period).epsilon(1e-12));
    CHECK(std::abs(sim.total_energy() - e0) < 1e-5 * std::abs(e0));
}

TEST_CASE("N-body: kick-drift-kick is time reversible", "[deepgalaxy][nbody]") {
    lamina::thread_pool pool(2);
    gs::particle_set p = gs::make_merger(small_merger(200, 5));
    const gs::particle_set start = p;
    gs::integrator_options o;
    {
        gs::leapfrog sim{p, o, pool};
        for (int s = 0; s < 100; ++s) sim.step();
    }
    double moved = 0;
    for (std::size_t i = 0; i < p.size(); ++i) moved = std::max(moved, std::abs(p.x[i] - start.x[i]));
    REQUIRE(moved > 0.05);
    for (std::size_t i = 0; i < p.size(); ++i) p.vx[i] = -p.vx[i], p.vy[i] = -p.vy[i], p.vz[i] = -p.vz[i];
    {
        gs::leapfrog sim{p, o, pool};
        for (int s = 0; s < 100; ++s) sim.step();
    }
    double err = 0;
    for (std::size_t i = 0; i < p.size(); ++i)
        err = std::max({err, std::abs(p.x[i] - start.x[i]), std::abs(p.y[i] - start.y[i]), std::abs(p.z[i] - start.z[i]),
                        std::abs(p.vx[i] + start.vx[i]), std::abs(p.vy[i] + start.vy[i]), std::abs(p.vz[i] + start.vz[i])});
    INFO("largest deviation after 100 steps forward and 100 back: " << err);
    // exact in exact arithmetic; the float forces are the same functions of the positions both
    // ways, so only the double updates' rounding remains (about 1e-15 here)
    CHECK(err < 1e-9);
}

TEST_CASE("N-body data: the same seed gives the same particles and images for any thread count; another seed "
          "does not",
          "[deepgalaxy][nbody]") {
    gs::dataset_options d;
    d.particles = 96;
    d.steps = 40;
    d.snapshot_every = 10;
    d.cameras = 3;
    d.image_size = 16;
    lamina::thread_pool one(1), two(2);
    const auto a = gs::simulate_run(d, 1, 2, one), b = gs::simulate_run(d, 1, 2, two);
    REQUIRE(a.images.size() == 3);
    REQUIRE(a.t_myr.size() == 4);
    REQUIRE(a.images[0].size() == 4 * 16 * 16);
    CHECK(a.images == b.images);
    CHECK(a.t_myr == b.t_myr);
    CHECK(a.energy_error == b.energy_error);
    CHECK(a.mass_ratio == 0.5);
    CHECK(a.t_myr[0] == Approx(10 * 0.025 * gs::time_unit_myr()));
    d.seed = 2;
    const auto c = gs::simulate_run(d, 1, 2, two);
    CHECK(c.images != a.images);
    // runs of one seed differ from each other (spin axes, pericentres)
    CHECK(gs::simulate_run(gs::dataset_options{d}, 1, 3, two).images != c.images);
    const gs::particle_set p1 = gs::make_merger(small_merger(50, 9)), p2 = gs::make_merger(small_merger(50, 9));
    CHECK(p1.x == p2.x);
    CHECK(p1.vz == p2.vz);
    // the time unit: sqrt(L^3 / (G M)) for 3.5 kpc and 1e11 solar masses is about 9.78 Myr
    CHECK(gs::time_unit_myr() == Approx(9.78).epsilon(0.01));
}

TEST_CASE("N-body images: a particle lands at its projected place; cameras are orthonormal", "[deepgalaxy][nbody]") {
    for (const auto& c : gs::cameras(14)) {
        auto dot = [](const double* a, const double* b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; };
        CHECK(dot(c.dir, c.dir) == Approx(1.0));
        CHECK(dot(c.right, c.right) == Approx(1.0));
        CHECK(dot(c.up, c.up) == Approx(1.0));
        CHECK(std::abs(dot(c.dir, c.right)) < 1e-12);
        CHECK(std::abs(dot(c.dir, c.up)) < 1e-12);
        CHECK(std::abs(dot(c.right, c.up)) < 1e-12);
    }
    CHECK_THROWS(gs::cameras(15));
    // one heavy particle at (x, y, z) = (2.5, 0, 0), seen along +z: right is +x... whatever the
    // convention, it must appear at the pixel where u = x . right, v = x . up put it
    gs::particle_set p;
    p.resize(1);
    p.m = {1.0};
    p.x = {2.5};
    p.y = {-1.25};
    const auto cams = gs::cameras(6);
    gs::image_options o;
    o.size = 32;
    std::vector<float> img(32 * 32);
    for (const auto& c : cams) {
        gs::render(p, c, o, img.data());
        const double u = 2.5 * c.right[0] - 1.25 * c.right[1], v = 2.5 * c.up[0] - 1.25 * c.up[1];
        const std::size_t brightest = static_cast<std::size_t>(std::max_element(img.begin(), img.end()) - img.begin());
        const double px = 10.0 / 32;  // field of view [-5, 5]
        const double col = (u + 5) / px, row = (5 - v) / px;
        INFO("camera along (" << c.dir[0] << ", " << c.dir[1] << ", " << c.dir[2] << "): brightest pixel row "
                              << brightest / 32 << " column " << brightest % 32 << ", expected near " << row << ", "
                              << col);
        CHECK(std::abs(double(brightest / 32) + 0.5 - row) <= 1.0);
        CHECK(std::abs(double(brightest % 32) + 0.5 - col) <= 1.0);
        CHECK(img[brightest] > 0.5f);
    }
    // downsample averages blocks
    const float big[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    float small_img[4];
    gs::downsample(big, 2, 2, small_img);
    CHECK(small_img[0] == Approx((0 + 1 + 4 + 5) / 4.0));
    CHECK(small_img[3] == Approx((10 + 11 + 14 + 15) / 4.0));
}
