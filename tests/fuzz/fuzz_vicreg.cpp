// libFuzzer target: turns fuzz bytes into shapes, dtypes, layouts (contiguous, transposed,
// sliced, expanded, channels-last), options and values (NaN, Inf, 1e30, denormals, identical
// rows, raw bit patterns), then calls the VICReg loss and VCReg through the C++ API and through
// the registered operators, both backward modes, forward and backward. Every call must end in
// a result or a c10::Error: anything else (another exception, a crash, a sanitizer report, a
// hang) is a finding. One property is checked on top: with check_finite the loss that comes
// back is finite.
//
// Built as `vicreg_fuzz` with clang (-DVICREG_FUZZ=ON), and always as `vicreg_fuzz_replay`,
// which runs the stored corpus (tests/fuzz/corpus) under CTest.

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "vicreg/vicreg.h"

namespace {

// Reads the fuzz input front to back; past its end every read is 0.
class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  uint8_t u8() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  bool flag() { return u8() & 1; }
  int pick(int count) { return u8() % count; }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | u8();
    return v;
  }
  // Mostly values that matter (specials, the defaults, tiny and huge), sometimes raw bits.
  double value() {
    static const double table[] = {0.0,   1.0,    -1.0,  25.0,     1e-4,   0.5,   -0.0,
                                   1e30,  -1e30,  1e-30, 4.9e-324, 1e-310, 65504, 3.4e38,
                                   NAN,   INFINITY, -INFINITY, 1e-7, 2.0, 100.0};
    const int i = pick(24);
    if (i < 20) return table[i];
    double d;
    const uint64_t bits = u64();
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }
  // A coefficient: the usual one most of the time, a fuzzed value otherwise.
  double coeff(double usual) { return pick(4) == 0 ? value() : usual; }

 private:
  const uint8_t* p_;
  size_t n_;
};

at::ScalarType pick_dtype(Bytes& b) {
  static const at::ScalarType t[] = {at::kFloat, at::kDouble, at::kHalf,  at::kBFloat16,
                                     at::kFloat, at::kDouble, at::kInt,   at::kBool,
                                     at::kLong,  at::kComplexFloat};
  return t[b.pick(10)];
}

std::vector<int64_t> pick_shape(Bytes& b) {
  const int dims = 1 + b.pick(4);
  std::vector<int64_t> s;
  int64_t numel = 1;
  for (int i = 0; i < dims; ++i) {
    int64_t v = b.pick(8);  // 0..7: empty, single sample, n < d and n > d all come up
    if (numel * std::max<int64_t>(v, 1) > 384) v = 1;
    s.push_back(v);
    numel *= std::max<int64_t>(v, 1);
  }
  return s;
}

// Values in double, later cast to the dtype under test.
at::Tensor make_values(Bytes& b, at::IntArrayRef shape) {
  const auto opt = at::TensorOptions().dtype(at::kDouble);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(b.u64());
  at::Tensor t;
  switch (b.pick(6)) {
    case 0:
      t = at::randn(shape, gen, opt);
      break;
    case 1: {  // identical rows (a collapsed batch)
      std::vector<int64_t> one(shape.begin(), shape.end());
      if (!one.empty()) one[0] = std::min<int64_t>(one[0], 1);
      t = at::randn(one, gen, opt).expand(shape).clone();
      break;
    }
    case 2: {  // every element from the input
      t = at::empty(shape, opt);
      auto* p = t.data_ptr<double>();
      for (int64_t i = 0; i < t.numel(); ++i) p[i] = b.value();
      break;
    }
    case 3:  // one scale for all: huge, tiny, denormal, NaN ...
      t = at::randn(shape, gen, opt) * b.value();
      break;
    case 4: {  // a few special values at fuzzed positions
      t = at::randn(shape, gen, opt);
      if (t.numel() > 0) {
        auto* p = t.data_ptr<double>();
        for (int k = b.pick(4); k >= 0; --k) p[b.u8() % t.numel()] = b.value();
      }
      break;
    }
    default:
      t = at::zeros(shape, opt);
  }
  return t;
}

