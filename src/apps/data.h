#pragma once
// Data for the training programs: the IDX reader (gzip, via zlib), Fashion-MNIST loading and
// the batched two-view augmentation.

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "augment_options.h"

namespace vicreg::apps {

/// Reads a gzip-compressed IDX file (unsigned-byte data) into a uint8 tensor of the header's
/// shape. Fails with a c10::Error naming the file when it is missing, not gzip, has a wrong
/// magic number or data type, is truncated, or holds more bytes than its header says.
at::Tensor read_idx_gz(const std::string& path);

/// One split of an MNIST-format data set.
struct ImageSet {
  at::Tensor images;  ///< [N, 1, H, W] float32 in [0, 1]
  at::Tensor labels;  ///< [N] int64
};

/// Loads `<dir>/<split>-images-idx3-ubyte.gz` and `<dir>/<split>-labels-idx1-ubyte.gz`
/// (split "train" or "t10k"); checks that images and labels agree in count. `limit` > 0 keeps
/// the first `limit` samples.
ImageSet load_mnist_format(const std::string& dir, const std::string& split, int64_t limit = 0);

/// One random augmentation of each image of a batch [B, C, H, W] in [0, 1]: random resized
/// crop (resampled to `o.size` squared when set), horizontal flip, brightness/contrast jitter,
/// noise; output clamped to [0, 1].
/// Deterministic given the generator's state.
at::Tensor augment(const at::Tensor& images, at::Generator& gen, const AugmentOptions& o = {});

/// The rows [begin, begin + size) of a `batch`-row batch that `rank` of `world` ranks trains on
/// in data-parallel runs; the first batch % world ranks take one row more.
struct Shard {
  int64_t begin, size;
};
inline Shard shard_of(int64_t batch, int rank, int world) {
  const int64_t base = batch / world, extra = batch % world;
  return {rank * base + std::min<int64_t>(rank, extra), base + (rank < extra ? 1 : 0)};
}

}  // namespace vicreg::apps
