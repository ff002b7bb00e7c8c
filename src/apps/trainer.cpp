// vicreg_train's model, training loop, evaluation and the run that wires them (trainer.h).

#include "trainer.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>

#include "eval.h"
#include "runtime.h"
#include "vicreg/vicreg.h"
#ifdef VICREG_WITH_DISTRIBUTED
#include "vicreg/distributed.h"
#endif

namespace fs = std::filesystem;

namespace vicreg::apps {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void add_conv_block(torch::nn::Sequential& s, int64_t in, int64_t out, bool pool) {
  s->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1).bias(false)));
  s->push_back(torch::nn::BatchNorm2d(out));
  s->push_back(torch::nn::ReLU());
  if (pool) s->push_back(torch::nn::MaxPool2d(2));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The model

std::vector<int64_t> parse_dims(const std::string& s, const char* flag) {
  std::vector<int64_t> dims;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    int64_t v = 0;
    try {
      v = std::stoll(item);
    } catch (const std::exception&) {
      TORCH_CHECK(false, flag, ": expected comma-separated positive sizes, got '", s, "'");
    }
    TORCH_CHECK(v > 0, flag, ": sizes must be > 0, got '", s, "'");
    dims.push_back(v);
  }
  TORCH_CHECK(!dims.empty(), flag, ": expected comma-separated sizes, got '", s, "'");
  return dims;
}

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

// ---------------------------------------------------------------------------------------------
// The training loop

namespace {

// Sets the learning rate of every group to the cosine decay from base_lr at step 0 to 0 at
// step `total`, and returns it.
double set_cosine_lr(torch::optim::Optimizer& opt, double base_lr, int64_t step, int64_t total) {
  const double lr = base_lr * 0.5 * (1 + std::cos(M_PI * step / std::max<int64_t>(1, total)));
  for (auto& g : opt.param_groups()) g.options().set_lr(lr);
  return lr;
}

}  // namespace

LoopResult train_loop(torch::optim::Optimizer& opt, at::Generator& gen, const LoopSpec& s,
                      const TrainStep& step) {
  TORCH_CHECK(s.batch_size >= 1 && s.rows >= s.batch_size, "need at least one batch: ", s.rows,
              " training images, --batch-size ", s.batch_size);
  const int64_t per_epoch = s.rows / s.batch_size;
  ProgressBar bar(s.total_steps);
  const auto t0 = std::chrono::steady_clock::now();
  LoopResult r;
  for (int64_t epoch = 0; r.steps < s.total_steps; ++epoch) {
    const auto perm = torch::randperm(s.rows, gen);
    std::vector<double> sums(s.names.size(), 0.0);
    int64_t count = 0;
    const auto t_epoch = std::chrono::steady_clock::now();
    for (int64_t b = 0; b < per_epoch && r.steps < s.total_steps; ++b, ++r.steps, ++count) {
      const auto t_step = std::chrono::steady_clock::now();
      const double lr = set_cosine_lr(opt, s.lr, r.steps, s.total_steps);
      opt.zero_grad();
      r.last = step(perm.narrow(0, b * s.batch_size, s.batch_size), gen);
      opt.step();
      TORCH_CHECK(std::isfinite(r.last.at(0)), s.epoch_prefix,
                  "the loss became non-finite at step ", r.steps + 1);
      for (size_t i = 0; i < sums.size(); ++i) sums[i] += r.last[i];
      const double ips = s.images_per_step / seconds_since(t_step);
      if (s.csv) *s.csv << metrics_csv_row(r.steps, epoch, r.last, ips, lr);
      bar.update(r.steps, epoch, s.names, r.last, ips);
    }
    bar.end_epoch();
    for (auto& v : sums) v /= static_cast<double>(count);
    fmt::print("{}\n", epoch_line(s.epoch_prefix, epoch, s.names, sums, seconds_since(t_epoch)));
  }
  r.seconds = seconds_since(t0);
  return r;
}

