// Leaves for the content scanners (see leaves.hpp): the shared parse, then
// a lenient second reading of what it did not read as parts.
#include "filters/attachments/leaves.hpp"

#include <algorithm>
#include <optional>

namespace moat::filters::attachments {
namespace {

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Bodies kept as they are in the message: nothing to undo.
bool identity(mime::Encoding e) {
  return e == mime::Encoding::SevenBit || e == mime::Encoding::EightBit || e == mime::Encoding::Binary ||
         e == mime::Encoding::Unknown;
}

// [begin, end) of s, clamped: offsets come from a parse of these very bytes,
// but a bad offset must cost a part, not memory safety.
std::string_view slice(std::string_view s, std::size_t begin, std::size_t end) {
  begin = std::min(begin, s.size());
  end = std::clamp(end, begin, s.size());
  return s.substr(begin, end - begin);
}

// Next line of s from pos, without its line end; pos moves past it.
std::string_view next_line(std::string_view s, std::size_t& pos) {
  auto nl = s.find('\n', pos);
  std::size_t end = nl == std::string_view::npos ? s.size() : nl;
  auto line = s.substr(pos, end - pos);
  pos = nl == std::string_view::npos ? s.size() : nl + 1;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// A segment that opens with a header field: "Name: value", "Name : value"
// (RFC 5322 §4.5 obsolete syntax) or "Name(comment): value", which mail
// clients forgive, so the second reading does too. A line of prose with a
// colon ("This list is sponsored by: ...") is not one.
bool opens_with_field(std::string_view seg) {
  std::size_t pos = 0;
  const auto line = next_line(seg, pos);
  std::size_t i = 0;
  while (i < line.size() && line[i] > 0x20 && line[i] < 0x7f && line[i] != ':' && line[i] != '(') ++i;
  if (i == 0) return false;
  auto skip_blanks = [&] {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  };
  skip_blanks();
  if (i < line.size() && line[i] == '(') {
    auto close = line.find(')', i);
    if (close == std::string_view::npos) return false;
    i = close + 1;
    skip_blanks();
  }
  return i < line.size() && line[i] == ':';
}

// Cheap test before walking a region line by line: any line starting "--"?
bool may_hold_delimiter(std::string_view text) {
  return text.starts_with("--") || text.find("\n--") != std::string_view::npos;
}

class Walker {
 public:
  Walker(const LeafLimits& limits, Leaves& out) : limits_(limits), out_(out) {}

  // Every leaf of `tree` (a parse of `bytes`), then the regions it did not
  // read as parts. `depth` is where tree's root sits in the whole message.
  void message(std::string_view bytes, const mime::Message& tree, unsigned depth, unsigned reparse, bool hidden) {
    if (tree.limits_hit) note("MIME nesting, part count or header size over the parser's limits");
    for (const auto& p : tree.parts) {
      if (stopped_) return;
      const unsigned d = depth + unsigned(p.depth);
      if (p.is_multipart()) {
        // A second boundary's parts hide here (ClamAV PR #1720).
        region(slice(bytes, p.preamble_begin, p.preamble_end), d + 1, reparse + 1);
        region(slice(bytes, p.epilogue_begin, p.body_end), d + 1, reparse + 1);
      } else if (!p.message_wrapper) {
        leaf(bytes, p, d, reparse, hidden);
      }
    }
  }

 private:
  void leaf(std::string_view bytes, const mime::Part& p, unsigned depth, unsigned reparse, bool hidden) {
    Leaf l{p.filename, p.mime_type(), {}, depth, !identity(p.encoding), hidden};
    const std::string_view raw = slice(bytes, p.body_begin, p.body_end);
    if (budget() == 0 && !raw.empty()) return stop("decoded parts over " + std::to_string(limits_.max_bytes) + " bytes");
    bool capped = false;
    if (l.decoded) {
      auto d = mime::decode_part(bytes, p, budget());
      capped = d.capped;
      l.body = std::move(d.data);
    } else {
      l.body.assign(raw.substr(0, budget()));
      capped = l.body.size() < raw.size();
    }
    const bool encoded_composite = l.decoded && p.opaque && (p.type == "multipart" || p.type == "message");
    // The parts inside are read from a copy: the leaf's own string moves on.
    std::string inner = encoded_composite ? l.body : std::string();
    add(std::move(l));
    if (capped) return stop("decoded parts over " + std::to_string(limits_.max_bytes) + " bytes");
    if (identity(p.encoding)) return region(raw, depth + 1, reparse + 1);
    if (!encoded_composite) return;
    // base64 message/rfc822 or multipart: readable once decoded.
    if (reparse + 1 > limits_.max_reparse)
      return note("encoded messages nested deeper than " + std::to_string(limits_.max_reparse));
    message(inner, mime::parse(inner), depth + 1, reparse + 1, hidden);
  }

  // The lenient split: every "--TOKEN" line delimits; the line end before a
  // delimiter belongs to it (RFC 2046 §5.1.1).
  void region(std::string_view text, unsigned depth, unsigned reparse) {
    if (!may_hold_delimiter(text)) return;
    std::size_t pos = 0;
    std::optional<std::size_t> start;
    while (pos < text.size() && !stopped_) {
      const std::size_t line_start = pos;
      if (!is_any_delimiter(next_line(text, pos))) continue;
      if (start) segment(text.substr(*start, line_start - *start), depth, reparse);
      start = pos;
    }
    if (start && !stopped_) segment(text.substr(*start), depth, reparse);
  }

  void segment(std::string_view seg, unsigned depth, unsigned reparse) {
    if (seg.ends_with("\r\n")) seg.remove_suffix(2);
    else if (seg.ends_with("\n")) seg.remove_suffix(1);
    if (!opens_with_field(seg)) return;
    if (reparse > limits_.max_reparse)
      return note("MIME segments nested deeper than " + std::to_string(limits_.max_reparse));
    message(seg, mime::parse(seg), depth, reparse, true);
  }

  std::size_t budget() const { return bytes_ >= limits_.max_bytes ? 0 : limits_.max_bytes - bytes_; }

  void add(Leaf l) {
    if (out_.parts.size() >= limits_.max_parts) return stop("more than " + std::to_string(limits_.max_parts) + " MIME parts");
    bytes_ += l.body.size();
    out_.parts.push_back(std::move(l));
  }

  // A limit that cut something short; the walk goes on where it can.
  void note(std::string what) {
    if (out_.limit.empty()) out_.limit = std::move(what);
  }
  void stop(std::string what) {
    note(std::move(what));
    stopped_ = true;
  }

  const LeafLimits& limits_;
  Leaves& out_;
  std::size_t bytes_ = 0;
  bool stopped_ = false;
};

}  // namespace

bool is_any_delimiter(std::string_view line) {
  if (line.size() < 3 || line.size() > 200 || !line.starts_with("--")) return false;
  auto rest = line.substr(2);
  while (!rest.empty() && is_blank(rest.front())) rest.remove_prefix(1);
  while (!rest.empty() && is_blank(rest.back())) rest.remove_suffix(1);
  return !rest.empty() && std::none_of(rest.begin(), rest.end(), is_blank);
}

LeafLimits leaf_limits(std::uint64_t message_size) {
  LeafLimits l;
  l.max_bytes = std::size_t(2 * message_size + (1u << 20));
  return l;
}

Leaves collect_leaves(std::string_view message, const mime::Message& tree, const LeafLimits& limits) {
  Leaves out;
  Walker(limits, out).message(message, tree, 0, 0, false);
  return out;
}

}  // namespace moat::filters::attachments
