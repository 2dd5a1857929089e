// Unit tests for the IMAP extension syntax: LITERAL- in the command parser
// (RFC 7888), SEARCH keys / ESEARCH / SAVE (RFC 9051 §6.4.4, RFC 4731, RFC
// 5182), LIST-EXTENDED / LIST-STATUS (RFC 5258, RFC 5819), and the CONDSTORE
// / QRESYNC arguments (RFC 7162). Every command goes through the parser
// whole and byte by byte first (parse_one), as the session receives it.
#include <catch2/catch.hpp>

#include "common/proto/mime/mime.hpp"
#include "store/imap/condstore.hpp"
#include "store/imap/list.hpp"
#include "store/imap/search.hpp"
#include "tests/unit/imap/imap_drive.hpp"

using namespace moat;
using namespace moat::store;
using namespace moat::store::imap;
using namespace moat::proto::imap::test;
using proto::imap::Command;
using proto::imap::ParserOptions;

// ------------------------------------------------------------ LITERAL- ---

TEST_CASE("LITERAL-: non-synchronizing literals up to 4096 bytes", "[imap][imapext]") {
  const std::string ok = "a APPEND INBOX {4096+}\r\n" + std::string(4096, 'x') + "\r\nb NOOP\r\n";
  CHECK(drive_all_splits(ok) == Evs{"CMD a APPEND INBOX {4096}" + std::string(4096, 'x'), "CMD b NOOP"});
  // one byte more: BAD [TOOBIG], the bytes skipped (they look like a command), the next command runs
  std::string big(4097, 'x');
  big.replace(0, 10, "\r\nc NOOP\r\n");
  CHECK(drive_all_splits("a APPEND INBOX {4097+}\r\n" + big + "\r\nb NOOP\r\n") == Evs{"ERR a BAD TOOBIG", "CMD b NOOP"});
  // the same size synchronizing is fine (continuation first)
  CHECK(drive_all_splits("a APPEND INBOX {4097}\r\n") == Evs{"+"});
  // inside a list or for LOGIN the same rule holds
  CHECK(drive_all_splits("a LOGIN {5000+}\r\n" + std::string(5000, 'u') + " p\r\nb NOOP\r\n") ==
        Evs{"ERR a BAD TOOBIG", "CMD b NOOP"});
  // beyond what may be skipped (the APPEND limit) it still cannot be read: fatal
  ParserOptions o;
  o.max_append = 10000;
  CHECK(drive_all_splits("a APPEND INBOX {10001+}\r\nxx", o) == Evs{"ERR a BAD FATAL"});
  // a limit of its own
  o.max_nonsync = 3;
  CHECK(drive_all_splits("a X {3+}\r\nabc\r\nb X {4+}\r\nabcd\r\nc NOOP\r\n", o) ==
        Evs{"CMD a X {3}abc", "ERR b BAD TOOBIG", "CMD c NOOP"});
}

// -------------------------------------------------------------- SEARCH ---

namespace {

MessageInfo msg(std::uint32_t uid, Flags flags, std::uint64_t size, std::int64_t date, std::uint64_t modseq,
                std::vector<std::string> keywords = {}) {
  MessageInfo m;
  m.uid = uid;
  m.flags = flags;
  m.size = size;
  m.internaldate = date;
  m.modseq = modseq;
  m.keywords = std::move(keywords);
  return m;
}

// 2024-01-01, 2025-06-15, 2026-02-03 (UTC midnight + a bit)
const std::vector<MessageInfo> kBox = {
    msg(3, kSeen, 100, 1704067200 + 3600, 5),
    msg(7, kFlagged, 2000, 1749945600 + 7200, 9, {"$Work"}),
    msg(9, kSeen | kDeleted, 50, 1770076800 + 60, 12),
};

const char* kMessages[] = {
    "From: Alice <alice@x.test>\r\nSubject: quarterly report\r\nDate: Mon, 01 Jan 2024 10:00:00 +0100\r\n\r\nthe quick brown fox\r\n",
    ("From: boss@corp.test\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nDate: 15 Jun 2025 08:00:00 -0700\r\nX-Tag: red\r\n"
     "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nbGF6eSBkb2c=\r\n"),
    "From: carol@y.test\r\nSubject: report\r\n\r\nnothing\r\n",
};

// The sequence numbers matching `keys` (a SEARCH command's arguments).
std::string run(const std::string& keys, const std::vector<std::uint32_t>* saved = nullptr) {
  const Command c = parse_one("a SEARCH " + keys + "\r\n");
  if (c.name != "SEARCH") return "PARSE";
  const SearchScope scope{3, 9, saved};
  auto s = Search::parse(c.args, 0, scope);
  if (!s) return s.error().code == Errc::NotImplemented ? "BADCHARSET" : "BAD";
  std::string out;
  for (std::size_t i = 0; i < kBox.size(); ++i) {
    // What the session gives it: the header block alone unless BODY/TEXT.
    const std::string whole = kMessages[i];
    const std::string content(s->needs_body() ? std::string_view(whole) : header_block(whole));
    const auto parsed = mime::parse(content);
    if (s->matches(kBox[i], std::uint32_t(i + 1), s->needs_content() ? &parsed : nullptr, content))
      out += (out.empty() ? std::string() : std::string(" ")).append(std::to_string(i + 1));
  }
  return out;
}

}  // namespace

