// The stored file format (a queue file image), header field extraction for
// the index, and the listings moatctl prints.
#include <catch2/catch.hpp>

#include "gateway/quarantine_admin.hpp"

using namespace moat;
using namespace moat::gateway;

namespace {
Envelope envelope() {
  Envelope env;
  env.sender = "bounce@sender.test";
  env.recipients = {Recipient{"a@example.test", DsnNotify::Failure, "rfc822;a@example.test"},
                    Recipient{"b@example.test", DsnNotify::Default, ""}};
  env.envid = "env-1";
  env.client.helo = "client.test";
  env.arrival = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  return env;
}
}  // namespace

TEST_CASE("encode_file/decode_file round trip keeps envelope and bytes", "[quarantine][admin]") {
  auto body = GENERATE(as<std::string>{}, "", "Body\r\n", std::string(3 * 1024 * 1024 + 7, 'x'));  // the last spans several content records
  std::string file = qadmin::encode_file(envelope(), {"Received: x\r\n", "Subject: s\r\n", body});
  auto d = qadmin::decode_file(file);
  REQUIRE(d);
  CHECK(d->message == "Received: x\r\nSubject: s\r\n" + body);
  CHECK(d->envelope.sender == "bounce@sender.test");
  REQUIRE(d->envelope.recipients.size() == 2);
  CHECK(d->envelope.recipients[0].notify == DsnNotify::Failure);
  CHECK(d->envelope.recipients[0].orcpt == "rfc822;a@example.test");
  CHECK(d->envelope.envid == "env-1");
  CHECK(d->envelope.arrival == envelope().arrival);
}

TEST_CASE("a torn or flipped stored file is Corrupt, never a message", "[quarantine][admin]") {
  std::string file = qadmin::encode_file(envelope(), {"Subject: s\r\n\r\nbody\r\n"});
  for (std::size_t cut : {std::size_t(0), std::size_t(5), file.size() / 2, file.size() - 1}) {
    CAPTURE(cut);
    auto d = qadmin::decode_file(std::string_view(file).substr(0, cut));
    REQUIRE(!d);
    CHECK(d.error().code == Errc::Corrupt);
  }
  std::string flipped = file;
  flipped[file.size() / 2] ^= 0x20;
  CHECK(!qadmin::decode_file(flipped));
}

TEST_CASE("field_value: first field, unfolded, trimmed, bounded, no control characters", "[quarantine][admin]") {
  std::string_view h =
      "Received: x\r\nSUBJECT:  Hello\r\n\tfolded  world \r\nSubject: second\r\nFrom: <a@b.test>\r\n"
      "X-Ctl: a\x01" "b\x1b[31m\r\n";
  CHECK(qadmin::field_value(h, "subject") == "Hello\tfolded  world");
  CHECK(qadmin::field_value(h, "From") == "<a@b.test>");
  CHECK(qadmin::field_value(h, "X-Ctl") == "a?b?[31m");
  CHECK(qadmin::field_value(h, "To").empty());
  CHECK(qadmin::field_value(h, "Subject", 3) == "Hel");
  CHECK(qadmin::field_value("Subjects: no\r\n", "Subject").empty());
}

TEST_CASE("format_list and format_show: JSON fields escaped, text without raw control bytes", "[quarantine][admin]") {
  quarantine::Entry e;
  e.id = "AAAAAAAAAA0001";
  e.time = 1700000000;
  e.expires = 1700086400;
  e.sender = "s@x.test";
  e.recipients = {"r@example.test"};
  e.subject = "a \"quoted\" \\ subject";
  e.score = 1000.5;
  e.symbols = "GTUBE(1000)";
  e.reason = "GTUBE";
  std::string json = qadmin::format_list({e}, true);
  CHECK(json.find("{\"messages\":[{\"id\":\"AAAAAAAAAA0001\",\"kind\":\"quarantine\",\"time\":1700000000,") == 0);
  CHECK(json.find("\"subject\":\"a \\\"quoted\\\" \\\\ subject\"") != std::string::npos);
  CHECK(json.find("\"score\":1000.5") != std::string::npos);
  CHECK(json.find("\"recipients\":[\"r@example.test\"]") != std::string::npos);
  CHECK(qadmin::format_list({}, true) == "{\"messages\":[]}\n");
  CHECK(qadmin::format_list({}, false) == "Quarantine is empty\n");
  std::string text = qadmin::format_list({e}, false);
  CHECK(text.find("AAAAAAAAAA0001  quarantine") == 0);
  CHECK(text.find("-- 1 message\n") != std::string::npos);

  std::string show = qadmin::format_show(e, "Subject: hi\r\nX-Evil: \x1b]0;title\x07\r\n\r\nbody\r\n", false);
  CHECK(show.find("Subject: hi\nX-Evil: ?]0;title?\n") != std::string::npos);
  CHECK(show.find("body") == std::string::npos);
  std::string show_json = qadmin::format_show(e, "Subject: hi\r\n\r\nbody", true);
  CHECK(show_json.find(",\"header\":\"Subject: hi\\r\\n\"}\n") != std::string::npos);
}
