// Fuzz target: DKIM key records (RFC 6376 §3.6.1, RFC 8463 §4.2). The input
// is the TXT data a key lookup returned; it goes through moat's key-record
// parser (oracle: write back and parse again gives the same tags) and, as
// the answer for both selectors, through libopendkim's verification of the
// RFC 8463 A.3 message (RSA and Ed25519 key decoding, h=/k=/t= checks).
// Oracle: a signature passes only with its real public key.
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/proto/taglist.hpp"
#include "filters/dkim/dkim.hpp"
#include "filters/dkim/key.hpp"
#include "filters/dkim/opendkim.hpp"

using namespace moat::filters::dkim;

namespace {

constexpr std::string_view kHeader =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    " date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
    " DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
    " dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n";
constexpr std::string_view kBody = "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";
// The first 42 of 44 characters: libopendkim's base64 decoder needs no "="
// pad and ignores the 2 spare bits of the last character ("URp" decodes as
// "URo"), so only these are fixed by the key.
constexpr std::string_view kEd25519 = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHUR";
constexpr std::string_view kRsaStart = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08";

const OpenDkim& lib() {
  static auto l = [] {
    auto r = OpenDkim::create(LibOptions{});
    if (!r) std::abort();
    return std::move(*r);
  }();
  return *l;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string txt(reinterpret_cast<const char*>(data), size);
  if (auto r = parse_key_record(txt)) {
    auto again = parse_key_record(format_key_record(*r));
    if (!again || again->k != r->k || again->p != r->p || again->h != r->h || again->s != r->s || again->t != r->t)
      std::abort();
  }
  static const auto sigs = find_signatures(kHeader, 4);
  if (sigs.size() != 2) std::abort();
  KeyAnswers keys;
  keys[key_name("brisbane", "football.example.com")] = {KeyStatus::Found, txt};
  keys[key_name("test", "football.example.com")] = {KeyStatus::Found, txt};
  auto out = lib().verify(kHeader, kBody, sigs, keys);
  if (out.size() != 2) std::abort();
  // libopendkim's base64 decoder skips characters outside the alphabet
  // ("p=11,qY..." is the same key), so compare what it would decode.
  std::string flat;
  for (char c : txt)
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/') flat += c;
  if (out[0].result == "pass" && flat.find(kEd25519) == std::string::npos) std::abort();
  if (out[1].result == "pass" && flat.find(kRsaStart) == std::string::npos) std::abort();
  return 0;
}