TEST_CASE("SEARCH keys", "[imap][imapext]") {
  struct Case {
    const char* keys;
    const char* hits;
  };
  const Case cases[] = {
      {"ALL", "1 2 3"},
      {"SEEN", "1 3"},
      {"UNSEEN", "2"},
      {"DELETED UNFLAGGED", "3"},
      {"NOT DELETED", "1 2"},
      {"OR FLAGGED DELETED", "2 3"},
      {"OR (SEEN LARGER 60) FLAGGED", "1 2"},
      {"NOT (OR SEEN FLAGGED)", ""},
      {"KEYWORD $work", "2"},
      {"UNKEYWORD $Work", "1 3"},
      {"LARGER 99 SMALLER 2000", "1"},
      {"2:*", "2 3"},
      {"*", "3"},
      {"UID 7:8", "2"},
      {"UID 8:*", "3"},
      {"NEW", ""},
      {"OLD", "1 2 3"},
      {"MODSEQ 9", "2 3"},
      {"MODSEQ \"/flags/\\\\seen\" priv 12", "3"},
      {"BEFORE 15-Jun-2025", "1"},
      {"ON 15-Jun-2025", "2"},
      {"SINCE \"15-Jun-2025\"", "2 3"},
      {"SENTBEFORE 2-Jan-2024", "1"},
      {"SENTON 15-Jun-2025", "2"},
      {"SENTSINCE 1-Jan-2000", "1 2 3"},  // message 3 has no Date field: its INTERNALDATE counts
      {"SENTON 3-Feb-2026", "3"},
      {"SUBJECT REPORT", "1 3"},
      {"SUBJECT \"gr\xc3\xbc\xc3\x9f\"", "2"},  // RFC 2047 decoded
      {"FROM alice", "1"},
      {"HEADER X-Tag \"\"", "2"},
      {"HEADER x-tag blue", ""},
      {"BODY \"LAZY dog\"", "2"},  // base64 decoded
      {"TEXT carol", "3"},
      {"TEXT fox", "1"},
      {"CHARSET UTF-8 BODY nothing", "3"},
      {"{3}\r\nALL", "BAD"},  // a key is an atom, not a string
      {"CHARSET KOI8-R ALL", "BADCHARSET"},
      {"RETURN (MIN) CHARSET US-ASCII SEEN", "1 3"},
      {"BOGUS", "BAD"},
      {"LARGER x", "BAD"},
      {"MODSEQ 0x1", "BAD"},
      {"BEFORE 31-Foo-2024", "BAD"},
      {"OR SEEN", "BAD"},
      {"()", "BAD"},
      {"RETURN (FANCY) ALL", "BAD"},
  };
  for (const auto& c : cases) {
    INFO(c.keys);
    CHECK(run(c.keys) == c.hits);
  }
  // a literal is a string like any other
  CHECK(run("SUBJECT {6}\r\nreport") == "1 3");
}

TEST_CASE("SEARCH nesting is bounded (NOT chains recurse)", "[imap][imapext]") {
  std::string deep;
  for (int i = 0; i < 60; ++i) deep += "NOT ";
  CHECK(run(deep + "SEEN") == "1 3");  // even count of NOTs
  std::string deeper;
  for (int i = 0; i < 5000; ++i) deeper += "NOT ";
  CHECK(run(deeper + "ALL") == "BAD");
}

TEST_CASE("SEARCH $ is the saved result (SEARCHRES)", "[imap][imapext]") {
  const std::vector<std::uint32_t> saved = {7, 9};
  CHECK(run("$", &saved) == "2 3");
  CHECK(run("$ SEEN", &saved) == "3");
  CHECK(run("$") == "");  // nothing saved yet
}

