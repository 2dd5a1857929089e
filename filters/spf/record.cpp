// SPF record checks, macro expansion and the record libspf2 gets (see
// record.hpp). The ABNF this follows (RFC 7208 §12, abridged):
//
//   record    = "v=spf1" *( 1*SP ( directive / modifier ) ) *SP
//   directive = [ "+" / "-" / "?" / "~" ] mechanism
//   mechanism = all / include:domain-spec / a[:domain-spec][dual-cidr]
//             / mx[:domain-spec][dual-cidr] / ptr[:domain-spec]
//             / ip4:ip4-network[/0-32] / ip6:ip6-network[/0-128] / exists:domain-spec
//   modifier  = redirect=domain-spec / exp=domain-spec / name=macro-string
//   name      = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
//   domain-spec = macro-string ( "." toplabel [ "." ] / macro-expand )
#include "common/text.hpp"
#include "filters/spf/record.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <vector>

namespace moat::filters::spf {
namespace {

bool alpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }
bool digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }
bool alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

bool all_digits(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), digit); }

std::string url_escape(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    if (alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      auto u = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return out;
}

std::string ip_dotted(const IpAddr& ip) {
  if (ip.v4) return ip.str();
  // Upper case, as in the RFC 7208 §7.4 example and the test suite.
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (auto byte : ip.b) {
    if (!out.empty()) out += '.';
    out += kHex[byte >> 4];
    out += '.';
    out += kHex[byte & 0xf];
  }
  return out;
}

// §7.3 letters; nullopt for a letter not allowed here.
std::optional<std::string> letter_value(char letter, const MacroValues& v, bool exp_text) {
  const auto at = v.sender.rfind('@');
  switch (ascii_lower(letter)) {
    case 's': return v.sender;
    case 'l': return at == std::string::npos ? std::string("postmaster") : v.sender.substr(0, at);
    case 'o': return at == std::string::npos ? v.sender : v.sender.substr(at + 1);
    case 'd': return v.domain;
    case 'i': return ip_dotted(v.ip);
    case 'p': return v.ptr ? v.ptr() : std::string("unknown");
    case 'v': return std::string(v.ip.v4 ? "in-addr" : "ip6");
    case 'h': return v.helo;
    case 'c':
      if (exp_text) return v.ip.str();
      return std::nullopt;
    case 'r':
      if (exp_text) return v.receiver.empty() ? std::string("unknown") : v.receiver;
      return std::nullopt;
    case 't':
      if (exp_text) return std::to_string(v.now);
      return std::nullopt;
    default: return std::nullopt;
  }
}

// §7.3: split on the delimiters, maybe reverse, keep the rightmost `keep`.
std::string transform(const std::string& value, std::size_t keep, bool reverse, std::string_view delims) {
  if (delims.empty()) delims = ".";
  std::vector<std::string> parts(1);
  for (char c : value) {
    if (delims.find(c) != std::string_view::npos) parts.emplace_back();
    else parts.back() += c;
  }
  if (reverse) std::reverse(parts.begin(), parts.end());
  if (keep > 0 && keep < parts.size()) parts.erase(parts.begin(), parts.end() - std::ptrdiff_t(keep));
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? "." : "") + parts[i];
  return out;
}

// One "%{...}" at s[i] (s[i] == '%', s[i+1] == '{'); advances i past '}'.
std::optional<std::string> expand_one(std::string_view s, std::size_t& i, const MacroValues& v, bool exp_text) {
  std::size_t j = i + 2;
  if (j >= s.size()) return std::nullopt;
  const char letter = s[j++];
  std::size_t keep = 0;
  std::size_t digits = 0;
  while (j < s.size() && digit(s[j])) {
    keep = std::min<std::size_t>(keep * 10 + std::size_t(s[j] - '0'), 1000);
    ++j;
    ++digits;
  }
  if (digits > 0 && keep == 0) return std::nullopt;  // "%{d0}": zero parts is no name
  bool reverse = false;
  if (j < s.size() && ascii_lower(s[j]) == 'r') {
    reverse = true;
    ++j;
  }
  std::string delims;
  while (j < s.size() && std::string_view(".-+,/_=").find(s[j]) != std::string_view::npos) delims += s[j++];
  if (j >= s.size() || s[j] != '}') return std::nullopt;
  auto value = letter_value(letter, v, exp_text);
  if (!value) return std::nullopt;
  std::string out = transform(*value, keep, reverse, delims);
  if (std::isupper(static_cast<unsigned char>(letter))) out = url_escape(out);
  i = j + 1;
  return out;
}

