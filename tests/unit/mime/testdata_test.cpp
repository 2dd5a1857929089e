// The MIME parser on ../shared/testdata/mime (Crispin's torture test,
// crymap/Enron, CPython email, mailparser DoS regressions, GMime fixtures):
// split feeding equals one call, structural invariants hold, and GMime 3
// agrees part by part except for the differences listed (and explained in
// docs/mime.md).
#include <catch2/catch.hpp>

#include <chrono>
#include <iostream>
#include <map>
#include <set>

#include "tests/unit/mime/mime_util.hpp"

using namespace moat::mime;
using namespace moat::mime::test;

namespace {

// Offsets nest, lie inside the message and follow document order.
void check_invariants(const Message& m, std::string_view in) {
  REQUIRE(!m.parts.empty());
  REQUIRE(m.size == in.size());
  for (const Part& p : m.parts) {
    INFO("part " << p.index);
    CHECK(p.header_begin <= p.header_end);
    CHECK(p.header_end <= p.body_begin);
    CHECK(p.body_begin <= p.body_end);
    CHECK(p.body_end <= in.size());
    for (const auto& f : p.fields) {
      CHECK(f.begin >= p.header_begin);
      CHECK(f.end <= p.header_end);
      CHECK(in.substr(f.begin, f.name.size()) == f.name);
    }
    if (p.parent >= 0) {
      const Part& par = m.parts[static_cast<std::size_t>(p.parent)];
      CHECK(p.depth == par.depth + 1);
      CHECK(p.header_begin >= par.body_begin);
      CHECK(p.body_end <= par.body_end);
    }
    if (p.is_multipart()) {
      CHECK(p.preamble_begin == p.body_begin);
      CHECK(p.preamble_end <= p.body_end);
      CHECK(p.epilogue_begin <= p.body_end);
      if (!p.children.empty()) {
        const Part& first = m.parts[p.children.front()];
        CHECK(first.header_begin >= p.preamble_end);
        // The first child starts right after a delimiter line "--boundary".
        std::string_view before = in.substr(0, first.header_begin);
        CHECK(before.find("--" + p.boundary) != std::string_view::npos);
      }
    }
    for (std::size_t k = 1; k < p.children.size(); ++k)
      CHECK(m.parts[p.children[k]].header_begin >= m.parts[p.children[k - 1]].body_end);
  }
}

// Known differences from GMime 3.2.13 on the shared test data, by file name:
// each names its class; docs/mime.md explains them.
const std::map<std::string, std::string>& known_gmime_diffs() {
  static const std::map<std::string, std::string> k = {
      // Content-Type without a subtype ("BINARY", "text"): RFC 2045 §5.2
      // says text/plain, GMime says application/octet-stream.
      {"crymap/torture-test.eml", "type: part 42"},
      {"python-email/msg_14.txt", "type: part 0"},
      // An empty message/rfc822 body: we (and Dovecot) give it an empty
      // encapsulated message, GMime no child.
      {"mailparser/decoderended.eml", "shape"},
      // An mbox "From " line before the header: GMime records it as a field.
      {"mailparser/large_text.eml", "fields"},
      {"python-email/msg_43.txt", "fields"},
      // No header field at all: GMime builds no MIME part.
      {"python-email/msg_19.txt", "shape"},
      // multipart/* without a boundary: an opaque leaf here, an empty
      // multipart in GMime.
      {"python-email/msg_25.txt", "shape"},
      {"python-email/msg_41.txt", "shape"},
      // A delimiter right after a delimiter: an empty part here (and in
      // Dovecot, RFC 2046 allows it); GMime drops it.
      {"python-email/msg_37.txt", "shape"},
      {"python-email/msg_38.txt", "shape"},
  };
  return k;
}

}  // namespace

TEST_CASE("testdata: every message parses the same in any split and keeps the invariants", "[mime]") {
  auto files = testdata_messages();
  REQUIRE(files.size() >= 90);
  for (const auto& f : files) {
    std::string in = slurp(f);
    INFO(f.string());
    Message one = parse(in);
    check_invariants(one, in);
    const std::string want = describe(one);
    CHECK(describe(parse_split(in, 0)) == want);
    if (in.size() < 64 * 1024) CHECK(describe(parse_split(in, 1)) == want);  // byte by byte
    CHECK(describe(parse_split(in, 3)) == want);
  }
}

TEST_CASE("testdata: GMime 3 agrees on structure, types, filenames and offsets", "[mime]") {
  int agree = 0, known = 0;
  for (const auto& f : testdata_messages()) {
    std::string in = slurp(f);
    std::string d = gmime_diff(ours_flat(parse(in)), gmime_parse(in));
    auto name = f.parent_path().filename().string() + "/" + f.filename().string();
    auto it = known_gmime_diffs().find(name);
    INFO(name << ": " << d);
    if (it == known_gmime_diffs().end()) {
      CHECK(d.empty());
      agree += d.empty();
    } else {
      CHECK(d.rfind(it->second, 0) == 0);
      ++known;
    }
  }
  WARN("testdata vs GMime: " << agree << " agree, " << known << " known differences");
}

TEST_CASE("testdata: explore GMime differences", "[.][mime-explore]") {
  for (const auto& f : testdata_messages()) {
    std::string in = slurp(f);
    std::string d = gmime_diff(ours_flat(parse(in)), gmime_parse(in));
    if (!d.empty()) std::cout << f.parent_path().filename().string() + "/" + f.filename().string() << ": " << d << "\n";
  }
}

