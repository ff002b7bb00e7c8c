// vicreg_train's model (model.h).

#include "model.h"

#include <fmt/format.h>

#include <filesystem>
#include <sstream>

#include "files.h"
#include "int_list.h"

namespace vicreg::apps {
namespace {

void add_conv_block(torch::nn::Sequential& s, int64_t in, int64_t out, bool pool) {
  s->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1).bias(false)));
  s->push_back(torch::nn::BatchNorm2d(out));
  s->push_back(torch::nn::ReLU());
  if (pool) s->push_back(torch::nn::MaxPool2d(2));
}

// The sizes of a list option, which the command line has already checked.
std::vector<int64_t> sizes(const std::string& s, const IntListRule& rule, const char* flag) {
  const auto v = parse_int_list(s, rule);
  TORCH_CHECK(v && !v->empty(), flag, ": must be ", describe(rule), ", got '", s, "'");
  return *v;
}

}  // namespace

torch::nn::Sequential make_encoder(const std::vector<int64_t>& widths, int64_t pool) {
  torch::nn::Sequential s;
  int64_t in = 1;
  for (size_t i = 0; i < widths.size(); ++i) {
    add_conv_block(s, in, widths[i], i + 1 < widths.size());
    in = widths[i];
  }
  s->push_back(torch::nn::AdaptiveAvgPool2d(torch::nn::AdaptiveAvgPool2dOptions(pool)));
  s->push_back(torch::nn::Flatten());
  return s;
}

torch::nn::Sequential make_projector(int64_t in, const std::vector<int64_t>& dims) {
  torch::nn::Sequential s;
  for (size_t i = 0; i + 1 < dims.size(); ++i) {
    s->push_back(torch::nn::Linear(in, dims[i]));
    s->push_back(torch::nn::BatchNorm1d(dims[i]));
    s->push_back(torch::nn::ReLU());
    in = dims[i];
  }
  s->push_back(torch::nn::Linear(in, dims.back()));
  return s;
}

torch::nn::Sequential clone_module(const torch::nn::Sequential& m) {
  return torch::nn::Sequential(std::dynamic_pointer_cast<torch::nn::SequentialImpl>(m->clone()));
}

std::vector<torch::Tensor> Models::parameters() const {
  auto params = encoder->parameters();
  for (auto& p : projector->parameters()) params.push_back(p);
  return params;
}

void save_with_checksum(const torch::nn::Sequential& m, const std::filesystem::path& file) {
  std::ostringstream bytes;
  torch::save(m, bytes);
  write_with_checksum(file, bytes.str());
}

void load_verified(torch::nn::Sequential& m, const std::filesystem::path& file) {
  TORCH_CHECK(std::filesystem::exists(file), file.string(), " is missing");
  const auto bytes = read_file(file);
  const auto mismatch = checksum_mismatch(file, bytes);
  TORCH_CHECK(!mismatch, file.string(), " is damaged: ", *mismatch);
  if (!std::filesystem::exists(file.string() + ".sha256")) {
    fmt::print("note: {} has no {}.sha256 (saved before checksums): not verified\n",
               file.string(), file.filename().string());
  }
  std::istringstream in(bytes);
  torch::load(m, in);
}

Models build_models(const TrainConfig& c) {
  const auto dims = sizes(c.proj_dims, kProjDims, "--proj-dims");
  const auto widths = sizes(c.encoder_widths, kEncoderWidths, "--encoder-widths");
  Models m;
  m.repr_dim = widths.back() * c.pool * c.pool;
  m.encoder = make_encoder(widths, c.pool);
  m.projector = make_projector(m.repr_dim, dims);
  m.encoder_init = clone_module(m.encoder);
  m.projector_init = clone_module(m.projector);
  if (c.eval_only) {
    load_verified(m.encoder, std::filesystem::path(c.resume) / "encoder.pt");
    load_verified(m.projector, std::filesystem::path(c.resume) / "projector.pt");
    fmt::print("evaluating the encoder and projector of {}\n", c.resume);
  }
  return m;
}

Features forward_of(torch::nn::Sequential m) {
  return [m](const at::Tensor& x) mutable { return m->forward(x); };
}

Features encoder_of(torch::nn::Sequential m) {
  return [m](const at::Tensor& x) mutable {
    return m->forward(x.contiguous(at::MemoryFormat::ChannelsLast));
  };
}

uint64_t digest(const std::vector<at::Tensor>& tensors) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& t : tensors) {
    const auto c = t.detach().contiguous();
    const auto* p = static_cast<const unsigned char*>(c.data_ptr());
    for (size_t i = 0; i < c.nbytes(); ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
  return h;
}

}  // namespace vicreg::apps
