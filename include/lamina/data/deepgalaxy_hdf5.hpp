// lamina: DeepGalaxy's HDF5 layout (Cai et al. 2020): galaxy-merger images in one group per
// simulation, one dataset of images per camera, the snapshot times beside them.
//
//   /s_<size>_m_<mass>[_<suffix>]/images_camera_XX   (N, H, W) or (N, H, W, 1); uint8 (0..255,
//                                                    read as value / 255) or float32/float64
//                                                    (already in [0, 1], read as they are)
//   /s_<size>_m_<mass>[_<suffix>]/t_myr_camera_XX    (N) snapshot times in Myr, any numeric type
//
// XX is the camera number, two digits (the paper's files have cameras 00..13). <size> and
// <mass> are the secondary's size and mass ratios as decimal numbers (s_1_m_0.5,
// s_0.25_m_1.5); lamina also accepts a suffix after them (s_1_m_0.5_run_3: several
// simulations with the same ratios; DeepGalaxy's own loader, which splits the name at '_'
// and reads fields 1 and 3, reads such names too). Other groups and datasets are ignored.
//
//   lamina::data::deepgalaxy_file f{"output_bw_512.hdf5"};       // the paper's files, unchanged
//   for (const auto& g : f.groups())                              // s_*_m_* groups and their cameras
//       auto im = f.read(g.name, g.cameras[0]);                   // im.pixels: N x H x W floats
//   lamina::data::deepgalaxy_writer w{"mergers.h5"};              // the same layout (uint8 or float)
//   w.write(lamina::data::deepgalaxy_group_name(1, 0.5, "run_0"), 3, pixels, n, 64, 64, t_myr);
//   w.commit();                                                   // temporary file renamed into place
//
// HDF5 is opt-in: define LAMINA_WITH_HDF5 and link the HDF5 C library (CMake: the target
// lamina::hdf5 does both when find_package(HDF5) succeeds; Debian: libhdf5-dev).
// Without it this header still compiles: parse_deepgalaxy_group_name works, and opening a
// file throws io_error saying how to enable HDF5 (hdf5_available() tells in advance).
// (Opt-in rather than detected with __has_include so that including lamina never adds an
// undeclared link dependency, as with zlib in data/gzip_file.hpp.)
//
// Reading trusts nothing: a missing group or dataset names what is there instead; every
// rank, dimension and element type is checked before use (the element count and byte size
// with overflow-safe arithmetic); non-finite pixels or times are refused. Errors: io_error
// when a file cannot be opened, created or renamed; format_error for contents that do not fit
// the layout; allocation_error when the images do not fit in memory. Each names the file and
// the dataset. HDF5's own error printing is silenced while lamina calls it.
#pragma once

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"

#if defined(LAMINA_WITH_HDF5) && !defined(LAMINA_NO_HDF5)
#include <hdf5.h>
#include <unistd.h>  // getpid: the writer's temporary file name
#define LAMINA_HAS_HDF5 1
#else
#define LAMINA_HAS_HDF5 0
#endif

