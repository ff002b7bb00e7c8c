// The training program's pieces: the IDX reader on good files made here (malformed ones are
// rows of test_catalogue.cpp), the augmentation pipeline, and a smoke run of vicreg_train on
// a tiny subset.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

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
  EXPECT_GT(vicreg::apps::linear_probe_accuracy(x.narrow(0, 0, 400), y.narrow(0, 0, 400),
                                                x.narrow(0, 400, 200), y.narrow(0, 400, 200)),
            95.0);
  EXPECT_GT(vicreg::apps::knn_accuracy(x.narrow(0, 0, 400), y.narrow(0, 0, 400),
                                       x.narrow(0, 400, 200), y.narrow(0, 400, 200), 5),
            95.0);
  const auto collapsed = torch::ones({100, 4}) * 5 + torch::randn({100, 4}) * 1e-4;
  EXPECT_EQ(vicreg::apps::spread_stats(collapsed).collapsed, 1.0);
  EXPECT_EQ(vicreg::apps::spread_stats(x).collapsed, 0.0);
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
                          " --probe-epochs 1 --proj-dims 64,64 --threads 2 --out-dir " +
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
  // A second run evaluates the checkpoint without training.
  const std::string eval_cmd = std::string(VICREG_TRAIN_BINARY) +
                               " --train-subset 256 --test-subset 128 --probe-epochs 1"
                               " --proj-dims 64,64 --eval-only --resume " + out.string() +
                               " --out-dir " + (out / "eval").string() + " > /dev/null 2>&1";
  EXPECT_EQ(std::system(eval_cmd.c_str()), 0);
  EXPECT_TRUE(fs::exists(out / "eval" / "results.json"));
}

}  // namespace
