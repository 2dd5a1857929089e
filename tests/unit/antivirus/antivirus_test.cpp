// Antivirus filter, moatd side: the request built from a message, symbols
// and the forced verdict from a reply, and the client against a fake
// moat-scand on a real Unix socket (answers, crashes mid-scan, hangs).
// moat-scand itself (libclamav) is tested end to end in
// tests/integration/test_antivirus.py.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "filters/antivirus/antivirus.hpp"
#include "filters/antivirus/client.hpp"
#include "filters/attachments/attachments.hpp"
#include "filters/policy.hpp"
#include "filters/scores.hpp"

using namespace moat;
using namespace moat::filters;
namespace scand = moat::proto::scand;
namespace asio = boost::asio;
using asio::local::stream_protocol;

namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream o;
  o << in.rdbuf();
  return o.str();
}

std::filesystem::path eicar_dir() {
  return std::filesystem::path(MOAT_SOURCE_DIR) / ".." / "shared" / "testdata" / "clamav" / "eicar";
}

enum class Fake { Answer, Close, Hang };

// One connection: read a request frame, then behave as told.
asio::awaitable<void> fake_scand(stream_protocol::acceptor* acc, Fake mode) {
  auto sock = co_await acc->async_accept(asio::use_awaitable);
  scand::Decoder d;
  char buf[4096];
  while (!d.has_frame()) {
    std::size_t n = co_await sock.async_read_some(asio::buffer(buf), asio::use_awaitable);
    REQUIRE(d.feed(std::string_view(buf, n)));
  }
  auto f = d.next();
  REQUIRE(f.type == scand::FrameType::ScanRequest);
  auto req = scand::decode_request(f.payload, {});
  REQUIRE(req);
  if (mode == Fake::Close) co_return;  // socket closed: a crash mid-scan
  if (mode == Fake::Hang) {
    asio::steady_timer t(sock.get_executor(), std::chrono::seconds(5));
    co_await t.async_wait(asio::use_awaitable);
    co_return;
  }
  scand::ScanReply rep;
  rep.id = req->id;
  rep.verdict = scand::Verdict::Virus;
  rep.findings.push_back({std::uint16_t(req->items.size() - 1), scand::Verdict::Virus, "Test.Sig"});
  std::string out = scand::encode(rep);
  co_await asio::async_write(sock, asio::buffer(out), asio::use_awaitable);
}

struct ClientRun {
  Result<scand::ScanReply> result{Errc::TempFailure};
  std::chrono::milliseconds took{};
};

asio::awaitable<void> run_client(std::filesystem::path path, scand::ScanRequest req, ClientRun* out,
                                 asio::io_context* io) {
  auto start = std::chrono::steady_clock::now();
  out->result = co_await antivirus::scan(path, scand::encode(req), req.id, req.items.size(),
                                         std::chrono::milliseconds(300), {});
  out->took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  io->stop();
}

ClientRun exchange(Fake mode) {
  auto path = std::filesystem::temp_directory_path() / ("moat-av-test-" + std::to_string(::getpid()) + ".sock");
  std::filesystem::remove(path);
  asio::io_context io;
  stream_protocol::acceptor acc(io, stream_protocol::endpoint(path.string()));
  scand::ScanRequest req{42, {{scand::ItemKind::Message, "message", "x"}, {scand::ItemKind::Part, "a.exe", "y"}}};
  ClientRun out;
  asio::co_spawn(io, fake_scand(&acc, mode), asio::detached);
  asio::co_spawn(io, run_client(path, req, &out, &io), asio::detached);
  io.run();
  std::filesystem::remove(path);
  return out;
}

// The items of a request for `msg`, with the leaves they point into.
struct Built {
  std::shared_ptr<const attachments::Leaves> leaves;
  std::vector<scand::ItemRef> items;
};
Built build(const std::string& msg) {
  Built b;
  b.leaves = std::make_shared<const attachments::Leaves>(attachments::collect_leaves(msg, mime::parse(msg)));
  b.items = antivirus::request_items(msg, *b.leaves);
  return b;
}

}  // namespace

TEST_CASE("antivirus: the request holds the raw message and the decoded parts", "[antivirus]") {
  const std::string msg = slurp(eicar_dir() / "eicar-zip-attachment.eml");
  auto b = build(msg);
  REQUIRE(b.items.size() >= 2);
  CHECK(b.items[0].kind == scand::ItemKind::Message);
  CHECK(b.items[0].data == msg);
  CHECK(b.items[0].data.data() == msg.data());  // not a copy
  bool zip = false;
  for (const auto& it : b.items) zip = zip || it.data == slurp(eicar_dir() / "eicar.zip");
  CHECK(zip);
  // One frame, as moat-scand reads it back, within the limits both sides use.
  const std::string frame = scand::encode_request(9, b.items);
  CHECK(frame.size() - 4 <= antivirus::frame_limits(config::Config{}).max_frame);
  scand::Decoder d;
  REQUIRE(d.feed(frame));
  REQUIRE(d.has_frame());
  auto req = scand::decode_request(d.next().payload, {});
  REQUIRE(req);
  CHECK(req->id == 9);
  REQUIRE(req->items.size() == b.items.size());
  for (std::size_t i = 0; i < b.items.size(); ++i) {
    CHECK(req->items[i].kind == b.items[i].kind);
    CHECK(req->items[i].name == b.items[i].name);
    CHECK(req->items[i].data == b.items[i].data);
  }
}

