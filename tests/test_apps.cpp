// The training program's pieces: the IDX reader on good files made here (malformed ones are
// rows of test_catalogue.cpp), the augmentation pipeline, and a smoke run of vicreg_train on
// a tiny subset, and its command-line errors.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "checkpoint.h"
#include "data.h"
#include "eval.h"
#include "files.h"
#include "idx_files.h"
#include "int_list.h"

namespace fs = std::filesystem;

namespace {

using vicreg::testing::idx_bytes;
using vicreg::testing::write_gz;

fs::path scratch() { return vicreg::testing::scratch_dir("apps"); }

// ---- The readers' bad inputs ------------------------------------------------------------

// The bad-input catalogue of the programs' readers (the library's is test_catalogue.cpp): each
// row must end in a c10::Error whose message contains the words.
struct Row {
  std::string what;            // the invalid input, in words
  std::function<void()> call;  // must throw c10::Error
  std::string needle;          // ... whose message contains this
};

std::vector<Row> reader_rows() {
  std::vector<Row> rows;
  const auto dir = scratch() / "catalogue";
  fs::create_directories(dir);
  auto read = [dir](const std::string& name) {
    return [p = (dir / name).string()] { vicreg::apps::read_idx_gz(p); };
  };
  write_gz(dir / "magic.gz", {1, 2, 8, 1, 0, 0, 0, 1, 9});
  rows.push_back({"IDX: wrong magic number", read("magic.gz"), "wrong magic number"});
  rows.push_back({"IDX: the error names the file", read("magic.gz"), "magic.gz"});
  write_gz(dir / "type.gz", idx_bytes({4}, 4, 0x0D));
  rows.push_back({"IDX: element type other than ubyte", read("type.gz"), "type 0x08"});
  write_gz(dir / "ndim0.gz", idx_bytes({}, 0));
  rows.push_back({"IDX: 0 dims", read("ndim0.gz"), "expected 1 to 4 dims, got 0"});
  write_gz(dir / "ndim5.gz", idx_bytes({1, 1, 1, 1, 1}, 1));
  rows.push_back({"IDX: 5 dims", read("ndim5.gz"), "expected 1 to 4 dims, got 5"});
  write_gz(dir / "zero.gz", idx_bytes({3, 0}, 0));
  rows.push_back({"IDX: a dim of size 0", read("zero.gz"), "dim 1 has size 0"});
  write_gz(dir / "huge.gz", idx_bytes({1u << 30, 1u << 30}, 0));
  rows.push_back({"IDX: implausibly large header", read("huge.gz"), "implausibly large"});
  write_gz(dir / "claims.gz", idx_bytes({1u << 20, 64}, 16));
  rows.push_back({"IDX: header declares more data than the file can hold", read("claims.gz"),
                  "more than a gzip file of"});
  write_gz(dir / "short.gz", idx_bytes({10, 10}, 99));
  rows.push_back({"IDX: truncated data", read("short.gz"), "truncated"});
  write_gz(dir / "header.gz", {0, 0, 8, 3, 0, 0});
  rows.push_back({"IDX: truncated header", read("header.gz"), "truncated"});
  write_gz(dir / "long.gz", idx_bytes({10}, 11));
  rows.push_back({"IDX: more data than the header declares", read("long.gz"), "size mismatch"});
  std::ofstream(dir / "plain.idx", std::ios::binary) << std::string("\0\0\x08\x01", 4);
  rows.push_back({"IDX: not gzip-compressed", read("plain.idx"), "not a gzip file"});
  {
    // A gzip stream cut in the middle: zlib reports the corruption.
    write_gz(dir / "whole.gz", idx_bytes({4000}, 4000));
    std::ifstream in(dir / "whole.gz", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(dir / "cut.gz", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  rows.push_back({"IDX: gzip stream cut short", read("cut.gz"), "cut.gz"});
  rows.push_back({"IDX: missing file", read("missing.gz"), "cannot open"});
  const auto set = dir / "set";
  fs::create_directories(set);
  write_gz(set / "train-images-idx3-ubyte.gz", idx_bytes({5, 28, 28}, 5 * 28 * 28));
  write_gz(set / "train-labels-idx1-ubyte.gz", idx_bytes({4}, 4));
  write_gz(set / "flat-images-idx3-ubyte.gz", idx_bytes({5, 784}, 5 * 784));
  write_gz(set / "flat-labels-idx1-ubyte.gz", idx_bytes({5}, 5));
  write_gz(set / "lab2-images-idx3-ubyte.gz", idx_bytes({5, 28, 28}, 5 * 28 * 28));
  write_gz(set / "lab2-labels-idx1-ubyte.gz", idx_bytes({5, 2}, 10));
  rows.push_back({"MNIST set: images and labels differ in count",
                  [s = set.string()] { vicreg::apps::load_mnist_format(s, "train"); },
                  "has 5 images but"});
  rows.push_back({"MNIST set: images not [N, H, W]",
                  [s = set.string()] { vicreg::apps::load_mnist_format(s, "flat"); },
                  "should hold [N, H, W] images"});
  rows.push_back({"MNIST set: labels not [N]",
                  [s = set.string()] { vicreg::apps::load_mnist_format(s, "lab2"); },
                  "should hold [N] labels"});
  rows.push_back({"augment: images not [B, C, H, W]", [] {
                    auto g = at::make_generator<at::CPUGeneratorImpl>(1);
                    vicreg::apps::augment(torch::rand({28, 28}), g);
                  }, "[B, C, H, W]"});
  rows.push_back({"augment: negative output size", [] {
                    auto g = at::make_generator<at::CPUGeneratorImpl>(1);
                    vicreg::apps::AugmentOptions o;
                    o.size = -1;
                    vicreg::apps::augment(torch::rand({2, 1, 28, 28}), g, o);
                  }, "output size >= 0"});
  return rows;
}


TEST(ReaderCatalogue, EveryInvalidInputEndsInAClearError) {
  const auto rows = reader_rows();
  std::printf("reader catalogue: %zu rows\n", rows.size());
  for (const auto& r : rows) {
    SCOPED_TRACE(r.what);
    try {
      r.call();
      ADD_FAILURE() << "expected a c10::Error mentioning '" << r.needle << "'";
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find(r.needle), std::string::npos) << e.what();
    }
  }
}

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
  EXPECT_EQ(vicreg::apps::spread_stats(collapsed).collapsed_pct, 100.0);
  EXPECT_EQ(vicreg::apps::spread_stats(x).collapsed_pct, 0.0);
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

// The few-label draws: k rows of every class per draw, none of them a validation row, nested
// across k (draw j at k = 1 is part of draw j at k = 5), the same for the same seed (so every
// feature set of a run sees the same images) and different for another seed or draw.
TEST(FewLabel, DrawsArePerClassNestedDisjointFromValidationAndSeeded) {
  torch::manual_seed(3);
  const auto y = torch::arange(900).remainder(3).index_select(0, torch::randperm(900));
  vicreg::apps::FewLabelOptions o;
  o.ks = {1, 5};
  o.draws = 3;
  o.val_rows = 100;
  const auto p = vicreg::apps::plan_few_label(y, o);
  ASSERT_EQ(p.draws.size(), 2u);
  ASSERT_EQ(p.val_idx.size(0), 100);
  auto in_val = torch::zeros({900}, torch::kBool);
  in_val.index_fill_(0, p.val_idx, true);
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(p.draws[i].size(), 3u);
    for (const auto& d : p.draws[i]) {
      EXPECT_EQ(d.size(0), 3 * o.ks[i]);
      EXPECT_EQ(std::get<0>(at::_unique(d)).size(0), d.size(0));  // no row twice
      EXPECT_FALSE(in_val.index_select(0, d).any().item<bool>());
      EXPECT_TRUE(torch::equal(torch::bincount(y.index_select(0, d), {}, 3),
                               torch::full({3}, o.ks[i], torch::kLong)));
    }
  }
  for (int j = 0; j < 3; ++j) {
    EXPECT_TRUE(torch::isin(p.draws[0][j], p.draws[1][j]).all().item<bool>()) << j;
  }
  EXPECT_FALSE(torch::equal(p.draws[1][0], p.draws[1][1]));
  const auto again = vicreg::apps::plan_few_label(y, o);
  EXPECT_TRUE(torch::equal(again.val_idx, p.val_idx));
  for (size_t i = 0; i < 2; ++i) {
    for (int j = 0; j < 3; ++j) EXPECT_TRUE(torch::equal(again.draws[i][j], p.draws[i][j]));
  }
  o.seed = 1;
  EXPECT_FALSE(torch::equal(vicreg::apps::plan_few_label(y, o).draws[1][0], p.draws[1][0]));
  o.ks = {400};  // 300 rows per class
  try {
    vicreg::apps::plan_few_label(y, o);
    ADD_FAILURE() << "expected an error for 400 labels per class out of 300";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("400 labelled images per class"),
              std::string::npos)
        << e.what_without_backtrace();
  }
}

// 1-NN by cosine similarity equals a nearest neighbour found by hand with plain loops.
TEST(FewLabel, NearestNeighbourIsTheHandComputedOne) {
  torch::manual_seed(4);
  const auto xtr = torch::randn({7, 4}), xte = torch::randn({40, 4});
  const auto ytr = torch::arange(7).remainder(3), yte = torch::randint(0, 3, {40});
  int correct = 0;
  for (int64_t i = 0; i < 40; ++i) {
    double best = -2;
    int64_t arg = -1;
    for (int64_t j = 0; j < 7; ++j) {
      double dot = 0, na = 0, nb = 0;
      for (int64_t d = 0; d < 4; ++d) {
        const double a = xte[i][d].item<double>(), b = xtr[j][d].item<double>();
        dot += a * b;
        na += a * a;
        nb += b * b;
      }
      const double cos = dot / std::sqrt(na * nb);
      if (cos > best) {
        best = cos;
        arg = j;
      }
    }
    correct += ytr[arg].item<int64_t>() == yte[i].item<int64_t>();
  }
  EXPECT_DOUBLE_EQ(vicreg::apps::nearest_neighbour_accuracy(xtr, ytr, xte, yte),
                   100.0 * correct / 40);
}

// On features that separate the classes, one labelled image per class is enough: every draw
// scores 100% with the probe and with 1-NN. The penalty is chosen on validation rows: the test
// labels do not change it. On noise, the probe is near chance.
TEST(FewLabel, SeparableFeaturesScoreFullAndThePenaltyIgnoresTheTestSet) {
  torch::manual_seed(5);
  const int64_t classes = 4;
  const auto ytr = torch::arange(800).remainder(classes), yte = torch::randint(0, classes, {200});
  auto features = [&](const torch::Tensor& y) {
    return torch::one_hot(y, classes).to(torch::kFloat) * 4 + torch::randn({y.size(0), classes}) * 0.1;
  };
  const auto xtr = features(ytr), xte = features(yte);
  vicreg::apps::FewLabelOptions o;
  o.ks = {1, 3};
  o.draws = 4;
  o.val_rows = 100;
  o.max_iter = 50;
  const auto plan = vicreg::apps::plan_few_label(ytr, o);
  const auto scores = vicreg::apps::few_label_eval(xtr, ytr, xte, yte, plan, o);
  ASSERT_EQ(scores.size(), 2u);
  for (const auto& s : scores) {
    ASSERT_EQ(s.linear.size(), 4u);
    ASSERT_EQ(s.knn.size(), 4u);
    EXPECT_DOUBLE_EQ(s.linear_mean, 100.0) << "k " << s.k;
    EXPECT_DOUBLE_EQ(s.linear_std, 0.0) << "k " << s.k;
    EXPECT_DOUBLE_EQ(s.knn_mean, 100.0) << "k " << s.k;
    EXPECT_DOUBLE_EQ(s.val_accuracy, 100.0) << "k " << s.k;
  }
  const auto shuffled = yte.index_select(0, torch::randperm(200));
  const auto noise_tr = torch::randn({800, 6}), noise_te = torch::randn({200, 6});
  const auto a = vicreg::apps::few_label_eval(noise_tr, ytr, noise_te, yte, plan, o);
  const auto b = vicreg::apps::few_label_eval(noise_tr, ytr, noise_te, shuffled, plan, o);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].l2, b[i].l2);
    EXPECT_EQ(a[i].val_accuracy, b[i].val_accuracy);
    EXPECT_LT(a[i].linear_mean, 50.0);  // chance is 25%
  }
  const auto [m, sd] = vicreg::apps::mean_std({1.0, 2.0, 3.0, 6.0});
  EXPECT_DOUBLE_EQ(m, 3.0);
  EXPECT_DOUBLE_EQ(sd, std::sqrt(14.0 / 3));  // sample std, n-1
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

