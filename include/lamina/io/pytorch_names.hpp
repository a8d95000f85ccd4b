// lamina: PyTorch state_dicts into lamina models. PyTorch names tensors by module
// ("layer1.0.conv1.weight"); lamina by the node's place in the nested lists and the layer
// ("3.0.0.0.0:conv2d<16,3x3,p1>.weight", see network/model.hpp's parameter_segments()).
// A pytorch_names says which PyTorch name each lamina tensor takes:
//
//   pytorch_names::cifar_resnet(20)          conv1, bn1, layer1.0.conv1, layer1.0.bn1, ...,
//                                            linear (or fc): the common PyTorch CIFAR ResNet
//                                            (He et al.'s option A; projection: layerN.0.shortcut.0/1)
//   pytorch_names::torchvision_resnet50()    torchvision's resnet50: conv1, bn1, layer1.0.conv1, ...,
//                                            layer4.2.downsample.0/1, fc
//   pytorch_names::modules({...})            your own list: one PyTorch module per lamina layer that
//                                            has tensors, in lamina's execution order (the order of
//                                            net.summary()); "a|b" takes whichever the file has; ""
//                                            leaves that layer as it is
//   pytorch_names::custom(f)                 f(const lamina_tensor_ref&) -> full PyTorch name, from
//                                            the segment name or any field of the ref ("": keep)
//
// Within a module, lamina's tensor names become PyTorch's: weight and bias stay, batch norm's
// gamma and beta become weight and bias, running_mean and running_var stay; num_batches_tracked
// is skipped. Layouts are already PyTorch's (conv [K][C][R][S], dense [out][in]).
//
//   auto sd = lamina::io::read_safetensors("resnet20.safetensors").map();
//   lamina::io::load_pytorch_state_dict(net, sd, lamina::io::pytorch_names::cifar_resnet(20));
//
// load_pytorch_state_dict fills the parameters AND the running state (batch norm statistics),
// checking every tensor's presence, dtype (floating point) and shape (conv2d, conv_transpose2d
// and dense weights and vectors by their full PyTorch shape, other layers' tensors by length) first, and that every tensor of the map was
// used; it reports every problem at once (format_error: which name is missing, which has the
// wrong shape or dtype, which were left unused) and changes nothing unless all is well.
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../network/parameter_segment.hpp"
#include "named_tensor.hpp"
#include "safetensors.hpp"

namespace lamina::io {

/// One tensor of a lamina model, as a name map sees it.
struct lamina_tensor_ref {
    std::string segment;       // "3.0.0.0.0:conv2d<16,3x3,p1>.weight" (parameter_segments() or state_segments())
    std::string path;          // "3.0.0.0.0": the node's place in the nested lists
    std::string layer;         // "conv2d<16,3x3,p1>"
    std::string tensor;        // lamina's name: weight, bias, gamma, beta, running_mean, running_var, ...
    std::string torch_tensor;  // PyTorch's name of it: weight, bias, weight, bias, running_mean, running_var
    std::size_t module = 0;    // the layer's place among the layers with tensors (by path), in execution order
    bool running_state = false;
    std::size_t offset = 0;  // in the model's flat parameter (or state) buffer
    std::size_t count = 0;
    std::vector<std::size_t> shape;  // the PyTorch shape expected; [count] when only the length is known
    bool full_shape = false;         // shape is the full PyTorch shape (conv and dense weights, vectors)
};

/// PyTorch's name of a lamina tensor within its module.
inline std::string pytorch_tensor_name(const std::string& lamina_tensor) {
    if (lamina_tensor == "gamma") return "weight";
    if (lamina_tensor == "beta") return "bias";
    return lamina_tensor;
}

/// Which PyTorch name each lamina tensor takes (see the top of this file).
class pytorch_names {
public:
    using function = std::function<std::string(const lamina_tensor_ref&)>;

