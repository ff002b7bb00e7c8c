// vicreg_train: trains a small CNN encoder with the VICReg loss on Fashion-MNIST (two random
// augmentations of each image), then evaluates the frozen representation against the same
// encoder at random init and raw pixels with the same linear probe and k-NN, and writes
// metrics (CSV, JSON), the table and gnuplot plots to the output directory.
//
// This file is the command line: every option, its range and its help. The run is in
// run.cpp, which names the other parts (src/apps/CMakeLists.txt lists them).

#include <c10/util/Exception.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <limits>

#include "int_list.h"
#include "runtime.h"
#include "train_config.h"

namespace {

using vicreg::apps::TrainConfig;

// A validator for numbers in [lo, hi], whose message reads as people write ranges:
// "--epochs: must be an integer in [1, 1000], got 0".
template <typename T>
CLI::Validator in_range(T lo, T hi) {
  const char* kind = std::numeric_limits<T>::is_integer ? "an integer" : "a number";
  return CLI::Validator(
      [=](std::string& input) -> std::string {
        T v{};
        if (CLI::detail::lexical_cast(input, v) && v >= lo && v <= hi) return "";
        return fmt::format("must be {} in [{}, {}], got '{}'", kind, lo, hi, input);
      },
      fmt::format("in [{}, {}]", lo, hi));
}

// A seed: any integer >= 0 (the option itself is unsigned, and would wrap "-1" around).
CLI::Validator non_negative_integer() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        int64_t v = 0;
        if (CLI::detail::lexical_cast(input, v) && v >= 0) return "";
        return fmt::format("must be an integer >= 0, got '{}'", input);
      },
      ">= 0");
}

// A list option under `rule` (int_list.h), e.g. "must be 1 to 3 comma-separated sizes in
// [1, 65536], got '8,8,8,8'".
CLI::Validator int_list(const vicreg::apps::IntListRule& rule, const std::string& shape) {
  return CLI::Validator(
      [rule](std::string& input) -> std::string {
        if (vicreg::apps::parse_int_list(input, rule)) return "";
        return fmt::format("must be {}, got '{}'", vicreg::apps::describe(rule), input);
      },
      shape);
}

void add_data_options(CLI::App& app, TrainConfig& c) {
  app.add_option("--data-dir", c.data_dir, "directory with the *-ubyte.gz IDX files")
      ->capture_default_str();
  app.add_option("--out-dir", c.out_dir, "where metrics, table, plots and checkpoint go")
      ->capture_default_str();
  app.add_option("--train-subset", c.train_subset, "use the first N training images (0: all)")
      ->capture_default_str()->check(in_range<int64_t>(0, 1000000000));
  app.add_option("--test-subset", c.test_subset, "use the first N test images (0: all)")
      ->capture_default_str()->check(in_range<int64_t>(0, 1000000000));
}

void add_model_options(CLI::App& app, TrainConfig& c) {
  app.add_option("--encoder-widths", c.encoder_widths, "channels of the conv blocks (<= 3)")
      ->capture_default_str()->check(int_list(vicreg::apps::kEncoderWidths, "SIZES (at most 3)"));
  app.add_option("--pool", c.pool, "representation: average-pooled to pool x pool positions")
      ->capture_default_str()->check(in_range<int64_t>(1, 7));
  app.add_option("--proj-dims", c.proj_dims, "projector (expander) sizes, comma-separated")
      ->capture_default_str()->check(int_list(vicreg::apps::kProjDims, "SIZES (at most 8)"));
}

