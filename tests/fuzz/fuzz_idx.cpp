// libFuzzer target for the IDX reader (apps::read_idx_gz), the input surface that reads files a
// user points the trainer at. The first byte picks how the rest becomes a file: written as it
// is (gzip garbage, a wrong magic), gzip-compressed (so the fuzzer explores the IDX header and
// payload behind valid compression), or compressed and then cut or with one byte flipped
// (truncated and corrupt streams). Every read must end in a tensor of the header's shape or a
// c10::Error: a crash, a sanitizer report, a hang or an allocation the input cannot justify
// (libFuzzer's -rss_limit_mb and -malloc_limit_mb) is a finding.
//
// Built as `vicreg_fuzz_idx` with clang (-DVICREG_FUZZ=ON), and always as
// `vicreg_fuzz_idx_replay`, which runs the stored corpus (tests/fuzz/corpus_idx) under CTest.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "data.h"

namespace {

// The file each input is written to: one per process, removed at exit.
const std::string& scratch_file() {
  static const std::string path = (std::filesystem::temp_directory_path() /
                                   ("vicreg_fuzz_idx_" + std::to_string(::getpid()) + ".gz"))
                                      .string();
  return path;
}

void write_raw(const std::string& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

// The gzip compression of data, as gzwrite writes it.
std::string gzip(const uint8_t* data, size_t size, const std::string& path) {
  gzFile f = gzopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size > 0 && gzwrite(f, data, static_cast<unsigned>(size)) != static_cast<int>(size)) {
    std::abort();
  }
  gzclose(f);
  std::FILE* in = std::fopen(path.c_str(), "rb");
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, in)) > 0;) out.append(buf, n);
  std::fclose(in);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  at::set_num_threads(1);
  std::atexit([] { std::remove(scratch_file().c_str()); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = scratch_file();
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 4;
  ++data, --size;
  if (mode == 0) {
    write_raw(path, data, size);
  } else {
    std::string gz = gzip(data, size, path);
    if (mode >= 2 && !gz.empty()) {
      // The last payload byte (or the byte before it) says where to cut or flip.
      const size_t at = (size > 0 ? data[size - 1] * 131u : 0u) % gz.size();
      if (mode == 2) {
        gz.resize(at);
      } else {
        gz[at] = static_cast<char>(gz[at] ^ 0x5a);
      }
    }
    write_raw(path, reinterpret_cast<const uint8_t*>(gz.data()), gz.size());
  }
  try {
    const auto t = vicreg::apps::read_idx_gz(path);
    if (t.scalar_type() != at::kByte || t.dim() < 1) std::abort();  // the promised result
  } catch (const c10::Error&) {
    // A clear error is an accepted outcome.
  }
  return 0;
}
