// Checkpoints: round trip, bit-identical resume, clear errors on bad files, and a save that
// fails or is killed midway leaves the previous checkpoint loadable. Hostile files (every
// length field wrong, records of the wrong type or size behind a valid CRC) are built byte by
// byte here, from the format described in include/lamina/io/checkpoint.hpp, not by lamina's
// writer; loads that fail must leave the model and trainer untouched.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <sys/file.h>
#include <sys/wait.h>
#include <fcntl.h>
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
bool exists(const std::string& p) { return ::access(p.c_str(), F_OK) == 0; }

// ---- checkpoint files built byte by byte ------------------------------------------------------
using bytes = std::vector<unsigned char>;
void le32(bytes& b, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
}
void le64(bytes& b, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
}
void write_bytes(const std::string& p, const bytes& b) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
/// "LAMINACK", version 1, the payload's size, the payload, its CRC-32 (lamina's crc32).
bytes file_of(const bytes& payload) {
    bytes f = {'L', 'A', 'M', 'I', 'N', 'A', 'C', 'K'};
    le32(f, 1);
    le64(f, payload.size());
    f.insert(f.end(), payload.begin(), payload.end());
    le32(f, lm::io::crc32(payload.data(), payload.size()));
    return f;
}
/// One record: u32 name length, name, u8 type code, u64 element count, element bytes.
struct rec {
    std::string name;
    unsigned char type;  // 1 f32, 2 f64, 3 u64, 4 bytes
    std::uint64_t count;
    bytes data;
};
rec text_rec(const std::string& name, const std::string& s) { return {name, 4, s.size(), bytes(s.begin(), s.end())}; }
rec u64_rec(const std::string& name, std::uint64_t v) {
    bytes d;
    le64(d, v);
    return {name, 3, 1, d};
}
rec f32_rec(const std::string& name, const std::vector<float>& v) {
    bytes d(v.size() * 4);
    if (!v.empty()) std::memcpy(d.data(), v.data(), d.size());  // little-endian host (x86-64, as the format)
    return {name, 1, v.size(), d};
}
bytes payload_of(const std::vector<rec>& records) {
    bytes p;
    for (const auto& r : records) {
        le32(p, static_cast<std::uint32_t>(r.name.size()));
        p.insert(p.end(), r.name.begin(), r.name.end());
        p.push_back(r.type);
        le64(p, r.count);
        p.insert(p.end(), r.data.begin(), r.data.end());
    }
    return p;
}

