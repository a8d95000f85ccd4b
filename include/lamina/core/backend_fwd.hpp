// lamina: forward declarations of the backends, so network types can name the default.
#pragma once

namespace lamina {
struct host;       // backends/host: xsimd kernels and a thread pool (the embedded default)
struct reference;  // backends/reference: naive loops, the test oracle
}  // namespace lamina
