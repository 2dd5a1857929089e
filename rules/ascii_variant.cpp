// ASCII variant of a PCRE2 pattern (see ascii_variant.hpp). A recursive
// descent over the pattern text: each alternative that needs a byte >= 0x80
// is dropped; an atom that can never match is dropped when its quantifier
// allows zero repeats and makes its sequence impossible otherwise; a negative
// lookaround that can never match always holds and is dropped. Anything not
// understood gives up (Kind::Same), which is always correct.
#include "rules/ascii_variant.hpp"

#include <cctype>
#include <optional>
#include <vector>

#include "rules/pattern_escape.hpp"

namespace moat::rules {
namespace {

struct Part {
  std::string text;
  bool possible = true;
};

struct GiveUp {};

// One atom of the top level, with its quantifier (search_form).
struct TopAtom {
  std::string text;  // atom and quantifier
  bool optional;     // may match nothing and gives that back (not possessive)
};

class Reducer {
 public:
  // drop_high = false: parse only, keep every alternative (search_form).
  Reducer(std::string_view p, bool drop_high) : p_(p), drop_high_(drop_high) {}

  // The top level as a list of atoms, or GiveUp when it has alternatives.
  std::vector<TopAtom> top_atoms() {
    std::vector<TopAtom> out;
    while (!at_end()) {
      if (peek() == '|' || peek() == ')') throw GiveUp{};
      bool possible = true, negative_look = false;
      std::string text = atom(0, possible, negative_look);
      const std::size_t qstart = i_;
      unsigned min = quantifier();
      const bool possessive = i_ > qstart && p_[i_ - 1] == '+' && i_ - qstart > 1;
      out.push_back(TopAtom{text + std::string(p_.substr(qstart, i_ - qstart)), min == 0 && !possessive});
    }
    return out;
  }

  Part run() {
    Part r = alternation(0);
    if (i_ != p_.size()) throw GiveUp{};  // an unbalanced ')'
    return r;
  }

 private:
  bool at_end() const { return i_ >= p_.size(); }
  char peek(std::size_t ahead = 0) const { return i_ + ahead < p_.size() ? p_[i_ + ahead] : '\0'; }
  bool high(unsigned v) const { return drop_high_ && v >= 0x80; }

  // seq ('|' seq)*: the alternatives that can match.
  Part alternation(unsigned depth) {
    if (depth > 200) throw GiveUp{};
    Part out;
    out.possible = false;
    bool first = true;
    for (;;) {
      Part s = sequence(depth);
      if (s.possible) {
        if (!first) out.text += '|';
        out.text += s.text;
        out.possible = true;
        first = false;
      }
      if (peek() != '|') break;
      ++i_;
    }
    return out;
  }

  Part sequence(unsigned depth) {
    Part out;
    while (!at_end() && peek() != '|' && peek() != ')') {
      bool possible = true, negative_look = false;
      std::string text = atom(depth, possible, negative_look);
      const std::size_t qstart = i_;
      unsigned min = quantifier();
      std::string q(p_.substr(qstart, i_ - qstart));
      if (negative_look) {
        // (?!X) where X never matches: always true, nothing to keep.
        if (!possible) continue;
      } else if (!possible) {
        if (min == 0) continue;
        out.possible = false;
      }
      out.text += text + q;
    }
    return out;
  }

  // Returns the minimum repeat of a quantifier at i_ (1 without one) and
  // moves past it.
  unsigned quantifier() {
    unsigned min = 1;
    char c = peek();
    if (c == '?' || c == '*') {
      min = 0;
      ++i_;
    } else if (c == '+') {
      ++i_;
    } else if (c == '{') {
      std::size_t j = i_ + 1;
      unsigned lo = 0;
      bool digits = false;
      while (j < p_.size() && std::isdigit(static_cast<unsigned char>(p_[j]))) {
        lo = std::min(lo * 10 + unsigned(p_[j] - '0'), 100000u);
        ++j;
        digits = true;
      }
      if (!digits) return 1;  // "{" is a literal here (PCRE2 10.42)
      if (j < p_.size() && p_[j] == ',') {
        ++j;
        while (j < p_.size() && std::isdigit(static_cast<unsigned char>(p_[j]))) ++j;
      }
      if (j >= p_.size() || p_[j] != '}') return 1;
      i_ = j + 1;
      min = lo;
    } else {
      return 1;
    }
    if (peek() == '?' || peek() == '+') ++i_;  // lazy / possessive
    return min;
  }

  std::string atom(unsigned depth, bool& possible, bool& negative_look) {
    const std::size_t start = i_;
    const char c = peek();
    if (c == '(') return group(depth, possible, negative_look);
    if (c == '[') {
      possible = char_class();
      return std::string(p_.substr(start, i_ - start));
    }
    if (c == '\\') {
      possible = escape(false);
      return std::string(p_.substr(start, i_ - start));
    }
    ++i_;
    possible = !high(static_cast<unsigned char>(c));
    return std::string(1, c);
  }

