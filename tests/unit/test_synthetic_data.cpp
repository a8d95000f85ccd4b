// The synthetic data generators (data/synthetic_cells.hpp, data/synthetic_calorimeter.hpp):
// deterministic per seed and per image index; the documented class differences measured from
// the pixels with the test's own geometry (areas, second moments, radial profiles, channel sums),
// never from the generator's parameters alone; bad options rejected with the field named.
#include <catch2/catch.hpp>

#include <lamina/data/synthetic_calorimeter.hpp>
#include <lamina/data/synthetic_cells.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace lm = lamina;
namespace ld = lamina::data;

namespace {
bool same_image(const float* a, const float* b, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        if (a[i] != b[i]) return false;
    return true;
}

/// What the test measures of a single-cell image: the cell's pixels found from the cytoplasm
/// channel, their centroid and covariance, and the channels' means over regions.
struct cell_measure {
    bool touches_border = false;
    double area = 0, nucleus_area = 0, aspect = 0;
    double inner_mean = 0, outer_mean = 0;  // cytoplasm channel, normalised radius < 0.5 and in [0.7, 0.95]
    double mean = 0, cv = 0;                // cytoplasm channel over the cell
};

cell_measure measure_cell(const float* img, std::size_t H, std::size_t W) {
    const std::size_t plane = H * W;
    const float* nuc = img;
    const float* cyto = img + plane;
    cell_measure m;
    double sx = 0, sy = 0, n = 0;
    auto in_cell = [&](std::size_t p) { return cyto[p] > 0.15f; };  // background is exactly 0.05 without noise
    for (std::size_t y = 0; y < H; ++y)
        for (std::size_t x = 0; x < W; ++x) {
            const std::size_t p = y * W + x;
            if (nuc[p] > 0.45f) m.nucleus_area += 1;
            if (!in_cell(p)) continue;
            if (x == 0 || y == 0 || x + 1 == W || y + 1 == H) m.touches_border = true;
            sx += double(x); sy += double(y); n += 1;
        }
    m.area = n;
    if (n == 0) return m;
    const double cx = sx / n, cy = sy / n;
    double cxx = 0, cyy = 0, cxy = 0;
    for (std::size_t y = 0; y < H; ++y)
        for (std::size_t x = 0; x < W; ++x)
            if (in_cell(y * W + x)) {
                const double dx = double(x) - cx, dy = double(y) - cy;
                cxx += dx * dx; cyy += dy * dy; cxy += dx * dy;
            }
    cxx /= n; cyy /= n; cxy /= n;
    // eigenvalues of the covariance: a uniform ellipse with semi-axes a, b has a^2/4 and b^2/4
    const double tr = cxx + cyy, det = cxx * cyy - cxy * cxy, disc = std::sqrt(std::max(0.0, tr * tr / 4 - det));
    const double l1 = tr / 2 + disc, l2 = tr / 2 - disc;
    m.aspect = std::sqrt(l1 / l2);
    // normalised elliptical radius rho = sqrt(d' C^-1 d) / 2
    double si = 0, ni = 0, so = 0, no = 0, s = 0, s2 = 0;
    for (std::size_t y = 0; y < H; ++y)
        for (std::size_t x = 0; x < W; ++x) {
            const std::size_t p = y * W + x;
            if (!in_cell(p)) continue;
            const double dx = double(x) - cx, dy = double(y) - cy;
            const double q = (cyy * dx * dx - 2 * cxy * dx * dy + cxx * dy * dy) / det;
            const double rho = std::sqrt(q) / 2;
            const double v = double(cyto[p]) - 0.05;
            if (rho < 0.5) { si += v; ni += 1; }
            if (rho > 0.7 && rho < 0.95) { so += v; no += 1; }
            s += v; s2 += v * v;
        }
    m.inner_mean = si / ni;
    m.outer_mean = so / no;
    m.mean = s / n;
    m.cv = std::sqrt(std::max(0.0, s2 / n - m.mean * m.mean)) / m.mean;
    return m;
}
}  // namespace

TEST_CASE("synthetic cells: deterministic per seed and per image index", "[data][synthetic]") {
    ld::synthetic_cells_options o;
    o.height = 64; o.width = 80; o.seed = 7;
    const auto a = ld::synthetic_cells(6, o), b = ld::synthetic_cells(6, o);
    REQUIRE(a.sample_size() == 3 * 64 * 80);
    CHECK(a.inputs() == b.inputs());
    CHECK(a.targets() == b.targets());
    auto o8 = o;
    o8.seed = 8;
    const auto c = ld::synthetic_cells(6, o8);
    for (std::size_t i = 0; i < 6; ++i) CHECK_FALSE(same_image(a.sample(i), c.sample(i), a.sample_size()));
    // image i does not depend on where the range starts or how long it is
    auto o3 = o;
    o3.first = 3;
    const auto d = ld::synthetic_cells(3, o3);
    for (std::size_t i = 0; i < 3; ++i) CHECK(same_image(a.sample(3 + i), d.sample(i), a.sample_size()));
    std::vector<float> one(a.sample_size());
    CHECK(ld::synthetic_cell_image(o, 4, one.data()) == 4);
    CHECK(same_image(a.sample(4), one.data(), one.size()));
    // balanced labels: image i has class i mod 13
    const auto e = ld::synthetic_cells(27, o3);
    for (std::size_t i = 0; i < 27; ++i) CHECK(e.targets()[i] == float((3 + i) % 13));
    // neighbouring images differ
    CHECK_FALSE(same_image(a.sample(0), a.sample(1), a.sample_size()));
}

