// lamina: read a whole file into memory, transparently gunzipping gzip files.
//
// `read_file_bytes(path)` returns the file's bytes; when the file starts with the gzip magic
// bytes 1f 8b (whatever its extension), it returns the decompressed bytes instead
// (concatenated gzip members are decompressed one after the other, as `gunzip` does).
//
// zlib is opt-in: define LAMINA_WITH_ZLIB and link zlib (`-lz`). The CMake target
// lamina::lamina does both when it finds zlib, so CMake users need nothing. Without it,
// plain files are read as usual and a gzip file throws io_error saying how to enable zlib.
// (Opt-in rather than detected with __has_include, so that including lamina where zlib.h
// happens to be installed never adds an undeclared link dependency.)
//
// Errors: io_error when the file cannot be opened or read; format_error when a gzip file is
// truncated or corrupt. Every message names the file.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../core/error.hpp"

#if defined(LAMINA_WITH_ZLIB) && !defined(LAMINA_NO_ZLIB)
#include <zlib.h>
#define LAMINA_HAS_ZLIB 1
#else
#define LAMINA_HAS_ZLIB 0
#endif

namespace lamina {
namespace data {

/// True when this build can decompress gzip files (LAMINA_WITH_ZLIB is defined).
constexpr bool zlib_available() noexcept { return LAMINA_HAS_ZLIB != 0; }

/// True when `bytes` starts with the gzip magic bytes 1f 8b.
inline bool is_gzip(const unsigned char* bytes, std::size_t size) noexcept {
    return size >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}
inline bool is_gzip(const std::vector<unsigned char>& bytes) noexcept { return is_gzip(bytes.data(), bytes.size()); }

/// The file's bytes exactly as stored (no decompression). Throws io_error naming the file and
/// the system's reason when it cannot be opened or read.
inline std::vector<unsigned char> read_raw_file(const std::string& path) {
    errno = 0;
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        const int err = errno;
        throw io_error("lamina: cannot open '" + path + "': " + (err ? std::strerror(err) : "unknown error"));
    }
    std::vector<unsigned char> bytes;
    unsigned char chunk[1 << 16];
    for (;;) {
        const std::size_t n = std::fread(chunk, 1, sizeof chunk, f);
        bytes.insert(bytes.end(), chunk, chunk + n);
        if (n < sizeof chunk) break;
    }
    const bool failed = std::ferror(f) != 0;
    const int err = errno;
    std::fclose(f);
    if (failed)
        throw io_error("lamina: cannot read '" + path + "': " + (err ? std::strerror(err) : "read error"));
    return bytes;
}

/// Decompresses gzip data (one or more concatenated members; trailing zero padding is
/// ignored). `name` is used in error messages. Throws format_error when the data is
/// truncated or corrupt (bad header, bad deflate data, CRC or length mismatch), io_error
/// when lamina was built without zlib.
inline std::vector<unsigned char> gunzip(const std::vector<unsigned char>& gz, const std::string& name) {
#if LAMINA_HAS_ZLIB
    if (!is_gzip(gz))
        throw format_error("lamina: '" + name + "' is not gzip data (does not start with the gzip magic bytes 1f 8b)");
    std::vector<unsigned char> out;
    // ISIZE (the last 4 bytes, little-endian) is the uncompressed size modulo 2^32: a good hint
    // for a sound file, garbage for a truncated one, so it is bounded by deflate's maximum
    // ratio (1032:1) and 1 GiB; the reserved space is only filled as data is decompressed.
    if (gz.size() >= 18) {
        const std::size_t n = gz.size();
        const std::uint32_t isize = std::uint32_t(gz[n - 4]) | (std::uint32_t(gz[n - 3]) << 8) |
                                    (std::uint32_t(gz[n - 2]) << 16) | (std::uint32_t(gz[n - 1]) << 24);
        const std::size_t ratio_bound = n > std::numeric_limits<std::size_t>::max() / 1032
                                            ? std::numeric_limits<std::size_t>::max() : n * 1032;
        out.reserve(std::min({std::size_t(isize), ratio_bound, std::size_t(1) << 30}));
    }

    z_stream zs;
    std::memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK)  // 15-bit window, gzip wrapper only
        throw io_error("lamina: cannot decompress '" + name + "': zlib initialisation failed");
    struct guard {
        z_stream* s;
        ~guard() { inflateEnd(s); }
    } g{&zs};

