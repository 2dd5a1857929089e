// See structure.hpp (RFC 9051 §7.5.2 body/envelope syntax, RFC 5322 §3.4
// address lists, RFC 2045 §5 Content-Type, RFC 2231 parameter
// continuations, RFC 2183 Content-Disposition, RFC 3282 Content-Language).
#include "common/proto/imap/structure.hpp"

#include <algorithm>
#include <cctype>

namespace moat::proto::imap {
namespace {

constexpr std::string_view kNil = "NIL";

// ------------------------------------------------------------ lexing ---
// RFC 5322 structured-field tokens: atoms (here any run of non-special
// printable bytes, so 8-bit text survives), quoted strings, comments,
// domain literals and single specials.
struct Token {
  enum class Kind { Atom, Quoted, Comment, Literal, Special, End } kind = Kind::End;
  std::string text;
  char special = 0;
  bool space_before = false;
};

class Lexer {
 public:
  Lexer(std::string_view s, std::string_view specials) : s_(s), specials_(specials) {}

  Token next() {
    Token t;
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r' || s_[i_] == '\n')) {
      ++i_;
      t.space_before = true;
    }
    if (i_ >= s_.size()) return t;
    const char c = s_[i_];
    if (c == '"') {
      t.kind = Token::Kind::Quoted;
      ++i_;
      while (i_ < s_.size() && s_[i_] != '"') {
        if (s_[i_] == '\\' && i_ + 1 < s_.size()) ++i_;
        if (s_[i_] != '\r' && s_[i_] != '\n') t.text.push_back(s_[i_]);
        ++i_;
      }
      ++i_;
    } else if (c == '(') {
      t.kind = Token::Kind::Comment;
      int depth = 0;
      for (; i_ < s_.size(); ++i_) {
        const char d = s_[i_];
        if (d == '\\' && i_ + 1 < s_.size()) {
          t.text.push_back(s_[++i_]);
          continue;
        }
        if (d == '(' && depth++ == 0) continue;
        if (d == ')' && --depth == 0) {
          ++i_;
          break;
        }
        if (d != '\r' && d != '\n') t.text.push_back(d);
      }
    } else if (c == '[' && specials_.find('[') != std::string_view::npos) {
      t.kind = Token::Kind::Literal;
      while (i_ < s_.size() && s_[i_] != ']') t.text.push_back(s_[i_++]);
      if (i_ < s_.size()) t.text.push_back(s_[i_++]);
    } else if (specials_.find(c) != std::string_view::npos) {
      t.kind = Token::Kind::Special;
      t.special = c;
      ++i_;
    } else {
      t.kind = Token::Kind::Atom;
      while (i_ < s_.size()) {
        const char d = s_[i_];
        if (d == ' ' || d == '\t' || d == '\r' || d == '\n' || d == '"' || d == '(' ||
            specials_.find(d) != std::string_view::npos)
          break;
        t.text.push_back(d);
        ++i_;
      }
    }
    return t;
  }

  // Tokens without comments; the last comment seen is kept.
  Token next_skip_comments() {
    for (;;) {
      Token t = next();
      if (t.kind != Token::Kind::Comment) return t;
      last_comment_ = std::move(t.text);
      have_comment_ = true;
    }
  }
  bool have_comment_ = false;
  std::string last_comment_;

 private:
  std::string_view s_;
  std::string_view specials_;
  std::size_t i_ = 0;
};

// Line breaks removed; a TAB that starts a continuation line becomes a
// space (as Dovecot does).
std::string unfold(std::string_view v) {
  std::string out;
  bool after_break = false;
  for (char c : v) {
    if (c == '\r' || c == '\n') {
      after_break = c == '\n';
      continue;
    }
    out.push_back(after_break && c == '\t' ? ' ' : c);
    after_break = false;
  }
  const auto b = out.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  const auto e = out.find_last_not_of(" \t");
  return out.substr(b, e - b + 1);
}

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool needs_literal(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return c == '\r' || c == '\n' || c == '\0' || u >= 0x80;
  });
}