TEST_CASE("antivirus: parts hidden from the strict parse are scanned; the root is not sent twice", "[antivirus]") {
  const auto dir = std::filesystem::path(MOAT_SOURCE_DIR) / ".." / "shared" / "testdata" / "clamav" / "upstream-mail";
  const std::string clam = slurp("/usr/share/clamav-testfiles/clam.exe");
  // Two boundary parameters: the strict parse takes the first, clam.exe sits behind the second.
  const std::string msg = slurp(dir / "clam.mail-multiple-boundaries.eml");
  auto b = build(msg);
  CHECK(b.leaves->limit.empty());
  CHECK(std::count_if(b.items.begin(), b.items.end(),
                      [&](const scand::ItemRef& it) { return it.name == "clam.exe" && it.data == clam; }) == 1);
  // A plain one-part message: only the message itself goes.
  const std::string plain = "From: a@b\r\nSubject: hi\r\n\r\nhello\r\n";
  auto p = build(plain);
  REQUIRE(p.items.size() == 1);
  CHECK(p.items[0].kind == scand::ItemKind::Message);
}

TEST_CASE("antivirus: findings become symbols that force Quarantine, never Reject", "[antivirus]") {
  std::vector<scand::ItemRef> items{{scand::ItemKind::Message, "message", ""}, {scand::ItemKind::Part, "eicar\r\n.com", ""}};
  scand::ScanReply rep{1, scand::Verdict::LimitExceeded, "", {}};
  rep.findings.push_back({1, scand::Verdict::Virus, "Moat.Test.EICAR.NDB"});
  rep.findings.push_back({0, scand::Verdict::LimitExceeded, "Heuristics.Limits.Exceeded.MaxFileSize"});
  ScanContext ctx;
  antivirus::add_symbols(rep, items, ctx);
  REQUIRE(ctx.symbols.size() == 2);
  CHECK(ctx.symbols[0].name == "VIRUS_FOUND");
  CHECK(ctx.symbols[0].detail == "Moat.Test.EICAR.NDB in eicar??.com");  // no CR/LF into logs
  CHECK(ctx.symbols[1].name == "AV_LIMIT_EXCEEDED");
  Scores scores;
  config::Actions actions;
  for (const char* sym : {"VIRUS_FOUND", "AV_LIMIT_EXCEEDED", "AV_SCAN_ERROR"}) {
    INFO(sym);
    std::vector<Symbol> s{{sym, scores.score(sym), "x"}};
    auto v = decide(s, actions, Phase::EndOfData);
    CHECK(v.action == Action::Quarantine);
    // Even with a high quarantine threshold the virus is held.
    config::Actions lax = actions;
    lax.quarantine = 1000;
    lax.tag = 1000;
    CHECK(decide(s, lax, Phase::EndOfData).action == Action::Quarantine);
  }
}

TEST_CASE("antivirus client: a verdict from the scanner", "[antivirus]") {
  auto r = exchange(Fake::Answer);
  REQUIRE(r.result);
  CHECK(r.result->id == 42);
  REQUIRE(r.result->findings.size() == 1);
  CHECK(r.result->findings[0].signature == "Test.Sig");
}

TEST_CASE("antivirus client: a scanner that dies mid-scan is a temporary error (451)", "[antivirus]") {
  auto r = exchange(Fake::Close);
  REQUIRE_FALSE(r.result);
  CHECK(r.result.error().code == Errc::ScanUnavailable);
  CHECK(format_reply(r.result.error().code).rfind("451 4.7.1", 0) == 0);
}

TEST_CASE("antivirus client: a scanner that hangs times out (451)", "[antivirus]") {
  auto r = exchange(Fake::Hang);
  REQUIRE_FALSE(r.result);
  CHECK(r.result.error().code == Errc::ScanTimeout);
  CHECK(r.took >= std::chrono::milliseconds(300));
  CHECK(r.took < std::chrono::milliseconds(3000));
}

TEST_CASE("antivirus client: no scanner listening is a temporary error", "[antivirus]") {
  asio::io_context io;
  ClientRun out;
  scand::ScanRequest req{1, {{scand::ItemKind::Message, "message", "x"}}};
  asio::co_spawn(io, run_client("/nonexistent/moat-scand.sock", req, &out, &io), asio::detached);
  io.run();
  REQUIRE_FALSE(out.result);
  CHECK(out.result.error().code == Errc::ScanUnavailable);
}
