// Builds what rules look at (rules::Input) from a raw message: unfolded and
// RFC 2047-decoded header fields (RFC 5322 §2.2.3, RFC 2047), MIME parts
// walked (RFC 2045/2046) with base64 and quoted-printable undone, HTML
// rendered to text, URIs collected. A deliberately small decoder of its own
// until the shared MIME parser lands; limits keep hostile input cheap.
#pragma once

#include <string>
#include <string_view>

#include "rules/ruleset.hpp"

namespace moat::filters::rules {

struct InputLimits {
  std::size_t text_bytes = 2 * 1024 * 1024;  // body and rawbody each; the rest is not scanned
  unsigned depth = 20;                       // MIME nesting
  unsigned parts = 200;
  std::size_t uris = 1000;
};

moat::rules::Input make_input(std::string_view message, const InputLimits& limits = {});

// Pieces, public for tests.
std::string decode_base64_lenient(std::string_view in);
std::string decode_qp(std::string_view in);
std::string decode_rfc2047(std::string_view value);
std::string html_to_text(std::string_view html, std::vector<std::string>* uris = nullptr, std::size_t max_uris = 1000);

}  // namespace moat::filters::rules
