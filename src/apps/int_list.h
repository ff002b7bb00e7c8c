#pragma once
// The one parser of the programs' comma-separated integer lists ("16,32,64", "1,10,100"): the
// command line validates with it and the run reads the values with it, so both agree on what
// a list is and say so in the same words.

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace vicreg::apps {

/// What a list option takes: 1 to `max_count` integers in [lo, hi], or `off` alone when set.
struct IntListRule {
  int64_t lo = 1, hi = std::numeric_limits<int64_t>::max();
  size_t max_count = 1;
  const char* items = "integers";  ///< what the values are, in messages ("sizes")
  const char* off = nullptr;       ///< a value that stands alone for "none" ("0"), or null
};

/// "1 to 3 comma-separated sizes in [1, 65536]" (or "... integers >= 0"), "0 or " first when
/// the rule has an off value.
inline std::string describe(const IntListRule& r) {
  const bool unbounded = r.hi == std::numeric_limits<int64_t>::max();
  return (r.off ? std::string(r.off) + " or " : std::string()) + "1 to " +
         std::to_string(r.max_count) + " comma-separated " + r.items +
         (unbounded ? " >= " + std::to_string(r.lo)
                    : " in [" + std::to_string(r.lo) + ", " + std::to_string(r.hi) + "]");
}

/// The values of `s` under `r`: empty for the off value, none when `s` breaks the rule (an
/// empty item, a trailing comma, anything but decimal digits after an optional sign, a value
/// out of range, too many values). Decimal only: "010" is 10.
inline std::optional<std::vector<int64_t>> parse_int_list(const std::string& s,
                                                          const IntListRule& r) {
  if (r.off && s == r.off) return std::vector<int64_t>{};
  std::vector<int64_t> out;
  for (size_t start = 0;;) {
    const size_t end = s.find(',', start);
    const std::string item = s.substr(start, end == std::string::npos ? end : end - start);
    // Decimal digits after an optional sign, nothing else (no spaces, no 0x).
    const size_t digits = !item.empty() && (item[0] == '-' || item[0] == '+') ? 1 : 0;
    if (item.size() == digits ||
        item.find_first_not_of("0123456789", digits) != std::string::npos) {
      return std::nullopt;
    }
    errno = 0;
    const long long v = std::strtoll(item.c_str(), nullptr, 10);
    if (errno != 0 || v < r.lo || v > r.hi || out.size() == r.max_count) return std::nullopt;
    out.push_back(v);
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

/// The list options of vicreg_train. At most 3 conv blocks: 28x28 images are max-pooled after
/// each block but the last (28 -> 14 -> 7).
inline constexpr IntListRule kEncoderWidths{1, 65536, 3, "sizes"};
inline constexpr IntListRule kProjDims{1, 65536, 8, "sizes"};
inline constexpr IntListRule kFewLabelK{1, 6000, 8, "counts", "0"};  // 6000 a class in the data
inline constexpr IntListRule kSeeds{0, std::numeric_limits<int64_t>::max(), 16, "integers"};

}  // namespace vicreg::apps
