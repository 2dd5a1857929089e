// See sasl.hpp (RFC 4954, RFC 4616, RFC 4422).
#include "common/proto/sasl.hpp"

#include "common/base64.hpp"
#include "common/proto/address.hpp"

namespace moat::proto::sasl {
namespace {

bool valid_field(std::string_view f) { return f.size() <= kMaxField && smtp::is_valid_utf8(f); }

}  // namespace

Result<AuthRequest> parse_auth(std::string_view arg) {
  AuthRequest r;
  const auto sp = arg.find(' ');
  const std::string_view mech = arg.substr(0, sp);
  if (mech.empty() || mech.size() > 20) return Error{Errc::ParamSyntax, "invalid SASL mechanism name"};
  for (char c : mech) {
    if (c >= 'a' && c <= 'z') c = char(c - 'a' + 'A');
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return Error{Errc::ParamSyntax, "invalid SASL mechanism name"};
    r.mechanism += c;
  }
  if (sp == std::string_view::npos) return r;
  const std::string_view ir = arg.substr(sp + 1);
  if (ir.empty() || ir.find(' ') != std::string_view::npos)
    return Error{Errc::ParamSyntax, "invalid initial response"};
  r.has_initial = true;
  if (ir != "=") r.initial = std::string(ir);
  return r;
}

bool is_cancel(std::string_view line) { return line == "*"; }

Result<std::string> decode_response(std::string_view b64) {
  if (b64 == "=") return std::string();
  if (b64.empty()) return Error{Errc::ParamSyntax, "empty SASL response"};
  auto r = base64_decode(b64);
  if (!r) return Error{Errc::ParamSyntax, "cannot decode SASL response"};
  return r;
}

Result<PlainCredentials> decode_plain(std::string_view b64) {
  auto raw = decode_response(b64);
  if (!raw) return raw.error();
  const std::string_view m = *raw;
  const auto n1 = m.find('\0');
  if (n1 == std::string_view::npos) return Error{Errc::AuthFailed, "malformed PLAIN message"};
  const auto n2 = m.find('\0', n1 + 1);
  if (n2 == std::string_view::npos || m.find('\0', n2 + 1) != std::string_view::npos)
    return Error{Errc::AuthFailed, "malformed PLAIN message"};
  PlainCredentials c{std::string(m.substr(0, n1)), std::string(m.substr(n1 + 1, n2 - n1 - 1)),
                     std::string(m.substr(n2 + 1))};
  if (c.authcid.empty() || c.password.empty()) return Error{Errc::AuthFailed, "empty PLAIN user or password"};
  if (!valid_field(c.authzid) || !valid_field(c.authcid) || !valid_field(c.password))
    return Error{Errc::AuthFailed, "PLAIN field too long or not UTF-8"};
  return c;
}

Result<std::string> decode_login(std::string_view b64) {
  auto raw = decode_response(b64);
  if (!raw) return raw.error();
  if (raw->empty() || raw->find('\0') != std::string::npos || !valid_field(*raw))
    return Error{Errc::AuthFailed, "malformed LOGIN response"};
  return raw;
}

}  // namespace moat::proto::sasl