TEST_CASE("SEARCH reads bodies only for BODY and TEXT", "[imap][imapext]") {
  auto needs = [](const std::string& keys) {
    auto s = Search::parse(parse_one("a SEARCH " + keys + "\r\n").args, 0, SearchScope{});
    REQUIRE(s);
    return std::pair(s->needs_content(), s->needs_body());
  };
  CHECK(needs("SEEN") == std::pair(false, false));
  CHECK(needs("SUBJECT x SENTBEFORE 1-Jan-2000") == std::pair(true, false));
  CHECK(needs("NOT OR SEEN (BODY x)") == std::pair(true, true));
  CHECK(needs("OR TEXT x SEEN") == std::pair(true, true));
  CHECK(header_block("A: b\r\nC: d\r\n\r\nbody\r\n\r\nmore") == "A: b\r\nC: d\r\n\r\n");
  CHECK(header_block("A: b\nC: d\n\nbody\r\n\r\n") == "A: b\nC: d\n\n");
  CHECK(header_block("\r\nbody") == "\r\n");
  CHECK(header_block("A: b\r\n") == "A: b\r\n");
}

TEST_CASE("ESEARCH and SEARCH responses", "[imap][imapext]") {
  const Command c = parse_one("t1 UID SEARCH RETURN (MIN MAX COUNT ALL SAVE) ALL\r\n");
  auto s = Search::parse(c.args, 1, SearchScope{});
  REQUIRE(s);
  const auto& r = s->ret();
  CHECK(r.esearch);
  CHECK(esearch_response("t1", true, r, {3, 4, 5, 9}, std::nullopt) == "* ESEARCH (TAG \"t1\") UID MIN 3 MAX 9 COUNT 4 ALL 3:5,9\r\n");
  CHECK(esearch_response("t1", false, r, {}, std::uint64_t(7)) == "* ESEARCH (TAG \"t1\") COUNT 0\r\n");
  CHECK(esearch_response("t\\2", false, SearchReturn{true, false, false, false, true, false}, {1}, std::uint64_t(7)) ==
        "* ESEARCH (TAG \"t\\\\2\") ALL 1 MODSEQ 7\r\n");
  // RETURN () is RETURN (ALL); SAVE alone sends nothing
  auto all = Search::parse(parse_one("a SEARCH RETURN () SEEN\r\n").args, 0, SearchScope{});
  REQUIRE(all);
  CHECK(all->ret().all);
  const SearchReturn save_only{true, false, false, false, false, true};
  CHECK(esearch_response("a", false, save_only, {1, 2}, std::nullopt).empty());
  // what SAVE keeps: MIN/MAX alone keep just those
  CHECK(saved_result(save_only, {2, 5, 8}) == std::vector<std::uint32_t>{2, 5, 8});
  CHECK(saved_result(SearchReturn{true, true, true, false, false, true}, {2, 5, 8}) == std::vector<std::uint32_t>{2, 8});
  CHECK(saved_result(SearchReturn{true, false, true, false, false, true}, {2, 5, 8}) == std::vector<std::uint32_t>{8});
  // the IMAP4rev1 form, MODSEQ only with matches (RFC 7162 §3.1.5)
  CHECK(search_response({2, 5}, std::uint64_t(917)) == "* SEARCH 2 5 (MODSEQ 917)\r\n");
  CHECK(search_response({}, std::uint64_t(917)) == "* SEARCH\r\n");
  // IMAP4rev2: ESEARCH without RETURN means ALL
  auto plain = Search::parse(parse_one("a SEARCH SEEN\r\n").args, 0, SearchScope{});
  REQUIRE(plain);
  CHECK_FALSE(plain->ret().esearch);
  plain->force_esearch();
  CHECK((plain->ret().esearch && plain->ret().all));
}

TEST_CASE("dates for SEARCH", "[imap][imapext]") {
  CHECK(parse_search_date("1-Feb-1994") == parse_header_date("Tue, 1 Feb 1994 23:59:59 -1200"));
  CHECK(parse_search_date("01-jan-1970") == 0);
  CHECK(parse_search_date("29-Feb-2024").value() - parse_search_date("28-Feb-2024").value() == 1);
  CHECK_FALSE(parse_search_date("1-Feb-94x"));
  CHECK_FALSE(parse_search_date("1 Feb 1994"));
  CHECK(parse_header_date("3 Feb 26 10:00 GMT") == parse_search_date("3-Feb-2026"));  // obs-year
  CHECK_FALSE(parse_header_date("yesterday"));
}