bool toplabel(std::string_view t) {
  if (t.empty() || !alnum(t.front()) || !alnum(t.back())) return false;
  if (!std::all_of(t.begin(), t.end(), [](char c) { return alnum(c) || c == '-'; })) return false;
  return std::any_of(t.begin(), t.end(), alpha) || t.find('-') != std::string_view::npos;
}

// domain-spec = macro-string domain-end (syntax only; expand_macros checks the rest).
bool domain_spec(std::string_view spec) {
  if (spec.empty()) return false;
  // The literal text after the last macro-expand.
  std::size_t tail = 0;
  for (std::size_t i = 0; i < spec.size(); ++i) {
    if (spec[i] != '%' || i + 1 >= spec.size()) continue;
    if (spec[i + 1] == '{') {
      auto close = spec.find('}', i);
      if (close == std::string_view::npos) return false;
      i = close;
    } else {
      ++i;  // "%%", "%_", "%-"
    }
    tail = i + 1;
  }
  std::string_view t = spec.substr(tail);
  if (t.empty()) return true;  // ends in a macro-expand
  if (t.back() == '.') t.remove_suffix(1);
  auto dot = t.rfind('.');
  return dot != std::string_view::npos && toplabel(t.substr(dot + 1));
}

// "/" ("0" / %x31-39 0*n DIGIT), at most `max`.
std::optional<unsigned> cidr(std::string_view digits, unsigned max) {
  if (!all_digits(digits) || digits.size() > 3 || (digits.size() > 1 && digits[0] == '0')) return std::nullopt;
  unsigned v = unsigned(std::stoul(std::string(digits)));
  if (v > max) return std::nullopt;
  return v;
}

