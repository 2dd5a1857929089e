// Rule and score file parser (see rule_file.hpp).
#include "rules/rule_file.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include "common/text.hpp"

namespace moat::rules {
namespace {

constexpr std::pair<std::string_view, RuleClass> kKinds[] = {
    {"header", RuleClass::Header}, {"body", RuleClass::Body}, {"rawbody", RuleClass::RawBody},
    {"uri", RuleClass::Uri},       {"full", RuleClass::Full}, {"meta", RuleClass::Meta}};

bool is_header_name(std::string_view s) {
  return !s.empty() && s.size() <= 128 && std::all_of(s.begin(), s.end(), [](char c) {
    return c > 32 && c < 127 && c != ':';
  });
}

// "/pattern/flags" -> pattern, flags. The closing slash is the last one, so
// slashes inside need no escaping (though \/ works too).
const char* split_regex(std::string_view s, Rule& r) {
  if (s.size() < 2 || s.front() != '/') return "expected /pattern/flags";
  auto close = s.rfind('/');
  if (close == 0) return "missing closing '/'";
  auto flags = s.substr(close + 1);
  r.pattern = std::string(s.substr(1, close - 1));
  if (r.pattern.empty()) return "empty pattern";
  for (char f : std::string_view("imsx"))
    if (flags.find(f) != std::string_view::npos) r.flags += f;
  if (r.flags.size() != flags.size()) return "flags must be a subset of \"imsx\"";
  return nullptr;
}

const char* parse_header(std::string_view s, Rule& r) {
  if (s.starts_with("exists:")) {
    auto name = trim_blanks(s.substr(7));
    if (!is_header_name(name)) return "expected exists:Header-Name";
    r.header = lower(name);
    r.exists = true;
    return nullptr;
  }
  std::string_view name = take_word(s);
  if (auto colon = name.find(':'); colon != std::string_view::npos) {
    r.modifier = std::string(name.substr(colon + 1));
    name = name.substr(0, colon);
    if (r.modifier != "raw" && r.modifier != "addr" && r.modifier != "name")
      return "header modifier must be :raw, :addr or :name";
  }
  if (!is_header_name(name)) return "expected a header name";
  r.header = lower(name);
  std::string_view op = take_word(s);
  if (op == "!~") r.negate = true;
  else if (op != "=~") return "expected =~ or !~ after the header name";
  return split_regex(s, r);
}

}  // namespace

std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::string_view take_word(std::string_view& s) {
  s = trim_blanks(s);
  auto end = s.find_first_of(" \t");
  auto w = s.substr(0, end);
  s = end == std::string_view::npos ? std::string_view{} : trim_blanks(s.substr(end));
  return w;
}

std::string_view class_name(RuleClass c) {
  for (auto [n, k] : kKinds)
    if (k == c) return n;
  return "?";
}

bool is_symbol(std::string_view s) {
  return !s.empty() && s.size() <= 128 && !std::isdigit(static_cast<unsigned char>(s[0])) &&
         std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || (c >= 'a' && c <= 'z');
         });
}

void Parser::error(const std::string& msg) {
  if (++error_count_ > 50) return;  // a binary file fed by mistake: enough is enough
  errors_ += file_ + ":" + std::to_string(lineno_) + ": " + msg + "\n";
}

void Parser::feed(std::string_view chunk) {
  while (!chunk.empty()) {
    auto nl = chunk.find('\n');
    auto piece = chunk.substr(0, nl);
    if (!overlong_) {
      if (partial_.size() + piece.size() > kMaxLine) {
        overlong_ = true;
        partial_.clear();
      } else {
        partial_.append(piece);
      }
    }
    if (nl == std::string_view::npos) return;
    ++lineno_;
    if (overlong_) error("line longer than " + std::to_string(kMaxLine) + " bytes");
    else line(partial_);
    partial_.clear();
    overlong_ = false;
    chunk.remove_prefix(nl + 1);
  }
}

