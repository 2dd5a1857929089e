// The moatd <-> moat-scand frame protocol (common/proto/scand): round trips,
// every split of the byte stream, and each limit refusing before buffering.
#include <catch2/catch.hpp>

#include <random>

#include "common/proto/scand/scand.hpp"

using namespace moat;
using namespace moat::proto::scand;

namespace {

ScanRequest sample_request() {
  ScanRequest r;
  r.id = 0xA1B2C3D4;
  r.items.push_back(Item{ItemKind::Message, "message", "From: a@b\r\n\r\nbody\r\n"});
  r.items.push_back(Item{ItemKind::Part, "eicar.com", std::string("X5O!P%@AP\0\xff", 11)});
  r.items.push_back(Item{ItemKind::Part, "", ""});
  return r;
}

ScanReply sample_reply() {
  ScanReply r;
  r.id = 7;
  r.verdict = Verdict::LimitExceeded;
  r.findings.push_back(Finding{1, Verdict::Virus, "Moat.Test.EICAR.NDB"});
  r.findings.push_back(Finding{2, Verdict::LimitExceeded, "Heuristics.Limits.Exceeded.MaxFileSize"});
  return r;
}

// Feeds `wire` in chunks of `step` and returns the frames in order.
std::vector<Frame> split_feed(std::string_view wire, std::size_t step, Limits limits = {}) {
  Decoder d(limits);
  std::vector<Frame> out;
  for (std::size_t i = 0; i < wire.size(); i += step) {
    REQUIRE(d.feed(wire.substr(i, step)));
    while (d.has_frame()) out.push_back(d.next());
  }
  CHECK(d.buffered() == 0);
  return out;
}

}  // namespace

TEST_CASE("scand: request and reply round trip through frames", "[antivirus][scand]") {
  auto req = sample_request();
  auto rep = sample_reply();
  std::string wire = encode(req) + encode(rep) + encode_frame(FrameType::Ping, {});
  auto frames = split_feed(wire, wire.size());
  REQUIRE(frames.size() == 3);
  CHECK(frames[0].type == FrameType::ScanRequest);
  CHECK(frames[1].type == FrameType::ScanReply);
  CHECK(frames[2].type == FrameType::Ping);
  CHECK(frames[2].payload.empty());
  auto r1 = decode_request(frames[0].payload, {});
  REQUIRE(r1);
  CHECK(*r1 == req);
  auto r2 = decode_reply(frames[1].payload, {});
  REQUIRE(r2);
  CHECK(*r2 == rep);
}

TEST_CASE("scand: the decoder gives the same frames for every split", "[antivirus][scand]") {
  std::string wire = encode(sample_request()) + encode(sample_reply()) + encode(ScanRequest{});
  auto whole = split_feed(wire, wire.size());
  REQUIRE(whole.size() == 3);
  for (std::size_t step : {1, 2, 3, 4, 5, 7, 13, 64}) {
    auto frames = split_feed(wire, step);
    REQUIRE(frames.size() == whole.size());
    for (std::size_t i = 0; i < frames.size(); ++i) {
      CHECK(frames[i].type == whole[i].type);
      CHECK(frames[i].payload == whole[i].payload);
    }
  }
  // Random split points.
  std::mt19937 rng(42);
  for (int round = 0; round < 50; ++round) {
    Decoder d;
    std::vector<Frame> got;
    std::size_t pos = 0;
    while (pos < wire.size()) {
      std::size_t n = std::min<std::size_t>(wire.size() - pos, 1 + rng() % 40);
      REQUIRE(d.feed(std::string_view(wire).substr(pos, n)));
      pos += n;
      while (d.has_frame()) got.push_back(d.next());
    }
    REQUIRE(got.size() == 3);
    CHECK(got[1].payload == whole[1].payload);
  }
}

TEST_CASE("scand: an oversized frame is refused from its length alone", "[antivirus][scand]") {
  Limits lim;
  lim.max_frame = 100;
  Decoder d(lim);
  // 4 length bytes announcing 101: refused before any payload arrives.
  std::string head("\x00\x00\x00\x65", 4);
  for (char c : head.substr(0, 3)) REQUIRE(d.feed(std::string_view(&c, 1)));
  auto st = d.feed(head.substr(3));
  REQUIRE_FALSE(st);
  CHECK(st.error().code == Errc::Invalid);
  CHECK(d.buffered() == 0);
  // Sticky: the connection is done.
  CHECK_FALSE(d.feed(encode_frame(FrameType::Ping, {})));
  // Exactly the limit is fine.
  Decoder ok(lim);
  REQUIRE(ok.feed(encode_frame(FrameType::Ping, std::string(99, 'x'))));
  CHECK(ok.has_frame());
}

TEST_CASE("scand: malformed frames and payloads are errors", "[antivirus][scand]") {
  CHECK_FALSE(Decoder().feed(std::string("\x00\x00\x00\x00", 4)));               // empty frame
  CHECK_FALSE(Decoder().feed(std::string("\x00\x00\x00\x01\x09", 5)));           // unknown type
  CHECK_FALSE(Decoder().feed(std::string("\x00\x00\x00\x01\x00", 5)));           // type 0
  std::string payload = encode(sample_request()).substr(5);
  for (std::size_t cut = 0; cut < payload.size(); ++cut)
    CHECK_FALSE(decode_request(payload.substr(0, cut), {}));                      // every truncation
  CHECK_FALSE(decode_request(payload + "x", {}));                                 // trailing byte
  std::string bad_kind = payload;
  bad_kind[6] = 9;
  CHECK_FALSE(decode_request(bad_kind, {}));
  Limits few;
  few.max_items = 2;
  CHECK_FALSE(decode_request(payload, few));                                     // 3 items > 2
  Limits short_names;
  short_names.max_name = 8;
  CHECK_FALSE(decode_request(payload, short_names));                             // "eicar.com" is 9
  std::string reply = encode(sample_reply()).substr(5);
  for (std::size_t cut = 0; cut < reply.size(); ++cut) CHECK_FALSE(decode_reply(reply.substr(0, cut), {}));
  std::string bad_verdict = reply;
  bad_verdict[4] = 4;
  CHECK_FALSE(decode_reply(bad_verdict, {}));
}
