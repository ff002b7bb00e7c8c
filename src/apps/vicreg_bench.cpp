// vicreg_bench: forward+backward time and peak extra memory of the VICReg loss, autograd over
// tensor ops (the reference formulation) against the hand-written fused backward, next to the
// matmul floor measured in the same run. Prints a table and writes JSON. Not run by CI.
//
// Matmul floor for views [n, d]: the loss's matrix work, per view, is one k x k product and one
// product back to [n, d], k = min(n, d) (Gram Zc Zc^T and G Zc when n <= d; Zc^T Zc and Zc C
// otherwise); the floor is the time torch::mm_out takes for those four GEMMs in this process.
// (The CPU kernel takes the symmetric k x k matrix from BLAS's syrk, about half a GEMM, so it
// can run below the floor.)
//
// Memory bound: beyond its GEMMs the hand-written path must at least read both views once and
// write their centered copies (saved for the backward) once: 16 n d bytes in float32, the
// traffic of one copy of both views. `bound` = floor + the time of that copy, measured here on
// a buffer of the same size (so it runs at the cache level that size fits in); fused/bound says
// how far a shape is from it (below 1 where syrk saves more than the passes cost).
//
// CPU capabilities: the fused path's own loops are compiled for several instruction sets
// (vicreg/cpu.h); --cpu-capability all measures the fused path under each one this CPU runs,
// a row each, beside the same floor and autograd times.
//
// --distributed: the loss across ranks, one process per rank started with torchrun's
// environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), --shape giving each rank's rows.
// Per rank and step (forward + backward), the replicated loss (every rank computes the whole
// gathered batch) against the sharded one (each rank its own rows' share): the process's CPU
// time, user + system with Gloo's threads, so that ranks sharing cores still count only their
// own work, and the bytes it wrote (/proc/self/io wchar: Gloo's socket writes). Rank 0 prints
// the means over ranks.

#include <c10/core/CPUAllocator.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <thread>

#include "runtime.h"
#include "vicreg/vicreg.h"
#ifdef VICREG_WITH_DISTRIBUTED
#include "vicreg/distributed.h"
#endif

