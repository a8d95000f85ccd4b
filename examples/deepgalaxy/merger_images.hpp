// Images of an N-body snapshot as DeepGalaxy takes them (examples/deepgalaxy; not part of the
// lamina library): the projected surface density seen by a camera, on a fixed field of view
// centred on the centre of mass, log-scaled to [0, 1].
//
//   camera c = galaxy_sim::cameras(14)[3];
//   galaxy_sim::render(particles, c, galaxy_sim::image_options{}, pixels);   // 64 x 64 floats
//
// Cameras: the paper imaged every snapshot from 14 positions; here they are the 6 axis
// directions and the 8 cube diagonals (the first `count` of that list). Each particle's mass
// is spread over the four nearest pixel centres (cloud in cell), the map is smoothed by a
// Gaussian of `blur` pixels, divided by the pixel area, and mapped to
//   v = clamp(log10(sigma / sigma_lo) / log10(sigma_hi / sigma_lo), 0, 1)
// with sigma_lo and sigma_hi fixed (not per image), so brightness compares across images.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <vector>

#include "nbody.hpp"

namespace galaxy_sim {

/// A viewing direction and the two image axes (right, up), orthonormal.
struct camera {
    double dir[3];
    double right[3];
    double up[3];
};

inline camera make_camera(double dx, double dy, double dz) {
    const double n = std::sqrt(dx * dx + dy * dy + dz * dz);
    camera c{{dx / n, dy / n, dz / n}, {0, 0, 0}, {0, 0, 0}};
    // "up" starts as +z unless the camera looks along z, then +y
    double u[3] = {0, 0, 1};
    if (std::abs(c.dir[2]) > 0.99) u[0] = 0, u[1] = 1, u[2] = 0;
    // right = up x dir, normalised; up = dir x right
    double r[3] = {u[1] * c.dir[2] - u[2] * c.dir[1], u[2] * c.dir[0] - u[0] * c.dir[2], u[0] * c.dir[1] - u[1] * c.dir[0]};
    const double rn = std::sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]);
    for (int k = 0; k < 3; ++k) c.right[k] = r[k] / rn;
    c.up[0] = c.dir[1] * c.right[2] - c.dir[2] * c.right[1];
    c.up[1] = c.dir[2] * c.right[0] - c.dir[0] * c.right[2];
    c.up[2] = c.dir[0] * c.right[1] - c.dir[1] * c.right[0];
    return c;
}

/// The first `count` (at most 14) of: +-x, +-y, +-z, then the 8 diagonals (+-1, +-1, +-1).
inline std::vector<camera> cameras(std::size_t count) {
    if (count == 0 || count > 14) throw std::invalid_argument("cameras: between 1 and 14 cameras");
    const double d[14][3] = {{1, 0, 0},  {-1, 0, 0}, {0, 1, 0},  {0, -1, 0},  {0, 0, 1},  {0, 0, -1}, {1, 1, 1},
                             {-1, 1, 1}, {1, -1, 1}, {-1, -1, 1}, {1, 1, -1}, {-1, 1, -1}, {1, -1, -1}, {-1, -1, -1}};
    std::vector<camera> c;
    for (std::size_t i = 0; i < count; ++i) c.push_back(make_camera(d[i][0], d[i][1], d[i][2]));
    return c;
}

struct image_options {
    std::size_t size = 64;     // pixels per side
    double half_width = 5.0;   // the field of view is [-half_width, half_width]^2 (length units)
    double blur = 0.7;         // Gaussian smoothing, in pixels
    double sigma_lo = 0.003;   // surface density shown as 0 (about one particle of 2,048 per blur area)
    double sigma_hi = 3.0;     // shown as 1 (a bulge centre)
};

