#pragma once
// The augmentation's parameters, apart from data.h so that code which only configures the
// programs (their command lines, their reports) compiles without the ATen headers.

#include <cstdint>

namespace vicreg::apps {

/// Augmentation parameters (defaults tuned for 28x28 Fashion-MNIST).
struct AugmentOptions {
  double min_scale = 0.25;     ///< random resized crop: area fraction in [min_scale, 1]
  double max_log_ratio = 0.2877;  ///< aspect ratio in [exp(-r), exp(r)] (3/4 .. 4/3)
  double flip_prob = 0.5;      ///< horizontal flip
  double brightness = 0.4;     ///< additive brightness shift in [-b, b] (scaled by the mean)
  double contrast = 0.4;       ///< contrast factor in [1 - c, 1 + c]
  double noise_std = 0.05;     ///< Gaussian pixel noise
  int64_t size = 0;            ///< side of the output views in pixels (0: the input's H and W)
};

}  // namespace vicreg::apps
