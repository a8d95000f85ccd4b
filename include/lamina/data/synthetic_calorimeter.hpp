// lamina: synthetic calorimeter images of collider events, signal against background: test
// data for the HEP CNN (models/hep_cnn.hpp) in the spirit of Kurth et al.'s RPV-SUSY against
// QCD multi-jet task, without the ATLAS simulation.
//
//   auto train = lamina::data::synthetic_calorimeter(4000, {64, 64, /*seed*/ 1});
//   auto test  = lamina::data::synthetic_calorimeter(1000, {64, 64, 1, /*first*/ 4000});
//
// An image is 3 x H x W floats (channels first) over (eta, phi) bins, phi periodic along the
// width: channel 0 is log(1 + E) of the energy deposited in the bin, channel 1 the bin's
// electromagnetic fraction (EM energy / energy, 0 where empty), channel 2 the number of
// charged tracks pointing at it. The images are sparse, as real ones are.
//
// An event is a set of jets plus soft underlying-event particles. A jet of energy E is a spray
// of 4 + E/6 particles (at most 64) around its axis, Gaussian with sd 2.5% of the width, sharing
// E by exponential weights; a particle is a photon (30%: all EM, no track), a charged hadron
// (55%: 20% EM, one track) or a neutral hadron (15%: no EM, no track). The underlying event adds
// 30 to 59 particles of mean energy 0.5 anywhere.
//
// What differs between the classes: background (class 0) has 2 to 5 jets of energy
// 20 + 50 Exp(1); signal (class 1, "new physics") has 4 to 8 jets of energy 20 + 80 Exp(1):
// more, harder jets. How hard it is: the jet counts overlap (4 and 5 occur in both) and the
// energy spectra overlap, so no classifier is always right; a cut on the total energy alone
// is a useful baseline (examples/hep_cnn prints it next to the network's accuracy).
//
// Deterministic: event i is a pure function of (seed, i) through lamina's counter-based
// random_stream (core/philox.hpp). Labels are balanced: event i has class i mod 2.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/philox.hpp"
#include "dataset.hpp"
#include "synthetic_common.hpp"

