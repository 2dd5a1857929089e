// Unit tests for the file mailbox store (store/fs_store): mailboxes, UIDs,
// flags with CONDSTORE, copy/move/expunge, single-instance delivery, crash
// leftovers (torn index tails, damaged and missing indexes), compaction and
// concurrent deliveries to one mailbox.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "common/failpoint.hpp"
#include "store/fs_store.hpp"
#include "store/index_format.hpp"
#include "tests/support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace moat;
using namespace moat::store;

namespace {

constexpr format::Codec kCodecs[] = {format::Codec::None, format::Codec::Lz4, format::Codec::Zstd};

// pack_max 0: every body in a file of its own (the layout for big bodies).
std::unique_ptr<FsStore> open_store(const fs::path& root, format::Codec codec = format::Codec::None,
                                    std::size_t pack_max = 128 * 1024,
                                    std::uint64_t pack_size = 64ull << 20) {
  FsOptions o;
  o.root = root;
  o.codec = codec;
  o.pack_max = pack_max;
  o.pack_size = pack_size;
  o.compress_min = 64;
  o.sweep_grace = std::chrono::seconds(0);
  o.compact_min_dead = 4;
  auto s = FsStore::open(o);
  REQUIRE(s.ok());
  return std::move(*s);
}

std::string message(int n, std::size_t pad = 0) {
  return "From: a@example.org\r\nTo: b@example.test\r\nSubject: message " + std::to_string(n) + "\r\n\r\n" +
         std::string(pad, 'x') + "body " + std::to_string(n) + "\r\n";
}

std::uint32_t append(FsStore& s, const std::string& user, const std::string& box, const std::string& msg,
                     Flags flags = 0) {
  AppendRequest r;
  r.content = msg;
  r.flags = flags;
  auto uid = s.append(user, box, r);
  REQUIRE(uid.ok());
  return *uid;
}

fs::path index_of(FsStore& s, const std::string& user, const std::string& box) {
  auto boxes = s.list(user);
  REQUIRE(boxes.ok());
  for (const auto& b : *boxes)
    if (b.name == box) return s.options().root / "users" / user_dir_name(user) / b.guid / "index";
  FAIL("no mailbox " << box);
  return {};
}

std::vector<std::uint32_t> uids_of(FsStore& s, const std::string& user, const std::string& box) {
  auto m = s.messages(user, box);
  REQUIRE(m.ok());
  std::vector<std::uint32_t> out;
  for (const auto& x : *m) out.push_back(x.uid);
  return out;
}

}  // namespace

TEST_CASE("new users get INBOX, Drafts, Sent, Junk and Trash", "[store]") {
  test::TempDir tmp;
  auto s = open_store(tmp.path);
  REQUIRE(s->create_user("alice@example.test").ok());
  REQUIRE(s->create_user("alice@example.test").ok());  // idempotent
  auto boxes = s->list("ALICE@example.test");          // user names are case-insensitive
  REQUIRE(boxes.ok());
  REQUIRE(boxes->size() == 5);
  CHECK((*boxes)[0].name == "INBOX");
  std::map<std::string, SpecialUse> uses;
  for (const auto& b : *boxes) uses[b.name] = b.special_use;
  CHECK(uses["Drafts"] == SpecialUse::Drafts);
  CHECK(uses["Sent"] == SpecialUse::Sent);
  CHECK(uses["Junk"] == SpecialUse::Junk);
  CHECK(uses["Trash"] == SpecialUse::Trash);
  CHECK(special_use_name(SpecialUse::Junk) == "\\Junk");
  CHECK(s->list("nobody@example.test").error().code == Errc::NotFound);
}

TEST_CASE("mailbox names are checked and never become paths", "[store]") {
  for (const char* bad : {"", "/a", "a/", "a//b", "..", "a/../b", ".", "a\nb", "a*", "50%", "\xff\xfe"}) {
    INFO(bad);
    CHECK(normalize_mailbox_name(bad).error().code == Errc::Invalid);
  }
  CHECK(*normalize_mailbox_name("inbox") == "INBOX");
  CHECK(*normalize_mailbox_name("Inbox/Sub") == "INBOX/Sub");
  CHECK(*normalize_mailbox_name("Inboxes") == "Inboxes");
  CHECK(*normalize_mailbox_name("Archiv/2026/März") == "Archiv/2026/März");
  CHECK(user_dir_name("../../etc") == "%2E.%2F..%2Fetc");  // one file name: no '/' survives
  CHECK(user_dir_name("a/b\\c\x01") == "a%2Fb%5Cc%01");
  CHECK(user_dir_name("Bob@Example.TEST") == "bob@example.test");
  CHECK(user_dir_name(".hidden") == "%2Ehidden");

  test::TempDir tmp;
  auto s = open_store(tmp.path);
  REQUIRE(s->create_user("u").ok());
  CHECK(s->create("u", "../escape").error().code == Errc::Invalid);
  REQUIRE(s->create("u", "Projects/moat").ok());
  CHECK(s->create("u", "Projects/moat").error().code == Errc::Invalid);
  // Folders are GUIDs: nothing named after the mailbox exists on disk.
  for (const auto& e : fs::recursive_directory_iterator(tmp.path))
    CHECK(e.path().filename().string().find("moat") == std::string::npos);
}