// The one parser of the list options: decimal integers, nothing around them.
TEST(IntList, TakesDecimalListsWithinTheRuleAndNothingElse) {
  using vicreg::apps::IntListRule;
  using vicreg::apps::parse_int_list;
  const IntListRule sizes{1, 65536, 3, "sizes"}, counts{1, 6000, 8, "counts", "0"};
  EXPECT_EQ(parse_int_list("16,32,64", sizes), (std::vector<int64_t>{16, 32, 64}));
  EXPECT_EQ(parse_int_list("010", sizes), (std::vector<int64_t>{10}));  // not octal
  EXPECT_EQ(parse_int_list("+5", sizes), (std::vector<int64_t>{5}));
  EXPECT_EQ(parse_int_list("0", counts), (std::vector<int64_t>{}));  // the off value
  for (const char* bad : {"", ",", "64,", ",64", "64,,64", " 64", "64 ", "\t5", "0x10", "1e3",
                          "6.5", "-", "0", "65537", "1,2,3,4", "99999999999999999999"}) {
    EXPECT_FALSE(parse_int_list(bad, sizes)) << "'" << bad << "'";
  }
  EXPECT_FALSE(parse_int_list("0,10", counts));  // "0" stands alone
  EXPECT_EQ(vicreg::apps::describe(counts), "0 or 1 to 8 comma-separated counts in [1, 6000]");
  EXPECT_EQ(vicreg::apps::describe(vicreg::apps::kSeeds),
            "1 to 16 comma-separated integers >= 0");
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
      " --proj-dims 64,64 --encoder-widths 16,32,64 --threads 2 --few-label-k 1,3"
      " --few-label-draws 2 --out-dir " +
          out.string(),
      out.string() + ".log");
  ASSERT_EQ(run.status, 0) << run.log;
  for (const char* f : {"metrics.csv", "results.json", "table.md", "std_sorted.csv",
                        "curve.csv", "pca.csv", "few_label.csv", "encoder.pt", "projector.pt"}) {
    EXPECT_TRUE(fs::exists(out / f)) << f;
  }
  // few_label.csv: a row per count, the three rows' means and stds; std_sorted.csv: a row per
  // dimension of the wider of embedding (64) and representation (64 x 2 x 2).
  auto lines_of = [](const fs::path& p) {
    const auto text = read_text(p);
    return std::count(text.begin(), text.end(), '\n');
  };
  EXPECT_EQ(lines_of(out / "few_label.csv"), 1 + 2);
  const auto few = read_text(out / "few_label.csv");
  EXPECT_EQ(few.substr(0, few.find('\n')),
            "labels_per_class,vicreg,vicreg_std,random_init,random_init_std,raw_pixels,"
            "raw_pixels_std");
  EXPECT_EQ(lines_of(out / "std_sorted.csv"), 1 + 256);
  // The pictures, drawn from the filled-in template, wherever gnuplot is installed.
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    EXPECT_EQ(run.log.find("gnuplot failed"), std::string::npos) << run.log;
    EXPECT_EQ(read_text(out / "plots.gp").find("{{"), std::string::npos);
    for (const char* f : {"loss.png", "std.png", "learning_curve.png", "few_label.png",
                          "pca.png"}) {
      EXPECT_TRUE(fs::exists(out / f) && fs::file_size(out / f) > 1000) << f;
    }
  }
  std::ifstream csv(out / "metrics.csv");
  std::string header, line;
  std::getline(csv, header);
  EXPECT_EQ(header, "step,epoch,loss,invariance,variance,covariance,images_per_s,lr,knn_curve");
  int rows = 0;
  while (std::getline(csv, line)) {
    ++rows;
    const double loss = std::stod(line.substr(line.find(',', line.find(',') + 1) + 1));
    EXPECT_TRUE(std::isfinite(loss)) << line;
    // The learning curve's k-NN accuracy on its rows (the last step with --max-steps 3), else
    // an empty field.
    const auto knn = line.substr(line.rfind(',') + 1);
    if (rows < 3) {
      EXPECT_EQ(knn, "") << line;
    } else {
      EXPECT_GT(std::stod(knn), 10.0) << line;
    }
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
  // Few labels: one entry per feature set (in the table's order) and k.
  ASSERT_EQ(json["few_label"].size(), 6u) << json.dump(2);
  const char* names[] = {"VICReg encoder", "random-init encoder", "raw pixels"};
  for (size_t i = 0; i < 6; ++i) {
    const auto& e = json["few_label"][i];
    EXPECT_EQ(e["features"].get<std::string>(), names[i / 2]) << e.dump();
    EXPECT_EQ(e["labels_per_class"], i % 2 == 0 ? 1 : 3) << e.dump();
    EXPECT_EQ(e["draws"], 2) << e.dump();
    for (const char* key : {"linear_mean", "linear_std", "knn_mean", "knn_std"}) {
      ASSERT_TRUE(e.contains(key)) << key << " in " << e.dump();
      EXPECT_GE(e[key].get<double>(), 0.0) << key;
      EXPECT_LE(e[key].get<double>(), 100.0) << key;
    }
  }
  EXPECT_NE(run.log.find("| 3 | raw pixels |"), std::string::npos) << run.log;
  EXPECT_NE(read_text(out / "table.md").find("| 1 | VICReg encoder |"), std::string::npos);
  // The learning curve (step 0 and the last step), the loss's cost and the verdict.
  const auto& curve = json["learning_curve"];
  ASSERT_EQ(curve["points"].size(), 2u) << curve.dump();
  EXPECT_EQ(curve["points"][0]["step"], 0);
  EXPECT_EQ(curve["points"][1]["step"], 3);
  EXPECT_EQ(curve["memory_images"], 256);
  EXPECT_EQ(curve["test_images"], 128);
  // At step 0 the encoder is its random init: the same k-NN as the reference line.
  EXPECT_EQ(curve["points"][0]["knn"], curve["random_init_knn"]);
  EXPECT_GT(json["loss_cost"]["fused_ms"].get<double>(), 0.0);
  EXPECT_GT(json["loss_cost"]["autograd_ms"].get<double>(), 0.0);
  EXPECT_GT(json["loss_cost"]["step_ms"].get<double>(), json["loss_cost"]["fused_ms"].get<double>());
  EXPECT_NE(run.log.find("loss cost: "), std::string::npos) << run.log;
  EXPECT_EQ(json["verdict"].get<std::string>().rfind("verdict: VICReg encoder vs random-init encoder: ", 0), 0u)
      << json["verdict"];
  EXPECT_NE(run.log.find(json["verdict"].get<std::string>()), std::string::npos) << run.log;
  // The margins as numbers: the trained row's accuracy minus each baseline's.
  const auto& res = json["results"];
  for (int r : {1, 2}) {
    const auto& m = json["margins"][res[r]["features"].get<std::string>()];
    EXPECT_NEAR(m["all_labels"].get<double>(),
                res[0]["linear_probe"].get<double>() - res[r]["linear_probe"].get<double>(), 2e-4)
        << json["margins"].dump();
    ASSERT_EQ(m["few_labels"].size(), 2u) << json["margins"].dump();
    EXPECT_EQ(m["few_labels"][1]["labels_per_class"], 3);
  }

  // A second run evaluates the checkpoint without training, with the supervised reference row.
  const auto eval = run_trainer(
      "--train-subset 256 --test-subset 128 --probe-iters 20 --batch-size 64 --few-label-k 2"
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
  ASSERT_EQ(ej["few_label"].size(), 4u) << ej.dump(2);  // the supervised encoder too
  EXPECT_EQ(ej["few_label"][3]["features"], "supervised encoder");
  EXPECT_FALSE(ej.contains("learning_curve"));  // nothing trained
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
      {"--epoch 2", "--epoch; did you mean --epochs?"},
      {"--data-dir /nonexistent", "install Debian's dataset-fashion-mnist"},
      {"--few-label-k 1,x",
       "--few-label-k: must be 0 or 1 to 8 comma-separated counts in [1, 6000], got '1,x'"},
      {"--few-label-draws 0", "--few-label-draws: must be an integer in [1, 100], got '0'"},
      {"--curve-every -5", "--curve-every: must be an integer in [0, 1000000000], got '-5'"},
      {"--seeds 0,-1", "--seeds: must be 1 to 16 comma-separated integers >= 0"},
      {"--seeds 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16",
       "--seeds: must be 1 to 16 comma-separated integers >= 0, got '0,1,2,3,4,5,6,7,8,9,10,"},
      {"--seeds 0x10", "--seeds: must be 1 to 16 comma-separated integers >= 0, got '0x10'"},
      {"--proj-dims 64,,64", "--proj-dims: must be 1 to 8 comma-separated sizes"},
  };
  if (have_data()) {
    cases.push_back({"--train-subset 100 --batch-size 128",
                     "--batch-size 128 is larger than the 100 training images"});
    // Before training, not after it.
    cases.push_back({"--train-subset 1000 --few-label-k 600",
                     "600 labelled images per class need 600 training images of each class"});
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

// --seeds runs once per seed (read as decimal: 010 is seed 10) into its own directory, then
// writes the margins' spread.
TEST(Trainer, SeedsRunOncePerDecimalSeedIntoItsOwnDirectory) {
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not found in " << kData;
  const auto out = scratch() / "seeds";
  vicreg::testing::remove_tree(out);
  const auto run = run_trainer(
      "--seeds 010,2 --train-subset 256 --test-subset 128 --batch-size 64 --max-steps 2"
      " --probe-iters 5 --proj-dims 32,32 --threads 2 --few-label-k 1 --few-label-draws 1"
      " --curve-every 0 --out-dir " + out.string(),
      out.string() + ".log");
  ASSERT_EQ(run.status, 0) << run.log;
  EXPECT_NE(run.log.find("=== seed 10 -> "), std::string::npos) << run.log;
  EXPECT_NE(run.log.find("=== seed 2 -> "), std::string::npos) << run.log;
  for (const char* f : {"seed-10/results.json", "seed-2/results.json", "seeds.md"}) {
    EXPECT_TRUE(fs::exists(out / f)) << f;
  }
}

// ---- Checkpoints ----------------------------------------------------------------------------

// A small run's objects: a two-layer model with BatchNorm (parameters and buffers), Adam
// after two steps (moments in its state), and a generator.
struct SmallRun {
  torch::nn::Sequential model;
  std::unique_ptr<torch::optim::Adam> adam;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  vicreg::apps::RunState state;

  explicit SmallRun(int64_t hidden, at::ScalarType dtype = at::kFloat,
                    const std::string& settings = "--lr 0.001\n") {
    torch::manual_seed(3);
    model = torch::nn::Sequential(torch::nn::Linear(4, hidden), torch::nn::BatchNorm1d(hidden),
                                  torch::nn::Linear(hidden, 2));
    model->to(dtype);
    adam = std::make_unique<torch::optim::Adam>(model->parameters(),
                                                torch::optim::AdamOptions(1e-3));
    for (int i = 0; i < 2; ++i) {
      adam->zero_grad();
      model->forward(torch::randn({8, 4}, gen).to(dtype)).square().sum().backward();
      adam->step();
    }
    state.settings = settings;
    state.modules = {{"model", model.ptr().get()}};
    state.optimizer = adam.get();
    state.generators = {{"gen", gen}};
  }
  std::vector<at::Tensor> tensors() const {
    auto t = model->parameters();
    for (const auto& b : model->buffers()) t.push_back(b);
    return t;
  }
};

vicreg::apps::Resumed progress_at(int64_t steps) {
  vicreg::apps::Resumed r;
  r.progress.steps = steps;
  r.progress.order = at::arange(6);
  r.progress.sums = {1.5, 2.5};
  r.progress.count = 2;
  r.curve = {{0, 50.0}, {steps, 60.0}};
  return r;
}

void expect_equal(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i].equal(b[i])) << "tensor " << i;
}

