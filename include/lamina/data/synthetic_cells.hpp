// lamina: synthetic microscopy images of cells, 13 phenotype classes: test data for image
// classifiers such as the M-CNN (models/mcnn.hpp) when no BBBC021 images are at hand.
//
//   auto train = lamina::data::synthetic_cells(1300, {128, 128, /*seed*/ 1});
//   auto test  = lamina::data::synthetic_cells(390, {128, 128, 1, /*first*/ 1300});
//
// Each image (3 x H x W floats, channels first) shows 3 to 6 textured cells on a dim, noisy
// background. The channels imitate BBBC021's stains: 0 the nucleus (a bright ellipse at half
// the cell's size), 1 the cytoplasm (the class's intensity pattern over the whole cell), 2
// fibres (stripes along the cell's long axis). Every cell has a fine multiplicative texture.
//
// What differs between classes (synthetic_cell_classes() lists them): the cell's size (radius
// 4.5%, 6.5% or 9% of the image's smaller side), its shape (round, or elongated with axes 2:1 at
// the same area) and the cytoplasm's pattern (uniform, a bright rim, or coarse speckles whose
// grain is a quarter of the radius). All three patterns have the same mean brightness, so a
// class is told by its geometry and texture, not by how bright it is. Every class differs from
// some other class in one attribute only.
//
// What varies within a class (how hard it is): the number and places of the cells (which
// overlap and are cut by the border; their stains add), each cell's orientation, its radius
// and brightness by +-jitter (default 15%: the size classes stay apart by about 1.4x but
// border cuts and overlaps blur that), the aspect by +-jitter/2, and Gaussian background noise
// (default sd 0.05 against a cell brightness of about 0.55 to 0.9). Sizes are relative to the
// image, so the task is the same at 128x128 and at 1024x1280.
//
// Deterministic: image i is a pure function of (seed, i) through lamina's counter-based
// random_stream (core/philox.hpp), the same on every compiler and machine and whatever the
// count or the first index; disjoint index ranges give independent sets. Labels are balanced,
// image i has class i mod 13.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/philox.hpp"
#include "dataset.hpp"
#include "synthetic_common.hpp"

