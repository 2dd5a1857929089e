// Rule folder loading (see load.hpp).
#include "rules/load.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace moat::rules {
namespace fs = std::filesystem;

namespace {

Result<std::string> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return Error{Errc::IoError, p.string() + ": cannot open"};
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return Error{Errc::IoError, p.string() + ": read error"};
  return buf.str();
}

std::vector<fs::path> files_in(const std::vector<fs::path>& dirs, std::string_view ext) {
  std::vector<fs::path> out;
  for (const auto& d : dirs) {
    std::vector<fs::path> here;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(d, ec))
      if (e.path().extension() == ext && e.is_regular_file(ec)) here.push_back(e.path());
    std::sort(here.begin(), here.end());
    out.insert(out.end(), here.begin(), here.end());
  }
  return out;
}

}  // namespace

std::vector<fs::path> rule_dirs(const config::Rules& cfg) {
  if (!cfg.dirs.empty()) return cfg.dirs;
  // Beside the binary first: build-*/bin/moatd in a source tree, then the
  // installed layout.
  std::vector<fs::path> candidates;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path().parent_path().parent_path() / "rules");
    candidates.push_back(exe.parent_path().parent_path() / "share" / "moat" / "rules");
  }
  candidates.emplace_back("/usr/share/moat/rules");
  for (const auto& c : candidates)
    if (fs::exists(c / "default.rules", ec)) return {c.lexically_normal()};
  return {};
}

Result<Loaded> load(const std::vector<fs::path>& dirs) {
  if (dirs.empty()) return Error{Errc::Invalid, "rules: no rule folder configured and no default rule set found"};
  Loaded out;
  std::string errors;
  for (const auto& d : dirs) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) errors += d.string() + ": not a folder\n";
  }
  for (const auto& f : files_in(dirs, ".rules")) {
    auto text = read_file(f);
    if (!text) {
      errors += text.error().detail + "\n";
      continue;
    }
    auto rules = parse(*text, f.string());
    if (!rules) {
      errors += rules.error().detail + "\n";
      continue;
    }
    out.files.push_back(f);
    for (auto& r : *rules) out.rules.push_back(std::move(r));
  }
  for (const auto& f : files_in(dirs, ".scores")) {
    auto text = read_file(f);
    if (!text) {
      errors += text.error().detail + "\n";
      continue;
    }
    auto scores = parse_scores(*text, f.string());
    if (!scores) {
      errors += scores.error().detail + "\n";
      continue;
    }
    out.files.push_back(f);
    for (auto& s : *scores) out.scores.push_back(std::move(s));
  }
  // The same symbol in two files is a mistake: which one runs would depend on names.
  std::vector<std::pair<std::string_view, const Rule*>> seen;
  for (const auto& r : out.rules) seen.emplace_back(r.symbol, &r);
  std::sort(seen.begin(), seen.end(), [](auto& a, auto& b) { return a.first < b.first; });
  for (std::size_t i = 1; i < seen.size(); ++i)
    if (seen[i].first == seen[i - 1].first)
      errors += seen[i].second->file + ":" + std::to_string(seen[i].second->line) + ": rule " + std::string(seen[i].first) +
                " already defined in " + seen[i - 1].second->file + "\n";
  if (errors.empty() && out.rules.empty()) errors = "rules: no .rules files in the rule folders\n";
  if (!errors.empty()) {
    errors.pop_back();
    return Error{Errc::Invalid, errors};
  }
  return out;
}

std::vector<std::pair<std::string, double>> load_scores(const config::Rules& cfg) {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& f : files_in(rule_dirs(cfg), ".scores")) {
    auto text = read_file(f);
    if (!text) continue;
    auto scores = parse_scores(*text, f.string());
    if (!scores) continue;
    for (auto& s : *scores) out.push_back(std::move(s));
  }
  return out;
}

}  // namespace moat::rules
