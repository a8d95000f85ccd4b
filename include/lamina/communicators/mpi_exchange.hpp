// lamina: what happens to a full fusion bucket: the gradient path. communicators/mpi.hpp hands
// every bucket, in order, to a bucket_exchange; the one here sums it over the ranks of a
// communicator (synchronous data parallelism). Another path (a group reduce to a root that
// trades gradients for weights with parameter servers) is another bucket_exchange.
//
// Open MPI makes no progress on a non-blocking collective unless the process is inside an MPI
// call, so an exchange that overlaps backward has to drive it. Two ways, chosen by
// comm::progress:
//   - between_layers: MPI_Iallreduce per bucket (the last one blocking, see below);
//     progress() (an MPI_Testall) runs at every gradient backward reports and between the
//     optimizer's bucket updates; wait() is MPI_Waitall. No thread, any MPI thread level,
//     deterministic; progress only at those points.
//   - thread: a communication thread runs a blocking MPI_Allreduce per bucket (the tuned
//     algorithms; Open MPI's non-blocking ones come from libnbc and are slower for large
//     buffers) while the compute threads go on with backward. Needs MPI_THREAD_MULTIPLE and
//     spends a core polling inside MPI while a collective runs.
// Without overlap, each bucket is a blocking MPI_Allreduce as it is started.
// With between_layers, allreduce_algorithm::halving_doubling replaces MPI_Iallreduce (and the
// blocking last bucket) by lamina's own point-to-point schedule (communicators/allreduce_schedule.hpp),
// which progress() advances round by round; mpi_options makes it the default (measured faster
// with Open MPI, see there).
//
// Why between_layers is the default (bench/bench_allreduce.cpp measures all three): its
// exchange costs no more than raw MPI_Iallreduce + MPI_Wait calls on the same bytes (the
// buckets and reports add nothing measurable), it needs no thread level and no spare core, and a
// backward pass reports gradients often enough (once per layer) to keep the collectives
// moving. The communication thread lets the tuned blocking algorithms run while compute goes
// on, which pays only with a core to spare: with every core computing, the polling thread and
// Open MPI's locking under MPI_THREAD_MULTIPLE made it several times slower in our runs.
// Open MPI's non-blocking allreduce is slower than its blocking one for mid-sized buffers, so
// where there is nothing to overlap with, the blocking call is used: without overlap, and for
// the last bucket of a step (it starts when backward has reported every gradient).
#pragma once

#include <mpi.h>

#include <climits>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "allreduce_schedule.hpp"
#include "mpi_call.hpp"

namespace lamina::comm {

/// How a non-blocking gradient exchange is advanced while backward runs.
enum class progress {
    between_layers,  ///< MPI_Test at every gradient report and between bucket updates (default)
    thread,          ///< a communication thread in blocking MPI_Allreduce (MPI_THREAD_MULTIPLE)
};


/// A gradient path: what happens to each full bucket. Buckets are started in order 0, 1, ...
/// on every rank; `data` is memory MPI can address (the bucket itself, or its host staging).
template <class T>
class bucket_exchange {
public:
    virtual ~bucket_exchange() = default;
    /// Begins exchanging bucket k (`count` values at `data`).
    virtual void start(std::size_t k, T* data, std::size_t count) = 0;
    /// Advances exchanges in flight (called between layers).
    virtual void progress() = 0;
    /// Returns when bucket k is done: `data` then holds the sum over the ranks.
    virtual void wait(std::size_t k) = 0;
    /// Whether exchanges still run (one must not leave them behind).
    virtual bool busy() const = 0;
};

/// Sums each bucket over the ranks of `comm` (a communicator of its own: its collectives are
/// ordered only among themselves). `overlap` false: blocking MPI_Allreduce as each starts.
/// `algorithm` chooses what sums a bucket in the between_layers mode; `reduction` is what
/// halving_doubling does with received values (elementwise_sum; a simulation models it).
template <class T, class Reduction = elementwise_sum<T>>
class allreduce_exchange final : public bucket_exchange<T> {
public:
    allreduce_exchange(MPI_Comm comm, const std::vector<std::size_t>& counts, bool overlap, progress how,
                       allreduce_algorithm algorithm = allreduce_algorithm::library, Reduction reduction = {})
        : comm_(comm), mode_(!overlap ? mode::blocking : how == progress::thread ? mode::worker : mode::nonblocking) {
        if (mode_ == mode::nonblocking && algorithm == allreduce_algorithm::halving_doubling)
            schedule_ = std::make_unique<halving_doubling_allreduce<T, Reduction>>(comm, counts, std::move(reduction));
        first_.resize(counts.size() + 1, 0);
        for (std::size_t k = 0; k < counts.size(); ++k) first_[k + 1] = first_[k] + detail::int_pieces(counts[k]);
        requests_.assign(first_.back(), MPI_REQUEST_NULL);
        jobs_.resize(counts.size());
        if (mode_ == mode::worker) worker_ = std::thread([this] { run_worker(); });
    }
    ~allreduce_exchange() override {
        if (!worker_.joinable()) return;
        {
            std::lock_guard<std::mutex> lk(m_);
            stop_ = true;
        }
        wake_.notify_all();
        // A worker still inside a collective (the step was abandoned by an error) may never
        // return: leave it rather than hang the destructor.
        if (finished_ < queued_) worker_.detach();
        else worker_.join();
    }
    allreduce_exchange(const allreduce_exchange&) = delete;
    allreduce_exchange& operator=(const allreduce_exchange&) = delete;