const mime::HeaderField* field(const mime::Part& p, std::string_view name) { return p.field(name); }

// A field's value, unfolded and trimmed; nullptr-equivalent when absent.
bool field_value(const mime::Part& p, std::string_view name, std::string& out) {
  const auto* f = field(p, name);
  if (!f) return false;
  out = unfold(f->raw_value);
  return true;
}

// ------------------------------------------------------ addresses ---

class AddressParser {
 public:
  AddressParser(std::string_view v, std::size_t max) : lex_(v, "()<>@,;:.[]"), max_(max) { advance(); }

  std::vector<Address> run() {
    while (t_.kind != Token::Kind::End && out_.size() < max_) {
      if (t_.kind == Token::Kind::Special && (t_.special == ',' || t_.special == ';')) {
        if (t_.special == ';' && in_group_) end_group();
        advance();
        continue;
      }
      item();
    }
    if (in_group_) end_group();
    return std::move(out_);
  }

 private:
  void advance() {
    lex_.have_comment_ = false;
    t_ = lex_.next_skip_comments();
  }
  void advance_keep_comment() { t_ = lex_.next_skip_comments(); }
  bool special(char c) const { return t_.kind == Token::Kind::Special && t_.special == c; }
  bool word() const { return t_.kind == Token::Kind::Atom || t_.kind == Token::Kind::Quoted; }

  void end_group() {
    Address a;
    a.is_group = true;
    out_.push_back(a);
    in_group_ = false;
  }

  // phrase "<" route-addr ">" | phrase ":" group | addr-spec
  void item() {
    // Collect the words before a decision point; they are either a display
    // name (phrase) or a local part (dot-atom).
    std::string phrase;      // words joined by single spaces
    std::string local;       // words and dots as written, no spaces
    bool any = false;
    while (word() || special('.')) {
      if (word()) {
        if (any && !phrase.empty()) phrase += ' ';
        phrase += t_.text;
        local += t_.kind == Token::Kind::Quoted ? t_.text : t_.text;
      } else {
        phrase += '.';
        local += '.';
      }
      any = true;
      advance_keep_comment();
    }
    if (special('<')) {
      advance();
      Address a;
      a.has_name = any;
      a.name = phrase;
      route_addr(a);
      out_.push_back(std::move(a));
      return;
    }
    if (special(':') && !in_group_) {
      Address g;
      g.is_group = true;
      g.has_mailbox = true;
      g.mailbox = phrase;
      out_.push_back(std::move(g));
      in_group_ = true;
      advance();
      return;
    }
    Address a;
    a.has_mailbox = true;
    a.mailbox = local;
    if (special('@')) {
      advance_keep_comment();
      a.host = domain();
      a.has_host = true;
    }
    if (lex_.have_comment_) {
      a.has_name = true;
      a.name = lex_.last_comment_;
    }
    if (!any && !a.has_host) {
      advance();  // a stray token: skip it
      return;
    }
    out_.push_back(std::move(a));
  }

  std::string domain() {
    std::string d;
    while (t_.kind == Token::Kind::Atom || t_.kind == Token::Kind::Literal || special('.')) {
      d += special('.') ? std::string(".") : t_.text;
      advance_keep_comment();
    }
    return d;
  }

  void route_addr(Address& a) {
    // obs-route: "@a,@b:"
    if (special('@')) {
      std::string adl;
      while (special('@') || special(',')) {
        if (special('@')) {
          advance();
          adl += (adl.empty() ? "@" : ",@") + domain();
        } else {
          advance();
        }
      }
      if (special(':')) advance();
      a.adl = adl;
      a.has_adl = true;
    }
    std::string local;
    while (word() || special('.')) {
      local += special('.') ? std::string(".") : t_.text;
      advance();
    }
    a.mailbox = local;
    a.has_mailbox = true;
    if (special('@')) {
      advance();
      a.host = domain();
      a.has_host = true;
    }
    while (t_.kind != Token::Kind::End && !special('>')) advance();
    if (special('>')) advance();
  }