bool ip4_network(std::string_view s) {
  int parts = 0;
  std::size_t start = 0;
  while (true) {
    auto dot = s.find('.', start);
    auto p = s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (!all_digits(p) || p.size() > 3 || (p.size() > 1 && p[0] == '0') || std::stoi(std::string(p)) > 255) return false;
    ++parts;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts == 4;
}

bool ip6_network(std::string_view s) {
  in6_addr a{};
  return inet_pton(AF_INET6, std::string(s).c_str(), &a) == 1;
}

// §4.8: a name over 253 octets loses labels from the left.
std::string truncate_left(std::string name) {
  while (name.size() > 253) {
    auto dot = name.find('.');
    if (dot == std::string::npos) break;
    name.erase(0, dot + 1);
  }
  return name;
}

struct Term {
  char qualifier = '+';
  std::string mech;  // lower case; "" for a modifier
  std::string name;  // modifier name, lower case
  std::string spec;  // domain-spec / network / modifier value
  std::optional<unsigned> cidr4, cidr6;
};

// A cidr suffix of a or mx: [ "/" ip4 ] [ "//" ip6 ], cut off `rest`.
bool dual_cidr(std::string& rest, Term& t) {
  auto dd = rest.rfind("//");
  if (dd != std::string::npos && all_digits(std::string_view(rest).substr(dd + 2))) {
    t.cidr6 = cidr(std::string_view(rest).substr(dd + 2), 128);
    if (!t.cidr6) return false;
    rest.erase(dd);
  }
  auto d = rest.rfind('/');
  if (d != std::string::npos && all_digits(std::string_view(rest).substr(d + 1))) {
    t.cidr4 = cidr(std::string_view(rest).substr(d + 1), 32);
    if (!t.cidr4) return false;
    rest.erase(d);
  }
  return true;
}

std::optional<std::string> parse_term(std::string_view text, Term& t) {
  const auto first = text.find_first_of("=:/");
  if (first != std::string_view::npos && text[first] == '=') {
    std::string_view name = text.substr(0, first);
    if (name.empty() || !alpha(name[0]) ||
        !std::all_of(name.begin(), name.end(), [](char c) { return alnum(c) || c == '-' || c == '_' || c == '.'; }))
      return "bad modifier name in \"" + std::string(text) + "\"";
    t.name = lower(name);
    t.spec = std::string(text.substr(first + 1));
    return std::nullopt;
  }
  if (!text.empty() && std::string_view("+-?~").find(text[0]) != std::string_view::npos) {
    t.qualifier = text[0];
    text.remove_prefix(1);
  }
  const auto end = text.find_first_of(":/");
  t.mech = lower(text.substr(0, end));
  std::string rest(end == std::string_view::npos ? std::string_view() : text.substr(end));
  const std::string bad = "bad mechanism \"" + std::string(text) + "\"";
  if (t.mech == "all") return rest.empty() ? std::nullopt : std::optional<std::string>(bad);
  if (t.mech == "include" || t.mech == "exists") {
    if (rest.size() < 2 || rest[0] != ':') return bad;
    t.spec = rest.substr(1);
    return domain_spec(t.spec) ? std::nullopt : std::optional<std::string>(bad);
  }
  if (t.mech == "a" || t.mech == "mx" || t.mech == "ptr") {
    if (t.mech != "ptr" && !dual_cidr(rest, t)) return bad;
    if (rest.empty()) return std::nullopt;
    if (rest[0] != ':') return bad;
    t.spec = rest.substr(1);
    return domain_spec(t.spec) ? std::nullopt : std::optional<std::string>(bad);
  }
  if (t.mech == "ip4" || t.mech == "ip6") {
    if (rest.size() < 2 || rest[0] != ':') return bad;
    std::string net = rest.substr(1);
    auto slash = net.find('/');
    if (slash != std::string::npos) {
      auto c = cidr(std::string_view(net).substr(slash + 1), t.mech == "ip4" ? 32 : 128);
      if (!c) return bad;
      (t.mech == "ip4" ? t.cidr4 : t.cidr6) = c;
      net.erase(slash);
    }
    if (t.mech == "ip4" ? !ip4_network(net) : !ip6_network(net)) return bad;
    t.spec = net;
    return std::nullopt;
  }
  return "unknown mechanism \"" + std::string(text) + "\"";
}

}  // namespace

std::optional<std::string> expand_macros(std::string_view s, const MacroValues& v, bool exp_text) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c != '%') {
      auto u = static_cast<unsigned char>(c);
      // macro-literal is %x21-24 / %x26-7E; explain-string adds SP.
      if (u > 0x7e || (u < 0x21 && !(exp_text && c == ' '))) return std::nullopt;
      out += c;
      ++i;
      continue;
    }
    if (i + 1 >= s.size()) return std::nullopt;
    switch (s[i + 1]) {
      case '%': out += '%'; i += 2; break;
      case '_': out += ' '; i += 2; break;
      case '-': out += "%20"; i += 2; break;
      case '{': {
        auto piece = expand_one(s, i, v, exp_text);
        if (!piece) return std::nullopt;
        out += *piece;
        break;
      }
      default: return std::nullopt;
    }
    if (out.size() > kMaxExpansion) return std::nullopt;
  }
  return out;
}

std::string as_macro_literal(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '%') out += "%%";
    else if (c == ' ') out += "%_";
    else if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) out += '?';
    else out += c;
  }
  return out;
}

