// A complete VICReg training loop in one file, to copy and change: Fashion-MNIST from its IDX
// files, two random views of every image, a small CNN encoder with an expander, Adam, and the
// loss terms logged as training goes. It needs LibTorch, zlib and vicreg, nothing else.
//
//   vicreg_example [steps=1000] [data_dir=/usr/share/datasets/fashion-mnist] [images=0 (all)]
//
// Build: find_package(Torch), find_package(ZLIB), find_package(vicreg), then
// target_link_libraries(app PRIVATE vicreg::vicreg ZLIB::ZLIB).
// On Debian's LibTorch, run it with OMP_WAIT_POLICY=PASSIVE OPENBLAS_THREAD_TIMEOUT=4: the
// OpenMP and OpenBLAS threads otherwise spin while idle.

#include <torch/torch.h>
#include <vicreg/vicreg.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace F = torch::nn::functional;
using torch::indexing::Slice;

// The whole of a gzip-compressed file.
std::vector<uint8_t> read_gz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  TORCH_CHECK(f != nullptr, "cannot open ", path,
              " (Debian: apt-get install dataset-fashion-mnist)");
  std::vector<uint8_t> data;
  std::vector<uint8_t> buf(1 << 16);
  int n = 0;
  while ((n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()))) > 0) {
    data.insert(data.end(), buf.begin(), buf.begin() + n);
  }
  gzclose(f);
  TORCH_CHECK(n == 0, path, ": not a readable gzip file");
  return data;
}

// An IDX image file (big-endian header: magic 0x803, count, rows, columns; then one byte per
// pixel) as [count, 1, rows, columns] floats in [0, 1]; `limit` > 0 keeps the first images.
torch::Tensor load_images(const std::string& path, int64_t limit) {
  const auto d = read_gz(path);
  auto be32 = [&d](size_t at) {
    return int64_t{d[at]} << 24 | int64_t{d[at + 1]} << 16 | int64_t{d[at + 2]} << 8 | d[at + 3];
  };
  TORCH_CHECK(d.size() >= 16 && be32(0) == 0x803, path, ": not an IDX image file");
  int64_t n = be32(4);
  const int64_t h = be32(8), w = be32(12);
  TORCH_CHECK(h > 0 && w > 0 && int64_t(d.size()) == 16 + n * h * w, path, ": truncated");
  if (limit > 0 && limit < n) n = limit;
  const auto bytes = torch::from_blob(const_cast<uint8_t*>(d.data()) + 16, {n, 1, h, w},
                                      torch::kUInt8);
  return bytes.to(torch::kFloat) / 255;  // a copy: `d` goes away on return
}

// A random view of each image: a crop of 40-100% of the area at a random place, resized back
// to the image's size, mirrored half of the time, then brightness and contrast jitter and
// pixel noise. Two calls give the two views VICReg compares.
torch::Tensor augment(const torch::Tensor& x) {
  const int64_t n = x.size(0);
  const auto side = torch::empty({n}).uniform_(0.4, 1.0).sqrt();
  const auto mirror = 1 - 2 * (torch::rand({n}) < 0.5).to(torch::kFloat);
  auto theta = torch::zeros({n, 2, 3});
  theta.index_put_({Slice(), 0, 0}, side * mirror);
  theta.index_put_({Slice(), 1, 1}, side);
  theta.index_put_({Slice(), 0, 2}, (torch::rand({n}) * 2 - 1) * (1 - side));
  theta.index_put_({Slice(), 1, 2}, (torch::rand({n}) * 2 - 1) * (1 - side));
  const auto grid = F::affine_grid(theta, x.sizes(), /*align_corners=*/false);
  auto v = F::grid_sample(x, grid, F::GridSampleFuncOptions().align_corners(false));
  const auto mean = v.mean({1, 2, 3}, /*keepdim=*/true);
  const auto contrast = torch::empty({n, 1, 1, 1}).uniform_(0.6, 1.4);
  const auto brightness = torch::empty({n, 1, 1, 1}).uniform_(-0.4, 0.4) * mean;
  return (v - mean) * contrast + mean + brightness + 0.05 * torch::randn_like(v);
}