void Parser::line(std::string_view text) {
  text = trim_blanks(text);
  if (text.empty() || text.front() == '#') return;
  if (text.find('\0') != std::string_view::npos) return error("NUL byte in line");
  std::string_view rest = text;
  std::string_view kind = take_word(rest);
  std::string_view symbol = take_word(rest);
  if (!is_symbol(symbol)) return error("expected a symbol (letters, digits, '_') after '" + std::string(kind) + "'");
  if (kind == "describe") {
    describes_.push_back({std::string(symbol), {lineno_, std::string(rest)}});
    return;
  }
  auto k = std::find_if(std::begin(kKinds), std::end(kKinds), [&](auto& p) { return p.first == kind; });
  if (k == std::end(kKinds)) return error("unknown rule type '" + std::string(kind.substr(0, 40)) + "'");
  if (rest.empty()) return error("rule " + std::string(symbol) + " has no pattern");
  if (rules_.size() >= kMaxRules) return error("more than " + std::to_string(kMaxRules) + " rules");
  Rule r;
  r.cls = k->second;
  r.symbol = std::string(symbol);
  r.file = file_;
  r.line = lineno_;
  const char* err = nullptr;
  if (r.cls == RuleClass::Meta) r.expr = std::string(rest);
  else if (r.cls == RuleClass::Header) err = parse_header(rest, r);
  else err = split_regex(rest, r);
  if (err) return error(std::string(kind) + " " + r.symbol + ": " + err);
  rules_.push_back(std::move(r));
}

Status Parser::finish() {
  if (!partial_.empty() || overlong_) {
    ++lineno_;
    if (overlong_) error("line longer than " + std::to_string(kMaxLine) + " bytes");
    else line(partial_);
    partial_.clear();
    overlong_ = false;
  }
  std::map<std::string_view, Rule*> by_symbol;
  for (auto& r : rules_) {
    auto [it, fresh] = by_symbol.emplace(r.symbol, &r);
    if (!fresh) {
      lineno_ = r.line;
      error("rule " + r.symbol + " already defined at line " + std::to_string(it->second->line));
    }
  }
  for (auto& [symbol, where] : describes_) {
    auto it = by_symbol.find(symbol);
    lineno_ = where.first;
    if (it == by_symbol.end()) error("describe for undefined rule " + symbol);
    else it->second->description = where.second;
  }
  describes_.clear();
  if (error_count_ > 50) errors_ += file_ + ": " + std::to_string(error_count_ - 50) + " more errors\n";
  if (errors_.empty()) return {};
  errors_.pop_back();
  return Error{Errc::Invalid, errors_};
}

Result<std::vector<Rule>> parse(std::string_view text, const std::string& file_name) {
  Parser p(file_name);
  p.feed(text);
  if (auto st = p.finish(); !st) return st.error();
  return std::move(p.rules());
}

std::string to_text(const Rule& r) {
  std::string out(class_name(r.cls));
  out += ' ' + r.symbol + ' ';
  if (r.cls == RuleClass::Meta) {
    out += r.expr;
  } else if (r.exists) {
    out += "exists:" + r.header;
  } else {
    if (r.cls == RuleClass::Header)
      out += r.header + (r.modifier.empty() ? "" : ":" + r.modifier) + (r.negate ? " !~ " : " =~ ");
    out += '/' + r.pattern + '/' + r.flags;
  }
  out += '\n';
  if (!r.description.empty()) out += "describe " + r.symbol + ' ' + r.description + '\n';
  return out;
}

std::string to_text(const std::vector<Rule>& rules) {
  std::string out;
  for (const auto& r : rules) out += to_text(r);
  return out;
}

Result<std::vector<std::pair<std::string, double>>> parse_scores(std::string_view text, const std::string& file_name) {
  std::vector<std::pair<std::string, double>> out;
  std::string errors;
  unsigned lineno = 0;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view l = trim_blanks(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++lineno;
    if (l.empty() || l.front() == '#') continue;
    std::string_view symbol = take_word(l);
    std::string_view num = take_word(l);
    double v = 0;
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
    if (!is_symbol(symbol) || num.empty() || ec != std::errc() || p != num.data() + num.size() || !l.empty() ||
        !std::isfinite(v) || std::abs(v) > 1e6) {
      if (errors.size() < 4096)
        errors += file_name + ":" + std::to_string(lineno) + ": expected SYMBOL SCORE (a number within ±1000000)\n";
      continue;
    }
    out.emplace_back(std::string(symbol), v);
  }
  if (!errors.empty()) {
    errors.pop_back();
    return Error{Errc::Invalid, errors};
  }
  return out;
}

}  // namespace moat::rules
