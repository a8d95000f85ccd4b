// Checkpoints: round trip, bit-identical resume, clear errors on bad files, and a save that
// fails or is killed midway leaves the previous checkpoint loadable.
#include <catch2/catch.hpp>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include <lamina/lamina.hpp>

namespace lm = lamina;

namespace {
using small_net = lm::sequential<lm::input<1, 8, 8>, lm::conv2d<4, 3, 1, 1>, lm::relu, lm::max_pool<2>, lm::flatten,
                                 lm::dropout_p<25>, lm::dense<16>, lm::gelu, lm::dense<3>>;
using other_net = lm::sequential<lm::input<1, 8, 8>, lm::flatten, lm::dense<3>>;
// Big enough (about 1.6 MB) that saving takes several write chunks.
using big_net = lm::sequential<lm::input<784>, lm::dense<512>, lm::relu, lm::dense<10>>;

std::string temp_path(const std::string& name) {
    return "/tmp/lamina_test_" + std::to_string(::getpid()) + "_" + name;
}

lm::dataset<float> toy_data(std::size_t n) {
    lm::dataset<float> d(n, 64, 1);
    lm::random_stream r{99, 0};
    for (std::size_t i = 0; i < n; ++i) {
        std::size_t label = i % 3;
        *d.target(i) = float(label);
        for (std::size_t k = 0; k < 64; ++k) d.sample(i)[k] = r.uniform(i * 64 + k) + (k / 22 == label ? 1.0f : 0.0f);
    }
    return d;
}

std::vector<char> read_all(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
void write_all(const std::string& p, const std::vector<char>& b) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(b.data(), static_cast<std::streamsize>(b.size()));
}
}  // namespace

TEST_CASE("weights round trip gives identical predictions", "[checkpoint]") {
    small_net::model<lm::host> a{lm::seed{1}, lm::threads{1}};
    small_net::model<lm::host> b{lm::seed{2}, lm::threads{1}};
    auto path = temp_path("weights.lmck");
    lm::save_weights(path, a);
    lm::load_weights(path, b);
    std::vector<float> x(3 * 64), ya(9), yb(9);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(i % 7) / 7.0f;
    a.predict(x.data(), ya.data(), 3);
    b.predict(x.data(), yb.data(), 3);
    CHECK(ya == yb);
    std::remove(path.c_str());
}

TEST_CASE("a resumed run continues bit-identically", "[checkpoint]") {
    auto data = toy_data(50);  // 50 / 8 -> 7 steps per epoch, the last one short
    auto path = temp_path("resume.lmck");
    // Uninterrupted: 3 epochs.
    small_net::model<lm::host> full{lm::seed{4}, lm::threads{2}};
    lm::trainer t_full{full, lm::loss::softmax_cross_entropy{0.1}, lm::optim::adamw{1e-2}};
    t_full.run(data, lm::epochs{3}, lm::batch{8});

    SECTION("resume at an epoch boundary") {
        small_net::model<lm::host> first{lm::seed{4}, lm::threads{2}};
        lm::trainer t1{first, lm::loss::softmax_cross_entropy{0.1}, lm::optim::adamw{1e-2}};
        t1.run(data, lm::epochs{1}, lm::batch{8}, lm::checkpoint_every{temp_path("resume"), 1});
        small_net::model<lm::host> second{lm::seed{123}, lm::threads{2}};  // other seed: all state must come from the file
        lm::trainer t2{second, lm::loss::softmax_cross_entropy{0.1}, lm::optim::adamw{1e-2}};
        lm::load_checkpoint(path, t2);
        CHECK(t2.epoch() == 1);
        CHECK(t2.global_step() == 7);
        t2.run(data, lm::epochs{2}, lm::batch{8});
        CHECK(second.get_parameters() == full.get_parameters());
    }
    SECTION("resume in the middle of an epoch") {
        small_net::model<lm::host> first{lm::seed{4}, lm::threads{2}};
        lm::trainer t1{first, lm::loss::softmax_cross_entropy{0.1}, lm::optim::adamw{1e-2}};
        struct save_at {
            std::string path;
            std::uint64_t at;
            void on_step_end(decltype(t1)& t, const lm::step_info& i) {
                if (i.global_step == at) lm::save_checkpoint(path, t);
            }
        };
        t1.run(data, lm::epochs{2}, lm::batch{8}, save_at{path, 10});
        small_net::model<lm::host> second{lm::seed{9}, lm::threads{2}};
        lm::trainer t2{second, lm::loss::softmax_cross_entropy{0.1}, lm::optim::adamw{1e-2}};
        lm::load_checkpoint(path, t2);
        CHECK(t2.global_step() == 10);
        t2.run(data, lm::epochs{2}, lm::batch{8});  // finishes epoch 2 (index 1), then epoch 3
        CHECK(t2.global_step() == 21);
        CHECK(second.get_parameters() == full.get_parameters());
    }
    std::remove(path.c_str());
}