template <class F>
std::string checkpoint_message(F&& f) {
    try {
        f();
    } catch (const lm::checkpoint_error& e) {
        return e.what();
    }
    FAIL("no checkpoint_error was thrown");
    return {};
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

// ---- hostile files ----------------------------------------------------------------------------

TEST_CASE("the 31-byte name-length-wrap file is refused, naming the field", "[checkpoint][hostile]") {
    // Issue reproducer 1: a name length of 0xfffffff7 in a 7-byte payload behind a valid CRC;
    // a 32-bit bounds check (nlen + 9) wrapped to 0 and the loader read ~4 GiB.
    const bytes payload = {0xf7, 0xff, 0xff, 0xff, 0xff, 0x37, 0xff};
    const bytes f = file_of(payload);
    REQUIRE(f.size() == 31);
    auto path = temp_path("wrap31.lmck");
    write_bytes(path, f);
    small_net::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    const auto before = net.get_parameters();
    const auto m = checkpoint_message([&] { lm::load_weights(path, net); });
    CHECK_THAT(m, Catch::Contains(path) && Catch::Contains("malformed record #0 at byte 20") &&
                      Catch::Contains("name length field says 4294967287 bytes, only 3 remain"));
    CHECK(net.get_parameters() == before);
    // The same bytes in memory.
    CHECK_THROWS_WITH(lm::io::record_set::parse(f.data(), f.size(), "mem"),
                      Catch::Contains("'mem'") && Catch::Contains("4294967287"));
    std::remove(path.c_str());
}

TEST_CASE("the 23-byte payload-size-wrap file is refused before any CRC", "[checkpoint][hostile]") {
    // Issue reproducer 2: payload size 2^64-1 in a 23-byte file; 20 + size + 4 wrapped to 23.
    bytes f = {'L', 'A', 'M', 'I', 'N', 'A', 'C', 'K'};
    le32(f, 1);
    le64(f, 0xFFFFFFFFFFFFFFFFull);
    f.insert(f.end(), {0, 0, 0});
    REQUIRE(f.size() == 23);
    auto path = temp_path("wrap23.lmck");
    write_bytes(path, f);
    small_net::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    const auto m = checkpoint_message([&] { lm::load_weights(path, net); });
    CHECK_THAT(m, Catch::Contains(path) && Catch::Contains("truncated") && Catch::Contains("23 bytes") &&
                      Catch::Contains("payload size field announces 18446744073709551615"));
    std::remove(path.c_str());
}

TEST_CASE("every length field is checked against the bytes present", "[checkpoint][hostile]") {
    auto parse = [](const bytes& f) { return lm::io::record_set::parse(f.data(), f.size(), "f.lmck"); };
    SECTION("payload sizes that wrap 20 + size + 4 to the file size") {
        for (std::size_t n : {20u, 21u, 22u, 23u}) {
            bytes f = {'L', 'A', 'M', 'I', 'N', 'A', 'C', 'K'};
            le32(f, 1);
            le64(f, 0ull - 24 + n);  // 20 + size + 4 == n modulo 2^64
            f.resize(n, 0);
            CHECK_THROWS_WITH(parse(f), Catch::Contains("truncated") && Catch::Contains("payload size field"));
        }
    }
    SECTION("payload size one too large, huge, one too small (padded)") {
        const bytes good = file_of(payload_of({u64_rec("a", 5)}));
        bytes f = good;
        f[12] = static_cast<unsigned char>(f[12] + 1);
        CHECK_THROWS_WITH(parse(f), Catch::Contains("truncated"));
        f = good;
        f[19] = 0x80;  // 2^63 + size
        CHECK_THROWS_WITH(parse(f), Catch::Contains("truncated"));
        f = good;
        f[12] = static_cast<unsigned char>(f[12] - 1);
        CHECK_THROWS_WITH(parse(f), Catch::Contains("padded") && Catch::Contains("1 unexpected byte"));
        CHECK(parse(good).get_u64("a", "f.lmck") == 5);  // the control parses
    }
    SECTION("a payload too short for a name length") {
        CHECK_THROWS_WITH(parse(file_of({1, 0})), Catch::Contains("name length field needs 4 bytes, only 2 remain"));
    }
    SECTION("a name that leaves no room for type and count") {
        bytes p;
        le32(p, 3);
        p.insert(p.end(), {'a', 'b', 'c', 1, 0, 0});
        CHECK_THROWS_WITH(parse(file_of(p)), Catch::Contains("record 'abc'") &&
                                                 Catch::Contains("need 9 bytes, only 3 remain"));
    }
    SECTION("an element count whose byte size wraps") {
        // 2^61 + 1 doubles: times 8 that is 8 modulo 2^64, and 8 bytes follow.
        rec r{"w", 2, (1ull << 61) + 1, bytes(8, 0)};
        CHECK_THROWS_WITH(parse(file_of(payload_of({r}))),
                          Catch::Contains("record 'w'") && Catch::Contains("2305843009213693953 elements of 8 bytes") &&
                              Catch::Contains("only 8 bytes remain"));
    }
    SECTION("an element count one too large") {
        rec r{"x", 1, 3, bytes(8, 0)};
        CHECK_THROWS_WITH(parse(file_of(payload_of({r}))), Catch::Contains("3 elements of 4 bytes, only 8 bytes"));
    }
    SECTION("an unknown type code") {
        rec r{"t", 9, 0, {}};
        CHECK_THROWS_WITH(parse(file_of(payload_of({r}))), Catch::Contains("record 't' has unknown type code 9"));
    }
    SECTION("a record that appears twice") {
        CHECK_THROWS_WITH(parse(file_of(payload_of({u64_rec("seed", 1), u64_rec("seed", 2)}))),
                          Catch::Contains("malformed record #1 at byte 45") && Catch::Contains("'seed' appears twice"));
    }
    SECTION("a record name with unprintable bytes is shown escaped") {
        bytes p;
        le32(p, 2);
        p.insert(p.end(), {'\n', 0xff, 7, 0, 0, 0, 0, 0, 0, 0, 0});
        CHECK_THROWS_WITH(parse(file_of(p)), Catch::Contains("record '\\x0a\\xff' has unknown type code 7"));
    }
}

namespace {
using adam_trainer = lm::trainer<small_net::model<lm::host>, lm::loss::softmax_cross_entropy, lm::optim::adamw>;

/// Everything a load_checkpoint restores, to compare before and after.
struct trainer_state {
    std::vector<float> params;
    std::vector<std::pair<std::string, std::vector<float>>> opt;
    std::uint64_t steps, seed, step, shuffle_seed;
    std::size_t epoch;
    explicit trainer_state(adam_trainer& t)
        : params(t.model().get_parameters()),
          opt(t.optimizer_state_ref().save(t.model().context())),
          steps(t.optimizer_state_ref().steps()),
          seed(t.model().seed_value()),
          step(t.global_step()),
          shuffle_seed(t.shuffle_seed()),
          epoch(t.epoch()) {}
    bool operator==(const trainer_state& o) const {
        return params == o.params && opt == o.opt && steps == o.steps && seed == o.seed && step == o.step &&
               shuffle_seed == o.shuffle_seed && epoch == o.epoch;
    }
};
}  // namespace

TEST_CASE("a checkpoint with any record wrong changes nothing", "[checkpoint][hostile]") {
    auto data = toy_data(24);
    // The source of the file: trained 1 epoch (3 steps) from seed 7.
    small_net::model<lm::host> src_net{lm::seed{7}, lm::threads{1}};
    adam_trainer src{src_net, lm::loss::softmax_cross_entropy{}, lm::optim::adamw{1e-2}};
    src.run(data, lm::epochs{1}, lm::batch{8});
    // The trainer loaded into: trained 2 epochs (6 steps) from seed 3, so every field differs.
    small_net::model<lm::host> dst_net{lm::seed{3}, lm::threads{1}};
    adam_trainer dst{dst_net, lm::loss::softmax_cross_entropy{}, lm::optim::adamw{1e-2}};
    dst.run(data, lm::epochs{2}, lm::batch{8});
    const trainer_state before(dst), source(src);
    REQUIRE_FALSE(before.params == source.params);
    REQUIRE(before.steps != source.steps);

    const auto st = src.optimizer_state_ref().save(src_net.context());
    REQUIRE(st.size() == 2);
    const std::vector<rec> good = {
        text_rec("architecture", lm::io::architecture_of<small_net::model<lm::host>>()),
        f32_rec("parameters", src_net.get_parameters()),
        text_rec("optimizer", "adamw"),
        u64_rec("optimizer.steps", 3),
        f32_rec("optimizer.m", st[0].second),
        f32_rec("optimizer.v", st[1].second),
        u64_rec("epoch", 1),
        u64_rec("step", 3),
        u64_rec("seed", 7),
        u64_rec("shuffle_seed", src.shuffle_seed()),
    };
    REQUIRE(good[1].count == 36 + 4 + 1024 + 16 + 48 + 3);  // small_net's parameters, counted by hand
    auto path = temp_path("transact.lmck");

    struct mutation {
        std::string what;
        std::vector<rec> records;
        std::string expect;
    };
    std::vector<mutation> cases;
    for (std::size_t i = 0; i < good.size(); ++i) {
        const rec& r = good[i];
        auto with = [&](const rec& replacement) {
            auto v = good;
            v[i] = replacement;
            return v;
        };
        auto without = good;
        without.erase(without.begin() + static_cast<long>(i));
        cases.push_back({"missing " + r.name, without, "has no record '" + r.name + "'"});
        rec wrong_type = r;
        if (r.type == 4) {
            wrong_type = u64_rec(r.name, 1);
        } else if (r.type == 1) {
            wrong_type.type = 2;  // f64, with bytes for count doubles
            wrong_type.data.resize(r.count * 8);
        } else {
            wrong_type.type = 2;  // an f64 scalar
        }
        cases.push_back({"wrong type " + r.name, with(wrong_type), "record '" + r.name + "' has type code"});
        rec wrong_size = r;
        std::string size_msg;
        if (r.name == "architecture") {
            wrong_size = text_rec(r.name, "input[1,8,8] -> flatten, dense<3> | scalar f32 | parameters 195");
            size_msg = "another architecture";
        } else if (r.name == "optimizer") {
            wrong_size = text_rec(r.name, "sgd");
            size_msg = "'sgd'";
        } else if (r.type == 1) {
            wrong_size.count = r.count - 1;
            wrong_size.data.resize(wrong_size.count * 4);
            size_msg = "record '" + r.name + "' holds " + std::to_string(r.count - 1) + " elements, expected " +
                       std::to_string(r.count);
        } else {
            wrong_size.count = 2;
            wrong_size.data.resize(16);
            size_msg = "record '" + r.name + "' holds 2 elements, expected 1 (a scalar)";
        }
        cases.push_back({"wrong size " + r.name, with(wrong_size), size_msg});
    }
    {
        auto extra = good;
        extra.push_back(f32_rec("optimizer.velocity", st[0].second));
        cases.push_back({"an optimizer state adamw does not keep", extra, "'optimizer.velocity'"});
    }
    REQUIRE(cases.size() == 3 * good.size() + 1);

    for (const auto& c : cases) {
        INFO(c.what);
        write_bytes(path, file_of(payload_of(c.records)));
        const auto m = checkpoint_message([&] { lm::load_checkpoint(path, dst); });
        CHECK_THAT(m, Catch::Contains(path) && Catch::Contains(c.expect));
        CHECK(trainer_state(dst) == before);
    }

    // The control: the unmodified file loads, and then everything is the source's.
    write_bytes(path, file_of(payload_of(good)));
    lm::load_checkpoint(path, dst);
    CHECK(trainer_state(dst) == source);
    std::remove(path.c_str());
}

TEST_CASE("load_weights and load_checkpoint take an in-memory record_set", "[checkpoint]") {
    small_net::model<lm::host> a{lm::seed{1}, lm::threads{1}};
    small_net::model<lm::host> b{lm::seed{2}, lm::threads{1}};
    lm::io::record_set rs;
    rs.put_string("architecture", lm::io::architecture_of<small_net::model<lm::host>>());
    rs.put("parameters", a.get_parameters());
    const bytes f = rs.bytes();
    lm::load_weights(lm::io::record_set::parse(f.data(), f.size(), "memory"), b, "memory");
    CHECK(b.get_parameters() == a.get_parameters());
    const auto pa = a.get_parameters();
    rs.put<double>("parameters", std::vector<double>(pa.begin(), pa.end()));
    CHECK_THROWS_WITH(lm::load_weights(rs, b, "memory"), Catch::Contains("'memory'") &&
                                                             Catch::Contains("record 'parameters' has type code 2"));
}

// ---- non-finite models ------------------------------------------------------------------------

TEST_CASE("a model holding NaN or infinity is never saved", "[checkpoint][nonfinite]") {
    small_net::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    REQUIRE(small_net::model<lm::host>::parameter_count == 1131);
    auto path = temp_path("nonfinite.lmck");
    lm::save_weights(path, net);
    const auto before = read_all(path);
    // Flat layout by hand: conv weight 0..35, conv bias 36..39, dense<16> weight 40..1063,
    // dense<16> bias 1064..1079, dense<3> weight 1080..1127, dense<3> bias 1128..1130.
    auto p = net.get_parameters();
    p[1100] = std::numeric_limits<float>::infinity();
    p[1070] = std::numeric_limits<float>::quiet_NaN();  // the first bad segment
    net.set_parameters(p);

    SECTION("save_weights") {
        CHECK_THROWS_AS(lm::save_weights(path, net), lm::numeric_error);
        CHECK_THROWS_WITH(lm::save_weights(path, net), Catch::Contains(path) && Catch::Contains("'5:dense<16>.bias'") &&
                                                           Catch::Contains("NaN at element 6 of 16"));
        CHECK(read_all(path) == before);
        auto fresh = temp_path("nonfinite_new.lmck");
        CHECK_THROWS_AS(lm::save_weights(fresh, net), lm::numeric_error);
        CHECK_FALSE(exists(fresh));
    }
    SECTION("save_checkpoint") {
        lm::trainer t{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1, 0.9}};
        p[1070] = 1.0f;  // finite again: the +inf in dense<3>.weight is now the first
        net.set_parameters(p);
        CHECK_THROWS_AS(lm::save_checkpoint(path, t), lm::numeric_error);
        CHECK_THROWS_WITH(lm::save_checkpoint(path, t),
                          Catch::Contains("'7:dense<3>.weight'") && Catch::Contains("+inf at element 20 of 48"));
        CHECK(read_all(path) == before);
    }
    std::remove(path.c_str());
}

