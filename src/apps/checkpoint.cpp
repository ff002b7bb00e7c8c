// vicreg_train's checkpoints (checkpoint.h).

#include "checkpoint.h"

#include "files.h"

#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <sstream>

namespace fs = std::filesystem;

namespace vicreg::apps {
namespace {

// Format 2 added the checksum line; format 1 files (no checksum) are refused as unverifiable.
constexpr const char* kFormat = "vicreg_train checkpoint 2";
constexpr std::string_view kChecksumTag = "vicreg_train checkpoint sha256 ";
constexpr size_t kChecksumLine = kChecksumTag.size() + 64 + 1;

// A module's parameters and buffers in a fixed order, with their dotted names.
std::vector<std::pair<std::string, at::Tensor>> tensors_of(torch::nn::Module& m) {
  std::vector<std::pair<std::string, at::Tensor>> v;
  for (const auto& p : m.named_parameters()) v.emplace_back(p.key(), p.value());
  for (const auto& b : m.named_buffers()) v.emplace_back(b.key(), b.value());
  return v;
}

std::string join_names(const std::vector<std::pair<std::string, at::Tensor>>& v) {
  std::string s;
  for (const auto& [name, t] : v) s += name + "\n";
  return s;
}

at::Tensor doubles(const std::vector<double>& v) {
  return torch::tensor(v.empty() ? std::vector<double>{} : v, at::kDouble);
}

std::vector<double> to_vector(const at::Tensor& t) {
  const auto c = t.to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// "name value" lines -> map, for naming the settings that differ.
std::map<std::string, std::string> settings_map(const std::string& s) {
  std::map<std::string, std::string> m;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) {
    const auto space = line.find(' ');
    m[line.substr(0, space)] = space == std::string::npos ? "" : line.substr(space + 1);
  }
  return m;
}

std::string read_string(torch::serialize::InputArchive& a, const std::string& key,
                        const fs::path& file) {
  c10::IValue v;
  TORCH_CHECK(a.try_read(key, v) && v.isString(), "checkpoint ", file.string(),
              ": no '", key, "' entry: not a vicreg_train checkpoint, or a damaged one");
  return v.toStringRef();
}

int64_t read_int(torch::serialize::InputArchive& a, const std::string& key, const fs::path& file) {
  c10::IValue v;
  TORCH_CHECK(a.try_read(key, v) && v.isInt(), "checkpoint ", file.string(), ": no '", key,
              "' entry: not a vicreg_train checkpoint, or a damaged one");
  return v.toInt();
}

at::Tensor read_tensor(torch::serialize::InputArchive& a, const std::string& key,
                       const fs::path& file) {
  at::Tensor t;
  TORCH_CHECK(a.try_read(key, t), "checkpoint ", file.string(), ": no '", key,
              "' entry: not a vicreg_train checkpoint, or a damaged one");
  return t;
}

// A checkpoint's archive bytes, after checking them against the checksum line; a missing,
// short or damaged file is a c10::Error that says which and what did not match.
std::string verified_archive(const fs::path& file) {
  std::string bytes;
  try {
    bytes = read_file(file);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "checkpoint ", file.string(), " cannot be read (", e.what(), ")");
  }
  const size_t n = bytes.size();
  const std::string_view line =
      n >= kChecksumLine ? std::string_view(bytes).substr(n - kChecksumLine) : "";
  TORCH_CHECK(line.substr(0, kChecksumTag.size()) == kChecksumTag && line.back() == '\n',
              "checkpoint ", file.string(), " has no checksum line at its end (", n,
              " bytes): cut short, damaged, or written by a vicreg_train without checksums");
  bytes.resize(n - kChecksumLine);
  const auto recorded = std::string(line.substr(kChecksumTag.size(), 64));
  const auto actual = sha256_hex(bytes);
  TORCH_CHECK(actual == recorded, "checkpoint ", file.string(), " is damaged: the SHA-256 of its ",
              bytes.size(), " bytes of data is ", actual, ", its checksum line records ",
              recorded);
  return bytes;
}

// A checkpoint's archive, checked; it reads from `bytes`, which must outlive it.
struct Opened {
  std::string bytes;
  torch::serialize::InputArchive archive;
};

// Opens a checkpoint and checks its checksum and format; any failure is a c10::Error.
void open_checkpoint(const fs::path& file, Opened& o) {
  o.bytes = verified_archive(file);
  try {
    o.archive.load_from(o.bytes.data(), o.bytes.size());
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "checkpoint ", file.string(), " cannot be read (",
                e.what_without_backtrace(), ")");
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "checkpoint ", file.string(), " cannot be read (", e.what(), ")");
  }
  TORCH_CHECK(read_string(o.archive, "format", file) == kFormat, "checkpoint ", file.string(),
              ": written by another version of vicreg_train (expected '", kFormat, "')");
}

}  // namespace

