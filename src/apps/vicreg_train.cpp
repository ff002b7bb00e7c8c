// vicreg_train: trains a small CNN encoder with the VICReg loss on Fashion-MNIST (two random
// augmentations of each image), then evaluates the frozen representation against the same
// encoder at random init and raw pixels with the same linear probe and k-NN, and writes
// metrics (CSV, JSON), the table and gnuplot plots to the output directory.

#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "data.h"
#include "eval.h"
#include "omp_env.h"
#include "vicreg/vicreg.h"
#ifdef VICREG_WITH_DISTRIBUTED
#include "vicreg/distributed.h"
#endif

namespace fs = std::filesystem;
using vicreg::apps::ImageSet;

namespace {

struct Config {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  std::string out_dir = "runs/default";
  int64_t epochs = 2;
  int64_t batch_size = 128;
  int64_t max_steps = 0;
  std::string proj_dims = "1024,1024";
  std::string encoder_widths = "16,32,64";
  int64_t pool = 2;
  double lr = 7e-4;
  double weight_decay = 1e-6;
  double inv_coeff = 25, var_coeff = 25, cov_coeff = 1;
  bool no_variance = false;
  std::string preset = "reference";
  std::string backward = "fused";
  int threads = 0;
  uint64_t seed = 0;
  int64_t train_subset = 0, test_subset = 0;
  std::string resume;
  bool eval_only = false;
  std::vector<std::string> compare;
  vicreg::apps::AugmentOptions augment;
  bool distributed = false;
  int64_t probe_iters = 200;
  int64_t knn_k = 10;
  int64_t supervised_steps = 0;
};

void add_conv_block(torch::nn::Sequential& s, int64_t in, int64_t out, bool pool) {
  s->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1).bias(false)));
  s->push_back(torch::nn::BatchNorm2d(out));
  s->push_back(torch::nn::ReLU());
  if (pool) s->push_back(torch::nn::MaxPool2d(2));
}

// 28x28x1 -> widths.back() * pool^2: conv blocks (max-pooled but the last), then average
// pooling to pool x pool positions, flattened.
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

// The expander: Linear-BN-ReLU for every hidden size, then a plain Linear (VICReg's layout).
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

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Evaluation {
  std::string name;
  double probe = 0, knn = 0, probe_l2 = 0;
  vicreg::apps::SpreadStats repr, embed;  // embed only for encoders
  bool has_embed = false;
};

// Sets the learning rate of every group of `opt` to the cosine decay from base_lr at step 0 to 0
// at step `total`, and returns it.
double set_cosine_lr(torch::optim::Adam& opt, double base_lr, int64_t step, int64_t total) {
  const double lr = base_lr * 0.5 * (1 + std::cos(M_PI * step / std::max<int64_t>(1, total)));
  for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
  return lr;
}