// Saved, changed, loaded: every tensor, Adam's moments, the generator and the progress are
// back as saved, and the next Adam step and random draw are the ones the saved run takes.
TEST(Checkpoint, RestoresModelsOptimizerGeneratorAndProgressExactly) {
  const auto dir = scratch() / "ckpt_roundtrip";
  fs::create_directories(dir);
  SmallRun run(3);
  const auto saved = run.tensors();
  std::vector<at::Tensor> copies;
  for (const auto& t : saved) copies.push_back(t.detach().clone());
  vicreg::apps::save_checkpoint(dir, run.state, progress_at(5));
  // The saved run's next step and draw.
  SmallRun twin(3);
  twin.adam->zero_grad();
  twin.model->forward(torch::ones({8, 4})).square().sum().backward();
  twin.adam->step();
  const auto twin_draw = torch::randn({3}, twin.gen);

  // Another step and draw change everything; the checkpoint brings it back.
  run.adam->zero_grad();
  run.model->forward(torch::ones({8, 4})).sum().backward();
  run.adam->step();
  torch::randn({5}, run.gen);
  const auto r = vicreg::apps::load_checkpoint(vicreg::apps::checkpoint_file(dir), run.state);
  expect_equal(run.tensors(), copies);
  EXPECT_EQ(r.progress.steps, 5);
  EXPECT_TRUE(r.progress.order.equal(at::arange(6)));
  EXPECT_EQ(r.progress.sums, (std::vector<double>{1.5, 2.5}));
  EXPECT_EQ(r.progress.count, 2);
  ASSERT_EQ(r.curve.size(), 2u);
  EXPECT_EQ(r.curve[1].step, 5);
  EXPECT_EQ(r.curve[1].knn_pct, 60.0);
  run.adam->zero_grad();
  run.model->forward(torch::ones({8, 4})).square().sum().backward();
  run.adam->step();
  expect_equal(run.tensors(), twin.tensors());
  EXPECT_TRUE(torch::randn({3}, run.gen).equal(twin_draw));
}

