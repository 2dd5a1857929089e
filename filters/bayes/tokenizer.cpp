// Tokenizer for the Bayesian classifier (see tokenizer.hpp): a small,
// lenient MIME walk (RFC 2045/2046, RFC 2047 in headers) that only needs
// the text, then words, OSB pairs, URL parts and header tokens. Lenient on
// purpose: spam is often malformed, and the malformation is itself a feature.
#include "filters/bayes/tokenizer.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <unordered_set>

#include "common/text.hpp"

namespace moat::filters::bayes {
namespace {

constexpr std::size_t kMinWord = 3;
constexpr std::size_t kMaxWord = 24;      // longer words become "sk:" + prefix (SpamAssassin's "skip")
constexpr std::size_t kMaxFieldValue = 512;
constexpr std::size_t kMaxUrlPath = 256;

// Header fields added in transit or by mailbox software: they say how the
// message travelled to us, not what it is, and an attacker can forge X-Spam-*.
bool skipped_field(std::string_view name) {
  static constexpr std::string_view kSkip[] = {"received",      "delivered-to", "return-path", "date",
                                               "status",        "x-status",     "x-keywords",  "x-uid",
                                               "content-length", "lines",       "x-bogosity",  "message-id"};
  for (auto s : kSkip)
    if (name == s) return true;
  return name.starts_with("x-spam") || name.starts_with("x-virus");
}

bool is_word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80 || c == '$' ||
         c == '\'' || c == '-' || c == '_';
}

bool is_host_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
         c == '_' || c == '@' || c == '%';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

// Case-insensitive find of an ASCII needle.
std::size_t ifind(std::string_view hay, std::string_view needle, std::size_t from = 0) {
  if (needle.size() > hay.size()) return std::string_view::npos;
  for (std::size_t i = from; i + needle.size() <= hay.size(); ++i)
    if (iequals(hay.substr(i, needle.size()), needle)) return i;
  return std::string_view::npos;
}

class Collector {
 public:
  explicit Collector(std::size_t max) : max_(max) {}
  bool full() const { return out_.size() >= max_; }
  void add(std::string tok) {
    if (full() || tok.empty()) return;
    if (seen_.insert(tok).second) out_.push_back(std::move(tok));
  }
  std::vector<std::string> take() { return std::move(out_); }

 private:
  std::size_t max_;
  std::unordered_set<std::string> seen_;
  std::vector<std::string> out_;
};

// A word as it is counted: lower case, trimmed of joiners, long ones folded.
// Empty when it is not worth a token.
std::string normalize_word(std::string_view w) {
  while (!w.empty() && (w.front() == '-' || w.front() == '\'' || w.front() == '_')) w.remove_prefix(1);
  while (!w.empty() && (w.back() == '-' || w.back() == '\'' || w.back() == '_')) w.remove_suffix(1);
  if (w.size() < kMinWord) return {};
  if (std::all_of(w.begin(), w.end(), [](char c) { return c >= '0' && c <= '9'; }) && w.size() > 4)
    return "n:" + std::to_string(w.size());
  if (w.size() > kMaxWord) return "sk:" + lower(w.substr(0, 8));
  return lower(w);
}

// Calls f(word) for each normalized word of text.
template <class F>
void for_each_word(std::string_view text, F&& f) {
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && !is_word_byte(static_cast<unsigned char>(text[i]))) ++i;
    std::size_t start = i;
    while (i < text.size() && is_word_byte(static_cast<unsigned char>(text[i]))) ++i;
    if (i > start) {
      std::string w = normalize_word(text.substr(start, i - start));
      if (!w.empty()) f(std::move(w));
    }
  }
}