namespace lamina::data {

inline constexpr std::size_t synthetic_calorimeter_channels = 3;

struct synthetic_calorimeter_options {
    std::size_t height = 224;  ///< eta bins
    std::size_t width = 224;   ///< phi bins (periodic)
    std::uint64_t seed = 1;
    std::uint64_t first = 0;   ///< index of the first event (disjoint ranges: independent sets)
};

/// The event-level truth of one synthetic event, for baselines and tests.
struct calorimeter_event_truth {
    std::size_t label = 0;   ///< 1 signal, 0 background
    std::size_t jets = 0;
    double jet_energy = 0;   ///< sum of the jets' energies
    double total_energy = 0; ///< everything deposited, underlying event included
    std::size_t tracks = 0;
};

namespace detail {

inline void check_calorimeter_options(const synthetic_calorimeter_options& o) {
    if (o.height < 8 || o.width < 8)
        throw argument_error("lamina: synthetic_calorimeter: the image must be at least 8x8 bins (height " +
                             std::to_string(o.height) + ", width " + std::to_string(o.width) + ")");
}

/// Stream identifier of the calorimeter generator ("calo").
inline constexpr std::uint64_t calorimeter_stream = 0x63616c6full;

}  // namespace detail

/// Renders event `index` into `out` (3 x height x width floats, overwritten) and returns its
/// truth; its class is index mod 2.
inline calorimeter_event_truth synthetic_calorimeter_event(const synthetic_calorimeter_options& o, std::uint64_t index,
                                                           float* out) {
    detail::check_calorimeter_options(o);
    const std::size_t H = o.height, W = o.width;
    const std::size_t plane = detail::synthetic_product(H, W, "synthetic_calorimeter", "height x width");
    const std::size_t n_values =
        detail::synthetic_product(plane, synthetic_calorimeter_channels, "synthetic_calorimeter", "3 x height x width");
    calorimeter_event_truth truth;
    truth.label = static_cast<std::size_t>(index % 2);
    const bool signal = truth.label == 1;
    const random_stream event = random_stream{o.seed, detail::calorimeter_stream}.child(index);
    const random_stream jets_s = event.child(0), particles_s = event.child(1);

    // channel 0 accumulates energy, channel 1 EM energy, channel 2 tracks; finished below
    std::fill(out, out + n_values, 0.0f);
    float* energy = out;
    float* em = out + plane;
    float* tracks = out + 2 * plane;
    std::uint64_t draw = 0;  // the particle counter: each particle uses one Philox block
    auto deposit = [&](double eta, double phi, double e) {
        const double kind = detail::unit(particles_s.bits(draw++), 0);
        const double em_share = kind < 0.30 ? 1.0 : (kind < 0.85 ? 0.2 : 0.0);
        const bool charged = kind >= 0.30 && kind < 0.85;
        const long row = static_cast<long>(std::floor(eta));
        if (row < 0 || row >= static_cast<long>(H)) return;  // outside the detector's eta range
        double col = std::fmod(phi, static_cast<double>(W));
        if (col < 0) col += static_cast<double>(W);
        const std::size_t c = std::min(W - 1, static_cast<std::size_t>(col));
        const std::size_t p = static_cast<std::size_t>(row) * W + c;
        energy[p] += static_cast<float>(e);
        em[p] += static_cast<float>(e * em_share);
        if (charged) {
            tracks[p] += 1.0f;
            ++truth.tracks;
        }
        truth.total_energy += e;
    };

    const auto head = jets_s.bits(0);
    truth.jets = signal ? 4 + static_cast<std::size_t>(detail::unit(head, 0) * 5)
                        : 2 + static_cast<std::size_t>(detail::unit(head, 0) * 4);
    const double mean = signal ? 80.0 : 50.0;
    const double spread = 0.025 * static_cast<double>(W);
    for (std::size_t j = 0; j < truth.jets; ++j) {
        const auto jb = jets_s.bits(1 + j);
        const double e = 20.0 - mean * std::log(1.0 - detail::unit(jb, 0));  // 20 + mean Exp(1)
        const double eta0 = (0.1 + 0.8 * detail::unit(jb, 1)) * static_cast<double>(H);
        const double phi0 = detail::unit(jb, 2) * static_cast<double>(W);
        truth.jet_energy += e;
        const std::size_t n = std::min<std::size_t>(64, 4 + static_cast<std::size_t>(e / 6));
        // exponential weights share the jet's energy among its particles
        double weights[64], sum = 0;
        const random_stream jet_s = jets_s.child(1 + j);
        for (std::size_t k = 0; k < n; ++k) sum += (weights[k] = -std::log(1.0 - detail::unit(jet_s.bits(k), 0)) + 1e-12);
        for (std::size_t k = 0; k < n; ++k) {
            double z[4];
            detail::normals4(jet_s.bits(1000 + k), z);
            deposit(eta0 + spread * z[0], phi0 + spread * z[1], e * weights[k] / sum);
        }
    }
    const auto ue = jets_s.bits(100);
    const std::size_t soft = 30 + static_cast<std::size_t>(detail::unit(ue, 0) * 30);
    const random_stream soft_s = jets_s.child(100);
    for (std::size_t k = 0; k < soft; ++k) {
        const auto sb = soft_s.bits(k);
        deposit(detail::unit(sb, 0) * static_cast<double>(H), detail::unit(sb, 1) * static_cast<double>(W),
                -0.5 * std::log(1.0 - detail::unit(sb, 2)));
    }
    for (std::size_t p = 0; p < plane; ++p) {
        const double e = energy[p];
        em[p] = e > 0 ? static_cast<float>(std::min(1.0, static_cast<double>(em[p]) / e)) : 0.0f;
        energy[p] = static_cast<float>(std::log1p(e));
    }
    return truth;
}

/// `count` events from index o.first on, with their classes as targets (one value each).
/// `truths`, when given, receives each event's truth.
inline dataset<float> synthetic_calorimeter(std::size_t count, const synthetic_calorimeter_options& o = {},
                                            std::vector<calorimeter_event_truth>* truths = nullptr) {
    detail::check_calorimeter_options(o);
    const std::size_t per = detail::synthetic_product(
        detail::synthetic_product(o.height, o.width, "synthetic_calorimeter", "height x width"),
        synthetic_calorimeter_channels, "synthetic_calorimeter", "3 x height x width");
    const std::size_t all = detail::synthetic_product(per, count, "synthetic_calorimeter", "count x 3 x height x width");
    if (count > std::numeric_limits<std::uint64_t>::max() - o.first)
        throw argument_error("lamina: synthetic_calorimeter: first + count overflows the event index");
    std::vector<float> x(all), y(count);
    if (truths) truths->resize(count);
    for (std::size_t i = 0; i < count; ++i) {
        const auto t = synthetic_calorimeter_event(o, o.first + i, x.data() + i * per);
        y[i] = static_cast<float>(t.label);
        if (truths) (*truths)[i] = t;
    }
    return dataset<float>(std::move(x), std::move(y), per, 1);
}

}  // namespace lamina::data
