// The training program's pieces: the IDX reader on good files made here (malformed ones are
// rows of test_catalogue.cpp), the augmentation pipeline, and a smoke run of vicreg_train on
// a tiny subset.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

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

TEST(Trainer, SmokeRunOnATinySubsetWritesItsOutputs) {
  const std::string data = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(fs::path(data) / "train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "Fashion-MNIST not found in " << data
                 << ": install Debian's dataset-fashion-mnist to run the trainer smoke test";
  }
  const auto out = scratch() / "smoke";
  const std::string cmd = std::string(VICREG_TRAIN_BINARY) +
                          " --train-subset 256 --test-subset 128 --batch-size 64 --max-steps 3"
                          " --probe-iters 20 --proj-dims 64,64 --threads 2 --out-dir " +
                          out.string() + " > " + (out.string() + ".log") + " 2>&1";
  fs::create_directories(out);
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "see " << out.string() << ".log";
  for (const char* f : {"metrics.csv", "results.json", "table.md", "std_sorted.csv",
                        "encoder.pt", "projector.pt"}) {
    EXPECT_TRUE(fs::exists(out / f)) << f;
  }
  std::ifstream csv(out / "metrics.csv");
  std::string header, line;
  std::getline(csv, header);
  int rows = 0;
  while (std::getline(csv, line)) {
    ++rows;
    const double loss = std::stod(line.substr(line.find(',', line.find(',') + 1) + 1));
    EXPECT_TRUE(std::isfinite(loss)) << line;
  }
  EXPECT_EQ(rows, 3);
  // A second run evaluates the checkpoint without training, with the supervised reference row.
  const std::string eval_cmd = std::string(VICREG_TRAIN_BINARY) +
                               " --train-subset 256 --test-subset 128 --probe-iters 20"
                               " --batch-size 64 --supervised-steps 6 --proj-dims 64,64"
                               " --eval-only --resume " + out.string() +
                               " --out-dir " + (out / "eval").string() + " > /dev/null 2>&1";
  ASSERT_EQ(std::system(eval_cmd.c_str()), 0);
  std::ifstream js(out / "eval" / "results.json");
  const std::string json((std::istreambuf_iterator<char>(js)), std::istreambuf_iterator<char>());
  const std::string key = "\"features\": \"supervised encoder\", \"linear_probe\": ";
  const auto at = json.find(key);
  ASSERT_NE(at, std::string::npos) << json;
  const double acc = std::stod(json.substr(at + key.size()));
  EXPECT_GT(acc, 10.0) << json;  // above chance on 10 classes
  EXPECT_LE(acc, 100.0) << json;
  EXPECT_NE(json.find("\"supervised_steps\": 6"), std::string::npos) << json;
}

}  // namespace
