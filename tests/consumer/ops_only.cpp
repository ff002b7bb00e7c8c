// Links vicreg::vicreg but calls none of its symbols: the operators must still be registered
// (the exported target links with --no-as-needed), as TorchScript users rely on.
#include <ATen/core/dispatch/Dispatcher.h>

#include <iostream>

int main() {
  const bool registered =
      c10::Dispatcher::singleton().findSchema({"vicreg::vicreg_loss", ""}).has_value();
  std::cout << "vicreg operators registered: " << std::boolalpha << registered << "\n";
  return registered ? 0 : 1;
}
