// lamina: line charts as SVG (a loss curve per training run), readable in any browser.
//
//   lamina::io::line_chart c{"FCAE + classifier", "epoch", "loss"};
//   c.add("training", epochs, train_loss);
//   c.add("held-out", epochs, test_loss);
//   lamina::io::write_svg("loss.svg", c);      // atomically (io/atomic_file.hpp)
//
// Axes span the data (y from 0 unless a value is negative; log_y() for losses spanning
// decades, then every value must be positive), five ticks each, one colour per series and a
// legend. Non-finite points are left out of a line (it breaks there). Text is XML-escaped.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "atomic_file.hpp"

namespace lamina::io {

class line_chart {
public:
    struct series {
        std::string name;
        std::vector<double> x, y;
    };

    line_chart(std::string title, std::string x_label, std::string y_label)
        : title_(std::move(title)), xl_(std::move(x_label)), yl_(std::move(y_label)) {}

    /// A series of points (x[i], y[i]); the sizes must agree.
    line_chart& add(std::string name, std::vector<double> x, std::vector<double> y) {
        if (x.size() != y.size())
            throw argument_error("lamina: line_chart series '" + name + "' has " + std::to_string(x.size()) + " x values and " +
                                 std::to_string(y.size()) + " y values");
        series_.push_back({std::move(name), std::move(x), std::move(y)});
        return *this;
    }
    line_chart& log_y(bool on = true) {
        log_y_ = on;
        return *this;
    }
    const std::vector<series>& all_series() const noexcept { return series_; }

    /// The chart as an SVG document of width x height pixels.
    std::string svg(int width = 640, int height = 400) const {
        const double left = 70, right = 20, top = 40, bottom = 50;
        const double pw = width - left - right, ph = height - top - bottom;
        double x0 = inf(), x1 = -inf(), y0 = inf(), y1 = -inf();
        for (const auto& s : series_)
            for (std::size_t i = 0; i < s.x.size(); ++i) {
                if (!usable(s.x[i], s.y[i])) continue;
                x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
                const double v = ty(s.y[i]);
                y0 = std::min(y0, v), y1 = std::max(y1, v);
            }
        if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;  // nothing to draw: empty axes
        if (!log_y_ && y0 > 0) y0 = 0;
        if (x1 == x0) x1 = x0 + 1;
        if (y1 == y0) y1 = y0 + 1;
        auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
        auto py = [&](double y) { return top + ph - (ty(y) - y0) / (y1 - y0) * ph; };

        std::string o;
        o += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) + "\" height=\"" +
             std::to_string(height) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
        o += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
        o += text(width / 2.0, 22, escape(title_), "middle", 15);
        o += "<rect x=\"" + num(left) + "\" y=\"" + num(top) + "\" width=\"" + num(pw) + "\" height=\"" + num(ph) +
             "\" fill=\"none\" stroke=\"black\"/>\n";
        for (int k = 0; k <= 4; ++k) {  // ticks and grid lines
            const double fx = x0 + (x1 - x0) * k / 4, fy = y0 + (y1 - y0) * k / 4;
            const double gx = left + pw * k / 4, gy = top + ph - ph * k / 4;
            o += "<line x1=\"" + num(gx) + "\" y1=\"" + num(top) + "\" x2=\"" + num(gx) + "\" y2=\"" + num(top + ph) +
                 "\" stroke=\"#ddd\"/>\n";
            o += "<line x1=\"" + num(left) + "\" y1=\"" + num(gy) + "\" x2=\"" + num(left + pw) + "\" y2=\"" + num(gy) +
                 "\" stroke=\"#ddd\"/>\n";
            o += text(gx, top + ph + 16, label(fx), "middle");
            o += text(left - 6, gy + 4, label(log_y_ ? std::pow(10.0, fy) : fy), "end");
        }
        o += text(left + pw / 2, height - 10.0, escape(xl_), "middle");
        o += "<text x=\"16\" y=\"" + num(top + ph / 2) + "\" text-anchor=\"middle\" transform=\"rotate(-90 16 " +
             num(top + ph / 2) + ")\">" + escape(yl_) + (log_y_ ? " (log scale)" : "") + "</text>\n";
        static const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
        for (std::size_t k = 0; k < series_.size(); ++k) {
            const auto& s = series_[k];
            const std::string colour = colours[k % 6];
            std::string points;
            auto flush = [&] {
                if (!points.empty())
                    o += "<polyline fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"2\" points=\"" + points + "\"/>\n";
                points.clear();
            };
            for (std::size_t i = 0; i < s.x.size(); ++i) {
                if (!usable(s.x[i], s.y[i])) {
                    flush();
                    continue;
                }
                points += (points.empty() ? "" : " ") + num(px(s.x[i])) + "," + num(py(s.y[i]));
            }
            flush();
            const double ly = top + 16 + 16.0 * static_cast<double>(k);
            o += "<line x1=\"" + num(left + pw - 150) + "\" y1=\"" + num(ly - 4) + "\" x2=\"" + num(left + pw - 128) +
                 "\" y2=\"" + num(ly - 4) + "\" stroke=\"" + colour + "\" stroke-width=\"2\"/>\n";
            o += text(left + pw - 122, ly, escape(s.name), "start");
        }
        o += "</svg>\n";
        return o;
    }

private:
    static double inf() { return std::numeric_limits<double>::infinity(); }
    bool usable(double x, double y) const { return std::isfinite(x) && std::isfinite(y) && (!log_y_ || y > 0); }
    double ty(double y) const { return log_y_ ? std::log10(y) : y; }
    static std::string num(double v) {
        char b[32];
        std::snprintf(b, sizeof b, "%.1f", v);
        return b;
    }
    static std::string label(double v) {
        char b[32];
        std::snprintf(b, sizeof b, "%.3g", v);
        return b;
    }
    static std::string text(double x, double y, const std::string& s, const char* anchor, int size = 12) {
        return "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" text-anchor=\"" + anchor + "\" font-size=\"" +
               std::to_string(size) + "\">" + s + "</text>\n";
    }
    static std::string escape(const std::string& s) {
        std::string o;
        for (char c : s) {
            switch (c) {
                case '&': o += "&amp;"; break;
                case '<': o += "&lt;"; break;
                case '>': o += "&gt;"; break;
                case '"': o += "&quot;"; break;
                default: o += c;
            }
        }
        return o;
    }

    std::string title_, xl_, yl_;
    std::vector<series> series_;
    bool log_y_ = false;
};

/// Writes c.svg() to `path` atomically.
inline void write_svg(const std::string& path, const line_chart& c, int width = 640, int height = 400) {
    const std::string s = c.svg(width, height);
    write_file_atomically(path, s.data(), s.size());
}

}  // namespace lamina::io