bool is_ipv4_literal(std::string_view h) {
  return !h.empty() && std::all_of(h.begin(), h.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

// URL host tokens: the host, its parent domains down to two labels, and the
// pieces of the path.
void add_url(std::string_view rest, Collector& out) {
  std::size_t n = 0;
  while (n < rest.size() && n < 255 && is_host_byte(static_cast<unsigned char>(rest[n]))) ++n;
  std::string_view host = rest.substr(0, n);
  if (auto at = host.rfind('@'); at != std::string_view::npos) {  // user@host: the host decides
    out.add("u:userinfo");
    host = host.substr(at + 1);
  }
  while (!host.empty() && (host.back() == '.' || host.back() == '-')) host.remove_suffix(1);
  if (host.empty()) return;
  std::string h = lower(host);
  if (h.find('%') != std::string::npos) out.add("u:escaped-host");
  if (is_ipv4_literal(h)) {
    out.add("u:ip-literal");
    out.add("u:" + h);
  } else {
    std::string_view d = h;
    for (int labels = 0; labels < 4 && std::count(d.begin(), d.end(), '.') >= 1; ++labels) {
      out.add("u:" + std::string(d));
      d.remove_prefix(d.find('.') + 1);
    }
  }
  std::size_t end = n;
  while (end < rest.size() && end - n < kMaxUrlPath) {
    unsigned char c = static_cast<unsigned char>(rest[end]);
    if (c <= ' ' || c == '"' || c == '\'' || c == '<' || c == '>' || c >= 0x7f) break;
    ++end;
  }
  std::string_view path = rest.substr(n, end - n);
  std::size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && !std::isalnum(static_cast<unsigned char>(path[i]))) ++i;
    std::size_t s = i;
    while (i < path.size() && std::isalnum(static_cast<unsigned char>(path[i]))) ++i;
    if (i - s >= kMinWord && i - s <= 20) out.add("up:" + lower(path.substr(s, i - s)));
  }
}

void scan_urls(std::string_view text, Collector& out) {
  for (std::size_t i = 0; i < text.size() && !out.full(); ++i) {
    char c = ascii_lower(text[i]);
    if (c != 'h' && c != 'w') continue;
    std::string_view rest = text.substr(i);
    std::size_t skip = 0;
    if (rest.size() > 7 && iequals(rest.substr(0, 7), "http://")) skip = 7;
    else if (rest.size() > 8 && iequals(rest.substr(0, 8), "https://")) skip = 8;
    else if (rest.size() > 4 && iequals(rest.substr(0, 4), "www.") &&
             (i == 0 || !is_host_byte(static_cast<unsigned char>(text[i - 1]))))
      skip = 0;
    else
      continue;
    add_url(rest.substr(skip), out);
    i += skip;
  }
}

// Body text: words and orthogonal sparse bigrams over a window of three
// (pairs at distance 1 and 2), which catch phrases without the cost of
// every n-gram.
void add_text(std::string_view text, Collector& out) {
  scan_urls(text, out);
  std::string prev1, prev2;
  for_each_word(text, [&](std::string w) {
    if (!prev1.empty()) out.add("b:" + prev1 + " " + w);
    if (!prev2.empty()) out.add("b:" + prev2 + " * " + w);
    prev2 = std::move(prev1);
    prev1 = w;
    out.add(std::move(w));
  });
}

struct Field {
  std::string name;   // lower case
  std::string value;  // unfolded
};

// Header section and body at the first empty line; a message without one is
// all header (RFC 5322 §2.1).
std::pair<std::string_view, std::string_view> split_message(std::string_view m) {
  if (m.starts_with("\r\n")) return {{}, m.substr(2)};
  if (m.starts_with("\n")) return {{}, m.substr(1)};
  for (std::size_t i = 0; i < m.size(); ++i) {
    if (m[i] != '\n') continue;
    if (i + 1 < m.size() && m[i + 1] == '\n') return {m.substr(0, i + 1), m.substr(i + 2)};
    if (i + 2 < m.size() && m[i + 1] == '\r' && m[i + 2] == '\n') return {m.substr(0, i + 1), m.substr(i + 3)};
  }
  return {m, {}};
}

std::vector<Field> parse_fields(std::string_view header, std::size_t max_fields) {
  std::vector<Field> out;
  if (header.starts_with("From ")) {  // mbox separator line
    auto nl = header.find('\n');
    header = nl == std::string_view::npos ? std::string_view{} : header.substr(nl + 1);
  }
  std::size_t pos = 0;
  while (pos < header.size()) {
    std::size_t nl = header.find('\n', pos);
    std::string_view line = header.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? header.size() : nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if ((line[0] == ' ' || line[0] == '\t') && !out.empty()) {
      if (out.back().value.size() < kMaxFieldValue) out.back().value.append(" ").append(trim(line));
      continue;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon > 76) continue;
    if (out.size() >= max_fields) break;
    out.push_back(Field{lower(trim(line.substr(0, colon))), std::string(trim(line.substr(colon + 1)))});
    if (out.back().value.size() > kMaxFieldValue) out.back().value.resize(kMaxFieldValue);
  }
  return out;
}

