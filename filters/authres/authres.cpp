// See authres.hpp. RFC 8601 §2.2 grammar for the writer; the reader only
// needs the authserv-id, the first token after optional CFWS.
#include "common/text.hpp"
#include "filters/authres/authres.hpp"

#include <cctype>

namespace moat::filters {
namespace {

bool is_token_char(unsigned char c) {
  // RFC 2045 token: any printable ASCII except SPACE and tspecials.
  static constexpr std::string_view kSpecials = "()<>@,;:\\\"/[]?=";
  return c > 0x20 && c < 0x7f && kSpecials.find(char(c)) == std::string_view::npos;
}

// A property value: a token, or an addr-spec / domain (which '@' and '.'
// make non-tokens but RFC 8601 allows bare), else a quoted string.
std::string value(std::string_view v) {
  std::string clean;
  for (unsigned char c : v)
    if (c >= 0x20 && c != 0x7f) clean += char(c);
  bool bare = !clean.empty();
  for (unsigned char c : clean)
    if (!is_token_char(c) && c != '@' && c != '.') bare = false;
  if (bare && clean.find("..") == std::string::npos && clean.front() != '.' && clean.front() != '@') return clean;
  std::string out = "\"";
  for (char c : clean) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// Skips spaces, tabs, CRLF and (nested) comments.
std::size_t skip_cfws(std::string_view s, std::size_t i) {
  int depth = 0;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (depth > 0) {
      if (c == '\\') ++i;
      else if (c == '(') ++depth;
      else if (c == ')') --depth;
    } else if (c == '(') {
      depth = 1;
    } else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
      break;
    }
  }
  return i;
}

// The authserv-id of an Authentication-Results field body.
std::string_view authserv_id_of(std::string_view body) {
  std::size_t i = skip_cfws(body, 0), j = i;
  while (j < body.size() && body[j] != ';' && body[j] != ' ' && body[j] != '\t' && body[j] != '\r' &&
         body[j] != '(')
    ++j;
  return body.substr(i, j - i);
}

}  // namespace

std::string_view AuthResult::prop(std::string_view key) const {
  for (const auto& [k, v] : props)
    if (k == key) return v;
  return {};
}

std::string authentication_results(std::string_view authserv_id, const std::vector<AuthResult>& results) {
  std::string out = "Authentication-Results: " + std::string(authserv_id) + ";";
  if (results.empty()) return out + " none\r\n";
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    out += "\r\n\t" + r.method + "=" + r.result;
    if (!r.reason.empty()) out += " reason=" + value(r.reason);
    for (const auto& [k, v] : r.props)
      if (!v.empty()) out += " " + k + "=" + value(v);
    if (i + 1 < results.size()) out += ";";
  }
  return out + "\r\n";
}

std::optional<std::string> strip_authentication_results(std::string_view header, std::string_view authserv_id) {
  static constexpr std::string_view kName = "authentication-results";
  std::string out;
  bool changed = false;
  std::size_t pos = 0;
  while (pos < header.size()) {
    // One field: its first line and the continuation lines after it.
    std::size_t end = pos;
    do {
      auto nl = header.find('\n', end);
      end = nl == std::string_view::npos ? header.size() : nl + 1;
    } while (end < header.size() && (header[end] == ' ' || header[end] == '\t'));
    std::string_view field = header.substr(pos, end - pos);
    bool ours = false;
    if (field.size() > kName.size() && iequals(field.substr(0, kName.size()), kName)) {
      // "Authentication-Results :" (obsolete RFC 5322 syntax) counts too.
      auto colon = field.find_first_not_of(" \t", kName.size());
      ours = colon != std::string_view::npos && field[colon] == ':' &&
             iequals(authserv_id_of(field.substr(colon + 1)), authserv_id);
    }
    if (ours) {
      if (!changed) out.assign(header.substr(0, pos));
      changed = true;
    } else if (changed) {
      out += field;
    }
    pos = end;
  }
  if (!changed) return std::nullopt;
  return out;
}

}  // namespace moat::filters
