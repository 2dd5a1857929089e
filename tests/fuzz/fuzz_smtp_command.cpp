// Fuzz target: one SMTP command line through parse_command, the MAIL/RCPT
// parameter helpers, parse_path and the relay guard (RFC 5321 §4.1).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/proto/address.hpp"
#include "common/proto/sasl.hpp"
#include "common/proto/smtp_parser.hpp"

using namespace moat::proto;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  auto r = smtp::parse_command(line);
  if (!r) return 0;
  const smtp::Command& c = *r;
  if (line.size() + 2 > 2048) std::abort();  // the limit must hold
  if (c.verb == smtp::Verb::Mail) {
    auto m = smtp::parse_mail_params(c.params);
    if (!c.path.empty()) {
      auto p = smtp::parse_path(c.path, m.ok() && m->smtputf8);
      if (p) (void)smtp::check_relay_safe(*p, m.ok() && m->smtputf8);
    }
  } else if (c.verb == smtp::Verb::Rcpt) {
    if (c.path.empty()) std::abort();  // <> is only for MAIL
    (void)smtp::parse_rcpt_params(c.params);
    auto p = smtp::parse_path(c.path, true, true);
    if (p) (void)check_relay_safe(*p, true);
  } else if (c.verb == smtp::Verb::Auth) {
    auto a = sasl::parse_auth(c.argument);
    if (a && a->has_initial) (void)sasl::decode_plain(a->initial.empty() ? "=" : a->initial);
  }
  for (std::size_t i = 1; i < c.params.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (c.params[i].keyword == c.params[j].keyword) std::abort();  // duplicates are errors
  return 0;
}
