// SpamAssassin rule import (see sa_import.hpp). The syntax followed is that
// of Mail::SpamAssassin::Conf (header, body, rawbody, uri, full, meta,
// describe, score, replace_tag/pre/post/inter/rules).
#include "rules/sa_import.hpp"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

#include "common/text.hpp"
#include "rules/ruleset.hpp"

namespace moat::rules {
namespace fs = std::filesystem;

namespace {

// SpamAssassin: '#' starts a comment unless escaped as "\#".
std::string_view strip_comment(std::string_view l) {
  for (std::size_t i = 0; i < l.size(); ++i) {
    if (l[i] == '\\') {
      ++i;
      continue;
    }
    if (l[i] == '#') return l.substr(0, i);
  }
  return l;
}

// Perl m// in its forms: /re/flags, m{re}flags, m!re!flags, m#re#flags.
// Returns false when it is not one of them or has flags we cannot carry.
bool perl_regex(std::string_view s, std::string& pattern, std::string& flags, std::string& why) {
  s = trim_blanks(s);
  char open = 0, close = 0;
  if (s.starts_with("/")) {
    open = close = '/';
    s.remove_prefix(1);
  } else if (s.size() > 2 && s[0] == 'm') {
    open = s[1];
    close = open == '{' ? '}' : open == '(' ? ')' : open == '[' ? ']' : open == '<' ? '>' : open;
    s.remove_prefix(2);
  } else {
    why = "not a regex";
    return false;
  }
  (void)open;
  auto end = s.rfind(close);
  if (end == std::string_view::npos) {
    why = "unterminated regex";
    return false;
  }
  pattern = std::string(s.substr(0, end));
  std::string f;
  for (char c : s.substr(end + 1)) {
    if (c == 'i' || c == 's' || c == 'm' || c == 'x') {
      if (f.find(c) == std::string::npos) f += c;
    } else if (c == 'g' || c == 'o') {
      // no effect on whether it matches
    } else {
      why = std::string("regex flag '") + c + "'";
      return false;
    }
  }
  for (char c : std::string_view("imsx"))
    if (f.find(c) != std::string::npos) flags += c;
  if (pattern.empty()) {
    why = "empty regex";
    return false;
  }
  // Perl needs "\/" inside /.../; PCRE2 and Hyperscan read it as '/'. Our
  // format ends the pattern at the last '/', so nothing else to escape.
  return true;
}

bool pseudo_header(std::string_view name) {
  static constexpr std::string_view kPseudo[] = {"ToCc", "EnvelopeFrom", "MESSAGEID", "ALL-TRUSTED", "ALL-UNTRUSTED",
                                                 "ALL-INTERNAL", "ALL-EXTERNAL", "X-Spam-Relays-Trusted",
                                                 "X-Spam-Relays-Untrusted", "X-Spam-Relays-Internal",
                                                 "X-Spam-Relays-External", "X-Spam-Relays-Untrusted"};
  return std::find(std::begin(kPseudo), std::end(kPseudo), name) != std::end(kPseudo);
}

}  // namespace

void SaImporter::skip(const std::string& where, const std::string& symbol, const std::string& reason) {
  out_.skipped.push_back(where + ": " + symbol + ": " + reason);
  ++out_.skipped_by_reason[reason.substr(0, reason.find(" (")).substr(0, 60)];
}

void SaImporter::line(std::string_view l, const std::string& file, unsigned lineno) {
  l = trim_blanks(strip_comment(l));
  if (l.empty()) return;
  const std::string where = file + ":" + std::to_string(lineno);
  std::string_view rest = l;
  std::string kind(take_word(rest));
  if (kind == "lang") return;  // translations of describe lines
  if (kind == "describe") {
    std::string sym(take_word(rest));
    describe_[sym] = std::string(rest);
    return;
  }
  if (kind == "score") {
    std::string sym(take_word(rest));
    std::string_view values[4];
    int n = 0;
    for (std::string_view w = take_word(rest); n < 4 && !w.empty() && w[0] != '#'; w = take_word(rest)) values[n++] = w;
    std::string_view chosen = n == 4 ? values[score_set_] : values[0];  // one value: every set
    double v = 0;
    auto [p, ec] = std::from_chars(chosen.data(), chosen.data() + chosen.size(), v);
    if (n > 0 && ec == std::errc() && p == chosen.data() + chosen.size() && is_symbol(sym)) {
      if (!scores_.count(sym)) score_order_.push_back(sym);
      scores_[sym] = v;
    }
    return;
  }
  if (kind == "replace_tag" || kind == "replace_pre" || kind == "replace_post" || kind == "replace_inter") {
    std::string name(take_word(rest));
    auto& map = kind == "replace_tag" ? tags_ : kind == "replace_pre" ? pre_ : kind == "replace_post" ? post_ : inter_;
    map[name] = std::string(rest);
    return;
  }
  if (kind == "replace_rules") {
    while (!rest.empty()) replace_rules_.emplace_back(take_word(rest));
    return;
  }
  if (kind == "replace_start") { start_ = std::string(take_word(rest)); return; }
  if (kind == "replace_end") { end_ = std::string(take_word(rest)); return; }
  static const std::set<std::string> kRuleKinds{"header", "body", "rawbody", "uri", "full", "meta", "mimeheader"};
  if (!kRuleKinds.count(kind)) return;  // tflags, priority, if/endif, plugin settings...
  std::string sym(take_word(rest));
  if (!is_symbol(sym)) return skip(where, sym, "symbol not usable");
  if (kind == "mimeheader") return skip(where, sym, "mimeheader rule");
  if (rest.starts_with("eval:")) return skip(where, sym, "eval: rule (Perl code)");
  Rule r;
  r.symbol = sym;
  r.file = file;
  r.line = lineno;
  std::string why;
  if (kind == "meta") {
    r.cls = RuleClass::Meta;
    r.expr = std::string(rest);
  } else if (kind == "header") {
    r.cls = RuleClass::Header;
    if (rest.starts_with("exists:")) {
      std::string name(trim_blanks(rest.substr(7)));
      if (pseudo_header(name)) return skip(where, sym, "pseudo-header " + name);
      r.exists = true;
      r.header = name;
    } else {
      if (rest.find("[if-unset:") != std::string_view::npos) return skip(where, sym, "[if-unset:] default");
      std::string name(take_word(rest));
      auto colon = name.find(':');
      if (colon != std::string::npos) {
        r.modifier = name.substr(colon + 1);
        name = name.substr(0, colon);
        if (r.modifier != "raw" && r.modifier != "addr" && r.modifier != "name")
          return skip(where, sym, "header modifier :" + r.modifier);
      }
      if (pseudo_header(name)) return skip(where, sym, "pseudo-header " + name);
      std::string op(take_word(rest));
      if (op != "=~" && op != "!~") return skip(where, sym, "header test '" + op.substr(0, 20) + "'");
      r.negate = op == "!~";
      r.header = name;
      if (!perl_regex(rest, r.pattern, r.flags, why)) return skip(where, sym, why);
    }
    r.header = lower(r.header);
  } else {
    r.cls = kind == "body" ? RuleClass::Body : kind == "rawbody" ? RuleClass::RawBody
            : kind == "uri" ? RuleClass::Uri : RuleClass::Full;
    if (!perl_regex(rest, r.pattern, r.flags, why)) return skip(where, sym, why);
  }
  // A later definition replaces an earlier one (SpamAssassin does the same).
  auto it = std::find_if(rules_.begin(), rules_.end(), [&](const Rule& x) { return x.symbol == sym; });
  if (it != rules_.end()) *it = std::move(r);
  else rules_.push_back(std::move(r));
}

void SaImporter::add_file(std::string_view text, const std::string& name) {
  ++out_.files;
  unsigned n = 0;
  while (!text.empty()) {
    auto nl = text.find('\n');
    ++n;
    line(text.substr(0, nl), name, n);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
  }
}

SaImport SaImporter::finish() {
  // replace_rules: <inter X>, <pre X>, <post X> pick the joiners; each <TAG>
  // becomes pre + tag + post, with inter between consecutive tags
  // (Mail::SpamAssassin::Conf::Parser, replace_tags).
  std::set<std::string> replace(replace_rules_.begin(), replace_rules_.end());
  for (auto& r : rules_) {
    if (!replace.count(r.symbol) || r.pattern.empty()) continue;
    std::string pre, post, inter;
    auto directive = [&](const std::string& name, std::map<std::string, std::string>& map, std::string& out) {
      std::string open = start_ + name + " ";
      std::size_t pos;
      while ((pos = r.pattern.find(open)) != std::string::npos) {
        auto close = r.pattern.find(end_, pos);
        if (close == std::string::npos) break;
        out = map[r.pattern.substr(pos + open.size(), close - pos - open.size())];
        r.pattern.erase(pos, close + end_.size() - pos);
      }
    };
    directive("pre", pre_, pre);
    directive("post", post_, post);
    directive("inter", inter_, inter);
    std::string out;
    bool last_tag = false;
    for (std::size_t i = 0; i < r.pattern.size();) {
      if (r.pattern.compare(i, start_.size(), start_) == 0) {
        auto close = r.pattern.find(end_, i + start_.size());
        if (close != std::string::npos) {
          auto tag = r.pattern.substr(i + start_.size(), close - i - start_.size());
          if (auto t = tags_.find(tag); t != tags_.end()) {
            if (last_tag) out += inter;
            out += pre + t->second + post;
            i = close + end_.size();
            last_tag = true;
            continue;
          }
        }
      }
      out += r.pattern[i++];
      last_tag = false;
    }
    r.pattern = std::move(out);
  }
  for (auto& r : rules_)
    if (auto d = describe_.find(r.symbol); d != describe_.end()) {
      r.description = d->second;
      std::replace(r.description.begin(), r.description.end(), '\n', ' ');
    }

  // Patterns PCRE2 rejects, then meta rules that need a rule we do not have
  // (repeated: metas of metas).
  std::vector<Rule> ok;
  for (auto& r : rules_) {
    if (r.cls != RuleClass::Meta && !r.exists) {
      if (auto err = check_pattern(r)) {
        skip(r.file + ":" + std::to_string(r.line), r.symbol, "PCRE2 rejects the pattern (" + *err + ")");
        continue;
      }
    }
    ok.push_back(std::move(r));
  }
  for (bool again = true; again;) {
    again = false;
    std::set<std::string, std::less<>> known;
    for (const auto& r : ok) known.insert(r.symbol);
    for (std::size_t i = 0; i < ok.size(); ++i) {
      if (ok[i].cls != RuleClass::Meta) continue;
      std::string missing;
      auto m = MetaExpr::compile(ok[i].expr, [&](std::string_view s) -> std::optional<std::uint32_t> {
        if (known.count(s)) return 0u;
        if (missing.empty()) missing = std::string(s);
        return std::nullopt;
      });
      if (m) continue;
      skip(ok[i].file + ":" + std::to_string(ok[i].line), ok[i].symbol,
           missing.empty() ? "meta expression (" + m.error().detail + ")" : "meta needs unconverted rule (" + missing + ")");
      ok.erase(ok.begin() + static_cast<std::ptrdiff_t>(i));
      again = true;
      break;
    }
  }
  for (const auto& r : ok) ++out_.converted_by_type[std::string(class_name(r.cls))];
  std::set<std::string> have;
  for (const auto& r : ok) have.insert(r.symbol);
  for (const auto& s : score_order_)
    if (have.count(s)) out_.scores.emplace_back(s, scores_[s]);
  out_.rules = std::move(ok);
  return std::move(out_);
}

Result<SaImport> import_sa_dir(const fs::path& dir, int score_set) {
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".cf") files.push_back(e.path());
  if (ec) return Error{Errc::IoError, dir.string() + ": " + ec.message()};
  if (files.empty()) return Error{Errc::NotFound, dir.string() + ": no .cf files"};
  std::sort(files.begin(), files.end());
  SaImporter imp(score_set);
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::ostringstream buf;
    buf << in.rdbuf();
    imp.add_file(buf.str(), f.filename().string());
  }
  return imp.finish();
}

}  // namespace moat::rules