namespace {

// Counts the bytes the CPU allocator hands out, to measure peak extra memory of a call.
class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* inner) : inner_(inner) {}

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  c10::DataPtr allocate(size_t n) override {
#else
  c10::DataPtr allocate(size_t n) const override {
#endif
    auto inner = inner_->allocate(n);
    void* data = inner.get();
    auto* ctx = new Block{std::move(inner), n, this};
    add(static_cast<int64_t>(n));
    return {data, ctx, &CountingAllocator::release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#endif

  void reset_peak() const { peak_.store(current_.load()); }
  int64_t current() const { return current_.load(); }
  int64_t peak() const { return peak_.load(); }

 private:
  struct Block {
    c10::DataPtr inner;
    size_t n;
    const CountingAllocator* owner;
  };
  static void release(void* ctx) {
    auto* b = static_cast<Block*>(ctx);
    b->owner->add(-static_cast<int64_t>(b->n));
    delete b;
  }
  void add(int64_t n) const {
    const int64_t now = current_.fetch_add(n) + n;
    int64_t p = peak_.load();
    while (now > p && !peak_.compare_exchange_weak(p, now)) {
    }
  }
  c10::Allocator* inner_;
  mutable std::atomic<int64_t> current_{0}, peak_{0};
};

CountingAllocator* counting = nullptr;

void sync(const torch::Device& dev) {
  if (dev.is_cuda()) torch::cuda::synchronize();
}

// Median seconds of fn over repetitions (at least `min_reps`, until ~`budget` s).
template <typename F>
double median_seconds(F&& fn, const torch::Device& dev, int min_reps = 3, double budget = 1.0) {
  fn();  // warm-up
  sync(dev);
  std::vector<double> t;
  double total = 0;
  while (static_cast<int>(t.size()) < min_reps || (total < budget && t.size() < 20)) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    sync(dev);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    total += t.back();
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct PathResult {
  double seconds = 0;
  double peak_mib = -1;  // -1: not measured (CUDA)
};

PathResult measure_path(const torch::Tensor& za0, const torch::Tensor& zb0,
                        const vicreg::VICRegLossOptions& o, const torch::Device& dev) {
  auto za = za0.clone().requires_grad_(true);
  auto zb = zb0.clone().requires_grad_(true);
  auto step = [&] {
    auto g = torch::autograd::grad({vicreg::functional::vicreg_loss(za, zb, o)}, {za, zb});
  };
  PathResult r;
  r.seconds = median_seconds(step, dev);
  if (!dev.is_cuda() && counting) {
    counting->reset_peak();
    const int64_t base = counting->current();
    step();
    r.peak_mib = static_cast<double>(counting->peak() - base) / (1 << 20);
  }
  return r;
}

double matmul_floor(int64_t n, int64_t d, const torch::Device& dev) {
  const auto opts = torch::TensorOptions().device(dev).dtype(torch::kFloat32);
  const auto zc = torch::randn({n, d}, opts);
  const int64_t k = std::min(n, d);
  const auto kk = torch::randn({k, k}, opts);
  // (into kept outputs: a fresh [n, d] output would add page faults, more or fewer as the
  // allocator's state drifts over the run, to what is meant to be GEMM time alone)
  auto mat = torch::empty({k, k}, opts), back = torch::empty({n, d}, opts);
  auto gemms = [&] {
    if (n <= d) {
      torch::mm_out(mat, zc, zc.t());
      torch::mm_out(back, kk, zc);
    } else {
      torch::mm_out(mat, zc.t(), zc);
      torch::mm_out(back, zc, kk);
    }
  };
  return 2 * median_seconds(gemms, dev);  // two views
}

// Seconds to copy both views ([2, n, d] float32: 8 n d bytes read, 8 n d written).
double copy_seconds(int64_t n, int64_t d, const torch::Device& dev) {
  const auto opts = torch::TensorOptions().device(dev).dtype(torch::kFloat32);
  const auto src = torch::randn({2, n, d}, opts);
  auto dst = torch::empty_like(src);
  return median_seconds([&] { dst.copy_(src); }, dev);
}

// The CPU's model name (/proc/cpuinfo), for the table's header: speed figures name their CPU.
std::string cpu_model() {
  std::ifstream info("/proc/cpuinfo");
  std::string line;
  while (std::getline(info, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
  }
  return "unknown";
}

double cpu_seconds(bool system) {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  const auto& t = system ? r.ru_stime : r.ru_utime;
  return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec);
}

// Bytes this process has written through write(2)-family calls, sockets included.
int64_t bytes_written() {
  std::ifstream io("/proc/self/io");
  std::string key;
  int64_t value = 0;
  while (io >> key >> value) {
    if (key == "wchar:") return value;
  }
  TORCH_CHECK(false, "--distributed: /proc/self/io has no wchar line");
}

int run_distributed(const std::vector<std::string>& grid, int threads) {
#ifndef VICREG_WITH_DISTRIBUTED
  TORCH_CHECK(false, "--distributed: this build of vicreg has no distributed support "
              "(configure with -DVICREG_DISTRIBUTED=ON)");
#else
  namespace dist = vicreg::distributed;
  const auto group = dist::init_from_env(std::chrono::minutes(5));
  const int rank = group->rank(), world = group->size();
  if (rank == 0) {
    fmt::print("vicreg {} distributed bench: {} ranks, {} thread(s) each (LibTorch {})\n"
               "{:>5} {:>5} {:>5} {:>5} | {:>10} {:>10} {:>6} | {:>9} {:>9} | {:>9} {:>9}\n",
               VICREG_VERSION, world, threads, TORCH_VERSION, "ranks", "n", "N", "d",
               "repl. ms", "shard. ms", "ratio", "repl. MiB", "shard MiB", "repl wall",
               "shard wall");
  }
  for (const auto& shape : grid) {
    const auto x = shape.find('x');
    TORCH_CHECK(x != std::string::npos, "--shape: expected NxD, got '", shape, "'");
    const int64_t n = std::stoll(shape.substr(0, x)), d = std::stoll(shape.substr(x + 1));
    torch::manual_seed(rank);
    const auto za = torch::randn({n, d}), zb = za + 0.1 * torch::randn({n, d});
    // [mode][cpu ms, MiB written, wall ms], medians over the steps, then means over the ranks.
    // The modes alternate step by step, so that both see the same load on the machine.
    auto results = torch::zeros({2, 3}, torch::kFloat64);
    std::vector<std::function<void()>> steps;
    for (bool sharded : {false, true}) {
      const auto o = vicreg::VICRegLossOptions().process_group(group).sharded(sharded);
      steps.push_back([&za, &zb, o] {
        auto a = za.clone().requires_grad_(true), b = zb.clone().requires_grad_(true);
        auto g = torch::autograd::grad({vicreg::functional::vicreg_loss(a, b, o)}, {a, b});
      });
      steps.back()();  // warm-up
    }
    std::vector<std::vector<double>> cpu(2), mib(2), wall(2);
    for (int i = 0; i < 7; ++i) {
      for (int mode = 0; mode < 2; ++mode) {
        const double c0 = cpu_seconds(false) + cpu_seconds(true);
        const int64_t b0 = bytes_written();
        const auto t0 = std::chrono::steady_clock::now();
        steps[mode]();
        wall[mode].push_back(
            1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        mib[mode].push_back(static_cast<double>(bytes_written() - b0) / (1 << 20));
        cpu[mode].push_back(1e3 * (cpu_seconds(false) + cpu_seconds(true) - c0));
      }
    }
    for (int mode = 0; mode < 2; ++mode) {
      int i = 0;
      for (auto* v : {&cpu[mode], &mib[mode], &wall[mode]}) {
        std::sort(v->begin(), v->end());
        results[mode][i++] = (*v)[v->size() / 2];
      }
    }
    std::vector<torch::Tensor> all{results};
    dist::all_reduce_mean_(all, *group);
    const auto r = all[0];
    const auto v = [&](int mode, int i) { return r[mode][i].item<double>(); };
    if (rank == 0) {
      fmt::print("{:>5} {:>5} {:>5} {:>5} | {:>10.1f} {:>10.1f} {:>6.2f} | {:>9.1f} {:>9.2f} | "
                 "{:>9.1f} {:>9.1f}\n",
                 world, n, n * world, d, v(0, 0), v(1, 0), v(1, 0) / v(0, 0), v(0, 1), v(1, 1),
                 v(0, 2), v(1, 2));
      std::fflush(stdout);
    }
  }
  return 0;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  vicreg::apps::configure_threads();
  CLI::App app{"Benchmark the VICReg loss: autograd vs hand-written backward vs matmul floor"};
  std::string device = "cpu", json_path = "vicreg_bench.json";
  int threads = 0;
  std::vector<std::string> grid = {"64x8192",   "256x2048", "512x8192",
                                   "2048x2048", "4096x512", "2048x8192"};
  app.add_option("--device", device, "cpu or cuda")->capture_default_str();
  app.add_option("--threads", threads, "intra-op threads (0: all cores)")->capture_default_str();
  app.add_option("--shape", grid, "n x d shapes to measure")->capture_default_str();
  app.add_option("--json", json_path, "where to write the results")->capture_default_str();
  std::vector<std::string> capabilities;
  app.add_option("--cpu-capability", capabilities,
                 "CPU capabilities to run the fused path with: avx512, avx2, default, or all "
                 "(every one this CPU runs); default: the one chosen (VICREG_CPU_CAPABILITY or "
                 "the widest)");
  bool no_keep_freed = false;
  app.add_flag("--no-keep-freed-memory", no_keep_freed,
               "let glibc return freed memory to the system, as a process that did not tune "
               "its allocator does (then fresh buffers cost page faults)");
  bool distributed = false;
  app.add_flag("--distributed", distributed,
               "this process is one rank (torchrun's environment): replicated against sharded "
               "loss per rank, --shape giving each rank's rows");
  CLI11_PARSE(app, argc, argv);
  try {
    torch::set_num_threads(threads > 0 ? threads
                                       : std::max(1u, std::thread::hardware_concurrency()));
    if (distributed) return run_distributed(grid, torch::get_num_threads());
    const torch::Device dev(device);
    TORCH_CHECK(!dev.is_cuda() || torch::cuda::is_available(),
                "--device cuda: no CUDA device is available");
    static CountingAllocator allocator(c10::GetCPUAllocator());
    counting = &allocator;
    c10::SetCPUAllocator(&allocator, /*priority=*/100);

    // As vicreg_train does: freed blocks stay in the process, so that a step's fresh buffers
    // cost no page faults, as the floor's kept outputs do not.
    if (!no_keep_freed) vicreg::apps::keep_freed_memory();
    if (capabilities.empty()) capabilities = {vicreg::cpu_capability()};
    if (capabilities == std::vector<std::string>{"all"}) {
      capabilities = vicreg::supported_cpu_capabilities();
      std::reverse(capabilities.begin(), capabilities.end());  // widest first
    }
    for (const auto& c : capabilities) vicreg::set_cpu_capability(c);  // (refuses bad names now)
    const char* wait = std::getenv("OMP_WAIT_POLICY");
    fmt::print("vicreg {} bench on {} with {} threads (LibTorch {}, OpenMP: {}, BLAS: {}, "
               "OMP_WAIT_POLICY={})\n",
               VICREG_VERSION, dev.str(), torch::get_num_threads(), TORCH_VERSION,
               vicreg::apps::openmp_runtime(), vicreg::apps::blas_threading(),
               wait ? wait : "unset");
    for (const auto& note : {vicreg::apps::openmp_note(), vicreg::apps::openblas_note()}) {
      if (!note.empty()) fmt::print("{}\n", note);
    }
    const auto wall_start = std::chrono::steady_clock::now();
    const double sys_start = cpu_seconds(true), user_start = cpu_seconds(false);
    fmt::print("cpu: {} (capabilities this CPU runs: {}); freed memory {}\n", cpu_model(),
               fmt::join(vicreg::supported_cpu_capabilities(), ", "),
               no_keep_freed ? "returned to the system" : "kept in the process");
    fmt::print("{:>5} {:>5} {:>7} | {:>8} {:>8} {:>8} {:>8} {:>8} | {:>7} {:>8} {:>8} {:>7} | "
               "{:>8} {:>9}\n",
               "n", "d", "cpu cap", "floor ms", "bound ms", "autograd", "fused", "GB/s", "auto/fl",
               "fused/fl", "fused/bd", "speedup", "auto MiB", "fused MiB");
    std::ofstream json(json_path);
    json << "{\"device\": \"" << dev.str() << "\", \"omp_wait_policy\": \""
         << (wait ? wait : "unset") << "\", \"openmp\": \"" << vicreg::apps::openmp_runtime()
         << "\", \"blas\": \"" << vicreg::apps::blas_threading()
         << "\", \"threads\": " << torch::get_num_threads()
         << ", \"torch\": \"" << TORCH_VERSION << "\", \"cpu\": \"" << cpu_model()
         << "\", \"keep_freed_memory\": " << (no_keep_freed ? "false" : "true")
         << ", \"results\": [\n";
    bool first = true;
    for (const auto& shape : grid) {
      const auto x = shape.find('x');
      TORCH_CHECK(x != std::string::npos, "--shape: expected NxD, got '", shape, "'");
      const int64_t n = std::stoll(shape.substr(0, x)), d = std::stoll(shape.substr(x + 1));
      torch::manual_seed(0);
      const auto opts = torch::TensorOptions().device(dev).dtype(torch::kFloat32);
      const auto za = torch::randn({n, d}, opts), zb = za + 0.1 * torch::randn({n, d}, opts);
      const double floor = matmul_floor(n, d, dev);
      const double copy = copy_seconds(n, d, dev);
      const double bound = floor + copy;
      const double gbps = 16.0 * static_cast<double>(n * d) / copy / 1e9;
      const auto autograd =
          measure_path(za, zb, vicreg::VICRegLossOptions().backward(vicreg::Backward::Autograd), dev);
      for (const auto& capability : capabilities) {
        vicreg::set_cpu_capability(capability);
        const auto fused = measure_path(
            za, zb, vicreg::VICRegLossOptions().backward(vicreg::Backward::Fused), dev);
        auto mib = [](double v) { return v < 0 ? std::string("n/a") : fmt::format("{:.1f}", v); };
        fmt::print("{:>5} {:>5} {:>7} | {:>8.2f} {:>8.2f} {:>8.2f} {:>8.2f} {:>8.1f} | {:>7.2f} "
                   "{:>8.2f} {:>8.2f} {:>7.1f} | {:>8} {:>9}\n",
                   n, d, capability, 1e3 * floor, 1e3 * bound, 1e3 * autograd.seconds,
                   1e3 * fused.seconds, gbps, autograd.seconds / floor, fused.seconds / floor,
                   fused.seconds / bound, autograd.seconds / fused.seconds,
                   mib(autograd.peak_mib), mib(fused.peak_mib));
        std::fflush(stdout);
        json << (first ? "" : ",\n")
             << fmt::format("  {{\"n\": {}, \"d\": {}, \"cpu_capability\": \"{}\", "
                            "\"floor_ms\": {:.4f}, \"autograd_ms\": {:.4f}, \"fused_ms\": {:.4f}, "
                            "\"bound_ms\": {:.4f}, \"copy_gb_per_s\": {:.2f}, "
                            "\"autograd_peak_mib\": {:.2f}, \"fused_peak_mib\": {:.2f}}}",
                            n, d, capability, 1e3 * floor, 1e3 * autograd.seconds,
                            1e3 * fused.seconds, 1e3 * bound, gbps, autograd.peak_mib,
                            fused.peak_mib);
        first = false;
      }
    }
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    const double sys = cpu_seconds(true) - sys_start, user = cpu_seconds(false) - user_start;
    json << fmt::format("\n], \"wall_s\": {:.2f}, \"user_s\": {:.2f}, \"system_s\": {:.2f}}}\n",
                        wall, user, sys);
    fmt::print("{:.1f} s wall, {:.1f} s user, {:.1f} s system ({:.0f}% of wall)\nwrote {}\n",
               wall, user, sys, 100 * sys / wall, json_path);
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "vicreg_bench: {}\n", e.what());
    return 1;
  }
}