TEST_CASE("synthetic cells: size, shape and pattern differ by class as documented", "[data][synthetic]") {
    // One cell per image, no jitter and no noise: each measured property is the class's own.
    ld::synthetic_cells_options o;
    o.height = o.width = 256;
    o.seed = 11;
    o.noise = 0;
    o.jitter = 0;
    o.min_cells = o.max_cells = 1;
    const auto& classes = ld::synthetic_cell_classes();
    REQUIRE(classes.size() == 13);
    std::vector<float> img(3 * 256 * 256);
    constexpr double pi = 3.14159265358979323846;
    std::vector<double> class_means;
    for (std::size_t k = 0; k < 13; ++k) {
        const auto& cls = classes[k];
        // distinct attributes, each class one attribute away from another
        std::size_t neighbours = 0;
        for (std::size_t j = 0; j < 13; ++j) {
            if (j == k) continue;
            const int diff = int(classes[j].radius != cls.radius) + int(classes[j].aspect != cls.aspect) +
                             int(classes[j].pattern != cls.pattern);
            CHECK(diff > 0);
            neighbours += diff == 1;
        }
        CHECK(neighbours > 0);
        // the first images of this class whose cell lies inside the frame; the first is measured,
        // the mean brightness is averaged over six (a speckled cell's is a sample of its grains)
        cell_measure m;
        double mean = 0;
        int found = 0;
        std::uint64_t idx = k;
        for (int tries = 0; tries < 80 && found < 6; ++tries, idx += 13) {
            REQUIRE(ld::synthetic_cell_image(o, idx, img.data()) == k);
            const cell_measure one = measure_cell(img.data(), 256, 256);
            if (one.touches_border) continue;
            if (found++ == 0) m = one;
            mean += one.mean;
        }
        REQUIRE(found == 6);
        const double r = cls.radius * 256;
        INFO("class " << k << ": radius " << r << " px, aspect " << cls.aspect << "; measured area " << m.area
                      << ", nucleus " << m.nucleus_area << ", aspect " << m.aspect << ", inner " << m.inner_mean
                      << ", outer " << m.outer_mean << ", cv " << m.cv);
        CHECK(m.area == Approx(pi * r * r).epsilon(0.15));  // the soft edge adds up to half a pixel
        CHECK(m.nucleus_area == Approx(pi * r * r / 4).epsilon(0.20));
        CHECK(m.aspect == Approx(cls.aspect).epsilon(0.15));
        switch (cls.pattern) {
        case ld::cell_pattern::uniform:
            CHECK(m.outer_mean == Approx(m.inner_mean).epsilon(0.15));
            CHECK(m.cv < 0.3);
            break;
        case ld::cell_pattern::rim:
            CHECK(m.outer_mean > 2 * m.inner_mean);
            break;
        case ld::cell_pattern::speckled:
            CHECK(m.cv > 0.65);
            break;
        }
        class_means.push_back(mean / found);
    }
    // the patterns have the same mean brightness (within what pixel edges and texture leave)
    for (double v : class_means) CHECK(v == Approx(0.55).epsilon(0.12));
}

TEST_CASE("synthetic cells: bigger classes cover more of the image, at any image size", "[data][synthetic]") {
    // Default options (3 to 6 cells, jitter, noise): mean foreground of small, medium and
    // large round uniform cells (classes 0, 1, 2) rises with the class's area.
    for (std::size_t side : {128u, 192u}) {
        ld::synthetic_cells_options o;
        o.height = side; o.width = side + 64; o.seed = 3;
        const auto d = ld::synthetic_cells(13 * 12, o);
        double fg[3] = {0, 0, 0};
        const std::size_t plane = o.height * o.width;
        for (std::size_t i = 0; i < d.size(); ++i) {
            const std::size_t k = std::size_t(d.targets()[i]);
            if (k > 2) continue;
            for (std::size_t p = 0; p < plane; ++p) fg[k] += d.sample(i)[plane + p] > 0.3f;
        }
        INFO("side " << side << ": foreground pixels " << fg[0] << ", " << fg[1] << ", " << fg[2]);
        CHECK(fg[1] > 1.5 * fg[0]);
        CHECK(fg[2] > 1.5 * fg[1]);
    }
}

