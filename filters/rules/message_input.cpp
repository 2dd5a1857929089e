// Message -> rules::Input from the shared MIME parse (see message_input.hpp).
#include "filters/rules/message_input.hpp"

#include <algorithm>
#include <map>

#include "common/text.hpp"

namespace moat::filters::rules {
namespace {

using moat::rules::ClassMask;
using moat::rules::HeaderField;
using moat::rules::Input;
using moat::rules::RuleClass;

bool wants(ClassMask m, RuleClass c) { return (m & moat::rules::class_bit(c)) != 0; }

void append(std::string& dst, std::string_view s, std::size_t cap) {
  if (dst.size() >= cap) return;
  dst.append(s.substr(0, cap - dst.size()));
}

void add_uris(std::vector<std::string>& uris, std::vector<std::string> found, std::size_t max) {
  for (auto& u : found) {
    if (uris.size() >= max) return;
    if (u.size() > 2048) continue;
    if (std::find(uris.begin(), uris.end(), u) == uris.end()) uris.push_back(std::move(u));
  }
}

}  // namespace

Input make_input(const mime::Message& tree, std::string_view message, const PartText& text,
                 const InputLimits& limits, ClassMask needs) {
  Input in;
  in.full = message;
  if (tree.parts.empty()) return in;
  // Header rules (and Subject, which body rules see first) read the top-level
  // fields: unfolded; value RFC 2047-decoded to UTF-8, raw as written.
  for (const auto& f : tree.root().fields) {
    HeaderField h;
    h.name = lower(f.name);
    h.raw = f.value();
    h.value = mime::decode_header(h.raw).data;
    in.headers.push_back(std::move(h));
  }
  const bool body = wants(needs, RuleClass::Body);
  const bool raw = wants(needs, RuleClass::RawBody);
  const bool uri = wants(needs, RuleClass::Uri);
  // SpamAssassin puts the Subject in front of the body text; rules written
  // for it expect that.
  if (body)
    for (const auto& h : in.headers)
      if (h.name == "subject") {
        in.body = h.value + "\n\n";
        break;
      }
  for (auto i : tree.text_parts()) {
    const auto& part = tree.parts[i];
    const bool html = part.subtype == "html";
    if (body || (uri && !html)) {
      const std::string& t = text(i);
      if (body) {
        append(in.body, t, limits.text_bytes);
        if (!in.body.empty() && in.body.back() != '\n') append(in.body, "\n", limits.text_bytes);
      }
      if (uri && !html) add_uris(in.uris, mime::extract_urls(t, false, limits.uris), limits.uris);
    }
    if (raw || (uri && html)) {
      // rawbody: transfer-decoded, charset and HTML kept (SpamAssassin's rawbody).
      auto decoded = mime::decode_part(message, part, limits.text_bytes);
      if (raw) append(in.rawbody, decoded.data, limits.text_bytes);
      if (uri && html) add_uris(in.uris, mime::extract_urls(decoded.data, true, limits.uris), limits.uris);
    }
  }
  return in;
}

Input make_input(std::string_view message, const InputLimits& limits) {
  const mime::Message tree = mime::parse(message);
  std::map<std::size_t, std::string> texts;
  auto text = [&](std::size_t i) -> const std::string& {
    auto it = texts.find(i);
    if (it == texts.end()) it = texts.emplace(i, mime::part_text(message, tree.parts[i]).data).first;
    return it->second;
  };
  return make_input(tree, message, text, limits);
}

}  // namespace moat::filters::rules