// Other widths, another dtype or other settings: a one-line error that says what differs,
// and the run's objects untouched.
TEST(Checkpoint, RefusesAnotherRunsCheckpointBeforeChangingAnything) {
  const auto dir = scratch() / "ckpt_foreign";
  fs::create_directories(dir);
  SmallRun saved(3);
  vicreg::apps::save_checkpoint(dir, saved.state, progress_at(4));
  const auto file = vicreg::apps::checkpoint_file(dir);
  struct Case {
    std::unique_ptr<SmallRun> run;
    std::string expected;
  };
  std::vector<Case> cases;
  cases.push_back({std::make_unique<SmallRun>(5), "model 0.weight is Float [3, 4] there, Float [5, 4] here"});
  cases.push_back({std::make_unique<SmallRun>(3, at::kDouble), "model 0.weight is Float [3, 4] there, Double [3, 4] here"});
  cases.push_back({std::make_unique<SmallRun>(3, at::kFloat, "--lr 0.002\n"),
                   "other settings, refused; --lr 0.001 there, 0.002 here"});
  for (auto& c : cases) {
    const auto before = c.run->tensors();
    std::vector<at::Tensor> copies;
    for (const auto& t : before) copies.push_back(t.detach().clone());
    const auto draw_state = c.run->gen.get_state();
    try {
      vicreg::apps::load_checkpoint(file, c.run->state);
      ADD_FAILURE() << "loaded: " << c.expected;
    } catch (const c10::Error& e) {
      const std::string m = e.what_without_backtrace();
      EXPECT_NE(m.find(c.expected), std::string::npos) << m;
      EXPECT_EQ(std::count(m.begin(), m.end(), '\n'), 0) << m;
    }
    expect_equal(c.run->tensors(), copies);
    EXPECT_TRUE(c.run->gen.get_state().equal(draw_state));
  }
}