    std::size_t pos = 0;  // input consumed so far
    const std::size_t chunk = std::size_t(1) << 16;
    for (;;) {
        // One gzip member.
        int ret = Z_OK;
        for (;;) {
            const std::size_t in_left = gz.size() - pos;
            zs.next_in = const_cast<Bytef*>(gz.data() + pos);
            zs.avail_in = static_cast<uInt>(std::min<std::size_t>(in_left, 1u << 30));
            const std::size_t old_size = out.size();
            // Fill the reserved space in steps of at most 16 MiB (resize zero-fills).
            const std::size_t want = std::max(chunk, std::min(out.capacity() - old_size, std::size_t(1) << 24));
            out.resize(old_size + want);
            zs.next_out = out.data() + old_size;
            zs.avail_out = static_cast<uInt>(std::min<std::size_t>(want, 1u << 30));
            const uInt avail_in_before = zs.avail_in;
            const uInt avail_out_before = zs.avail_out;
            ret = inflate(&zs, Z_NO_FLUSH);
            pos += avail_in_before - zs.avail_in;
            out.resize(old_size + (avail_out_before - zs.avail_out));
            if (ret == Z_STREAM_END) break;
            if (ret == Z_DATA_ERROR || ret == Z_NEED_DICT)
                throw format_error("lamina: '" + name + "' is a corrupt gzip file (zlib: " +
                                   (zs.msg ? zs.msg : "invalid compressed data") + ", after " +
                                   std::to_string(pos) + " of " + std::to_string(gz.size()) +
                                   " compressed bytes)");
            if (ret == Z_MEM_ERROR)
                throw io_error("lamina: out of memory while decompressing '" + name + "'");
            const bool progressed = zs.avail_in != avail_in_before || zs.avail_out != avail_out_before;
            if (pos == gz.size() && (ret == Z_BUF_ERROR || !progressed || zs.avail_out != 0))
                throw format_error("lamina: '" + name + "' is a truncated gzip file: the compressed data ends after " +
                                   std::to_string(gz.size()) + " bytes, before the end of the gzip stream (" +
                                   std::to_string(out.size()) + " bytes decompressed so far)");
            if (ret != Z_OK && ret != Z_BUF_ERROR)
                throw format_error("lamina: cannot decompress '" + name + "' (zlib error " + std::to_string(ret) + ")");
        }
        // Another member follows? Trailing zero padding (tape blocks) is ignored, like gunzip.
        std::size_t next = pos;
        while (next < gz.size() && gz[next] == 0) ++next;
        if (next == gz.size()) break;
        if (next != pos || !is_gzip(gz.data() + pos, gz.size() - pos))
            throw format_error("lamina: '" + name + "' has " + std::to_string(gz.size() - pos) +
                               " bytes of trailing garbage after the gzip stream (at compressed offset " +
                               std::to_string(pos) + ")");
        if (inflateReset(&zs) != Z_OK)
            throw io_error("lamina: cannot decompress '" + name + "': zlib reset failed");
    }
    out.shrink_to_fit();
    return out;
#else
    (void)gz;
    throw io_error("lamina: cannot read '" + name +
                   "': it is gzip-compressed but lamina was built without zlib (define "
                   "LAMINA_WITH_ZLIB and link zlib, e.g. -DLAMINA_WITH_ZLIB -lz; Debian: zlib1g-dev), or gunzip the file first");
#endif
}

/// The file's contents, gunzipped when it is a gzip file (detected by the magic bytes 1f 8b,
/// not by the extension). Throws io_error (cannot open/read; gzip without zlib) or
/// format_error (truncated or corrupt gzip), naming the file.
inline std::vector<unsigned char> read_file_bytes(const std::string& path) {
    std::vector<unsigned char> bytes = read_raw_file(path);
    if (is_gzip(bytes)) return gunzip(bytes, path);
    return bytes;
}

}  // namespace data
}  // namespace lamina