  Lexer lex_;
  std::size_t max_;
  Token t_;
  bool in_group_ = false;
  std::vector<Address> out_;
};

void append_address_list(std::string& out, const mime::Part& p, std::string_view name, const mime::Part* fallback_part,
                         std::string_view fallback) {
  // Every occurrence counts (Dovecot joins repeated To/Cc fields).
  std::string value;
  bool have = false;
  for (const auto& f : p.fields) {
    if (!iequal(f.name, name)) continue;
    const std::string v = unfold(f.raw_value);
    if (v.empty()) continue;
    if (have) value += ',';
    value += v;
    have = true;
  }
  if ((!have || value.empty()) && fallback_part) have = field_value(*fallback_part, fallback, value);
  const auto list = have ? parse_address_list(value) : std::vector<Address>{};
  if (list.empty()) {
    out += kNil;
    return;
  }
  out += '(';
  for (const auto& a : list) {
    out += '(';
    if (a.is_group) {
      out += "NIL NIL ";
      if (a.has_mailbox) append_string(out, a.mailbox);
      else out += kNil;
      out += " NIL)";
      continue;
    }
    if (a.has_name && !a.name.empty()) append_string(out, a.name);
    else out += kNil;
    out += ' ';
    if (a.has_adl) append_string(out, a.adl);
    else out += kNil;
    out += ' ';
    append_string(out, a.mailbox.empty() ? std::string_view("MISSING_MAILBOX") : std::string_view(a.mailbox));
    out += ' ';
    append_string(out, a.host.empty() ? std::string_view("MISSING_DOMAIN") : std::string_view(a.host));
    out += ')';
  }
  out += ')';
}

void append_literal(std::string& out, std::string_view s) {
  out += '{' + std::to_string(s.size()) + "}\r\n";
  out += s;
}

// A field as an nstring with its line breaks removed. Like Dovecot
// (imap_append_nstring_nolf), a folded value is sent as a literal.
void append_field_nstring(std::string& out, const mime::Part& p, std::string_view name) {
  const auto* f = field(p, name);
  if (!f) {
    out += kNil;
    return;
  }
  const std::string v = unfold(f->raw_value);
  std::string_view raw = f->raw_value;
  const auto e = raw.find_last_not_of(" \t\r\n");
  raw = e == std::string_view::npos ? std::string_view() : raw.substr(0, e + 1);
  if (raw.find('\n') != std::string_view::npos) append_literal(out, v);
  else append_string(out, v);
}

// ------------------------------------------------- content fields ---

struct ParamKV {
  std::string name, value;
};

// type "/" subtype *(";" attribute "=" value) with comments skipped; the
// case of everything is kept (Dovecot keeps it). RFC 2231 continuations
// are joined; an extended value stays encoded under "name*".
struct ContentType {
  std::string type, subtype;
  std::vector<ParamKV> params;
};

