// Fuzz target: the IMAP command parser (RFC 9051 §9, RFC 7888 literals).
// Oracles: the same events whatever the split (whole vs. pieces sized by the
// first byte), memory bounded by the limits, and a round trip: every command
// written back (strings as non-synchronizing literals, literal8 as "~{n+}")
// parses to the same arguments.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/proto/imap/parser.hpp"

using namespace moat::proto::imap;

namespace {

ParserOptions options() {
  ParserOptions o;
  o.max_line = 1024;
  o.max_literal = 256;
  o.max_append = 2048;
  o.max_depth = 8;
  o.max_args = 200;
  o.max_raw_line = 512;
  o.max_nonsync = 1024;  // LITERAL-: larger "{n+}" up to max_append are skipped with BAD [TOOBIG]
  return o;
}

void write_arg(const Arg& a, std::string& out) {
  switch (a.type) {
    case Arg::Type::Atom: out += a.text; break;
    case Arg::Type::Quoted:
    case Arg::Type::Literal:
      out += (a.literal8 ? "~{" : "{") + std::to_string(a.text.size()) + "+}\r\n" + a.text;
      break;
    case Arg::Type::List:
      out += '(';
      for (std::size_t i = 0; i < a.list.size(); ++i) {
        if (i) out += ' ';
        write_arg(a.list[i], out);
      }
      out += ')';
      break;
  }
}

// Quoted and literal strings are the same value.
bool same(const Arg& a, const Arg& b) {
  if (a.is_list() != b.is_list() || a.is_string() != b.is_string() || a.text != b.text) return false;
  if (a.literal8 != b.literal8) return false;  // literal8 (APPEND's message) written back as "~{n+}"
  if (a.list.size() != b.list.size()) return false;
  for (std::size_t i = 0; i < a.list.size(); ++i)
    if (!same(a.list[i], b.list[i])) return false;
  return true;
}

std::string show(const Event& e) {
  std::string s = std::to_string(int(e.kind)) + e.tag + "|" + e.command.tag + e.command.name + e.text;
  if (e.kind == Event::Kind::Command) {
    Arg root;
    root.type = Arg::Type::List;
    root.list = e.command.args;
    write_arg(root, s);
  }
  return s + (e.fatal ? "F" : "");
}

std::vector<std::string> run(std::string_view in, std::size_t step, std::vector<Command>* cmds) {
  const auto opt = options();
  Parser p(opt);
  std::vector<std::string> out;
  bool dead = false;
  for (std::size_t i = 0; i < in.size() && !dead; i += step) {
    p.feed(in.substr(i, step));
    for (;;) {
      Event e = p.next();
      if (e.kind == Event::Kind::NeedMore) break;
      if (e.kind == Event::Kind::Command) {
        if (e.command.name == "AUTHENTICATE" || e.command.name == "IDLE") p.expect_raw_line();
        if (cmds) cmds->push_back(e.command);
      }
      out.push_back(show(e));
      if (e.fatal) {
        dead = true;
        break;
      }
    }
    // Bounded: a command line plus one literal, plus the last feed.
    if (p.buffered() > opt.max_line + opt.max_append + step) std::abort();
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t step = 1 + data[0] % 17;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<Command> cmds;
  const auto whole = run(in, in.size() + 1, &cmds);
  if (run(in, step, nullptr) != whole) std::abort();
  for (const auto& c : cmds) {
    if (c.name == "AUTHENTICATE" || c.name == "IDLE") continue;
    std::string text = c.tag + " " + c.name;
    for (const auto& a : c.args) {
      text += ' ';
      write_arg(a, text);
    }
    text += "\r\n";
    Parser p(options());
    p.feed(text);
    Event e = p.next();
    if (e.kind == Event::Kind::Error && e.fatal) continue;  // written form may exceed the line limit
    if (e.kind == Event::Kind::Error) continue;             // a non-sync literal may now exceed max_literal
    if (e.kind != Event::Kind::Command || e.command.tag != c.tag || e.command.name != c.name ||
        e.command.args.size() != c.args.size())
      std::abort();
    for (std::size_t i = 0; i < c.args.size(); ++i)
      if (!same(e.command.args[i], c.args[i])) std::abort();
  }
  return 0;
}
