// Alphanumeric skeletons of PCRE2 patterns (see skeleton.hpp). The pattern
// is parsed into a small tree (byte sets, groups, zero-width items, each
// with its repeat bounds) restricted to ASCII bytes; the skeleton is rendered
// from that tree. Anything not modelled gives up, which only means the rule
// is not gated.
#include "rules/skeleton.hpp"

#include <algorithm>
#include <bitset>
#include <cctype>
#include <memory>

#include "rules/pattern_escape.hpp"

namespace moat::rules {
namespace {

struct GiveUp {};

constexpr unsigned kInf = ~0u;

struct Item;
struct Node {
  enum class Kind { Set, Group, Zero } kind = Kind::Zero;
  std::bitset<128> set;                   // Set: the ASCII bytes it matches
  std::vector<std::vector<Item>> alts;    // Group
};
struct Item {
  Node node;
  unsigned min = 1, max = 1;  // max kInf: unbounded
};

// [A-Za-z0-9], whatever the locale.
bool is_alnum(unsigned c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

class Parser {
 public:
  Parser(std::string_view p, bool caseless, bool dotall) : p_(p), caseless_(caseless), dotall_(dotall) {}

  std::vector<std::vector<Item>> run() {
    auto alts = alternation(0);
    if (i_ != p_.size()) throw GiveUp{};
    return alts;
  }

 private:
  bool at_end() const { return i_ >= p_.size(); }
  char peek(std::size_t ahead = 0) const { return i_ + ahead < p_.size() ? p_[i_ + ahead] : '\0'; }

  std::vector<std::vector<Item>> alternation(unsigned depth) {
    if (depth > 200) throw GiveUp{};
    std::vector<std::vector<Item>> alts;
    for (;;) {
      alts.push_back(sequence(depth));
      if (peek() != '|') break;
      ++i_;
    }
    return alts;
  }

  std::vector<Item> sequence(unsigned depth) {
    std::vector<Item> items;
    while (!at_end() && peek() != '|' && peek() != ')') {
      Item it;
      it.node = atom(depth);
      quantifier(it);
      items.push_back(std::move(it));
    }
    return items;
  }

  void quantifier(Item& it) {
    const char c = peek();
    if (c == '?') it.min = 0, it.max = 1, ++i_;
    else if (c == '*') it.min = 0, it.max = kInf, ++i_;
    else if (c == '+') it.min = 1, it.max = kInf, ++i_;
    else if (c == '{') {
      std::size_t j = i_ + 1;
      auto number = [&](unsigned& v) {
        bool any = false;
        v = 0;
        while (j < p_.size() && std::isdigit(static_cast<unsigned char>(p_[j]))) {
          v = std::min(v * 10 + unsigned(p_[j] - '0'), 100000u);
          ++j;
          any = true;
        }
        return any;
      };
      unsigned lo = 0, hi = 0;
      if (!number(lo)) return;  // "{" is a literal here
      hi = lo;
      if (j < p_.size() && p_[j] == ',') {
        ++j;
        if (!number(hi)) hi = kInf;
      }
      if (j >= p_.size() || p_[j] != '}') return;
      i_ = j + 1;
      it.min = lo, it.max = hi;
    } else {
      return;
    }
    if (peek() == '?' || peek() == '+') ++i_;  // lazy, possessive: only narrow which matches exist
  }

  Node set_of(std::bitset<128> s) {
    Node n;
    n.kind = Node::Kind::Set;
    n.set = s;
    return n;
  }

  Node atom(unsigned depth) {
    const char c = peek();
    if (c == '(') return group(depth);
    if (c == '[') return set_of(char_class());
    if (c == '\\') return escape();
    ++i_;
    if (c == '^' || c == '$') return Node{};
    if (c == '.') {
      std::bitset<128> s;
      s.set();
      if (!dotall_) s.reset('\n');
      return set_of(s);
    }
    std::bitset<128> s;
    add(s, static_cast<unsigned char>(c));
    return set_of(s);
  }

  void add(std::bitset<128>& s, unsigned c) const {
    if (c >= 128) return;  // ASCII buffers only: such a byte never matches
    s.set(c);
    if (caseless_ && std::isalpha(static_cast<int>(c))) {
      s.set(static_cast<unsigned>(std::tolower(static_cast<int>(c))));
      s.set(static_cast<unsigned>(std::toupper(static_cast<int>(c))));
    }
  }

  Node group(unsigned depth) {
    ++i_;  // '('
    bool zero = false;
    if (peek() == '*') throw GiveUp{};  // (*VERB)
    if (peek() == '?') {
      const std::string_view rest = p_.substr(i_);
      if (rest.starts_with("?:") || rest.starts_with("?>")) {
        i_ += 2;
      } else if (rest.starts_with("?=") || rest.starts_with("?!")) {
        i_ += 2;
        zero = true;
      } else if (rest.starts_with("?<=") || rest.starts_with("?<!")) {
        i_ += 3;
        zero = true;
      } else if (rest.starts_with("?#")) {
        auto close = p_.find(')', i_);
        if (close == std::string_view::npos) throw GiveUp{};
        i_ = close + 1;
        return Node{};
      } else if (rest.starts_with("?P<") ||
                 (rest.starts_with("?<") && rest.size() > 2 && std::isalpha(static_cast<unsigned char>(rest[2])))) {
        auto gt = p_.find('>', i_);
        if (gt == std::string_view::npos) throw GiveUp{};
        i_ = gt + 1;
      } else {
        throw GiveUp{};  // inline options, (?|, (?(, (?R, (?1, (?&, (?P=
      }
    }
    Node n;
    n.kind = Node::Kind::Group;
    n.alts = alternation(depth + 1);
    if (peek() != ')') throw GiveUp{};
    ++i_;
    // A lookaround is parsed (to find its end) and dropped: it consumes
    // nothing and only narrows where the pattern matches.
    if (zero) return Node{};
    return n;
  }

  std::bitset<128> char_class() {
    ++i_;  // '['
    bool negated = false;
    if (peek() == '^') {
      negated = true;
      ++i_;
    }
    std::bitset<128> s;
    bool first = true;
    for (;;) {
      if (at_end()) throw GiveUp{};
      const char c = peek();
      if (c == ']' && !first) {
        ++i_;
        break;
      }
      first = false;
      if (c == '[' && (peek(1) == ':' || peek(1) == '.' || peek(1) == '=')) throw GiveUp{};  // POSIX classes
      std::bitset<128> member;
      std::optional<unsigned> lo = class_member(member);
      if (lo && peek() == '-' && peek(1) != ']' && peek(1) != '\0') {
        ++i_;
        std::bitset<128> ignored;
        std::optional<unsigned> hi = class_member(ignored);
        if (!hi || *hi < *lo) throw GiveUp{};
        for (unsigned v = *lo; v <= *hi && v < 128; ++v) add(s, v);
        continue;
      }
      if (lo) add(s, *lo);
      s |= member;
    }
    if (negated) s.flip();
    return s;
  }

  // One class member: its byte, or nullopt for a set such as \d (put in `set`).
  std::optional<unsigned> class_member(std::bitset<128>& set) {
    const char c = peek();
    if (c != '\\') {
      ++i_;
      return static_cast<unsigned char>(c);
    }
    ++i_;
    const char e = peek();
    if (auto s = escape_set(e)) {
      ++i_;
      set |= *s;
      return std::nullopt;
    }
    if (e == 'b') {
      ++i_;
      return 8;
    }
    return escaped_byte();
  }

  // \d \w \s \h \v and their negations, over ASCII (PCRE2 without UCP).
  static std::optional<std::bitset<128>> escape_set(char e) {
    std::bitset<128> s;
    switch (std::tolower(static_cast<unsigned char>(e))) {
      case 'd':
        for (unsigned c = '0'; c <= '9'; ++c) s.set(c);
        break;
      case 'w':
        for (unsigned c = 0; c < 128; ++c)
          if (is_alnum(c) || c == '_') s.set(c);
        break;
      case 's':
        for (unsigned c : {9u, 10u, 11u, 12u, 13u, 32u}) s.set(c);
        break;
      case 'h':
        for (unsigned c : {9u, 32u}) s.set(c);
        break;
      case 'v':
        for (unsigned c : {10u, 11u, 12u, 13u}) s.set(c);
        break;
      default: return std::nullopt;
    }
    if (std::isupper(static_cast<unsigned char>(e))) s.flip();
    return s;
  }

  Node escape() {
    ++i_;  // '\\'
    const char e = peek();
    if (e != '\0' && std::string_view("bBAzZG").find(e) != std::string_view::npos) {
      ++i_;
      return Node{};
    }
    if (auto s = escape_set(e)) {
      ++i_;
      return set_of(*s);
    }
    std::bitset<128> s;
    add(s, escaped_byte());
    return set_of(s);
  }

  // After a backslash (rules/pattern_escape.hpp).
  unsigned escaped_byte() {
    auto b = rules::escaped_byte(p_, i_);
    if (!b) throw GiveUp{};
    return *b;
  }

  std::string_view p_;
  bool caseless_, dotall_;
  std::size_t i_ = 0;
};

// ---- rendering ----

struct Rendered {
  bool possible = true;  // false: cannot match an ASCII buffer
  std::string re;        // empty: only the empty string (vanishes when squeezed)
  bool nullable = false; // re may also match nothing
};

std::bitset<128> alnum_part(const std::bitset<128>& s) {
  std::bitset<128> a;
  for (unsigned c = 0; c < 128; ++c)
    if (s[c] && is_alnum(c)) a.set(c);
  return a;
}

std::string class_text(const std::bitset<128>& a) {
  if (a.count() == 1)
    for (unsigned c = 0; c < 128; ++c)
      if (a[c]) return std::string(1, static_cast<char>(c));
  std::string out = "[";
  for (unsigned c = 0; c < 128; ++c) {
    if (!a[c]) continue;
    unsigned e = c;
    while (e + 1 < 128 && a[e + 1]) ++e;
    out += static_cast<char>(c);
    if (e > c + 1) out += '-';
    if (e > c) out += static_cast<char>(e);
    c = e;
  }
  return out + "]";
}

std::string quantifier_text(unsigned min, unsigned max) {
  if (min == 1 && max == 1) return "";
  if (min == 0 && max == 1) return "?";
  if (max == kInf) return min == 0 ? "*" : min == 1 ? "+" : "{" + std::to_string(min) + ",}";
  return "{" + std::to_string(min) + (max == min ? "" : "," + std::to_string(max)) + "}";
}

Rendered render_seq(const std::vector<Item>& items);

Rendered render_node(const Node& n) {
  Rendered r;
  switch (n.kind) {
    case Node::Kind::Zero: return r;
    case Node::Kind::Set: {
      if (n.set.none()) return Rendered{false, "", false};
      const auto a = alnum_part(n.set);
      if (a.none()) return r;
      r.re = class_text(a);
      r.nullable = a != n.set;  // a non-alphanumeric byte vanishes when squeezed
      return r;
    }
    case Node::Kind::Group: {
      std::vector<std::string> alts;
      bool any = false;
      for (const auto& alt : n.alts) {
        Rendered s = render_seq(alt);
        if (!s.possible) continue;
        any = true;
        if (s.re.empty()) r.nullable = true;
        else alts.push_back(s.re), r.nullable = r.nullable || s.nullable;
      }
      if (!any) return Rendered{false, "", false};
      if (alts.empty()) return Rendered{};
      std::sort(alts.begin(), alts.end());
      alts.erase(std::unique(alts.begin(), alts.end()), alts.end());
      r.re = "(?:";
      for (std::size_t k = 0; k < alts.size(); ++k) r.re += (k ? "|" : "") + alts[k];
      r.re += ")";
      return r;
    }
  }
  return r;
}

Rendered render_item(const Item& it) {
  Rendered n = render_node(it.node);
  if (!n.possible) return it.min == 0 ? Rendered{} : n;
  if (n.re.empty() || it.max == 0) return Rendered{};
  const unsigned min = n.nullable ? 0 : it.min;
  // Bounded repeats become unbounded (a superset, and cheaper for
  // Hyperscan than counting), except exact counts and "?".
  unsigned max = it.max;
  if (max != min && !(min == 0 && max == 1)) max = kInf;
  Rendered r;
  r.re = n.re + quantifier_text(min, max);
  r.nullable = min == 0;
  return r;
}

Rendered render_seq(const std::vector<Item>& items) {
  Rendered out;
  out.nullable = true;
  for (const auto& it : items) {
    Rendered r = render_item(it);
    if (!r.possible) return r;
    out.re += r.re;
    out.nullable = out.nullable && (r.re.empty() || r.nullable);
  }
  return out;
}

// ---- widths and runs ----

std::size_t add_sat(std::size_t a, std::size_t b) { return a > kUnbounded - b ? kUnbounded : a + b; }

std::size_t width(const std::vector<Item>& seq);

std::size_t width(const Node& n) {
  switch (n.kind) {
    case Node::Kind::Zero: return 0;
    case Node::Kind::Set: return 1;
    case Node::Kind::Group: {
      std::size_t w = 0;
      for (const auto& alt : n.alts) w = std::max(w, width(alt));
      return w;
    }
  }
  return 0;
}

std::size_t width(const std::vector<Item>& seq) {
  std::size_t w = 0;
  for (const auto& it : seq) {
    const std::size_t one = width(it.node);
    if (one == 0 || it.max == 0) continue;
    if (it.max == kInf || one == kUnbounded) return kUnbounded;
    std::size_t total = 0;
    for (unsigned k = 0; k < it.max && total != kUnbounded; ++k) total = add_sat(total, one);
    w = add_sat(w, total);
  }
  return w;
}

// Distinct bytes of a set once letters are folded to one case.
std::size_t folded_count(const std::bitset<128>& s) {
  std::bitset<128> f;
  for (unsigned c = 0; c < 128; ++c)
    if (s[c]) f.set(static_cast<unsigned>(std::tolower(static_cast<int>(c))));
  return f.count();
}

// Longest run of mandatory small-set positions in a sequence. skeleton:
// judge the squeezed form (non-alphanumeric bytes vanish) instead of the
// pattern as written.
std::size_t run_of(const std::vector<Item>& seq, bool skeleton) {
  std::size_t best = 0, cur = 0;
  for (const auto& it : seq) {
    const Node& n = it.node;
    bool transparent = n.kind == Node::Kind::Zero;
    bool small = false;
    std::bitset<128> s = n.set;
    if (n.kind == Node::Kind::Set) {
      if (skeleton) {
        const auto a = alnum_part(s);
        transparent = a.none();
        small = a == s && folded_count(a) <= 3;
      } else {
        small = folded_count(s) <= 3;
      }
    } else if (n.kind == Node::Kind::Group && skeleton) {
      transparent = render_node(n).re.empty();
    }
    if (transparent) continue;
    if (small && it.min >= 1) {
      cur += it.min;
      best = std::max(best, cur);
      if (it.max != it.min) cur = 0;
    } else {
      cur = 0;
    }
  }
  return best;
}

std::size_t run_of(const std::vector<std::vector<Item>>& alts, bool skeleton) {
  std::size_t r = kUnbounded;
  for (const auto& alt : alts) r = std::min(r, run_of(alt, skeleton));
  return r == kUnbounded ? 0 : r;
}

}  // namespace

std::optional<Skeleton> alnum_skeleton(std::string_view pattern, std::string_view flags) {
  if (flags.find('x') != std::string_view::npos) return std::nullopt;
  const bool caseless = flags.find('i') != std::string_view::npos;
  const bool dotall = flags.find('s') != std::string_view::npos;
  try {
    Node top;
    top.kind = Node::Kind::Group;
    top.alts = Parser(pattern, caseless, dotall).run();
    Rendered r = render_node(top);
    if (!r.possible || r.re.empty() || r.nullable) return std::nullopt;
    Skeleton out;
    // The top group's "(?:...)" is kept: harmless, and alternatives stay grouped.
    out.pattern = std::move(r.re);
    out.max_width = width(top);
    out.pattern_run = run_of(top.alts, false);
    out.skeleton_run = run_of(top.alts, true);
    return out;
  } catch (const GiveUp&) {
    return std::nullopt;
  }
}

void squeeze_alnum(std::string_view in, std::string& out, std::vector<std::uint32_t>& pos) {
  out.clear();
  pos.clear();
  out.reserve(in.size());
  pos.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (is_alnum(static_cast<unsigned char>(in[i]))) {
      const char c = in[i];
      out += c;
      pos.push_back(static_cast<std::uint32_t>(i));
    }
  }
}

}  // namespace moat::rules
