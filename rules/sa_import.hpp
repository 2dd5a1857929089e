// Converts SpamAssassin rule files (*.cf, Mail::SpamAssassin::Conf syntax)
// into moat rule and score files, so admins keep the rules they know and
// moat can be compared with SpamAssassin on the same rules. What cannot be
// converted is listed with the reason: eval: rules (Perl code), mimeheader,
// pseudo-headers (ToCc, X-Spam-Relays-*, ...), [if-unset:], patterns PCRE2
// rejects, and meta rules that need any of those.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "rules/rule_file.hpp"

namespace moat::rules {

struct SaImport {
  std::vector<Rule> rules;                               // converted, parseable by rules::parse
  std::vector<std::pair<std::string, double>> scores;    // of the chosen score set
  std::vector<std::string> skipped;                      // "FILE:LINE: SYMBOL: reason"
  std::map<std::string, std::size_t> converted_by_type;  // "body" -> 700
  std::map<std::string, std::size_t> skipped_by_reason;  // "eval: rule" -> 400
  std::size_t files = 0;
};

// SpamAssassin's score sets: a `score` line holds one value for all four or
// one per set. Set 0 (no Bayes, no network tests) fits moat's default
// pipeline, where the bayes filter is opt-in; set 2 (Bayes on, network off)
// fits one with the bayes filter, as SpamAssassin itself switches to it when
// its Bayes is active: it lowered set 2's rule scores because Bayes carries
// part of the same evidence. Sets 1 and 3 assume network tests that
// import-sa does not convert.
inline constexpr int kDefaultScoreSet = 0;

// Feeds one .cf file's text; call for each file in name order, then finish().
class SaImporter {
 public:
  explicit SaImporter(int score_set = kDefaultScoreSet) : score_set_(score_set) {}
  void add_file(std::string_view text, const std::string& name);
  SaImport finish();

 private:
  void line(std::string_view l, const std::string& file, unsigned lineno);
  void skip(const std::string& where, const std::string& symbol, const std::string& reason);

  std::vector<Rule> rules_;
  std::map<std::string, std::string> describe_;
  std::map<std::string, double> scores_;
  std::vector<std::string> score_order_;
  std::map<std::string, std::string> tags_, pre_, post_, inter_;
  std::vector<std::string> replace_rules_;
  std::string start_ = "<", end_ = ">";
  int score_set_;
  SaImport out_;
};

// All *.cf files of a folder, in name order; score_set is 0-3.
Result<SaImport> import_sa_dir(const std::filesystem::path& dir, int score_set = kDefaultScoreSet);

}  // namespace moat::rules
