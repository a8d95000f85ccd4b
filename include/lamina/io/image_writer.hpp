// lamina: greyscale pictures a person can look at: a simulation's field, a network's input
// beside its reconstruction. Values in [0, 1] map to 0..255 (clamped; NaN is written as 0).
//
//   lamina::io::image_grid g{2, 8, 64, 64};                  // 2 rows of 8 tiles of 64x64
//   g.set(0, k, input_k);  g.set(1, k, reconstruction_k);
//   std::string written = lamina::io::write_greyscale_image("recon", g.pixels(), g.height(), g.width());
//   // "recon.png" with libpng, else "recon.pgm"
//
// PNG is opt-in: define LAMINA_WITH_PNG and link libpng (CMake: the target lamina::png does
// both when find_package(PNG) succeeds; Debian: libpng-dev). Without it write_png throws an
// io_error saying so and write_greyscale_image writes binary PGM (P5), which every image
// viewer reads. Files are written atomically (io/atomic_file.hpp): a failed write leaves the
// previous file intact.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "atomic_file.hpp"

#if defined(LAMINA_WITH_PNG) && !defined(LAMINA_NO_PNG)
#include <png.h>
#define LAMINA_HAS_PNG 1
#else
#define LAMINA_HAS_PNG 0
#endif

namespace lamina::io {

/// True when this build writes PNG (LAMINA_WITH_PNG is defined).
constexpr bool png_available() noexcept { return LAMINA_HAS_PNG != 0; }

namespace detail {
inline void check_image(const std::string& path, const float* pixels, std::size_t height, std::size_t width) {
    if (height == 0 || width == 0)
        throw argument_error("lamina: image '" + path + "' must have a positive size, got " + std::to_string(height) + "x" +
                             std::to_string(width));
    if (height > (std::size_t(1) << 20) || width > (std::size_t(1) << 20))
        throw argument_error("lamina: image '" + path + "' is too large (" + std::to_string(height) + "x" +
                             std::to_string(width) + "; at most 1048576 per side)");
    if (!pixels) throw argument_error("lamina: image '" + path + "' got a null pixel pointer");
}
/// [0, 1] -> 0..255, rounded; clamped; NaN -> 0.
inline std::uint8_t to_byte(float v) {
    if (!(v > 0.0f)) return 0;
    if (v >= 1.0f) return 255;
    return static_cast<std::uint8_t>(v * 255.0f + 0.5f);
}
inline std::vector<std::uint8_t> to_bytes(const float* pixels, std::size_t n) {
    std::vector<std::uint8_t> b(n);
    for (std::size_t i = 0; i < n; ++i) b[i] = to_byte(pixels[i]);
    return b;
}
}  // namespace detail

/// Binary PGM (P5, maxval 255) of height x width values in [0, 1], row-major.
inline void write_pgm(const std::string& path, const float* pixels, std::size_t height, std::size_t width) {
    detail::check_image(path, pixels, height, width);
    const std::string header = "P5\n" + std::to_string(width) + " " + std::to_string(height) + "\n255\n";
    std::vector<std::uint8_t> bytes(header.begin(), header.end());
    const auto body = detail::to_bytes(pixels, height * width);
    bytes.insert(bytes.end(), body.begin(), body.end());
    write_file_atomically(path, bytes.data(), bytes.size());
}

/// 8-bit greyscale PNG (libpng's simplified API); io_error without LAMINA_WITH_PNG.
inline void write_png(const std::string& path, const float* pixels, std::size_t height, std::size_t width) {
    detail::check_image(path, pixels, height, width);
#if LAMINA_HAS_PNG
    const auto body = detail::to_bytes(pixels, height * width);
    png_image image;
    std::memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = static_cast<png_uint_32>(width);
    image.height = static_cast<png_uint_32>(height);
    image.format = PNG_FORMAT_GRAY;
    png_alloc_size_t size = 0;
    if (!png_image_write_get_memory_size(image, size, 0, body.data(), 0, nullptr))
        throw io_error("lamina: libpng cannot encode '" + path + "': " + image.message);
    std::vector<std::uint8_t> out(size);
    if (!png_image_write_to_memory(&image, out.data(), &size, 0, body.data(), 0, nullptr))
        throw io_error("lamina: libpng cannot encode '" + path + "': " + image.message);
    png_image_free(&image);
    write_file_atomically(path, out.data(), size);
#else
    throw io_error("lamina: cannot write '" + path +
                   "': PNG needs libpng, which this build does not use: define LAMINA_WITH_PNG and link libpng "
                   "(CMake: target lamina::png; Debian: apt-get install libpng-dev), or write PGM (write_pgm)");
#endif
}

/// PNG when libpng is available, else PGM; `stem` gets the extension. Returns the path written.
inline std::string write_greyscale_image(const std::string& stem, const float* pixels, std::size_t height,
                                         std::size_t width) {
    const std::string path = stem + (png_available() ? ".png" : ".pgm");
    if (png_available()) write_png(path, pixels, height, width);
    else write_pgm(path, pixels, height, width);
    return path;
}

/// A canvas of rows x cols tiles of tile_h x tile_w pixels, `gap` pixels apart on a
/// background of `background`, each tile magnified `scale` times (nearest neighbour).
class image_grid {
public:
    image_grid(std::size_t rows, std::size_t cols, std::size_t tile_h, std::size_t tile_w, std::size_t gap = 2,
               std::size_t scale = 1, float background = 1.0f)
        : rows_(rows), cols_(cols), th_(tile_h), tw_(tile_w), gap_(gap), scale_(scale) {
        if (!rows || !cols || !tile_h || !tile_w || !scale)
            throw argument_error("lamina: image_grid needs positive rows, columns, tile size and scale");
        const std::size_t lim = std::size_t(1) << 20;  // per side, as the writers allow
        // every factor bounded first, so the products below cannot overflow
        if (tile_h > lim || tile_w > lim || scale > lim || gap > lim || tile_h * scale > lim || tile_w * scale > lim ||
            rows > lim / (tile_h * scale + gap) || cols > lim / (tile_w * scale + gap))
            throw argument_error("lamina: image_grid of " + std::to_string(rows) + "x" + std::to_string(cols) +
                                 " tiles is too large");
        h_ = rows * (th_ * scale_ + gap_) + gap_;
        w_ = cols * (tw_ * scale_ + gap_) + gap_;
        pixels_.assign(h_ * w_, background);
    }
    /// Copies a tile_h x tile_w image into tile (row, col).
    void set(std::size_t row, std::size_t col, const float* tile) {
        if (row >= rows_ || col >= cols_)
            throw argument_error("lamina: image_grid tile (" + std::to_string(row) + ", " + std::to_string(col) +
                                 ") is outside " + std::to_string(rows_) + "x" + std::to_string(cols_));
        const std::size_t y0 = gap_ + row * (th_ * scale_ + gap_), x0 = gap_ + col * (tw_ * scale_ + gap_);
        for (std::size_t y = 0; y < th_ * scale_; ++y)
            for (std::size_t x = 0; x < tw_ * scale_; ++x)
                pixels_[(y0 + y) * w_ + x0 + x] = tile[(y / scale_) * tw_ + x / scale_];
    }
    const float* pixels() const noexcept { return pixels_.data(); }
    std::size_t height() const noexcept { return h_; }
    std::size_t width() const noexcept { return w_; }

private:
    std::size_t rows_, cols_, th_, tw_, gap_, scale_, h_ = 0, w_ = 0;
    std::vector<float> pixels_;
};

}  // namespace lamina::io
