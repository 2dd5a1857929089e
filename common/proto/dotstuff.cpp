// See dotstuff.hpp.
#include "common/proto/dotstuff.hpp"

namespace moat::proto::smtp {

void DotStuffer::feed(std::string_view in, std::string& out) {
  out.reserve(out.size() + in.size() + in.size() / 64);
  for (char c : in) {
    if (pending_cr_) {
      pending_cr_ = false;
      out += "\r\n";
      at_line_start_ = true;
      if (c == '\n') continue;  // CRLF: already emitted
    }
    if (c == '\r') {
      pending_cr_ = true;
      continue;
    }
    if (c == '\n') {  // bare LF
      out += "\r\n";
      at_line_start_ = true;
      continue;
    }
    if (at_line_start_ && c == '.') out += '.';
    at_line_start_ = false;
    out += c;
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