void add_training_options(CLI::App& app, TrainConfig& c) {
  app.add_option("--epochs", c.epochs, "passes over the training set")
      ->capture_default_str()->check(in_range<int64_t>(1, 1000));
  app.add_option("--batch-size", c.batch_size, "images per step (each seen in two views)")
      ->capture_default_str()->check(in_range<int64_t>(2, 65536));
  app.add_option("--max-steps", c.max_steps, "stop after this many steps (0: no limit)")
      ->capture_default_str()->check(in_range<int64_t>(0, 1000000000));
  app.add_option("--lr", c.lr, "Adam learning rate (cosine-decayed to 0)")
      ->capture_default_str()->check(in_range(1e-7, 1.0));
  app.add_option("--weight-decay", c.weight_decay, "Adam weight decay (L2)")
      ->capture_default_str()->check(in_range(0.0, 1.0));
  app.add_option("--seed", c.seed, "seed of weights, batches and augmentations")
      ->capture_default_str()->check(non_negative_integer());
  // Read by the shared list parser (decimal; CLI11's own conversion would take 010 as octal).
  app.add_option_function<std::string>(
         "--seeds",
         [&c](const std::string& s) {
           const auto seeds = vicreg::apps::parse_int_list(s, vicreg::apps::kSeeds);
           for (const auto v : *seeds) c.seeds.push_back(static_cast<uint64_t>(v));
         },
         "one run per seed, each into --out-dir/seed-N, then the spread of the trained "
         "encoder's margins over the seeds (e.g. 0,1,2)")
      ->check(int_list(vicreg::apps::kSeeds, "SEED,SEED,..."));
}

void add_augment_options(CLI::App& app, TrainConfig& c) {
  app.add_option("--min-scale", c.augment.min_scale,
                 "random resized crop: smallest area fraction kept")
      ->capture_default_str()->check(in_range(0.01, 1.0));
  app.add_option("--crop-size", c.augment.size,
                 "side of the training views in pixels (0: the images' own); evaluation always "
                 "sees the full images")
      ->capture_default_str()->check(in_range<int64_t>(0, 256));
  app.add_option("--brightness", c.augment.brightness,
                 "brightness jitter: shift in [-b, b] x the image's mean")
      ->capture_default_str()->check(in_range(0.0, 1.0));
  app.add_option("--contrast", c.augment.contrast, "contrast jitter: factor in [1 - c, 1 + c]")
      ->capture_default_str()->check(in_range(0.0, 1.0));
  app.add_option("--noise", c.augment.noise_std, "std of the Gaussian pixel noise")
      ->capture_default_str()->check(in_range(0.0, 1.0));
}

void add_loss_options(CLI::App& app, TrainConfig& c) {
  app.add_option("--preset", c.preset, "loss convention: reference, paper or article")
      ->capture_default_str()->check(CLI::IsMember({"reference", "paper", "article"}));
  app.add_option("--inv-coeff", c.inv_coeff, "invariance weight")
      ->capture_default_str()->check(in_range(0.0, 1e4));
  app.add_option("--var-coeff", c.var_coeff, "variance weight (0 shows the collapse)")
      ->capture_default_str()->check(in_range(0.0, 1e4));
  app.add_option("--cov-coeff", c.cov_coeff, "covariance weight")
      ->capture_default_str()->check(in_range(0.0, 1e4));
  app.add_flag("--no-variance", c.no_variance, "same as --var-coeff 0");
  app.add_option("--backward", c.backward, "fused (hand-written) or autograd")
      ->capture_default_str()->check(CLI::IsMember({"fused", "autograd"}));
}