TEST_CASE("append, fetch whole and by range, status", "[store]") {
  test::TempDir tmp;
  for (int variant = 0; variant < 6; ++variant) {
    const auto codec = kCodecs[variant % 3];
    const std::size_t pack_max = variant >= 3 ? 0 : 128 * 1024;
    INFO("codec " << format::codec_name(codec) << " pack_max " << pack_max);
    auto s = open_store(tmp.path / std::to_string(variant), codec, pack_max);
    REQUIRE(s->create_user("u").ok());
    auto before = s->status("u", "INBOX");
    REQUIRE(before.ok());
    CHECK(before->uidnext == 1);
    CHECK(before->uidvalidity > 0);
    const auto m1 = message(1, 3000), m2 = message(2);
    CHECK(append(*s, "u", "INBOX", m1, kSeen) == 1);
    CHECK(append(*s, "u", "INBOX", m2) == 2);
    CHECK(*s->fetch("u", "INBOX", 1) == m1);
    CHECK(*s->fetch("u", "inbox", 2) == m2);
    CHECK(*s->fetch("u", "INBOX", 1, 6, 13) == m1.substr(6, 13));
    CHECK(*s->fetch("u", "INBOX", 1, m1.size() - 3, 100) == m1.substr(m1.size() - 3));
    CHECK(s->fetch("u", "INBOX", 1, m1.size() + 10, 5)->empty());
    CHECK(s->fetch("u", "INBOX", 3).error().code == Errc::NotFound);
    auto st = s->status("u", "INBOX");
    REQUIRE(st.ok());
    CHECK(st->messages == 2);
    CHECK(st->unseen == 1);
    CHECK(st->uidnext == 3);
    CHECK(st->uidvalidity == before->uidvalidity);
    CHECK(st->size == m1.size() + m2.size());
    CHECK(st->highest_modseq > before->highest_modseq);
    auto msgs = s->messages("u", "INBOX");
    REQUIRE(msgs->size() == 2);
    CHECK((*msgs)[0].size == m1.size());
    CHECK((*msgs)[0].flags == kSeen);
    CHECK(format::valid_guid((*msgs)[0].guid));
    CHECK((*msgs)[0].guid != (*msgs)[1].guid);
    // A second store object (another process) sees the same, whatever
    // codec it would write with.
    auto other = open_store(s->options().root, kCodecs[(variant + 1) % 3], pack_max);
    CHECK(*other->fetch("u", "INBOX", 1) == m1);
    CHECK(*other->fetch("u", "INBOX", 1, 6, 13) == m1.substr(6, 13));
    if (codec != format::Codec::None) {
      auto usage = s->body_usage();
      CHECK(usage->first < m1.size() + m2.size());  // the padded one shrank
    }
  }
}

TEST_CASE("flags, keywords and UNCHANGEDSINCE", "[store]") {
  test::TempDir tmp;
  auto s = open_store(tmp.path);
  REQUIRE(s->create_user("u").ok());
  for (int i = 1; i <= 3; ++i) append(*s, "u", "INBOX", message(i));
  auto m0 = *s->messages("u", "INBOX");
  FlagUpdate add{FlagUpdate::Mode::Add, kFlagged, {"$Important", "$important", "Work"}, std::nullopt};
  auto r = s->store_flags("u", "INBOX", {{1, 2}}, add);
  REQUIRE(r.ok());
  REQUIRE(r->changed.size() == 2);
  CHECK(r->changed[0].flags == kFlagged);
  CHECK(r->changed[0].keywords == std::vector<std::string>{"$Important", "Work"});  // duplicates folded
  CHECK(r->changed[0].modseq > m0[0].modseq);
  // Unchanged flags do not bump MODSEQ.
  auto again = s->store_flags("u", "INBOX", {{1, 1}}, add);
  CHECK(again->changed.empty());
  // UNCHANGEDSINCE older than message 1's modseq: reported, not changed.
  FlagUpdate cond{FlagUpdate::Mode::Replace, kSeen, {}, m0[2].modseq};
  auto c = s->store_flags("u", "INBOX", {{1, 3}}, cond);
  REQUIRE(c.ok());
  CHECK(c->modified == std::vector<std::uint32_t>{1, 2});
  REQUIRE(c->changed.size() == 1);
  CHECK(c->changed[0].uid == 3);
  CHECK(c->changed[0].flags == kSeen);
  FlagUpdate rm{FlagUpdate::Mode::Remove, kFlagged, {"WORK"}, std::nullopt};
  auto d = s->store_flags("u", "INBOX", {{2, 2}}, rm);
  REQUIRE(d->changed.size() == 1);
  CHECK(d->changed[0].flags == 0);
  CHECK(d->changed[0].keywords == std::vector<std::string>{"$Important"});
  // Changes since the start: all three.
  auto ch = s->changes_since("u", "INBOX", m0[2].modseq);
  REQUIRE(ch.ok());
  CHECK(ch->changed.size() == 3);
  CHECK(ch->highest_modseq == s->status("u", "INBOX")->highest_modseq);
  // State survives a reopen.
  auto s2 = open_store(tmp.path);
  auto m = *s2->messages("u", "INBOX");
  CHECK(m[0].flags == kFlagged);
  CHECK(m[1].keywords == std::vector<std::string>{"$Important"});
  CHECK(m[2].flags == kSeen);
}

