// A small direct-summation N-body code for galaxy mergers (examples/deepgalaxy; not part of
// the lamina library): two disc galaxies (exponential disc + Plummer bulge) on a parabolic
// orbit, integrated with the kick-drift-kick leapfrog.
//
// Units: G = 1; the primary galaxy has mass 1 and disc scale length 0.5. With a mass unit of
// 1e11 solar masses and a length unit of 3.5 kpc, the time unit is 9.78 Myr (time_unit_myr).
//
// Forces: direct summation over all pairs, O(N^2) per step, with Plummer softening
//   a_i = sum_j m_j (r_j - r_i) / (|r_j - r_i|^2 + eps^2)^(3/2)
// and the matching potential energy -sum_{i<j} m_i m_j / sqrt(|r_ij|^2 + eps^2), so the
// softened system's total energy is exactly what the leapfrog approximately conserves.
// Defaults: eps = 0.05 (a tenth of the disc scale length), dt = 0.025 time units.
// Positions and velocities are double; the force loop runs in float SIMD lanes (xsimd)
// over a float copy of the positions and sums each particle's lanes in a fixed order, so a
// run is bit-identical for any thread count (each thread owns whole particles).
//
//   galaxy_sim::merger_setup s;                 // mass ratio, size ratio, orbit, seed
//   galaxy_sim::particle_set p = galaxy_sim::make_merger(s);
//   galaxy_sim::leapfrog sim{p, galaxy_sim::integrator_options{}, pool};
//   for (int k = 0; k < 400; ++k) sim.step();
//   double e = sim.total_energy();
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <lamina/backends/host/simd.hpp>
#include <lamina/core/philox.hpp>
#include <lamina/core/thread_pool.hpp>

namespace galaxy_sim {

/// The time unit in Myr for a mass unit of 1e11 solar masses and a length unit of 3.5 kpc:
/// t = sqrt(L^3 / (G M)), G = 4.30091e-6 kpc (km/s)^2 / Msun, 1 kpc / (km/s) = 977.79 Myr.
inline double time_unit_myr() {
    const double G = 4.30091e-6, M = 1e11, L = 3.5;
    const double v = std::sqrt(G * M / L);  // km/s
    return L / v * 977.792;
}

/// Particles as structure of arrays (positions, velocities, masses; which galaxy each came from).
struct particle_set {
    std::vector<double> x, y, z, vx, vy, vz, m;
    std::vector<std::uint8_t> galaxy;

