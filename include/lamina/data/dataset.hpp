// lamina: in-memory datasets. `dataset` owns samples and targets in host memory;
// `dataset_view` is a non-owning view of anyone's memory (a simulation's own arrays), and
// is what trainers and evaluation read. Samples are stored row-major, one row per sample.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"

namespace lamina {

/// A non-owning view of n samples of `sample_size` values and their `target_size` targets.
/// For classification, target_size is 1 and the target is the class index (as T).
template <class T = float>
struct dataset_view {
    const T* inputs = nullptr;
    const T* targets = nullptr;
    std::size_t count = 0;
    std::size_t sample_size = 0;
    std::size_t target_size = 0;

    std::size_t size() const noexcept { return count; }
    const T* sample(std::size_t i) const noexcept { return inputs + i * sample_size; }
    const T* target(std::size_t i) const noexcept { return targets + i * target_size; }

    /// Samples [begin, end) as a view (no copy).
    dataset_view slice(std::size_t begin, std::size_t end) const {
        if (begin > end || end > count)
            throw argument_error("lamina: dataset slice [" + std::to_string(begin) + ", " + std::to_string(end) +
                                 ") is outside the " + std::to_string(count) + " samples");
        return {inputs + begin * sample_size, targets + begin * target_size, end - begin, sample_size, target_size};
    }
    /// The first `first_count` samples and the rest, as views.
    std::pair<dataset_view, dataset_view> split(std::size_t first_count) const {
        return {slice(0, first_count), slice(first_count, count)};
    }
};

/// Owning dataset in host memory.
template <class T = float>
class dataset {
public:
    dataset() = default;
    dataset(std::size_t count, std::size_t sample_size, std::size_t target_size)
        : inputs_(count * sample_size), targets_(count * target_size), count_(count), sample_size_(sample_size),
          target_size_(target_size) {}
    /// Takes ownership of filled vectors; sizes are checked.
    dataset(std::vector<T> inputs, std::vector<T> targets, std::size_t sample_size, std::size_t target_size)
        : inputs_(std::move(inputs)), targets_(std::move(targets)), sample_size_(sample_size), target_size_(target_size) {
        if (sample_size_ == 0 || inputs_.size() % sample_size_ != 0)
            throw shape_error("lamina: dataset inputs hold " + std::to_string(inputs_.size()) +
                              " values, not a multiple of the sample size " + std::to_string(sample_size_));
        count_ = inputs_.size() / sample_size_;
        if (targets_.size() != count_ * target_size_)
            throw shape_error("lamina: dataset has " + std::to_string(count_) + " samples but " +
                              std::to_string(targets_.size()) + " target values (expected " +
                              std::to_string(count_ * target_size_) + ")");
    }

    std::size_t size() const noexcept { return count_; }
    std::size_t sample_size() const noexcept { return sample_size_; }
    std::size_t target_size() const noexcept { return target_size_; }
    T* sample(std::size_t i) noexcept { return inputs_.data() + i * sample_size_; }
    const T* sample(std::size_t i) const noexcept { return inputs_.data() + i * sample_size_; }
    T* target(std::size_t i) noexcept { return targets_.data() + i * target_size_; }
    const T* target(std::size_t i) const noexcept { return targets_.data() + i * target_size_; }
    std::vector<T>& inputs() noexcept { return inputs_; }
    std::vector<T>& targets() noexcept { return targets_; }
    const std::vector<T>& inputs() const noexcept { return inputs_; }
    const std::vector<T>& targets() const noexcept { return targets_; }

    dataset_view<T> view() const noexcept {
        return {inputs_.data(), targets_.data(), count_, sample_size_, target_size_};
    }
    operator dataset_view<T>() const noexcept { return view(); }  // NOLINT: intended implicit view
    dataset_view<T> slice(std::size_t begin, std::size_t end) const { return view().slice(begin, end); }
    std::pair<dataset_view<T>, dataset_view<T>> split(std::size_t first_count) const { return view().split(first_count); }

private:
    std::vector<T> inputs_, targets_;
    std::size_t count_ = 0, sample_size_ = 0, target_size_ = 0;
};

}  // namespace lamina
