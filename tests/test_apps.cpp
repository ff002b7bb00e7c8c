// The training program's pieces: the IDX reader on good files made here (malformed ones are
// rows of test_catalogue.cpp), the augmentation pipeline, and a smoke run of vicreg_train on
// a tiny subset, and its command-line errors.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "data.h"
#include "eval.h"
#include "idx_files.h"

namespace fs = std::filesystem;

namespace {

using vicreg::testing::idx_bytes;
using vicreg::testing::write_gz;

fs::path scratch() { return vicreg::testing::scratch_dir("apps"); }

TEST(IdxReader, ReadsAGoodFileWithItsShapeAndBytes) {
  const auto p = scratch() / "good.gz";
  write_gz(p, idx_bytes({3, 4, 5}, 60));
  const auto t = vicreg::apps::read_idx_gz(p.string());
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(t.scalar_type(), torch::kByte);
  EXPECT_EQ(t.flatten()[59].item<int>(), (59 * 7) % 256);
}

TEST(IdxReader, LoadsImagesAndLabelsScaledAndLimited) {
  const auto dir = scratch() / "set";
  fs::create_directories(dir);
  write_gz(dir / "train-images-idx3-ubyte.gz", idx_bytes({5, 28, 28}, 5 * 28 * 28));
  write_gz(dir / "train-labels-idx1-ubyte.gz", idx_bytes({5}, 5));
  const auto set = vicreg::apps::load_mnist_format(dir.string(), "train", 3);
  EXPECT_EQ(set.images.sizes(), (std::vector<int64_t>{3, 1, 28, 28}));
  EXPECT_LE(set.images.max().item<float>(), 1.0f);
  EXPECT_EQ(set.labels.scalar_type(), torch::kLong);
}

TEST(Augment, ShapesRangesDifferentViewsAndDeterminism) {
  torch::manual_seed(0);
  const auto x = torch::rand({16, 1, 28, 28});
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(42);
  auto g2 = at::make_generator<at::CPUGeneratorImpl>(42);
  const auto a = vicreg::apps::augment(x, g1), b = vicreg::apps::augment(x, g1);
  const auto a2 = vicreg::apps::augment(x, g2);
  EXPECT_EQ(a.sizes(), x.sizes());
  EXPECT_GE(a.min().item<float>(), 0.0f);
  EXPECT_LE(a.max().item<float>(), 1.0f);
  EXPECT_GT((a - b).abs().mean().item<float>(), 0.01f);  // two views differ
  EXPECT_TRUE(torch::equal(a, a2));                       // same seed, same views
  vicreg::apps::AugmentOptions small;
  small.size = 20;
  const auto s = vicreg::apps::augment(x, g1, small);
  EXPECT_EQ(s.sizes(), (std::vector<int64_t>{16, 1, 20, 20}));
  EXPECT_GE(s.min().item<float>(), 0.0f);
  EXPECT_LE(s.max().item<float>(), 1.0f);
}

TEST(Probes, SeparableDataIsClassifiedAndCollapseIsDetected) {
  torch::manual_seed(1);
  const auto y = torch::randint(0, 3, {600});
  const auto x = torch::randn({600, 8}) * 0.3 + torch::one_hot(y, 3).repeat({1, 3}).narrow(1, 0, 8).to(torch::kFloat) * 3;
  EXPECT_GT(vicreg::apps::linear_probe(x.narrow(0, 0, 400), y.narrow(0, 0, 400),
                                       x.narrow(0, 400, 200), y.narrow(0, 400, 200))
                .accuracy,
            95.0);
  EXPECT_GT(vicreg::apps::knn_accuracy(x.narrow(0, 0, 400), y.narrow(0, 0, 400),
                                       x.narrow(0, 400, 200), y.narrow(0, 400, 200), 5),
            95.0);
  const auto collapsed = torch::ones({100, 4}) * 5 + torch::randn({100, 4}) * 1e-4;
  EXPECT_EQ(vicreg::apps::spread_stats(collapsed).collapsed, 1.0);
  EXPECT_EQ(vicreg::apps::spread_stats(x).collapsed, 0.0);
}

// The probe's fit is a converged logistic regression: at its solution the gradient of
// mean cross-entropy + l2/2 ||W||^2, written out here in double precision (softmax minus one-hot,
// averaged over rows, plus l2 W), is near zero; and the penalty is chosen from the grid.
TEST(Probes, LogisticFitReachesTheOptimumOfItsObjective) {
  torch::manual_seed(2);
  const int64_t n = 500, d = 6, classes = 3;
  const auto y = torch::randint(0, classes, {n});
  const auto x = torch::randn({n, d}) + torch::one_hot(y, d).to(torch::kFloat) * 1.5;
  for (double l2 : {1e-3, 1e-1}) {
    int64_t evals = 0;
    const auto [w, b] = vicreg::apps::fit_logistic(x, y, classes, l2, 500, &evals);
    EXPECT_EQ(w.sizes(), (std::vector<int64_t>{d, classes}));
    const auto xd = x.to(torch::kDouble), wd = w.to(torch::kDouble), bd = b.to(torch::kDouble);
    const auto logits = xd.mm(wd) + bd;
    const auto p = (logits - std::get<0>(logits.max(1, true))).exp();
    const auto r = p / p.sum(1, true) - torch::one_hot(y, classes).to(torch::kDouble);
    const auto gw = xd.t().mm(r) / n + l2 * wd;
    const auto gb = r.mean(0);
    EXPECT_LT(gw.abs().max().item<double>(), 1e-4) << "l2 " << l2 << ", " << evals << " evals";
    EXPECT_LT(gb.abs().max().item<double>(), 1e-4) << "l2 " << l2;
    EXPECT_GT(evals, 1);
  }
  vicreg::apps::ProbeOptions o;
  o.l2_grid = {1e-4, 1e3};  // the huge penalty pins W near 0: held-out accuracy near chance
  const auto r = vicreg::apps::linear_probe(x.narrow(0, 0, 400), y.narrow(0, 0, 400),
                                            x.narrow(0, 400, 100), y.narrow(0, 400, 100), o);
  EXPECT_DOUBLE_EQ(r.l2, 1e-4 * 334 / 400);  // chosen on 334 fitted rows, rescaled to 400
  EXPECT_GT(r.val_accuracy, 60.0);
  EXPECT_THROW(vicreg::apps::fit_logistic(x, y.narrow(0, 0, 10), classes, 0.1, 10), c10::Error);
  EXPECT_THROW(vicreg::apps::fit_logistic(x, y, classes, -1.0, 10), c10::Error);
  o.holdout = 1.5;
  EXPECT_THROW(vicreg::apps::linear_probe(x, y, x, y, o), c10::Error);
}

const std::string kData = "/usr/share/datasets/fashion-mnist";

bool have_data() { return fs::exists(fs::path(kData) / "train-images-idx3-ubyte.gz"); }

std::string read_text(const fs::path& p) {
  std::ifstream f(p);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Runs vicreg_train with `args`, stdout and stderr into one log as a user's `> log 2>&1`.
struct TrainerRun {
  int status = 0;
  std::string log;
};
TrainerRun run_trainer(const std::string& args, const fs::path& log) {
  const std::string cmd =
      std::string(VICREG_TRAIN_BINARY) + " " + args + " > " + log.string() + " 2>&1";
  TrainerRun r;
  r.status = std::system(cmd.c_str());
  r.log = read_text(log);
  return r;
}

TEST(Trainer, SmokeRunOnATinySubsetWritesItsOutputs) {
  if (!have_data()) {
    GTEST_SKIP() << "Fashion-MNIST not found in " << kData
                 << ": install Debian's dataset-fashion-mnist to run the trainer smoke test";
  }
  const auto out = scratch() / "smoke";
  fs::create_directories(out);
  const auto run = run_trainer(
      "--train-subset 256 --test-subset 128 --batch-size 64 --max-steps 3 --probe-iters 20"
      " --proj-dims 64,64 --threads 2 --out-dir " + out.string(),
      out.string() + ".log");
  ASSERT_EQ(run.status, 0) << run.log;
  for (const char* f : {"metrics.csv", "results.json", "table.md", "std_sorted.csv",
                        "encoder.pt", "projector.pt"}) {
    EXPECT_TRUE(fs::exists(out / f)) << f;
  }
  std::ifstream csv(out / "metrics.csv");
  std::string header, line;
  std::getline(csv, header);
  EXPECT_EQ(header, "step,epoch,loss,invariance,variance,covariance,images_per_s,lr");
  int rows = 0;
  while (std::getline(csv, line)) {
    ++rows;
    const double loss = std::stod(line.substr(line.find(',', line.find(',') + 1) + 1));
    EXPECT_TRUE(std::isfinite(loss)) << line;
  }
  EXPECT_EQ(rows, 3);
  // In one log, the headers come before the progress lines, which show elapsed time and ETA;
  // the evaluation reports its progress; 3 steps are too few to call the embeddings collapsed.
  const auto header_at = run.log.find("data: 256 train / 128 test images");
  const auto progress_at = run.log.find("\n[");
  ASSERT_NE(header_at, std::string::npos) << run.log;
  ASSERT_NE(progress_at, std::string::npos) << run.log;
  EXPECT_LT(header_at, progress_at) << run.log;
  EXPECT_NE(run.log.find("elapsed, ETA"), std::string::npos) << run.log;
  EXPECT_NE(run.log.find("evaluating VICReg encoder (1/3): linear probe"), std::string::npos)
      << run.log;
  EXPECT_EQ(run.log.find("COLLAPSE"), std::string::npos) << run.log;
  EXPECT_NE(run.log.find("dims < 1% RMS: share of dimensions"), std::string::npos) << run.log;
  const auto json = nlohmann::json::parse(read_text(out / "results.json"));
  EXPECT_EQ(json["config"]["steps"], 3);
  ASSERT_EQ(json["results"].size(), 3u) << json.dump(2);
  for (const auto& r : json["results"]) {
    for (const char* key : {"features", "linear_probe", "probe_l2", "knn", "repr_mean_std",
                            "repr_collapsed"}) {
      EXPECT_TRUE(r.contains(key)) << key << " in " << r.dump();
    }
    // Accuracies and collapsed shares are both percentages.
    EXPECT_GE(r["repr_collapsed"].get<double>(), 0.0);
    EXPECT_LE(r["repr_collapsed"].get<double>(), 100.0);
    EXPECT_GT(r["linear_probe"].get<double>(), 1.0) << r.dump();
  }
  EXPECT_TRUE(json["results"][0].contains("embed_collapsed"));
  EXPECT_FALSE(json["results"][2].contains("embed_collapsed"));  // raw pixels: no projector

  // A second run evaluates the checkpoint without training, with the supervised reference row.
  const auto eval = run_trainer(
      "--train-subset 256 --test-subset 128 --probe-iters 20 --batch-size 64"
      " --supervised-steps 6 --proj-dims 64,64 --eval-only --resume " + out.string() +
          " --out-dir " + (out / "eval").string(),
      out.string() + ".eval.log");
  ASSERT_EQ(eval.status, 0) << eval.log;
  const auto ej = nlohmann::json::parse(read_text(out / "eval" / "results.json"));
  ASSERT_EQ(ej["results"].size(), 4u) << ej.dump(2);
  EXPECT_EQ(ej["results"][3]["features"], "supervised encoder");
  const double acc = ej["results"][3]["linear_probe"].get<double>();
  EXPECT_GT(acc, 10.0) << ej.dump(2);  // above chance on 10 classes
  EXPECT_LE(acc, 100.0) << ej.dump(2);
  EXPECT_EQ(ej["config"]["supervised_steps"], 6);
  EXPECT_EQ(ej["config"]["steps"], 0);
}

// A mistake on the command line costs one line (and CLI11's hint), no C++ backtrace, and a
// non-zero exit; ranges read as people write them.
TEST(Trainer, BadOptionsExitNonZeroWithOneLine) {
  const auto dir = scratch() / "cli";
  fs::create_directories(dir);
  std::vector<std::pair<std::string, std::string>> cases = {
      {"--knn-k 0", "--knn-k: must be an integer in [1, 1000], got '0'"},
      {"--epochs 0", "--epochs: must be an integer in [1, 1000], got '0'"},
      {"--lr 5", "--lr: must be a number in [1e-07, 1], got '5'"},
      {"--min-scale 0", "--min-scale: must be a number in [0.01, 1], got '0'"},
      {"--batch-size 1", "--batch-size: must be an integer in [2, 65536], got '1'"},
      {"--seed -1", "--seed: must be an integer >= 0, got '-1'"},
      {"--proj-dims 64,x", "--proj-dims: must be 1 to 8 comma-separated sizes"},
      {"--encoder-widths 8,8,8,8", "--encoder-widths: must be 1 to 3 comma-separated sizes"},
      {"--eval-only", "--eval-only requires --resume"},
      {"--no-such-option", "--no-such-option"},
      {"--data-dir /nonexistent", "install Debian's dataset-fashion-mnist"},
  };
  if (have_data()) {
    cases.push_back({"--train-subset 100 --batch-size 128",
                     "--batch-size 128 is larger than the 100 training images"});
  }
  for (const auto& [args, expected] : cases) {
    const auto r = run_trainer(args + " --out-dir " + (dir / "out").string(), dir / "log");
    EXPECT_NE(r.status, 0) << args;
    EXPECT_NE(r.log.find(expected), std::string::npos) << args << ":\n" << r.log;
    EXPECT_EQ(r.log.find("Exception raised from"), std::string::npos) << args << ":\n" << r.log;
    EXPECT_EQ(r.log.find("frame #"), std::string::npos) << args << ":\n" << r.log;
    const auto lines = std::count(r.log.begin(), r.log.end(), '\n');
    EXPECT_LE(lines, 2) << args << ":\n" << r.log;  // the message, and CLI11's --help hint
  }
}

}  // namespace