// ---------------------------------------------------------------- LIST ---

namespace {

std::vector<MailboxInfo> boxes() {
  auto mk = [](std::string name, bool subscribed, SpecialUse use = SpecialUse::None) {
    MailboxInfo b;
    b.name = std::move(name);
    b.subscribed = subscribed;
    b.special_use = use;
    return b;
  };
  return {mk("INBOX", true),        mk("Sent", true, SpecialUse::Sent), mk("Trash", false, SpecialUse::Trash),
          mk("Work", false),        mk("Work/Old", false),              mk("Work/Projects", true),
          mk("Lone/Child", true),   mk("Lone/Child/Deep", false)};
}

// "name (attributes) extra" per line for a LIST command line.
std::string list(const std::string& line, bool rev2 = false) {
  const Command c = parse_one(line);
  auto req = parse_list(c.args);
  if (!req) return "BAD";
  std::vector<std::string> patterns;
  for (const auto& p : req->patterns) patterns.push_back(req->reference + p);
  std::string out;
  for (const auto& e : list_mailboxes(*req, patterns, boxes(), false, rev2))
    out += e.name + " (" + e.attributes + ")" + e.extra + (e.selectable ? "" : " -") + "\n";
  return out;
}

}  // namespace

TEST_CASE("LIST: plain, patterns and parents without a mailbox", "[imap][imapext]") {
  CHECK(list("a LIST \"\" %\r\n") ==
        "INBOX (\\HasNoChildren)\nLone (\\Noselect \\HasChildren) -\nSent (\\HasNoChildren \\Sent)\n"
        "Trash (\\HasNoChildren \\Trash)\nWork (\\HasChildren)\n");
  CHECK(list("a LIST \"\" %\r\n", true).find("Lone (\\NonExistent \\HasChildren) -\n") != std::string::npos);
  CHECK(list("a LIST Work/ %\r\n") == "Work/Old (\\HasNoChildren)\nWork/Projects (\\HasNoChildren)\n");
  CHECK(list("a LIST \"\" inbox\r\n") == "INBOX (\\HasNoChildren)\n");
  CHECK(list("a LIST \"\" work\r\n") == "");  // other names are case-sensitive
  CHECK(list("a LIST \"\" Lone/*\r\n") == "Lone/Child (\\HasChildren)\nLone/Child/Deep (\\HasNoChildren)\n");
}

