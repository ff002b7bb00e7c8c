#!/usr/bin/env bash
# The shared library exports its API and nothing else of ours: every defined dynamic symbol in
# namespace vicreg is declared in include/vicreg/; the internals (vicreg::ops, vicreg::checks,
# vicreg::distributed::detail) stay hidden, and the tests link them through vicreg_internal.
#   exports.sh LIBRARY
set -euo pipefail
lib="$1"
ours=$(nm -D --defined-only -C "$lib" | cut -d' ' -f3- | grep '^vicreg::' | sort -u)
internal=$(grep -E '^vicreg::(ops|checks|apps)::|^vicreg::distributed::detail::' <<< "$ours" ||
           true)
if [ -n "$internal" ]; then
  echo "FAIL: $lib exports internal symbols:"
  echo "$internal"
  exit 1
fi
for api in 'vicreg::functional::vicreg_loss(' 'vicreg::VICRegLossImpl::forward(' \
           'vicreg::VCRegImpl::forward(' 'vicreg::set_cpu_capability(' \
           'vicreg::script::make_loss_module('; do
  grep -qF "$api" <<< "$ours" || { echo "FAIL: $lib does not export $api"; exit 1; }
done
echo "$lib exports $(wc -l <<< "$ours") symbols of namespace vicreg, all of the API:"
sed 's/(.*//' <<< "$ours" | sort | uniq -c
