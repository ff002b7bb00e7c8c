#pragma once
// vicreg_train's checkpoints: everything a run needs to continue bit for bit after a kill (the
// models, the optimizer, the loop's position and data order, every random generator), written
// so that a kill or a failed write leaves the previous checkpoint intact, and checked on
// reading: a file whose bytes differ from the ones written is refused as damaged.
//
// The file: LibTorch's archive (torch::serialize::OutputArchive), then one line
// "vicreg_train checkpoint sha256 HEX\n" with the SHA-256 of everything before it. LibTorch
// stores tensors uncompressed and does not check them on reading, so without it a flipped bit
// in a weight would read back as another weight.

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "results.h"

namespace vicreg::apps {

/// Where the training loop stands after a step: what it needs to go on from there.
struct LoopProgress {
  int64_t steps = 0;          ///< steps done
  at::Tensor order;           ///< the current epoch's order of the training rows
  std::vector<double> sums;   ///< the current epoch's sums of the logged values...
  int64_t count = 0;          ///< ...over this many steps
  double seconds = 0;         ///< training time so far, all processes together
  double hook_seconds = 0;    ///< of it, the time spent in the after-step hook
};

/// The objects of a run that a checkpoint saves and restores, by reference, and what must
/// match for a checkpoint to be loaded.
struct RunState {
  /// "name value" lines of every setting that changes the trained weights; a checkpoint whose
  /// lines differ is refused, naming the settings.
  std::string settings;
  int rank = 0, world = 1;
  int threads = 1;  ///< a different count is allowed, but may change the last bits
  std::vector<std::pair<std::string, torch::nn::Module*>> modules;
  torch::optim::Optimizer* optimizer = nullptr;
  std::vector<std::pair<std::string, at::Generator>> generators;
};

/// What a checkpoint holds beyond the objects of RunState.
struct Resumed {
  LoopProgress progress;
  std::vector<CurvePoint> curve;  ///< the learning curve up to progress.steps
};

/// The file names in a run directory: the newest checkpoint and the one before it (kept
/// because ranks may be killed between writing the same step's checkpoint).
std::filesystem::path checkpoint_file(const std::filesystem::path& dir);
std::filesystem::path previous_checkpoint_file(const std::filesystem::path& dir);

/// Writes the state into `dir`: to a temporary file first, flushed to disk, then renamed over
/// the newest checkpoint after that has been renamed to the previous one. A failed write (a
/// full disk) removes the temporary file, leaves both checkpoints as they were, and is a
/// c10::Error that says so.
void save_checkpoint(const std::filesystem::path& dir, const RunState& s, const Resumed& r);

/// The checkpoints found in a run directory.
struct CheckpointScan {
  /// The intact ones: their steps and files, newest file first.
  std::vector<std::pair<int64_t, std::filesystem::path>> intact;
  /// Why each of the others cannot be used (cut short, damaged, unreadable), one per file.
  std::vector<std::string> damaged;
};
/// Reads and checks both checkpoint files of `dir`; a missing file is in neither list.
CheckpointScan checkpoints_in(const std::filesystem::path& dir);

/// Restores the state from `file`. Checks everything first (the checksum, the settings, rank
/// and world, the names, shapes and dtypes of every tensor) and refuses a checkpoint of another run with a
/// c10::Error that says what differs, before any object is changed.
Resumed load_checkpoint(const std::filesystem::path& file, const RunState& s);

}  // namespace vicreg::apps
