// vicreg_train's VICReg run and supervised reference (training.h).

#include "training.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <limits>
#include <optional>

#include "eval.h"
#include "files.h"
#include "progress.h"

namespace fs = std::filesystem;

namespace vicreg::apps {
namespace {

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

// metrics.csv of a resumed run: the rows of the steps the checkpoint covers, from the resumed
// directory, then the new ones.
void open_metrics(std::ofstream& csv, const fs::path& file, const std::string& header,
                  const fs::path& resumed_dir, int64_t steps_done) {
  std::string kept = header;
  if (steps_done > 0) {
    // Whole rows of steps 1, 2, ... in order, up to the checkpoint's step: a row torn by a
    // kill or a full disk (no newline, or missing fields) ends what is kept.
    std::ifstream in(resumed_dir / "metrics.csv");
    const auto fields = std::count(header.begin(), header.end(), ',');
    std::string line;
    std::getline(in, line);  // the header
    int64_t step = 0;
    while (step < steps_done && std::getline(in, line) && !in.eof() &&
           std::count(line.begin(), line.end(), ',') == fields &&
           line.rfind(std::to_string(step + 1) + ",", 0) == 0) {
      kept += line + "\n";
      ++step;
    }
    if (step < steps_done) {
      fmt::print("note: {} has whole rows up to step {} only; the rows of steps {} to {} are "
                 "missing from metrics.csv\n", (resumed_dir / "metrics.csv").string(), step,
                 step + 1, steps_done);
    }
  }
  start_log(csv, file, kept);
}

}  // namespace

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

}  // namespace vicreg::apps
