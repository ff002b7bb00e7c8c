#pragma once
// vicreg_train's pictures: the data files they are drawn from and the gnuplot script, filled
// in from the template src/apps/plots.gp. Compiles without the LibTorch headers.

#include <filesystem>
#include <string>
#include <vector>

#include "results.h"

namespace vicreg::apps {

/// curve.csv, pca.csv and few_label.csv, for the parts of the run that exist; returns the
/// names of the files written.
std::vector<std::string> write_plot_data(const std::filesystem::path& out, const RunFacts& f,
                                         const std::vector<ResultRow>& rows);

/// plots.gp and, through gnuplot, loss.png, std.png, and learning_curve.png, few_label.png and
/// pca.png when the run has their data (write_plot_data and the report's CSV files); returns
/// the names of the pictures. Without gnuplot: a note and none.
std::vector<std::string> write_plots(const std::filesystem::path& out,
                                     const std::vector<std::string>& compare, const RunFacts& f,
                                     const std::vector<ResultRow>& rows);

}  // namespace vicreg::apps
