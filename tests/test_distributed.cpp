// Distributed VICReg on c10d: ranks are threads, each with its own ProcessGroupGloo over a
// FileStore (real Gloo transport on 127.0.0.1). Every test bounds its own run time through
// the groups' timeouts.

#include <torch/csrc/distributed/c10d/FileStore.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <thread>

#include "helpers.h"
#include "vicreg/distributed.h"

namespace vicreg::testing {
namespace {

using namespace std::chrono_literals;

std::string fresh_store_path() {
  static std::atomic<int> counter{0};
  return (std::filesystem::temp_directory_path() /
          ("vicreg_store_" + std::to_string(::getpid()) + "_" + std::to_string(counter++)))
      .string();
}

// Runs fn(rank, group) on `world` threads; returns each rank's error message ("" if none).
std::vector<std::string> run_ranks(int world, std::chrono::milliseconds timeout,
                                   const std::function<void(int, distributed::Group&)>& fn,
                                   const distributed::GlooEndpoint& endpoint = {}) {
  const auto path = fresh_store_path();
  std::vector<std::string> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto store = c10::make_intrusive<c10d::FileStore>(path, world);
        auto group = distributed::make_gloo_group(store, r, world, timeout, endpoint);
        fn(r, *group);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  std::filesystem::remove(path);
  return errors;
}

std::vector<int64_t> offsets_of(const std::vector<int64_t>& rows) {
  std::vector<int64_t> off{0};
  for (auto r : rows) off.push_back(off.back() + r);
  return off;
}

// How the loss is computed across ranks.
enum class Mode { Sharded, Replicated, Autograd };

const char* name_of(Mode m) {
  return m == Mode::Sharded ? "sharded" : m == Mode::Replicated ? "replicated" : "autograd";
}

// Rank r holds rows[r] rows of a batch of shape [N, feature...]: every rank's terms equal the
// single-process terms of the whole batch, and the gradient of each rank's rows is the sum over
// the ranks of their output gradients times the single-process Jacobian. Rank r differentiates
// (r + 1) loss + 2 covariance, so the expected gradient is that of
// W (W + 1) / 2 loss + 2 W covariance on one process (W ranks); with equal output gradients
// this is what DDP's averaging turns into the single-process gradient.
void check_equals_single_process(const std::vector<int64_t>& rows, Mode mode,
                                 const VICRegLossOptions& preset,
                                 std::vector<int64_t> feature = {6}) {
  const int world = static_cast<int>(rows.size());
  const auto off = offsets_of(rows);
  const int64_t N = off.back();
  auto shape = feature;
  shape.insert(shape.begin(), N);
  const auto za = spread_embeddings(shape, torch::kFloat64, 31);
  const auto zb = spread_embeddings(shape, torch::kFloat64, 32);
  auto o = preset;
  o.backward(mode == Mode::Autograd ? Backward::Autograd : Backward::Fused);
  o.sharded(mode == Mode::Sharded);
  auto a = za.clone().requires_grad_(true), b = zb.clone().requires_grad_(true);
  const auto single = functional::vicreg_terms(a, b, o);
  const double w = world;
  const auto g_single =
      torch::autograd::grad({single.loss * (w * (w + 1) / 2) + single.covariance * (2 * w)},
                            {a, b});

  std::vector<std::vector<double>> terms(world);
  std::vector<at::Tensor> ga(world), gb(world);
  const auto errors = run_ranks(world, 20s, [&](int r, distributed::Group& g) {
    auto ra = za.narrow(0, off[r], rows[r]).clone().requires_grad_(true);
    auto rb = zb.narrow(0, off[r], rows[r]).clone().requires_grad_(true);
    auto opts = o;
    opts.process_group(std::shared_ptr<distributed::Group>(&g, [](auto*) {}));
    const auto t = functional::vicreg_terms(ra, rb, opts);
    auto grads = torch::autograd::grad({t.loss * (r + 1.0) + t.covariance * 2.0}, {ra, rb});
    for (const auto& x : {t.loss, t.invariance, t.variance, t.covariance}) {
      terms[r].push_back(x.item<double>());
    }
    ga[r] = grads[0];
    gb[r] = grads[1];
  });
  const std::vector<double> expected{single.loss.item<double>(), single.invariance.item<double>(),
                                     single.variance.item<double>(),
                                     single.covariance.item<double>()};
  for (int r = 0; r < world; ++r) {
    ASSERT_EQ(errors[r], "") << "rank " << r;
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_LT(rel_error(terms[r][i], expected[i]), 1e-10) << "rank " << r << ", term " << i;
    }
    auto local = shape;
    local[0] = rows[r];
    EXPECT_EQ(ga[r].sizes(), c10::IntArrayRef(local)) << "rank " << r;
    EXPECT_EQ(gb[r].sizes(), c10::IntArrayRef(local)) << "rank " << r;
    if (rows[r] == 0) continue;  // a rank with no rows gets an empty gradient
    EXPECT_LT(rel_error(ga[r], g_single[0].narrow(0, off[r], rows[r])), 1e-10) << "rank " << r;
    EXPECT_LT(rel_error(gb[r], g_single[1].narrow(0, off[r], rows[r])), 1e-10) << "rank " << r;
  }
}

TEST(Distributed, RanksEqualSingleProcessEveryModeEqualUnequalAndEmptyShards) {
  const std::vector<std::vector<int64_t>> shards{{8, 8}, {5, 11}, {4, 4, 4, 4}, {3, 5, 2, 6},
                                                 {6, 0, 5}};
  for (auto mode : {Mode::Sharded, Mode::Replicated, Mode::Autograd}) {
    for (const auto& rows : shards) {
      SCOPED_TRACE(c10::str(c10::IntArrayRef(rows), " ", name_of(mode)));
      check_equals_single_process(rows, mode, VICRegLossOptions::reference());
    }
  }
  check_equals_single_process({7, 9}, Mode::Sharded, VICRegLossOptions::article());
}

// d = 6 above is the direct path (2 (N - 1) > d, the d x d matrix summed over ranks); d = 40
// takes the Gram path (each rank's Gram rows against the gathered centered rows). Local
// features [n, P, d] in both.
TEST(Distributed, ShardedLossTakesBothPathsAndLocalFeatures) {
  const std::vector<std::vector<int64_t>> shards{{8, 8}, {5, 11}, {3, 5, 2, 6}, {6, 0, 5}};
  for (const auto& rows : shards) {
    SCOPED_TRACE(c10::str(c10::IntArrayRef(rows), " Gram"));
    check_equals_single_process(rows, Mode::Sharded, VICRegLossOptions::reference(), {40});
  }
  for (auto mode : {Mode::Sharded, Mode::Autograd}) {
    for (int64_t d : {5, 40}) {
      SCOPED_TRACE(c10::str("[n, 3, ", d, "] ", name_of(mode)));
      check_equals_single_process({5, 0, 4, 3}, mode, VICRegLossOptions::reference(), {3, d});
    }
  }
  for (const auto& preset : {VICRegLossOptions::paper(), VICRegLossOptions::article()}) {
    SCOPED_TRACE(convention_name(preset));
    check_equals_single_process({7, 9}, Mode::Sharded, preset, {40});
  }
}

// Each graph of the sharded loss keeps its own gathered rows (saved for the backward) on the
// Gram path. Calls under InferenceMode (where Gloo's worker threads, outside it, must still
// write), a second loss taken while the first graph is alive, calls after both backwards and a
// call while a graph is retained all equal the single process.
TEST(Distributed, ShardedLossInterleavedAndRetainedGraphsEqualSingleProcess) {
  const std::vector<int64_t> rows{5, 7};
  const auto off = offsets_of(rows);
  const int64_t N = off.back();
  const auto o = VICRegLossOptions::reference();
  std::vector<at::Tensor> za, zb, grad_a, grad_b;
  std::vector<double> loss;
  for (uint64_t k = 0; k < 3; ++k) {  // three batches of the Gram path (2 (N - 1) <= d)
    za.push_back(spread_embeddings({N, 40}, torch::kFloat64, 51 + k));
    zb.push_back(spread_embeddings({N, 40}, torch::kFloat64, 61 + k));
    auto a = za[k].clone().requires_grad_(true), b = zb[k].clone().requires_grad_(true);
    const auto t = functional::vicreg_terms(a, b, o);
    const auto g = torch::autograd::grad({t.loss}, {a, b});
    loss.push_back(t.loss.item<double>());
    grad_a.push_back(g[0]);
    grad_b.push_back(g[1]);
  }
  // Batches in call order; the gradient of a rank's rows is the sum of the two ranks' output
  // gradients (1 each) times the single-process Jacobian.
  const std::vector<int> order{0, 1, 2, 0, 1, 2};
  std::vector<std::vector<std::string>> mismatches(2);
  const auto errors = run_ranks(2, 20s, [&](int r, distributed::Group& g) {
    auto opts = o;
    opts.process_group(std::shared_ptr<distributed::Group>(&g, [](auto*) {}));
    std::vector<at::Tensor> a, b, l;
    const auto call = [&](size_t i) {
      const int k = order[i];
      a.push_back(za[k].narrow(0, off[r], rows[r]).clone().requires_grad_(true));
      b.push_back(zb[k].narrow(0, off[r], rows[r]).clone().requires_grad_(true));
      l.push_back(functional::vicreg_terms(a.back(), b.back(), opts).loss);
    };
    const auto check = [&](size_t i) {
      const int k = order[i];
      const auto g2 = torch::autograd::grad({l[i]}, {a[i], b[i]});
      if (rel_error(l[i].item<double>(), loss[k]) > 1e-10 ||
          rel_error(g2[0], 2 * grad_a[k].narrow(0, off[r], rows[r])) > 1e-10 ||
          rel_error(g2[1], 2 * grad_b[k].narrow(0, off[r], rows[r])) > 1e-10) {
        mismatches[r].push_back(c10::str("call ", i, " (batch ", k, ")"));
      }
    };
    {  // no graph, both paths; the buffers made here must take the calls outside's writes
      c10::InferenceMode inference;
      for (bool sharded : {true, false}) {
        auto o2 = opts;
        o2.sharded(sharded);
        const auto t = functional::vicreg_terms(za[2].narrow(0, off[r], rows[r]),
                                                zb[2].narrow(0, off[r], rows[r]), o2);
        if (rel_error(t.loss.item<double>(), loss[2]) > 1e-10 || t.loss.requires_grad()) {
          mismatches[r].push_back(c10::str("under InferenceMode, sharded ", sharded));
        }
      }
    }
    call(0);
    call(1);  // while call 0's graph holds its buffers
    check(0);
    check(1);
    call(2);  // after both graphs released theirs
    check(2);
    call(3);
    check(3);
    call(4);
    const auto kept = torch::autograd::grad({l[4]}, {a[4], b[4]}, {}, /*retain_graph=*/true);
    if (rel_error(kept[0], 2 * grad_a[1].narrow(0, off[r], rows[r])) > 1e-10) {
      mismatches[r].push_back("retained backward");
    }
    call(5);  // while call 4's graph is retained
    check(5);
    check(4);  // the retained graph's second backward
  });
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(errors[r], "") << "rank " << r;
    EXPECT_TRUE(mismatches[r].empty()) << "rank " << r << ": " << c10::Join(", ", mismatches[r]);
  }
}