TEST_CASE("synthetic calorimeter: deterministic, channels as documented, signal has more and harder jets",
          "[data][synthetic]") {
    ld::synthetic_calorimeter_options o;
    o.height = o.width = 64;
    o.seed = 5;
    std::vector<ld::calorimeter_event_truth> truth;
    const auto a = ld::synthetic_calorimeter(400, o, &truth), b = ld::synthetic_calorimeter(400, o);
    REQUIRE(a.sample_size() == 3 * 64 * 64);
    CHECK(a.inputs() == b.inputs());
    auto o2 = o;
    o2.seed = 6;
    const auto c = ld::synthetic_calorimeter(4, o2);
    for (std::size_t i = 0; i < 4; ++i) CHECK_FALSE(same_image(a.sample(i), c.sample(i), a.sample_size()));
    auto o3 = o;
    o3.first = 10;
    const auto d = ld::synthetic_calorimeter(5, o3);
    for (std::size_t i = 0; i < 5; ++i) CHECK(same_image(a.sample(10 + i), d.sample(i), a.sample_size()));

    const std::size_t plane = 64 * 64;
    double jets[2] = {0, 0}, energy[2] = {0, 0}, tracks[2] = {0, 0};
    std::size_t n[2] = {0, 0};
    std::size_t bad_channels = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const float* x = a.sample(i);
        const std::size_t label = std::size_t(a.targets()[i]);
        REQUIRE(label == i % 2);
        REQUIRE(truth[i].label == label);
        double e_sum = 0, t_sum = 0;
        for (std::size_t p = 0; p < plane; ++p) {
            const double e = x[p], frac = x[plane + p], t = x[2 * plane + p];
            if (e < 0 || frac < 0 || frac > 1 || t < 0 || t != std::floor(t)) ++bad_channels;
            if (e == 0 && (frac != 0 || t != 0)) ++bad_channels;  // an empty bin has no EM energy, no track
            e_sum += std::expm1(e);
            t_sum += t;
        }
        // the pixels hold exactly what the event deposited
        CHECK(e_sum == Approx(truth[i].total_energy).epsilon(1e-4));
        CHECK(t_sum == double(truth[i].tracks));
        if (label == 1) CHECK((truth[i].jets >= 4 && truth[i].jets <= 8));
        else CHECK((truth[i].jets >= 2 && truth[i].jets <= 5));
        jets[label] += double(truth[i].jets);
        energy[label] += e_sum;
        tracks[label] += t_sum;
        ++n[label];
    }
    CHECK(bad_channels == 0);
    INFO("mean jets " << jets[0] / n[0] << " / " << jets[1] / n[1] << ", energy " << energy[0] / n[0] << " / "
                      << energy[1] / n[1] << ", tracks " << tracks[0] / n[0] << " / " << tracks[1] / n[1]);
    // expected jets 3.5 and 6; jet energy 3.5 * 70 = 245 against 6 * 100 = 600, plus the soft particles
    CHECK(jets[0] / n[0] == Approx(3.5).epsilon(0.1));
    CHECK(jets[1] / n[1] == Approx(6.0).epsilon(0.1));
    CHECK(energy[1] / n[1] > 2 * energy[0] / n[0]);
    CHECK(tracks[1] / n[1] > 1.3 * tracks[0] / n[0]);
}

TEST_CASE("synthetic data: bad options are rejected naming what is wrong", "[data][synthetic]") {
    auto message = [](auto&& f) {
        try {
            f();
        } catch (const lm::argument_error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    ld::synthetic_cells_options small;
    small.height = 8;
    CHECK_THAT(message([&] { ld::synthetic_cells(1, small); }), Catch::Contains("at least 16x16"));
    ld::synthetic_cells_options jitter;
    jitter.jitter = 0.7;
    CHECK_THAT(message([&] { ld::synthetic_cells(1, jitter); }), Catch::Contains("jitter"));
    ld::synthetic_cells_options cells;
    cells.min_cells = 0;
    CHECK_THAT(message([&] { ld::synthetic_cells(1, cells); }), Catch::Contains("min_cells"));
    ld::synthetic_cells_options noise;
    noise.noise = std::numeric_limits<double>::quiet_NaN();
    CHECK_THAT(message([&] { ld::synthetic_cells(1, noise); }), Catch::Contains("noise"));
    CHECK_THAT(message([&] { ld::synthetic_cells(std::numeric_limits<std::size_t>::max() / 4, {}); }),
               Catch::Contains("count x 3 x height x width overflows"));
    ld::synthetic_calorimeter_options calo;
    calo.width = 4;
    CHECK_THAT(message([&] { ld::synthetic_calorimeter(1, calo); }), Catch::Contains("at least 8x8"));
    CHECK_THAT(message([&] { ld::synthetic_calorimeter(std::numeric_limits<std::size_t>::max() / 8, {}); }),
               Catch::Contains("overflows"));
    ld::synthetic_cells_options last;
    last.first = std::numeric_limits<std::uint64_t>::max();
    CHECK_THAT(message([&] { ld::synthetic_cells(2, last); }), Catch::Contains("first + count"));
}
