#include "data.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

namespace vicreg::apps {
namespace {

struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};
using GzPtr = std::unique_ptr<std::remove_pointer_t<gzFile>, GzCloser>;

bool has_gzip_magic(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  TORCH_CHECK(f, "read_idx_gz: cannot open '", path, "'");
  unsigned char m[2] = {0, 0};
  const size_t got = std::fread(m, 1, 2, f.get());
  return got == 2 && m[0] == 0x1f && m[1] == 0x8b;
}

void read_exact(gzFile f, void* dst, size_t n, const std::string& path, const char* what) {
  size_t done = 0;
  auto* out = static_cast<unsigned char*>(dst);
  while (done < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - done, 1u << 30));
    const int got = gzread(f, out + done, chunk);
    if (got < 0) {
      int err = 0;
      const char* msg = gzerror(f, &err);
      TORCH_CHECK(false, "read_idx_gz: '", path, "' is corrupt while reading ", what, ": ", msg);
    }
    TORCH_CHECK(got > 0, "read_idx_gz: '", path, "' is truncated: expected ", n, " bytes of ",
                what, ", got ", done);
    done += static_cast<size_t>(got);
  }
}

}  // namespace

at::Tensor read_idx_gz(const std::string& path) {
  TORCH_CHECK(has_gzip_magic(path), "read_idx_gz: '", path,
              "' is not a gzip file (expected the bytes 1f 8b at its start)");
  GzPtr f(gzopen(path.c_str(), "rb"));
  TORCH_CHECK(f, "read_idx_gz: cannot open '", path, "'");
  unsigned char magic[4];
  read_exact(f.get(), magic, 4, path, "the magic number");
  TORCH_CHECK(magic[0] == 0 && magic[1] == 0, "read_idx_gz: '", path,
              "' has a wrong magic number (expected 00 00 08 <ndim>, got ", int(magic[0]), " ",
              int(magic[1]), " ", int(magic[2]), " ", int(magic[3]), ")");
  TORCH_CHECK(magic[2] == 0x08, "read_idx_gz: '", path,
              "': only unsigned-byte IDX data (type 0x08) is supported, got type ",
              int(magic[2]));
  const int ndim = magic[3];
  TORCH_CHECK(ndim >= 1 && ndim <= 4, "read_idx_gz: '", path, "': expected 1 to 4 dims, got ",
              ndim);
  std::vector<int64_t> sizes(ndim);
  int64_t total = 1;
  for (int i = 0; i < ndim; ++i) {
    unsigned char b[4];
    read_exact(f.get(), b, 4, path, "the header");
    sizes[i] = (int64_t(b[0]) << 24) | (int64_t(b[1]) << 16) | (int64_t(b[2]) << 8) | b[3];
    TORCH_CHECK(sizes[i] > 0, "read_idx_gz: '", path, "': dim ", i, " has size 0");
    // Checked before the product, which could pass int64's range.
    TORCH_CHECK(sizes[i] <= (int64_t(1) << 34) / total, "read_idx_gz: '", path,
                "': header declares an implausibly large tensor");
    total *= sizes[i];
  }
  // Deflate expands at most 1032-fold, so a file of F bytes holds at most about 1032 F bytes of
  // data: a header that declares more is refused before the allocation it would drive.
  const auto file_bytes = static_cast<int64_t>(std::filesystem::file_size(path));
  TORCH_CHECK(total <= file_bytes * 1032 + 1024, "read_idx_gz: '", path, "': header declares ",
              total, " bytes of data, more than a gzip file of ", file_bytes,
              " bytes can hold (truncated, or a corrupt header)");
  auto out = at::empty(sizes, at::kByte);
  read_exact(f.get(), out.data_ptr<uint8_t>(), static_cast<size_t>(total), path, "data");
  unsigned char extra;
  TORCH_CHECK(gzread(f.get(), &extra, 1) == 0, "read_idx_gz: '", path,
              "' holds more data than its header declares (size mismatch: header says ",
              c10::IntArrayRef(sizes), ")");
  return out;
}

