// See taglist.hpp (RFC 6376 §3.2).
#include "common/proto/taglist.hpp"

#include <cctype>

namespace moat::proto {
namespace {

bool is_fws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_fws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_fws(s.back())) s.remove_suffix(1);
  return s;
}

bool valid_name(std::string_view n) {
  if (n.empty() || !std::isalpha(static_cast<unsigned char>(n[0]))) return false;
  for (unsigned char c : n)
    if (!std::isalnum(c) && c != '_') return false;
  return true;
}

// tval = %x21-3A / %x3C-7E; FWS may separate tvals inside a value.
bool valid_value(std::string_view v) {
  for (unsigned char c : v)
    if (!is_fws(char(c)) && (c < 0x21 || c > 0x7e || c == ';')) return false;
  return true;
}

}  // namespace

std::optional<std::string_view> TagList::get(std::string_view name) const {
  for (const auto& [k, v] : tags)
    if (k == name) return std::string_view(v);
  return std::nullopt;
}

std::optional<TagList> parse_tag_list(std::string_view text) {
  TagList out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    auto semi = text.find(';', pos);
    std::string_view spec = text.substr(pos, semi == std::string_view::npos ? std::string_view::npos : semi - pos);
    pos = semi == std::string_view::npos ? text.size() + 1 : semi + 1;
    if (trim(spec).empty()) {
      if (pos > text.size()) break;  // the optional trailing ";"
      return std::nullopt;           // ";;" is not a tag-spec
    }
    auto eq = spec.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    auto name = trim(spec.substr(0, eq));
    auto value = trim(spec.substr(eq + 1));
    if (!valid_name(name) || !valid_value(value) || out.get(name)) return std::nullopt;
    if (out.tags.size() == TagList::kMaxTags) return std::nullopt;
    out.tags.emplace_back(std::string(name), std::string(value));
  }
  return out;
}

std::string strip_fws(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value)
    if (!is_fws(c)) out += c;
  return out;
}

}  // namespace moat::proto
