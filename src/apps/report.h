#pragma once
// vicreg_train's report of a run's results (results.h): the tables, the verdict, the spread
// over seeds, table.md, std_sorted.csv and results.json, and the pictures (plots.h). Compiles
// without the LibTorch headers. src/apps/README.md describes every output.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "results.h"
#include "train_config.h"

namespace vicreg::apps {

/// The markdown results table, then the line that defines its abbreviations.
std::string results_table(const std::vector<ResultRow>& rows, int64_t knn_k);
/// The few-label table (mean ± std over the draws), then its legend; "" when there is none.
std::string few_label_table(const std::vector<ResultRow>& rows);
/// The one-line verdict: the trained encoder's margins over the random init and the pixels at
/// each k (few-label linear probe means) and with all labels.
std::string verdict_line(const std::vector<ResultRow>& rows);
/// The spread over the runs of --seeds (runs[i]: the rows of seeds[i]): per k (and all labels),
/// the trained encoder's linear-probe margin over the random init and over the pixels in each
/// run, with mean, min and max; then one line for 10 labels per class (or the first k).
std::string seeds_summary(const std::vector<uint64_t>& seeds,
                          const std::vector<std::vector<ResultRow>>& runs);
/// The "loss cost:" line: the fused forward + backward's time, its share of a training step,
/// and autograd's time for the same batch.
std::string loss_cost_line(const LossCost& l);
/// The COLLAPSE: line for the trained encoder's row, or "" when its embeddings are spread or
/// the run trained too few steps to tell (fewer than kCollapseMinSteps).
constexpr int64_t kCollapseMinSteps = 100;
std::string collapse_warning(const ResultRow& trained, const RunFacts& f);

/// std_sorted.csv: sorted per-dimension std of rows[0] (trained) and rows[1] (random init).
void write_std_sorted_csv(const std::filesystem::path& file, const std::vector<ResultRow>& rows);
/// results.json (README.md lists its fields).
void write_results_json(const std::filesystem::path& file, const TrainConfig& c,
                        const RunFacts& f, const std::vector<ResultRow>& rows);
/// Prints the table and summary, writes table.md, std_sorted.csv, results.json and (when the
/// run trained) the plots into `out`.
void report_results(const std::filesystem::path& out, const TrainConfig& c, const RunFacts& f,
                    const std::vector<ResultRow>& rows);

}  // namespace vicreg::apps