// ---------------------------------------------------------------------------------------------
// The two users of the loop: the VICReg run and the supervised reference

namespace {

// Data parallel (--distributed): every rank sees the same batches and augmentations (same
// seeds), trains on its shard of each batch with the loss gathered over all ranks, and averages
// gradients over the group, so the ranks stay in sync. Rank 0 evaluates and writes the outputs;
// BatchNorm statistics are per rank (no SyncBatchNorm), so the run is close to, not equal to,
// the single process on the whole batch.
struct Ranks {
  int rank = 0, world = 1;
#ifdef VICREG_WITH_DISTRIBUTED
  std::shared_ptr<vicreg::distributed::Group> group;
#endif
};

Ranks init_ranks(const TrainConfig& c) {
  Ranks r;
#ifdef VICREG_WITH_DISTRIBUTED
  if (c.distributed) {
    r.group = vicreg::distributed::init_from_env(std::chrono::seconds(120));
    r.rank = r.group->rank();
    r.world = r.group->size();
  }
#else
  TORCH_CHECK(!c.distributed, "--distributed: this build of vicreg has no distributed support");
#endif
  return r;
}

void average_gradients(const std::vector<torch::Tensor>& params, const Ranks& ranks) {
#ifdef VICREG_WITH_DISTRIBUTED
  if (!ranks.group) return;
  std::vector<at::Tensor> grads;
  for (auto p : params) grads.push_back(p.mutable_grad());
  vicreg::distributed::all_reduce_mean_(grads, *ranks.group);
#endif
}

struct Models {
  torch::nn::Sequential encoder, projector;
  torch::nn::Sequential encoder_init, projector_init;  // the weights training starts from
  int64_t repr_dim = 0;
  std::vector<torch::Tensor> parameters() const {
    auto params = encoder->parameters();
    for (auto& p : projector->parameters()) params.push_back(p);
    return params;
  }
};

// One VICReg step: two augmentations of the batch (every rank augments the whole batch with
// the same generator stream, then takes its shard), the loss terms, backward, gradients
// averaged over the ranks. channels_last: oneDNN's convolutions run ~1.5x faster on it here.
TrainStep vicreg_step(Models& m, vicreg::VICRegLoss& criterion, const ImageSet& train,
                      const TrainConfig& c, const Ranks& ranks) {
  const auto shard = shard_of(c.batch_size, ranks.rank, ranks.world);
  const auto params = m.parameters();
  return [&m, &criterion, &train, &c, &ranks, shard, params](const at::Tensor& idx,
                                                            at::Generator& gen) {
    const auto x = train.images.index_select(0, idx);
    const auto cl = at::MemoryFormat::ChannelsLast;
    const auto va = augment(x, gen, c.augment).narrow(0, shard.begin, shard.size).contiguous(cl);
    const auto vb = augment(x, gen, c.augment).narrow(0, shard.begin, shard.size).contiguous(cl);
    const auto t = criterion->terms(m.projector->forward(m.encoder->forward(va)),
                                    m.projector->forward(m.encoder->forward(vb)));
    t.loss.backward();
    average_gradients(params, ranks);
    return std::vector<double>{t.loss.item<double>(), t.invariance.item<double>(),
                               t.variance.item<double>(), t.covariance.item<double>()};
  };
}

LoopResult train_vicreg(Models& m, vicreg::VICRegLoss& criterion, const ImageSet& train,
                        const TrainConfig& c, const Ranks& ranks, const fs::path& out) {
  const int64_t n = train.images.size(0);
  int64_t total_steps = c.eval_only ? 0 : n / c.batch_size * c.epochs;
  if (c.max_steps > 0) total_steps = std::min(total_steps, c.max_steps);
  LoopSpec spec;
  spec.names = {"loss", "invariance", "variance", "covariance"};
  spec.rows = n;
  spec.batch_size = c.batch_size;
  spec.total_steps = total_steps;
  spec.lr = c.lr;
  spec.images_per_step = 2 * c.batch_size;
  std::ofstream csv(out / "metrics.csv");
  csv << metrics_csv_header(spec.names);
  spec.csv = &csv;
  torch::optim::Adam opt(m.parameters(),
                         torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(c.seed + 1);
  m.encoder->train();
  m.projector->train();
  return train_loop(opt, gen, spec, vicreg_step(m, criterion, train, c, ranks));
}

}  // namespace

torch::nn::Sequential train_supervised(const torch::nn::Sequential& init, int64_t repr_dim,
                                       const ImageSet& train, const TrainConfig& c) {
  auto encoder = clone_module(init);
  const int64_t classes = train.labels.max().item<int64_t>() + 1;
  torch::nn::Linear head(repr_dim, classes);
  auto params = encoder->parameters();
  for (auto& p : head->parameters()) params.push_back(p);
  torch::optim::Adam opt(params, torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(c.seed + 2);
  LoopSpec spec;
  spec.names = {"loss"};
  spec.rows = train.images.size(0);
  spec.batch_size = c.batch_size;
  spec.total_steps = c.supervised_steps;
  spec.lr = c.lr;
  spec.images_per_step = c.batch_size;
  spec.epoch_prefix = "supervised reference: ";
  encoder->train();
  const auto r = train_loop(opt, gen, spec, [&](const at::Tensor& idx, at::Generator&) {
    const auto x = train.images.index_select(0, idx).contiguous(at::MemoryFormat::ChannelsLast);
    const auto loss = torch::nn::functional::cross_entropy(head->forward(encoder->forward(x)),
                                                           train.labels.index_select(0, idx));
    loss.backward();
    return std::vector<double>{loss.item<double>()};
  });
  fmt::print("supervised reference: {} steps with labels in {:.0f} s, last batch loss {:.4f}\n",
             r.steps, r.seconds,
             r.last.empty() ? std::numeric_limits<double>::quiet_NaN() : r.last[0]);
  encoder->eval();
  return encoder;
}

// ---------------------------------------------------------------------------------------------
// Evaluation

namespace {

Spread to_spread(const SpreadStats& s) {
  const auto std = s.std.to(at::kDouble).contiguous();
  return {s.mean_std, 100 * s.collapsed,
          std::vector<double>(std.data_ptr<double>(), std.data_ptr<double>() + std.numel())};
}

Features forward_of(torch::nn::Sequential m) {
  return [m](const at::Tensor& x) mutable { return m->forward(x); };
}

}  // namespace

ResultRow evaluate(const std::string& name, const std::string& label, const Features& encode,
                   const Features& project, const ImageSet& train, const ImageSet& test,
                   const TrainConfig& c) {
  const auto t0 = std::chrono::steady_clock::now();
  StatusLine status;
  auto say = [&](const std::string& what) {
    status.show(fmt::format("evaluating {} ({}): {}", name, label, what));
  };
  say("features");
  const auto ftr = extract_features(encode, train.images);
  const auto fte = extract_features(encode, test.images);
  ProbeOptions po;
  po.max_iter = c.probe_iters;
  po.seed = c.seed;
  po.on_fit = [&](int64_t fit, int64_t fits) {
    say(fmt::format("linear probe, L-BFGS fit {}/{}", fit, fits));
  };
  const auto probe = linear_probe(ftr, train.labels, fte, test.labels, po);
  say("k-NN");
  ResultRow r;
  r.name = name;
  r.probe_pct = probe.accuracy;
  r.probe_l2 = probe.l2;
  r.knn_pct = knn_accuracy(ftr, train.labels, fte, test.labels, c.knn_k);
  r.repr = to_spread(spread_stats(fte));
  if (project) r.embed = to_spread(spread_stats(extract_features(project, fte)));
  status.clear();
  fmt::print("  evaluated {:<22} linear probe {:5.2f}% (L2 {:g})  k-NN {:5.2f}%  ({:.0f} s)\n",
             name, r.probe_pct, r.probe_l2, r.knn_pct, seconds_since(t0));
  return r;
}

namespace {

// The rows of the results table: the trained encoder, the same encoder at its initial weights,
// raw pixels, and (--supervised-steps) the supervised reference.
std::vector<ResultRow> evaluate_rows(Models& m, const ImageSet& train, const ImageSet& test,
                                     const TrainConfig& c) {
  fmt::print("evaluating on {} test images (probe trained on {} train images)\n",
             test.images.size(0), train.images.size(0));
  for (auto* s : {&m.encoder, &m.projector, &m.encoder_init, &m.projector_init}) (*s)->eval();
  const int count = c.supervised_steps > 0 ? 4 : 3;
  auto label = [count](int i) { return fmt::format("{}/{}", i, count); };
  std::vector<ResultRow> rows;
  rows.push_back(evaluate("VICReg encoder", label(1), forward_of(m.encoder),
                          forward_of(m.projector), train, test, c));
  rows.push_back(evaluate("random-init encoder", label(2), forward_of(m.encoder_init),
                          forward_of(m.projector_init), train, test, c));
  rows.push_back(evaluate(
      "raw pixels", label(3), [](const at::Tensor& x) { return x; }, nullptr, train, test, c));
  if (c.supervised_steps > 0) {
    const auto sup = train_supervised(m.encoder_init, m.repr_dim, train, c);
    rows.push_back(evaluate("supervised encoder", label(4), forward_of(sup), nullptr, train,
                            test, c));
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// The run

vicreg::VICRegLossOptions loss_options(const TrainConfig& c, const Ranks& ranks) {
  auto o = vicreg::VICRegLossOptions::preset(c.preset)
               .inv_coeff(c.inv_coeff)
               .var_coeff(c.no_variance ? 0.0 : c.var_coeff)
               .cov_coeff(c.cov_coeff);
  TORCH_CHECK(c.backward == "fused" || c.backward == "autograd",
              "--backward: expected 'fused' or 'autograd', got '", c.backward, "'");
  o.backward(c.backward == "fused" ? vicreg::Backward::Fused : vicreg::Backward::Autograd);
#ifdef VICREG_WITH_DISTRIBUTED
  if (ranks.group) o.process_group(ranks.group);
#endif
  return o;
}

ImageSet load_split(const TrainConfig& c, const std::string& split, int64_t limit) {
  for (const char* kind : {"images-idx3", "labels-idx1"}) {
    const auto file = fs::path(c.data_dir) / (split + "-" + kind + "-ubyte.gz");
    TORCH_CHECK(fs::exists(file), "no data set at --data-dir ", c.data_dir, " (", file.string(),
                " is missing): install Debian's dataset-fashion-mnist (apt-get install "
                "dataset-fashion-mnist) or pass --data-dir DIR with the *-ubyte.gz IDX files");
  }
  return load_mnist_format(c.data_dir, split, limit);
}

// The checks that need the data's size (the command line checked each option on its own).
void check_sizes(const TrainConfig& c, const ImageSet& train, const Ranks& ranks) {
  const int64_t n = train.images.size(0);
  TORCH_CHECK(n >= c.batch_size, "--batch-size ", c.batch_size, " is larger than the ", n,
              " training images (--train-subset)");
  TORCH_CHECK(c.batch_size >= 2 * ranks.world, "--batch-size ", c.batch_size,
              " is too small for ", ranks.world, " ranks: each rank needs at least 2 images");
  TORCH_CHECK(c.knn_k <= n, "--knn-k ", c.knn_k, " is larger than the ", n,
              " training images (--train-subset)");
  TORCH_CHECK(c.augment.size == 0 || c.augment.size >= 8,
              "--crop-size: expected 0 (the images' own size) or 8 to 256 pixels, got ",
              c.augment.size);
}

Models build_models(const TrainConfig& c) {
  const auto dims = parse_dims(c.proj_dims, "--proj-dims");
  const auto widths = parse_dims(c.encoder_widths, "--encoder-widths");
  TORCH_CHECK(widths.size() <= 3, "--encoder-widths: at most 3 blocks for 28x28 images, got '",
              c.encoder_widths, "'");
  Models m;
  m.repr_dim = widths.back() * c.pool * c.pool;
  m.encoder = make_encoder(widths, c.pool);
  m.projector = make_projector(m.repr_dim, dims);
  m.encoder_init = clone_module(m.encoder);
  m.projector_init = clone_module(m.projector);
  if (!c.resume.empty()) {
    torch::load(m.encoder, (fs::path(c.resume) / "encoder.pt").string());
    torch::load(m.projector, (fs::path(c.resume) / "projector.pt").string());
    fmt::print("resumed encoder and projector from {}\n", c.resume);
  }
  return m;
}

// Ranks other than 0 stop after training: they print their parameter checksum (equal on every
// rank when the gradient averaging kept the replicas in sync) and leave the outputs to rank 0.
bool finish_rank(const Models& m, const Ranks& ranks, const LoopResult& trained) {
  if (ranks.world > 1) {
    double checksum = 0;
    for (const auto& p : m.parameters()) {
      checksum += p.detach().to(at::kDouble).abs().sum().item<double>();
    }
    fmt::print("rank {}: parameter checksum {:.17g}\n", ranks.rank, checksum);
  }
  if (ranks.rank == 0) return false;
  fmt::print("rank {}: trained {} steps in {:.0f} s; rank 0 evaluates and writes the outputs\n",
             ranks.rank, trained.steps, trained.seconds);
  return true;
}

}  // namespace

int run_training(const TrainConfig& c) {
  const auto t_start = std::chrono::steady_clock::now();
  torch::set_num_threads(c.threads > 0 ? c.threads
                                       : std::max(1u, std::thread::hardware_concurrency()));
  torch::manual_seed(c.seed);
  const fs::path out(c.out_dir);
  fs::create_directories(out);
  const Ranks ranks = init_ranks(c);
  vicreg::VICRegLoss criterion(loss_options(c, ranks));
  const auto train = load_split(c, "train", c.train_subset);
  const auto test = load_split(c, "t10k", c.test_subset);
  check_sizes(c, train, ranks);
  fmt::print("data: {} train / {} test images from {}\nloss: {}\nthreads: {} (OpenMP: {}, BLAS: {})\n",
             train.images.size(0), test.images.size(0), c.data_dir, c10::str(*criterion),
             torch::get_num_threads(), openmp_runtime(), blas_threading());
  if (const auto note = openmp_note(); !note.empty()) fmt::print("{}\n", note);
  if (ranks.world > 1) fmt::print("data parallel: rank {} of {}\n", ranks.rank, ranks.world);
  Models m = build_models(c);
  const auto trained = train_vicreg(m, criterion, train, c, ranks, out);
  if (finish_rank(m, ranks, trained)) return 0;
  if (trained.steps > 0) {
    torch::save(m.encoder, (out / "encoder.pt").string());
    torch::save(m.projector, (out / "projector.pt").string());
  }
  const auto rows = evaluate_rows(m, train, test, c);
  RunFacts f;
  f.steps = trained.steps;
  f.train_images = train.images.size(0);
  f.test_images = test.images.size(0);
  f.threads = torch::get_num_threads();
  f.inv_coeff = criterion->options.inv_coeff();
  f.var_coeff = criterion->options.var_coeff();
  f.cov_coeff = criterion->options.cov_coeff();
  f.gamma = criterion->options.gamma();
  f.train_seconds = trained.seconds;
  f.total_seconds = seconds_since(t_start);
  report_results(out, c, f, rows);
  return 0;
}

}  // namespace vicreg::apps
