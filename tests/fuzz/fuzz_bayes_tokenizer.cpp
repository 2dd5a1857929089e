// Fuzz target: the Bayes tokenizer's lenient MIME walk (RFC 2045/2046,
// RFC 2047 words), HTML text and URL extraction on hostile messages. Oracle:
// no crash or sanitizer report, the token cap holds, every token is
// non-empty, distinct and bounded, and the digest ignores CRLF vs LF.
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "filters/bayes/tokenizer.hpp"

using namespace moat::filters::bayes;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view msg(reinterpret_cast<const char*>(data), size);
  TokenizerLimits lim;
  lim.max_tokens = 300;
  lim.max_parts = 16;
  lim.max_depth = 4;
  auto tokens = tokenize(msg, lim);
  if (tokens.size() > lim.max_tokens) std::abort();
  std::set<std::string> seen;
  for (const auto& t : tokens) {
    if (t.empty() || t.size() > 600 || !seen.insert(t).second) std::abort();
  }
  // The same message with CRLF line ends is the same message (learned from an
  // mbox, scanned off the wire).
  if (msg.find('\r') == std::string_view::npos) {
    std::string crlf;
    for (char c : msg) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
    if (message_digest(msg) != message_digest(crlf)) std::abort();
  }
  (void)html_text(msg, nullptr, 4096);
  return 0;
}
