// Fuzz target for the MIME parser (RFC 2045/2046/2047/2231). Oracles:
//  1. streaming == one call: the input fed at split points taken from the
//     first byte gives the same parts, offsets and symbols as parse();
//  2. offsets nest and stay inside the input, in document order;
//  3. a Sink sees exactly [body_begin, body_end) of every leaf, and the
//     decoded stream equals decode_part();
//  4. re-parsing one part's bytes alone gives the same subtree (relative
//     offsets, types, boundaries, filenames, line counts).
// The decoders and converters run on every leaf as well.
#include <cstdint>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <string_view>

#include "common/proto/mime/mime.hpp"

using namespace moat::mime;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

// The subtree rooted at `root`, with offsets relative to `base`.
std::string shape(const Message& m, std::size_t root, std::size_t base, bool with_symbols) {
  std::ostringstream o;
  std::vector<std::size_t> todo{root};
  while (!todo.empty()) {
    const Part& p = m.parts[todo.back()];
    todo.pop_back();
    o << p.depth - m.parts[root].depth << ' ' << p.type << '/' << p.subtype << ' ' << p.header_begin - base << ' '
      << p.header_end - base << ' ' << p.body_begin - base << ' ' << p.body_end - base << ' ' << p.lines << ' '
      << p.boundary << ' ' << p.filename << ' ' << p.message_wrapper << p.opaque << ' ' << p.fields.size() << ' '
      << p.children.size() << '\n';
    if (p.is_multipart()) o << p.preamble_end - base << ' ' << p.epilogue_begin - base << '\n';
    for (auto it = p.children.rbegin(); it != p.children.rend(); ++it) todo.push_back(*it);
  }
  if (with_symbols)
    for (const auto& a : m.anomalies) o << a.symbol << a.part << ':' << a.offset << '\n';
  return o.str();
}

struct Collect : Sink {
  std::map<std::size_t, std::string> raw, decoded;
  void on_body(const Part& p, std::string_view b) override { raw[p.index] += b; }
  void on_decoded(const Part& p, std::string_view d) override { decoded[p.index] += d; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t step = 1 + data[0] % 31;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  Limits lim;
  lim.max_parts = 64;
  lim.max_depth = 12;
  lim.max_header_bytes = 2048;
  lim.max_line_length = 200;

  const Message one = parse(in, lim);
  Collect sink;
  Parser p(lim, &sink);
  for (std::size_t i = 0; i < in.size(); i += step) p.feed(in.substr(i, step));
  const Message streamed = p.finish();
  check(shape(one, 0, 0, true) == shape(streamed, 0, 0, true));
  check(one.size == in.size());

  for (const Part& part : one.parts) {
    check(part.header_begin <= part.header_end && part.header_end <= part.body_begin);
    check(part.body_begin <= part.body_end && part.body_end <= in.size());
    if (part.parent >= 0) {
      const Part& parent = one.parts[static_cast<std::size_t>(part.parent)];
      check(part.header_begin >= parent.body_begin && part.body_end <= parent.body_end);
    }
    for (const auto& f : part.fields) check(f.begin >= part.header_begin && f.end <= part.header_end);
  }
  for (std::size_t i : one.leaves()) {
    const Part& part = one.parts[i];
    check(sink.raw[i] == in.substr(part.body_begin, part.size()));
    Decoded d = decode_part(in, part, lim.max_decoded_bytes);
    check(sink.decoded[i] == d.data);
    (void)part_text(in, part, 1 << 16);
    (void)extract_urls(d.data, part.subtype == "html", 100);
  }
  (void)one.subject();

  // Each part of a multipart, parsed alone, has the same subtree — unless a
  // limit or a multipart/digest default type makes the context matter.
  if (!one.limits_hit) {
    std::size_t checked = 0;
    for (const Part& part : one.parts) {
      if (part.parent < 0 || checked++ > 8) continue;
      const Part& parent = one.parts[static_cast<std::size_t>(part.parent)];
      if (!parent.is_multipart() || parent.subtype == "digest") continue;
      std::string_view bytes = in.substr(part.header_begin, part.body_end - part.header_begin);
      Message alone = parse(bytes, lim);
      if (alone.limits_hit) continue;
      check(shape(alone, 0, 0, false) == shape(one, part.index, part.header_begin, false));
    }
  }
  return 0;
}
