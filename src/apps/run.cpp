// vicreg_train's run: the data, the model, training, evaluation and the report, once per seed
// (train_config.h).

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "data.h"
#include "files.h"
#include "model.h"
#include "ranks.h"
#include "progress.h"
#include "report.h"
#include "runtime.h"
#include "scores.h"
#include "training.h"
#include "vicreg/vicreg.h"

namespace fs = std::filesystem;

namespace vicreg::apps {
namespace {

vicreg::VICRegLossOptions loss_options(const TrainConfig& c, const Ranks& ranks) {
  auto o = vicreg::VICRegLossOptions::preset(c.preset)
               .inv_coeff(c.inv_coeff)
               .var_coeff(c.no_variance ? 0.0 : c.var_coeff)
               .cov_coeff(c.cov_coeff);
  TORCH_CHECK(c.backward == "fused" || c.backward == "autograd",
              "--backward: expected 'fused' or 'autograd', got '", c.backward, "'");
  o.backward(c.backward == "fused" ? vicreg::Backward::Fused : vicreg::Backward::Autograd);
#ifdef VICREG_WITH_DISTRIBUTED
  if (ranks.group) o.process_group(ranks.group);
#endif
  return o;
}

ImageSet load_split(const TrainConfig& c, const std::string& split, int64_t limit) {
  for (const char* kind : {"images-idx3", "labels-idx1"}) {
    const auto file = fs::path(c.data_dir) / (split + "-" + kind + "-ubyte.gz");
    TORCH_CHECK(fs::exists(file), "no data set at --data-dir ", c.data_dir, " (", file.string(),
                " is missing): install Debian's dataset-fashion-mnist (apt-get install "
                "dataset-fashion-mnist) or pass --data-dir DIR with the *-ubyte.gz IDX files");
  }
  return load_mnist_format(c.data_dir, split, limit);
}

// The checks that need the data's size (the command line checked each option on its own).
void check_sizes(const TrainConfig& c, const ImageSet& train, const Ranks& ranks) {
  const int64_t n = train.images.size(0);
  TORCH_CHECK(n >= c.batch_size, "--batch-size ", c.batch_size, " is larger than the ", n,
              " training images (--train-subset)");
  TORCH_CHECK(c.batch_size >= 2 * ranks.world, "--batch-size ", c.batch_size,
              " is too small for ", ranks.world, " ranks: each rank needs at least 2 images");
  TORCH_CHECK(c.knn_k <= n, "--knn-k ", c.knn_k, " is larger than the ", n,
              " training images (--train-subset)");
  // The few-label draws, before training rather than after it.
  if (const auto fo = few_label_options(c, train.labels); !fo.ks.empty()) {
    plan_few_label(train.labels, fo);
  }
  TORCH_CHECK(c.augment.size == 0 || c.augment.size >= 8,
              "--crop-size: expected 0 (the images' own size) or 8 to 256 pixels, got ",
              c.augment.size);
}

// One run (one seed); returns its rows, or nothing on ranks other than 0.
std::vector<ResultRow> run_one(const TrainConfig& c) {
  const auto t_start = std::chrono::steady_clock::now();
  torch::set_num_threads(c.threads > 0 ? c.threads
                                       : std::max(1u, std::thread::hardware_concurrency()));
  torch::manual_seed(c.seed);
  const fs::path out(c.out_dir);
  fs::create_directories(out);
  const Ranks ranks = init_ranks(c);
  vicreg::VICRegLoss criterion(loss_options(c, ranks));
  const auto train = load_split(c, "train", c.train_subset);
  const auto test = load_split(c, "t10k", c.test_subset);
  check_sizes(c, train, ranks);
  fmt::print("data: {} train / {} test images from {}\nloss: {}\nthreads: {} (OpenMP: {}, BLAS: {})\n",
             train.images.size(0), test.images.size(0), c.data_dir, c10::str(*criterion),
             torch::get_num_threads(), openmp_runtime(), blas_threading());
  for (const auto& note : {openmp_note(), openblas_note()}) {
    if (!note.empty()) fmt::print("{}\n", note);
  }
  if (ranks.world > 1) fmt::print("data parallel: rank {} of {}\n", ranks.rank, ranks.world);
  Models m = build_models(c);
  RunFacts f;
  if (!c.eval_only && ranks.world == 1) {
    const auto t0 = std::chrono::steady_clock::now();
    f.loss_cost = measure_loss_cost(m, train, c, loss_options(c, Ranks{}));
    fmt::print("{}", loss_cost_line(f.loss_cost));
    f.phases.push_back({"loss timing", seconds_since(t0)});
  }
  const auto trained = train_vicreg(m, criterion, train, test, c, ranks, out, f.curve);
  if (finish_rank(m, ranks, trained)) return {};
  if (trained.steps > 0) {
    save_with_checksum(m.encoder, out / "encoder.pt");
    save_with_checksum(m.projector, out / "projector.pt");
  }
  const auto t_eval = std::chrono::steady_clock::now();
  const auto rows = evaluate_rows(m, train, test, c);
  const double eval_seconds = seconds_since(t_eval);
  double full = 0, few = 0;
  for (const auto& r : rows) {
    full += r.full_seconds;
    few += r.few_label_seconds;
  }
  f.steps = trained.steps;
  f.train_images = train.images.size(0);
  f.test_images = test.images.size(0);
  f.threads = torch::get_num_threads();
  f.inv_coeff = criterion->options.inv_coeff();
  f.var_coeff = criterion->options.var_coeff();
  f.cov_coeff = criterion->options.cov_coeff();
  f.gamma = criterion->options.gamma();
  f.train_seconds = trained.seconds - trained.hook_seconds;
  f.phases.push_back({"training", f.train_seconds});
  f.phases.push_back({"learning curve", f.curve.seconds});
  f.phases.push_back({"full-label probes and k-NN", full});
  f.phases.push_back({"few-label probes", few});
  f.phases.push_back({c.supervised_steps > 0 ? "supervised reference, PCA" : "PCA",
                      eval_seconds - full - few});
  f.total_seconds = seconds_since(t_start);
  report_results(out, c, f, rows);
  return rows;
}

}  // namespace

int run_training(const TrainConfig& c) {
  if (c.seeds.empty()) {
    run_one(c);
    return 0;
  }
  std::vector<std::vector<ResultRow>> runs;
  for (const auto seed : c.seeds) {
    TrainConfig one = c;
    one.seed = seed;
    one.seeds.clear();
    one.out_dir = (fs::path(c.out_dir) / fmt::format("seed-{}", seed)).string();
    fmt::print("=== seed {} -> {}\n", seed, one.out_dir);
    runs.push_back(run_one(one));
    if (runs.back().empty()) return 0;  // a rank other than 0
  }
  const auto summary = seeds_summary(c.seeds, runs);
  fmt::print("\n{}", summary);
  write_file_atomically(fs::path(c.out_dir) / "seeds.md", summary);
  return 0;
}

}  // namespace vicreg::apps
