// Fuzz target: moat's own DKIM signer (filters/dkim/canon.*: relaxed
// canonicalization, RFC 6376 §3.4; Ed25519, RFC 8463) on arbitrary header
// sections and bodies, such as an authenticated user may submit. Oracle: a
// round trip through an independent implementation: whatever we sign,
// libopendkim must verify, for messages with exactly one From field of plain
// "From:" spelling (libopendkim refuses messages without one) and a body
// that ends in CRLF.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/text.hpp"
#include "filters/dkim/canon.hpp"
#include "filters/dkim/dkim.hpp"
#include "filters/dkim/key.hpp"
#include "filters/dkim/opendkim.hpp"
#include "filters/dkim/signature.hpp"

using namespace moat::filters::dkim;

namespace {

struct World {
  PrivateKey key;
  std::unique_ptr<OpenDkim> lib;
  KeyAnswers keys;
  World() {
    auto k = generate_key(KeyType::Ed25519);
    auto l = OpenDkim::create(LibOptions{});
    if (!k || !l) std::abort();
    key = *k;
    lib = std::move(*l);
    keys[key_name("fz", "example.org")] = {KeyStatus::Found, "v=DKIM1; k=ed25519; p=" + key.public_b64};
  }
};

// Header lines the way moat's SMTP session passes them: CRLF only, no NUL,
// every line a field or a continuation, at most one "From:" field.
bool plain(std::string_view header) {
  // Control characters other than HTAB: libopendkim's relaxed
  // canonicalization treats \v and \f as whitespace (isspace), RFC 6376's
  // WSP is SP and HTAB only; dkimpy agrees with us there.
  for (char c : header)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f) return false;
  int from = 0;
  std::size_t pos = 0;
  while (pos < header.size()) {
    auto eol = header.find("\r\n", pos);
    if (eol == std::string_view::npos) return false;
    auto line = header.substr(pos, eol - pos);
    if (line.empty() || line.find('\r') != std::string_view::npos || line.find('\n') != std::string_view::npos)
      return false;
    if (line[0] != ' ' && line[0] != '\t') {
      auto colon = line.find(':');
      if (colon == std::string_view::npos || colon == 0) return false;
      for (char c : line.substr(0, colon))
        if (c <= ' ' || c > '~') return false;
      if (moat::iequals(line.substr(0, colon), "from")) ++from;
    } else if (pos == 0) {
      return false;
    }
    pos = eol + 2;
  }
  return from == 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World w;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto split = in.find("\r\n\r\n");
  if (split == std::string_view::npos) return 0;
  std::string_view header = in.substr(0, split + 2), body = in.substr(split + 4);
  // Bodies as the session delivers them: CRLF line ends only.
  for (std::size_t i = 0; i < body.size(); ++i)
    if ((body[i] == '\n' && (i == 0 || body[i - 1] != '\r')) || (body[i] == '\r' && (i + 1 >= body.size() || body[i + 1] != '\n')))
      return 0;
  (void)relaxed_body(body);
  // libopendkim leaves a last line without CRLF unverified (dkimpy passes
  // our signature of it); DATA always ends the message with CRLF.
  if (!plain(header) || (!body.empty() && !body.ends_with("\r\n"))) return 0;
  auto field = sign_relaxed(header, body, w.key, "example.org", "fz", kDefaultSignHeaders, 1767225600);
  if (!field) std::abort();
  const std::string signed_header = *field + std::string(header);
  auto sigs = find_signatures(signed_header, 1);
  if (sigs.size() != 1 || !sigs[0].valid) std::abort();
  auto out = w.lib->verify(signed_header, body, sigs, w.keys);
  if (out.size() != 1 || out[0].result != "pass") std::abort();
  return 0;
}
