// Tokenizer for the Bayesian classifier (see tokenizer.hpp): walks the parts
// the shared MIME parser found (RFC 2045/2046) and turns their decoded text,
// header fields (RFC 5322, RFC 2047) and URLs into tokens. Never decodes on
// its own; malformations the parser reports are themselves features.
#include "filters/bayes/tokenizer.hpp"

#include <algorithm>
#include <unordered_set>

#include "common/text.hpp"

namespace moat::filters::bayes {
namespace {

constexpr std::size_t kMinWord = 3;
constexpr std::size_t kMaxWord = 24;  // longer words become "sk:" + prefix (SpamAssassin's "skip")
constexpr std::size_t kMaxFieldValue = 512;
constexpr std::size_t kMaxUrls = 200;
constexpr std::size_t kMaxTags = 200;

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

bool is_alnum(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

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

// A word in capitals ("FREE", "ACT NOW"): shouting is a spam habit that
// case folding would hide.
bool shouted(std::string_view w) {
  if (w.size() < 4) return false;
  bool letters = false;
  for (unsigned char c : w) {
    if (c >= 'a' && c <= 'z') return false;
    letters = letters || (c >= 'A' && c <= 'Z');
  }
  return letters;
}

// Calls f(word, raw) for each normalized word of text.
template <class F>
void for_each_word(std::string_view text, F&& f) {
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && !is_word_byte(static_cast<unsigned char>(text[i]))) ++i;
    std::size_t start = i;
    while (i < text.size() && is_word_byte(static_cast<unsigned char>(text[i]))) ++i;
    if (i > start) {
      std::string_view raw = text.substr(start, i - start);
      std::string w = normalize_word(raw);
      if (!w.empty()) f(std::move(w), raw);
    }
  }
}

bool is_ipv4_literal(std::string_view h) {
  return !h.empty() && std::all_of(h.begin(), h.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

// URL tokens from a URL mime::extract_urls normalised ("scheme://host/path",
// host lower case): the host, its parent domains down to two labels, and the
// pieces of the path.
void add_url(std::string_view url, Collector& out) {
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return;  // mailto: and the like: the address is in the text already
  std::string_view rest = url.substr(scheme_end + 3);
  std::size_t host_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, host_end);
  std::string_view path = host_end == std::string_view::npos ? std::string_view{} : rest.substr(host_end);
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {  // user@host: the host decides
    out.add("u:userinfo");
    authority = authority.substr(at + 1);
  }
  std::string_view host = authority.substr(0, authority.find(':'));
  while (!host.empty() && (host.back() == '.' || host.back() == '-')) host.remove_suffix(1);
  if (host.empty() || host.size() > 255) return;
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
  path = path.substr(0, 256);
  std::size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && !is_alnum(static_cast<unsigned char>(path[i]))) ++i;
    std::size_t s = i;
    while (i < path.size() && is_alnum(static_cast<unsigned char>(path[i]))) ++i;
    if (i - s >= kMinWord && i - s <= 20) out.add("up:" + lower(path.substr(s, i - s)));
  }
}

// Runs of "!" and "$" amounts: bogofilter and SpamAssassin keep punctuation
// that words alone lose.
void add_punctuation(std::string_view text, Collector& out) {
  for (std::size_t i = 0; i < text.size();) {
    if (text[i] != '!') {
      ++i;
      continue;
    }
    std::size_t s = i;
    while (i < text.size() && text[i] == '!') ++i;
    out.add(i - s >= 3 ? "p:!!!" : i - s == 2 ? "p:!!" : "p:!");
  }
}

// Body text: words and orthogonal sparse bigrams over a window of three
// (pairs at distance 1 and 2), which catch phrases without the cost of
// every n-gram.
void add_text(std::string_view text, Collector& out) {
  std::string prev1, prev2;
  add_punctuation(text, out);
  for_each_word(text, [&](std::string w, std::string_view raw) {
    if (!prev1.empty()) out.add("b:" + prev1 + " " + w);
    if (!prev2.empty()) out.add("b:" + prev2 + " * " + w);
    if (shouted(raw)) out.add("uc:" + w);
    prev2 = std::move(prev1);
    prev1 = w;
    out.add(std::move(w));
  });
}

