// The moat rule file format (docs/rules.md): one rule per line, a symbol and
// a pattern, descriptions on their own lines and scores in a separate file
// (the Rspamd split of detection from policy). Sans-I/O parser: feed() takes
// any chunks, finish() checks what only the whole file can tell.
//
//   header   SYMBOL  Subject =~ /pattern/flags     (also !~, Name:raw|addr|name, ALL)
//   header   SYMBOL  exists:Name
//   body     SYMBOL  /pattern/flags                 decoded text of the message
//   rawbody  SYMBOL  /pattern/flags                 body parts, transfer-decoded, HTML kept
//   uri      SYMBOL  /pattern/flags                 each URI found in the body
//   full     SYMBOL  /pattern/flags                 the whole message as received
//   meta     SYMBOL  expression                     &&, ||, !, + - *, > >= < <= == !=, ( )
//   describe SYMBOL  text
// Flags: i (caseless), s (dot matches newline), m (multi-line), x (extended).
// Symbols starting with "__" are sub-rules: usable in meta rules, never reported.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.hpp"

namespace moat::rules {

enum class RuleClass : std::uint8_t { Header, Body, RawBody, Uri, Full, Meta };
inline constexpr int kClassCount = 6;
std::string_view class_name(RuleClass c);

struct Rule {
  RuleClass cls = RuleClass::Body;
  std::string symbol;
  std::string pattern;      // regex source between the slashes (empty for meta and exists:)
  std::string flags;        // subset of "imsx", in that order
  std::string header;       // header rules: field name in lower case, or "all"
  std::string modifier;     // header rules: "", "raw", "addr" or "name"
  bool negate = false;      // header !~: hits when the header does not match (or is absent)
  bool exists = false;      // header exists:Name
  std::string expr;         // meta rules
  std::string description;
  std::string file;         // where it was defined, for errors
  unsigned line = 0;

  bool reported() const { return !symbol.starts_with("__"); }
};

// Limits: hostile or broken files must not exhaust memory.
inline constexpr std::size_t kMaxLine = 64 * 1024;
inline constexpr std::size_t kMaxRules = 100000;

class Parser {
 public:
  explicit Parser(std::string file_name) : file_(std::move(file_name)) {}
  void feed(std::string_view chunk);
  // Ends the file: checks describe lines name defined rules and symbols are
  // unique. Errors read "FILE:LINE: message", one per line.
  Status finish();
  std::vector<Rule>& rules() { return rules_; }

 private:
  void line(std::string_view text);
  void error(const std::string& msg);

  std::string file_;
  unsigned lineno_ = 0;
  std::string partial_;
  bool overlong_ = false;
  std::vector<Rule> rules_;
  std::vector<std::pair<std::string, std::pair<unsigned, std::string>>> describes_;
  std::string errors_;
  unsigned error_count_ = 0;
};

// Whole text in one go.
Result<std::vector<Rule>> parse(std::string_view text, const std::string& file_name);

// Writes rules back in the format parse() reads (the fuzz round trip, import).
std::string to_text(const std::vector<Rule>& rules);
std::string to_text(const Rule& rule);

// Score files: "SYMBOL SCORE" per line, '#' comments. Errors as above.
Result<std::vector<std::pair<std::string, double>>> parse_scores(std::string_view text, const std::string& file_name);

bool is_symbol(std::string_view s);

// Line helpers shared with the SpamAssassin import: blanks (space, tab, a
// trailing CR) trimmed; the first blank-separated word split off `s`.
std::string_view trim_blanks(std::string_view s);
std::string_view take_word(std::string_view& s);

}  // namespace moat::rules
