// Unit tests for what FsStore keeps open between calls (the mailbox list,
// index and pack descriptors) and for fetch_batch()'s nowait path, which an
// IMAP session tries on its I/O thread before the blocking pool: it answers
// only from open files and the page cache, sees every change another
// process makes (appends, expunges, a compaction that replaces the index
// and the packs, a renamed mailbox), and says "would block" (nullopt)
// instead of waiting for a writer's lock; the blocking call then answers.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "store/fs_store.hpp"
#include "store/index_format.hpp"
#include "tests/support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace moat;
using namespace moat::store;

namespace {

std::unique_ptr<FsStore> open_at(const fs::path& root, std::size_t pack_max = 128 * 1024) {
  FsOptions o;
  o.root = root;
  o.pack_max = pack_max;
  o.sweep_grace = std::chrono::seconds(0);
  o.compact_min_dead = 4;
  auto s = FsStore::open(o);
  REQUIRE(s.ok());
  return std::move(*s);
}

std::string letter(int n) {
  return "From: a@example.org\r\nSubject: letter " + std::to_string(n) + "\r\n\r\n" + std::string(1500, 'x') +
         " body " + std::to_string(n) + "\r\n";
}

// A store with user "u" and `n` letters in INBOX (UIDs 1..n).
std::vector<std::string> fill(FsStore& s, int n) {
  REQUIRE(s.create_user("u").ok());
  std::vector<std::string> out;
  for (int i = 1; i <= n; ++i) {
    out.push_back(letter(i));
    AppendRequest r;
    r.content = out.back();
    REQUIRE(s.append("u", "INBOX", r).ok());
  }
  return out;
}

fs::path inbox_index(FsStore& s) {
  const auto boxes = s.list("u");
  REQUIRE(boxes.ok());
  for (const auto& b : *boxes)
    if (b.name == "INBOX") return s.options().root / "users" / user_dir_name("u") / b.guid / "index";
  FAIL("no INBOX");
  return {};
}

// The bodies of a batch, "-" for a message that is gone.
std::vector<std::string> bodies(const FetchBatch& b) {
  std::vector<std::string> out;
  for (const auto& r : b.bodies) out.push_back(r ? *r : "-");
  return out;
}

}  // namespace

TEST_CASE("nowait FETCH answers from open files once the mailbox has been read", "[store][nowait]") {
  test::TempDir tmp;
  auto reader = open_at(tmp.path);
  const auto msgs = fill(*open_at(tmp.path), 3);  // written by another process
  // Nothing open yet: the list, index and pack would need opening.
  CHECK_FALSE(reader->fetch_batch("u", "INBOX", {1, 2}, true));
  auto slow = reader->fetch_batch("u", "INBOX", {1, 2, 9}, false);
  REQUIRE(slow);
  CHECK(bodies(*slow) == std::vector<std::string>{msgs[0], msgs[1], "-"});
  auto quick = reader->fetch_batch("u", "INBOX", {3, 1, 9}, true);
  REQUIRE(quick);
  CHECK(bodies(*quick) == std::vector<std::string>{msgs[2], msgs[0], "-"});
  REQUIRE(quick->version);
  CHECK(quick->version->messages == 3);
  CHECK(quick->version->uidnext == 4);
  CHECK(reader->fetch_batch("u", "NoSuchBox", {1}, true) == std::nullopt);  // the pool path says why
  CHECK(reader->fetch_batch("u", "NoSuchBox", {1}, false)->bodies[0].error().code == Errc::NotFound);
}

TEST_CASE("nowait FETCH never serves a message expunged by another process", "[store][nowait]") {
  test::TempDir tmp;
  auto writer = open_at(tmp.path);
  const auto msgs = fill(*writer, 3);
  auto reader = open_at(tmp.path);
  REQUIRE(reader->fetch_batch("u", "INBOX", {2}, false));
  REQUIRE(reader->fetch_batch("u", "INBOX", {2}, true));
  REQUIRE(writer->store_flags("u", "INBOX", {{2, 2}}, {FlagUpdate::Mode::Add, kDeleted, {}, std::nullopt}).ok());
  REQUIRE(writer->expunge("u", "INBOX").ok());
  // The index grew: the new records are read on the pool, under the flock.
  CHECK_FALSE(reader->fetch_batch("u", "INBOX", {2}, true));
  auto slow = reader->fetch_batch("u", "INBOX", {1, 2}, false);
  CHECK(bodies(*slow) == std::vector<std::string>{msgs[0], "-"});
  auto quick = reader->fetch_batch("u", "INBOX", {1, 2}, true);
  REQUIRE(quick);
  CHECK(bodies(*quick) == std::vector<std::string>{msgs[0], "-"});
  CHECK(quick->version->messages == 2);
  // In-process changes need no second look.
  REQUIRE(reader->store_flags("u", "INBOX", {{1, 1}}, {FlagUpdate::Mode::Add, kDeleted, {}, std::nullopt}).ok());
  REQUIRE(reader->expunge("u", "INBOX").ok());
  quick = reader->fetch_batch("u", "INBOX", {1, 3}, true);
  REQUIRE(quick);
  CHECK(bodies(*quick) == std::vector<std::string>{"-", msgs[2]});
}