    /// One PyTorch module per lamina layer with tensors, in execution order; "a|b": the first
    /// alternative the map holds; "": keep that layer's values.
    static pytorch_names modules(std::vector<std::string> names, std::string description = "modules list") {
        pytorch_names p;
        p.modules_ = std::move(names);
        p.is_list_ = true;
        p.description_ = std::move(description);
        return p;
    }
    /// Any rule: f returns the full PyTorch name ("" keeps the tensor's value).
    static pytorch_names custom(function f, std::string description = "custom names") {
        if (!f) throw argument_error("lamina: pytorch_names::custom needs a function");
        pytorch_names p;
        p.f_ = std::move(f);
        p.description_ = std::move(description);
        return p;
    }
    /// The common PyTorch CIFAR ResNet (conv1, bn1, layerS.B.conv1/bn1/conv2/bn2, linear or
    /// fc) for models::cifar_resnet<Depth>; with projection shortcuts (option B) the first
    /// block of stages 2 and 3 has layerS.0.shortcut.0 (conv) and .1 (batch norm).
    static pytorch_names cifar_resnet(std::size_t depth, bool projection_shortcuts = false,
                                      std::string classifier = "linear|fc") {
        if (depth < 8 || (depth - 2) % 6 != 0)
            throw argument_error("lamina: pytorch_names::cifar_resnet: depth must be 6n + 2 (20, 32, 44, 56, 110), got " +
                                 std::to_string(depth));
        const std::size_t n = (depth - 2) / 6;
        std::vector<std::string> m = {"conv1", "bn1"};
        for (std::size_t s = 1; s <= 3; ++s)
            for (std::size_t b = 0; b < n; ++b) {
                const std::string blk = "layer" + std::to_string(s) + "." + std::to_string(b) + ".";
                for (const char* x : {"conv1", "bn1", "conv2", "bn2"}) m.push_back(blk + x);
                if (projection_shortcuts && b == 0 && s > 1) {
                    m.push_back(blk + "shortcut.0");
                    m.push_back(blk + "shortcut.1");
                }
            }
        m.push_back(std::move(classifier));
        return modules(std::move(m), "cifar_resnet(" + std::to_string(depth) + (projection_shortcuts ? ", projection)" : ")"));
    }
    /// torchvision's ResNets: `blocks` per stage ({3, 4, 6, 3} for ResNet-50), bottleneck or
    /// basic blocks; downsample.0 (conv) and .1 (batch norm) where the shape changes.
    static pytorch_names torchvision_resnet(const std::vector<std::size_t>& blocks, bool bottleneck,
                                            std::string classifier = "fc") {
        std::vector<std::string> m = {"conv1", "bn1"};
        for (std::size_t s = 1; s <= blocks.size(); ++s)
            for (std::size_t b = 0; b < blocks[s - 1]; ++b) {
                const std::string blk = "layer" + std::to_string(s) + "." + std::to_string(b) + ".";
                for (const char* x : {"conv1", "bn1", "conv2", "bn2"}) m.push_back(blk + x);
                if (bottleneck) {
                    m.push_back(blk + "conv3");
                    m.push_back(blk + "bn3");
                }
                if (b == 0 && (s > 1 || bottleneck)) {
                    m.push_back(blk + "downsample.0");
                    m.push_back(blk + "downsample.1");
                }
            }
        m.push_back(std::move(classifier));
        return modules(std::move(m), "torchvision_resnet");
    }
    /// torchvision.models.resnet50 for models::resnet50.
    static pytorch_names torchvision_resnet50() {
        pytorch_names p = torchvision_resnet({3, 4, 6, 3}, true);
        p.description_ = "torchvision_resnet50";
        return p;
    }

    /// The same names with `p` in front ("module." for a state_dict saved from DataParallel).
    pytorch_names prefixed(std::string p) const {
        pytorch_names q = *this;
        q.prefix_ = p + q.prefix_;
        q.description_ += " with prefix '" + p + "'";
        return q;
    }

    bool is_module_list() const noexcept { return is_list_; }
    const std::vector<std::string>& module_list() const noexcept { return modules_; }
    const std::string& description() const noexcept { return description_; }