// A torn newest checkpoint (a crash of the disk mid-write; a killed writer leaves only the
// temporary file) is skipped, and the previous one is still there to load.
TEST(Checkpoint, ATornNewestCheckpointLeavesThePreviousOne) {
  const auto dir = scratch() / "ckpt_torn";
  fs::create_directories(dir);
  SmallRun run(3);
  vicreg::apps::save_checkpoint(dir, run.state, progress_at(3));
  vicreg::apps::save_checkpoint(dir, run.state, progress_at(6));
  auto found = vicreg::apps::checkpoints_in(dir);
  ASSERT_EQ(found.intact.size(), 2u);
  EXPECT_TRUE(found.damaged.empty());
  EXPECT_EQ(found.intact[0].first, 6);
  EXPECT_EQ(found.intact[1].first, 3);
  const auto newest = vicreg::apps::checkpoint_file(dir);
  fs::resize_file(newest, fs::file_size(newest) / 2);
  found = vicreg::apps::checkpoints_in(dir);
  ASSERT_EQ(found.intact.size(), 1u);
  EXPECT_EQ(found.intact[0].first, 3);
  ASSERT_EQ(found.damaged.size(), 1u);
  EXPECT_NE(found.damaged[0].find(newest.string()), std::string::npos) << found.damaged[0];
  EXPECT_EQ(vicreg::apps::load_checkpoint(found.intact[0].second, run.state).progress.steps, 3);
  EXPECT_THROW(vicreg::apps::load_checkpoint(newest, run.state), c10::Error);
}

