// lamina: CRC-32 (IEEE 802.3, the zlib/PNG polynomial), to detect corrupted checkpoints.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace lamina::io {

inline std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t n) {
    static const auto table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    auto p = static_cast<const unsigned char*>(data);
    crc = ~crc;
    for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

inline std::uint32_t crc32(const void* data, std::size_t n) { return crc32_update(0, data, n); }

}  // namespace lamina::io