std::vector<ParamKV> parse_params(Lexer& lex, Token& t) {
  std::vector<ParamKV> raw;
  while (t.kind != Token::Kind::End) {
    if (!(t.kind == Token::Kind::Special && t.special == ';')) {
      t = lex.next_skip_comments();
      continue;
    }
    t = lex.next_skip_comments();
    if (t.kind != Token::Kind::Atom) continue;
    ParamKV kv;
    kv.name = t.text;
    t = lex.next_skip_comments();
    if (!(t.kind == Token::Kind::Special && t.special == '=')) continue;
    t = lex.next_skip_comments();
    if (t.kind == Token::Kind::Atom || t.kind == Token::Kind::Quoted) {
      kv.value = t.text;
      t = lex.next_skip_comments();
      // an unquoted value with spaces: keep the words (lenient, like Dovecot)
      while (t.kind == Token::Kind::Atom) {
        kv.value += ' ' + t.text;
        t = lex.next_skip_comments();
      }
    } else {
      continue;
    }
    if (raw.size() < 64) raw.push_back(std::move(kv));
  }
  // RFC 2231: name*N[*] sections joined in order of N.
  std::vector<ParamKV> plain, joined;
  struct Cont {
    std::string base;
    bool extended = false;
    std::vector<std::pair<unsigned, std::string>> sections;
  };
  std::vector<Cont> conts;
  for (auto& kv : raw) {
    const auto star = kv.name.find('*');
    if (star == std::string::npos) {
      plain.push_back(std::move(kv));
      continue;
    }
    const std::string base = kv.name.substr(0, star);
    std::string rest = kv.name.substr(star + 1);
    bool ext = false;
    if (!rest.empty() && rest.back() == '*') {
      ext = true;
      rest.pop_back();
    }
    unsigned n = 0;
    if (rest.empty()) {
      ext = true;  // name*=charset'lang'value
    } else if (rest.size() > 4 || !std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      plain.push_back(std::move(kv));
      continue;
    } else {
      n = unsigned(std::stoul(rest));
    }
    auto it = std::find_if(conts.begin(), conts.end(), [&](const Cont& c) { return c.base == base; });
    if (it == conts.end()) {
      conts.push_back(Cont{base, false, {}});
      it = conts.end() - 1;
    }
    if (n == 0 && ext) it->extended = true;
    it->sections.emplace_back(n, std::move(kv.value));
  }
  for (auto& c : conts) {
    std::stable_sort(c.sections.begin(), c.sections.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    ParamKV kv;
    kv.name = c.base + (c.extended ? "*" : "");
    for (auto& s : c.sections) kv.value += s.second;
    plain.push_back(std::move(kv));
  }
  return plain;
}

ContentType content_type(const mime::Part& p) {
  ContentType ct;
  const auto* f = field(p, "Content-Type");
  if (!f) return ct;
  const std::string v = unfold(f->raw_value);
  Lexer lex(v, "()<>@,;:\\\"/[]?=");
  Token t = lex.next_skip_comments();
  if (t.kind == Token::Kind::Atom) {
    ct.type = t.text;
    t = lex.next_skip_comments();
    if (t.kind == Token::Kind::Special && t.special == '/') {
      t = lex.next_skip_comments();
      if (t.kind == Token::Kind::Atom) {
        ct.subtype = t.text;
        t = lex.next_skip_comments();
      }
    }
  }
  ct.params = parse_params(lex, t);
  return ct;
}

struct Disposition {
  bool present = false;
  std::string type;
  std::vector<ParamKV> params;
};

Disposition disposition(const mime::Part& p) {
  Disposition d;
  const auto* f = field(p, "Content-Disposition");
  if (!f) return d;
  const std::string v = unfold(f->raw_value);
  Lexer lex(v, "()<>@,;:\\\"/[]?=");
  Token t = lex.next_skip_comments();
  if (t.kind != Token::Kind::Atom) return d;
  d.present = true;
  d.type = t.text;
  t = lex.next_skip_comments();
  d.params = parse_params(lex, t);
  return d;
}

void append_params(std::string& out, const std::vector<ParamKV>& params, bool default_charset) {
  bool charset = false;
  for (const auto& p : params) {
    std::string lower;
    for (char c : p.name) lower.push_back((c >= 'A' && c <= 'Z') ? char(c + 32) : c);
    if (lower == "charset") charset = true;
  }
  if (params.empty() && !default_charset) {
    out += kNil;
    return;
  }
  out += '(';
  bool first = true;
  for (const auto& p : params) {
    if (!first) out += ' ';
    first = false;
    append_string(out, p.name);
    out += ' ';
    append_string(out, p.value);
  }
  // text/* without a charset: RFC 2045 §5.2's default, after the others (as Dovecot)
  if (default_charset && !charset) out += first ? "\"charset\" \"us-ascii\"" : " \"charset\" \"us-ascii\"";
  out += ')';
}

// Content-Language: a list of language tags, NIL when absent.
void append_language(std::string& out, const mime::Part& p) {
  std::string v;
  if (!field_value(p, "Content-Language", v)) {
    out += kNil;
    return;
  }
  Lexer lex(v, ",");
  std::vector<std::string> tags;
  for (Token t = lex.next_skip_comments(); t.kind != Token::Kind::End; t = lex.next_skip_comments())
    if (t.kind == Token::Kind::Atom) tags.push_back(t.text);
  if (tags.empty()) {
    out += kNil;
    return;
  }
  out += '(';
  for (std::size_t i = 0; i < tags.size(); ++i) {
    if (i) out += ' ';
    append_string(out, tags[i]);
  }
  out += ')';
}

void append_disposition(std::string& out, const mime::Part& p) {
  const auto d = disposition(p);
  if (!d.present) {
    out += kNil;
    return;
  }
  out += '(';
  append_string(out, d.type);
  out += ' ';
  append_params(out, d.params, false);
  out += ')';
}

// The single-word value of a field (Content-Transfer-Encoding), comments dropped.
bool first_atom(const mime::Part& p, std::string_view name, std::string& out) {
  std::string v;
  if (!field_value(p, name, v)) return false;
  Lexer lex(v, "()<>@,;:\\\"/[]?=");
  const Token t = lex.next_skip_comments();
  if (t.kind != Token::Kind::Atom) return false;
  out = t.text;
  return true;
}


// IMAP's body line count is the number of LFs (Dovecot), not mime::Part::lines
// (which also counts a last line without LF).
std::uint64_t body_lines(std::string_view raw, const mime::Part& p) {
  if (p.body_end > raw.size() || p.body_begin > p.body_end) return p.lines;
  const auto body = raw.substr(p.body_begin, p.body_end - p.body_begin);
  return std::uint64_t(std::count(body.begin(), body.end(), '\n'));
}

void write_part(std::string& out, const mime::Message& msg, std::string_view raw, std::size_t index, bool extended);

void write_multipart(std::string& out, const mime::Message& msg, std::string_view raw, const mime::Part& p, bool extended) {
  const auto ct = content_type(p);
  out += '(';
  if (p.children.empty()) {
    // No body part: Dovecot writes one empty text/plain part instead.
    out += extended ? "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)"
                    : "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)";
  }
  for (auto c : p.children) write_part(out, msg, raw, c, extended);
  out += ' ';
  append_string(out, ct.subtype.empty() ? std::string_view(p.subtype) : std::string_view(ct.subtype));
  if (extended) {
    out += ' ';
    append_params(out, ct.params, false);
    out += ' ';
    append_disposition(out, p);
    out += ' ';
    append_language(out, p);
    out += ' ';
    append_field_nstring(out, p, "Content-Location");
  }
  out += ')';
}

void write_leaf(std::string& out, const mime::Message& msg, std::string_view raw, const mime::Part& p, bool extended) {
  auto ct = content_type(p);
  const bool given = field(p, "Content-Type") != nullptr;
  const bool typed = !ct.type.empty() && !ct.subtype.empty();
  // A Content-Type without a usable type/subtype: Dovecot writes "" "" and
  // drops the parameters; without the field, the RFC 2045/2046 defaults.
  std::string type = typed ? ct.type : given ? std::string() : p.type;
  std::string subtype = typed ? ct.subtype : given ? std::string() : p.subtype;
  if (!typed) ct.params.clear();
  if (p.is_message() && !p.children.empty()) {
    type = "message";  // Dovecot spells the types of a parsed message part in lower case
    for (auto& c : subtype) c = char(std::tolower(static_cast<unsigned char>(c)));
  }
  const bool text = iequal(type, "text");
  out += '(';
  append_string(out, type);
  out += ' ';
  append_string(out, subtype);
  out += ' ';
  append_params(out, ct.params, text);
  out += ' ';
  append_field_nstring(out, p, "Content-ID");
  out += ' ';
  append_field_nstring(out, p, "Content-Description");
  out += ' ';
  std::string cte;
  append_string(out, first_atom(p, "Content-Transfer-Encoding", cte) ? std::string_view(cte) : "7bit");
  out += ' ' + std::to_string(p.size());
  if (text) {
    out += ' ' + std::to_string(body_lines(raw, p));
  } else if (p.is_message() && !p.children.empty()) {
    out += ' ';
    out += envelope(msg, p.children.front());
    out += ' ';
    write_part(out, msg, raw, p.children.front(), extended);
    out += ' ' + std::to_string(body_lines(raw, p));
  }
  if (extended) {
    out += ' ';
    append_field_nstring(out, p, "Content-MD5");
    out += ' ';
    append_disposition(out, p);
    out += ' ';
    append_language(out, p);
    out += ' ';
    append_field_nstring(out, p, "Content-Location");
  }
  out += ')';
}

void write_part(std::string& out, const mime::Message& msg, std::string_view raw, std::size_t index, bool extended) {
  const mime::Part* pp = &msg.parts[index];
  // A message header (the root, or inside message/rfc822) with neither
  // MIME-Version nor Content-Type is not MIME: Dovecot ignores its other
  // Content-* fields (message-parser.c, message-part-data.c).
  mime::Part plain;
  const bool header_of_message = pp->parent < 0 || msg.parts[std::size_t(pp->parent)].is_message();
  if (header_of_message && !pp->field("MIME-Version") && !pp->field("Content-Type")) {
    plain = *pp;
    std::erase_if(plain.fields, [](const mime::HeaderField& f) {
      return f.name.size() >= 8 && iequal(std::string_view(f.name).substr(0, 8), "Content-");
    });
    pp = &plain;
  }
  const auto& p = *pp;
  // multipart/* with no body part found (no or unusable boundary) is still a
  // multipart for IMAP (Dovecot): one empty text/plain part.
  const bool empty_multipart = p.type == "multipart" && p.children.empty();
  if (p.is_multipart() || empty_multipart) write_multipart(out, msg, raw, p, extended);
  else write_leaf(out, msg, raw, p, extended);
}

}  // namespace