// Tag names and a few attribute names of raw HTML ("t:font", "ta:font:color"):
// the markup spam uses (colours, sizes, images, forms) is a feature even when
// its text is harmless. Only names are read; html_to_text gives the text.
void add_html_tags(std::string_view html, Collector& out) {
  std::size_t seen = 0;
  for (std::size_t i = html.find('<'); i != std::string_view::npos && seen < kMaxTags; i = html.find('<', i)) {
    ++i;
    if (i < html.size() && html[i] == '/') ++i;
    std::size_t s = i;
    while (i < html.size() && i - s < 12 && is_alnum(static_cast<unsigned char>(html[i]))) ++i;
    if (i == s) continue;
    ++seen;
    std::string name = lower(html.substr(s, i - s));
    out.add("t:" + name);
    std::size_t end = html.find('>', i);
    std::string_view attrs = html.substr(i, end == std::string_view::npos ? 256 : std::min<std::size_t>(end - i, 256));
    for (std::size_t k = 0; k < attrs.size();) {
      while (k < attrs.size() && !is_alnum(static_cast<unsigned char>(attrs[k]))) ++k;
      std::size_t a = k;
      while (k < attrs.size() && (is_alnum(static_cast<unsigned char>(attrs[k])) || attrs[k] == '-')) ++k;
      if (k < attrs.size() && attrs[k] == '=' && k - a <= 16) out.add("ta:" + name + ":" + lower(attrs.substr(a, k - a)));
      // Skip the value so words inside it are not read as attribute names.
      if (k < attrs.size() && attrs[k] == '=') {
        ++k;
        char q = k < attrs.size() ? attrs[k] : ' ';
        if (q == '"' || q == '\'') {
          auto close = attrs.find(q, k + 1);
          k = close == std::string_view::npos ? attrs.size() : close + 1;
        } else {
          while (k < attrs.size() && attrs[k] != ' ' && attrs[k] != '\t') ++k;
        }
      }
    }
    if (end == std::string_view::npos) break;
    i = end;
  }
}

void add_header_fields(const mime::Part& root, const TokenizerLimits& limits, Collector& out) {
  std::size_t n = 0;
  for (const auto& f : root.fields) {
    if (out.full() || ++n > limits.max_header_fields) return;
    std::string name = lower(f.name);
    if (skipped_field(name) || name.size() > 40) continue;
    out.add("hn:" + name);
    if (name.starts_with("content-") || name == "mime-version") continue;  // the MIME tokens cover them
    std::string unfolded = f.value();
    unfolded.resize(std::min(unfolded.size(), 2 * kMaxFieldValue));
    std::string value = mime::decode_header(unfolded, kMaxFieldValue).data;
    if (name == "subject") {
      add_punctuation(value, out);
      for_each_word(value, [&](std::string w, std::string_view raw) {
        if (shouted(raw)) out.add("s:uc:" + w);
        out.add("s:" + w);
      });
      continue;
    }
    std::string prefix = "h" + name + ":";
    if (name == "x-mailer" || name == "user-agent") out.add(prefix + lower(value.substr(0, 40)));
    if (auto at = value.rfind('@'); at != std::string::npos) {
      std::size_t e = at + 1;
      while (e < value.size() && (is_alnum(static_cast<unsigned char>(value[e])) || value[e] == '.' || value[e] == '-'))
        ++e;
      if (e > at + 1) out.add(prefix + "@" + lower(value.substr(at + 1, e - at - 1)));
    }
    std::string spaced = value;  // addresses split into their parts
    std::replace_if(spaced.begin(), spaced.end(), [](char c) { return c == '@' || c == '.'; }, ' ');
    for_each_word(spaced, [&](std::string w, std::string_view) { out.add(prefix + w); });
  }
}