  std::string group(unsigned depth, bool& possible, bool& negative_look) {
    const std::size_t start = i_;
    ++i_;  // '('
    std::string open = "(";
    bool positive_look = false;
    if (peek() == '*') throw GiveUp{};  // (*VERB)
    if (peek() == '?') {
      const std::string_view rest = p_.substr(i_);
      if (rest.starts_with("?:") || rest.starts_with("?>")) {
        open += rest.substr(0, 2);
        i_ += 2;
      } else if (rest.starts_with("?=") || rest.starts_with("?<=")) {
        const std::size_t n = rest[1] == '=' ? 2 : 3;
        open += rest.substr(0, n);
        i_ += n;
        positive_look = true;
      } else if (rest.starts_with("?!") || rest.starts_with("?<!")) {
        const std::size_t n = rest[1] == '!' ? 2 : 3;
        open += rest.substr(0, n);
        i_ += n;
        negative_look = true;
      } else if (rest.starts_with("?#")) {
        auto close = p_.find(')', i_);
        if (close == std::string_view::npos) throw GiveUp{};
        i_ = close + 1;
        // A comment: dropped like a lookaround that always holds.
        negative_look = true;
        possible = false;
        return {};
      } else if (rest.starts_with("?P<") || (rest.starts_with("?<") && rest.size() > 2 && std::isalpha(static_cast<unsigned char>(rest[2])))) {
        auto gt = p_.find('>', i_);
        if (gt == std::string_view::npos) throw GiveUp{};
        open += p_.substr(i_, gt + 1 - i_);
        i_ = gt + 1;
      } else {
        // Inline options "(?i)", "(?-i)", "(?i:...)"; x would change how
        // the rest reads, anything else ((?|, (?(, (?R, (?1, (?&, (?P=) we
        // leave alone.
        std::size_t j = i_ + 1;
        while (j < p_.size() && (p_[j] == 'i' || p_[j] == 'm' || p_[j] == 's' || p_[j] == '-')) ++j;
        if (j == i_ + 1 || j >= p_.size()) throw GiveUp{};
        if (p_[j] == ')') {
          i_ = j + 1;
          possible = true;
          return std::string(p_.substr(start, i_ - start));
        }
        if (p_[j] != ':') throw GiveUp{};
        open += p_.substr(i_, j + 1 - i_);
        i_ = j + 1;
      }
    }
    Part body = alternation(depth + 1);
    if (peek() != ')') throw GiveUp{};
    ++i_;
    // A lookahead or lookbehind that cannot match: a positive one fails its
    // sequence, a negative one always holds (the caller drops both cases).
    (void)positive_look;
    possible = body.possible;
    return open + body.text + ")";
  }

  // [...]: true when it can match some ASCII byte. Negated classes are
  // assumed to (they would have to list all 128 to be impossible).
  bool char_class() {
    ++i_;  // '['
    bool negated = false, ascii = false;
    if (peek() == '^') {
      negated = true;
      ++i_;
    }
    bool first = true;
    for (;;) {
      if (at_end()) throw GiveUp{};
      char c = peek();
      if (c == ']' && !first) {
        ++i_;
        break;
      }
      first = false;
      if (c == '[' && peek(1) == ':') {  // [:alpha:]
        auto close = p_.find(":]", i_ + 2);
        if (close == std::string_view::npos) throw GiveUp{};
        i_ = close + 2;
        ascii = true;
        continue;
      }
      std::optional<unsigned> lo = class_member(ascii);
      if (lo && peek() == '-' && peek(1) != ']' && peek(1) != '\0') {
        ++i_;
        std::optional<unsigned> hi = class_member(ascii);
        if (!hi) throw GiveUp{};  // a range ending in \d: PCRE2 error anyway
        if (*lo < 0x80) ascii = true;
        continue;
      }
      if (lo && *lo < 0x80) ascii = true;
    }
    return negated || ascii || !drop_high_;
  }

  // One class member: its byte, or nullopt for a set like \d (which marks
  // `ascii`).
  std::optional<unsigned> class_member(bool& ascii) {
    char c = peek();
    if (c != '\\') {
      ++i_;
      return static_cast<unsigned char>(c);
    }
    ++i_;
    char e = peek();
    if (std::string_view("dwshvDWSHV").find(e) != std::string_view::npos && e != '\0') {
      ++i_;
      ascii = true;
      return std::nullopt;
    }
    if (e == 'b') {
      ++i_;
      return 8;
    }
    return escaped_byte();
  }

  // After a backslash (rules/pattern_escape.hpp).
  unsigned escaped_byte() {
    auto b = rules::escaped_byte(p_, i_);
    if (!b) throw GiveUp{};
    return *b;
  }

  // An escape outside a class: true when it can match in ASCII.
  bool escape(bool) {
    ++i_;  // '\\'
    char e = peek();
    if (std::string_view("dwshvDWSHVbBAzZG").find(e) != std::string_view::npos && e != '\0') {
      ++i_;
      return true;
    }
    return !high(escaped_byte());
  }

  std::string_view p_;
  bool drop_high_;
  std::size_t i_ = 0;
};

}  // namespace

AsciiVariant ascii_variant(std::string_view pattern, std::string_view flags) {
  AsciiVariant out;
  if (flags.find('x') != std::string_view::npos) return out;
  try {
    Part r = Reducer(pattern, true).run();
    if (!r.possible) {
      out.kind = AsciiVariant::Kind::Never;
    } else if (r.text != pattern) {
      out.kind = AsciiVariant::Kind::Reduced;
      out.pattern = std::move(r.text);
    }
  } catch (const GiveUp&) {
    out = {};
  }
  return out;
}

std::string search_form(std::string_view pattern, std::string_view flags) {
  std::string out(pattern);
  if (flags.find('x') != std::string_view::npos) return out;
  try {
    auto atoms = Reducer(pattern, false).top_atoms();
    std::size_t first = 0, last = atoms.size();
    while (first < last && atoms[first].optional) ++first;
    while (last > first && atoms[last - 1].optional) --last;
    // All optional: the pattern matches the empty string anywhere; leave
    // it as written (the engines treat such patterns specially).
    if (first == last || (first == 0 && last == atoms.size())) return out;
    out.clear();
    for (std::size_t k = first; k < last; ++k) out += atoms[k].text;
  } catch (const GiveUp&) {
  }
  return out;
}

}  // namespace moat::rules
