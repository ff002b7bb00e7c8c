// libFuzzer target for vicreg_train's checkpoint reader (apps::checkpoints_in and
// apps::load_checkpoint), the surface that reads what a crash, a disk or a person left in a run
// folder. It starts from a valid checkpoint of a small run (made at start-up) and the first
// byte picks what the rest does to it: 0 the rest is the file as it is; 1 bytes changed (pairs
// of a position and a value to XOR in); 2 the file cut, with the rest appended; 3 the rest
// inserted at a position. Every read must end in a loaded checkpoint or a c10::Error, and a
// checkpoint may be loaded only when its bytes are the valid one's: a crash, a sanitizer
// report, a hang, or a damaged checkpoint accepted is a finding.
//
// Built as `vicreg_fuzz_checkpoint` with clang (-DVICREG_FUZZ=ON), and always as
// `vicreg_fuzz_checkpoint_replay`, which runs the stored corpus (tests/fuzz/corpus_checkpoint)
// under CTest.

#include <ATen/Parallel.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "checkpoint.h"
#include "files.h"

namespace fs = std::filesystem;

namespace {

// A small run's objects (parameters, a BatchNorm's buffers, Adam's moments, a generator) and
// the bytes of its valid checkpoint.
struct Reference {
  torch::nn::Sequential model;
  std::unique_ptr<torch::optim::Adam> adam;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  vicreg::apps::RunState state;
  fs::path dir;
  std::string bytes;
};

Reference& reference() {
  static Reference* r = [] {
    auto* r = new Reference;
    torch::manual_seed(3);
    r->model = torch::nn::Sequential(torch::nn::Linear(4, 3), torch::nn::BatchNorm1d(3),
                                     torch::nn::Linear(3, 2));
    r->adam = std::make_unique<torch::optim::Adam>(r->model->parameters(),
                                                   torch::optim::AdamOptions(1e-3));
    r->adam->zero_grad();
    r->model->forward(torch::randn({8, 4}, r->gen)).square().sum().backward();
    r->adam->step();
    r->state.settings = "--lr 0.001\n";
    r->state.modules = {{"model", r->model.ptr().get()}};
    r->state.optimizer = r->adam.get();
    r->state.generators = {{"gen", r->gen}};
    r->dir = fs::temp_directory_path() / ("vicreg_fuzz_checkpoint_" + std::to_string(::getpid()));
    fs::create_directories(r->dir);
    vicreg::apps::Resumed progress;
    progress.progress.steps = 5;
    progress.progress.order = at::arange(8);
    progress.progress.sums = {1.0, 2.0};
    progress.progress.count = 1;
    vicreg::apps::save_checkpoint(r->dir, r->state, progress);
    r->bytes = vicreg::apps::read_file(vicreg::apps::checkpoint_file(r->dir));
    return r;
  }();
  return *r;
}

// A position in [0, n] from up to four bytes of the input.
size_t position(const uint8_t*& data, size_t& size, size_t n) {
  uint32_t v = 0;
  for (int i = 0; i < 4 && size > 0; ++i, ++data, --size) v = v << 8 | *data;
  return n == 0 ? 0 : v % (n + 1);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  at::set_num_threads(1);
  reference();
  std::atexit([] {
    std::error_code ec;  // file by file: see remove_tree in tests/idx_files.h
    for (const char* f : {"checkpoint.pt", "checkpoint.pt.tmp", "checkpoint.prev.pt"}) {
      fs::remove(reference().dir / f, ec);
    }
    fs::remove(reference().dir, ec);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& ref = reference();
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 4;
  ++data, --size;
  std::string file = mode == 0 ? std::string(reinterpret_cast<const char*>(data), size) : ref.bytes;
  if (mode == 1) {
    while (size >= 5) {
      const size_t at = position(data, size, file.size() - 1);
      file[at] = static_cast<char>(file[at] ^ *data);
      ++data, --size;
    }
  } else if (mode == 2) {
    file.resize(position(data, size, file.size()));
    file.append(reinterpret_cast<const char*>(data), size);
  } else if (mode == 3) {
    const size_t at = position(data, size, file.size());
    file.insert(at, reinterpret_cast<const char*>(data), size);
  }
  const auto path = vicreg::apps::checkpoint_file(ref.dir);
  vicreg::apps::write_file_atomically(path, file);
  bool accepted = false;
  try {
    accepted = !vicreg::apps::checkpoints_in(ref.dir).intact.empty();
    vicreg::apps::load_checkpoint(path, ref.state);
    accepted = true;
  } catch (const c10::Error&) {
    // A clear error is an accepted outcome.
  }
  if (accepted && file != ref.bytes) {
    std::fprintf(stderr, "a damaged checkpoint (%zu bytes) was accepted\n", file.size());
    std::abort();
  }
  return 0;
}