TEST_CASE("expunge, copy, move, QRESYNC vanished", "[store]") {
  test::TempDir tmp;
  auto s = open_store(tmp.path);
  REQUIRE(s->create_user("u").ok());
  for (int i = 1; i <= 5; ++i) append(*s, "u", "INBOX", message(i), i % 2 ? kDeleted : 0);
  const auto ms = s->status("u", "INBOX")->highest_modseq;
  // UID EXPUNGE 1:3 removes only \Deleted messages in the set.
  auto gone = s->expunge("u", "INBOX", UidRanges{{1, 3}});
  REQUIRE(gone.ok());
  CHECK(*gone == std::vector<std::uint32_t>{1, 3});
  auto all = s->expunge("u", "INBOX");
  CHECK(*all == std::vector<std::uint32_t>{5});
  CHECK(uids_of(*s, "u", "INBOX") == std::vector<std::uint32_t>{2, 4});
  auto ch = s->changes_since("u", "INBOX", ms);
  CHECK(ch->vanished == std::vector<std::uint32_t>{1, 3, 5});
  CHECK(ch->changed.empty());

  auto cp = s->copy("u", "INBOX", {{1, UINT32_MAX}}, "Trash");
  REQUIRE(cp.ok());
  CHECK(cp->uids == std::vector<std::pair<std::uint32_t, std::uint32_t>>{{2, 1}, {4, 2}});
  CHECK(cp->dest_uidvalidity == s->status("u", "Trash")->uidvalidity);
  // Copies share the body (single instance): same GUID, same bytes.
  CHECK((*s->messages("u", "Trash"))[0].guid == (*s->messages("u", "INBOX"))[0].guid);
  CHECK(*s->fetch("u", "Trash", 1) == message(2));

  auto mv = s->move("u", "INBOX", {{4, 4}}, "Junk");
  REQUIRE(mv.ok());
  CHECK(mv->expunged == std::vector<std::uint32_t>{4});
  CHECK(uids_of(*s, "u", "INBOX") == std::vector<std::uint32_t>{2});
  CHECK(*s->fetch("u", "Junk", 1) == message(4));
  // UIDs are never reused, even after expunging the highest.
  CHECK(append(*s, "u", "INBOX", message(6)) == 6);
}

TEST_CASE("rename and delete mailboxes", "[store]") {
  test::TempDir tmp;
  auto s = open_store(tmp.path);
  REQUIRE(s->create_user("u").ok());
  REQUIRE(s->create("u", "a").ok());
  REQUIRE(s->create("u", "a/b").ok());
  append(*s, "u", "a/b", message(1));
  const auto v = s->status("u", "a/b")->uidvalidity;
  REQUIRE(s->rename("u", "a", "z").ok());
  CHECK(s->status("u", "a/b").error().code == Errc::NotFound);
  CHECK(s->status("u", "z/b")->uidvalidity == v);  // UIDs kept: same UIDVALIDITY
  CHECK(*s->fetch("u", "z/b", 1) == message(1));
  CHECK(s->rename("u", "z", "Sent").error().code == Errc::Invalid);
  // Renaming INBOX moves its messages and leaves it empty.
  append(*s, "u", "INBOX", message(2));
  REQUIRE(s->rename("u", "INBOX", "Old").ok());
  CHECK(s->status("u", "INBOX")->messages == 0);
  CHECK(*s->fetch("u", "Old", 1) == message(2));
  CHECK(s->remove("u", "INBOX").error().code == Errc::Invalid);
  REQUIRE(s->remove("u", "z/b").ok());
  CHECK(s->status("u", "z/b").error().code == Errc::NotFound);
  // A re-created mailbox gets a new UIDVALIDITY.
  REQUIRE(s->create("u", "z/b").ok());
  CHECK(s->status("u", "z/b")->uidvalidity > v);
}

