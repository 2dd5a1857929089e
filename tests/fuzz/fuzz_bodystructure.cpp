// Fuzz target: BODYSTRUCTURE and ENVELOPE of arbitrary messages (RFC 9051
// §7.5.2). Round trip: the generated text is read back by the IMAP parser
// (common/proto/imap/parser.hpp) as one balanced list, written again and
// read again to the same tree; every number in it is within the message.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/proto/imap/parser.hpp"
#include "common/proto/imap/structure.hpp"

using namespace moat;
using namespace moat::proto::imap;

namespace {

void write(const Arg& a, std::string& out) {
  switch (a.type) {
    case Arg::Type::Atom: out += a.text; break;
    case Arg::Type::Quoted:
    case Arg::Type::Literal: append_string(out, a.text); break;
    case Arg::Type::List:
      out += '(';
      for (std::size_t i = 0; i < a.list.size(); ++i) {
        if (i) out += ' ';
        write(a.list[i], out);
      }
      out += ')';
      break;
  }
}

Arg read_back(const std::string& text) {
  ParserOptions o;
  o.max_line = 1 << 24;
  o.max_literal = 1 << 24;
  o.max_args = 1 << 20;
  o.max_depth = 1000;
  Parser p(o);
  p.feed("x X " + text + "\r\n");
  for (;;) {
    Event e = p.next();
    if (e.kind == Event::Kind::Continue) continue;
    if (e.kind != Event::Kind::Command || e.command.args.size() != 1 || !e.command.args[0].is_list()) std::abort();
    return e.command.args[0];
  }
}

void check_sizes(const Arg& a, std::size_t limit) {
  for (const auto& c : a.list) {
    if (c.type == Arg::Type::Atom && !c.is_nil()) {
      if (c.text.find_first_not_of("0123456789") != std::string::npos) std::abort();  // only numbers are atoms
      if (c.text.size() > 20 || std::stoull(c.text) > limit) std::abort();
    }
    if (c.is_list()) check_sizes(c, limit);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  mime::Limits lim;
  lim.max_depth = 20;  // deeper trees are valid too, but keep the recursion of the writer test-sized
  const auto msg = mime::parse(raw, lim);
  for (bool extended : {false, true}) {
    const std::string bs = body_structure(msg, raw, extended);
    const Arg list = read_back(bs);
    // Written again (with SP between all items) and read back once more,
    // the tree must be the same.
    std::string again, third;
    write(list, again);
    write(read_back(again), third);
    if (again != third) std::abort();
    check_sizes(list, size);
  }
  const std::string env = envelope(msg);
  const Arg e = read_back(env);
  if (e.list.size() != 10) std::abort();
  // Folded header values are sent as literals (as Dovecot does), so the
  // text may differ in form; written once more it must be stable.
  std::string again, third;
  write(e, again);
  write(read_back(again), third);
  if (third != again) std::abort();
  return 0;
}
