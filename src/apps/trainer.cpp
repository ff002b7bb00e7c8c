// vicreg_train's model, training loop, evaluation and the run that wires them (trainer.h).

#include "trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
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

void add_conv_block(torch::nn::Sequential& s, int64_t in, int64_t out, bool pool) {
  s->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1).bias(false)));
  s->push_back(torch::nn::BatchNorm2d(out));
  s->push_back(torch::nn::ReLU());
  if (pool) s->push_back(torch::nn::MaxPool2d(2));
}

Features forward_of(torch::nn::Sequential m) {
  return [m](const at::Tensor& x) mutable { return m->forward(x); };
}

// An encoder's forward on images in channels_last, as training runs it (oneDNN's convolutions
// are faster on it here).
Features encoder_of(torch::nn::Sequential m) {
  return [m](const at::Tensor& x) mutable {
    return m->forward(x.contiguous(at::MemoryFormat::ChannelsLast));
  };
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
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
// averaged over the ranks. channels_last: the layout oneDNN's convolutions are fastest on.
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

// The learning curve's fixed subsets: a seeded 10k training images as the k-NN memory and 2k
// test images as queries (all of them when there are fewer), the same in every run.
struct CurveData {
  ImageSet memory, queries;
};

CurveData curve_data(const ImageSet& train, const ImageSet& test) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(20260);
  auto pick = [&gen](const ImageSet& s, int64_t count) {
    const auto idx = std::get<0>(
        at::randperm(s.images.size(0), gen).narrow(0, 0, std::min(count, s.images.size(0))).sort());
    return ImageSet{s.images.index_select(0, idx), s.labels.index_select(0, idx)};
  };
  CurveData d;
  d.memory = pick(train, 10000);
  d.queries = pick(test, 2000);
  return d;
}

// k-NN accuracy of the encoder's representation (in eval mode; its mode is restored).
double curve_knn(torch::nn::Sequential& encoder, const CurveData& d, int64_t k) {
  const bool training = encoder->is_training();
  encoder->eval();
  const auto f = encoder_of(encoder);
  const auto mem = extract_features(f, d.memory.images);
  const auto q = extract_features(f, d.queries.images);
  if (training) encoder->train();
  return knn_accuracy(mem, d.memory.labels, q, d.queries.labels, k);
}

// "name value" lines of every setting that changes the trained weights (a checkpoint of a run
// whose lines differ is refused), named as on the command line.
std::string weight_settings(const TrainConfig& c, const ImageSet& train) {
  const auto& a = c.augment;
  return fmt::format(
      "training-images {}\n--encoder-widths {}\n--pool {}\n--proj-dims {}\ndtype float32\n"
      "--epochs {}\n--batch-size {}\n--max-steps {}\n--lr {}\n--weight-decay {}\n--seed {}\n"
      "--min-scale {}\n--crop-size {}\n--brightness {}\n--contrast {}\n--noise {}\n"
      "aspect-ratio {}\nflip {}\n--preset {}\n--inv-coeff {}\n--var-coeff {}\n--cov-coeff {}\n"
      "--backward {}\n",
      train.images.size(0), c.encoder_widths, c.pool, c.proj_dims, c.epochs, c.batch_size,
      c.max_steps, c.lr, c.weight_decay, c.seed, a.min_scale, a.size, a.brightness, a.contrast,
      a.noise_std, a.max_log_ratio, a.flip_prob, c.preset, c.inv_coeff,
      c.no_variance ? 0.0 : c.var_coeff, c.cov_coeff, c.backward);
}