// A tensor of `shape` and `dtype` laid out as the input says. Returns the leaf that gradients
// reach (`leaf`) and the (possibly non-contiguous) view that is passed on.
at::Tensor make_input(Bytes& b, at::IntArrayRef shape, at::ScalarType dtype, bool grad,
                      at::Tensor& leaf) {
  const bool floating = at::isFloatingType(dtype);
  auto finish = [&](at::Tensor base) {
    base = base.to(dtype);
    if (grad && floating) base.requires_grad_(true);
    leaf = base;
    return base;
  };
  const int64_t dim = static_cast<int64_t>(shape.size());
  switch (b.pick(5)) {
    case 1:
      if (dim >= 2) {  // transposed: a [.., d, n] tensor seen as [.., n, d]
        std::vector<int64_t> s(shape.begin(), shape.end());
        std::swap(s[dim - 1], s[dim - 2]);
        return finish(make_values(b, s)).transpose(-1, -2);
      }
      break;
    case 2: {  // sliced: every other sample of a twice larger batch
      std::vector<int64_t> s(shape.begin(), shape.end());
      if (dim >= 1) s[0] *= 2;
      auto base = finish(make_values(b, s));
      return dim >= 1 ? base.slice(0, 0, s[0], 2) : base;
    }
    case 3:
      if (dim >= 1) {  // expanded: one sample repeated with stride 0
        std::vector<int64_t> s(shape.begin(), shape.end());
        s[0] = 1;
        return finish(make_values(b, s)).expand(shape);
      }
      break;
    case 4:
      if (dim == 4) {
        return finish(make_values(b, shape)).contiguous(at::MemoryFormat::ChannelsLast);
      }
      break;
    default:
      break;
  }
  return finish(make_values(b, shape));
}

vicreg::VICRegLossOptions make_options(Bytes& b) {
  static const char* presets[] = {"reference", "paper", "article"};
  auto o = vicreg::VICRegLossOptions::preset(presets[b.pick(3)]);
  o.inv_coeff(b.coeff(o.inv_coeff()))
      .var_coeff(b.coeff(o.var_coeff()))
      .cov_coeff(b.coeff(o.cov_coeff()))
      .gamma(b.coeff(o.gamma()))
      .eps(b.coeff(o.eps()))
      .backward(b.flag() ? vicreg::Backward::Fused : vicreg::Backward::Autograd)
      .check_finite(b.pick(4) == 0);
  if (b.pick(4) == 0) {
    o.invariance(b.flag() ? vicreg::InvarianceNorm::SampleMean : vicreg::InvarianceNorm::ElementMean)
        .variance_form(b.flag() ? vicreg::VarianceForm::Var : vicreg::VarianceForm::Std)
        .variance_views(b.flag() ? vicreg::ViewReduction::Sum : vicreg::ViewReduction::Mean)
        .covariance_norm(b.flag() ? vicreg::CovarianceNorm::Biased
                                  : vicreg::CovarianceNorm::Unbiased);
  }
  return o;
}

const char* pick_string(Bytes& b, std::initializer_list<const char*> valid) {
  const int i = b.pick(static_cast<int>(valid.size()) + 1);
  return i < static_cast<int>(valid.size()) ? valid.begin()[i] : "bogus";
}

using Terms4 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Knob = c10::optional<c10::string_view>;

// inv, var, cov coefficients, gamma, eps: read in this order (function arguments are not).
std::array<double, 5> coefficients(Bytes& b) {
  std::array<double, 5> c{};
  const double usual[5] = {25, 25, 1, 1, 1e-4};
  for (int i = 0; i < 5; ++i) c[i] = b.coeff(usual[i]);
  return c;
}

void backward_if_possible(const at::Tensor& out, Bytes& b) {
  if (!out.defined() || !out.requires_grad()) return;
  if (out.dim() == 0) {
    out.backward();
  } else {
    out.backward(at::ones_like(out) * b.value());
  }
}