TEST_CASE("checkpoint_every skips a non-finite model with one line on stderr", "[checkpoint][nonfinite]") {
    auto data = toy_data(16);
    small_net::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    lm::trainer t{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1, 0.9}};
    const std::string prefix = temp_path("every");
    lm::checkpoint_every cb{prefix, 1};
    t.run(data, lm::epochs{1}, lm::batch{8}, cb);
    REQUIRE(exists(cb.path()));
    const auto good = read_all(cb.path());
    auto p = net.get_parameters();
    p[37] = -std::numeric_limits<float>::infinity();  // conv bias, element 1
    net.set_parameters(p);

    std::ostringstream captured;
    auto* old = std::cerr.rdbuf(captured.rdbuf());
    cb.on_epoch_end(t, lm::step_info{});
    std::cerr.rdbuf(old);
    const std::string line = captured.str();
    CHECK_THAT(line, Catch::Contains("checkpoint_every") && Catch::Contains("after epoch 1") &&
                         Catch::Contains("'0:conv2d<4,3x3,p1>.bias'") &&
                         Catch::Contains("-inf at element 1 of 4") && Catch::Contains(cb.path()));
    CHECK(std::count(line.begin(), line.end(), '\n') == 1);
    CHECK(read_all(cb.path()) == good);
    // With the model finite again the next save goes through.
    p[37] = 0.5f;
    net.set_parameters(p);
    cb.on_epoch_end(t, lm::step_info{});
    CHECK_FALSE(read_all(cb.path()) == good);
    std::remove(cb.path().c_str());
}