const Field* find_field(const std::vector<Field>& fields, std::string_view name) {
  for (const auto& f : fields)
    if (f.name == name) return &f;
  return nullptr;
}

// The value of a Content-Type/Disposition parameter, quotes removed.
std::string param(std::string_view value, std::string_view name) {
  std::size_t pos = 0;
  while ((pos = ifind(value, name, pos)) != std::string_view::npos) {
    bool starts = pos == 0 || value[pos - 1] == ';' || value[pos - 1] == ' ' || value[pos - 1] == '\t';
    std::size_t eq = pos + name.size();
    while (eq < value.size() && value[eq] == ' ') ++eq;
    if (!starts || eq >= value.size() || value[eq] != '=') {
      pos += name.size();
      continue;
    }
    std::string_view v = trim(value.substr(eq + 1));
    if (!v.empty() && v.front() == '"') {
      v.remove_prefix(1);
      return std::string(v.substr(0, v.find('"')));
    }
    return std::string(trim(v.substr(0, v.find_first_of("; \t"))));
  }
  return {};
}

// RFC 2047 encoded words, decoded to their bytes (charset not converted:
// the tokens only need to be stable).
std::string decode_words(std::string_view v) {
  std::string out;
  std::size_t i = 0;
  while (i < v.size()) {
    std::size_t start = v.find("=?", i);
    if (start == std::string_view::npos) break;
    std::size_t q1 = v.find('?', start + 2);
    std::size_t q2 = q1 == std::string_view::npos ? q1 : v.find('?', q1 + 1);
    std::size_t end = q2 == std::string_view::npos ? q2 : v.find("?=", q2 + 1);
    if (end == std::string_view::npos || q2 != q1 + 2) {
      out.append(v.substr(i, start + 2 - i));
      i = start + 2;
      continue;
    }
    out.append(v.substr(i, start - i));
    std::string_view text = v.substr(q2 + 1, end - q2 - 1);
    char enc = ascii_lower(v[q1 + 1]);
    if (enc == 'b') {
      out += decode_base64_lenient(text, kMaxFieldValue);
    } else {
      std::string t(text);
      std::replace(t.begin(), t.end(), '_', ' ');
      out += decode_qp(t, kMaxFieldValue);
    }
    i = end + 2;
  }
  out.append(v.substr(std::min(i, v.size())));
  return out;
}

void add_header_fields(const std::vector<Field>& fields, Collector& out) {
  for (const auto& f : fields) {
    if (out.full()) return;
    if (skipped_field(f.name) || f.name.size() > 40) continue;
    out.add("hn:" + f.name);
    if (f.name == "content-type" || f.name == "content-transfer-encoding" || f.name == "mime-version") continue;
    std::string value = decode_words(f.value);
    if (f.name == "subject") {
      for_each_word(value, [&](std::string w) { out.add("s:" + w); });
      continue;
    }
    std::string prefix = "h" + f.name + ":";
    if (f.name == "x-mailer" || f.name == "user-agent") out.add(prefix + lower(trim(value).substr(0, 40)));
    if (auto at = value.rfind('@'); at != std::string::npos) {
      std::size_t e = at + 1;
      while (e < value.size() && is_host_byte(static_cast<unsigned char>(value[e])) && value[e] != '@') ++e;
      if (e > at + 1) out.add(prefix + "@" + lower(value.substr(at + 1, e - at - 1)));
    }
    std::string spaced = value;  // addresses split into their parts
    std::replace_if(spaced.begin(), spaced.end(), [](char c) { return c == '@' || c == '.'; }, ' ');
    for_each_word(spaced, [&](std::string w) { out.add(prefix + w); });
  }
}

class Walker {
 public:
  Walker(const TokenizerLimits& limits, Collector& out) : limits_(limits), out_(out) {}

