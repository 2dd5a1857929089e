// See dotstuff.hpp.
#include "common/proto/dotstuff.hpp"

namespace moat::proto::smtp {

void DotStuffer::feed(std::string_view in, std::string& out) {
  out.reserve(out.size() + in.size() + in.size() / 64);
  const std::size_t n = in.size();
  std::size_t i = 0;
  while (i < n) {
    const char c = in[i];
    if (pending_cr_) {
      pending_cr_ = false;
      out += "\r\n";
      at_line_start_ = true;
      if (c == '\n') {  // CRLF: already emitted
        ++i;
        continue;
      }
    }
    if (c == '\r' || c == '\n') {
      if (c == '\r') pending_cr_ = true;
      else out += "\r\n";  // bare LF
      at_line_start_ = c == '\n';
      ++i;
      continue;
    }
    if (at_line_start_ && c == '.') out += '.';
    at_line_start_ = false;
    // The rest of the line goes out in one append: this is the hot loop of
    // outbound delivery.
    std::size_t j = i + 1;
    while (j < n && in[j] != '\r' && in[j] != '\n') ++j;
    out.append(in.data() + i, j - i);
    i = j;
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