// The checkpoint a resumed run starts from: the newest one in --resume's directory, or with
// several ranks the newest step that every rank has (a kill may land between two ranks'
// writes of the same step); none when there is none.
std::optional<std::filesystem::path> pick_checkpoint(const TrainConfig& c, const Ranks& ranks) {
  if (c.resume.empty() || c.eval_only) return std::nullopt;
  const auto found = checkpoints_in(c.resume);
  std::vector<int64_t> steps;
  for (const auto& [step, file] : found) steps.push_back(step);
  int64_t chosen = steps.empty() ? -1 : *std::max_element(steps.begin(), steps.end());
#ifdef VICREG_WITH_DISTRIBUTED
  if (ranks.group) {
    auto mine = at::full({1, 2}, -1.0, at::kDouble);
    for (size_t i = 0; i < steps.size() && i < 2; ++i) mine[0][i] = double(steps[i]);
    const auto all = vicreg::distributed::all_gather(mine, *ranks.group);
    std::string each;
    chosen = -1;
    for (int64_t step : steps) {
      if ((all == double(step)).any(1).all().item<bool>()) chosen = std::max(chosen, step);
    }
    for (int64_t r = 0; r < all.size(0); ++r) {
      each += fmt::format("; rank {}: {} and {}", r, all[r][0].item<double>(),
                          all[r][1].item<double>());
    }
    if (chosen < 0 && !steps.empty()) {
      fmt::print("--resume {}: no checkpoint step that every rank has (steps, -1 for none{})\n",
                 c.resume, each);
    }
  }
#endif
  // A run killed before its first checkpoint starts again from step 0, so that a restart
  // with the same command line (as torchrun's restarts do) always works.
  if (chosen < 0) {
    fmt::print("--resume {}: no checkpoint to continue from ({} is missing or damaged); "
               "training starts at step 0\n", c.resume, checkpoint_file(c.resume).string());
    return std::nullopt;
  }
  for (const auto& [step, file] : found) {
    if (step == chosen) return file;
  }
  return std::nullopt;
}

// metrics.csv of a resumed run: the rows of the steps the checkpoint covers, from the resumed
// directory, then the new ones.
void open_metrics(std::ofstream& csv, const fs::path& file, const std::string& header,
                  const fs::path& resumed_dir, int64_t steps_done) {
  std::string kept = header;
  if (steps_done > 0) {
    std::ifstream in(resumed_dir / "metrics.csv");
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      if (std::stoll(line.substr(0, line.find(','))) > steps_done) break;
      kept += line + "\n";
    }
  }
  csv.open(file);
  csv << kept;
}

