// The picture writers of examples/deepgalaxy: io/image_writer.hpp (PGM always, PNG through
// libpng when this build has it: read back here with libpng's own reader) and
// io/svg_plot.hpp (a loss curve as SVG). Values are checked against the bytes the formats
// define, computed here; bad sizes and series are refused by name.
#include <catch2/catch.hpp>

#include <lamina/io/image_writer.hpp>
#include <lamina/io/svg_plot.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include <unistd.h>

namespace lio = lamina::io;

namespace {
std::string temp_path(const std::string& name) {
    return "/tmp/lamina_test_dgio_" + std::to_string(::getpid()) + "_" + name;
}
std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}
std::size_t count_of(const std::string& s, const std::string& what) {
    std::size_t n = 0;
    for (std::size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
    return n;
}
// 2 x 3 pixels: the mapping [0, 1] -> round(255 v), clamped, NaN -> 0
const float pixels[6] = {0.0f, 1.0f, 0.5f, -3.0f, 7.0f, std::numeric_limits<float>::quiet_NaN()};
const unsigned char expected[6] = {0, 255, 128, 0, 255, 0};
}  // namespace

TEST_CASE("PGM: header and bytes as the format defines them", "[io][deepgalaxy]") {
    const std::string path = temp_path("a.pgm");
    lio::write_pgm(path, pixels, 2, 3);
    const std::string s = slurp(path);
    const std::string header = "P5\n3 2\n255\n";
    REQUIRE(s.size() == header.size() + 6);
    CHECK(s.compare(0, header.size(), header) == 0);
    for (std::size_t i = 0; i < 6; ++i) CHECK(static_cast<unsigned char>(s[header.size() + i]) == expected[i]);
    std::remove(path.c_str());
    CHECK_THROWS_WITH(lio::write_pgm(path, pixels, 0, 3), Catch::Contains("positive size") && Catch::Contains(path));
    CHECK_THROWS_AS(lio::write_pgm(path, nullptr, 2, 3), lamina::argument_error);
    CHECK_THROWS_AS(lio::write_pgm(path, pixels, std::size_t(1) << 21, 3), lamina::argument_error);
}

TEST_CASE("PNG: libpng reads back the pixels written (when this build has libpng)", "[io][deepgalaxy]") {
    const std::string stem = temp_path("b");
    const std::string written = lio::write_greyscale_image(stem, pixels, 2, 3);
#if LAMINA_HAS_PNG
    CHECK(written == stem + ".png");
    png_image image;
    std::memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    REQUIRE(png_image_begin_read_from_file(&image, written.c_str()));
    CHECK(image.width == 3);
    CHECK(image.height == 2);
    image.format = PNG_FORMAT_GRAY;
    std::vector<unsigned char> back(PNG_IMAGE_SIZE(image));
    REQUIRE(back.size() == 6);
    REQUIRE(png_image_finish_read(&image, nullptr, back.data(), 0, nullptr));
    for (std::size_t i = 0; i < 6; ++i) CHECK(back[i] == expected[i]);
#else
    CHECK(written == stem + ".pgm");
    CHECK_THROWS_WITH(lio::write_png(stem + ".png", pixels, 2, 3), Catch::Contains("libpng"));
    WARN("this build has no libpng: PNG not tested (PGM written instead)");
#endif
    std::remove(written.c_str());
}

TEST_CASE("image_grid: tiles land at their places, magnified, on the background", "[io][deepgalaxy]") {
    const float a[4] = {0.1f, 0.2f, 0.3f, 0.4f};  // 2x2
    lio::image_grid g{1, 2, 2, 2, 1, 2, 0.9f};    // 1 row of 2 tiles, gap 1, scale 2
    CHECK(g.height() == 1 * (2 * 2 + 1) + 1);
    CHECK(g.width() == 2 * (2 * 2 + 1) + 1);
    g.set(0, 1, a);
    const std::size_t w = g.width();
    // tile (0, 1) starts at row 1, column 1 + 5 = 6; pixel (r, c) of it shows a[(r/2)*2 + c/2]
    for (std::size_t r = 0; r < 4; ++r)
        for (std::size_t c = 0; c < 4; ++c) CHECK(g.pixels()[(1 + r) * w + 6 + c] == a[(r / 2) * 2 + c / 2]);
    CHECK(g.pixels()[0] == 0.9f);
    CHECK(g.pixels()[1 * w + 1] == 0.9f);  // tile (0, 0) not set
    CHECK_THROWS_WITH(g.set(1, 0, a), Catch::Contains("outside"));
    CHECK_THROWS_AS(lio::image_grid(0, 1, 2, 2), lamina::argument_error);
    CHECK_THROWS_AS(lio::image_grid(1u << 20, 1u << 20, 64, 64), lamina::argument_error);
    CHECK_THROWS_AS(lio::image_grid(1, 1, std::size_t(-1) / 2, 1, 1, 4), lamina::argument_error);
}

TEST_CASE("SVG line chart: one polyline per series at the right places, text escaped", "[io][deepgalaxy]") {
    lio::line_chart c{"loss <FCAE & classifier>", "epoch", "loss"};
    c.add("training", {1, 2, 3}, {1.0, 0.5, 0.25});
    c.add("held-out", {1, 2, 3, 4}, {1.0, std::nan(""), 0.5, 0.5});  // NaN breaks the line in two
    const std::string s = c.svg(640, 400);
    CHECK(s.rfind("<svg", 0) == 0);
    CHECK(s.find("</svg>") != std::string::npos);
    CHECK_THAT(s, Catch::Contains("loss &lt;FCAE &amp; classifier&gt;"));
    CHECK(count_of(s, "<polyline") == 3);
    // plot area: left 70, top 40, 550 x 310; x from 1 to 4, y from 0 to 1:
    // (1, 1) -> (70, 40), (2, 0.5) -> (70 + 550 / 3, 195), (3, 0.25) -> (70 + 550 * 2/3, 40 + 310 * 0.75), (4, 0.5) -> (620, 195)
    CHECK_THAT(s, Catch::Contains("points=\"70.0,40.0 253.3,195.0 436.7,272.5\""));
    CHECK_THAT(s, Catch::Contains("points=\"70.0,40.0\""));
    CHECK_THAT(s, Catch::Contains("points=\"436.7,195.0 620.0,195.0\""));
    CHECK_THROWS_WITH(c.add("bad", {1, 2}, {1}), Catch::Contains("'bad' has 2 x values and 1 y values"));
    // log scale: 1, 0.1, 0.01 are evenly spaced
    lio::line_chart l{"t", "x", "y"};
    l.add("s", {0, 1, 2}, {1, 0.1, 0.01}).log_y();
    CHECK_THAT(l.svg(640, 400), Catch::Contains("points=\"70.0,40.0 345.0,195.0 620.0,350.0\""));
    const std::string path = temp_path("c.svg");
    lio::write_svg(path, c);
    CHECK(slurp(path) == s);
    std::remove(path.c_str());
}