    std::size_t size() const noexcept { return x.size(); }
    void resize(std::size_t n) {
        for (auto* v : {&x, &y, &z, &vx, &vy, &vz, &m}) v->assign(n, 0.0);
        galaxy.assign(n, 0);
    }
    void append(const particle_set& o) {
        auto cat = [](auto& a, const auto& b) { a.insert(a.end(), b.begin(), b.end()); };
        cat(x, o.x), cat(y, o.y), cat(z, o.z), cat(vx, o.vx), cat(vy, o.vy), cat(vz, o.vz), cat(m, o.m);
        cat(galaxy, o.galaxy);
    }
    double total_mass() const {
        double s = 0;
        for (double v : m) s += v;
        return s;
    }
};

/// One disc galaxy: a Plummer bulge and an exponential disc (sech^2 vertical profile),
/// truncated at 5 scale lengths; the disc rotates about +z before orient() turns it.
struct galaxy_params {
    std::size_t particles = 2048;
    double mass = 1.0;
    double bulge_fraction = 0.25;
    double bulge_scale = 0.2;    // Plummer radius a
    double disc_scale = 0.5;     // exponential scale length R_d
    double disc_height = 0.05;   // sech^2 scale height z0
    double dispersion = 0.12;    // disc velocity dispersion as a fraction of the circular speed
    double softening = 0.05;     // used for the circular speed, as the forces use it
};

/// Galaxy of `g` centred at rest at the origin, drawn from `rs` (deterministic per stream).
inline particle_set make_galaxy(const galaxy_params& g, lamina::random_stream rs) {
    if (g.particles == 0) throw std::invalid_argument("make_galaxy: a galaxy needs at least one particle");
    particle_set p;
    p.resize(g.particles);
    const double mp = g.mass / static_cast<double>(g.particles);
    const std::size_t nb = static_cast<std::size_t>(std::lround(g.bulge_fraction * static_cast<double>(g.particles)));
    const double mb = g.mass * static_cast<double>(nb) / static_cast<double>(g.particles), md = g.mass - mb;
    const double a = g.bulge_scale, rd = g.disc_scale, rmax_disc = 5 * rd, rmax_bulge = 10 * a;
    const double pi = 3.141592653589793;
    // Enclosed mass in the spherical approximation (the disc's mass inside radius R), for the
    // disc's circular speed.
    auto enclosed = [&](double r) {
        const double bulge = mb * r * r * r / std::pow(r * r + a * a, 1.5);
        const double xr = std::min(r, rmax_disc) / rd;
        const double norm = 1 - (1 + rmax_disc / rd) * std::exp(-rmax_disc / rd);
        const double disc = md * (1 - (1 + xr) * std::exp(-xr)) / norm;
        return bulge + disc;
    };
    std::uint64_t draw = 0;  // index into the stream: every number drawn once, in a fixed order
    auto u = [&] { return rs.uniform_double(draw++); };
    for (std::size_t i = 0; i < g.particles; ++i) {
        p.m[i] = mp;
        if (i < nb) {
            // Plummer sphere (Aarseth, Henon & Wielen 1974): radius from the cumulative mass,
            // speed by rejection from g(q) = q^2 (1 - q^2)^3.5.
            double r;
            do {
                const double xm = std::max(u(), 1e-12);
                r = a / std::sqrt(std::pow(xm, -2.0 / 3.0) - 1.0);
            } while (!(r < rmax_bulge));
            const double ct = 2 * u() - 1, phi = 2 * pi * u(), st = std::sqrt(std::max(0.0, 1 - ct * ct));
            p.x[i] = r * st * std::cos(phi), p.y[i] = r * st * std::sin(phi), p.z[i] = r * ct;
            double q, gq;
            do {
                q = u();
                gq = 0.1 * u();
            } while (gq > q * q * std::pow(1 - q * q, 3.5));
            // escape speed in the bulge's own potential plus the disc's (as a point mass): the
            // bulge then sits in the combined potential without flying apart
            const double ve = std::sqrt(2.0 * (mb / std::sqrt(r * r + a * a) + md / std::sqrt(r * r + rd * rd)));
            const double v = q * ve;
            const double cv = 2 * u() - 1, pv = 2 * pi * u(), sv = std::sqrt(std::max(0.0, 1 - cv * cv));
            p.vx[i] = v * sv * std::cos(pv), p.vy[i] = v * sv * std::sin(pv), p.vz[i] = v * cv;
        } else {
            double r;
            do {
                r = -rd * std::log(std::max(u(), 1e-300) * std::max(u(), 1e-300));  // Gamma(2, R_d)
            } while (!(r < rmax_disc));
            const double phi = 2 * pi * u();
            const double zu = std::clamp(2 * u() - 1, -0.999999, 0.999999);
            p.x[i] = r * std::cos(phi), p.y[i] = r * std::sin(phi), p.z[i] = g.disc_height * std::atanh(zu);
            const double e2 = g.softening * g.softening;
            const double vc = std::sqrt(enclosed(r) * r * r / std::pow(r * r + e2, 1.5));
            auto gauss = [&] {
                const double u1 = std::max(u(), 1e-300), u2 = u();
                return std::sqrt(-2 * std::log(u1)) * std::cos(2 * pi * u2);
            };
            const double s = g.dispersion * vc;
            const double vr = s * gauss(), vphi = vc + s * gauss(), vz = 0.5 * s * gauss();
            p.vx[i] = vr * std::cos(phi) - vphi * std::sin(phi);
            p.vy[i] = vr * std::sin(phi) + vphi * std::cos(phi);
            p.vz[i] = vz;
        }
    }
    // Remove the sampling's net momentum and centre of mass offset.
    double cm[6] = {0, 0, 0, 0, 0, 0};
    for (std::size_t i = 0; i < p.size(); ++i) {
        cm[0] += p.m[i] * p.x[i], cm[1] += p.m[i] * p.y[i], cm[2] += p.m[i] * p.z[i];
        cm[3] += p.m[i] * p.vx[i], cm[4] += p.m[i] * p.vy[i], cm[5] += p.m[i] * p.vz[i];
    }
    const double M = p.total_mass();
    for (std::size_t i = 0; i < p.size(); ++i) {
        p.x[i] -= cm[0] / M, p.y[i] -= cm[1] / M, p.z[i] -= cm[2] / M;
        p.vx[i] -= cm[3] / M, p.vy[i] -= cm[4] / M, p.vz[i] -= cm[5] / M;
    }
    return p;
}

/// Turns a galaxy so that its spin axis (+z) points along (theta, phi) (polar angles).
inline void orient(particle_set& p, double theta, double phi) {
    const double ct = std::cos(theta), st = std::sin(theta), cp = std::cos(phi), sp = std::sin(phi);
    // R = Rz(phi) Ry(theta): maps +z to (st cp, st sp, ct)
    auto rot = [&](double& x, double& y, double& z) {
        const double x1 = ct * x + st * z, z1 = -st * x + ct * z;
        const double x2 = cp * x1 - sp * y, y2 = sp * x1 + cp * y;
        x = x2, y = y2, z = z1;
    };
    for (std::size_t i = 0; i < p.size(); ++i) {
        rot(p.x[i], p.y[i], p.z[i]);
        rot(p.vx[i], p.vy[i], p.vz[i]);
    }
}

inline void shift(particle_set& p, const double r[3], const double v[3]) {
    for (std::size_t i = 0; i < p.size(); ++i) {
        p.x[i] += r[0], p.y[i] += r[1], p.z[i] += r[2];
        p.vx[i] += v[0], p.vy[i] += v[1], p.vz[i] += v[2];
    }
}

/// A merger: the primary (mass 1, disc scale 0.5) and a secondary of mass `mass_ratio` and
/// sizes scaled by `size_ratio`, both with particles of equal mass (the secondary has
/// round(mass_ratio * particles)), on a bound orbit in the x-y plane starting at
/// `separation` with pericentre `pericentre` (as point masses); each disc's spin axis drawn
/// at random from the seed. The centre of mass is at rest at the origin.
struct merger_setup {
    std::size_t particles = 2048;  // in the primary
    double mass_ratio = 1.0;
    double size_ratio = 1.0;
    double separation = 5.0;
    double pericentre = 1.0;
    double speed = 0.75;  // relative speed as a fraction of the parabolic one (< 1: bound, merges sooner)
    double softening = 0.05;
    std::uint64_t seed = 1;
};

inline particle_set make_merger(const merger_setup& s) {
    if (!(s.mass_ratio > 0) || !(s.size_ratio > 0))
        throw std::invalid_argument("make_merger: mass and size ratios must be positive");
    if (!(s.pericentre > 0) || !(s.separation > s.pericentre))
        throw std::invalid_argument("make_merger: need 0 < pericentre < separation");
    const lamina::random_stream root{s.seed, 0x6D65726765ull};
    galaxy_params g1;
    g1.particles = s.particles;
    g1.softening = s.softening;
    galaxy_params g2 = g1;
    g2.mass = s.mass_ratio;
    g2.particles = std::max<std::size_t>(1, static_cast<std::size_t>(std::lround(s.mass_ratio * static_cast<double>(s.particles))));
    g2.mass = s.mass_ratio;
    g2.bulge_scale *= s.size_ratio;
    g2.disc_scale *= s.size_ratio;
    g2.disc_height *= s.size_ratio;
    particle_set a = make_galaxy(g1, root.child(1)), b = make_galaxy(g2, root.child(2));
    const lamina::random_stream angles = root.child(3);
    const double pi = 3.141592653589793;
    // Spin axes uniform on the sphere.
    orient(a, std::acos(2 * angles.uniform_double(0) - 1), 2 * pi * angles.uniform_double(1));
    orient(b, std::acos(2 * angles.uniform_double(2) - 1), 2 * pi * angles.uniform_double(3));
    // Relative orbit of point masses: speed `speed` times the parabolic sqrt(2 M / d), the
    // tangential part from the pericentre: energy E = v^2 / 2 - M / d and angular momentum
    // h = r_p sqrt(2 (E + M / r_p)) (vis-viva at pericentre), h = d v_t.
    const double M = 1.0 + s.mass_ratio, d = s.separation;
    const double v = s.speed * std::sqrt(2 * M / d), E = 0.5 * v * v - M / d;
    const double vt = std::min(v, s.pericentre * std::sqrt(std::max(0.0, 2 * (E + M / s.pericentre))) / d);
    const double vr = -std::sqrt(std::max(0.0, v * v - vt * vt));
    const double fa = s.mass_ratio / M, fb = 1.0 / M;  // each galaxy's share of the relative vector
    const double ra[3] = {-fa * d, 0, 0}, va[3] = {-fa * vr, -fa * vt, 0};
    const double rb[3] = {fb * d, 0, 0}, vb[3] = {fb * vr, fb * vt, 0};
    shift(a, ra, va);
    shift(b, rb, vb);
    for (auto& k : b.galaxy) k = 1;
    a.append(b);
    return a;
}

struct integrator_options {
    double softening = 0.05;
    double dt = 0.025;
};

/// Kick-drift-kick leapfrog over a particle set it does not own. Each step costs one force
/// evaluation (the first step's opening kick reuses the accelerations of the last).
class leapfrog {
public:
    leapfrog(particle_set& p, integrator_options o, lamina::thread_pool& pool) : p_(p), o_(o), pool_(pool) {
        if (!(o.dt > 0) || !(o.softening > 0)) throw std::invalid_argument("leapfrog: dt and softening must be positive");
        const std::size_t n = p.size(), padded = (n + lanes - 1) / lanes * lanes;
        for (auto* v : {&fx_, &fy_, &fz_, &fm_}) v->assign(padded, 0.0f);
        ax_.assign(n, 0), ay_.assign(n, 0), az_.assign(n, 0);
        compute_accelerations();
    }