Normalized normalize(std::string_view record, const MacroValues& v, bool ipv4_client) {
  Normalized n;
  std::vector<Term> terms;
  std::size_t pos = 6;  // after "v=spf1" (checked by the caller)
  while (pos < record.size()) {
    if (record[pos] == ' ') {
      ++pos;
      continue;
    }
    auto end = record.find(' ', pos);
    std::string_view text = record.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    pos = end == std::string_view::npos ? record.size() : end;
    Term t;
    if (auto err = parse_term(text, t)) {
      n.error = *err;
      return n;
    }
    terms.push_back(std::move(t));
  }

  // Modifiers: redirect and exp at most once each (§6); others only need
  // to be well-formed macro-strings, and are then ignored.
  const Term* redirect = nullptr;
  const Term* exp = nullptr;
  bool has_all = false;
  for (const auto& t : terms) {
    if (t.mech == "all") has_all = true;
    if (!t.mech.empty()) continue;
    if (t.name == "redirect" || t.name == "exp") {
      const Term*& slot = t.name == "redirect" ? redirect : exp;
      if (slot) {
        n.error = t.name + "= given twice";
        return n;
      }
      if (!domain_spec(t.spec)) {
        n.error = "bad " + t.name + "= target \"" + t.spec + "\"";
        return n;
      }
      slot = &t;
    } else if (!expand_macros(t.spec, v, true)) {
      n.error = "bad macro in modifier " + t.name;
      return n;
    }
  }

  auto target = [&](const std::string& spec) -> std::optional<std::string> {
    if (spec.empty()) return v.domain;
    auto e = expand_macros(spec, v, false);
    if (!e) return std::nullopt;
    std::string name = truncate_left(std::move(*e));
    if (lower(name).find(kAnyAddressLabel) != std::string::npos) return std::nullopt;
    return name;
  };

  std::string out = "v=spf1";
  for (const auto& t : terms) {
    if (t.mech.empty()) continue;
    const std::string q = t.qualifier == '+' ? "" : std::string(1, t.qualifier);
    std::string term;
    if (t.mech == "all") {
      term = q + "all";
    } else if (t.mech == "ip4" || t.mech == "ip6") {
      const bool mine = (t.mech == "ip4") == ipv4_client;
      const auto c = t.mech == "ip4" ? t.cidr4 : t.cidr6;
      if (c && *c == 0) {
        if (!mine) continue;  // never matches the other family
        term = t.mech == "ip4" ? q + "ip4:0.0.0.0/1 " + q + "ip4:128.0.0.0/1" : q + "ip6:::/1 " + q + "ip6:8000::/1";
      } else {
        term = q + t.mech + ":" + t.spec + (c ? "/" + std::to_string(*c) : "");
      }
    } else {
      auto name = target(t.spec);
      if (!name) {
        n.error = "bad macro in \"" + t.mech + ":" + t.spec + "\"";
        return n;
      }
      std::string suffix;
      if (t.mech == "a" || t.mech == "mx") {
        const auto c = ipv4_client ? t.cidr4 : t.cidr6;
        if (c && *c == 0) *name += (name->empty() || name->back() == '.' ? "" : ".") + std::string(kAnyAddressLabel);
        else if (c) suffix = (ipv4_client ? "/" : "//") + std::to_string(*c);
      }
      term = q + t.mech + ":" + as_macro_literal(*name) + suffix;
    }
    out += " " + term;
  }
  // §6.1: redirect is ignored when the record has "all"; otherwise it acts
  // after every mechanism, so it goes last for libspf2.
  if (redirect && !has_all) {
    auto name = target(redirect->spec);
    if (!name) {
      n.error = "bad macro in redirect=";
      return n;
    }
    out += " redirect=" + as_macro_literal(*name);
  }
  if (exp) {
    auto name = target(exp->spec);
    if (!name) {
      n.error = "bad macro in exp=";
      return n;
    }
    n.exp = *name;
    out += " exp=" + as_macro_literal(*name);
  }
  n.record = std::move(out);
  return n;
}

}  // namespace moat::filters::spf
