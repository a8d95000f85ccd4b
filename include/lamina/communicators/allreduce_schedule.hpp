// lamina: its own non-blocking allreduce, built of MPI_Isend/MPI_Irecv rounds that the caller
// advances (allreduce_algorithm::halving_doubling in communicators/mpi_exchange.hpp).
//
// Why a schedule of lamina's own next to the MPI library's MPI_Iallreduce: its progress is
// explicit (each progress() tests a bucket's current round and posts the next, so backward's
// gradient reports drive it the same way under any MPI), and it behaves where the library's
// non-blocking collective does not: SimGrid SMPI 3.32's MPI_Iallreduce sends every buffer to
// every rank and breaks with MPI_IN_PLACE on large buffers, so the simulated scaling study
// (bench/scaling_sim) runs on this one.
//
// The algorithm (Rabenseifner): a reduce-scatter by recursive halving, then an allgather by
// recursive doubling, 2 log2(P) rounds for P ranks, each rank sending and receiving about
// 2 (P-1)/P of the buffer: bandwidth-optimal like a ring, but with log2(P) rounds instead of
// 2 (P-1) (a ring's per-message latency, and a simulator's event count, grow with P; at 512
// ranks a ring is 1,022 rounds, this is 18). For P not a power of two, the first 2r ranks
// (r = P - 2^floor(log2 P)) fold pairwise first: each even one sends its buffer to the odd one
// after it, which adds it in and takes part in the power-of-two schedule; the even ones receive
// the result at the end (2 more rounds, one extra buffer transfer for those pairs). Every
// element is summed on one rank in one order and sent from there, so all ranks hold the same
// bits, as the MPI library's allreduce gives.
//
// The rounds of every bucket and their scratch (the halves received before they are added in)
// are planned at construction from the bucket sizes: nothing is allocated per step.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "mpi_call.hpp"

namespace lamina::comm {

/// Which algorithm sums a bucket when its allreduce overlaps backward.
enum class allreduce_algorithm {
    library,           ///< MPI_Iallreduce (the MPI library's choice; the default)
    halving_doubling,  ///< lamina's point-to-point schedule (communicators/allreduce_schedule.hpp)
};

/// What the schedule does with received data: `into[i] += from[i]`, and where its scratch lives.
/// A simulation replaces it (bench/scaling_sim) to model the adds' cost or place scratch in
/// memory shared by simulated ranks.
template <class T>
struct elementwise_sum {
    void reduce(T* into, const T* from, std::size_t n) const {
        for (std::size_t i = 0; i < n; ++i) into[i] += from[i];
    }
    T* allocate(std::size_t n) const { return n ? new T[n] : nullptr; }
    void deallocate(T* p, std::size_t) const { delete[] p; }
};

/// Sums buckets over the ranks of `comm` with recursive halving and doubling. Buckets are
/// started in order (0, 1, ... on every rank, as the fusion plan makes them) and may run
/// together; bucket k's messages carry tag k, so `comm` should carry nothing else with those tags
/// (mpi_session gives its gradients a communicator of their own).
template <class T, class Reduction = elementwise_sum<T>>
class halving_doubling_allreduce {
public:
    halving_doubling_allreduce(MPI_Comm comm, const std::vector<std::size_t>& counts, Reduction reduction = {})
        : comm_(comm), reduction_(std::move(reduction)) {
        detail::check_mpi(MPI_Comm_rank(comm, &rank_), "halving_doubling allreduce: MPI_Comm_rank");
        detail::check_mpi(MPI_Comm_size(comm, &size_), "halving_doubling allreduce: MPI_Comm_size");
        int* tag_ub = nullptr;
        int flag = 0;
        MPI_Comm_get_attr(comm, MPI_TAG_UB, &tag_ub, &flag);
        const std::size_t max_tag = flag && tag_ub ? static_cast<std::size_t>(*tag_ub) : 32767;
        if (counts.size() > max_tag + 1)
            throw argument_error("lamina: comm::mpi: halving_doubling allreduce: " + std::to_string(counts.size()) +
                                 " buckets, but the MPI library's tags go up to " + std::to_string(max_tag) +
                                 " (one tag per bucket): use fewer, larger buckets or allreduce_algorithm::library");
        buckets_.resize(counts.size());
        std::size_t scratch = 0;
        for (std::size_t k = 0; k < counts.size(); ++k) {
            plan(buckets_[k], counts[k]);
            buckets_[k].scratch_offset = scratch;
            scratch += buckets_[k].scratch;
        }
        scratch_elements_ = scratch;
        scratch_ = reduction_.allocate(scratch);
        requests_.assign(2 * counts.size(), MPI_REQUEST_NULL);
    }
    ~halving_doubling_allreduce() {
        // Abandoned after an error: cancel what is posted rather than leave MPI writing into
        // freed scratch.
        if (!detail::mpi_finalized())
            for (auto& r : requests_)
                if (r != MPI_REQUEST_NULL) {
                    MPI_Cancel(&r);
                    MPI_Request_free(&r);
                }
        reduction_.deallocate(scratch_, scratch_elements_);
    }
    halving_doubling_allreduce(const halving_doubling_allreduce&) = delete;
    halving_doubling_allreduce& operator=(const halving_doubling_allreduce&) = delete;