namespace lamina {
namespace data {

/// True when this build can read and write HDF5 files (LAMINA_WITH_HDF5 is defined).
constexpr bool hdf5_available() noexcept { return LAMINA_HAS_HDF5 != 0; }

/// The parts of a group name s_<size>_m_<mass>[_<suffix>].
struct deepgalaxy_name {
    double size_ratio = 0;
    double mass_ratio = 0;
    std::string suffix;  // after the mass and its '_' (empty when none)
};

namespace detail {
/// A decimal number as the paper writes them ("1", "0.25", "1.5"): digits with at most one
/// point, at least one digit. Returns the length parsed (0: none).
inline std::size_t parse_ratio(const std::string& s, std::size_t at, double& value) {
    std::size_t i = at, digits = 0, points = 0;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) {
        if (s[i] == '.') ++points;
        else ++digits;
        ++i;
    }
    if (digits == 0 || points > 1 || i - at > 32) return 0;
    value = std::strtod(s.substr(at, i - at).c_str(), nullptr);
    return i - at;
}
}  // namespace detail

/// Parses s_<size>_m_<mass>[_<suffix>] (a leading '/' is allowed); nullopt for other names.
inline std::optional<deepgalaxy_name> parse_deepgalaxy_group_name(std::string s) {
    if (!s.empty() && s[0] == '/') s.erase(0, 1);
    deepgalaxy_name n;
    if (s.compare(0, 2, "s_") != 0) return std::nullopt;
    std::size_t i = 2, len = detail::parse_ratio(s, i, n.size_ratio);
    if (!len) return std::nullopt;
    i += len;
    if (s.compare(i, 3, "_m_") != 0) return std::nullopt;
    i += 3;
    len = detail::parse_ratio(s, i, n.mass_ratio);
    if (!len) return std::nullopt;
    i += len;
    if (i < s.size()) {
        if (s[i] != '_' || i + 1 == s.size()) return std::nullopt;
        n.suffix = s.substr(i + 1);
    }
    return n;
}

/// The group name for these ratios ("%g": s_1_m_0.5), with "_<suffix>" when one is given.
inline std::string deepgalaxy_group_name(double size_ratio, double mass_ratio, const std::string& suffix = "") {
    if (!(size_ratio > 0) || !(mass_ratio > 0) || !std::isfinite(size_ratio) || !std::isfinite(mass_ratio))
        throw argument_error("lamina: deepgalaxy_group_name: size and mass ratios must be positive and finite, got " +
                             std::to_string(size_ratio) + " and " + std::to_string(mass_ratio));
    if (suffix.find('/') != std::string::npos)
        throw argument_error("lamina: deepgalaxy_group_name: the suffix '" + suffix + "' must not contain '/'");
    char b[96];
    std::snprintf(b, sizeof b, "s_%g_m_%g", size_ratio, mass_ratio);
    return suffix.empty() ? std::string(b) : std::string(b) + "_" + suffix;
}

/// "images_camera_07", "t_myr_camera_07".
inline std::string deepgalaxy_images_name(int camera) {
    if (camera < 0 || camera > 99)
        throw argument_error("lamina: DeepGalaxy camera numbers have two digits (0..99), got " + std::to_string(camera));
    char b[32];
    std::snprintf(b, sizeof b, "images_camera_%02d", camera);
    return b;
}
inline std::string deepgalaxy_times_name(int camera) {
    return "t_myr" + deepgalaxy_images_name(camera).substr(6);
}

/// One simulation's group: its name, the parsed ratios and its cameras (ascending).
struct deepgalaxy_group {
    std::string name;
    deepgalaxy_name parsed;
    std::vector<int> cameras;
};

/// One camera's images of one group.
struct deepgalaxy_images {
    std::string group;
    int camera = 0;
    std::size_t count = 0, height = 0, width = 0;
    std::vector<float> pixels;  // count x height x width, row-major
    std::vector<double> t_myr;  // count snapshot times, or empty when the group has none for this camera
    const float* image(std::size_t i) const noexcept { return pixels.data() + i * height * width; }
};

#if LAMINA_HAS_HDF5
namespace detail {

/// Silences HDF5's automatic error printing for its lifetime (lamina reports errors itself).
class hdf5_quiet {
public:
    hdf5_quiet() {
        H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    }
    ~hdf5_quiet() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
    hdf5_quiet(const hdf5_quiet&) = delete;
    hdf5_quiet& operator=(const hdf5_quiet&) = delete;

private:
    H5E_auto2_t func_ = nullptr;
    void* data_ = nullptr;
};

/// An HDF5 identifier closed with its own close function.
class hdf5_id {
public:
    using closer = herr_t (*)(hid_t);
    hdf5_id() = default;
    hdf5_id(hid_t id, closer c) : id_(id), close_(c) {}
    hdf5_id(hdf5_id&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
    hdf5_id& operator=(hdf5_id&& o) noexcept {
        if (this != &o) {
            reset();
            id_ = o.id_;
            close_ = o.close_;
            o.id_ = -1;
        }
        return *this;
    }
    hdf5_id(const hdf5_id&) = delete;
    hdf5_id& operator=(const hdf5_id&) = delete;
    ~hdf5_id() { reset(); }
    void reset() {
        if (id_ >= 0 && close_) close_(id_);
        id_ = -1;
    }
    hid_t get() const noexcept { return id_; }
    bool valid() const noexcept { return id_ >= 0; }

private:
    hid_t id_ = -1;
    closer close_ = nullptr;
};

inline bool hdf5_link_exists(hid_t loc, const std::string& name) {
    return H5Lexists(loc, name.c_str(), H5P_DEFAULT) > 0;
}

/// The names of the links in a group, in name order.
inline std::vector<std::string> hdf5_link_names(hid_t group, const std::string& where) {
    H5G_info_t info;
    if (H5Gget_info(group, &info) < 0) throw format_error("lamina: cannot list the members of " + where);
    std::vector<std::string> names;
    for (hsize_t i = 0; i < info.nlinks; ++i) {
        const ssize_t len = H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
        if (len < 0 || len > 4096) throw format_error("lamina: member " + std::to_string(i) + " of " + where + " has no readable name");
        std::string s(static_cast<std::size_t>(len) + 1, '\0');
        if (H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, &s[0], s.size(), H5P_DEFAULT) < 0)
            throw format_error("lamina: member " + std::to_string(i) + " of " + where + " has no readable name");
        s.resize(static_cast<std::size_t>(len));
        names.push_back(std::move(s));
    }
    return names;
}

/// The identifier type (H5I_GROUP, H5I_DATASET, ...) of a member, or H5I_BADID.
inline H5I_type_t hdf5_member_type(hid_t loc, const std::string& name) {
    if (!hdf5_link_exists(loc, name)) return H5I_BADID;
    hdf5_id o(H5Oopen(loc, name.c_str(), H5P_DEFAULT), H5Oclose);
    return o.valid() ? H5Iget_type(o.get()) : H5I_BADID;
}

/// Camera number of "images_camera_XX" (exactly two digits), or -1.
inline int camera_of(const std::string& name) {
    const std::string prefix = "images_camera_";
    if (name.size() != prefix.size() + 2 || name.compare(0, prefix.size(), prefix) != 0) return -1;
    const char a = name[prefix.size()], b = name[prefix.size() + 1];
    if (!std::isdigit(static_cast<unsigned char>(a)) || !std::isdigit(static_cast<unsigned char>(b))) return -1;
    return (a - '0') * 10 + (b - '0');
}

/// A dataset's extents, checked: rank within [1, 8], each read into size_t.
inline std::vector<std::size_t> hdf5_extents(hid_t dset, const std::string& where) {
    hdf5_id space(H5Dget_space(dset), H5Sclose);
    if (!space.valid()) throw format_error("lamina: " + where + ": cannot read its dataspace");
    const int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 0) throw format_error("lamina: " + where + ": cannot read its rank");
    if (rank > 8) throw format_error("lamina: " + where + " has rank " + std::to_string(rank) + ", more than any layout here uses");
    hsize_t dims[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (rank > 0 && H5Sget_simple_extent_dims(space.get(), dims, nullptr) != rank)
        throw format_error("lamina: " + where + ": cannot read its dimensions");
    std::vector<std::size_t> out;
    for (int i = 0; i < rank; ++i) {
        if (dims[i] > static_cast<hsize_t>(std::numeric_limits<std::size_t>::max()))
            throw format_error("lamina: " + where + ": dimension " + std::to_string(i) + " (" + std::to_string(dims[i]) +
                               ") does not fit in size_t");
        out.push_back(static_cast<std::size_t>(dims[i]));
    }
    return out;
}

inline std::string dims_text(const std::vector<std::size_t>& d) {
    std::string s = "(";
    for (std::size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + ")";
}

/// a * b, or false when it overflows size_t.
inline bool checked_mul(std::size_t a, std::size_t b, std::size_t& out) {
    if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) return false;
    out = a * b;
    return true;
}

/// The bytes HDF5 has stored for a dataset must be able to hold `count` elements of `element`
/// bytes before anything that size is allocated: exactly (or more, for partial edge chunks)
/// without filters; with compression, at most deflate's ratio of about 1032:1 (1100 allowed).
inline void check_stored_bytes(hid_t dset, std::size_t count, std::size_t element, const std::string& where) {
    if (count == 0) return;
    std::size_t want = 0;
    if (!checked_mul(count, element, want)) throw format_error("lamina: " + where + ": its byte size overflows size_t");
    const hsize_t stored = H5Dget_storage_size(dset);
    hdf5_id plist(H5Dget_create_plist(dset), H5Pclose);
    const int filters = plist.valid() ? H5Pget_nfilters(plist.get()) : 0;
    const long double have = static_cast<long double>(stored) * (filters > 0 ? 1100.0L : 1.0L);
    if (stored == 0 || have < static_cast<long double>(want))
        throw format_error("lamina: " + where + " declares " + std::to_string(count) + " elements (" + std::to_string(want) +
                           " bytes) but the file stores " + std::to_string(stored) + " bytes for it" +
                           (filters > 0 ? " (compressed)" : "") + ": truncated, or its data were never written");
}

enum class pixel_type { u8, f32, f64 };

/// What a dataset's element type is, or an error naming what it is instead.
inline pixel_type hdf5_pixel_type(hid_t dset, const std::string& where) {
    hdf5_id type(H5Dget_type(dset), H5Tclose);
    if (!type.valid()) throw format_error("lamina: " + where + ": cannot read its element type");
    const H5T_class_t cls = H5Tget_class(type.get());
    const std::size_t size = H5Tget_size(type.get());
    if (cls == H5T_INTEGER && size == 1 && H5Tget_sign(type.get()) == H5T_SGN_NONE) return pixel_type::u8;
    if (cls == H5T_FLOAT && size == 4) return pixel_type::f32;
    if (cls == H5T_FLOAT && size == 8) return pixel_type::f64;
    std::string what = cls == H5T_INTEGER ? (H5Tget_sign(type.get()) == H5T_SGN_NONE ? "unsigned integers" : "signed integers")
                       : cls == H5T_FLOAT ? "floats"
                       : cls == H5T_STRING ? "strings"
                                           : "a non-numeric type (HDF5 class " + std::to_string(static_cast<int>(cls)) + ")";
    throw format_error("lamina: " + where + " holds " + what + " of " + std::to_string(size) +
                       " bytes; DeepGalaxy images are uint8 (0..255), float32 or float64 (0..1)");
}

}  // namespace detail

/// A DeepGalaxy HDF5 file opened for reading.
class deepgalaxy_file {
public:
    explicit deepgalaxy_file(std::string path) : path_(std::move(path)) {
        detail::hdf5_quiet quiet;
        errno = 0;
        if (std::FILE* f = std::fopen(path_.c_str(), "rb")) {
            std::fclose(f);
        } else {
            const int err = errno;
            throw io_error("lamina: cannot open '" + path_ + "': " + (err ? std::strerror(err) : "unknown error"));
        }
        if (H5Fis_hdf5(path_.c_str()) <= 0) throw format_error("lamina: '" + path_ + "' is not an HDF5 file");
        file_ = detail::hdf5_id(H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
        if (!file_.valid()) throw io_error("lamina: HDF5 cannot open '" + path_ + "' (corrupt or truncated file?)");
    }

    const std::string& path() const noexcept { return path_; }

    /// The groups named s_<size>_m_<mass>[_<suffix>] and the cameras each has images for.
    std::vector<deepgalaxy_group> groups() const {
        detail::hdf5_quiet quiet;
        std::vector<deepgalaxy_group> out;
        for (const auto& name : detail::hdf5_link_names(file_.get(), "the root group of '" + path_ + "'")) {
            auto parsed = parse_deepgalaxy_group_name(name);
            if (!parsed || detail::hdf5_member_type(file_.get(), name) != H5I_GROUP) continue;
            detail::hdf5_id g(H5Gopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Gclose);
            if (!g.valid()) throw format_error("lamina: '" + path_ + "': cannot open group /" + name);
            deepgalaxy_group dg{name, *parsed, {}};
            for (const auto& member : detail::hdf5_link_names(g.get(), "group /" + name + " of '" + path_ + "'")) {
                const int cam = detail::camera_of(member);
                if (cam >= 0 && detail::hdf5_member_type(g.get(), member) == H5I_DATASET) dg.cameras.push_back(cam);
            }
            std::sort(dg.cameras.begin(), dg.cameras.end());
            out.push_back(std::move(dg));
        }
        return out;
    }

    /// The images of one camera of one group, as floats in the stored scale (uint8 / 255),
    /// with their snapshot times when the group has them for this camera.
    deepgalaxy_images read(const std::string& group_name, int camera) const {
        detail::hdf5_quiet quiet;
        std::string group = group_name;
        if (!group.empty() && group[0] == '/') group.erase(0, 1);
        const std::string images = deepgalaxy_images_name(camera), times = deepgalaxy_times_name(camera);
        if (group.empty() || group.find('/') != std::string::npos || detail::hdf5_member_type(file_.get(), group) != H5I_GROUP)
            throw format_error("lamina: '" + path_ + "' has no group /" + group + " (its DeepGalaxy groups: " +
                               group_list() + ")");
        detail::hdf5_id g(H5Gopen2(file_.get(), group.c_str(), H5P_DEFAULT), H5Gclose);
        if (!g.valid()) throw format_error("lamina: '" + path_ + "': cannot open group /" + group);
        if (detail::hdf5_member_type(g.get(), images) != H5I_DATASET)
            throw format_error("lamina: '" + path_ + "': group /" + group + " has no dataset " + images + " (cameras there: " +
                               camera_list(g.get(), group) + ")");
        const std::string where = "'" + path_ + "' /" + group + "/" + images;
        detail::hdf5_id d(H5Dopen2(g.get(), images.c_str(), H5P_DEFAULT), H5Dclose);
        if (!d.valid()) throw format_error("lamina: " + where + ": cannot open the dataset");

        const auto dims = detail::hdf5_extents(d.get(), where);
        const bool rank4 = dims.size() == 4 && dims[3] == 1;
        if (dims.size() != 3 && !rank4)
            throw format_error("lamina: " + where + " has rank " + std::to_string(dims.size()) + ", dimensions " +
                               detail::dims_text(dims) + "; expected (N, H, W) or (N, H, W, 1)");
        deepgalaxy_images out;
        out.group = group;
        out.camera = camera;
        out.count = dims[0];
        out.height = dims[1];
        out.width = dims[2];
        if (out.height == 0 || out.width == 0)
            throw format_error("lamina: " + where + " has empty images: dimensions " + detail::dims_text(dims));
        std::size_t pixels = 0, per = 0, bytes = 0;
        if (!detail::checked_mul(out.height, out.width, per) || !detail::checked_mul(per, out.count, pixels) ||
            !detail::checked_mul(pixels, sizeof(double), bytes))
            throw format_error("lamina: " + where + ": dimensions " + detail::dims_text(dims) +
                               " overflow the address space (N * H * W values)");
        const detail::pixel_type type = detail::hdf5_pixel_type(d.get(), where);
        const std::size_t element = type == detail::pixel_type::u8 ? 1 : type == detail::pixel_type::f32 ? 4 : 8;
        detail::check_stored_bytes(d.get(), pixels, element, where);
        try {
            out.pixels.resize(pixels);
            if (pixels) {
                if (type == detail::pixel_type::u8) {
                    std::vector<unsigned char> raw(pixels);
                    if (H5Dread(d.get(), H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()) < 0)
                        throw format_error("lamina: " + where + ": reading the images failed (truncated or corrupt file?)");
                    for (std::size_t i = 0; i < pixels; ++i) out.pixels[i] = static_cast<float>(raw[i]) / 255.0f;
                } else {
                    if (H5Dread(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.pixels.data()) < 0)
                        throw format_error("lamina: " + where + ": reading the images failed (truncated or corrupt file?)");
                    for (std::size_t i = 0; i < pixels; ++i)
                        if (!std::isfinite(out.pixels[i]))
                            throw format_error("lamina: " + where + ": pixel " + std::to_string(i % per) + " of image " +
                                               std::to_string(i / per) + " is not finite (" +
                                               std::to_string(out.pixels[i]) + ")");
                }
            }
        } catch (const std::bad_alloc&) {
            throw allocation_error("lamina: " + where + ": no memory for " + std::to_string(pixels) + " pixels (" +
                                   detail::dims_text(dims) + ")");
        }

        if (detail::hdf5_member_type(g.get(), times) == H5I_DATASET) {
            const std::string tw = "'" + path_ + "' /" + group + "/" + times;
            detail::hdf5_id t(H5Dopen2(g.get(), times.c_str(), H5P_DEFAULT), H5Dclose);
            if (!t.valid()) throw format_error("lamina: " + tw + ": cannot open the dataset");
            const auto td = detail::hdf5_extents(t.get(), tw);
            if (td.size() != 1 && !(td.size() == 2 && td[1] == 1))
                throw format_error("lamina: " + tw + " has rank " + std::to_string(td.size()) + ", dimensions " +
                                   detail::dims_text(td) + "; expected (N) snapshot times");
            if (td[0] != out.count)
                throw format_error("lamina: " + tw + " has " + std::to_string(td[0]) + " times for " +
                                   std::to_string(out.count) + " images in " + images);
            detail::hdf5_id tt(H5Dget_type(t.get()), H5Tclose);
            const H5T_class_t cls = tt.valid() ? H5Tget_class(tt.get()) : H5T_NO_CLASS;
            if (cls != H5T_INTEGER && cls != H5T_FLOAT)
                throw format_error("lamina: " + tw + " is not numeric (HDF5 class " + std::to_string(static_cast<int>(cls)) + ")");
            detail::check_stored_bytes(t.get(), out.count, tt.valid() ? std::max<std::size_t>(1, H5Tget_size(tt.get())) : 1, tw);
            out.t_myr.resize(out.count);
            if (out.count && H5Dread(t.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.t_myr.data()) < 0)
                throw format_error("lamina: " + tw + ": reading the times failed");
            for (std::size_t i = 0; i < out.count; ++i)
                if (!std::isfinite(out.t_myr[i]))
                    throw format_error("lamina: " + tw + ": time " + std::to_string(i) + " is not finite");
        }
        return out;
    }

private:
    std::string group_list() const {
        std::string s;
        for (const auto& g : groups()) s += (s.empty() ? "" : ", ") + g.name;
        return s.empty() ? "none" : s;
    }
    std::string camera_list(hid_t g, const std::string& group) const {
        std::string s;
        for (const auto& m : detail::hdf5_link_names(g, "group /" + group + " of '" + path_ + "'"))
            if (detail::camera_of(m) >= 0) s += (s.empty() ? "" : ", ") + m.substr(m.size() - 2);
        return s.empty() ? "none" : s;
    }

    std::string path_;
    detail::hdf5_id file_;
};

/// Writes DeepGalaxy's layout into a temporary file beside `path`; commit() closes it and
/// renames it over `path`, so an interrupted write never leaves a half-written file there
/// (without commit the destructor removes the temporary file).
class deepgalaxy_writer {
public:
    explicit deepgalaxy_writer(std::string path) : path_(std::move(path)) {
        detail::hdf5_quiet quiet;
        tmp_ = path_ + ".tmp-" + std::to_string(static_cast<long>(::getpid()));
        file_ = detail::hdf5_id(H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
        if (!file_.valid()) throw io_error("lamina: cannot create the HDF5 file '" + tmp_ + "' (for '" + path_ + "')");
    }
    deepgalaxy_writer(const deepgalaxy_writer&) = delete;
    deepgalaxy_writer& operator=(const deepgalaxy_writer&) = delete;
    ~deepgalaxy_writer() {
        if (file_.valid()) {
            file_.reset();
            std::remove(tmp_.c_str());
        }
    }

    /// count images of height x width as uint8 (the paper's black-and-white files), and
    /// their times (t_myr may be null: no times dataset).
    void write(const std::string& group, int camera, const std::uint8_t* images, std::size_t count, std::size_t height,
               std::size_t width, const double* t_myr) {
        write_any(group, camera, images, H5T_STD_U8LE, H5T_NATIVE_UCHAR, count, height, width, t_myr);
    }
    /// The same as float32 (values as given, in [0, 1] by DeepGalaxy's convention).
    void write(const std::string& group, int camera, const float* images, std::size_t count, std::size_t height,
               std::size_t width, const double* t_myr) {
        write_any(group, camera, images, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, count, height, width, t_myr);
    }

    /// Closes the file and renames it to the path given at construction.
    void commit() {
        if (!file_.valid()) throw io_error("lamina: '" + path_ + "' was already committed");
        detail::hdf5_quiet quiet;
        if (H5Fflush(file_.get(), H5F_SCOPE_GLOBAL) < 0) throw io_error("lamina: flushing '" + tmp_ + "' failed");
        file_.reset();
        if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
            const int err = errno;
            std::remove(tmp_.c_str());
            throw io_error("lamina: cannot rename '" + tmp_ + "' to '" + path_ + "': " + std::strerror(err));
        }
    }

private:
    void write_any(const std::string& group_name, int camera, const void* images, hid_t file_type, hid_t mem_type,
                   std::size_t count, std::size_t height, std::size_t width, const double* t_myr) {
        detail::hdf5_quiet quiet;
        if (!file_.valid()) throw io_error("lamina: '" + path_ + "' was already committed");
        if (!parse_deepgalaxy_group_name(group_name))
            throw argument_error("lamina: '" + group_name + "' is not a DeepGalaxy group name (s_<size>_m_<mass>[_<suffix>])");
        if (height == 0 || width == 0) throw argument_error("lamina: DeepGalaxy images need a positive height and width");
        std::size_t per = 0, all = 0;
        if (!detail::checked_mul(height, width, per) || !detail::checked_mul(per, count, all))
            throw argument_error("lamina: " + std::to_string(count) + " images of " + std::to_string(height) + "x" +
                                 std::to_string(width) + " overflow size_t");
        if (count && !images) throw argument_error("lamina: deepgalaxy_writer::write got a null image pointer");
        const std::string name = group_name[0] == '/' ? group_name.substr(1) : group_name;
        const std::string dset = deepgalaxy_images_name(camera), where = "'" + tmp_ + "' /" + name + "/" + dset;
        detail::hdf5_id g;
        if (detail::hdf5_link_exists(file_.get(), name))
            g = detail::hdf5_id(H5Gopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Gclose);
        else
            g = detail::hdf5_id(H5Gcreate2(file_.get(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
        if (!g.valid()) throw io_error("lamina: cannot create group /" + name + " in '" + tmp_ + "'");
        if (detail::hdf5_link_exists(g.get(), dset)) throw argument_error("lamina: " + where + " was already written");

        const hsize_t dims[3] = {static_cast<hsize_t>(count), static_cast<hsize_t>(height), static_cast<hsize_t>(width)};
        detail::hdf5_id space(H5Screate_simple(3, dims, nullptr), H5Sclose);
        detail::hdf5_id plist(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
        if (!space.valid() || !plist.valid()) throw io_error("lamina: " + where + ": cannot describe the dataset");
        // One chunk per image, deflated when HDF5 has zlib (the paper's files are gigabytes).
        if (count && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {
            const hsize_t chunk[3] = {1, static_cast<hsize_t>(height), static_cast<hsize_t>(width)};
            if (H5Pset_chunk(plist.get(), 3, chunk) < 0 || H5Pset_deflate(plist.get(), 4) < 0)
                throw io_error("lamina: " + where + ": cannot set up compression");
        }
        detail::hdf5_id d(H5Dcreate2(g.get(), dset.c_str(), file_type, space.get(), H5P_DEFAULT, plist.get(), H5P_DEFAULT),
                          H5Dclose);
        if (!d.valid()) throw io_error("lamina: " + where + ": cannot create the dataset");
        if (count && H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, images) < 0)
            throw io_error("lamina: " + where + ": writing the images failed");
        if (t_myr) {
            const std::string tname = deepgalaxy_times_name(camera);
            const hsize_t tdims[1] = {static_cast<hsize_t>(count)};
            detail::hdf5_id ts(H5Screate_simple(1, tdims, nullptr), H5Sclose);
            detail::hdf5_id t(H5Dcreate2(g.get(), tname.c_str(), H5T_IEEE_F64LE, ts.get(), H5P_DEFAULT, H5P_DEFAULT,
                                         H5P_DEFAULT),
                              H5Dclose);
            if (!ts.valid() || !t.valid()) throw io_error("lamina: '" + tmp_ + "' /" + name + "/" + tname + ": cannot create");
            if (count && H5Dwrite(t.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, t_myr) < 0)
                throw io_error("lamina: '" + tmp_ + "' /" + name + "/" + tname + ": writing the times failed");
        }
    }

    std::string path_, tmp_;
    detail::hdf5_id file_;
};

#else  // no HDF5: the same interface, every file operation explains how to enable it

namespace detail {
[[noreturn]] inline void no_hdf5(const std::string& path) {
    throw io_error("lamina: '" + path +
                   "': DeepGalaxy HDF5 files need HDF5, which this build does not use: define LAMINA_WITH_HDF5 and link "
                   "the HDF5 C library (CMake: target lamina::hdf5; Debian: apt-get install libhdf5-dev)");
}
}  // namespace detail

class deepgalaxy_file {
public:
    explicit deepgalaxy_file(std::string path) { detail::no_hdf5(path); }
    const std::string& path() const noexcept { return path_; }
    std::vector<deepgalaxy_group> groups() const { detail::no_hdf5(path_); }
    deepgalaxy_images read(const std::string&, int) const { detail::no_hdf5(path_); }

private:
    std::string path_;
};

class deepgalaxy_writer {
public:
    explicit deepgalaxy_writer(std::string path) { detail::no_hdf5(path); }
    void write(const std::string&, int, const std::uint8_t*, std::size_t, std::size_t, std::size_t, const double*) {
        detail::no_hdf5(path_);
    }
    void write(const std::string&, int, const float*, std::size_t, std::size_t, std::size_t, const double*) {
        detail::no_hdf5(path_);
    }
    void commit() { detail::no_hdf5(path_); }

private:
    std::string path_;
};

#endif

}  // namespace data
}  // namespace lamina
