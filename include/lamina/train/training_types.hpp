// lamina: small value types of the training API: epochs{n}, batch{n}, and what callbacks see.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lamina {

struct epochs {
    std::size_t count = 1;
};
struct batch {
    std::size_t size = 32;
};

/// What the trainer does when a step's loss is NaN or infinite (a diverging run).
enum class non_finite {
    stop,        ///< the default: throw numeric_error naming epoch, step and the last finite loss
    skip_batch,  ///< drop that batch (no backward, no update), count it, and go on
    keep_going,  ///< update anyway (the loss is reported as it is)
};

/// What a callback sees after each step and each epoch.
struct step_info {
    std::size_t epoch = 0;            // 0-based epoch being run
    std::size_t epochs_total = 0;     // epoch index the run stops before
    std::size_t step_in_epoch = 0;    // steps done in this epoch
    std::size_t steps_per_epoch = 0;
    std::uint64_t global_step = 0;    // steps done since the start of training
    double loss = 0;                  // this step's loss
    double epoch_loss = 0;            // mean loss so far in this epoch
    double learning_rate = 0;
    double images_per_second = 0;     // over this epoch so far
    double elapsed_seconds = 0;       // this epoch so far
    double eta_seconds = 0;           // rest of this run at the current speed
    std::uint64_t skipped_steps = 0;  // batches dropped for a non-finite loss (non_finite::skip_batch)
};

/// Result of evaluate(): mean loss, and accuracy for classification losses.
struct evaluation {
    double loss = 0;
    double accuracy = 0;  // fraction in [0, 1]; 0 for regression
    std::size_t samples = 0;
};

}  // namespace lamina