// ---- stale temporary files ----------------------------------------------------------------------

TEST_CASE("a successful save removes the temporary files of dead savers of the same path", "[checkpoint][tmp]") {
    small_net::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    auto path = temp_path("stale.lmck");
    // A pid that is certainly gone: a child that exited and was reaped.
    pid_t dead = ::fork();
    REQUIRE(dead >= 0);
    if (dead == 0) ::_exit(0);
    int status = 0;
    REQUIRE(::waitpid(dead, &status, 0) == dead);
    REQUIRE(::kill(dead, 0) != 0);
    const std::string d = std::to_string(dead);
    auto touch = [](const std::string& p) { std::ofstream(p) << "partial"; };

    const std::string stale = path + ".tmp-" + d;
    const std::vector<std::string> kept = {
        path + ".tmp-" + std::to_string(::getpid()),   // this process: alive (saves from a child below)
        path + ".tmp-" + std::to_string(::getppid()),  // our parent: alive
        path + ".tmp-0" + d,                           // not as lamina writes a pid
        path + ".tmp-" + d + "x",                      // not only digits
        path + ".tmp-" + d + ".bak",
        path + ".tmp-99999999999999999999",            // more than any pid (and than 64 bits)
        path + ".tmp-",
        path + ".tmp" + d,
        path + "x.tmp-" + d,                           // another path's
        temp_path("other.lmck.tmp-" + d),
    };
    touch(stale);
    for (const auto& k : kept) touch(k);

    // Save from a child, so that the parent's own pid is another live process's.
    pid_t saver = ::fork();
    REQUIRE(saver >= 0);
    if (saver == 0) {
        try {
            lm::save_weights(path, net);
        } catch (...) {
            ::_exit(1);
        }
        ::_exit(0);
    }
    REQUIRE(::waitpid(saver, &status, 0) == saver);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    CHECK(exists(path));
    CHECK_FALSE(exists(stale));
    for (const auto& k : kept) {
        INFO(k);
        CHECK(exists(k));
    }
    CHECK_FALSE(exists(path + ".tmp-" + std::to_string(saver)));  // the saver's own, renamed

    SECTION("a locked file of a dead pid is kept") {
        touch(stale);
        int fd = ::open(stale.c_str(), O_RDWR);
        REQUIRE(fd >= 0);
        REQUIRE(::flock(fd, LOCK_EX) == 0);
        lm::save_weights(path, net);
        CHECK(exists(stale));
        ::close(fd);
        lm::save_weights(path, net);  // unlocked now: removed
        CHECK_FALSE(exists(stale));
    }
    SECTION("the leftover of a save killed midway goes with the next save") {
        pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            lm::io::detail::write_fault_hook() = [](std::size_t) { ::raise(SIGKILL); };
            lm::save_weights(path, net);
            ::_exit(0);  // not reached
        }
        REQUIRE(::waitpid(child, &status, 0) == child);
        REQUIRE(WIFSIGNALED(status));
        const std::string left = path + ".tmp-" + std::to_string(child);
        REQUIRE(exists(left));
        lm::save_weights(path, net);
        CHECK_FALSE(exists(left));
    }
    for (const auto& k : kept) std::remove(k.c_str());
    std::remove(stale.c_str());
    std::remove(path.c_str());
}