TEST(Distributed, ShardedLossNeedsTwoRowsOverAllRanksAndEqualRowShapesAndDtypes) {
  auto errors = run_ranks(2, 10s, [](int r, distributed::Group& g) {
    const auto z = torch::ones({r == 0 ? 1 : 0, 4}, torch::kFloat64);
    functional::vicreg_loss(z, z, VICRegLossOptions().process_group(
                                      std::shared_ptr<distributed::Group>(&g, [](auto*) {})));
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(errors[r].find("need at least 2 samples over all ranks (N >= 2)"),
              std::string::npos)
        << "rank " << r << ": " << errors[r];
  }
  // Rows of as many elements in another layout, then another dtype: every rank names both.
  errors = run_ranks(2, 10s, [](int r, distributed::Group& g) {
    const auto z = torch::ones(r == 0 ? std::vector<int64_t>{4, 2, 4} : std::vector<int64_t>{4, 4, 2},
                               torch::kFloat64);
    functional::vicreg_loss(z, z, VICRegLossOptions().process_group(
                                      std::shared_ptr<distributed::Group>(&g, [](auto*) {})));
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(errors[r].find("different feature shapes: rank 0 has rows of shape [2, 4], rank 1 "
                             "has [4, 2]"),
              std::string::npos)
        << "rank " << r << ": " << errors[r];
  }
  // NaN on one rank with check_finite, rows of no features: every rank raises, none waits.
  // (The inputs come from the main thread, as in every test here: these ranks are threads of
  // one process and would share LibTorch's default generator, which real ranks do not.)
  const std::vector<at::Tensor> inputs{spread_embeddings({5, 4}, torch::kFloat64, 40),
                                       spread_embeddings({5, 4}, torch::kFloat64, 41)};
  errors = run_ranks(2, 10s, [&](int r, distributed::Group& g) {
    auto z = inputs[r].clone();
    if (r == 1) z[2][1] = std::nan("");
    functional::vicreg_loss(z, z + 1, VICRegLossOptions().check_finite(true).process_group(
                                          std::shared_ptr<distributed::Group>(&g, [](auto*) {})));
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(errors[r].find("z_a or z_b contains NaN or Inf on 1 rank(s)"), std::string::npos)
        << "rank " << r << ": " << errors[r];
  }
  errors = run_ranks(2, 10s, [](int r, distributed::Group& g) {
    const auto z = torch::ones({4, 2, 0}, torch::kFloat64);
    functional::vicreg_loss(z, z, VICRegLossOptions().process_group(
                                      std::shared_ptr<distributed::Group>(&g, [](auto*) {})));
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(errors[r].find("got rows of an empty shape [2, 0] on every rank"), std::string::npos)
        << "rank " << r << ": " << errors[r];
  }
  // A second backward through the freed graph is refused (it would start a collective that
  // the other ranks never join); with retain_graph it runs on every rank.
  errors = run_ranks(2, 10s, [&](int r, distributed::Group& g) {
    const auto z = inputs[r].clone().requires_grad_(true);
    const auto o = VICRegLossOptions().process_group(
        std::shared_ptr<distributed::Group>(&g, [](auto*) {}));
    auto kept = functional::vicreg_loss(z, z * 2, o);
    kept.backward({}, /*retain_graph=*/true);
    kept.backward();
    auto loss = functional::vicreg_loss(z, z * 2, o);
    loss.backward();
    loss.backward();
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(errors[r].find("backward through the graph a second time"), std::string::npos)
        << "rank " << r << ": " << errors[r];
  }
  errors = run_ranks(2, 10s, [](int r, distributed::Group& g) {
    const auto z = torch::ones({4, 3}, r == 0 ? torch::kFloat64 : torch::kFloat32);
    functional::vicreg_loss(z, z, VICRegLossOptions().process_group(
                                      std::shared_ptr<distributed::Group>(&g, [](auto*) {})));
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(errors[r].find("different dtypes: rank 0 Double, rank 1 Float"), std::string::npos)
        << "rank " << r << ": " << errors[r];
  }
}

TEST(Distributed, DifferentFeatureDimsGiveAClearErrorOnEveryRank) {
  const auto errors = run_ranks(2, 10s, [](int r, distributed::Group& g) {
    // (Not torch::randn: these ranks are threads of one process, and would share its default
    // generator, which real ranks do not; only the shapes matter here.)
    const auto z = torch::ones({6, r == 0 ? 4 : 5});
    distributed::all_gather(z, g);
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(errors[r].find("different feature shapes"), std::string::npos)
        << "rank " << r << ": " << errors[r];
  }
}

TEST(Distributed, ARankThatExitsEarlyMakesTheOthersFailWithinTheTimeout) {
  // The gather, and the sharded loss (whose first collective is the row count exchange).
  const std::vector<std::function<void(distributed::Group&)>> calls{
      [](distributed::Group& g) { distributed::all_gather(torch::ones({4, 3}), g); },
      [](distributed::Group& g) {
        const auto z = torch::arange(12.0).reshape({4, 3});
        functional::vicreg_loss(z, z, VICRegLossOptions().process_group(
                                          std::shared_ptr<distributed::Group>(&g, [](auto*) {})));
      }};
  for (size_t i = 0; i < calls.size(); ++i) {
    SCOPED_TRACE(i == 0 ? "all_gather" : "sharded loss");
    const auto t0 = std::chrono::steady_clock::now();
    const auto errors = run_ranks(2, 2s, [&](int r, distributed::Group& g) {
      if (r == 1) return;  // leaves without joining the collective
      calls[i](g);
    });
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // Whether rank 1 left during the group's setup or before the collective, rank 0's error
    // is ours: it names the library, the rank and the timeout.
    EXPECT_EQ(errors[0].rfind("vicreg::distributed", 0), 0u) << errors[0];
    EXPECT_NE(errors[0].find("rank 0 of 2"), std::string::npos) << errors[0];
    EXPECT_NE(errors[0].find("2000 ms"), std::string::npos) << errors[0];
    // A collective that failed names the rank that never reported the failure.
    if (errors[0].find("setting up") == std::string::npos) {
      EXPECT_NE(errors[0].find("lost rank: 1 (no report within 2000 ms"), std::string::npos)
          << errors[0];
    }
    EXPECT_EQ(errors[1], "");
    EXPECT_LT(seconds, 30.0);
  }
}

// Buckets as DDP makes them: whatever the bucket size, the same bits as one all-reduce per
// tensor, where the sums are exact (integer-valued entries whose mean is representable).
TEST(Distributed, AllReduceMeanInBucketsEqualsOneTensorAtATimeToTheLastBit) {
  const std::vector<std::vector<int64_t>> shapes = {{3, 4}, {7}, {2, 2, 5}, {1}, {64}, {5, 3}};
  auto make = [&](int r) {
    std::vector<at::Tensor> t;
    for (size_t i = 0; i < shapes.size(); ++i) {
      const auto dtype = i == 2 ? torch::kFloat32 : torch::kFloat64;  // a dtype boundary
      int64_t numel = 1;
      for (auto s : shapes[i]) numel *= s;
      const auto values = torch::arange(numel, torch::kFloat64).reshape(shapes[i]) * 2;
      t.push_back((values + 4 * r + static_cast<double>(i)).to(dtype));
    }
    t.insert(t.begin() + 3, at::Tensor());  // undefined: skipped
    return t;
  };
  std::map<int64_t, std::vector<std::vector<at::Tensor>>> results;
  const std::vector<int64_t> bucket_sizes = {1, 100, 200, distributed::kDefaultBucketBytes};
  for (int64_t bytes : bucket_sizes) results[bytes].resize(2);
  const auto errors = run_ranks(2, 10s, [&](int r, distributed::Group& g) {
    for (int64_t bytes : bucket_sizes) {
      auto t = make(r);
      distributed::all_reduce_mean_(t, g, bytes);
      results[bytes][r] = t;
    }
  });
  ASSERT_EQ(errors[0], "");
  ASSERT_EQ(errors[1], "");
  // (rank 0's + rank 1's) / 2 = the entries of rank 0 plus 2, exactly.
  const auto expected = make(0);
  for (int64_t bytes : bucket_sizes) {
    for (int r = 0; r < 2; ++r) {
      const auto& got = results[bytes][r];
      ASSERT_EQ(got.size(), expected.size());
      for (size_t i = 0; i < got.size(); ++i) {
        SCOPED_TRACE("bucket bytes " + std::to_string(bytes) + ", rank " + std::to_string(r) +
                     ", tensor " + std::to_string(i));
        if (!expected[i].defined()) {
          EXPECT_FALSE(got[i].defined());
          continue;
        }
        EXPECT_EQ(got[i].scalar_type(), expected[i].scalar_type());
        EXPECT_TRUE(torch::equal(got[i], expected[i] + 2));
        EXPECT_TRUE(torch::equal(got[i], results[1][r][i]));  // one tensor per bucket
      }
    }
  }
}

TEST(Distributed, GlooSocketIfnameAndEndpointChooseTheInterface) {
  // Each rank joins one collective before it leaves: a rank that left right after its own
  // setup could close the connection while its peer is still setting up (a real error).
  const auto all_reduce = [](int, distributed::Group& g) {
    std::vector<at::Tensor> t{torch::ones({3})};
    distributed::all_reduce_mean_(t, g);
  };
  // GLOO_SOCKET_IFNAME, as torch.distributed reads it; "lo" exists on every Linux host.
  ::setenv("GLOO_SOCKET_IFNAME", "lo", 1);
  auto errors = run_ranks(2, 10s, all_reduce);
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  ::setenv("GLOO_SOCKET_IFNAME", "vicreg-none0", 1);
  errors = run_ranks(1, 5s, [](int, distributed::Group&) {});
  EXPECT_NE(errors[0].find("interface 'vicreg-none0' (GLOO_SOCKET_IFNAME=vicreg-none0)"),
            std::string::npos)
      << errors[0];
  ::setenv("GLOO_SOCKET_IFNAME", " , ", 1);
  errors = run_ranks(1, 5s, [](int, distributed::Group&) {});
  EXPECT_NE(errors[0].find("names no interface"), std::string::npos) << errors[0];
  ::unsetenv("GLOO_SOCKET_IFNAME");
  // An explicit endpoint: an address, interfaces, not both.
  errors = run_ranks(2, 10s, all_reduce, {{}, "127.0.0.1"});
  EXPECT_EQ(errors[0] + errors[1], "");
  errors = run_ranks(2, 10s, all_reduce, {{"lo"}, ""});
  EXPECT_EQ(errors[0] + errors[1], "");
  errors = run_ranks(1, 5s, [](int, distributed::Group&) {}, {{"lo"}, "127.0.0.1"});
  EXPECT_NE(errors[0].find("interfaces or an address, not both"), std::string::npos) << errors[0];
}

TEST(Distributed, AllReduceMeanAveragesOverRanks) {
  std::vector<at::Tensor> results(3);
  const auto errors = run_ranks(3, 10s, [&](int r, distributed::Group& g) {
    std::vector<at::Tensor> t{torch::full({4}, static_cast<double>(r), torch::kFloat64)};
    distributed::all_reduce_mean_(t, g);
    results[r] = t[0];
  });
  for (int r = 0; r < 3; ++r) {
    ASSERT_EQ(errors[r], "");
    EXPECT_TRUE(torch::allclose(results[r], torch::full({4}, 1.0, torch::kFloat64)));
  }
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

TEST(Distributed, InitFromEnvNamesWhatIsMissingAndBuildsAWorldOfOne) {
  ::unsetenv("RANK");
  ::setenv("WORLD_SIZE", "1", 1);
  EXPECT_THROW_WITH(distributed::init_from_env(5s), "environment variable RANK is not set");
  ::setenv("RANK", "x", 1);
  EXPECT_THROW_WITH(distributed::init_from_env(5s), "RANK must be an integer in [0, ");
  ::setenv("RANK", "0", 1);
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", std::to_string(free_port()).c_str(), 1);
  auto g = distributed::init_from_env(10s);
  EXPECT_EQ(g->size(), 1);
  EXPECT_EQ(g->rank(), 0);
  const auto za = spread_embeddings({8, 5}, torch::kFloat64, 33);
  const auto zb = spread_embeddings({8, 5}, torch::kFloat64, 34);
  EXPECT_EQ(functional::vicreg_loss(za, zb, VICRegLossOptions().process_group(g)).item<double>(),
            functional::vicreg_loss(za, zb).item<double>());
  for (const char* v : {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) ::unsetenv(v);
}

}  // namespace
}  // namespace vicreg::testing
