// lamina: an owning tensor of up to four dimensions (N, C, H, W), in a backend's memory.
// The public layout is NCHW, row-major. Kernels may keep internal blocked layouts; what
// users see through a tensor is always NCHW.
#pragma once

#include <array>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "error.hpp"

namespace lamina {

template <class T, class Backend>
class tensor {
public:
    using value_type = T;
    using backend = Backend;
    using context = typename Backend::context;

    tensor() = default;
    /// A zero-filled tensor of the given extents (1 to 4 of them).
    explicit tensor(std::initializer_list<std::size_t> extents) { resize(extents); }

    void resize(std::initializer_list<std::size_t> extents) {
        if (extents.size() == 0 || extents.size() > 4)
            throw shape_error("lamina: a tensor has 1 to 4 extents, got " + std::to_string(extents.size()));
        rank_ = extents.size();
        std::size_t i = 0, n = 1;
        for (auto e : extents) {
            dims_[i++] = e;
            n *= e;
        }
        buf_.allocate(n);
        size_ = n;
    }

    std::size_t rank() const noexcept { return rank_; }
    std::size_t extent(std::size_t i) const noexcept { return i < rank_ ? dims_[i] : 1; }
    std::size_t size() const noexcept { return size_; }
    std::string shape_string() const {
        std::string s = "(";
        for (std::size_t i = 0; i < rank_; ++i) s += (i ? "," : "") + std::to_string(dims_[i]);
        return s + ")";
    }

    /// Device pointer (host pointer for host backends).
    T* data() noexcept { return buf_.data(); }
    const T* data() const noexcept { return buf_.data(); }

    /// Copies host values in; the count must match.
    void from_host(const context& c, const T* src, std::size_t n) {
        if (n != size_)
            throw shape_error("lamina: tensor " + shape_string() + " holds " + std::to_string(size_) + " values, got " +
                              std::to_string(n));
        Backend::upload(c, buf_.data(), src, n);
    }
    void from_host(const context& c, const std::vector<T>& v) { from_host(c, v.data(), v.size()); }
    std::vector<T> to_host(const context& c) const {
        std::vector<T> v(size_);
        if (size_) Backend::download(c, v.data(), buf_.data(), size_);
        return v;
    }

    /// For host-accessible backends: the tensor as an Eigen row-major matrix of
    /// extent(0) rows (the batch) and size/extent(0) columns.
    Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> matrix() {
        static_assert(Backend::host_accessible, "lamina: tensor::matrix() needs a host-accessible backend; use to_host()");
        auto rows = static_cast<Eigen::Index>(extent(0));
        return {buf_.data(), rows, rows ? static_cast<Eigen::Index>(size_ / extent(0)) : 0};
    }

private:
    typename Backend::template buffer<T> buf_;
    std::array<std::size_t, 4> dims_{};
    std::size_t rank_ = 0, size_ = 0;
};

}  // namespace lamina