    void start(std::size_t k, T* data, std::size_t count) override {
        const MPI_Datatype type = detail::mpi_type<T>();
        switch (mode_) {
            case mode::blocking:
                detail::in_int_pieces(count, [&](std::size_t off, int n) {
                    detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, data + off, n, type, MPI_SUM, comm_), "MPI_Allreduce");
                });
                break;
            case mode::nonblocking: {
                if (schedule_) {
                    schedule_->start(k, data, count);
                    break;
                }
                std::size_t r = first_[k];
                if (k + 1 == jobs_.size()) {
                    // The last bucket: every gradient has been reported, so nothing is left
                    // to overlap it with; the blocking call is faster (see above) and drives
                    // the earlier buckets' progress while it runs. Its requests stay null.
                    detail::in_int_pieces(count, [&](std::size_t off, int n) {
                        detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, data + off, n, type, MPI_SUM, comm_),
                                          "MPI_Allreduce");
                    });
                } else {
                    detail::in_int_pieces(count, [&](std::size_t off, int n) {
                        detail::check_mpi(
                            MPI_Iallreduce(MPI_IN_PLACE, data + off, n, type, MPI_SUM, comm_, &requests_[r++]),
                            "MPI_Iallreduce");
                    });
                }
                if (oldest_ == in_flight_end_) oldest_ = k;
                in_flight_end_ = k + 1;
                break;
            }
            case mode::worker: {
                {
                    std::lock_guard<std::mutex> lk(m_);
                    jobs_[k] = {data, count};
                    queued_ = k + 1;
                }
                wake_.notify_one();
                break;
            }
        }
    }
    void progress() override {
        if (schedule_) return schedule_->progress();
        if (mode_ != mode::nonblocking || oldest_ >= in_flight_end_) return;
        int flag = 0;  // testing the oldest bucket drives Open MPI's progress engine for all of them
        const std::size_t k = oldest_;
        detail::check_mpi(MPI_Testall(static_cast<int>(first_[k + 1] - first_[k]), requests_.data() + first_[k], &flag,
                                      MPI_STATUSES_IGNORE),
                          "MPI_Testall");
        if (flag) ++oldest_;
    }
    void wait(std::size_t k) override {
        if (schedule_) {
            schedule_->wait(k);
        } else if (mode_ == mode::nonblocking) {
            detail::check_mpi(MPI_Waitall(static_cast<int>(first_[k + 1] - first_[k]), requests_.data() + first_[k],
                                          MPI_STATUSES_IGNORE),
                              "MPI_Waitall");
            if (oldest_ <= k) oldest_ = k + 1;
            if (oldest_ > in_flight_end_) oldest_ = in_flight_end_;
        } else if (mode_ == mode::worker) {
            std::unique_lock<std::mutex> lk(m_);
            done_.wait(lk, [&] { return finished_ > k || !failure_.empty(); });
            if (!failure_.empty()) throw error(failure_);
        }
        if (k + 1 == jobs_.size()) reset();
    }
    bool busy() const override {
        if (schedule_) return schedule_->busy();
        if (mode_ == mode::nonblocking) return oldest_ < in_flight_end_;
        if (mode_ == mode::worker) {
            std::lock_guard<std::mutex> lk(m_);
            return finished_ < queued_;
        }
        return false;
    }

private:
    enum class mode { blocking, nonblocking, worker };
    struct job {
        T* data = nullptr;
        std::size_t count = 0;
    };
    /// The last bucket of a step is done: the next step starts from bucket 0.
    void reset() {
        oldest_ = in_flight_end_ = 0;
        if (mode_ == mode::worker) {
            std::lock_guard<std::mutex> lk(m_);
            queued_ = finished_ = 0;
        }
    }
    void run_worker() {
        std::unique_lock<std::mutex> lk(m_);
        for (;;) {
            wake_.wait(lk, [&] { return stop_ || finished_ < queued_; });
            if (stop_) return;
            const job j = jobs_[finished_];
            lk.unlock();
            std::string failed;
            detail::in_int_pieces(j.count, [&](std::size_t off, int n) {
                const int rc = MPI_Allreduce(MPI_IN_PLACE, j.data + off, n, detail::mpi_type<T>(), MPI_SUM, comm_);
                if (rc != MPI_SUCCESS && failed.empty())
                    failed = "lamina: comm::mpi: MPI_Allreduce (communication thread) failed: " + detail::mpi_error_text(rc);
            });
            lk.lock();
            if (!failed.empty() && failure_.empty()) failure_ = failed;
            ++finished_;
            done_.notify_all();
        }
    }

    MPI_Comm comm_;
    mode mode_;
    std::vector<std::size_t> first_;  // bucket k's requests: [first_[k], first_[k + 1])
    std::vector<MPI_Request> requests_;
    std::size_t oldest_ = 0, in_flight_end_ = 0;  // non-blocking buckets [oldest_, in_flight_end_) may run
    std::unique_ptr<halving_doubling_allreduce<T, Reduction>> schedule_;  // halving_doubling only
    // communication thread
    std::vector<job> jobs_;
    std::thread worker_;
    mutable std::mutex m_;
    std::condition_variable wake_, done_;
    std::size_t queued_ = 0, finished_ = 0;
    bool stop_ = false;
    std::string failure_;
};

}  // namespace lamina::comm
