#include "op_count.h"

#include <ATen/record_function.h>

#include <cstring>

namespace vicreg::testing {
namespace {

// (a callback is a plain function pointer: the count lives in a thread-local)
thread_local int64_t counted = 0;

std::unique_ptr<at::ObserverContext> count_call(const at::RecordFunction& fn) {
  if (std::strncmp(fn.name(), "aten::", 6) == 0) ++counted;
  return nullptr;
}

}  // namespace

int64_t count_aten_ops(const std::function<void()>& f) {
  counted = 0;
  const auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(count_call).scopes({at::RecordScope::FUNCTION}));
  try {
    f();
  } catch (...) {
    at::removeCallback(handle);
    throw;
  }
  at::removeCallback(handle);
  return counted;
}

}  // namespace vicreg::testing