namespace {
using bn_net = lm::sequential<lm::input<1, 8, 8>, lm::conv2d<4, 3, 1, 1>, lm::batch_norm, lm::relu,
                              lm::residual<lm::sequential<lm::conv2d<4, 3, 1, 1>, lm::batch_norm>>, lm::relu,
                              lm::global_avg_pool, lm::dense<3>>;
}  // namespace

TEST_CASE("batch norm running statistics are saved, restored and resumed bit-identically", "[checkpoint][batch_norm]") {
    auto data = toy_data(50);
    auto path = temp_path("bn.lmck");
    bn_net::model<lm::host> full{lm::seed{4}, lm::threads{2}};
    lm::trainer t_full{full, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05, 0.9}};
    t_full.run(data, lm::epochs{3}, lm::batch{8});
    REQUIRE(full.state_count == 16);  // two batch norms of 4 channels: mean and variance

    bn_net::model<lm::host> first{lm::seed{4}, lm::threads{2}};
    lm::trainer t1{first, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05, 0.9}};
    t1.run(data, lm::epochs{1}, lm::batch{8}, lm::checkpoint_every{temp_path("bn"), 1});
    bn_net::model<lm::host> second{lm::seed{77}, lm::threads{2}};
    lm::trainer t2{second, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05, 0.9}};
    lm::load_checkpoint(path, t2);
    CHECK(second.get_state() == first.get_state());
    t2.run(data, lm::epochs{2}, lm::batch{8});
    CHECK(second.get_parameters() == full.get_parameters());
    CHECK(second.get_state() == full.get_state());

    // weights files carry the running statistics too: inference (which uses them) matches
    lm::save_weights(path, full);
    bn_net::model<lm::host> loaded{lm::seed{9}, lm::threads{2}};
    lm::load_weights(path, loaded);
    std::vector<float> x(3 * 64), ya(9), yb(9);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(i % 5) / 5.0f;
    full.predict(x.data(), ya.data(), 3);
    loaded.predict(x.data(), yb.data(), 3);
    CHECK(ya == yb);

    // a state record of the wrong size is refused before anything changes
    auto rs = lm::io::record_set::load(path);
    rs.put("state", std::vector<float>(15, 1.0f));
    rs.save(path);
    auto before = loaded.get_state();
    CHECK_THROWS_WITH(lm::load_weights(path, loaded), Catch::Contains("'state'") && Catch::Contains("16"));
    CHECK(loaded.get_state() == before);
    std::remove(path.c_str());
}
