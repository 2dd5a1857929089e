// See signature.hpp (RFC 6376 §3.5, RFC 8601 §2.7.1, RFC 6008).
#include "filters/dkim/signature.hpp"

#include <algorithm>
#include <cctype>

#include "common/proto/taglist.hpp"
#include "common/text.hpp"

namespace moat::filters::dkim {
namespace {

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

// A field name: printable ASCII except ':' (RFC 5322 §3.6.8), WSP before the
// colon tolerated as the obsolete syntax does.
std::optional<std::string_view> field_name(std::string_view line) {
  auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  auto name = line.substr(0, colon);
  while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
  if (name.empty()) return std::nullopt;
  for (unsigned char c : name)
    if (c < 0x21 || c > 0x7e) return std::nullopt;
  return name;
}

// Short and printable: what may end up in a header or a log line.
std::string clip(std::string_view v, std::size_t max = 255) {
  std::string out;
  for (unsigned char c : v.substr(0, max))
    if (c > 0x20 && c < 0x7f) out += char(c);
  return out;
}

}  // namespace

std::vector<Field> split_fields(std::string_view header) {
  std::vector<Field> out;
  bool open = false;      // the last field may take continuation lines
  std::size_t start = 0;  // where it begins
  std::size_t pos = 0;
  while (pos < header.size()) {
    auto eol = header.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = header.size();
    std::string_view line = header.substr(pos, eol - pos);
    if (line.empty()) break;  // the blank line ends the header section
    if (is_wsp(line.front())) {
      if (open) out.back().text = header.substr(start, eol - start);
    } else if (auto name = field_name(line)) {
      if (out.size() == kMaxFields) break;
      out.push_back(Field{*name, line});
      start = pos;
      open = true;
    } else {
      open = false;
    }
    pos = eol + 2;
  }
  return out;
}

bool Signature::sha1() const { return iequals(a, "rsa-sha1"); }

Signature parse_signature(std::string_view value) {
  Signature sig;
  auto tags = proto::parse_tag_list(value);
  if (!tags) {
    sig.error = "malformed tag list";
    return sig;
  }
  for (const auto& [name, v] : tags->tags)
    if (name != "b" && v.size() > kMaxTagValue) {
      sig.error = "tag " + clip(name, 16) + "= too long";
      return sig;
    }
  auto get = [&](std::string_view n) { return std::string(tags->get(n).value_or("")); };
  sig.a = clip(proto::strip_fws(get("a")));
  sig.d = lower(clip(proto::strip_fws(get("d"))));
  sig.i = clip(proto::strip_fws(get("i")));
  sig.s = lower(clip(proto::strip_fws(get("s"))));
  sig.b = proto::strip_fws(get("b"));
  sig.bh = proto::strip_fws(get("bh"));
  for (const char* required : {"v", "a", "b", "bh", "d", "h", "s"})
    if (!tags->get(required)) {
      sig.error = std::string("missing ") + required + "= tag";
      return sig;
    }
  if (*tags->get("v") != "1") {
    sig.error = "unsupported version";
    return sig;
  }
  if (sig.d.empty() || sig.s.empty() || sig.b.empty()) {
    sig.error = "empty d=, s= or b= tag";
    return sig;
  }
  sig.valid = true;
  return sig;
}

std::vector<Signature> find_signatures(std::string_view header, std::size_t limit, bool* more) {
  std::vector<Signature> out;
  if (more) *more = false;
  for (const auto& f : split_fields(header)) {
    if (!iequals(f.name, "DKIM-Signature")) continue;
    if (out.size() == limit) {
      if (more) *more = true;
      break;
    }
    out.push_back(parse_signature(f.text.substr(f.text.find(':') + 1)));
  }
  return out;
}

AuthResult auth_result(const Signature& sig, std::string result, std::string reason) {
  AuthResult r{"dkim", std::move(result), std::move(reason), {}};
  if (!sig.d.empty()) r.props.emplace_back("header.d", sig.d);
  if (!sig.i.empty()) r.props.emplace_back("header.i", sig.i);
  if (!sig.s.empty()) r.props.emplace_back("header.s", sig.s);
  if (!sig.a.empty()) r.props.emplace_back("header.a", sig.a);
  if (!sig.b.empty()) r.props.emplace_back("header.b", sig.header_b());
  return r;
}

}  // namespace moat::filters::dkim