  void message(std::string_view m, unsigned depth) {
    auto [header, body] = split_message(m);
    auto fields = parse_fields(header, limits_.max_header_fields);
    if (depth == 0) add_header_fields(fields, out_);
    entity(fields, body, depth);
  }

 private:
  void entity(const std::vector<Field>& fields, std::string_view body, unsigned depth) {
    if (++parts_ > limits_.max_parts || out_.full()) return;
    const Field* ct = find_field(fields, "content-type");
    std::string type = ct ? lower(trim(std::string_view(ct->value).substr(0, ct->value.find(';')))) : "text/plain";
    if (type.size() > 60) type.resize(60);
    out_.add("ct:" + type);
    if (ct) {
      std::string cs = lower(param(ct->value, "charset"));
      if (!cs.empty() && cs.size() <= 40) out_.add("cs:" + cs);
    }
    if (type.starts_with("multipart/")) {
      std::string boundary = ct ? param(ct->value, "boundary") : std::string();
      if (boundary.empty() || depth + 1 > limits_.max_depth) {
        out_.add(boundary.empty() ? "mime:no-boundary" : "mime:too-deep");
        return;
      }
      multipart(body, boundary, depth);
      return;
    }
    if (type == "message/rfc822") {
      if (depth + 1 <= limits_.max_depth) message(body, depth + 1);
      return;
    }
    const Field* cte = find_field(fields, "content-transfer-encoding");
    std::string enc = cte ? lower(trim(cte->value)) : "";
    if (!type.starts_with("text/") && !type.empty()) {
      attachment(fields);
      return;
    }
    std::string decoded = enc == "base64"             ? decode_base64_lenient(body, limits_.max_bytes)
                          : enc == "quoted-printable" ? decode_qp(body, limits_.max_bytes)
                                                      : std::string(body);
    if (type == "text/html") {
      scan_urls(decoded, out_);  // href targets live inside the tags html_text drops
      std::vector<std::string> tags;
      std::string text = html_text(decoded, &tags, limits_.max_bytes);
      for (auto& t : tags) out_.add("t:" + t);
      add_text(text, out_);
    } else {
      add_text(decoded, out_);
    }
  }

  void attachment(const std::vector<Field>& fields) {
    std::string name;
    if (const Field* cd = find_field(fields, "content-disposition")) name = param(cd->value, "filename");
    if (name.empty())
      if (const Field* ct = find_field(fields, "content-type")) name = param(ct->value, "name");
    auto dot = name.rfind('.');
    if (dot != std::string::npos && name.size() - dot <= 8) out_.add("fx:" + lower(name.substr(dot + 1)));
  }

  // RFC 2046 §5.1.1: parts sit between lines "--boundary"; "--boundary--" ends.
  void multipart(std::string_view body, const std::string& boundary, unsigned depth) {
    std::string delim = "--" + boundary;
    std::size_t pos = 0, part_start = std::string_view::npos;
    while (pos < body.size() && !out_.full() && parts_ < limits_.max_parts) {
      std::size_t nl = body.find('\n', pos);
      std::size_t line_end = nl == std::string_view::npos ? body.size() : nl;
      std::string_view line = body.substr(pos, line_end - pos);
      std::size_t next = nl == std::string_view::npos ? body.size() : nl + 1;
      if (line.starts_with(delim)) {
        if (part_start != std::string_view::npos) message_part(body.substr(part_start, pos - part_start), depth);
        if (line.substr(delim.size()).starts_with("--")) return;
        part_start = next;
      }
      pos = next;
    }
    if (part_start != std::string_view::npos && part_start < body.size())
      message_part(body.substr(part_start), depth);  // unterminated: the last part runs to the end
  }

  void message_part(std::string_view part, unsigned depth) {
    auto [header, body] = split_message(part);
    entity(parse_fields(header, limits_.max_header_fields), body, depth + 1);
  }

  const TokenizerLimits& limits_;
  Collector& out_;
  unsigned parts_ = 0;
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = ascii_lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

constexpr std::uint64_t kFnvOffset = 14695981039346656037ull;
constexpr std::uint64_t kFnvPrime = 1099511628211ull;

std::uint64_t fnv(std::uint64_t h, std::string_view s) {
  for (unsigned char c : s) h = (h ^ c) * kFnvPrime;
  return h;
}

}  // namespace