// The supervised reference: a copy of the encoder at its initial weights, trained with the labels
// (a linear head on the representation, cross-entropy) on un-augmented images for
// --supervised-steps steps, with the VICReg run's batch size, Adam, learning rate and cosine
// schedule. It tells how far this encoder can rise above its random init in that many steps when
// the labels are known.
torch::nn::Sequential train_supervised(const torch::nn::Sequential& init, int64_t repr_dim,
                                       const ImageSet& train, const Config& c) {
  auto encoder = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(init->clone());
  const int64_t classes = train.labels.max().item<int64_t>() + 1;
  torch::nn::Linear head(repr_dim, classes);
  std::vector<torch::Tensor> params = encoder->parameters();
  for (auto& p : head->parameters()) params.push_back(p);
  torch::optim::Adam optimizer(params,
                               torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(c.seed + 2);
  const int64_t n = train.images.size(0);
  const int64_t per_epoch = n / c.batch_size;
  const auto t0 = std::chrono::steady_clock::now();
  encoder->train();
  at::Tensor perm;
  double loss = 0;
  for (int64_t step = 0; step < c.supervised_steps; ++step) {
    if (step % per_epoch == 0) perm = torch::randperm(n, gen);
    set_cosine_lr(optimizer, c.lr, step, c.supervised_steps);
    const auto idx = perm.narrow(0, (step % per_epoch) * c.batch_size, c.batch_size);
    const auto x = train.images.index_select(0, idx).contiguous(at::MemoryFormat::ChannelsLast);
    const auto l = torch::nn::functional::cross_entropy(head->forward(encoder->forward(x)),
                                                        train.labels.index_select(0, idx));
    optimizer.zero_grad();
    l.backward();
    optimizer.step();
    loss = l.item<double>();
    TORCH_CHECK(std::isfinite(loss), "the supervised reference's loss became non-finite at step ",
                step);
  }
  fmt::print("supervised reference: {} steps with labels in {:.0f} s, last batch loss {:.4f}\n",
             c.supervised_steps, seconds_since(t0), loss);
  encoder->eval();
  return encoder;
}

Evaluation evaluate(const std::string& name, const std::function<at::Tensor(const at::Tensor&)>& f,
                    torch::nn::Sequential* projector, const ImageSet& train,
                    const ImageSet& test, const Config& c) {
  const auto t0 = std::chrono::steady_clock::now();
  Evaluation e;
  e.name = name;
  const auto ftr = vicreg::apps::extract_features(f, train.images);
  const auto fte = vicreg::apps::extract_features(f, test.images);
  vicreg::apps::ProbeOptions po;
  po.max_iter = c.probe_iters;
  po.seed = c.seed;
  const auto probe = vicreg::apps::linear_probe(ftr, train.labels, fte, test.labels, po);
  e.probe = probe.accuracy;
  e.probe_l2 = probe.l2;
  e.knn = vicreg::apps::knn_accuracy(ftr, train.labels, fte, test.labels, c.knn_k);
  e.repr = vicreg::apps::spread_stats(fte);
  if (projector) {
    auto& p = *projector;
    e.embed = vicreg::apps::spread_stats(
        vicreg::apps::extract_features([&](const at::Tensor& x) { return p->forward(x); }, fte));
    e.has_embed = true;
  }
  fmt::print("  evaluated {:<22} linear probe {:5.2f}% (L2 {:g})  k-NN {:5.2f}%  ({:.0f} s)\n",
             name, e.probe, e.probe_l2, e.knn, seconds_since(t0));
  std::fflush(stdout);
  return e;
}

void write_plots(const fs::path& out, const std::vector<std::string>& compare) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    fmt::print(stderr, "gnuplot not found: skipping the PNG plots (install gnuplot-nox)\n");
    return;
  }
  std::ofstream gp(out / "plots.gp");
  gp << "set terminal pngcairo size 1100,420 font ',10'\nset datafile separator ','\n"
     << "set key autotitle columnhead\nset grid\n";
  gp << "set output '" << (out / "loss.png").string() << "'\n"
     << "set multiplot layout 1,3 title 'VICReg loss terms over training steps (unweighted)'\n"
     << "set xlabel 'step'\nset title 'invariance'\nplot '" << (out / "metrics.csv").string()
     << "' using 1:4 with lines lw 1.5 notitle\n"
     << "set title 'variance'\nplot '" << (out / "metrics.csv").string()
     << "' using 1:5 with lines lw 1.5 lc 2 notitle\n"
     << "set title 'covariance'\nset logscale y\nplot '" << (out / "metrics.csv").string()
     << "' using 1:6 with lines lw 1.5 lc 3 notitle\nunset logscale y\nunset multiplot\n";
  gp << "set output '" << (out / "std.png").string() << "'\nset size 1,1\n"
     << "set title 'per-dimension std of the test-set embeddings (projector output), sorted'\n"
     << "set xlabel 'dimension (sorted)'\nset ylabel 'std'\nset logscale y\nset key top right\n"
     << "plot '" << (out / "std_sorted.csv").string()
     << "' using 1:2 with lines lw 2 title 'trained (this run)', '' using 1:3 with lines lw 2 "
        "title 'random init'";
  for (const auto& dir : compare) {
    gp << ", '" << (fs::path(dir) / "std_sorted.csv").string()
       << "' using 1:2 with lines lw 2 title 'trained: " << fs::path(dir).filename().string()
       << "'";
  }
  gp << "\n";
  gp.close();
  const auto cmd = "gnuplot '" + (out / "plots.gp").string() + "'";
  if (std::system(cmd.c_str()) != 0) fmt::print(stderr, "gnuplot failed: {}\n", cmd);
}