    std::size_t buckets() const noexcept { return buckets_.size(); }
    /// Rounds bucket k takes on this rank (sends and receives of one round are posted together).
    std::size_t rounds(std::size_t k) const { return buckets_[k].rounds.size(); }
    /// Elements of scratch this rank holds for all buckets.
    std::size_t scratch_elements() const noexcept { return scratch_elements_; }
    const Reduction& reduction() const noexcept { return reduction_; }

    /// Begins summing bucket k: `count` (as planned) values at `data`, which hold the sum when
    /// wait(k) returns. Posts the first round.
    void start(std::size_t k, T* data, std::size_t count) {
        auto what = [k] { return "lamina: comm::mpi: halving_doubling allreduce: bucket " + std::to_string(k); };
        if (k >= buckets_.size())
            throw argument_error(what() + " does not exist (" + std::to_string(buckets_.size()) + " planned)");
        bucket& b = buckets_[k];
        if (count != b.count)
            throw argument_error(what() + " has " + std::to_string(count) + " values, planned for " +
                                 std::to_string(b.count));
        if (b.running) throw error(what() + " started twice");
        b.data = data;
        b.next = 0;
        b.running = true;
        if (oldest_ == end_) oldest_ = k;
        end_ = std::max(end_, k + 1);
        post(k);
        advance(k);
    }
    /// Advances every running bucket as far as its messages have arrived.
    void progress() {
        for (std::size_t k = oldest_; k < end_; ++k) advance(k);
        retire();
    }
    /// Returns when bucket k holds the sum, advancing the other running buckets meanwhile.
    void wait(std::size_t k) {
        while (!advance(k)) {
            // Sleep in MPI until any running bucket's message moves, then advance them all.
            int index = MPI_UNDEFINED;
            const std::size_t first = 2 * oldest_;
            detail::check_mpi(MPI_Waitany(static_cast<int>(2 * end_ - first), requests_.data() + first, &index,
                                          MPI_STATUS_IGNORE),
                              "halving_doubling allreduce: MPI_Waitany");
            for (std::size_t j = oldest_; j < end_; ++j)
                if (j != k) advance(j);
        }
        retire();
    }
    bool done(std::size_t k) const { return !buckets_[k].running; }
    bool busy() const noexcept { return oldest_ < end_; }

private:
    struct exchange_round {
        int peer = 0;
        std::size_t send_offset = 0, send_count = 0;  // send_count 0 with no send
        std::size_t recv_offset = 0, recv_count = 0;
        bool sends = false, receives = false;
        bool add = false;  // received into scratch, then added into data[recv_offset...]
    };
    struct bucket {
        std::size_t count = 0;
        std::vector<exchange_round> rounds;
        std::size_t scratch = 0, scratch_offset = 0;
        T* data = nullptr;
        std::size_t next = 0;  // the round posted (or to post)
        bool running = false;
    };