std::string decode_base64_lenient(std::string_view in, std::size_t max_out) {
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    if (c == '=') break;
    int v = b64_value(c);
    if (v < 0) continue;
    acc = (acc << 6) | std::uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (out.size() >= max_out) break;
      out.push_back(char((acc >> bits) & 0xff));
    }
  }
  return out;
}

std::string decode_qp(std::string_view in, std::size_t max_out) {
  std::string out;
  for (std::size_t i = 0; i < in.size() && out.size() < max_out; ++i) {
    if (in[i] != '=') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 1 < in.size() && in[i + 1] == '\n') {  // soft line break
      ++i;
    } else if (i + 2 < in.size() && in[i + 1] == '\r' && in[i + 2] == '\n') {
      i += 2;
    } else if (i + 2 < in.size() && hex_value(in[i + 1]) >= 0 && hex_value(in[i + 2]) >= 0) {
      out.push_back(char(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2])));
      i += 2;
    } else {
      out.push_back('=');
    }
  }
  return out;
}

std::string html_text(std::string_view html, std::vector<std::string>* tags, std::size_t max_out) {
  std::string out;
  std::size_t i = 0;
  auto add_tag = [&](std::string t) {
    if (tags && tags->size() < 64 && std::find(tags->begin(), tags->end(), t) == tags->end()) tags->push_back(t);
  };
  while (i < html.size() && out.size() < max_out) {
    char c = html[i];
    if (c == '<') {
      if (html.substr(i).starts_with("<!--")) {
        auto e = html.find("-->", i + 4);
        i = e == std::string_view::npos ? html.size() : e + 3;
        out.push_back(' ');
        continue;
      }
      std::size_t j = i + 1;
      bool closing = j < html.size() && html[j] == '/';
      if (closing) ++j;
      std::size_t s = j;
      while (j < html.size() && j - s < 12 && std::isalnum(static_cast<unsigned char>(html[j]))) ++j;
      std::string name = lower(html.substr(s, j - s));
      if (!name.empty()) add_tag(name);
      auto gt = html.find('>', j);
      i = gt == std::string_view::npos ? html.size() : gt + 1;
      if (!closing && (name == "script" || name == "style")) {
        auto e = ifind(html, "</" + name, i);
        i = e == std::string_view::npos ? html.size() : e;
      }
      out.push_back(' ');
      continue;
    }
    if (c == '&') {
      auto semi = html.find(';', i);
      if (semi != std::string_view::npos && semi - i <= 8) {
        std::string ent = lower(html.substr(i + 1, semi - i - 1));
        char repl = ' ';
        if (ent == "amp") repl = '&';
        else if (ent == "lt") repl = '<';
        else if (ent == "gt") repl = '>';
        else if (ent == "quot") repl = '"';
        else if (ent.size() > 1 && ent[0] == '#' && std::all_of(ent.begin() + 1, ent.end(), [](char d) { return d >= '0' && d <= '9'; })) {
          long v = std::strtol(ent.c_str() + 1, nullptr, 10);
          if (v > 32 && v < 127) repl = char(v);
        }
        out.push_back(repl);
        i = semi + 1;
        continue;
      }
    }
    out.push_back(c);
    ++i;
  }
  return out;
}

std::vector<std::string> tokenize(std::string_view message, const TokenizerLimits& limits) {
  Collector out(limits.max_tokens);
  Walker(limits, out).message(message.substr(0, limits.max_bytes), 0);
  return out.take();
}

std::uint64_t token_hash(std::string_view token) { return fnv(kFnvOffset, token); }

std::uint64_t message_digest(std::string_view message) {
  auto [header, body] = split_message(message);
  auto fields = parse_fields(header, 1000);
  std::uint64_t h = kFnvOffset;
  if (const Field* id = find_field(fields, "message-id")) h = fnv(h, trim(id->value));
  h = fnv(h, std::string_view("\0", 1));
  for (unsigned char c : body)
    if (c != '\r') h = (h ^ c) * kFnvPrime;
  return h;
}

}  // namespace moat::filters::bayes