// After a resume from checkpoint.prev.pt past a damaged checkpoint.pt, the next checkpoint
// replaces the damaged file and the intact previous one stays: two intact checkpoints again.
TEST(Checkpoint, ADamagedNewestIsNotRotatedOverTheIntactPrevious) {
  const auto dir = scratch() / "ckpt_rotate";
  fs::create_directories(dir);
  SmallRun run(3);
  vicreg::apps::save_checkpoint(dir, run.state, progress_at(3));
  vicreg::apps::save_checkpoint(dir, run.state, progress_at(6));
  const auto newest = vicreg::apps::checkpoint_file(dir);
  auto bytes = vicreg::apps::read_file(newest);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 1);
  vicreg::apps::write_file_atomically(newest, bytes);
  ASSERT_EQ(vicreg::apps::checkpoints_in(dir).intact.size(), 1u);
  vicreg::apps::save_checkpoint(dir, run.state, progress_at(9));
  const auto found = vicreg::apps::checkpoints_in(dir);
  ASSERT_EQ(found.intact.size(), 2u);
  EXPECT_TRUE(found.damaged.empty());
  EXPECT_EQ(found.intact[0].first, 9);
  EXPECT_EQ(found.intact[1].first, 3);
}

// ---- Checksums ------------------------------------------------------------------------------

