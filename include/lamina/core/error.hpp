// lamina: the exception types. Every message names what was wrong (shape, file, field).
#pragma once

#include <stdexcept>
#include <string>

namespace lamina {

/// Base of every error lamina throws.
struct error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A runtime size or shape does not match what a network or kernel expects.
struct shape_error : error {
    using error::error;
};

/// A file could not be opened, read or written.
struct io_error : error {
    using error::error;
};

/// A file was read but its contents are malformed (bad magic, truncated, count mismatch).
struct format_error : error {
    using error::error;
};

/// A checkpoint is corrupt, truncated, of another version or of another architecture.
struct checkpoint_error : error {
    using error::error;
};

/// An argument is out of its valid range (learning rate, batch size, probability, ...).
struct argument_error : error {
    using error::error;
};

/// A value that must be finite is not: a diverged loss, a NaN or infinite parameter that is
/// about to be saved. The message names where it was found (epoch, step, tensor).
struct numeric_error : error {
    using error::error;
};

/// Memory for a planned buffer could not be allocated (the message names the size and why).
struct allocation_error : error {
    using error::error;
};

namespace detail {
inline void require(bool ok, const std::string& what) {
    if (!ok) throw argument_error("lamina: " + what);
}
}  // namespace detail

}  // namespace lamina
