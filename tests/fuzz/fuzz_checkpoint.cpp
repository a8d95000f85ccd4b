// libFuzzer harness for the checkpoint loader (include/lamina/io/checkpoint.hpp).
//
// An input that starts with "LAMINACK" is a whole file: the header fields, sizes and CRC are
// fuzzed. Any other input is a payload (the records) and is wrapped in a valid header and
// CRC-32 here, so that mutations get past the checksum into the record parser and the loaders'
// validation. Every record_set that parses is loaded with load_weights into a small real model
// and with load_checkpoint into an SGD and an AdamW trainer of it.
//
// Expected failures are lamina::error; anything else escaping (std::bad_alloc, a crash, a
// sanitizer report, a leak) is a finding. Checked properties, abort() when broken:
//  * a record_set that parses serialises back to exactly the bytes it was parsed from;
//  * a load that throws leaves the model, optimizer state, seeds and position as they were.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_models.hpp"

namespace {
using namespace lamina_fuzz;
using bytes = std::vector<unsigned char>;

void fail(const char* what) {
    std::fprintf(stderr, "fuzz_checkpoint: property broken: %s\n", what);
    std::abort();
}

bytes wrap(const unsigned char* p, std::size_t n) {
    bytes f = {'L', 'A', 'M', 'I', 'N', 'A', 'C', 'K', 1, 0, 0, 0};
    for (int i = 0; i < 8; ++i) f.push_back(static_cast<unsigned char>(std::uint64_t(n) >> (8 * i)));
    f.insert(f.end(), p, p + n);
    const std::uint32_t crc = lamina::io::crc32(p, n);
    for (int i = 0; i < 4; ++i) f.push_back(static_cast<unsigned char>(crc >> (8 * i)));
    return f;
}

template <class Trainer>
struct snapshot {
    std::vector<float> params;
    std::vector<std::pair<std::string, std::vector<float>>> state;
    std::uint64_t steps, seed, step, shuffle_seed;
    std::size_t epoch;
    explicit snapshot(Trainer& t)
        : params(t.model().get_parameters()),
          state(t.optimizer_state_ref().save(t.model().context())),
          steps(t.optimizer_state_ref().steps()),
          seed(t.model().seed_value()),
          step(t.global_step()),
          shuffle_seed(t.shuffle_seed()),
          epoch(t.epoch()) {}
    bool operator==(const snapshot& o) const {
        // Bitwise: a loaded file may hold NaNs, which compare unequal to themselves.
        auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
            return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
        };
        if (!same(params, o.params) || state.size() != o.state.size()) return false;
        for (std::size_t i = 0; i < state.size(); ++i)
            if (state[i].first != o.state[i].first || !same(state[i].second, o.state[i].second)) return false;
        return steps == o.steps && seed == o.seed && step == o.step && shuffle_seed == o.shuffle_seed && epoch == o.epoch;
    }
};

template <class Trainer>
void try_checkpoint(const lamina::io::record_set& rs, Trainer& t) {
    const snapshot<Trainer> before(t);
    try {
        lamina::load_checkpoint(rs, t, "fuzz.lmck");
    } catch (const lamina::error&) {
        if (!(snapshot<Trainer>(t) == before)) fail("a failed load_checkpoint changed the trainer");
    }
}

struct fixture {
    model net_w{lamina::seed{1}, lamina::threads{1}};
    model net_s{lamina::seed{2}, lamina::threads{1}};
    model net_a{lamina::seed{3}, lamina::threads{1}};
    sgd_trainer sgd{net_s, lamina::loss::softmax_cross_entropy{}, lamina::optim::sgd{0.1, 0.9}};
    adamw_trainer adamw{net_a, lamina::loss::softmax_cross_entropy{}, lamina::optim::adamw{1e-2}};
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static fixture fx;
    const bool whole_file = size >= 8 && std::memcmp(data, lamina::io::checkpoint_magic, 8) == 0;
    const bytes file = whole_file ? bytes(data, data + size) : wrap(data, size);
    lamina::io::record_set rs;
    try {
        rs = lamina::io::record_set::parse(file.data(), file.size(), "fuzz.lmck");
    } catch (const lamina::error&) {
        return 0;
    }
    if (rs.bytes() != file) fail("a parsed record_set does not serialise to the bytes it came from");

    // Every accessor on every record, whatever its type.
    for (const auto& name : rs.names()) {
        try { (void)rs.get<float>(name, "fuzz.lmck"); } catch (const lamina::error&) {}
        try { (void)rs.get<double>(name, "fuzz.lmck"); } catch (const lamina::error&) {}
        try { (void)rs.get_u64(name, "fuzz.lmck"); } catch (const lamina::error&) {}
        try { (void)rs.get_string(name, "fuzz.lmck"); } catch (const lamina::error&) {}
    }

    const std::vector<float> before = fx.net_w.get_parameters();
    try {
        lamina::load_weights(rs, fx.net_w, "fuzz.lmck");
    } catch (const lamina::error&) {
        const std::vector<float> after = fx.net_w.get_parameters();
        if (std::memcmp(after.data(), before.data(), before.size() * sizeof(float)) != 0)
            fail("a failed load_weights changed the model");
    }
    try_checkpoint(rs, fx.sgd);
    try_checkpoint(rs, fx.adamw);
    return 0;
}
