// Fuzz target: FETCH BINARY sections (RFC 3516, RFC 9051 §6.4.5) of arbitrary
// messages. Input: a section on the first line, the message after it.
// Oracles: BINARY[] is the message; every part number the MIME tree has is a
// valid section-binary and its data is never longer than the message
// (decoding only shrinks); the literal or literal8 it is sent as reads back
// through the IMAP parser (as an APPEND message) to the same bytes, literal8
// exactly when there is a NUL.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/proto/imap/binary.hpp"
#include "common/proto/imap/parser.hpp"

using namespace moat;
using namespace moat::proto::imap;

namespace {

// The part numbers of the tree below `part`, as find_part() reads them.
void paths(const mime::Message& m, std::size_t part, const std::string& prefix, std::vector<std::string>& out) {
  if (out.size() >= 200) return;
  std::size_t cur = part;
  if (m.parts[cur].is_message() && !m.parts[cur].children.empty()) cur = m.parts[cur].children[0];
  const auto& p = m.parts[cur];
  const std::string dot = prefix.empty() ? "" : prefix + ".";
  if (p.is_multipart()) {
    for (std::size_t i = 0; i < p.children.size() && out.size() < 200; ++i) {
      out.push_back(dot + std::to_string(i + 1));
      paths(m, p.children[i], out.back(), out);
    }
  } else if (cur != part || part == 0) {
    out.push_back(dot + "1");
  }
}

void check_literal(const std::string& data) {
  const std::string lit = literal_of(data);
  const bool nul = data.find('\0') != std::string::npos;
  if ((lit[0] == '~') != nul) std::abort();
  ParserOptions o;
  o.max_append = 1 << 24;
  Parser p(o);
  p.feed("a APPEND INBOX " + lit + "\r\n");
  Event e = p.next();
  if (e.kind == Event::Kind::Continue) e = p.next();
  if (e.kind != Event::Kind::Command || e.command.args.size() != 2) std::abort();
  const Arg& got = e.command.args.back();
  if (got.text != data || got.literal8 != nul) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto nl = in.find('\n');
  if (nl == std::string_view::npos || nl > 64) return 0;
  const std::string section(in.substr(0, nl));
  const std::string_view msg = in.substr(nl + 1);

  if (binary_section(msg, "").data != msg) std::abort();
  // any section string: no crash, bounded
  const auto any = binary_section(msg, section);
  if (any.data.size() > msg.size()) std::abort();
  if (valid_part_path(section) && !any.unknown_cte) check_literal(any.data);

  const auto parsed = mime::parse(msg);
  std::vector<std::string> all;
  paths(parsed, 0, "", all);
  for (const auto& s : all) {
    if (!valid_part_path(s)) std::abort();
    const auto b = binary_section(msg, s);
    if (b.data.size() > msg.size()) std::abort();
    if (!b.unknown_cte && s.size() < 8) check_literal(b.data);
  }
  return 0;
}
