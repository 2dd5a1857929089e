// Test helper: drives an imap::Parser over an input split into pieces of a
// given size and records events in a comparable text form:
//   "CMD tag NAME args", "+" (continuation), "ERR tag BAD|TOOBIG|BAD TOOBIG[ FATAL]",
//   "RAW line". Arguments: atoms as-is, "q" for quoted, {n}bytes for
//   literals (~{n}bytes for literal8), (..) for lists.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/proto/imap/parser.hpp"

namespace moat::proto::imap::test {

inline std::string show(const Arg& a) {
  switch (a.type) {
    case Arg::Type::Atom: return a.text;
    case Arg::Type::Quoted: return "\"" + a.text + "\"";
    case Arg::Type::Literal:
      return std::string(a.literal8 ? "~{" : "{").append(std::to_string(a.text.size())).append("}").append(a.text);
    case Arg::Type::List: {
      std::string s = "(";
      for (std::size_t i = 0; i < a.list.size(); ++i) {  // piece by piece: g++ 12 -O3 -Wrestrict false positive
        if (i) s += ' ';
        s += show(a.list[i]);
      }
      return s + ")";
    }
  }
  return "?";
}

inline std::string show(const Event& e) {
  switch (e.kind) {
    case Event::Kind::Command: {
      std::string s = "CMD " + e.command.tag + " " + e.command.name;
      for (const auto& a : e.command.args) {
        s += ' ';
        s += show(a);
      }
      return s;
    }
    case Event::Kind::Continue: return "+";
    case Event::Kind::Error:
      return "ERR " + (e.tag.empty() ? std::string("*") : e.tag) +
             (e.reply == Event::Reply::TooBig      ? " TOOBIG"
              : e.reply == Event::Reply::BadTooBig ? " BAD TOOBIG"
                                                   : " BAD") +
             (e.fatal ? " FATAL" : "");
    case Event::Kind::RawLine: return "RAW " + e.text;
    case Event::Kind::NeedMore: break;
  }
  return "NEEDMORE";
}

using Evs = std::vector<std::string>;

// raw_after: when a command with this name is seen, the next line is raw.
inline Evs drive(std::string_view input, std::size_t step, ParserOptions opt = {}, std::string_view raw_after = {}) {
  Parser p(opt);
  Evs out;
  auto drain = [&] {
    for (;;) {
      Event e = p.next();
      if (e.kind == Event::Kind::NeedMore) return;
      if (e.kind == Event::Kind::Command && !raw_after.empty() && e.command.name == raw_after) p.expect_raw_line();
      out.push_back(show(e));
      if (e.fatal) return;
    }
  };
  for (std::size_t i = 0; i < input.size(); i += step) {
    p.feed(input.substr(i, step));
    drain();
    if (!out.empty() && out.back().ends_with("FATAL")) break;
  }
  drain();
  return out;
}

// The same events whatever the split: whole, byte by byte, and odd sizes.
inline Evs drive_all_splits(std::string_view input, ParserOptions opt = {}, std::string_view raw_after = {}) {
  const Evs whole = drive(input, input.size() ? input.size() : 1, opt, raw_after);
  for (std::size_t step : {1u, 2u, 3u, 7u, 13u}) {
    const Evs split = drive(input, step, opt, raw_after);
    if (split != whole) return Evs{"SPLIT MISMATCH at step " + std::to_string(step)};
  }
  return whole;
}

// One command line parsed byte by byte and whole (the two must agree);
// the command, or an empty one (name "") if it did not parse.
inline Command parse_one(std::string_view line, ParserOptions opt = {}) {
  Command whole, bytewise;
  for (std::size_t step : {line.size(), std::size_t(1)}) {
    Parser p(opt);
    Command got;
    for (std::size_t i = 0; i < line.size(); i += step) {
      p.feed(line.substr(i, step));
      for (Event e = p.next(); e.kind != Event::Kind::NeedMore; e = p.next())
        if (e.kind == Event::Kind::Command) got = e.command;
    }
    (step == 1 ? bytewise : whole) = got;
  }
  if (show(Event{Event::Kind::Command, whole, {}, {}, {}, false}) !=
      show(Event{Event::Kind::Command, bytewise, {}, {}, {}, false}))
    return Command{"", "SPLIT MISMATCH", {}};
  return whole;
}

}  // namespace moat::proto::imap::test
