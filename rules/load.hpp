// Finding and reading rule folders: every *.rules and *.scores file of the
// configured folders, in name order (later files override earlier scores, so
// "50_local.scores" beats "10_default.scores"). No folder configured: the
// default set shipped with moat (rules/ in the source tree, or
// /usr/share/moat/rules when installed).
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "common/config.hpp"
#include "common/error.hpp"
#include "rules/rule_file.hpp"

namespace moat::rules {

struct Loaded {
  std::vector<Rule> rules;
  std::vector<std::pair<std::string, double>> scores;  // in file order; later wins
  std::vector<std::filesystem::path> files;            // what was read
};

// The folders to read: cfg.dirs, or the first default folder that exists.
std::vector<std::filesystem::path> rule_dirs(const config::Rules& cfg);

// Reads and parses; errors name FILE:LINE. A folder with no .rules file is an error.
Result<Loaded> load(const std::vector<std::filesystem::path>& dirs);

// Only the scores (filters/scores.cpp); unreadable or bad files give nothing
// here because the rules filter reports them when it is built.
std::vector<std::pair<std::string, double>> load_scores(const config::Rules& cfg);

}  // namespace moat::rules