TEST_CASE("kept descriptors see an index and packs replaced by compaction", "[store][nowait]") {
  test::TempDir tmp;
  auto writer = open_at(tmp.path);
  const auto msgs = fill(*writer, 12);
  auto reader = open_at(tmp.path);
  REQUIRE(reader->fetch_batch("u", "INBOX", {1, 12}, false));
  const auto old_index = inbox_index(*reader);
  struct stat before {};
  REQUIRE(::stat(old_index.c_str(), &before) == 0);
  const auto first_pack = (*reader->messages("u", "INBOX"))[0].pack;
  REQUIRE(writer->store_flags("u", "INBOX", {{2, 11}}, {FlagUpdate::Mode::Add, kDeleted, {}, std::nullopt}).ok());
  REQUIRE(writer->expunge("u", "INBOX").ok());
  REQUIRE(writer->compact().ok());
  struct stat after {};
  REQUIRE(::stat(old_index.c_str(), &after) == 0);
  REQUIRE(after.st_ino != before.st_ino);                                  // the index was replaced
  REQUIRE((*writer->messages("u", "INBOX"))[0].pack != first_pack);        // and the bodies repacked
  REQUIRE_FALSE(fs::exists(tmp.path / "bodies" / "pack" / "00000001"));
  // The reader's index and pack descriptors are stale: not used.
  CHECK_FALSE(reader->fetch_batch("u", "INBOX", {1, 12}, true));
  auto slow = reader->fetch_batch("u", "INBOX", {1, 5, 12}, false);
  CHECK(bodies(*slow) == std::vector<std::string>{msgs[0], "-", msgs[11]});
  auto quick = reader->fetch_batch("u", "INBOX", {12, 1}, true);
  REQUIRE(quick);
  CHECK(bodies(*quick) == std::vector<std::string>{msgs[11], msgs[0]});
}

TEST_CASE("a renamed mailbox is seen through the kept mailbox list", "[store][nowait]") {
  test::TempDir tmp;
  auto writer = open_at(tmp.path);
  const auto msgs = fill(*writer, 1);
  REQUIRE(writer->create("u", "Old").ok());
  AppendRequest r;
  r.content = msgs[0];
  REQUIRE(writer->append("u", "Old", r).ok());
  auto reader = open_at(tmp.path);
  REQUIRE(reader->fetch_batch("u", "Old", {1}, false));
  REQUIRE(reader->fetch_batch("u", "Old", {1}, true));
  REQUIRE(writer->rename("u", "Old", "New").ok());
  CHECK_FALSE(reader->fetch_batch("u", "Old", {1}, true));
  CHECK(reader->fetch_batch("u", "Old", {1}, false)->bodies[0].error().code == Errc::NotFound);
  CHECK(*reader->fetch("u", "New", 1) == msgs[0]);
}

TEST_CASE("nowait FETCH does not wait for a writer's lock; the pool path does", "[store][nowait]") {
  test::TempDir tmp;
  auto s = open_at(tmp.path);
  const auto msgs = fill(*s, 2);
  REQUIRE(s->fetch_batch("u", "INBOX", {1}, false));  // opens the pack for reading
  REQUIRE(s->fetch_batch("u", "INBOX", {1}, true));
  // Another process in the middle of an append: it holds the flock and the
  // file has grown by its record (here a flag change of message 1).
  const auto index = inbox_index(*s);
  int fd = ::open(index.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::flock(fd, LOCK_EX) == 0);
  format::Record rec;
  rec.type = format::RecordType::Flags;
  rec.msg.uid = 1;
  rec.msg.flags = kFlagged;
  rec.msg.modseq = 100;
  const std::string bytes = format::encode(rec);
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == ssize_t(bytes.size()));
  CHECK_FALSE(s->fetch_batch("u", "INBOX", {1}, true));  // returns at once, lock still held
  auto pooled = std::async(std::launch::async, [&] { return s->fetch_batch("u", "INBOX", {1, 2}, false); });
  CHECK(pooled.wait_for(std::chrono::milliseconds(200)) == std::future_status::timeout);  // waits for the writer
  REQUIRE(::flock(fd, LOCK_UN) == 0);
  ::close(fd);
  auto got = pooled.get();
  REQUIRE(got);
  CHECK(bodies(*got) == std::vector<std::string>{msgs[0], msgs[1]});
  CHECK(got->version->highest_modseq == 100);  // the writer's record was read
  CHECK((*s->messages("u", "INBOX"))[0].flags == kFlagged);
}

TEST_CASE("bodies in files of their own are read on the pool only", "[store][nowait]") {
  test::TempDir tmp;
  auto s = open_at(tmp.path, 0);  // pack_max 0: no packs
  const auto msgs = fill(*s, 2);
  REQUIRE(s->fetch_batch("u", "INBOX", {1}, false));
  CHECK_FALSE(s->fetch_batch("u", "INBOX", {1}, true));                      // needs an open()
  CHECK(bodies(*s->fetch_batch("u", "INBOX", {2}, false)) == std::vector<std::string>{msgs[1]});
  auto none = s->fetch_batch("u", "INBOX", {7}, true);  // nothing to read: answered
  REQUIRE(none);
  CHECK(bodies(*none) == std::vector<std::string>{"-"});
}