int run(const Config& c) {
  const auto t_start = std::chrono::steady_clock::now();
  torch::set_num_threads(c.threads > 0 ? c.threads
                                       : std::max(1u, std::thread::hardware_concurrency()));
  torch::manual_seed(c.seed);
  const fs::path out(c.out_dir);
  fs::create_directories(out);
  const auto dims = parse_dims(c.proj_dims, "--proj-dims");
  const auto widths = parse_dims(c.encoder_widths, "--encoder-widths");
  TORCH_CHECK(widths.size() <= 3, "--encoder-widths: at most 3 blocks for 28x28 images, got '",
              c.encoder_widths, "'");
  TORCH_CHECK(c.pool >= 1 && c.pool <= 7, "--pool: expected 1..7, got ", c.pool);
  const int64_t repr_dim = widths.back() * c.pool * c.pool;

  auto opts = vicreg::VICRegLossOptions::preset(c.preset)
                  .inv_coeff(c.inv_coeff)
                  .var_coeff(c.no_variance ? 0.0 : c.var_coeff)
                  .cov_coeff(c.cov_coeff);
  TORCH_CHECK(c.backward == "fused" || c.backward == "autograd",
              "--backward: expected 'fused' or 'autograd', got '", c.backward, "'");
  opts.backward(c.backward == "fused" ? vicreg::Backward::Fused : vicreg::Backward::Autograd);
  // Data parallel (--distributed): every rank sees the same batches and augmentations (same
  // seeds), trains on its shard of each batch with the loss gathered over all ranks, and
  // averages gradients over the group, so the ranks stay in sync. Rank 0 evaluates and writes
  // the outputs; BatchNorm statistics are per rank (no SyncBatchNorm), so the run is close to,
  // not equal to, the single process on the whole batch.
  int rank = 0, world = 1;
#ifdef VICREG_WITH_DISTRIBUTED
  std::shared_ptr<vicreg::distributed::Group> group;
  if (c.distributed) {
    group = vicreg::distributed::init_from_env(std::chrono::seconds(120));
    rank = group->rank();
    world = group->size();
    opts.process_group(group);
  }
#else
  TORCH_CHECK(!c.distributed, "--distributed: this build of vicreg has no distributed support");
#endif
  vicreg::VICRegLoss criterion(opts);

  ImageSet train = vicreg::apps::load_mnist_format(c.data_dir, "train", c.train_subset);
  ImageSet test = vicreg::apps::load_mnist_format(c.data_dir, "t10k", c.test_subset);
  fmt::print("data: {} train / {} test images from {}\nloss: {}\nthreads: {}\n",
             train.images.size(0), test.images.size(0), c.data_dir,
             c10::str(*criterion), torch::get_num_threads());
  if (world > 1) fmt::print("data parallel: rank {} of {}\n", rank, world);

  auto encoder = make_encoder(widths, c.pool);
  auto projector = make_projector(repr_dim, dims);
  // The random-init baseline: the very weights training starts from.
  auto encoder_init = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(encoder->clone());
  auto projector_init = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(projector->clone());
  if (!c.resume.empty()) {
    torch::load(encoder, (fs::path(c.resume) / "encoder.pt").string());
    torch::load(projector, (fs::path(c.resume) / "projector.pt").string());
    fmt::print("resumed encoder and projector from {}\n", c.resume);
  }

  const int64_t n = train.images.size(0);
  TORCH_CHECK(n >= c.batch_size && c.batch_size >= 2, "need at least one batch: ", n,
              " train images, batch size ", c.batch_size);
  TORCH_CHECK(c.batch_size >= 2 * world, "--batch-size ", c.batch_size,
              " is too small for ", world, " ranks: each rank needs at least 2 images");
  const auto shard = vicreg::apps::shard_of(c.batch_size, rank, world);
  const int64_t steps_per_epoch = n / c.batch_size;
  int64_t total_steps = c.eval_only ? 0 : steps_per_epoch * c.epochs;
  if (c.max_steps > 0) total_steps = std::min(total_steps, c.max_steps);

  std::ofstream csv(out / "metrics.csv");
  csv << "step,epoch,loss,invariance,variance,covariance,images_per_s,lr\n";
  std::vector<torch::Tensor> params = encoder->parameters();
  for (auto& p : projector->parameters()) params.push_back(p);
  torch::optim::Adam optimizer(params,
                               torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(c.seed + 1);
  const bool tty = isatty(fileno(stderr));
  const auto t_train = std::chrono::steady_clock::now();
  int64_t step = 0;
  for (int64_t epoch = 0; step < total_steps; ++epoch) {
    encoder->train();
    projector->train();
    const auto perm = torch::randperm(n, gen);
    double sums[4] = {0, 0, 0, 0};
    int64_t count = 0;
    const auto t_epoch = std::chrono::steady_clock::now();
    for (int64_t b = 0; b < steps_per_epoch && step < total_steps; ++b, ++step) {
      const auto t_step = std::chrono::steady_clock::now();
      // Cosine decay of the learning rate over the whole run.
      const double lr = set_cosine_lr(optimizer, c.lr, step, total_steps);
      const auto x = train.images.index_select(0, perm.narrow(0, b * c.batch_size, c.batch_size));
      // channels_last: oneDNN's convolutions run ~1.5x faster on it here.
      const auto cl = at::MemoryFormat::ChannelsLast;
      // Every rank augments the whole batch (same generator stream), then takes its shard.
      const auto va = vicreg::apps::augment(x, gen, c.augment)
                          .narrow(0, shard.begin, shard.size).contiguous(cl);
      const auto vb = vicreg::apps::augment(x, gen, c.augment)
                          .narrow(0, shard.begin, shard.size).contiguous(cl);
      const auto terms = criterion->terms(projector->forward(encoder->forward(va)),
                                          projector->forward(encoder->forward(vb)));
      optimizer.zero_grad();
      terms.loss.backward();
#ifdef VICREG_WITH_DISTRIBUTED
      if (group) {
        std::vector<at::Tensor> grads;
        for (auto& p : params) grads.push_back(p.mutable_grad());
        vicreg::distributed::all_reduce_mean_(grads, *group);
      }
#endif
      optimizer.step();
      const double v[4] = {terms.loss.item<double>(), terms.invariance.item<double>(),
                           terms.variance.item<double>(), terms.covariance.item<double>()};
      TORCH_CHECK(std::isfinite(v[0]), "the loss became non-finite at step ", step);
      for (int i = 0; i < 4; ++i) sums[i] += v[i];
      ++count;
      const double ips = 2.0 * c.batch_size / seconds_since(t_step);
      csv << fmt::format("{},{},{:.6g},{:.6g},{:.6g},{:.6g},{:.1f},{:.3g}\n", step + 1, epoch + 1,
                         v[0], v[1], v[2], v[3], ips, lr);
      const int width = 24;
      const int filled = static_cast<int>(width * (step + 1) / total_steps);
      const auto bar = std::string(filled, '#') + std::string(width - filled, '.');
      const auto line = fmt::format(
          "[{}] step {}/{} epoch {} | loss {:.3f} inv {:.4f} var {:.4f} cov {:.4f} | {:.0f} img/s",
          bar, step + 1, total_steps, epoch + 1, v[0], v[1], v[2], v[3], ips);
      if (tty) {
        fmt::print(stderr, "\r{}", line);
      } else if ((step + 1) % 50 == 0 || step + 1 == total_steps) {
        fmt::print(stderr, "{}\n", line);
      }
    }
    if (tty) fmt::print(stderr, "\n");
    if (count > 0) {
      fmt::print("epoch {}: mean loss {:.4f} (invariance {:.4f}, variance {:.4f}, covariance "
                 "{:.4f}) in {:.0f} s\n",
                 epoch + 1, sums[0] / count, sums[1] / count, sums[2] / count, sums[3] / count,
                 seconds_since(t_epoch));
      std::fflush(stdout);
    }
  }
  csv.close();
  const double train_seconds = seconds_since(t_train);
  if (world > 1) {
    // Equal on every rank when the gradient averaging kept the replicas in sync.
    double checksum = 0;
    for (const auto& p : params) checksum += p.detach().to(at::kDouble).abs().sum().item<double>();
    fmt::print("rank {}: parameter checksum {:.17g}\n", rank, checksum);
  }
  if (rank != 0) {
    fmt::print("rank {}: trained {} steps in {:.0f} s; rank 0 evaluates and writes the outputs\n",
               rank, total_steps, train_seconds);
    return 0;
  }
  if (total_steps > 0) {
    torch::save(encoder, (out / "encoder.pt").string());
    torch::save(projector, (out / "projector.pt").string());
  }

  fmt::print("evaluating on {} test images (probe trained on {} train images)\n",
             test.images.size(0), n);
  encoder->eval();
  projector->eval();
  encoder_init->eval();
  projector_init->eval();
  std::vector<Evaluation> rows;
  rows.push_back(evaluate(
      "VICReg encoder", [&](const at::Tensor& x) { return encoder->forward(x); }, &projector,
      train, test, c));
  torch::nn::Sequential pinit(projector_init);
  rows.push_back(evaluate(
      "random-init encoder", [&](const at::Tensor& x) { return encoder_init->forward(x); },
      &pinit, train, test, c));
  rows.push_back(evaluate("raw pixels", [](const at::Tensor& x) { return x; }, nullptr, train,
                          test, c));
  if (c.supervised_steps > 0) {
    auto sup = train_supervised(torch::nn::Sequential(encoder_init), repr_dim, train, c);
    rows.push_back(evaluate(
        "supervised encoder", [&](const at::Tensor& x) { return sup->forward(x); }, nullptr,
        train, test, c));
  }

  std::ostringstream table;
  table << "| features | linear probe acc. | k-NN acc. (k=" << c.knn_k
        << ") | repr. mean std | repr. dims < 1% RMS | embed. mean std | embed. dims < 1% RMS |\n"
        << "|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows) {
    table << fmt::format("| {} | {:.2f}% | {:.2f}% | {:.3g} | {:.1f}% | {} | {} |\n", r.name,
                         r.probe, r.knn, r.repr.mean_std, 100 * r.repr.collapsed,
                         r.has_embed ? fmt::format("{:.3g}", r.embed.mean_std) : "-",
                         r.has_embed ? fmt::format("{:.1f}%", 100 * r.embed.collapsed) : "-");
  }
  const double total_seconds = seconds_since(t_start);
  fmt::print("\n{}\n", table.str());
  fmt::print("trained for {} steps ({:.0f} s); total run {:.0f} s. Collapsed: std < {} x the "
             "features' RMS, over the test set.\n",
             total_steps, train_seconds, total_seconds, vicreg::apps::kCollapsedStd);
  // VICReg's variance hinge asks every embedding dim for std >= gamma; far below it the
  // embeddings have (nearly) collapsed onto a point.
  if (rows[0].has_embed &&
      (rows[0].embed.mean_std < 0.1 * opts.gamma() || rows[0].embed.collapsed > 0.5)) {
    fmt::print("COLLAPSE: the trained embeddings' mean per-dimension std is {:.3g}, below 10% of "
               "the variance target gamma = {} ({:.0f}% of dims under {} x RMS); the variance "
               "term (var_coeff = {}) is what prevents this.\n",
               rows[0].embed.mean_std, opts.gamma(), 100 * rows[0].embed.collapsed,
               vicreg::apps::kCollapsedStd, opts.var_coeff());
  }
  std::ofstream(out / "table.md") << table.str();

  std::ofstream stds(out / "std_sorted.csv");
  stds << "rank,trained_embedding,random_embedding,trained_repr,random_repr\n";
  const int64_t D = rows[0].embed.std.size(0);
  for (int64_t i = 0; i < D; ++i) {
    stds << fmt::format("{},{:.6g},{:.6g},{},{}\n", i + 1, rows[0].embed.std[i].item<double>(),
                        rows[1].embed.std[i].item<double>(),
                        i < repr_dim ? fmt::format("{:.6g}", rows[0].repr.std[i].item<double>()) : "",
                        i < repr_dim ? fmt::format("{:.6g}", rows[1].repr.std[i].item<double>()) : "");
  }
  stds.close();

  std::ofstream json(out / "results.json");
  json << "{\n  \"config\": {"
       << fmt::format("\"epochs\": {}, \"steps\": {}, \"batch_size\": {}, \"proj_dims\": \"{}\", "
                      "\"lr\": {}, \"preset\": \"{}\", \"inv_coeff\": {}, \"var_coeff\": {}, "
                      "\"cov_coeff\": {}, \"backward\": \"{}\", \"threads\": {}, \"seed\": {}, "
                      "\"train_images\": {}, \"test_images\": {}, \"supervised_steps\": {}",
                      c.epochs, total_steps, c.batch_size, c.proj_dims, c.lr, c.preset,
                      opts.inv_coeff(), opts.var_coeff(), opts.cov_coeff(), c.backward,
                      torch::get_num_threads(), c.seed, n, test.images.size(0),
                      c.supervised_steps)
       << "},\n  \"results\": [\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    json << fmt::format(
        "    {{\"features\": \"{}\", \"linear_probe\": {:.4f}, \"probe_l2\": {:g}, \"knn\": {:.4f}, "
        "\"repr_mean_std\": {:.6g}, \"repr_collapsed\": {:.6g}{}}}{}\n",
        r.name, r.probe, r.probe_l2, r.knn, r.repr.mean_std, r.repr.collapsed,
        r.has_embed ? fmt::format(", \"embed_mean_std\": {:.6g}, \"embed_collapsed\": {:.6g}",
                                  r.embed.mean_std, r.embed.collapsed)
                    : "",
        i + 1 < rows.size() ? "," : "");
  }
  json << fmt::format("  ],\n  \"train_seconds\": {:.1f},\n  \"total_seconds\": {:.1f}\n}}\n",
                      train_seconds, total_seconds);
  json.close();
  if (total_steps > 0) write_plots(out, c.compare);
  fmt::print("wrote {}: metrics.csv, results.json, table.md, std_sorted.csv{}\n", out.string(),
             total_steps > 0 ? ", loss.png, std.png, encoder.pt, projector.pt" : "");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  vicreg::apps::ensure_passive_openmp(argv);
  vicreg::apps::keep_freed_memory();
  Config c;
  CLI::App app{"Train a CNN encoder with VICReg on Fashion-MNIST and evaluate what it learned"};
  app.add_option("--data-dir", c.data_dir, "directory with the *-ubyte.gz IDX files")
      ->capture_default_str();
  app.add_option("--out-dir", c.out_dir, "where metrics, table, plots and checkpoint go")
      ->capture_default_str();
  app.add_option("--epochs", c.epochs, "passes over the training set")->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--batch-size", c.batch_size, "images per step (each seen in two views)")
      ->capture_default_str()->check(CLI::Range(2, 1 << 20));
  app.add_option("--max-steps", c.max_steps, "stop after this many steps (0: no limit)")
      ->capture_default_str();
  app.add_option("--proj-dims", c.proj_dims, "projector (expander) sizes, comma-separated")
      ->capture_default_str();
  app.add_option("--encoder-widths", c.encoder_widths, "channels of the conv blocks (<= 3)")
      ->capture_default_str();
  app.add_option("--pool", c.pool, "representation: average-pooled to pool x pool positions")
      ->capture_default_str();
  app.add_option("--lr", c.lr, "Adam learning rate (cosine-decayed to 0)")->capture_default_str();
  app.add_option("--weight-decay", c.weight_decay, "Adam weight decay (L2)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--preset", c.preset, "loss convention: reference, paper or article")
      ->capture_default_str()->check(CLI::IsMember({"reference", "paper", "article"}));
  app.add_option("--inv-coeff", c.inv_coeff, "invariance weight")->capture_default_str();
  app.add_option("--var-coeff", c.var_coeff, "variance weight (0 shows the collapse)")
      ->capture_default_str();
  app.add_option("--cov-coeff", c.cov_coeff, "covariance weight")->capture_default_str();
  app.add_flag("--no-variance", c.no_variance, "same as --var-coeff 0");
  app.add_option("--backward", c.backward, "fused (hand-written) or autograd")
      ->capture_default_str()->check(CLI::IsMember({"fused", "autograd"}));
  app.add_option("--threads", c.threads, "intra-op threads (0: all cores)")->capture_default_str();
  app.add_option("--seed", c.seed, "seed of weights, batches and augmentations")
      ->capture_default_str();
  app.add_option("--train-subset", c.train_subset, "use the first N training images (0: all)")
      ->capture_default_str();
  app.add_option("--test-subset", c.test_subset, "use the first N test images (0: all)")
      ->capture_default_str();
  app.add_option("--resume", c.resume, "load encoder.pt/projector.pt from this run directory");
  app.add_flag("--eval-only", c.eval_only, "evaluate the --resume checkpoint without training");
  app.add_option("--compare", c.compare,
                 "other run directories whose embedding std curve std.png overlays");
  app.add_option("--min-scale", c.augment.min_scale,
                 "random resized crop: smallest area fraction kept")
      ->capture_default_str()->check(CLI::Range(0.01, 1.0));
  app.add_option("--crop-size", c.augment.size,
                 "side of the training views in pixels (0: the images' own); evaluation always "
                 "sees the full images")
      ->capture_default_str()->check(CLI::Range(0, 256));
  app.add_option("--brightness", c.augment.brightness,
                 "brightness jitter: shift in [-b, b] x the image's mean")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  app.add_option("--contrast", c.augment.contrast, "contrast jitter: factor in [1 - c, 1 + c]")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  app.add_option("--noise", c.augment.noise_std, "std of the Gaussian pixel noise")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  app.add_flag("--distributed", c.distributed,
               "data parallel over the ranks that RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT "
               "describe (one process per rank, as torchrun starts them)");
  app.add_option("--probe-iters", c.probe_iters,
                 "L-BFGS iterations per fit of the linear probe (it stops once converged)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--knn-k", c.knn_k, "neighbours of the k-NN classifier")->capture_default_str();
  app.add_option("--supervised-steps", c.supervised_steps,
                 "also train the initial encoder with the labels (linear head, cross-entropy, "
                 "no augmentation) for N steps and add it to the table as a reference (0: off)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  if (c.eval_only && c.resume.empty()) {
    fmt::print(stderr, "--eval-only needs --resume DIR\n");
    return 2;
  }
  try {
    return run(c);
  } catch (const std::exception& e) {
    fmt::print(stderr, "vicreg_train: {}\n", e.what());
    return 1;
  }
}