// ------------------------------------------------- Dovecot BODYSTRUCTURE ---

namespace {

// The IMAP response as a tree: strings, atoms, lists (RFC 3501 §4, §9).
struct Node {
  bool list = false;
  bool nil = false;
  std::string text;
  std::vector<Node> items;
};

Node parse_sexp(std::string_view s, std::size_t& i) {
  while (i < s.size() && s[i] == ' ') ++i;
  Node n;
  if (i >= s.size()) return n;
  if (s[i] == '(') {
    n.list = true;
    ++i;
    while (i < s.size() && s[i] != ')') {
      n.items.push_back(parse_sexp(s, i));
      while (i < s.size() && s[i] == ' ') ++i;
    }
    ++i;
  } else if (s[i] == '"') {
    for (++i; i < s.size() && s[i] != '"'; ++i) {
      if (s[i] == '\\') ++i;
      n.text += s[i];
    }
    ++i;
  } else if (s[i] == '{') {
    std::size_t close = s.find('}', i);
    std::size_t len = std::stoul(std::string(s.substr(i + 1, close - i - 1)));
    n.text = std::string(s.substr(close + 3, len));
    i = close + 3 + len;
  } else {
    std::size_t b = i;
    while (i < s.size() && s[i] != ' ' && s[i] != ')' && s[i] != '(') ++i;
    n.text = std::string(s.substr(b, i - b));
    n.nil = n.text == "NIL";
  }
  return n;
}

std::string lowered(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Document-order (kind size lines) triples; multiparts carry no size.
void walk_bodystructure(const Node& n, std::vector<std::string>& out) {
  if (!n.list || n.items.empty()) return;
  if (n.items[0].list) {
    out.push_back("multipart");
    for (const Node& c : n.items) {
      if (!c.list) break;  // the subtype; extension data (lists too) follows
      walk_bodystructure(c, out);
    }
    return;
  }
  std::string type = lowered(n.items[0].text), subtype = lowered(n.items[1].text);
  std::string size = n.items.size() > 6 ? n.items[6].text : "?";
  if (type == "message" && (subtype == "rfc822" || subtype == "global") && n.items.size() > 9) {
    out.push_back("message " + size + " " + n.items[9].text);
    walk_bodystructure(n.items[8], out);
  } else if (type == "text" && n.items.size() > 7) {
    out.push_back("leaf " + size + " " + n.items[7].text);
  } else {
    out.push_back("leaf " + size);
  }
}

std::vector<std::string> ours_bodystructure(const Message& m) {
  std::vector<std::string> out;
  for (const Part& p : m.parts) {
    if (p.is_multipart()) out.push_back("multipart");
    else if (p.message_wrapper) out.push_back("message " + std::to_string(p.size()) + " " + std::to_string(p.lines));
    else if (p.type == "text") out.push_back("leaf " + std::to_string(p.size()) + " " + std::to_string(p.lines));
    else out.push_back("leaf " + std::to_string(p.size()));
  }
  return out;
}

std::string to_crlf(std::string_view in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r')) out += '\r';
    out += in[i];
  }
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + " | ";
  return s;
}

}  // namespace

TEST_CASE("testdata: part sizes and line counts match Dovecot's BODYSTRUCTURE", "[mime]") {
  // Known differences (docs/mime.md): a multipart without boundary or
  // without parts (Dovecot adds an empty text/plain child), a Content-Type
  // without subtype (Dovecot: "" "", no line count), an RFC 2231 boundary*
  // (Dovecot does not decode it).
  static const std::set<std::string> known = {"msg_25.txt", "msg_41.txt", "msg_17.txt", "msg_31.txt", "msg_42.txt",
                                              "msg_14.txt", "torture-test.eml", "msg_33.txt"};
  int agree = 0, compared = 0;
  for (const auto& f : testdata_messages()) {
    auto ref = testdata() / "dovecot-reference" / f.parent_path().filename() / (f.filename().string() + ".fetch");
    if (f.parent_path().filename() == "gmime" || !std::filesystem::exists(ref)) {
      auto alt = testdata() / "dovecot-reference/gmime" / (f.filename().string() + ".fetch");
      if (!std::filesystem::exists(alt)) continue;
      ref = alt;
    }
    std::string fetch = slurp(ref);
    std::size_t at = fetch.find("BODYSTRUCTURE ");
    REQUIRE(at != std::string::npos);
    at += 14;
    std::vector<std::string> theirs;
    walk_bodystructure(parse_sexp(fetch, at), theirs);
    std::string in = to_crlf(slurp(f));
    std::vector<std::string> ours = ours_bodystructure(parse(in));
    ++compared;
    INFO(f.filename().string() << "\nours:    " << join(ours) << "\ndovecot: " << join(theirs));
    if (known.count(f.filename().string())) {
      CHECK(ours != theirs);
      continue;
    }
    CHECK(ours == theirs);
    agree += ours == theirs;
  }
  CHECK(compared >= 90);
  WARN("testdata vs Dovecot BODYSTRUCTURE sizes/lines: " << agree << " of " << compared << " agree, " << known.size()
                                                          << " known differences");
}