LoopResult train_vicreg(Models& m, vicreg::VICRegLoss& criterion, const ImageSet& train,
                        const ImageSet& test, const TrainConfig& c, const Ranks& ranks,
                        const fs::path& out, LearningCurve& curve) {
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

  torch::optim::Adam opt(m.parameters(),
                         torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(c.seed + 1);
  RunState state;
  state.settings = weight_settings(c, train);
  state.rank = ranks.rank;
  state.world = ranks.world;
  state.threads = torch::get_num_threads();
  state.modules = {{"encoder", m.encoder.ptr().get()}, {"projector", m.projector.ptr().get()}};
  state.optimizer = &opt;
  state.generators = {{"augment", gen}, {"default", at::detail::getDefaultCPUGenerator()}};
  Resumed resumed;
  if (const auto file = pick_checkpoint(c, ranks)) {
    resumed = load_checkpoint(*file, state);
    spec.start = &resumed.progress;
    fmt::print("resumed from {} after step {} of {}\n", file->string(), resumed.progress.steps,
               total_steps);
  }
  const int64_t steps_done = resumed.progress.steps;

  // The learning curve (rank 0 only): k-NN of the encoder every c.curve_every steps, with the
  // random-init encoder and the pixels on the same subsets as reference lines.
  CurveData data;
  if (c.curve_every > 0 && total_steps > 0 && ranks.rank == 0) {
    const auto t0 = std::chrono::steady_clock::now();
    data = curve_data(train, test);
    curve.every = c.curve_every;
    curve.memory = data.memory.images.size(0);
    curve.queries = data.queries.images.size(0);
    curve.k = c.knn_k;
    curve.points = resumed.curve;
    if (curve.points.empty()) curve.points.push_back({0, curve_knn(m.encoder_init, data, c.knn_k)});
    curve.random_init_pct = curve.points[0].knn_pct;
    curve.pixels_pct = knn_accuracy(data.memory.images.flatten(1), data.memory.labels,
                                    data.queries.images.flatten(1), data.queries.labels, c.knn_k);
    curve.seconds += seconds_since(t0);
    spec.extra_name = "knn_curve";
    spec.after_step = [&m, &c, &data, &curve, total_steps](int64_t done) -> std::optional<double> {
      if (done % c.curve_every != 0 && done != total_steps) return std::nullopt;
      curve.points.push_back({done, curve_knn(m.encoder, data, c.knn_k)});
      return curve.points.back().knn_pct;
    };
  }
  std::ofstream csv;
  open_metrics(csv, out / "metrics.csv", metrics_csv_header(spec.names, spec.extra_name),
               c.resume, steps_done);
  spec.csv = &csv;
  spec.checkpoint_every = c.checkpoint_every > 0 ? c.checkpoint_every : n / c.batch_size;
  spec.checkpoint = [&](const LoopProgress& p) { save_checkpoint(out, state, {p, curve.points}); };
  m.encoder->train();
  m.projector->train();
  auto r = train_loop(opt, gen, spec, vicreg_step(m, criterion, train, c, ranks));
  curve.seconds += r.hook_seconds;
  if (!curve.points.empty()) {
    std::string pts;
    for (const auto& p : curve.points) pts += fmt::format(" {} {:.1f}%,", p.step, p.knn_pct);
    pts.pop_back();
    fmt::print("learning curve (k-NN, k = {}, {} / {} images; step accuracy):{}; random init "
               "{:.1f}%, raw pixels {:.1f}% ({:.0f} s)\n",
               curve.k, curve.memory, curve.queries, pts, curve.random_init_pct,
               curve.pixels_pct, curve.seconds);
  }
  return r;
}

// What the loss costs in a step, on copies of the models (training is not touched): a whole
// training step (two augmentations, encoder and projector on both views, the loss, backward,
// Adam) timed 3 times after a warm-up, then the loss's forward + backward on the embeddings of
// that real batch, with the hand-written and with the autograd backward (15 times each after 3
// warm-ups); medians.
LossCost measure_loss_cost(const Models& m, const ImageSet& train, const TrainConfig& c,
                           vicreg::VICRegLossOptions o) {
  LossCost l;
  auto enc = clone_module(m.encoder), proj = clone_module(m.projector);
  enc->train();
  proj->train();
  auto params = enc->parameters();
  for (auto& p : proj->parameters()) params.push_back(p);
  torch::optim::Adam opt(params, torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(c.seed + 3);
  const auto idx = at::randperm(train.images.size(0), gen).narrow(0, 0, c.batch_size);
  const auto x = train.images.index_select(0, idx);
  const auto cl = at::MemoryFormat::ChannelsLast;
  vicreg::VICRegLoss criterion(o);
  at::Tensor za, zb;
  std::vector<double> step_ms;
  for (int i = 0; i < 4; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    opt.zero_grad();
    za = proj->forward(enc->forward(augment(x, gen, c.augment).contiguous(cl)));
    zb = proj->forward(enc->forward(augment(x, gen, c.augment).contiguous(cl)));
    const auto loss = criterion(za, zb);
    loss.backward();
    opt.step();
    (void)loss.item<double>();
    if (i > 0) step_ms.push_back(1e3 * seconds_since(t0));
  }
  za = za.detach();
  zb = zb.detach();
  auto time_loss = [&](vicreg::Backward b) {
    vicreg::VICRegLoss crit(vicreg::VICRegLossOptions(o).backward(b));
    std::vector<double> ms;
    for (int i = 0; i < 18; ++i) {
      auto a = za.clone().requires_grad_(), bb = zb.clone().requires_grad_();
      const auto t0 = std::chrono::steady_clock::now();
      crit(a, bb).backward();
      if (i >= 3) ms.push_back(1e3 * seconds_since(t0));
    }
    return median(ms);
  };
  l.measured = true;
  l.rows = za.size(0);
  l.dim = za.size(1);
  l.step_ms = median(step_ms);
  l.fused_ms = time_loss(vicreg::Backward::Fused);
  l.autograd_ms = time_loss(vicreg::Backward::Autograd);
  return l;
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

}  // namespace

std::vector<int64_t> parse_few_label_k(const std::string& s) {
  if (s == "0") return {};
  return parse_dims(s, "--few-label-k");
}

namespace {

// The few-label settings; without --few-label-k, the default counts that the training images
// cannot supply (a small --train-subset) are left out, in `dropped`.
FewLabelOptions few_label_options(const TrainConfig& c, const at::Tensor& train_labels,
                                  std::vector<int64_t>* dropped = nullptr) {
  FewLabelOptions o;
  o.ks = parse_few_label_k(c.few_label_k);
  o.draws = c.few_label_draws;
  o.max_iter = c.probe_iters;
  o.seed = 0;  // the same draws in every run, whatever --seed: runs differ only by training
  if (!c.few_label_k_set) {
    std::vector<int64_t> kept;
    for (auto k : o.ks) {
      FewLabelOptions one = o;
      one.ks = {k};
      one.draws = 1;
      try {
        plan_few_label(train_labels, one);
        kept.push_back(k);
      } catch (const c10::Error&) {
        if (dropped) dropped->push_back(k);
      }
    }
    o.ks = kept;
  }
  return o;
}

}  // namespace

Projection project_2d(const at::Tensor& features, const at::Tensor& labels) {
  auto x = features.to(at::kDouble);
  x = (x - x.mean(0, true)) / x.std(0, true, true).clamp_min(1e-12);
  const auto cov = x.t().mm(x) / std::max<int64_t>(1, x.size(0) - 1);
  const auto [evals, evecs] = at::linalg_eigh(cov);  // ascending
  const int64_t d = x.size(1);
  TORCH_CHECK(d >= 2, "project_2d: expected at least 2 feature dims, got ", d);
  auto v = evecs.narrow(1, d - 2, 2).flip({1}).clone();  // [d, 2], largest first
  for (int64_t j = 0; j < 2; ++j) {
    const auto col = v.select(1, j);
    if (col[col.abs().argmax().item<int64_t>()].item<double>() < 0) col.neg_();
  }
  const auto xy = x.mm(v).to(at::kFloat).contiguous();
  const double total = evals.sum().item<double>();
  Projection p;
  const auto* a = xy.data_ptr<float>();
  for (int64_t i = 0; i < xy.size(0); ++i) {
    p.pc1.push_back(a[2 * i]);
    p.pc2.push_back(a[2 * i + 1]);
  }
  const auto y = labels.to(at::kLong).contiguous();
  p.labels.assign(y.data_ptr<int64_t>(), y.data_ptr<int64_t>() + y.numel());
  p.explained1 = 100 * evals[d - 1].item<double>() / total;
  p.explained2 = 100 * evals[d - 2].item<double>() / total;
  return p;
}

ResultRow evaluate(const std::string& name, const std::string& label, const Features& encode,
                   const Features& project, const ImageSet& train, const ImageSet& test,
                   const TrainConfig& c, const FewLabelPlan* few, bool pca) {
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
  r.full_seconds = seconds_since(t0);
  std::string few_text;
  if (few && !few->ks.empty()) {
    const auto t1 = std::chrono::steady_clock::now();
    auto fo = few_label_options(c, train.labels);
    fo.on_fit = [&](int64_t fit, int64_t fits) {  // one line per 20 fits in a log
      if ((fit - 1) % 20 == 0 || fit == fits) {
        say(fmt::format("few labels, L-BFGS fit {}/{}", fit, fits));
      }
    };
    for (const auto& s : few_label_eval(ftr, train.labels, fte, test.labels, *few, fo)) {
      r.few_label.push_back({s.k, s.linear_mean, s.linear_std, s.knn_mean, s.knn_std,
                             static_cast<int64_t>(s.linear.size()), s.l2, s.val_accuracy});
      few_text += fmt::format(" {}: {:.1f}/{:.1f}%", s.k, s.linear_mean, s.knn_mean);
    }
    r.few_label_seconds = seconds_since(t1);
    few_text = fmt::format("; per class, linear/1-NN{} ({:.0f} s)", few_text, r.few_label_seconds);
  }
  if (pca) r.pca = project_2d(fte, test.labels);
  status.clear();
  fmt::print("  evaluated {:<22} linear probe {:5.2f}% (L2 {:g})  k-NN {:5.2f}%  ({:.0f} s){}\n",
             name, r.probe_pct, r.probe_l2, r.knn_pct, r.full_seconds, few_text);
  return r;
}

namespace {

// The rows of the results table: the trained encoder, the same encoder at its initial weights,
// raw pixels, and (--supervised-steps) the supervised reference; every row with the few-label
// evaluation on the same draws.
std::vector<ResultRow> evaluate_rows(Models& m, const ImageSet& train, const ImageSet& test,
                                     const TrainConfig& c) {
  fmt::print("evaluating on {} test images (probe trained on {} train images)\n",
             test.images.size(0), train.images.size(0));
  for (auto* s : {&m.encoder, &m.projector, &m.encoder_init, &m.projector_init}) (*s)->eval();
  std::vector<int64_t> dropped;
  const auto fo = few_label_options(c, train.labels, &dropped);
  std::optional<FewLabelPlan> plan;
  auto list = [](const std::vector<int64_t>& v) {
    std::string s;
    for (auto k : v) s += fmt::format("{}{}", s.empty() ? "" : ", ", k);
    return s;
  };
  if (!fo.ks.empty()) {
    plan = plan_few_label(train.labels, fo);
    fmt::print("few labels: {} labelled images per class, {} draws, penalty chosen on {} "
               "validation images of the training set\n",
               list(fo.ks), fo.draws, plan->val_idx.size(0));
  }
  if (!dropped.empty()) {
    fmt::print("few labels: left out {} per class: too few training images of some class "
               "(--train-subset); --few-label-k sets the counts\n",
               list(dropped));
  }
  const FewLabelPlan* few = plan ? &*plan : nullptr;
  const int count = c.supervised_steps > 0 ? 4 : 3;
  auto label = [count](int i) { return fmt::format("{}/{}", i, count); };
  std::vector<ResultRow> rows;
  rows.push_back(evaluate("VICReg encoder", label(1), encoder_of(m.encoder),
                          forward_of(m.projector), train, test, c, few, true));
  rows.push_back(evaluate("random-init encoder", label(2), encoder_of(m.encoder_init),
                          forward_of(m.projector_init), train, test, c, few, true));
  rows.push_back(evaluate(
      "raw pixels", label(3), [](const at::Tensor& x) { return x; }, nullptr, train, test, c,
      few));
  if (c.supervised_steps > 0) {
    const auto sup = train_supervised(m.encoder_init, m.repr_dim, train, c);
    rows.push_back(evaluate("supervised encoder", label(4), encoder_of(sup), nullptr, train,
                            test, c, few));
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
  // The few-label draws, before training rather than after it.
  if (const auto fo = few_label_options(c, train.labels); !fo.ks.empty()) {
    plan_few_label(train.labels, fo);
  }
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
  if (c.eval_only) {
    torch::load(m.encoder, (fs::path(c.resume) / "encoder.pt").string());
    torch::load(m.projector, (fs::path(c.resume) / "projector.pt").string());
    fmt::print("evaluating the encoder and projector of {}\n", c.resume);
  }
  return m;
}

// FNV-1a of the tensors' bytes: equal digests mean bitwise equal tensors (in practice).
uint64_t digest(const std::vector<at::Tensor>& tensors) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& t : tensors) {
    const auto c = t.detach().contiguous();
    const auto* p = static_cast<const unsigned char*>(c.data_ptr());
    for (size_t i = 0; i < c.nbytes(); ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
  return h;
}

// Every rank prints the digests of its parameters (equal on every rank when the gradient
// averaging kept the replicas in sync) and of its BatchNorm statistics (per rank); the tests
// compare them with an uninterrupted run's. Ranks other than 0 then stop and leave the outputs
// to rank 0.
bool finish_rank(const Models& m, const Ranks& ranks, const LoopResult& trained) {
  std::vector<at::Tensor> buffers = m.encoder->buffers();
  for (const auto& b : m.projector->buffers()) buffers.push_back(b);
  fmt::print("rank {}: parameter digest {:016x}, buffer digest {:016x}\n", ranks.rank,
             digest(m.parameters()), digest(buffers));
  if (ranks.rank == 0) return false;
  fmt::print("rank {}: trained {} steps in {:.0f} s; rank 0 evaluates and writes the outputs\n",
             ranks.rank, trained.steps, trained.seconds);
  return true;
}

}  // namespace

namespace {

// One run (one seed); returns its rows, or nothing on ranks other than 0.
std::vector<ResultRow> run_one(const TrainConfig& c) {
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
  RunFacts f;
  if (!c.eval_only && ranks.world == 1) {
    const auto t0 = std::chrono::steady_clock::now();
    f.loss_cost = measure_loss_cost(m, train, c, loss_options(c, Ranks{}));
    fmt::print("{}", loss_cost_line(f.loss_cost));
    f.phases.push_back({"loss timing", seconds_since(t0)});
  }
  const auto trained = train_vicreg(m, criterion, train, test, c, ranks, out, f.curve);
  if (finish_rank(m, ranks, trained)) return {};
  if (trained.steps > 0) {
    torch::save(m.encoder, (out / "encoder.pt").string());
    torch::save(m.projector, (out / "projector.pt").string());
  }
  const auto t_eval = std::chrono::steady_clock::now();
  const auto rows = evaluate_rows(m, train, test, c);
  const double eval_seconds = seconds_since(t_eval);
  double full = 0, few = 0;
  for (const auto& r : rows) {
    full += r.full_seconds;
    few += r.few_label_seconds;
  }
  f.steps = trained.steps;
  f.train_images = train.images.size(0);
  f.test_images = test.images.size(0);
  f.threads = torch::get_num_threads();
  f.inv_coeff = criterion->options.inv_coeff();
  f.var_coeff = criterion->options.var_coeff();
  f.cov_coeff = criterion->options.cov_coeff();
  f.gamma = criterion->options.gamma();
  f.train_seconds = trained.seconds - trained.hook_seconds;
  f.phases.push_back({"training", f.train_seconds});
  f.phases.push_back({"learning curve", f.curve.seconds});
  f.phases.push_back({"full-label probes and k-NN", full});
  f.phases.push_back({"few-label probes", few});
  f.phases.push_back({c.supervised_steps > 0 ? "supervised reference, PCA" : "PCA",
                      eval_seconds - full - few});
  f.total_seconds = seconds_since(t_start);
  report_results(out, c, f, rows);
  return rows;
}

}  // namespace

int run_training(const TrainConfig& c) {
  if (c.seeds.empty()) {
    run_one(c);
    return 0;
  }
  std::vector<std::vector<ResultRow>> runs;
  for (const auto seed : c.seeds) {
    TrainConfig one = c;
    one.seed = seed;
    one.seeds.clear();
    one.out_dir = (fs::path(c.out_dir) / fmt::format("seed-{}", seed)).string();
    fmt::print("=== seed {} -> {}\n", seed, one.out_dir);
    runs.push_back(run_one(one));
    if (runs.back().empty()) return 0;  // a rank other than 0
  }
  const auto summary = seeds_summary(c.seeds, runs);
  fmt::print("\n{}", summary);
  std::ofstream(fs::path(c.out_dir) / "seeds.md") << summary;
  return 0;
}

}  // namespace vicreg::apps