TEST_CASE("fetch_many returns bodies in order and NotFound for gone UIDs", "[store]") {
  test::TempDir tmp;
  for (const auto codec : kCodecs) {
    INFO("codec " << format::codec_name(codec));
    auto s = open_store(tmp.path / format::codec_name(codec), codec);
    REQUIRE(s->create_user("u").ok());
    // One body bigger than the 64 KiB first read, so both read paths run.
    const std::vector<std::string> msgs{message(1), message(2, 100000), message(3, 5000)};
    for (const auto& m : msgs) append(*s, "u", "INBOX", m);
    REQUIRE(s->store_flags("u", "INBOX", {{2, 2}}, {FlagUpdate::Mode::Add, kDeleted, {}, std::nullopt}).ok());
    auto got = s->fetch_many("u", "INBOX", {3, 1, 2});
    REQUIRE(got.size() == 3);
    CHECK(*got[0] == msgs[2]);
    CHECK(*got[1] == msgs[0]);
    CHECK(*got[2] == msgs[1]);
    REQUIRE(s->expunge("u", "INBOX").ok());
    got = s->fetch_many("u", "INBOX", {1, 2, 9});
    REQUIRE(got.size() == 3);
    CHECK(*got[0] == msgs[0]);
    CHECK(got[1].error().code == Errc::NotFound);
    CHECK(got[2].error().code == Errc::NotFound);
    CHECK(s->fetch_many("u", "nope", {1})[0].error().code == Errc::NotFound);
  }
}

TEST_CASE("fetch_many reads neighbours in a pack together and still finds damage", "[store]") {
  test::TempDir tmp;
  for (const auto codec : kCodecs) {
    INFO("codec " << format::codec_name(codec));
    // pack_size 64 KiB: a window spans several packs; pack_max 128 KiB keeps
    // the 100 KB body in the current pack, past the 4 KiB read-ahead room.
    auto s = open_store(tmp.path / format::codec_name(codec), codec, 128 * 1024, 64 * 1024);
    REQUIRE(s->create_user("u").ok());
    std::vector<std::string> msgs;
    std::vector<std::uint32_t> uids;
    for (int i = 0; i < 80; ++i) {
      msgs.push_back(message(i, i == 40 ? 100000 : std::size_t(i * 37 % 3000)));
      uids.push_back(append(*s, "u", "INBOX", msgs.back()));
    }
    // out of order, with a repeat and one that does not exist
    std::vector<std::uint32_t> want(uids.rbegin(), uids.rend());
    want.push_back(uids[3]);
    want.push_back(9999);
    auto got = s->fetch_many("u", "INBOX", want);
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < 80; ++i) CHECK(got[i].value() == msgs[79 - i]);
    CHECK(got[80].value() == msgs[3]);
    CHECK(got[81].error().code == Errc::NotFound);

    // One byte of message 10's record flipped in its pack: that message
    // fails its checksum (Corrupt), its neighbours still read.
    const auto infos = *s->messages("u", "INBOX");
    const auto& victim = infos[10];
    REQUIRE(victim.pack != 0);
    const auto pack = s->options().root / "bodies" / "pack";
    fs::path file;
    for (const auto& e : fs::directory_iterator(pack))
      if (std::stoul(e.path().filename().string()) == victim.pack) file = e.path();
    REQUIRE(!file.empty());
    {
      std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
      std::string rec(8192, '\0');
      f.seekg(std::streamoff(victim.pack_offset));
      f.read(rec.data(), std::streamsize(rec.size()));
      rec.resize(std::size_t(f.gcount()));
      f.clear();
      auto h = format::decode_body_header(rec);
      REQUIRE(h.ok());
      // a byte in the middle of the stored body
      const auto at = std::streamoff(victim.pack_offset + h->second + h->first.stored / 2);
      f.seekg(at);
      char c = 0;
      f.read(&c, 1);
      c = char(c ^ 0x55);
      f.seekp(at);
      f.write(&c, 1);
    }
    got = s->fetch_many("u", "INBOX", uids);
    for (std::size_t i = 0; i < 80; ++i) {
      INFO("message " << i);
      if (i == 10) CHECK(got[i].error().code == Errc::Corrupt);
      else CHECK(got[i].value() == msgs[i]);
    }
  }
}

