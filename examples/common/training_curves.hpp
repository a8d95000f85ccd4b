// The curves of one training run (loss, held-out accuracy, learning rate), written as SVG
// charts with lamina/io/svg_plot.hpp: the synthetic-data examples leave pictures to look at.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include <lamina/io/svg_plot.hpp>

struct training_curves {
    std::vector<double> epoch, train_loss, test_loss, test_accuracy_percent;
    std::vector<double> step, learning_rate;  // every step: shows warm-up and decay

    void add_epoch(double e, double train, double test, double accuracy) {
        epoch.push_back(e);
        train_loss.push_back(train);
        test_loss.push_back(test);
        test_accuracy_percent.push_back(100 * accuracy);
    }
    void add_step(double s, double lr) {
        step.push_back(s);
        learning_rate.push_back(lr);
    }

    /// Writes DIR/loss.svg, DIR/accuracy.svg and DIR/learning_rate.svg (DIR is created).
    void write(const std::string& dir, const std::string& title, double chance_percent) const {
        std::filesystem::create_directories(dir);
        lamina::io::line_chart loss{title + ": loss", "epoch", "cross-entropy"};
        loss.add("training (epoch mean)", epoch, train_loss).add("held-out", epoch, test_loss);
        lamina::io::write_svg(dir + "/loss.svg", loss);
        lamina::io::line_chart acc{title + ": held-out accuracy", "epoch", "accuracy (%)"};
        acc.add("held-out", epoch, test_accuracy_percent)
            .add("chance", epoch, std::vector<double>(epoch.size(), chance_percent));
        lamina::io::write_svg(dir + "/accuracy.svg", acc);
        lamina::io::line_chart lr{title + ": learning rate", "step", "learning rate"};
        lr.add("learning rate", step, learning_rate);
        lamina::io::write_svg(dir + "/learning_rate.svg", lr);
    }
};
