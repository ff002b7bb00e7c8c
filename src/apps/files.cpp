// vicreg_train's file writing and checksums (files.h).

#include "files.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <system_error>

namespace fs = std::filesystem;

namespace vicreg::apps {
namespace {

// FIPS 180-4, section 6.2, on whole 64-byte blocks.
class Sha256 {
 public:
  void update(const unsigned char* p, size_t n) {
    length_ += n;
    if (used_ > 0) {
      const size_t take = std::min(n, block_.size() - used_);
      std::memcpy(block_.data() + used_, p, take);
      used_ += take, p += take, n -= take;
      if (used_ < block_.size()) return;
      compress(block_.data());
      used_ = 0;
    }
    for (; n >= 64; p += 64, n -= 64) compress(p);
    std::memcpy(block_.data(), p, n);
    used_ = n;
  }
  std::string hex() {
    const uint64_t bits = length_ * 8;
    const unsigned char one = 0x80, zero = 0;
    update(&one, 1);
    while (used_ != 56) update(&zero, 1);
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
    update(len, 8);
    std::string s;
    static const char* digits = "0123456789abcdef";
    for (uint32_t w : h_) {
      for (int i = 28; i >= 0; i -= 4) s += digits[(w >> i) & 15];
    }
    return s;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void compress(const unsigned char* p) {
    static constexpr uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i) {
      w[i] = uint32_t{p[4 * i]} << 24 | uint32_t{p[4 * i + 1]} << 16 |
             uint32_t{p[4 * i + 2]} << 8 | uint32_t{p[4 * i + 3]};
    }
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6],
             h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                          k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    const uint32_t add[8] = {a, b, c, d, e, f, g, h};
    for (int i = 0; i < 8; ++i) h_[i] += add[i];
  }

  std::array<uint32_t, 8> h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<unsigned char, 64> block_{};
  size_t used_ = 0;
  uint64_t length_ = 0;
};

[[noreturn]] void fail(const std::string& what, int err) {
  throw std::runtime_error(what + ": " + std::strerror(err));
}

fs::path checksum_file(const fs::path& file) {
  return file.parent_path() / (file.filename().string() + ".sha256");
}

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  Sha256 h;
  h.update(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return h.hex();
}

std::string read_file(const fs::path& file) {
  if (!fs::is_regular_file(file)) throw std::runtime_error("cannot read " + file.string() + ": not a file");
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("cannot open " + file.string(), errno);
  std::string s;
  std::error_code ec;
  if (const auto size = fs::file_size(file, ec); !ec) s.reserve(size);
  s.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::runtime_error("cannot read " + file.string());
  return s;
}

void write_and_sync(const fs::path& file, std::string_view bytes) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create " + file.string(), errno);
  const char* p = bytes.data();
  size_t left = bytes.size();
  int err = 0;
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : ENOSPC;
      break;
    }
    p += n, left -= static_cast<size_t>(n);
  }
  // The data reaches the disk before the caller renames the file into place: after a power
  // loss, not only a kill, the target is then either the old file or the new one, whole.
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(file.c_str());
    fail("writing " + file.string() + " failed (" + std::to_string(bytes.size()) + " bytes)",
         err);
  }
}

void write_file_atomically(const fs::path& file, std::string_view bytes) {
  const auto tmp = file.parent_path() / (file.filename().string() + ".tmp");
  try {
    write_and_sync(tmp, bytes);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string(e.what()) + "; " + file.string() +
                             " is as it was before");
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("renaming " + tmp.string() + " to " + file.string() + " failed", err);
  }
}

void start_log(std::ofstream& log, const fs::path& file, std::string_view bytes) {
  write_file_atomically(file, bytes);
  log.open(file, std::ios::app);
  if (!log) fail("cannot open " + file.string() + " to append to it", errno);
}

void write_with_checksum(const fs::path& file, std::string_view bytes) {
  // The old checksum goes first: a kill between the two writes then leaves a file without a
  // checksum (loaded with a note), not a good file beside a stale checksum (refused).
  std::error_code ec;
  fs::remove(checksum_file(file), ec);
  write_file_atomically(file, bytes);
  write_file_atomically(checksum_file(file),
                        sha256_hex(bytes) + "  " + file.filename().string() + "\n");
}

std::optional<std::string> checksum_mismatch(const fs::path& file, std::string_view bytes) {
  const auto sums = checksum_file(file);
  if (!fs::exists(sums)) return std::nullopt;
  const auto line = read_file(sums);
  const auto expected = line.substr(0, 64);
  const auto actual = sha256_hex(bytes);
  if (line.size() >= 64 && expected == actual) return std::nullopt;
  return "the SHA-256 of " + file.string() + " is " + actual + ", " + sums.string() +
         " records " + (line.size() >= 64 ? expected : "'" + line + "'");
}

}  // namespace vicreg::apps
