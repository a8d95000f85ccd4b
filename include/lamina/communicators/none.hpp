// lamina: communicators are compile-time policies of the trainer, like its loss or optimizer.
// comm::none is one process (the default): the trainer compiles exactly as without one.
// comm::mpi (communicators/mpi.hpp) averages gradients over the ranks of an MPI communicator.
//
//   lm::trainer fit{net, loss, opt};                                          // comm::none
//   lm::trainer fit{net, loss, opt, sched, lm::comm::mpi{MPI_COMM_WORLD}};    // data-parallel
//
// A distributed communicator C has `static constexpr bool distributed = true` and a
// `C::session<Model>` the trainer builds from it and the model; communicators/mpi.hpp documents
// what a session does (the protocol a further communicator implements to plug in).
#pragma once

#include <type_traits>

namespace lamina::comm {

/// One process: nothing to communicate, nothing stored, nothing called.
struct none {
    static constexpr bool distributed = false;
    static constexpr bool is_communicator = true;
    int rank() const noexcept { return 0; }
    int size() const noexcept { return 1; }
};

/// Whether C is a communicator policy (the trainer's deduction guides tell a schedule from a
/// communicator by it).
template <class C, class = void>
struct is_communicator : std::false_type {};
template <class C>
struct is_communicator<C, std::enable_if_t<C::is_communicator>> : std::true_type {};

/// What the trainer holds for comm::none: nothing.
struct no_session {};

}  // namespace lamina::comm