    /// This rank's rounds for a bucket of `n` values.
    void plan(bucket& b, std::size_t n) {
        b.count = n;
        const int P = size_;
        if (P == 1) return;
        int p2 = 1;
        while (p2 * 2 <= P) p2 *= 2;
        const int extra = P - p2;
        auto add_round = [&](exchange_round r) {
            if ((r.sends && r.send_count > std::size_t(INT_MAX)) || (r.receives && r.recv_count > std::size_t(INT_MAX)))
                throw argument_error("lamina: comm::mpi: halving_doubling allreduce: a bucket of " + std::to_string(n) +
                                     " values sends more than INT_MAX in one message: use smaller buckets or "
                                     "allreduce_algorithm::library");
            if (r.add) b.scratch = std::max(b.scratch, r.recv_count);
            b.rounds.push_back(r);
        };
        int vrank;  // rank in the power-of-two schedule; -1: folded into the next rank
        if (rank_ < 2 * extra) {
            if (rank_ % 2 == 0) {
                exchange_round give;
                give.peer = rank_ + 1;
                give.sends = true;
                give.send_count = n;
                add_round(give);
                exchange_round take;
                take.peer = rank_ + 1;
                take.receives = true;
                take.recv_count = n;
                add_round(take);
                return;
            }
            exchange_round fold;
            fold.peer = rank_ - 1;
            fold.receives = true;
            fold.recv_count = n;
            fold.add = true;
            add_round(fold);
            vrank = rank_ / 2;
        } else {
            vrank = rank_ - extra;
        }
        auto real = [&](int v) { return v < extra ? 2 * v + 1 : v + extra; };
        auto at = [&](int block) { return static_cast<std::size_t>(block) * n / static_cast<std::size_t>(p2); };
        // reduce-scatter: halve the window of blocks, keep the half holding block `vrank`
        int lo = 0, hi = p2;
        for (int d = p2 / 2; d >= 1; d /= 2) {
            const int mid = lo + (hi - lo) / 2;
            const bool lower = (vrank & d) == 0;
            exchange_round r;
            r.peer = real(vrank ^ d);
            r.sends = r.receives = r.add = true;
            const int send_lo = lower ? mid : lo, send_hi = lower ? hi : mid;
            const int keep_lo = lower ? lo : mid, keep_hi = lower ? mid : hi;
            r.send_offset = at(send_lo);
            r.send_count = at(send_hi) - at(send_lo);
            r.recv_offset = at(keep_lo);
            r.recv_count = at(keep_hi) - at(keep_lo);
            add_round(r);
            lo = keep_lo;
            hi = keep_hi;
        }
        // allgather: double the window, receiving the partner's (its mirror image)
        for (int d = 1; d < p2; d *= 2) {
            const int width = hi - lo;
            const bool lower = (vrank & d) == 0;
            const int other_lo = lower ? hi : lo - width, other_hi = other_lo + width;
            exchange_round r;
            r.peer = real(vrank ^ d);
            r.sends = r.receives = true;
            r.send_offset = at(lo);
            r.send_count = at(hi) - at(lo);
            r.recv_offset = at(other_lo);
            r.recv_count = at(other_hi) - at(other_lo);
            add_round(r);
            lo = std::min(lo, other_lo);
            hi = std::max(hi, other_hi);
        }
        if (rank_ < 2 * extra) {  // hand the sum back to the folded rank
            exchange_round back;
            back.peer = rank_ - 1;
            back.sends = true;
            back.send_count = n;
            add_round(back);
        }
    }

    void post(std::size_t k) {
        bucket& b = buckets_[k];
        if (b.next >= b.rounds.size()) return;
        const exchange_round& r = b.rounds[b.next];
        const MPI_Datatype type = detail::mpi_type<T>();
        const int tag = static_cast<int>(k);
        if (r.receives) {
            T* into = r.add ? scratch_ + b.scratch_offset : b.data + r.recv_offset;
            detail::check_mpi(
                MPI_Irecv(into, static_cast<int>(r.recv_count), type, r.peer, tag, comm_, &requests_[2 * k]),
                "halving_doubling allreduce: MPI_Irecv");
        }
        if (r.sends)
            detail::check_mpi(MPI_Isend(b.data + r.send_offset, static_cast<int>(r.send_count), type, r.peer, tag,
                                        comm_, &requests_[2 * k + 1]),
                              "halving_doubling allreduce: MPI_Isend");
    }
    /// Tests bucket k's current round; while it is complete, adds what it received and posts
    /// the next. True when the bucket is done.
    bool advance(std::size_t k) {
        bucket& b = buckets_[k];
        if (!b.running) return true;
        for (;;) {
            int flag = 0;
            detail::check_mpi(MPI_Testall(2, requests_.data() + 2 * k, &flag, MPI_STATUSES_IGNORE),
                              "halving_doubling allreduce: MPI_Testall");
            if (!flag) return false;
            if (b.next < b.rounds.size()) {
                const exchange_round& r = b.rounds[b.next];
                if (r.add) reduction_.reduce(b.data + r.recv_offset, scratch_ + b.scratch_offset, r.recv_count);
                ++b.next;
            }
            if (b.next >= b.rounds.size()) {
                b.running = false;
                return true;
            }
            post(k);
        }
    }
    /// Drops finished buckets from the front of the running range.
    void retire() {
        while (oldest_ < end_ && !buckets_[oldest_].running) ++oldest_;
        if (oldest_ == end_) oldest_ = end_ = 0;
    }

    MPI_Comm comm_;
    Reduction reduction_;
    int rank_ = 0, size_ = 1;
    std::vector<bucket> buckets_;
    std::vector<MPI_Request> requests_;  // bucket k's current round: [2k] receive, [2k + 1] send
    T* scratch_ = nullptr;
    std::size_t scratch_elements_ = 0;
    std::size_t oldest_ = 0, end_ = 0;  // buckets [oldest_, end_) may be running
};

}  // namespace lamina::comm