    /// The PyTorch names `t` may take, in order of preference; empty: keep its value.
    std::vector<std::string> candidates(const lamina_tensor_ref& t) const {
        std::vector<std::string> c;
        if (!is_list_) {
            std::string n = f_(t);
            if (!n.empty()) c.push_back(prefix_ + n);
            return c;
        }
        if (t.module >= modules_.size()) return c;
        const std::string& m = modules_[t.module];
        if (m.empty()) return c;
        std::size_t from = 0;
        for (;;) {
            const std::size_t bar = m.find('|', from);
            const std::string alt = m.substr(from, bar == std::string::npos ? std::string::npos : bar - from);
            if (!alt.empty()) c.push_back(prefix_ + alt + "." + t.torch_tensor);
            if (bar == std::string::npos) break;
            from = bar + 1;
        }
        return c;
    }

private:
    std::vector<std::string> modules_;
    function f_;
    bool is_list_ = false;
    std::string prefix_, description_;
};

/// Options of load_pytorch_state_dict.
struct pytorch_load_options {
    /// Tensors of the map that no lamina tensor takes are an error unless this is true.
    bool allow_unused = false;
    /// Names of the map to leave aside (neither loaded nor reported unused), e.g. a file's
    /// extra tensors; num_batches_tracked buffers are always left aside.
    std::function<bool(const std::string&)> ignore;
};

/// What load_pytorch_state_dict did.
struct pytorch_load_report {
    std::vector<std::pair<std::string, std::string>> loaded;  // lamina segment, PyTorch name
    std::vector<std::string> kept;                            // lamina segments the names left as they were
    std::vector<std::string> skipped;                         // num_batches_tracked and ignored names
    std::vector<std::string> unused;                          // with allow_unused: names nothing took
};

namespace detail {

inline bool is_num_batches_tracked(const std::string& name) {
    static const std::string s = "num_batches_tracked";
    return name == s || (name.size() > s.size() && name.compare(name.size() - s.size() - 1, s.size() + 1, "." + s) == 0);
}

/// Reads the decimal number at s[i..], moving i past it; false when there is none.
inline bool read_count(const std::string& s, std::size_t& i, std::size_t& v) {
    const std::size_t start = i;
    v = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        if (!checked_mul(v, 10, v) || v > std::numeric_limits<std::size_t>::max() - std::size_t(s[i] - '0')) return false;
        v += std::size_t(s[i++] - '0');
    }
    return i > start;
}

/// The PyTorch shape of a lamina tensor, from its layer's name: conv2d<F,KxK...> weights are
/// [F, C / groups, K, K], conv_transpose2d<F,KxK...> weights [C, F, K, K], dense<N> weights
/// [N, in]; biases, gammas, betas and running statistics are vectors. For other layers only
/// the length is known ([count], full_shape false).
inline void expected_shape(lamina_tensor_ref& r) {
    r.shape = {r.count};
    r.full_shape = false;
    const std::string& l = r.layer;
    auto starts = [&](const char* p) { return l.rfind(p, 0) == 0; };
    if (r.tensor == "weight" && (starts("conv2d<") || starts("conv_transpose2d<"))) {
        const bool transposed = starts("conv_transpose2d<");
        std::size_t i = l.find('<') + 1, f = 0, k = 0, k2 = 0, fkk = 0;
        if (!read_count(l, i, f) || i >= l.size() || l[i++] != ',' || !read_count(l, i, k) || i >= l.size() ||
            l[i++] != 'x' || !read_count(l, i, k2) || k != k2 || !checked_mul(k, k, k2) || !checked_mul(f, k2, fkk) ||
            fkk == 0 || r.count % fkk != 0)
            return;
        const std::size_t c = r.count / fkk;
        r.shape = transposed ? std::vector<std::size_t>{c, f, k, k} : std::vector<std::size_t>{f, c, k, k};
        r.full_shape = true;
    } else if (r.tensor == "weight" && starts("dense<")) {
        std::size_t i = 6, n = 0;
        if (!read_count(l, i, n) || n == 0 || r.count % n != 0) return;
        r.shape = {n, r.count / n};
        r.full_shape = true;
    } else if (r.tensor == "bias" || r.tensor == "gamma" || r.tensor == "beta" || r.tensor == "running_mean" ||
               r.tensor == "running_var") {
        r.full_shape = true;
    }
}

}  // namespace detail

