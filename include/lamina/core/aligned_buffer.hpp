// lamina: an owning, cache-line aligned, move-only array in host memory.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "config.hpp"

namespace lamina {

template <class T>
class aligned_buffer {
public:
    aligned_buffer() noexcept = default;
    explicit aligned_buffer(std::size_t n) { allocate(n); }
    aligned_buffer(const aligned_buffer&) = delete;
    aligned_buffer& operator=(const aligned_buffer&) = delete;
    aligned_buffer(aligned_buffer&& o) noexcept
        : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    aligned_buffer& operator=(aligned_buffer&& o) noexcept {
        if (this != &o) {
            release();
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    ~aligned_buffer() { release(); }

    /// Reallocates to n elements (contents undefined, zero-filled for determinism).
    void allocate(std::size_t n) {
        release();
        if (n == 0) return;
        if (n > (std::size_t(-1) - buffer_alignment) / sizeof(T)) throw std::bad_alloc();  // bytes would wrap
        std::size_t bytes = (n * sizeof(T) + buffer_alignment - 1) / buffer_alignment * buffer_alignment;
        void* p = std::aligned_alloc(buffer_alignment, bytes);
        if (!p) throw std::bad_alloc();
        std::memset(p, 0, bytes);
        data_ = static_cast<T*>(p);
        size_ = n;
    }
    void release() noexcept {
        std::free(data_);
        data_ = nullptr;
        size_ = 0;
    }

    T* data() noexcept { return data_; }
    const T* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    T& operator[](std::size_t i) noexcept { return data_[i]; }
    const T& operator[](std::size_t i) const noexcept { return data_[i]; }
    T* begin() noexcept { return data_; }
    T* end() noexcept { return data_ + size_; }
    const T* begin() const noexcept { return data_; }
    const T* end() const noexcept { return data_ + size_; }

private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace lamina