void run(Bytes& b) {
  const int target = b.pick(7);
  const auto shape = pick_shape(b);
  const auto dtype = pick_dtype(b);
  const bool grad = b.pick(4) != 0;
  at::Tensor leaf_a, leaf_b;
  const auto za = make_input(b, shape, dtype, grad, leaf_a);
  at::Tensor zb;
  if (b.pick(8) == 0) {  // a second view that disagrees in shape or dtype
    auto s2 = shape;
    s2[b.pick(static_cast<int>(s2.size()))] += 1;
    const bool other_shape = b.flag();
    const auto dtype_b = b.flag() ? pick_dtype(b) : dtype;
    zb = make_input(b, other_shape ? s2 : shape, dtype_b, grad, leaf_b);
  } else {
    zb = make_input(b, shape, dtype, grad, leaf_b);
  }

  switch (target) {
    case 0: {  // the module
      const auto o = make_options(b);
      vicreg::VICRegLoss loss(o);
      const auto out = loss->forward(za, zb);
      if (o.check_finite() && !std::isfinite(out.item<double>())) {
        std::fprintf(stderr, "check_finite let a non-finite loss through\n");
        std::abort();
      }
      backward_if_possible(out, b);
      break;
    }
    case 1: {  // functional terms; the gradient of a weighted sum of them
      const auto t = vicreg::functional::vicreg_terms(za, zb, make_options(b));
      backward_if_possible(t.loss + b.value() * t.invariance + t.covariance, b);
      break;
    }
    case 2: {  // the public operator, as TorchScript and Python call it
      static const auto op =
          c10::Dispatcher::singleton()
              .findSchemaOrThrow("vicreg::vicreg_loss", "")
              .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, double, double,
                                double, double, c10::string_view, Knob, Knob, Knob, Knob, bool,
                                bool)>();
      const auto c = coefficients(b);
      const auto convention = pick_string(b, {"reference", "paper", "article"});
      const auto loss = op.call(za, zb, c[0], c[1], c[2], c[3], c[4], convention, {}, {}, {}, {},
                                b.flag(), false);
      backward_if_possible(loss, b);
      break;
    }
    case 3: {  // every knob as an override of the convention
      static const auto op =
          c10::Dispatcher::singleton()
              .findSchemaOrThrow("vicreg::vicreg_terms", "")
              .typed<Terms4(const at::Tensor&, const at::Tensor&, double, double, double, double,
                            double, c10::string_view, Knob, Knob, Knob, Knob, bool, bool)>();
      const bool check = b.flag();
      const auto c = coefficients(b);
      const auto inv = pick_string(b, {"element_mean", "sample_mean"});
      const auto form = pick_string(b, {"std", "var"});
      const auto views = pick_string(b, {"mean", "sum"});
      const auto norm = pick_string(b, {"unbiased", "biased"});
      const auto out = op.call(za, zb, c[0], c[1], c[2], c[3], c[4], "reference", Knob(inv),
                               Knob(form), Knob(views), Knob(norm), b.flag(), check);
      if (check && !std::isfinite(std::get<0>(out).item<double>())) {
        std::fprintf(stderr, "check_finite let a non-finite loss through (operator)\n");
        std::abort();
      }
      backward_if_possible(std::get<0>(out) + std::get<3>(out), b);
      break;
    }
    case 4: {  // VCReg layer and its injected gradient
      vicreg::VCRegOptions o;
      o.var_coeff(b.coeff(1)).cov_coeff(b.coeff(1)).gamma(b.coeff(1)).eps(b.coeff(1e-4));
      o.channel_dim(static_cast<int64_t>(b.pick(9)) - 4);
      o.variance_form(b.flag() ? vicreg::VarianceForm::Var : vicreg::VarianceForm::Std);
      vicreg::VCReg layer(o);
      if (b.flag()) layer->eval();
      backward_if_possible(layer->forward(za), b);
      break;
    }
    case 5: {  // VCReg operator and its penalty
      static const auto op =
          c10::Dispatcher::singleton()
              .findSchemaOrThrow("vicreg::vcreg", "")
              .typed<at::Tensor(const at::Tensor&, double, double, double, double, int64_t,
                                c10::string_view)>();
      const auto c = coefficients(b);
      const int64_t channel_dim = static_cast<int64_t>(b.pick(9)) - 4;
      const auto y = op.call(za, c[1], c[2], c[3], c[4], channel_dim,
                             pick_string(b, {"std", "var"}));
      backward_if_possible(y, b);
      (void)vicreg::functional::vcreg_penalty(za.detach());
      break;
    }
    default: {  // the single-term functions (tensor ops, autograd)
      const auto o = make_options(b);
      const auto s = vicreg::functional::invariance_term(za, zb, o) +
                     vicreg::functional::variance_term(za, o) +
                     vicreg::functional::covariance_term(zb, o);
      backward_if_possible(s, b);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  at::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Bytes b(data, size);
  try {
    run(b);
  } catch (const c10::Error&) {
    // A clear error is an accepted outcome.
  }
  return 0;
}
