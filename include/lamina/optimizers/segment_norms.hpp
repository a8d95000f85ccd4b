// lamina: per-tensor L2 norms on any backend, for the layer-wise trust ratios of LARS and LAMB
// (optimizers/lars.hpp, optimizers/lamb.hpp). A tensor is a parameter segment
// (network/parameter_segment.hpp): one weight or bias of one layer, as in the papers and in
// PyTorch implementations, where the ratio is computed per parameter tensor.
//
// Each segment is tiled by fixed-size chunks that never straddle two segments. One kernel
// sums squares per chunk (in double, a serial loop per chunk, so the result does not depend
// on the thread count and a resumed run stays bit-identical), a second adds each segment's
// chunks; element-wise passes run over chunks x chunk_size indices and find an element's
// segment through its chunk. Everything stays on the device: no host round trip per tensor.
// The layout is built once (again only if the segments change): steps allocate nothing.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../network/parameter_segment.hpp"
#include "weight_decay.hpp"

namespace lamina::optim {

template <class Backend>
class segment_chunks {
public:
    using context = typename Backend::context;
    static constexpr std::size_t chunk_size = 256;

    /// Lays out the chunks of `segs` over n parameters; free when they are the ones of the
    /// last call. Throws argument_error (naming `who` and the segment) for a segment outside n.
    void prepare(const context& c, const std::vector<parameter_segment>& segs, std::size_t n, const char* who) {
        if (n == n_ && segs.size() == seg_offset_.size()) {
            bool same = true;
            for (std::size_t s = 0; s < segs.size() && same; ++s)
                same = segs[s].offset == seg_offset_[s] && segs[s].count == seg_count_[s] &&
                       (segs[s].decay ? 1u : 0u) == seg_decay_[s];
            if (same && built_) return;
        }
        detail::check_segments(segs, n, who);
        std::vector<std::size_t> off, cnt, seg, first(segs.size()), nch(segs.size());
        seg_offset_.assign(segs.size(), 0);
        seg_count_.assign(segs.size(), 0);
        seg_decay_.assign(segs.size(), 0);
        for (std::size_t s = 0; s < segs.size(); ++s) {
            seg_offset_[s] = segs[s].offset;
            seg_count_[s] = segs[s].count;
            seg_decay_[s] = segs[s].decay ? 1u : 0u;
            first[s] = off.size();
            for (std::size_t o = 0; o < segs[s].count; o += chunk_size) {
                off.push_back(segs[s].offset + o);
                cnt.push_back(std::min(chunk_size, segs[s].count - o));
                seg.push_back(s);
            }
            nch[s] = off.size() - first[s];
        }
        chunks_ = off.size();
        segments_ = segs.size();
        n_ = n;
        put(c, offset_, off);
        put(c, count_, cnt);
        put(c, segment_, seg);
        put(c, first_, first);
        put(c, nchunks_, nch);
        put(c, decay_, seg_decay_);
        partial_a_.allocate(std::max<std::size_t>(chunks_, 1));
        partial_b_.allocate(std::max<std::size_t>(chunks_, 1));
        norm_a_.allocate(std::max<std::size_t>(segments_, 1));
        norm_b_.allocate(std::max<std::size_t>(segments_, 1));
        ratio_.allocate(std::max<std::size_t>(segments_, 1));
        built_ = true;
    }

    /// norm_a()[s] = ||a over segment s||, norm_b()[s] = ||b over segment s|| (device, double).
    template <class T>
    void norms(const context& c, const T* a, const T* b) {
        const std::size_t* off = offset_.data();
        const std::size_t* cnt = count_.data();
        double* pa = partial_a_.data();
        double* pb = partial_b_.data();
        Backend::for_each_index(
            c, chunks_,
            LAMINA_LAMBDA(std::size_t k) {
                double sa = 0, sb = 0;
                const std::size_t lo = off[k], hi = off[k] + cnt[k];
                for (std::size_t i = lo; i < hi; ++i) {
                    const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
                    sa += x * x;
                    sb += y * y;
                }
                pa[k] = sa;
                pb[k] = sb;
            },
            2 * chunk_size);
        const std::size_t* first = first_.data();
        const std::size_t* nch = nchunks_.data();
        double* na = norm_a_.data();
        double* nb = norm_b_.data();
        Backend::for_each_index(c, segments_, LAMINA_LAMBDA(std::size_t s) {
            double sa = 0, sb = 0;
            for (std::size_t k = first[s]; k < first[s] + nch[s]; ++k) {
                sa += pa[k];
                sb += pb[k];
            }
            na[s] = std::sqrt(sa);
            nb[s] = std::sqrt(sb);
        });
    }

    /// Calls f(element, segment) for every element of every segment (device-callable f).
    template <class F>
    void for_each_element(const context& c, F f) const {
        const std::size_t* off = offset_.data();
        const std::size_t* cnt = count_.data();
        const std::size_t* seg = segment_.data();
        constexpr std::size_t cs = chunk_size;
        Backend::for_each_index(c, chunks_ * cs, LAMINA_LAMBDA(std::size_t i) {
            const std::size_t k = i / cs, j = i - k * cs;
            if (j < cnt[k]) f(off[k] + j, seg[k]);
        });
    }

    std::size_t chunks() const noexcept { return chunks_; }
    std::size_t segments() const noexcept { return segments_; }
    const double* norm_a() const noexcept { return norm_a_.data(); }
    const double* norm_b() const noexcept { return norm_b_.data(); }
    /// Per-segment scratch the optimizer fills with its trust ratios (device).
    double* ratio() noexcept { return ratio_.data(); }
    const double* ratio() const noexcept { return ratio_.data(); }
    /// 1 where the segment takes weight decay and a trust ratio (device).
    const unsigned* decay() const noexcept { return decay_.data(); }

private:
    template <class U>
    static void put(const context& c, typename Backend::template buffer<U>& b, const std::vector<U>& h) {
        b.allocate(std::max<std::size_t>(h.size(), 1));
        if (!h.empty()) Backend::upload(c, b.data(), h.data(), h.size());
    }

    bool built_ = false;
    std::size_t n_ = 0, chunks_ = 0, segments_ = 0;
    std::vector<std::size_t> seg_offset_, seg_count_;  // the segments the layout was built for
    std::vector<unsigned> seg_decay_;
    typename Backend::template buffer<std::size_t> offset_, count_, segment_, first_, nchunks_;
    typename Backend::template buffer<unsigned> decay_;
    typename Backend::template buffer<double> partial_a_, partial_b_, norm_a_, norm_b_, ratio_;
};

}  // namespace lamina::optim
