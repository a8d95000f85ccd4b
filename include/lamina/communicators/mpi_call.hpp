// lamina: the small helpers every MPI communicator header uses: MPI errors thrown as
// lamina::error naming the call, the MPI datatype of float and double, and int-sized pieces of
// counts (MPI counts are ints).
#pragma once

#include <mpi.h>

#include <climits>
#include <cstddef>
#include <string>
#include <type_traits>

#include "../core/error.hpp"

namespace lamina::comm {

namespace detail {

inline std::string mpi_error_text(int code) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
    return std::string(msg, static_cast<std::size_t>(len));
}
inline void check_mpi(int code, const char* what) {
    if (code != MPI_SUCCESS) throw error(std::string("lamina: comm::mpi: ") + what + " failed: " + mpi_error_text(code));
}
template <class T>
MPI_Datatype mpi_type() {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "lamina: comm::mpi exchanges float or double");
    return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}
inline bool mpi_finalized() {
    int done = 0;
    MPI_Finalized(&done);
    return done != 0;
}
/// MPI counts are ints: [0, n) in pieces of at most INT_MAX elements.
template <class F>
void in_int_pieces(std::size_t n, F&& f) {
    const std::size_t most = static_cast<std::size_t>(INT_MAX);
    for (std::size_t off = 0; off < n; off += most) f(off, static_cast<int>(n - off < most ? n - off : most));
}
inline std::size_t int_pieces(std::size_t n) {
    const std::size_t most = static_cast<std::size_t>(INT_MAX);
    return n == 0 ? 0 : (n - 1) / most + 1;
}

}  // namespace detail

}  // namespace lamina::comm
