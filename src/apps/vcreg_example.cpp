// vcreg_example: trains the same small MLP classifier on Fashion-MNIST twice, with VCReg layers
// after its hidden blocks and without, from the same initial weights and batches, and prints
// test accuracy and per-layer statistics of the hidden representations for both.

#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <thread>

#include "data.h"
#include "runtime.h"
#include "vicreg/vicreg.h"

namespace {

struct Stats {
  double mean_std, mean_abs_corr, penalty;
};

// Per-layer statistics over the test set: mean per-channel std, mean |off-diagonal
// correlation|, and the VCReg penalty (functional::vcreg_penalty with the run's options).
Stats layer_stats(const torch::Tensor& h, const vicreg::VCRegOptions& o) {
  const auto x = h.to(torch::kDouble);
  const auto std = x.std(0, true);
  const auto xc = (x - x.mean(0, true)) / std.clamp_min(1e-12);
  const auto corr = torch::mm(xc.t(), xc) / (x.size(0) - 1);
  const int64_t d = corr.size(0);
  const double off = (corr.abs().sum().item<double>() - corr.diagonal().abs().sum().item<double>()) /
                     static_cast<double>(d * (d - 1));
  return {std.mean().item<double>(), off, vicreg::functional::vcreg_penalty(h, o).item<double>()};
}

}  // namespace

int main(int argc, char** argv) {
  vicreg::apps::configure_threads();
  CLI::App app{"Train an MLP classifier with and without VCReg layers and compare"};
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int64_t epochs = 3, train_subset = 20000, batch = 128;
  double var_coeff = 0.16, cov_coeff = 0.01, lr = 1e-3;
  uint64_t seed = 0;
  int threads = 0;
  app.add_option("--data-dir", data_dir, "directory with the *-ubyte.gz IDX files")->capture_default_str();
  app.add_option("--epochs", epochs)->capture_default_str();
  app.add_option("--train-subset", train_subset, "first N training images (0: all)")->capture_default_str();
  app.add_option("--batch-size", batch)->capture_default_str();
  app.add_option("--var-coeff", var_coeff, "VCReg alpha")->capture_default_str();
  app.add_option("--cov-coeff", cov_coeff, "VCReg beta")->capture_default_str();
  app.add_option("--lr", lr, "Adam learning rate")->capture_default_str();
  app.add_option("--seed", seed)->capture_default_str();
  app.add_option("--threads", threads, "0: all cores")->capture_default_str();
  bool keep_freed = true;
  app.add_flag("--keep-freed-memory,!--no-keep-freed-memory", keep_freed,
               "keep freed memory in the process instead of returning it to the system "
               "(default on)");
  CLI11_PARSE(app, argc, argv);
  if (keep_freed) vicreg::apps::keep_freed_memory();
  for (const auto& note : {vicreg::apps::openmp_note(), vicreg::apps::openblas_note()}) {
    if (!note.empty()) fmt::print(stderr, "{}\n", note);
  }
  try {
    torch::set_num_threads(threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency()));
    const auto train = vicreg::apps::load_mnist_format(data_dir, "train", train_subset);
    const auto test = vicreg::apps::load_mnist_format(data_dir, "t10k");
    const auto xtr = train.images.flatten(1), xte = test.images.flatten(1);
    const auto opts = vicreg::VCRegOptions().var_coeff(var_coeff).cov_coeff(cov_coeff);
    const std::vector<int64_t> widths = {784, 512, 256, 128};

    struct Run {
      std::string name;
      double acc;
      std::vector<Stats> stats;
    };
    std::vector<Run> runs;
    for (bool with_vcreg : {false, true}) {
      torch::manual_seed(seed);  // same initial weights and batches for both runs
      std::vector<torch::nn::Linear> linears;
      std::vector<vicreg::VCReg> regs;
      torch::nn::Sequential net;
      for (size_t i = 0; i + 1 < widths.size(); ++i) {
        linears.emplace_back(widths[i], widths[i + 1]);
        net->push_back(linears.back());
        net->push_back(torch::nn::ReLU());
        regs.emplace_back(opts);
        if (with_vcreg) net->push_back(regs.back());
      }
      net->push_back(torch::nn::Linear(widths.back(), 10));
      torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(lr));
      auto gen = at::make_generator<at::CPUGeneratorImpl>(seed + 1);
      const auto t0 = std::chrono::steady_clock::now();
      for (int64_t e = 0; e < epochs; ++e) {
        net->train();
        const auto perm = torch::randperm(xtr.size(0), gen);
        for (int64_t i = 0; i + batch <= xtr.size(0); i += batch) {
          const auto idx = perm.narrow(0, i, batch);
          opt.zero_grad();
          torch::nn::functional::cross_entropy(net->forward(xtr.index_select(0, idx)),
                                               train.labels.index_select(0, idx))
              .backward();
          opt.step();
        }
      }
      net->eval();
      torch::NoGradGuard no_grad;
      Run r{with_vcreg ? "with VCReg" : "without VCReg", 0, {}};
      r.acc = 100.0 * net->forward(xte).argmax(1).eq(test.labels).to(torch::kDouble).mean().item<double>();
      auto h = xte;
      for (size_t i = 0; i < linears.size(); ++i) {
        h = torch::relu(linears[i]->forward(h));
        r.stats.push_back(layer_stats(h, opts));
      }
      fmt::print("trained {} ({} epochs on {} images) in {:.0f} s: test accuracy {:.2f}%\n",
                 r.name, epochs, xtr.size(0),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), r.acc);
      runs.push_back(r);
    }
    fmt::print("\nVCReg options: var_coeff (alpha) {}, cov_coeff (beta) {}, gamma 1, std form\n",
               var_coeff, cov_coeff);
    fmt::print("| run | test acc. | layer | mean channel std | mean abs. off-diag. corr. | VCReg penalty |\n");
    fmt::print("|---|---|---|---|---|---|\n");
    for (const auto& r : runs) {
      for (size_t i = 0; i < r.stats.size(); ++i) {
        fmt::print("| {} | {:.2f}% | {} ({}) | {:.3f} | {:.4f} | {:.4f} |\n", r.name, r.acc, i + 1,
                   widths[i + 1], r.stats[i].mean_std, r.stats[i].mean_abs_corr, r.stats[i].penalty);
      }
    }
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "vcreg_example: {}\n", e.what());
    return 1;
  }
}