/// Renders the projected surface density of `p` seen by camera `c` into out[size * size]
/// (row-major, row 0 at the top).
inline void render(const particle_set& p, const camera& c, const image_options& o, float* out) {
    const std::size_t n = o.size;
    if (n < 2 || !(o.half_width > 0)) throw std::invalid_argument("render: need size >= 2 and a positive field of view");
    const double px = 2 * o.half_width / static_cast<double>(n);
    std::vector<double> grid(n * n, 0.0), tmp(n * n, 0.0);
    for (std::size_t i = 0; i < p.size(); ++i) {
        const double u = p.x[i] * c.right[0] + p.y[i] * c.right[1] + p.z[i] * c.right[2];
        const double v = p.x[i] * c.up[0] + p.y[i] * c.up[1] + p.z[i] * c.up[2];
        // pixel coordinates of the particle, pixel centres at integer + 0.5
        const double gx = (u + o.half_width) / px - 0.5, gy = (o.half_width - v) / px - 0.5;
        if (!(gx > -1.0 && gx < static_cast<double>(n) && gy > -1.0 && gy < static_cast<double>(n))) continue;
        const double fx = std::floor(gx), fy = std::floor(gy);
        const double wx = gx - fx, wy = gy - fy;
        const long ix = static_cast<long>(fx), iy = static_cast<long>(fy);
        auto deposit = [&](long x, long y, double w) {
            if (x >= 0 && y >= 0 && x < static_cast<long>(n) && y < static_cast<long>(n))
                grid[static_cast<std::size_t>(y) * n + static_cast<std::size_t>(x)] += w * p.m[i];
        };
        deposit(ix, iy, (1 - wx) * (1 - wy));
        deposit(ix + 1, iy, wx * (1 - wy));
        deposit(ix, iy + 1, (1 - wx) * wy);
        deposit(ix + 1, iy + 1, wx * wy);
    }
    // separable Gaussian blur (kernel normalised, truncated at 3 sigma; mass near the edges leaves the field)
    const long r = static_cast<long>(std::ceil(3 * o.blur));
    std::vector<double> k(static_cast<std::size_t>(2 * r + 1));
    double ks = 0;
    for (long j = -r; j <= r; ++j) ks += k[static_cast<std::size_t>(j + r)] = std::exp(-0.5 * double(j * j) / (o.blur * o.blur));
    for (auto& w : k) w /= ks;
    const long N = static_cast<long>(n);
    for (long y = 0; y < N; ++y)
        for (long x = 0; x < N; ++x) {
            double s = 0;
            for (long j = -r; j <= r; ++j)
                if (x + j >= 0 && x + j < N) s += k[static_cast<std::size_t>(j + r)] * grid[static_cast<std::size_t>(y * N + x + j)];
            tmp[static_cast<std::size_t>(y * N + x)] = s;
        }
    const double area = px * px, lo = std::log10(o.sigma_lo), span = std::log10(o.sigma_hi) - lo;
    for (long y = 0; y < N; ++y)
        for (long x = 0; x < N; ++x) {
            double s = 0;
            for (long j = -r; j <= r; ++j)
                if (y + j >= 0 && y + j < N) s += k[static_cast<std::size_t>(j + r)] * tmp[static_cast<std::size_t>((y + j) * N + x)];
            const double sigma = s / area;
            const double v = sigma > 0 ? (std::log10(sigma) - lo) / span : 0.0;
            out[static_cast<std::size_t>(y * N + x)] = static_cast<float>(std::clamp(v, 0.0, 1.0));
        }
}

/// Averages f x f blocks: an image of size*f pixels per side to one of size (the example
/// images the simulation at any multiple of the network's input size).
inline void downsample(const float* in, std::size_t size, std::size_t f, float* out) {
    if (f == 0) throw std::invalid_argument("downsample: factor 0");
    const std::size_t big = size * f;
    for (std::size_t y = 0; y < size; ++y)
        for (std::size_t x = 0; x < size; ++x) {
            double s = 0;
            for (std::size_t a = 0; a < f; ++a)
                for (std::size_t b = 0; b < f; ++b) s += in[(y * f + a) * big + x * f + b];
            out[y * size + x] = static_cast<float>(s / static_cast<double>(f * f));
        }
}

}  // namespace galaxy_sim