fs::path checkpoint_file(const fs::path& dir) { return dir / "checkpoint.pt"; }
fs::path previous_checkpoint_file(const fs::path& dir) { return dir / "checkpoint.prev.pt"; }

void save_checkpoint(const fs::path& dir, const RunState& s, const Resumed& r) {
  torch::serialize::OutputArchive a;
  a.write("format", c10::IValue(std::string(kFormat)));
  a.write("settings", c10::IValue(s.settings));
  a.write("rank", c10::IValue(int64_t{s.rank}));
  a.write("world", c10::IValue(int64_t{s.world}));
  a.write("threads", c10::IValue(int64_t{s.threads}));
  const auto& p = r.progress;
  a.write("steps", c10::IValue(p.steps));
  a.write("order", p.order.defined() ? p.order : at::empty({0}, at::kLong));
  a.write("sums", doubles(p.sums));
  a.write("count", c10::IValue(p.count));
  a.write("seconds", doubles({p.seconds, p.hook_seconds}));
  std::vector<double> curve;
  for (const auto& c : r.curve) curve.insert(curve.end(), {double(c.step), c.knn_pct});
  a.write("curve", doubles(curve));
  for (const auto& [name, m] : s.modules) {
    const auto tensors = tensors_of(*m);
    a.write(name + "_names", c10::IValue(join_names(tensors)));
    for (size_t i = 0; i < tensors.size(); ++i) {
      a.write(fmt::format("{}_{}", name, i), tensors[i].second.detach());
    }
  }
  torch::serialize::OutputArchive opt;
  s.optimizer->save(opt);
  a.write("optimizer", opt);
  for (const auto& [name, g] : s.generators) a.write("generator_" + name, g.get_state());

  std::string bytes;
  a.save_to([&bytes](const void* data, size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  bytes += std::string(kChecksumTag) + sha256_hex(bytes) + "\n";

  const auto tmp = dir / "checkpoint.pt.tmp";
  const auto current = checkpoint_file(dir), previous = previous_checkpoint_file(dir);
  try {
    write_and_sync(tmp, bytes);
  } catch (const std::exception& e) {
    std::string kept;
    for (const auto& f : {current, previous}) {
      if (fs::exists(f)) kept += (kept.empty() ? "" : " and ") + f.string();
    }
    TORCH_CHECK(false, "checkpoint after step ", p.steps, ": ", e.what(), "; ",
                kept.empty() ? std::string("no checkpoint had been written yet")
                             : "left as they were: " + kept);
  }
  std::error_code ec;
  // Only an intact checkpoint becomes the previous one: after a resume from checkpoint.prev.pt
  // past a damaged checkpoint.pt, the damaged file must not take the good one's place.
  bool rotate = fs::exists(current);
  if (rotate) {
    try {
      verified_archive(current);
    } catch (const c10::Error&) {
      rotate = false;
    }
  }
  if (rotate) fs::rename(current, previous, ec);
  TORCH_CHECK(!ec, "checkpoint: renaming ", current.string(), " failed: ", ec.message());
  fs::rename(tmp, current, ec);
  TORCH_CHECK(!ec, "checkpoint: renaming ", tmp.string(), " failed: ", ec.message());
}

CheckpointScan checkpoints_in(const fs::path& dir) {
  CheckpointScan scan;
  for (const auto& f : {checkpoint_file(dir), previous_checkpoint_file(dir)}) {
    if (!fs::exists(f)) continue;
    try {
      Opened o;
      open_checkpoint(f, o);
      scan.intact.emplace_back(read_int(o.archive, "steps", f), f);
    } catch (const c10::Error& e) {
      // A damaged file is skipped with a note; the other one may still be whole.
      scan.damaged.push_back(e.what_without_backtrace());
      fmt::print(stderr, "{}; skipped\n", scan.damaged.back());
    }
  }
  return scan;
}

Resumed load_checkpoint(const fs::path& file, const RunState& s) {
  Opened o;
  open_checkpoint(file, o);
  auto& a = o.archive;
  // The settings first: they name what differs in the user's terms.
  const auto theirs = settings_map(read_string(a, "settings", file));
  const auto ours = settings_map(s.settings);
  std::string diff;
  for (const auto& [key, value] : ours) {
    const auto it = theirs.find(key);
    const std::string other = it == theirs.end() ? "(not set)" : it->second;
    if (other != value) diff += fmt::format("; {} {} there, {} here", key, other, value);
  }
  for (const auto& [key, value] : theirs) {
    if (!ours.count(key)) diff += fmt::format("; {} {} there, not set here", key, value);
  }
  TORCH_CHECK(diff.empty(), "checkpoint ", file.string(),
              " is from a run with other settings, refused", diff);
  const auto rank = read_int(a, "rank", file), world = read_int(a, "world", file);
  TORCH_CHECK(rank == s.rank && world == s.world, "checkpoint ", file.string(),
              " was written by rank ", rank, " of ", world, ", this process is rank ", s.rank,
              " of ", s.world, ": refused");
  if (const auto threads = read_int(a, "threads", file); threads != s.threads) {
    fmt::print("note: the checkpoint was written with {} threads, this run has {}: the weights "
               "may differ from an uninterrupted run in the last bits\n", threads, s.threads);
  }

  // Every model tensor, checked before any is copied.
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (destination, source)
  for (const auto& [name, m] : s.modules) {
    const auto tensors = tensors_of(*m);
    TORCH_CHECK(read_string(a, name + "_names", file) == join_names(tensors), "checkpoint ",
                file.string(), ": the ", name, "'s layers differ from this run's: refused");
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& [tname, dst] = tensors[i];
      const auto src = read_tensor(a, fmt::format("{}_{}", name, i), file);
      TORCH_CHECK(src.sizes() == dst.sizes() && src.scalar_type() == dst.scalar_type(),
                  "checkpoint ", file.string(), ": ", name, " ", tname, " is ",
                  src.scalar_type(), " ", src.sizes(), " there, ", dst.scalar_type(), " ",
                  dst.sizes(), " here: refused");
      copies.emplace_back(dst, src);
    }
  }
  std::vector<std::pair<at::Generator, at::Tensor>> states;
  for (const auto& [name, g] : s.generators) {
    states.emplace_back(g, read_tensor(a, "generator_" + name, file));
  }
  Resumed r;
  auto& p = r.progress;
  p.steps = read_int(a, "steps", file);
  p.order = read_tensor(a, "order", file);
  p.sums = to_vector(read_tensor(a, "sums", file));
  p.count = read_int(a, "count", file);
  const auto seconds = to_vector(read_tensor(a, "seconds", file));
  TORCH_CHECK(seconds.size() == 2, "checkpoint ", file.string(), ": damaged 'seconds' entry");
  p.seconds = seconds[0];
  p.hook_seconds = seconds[1];
  const auto curve = to_vector(read_tensor(a, "curve", file));
  for (size_t i = 0; i + 1 < curve.size(); i += 2) {
    r.curve.push_back({static_cast<int64_t>(curve[i]), curve[i + 1]});
  }
  torch::serialize::InputArchive opt;
  TORCH_CHECK(a.try_read("optimizer", opt), "checkpoint ", file.string(),
              ": no optimizer state: not a vicreg_train checkpoint, or a damaged one");

  // Everything was there and matched: now change the run's objects.
  s.optimizer->load(opt);
  {
    torch::NoGradGuard no_grad;
    for (auto& [dst, src] : copies) dst.copy_(src);
  }
  for (auto& [g, state] : states) g.set_state(state);
  return r;
}

}  // namespace vicreg::apps
