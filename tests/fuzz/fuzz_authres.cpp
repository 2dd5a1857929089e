// Fuzz target: Authentication-Results writing (RFC 8601) from hostile values
// and the removal of fields claiming our authserv-id. Oracles: the written
// field is one header field (CRLF only as folding, every continuation line
// starts with TAB), and stripping removes exactly that field.
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "filters/authres/authres.hpp"

using namespace moat::filters;

namespace {

// Input: '\x01'-separated values: method, result, reason, key, value, ...
std::vector<std::string> split(std::string_view in) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (out.size() < 64) {
    auto sep = in.find('\x01', pos);
    out.emplace_back(in.substr(pos, sep == std::string_view::npos ? std::string_view::npos : sep - pos));
    if (sep == std::string_view::npos) break;
    pos = sep + 1;
  }
  return out;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!(std::isalnum(c) || c == '-' || c == '.' || c == '_')) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)strip_authentication_results(in, "mx.moat.test");  // raw input as a header section

  auto v = split(in);
  AuthResult r;
  // Method, result and keys come from our code, never from clients: keep
  // them to tokens; reason and values are where hostile text goes.
  r.method = is_token(v[0]) ? v[0] : "spf";
  r.result = v.size() > 1 && is_token(v[1]) ? v[1] : "pass";
  if (v.size() > 2) r.reason = v[2];
  for (std::size_t i = 3; i + 1 < v.size(); i += 2) r.props.emplace_back(is_token(v[i]) ? v[i] : "x.y", v[i + 1]);
  const std::string field = authentication_results("mx.moat.test", {r, r});

  // One field: lines end in CRLF, continuation lines start with TAB, no other CR or LF.
  std::size_t pos = 0;
  bool first = true;
  while (pos < field.size()) {
    auto nl = field.find("\r\n", pos);
    if (nl == std::string::npos) std::abort();
    std::string_view line(field.data() + pos, nl - pos);
    if (line.find_first_of("\r\n") != std::string_view::npos) std::abort();
    if (!first && (line.empty() || line[0] != '\t')) std::abort();
    first = false;
    pos = nl + 2;
  }
  auto stripped = strip_authentication_results(field + "Subject: x\r\n", "mx.moat.test");
  if (!stripped || *stripped != "Subject: x\r\n") std::abort();
  return 0;
}