    /// One step of dt: v += a dt/2; x += v dt; a = a(x); v += a dt/2.
    void step() {
        const double h = 0.5 * o_.dt, dt = o_.dt;
        const std::size_t n = p_.size();
        for (std::size_t i = 0; i < n; ++i) {
            p_.vx[i] += h * ax_[i], p_.vy[i] += h * ay_[i], p_.vz[i] += h * az_[i];
            p_.x[i] += dt * p_.vx[i], p_.y[i] += dt * p_.vy[i], p_.z[i] += dt * p_.vz[i];
        }
        compute_accelerations();
        for (std::size_t i = 0; i < n; ++i) p_.vx[i] += h * ax_[i], p_.vy[i] += h * ay_[i], p_.vz[i] += h * az_[i];
        time_ += dt;
        ++steps_;
    }
    double time() const noexcept { return time_; }
    std::uint64_t steps() const noexcept { return steps_; }
    const std::vector<double>& ax() const noexcept { return ax_; }
    const std::vector<double>& ay() const noexcept { return ay_; }
    const std::vector<double>& az() const noexcept { return az_; }

    double kinetic_energy() const {
        double k = 0;
        for (std::size_t i = 0; i < p_.size(); ++i)
            k += 0.5 * p_.m[i] * (p_.vx[i] * p_.vx[i] + p_.vy[i] * p_.vy[i] + p_.vz[i] * p_.vz[i]);
        return k;
    }
    /// -sum_{i<j} m_i m_j / sqrt(r_ij^2 + eps^2), in double (per-thread partial sums, added
    /// in thread order).
    double potential_energy() const { return potential_energy(p_, o_.softening, pool_); }
    double total_energy() const { return kinetic_energy() + potential_energy(); }