TEST_CASE("bad checkpoint files give clear errors", "[checkpoint]") {
    small_net::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    auto path = temp_path("bad.lmck");
    lm::save_weights(path, net);
    auto good = read_all(path);

    SECTION("another architecture") {
        other_net::model<lm::host> other{lm::seed{1}, lm::threads{1}};
        CHECK_THROWS_AS(lm::load_weights(path, other), lm::checkpoint_error);
        CHECK_THROWS_WITH(lm::load_weights(path, other), Catch::Contains("another architecture"));
    }
    SECTION("truncated") {
        write_all(path, std::vector<char>(good.begin(), good.begin() + static_cast<long>(good.size() / 2)));
        CHECK_THROWS_WITH(lm::load_weights(path, net), Catch::Contains("truncated"));
    }
    SECTION("a flipped byte") {
        auto bad = good;
        bad[bad.size() / 2] = static_cast<char>(bad[bad.size() / 2] ^ 0x10);
        write_all(path, bad);
        CHECK_THROWS_WITH(lm::load_weights(path, net), Catch::Contains("corrupt") && Catch::Contains("CRC"));
    }
    SECTION("not a checkpoint") {
        write_all(path, std::vector<char>(100, 'x'));
        CHECK_THROWS_WITH(lm::load_weights(path, net), Catch::Contains("not a lamina checkpoint"));
    }
    SECTION("a newer format version") {
        auto bad = good;
        bad[8] = 2;
        write_all(path, bad);
        CHECK_THROWS_WITH(lm::load_weights(path, net), Catch::Contains("format version 2"));
    }
    SECTION("missing file") {
        CHECK_THROWS_AS(lm::load_weights(temp_path("nope.lmck"), net), lm::io_error);
    }
    SECTION("optimizer mismatch") {
        lm::trainer t{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1, 0.9}};
        lm::save_checkpoint(path, t);
        lm::trainer t2{net, lm::loss::softmax_cross_entropy{}, lm::optim::adam{}};
        CHECK_THROWS_WITH(lm::load_checkpoint(path, t2), Catch::Contains("'sgd'") && Catch::Contains("'adam'"));
    }
    std::remove(path.c_str());
}

TEST_CASE("a failed save never destroys the previous checkpoint", "[checkpoint]") {
    big_net::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    big_net::model<lm::host> other{lm::seed{2}, lm::threads{1}};
    auto path = temp_path("atomic.lmck");
    lm::save_weights(path, net);
    auto before = read_all(path);

    SECTION("an injected write failure") {
        lm::io::detail::write_fault_hook() = [](std::size_t done) {
            if (done > 0) throw lm::io_error("injected write failure");
        };
        CHECK_THROWS_WITH(lm::save_weights(path, other), Catch::Contains("injected"));
        lm::io::detail::write_fault_hook() = nullptr;
        CHECK(read_all(path) == before);
        CHECK_FALSE(std::ifstream(path + ".tmp-" + std::to_string(::getpid())).good());
    }
    SECTION("a process killed midway") {
        pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            lm::io::detail::write_fault_hook() = [](std::size_t done) {
                if (done > 0) ::raise(SIGKILL);
            };
            lm::save_weights(path, other);
            ::_exit(0);  // not reached
        }
        int status = 0;
        ::waitpid(child, &status, 0);
        CHECK(WIFSIGNALED(status));
        CHECK(WTERMSIG(status) == SIGKILL);
        CHECK(read_all(path) == before);
        big_net::model<lm::host> loaded{lm::seed{3}, lm::threads{1}};
        lm::load_weights(path, loaded);
        CHECK(loaded.get_parameters() == net.get_parameters());
        std::remove((path + ".tmp-" + std::to_string(child)).c_str());
    }
    std::remove(path.c_str());
}