ImageSet load_mnist_format(const std::string& dir, const std::string& split, int64_t limit) {
  const auto images_path = dir + "/" + split + "-images-idx3-ubyte.gz";
  const auto labels_path = dir + "/" + split + "-labels-idx1-ubyte.gz";
  auto images = read_idx_gz(images_path);
  auto labels = read_idx_gz(labels_path);
  TORCH_CHECK(images.dim() == 3, "load_mnist_format: '", images_path,
              "' should hold [N, H, W] images, got shape ", images.sizes());
  TORCH_CHECK(labels.dim() == 1, "load_mnist_format: '", labels_path,
              "' should hold [N] labels, got shape ", labels.sizes());
  TORCH_CHECK(images.size(0) == labels.size(0), "load_mnist_format: '", images_path, "' has ",
              images.size(0), " images but '", labels_path, "' has ", labels.size(0), " labels");
  if (limit > 0 && limit < images.size(0)) {
    images = images.narrow(0, 0, limit);
    labels = labels.narrow(0, 0, limit);
  }
  return {images.unsqueeze(1).to(at::kFloat).div_(255.0).contiguous(), labels.to(at::kLong)};
}

at::Tensor augment(const at::Tensor& images, at::Generator& gen, const AugmentOptions& o) {
  TORCH_CHECK(images.dim() == 4, "augment: expected [B, C, H, W] images, got ", images.sizes());
  TORCH_CHECK(o.size >= 0, "augment: expected an output size >= 0 (0: the input's), got ",
              o.size);
  const int64_t B = images.size(0);
  const auto opts = images.options();
  auto u = [&](double lo, double hi) { return at::rand({B}, gen, opts) * (hi - lo) + lo; };
  // Random resized crop as an affine sampling grid: crop of area s and aspect ratio r,
  // centered anywhere it fits, resampled to the full size.
  const auto area = u(o.min_scale, 1.0);
  const auto ratio = at::exp(u(-o.max_log_ratio, o.max_log_ratio));
  const auto sx = at::sqrt(area * ratio).clamp_max(1.0);
  const auto sy = at::sqrt(area / ratio).clamp_max(1.0);
  const auto tx = (at::rand({B}, gen, opts) * 2 - 1) * (1 - sx);
  const auto ty = (at::rand({B}, gen, opts) * 2 - 1) * (1 - sy);
  const auto flip = 1 - 2 * (at::rand({B}, gen, opts) < o.flip_prob).to(opts.dtype());
  auto theta = at::zeros({B, 2, 3}, opts);
  theta.select(1, 0).select(1, 0).copy_(sx * flip);
  theta.select(1, 0).select(1, 2).copy_(tx);
  theta.select(1, 1).select(1, 1).copy_(sy);
  theta.select(1, 1).select(1, 2).copy_(ty);
  const int64_t H = o.size > 0 ? o.size : images.size(2), W = o.size > 0 ? o.size : images.size(3);
  const auto grid =
      at::affine_grid_generator(theta, {B, images.size(1), H, W}, /*align_corners=*/false);
  auto out = at::grid_sampler(images, grid, /*bilinear*/ 0, /*zeros*/ 0, false);
  // Brightness and contrast jitter around each image's mean.
  const auto mean = out.mean({1, 2, 3}, true);
  const auto contrast = u(1 - o.contrast, 1 + o.contrast).view({B, 1, 1, 1});
  const auto bright = u(-o.brightness, o.brightness).view({B, 1, 1, 1}) * mean;
  out = (out - mean) * contrast + mean + bright;
  if (o.noise_std > 0) out = out + at::randn(out.sizes(), gen, opts) * o.noise_std;
  return out.clamp(0.0, 1.0);
}

}  // namespace vicreg::apps