// One token per part for its type, charset and transfer encoding, the
// attachment extensions, and one per malformation the parser reported.
void add_structure(const mime::Message& tree, const TokenizerLimits& limits, Collector& out) {
  for (std::size_t i = 0; i < tree.parts.size() && i < limits.max_parts; ++i) {
    const auto& p = tree.parts[i];
    out.add("ct:" + p.mime_type().substr(0, 60));
    if (!p.charset.empty() && p.charset.size() <= 40) out.add("cs:" + p.charset);
    if (!p.cte.empty() && p.cte.size() <= 20) out.add("cte:" + p.cte);
    if (p.attachment()) {
      auto dot = p.filename.rfind('.');
      if (dot != std::string::npos && p.filename.size() - dot <= 8) out.add("fx:" + lower(p.filename.substr(dot + 1)));
    }
  }
  if (tree.parts.size() > limits.max_parts) out.add("mime:many-parts");
  for (auto s : tree.symbols()) out.add("ma:" + std::string(s));
}

void add_body(std::string_view message, const mime::Message& tree, const TextOf& text_of,
              const TokenizerLimits& limits, Collector& out) {
  std::size_t budget = limits.max_text, parts = 0;
  for (std::size_t i : tree.text_parts()) {
    if (out.full() || budget == 0 || ++parts > limits.max_parts) return;
    const auto& part = tree.parts[i];
    std::string_view text = text_of(i);
    text = text.substr(0, budget);
    budget -= text.size();
    if (part.subtype == "html") {
      // The markup and href targets live in the raw HTML, which part_text drops.
      std::string html = mime::decode_part(message, part, limits.max_text).data;
      add_html_tags(html, out);
      for (const auto& u : mime::extract_urls(html, true, kMaxUrls)) add_url(u, out);
    } else {
      for (const auto& u : mime::extract_urls(text, false, kMaxUrls)) add_url(u, out);
    }
    add_text(text, out);
  }
}

constexpr std::uint64_t kFnvOffset = 14695981039346656037ull;
constexpr std::uint64_t kFnvPrime = 1099511628211ull;

std::uint64_t fnv(std::uint64_t h, std::string_view s) {
  for (unsigned char c : s) h = (h ^ c) * kFnvPrime;
  return h;
}

}  // namespace

std::vector<std::string> tokenize(std::string_view message, const mime::Message& tree, const TextOf& text_of,
                                  const TokenizerLimits& limits) {
  Collector out(limits.max_tokens);
  if (tree.parts.empty()) return out.take();
  add_header_fields(tree.root(), limits, out);
  add_structure(tree, limits, out);
  add_body(message, tree, text_of, limits, out);
  return out.take();
}

std::vector<std::string> tokenize(std::string_view message, const TokenizerLimits& limits) {
  std::string m = as_received(message);
  mime::Message tree = mime::parse(m);
  std::string text;  // one part at a time: the tokenizer is done with a text before it asks for the next
  auto text_of = [&](std::size_t i) -> std::string_view {
    text = mime::part_text(m, tree.parts[i]).data;  // uncapped like ScanContext::part_text: same tokens
    return text;
  };
  return tokenize(m, tree, text_of, limits);
}

std::string as_received(std::string_view m) {
  if (m.starts_with("From ")) {
    auto nl = m.find('\n');
    m = nl == std::string_view::npos ? std::string_view{} : m.substr(nl + 1);
  }
  std::string out;
  out.reserve(m.size() + m.size() / 32);
  for (std::size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r')) out += '\r';
    out += m[i];
  }
  return out;
}

std::uint64_t token_hash(std::string_view token) { return fnv(kFnvOffset, token); }

std::uint64_t message_digest(std::string_view message, const mime::Message& tree) {
  std::uint64_t h = kFnvOffset;
  h = fnv(h, tree.message_id());  // unfolded and trimmed by the parser
  h = fnv(h, std::string_view("\0", 1));
  std::string_view body = tree.parts.empty() ? message : message.substr(std::min(tree.root().body_begin, message.size()));
  for (unsigned char c : body)
    if (c != '\r') h = (h ^ c) * kFnvPrime;
  return h;
}

std::uint64_t message_digest(std::string_view message) {
  std::string m = as_received(message);
  return message_digest(m, mime::parse(m));
}

}  // namespace moat::filters::bayes
