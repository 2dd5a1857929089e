// See dotstuff.hpp.
#include "common/proto/dotstuff.hpp"

#include <algorithm>
#include <cstring>

namespace moat::proto::smtp {

namespace {

const char* find(const char* p, const char* end, char c) {
  const void* hit = std::memchr(p, c, std::size_t(end - p));
  return hit ? static_cast<const char*>(hit) : end;
}

}  // namespace

// The hot loop of outbound delivery. Stored content is almost always CRLF
// lines, so whole runs of such lines are found with memchr and appended at
// once; only a line starting with '.' or a bare CR/LF takes the slow path.
// The next CR and LF positions are cached until passed, so input full of
// bare CRs stays linear.
void DotStuffer::feed(std::string_view in, std::string& out) {
  out.reserve(out.size() + in.size() + in.size() / 64);
  const char* p = in.data();
  const char* const end = p + in.size();
  const char* cr = find(p, end, '\r');
  const char* lf = find(p, end, '\n');
  // [p, lf] is one CRLF line: an LF after p, and the only CR right before it.
  auto crlf_line = [&] { return lf != end && lf != p && cr == lf - 1; };
  while (p < end) {
    if (pending_cr_) {
      pending_cr_ = false;
      out += "\r\n";
      at_line_start_ = true;
      if (*p == '\n') {  // CRLF: already emitted
        ++p;
        continue;
      }
    }
    if (at_line_start_ && *p == '.') out += '.';
    if (cr < p) cr = find(p, end, '\r');
    if (lf < p) lf = find(p, end, '\n');
    if (crlf_line()) {  // extend the run over the following CRLF lines
      const char* run = p;
      do {
        p = lf + 1;
        if (p == end || *p == '.') break;
        cr = find(p, end, '\r');
        lf = find(p, end, '\n');
      } while (crlf_line());
      out.append(run, std::size_t(p - run));
      at_line_start_ = true;
      continue;
    }
    const char* stop = std::min(cr, lf);  // text, then one bare CR or LF (or the end)
    if (stop > p) {
      out.append(p, std::size_t(stop - p));
      at_line_start_ = false;
      p = stop;
    }
    if (p == end) break;
    if (*p == '\n') {
      out += "\r\n";  // bare LF
      at_line_start_ = true;
    } else {
      pending_cr_ = true;  // CR: CRLF or bare, the next byte tells
    }
    ++p;
  }
}

void DotStuffer::finish(std::string& out) {
  if (pending_cr_) {
    pending_cr_ = false;
    out += "\r\n";
    at_line_start_ = true;
  }
  if (!at_line_start_) out += "\r\n";
  out += ".\r\n";
  at_line_start_ = true;
}

std::string dot_stuff(std::string_view message) {
  std::string out;
  DotStuffer s;
  s.feed(message, out);
  s.finish(out);
  return out;
}

}  // namespace moat::proto::smtp
