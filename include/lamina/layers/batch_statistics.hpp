// lamina: the hook through which batch norm combines its per-channel batch statistics across
// the processes that train one model together (synchronised batch norm).
//
// A reducer sums small arrays of doubles over the processes (an allreduce; the MPI
// communicator, communicators/mpi.hpp, implements one). Training code installs it for the
// passes it runs with a batch_statistics_scope; while one is active on the calling thread,
// batch norm's forward_train sums the per-channel sums and sums of squares of every process's
// batch before normalising, and its backward sums the per-channel sums of dy and dy x-hat
// before computing dx (dgamma and dbeta stay this process's own: the gradient averaging adds
// them up). Without a scope batch norm is unchanged: statistics of the local batch.
//
//   lamina::batch_statistics_scope sync{&reducer};   // the trainer does this when asked to
//   net.forward_train(x, batch, step);
//   net.backward(sink);
#pragma once

#include <cstddef>

namespace lamina {

/// Sums arrays of doubles over the processes that train one model together.
class batch_statistics_reducer {
public:
    virtual ~batch_statistics_reducer() = default;
    /// values[0..n) becomes the sum over every process of its values[0..n). Every process
    /// calls it with the same n, in the same order (it is a collective operation).
    virtual void sum(double* values, std::size_t n) = 0;
};

namespace detail {
/// The reducer active on this thread (null: batch norm uses its local batch only).
inline batch_statistics_reducer*& active_batch_statistics_reducer() noexcept {
    thread_local batch_statistics_reducer* active = nullptr;
    return active;
}
}  // namespace detail

/// Makes `r` the active reducer of the calling thread while it lives (null: none), restoring
/// the previous one afterwards. A thread-local rather than a model setting: the passes that
/// run under the scope are exactly the ones the caller synchronises, and no layer, model or
/// backend context needs a field for it.
class batch_statistics_scope {
public:
    explicit batch_statistics_scope(batch_statistics_reducer* r) noexcept
        : previous_(detail::active_batch_statistics_reducer()) {
        detail::active_batch_statistics_reducer() = r;
    }
    ~batch_statistics_scope() { detail::active_batch_statistics_reducer() = previous_; }
    batch_statistics_scope(const batch_statistics_scope&) = delete;
    batch_statistics_scope& operator=(const batch_statistics_scope&) = delete;

    static batch_statistics_reducer* current() noexcept { return detail::active_batch_statistics_reducer(); }

private:
    batch_statistics_reducer* previous_;
};

/// What one synchronised batch norm pass hands its kernels: the reducer, 2C + 1 doubles of
/// scratch in the backend's memory (`device`) and on the host (`host`), and the number of
/// values per channel in the global batch (written by forward_train, read by backward).
struct batch_statistics_sync {
    batch_statistics_reducer* reducer = nullptr;
    double* device = nullptr;
    double* host = nullptr;
    double global_count = 0;
};

}  // namespace lamina
