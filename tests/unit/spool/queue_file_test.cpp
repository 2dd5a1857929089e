// Queue file reader: round trip, truncation at every offset, every byte
// flipped, bounded lengths, torn progress tails (docs/queue.md).
#include <catch2/catch.hpp>

#include "gateway/queue/queue_file.hpp"

using namespace moat;
using namespace moat::gateway;

namespace {

Envelope sample_envelope() {
  Envelope e;
  e.sender = "alice@sender.test";
  e.recipients = {{"bob@example.test", DsnNotify::Failure | DsnNotify::Delay, "rfc822;bob@example.test"},
                  {"carol@example.test", DsnNotify::Never, ""}};
  e.envid = "ENV+2B1";
  e.ret = DsnRet::Hdrs;
  e.body = BodyType::EightBitMime;
  e.smtputf8 = true;
  e.declared_size = 1234;
  e.client.ip = *parse_ip("192.0.2.7");
  e.client.port = 40001;
  e.client.reverse_name = "client.sender.test";
  e.client.helo = "client.test";
  e.client.protocol = "ESMTPS";
  e.client.auth_user = "alice";
  e.client.tls_version = "TLSv1.3";
  e.client.tls_cipher = "TLS_AES_256_GCM_SHA384";
  e.arrival = std::chrono::system_clock::time_point(std::chrono::microseconds(1700000000123456));
  return e;
}

std::string sample_file(const Envelope& env, const std::vector<std::string>& chunks,
                        const std::vector<std::string>& prepend) {
  std::string f = qf::encode_head(env);
  for (const auto& c : chunks) qf::put_record(f, qf::Rec::Content, c);
  for (const auto& p : prepend) qf::put_record(f, qf::Rec::Prepend, p);
  f += qf::encode_end(f.size(), qf::crc32c(0, f));
  return f;
}

}  // namespace

TEST_CASE("queue file round trip", "[spool][queue_file]") {
  auto env = sample_envelope();
  auto bytes = sample_file(env, {"Subject: hi\r\n\r\n", "body\r\n"}, {"X-Spam-Score: 1.0\r\n"});
  auto f = qf::parse_queue_file(bytes);
  REQUIRE(f.ok());
  const auto& e = f->envelope;
  CHECK(e.sender == env.sender);
  REQUIRE(e.recipients.size() == 2);
  CHECK(e.recipients[0].address == "bob@example.test");
  CHECK(e.recipients[0].notify == (DsnNotify::Failure | DsnNotify::Delay));
  CHECK(e.recipients[0].orcpt == "rfc822;bob@example.test");
  CHECK(e.recipients[1].notify == DsnNotify::Never);
  CHECK(e.envid == "ENV+2B1");
  CHECK(e.ret == DsnRet::Hdrs);
  CHECK(e.body == BodyType::EightBitMime);
  CHECK(e.smtputf8);
  CHECK(e.declared_size == 1234);
  CHECK(e.client.ip.str() == "192.0.2.7");
  CHECK(e.client.port == 40001);
  CHECK(e.client.reverse_name == "client.sender.test");
  CHECK(e.client.helo == "client.test");
  CHECK(e.client.protocol == "ESMTPS");
  CHECK(e.client.auth_user == "alice");
  CHECK(e.client.tls_version == "TLSv1.3");
  CHECK(e.client.tls_cipher == "TLS_AES_256_GCM_SHA384");
  CHECK(e.arrival == env.arrival);
  REQUIRE(f->content.size() == 2);
  CHECK(bytes.substr(f->content[0].first, f->content[0].second) == "Subject: hi\r\n\r\n");
  CHECK(bytes.substr(f->content[1].first, f->content[1].second) == "body\r\n");
  CHECK(f->content_size == 21);
  CHECK(f->prepend == std::vector<std::string>{"X-Spam-Score: 1.0\r\n"});
  CHECK(f->end_offset == bytes.size());
  CHECK(f->attempts == 0);
  CHECK_FALSE(f->next_attempt);
  CHECK(f->progress.size() == 2);
}

