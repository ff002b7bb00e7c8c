// The VCReg layer in one file, to copy and change: the same MLP classifier trained on
// Fashion-MNIST twice, with VCReg layers after its hidden blocks and without, from the same
// initial weights and batches; then test accuracy and, per hidden layer, the channels' mean std,
// their mean absolute correlation and the VCReg penalty. It needs LibTorch, zlib and vicreg.
//
//   vcreg_example [epochs=3] [data_dir=/usr/share/datasets/fashion-mnist] [images=20000 (0: all)]
//
// On Debian's LibTorch, run it with OMP_WAIT_POLICY=PASSIVE OPENBLAS_THREAD_TIMEOUT=4: the
// OpenMP and OpenBLAS threads otherwise spin while idle.

#include <torch/torch.h>
#include <vicreg/vicreg.h>
#include <zlib.h>

#include <cstdio>
#include <string>
#include <vector>

// An IDX file of Fashion-MNIST (gzip; a big-endian header of a magic number and the sizes, then
// one byte per value) as a uint8 tensor of its sizes; `limit` > 0 keeps the first rows.
torch::Tensor load_idx(const std::string& path, int64_t limit) {
  gzFile f = gzopen(path.c_str(), "rb");
  TORCH_CHECK(f != nullptr, "cannot open ", path,
              " (Debian: apt-get install dataset-fashion-mnist)");
  std::vector<uint8_t> d, buf(1 << 16);
  int n = 0;
  while ((n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()))) > 0) {
    d.insert(d.end(), buf.begin(), buf.begin() + n);
  }
  gzclose(f);
  TORCH_CHECK(n == 0 && d.size() >= 4 && d[0] == 0 && d[1] == 0 && d[2] == 8 && d[3] >= 1 &&
                  d[3] <= 3 && d.size() >= 4 + 4 * size_t{d[3]},
              path, ": not a gzip-compressed IDX file of bytes");
  std::vector<int64_t> sizes;
  int64_t count = 1;
  for (size_t i = 0; i < d[3]; ++i) {
    const size_t at = 4 + 4 * i;
    sizes.push_back(int64_t{d[at]} << 24 | int64_t{d[at + 1]} << 16 | int64_t{d[at + 2]} << 8 |
                    d[at + 3]);
    count *= sizes.back();
  }
  TORCH_CHECK(int64_t(d.size()) == 4 + 4 * int64_t{d[3]} + count, path, ": truncated");
  auto t = torch::from_blob(d.data() + 4 + 4 * d[3], sizes, torch::kUInt8).clone();
  return limit > 0 && limit < sizes[0] ? t.narrow(0, 0, limit) : t;
}

int main(int argc, char** argv) try {
  const int64_t epochs = argc > 1 ? std::stoll(argv[1]) : 3;
  const std::string dir = argc > 2 ? argv[2] : "/usr/share/datasets/fashion-mnist";
  const int64_t limit = argc > 3 ? std::stoll(argv[3]) : 20000;
  const int64_t batch = 128;
  TORCH_CHECK(epochs > 0, "epochs must be > 0, got ", epochs);
  auto images = [&dir](const std::string& split, int64_t n) {
    return load_idx(dir + "/" + split + "-images-idx3-ubyte.gz", n).flatten(1).to(torch::kFloat) /
           255;
  };
  auto labels = [&dir](const std::string& split, int64_t n) {
    return load_idx(dir + "/" + split + "-labels-idx1-ubyte.gz", n).to(torch::kLong);
  };
  const auto xtr = images("train", limit), ytr = labels("train", limit);
  const auto xte = images("t10k", 0), yte = labels("t10k", 0);
  TORCH_CHECK(xtr.size(0) == ytr.size(0) && xtr.size(0) >= batch, "need at least ", batch,
              " training images with a label each");
  // The VCReg paper tunes alpha (var_coeff) and beta (cov_coeff) per task; these suit this MLP.
  const auto vcreg_options = vicreg::VCRegOptions().var_coeff(0.16).cov_coeff(0.01);
  const std::vector<int64_t> widths = {784, 512, 256, 128};

  std::printf("| run | test acc. | layer | mean channel std | mean abs. off-diag. corr. | "
              "VCReg penalty |\n|---|---|---|---|---|---|\n");
  for (bool with_vcreg : {false, true}) {
    torch::manual_seed(0);  // the same initial weights and batches for both runs
    std::vector<torch::nn::Linear> hidden;
    torch::nn::Sequential net;
    for (size_t i = 0; i + 1 < widths.size(); ++i) {
      hidden.emplace_back(widths[i], widths[i + 1]);
      net->push_back(hidden.back());
      net->push_back(torch::nn::ReLU());
      // Identity forward; backward, it adds the gradient of the layer's VCReg penalty.
      if (with_vcreg) net->push_back(vicreg::VCReg(vcreg_options));
    }
    net->push_back(torch::nn::Linear(widths.back(), 10));
    torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-3));
    for (int64_t e = 0; e < epochs; ++e) {
      net->train();
      const auto order = torch::randperm(xtr.size(0));
      for (int64_t i = 0; i + batch <= xtr.size(0); i += batch) {
        const auto idx = order.narrow(0, i, batch);
        opt.zero_grad();
        torch::nn::functional::cross_entropy(net->forward(xtr.index_select(0, idx)),
                                             ytr.index_select(0, idx))
            .backward();
        opt.step();
      }
    }
    net->eval();
    torch::NoGradGuard no_grad;
    const double acc =
        100 * net->forward(xte).argmax(1).eq(yte).to(torch::kDouble).mean().item<double>();
    auto h = xte;
    for (size_t i = 0; i < hidden.size(); ++i) {
      h = torch::relu(hidden[i]->forward(h));
      // Over the test set: each channel's std, and the mean |correlation| of two channels.
      const auto x = h.to(torch::kDouble);
      const auto std = x.std(0, true);
      const auto z = (x - x.mean(0, true)) / std.clamp_min(1e-12);
      const auto corr = torch::mm(z.t(), z) / (x.size(0) - 1);
      const int64_t d = corr.size(0);
      const double off =
          (corr.abs().sum() - corr.diagonal().abs().sum()).item<double>() / (d * (d - 1));
      std::printf("| %s | %.2f%% | %zu (%lld) | %.3f | %.4f | %.4f |\n",
                  with_vcreg ? "with VCReg" : "without VCReg", acc, i + 1,
                  static_cast<long long>(widths[i + 1]), std.mean().item<double>(), off,
                  vicreg::functional::vcreg_penalty(h, vcreg_options).item<double>());
    }
  }
  return 0;
} catch (const c10::Error& e) {
  std::fprintf(stderr, "vcreg_example: %s\n", e.what_without_backtrace());
  return 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "vcreg_example: %s\n", e.what());
  return 1;
}
