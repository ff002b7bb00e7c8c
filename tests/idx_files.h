#pragma once
// Writers of IDX files (gzip-compressed, as Fashion-MNIST ships them) for the reader's tests.

#include <ftw.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace vicreg::testing {

/// Removes a directory tree if it exists, errors ignored. (POSIX nftw, not
/// std::filesystem::remove_all: PyTorch 2.11's CUDA wheel exports its own copy of remove_all
/// from libtorch.so, which the linker picks over libstdc++'s and which jumps to address 0.)
inline void remove_tree(const std::filesystem::path& path) {
  ::nftw(
      path.c_str(),
      [](const char* p, const struct stat*, int, struct FTW*) { return std::remove(p), 0; },
      16, FTW_DEPTH | FTW_PHYS);
}

/// A per-process scratch directory under the system's temp directory, removed when the process
/// exits (CTest runs every case in a process of its own, so each would leave one behind).
inline std::filesystem::path scratch_dir(const std::string& tag) {
  struct Removed {
    std::filesystem::path path;
    ~Removed() { remove_tree(path); }
  };
  static std::map<std::string, Removed> dirs;
  auto& d = dirs[tag];
  if (d.path.empty()) {
    d.path = std::filesystem::temp_directory_path() /
             ("vicreg_" + tag + "_" + std::to_string(::getpid()));
  }
  std::filesystem::create_directories(d.path);
  return d.path;
}

/// Writes `bytes` gzip-compressed to `path`.
inline void write_gz(const std::filesystem::path& path, const std::vector<unsigned char>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  gzclose(f);
}

/// An IDX header (magic 0 0 type ndim, big-endian sizes) followed by `payload` bytes i * 7.
inline std::vector<unsigned char> idx_bytes(const std::vector<uint32_t>& dims, int64_t payload,
                                            unsigned char type = 0x08) {
  std::vector<unsigned char> b = {0, 0, type, static_cast<unsigned char>(dims.size())};
  for (auto d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(d >> s));
  }
  for (int64_t i = 0; i < payload; ++i) b.push_back(static_cast<unsigned char>(i * 7));
  return b;
}

}  // namespace vicreg::testing
