#include "ops/settings.h"

#include <ATen/core/custom_class.h>

#include <cmath>
#include <cstdio>

namespace vicreg::ops {

std::string schema_literal(double v) {
  // 17 significant digits read back as v; a point, so that the schema reads a float.
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", v);
  std::string s = text;
  if (std::isfinite(v) && s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}
std::string schema_literal(int64_t v) { return std::to_string(v); }
std::string schema_literal(bool v) { return v ? "True" : "False"; }
std::string schema_literal(c10::string_view v) { return "\"" + std::string(v) + "\""; }

namespace {

// Keeps a settings value in an IValue (autograd's saved_data), as one entry.
template <typename S>
struct Capsule : torch::CustomClassHolder {
  explicit Capsule(S s) : settings(std::move(s)) {}
  S settings;
};

template <typename S>
c10::IValue capsule_of(const S& s) {
  return c10::IValue::make_capsule(c10::make_intrusive<Capsule<S>>(s));
}

template <typename S>
S from_capsule(const c10::IValue& v) {
  return c10::static_intrusive_pointer_cast<Capsule<S>>(v.toCapsule())->settings;
}

// One argument of a schema, ", "-separated: its type and name, and its default when given.
template <typename T>
void append(std::string& schema, const char* name, const T* default_value) {
  if (!schema.empty()) schema += ", ";
  schema += std::string(schema_type<T>()) + " " + name;
  if (default_value) schema += "=" + schema_literal(*default_value);
}

// Where a row's member sits in the settings' Args tuple: rows are counted as the table lists them.
#define VICREG_INDEX(name, member) k_##name,
struct LossRows {
  enum : size_t { VICREG_LOSS_SETTINGS(VICREG_INDEX) };
};
struct VCRegRows {
  enum : size_t { VCREG_SETTINGS(VICREG_INDEX) };
};
#undef VICREG_INDEX

}  // namespace

// The internal operators' schemas carry no defaults: only the public fronts are called by users.
#define VICREG_SCHEMA(name, member) append(schema, #name, static_cast<decltype(&s.member)>(nullptr));
std::string Settings::schema() {
  std::string schema;
  const Settings s;
  VICREG_LOSS_SETTINGS(VICREG_SCHEMA)
  return schema;
}
#undef VICREG_SCHEMA

// The VCReg operators are public: their defaults are those of VCRegOptions.
#define VICREG_SCHEMA(name, member) append(schema, #name, &s.member);
std::string VCRegSettings::schema() {
  std::string schema;
  const auto s = VCRegSettings::of(VCRegOptions());
  VCREG_SETTINGS(VICREG_SCHEMA)
  return schema;
}
#undef VICREG_SCHEMA

#define VICREG_PARSE(name, member) \
  s.member = from_arg<std::decay_t<decltype(s.member)>>(#name, std::get<Rows::k_##name>(args));
#define VICREG_ARG(name, member) std::get<Rows::k_##name>(args) = to_arg(member);

Settings Settings::parse(const Args& args) {
  using Rows = LossRows;
  Settings s;
  VICREG_LOSS_SETTINGS(VICREG_PARSE)
  return s;
}

Settings::Args Settings::args() const {
  using Rows = LossRows;
  Args args;
  VICREG_LOSS_SETTINGS(VICREG_ARG)
  return args;
}

VCRegSettings VCRegSettings::parse(const Args& args) {
  using Rows = VCRegRows;
  VCRegSettings s;
  VCREG_SETTINGS(VICREG_PARSE)
  return s;
}

VCRegSettings::Args VCRegSettings::args() const {
  using Rows = VCRegRows;
  Args args;
  VCREG_SETTINGS(VICREG_ARG)
  return args;
}
#undef VICREG_PARSE
#undef VICREG_ARG

c10::IValue Settings::to_ivalue() const { return capsule_of(*this); }
Settings Settings::from_ivalue(const c10::IValue& v) { return from_capsule<Settings>(v); }

c10::IValue VCRegSettings::to_ivalue() const { return capsule_of(*this); }
VCRegSettings VCRegSettings::from_ivalue(const c10::IValue& v) {
  return from_capsule<VCRegSettings>(v);
}

}  // namespace vicreg::ops