TEST_CASE("progress records after END", "[spool][queue_file]") {
  auto bytes = sample_file(sample_envelope(), {"x\r\n"}, {});
  auto base = bytes.size();
  qf::RcptProgress sent{qf::RcptState::Sent, "2.0.0", "mx[192.0.2.1]:25", "250 ok", false};
  qf::RcptProgress bounced{qf::RcptState::Bounced, "5.1.1", "mx[192.0.2.1]:25", "550 5.1.1 no such user", false};
  auto next = std::chrono::system_clock::time_point(std::chrono::seconds(1800000000));
  bytes += qf::encode_rcpt_final(0, sent);
  bytes += qf::encode_attempt(3, next);
  bytes += qf::encode_rcpt_final(1, bounced);
  bytes += qf::encode_notified(1);
  auto f = qf::parse_queue_file(bytes);
  REQUIRE(f.ok());
  CHECK(f->progress[0].state == qf::RcptState::Sent);
  CHECK(f->progress[1].state == qf::RcptState::Bounced);
  CHECK(f->progress[1].diagnostic == "550 5.1.1 no such user");
  CHECK(f->progress[1].notified);
  CHECK(f->attempts == 3);
  CHECK(*f->next_attempt == next);

  SECTION("a torn tail at every length keeps what came before and never fails") {
    for (std::size_t n = base; n <= bytes.size(); ++n) {
      auto t = qf::parse_queue_file(std::string_view(bytes).substr(0, n));
      REQUIRE(t.ok());
    }
  }
  SECTION("zero-filled tail (crash after the size grew) is ignored") {
    auto z = bytes.substr(0, base) + std::string(64, '\0');
    auto t = qf::parse_queue_file(z);
    REQUIRE(t.ok());
    CHECK(t->progress[0].state == qf::RcptState::Pending);
  }
  SECTION("a damaged progress record stops progress there") {
    auto d = bytes;
    d[base + 7] ^= 0x40;  // inside the first record's payload
    auto t = qf::parse_queue_file(d);
    REQUIRE(t.ok());
    CHECK(t->progress[0].state == qf::RcptState::Pending);
    CHECK(t->attempts == 0);
  }
  SECTION("a final state is not undone") {
    qf::RcptProgress deferred{qf::RcptState::Deferred, "4.0.0", "", "later", false};
    auto t = qf::parse_queue_file(bytes + qf::encode_rcpt_final(0, deferred));
    REQUIRE(t.ok());
    CHECK(t->progress[0].state == qf::RcptState::Sent);
  }
}

TEST_CASE("truncation at every byte offset is Corrupt", "[spool][queue_file]") {
  auto bytes = sample_file(sample_envelope(), {"Subject: t\r\n\r\nhello\r\n"}, {"X-A: b\r\n"});
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto f = qf::parse_queue_file(std::string_view(bytes).substr(0, n));
    INFO("length " << n);
    REQUIRE_FALSE(f.ok());
    CHECK(f.error().code == Errc::Corrupt);
    CHECK_FALSE(f.error().detail.empty());
  }
  CHECK(qf::parse_queue_file(bytes).ok());
}

TEST_CASE("every corrupted byte before END is detected", "[spool][queue_file]") {
  auto bytes = sample_file(sample_envelope(), {"Subject: t\r\n\r\nhello\r\n"}, {});
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (unsigned char mask : {0x01, 0x80, 0xff}) {
      auto c = bytes;
      c[i] = char(c[i] ^ mask);
      auto f = qf::parse_queue_file(c);
      INFO("offset " << i << " mask " << int(mask));
      REQUIRE_FALSE(f.ok());
      CHECK(f.error().code == Errc::Corrupt);
    }
  }
}

TEST_CASE("malformations have clear details", "[spool][queue_file]") {
  auto good = sample_file(sample_envelope(), {"x\r\n"}, {});
  auto detail = [](std::string_view b, qf::ParseOptions o = {}) {
    auto f = qf::parse_queue_file(b, o);
    return f.ok() ? std::string("ok") : f.error().detail;
  };
  CHECK_THAT(detail("NOTQUEUE"), Catch::Contains("bad magic"));
  CHECK_THAT(detail(qf::kMagic), Catch::Contains("missing END"));
  std::string head(qf::kMagic);
  CHECK_THAT(detail(head + "\x10\x01"), Catch::Contains("truncated record header"));
  CHECK_THAT(detail(head + std::string("\x10\xff\xff\xff\x7f", 5)), Catch::Contains("too large"));
  CHECK_THAT(detail(head + std::string("\x10\x10\x00\x00\x00", 5) + "abc"), Catch::Contains("past end"));
  CHECK_THAT(detail(head + std::string("\x7e\x00\x00\x00\x00", 5)), Catch::Contains("unknown record type"));
  auto bad_crc = good;
  bad_crc[bad_crc.size() - 1] ^= 1;
  CHECK_THAT(detail(bad_crc), Catch::Contains("bad checksum"));
  CHECK(detail(bad_crc, {false}) == "ok");
  std::string norcpt = std::string(qf::kMagic);
  qf::put_record(norcpt, qf::Rec::Sender, "a@b");
  norcpt += qf::encode_end(norcpt.size(), qf::crc32c(0, norcpt));
  CHECK_THAT(detail(norcpt), Catch::Contains("no recipients"));
}

TEST_CASE("queue id validation", "[spool][queue_file]") {
  CHECK(qf::valid_queue_id("0123456789"));
  CHECK(qf::valid_queue_id("AbCdEfGhIjKlMnOpQrSt"));
  CHECK_FALSE(qf::valid_queue_id("012345678"));
  CHECK_FALSE(qf::valid_queue_id("AbCdEfGhIjKlMnOpQrStU"));
  CHECK_FALSE(qf::valid_queue_id("../../etc/passwd"));
  CHECK_FALSE(qf::valid_queue_id("0123456789/"));
  CHECK_FALSE(qf::valid_queue_id("01234 56789"));
  CHECK_FALSE(qf::valid_queue_id(""));
}

TEST_CASE("crc32c known answer", "[spool][queue_file]") {
  CHECK(qf::crc32c(0, "123456789") == 0xe3069283u);  // RFC 3720 check value
}