namespace detail {
/// A layer's key: its path in the nested lists ("3.0.0.0.1"), else its leaf index.
inline std::string module_key(const parameter_segment& s) {
    const std::size_t colon = s.name.find(':');
    return colon != std::string::npos && colon > 0 ? s.name.substr(0, colon) : "#" + std::to_string(s.layer);
}
/// The model's layers with tensors, in execution order (by leaf, then by listing order).
template <class Model>
std::vector<std::string> module_keys(const Model& net) {
    std::map<std::string, std::pair<std::size_t, std::size_t>> first;  // key -> (leaf, listing index)
    std::size_t seq = 0;
    for (const auto* segs : {&net.parameter_segments(), &net.state_segments()})
        for (const auto& s : *segs) {
            const std::pair<std::size_t, std::size_t> at{s.layer, seq++};
            auto [it, fresh] = first.emplace(module_key(s), at);
            if (!fresh && at < it->second) it->second = at;
        }
    std::vector<std::pair<std::pair<std::size_t, std::size_t>, std::string>> order;
    for (const auto& [k, at] : first) order.emplace_back(at, k);
    std::sort(order.begin(), order.end());
    std::vector<std::string> keys;
    for (auto& o : order) keys.push_back(std::move(o.second));
    return keys;
}
}  // namespace detail

/// Every parameter and running-state tensor of `net`, in execution order, as name maps see
/// them (for writing a map: print segment, module and shape).
template <class Model>
std::vector<lamina_tensor_ref> lamina_tensors(const Model& net) {
    const std::vector<std::string> keys = detail::module_keys(net);
    std::map<std::string, std::size_t> ordinal;
    for (std::size_t i = 0; i < keys.size(); ++i) ordinal[keys[i]] = i;
    std::vector<lamina_tensor_ref> out;
    auto add = [&](const parameter_segment& s, bool state) {
        lamina_tensor_ref r;
        r.segment = s.name;
        const std::size_t colon = s.name.find(':'), dot = s.name.rfind('.');
        if (colon != std::string::npos && dot != std::string::npos && dot > colon) {
            r.path = s.name.substr(0, colon);
            r.layer = s.name.substr(colon + 1, dot - colon - 1);
            r.tensor = s.name.substr(dot + 1);
        } else {
            r.tensor = s.name;
        }
        r.torch_tensor = pytorch_tensor_name(r.tensor);
        r.module = ordinal.at(detail::module_key(s));
        r.running_state = state;
        r.offset = s.offset;
        r.count = s.count;
        detail::expected_shape(r);
        out.push_back(std::move(r));
    };
    for (const auto& s : net.parameter_segments()) add(s, false);
    for (const auto& s : net.state_segments()) add(s, true);
    std::stable_sort(out.begin(), out.end(), [](const lamina_tensor_ref& a, const lamina_tensor_ref& b) {
        return a.module < b.module;
    });
    return out;
}

/// The number of lamina layers with tensors (what a modules list must match).
template <class Model>
std::size_t lamina_module_count(const Model& net) {
    return detail::module_keys(net).size();
}

/// A table of the mapping: lamina segment, PyTorch name(s), expected shape.
template <class Model>
std::string describe_pytorch_mapping(const Model& net, const pytorch_names& names) {
    std::string out;
    for (const auto& r : lamina_tensors(net)) {
        const auto c = names.candidates(r);
        std::string n;
        for (std::size_t i = 0; i < c.size(); ++i) n += (i ? " | " : "") + c[i];
        out += r.segment + "  ->  " + (n.empty() ? std::string("(kept)") : n) + "  " +
               detail::shape_string(r.shape) + (r.full_shape ? "" : " elements") + "\n";
    }
    return out;
}