void append_string(std::string& out, std::string_view s) {
  if (needs_literal(s)) {
    out += '{' + std::to_string(s.size()) + "}\r\n";
    out += s;
    return;
  }
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

void append_nstring(std::string& out, const std::string* s) {
  if (s) append_string(out, *s);
  else out += kNil;
}

std::vector<Address> parse_address_list(std::string_view value, std::size_t max_addresses) {
  return AddressParser(value, max_addresses).run();
}

std::string envelope(const mime::Message& msg, std::size_t part) {
  const auto& p = msg.parts.at(part);
  std::string out = "(";
  append_field_nstring(out, p, "Date");
  out += ' ';
  append_field_nstring(out, p, "Subject");
  out += ' ';
  append_address_list(out, p, "From", nullptr, {});
  out += ' ';
  append_address_list(out, p, "Sender", &p, "From");
  out += ' ';
  append_address_list(out, p, "Reply-To", &p, "From");
  out += ' ';
  append_address_list(out, p, "To", nullptr, {});
  out += ' ';
  append_address_list(out, p, "Cc", nullptr, {});
  out += ' ';
  append_address_list(out, p, "Bcc", nullptr, {});
  out += ' ';
  append_field_nstring(out, p, "In-Reply-To");
  out += ' ';
  append_field_nstring(out, p, "Message-ID");
  out += ')';
  return out;
}

std::string body_structure(const mime::Message& msg, std::string_view raw, bool extended, std::size_t part) {
  std::string out;
  write_part(out, msg, raw, part, extended);
  return out;
}

}  // namespace moat::proto::imap