    static double potential_energy(const particle_set& p, double softening, lamina::thread_pool& pool) {
        const std::size_t n = p.size();
        const double e2 = softening * softening;
        std::vector<double> rows(n, 0.0);
        pool.parallel_for(n, [&](std::size_t lo, std::size_t hi) {
            for (std::size_t i = lo; i < hi; ++i) {
                double s = 0;
                for (std::size_t j = i + 1; j < n; ++j) {
                    const double dx = p.x[j] - p.x[i], dy = p.y[j] - p.y[i], dz = p.z[j] - p.z[i];
                    s += p.m[j] / std::sqrt(dx * dx + dy * dy + dz * dz + e2);
                }
                rows[i] = -p.m[i] * s;
            }
        });
        double u = 0;
        for (double r : rows) u += r;
        return u;
    }

private:
    using batch = lamina::host_detail::vec<float>;
    static constexpr std::size_t lanes = batch::size;

    void compute_accelerations() {
        const std::size_t n = p_.size(), padded = fx_.size();
        for (std::size_t i = 0; i < n; ++i) {
            fx_[i] = static_cast<float>(p_.x[i]), fy_[i] = static_cast<float>(p_.y[i]);
            fz_[i] = static_cast<float>(p_.z[i]), fm_[i] = static_cast<float>(p_.m[i]);
        }
        // padding: massless particles, so they add exactly zero (r^2 >= eps^2 > 0)
        for (std::size_t i = n; i < padded; ++i) fx_[i] = fy_[i] = fz_[i] = fm_[i] = 0.0f;
        const float e2 = static_cast<float>(o_.softening * o_.softening);
        pool_.parallel_for(
            n,
            [&](std::size_t lo, std::size_t hi) {
                const batch eps2(e2), one(1.0f);
                for (std::size_t i = lo; i < hi; ++i) {
                    const batch xi(fx_[i]), yi(fy_[i]), zi(fz_[i]);
                    batch sx(0.0f), sy(0.0f), sz(0.0f);
                    for (std::size_t j = 0; j < padded; j += lanes) {
                        const batch dx = batch::load_unaligned(&fx_[j]) - xi;
                        const batch dy = batch::load_unaligned(&fy_[j]) - yi;
                        const batch dz = batch::load_unaligned(&fz_[j]) - zi;
                        const batch r2 = xsimd::fma(dx, dx, xsimd::fma(dy, dy, xsimd::fma(dz, dz, eps2)));
                        const batch inv = one / xsimd::sqrt(r2);
                        const batch w = batch::load_unaligned(&fm_[j]) * inv * inv * inv;
                        sx = xsimd::fma(w, dx, sx), sy = xsimd::fma(w, dy, sy), sz = xsimd::fma(w, dz, sz);
                    }
                    ax_[i] = lamina::host_detail::hsum(sx);
                    ay_[i] = lamina::host_detail::hsum(sy);
                    az_[i] = lamina::host_detail::hsum(sz);
                }
            },
            16);
    }

    particle_set& p_;
    integrator_options o_;
    lamina::thread_pool& pool_;
    std::vector<float> fx_, fy_, fz_, fm_;
    std::vector<double> ax_, ay_, az_;
    double time_ = 0;
    std::uint64_t steps_ = 0;
};

}  // namespace galaxy_sim