/// Fills `net`'s parameters and running state from the PyTorch tensors `sd` named by `names`.
/// Checks everything first (presence, floating-point dtype, shape, unused names, a modules
/// list as long as the model's layers with tensors) and throws one format_error listing every
/// problem, leaving the model unchanged; `source` names the file in messages.
template <class Model>
pytorch_load_report load_pytorch_state_dict(Model& net, const tensor_map& sd, const pytorch_names& names,
                                            const pytorch_load_options& opt = {},
                                            const std::string& source = "state_dict") {
    using T = typename Model::value_type;
    const std::vector<lamina_tensor_ref> refs = lamina_tensors(net);
    std::vector<std::string> problems;
    pytorch_load_report report;

    if (names.is_module_list()) {
        const std::size_t layers = lamina_module_count(net);
        if (names.module_list().size() != layers)
            problems.push_back("the names (" + names.description() + ") list " + std::to_string(names.module_list().size()) +
                               " modules, the model has " + std::to_string(layers) +
                               " layers with tensors (see describe_pytorch_mapping)");
    }
    std::map<std::string, std::string> taken;  // PyTorch name -> lamina segment
    std::vector<std::pair<const lamina_tensor_ref*, const named_tensor*>> plan;
    for (const auto& r : refs) {
        const std::vector<std::string> c = names.candidates(r);
        if (c.empty()) {
            report.kept.push_back(r.segment);
            continue;
        }
        const named_tensor* t = nullptr;
        std::string chosen;
        for (const auto& n : c) {
            auto it = sd.find(n);
            if (it != sd.end()) {
                t = &it->second;
                chosen = n;
                break;
            }
        }
        const std::string lam = "lamina's " + r.segment;
        if (!t) {
            std::string alts;
            for (std::size_t i = 1; i < c.size(); ++i) alts += (i > 1 ? ", " : " (nor ") + detail::quoted(c[i]);
            if (!alts.empty()) alts += ")";
            problems.push_back("missing " + detail::quoted(c[0]) + alts + " for " + lam + ", shape " +
                               detail::shape_string(r.shape) + (r.full_shape ? "" : " elements"));
            continue;
        }
        auto [it, fresh] = taken.emplace(chosen, r.segment);
        if (!fresh) {
            problems.push_back(detail::quoted(chosen) + " is named for two lamina tensors: " + it->second + " and " + r.segment);
            continue;
        }
        if (!is_floating_point(t->dtype)) {
            problems.push_back(detail::quoted(chosen) + " has dtype " + to_string(t->dtype) + ", " + lam +
                               " needs a floating-point tensor (F16, BF16, F32 or F64)");
            continue;
        }
        const bool shape_ok = r.full_shape ? t->shape == r.shape : t->numel() == r.count;
        if (!shape_ok) {
            problems.push_back(detail::quoted(chosen) + " has shape " + t->shape_string() + ", " + lam + " expects " +
                               (r.full_shape ? detail::shape_string(r.shape)
                                             : std::to_string(r.count) + " elements"));
            continue;
        }
        std::size_t need = 0;
        if (!detail::checked_mul(t->numel(), element_size(t->dtype), need) || need != t->bytes.size()) {
            problems.push_back(detail::quoted(chosen) + " holds " + std::to_string(t->bytes.size()) + " bytes, its shape " +
                               t->shape_string() + " of " + to_string(t->dtype) + " needs " + std::to_string(need));
            continue;
        }
        plan.emplace_back(&r, t);
    }
    for (const auto& [name, t] : sd) {
        if (taken.count(name)) continue;
        if (detail::is_num_batches_tracked(name) || (opt.ignore && opt.ignore(name))) {
            report.skipped.push_back(name);
        } else if (opt.allow_unused) {
            report.unused.push_back(name);
        } else {
            problems.push_back("unused " + detail::quoted(name) + " (shape " + t.shape_string() +
                               "): no lamina tensor takes it (allow_unused or ignore to accept)");
        }
    }
    if (!problems.empty()) {
        std::string msg = "lamina: loading PyTorch tensors from '" + source + "' with names " + names.description() +
                          ": " + std::to_string(problems.size()) + (problems.size() == 1 ? " problem" : " problems") +
                          ", nothing loaded:";
        const std::size_t shown = std::min<std::size_t>(problems.size(), 40);
        for (std::size_t i = 0; i < shown; ++i) msg += "\n  " + problems[i];
        if (shown < problems.size()) msg += "\n  ... and " + std::to_string(problems.size() - shown) + " more";
        throw format_error(msg);
    }

    std::vector<T> params = net.get_parameters();
    std::vector<T> state = net.get_state();
    for (const auto& [r, t] : plan) {
        const std::vector<T> v = t->template to<T>();
        std::vector<T>& dst = r->running_state ? state : params;
        std::copy(v.begin(), v.end(), dst.begin() + static_cast<std::ptrdiff_t>(r->offset));
        report.loaded.emplace_back(r->segment, t->name);
    }
    net.set_parameters(params);
    if (Model::state_count) net.set_state(state);
    return report;
}

/// load_pytorch_state_dict from a safetensors file (needs nlohmann-json, see io/safetensors.hpp).
template <class Model>
pytorch_load_report load_pytorch_safetensors(Model& net, const std::string& path, const pytorch_names& names,
                                             const pytorch_load_options& opt = {}) {
    return load_pytorch_state_dict(net, read_safetensors(path).map(), names, opt, path);
}

}  // namespace lamina::io
