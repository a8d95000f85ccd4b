// lamina: a live progress line (epoch, step, loss, images/s, ETA) on a terminal; plain lines,
// one per epoch, when the output is not a terminal (CI logs, files).
#pragma once

#include <cstdio>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "training_types.hpp"

namespace lamina {

class progress_bar {
public:
    static constexpr bool root_only = true;  // a distributed trainer prints from rank 0 only
    explicit progress_bar(std::FILE* out = stdout) : out_(out) {
#if defined(__unix__) || defined(__APPLE__)
        tty_ = isatty(fileno(out)) != 0;
#endif
    }
    /// Forces the plain (non-terminal) format; used by tests.
    progress_bar& plain() {
        tty_ = false;
        return *this;
    }

    template <class Trainer>
    void on_step_end(Trainer&, const step_info& i) {
        if (!tty_) return;
        // Redraw at most ~10 times a second: printing is slow next to a small step.
        double now = i.elapsed_seconds;
        if (i.step_in_epoch != i.steps_per_epoch && now - last_draw_ < 0.1 && i.step_in_epoch > 1) return;
        last_draw_ = now;
        std::fprintf(out_, "\r%s", format(i).c_str());
        std::fflush(out_);
    }
    template <class Trainer>
    void on_epoch_end(Trainer&, const step_info& i) {
        std::fprintf(out_, tty_ ? "\r%s\n" : "%s\n", format(i).c_str());
        std::fflush(out_);
        last_draw_ = -1;
    }

    static std::string format(const step_info& i) {
        char buf[320];
        int width = 0;
        for (std::size_t n = i.steps_per_epoch; n && width < 12; n /= 10) ++width;
        std::snprintf(buf, sizeof buf, "epoch %zu/%zu  step %*zu/%zu  loss %.4f  lr %.3g  %.0f img/s  ETA %s",
                      i.epoch + 1, i.epochs_total, width, i.step_in_epoch, i.steps_per_epoch, i.epoch_loss,
                      i.learning_rate, i.images_per_second, duration(i.eta_seconds).c_str());
        return buf;
    }
    static std::string duration(double s) {
        char buf[32];
        auto t = static_cast<long>(s + 0.5);
        if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
        else std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
        return buf;
    }

private:
    std::FILE* out_;
    bool tty_ = false;
    double last_draw_ = -1;
};

}  // namespace lamina