TEST_CASE("LIST-EXTENDED selection and return options", "[imap][imapext]") {
  CHECK(list("a LIST (SUBSCRIBED) \"\" *\r\n") ==
        "INBOX (\\HasNoChildren \\Subscribed)\nLone/Child (\\HasChildren \\Subscribed)\n"
        "Sent (\\HasNoChildren \\Subscribed \\Sent)\nWork/Projects (\\HasNoChildren \\Subscribed)\n");
  // RECURSIVEMATCH: Work is not subscribed, Work/Projects (below "%") is
  CHECK(list("a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" %\r\n") ==
        "INBOX (\\HasNoChildren \\Subscribed)\nLone (\\NonExistent \\HasChildren) (\"CHILDINFO\" (\"SUBSCRIBED\")) -\n"
        "Sent (\\HasNoChildren \\Subscribed \\Sent)\nWork (\\HasChildren) (\"CHILDINFO\" (\"SUBSCRIBED\"))\n");
  CHECK(list("a LIST (SPECIAL-USE) \"\" *\r\n") == "Sent (\\HasNoChildren \\Sent)\nTrash (\\HasNoChildren \\Trash)\n");
  CHECK(list("a LIST \"\" (INBOX \"Work/Old\" Nope) RETURN (SUBSCRIBED CHILDREN)\r\n") ==
        "INBOX (\\HasNoChildren \\Subscribed)\nWork/Old (\\HasNoChildren)\n");
  CHECK(list("a LIST (REMOTE) \"\" Sent\r\n") == "Sent (\\HasNoChildren \\Sent)\n");
  // RFC 5258: BAD for these
  for (const char* bad : {"a LIST (RECURSIVEMATCH) \"\" *\r\n", "a LIST (FOO) \"\" *\r\n", "a LIST \"\" * RETURN (FOO)\r\n",
                          "a LIST \"\" * RETURN\r\n", "a LIST \"\" () \r\n", "a LIST \"\"\r\n", "a LIST \"\" * EXTRA (X)\r\n"}) {
    INFO(bad);
    CHECK(list(bad) == "BAD");
  }
}

TEST_CASE("LIST-STATUS return option", "[imap][imapext]") {
  auto req = parse_list(parse_one("a LIST \"\" (% Work/%) RETURN (STATUS (MESSAGES unseen) SPECIAL-USE)\r\n").args);
  REQUIRE(req);
  CHECK(req->ret_status);
  CHECK(req->ret_special_use);
  CHECK(req->status_items == std::vector<std::string>{"MESSAGES", "UNSEEN"});
  CHECK(req->patterns == std::vector<std::string>{"%", "Work/%"});
  CHECK_FALSE(parse_list(parse_one("a LIST \"\" * RETURN (STATUS MESSAGES)\r\n").args));
  CHECK_FALSE(parse_list(parse_one("a LIST \"\" * RETURN (STATUS ((MESSAGES)))\r\n").args));
}

TEST_CASE("LIST pattern matching", "[imap][imapext]") {
  CHECK(list_match("*", "a/b/c"));
  CHECK(list_match("%", "a"));
  CHECK_FALSE(list_match("%", "a/b"));
  CHECK(list_match("a/%/c", "a/b/c"));
  CHECK(list_match("INBOX*", "INBOX/x"));
  CHECK(list_match("inBox/%", "INBOX/x"));
  CHECK_FALSE(list_match("inboxes", "INBOX"));
  CHECK(list_match("%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%z", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaz"));
}

// ------------------------------------------------------- CONDSTORE / QRESYNC ---

TEST_CASE("SELECT parameters", "[imap][imapext]") {
  auto p = parse_select_params(parse_one("a SELECT INBOX (CONDSTORE)\r\n").args.at(1));
  REQUIRE(p);
  CHECK(p->condstore);
  CHECK_FALSE(p->qresync);
  p = parse_select_params(parse_one("a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1:3 5:7)))\r\n").args.at(1));
  REQUIRE(p);
  REQUIRE(p->qresync);
  CHECK(p->qresync->uidvalidity == 67890007);
  CHECK(p->qresync->modseq == 20050715194045000ull);
  REQUIRE(p->qresync->known_uids);
  CHECK(p->qresync->known_uids->to_string() == "41,43:211,214:541");
  p = parse_select_params(parse_one("a SELECT INBOX (QRESYNC (1 2))\r\n").args.at(1));
  REQUIRE(p);
  CHECK_FALSE(p->qresync->known_uids);
  for (const char* bad : {"(QRESYNC (0 2))", "(QRESYNC (4294967296 2))", "(QRESYNC (1 0))", "(QRESYNC (1 9223372036854775808))",
                          "(QRESYNC (1 2 1:*))", "(QRESYNC (1 2 1:5 (1:2)))", "(QRESYNC (1))", "(QRESYNC)", "(FOO)",
                          "(QRESYNC (1 2) QRESYNC (1 2))", "(QRESYNC (1 2 3 (1 2) x))"}) {
    INFO(bad);
    CHECK_FALSE(parse_select_params(parse_one(std::string("a SELECT INBOX ") + bad + "\r\n").args.at(1)));
  }
}

TEST_CASE("FETCH and STORE modifiers, VANISHED", "[imap][imapext]") {
  auto f = parse_fetch_modifiers(parse_one("a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n").args.at(3));
  REQUIRE(f);
  CHECK(f->changed_since == 12345u);
  CHECK(f->vanished);
  for (const char* bad : {"(VANISHED)", "(CHANGEDSINCE 0)", "(CHANGEDSINCE)", "(CHANGEDSINCE x)", "()", "(FOO 1)"}) {
    INFO(bad);
    CHECK_FALSE(parse_fetch_modifiers(parse_one(std::string("a FETCH 1 FLAGS ") + bad + "\r\n").args.at(2)));
  }
  auto s = parse_store_modifiers(parse_one("a STORE 1 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)\r\n").args.at(1));
  REQUIRE(s);
  CHECK(*s == 0u);  // valzer: 0 is allowed and always fails for existing messages
  CHECK_FALSE(parse_store_modifiers(parse_one("a STORE 1 (UNCHANGEDSINCE) +FLAGS x\r\n").args.at(1)));
  CHECK_FALSE(parse_store_modifiers(parse_one("a STORE 1 (CHANGEDSINCE 5) +FLAGS x\r\n").args.at(1)));
  CHECK(vanished_response({3, 4, 5, 9}, true) == "* VANISHED (EARLIER) 3:5,9\r\n");
  CHECK(vanished_response({7}, false) == "* VANISHED 7\r\n");
  CHECK(vanished_response({}, false).empty());
}