TEST_CASE("version changes with every append, flag change and expunge, not otherwise", "[store]") {
  test::TempDir tmp;
  auto s = open_store(tmp.path);
  REQUIRE(s->create_user("u").ok());
  auto same = [](const MailboxStatus& a, const MailboxStatus& b) {
    return a.uidvalidity == b.uidvalidity && a.uidnext == b.uidnext && a.highest_modseq == b.highest_modseq &&
           a.messages == b.messages;
  };
  auto v0 = *s->version("u", "INBOX");
  append(*s, "u", "INBOX", message(1));
  auto v1 = *s->version("u", "INBOX");
  CHECK(!same(v0, v1));
  CHECK(v1.messages == 1);
  CHECK(same(v1, *s->version("u", "INBOX")));
  REQUIRE(s->fetch("u", "INBOX", 1).ok());
  REQUIRE(s->set_cache("u", "INBOX", 1, "(env)", "(bs)").ok());
  CHECK(same(v1, *s->version("u", "INBOX")));  // reading and caching change nothing a client sees
  REQUIRE(s->store_flags("u", "INBOX", {{1, 1}}, {FlagUpdate::Mode::Add, kDeleted, {}, std::nullopt}).ok());
  auto v2 = *s->version("u", "INBOX");
  CHECK(!same(v1, v2));
  REQUIRE(s->expunge("u", "INBOX").ok());
  auto v3 = *s->version("u", "INBOX");
  CHECK(!same(v2, v3));
  CHECK(v3.messages == 0);
  // Another store object (another process) sees the same version.
  auto other = open_store(s->options().root);
  CHECK(same(v3, *other->version("u", "INBOX")));
  CHECK(s->version("u", "nope").error().code == Errc::NotFound);
}

TEST_CASE("ENVELOPE and BODYSTRUCTURE are cached at delivery and append", "[store]") {
  test::TempDir tmp;
  auto s = open_store(tmp.path);
  const std::string msg = "From: Ann <a@example.org>\r\nTo: b@x.test\r\nSubject: hello\r\n"
                          "Content-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n";
  REQUIRE(s->deliver(msg, 1700000000, {{"b@x.test", "INBOX", 0}})[0].status.ok());
  append(*s, "b@x.test", "INBOX", msg);
  AppendRequest given;
  given.content = msg;
  given.envelope = "(given)";
  given.bodystructure = "(given bs)";
  REQUIRE(s->append("b@x.test", "INBOX", given).ok());
  auto m = s->messages("b@x.test", "INBOX");
  REQUIRE(m->size() == 3);
  for (int i = 0; i < 2; ++i) {
    CHECK((*m)[i].envelope.find("\"hello\" ((\"Ann\" NIL \"a\" \"example.org\"))") != std::string::npos);
    CHECK((*m)[i].bodystructure.find("(\"text\" \"plain\" (\"charset\" \"utf-8\")") == 0);
  }
  CHECK((*m)[2].envelope == "(given)");  // what the session computed is kept as given
  CHECK((*m)[2].bodystructure == "(given bs)");
}