namespace lamina::data {

/// The cytoplasm's intensity pattern of a class.
enum class cell_pattern { uniform, rim, speckled };

/// What makes a class: size, shape, pattern.
struct cell_class {
    double radius;         ///< mean radius sqrt(a * b) as a fraction of min(height, width)
    double aspect;         ///< long axis / short axis (1: round)
    cell_pattern pattern;  ///< the cytoplasm channel's pattern
};

inline constexpr std::size_t synthetic_cell_channels = 3;
inline constexpr std::size_t synthetic_cell_class_count = 13;

/// The 13 classes: (size, shape, pattern) with sizes S/M/L = 0.045/0.065/0.09.
inline const std::array<cell_class, synthetic_cell_class_count>& synthetic_cell_classes() {
    constexpr double S = 0.045, M = 0.065, L = 0.09, round = 1.0, elong = 2.0;
    static const std::array<cell_class, synthetic_cell_class_count> table{{
        {S, round, cell_pattern::uniform},  {M, round, cell_pattern::uniform},  {L, round, cell_pattern::uniform},
        {S, elong, cell_pattern::uniform},  {M, elong, cell_pattern::uniform},  {L, elong, cell_pattern::uniform},
        {S, round, cell_pattern::rim},      {M, round, cell_pattern::rim},      {L, round, cell_pattern::rim},
        {M, elong, cell_pattern::rim},      {S, round, cell_pattern::speckled}, {M, elong, cell_pattern::speckled},
        {L, elong, cell_pattern::speckled},
    }};
    return table;
}

struct synthetic_cells_options {
    std::size_t height = 128;
    std::size_t width = 128;
    std::uint64_t seed = 1;
    std::uint64_t first = 0;   ///< index of the first image (disjoint ranges: independent sets)
    double noise = 0.05;       ///< standard deviation of the Gaussian background noise
    double jitter = 0.15;      ///< relative spread of each cell's radius and brightness, in [0, 0.5]
    std::size_t min_cells = 3;  ///< cells per image, drawn uniformly in [min_cells, max_cells]
    std::size_t max_cells = 6;
};

namespace detail {

inline void check_cells_options(const synthetic_cells_options& o) {
    auto fail = [](const std::string& m) { throw argument_error("lamina: synthetic_cells: " + m); };
    if (o.height < 16 || o.width < 16)
        fail("the image must be at least 16x16 pixels (height " + std::to_string(o.height) + ", width " +
             std::to_string(o.width) + ")");
    if (!(o.noise >= 0) || !std::isfinite(o.noise)) fail("noise must be finite and non-negative, got " + std::to_string(o.noise));
    if (!(o.jitter >= 0 && o.jitter <= 0.5)) fail("jitter must be in [0, 0.5], got " + std::to_string(o.jitter));
    if (o.min_cells == 0 || o.min_cells > o.max_cells || o.max_cells > 64)
        fail("cells per image must satisfy 1 <= min_cells <= max_cells <= 64 (got " + std::to_string(o.min_cells) +
             ", " + std::to_string(o.max_cells) + ")");
}

/// A stream identifier for synthetic data ("cells"), apart from lamina's other streams.
inline constexpr std::uint64_t cells_stream = 0x63656c6c73ull;

}  // namespace detail

/// Renders image `index` (3 x height x width floats, channels first) into `out`; returns its
/// class (index mod 13). `out` must hold 3 * height * width floats.
inline std::size_t synthetic_cell_image(const synthetic_cells_options& o, std::uint64_t index, float* out) {
    detail::check_cells_options(o);
    const std::size_t H = o.height, W = o.width;
    const std::size_t plane = detail::synthetic_product(H, W, "synthetic_cells", "height x width");
    const std::size_t n_values = detail::synthetic_product(plane, synthetic_cell_channels, "synthetic_cells", "3 x height x width");
    const std::size_t label = static_cast<std::size_t>(index % synthetic_cell_class_count);
    const cell_class& cls = synthetic_cell_classes()[label];
    const random_stream image = random_stream{o.seed, detail::cells_stream}.child(index);
    const random_stream noise = image.child(0), shape_draws = image.child(1);

    // Background: a dim level plus Gaussian noise, four values per Philox block.
    constexpr double background = 0.05;
    for (std::size_t i = 0; i < n_values; i += 4) {
        double z[4];
        detail::normals4(noise.bits(i / 4), z);
        for (std::size_t k = 0; k < 4 && i + k < n_values; ++k)
            out[i + k] = static_cast<float>(background + o.noise * z[k]);
    }

    const double side = static_cast<double>(std::min(H, W));
    const auto counts = shape_draws.bits(0);
    const std::size_t cells = o.min_cells + static_cast<std::size_t>(detail::unit(counts, 0) *
                                                                     static_cast<double>(o.max_cells - o.min_cells + 1));
    constexpr double pi = 3.14159265358979323846;
    for (std::size_t j = 0; j < std::min(cells, o.max_cells); ++j) {
        const auto d0 = shape_draws.bits(1 + 2 * j), d1 = shape_draws.bits(2 + 2 * j);
        const double cx = detail::unit(d0, 0) * static_cast<double>(W), cy = detail::unit(d0, 1) * static_cast<double>(H);
        const double r = cls.radius * side * (1.0 + o.jitter * (2 * detail::unit(d0, 2) - 1));
        const double aspect = cls.aspect * (1.0 + 0.5 * o.jitter * (2 * detail::unit(d0, 3) - 1));
        const double theta = pi * detail::unit(d1, 0), bright = 1.0 + o.jitter * (2 * detail::unit(d1, 1) - 1);
        const double a = r * std::sqrt(aspect), b = r / std::sqrt(aspect);  // semi-axes: area pi r^2 whatever the shape
        const double ct = std::cos(theta), st = std::sin(theta);
        const double grain = std::max(1.0, r / 4), stripe = 2 * pi / std::max(2.0, r / 2);
        const random_stream texture = image.child(2 + j);
        const std::uint64_t tex_base = 0, speckle_base = std::uint64_t(1) << 62;  // two disjoint index ranges
        const double reach = std::max(a, b) + 1;
        const long y0 = std::max(0L, static_cast<long>(std::floor(cy - reach)));
        const long y1 = std::min(static_cast<long>(H) - 1, static_cast<long>(std::ceil(cy + reach)));
        const long x0 = std::max(0L, static_cast<long>(std::floor(cx - reach)));
        const long x1 = std::min(static_cast<long>(W) - 1, static_cast<long>(std::ceil(cx + reach)));
        for (long y = y0; y <= y1; ++y)
            for (long x = x0; x <= x1; ++x) {
                const double dx = static_cast<double>(x) + 0.5 - cx, dy = static_cast<double>(y) + 0.5 - cy;
                const double u = dx * ct + dy * st, v = -dx * st + dy * ct;  // along the long and the short axis
                const double rho = std::sqrt((u / a) * (u / a) + (v / b) * (v / b));
                const double inside = std::clamp((1 - rho) * b + 0.5, 0.0, 1.0);  // a one-pixel soft edge
                if (inside <= 0) continue;
                const double nucleus = std::clamp((0.5 - rho) * b + 0.5, 0.0, 1.0);
                const std::size_t p = static_cast<std::size_t>(y) * W + static_cast<std::size_t>(x);
                const auto t = texture.bits(tex_base + p);
                const double fine0 = 0.8 + 0.4 * detail::unit(t, 0), fine1 = 0.8 + 0.4 * detail::unit(t, 1),
                             fine2 = 0.8 + 0.4 * detail::unit(t, 2);
                double cyto = 0.55;
                if (cls.pattern == cell_pattern::rim) {
                    cyto = 0.2 + 1.05 * rho * rho * rho * rho;  // mean over the ellipse: 0.2 + 1.05/3 = 0.55
                } else if (cls.pattern == cell_pattern::speckled) {
                    const auto gu = static_cast<std::int64_t>(std::floor(u / grain)) + (std::int64_t(1) << 20);
                    const auto gv = static_cast<std::int64_t>(std::floor(v / grain)) + (std::int64_t(1) << 20);
                    const auto g = texture.bits(speckle_base + (static_cast<std::uint64_t>(gv) << 21) +
                                                static_cast<std::uint64_t>(gu));
                    cyto = detail::unit(g, 0) < 0.3 ? 1.2 : 0.2714;  // mean 0.3 * 1.2 + 0.7 * 0.2714 = 0.55
                }
                const double fibres = 0.5 * (0.5 + 0.5 * std::cos(stripe * v));
                out[p] += static_cast<float>(bright * inside * nucleus * 0.9 * fine0);
                out[plane + p] += static_cast<float>(bright * inside * cyto * fine1);
                out[2 * plane + p] += static_cast<float>(bright * inside * fibres * fine2);
            }
    }
    return label;
}

/// `count` images from index o.first on, with their classes as targets (one value each).
inline dataset<float> synthetic_cells(std::size_t count, const synthetic_cells_options& o = {}) {
    detail::check_cells_options(o);
    const std::size_t per = detail::synthetic_product(
        detail::synthetic_product(o.height, o.width, "synthetic_cells", "height x width"), synthetic_cell_channels,
        "synthetic_cells", "3 x height x width");
    const std::size_t all = detail::synthetic_product(per, count, "synthetic_cells", "count x 3 x height x width");
    if (count > std::numeric_limits<std::uint64_t>::max() - o.first)
        throw argument_error("lamina: synthetic_cells: first + count overflows the image index");
    std::vector<float> x(all), y(count);
    for (std::size_t i = 0; i < count; ++i)
        y[i] = static_cast<float>(synthetic_cell_image(o, o.first + i, x.data() + i * per));
    return dataset<float>(std::move(x), std::move(y), per, 1);
}

}  // namespace lamina::data