void add_eval_options(CLI::App& app, TrainConfig& c) {
  app.add_option("--probe-iters", c.probe_iters,
                 "L-BFGS iterations per fit of the linear probe (it stops once converged)")
      ->capture_default_str()->check(in_range<int64_t>(1, 100000));
  app.add_option("--knn-k", c.knn_k, "neighbours of the k-NN classifier")
      ->capture_default_str()->check(in_range<int64_t>(1, 1000));
  app.add_option("--supervised-steps", c.supervised_steps,
                 "also train the initial encoder with the labels (linear head, cross-entropy, "
                 "no augmentation) for N steps and add it to the table as a reference (0: off)")
      ->capture_default_str()->check(in_range<int64_t>(0, 100000000));
  app.add_option("--few-label-k", c.few_label_k,
                 "few-label evaluation: labelled training images per class, comma-separated "
                 "(0: off)")
      ->capture_default_str()->check(int_list(vicreg::apps::kFewLabelK, "K,K,... (0: off)"));
  app.add_option("--few-label-draws", c.few_label_draws,
                 "draws of the labelled images for each few-label count")
      ->capture_default_str()->check(in_range<int64_t>(1, 100));
  app.add_option("--curve-every", c.curve_every,
                 "learning curve: k-NN of the encoder every N steps (0: off)")
      ->capture_default_str()->check(in_range<int64_t>(0, 1000000000));
  app.add_option("--checkpoint-every", c.checkpoint_every,
                 "steps between checkpoints (checkpoint.pt in --out-dir; 0: once per epoch)")
      ->capture_default_str()->check(in_range<int64_t>(0, 1000000000));
  auto* resume = app.add_option("--resume", c.resume,
                                "continue the run in this directory from its checkpoint, with "
                                "the same settings (--out-dir defaults to it)")
                     ->check(CLI::ExistingDirectory);
  app.add_flag("--eval-only", c.eval_only,
               "evaluate the --resume run's encoder.pt and projector.pt without training")
      ->needs(resume);
  app.add_option("--compare", c.compare,
                 "other run directories whose embedding std curve std.png overlays")
      ->check(CLI::ExistingDirectory);
}

void add_process_options(CLI::App& app, TrainConfig& c) {
  app.add_option("--threads", c.threads, "intra-op threads (0: all cores)")
      ->capture_default_str()->check(in_range(0, 1024));
  app.add_flag("--distributed", c.distributed,
               "data parallel over the ranks that RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT "
               "describe (one process per rank, as torchrun starts them)");
  // Two flags rather than CLI11's "--a,!--no-a", whose help prints a confusing "{false}".
  auto* keep = app.add_flag("--keep-freed-memory", c.keep_freed_memory,
                            "keep freed memory in the process instead of returning it to the "
                            "system (faster epochs, see src/apps/README.md; the default)");
  app.add_flag_callback("--no-keep-freed-memory", [&c] { c.keep_freed_memory = false; },
                        "return freed memory to the system (the C library's default)")
      ->excludes(keep);
}

// Edits (insertions, deletions, substitutions) that turn a into b.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// "; did you mean --epochs?" for the first unknown --option within two edits of a known one.
std::string closest_option(const CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = std::string(argv[i]).substr(0, std::string(argv[i]).find('='));
    if (arg.rfind("--", 0) != 0) continue;
    std::string best;
    size_t best_distance = 3;
    bool known = false;
    for (const auto* o : app.get_options()) {
      for (const auto& name : o->get_lnames()) {
        const size_t d = edit_distance(arg.substr(2), name);
        known = known || d == 0;
        if (d < best_distance) best_distance = d, best = "--" + name;
      }
    }
    if (!known && !best.empty()) return "; did you mean " + best + "?";
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  // Line-buffered stdout: in a file or a pipe the headers stay in order with the progress
  // lines on stderr.
  std::setvbuf(stdout, nullptr, _IOLBF, BUFSIZ);
  vicreg::apps::configure_threads();
  TrainConfig c;
  CLI::App app{"Train a CNN encoder with VICReg on Fashion-MNIST and evaluate what it learned"};
  add_data_options(app, c);
  add_model_options(app, c);
  add_training_options(app, c);
  add_augment_options(app, c);
  add_loss_options(app, c);
  add_eval_options(app, c);
  add_process_options(app, c);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ExtrasError& e) {
    fmt::print(stderr, "{}{}\nRun with --help for more information.\n", e.what(),
               closest_option(app, argc, argv));
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  c.few_label_k_set = app.count("--few-label-k") > 0;
  if (!c.resume.empty() && !c.eval_only && app.count("--out-dir") == 0) c.out_dir = c.resume;
  if (c.keep_freed_memory) vicreg::apps::keep_freed_memory();
  try {
    return vicreg::apps::run_training(c);
  } catch (const c10::Error& e) {
    fmt::print(stderr, "vicreg_train: {}\n", e.what_without_backtrace());
  } catch (const std::exception& e) {
    fmt::print(stderr, "vicreg_train: {}\n", e.what());
  }
  return 1;
}