TEST_CASE("pack files: rotation, a torn tail skipped, a lost index rebuilt from them", "[store][crash]") {
  test::TempDir tmp;
  const auto root = tmp.path / "s";
  std::vector<std::string> msgs;
  for (int i = 1; i <= 12; ++i) msgs.push_back(message(i, std::size_t(i) * 150));
  fs::path idx;
  {
    auto s = open_store(root, format::Codec::None, 128 * 1024, 2000);  // a new pack every ~2 KB
    REQUIRE(s->create_user("u").ok());
    for (int i = 0; i < 6; ++i) append(*s, "u", "INBOX", msgs[std::size_t(i)]);
    idx = index_of(*s, "u", "INBOX");
  }
  std::vector<fs::path> packs;
  for (const auto& e : fs::directory_iterator(root / "bodies" / "pack")) packs.push_back(e.path());
  std::sort(packs.begin(), packs.end());
  REQUIRE(packs.size() >= 2);
  // A crash in the middle of an append: a whole header and half the body
  // at the newest pack's end. Its length then reaches into the records
  // appended after it; only its CRC tells it apart.
  {
    std::ifstream in(packs.back(), std::ios::binary);
    std::string whole((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto h = format::decode_body_header(whole);
    REQUIRE(h.ok());
    std::ofstream(packs.back(), std::ios::app | std::ios::binary)
        << whole.substr(0, h->second + h->first.stored / 2);
  }
  {
    auto s = open_store(root, format::Codec::Lz4, 128 * 1024, 1u << 20);  // bigger packs now: appends follow the torn tail
    for (int i = 6; i < 12; ++i) append(*s, "u", "INBOX", msgs[std::size_t(i)]);
    for (std::uint32_t uid = 1; uid <= 12; ++uid) REQUIRE(*s->fetch("u", "INBOX", uid) == msgs[uid - 1]);
  }
  fs::remove(idx);
  auto s = open_store(root, format::Codec::Zstd);
  auto got = s->messages("u", "INBOX");
  REQUIRE(got.ok());
  std::multiset<std::string> bodies;
  for (const auto& m : *got) {
    CHECK(m.pack != 0);
    bodies.insert(*s->fetch("u", "INBOX", m.uid));
  }
  CHECK(bodies == std::multiset<std::string>(msgs.begin(), msgs.end()));  // each once, nothing from the torn half
  CHECK(s->body_usage()->second == 12);
}

TEST_CASE("compaction moves live bodies out of mostly expunged packs and frees them", "[store]") {
  test::TempDir tmp;
  auto s = open_store(tmp.path);
  REQUIRE(s->create_user("u").ok());
  REQUIRE(s->create_user("v").ok());
  std::vector<std::string> msgs;
  for (int i = 1; i <= 8; ++i) msgs.push_back(message(i, 2000));
  for (const auto& m : msgs) append(*s, "u", "INBOX", m);
  REQUIRE(s->copy("u", "INBOX", {{2, 2}}, "Trash").ok());           // one body in two mailboxes
  REQUIRE(s->deliver(msgs[0], 1700000000, {{"v", "INBOX", 0}})[0].status.ok());  // and a second user
  REQUIRE(s->store_flags("u", "INBOX", {{3, 8}}, {FlagUpdate::Mode::Add, kDeleted, {}, std::nullopt}).ok());
  REQUIRE(s->expunge("u", "INBOX").ok());
  const auto before = s->body_usage();
  auto reader = open_store(tmp.path);  // another process that knows the old places
  REQUIRE(*reader->fetch("u", "INBOX", 1) == msgs[0]);
  REQUIRE(s->compact().ok());
  const auto after = s->body_usage();
  CHECK(after->second == 3);                   // bodies 1, 2 and the delivered copy of 1
  CHECK(after->first < before->first / 2);
  CHECK(*s->fetch("u", "INBOX", 1) == msgs[0]);
  CHECK(*s->fetch("u", "INBOX", 2) == msgs[1]);
  CHECK(*s->fetch("u", "Trash", 1) == msgs[1]);
  CHECK(*s->fetch("v", "INBOX", 1) == msgs[0]);
  CHECK(*reader->fetch("u", "INBOX", 2) == msgs[1]);  // reads the moved copy
  CHECK(reader->fetch_many("u", "INBOX", {1, 2})[1].value() == msgs[1]);
  CHECK((*s->messages("u", "Trash"))[0].pack == (*s->messages("u", "INBOX"))[1].pack);  // still one copy
}

TEST_CASE("delivery stores one body for many users", "[store]") {
  test::TempDir tmp;
  auto s = open_store(tmp.path);
  const auto msg = message(1, 1000);
  std::vector<DeliveryTarget> targets{{"a@x.test", "INBOX", 0}, {"b@x.test", "INBOX", 0}, {"c@x.test", "Junk", 0}};
  auto res = s->deliver(msg, 1700000000, targets);
  REQUIRE(res.size() == 3);
  for (const auto& r : res) {
    REQUIRE(r.status.ok());
    CHECK(r.uid == 1);
  }
  CHECK(*s->fetch("a@x.test", "INBOX", 1) == msg);
  CHECK(*s->fetch("c@x.test", "Junk", 1) == msg);
  CHECK((*s->messages("b@x.test", "INBOX"))[0].internaldate == 1700000000);
  auto usage = s->body_usage();
  CHECK(usage->second == 1);                  // one body file ...
  CHECK(usage->first < 2 * msg.size());       // ... not three copies
  CHECK(s->usage("a@x.test")->bytes == msg.size());
  // Expunged by one user, the body stays for the others after compaction.
  REQUIRE(s->store_flags("a@x.test", "INBOX", {{1, 1}}, {FlagUpdate::Mode::Add, kDeleted, {}, std::nullopt}).ok());
  REQUIRE(s->expunge("a@x.test", "INBOX").ok());
  REQUIRE(s->compact().ok());
  CHECK(*s->fetch("b@x.test", "INBOX", 1) == msg);
  for (const char* u : {"b@x.test"}) {
    REQUIRE(s->store_flags(u, "INBOX", {{1, 1}}, {FlagUpdate::Mode::Add, kDeleted, {}, std::nullopt}).ok());
    REQUIRE(s->expunge(u, "INBOX").ok());
  }
  REQUIRE(s->compact().ok());
  CHECK(s->body_usage()->second == 1);  // c still holds it
  REQUIRE(s->delete_user("c@x.test").ok());
  REQUIRE(s->compact().ok());
  CHECK(s->body_usage()->second == 0);  // nobody: reclaimed
}

TEST_CASE("a torn index tail is cut off, UIDs and UIDVALIDITY kept", "[store][crash]") {
  test::TempDir tmp;
  std::uint32_t validity = 0;
  fs::path idx;
  {
    auto s = open_store(tmp.path);
    REQUIRE(s->create_user("u").ok());
    append(*s, "u", "INBOX", message(1));
    append(*s, "u", "INBOX", message(2));
    validity = s->status("u", "INBOX")->uidvalidity;
    idx = index_of(*s, "u", "INBOX");
  }
  // Half a record, as a crash in the middle of write() leaves it; try every cut.
  format::Record r;
  r.type = format::RecordType::Append;
  r.msg.uid = 3;
  r.msg.guid = std::string(32, 'a');
  const auto frame = format::encode(r);
  const auto good = fs::file_size(idx);
  for (std::size_t cut = 1; cut < frame.size(); cut += 3) {
    INFO("cut " << cut);
    fs::resize_file(idx, good);
    { std::ofstream(idx, std::ios::app | std::ios::binary) << frame.substr(0, cut); }
    auto s = open_store(tmp.path);
    CHECK(uids_of(*s, "u", "INBOX") == std::vector<std::uint32_t>{1, 2});
    CHECK(s->status("u", "INBOX")->uidvalidity == validity);
    CHECK(fs::file_size(idx) == good);
  }
  auto s = open_store(tmp.path);
  CHECK(append(*s, "u", "INBOX", message(3)) == 3);
}

TEST_CASE("a damaged or lost index is rebuilt from the body files", "[store][crash]") {
  test::TempDir tmp;
  std::uint32_t validity = 0;
  fs::path idx;
  {
    auto s = open_store(tmp.path);
    REQUIRE(s->create_user("u").ok());
    for (int i = 1; i <= 4; ++i) append(*s, "u", "INBOX", message(i));
    REQUIRE(s->store_flags("u", "INBOX", {{4, 4}}, {FlagUpdate::Mode::Add, kDeleted, {}, std::nullopt}).ok());
    REQUIRE(s->expunge("u", "INBOX").ok());
    validity = s->status("u", "INBOX")->uidvalidity;
    idx = index_of(*s, "u", "INBOX");
  }
  SECTION("garbage in the middle") {
    auto size = fs::file_size(idx);
    std::fstream f(idx, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(std::streamoff(size / 2));
    f << "garbage!garbage!";
  }
  SECTION("index deleted") { fs::remove(idx); }
  SECTION("index emptied") { fs::resize_file(idx, 0); }
  auto s = open_store(tmp.path);
  auto st = s->status("u", "INBOX");
  REQUIRE(st.ok());
  CHECK(st->uidvalidity > validity);  // UIDs could not be kept: clients resync
  std::set<std::string> bodies;
  auto msgs = s->messages("u", "INBOX");
  REQUIRE(msgs.ok());
  for (const auto& m : *msgs) {
    auto data = s->fetch("u", "INBOX", m.uid);
    INFO("UID " << m.uid << ": " << (data ? std::string() : data.error().detail));
    REQUIRE(data.ok());
    bodies.insert(*data);
  }
  // Messages 1-3 are all there (4 was expunged; it may come back, never get lost).
  for (int i = 1; i <= 3; ++i) CHECK(bodies.count(message(i)) == 1);
  // New mail still gets a UID above all others.
  auto uids = uids_of(*s, "u", "INBOX");
  CHECK(append(*s, "u", "INBOX", message(9)) > uids.back());
}

TEST_CASE("compaction rewrites the index and keeps readers working", "[store]") {
  test::TempDir tmp;
  auto s = open_store(tmp.path);
  REQUIRE(s->create_user("u").ok());
  for (int i = 1; i <= 20; ++i) append(*s, "u", "INBOX", message(i));
  for (int round = 0; round < 5; ++round)
    REQUIRE(s->store_flags("u", "INBOX", {{1, 20}}, {FlagUpdate::Mode::Replace, Flags(round % 2 ? kSeen : 0), {}, std::nullopt}).ok());
  REQUIRE(s->store_flags("u", "INBOX", {{1, 10}}, {FlagUpdate::Mode::Add, kDeleted, {}, std::nullopt}).ok());
  REQUIRE(s->expunge("u", "INBOX").ok());
  auto idx = index_of(*s, "u", "INBOX");
  auto reader = open_store(tmp.path);  // another process with the old index open
  CHECK(uids_of(*reader, "u", "INBOX").size() == 10);
  const auto before = fs::file_size(idx);
  const auto status_before = *s->status("u", "INBOX");
  const auto bodies_before = s->body_usage()->second;
  REQUIRE(s->compact().ok());
  CHECK(fs::file_size(idx) < before / 2);
  CHECK(s->body_usage()->second == bodies_before - 10);
  auto after = *reader->status("u", "INBOX");  // reopens the new file by itself
  CHECK(after.uidvalidity == status_before.uidvalidity);
  CHECK(after.uidnext == status_before.uidnext);
  CHECK(after.highest_modseq == status_before.highest_modseq);
  CHECK(*reader->fetch("u", "INBOX", 15) == message(15));
  CHECK(reader->changes_since("u", "INBOX", 0)->vanished.size() == 10);
  CHECK(append(*reader, "u", "INBOX", message(21)) == 21);
  CHECK(uids_of(*s, "u", "INBOX").back() == 21);
}

TEST_CASE("concurrent deliveries to one mailbox get unique ascending UIDs", "[store][concurrency]") {
  test::TempDir tmp;
  auto s1 = open_store(tmp.path);
  auto s2 = open_store(tmp.path);  // two store objects: cross-process locking too
  REQUIRE(s1->create_user("u").ok());
  constexpr int kThreads = 4, kEach = 25;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      auto& s = t % 2 ? *s1 : *s2;
      for (int i = 0; i < kEach; ++i) {
        auto msg = message(t * 1000 + i);
        auto r = s.deliver(msg, 0, {{"u", "INBOX", 0}});
        if (r.size() != 1 || !r[0].status.ok()) ++failures;
        if (i % 5 == 0) (void)s.store_flags("u", "INBOX", {{1, UINT32_MAX}}, {FlagUpdate::Mode::Add, kSeen, {}, std::nullopt});
      }
    });
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  auto uids = uids_of(*s1, "u", "INBOX");
  REQUIRE(uids.size() == kThreads * kEach);
  for (std::size_t i = 0; i < uids.size(); ++i) CHECK(uids[i] == i + 1);
  std::set<std::string> bodies;
  for (auto u : uids) bodies.insert(*s2->fetch("u", "INBOX", u));
  CHECK(bodies.size() == std::size_t(kThreads * kEach));
}

TEST_CASE("watchers hear about every change", "[store]") {
  test::TempDir tmp;
  auto s = open_store(tmp.path);
  REQUIRE(s->create_user("u").ok());
  std::vector<ChangeEvent> seen;
  std::mutex mu;
  auto sub = s->watch("u", "INBOX", [&](const ChangeEvent& e) {
    std::lock_guard lk(mu);
    seen.push_back(e);
  });
  REQUIRE(sub);
  append(*s, "u", "INBOX", message(1));
  (void)s->deliver(message(2), 0, {{"u", "INBOX", 0}});
  REQUIRE(s->store_flags("u", "INBOX", {{1, 1}}, {FlagUpdate::Mode::Add, kDeleted, {}, std::nullopt}).ok());
  REQUIRE(s->expunge("u", "INBOX").ok());
  append(*s, "u", "Trash", message(3));  // another mailbox: not ours
  REQUIRE(seen.size() == 4);
  CHECK(seen[1].messages == 2);
  CHECK(seen[1].uidnext == 3);
  CHECK(seen[3].messages == 1);
  CHECK(seen[3].highest_modseq > seen[2].highest_modseq);
  sub.reset();
  append(*s, "u", "INBOX", message(4));
  CHECK(seen.size() == 4);
  CHECK(s->watch("u", "Nope", [](const ChangeEvent&) {}) == nullptr);
}

TEST_CASE("write failures leave no half record and report DiskFull/IoError", "[store]") {
  test::TempDir tmp;
  auto s = open_store(tmp.path);
  REQUIRE(s->create_user("u").ok());
  append(*s, "u", "INBOX", message(1));
  ::setenv("MOAT_FAILPOINT", "store.body.write=error", 1);
  moat::failpoint::reload();
  AppendRequest r;
  auto m2 = message(2);
  r.content = m2;
  auto failed = s->append("u", "INBOX", r);
  ::setenv("MOAT_FAILPOINT", "store.index.write=error", 1);
  moat::failpoint::reload();
  auto failed2 = s->append("u", "INBOX", r);
  ::unsetenv("MOAT_FAILPOINT");
  moat::failpoint::reload();
  REQUIRE_FALSE(failed.ok());
  CHECK(is_temporary(failed.error().code));
  REQUIRE_FALSE(failed2.ok());
  CHECK(is_temporary(failed2.error().code));
  CHECK(uids_of(*s, "u", "INBOX") == std::vector<std::uint32_t>{1});
  CHECK(append(*s, "u", "INBOX", message(3)) == 2);
  auto other = open_store(tmp.path);
  CHECK(uids_of(*other, "u", "INBOX") == std::vector<std::uint32_t>{1, 2});
}
