// lamina: writes one CSV row of metrics per epoch (epoch, step, loss, lr, images/s, and the
// value of any extra metric callbacks such as held-out accuracy).
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "training_types.hpp"

namespace lamina {

class csv_log {
public:
    explicit csv_log(std::string path) : path_(std::move(path)) {}
    csv_log(const csv_log&) = delete;
    csv_log(csv_log&& o) noexcept : path_(std::move(o.path_)), file_(o.file_), extra_(std::move(o.extra_)) { o.file_ = nullptr; }
    ~csv_log() {
        if (file_) std::fclose(file_);
    }

    /// Adds a column computed at each epoch end, e.g. held-out accuracy.
    template <class Trainer, class F>
    csv_log& column(std::string name, F f) {
        extra_.emplace_back(std::move(name), [f](void* t) { return f(*static_cast<Trainer*>(t)); });
        return *this;
    }

    template <class Trainer>
    void on_epoch_end(Trainer& t, const step_info& i) {
        if (path_.empty()) return;  // an empty path disables the log
        // A distributed trainer: every rank computes the columns (one may be collective, e.g.
        // an evaluate()), rank 0 writes.
        values_.clear();
        for (auto& e : extra_) values_.push_back(e.second(static_cast<void*>(&t)));
        if constexpr (has_is_root<Trainer>::value)
            if (!t.is_root()) return;
        if (!file_) {
            bool exists = false;
            if (std::FILE* f = std::fopen(path_.c_str(), "r")) {
                exists = true;
                std::fclose(f);
            }
            file_ = std::fopen(path_.c_str(), "a");
            if (!file_) throw io_error("lamina: csv_log cannot open '" + path_ + "' for writing");
            if (!exists) {
                std::fprintf(file_, "epoch,global_step,loss,learning_rate,images_per_second");
                for (auto& e : extra_) std::fprintf(file_, ",%s", e.first.c_str());
                std::fprintf(file_, "\n");
            }
        }
        std::fprintf(file_, "%zu,%llu,%.6g,%.6g,%.1f", i.epoch + 1, static_cast<unsigned long long>(i.global_step),
                     i.epoch_loss, i.learning_rate, i.images_per_second);
        for (double v : values_) std::fprintf(file_, ",%.6g", v);
        std::fprintf(file_, "\n");
        if (std::fflush(file_) != 0) throw io_error("lamina: csv_log failed writing '" + path_ + "'");
    }

private:
    template <class Tr, class = void>
    struct has_is_root : std::false_type {};
    template <class Tr>
    struct has_is_root<Tr, std::void_t<decltype(std::declval<const Tr&>().is_root())>> : std::true_type {};

    std::string path_;
    std::FILE* file_ = nullptr;
    std::vector<std::pair<std::string, std::function<double(void*)>>> extra_;
    std::vector<double> values_;  // this epoch's extra columns
};

/// Runs f(trainer, info) at every epoch end: the simplest custom callback.
template <class F>
struct at_epoch_end {
    F f;
    template <class Trainer>
    void on_epoch_end(Trainer& t, const step_info& i) { f(t, i); }
};
template <class F>
at_epoch_end(F) -> at_epoch_end<F>;

}  // namespace lamina