// Conv-BN-ReLU blocks, then average pooling to 2x2 positions: 28x28x1 -> 256 features.
torch::nn::Sequential make_encoder() {
  torch::nn::Sequential s;
  int64_t in = 1;
  for (int64_t out : {16, 32, 64}) {
    s->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1).bias(false)));
    s->push_back(torch::nn::BatchNorm2d(out));
    s->push_back(torch::nn::ReLU());
    if (out != 64) s->push_back(torch::nn::MaxPool2d(2));
    in = out;
  }
  s->push_back(torch::nn::AdaptiveAvgPool2d(2));
  s->push_back(torch::nn::Flatten());
  return s;
}

// The expander VICReg puts the loss on: Linear-BN-ReLU, then a plain Linear.
torch::nn::Sequential make_projector(int64_t in, int64_t width) {
  return torch::nn::Sequential(torch::nn::Linear(in, width), torch::nn::BatchNorm1d(width),
                               torch::nn::ReLU(), torch::nn::Linear(width, width));
}

int main(int argc, char** argv) try {
  const int64_t steps = argc > 1 ? std::stoll(argv[1]) : 1000;
  const std::string dir = argc > 2 ? argv[2] : "/usr/share/datasets/fashion-mnist";
  const int64_t limit = argc > 3 ? std::stoll(argv[3]) : 0;
  const int64_t batch = 128, log_every = 50;
  TORCH_CHECK(steps > 0, "steps must be > 0, got ", steps);
  torch::manual_seed(0);

  const auto images = load_images(dir + "/train-images-idx3-ubyte.gz", limit);
  TORCH_CHECK(images.size(0) >= batch, "need at least ", batch, " images, got ", images.size(0));
  auto encoder = make_encoder();
  auto projector = make_projector(256, 1024);
  auto params = encoder->parameters();
  for (const auto& p : projector->parameters()) params.push_back(p);
  torch::optim::Adam opt(params, torch::optim::AdamOptions(1e-3).weight_decay(1e-6));
  vicreg::VICRegLoss criterion;  // the reference convention: 25 / 25 / 1, hand-written backward

  std::printf("%lld images; %lld steps of %lld images in two views\n",
              static_cast<long long>(images.size(0)), static_cast<long long>(steps),
              static_cast<long long>(batch));
  auto order = torch::randperm(images.size(0));
  for (int64_t step = 1, at = 0; step <= steps; ++step, at += batch) {
    if (at + batch > images.size(0)) {  // a new epoch: a new order
      order = torch::randperm(images.size(0));
      at = 0;
    }
    const auto x = images.index_select(0, order.narrow(0, at, batch));
    const auto t = criterion->terms(projector->forward(encoder->forward(augment(x))),
                                    projector->forward(encoder->forward(augment(x))));
    opt.zero_grad();
    t.loss.backward();
    opt.step();
    TORCH_CHECK(std::isfinite(t.loss.item<double>()), "the loss is not finite at step ", step);
    if (step % log_every == 0 || step == 1 || step == steps) {
      std::printf("step %5lld: loss %.4f (invariance %.4f, variance %.4f, covariance %.4f)\n",
                  static_cast<long long>(step), t.loss.item<double>(),
                  t.invariance.item<double>(), t.variance.item<double>(),
                  t.covariance.item<double>());
    }
  }
  torch::save(encoder, "encoder.pt");
  std::printf("saved the encoder to encoder.pt\n");
  return 0;
} catch (const c10::Error& e) {
  std::fprintf(stderr, "vicreg_example: %s\n", e.what_without_backtrace());
  return 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "vicreg_example: %s\n", e.what());
  return 1;
}