// FIPS 180-2's examples, then every length around the 64-byte block and its 56-byte padding
// limit against coreutils' sha256sum, an implementation independent of ours.
TEST(Sha256, MatchesThePublishedVectorsAndSha256sum) {
  using vicreg::apps::sha256_hex;
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  if (std::system("command -v sha256sum > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "no sha256sum (coreutils) to compare with";
  }
  const auto file = scratch() / "sha_input";
  std::string bytes;
  for (size_t n : {1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4097}) {
    bytes.resize(n);
    for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<char>((i * 131 + n * 7) % 256);
    std::ofstream(file, std::ios::binary) << bytes;
    const auto out = scratch() / "sha_output";
    ASSERT_EQ(std::system(("sha256sum " + file.string() + " > " + out.string()).c_str()), 0);
    std::ifstream in(out);
    std::string theirs;
    in >> theirs;
    EXPECT_EQ(vicreg::apps::sha256_hex(bytes), theirs) << n << " bytes";
  }
}

// write_with_checksum's FILE.sha256 is what `sha256sum -c` reads, and checksum_mismatch tells
// a changed byte from none.
TEST(Sha256, ChecksumFilesAreSha256sumsFormat) {
  const auto dir = scratch() / "sums";
  fs::create_directories(dir);
  const auto file = dir / "model.pt";
  const std::string bytes(3000, 'x');
  vicreg::apps::write_with_checksum(file, bytes);
  EXPECT_FALSE(vicreg::apps::checksum_mismatch(file, bytes));
  auto changed = bytes;
  changed[1234] = 'y';
  const auto m = vicreg::apps::checksum_mismatch(file, changed);
  ASSERT_TRUE(m);
  EXPECT_NE(m->find(file.string()), std::string::npos) << *m;
  EXPECT_FALSE(fs::exists(dir / "model.pt.tmp"));
  if (std::system("command -v sha256sum > /dev/null 2>&1") == 0) {
    EXPECT_EQ(std::system(("cd " + dir.string() + " && sha256sum --quiet -c model.pt.sha256")
                              .c_str()),
              0);
  }
}

// A write that cannot happen (here: into a folder that is a file) leaves the old file as it
// was and no temporary file, and says what failed.
TEST(Files, AFailedWriteLeavesTheOldFile) {
  const auto dir = scratch() / "atomic";
  fs::create_directories(dir);
  const auto file = dir / "results.json";
  vicreg::apps::write_file_atomically(file, "old\n");
  vicreg::apps::write_file_atomically(file, "new\n");
  EXPECT_EQ(vicreg::apps::read_file(file), "new\n");
  fs::create_directories(dir / "results.json.tmp");  // the temporary file cannot be created
  try {
    vicreg::apps::write_file_atomically(file, "newer\n");
    ADD_FAILURE() << "wrote through a folder";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("results.json.tmp"), std::string::npos) << e.what();
  }
  EXPECT_EQ(vicreg::apps::read_file(file), "new\n");
}

