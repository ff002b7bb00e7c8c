// The bad-input catalogue: one row per invalid input to every check of the public API, the
// options, the registered operators and the distributed helpers (the programs' readers have
// rows of their own in test_apps.cpp). Each row must end in a c10::Error whose message
// contains the expected words (what was expected and what came), never in a crash, a hang or
// a number. Rows that need more than one process
// (ranks disagreeing on the feature dims, a rank exiting early) are in test_distributed.cpp.

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>

#include "helpers.h"
#include "idx_files.h"
#ifdef VICREG_WITH_DISTRIBUTED
#include "vicreg/distributed.h"
#include "distributed/common.h"
#endif

namespace vicreg::testing {
namespace {

using namespace std::chrono_literals;

struct Row {
  std::string what;             // the invalid input, in words
  std::function<void()> call;   // must throw c10::Error
  std::string needle;           // ... whose message contains this
};

// Calls a registered operator boxed, with every argument given (as TorchScript does).
void call_op(const char* name, std::vector<c10::IValue> args) {
  const auto& op = c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
  torch::jit::Stack stack(std::make_move_iterator(args.begin()),
                          std::make_move_iterator(args.end()));
  op.callBoxed(&stack);
}

// The arguments of vicreg_loss / vicreg_terms: a convention and the four knob overrides.
std::vector<c10::IValue> front_args(at::Tensor a, at::Tensor b, const char* convention,
                                    const char* invariance = nullptr, const char* form = nullptr,
                                    const char* views = nullptr, const char* norm = nullptr) {
  auto knob = [](const char* v) { return v ? c10::IValue(std::string(v)) : c10::IValue(); };
  return {a, b, 25.0, 25.0, 1.0, 1.0, 1e-4, std::string(convention), knob(invariance),
          knob(form), knob(views), knob(norm), true, false};
}

// The settings of the internal fused ops, every knob by name.
std::vector<c10::IValue> fused_settings(const char* norm = "unbiased") {
  return {25.0, 25.0, 1.0, 1.0, 1e-4, std::string("element_mean"), std::string("std"),
          std::string("mean"), std::string(norm)};
}

std::vector<c10::IValue> concat(std::vector<c10::IValue> a, const std::vector<c10::IValue>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Sets the torchrun variables for one row and restores a clean environment afterwards.
using Vars = std::vector<std::pair<const char*, const char*>>;
struct Env {
  explicit Env(const Vars& vars) {
    clear();
    for (auto& [k, v] : vars) ::setenv(k, v, 1);
  }
  ~Env() { clear(); }
  static void clear() {
    for (const char* v : {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) ::unsetenv(v);
  }
};

void add_loss_rows(std::vector<Row>& rows) {
  const auto z = torch::randn({8, 4});
  auto loss = [](at::Tensor a, at::Tensor c, VICRegLossOptions opt) {
    return [a, c, opt] { functional::vicreg_loss(a, c, opt); };
  };
  for (auto b : {Backward::Fused, Backward::Autograd}) {
    const std::string tag = b == Backward::Fused ? " (fused)" : " (autograd)";
    const auto o = [b] { return VICRegLossOptions().backward(b); };
    rows.push_back({"views of different shapes" + tag, loss(z, torch::randn({8, 5}), o()),
                    "same shape"});
    rows.push_back({"1-dim views" + tag, loss(torch::randn({8}), torch::randn({8}), o()),
                    "at least 2 dims"});
    rows.push_back({"a single sample" + tag, loss(torch::randn({1, 4}), torch::randn({1, 4}), o()),
                    "n >= 2"});
    rows.push_back({"int64 views" + tag,
                    loss(torch::ones({8, 4}, torch::kLong), torch::ones({8, 4}, torch::kLong), o()),
                    "floating-point dtype"});
    rows.push_back({"bool views" + tag,
                    loss(torch::ones({8, 4}, torch::kBool), torch::ones({8, 4}, torch::kBool), o()),
                    "floating-point dtype"});
    rows.push_back({"views of different dtypes" + tag, loss(z, z.to(torch::kFloat64), o()),
                    "same dtype"});
    rows.push_back({"views on different devices" + tag, loss(z, z.to(torch::Device("meta")), o()),
                    "same device"});
    rows.push_back({"zero features" + tag, loss(torch::randn({8, 0}), torch::randn({8, 0}), o()),
                    "empty"});
    rows.push_back({"sparse views" + tag, loss(z.to_sparse(), z.to_sparse(), o()),
                    "dense (strided)"});
    rows.push_back({"an undefined view" + tag, loss(z, at::Tensor(), o()),
                    "two defined tensors"});
    rows.push_back({"inv_coeff NaN" + tag, loss(z, z, o().inv_coeff(NAN)),
                    "inv_coeff must be a finite number >= 0, got nan"});
    rows.push_back({"var_coeff < 0" + tag, loss(z, z, o().var_coeff(-1)),
                    "var_coeff must be a finite number >= 0, got -1"});
    rows.push_back({"cov_coeff < 0" + tag, loss(z, z, o().cov_coeff(-0.5)),
                    "cov_coeff must be a finite number >= 0, got -0.5"});
    rows.push_back({"cov_coeff Inf" + tag, loss(z, z, o().cov_coeff(INFINITY)),
                    "cov_coeff must be a finite number >= 0, got inf"});
    rows.push_back({"gamma 0" + tag, loss(z, z, o().gamma(0)),
                    "gamma must be a finite number > 0, got 0"});
    rows.push_back({"gamma NaN" + tag, loss(z, z, o().gamma(NAN)),
                    "gamma must be a finite number > 0"});
    rows.push_back({"eps < 0" + tag, loss(z, z, o().eps(-1e-4)),
                    "eps must be a finite number >= 0, got -0.0001"});
    auto nan_z = z.clone();
    nan_z[3][2] = NAN;
    rows.push_back({"check_finite with a NaN in z_b" + tag,
                    loss(z, nan_z, o().check_finite(true)), "z_b contains NaN or Inf"});
    const auto huge = torch::randn({8, 4}) * 1e18;  // finite, but its covariance overflows
    rows.push_back({"check_finite with an overflowing covariance" + tag,
                    loss(huge, huge, o().check_finite(true)), "the loss is not finite"});
  }
  rows.push_back({"float32 views with gamma beyond float32", loss(z, z, VICRegLossOptions().gamma(1e39)),
                  "gamma = 1e+39 does not fit in float32"});
  rows.push_back({"float16 views with inv_coeff beyond float32",
                  loss(z.to(torch::kHalf), z.to(torch::kHalf), VICRegLossOptions().inv_coeff(1e300)),
                  "inv_coeff = 1e+300 does not fit in float32"});
  rows.push_back({"variance_term with eps beyond float32",
                  [z] { functional::variance_term(z, VICRegLossOptions().eps(1e40)); },
                  "eps = 1e+40 does not fit in float32"});
  rows.push_back({"invariance_term on different shapes",
                  [z] { functional::invariance_term(z, torch::randn({8, 3})); }, "same shape"});
  rows.push_back({"variance_term on a 1-dim tensor",
                  [] { functional::variance_term(torch::randn({8})); }, "at least 2 dims"});
  rows.push_back({"variance_term with gamma < 0",
                  [z] { functional::variance_term(z, VICRegLossOptions().gamma(-1)); },
                  "gamma must be"});
  rows.push_back({"covariance_term on int32",
                  [] { functional::covariance_term(torch::ones({8, 4}, torch::kInt)); },
                  "floating-point dtype"});
  rows.push_back({"module built with var_coeff < 0",
                  [] { VICRegLoss(VICRegLossOptions().var_coeff(-2)); }, "var_coeff must be"});
  rows.push_back({"module forward on mismatched views",
                  [z] { VICRegLoss()->forward(z, torch::randn({7, 4})); }, "same shape"});
  rows.push_back({"unknown preset name", [] { VICRegLossOptions::preset("lightly"); },
                  "unknown convention 'lightly'"});
#ifndef VICREG_WITH_DISTRIBUTED
  rows.push_back({"process_group in a build without distributed", [z] {
                    functional::vicreg_loss(z, z, VICRegLossOptions().process_group(nullptr));
                  }, "no distributed support"});
#endif
}

void add_operator_rows(std::vector<Row>& rows) {
  const auto z = torch::randn({8, 4});
  rows.push_back({"vicreg_loss op: unknown convention", [z] {
                    call_op("vicreg::vicreg_loss", front_args(z, z, "solo-learn"));
                  }, "unknown convention 'solo-learn'"});
  rows.push_back({"vicreg_loss op: views of different shapes", [z] {
                    call_op("vicreg::vicreg_loss", front_args(z, torch::randn({8, 2}), "paper"));
                  }, "same shape"});
  rows.push_back({"vicreg_terms op: unknown invariance", [z] {
                    call_op("vicreg::vicreg_terms", front_args(z, z, "reference", "l2"));
                  }, "unknown invariance 'l2'"});
  rows.push_back({"vicreg_terms op: unknown variance_form", [z] {
                    call_op("vicreg::vicreg_terms", front_args(z, z, "paper", nullptr, "mad"));
                  }, "unknown variance_form 'mad'"});
  rows.push_back({"vicreg_loss op: unknown variance_views", [z] {
                    call_op("vicreg::vicreg_loss",
                            front_args(z, z, "article", nullptr, nullptr, "max"));
                  }, "unknown variance_views 'max'"});
  rows.push_back({"vicreg_terms op: unknown covariance_norm", [z] {
                    call_op("vicreg::vicreg_terms",
                            front_args(z, z, "reference", nullptr, nullptr, nullptr, "population"));
                  }, "unknown covariance_norm 'population'"});
  rows.push_back({"_vicreg_fused op: unknown covariance_norm", [z] {
                    call_op("vicreg::_vicreg_fused", concat({z, z}, fused_settings("population")));
                  }, "unknown covariance_norm 'population'"});
  const auto zero = torch::zeros({});
  const auto saved = [] {  // one position: Zc [2, 8, 4], mean_diff, colsq, Zc M
    return std::vector<at::Tensor>{torch::randn({2, 8, 4}), torch::zeros({1, 1, 4}),
                                   torch::ones({2, 1, 4}), torch::randn({2, 8, 4})};
  }();
  // The backward op on `saved` with saved tensor i replaced by t.
  const auto backward_with = [=](int i, const at::Tensor& t) {
    auto bad = saved;
    bad[i] = t;
    call_op("vicreg::_vicreg_fused_backward",
            concat({zero, zero, zero, zero, bad}, fused_settings()));
  };
  rows.push_back({"_vicreg_fused_backward op: an output gradient that is not 0-dim", [=] {
                    call_op("vicreg::_vicreg_fused_backward",
                            concat({torch::ones({2}), zero, zero, zero, saved}, fused_settings()));
                  }, "expected 0-dim output gradients"});
  rows.push_back({"_vicreg_fused_backward op: no output gradient", [=] {
                    call_op("vicreg::_vicreg_fused_backward",
                            concat({c10::IValue(), c10::IValue(), c10::IValue(), c10::IValue(),
                                    saved}, fused_settings()));
                  }, "expected at least one output gradient, got none"});
  rows.push_back({"_vicreg_fused_backward op: an odd number of positions in Zc", [=] {
                    backward_with(0, torch::randn({3, 8, 4}));
                  }, "expected both centered views as one batch [2P, n, d], got [3, 8, 4]"});
  rows.push_back({"_vicreg_fused_backward op: wrong saved list", [=] {
                    call_op("vicreg::_vicreg_fused_backward",
                            concat({zero, zero, zero, zero, std::vector<at::Tensor>{z}},
                                   fused_settings()));
                  }, "expected the 4 saved tensors of _vicreg_fused"});
  rows.push_back({"_vicreg_fused_backward op: saved product of the wrong size", [=] {
                    backward_with(3, torch::eye(4).expand({2, 4, 4}) * 1);
                  }, "saved tensor 3 must be [2, 8, 4] for Zc of [2, 8, 4], got [2, 4, 4]"});
  rows.push_back({"_vicreg_fused_backward op: a saved tensor on another device", [=] {
                    backward_with(2, torch::ones({2, 1, 4}, torch::kMeta));
                  }, "expected every saved tensor on cpu (Zc's device), got one on meta"});
  rows.push_back({"_vicreg_fused_backward op: an output gradient on another device", [=] {
                    call_op("vicreg::_vicreg_fused_backward",
                            concat({torch::zeros({}, torch::kMeta), zero, zero, zero, saved},
                                   fused_settings()));
                  }, "expected the output gradients on cpu (the saved tensors' device), got "
                     "one on meta"});
  rows.push_back({"_vicreg_fused_backward op: saved views of one sample", [=] {
                    backward_with(0, torch::randn({2, 1, 4}));
                  }, "expected centered views of n >= 2 samples and d >= 1 features, got Zc of "
                     "[2, 1, 4]"});
  rows.push_back({"double backward through the fused backward", [] {
                    auto a = torch::randn({8, 4}, torch::kFloat64).requires_grad_(true);
                    auto b = torch::randn({8, 4}, torch::kFloat64);
                    auto loss = functional::vicreg_loss(a, b);
                    auto g = torch::autograd::grad({loss}, {a}, {}, true, true)[0];
                    torch::autograd::grad({g.sum()}, {a});
                  }, "double backward through the hand-written (fused) backward"});
  // The settings' checks alone (the Python modules' constructors): the calls' words.
  rows.push_back({"_vicreg_check_settings op: unknown covariance_norm", [] {
                    auto args = front_args({}, {}, "paper", nullptr, nullptr, nullptr, "n");
                    call_op("vicreg::_vicreg_check_settings", {args.begin() + 2, args.end()});
                  }, "unknown covariance_norm 'n'"});
  rows.push_back({"_vicreg_check_settings op: gamma 0", [] {
                    auto args = front_args({}, {}, "reference");
                    args[5] = 0.0;
                    call_op("vicreg::_vicreg_check_settings", {args.begin() + 2, args.end()});
                  }, "vicreg_loss: gamma must be a finite number > 0, got 0"});
  rows.push_back({"_vcreg_check_settings op: a negative cov_coeff", [] {
                    call_op("vicreg::_vcreg_check_settings",
                            {1.0, -2.0, 1.0, 1e-4, int64_t{-1}, std::string("std")});
                  }, "vcreg: cov_coeff must be"});
  rows.push_back({"vcreg op: unknown variance_form", [z] {
                    call_op("vicreg::vcreg", {z, 1.0, 1.0, 1.0, 1e-4, int64_t{-1},
                                              std::string("mad")});
                  }, "unknown variance_form 'mad'"});
  rows.push_back({"_vcreg_backward op: gradient of another shape", [z] {
                    call_op("vicreg::_vcreg_backward", {torch::randn({8, 3}), z, 1.0, 1.0, 1.0,
                                                        1e-4, int64_t{-1}, std::string("std")});
                  }, "grad must have the shape of x"});
}

void add_vcreg_rows(std::vector<Row>& rows) {
  const auto x = torch::randn({8, 4});
  auto vc = [](at::Tensor t, VCRegOptions o) { return [t, o] { functional::vcreg(t, o); }; };
  rows.push_back({"vcreg: a single sample", vc(torch::randn({1, 4}), {}), "at least 2 samples"});
  rows.push_back({"vcreg: int32 input", vc(torch::ones({8, 4}, torch::kInt), {}),
                  "floating-point dtype"});
  rows.push_back({"vcreg: channel_dim out of range", vc(x, VCRegOptions().channel_dim(2)),
                  "channel_dim 2 is out of range"});
  rows.push_back({"vcreg: var_coeff < 0", vc(x, VCRegOptions().var_coeff(-1)),
                  "var_coeff must be a finite number >= 0, got -1"});
  rows.push_back({"vcreg: cov_coeff NaN", vc(x, VCRegOptions().cov_coeff(NAN)),
                  "cov_coeff must be a finite number >= 0"});
  rows.push_back({"vcreg: gamma < 0", vc(x, VCRegOptions().gamma(-1)), "gamma must be"});
  rows.push_back({"vcreg: empty input", vc(torch::randn({0, 4}), {}), "empty tensor"});
  rows.push_back({"vcreg: sparse input", vc(x.to_sparse(), {}), "dense (strided)"});
  rows.push_back({"vcreg: float32 input with gamma beyond float32",
                  vc(x, VCRegOptions().gamma(1e39)), "gamma = 1e+39 does not fit in float32"});
  rows.push_back({"vcreg_penalty: cov_coeff beyond float32",
                  [x] { functional::vcreg_penalty(x, VCRegOptions().cov_coeff(1e39)); },
                  "cov_coeff = 1e+39 does not fit in float32"});
  rows.push_back({"vcreg_penalty: 1-dim input", [] { functional::vcreg_penalty(torch::randn({4})); },
                  "at least 2 dims"});
  rows.push_back({"VCReg module built with eps < 0", [] { VCReg(VCRegOptions().eps(-1)); },
                  "eps must be a finite number >= 0"});
  rows.push_back({"double backward through the VCReg layer", [x] {
                    auto xr = x.clone().requires_grad_(true);
                    auto y = functional::vcreg(xr);
                    torch::autograd::grad({y.sum()}, {xr}, {}, true, true);
                  }, "double backward through the VCReg layer is not supported"});
}

#ifdef VICREG_WITH_DISTRIBUTED
void add_distributed_rows(std::vector<Row>& rows) {
  namespace d = vicreg::distributed;
#if VICREG_GROUPS_BY_NAME
  // _vicreg_sharded_terms(z_a, z_b, group_name, timeout_ms, <the fronts' arguments>).
  const auto sharded = [](const char* group, int64_t timeout_ms, bool fused) {
    const auto z = torch::randn({6, 4}, torch::kFloat64);
    auto args = front_args(z, z, "reference");
    args.insert(args.begin() + 2, {c10::IValue(std::string(group)), c10::IValue(timeout_ms)});
    args[args.size() - 2] = fused;
    call_op("vicreg::_vicreg_sharded_terms", args);
  };
  rows.push_back({"_vicreg_sharded_terms op: a group name nobody registered",
                  [=] { sharded("no-such-group", 1000, true); },
                  "no process group is registered under the name 'no-such-group'"});
  rows.push_back({"_vicreg_sharded_terms op: fused_backward=False",
                  [=] { sharded("0", 1000, false); },
                  "the sharded loss has the hand-written backward only"});
  rows.push_back({"_vicreg_sharded_terms op: timeout_ms 0", [=] { sharded("0", 0, true); },
                  "timeout_ms must be > 0, got 0"});
#endif
  rows.push_back({"init_from_env: RANK unset", [] {
                    Env e({{"WORLD_SIZE", "1"}, {"MASTER_ADDR", "127.0.0.1"},
                           {"MASTER_PORT", "29500"}});
                    d::init_from_env(5s);
                  }, "environment variable RANK is not set"});
  rows.push_back({"init_from_env: RANK not a number", [] {
                    Env e({{"RANK", "x"}, {"WORLD_SIZE", "1"}});
                    d::init_from_env(5s);
                  }, "RANK must be an integer in [0, "});
  rows.push_back({"init_from_env: RANK beyond the int range (it wrapped to 0 before)", [] {
                    Env e({{"RANK", "4294967296"}, {"WORLD_SIZE", "2"}});
                    d::init_from_env(5s);
                  }, "RANK must be an integer in [0, 16777215], got '4294967296'"});
  rows.push_back({"init_from_env: WORLD_SIZE unset", [] {
                    Env e(Vars{{"RANK", "0"}});
                    d::init_from_env(5s);
                  }, "environment variable WORLD_SIZE is not set"});
  rows.push_back({"init_from_env: MASTER_ADDR unset", [] {
                    Env e({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_PORT", "29500"}});
                    d::init_from_env(5s);
                  }, "environment variable MASTER_ADDR is not set"});
  rows.push_back({"init_from_env: RANK >= WORLD_SIZE", [] {
                    Env e({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"},
                           {"MASTER_PORT", "29500"}});
                    d::init_from_env(5s);
                  }, "RANK 2 must be below WORLD_SIZE 2"});
  rows.push_back({"init_from_env: MASTER_PORT out of range", [] {
                    Env e({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_ADDR", "127.0.0.1"},
                           {"MASTER_PORT", "70000"}});
                    d::init_from_env(5s);
                  }, "MASTER_PORT must be an integer in [1, 65535], got '70000'"});
  rows.push_back({"parse_env: GLOO_SOCKET_IFNAME that names nothing", [] {
                    d::parse_env([](const char* name) -> const char* {
                      const std::string n = name;
                      if (n == "GLOO_SOCKET_IFNAME") return " , ,";
                      if (n == "MASTER_ADDR") return "10.0.0.1";
                      return n == "MASTER_PORT" ? "29500" : (n == "RANK" ? "0" : "1");
                    });
                  }, "names no interface"});
  rows.push_back({"Group around a null process group", [] { d::Group(c10::intrusive_ptr<c10d::ProcessGroup>(), 5000ms); },
                  "expected a process group, got null"});
  const auto path = (scratch_dir("catalogue") / "filestore").string();
  rows.push_back({"make_gloo_group: rank outside the world", [path] {
                    d::make_gloo_group(c10::make_intrusive<c10d::FileStore>(path, 1), 1, 1, 5s);
                  }, "need 0 <= rank < size, got rank 1 and size 1"});
  rows.push_back({"Group with a timeout of 0", [path] {
                    auto g = d::make_gloo_group(
                        c10::make_intrusive<c10d::FileStore>(path + "1", 1), 0, 1, 5s);
                    d::Group(g->process_group(), 0ms);
                  }, "timeout must be > 0 ms"});
  rows.push_back({"all_gather of an undefined tensor", [path] {
                    auto g = d::make_gloo_group(
                        c10::make_intrusive<c10d::FileStore>(path + "2", 1), 0, 1, 5s);
                    d::all_gather(at::Tensor(), *g);
                  }, "expected a tensor with a leading batch dim"});
}
#endif

std::vector<Row> catalogue() {
  std::vector<Row> rows;
  add_loss_rows(rows);
  add_operator_rows(rows);
  add_vcreg_rows(rows);
#ifdef VICREG_WITH_DISTRIBUTED
  add_distributed_rows(rows);
#endif
  return rows;
}

// Every operator the library registers has rows of its own ("<name> op: ..."), so an operator
// added without its bad-input rows fails here. (The test-only composite ops are not the
// library's.)
TEST(Catalogue, EveryRegisteredOperatorHasRows) {
  const auto rows = catalogue();
  int ops = 0;
  for (const auto& op : c10::Dispatcher::singleton().getAllOpNames()) {
    const std::string name = op.name;
    if (name.rfind("vicreg::", 0) != 0 || name.find("_composite") != std::string::npos) continue;
    ++ops;
    const std::string prefix = name.substr(8) + " op";
    const bool covered = std::any_of(rows.begin(), rows.end(), [&](const Row& r) {
      return r.what.rfind(prefix + ":", 0) == 0 || r.what.rfind(prefix + " (", 0) == 0;
    });
    EXPECT_TRUE(covered) << name << " has no row in the catalogue";
  }
#if defined(VICREG_WITH_DISTRIBUTED) && VICREG_GROUPS_BY_NAME
  EXPECT_EQ(ops, 9) << "the library registers vicreg_loss, vicreg_terms, _vicreg_fused, "
                       "_vicreg_fused_backward, _vicreg_check_settings, vcreg, _vcreg_backward, "
                       "_vcreg_check_settings and (with distributed support, on PyTorch 2.2+) "
                       "_vicreg_sharded_terms";
#else
  EXPECT_EQ(ops, 8) << "the library registers vicreg_loss, vicreg_terms, _vicreg_fused, "
                       "_vicreg_fused_backward, _vicreg_check_settings, vcreg, _vcreg_backward "
                       "and _vcreg_check_settings";
#endif
}

TEST(Catalogue, EveryInvalidInputEndsInAClearError) {
  const auto rows = catalogue();
  std::set<std::string> names;
  for (const auto& r : rows) {
    SCOPED_TRACE(r.what);
    EXPECT_TRUE(names.insert(r.what).second) << "duplicate row name";
    EXPECT_THROW_WITH(r.call(), r.needle);
  }
  RecordProperty("rows", static_cast<int>(rows.size()));
  std::printf("bad-input catalogue: %zu rows\n", rows.size());
}

}  // namespace
}  // namespace vicreg::testing
