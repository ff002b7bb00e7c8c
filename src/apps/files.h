#pragma once
// The files vicreg_train writes: whole or not at all (a temporary file, flushed to the disk,
// then renamed over the old one), and the SHA-256 checksums that let a reader tell a damaged
// file from a good one. Compiles without the LibTorch headers; errors are std::runtime_error.

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>

namespace vicreg::apps {

/// The SHA-256 of `bytes` (FIPS 180-4) as 64 lowercase hex digits, as `sha256sum` prints it.
std::string sha256_hex(std::string_view bytes);

/// The whole content of a file; a std::runtime_error naming it when it cannot be read.
std::string read_file(const std::filesystem::path& file);

/// Writes `bytes` into `file` and flushes them to the disk. On a failure (a full disk, say)
/// the file is removed and a std::runtime_error says what failed and why.
void write_and_sync(const std::filesystem::path& file, std::string_view bytes);

/// Writes `bytes` to `file` whole or not at all: into `file.tmp`, flushed to the disk, then
/// renamed over `file`. On any failure (a full disk, say) the temporary file is removed, `file`
/// keeps its old content, and a std::runtime_error says what failed and why.
void write_file_atomically(const std::filesystem::path& file, std::string_view bytes);

/// Writes `bytes` into `file` atomically, then opens it in `log` for appending (a log that
/// goes on growing, such as metrics.csv).
void start_log(std::ofstream& log, const std::filesystem::path& file, std::string_view bytes);

/// Writes `bytes` to `file` atomically, then its checksum to `file.sha256`, in the format of
/// `sha256sum` (so `sha256sum -c file.sha256`, run in file's folder, verifies it).
void write_with_checksum(const std::filesystem::path& file, std::string_view bytes);

/// Checks `bytes`, read from `file`, against `file.sha256`. Returns nothing when they match or
/// when there is no `file.sha256` (a file from before checksums), and what did not match
/// otherwise.
std::optional<std::string> checksum_mismatch(const std::filesystem::path& file,
                                             std::string_view bytes);

}  // namespace vicreg::apps
