// Fuzz target: the Bayes tokenizer over the shared MIME parse (RFC 2045/2046
// structure, RFC 2047 header words, HTML tags, URLs) on hostile messages.
// Oracles: no crash or sanitizer report, the token cap holds, every token is
// non-empty, distinct and bounded; the filter's path (a parsed tree and
// per-part texts handed in) gives exactly the tokens of tokenize(message);
// and the digest ignores CRLF vs LF.
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "filters/bayes/tokenizer.hpp"

using namespace moat;
using namespace moat::filters::bayes;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view msg(reinterpret_cast<const char*>(data), size);
  TokenizerLimits lim;
  lim.max_tokens = 300;
  lim.max_parts = 16;
  lim.max_text = 16 * 1024;
  auto tokens = tokenize(msg, lim);
  if (tokens.size() > lim.max_tokens) std::abort();
  std::set<std::string> seen;
  for (const auto& t : tokens) {
    if (t.empty() || t.size() > 600 || !seen.insert(t).second) std::abort();
  }
  // What BayesFilter does with ScanContext::mime() and part_text().
  const std::string m = as_received(msg);
  const mime::Message tree = mime::parse(m);
  std::vector<std::string> texts(tree.parts.size());
  for (std::size_t i : tree.text_parts()) texts[i] = mime::part_text(m, tree.parts[i]).data;
  auto text_of = [&](std::size_t i) { return std::string_view(texts[i]); };
  if (tokenize(m, tree, text_of, lim) != tokens) std::abort();
  // The same message with CRLF line ends is the same message (learned from an
  // mbox, scanned off the wire).
  if (msg.find('\r') == std::string_view::npos) {
    std::string crlf;
    for (char c : msg) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
    if (message_digest(msg) != message_digest(crlf)) std::abort();
  }
  return 0;
}