// Damage anywhere in a checkpoint: a byte changed at offsets across the whole file (every
// byte of the checksum line, the first and last bytes, and one offset every few hundred), a
// block of 4 KiB random bytes, the file cut or a byte inserted. Each one is refused as
// damaged, naming the file, with the run's objects unchanged; none is loaded.
TEST(Checkpoint, DamageAnywhereIsDetectedAndChangesNothing) {
  const auto dir = scratch() / "ckpt_damage";
  fs::create_directories(dir);
  SmallRun run(3);
  vicreg::apps::save_checkpoint(dir, run.state, progress_at(4));
  const auto file = vicreg::apps::checkpoint_file(dir);
  const auto good = vicreg::apps::read_file(file);
  const size_t n = good.size();
  ASSERT_GT(n, 1000u);
  std::vector<at::Tensor> before;
  for (const auto& t : run.tensors()) before.push_back(t.detach().clone());
  const auto draw_state = run.gen.get_state();

  std::vector<std::pair<std::string, std::string>> damaged;  // (what, bytes)
  std::vector<size_t> offsets = {0, n - 1};
  for (size_t at = 7; at < n; at += 97) offsets.push_back(at);
  for (size_t at = n - 96; at < n; ++at) offsets.push_back(at);  // the checksum line
  for (size_t at : offsets) {
    auto b = good;
    b[at] = static_cast<char>(b[at] ^ (1 << (at % 8)));
    damaged.emplace_back("bit " + std::to_string(at % 8) + " of byte " + std::to_string(at), b);
  }
  auto block = good;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  const auto noise = torch::randint(256, {4096}, gen, at::kInt);
  for (int64_t i = 0; i < 4096 && n / 3 + i < n; ++i) {
    block[n / 3 + i] = static_cast<char>(noise[i].item<int>());
  }
  damaged.emplace_back("4 KiB of random bytes", block);
  for (size_t cut : {size_t{0}, size_t{1}, n / 2, n - 96, n - 1}) {
    damaged.emplace_back("cut to " + std::to_string(cut) + " bytes", good.substr(0, cut));
  }
  for (size_t at : {size_t{0}, n / 2, n - 1, n}) {
    damaged.emplace_back("a byte inserted at " + std::to_string(at),
                         good.substr(0, at) + "Z" + good.substr(at));
  }

  int detected = 0;
  for (const auto& [what, bytes] : damaged) {
    ASSERT_NE(bytes, good) << what;
    vicreg::apps::write_file_atomically(file, bytes);
    const auto scan = vicreg::apps::checkpoints_in(dir);
    EXPECT_TRUE(scan.intact.empty()) << what;
    try {
      vicreg::apps::load_checkpoint(file, run.state);
      ADD_FAILURE() << "loaded a checkpoint with " << what;
    } catch (const c10::Error& e) {
      const std::string m = e.what_without_backtrace();
      EXPECT_NE(m.find(file.string()), std::string::npos) << what << ": " << m;
      ++detected;
    }
  }
  EXPECT_EQ(detected, static_cast<int>(damaged.size()));
  std::printf("%zu kinds of damage (%zu single-bit offsets) to a checkpoint of %zu bytes: %d "
              "refused, 0 loaded\n", damaged.size(), offsets.size(), n, detected);
  expect_equal(run.tensors(), before);
  EXPECT_TRUE(run.gen.get_state().equal(draw_state));
  // The undamaged bytes load.
  vicreg::apps::write_file_atomically(file, good);
  EXPECT_EQ(vicreg::apps::load_checkpoint(file, run.state).progress.steps, 4);
}

}  // namespace
