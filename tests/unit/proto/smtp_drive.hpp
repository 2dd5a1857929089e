// Test helper: drives a Parser the way the session does (DATA -> start_data,
// BDAT -> start_bdat) over an input split at chosen points, and records the
// events in a comparable form, merging adjacent DataChunks.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/proto/smtp_parser.hpp"

namespace moat::proto::smtp::test {

inline std::vector<std::string> drive(std::string_view input, std::size_t step, ParserOptions opt = {},
                                      std::size_t* left = nullptr) {
  Parser p(opt);
  std::vector<std::string> evs;
  bool last_was_chunk = false;
  auto drain = [&] {
    for (;;) {
      Event e = p.next();
      if (e.kind == Event::Kind::NeedMore) return;
      if (e.kind == Event::Kind::DataChunk) {
        REQUIRE(!e.data.empty());
        if (last_was_chunk) evs.back() += std::string(e.data);
        else evs.push_back("CHUNK " + std::string(e.data));
        last_was_chunk = true;
        continue;
      }
      last_was_chunk = false;
      switch (e.kind) {
        case Event::Kind::Command: {
          std::string s = "CMD " + std::string(verb_name(e.command.verb));
          if (e.command.verb == Verb::Mail || e.command.verb == Verb::Rcpt) s += " <" + e.command.path + ">";
          for (const auto& prm : e.command.params) s += " " + prm.keyword + (prm.has_value ? "=" + prm.value : "");
          evs.push_back(s);
          if (e.command.verb == Verb::Data) p.start_data();
          if (e.command.verb == Verb::Bdat) p.start_bdat(e.command.bdat_size, e.command.bdat_last);
          break;
        }
        case Event::Kind::CommandError: evs.push_back("CERR " + std::string(errc_name(e.error.code))); break;
        case Event::Kind::DataEnd: evs.push_back("END"); break;
        case Event::Kind::DataError: evs.push_back("DERR " + std::string(errc_name(e.error.code))); break;
        case Event::Kind::BdatChunkEnd: evs.push_back(e.last_chunk ? "BEND LAST" : "BEND"); break;
        default: break;
      }
      REQUIRE(p.message_size() <= opt.max_message);
    }
  };
  for (std::size_t i = 0; i < input.size(); i += step) {
    p.feed(input.substr(i, step));
    drain();
    // bounded memory: after draining only part of one line may stay
    REQUIRE(p.buffered() < opt.max_line);
  }
  drain();
  if (left) *left = p.buffered();
  return evs;
}

// The events must not depend on how the bytes were split.
inline std::vector<std::string> drive_all_splits(std::string_view input, ParserOptions opt = {}) {
  const auto whole = drive(input, input.size() ? input.size() : 1, opt);
  for (std::size_t step : {1, 2, 3, 5, 7, 13, 64, 1000}) {
    INFO("split step " << step);
    REQUIRE(drive(input, step, opt) == whole);
  }
  return whole;
}

using Evs = std::vector<std::string>;

}  // namespace moat::proto::smtp::test
