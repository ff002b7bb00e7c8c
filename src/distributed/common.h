#pragma once
// What both halves of vicreg::distributed share: collectives.cpp (the gather, the all-reduce
// and naming the ranks lost after a failure) and setup.cpp (the Gloo transport and the
// environment).

#include <c10/util/Exception.h>

#include <exception>
#include <string>

namespace vicreg::distributed::detail {

// The message of an exception without LibTorch's backtrace.
inline std::string message_of(const std::exception& e) {
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
}

}  // namespace vicreg::distributed::detail
