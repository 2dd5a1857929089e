// Queue manager with an in-process fake transport and an injected clock:
// delivery, retries with doubling backoff, lifetime expiry, one DSN per
// failure round with the RFC 3464 fields, no DSN to <> or for NOTIFY=NEVER,
// hold/release, admin listing and restart recovery.
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <fstream>
#include <sys/stat.h>

#include "gateway/control.hpp"
#include "common/io_context.hpp"
#include "gateway/queue/manager.hpp"
#include "tests/unit/spool/test_util.hpp"

using namespace moat;
using namespace moat::gateway;
namespace fs = std::filesystem;
using SysClock = std::chrono::system_clock;

namespace {

struct Delivery {
  std::string queue_id;
  std::string sender;
  std::vector<std::string> rcpts;
  std::string dest;
  std::string message;
};

// Answers every recipient with `answer(address)`; records each request.
class FakeTransport : public Transport {
 public:
  std::function<RcptResult(const std::string& rcpt)> answer = [](const std::string&) {
    return RcptResult{0, RcptStatus::Sent, "2.0.0", "mx.example.test[192.0.2.1]:25", "250 2.0.0 Ok"};
  };
  std::vector<Delivery> calls;

  asio::awaitable<std::vector<RcptResult>> deliver(const DeliveryRequest& req) override {
    Delivery d{req.queue_id, req.envelope->sender, {}, req.destination.key(), read(req.source)};
    std::vector<RcptResult> out;
    for (auto i : req.recipients) {
      d.rcpts.push_back(req.envelope->recipients[i].address);
      auto r = answer(req.envelope->recipients[i].address);
      r.index = i;
      out.push_back(r);
    }
    calls.push_back(std::move(d));
    co_return out;
  }

  static std::string read(const MessageSource& s) {
    std::ifstream in(s.file, std::ios::binary);
    std::string out = s.prepend;
    for (auto [off, len] : s.chunks) {
      std::string buf(len, '\0');
      in.seekg(std::streamoff(off));
      in.read(buf.data(), std::streamsize(len));
      out += buf;
    }
    return out;
  }
};

RcptResult defer_answer(const std::string&) {
  return {0, RcptStatus::Deferred, "4.4.1", "none", "connect to mx.example.test[192.0.2.1]:25: Connection refused"};
}
RcptResult reject_answer(const std::string&) {
  return {0, RcptStatus::Bounced, "5.1.1", "mx.example.test[192.0.2.1]:25", "550 5.1.1 <x@example.test>: User unknown"};
}

struct Fixture {
  test::TempDir tmp;
  IoContext io;
  asio::thread_pool pool{2};
  std::shared_ptr<config::Config> cfg = std::make_shared<config::Config>();
  std::unique_ptr<Spool> spool;
  std::unique_ptr<QueueManager> qm;
  FakeTransport transport;
  SysClock::time_point now = SysClock::time_point(std::chrono::seconds(1900000000));

  Fixture() {
    cfg->server.hostname = "moat.test";
    cfg->queue.min_backoff = config::Seconds(10);
    cfg->queue.max_backoff = config::Seconds(40);
    cfg->queue.lifetime = config::Seconds(1000);
    cfg->queue.bounce_lifetime = config::Seconds(500);
    cfg->queue.scan_interval = config::Seconds(3600);  // tests call rescan() themselves
    config::RelayDomain d;
    d.name = "example.test";
    d.next_hop = HostPort{"127.0.0.1", 2525};
    cfg->relay.domains.push_back(d);
    open();
  }
  ~Fixture() {
    close();
    io.destroy_pending();  // whatever else is still queued
  }
  // Stops the manager and lets its coroutines end while the spool and the
  // transport they use are alive; false if they did not end in time.
  bool close() {
    if (!qm) return true;
    qm->stop();
    bool drained = test::run_until(io, [&] { return qm->frames() == 0; });
    if (!drained) io.destroy_pending();  // the frames go now, before what they use
    qm.reset();
    spool.reset();
    return drained;
  }
  void open() {
    spool = std::make_unique<Spool>(tmp.path, pool);
    REQUIRE(spool->init().ok());
    qm = std::make_unique<QueueManager>(io, *spool, [this] { return config::Snapshot(cfg); }, pool);
    qm->set_clock([this] { return now; });
    qm->add_transport("smtp", transport);
    spool->on_committed([this](const std::string& id, std::string file) { qm->notify(id, std::move(file)); });
  }
  std::string submit(Envelope env, std::string body = "Subject: test\r\nFrom: a@sender.test\r\n\r\nhello\r\n") {
    env.arrival = now;
    auto w = spool->begin(env);
    REQUIRE(w.ok());
    REQUIRE((*w)->append(body).ok());
    auto id = test::run_co(io, spool->commit(std::move(*w)));
    REQUIRE(id.ok());
    return *id;
  }
  bool settle() {
    return test::run_until(io, [&] {
      return qm->in_flight() == 0 && test::count_files(tmp.path / "incoming") == 0 &&
             test::count_files(tmp.path / "active") == 0;
    });
  }
  std::size_t in(const char* q) { return test::count_files(tmp.path / q); }
};

Envelope env_to(std::vector<Recipient> rcpts, std::string sender = "a@sender.test") {
  Envelope e;
  e.sender = std::move(sender);
  e.recipients = std::move(rcpts);
  return e;
}

}  // namespace

TEST_CASE("a committed message is delivered at once and removed", "[queue]") {
  Fixture fx;
  fx.qm->start();
  auto id = fx.submit(env_to({{"x@example.test", DsnNotify::Default, ""}, {"y@EXAMPLE.test", DsnNotify::Default, ""}}));
  REQUIRE(fx.settle());
  REQUIRE(fx.transport.calls.size() == 1);  // same next hop: one delivery for both
  CHECK(fx.transport.calls[0].queue_id == id);
  CHECK(fx.transport.calls[0].dest == "[127.0.0.1]:2525");
  CHECK(fx.transport.calls[0].rcpts.size() == 2);
  CHECK(fx.transport.calls[0].message.find("hello\r\n") != std::string::npos);
  CHECK(fx.in("deferred") == 0);
}

TEST_CASE("deferred messages retry with doubling backoff", "[queue]") {
  Fixture fx;
  fx.transport.answer = defer_answer;
  fx.qm->start();
  auto id = fx.submit(env_to({{"x@example.test", DsnNotify::Default, ""}}));
  REQUIRE(fx.settle());
  REQUIRE(fx.in("deferred") == 1);
  auto file = qf::read_queue_file(fx.tmp.path / "deferred" / id);
  REQUIRE(file.ok());
  CHECK(file->attempts == 1);
  CHECK(*file->next_attempt == fx.now + std::chrono::seconds(10));
  CHECK(file->progress[0].state == qf::RcptState::Deferred);

  fx.now += std::chrono::seconds(9);  // not yet due
  fx.qm->rescan();
  fx.settle();
  CHECK(fx.transport.calls.size() == 1);

  std::vector<std::int64_t> gaps;
  auto last = fx.now - std::chrono::seconds(9);
  for (int i = 0; i < 4; ++i) {
    auto f = qf::read_queue_file(fx.tmp.path / "deferred" / id);
    REQUIRE(f.ok());
    gaps.push_back(std::chrono::duration_cast<std::chrono::seconds>(*f->next_attempt - last).count());
    fx.now = *f->next_attempt;
    last = fx.now;
    fx.qm->rescan();
    REQUIRE(test::run_until(fx.io, [&] { return fx.transport.calls.size() == std::size_t(i + 2); }));
    fx.settle();
  }
  CHECK(gaps == std::vector<std::int64_t>{10, 20, 40, 40});  // min_backoff doubling, capped at max_backoff

  SECTION("flush retries at once") {
    fx.qm->flush().ok();
    REQUIRE(test::run_until(fx.io, [&] { return fx.transport.calls.size() == 6; }));
  }
}

TEST_CASE("queue lifetime ends in one bounce with the last error", "[queue][dsn]") {
  Fixture fx;
  fx.transport.answer = [](const std::string& r) {
    return r == "a@sender.test" ? RcptResult{0, RcptStatus::Sent, "2.0.0", "mx[192.0.2.2]:25", "250 ok"}
                                : defer_answer(r);
  };
  fx.qm->start();
  auto id = fx.submit(env_to({{"x@example.test", DsnNotify::Default, ""}}));
  fx.settle();
  fx.now += std::chrono::seconds(1001);
  fx.qm->rescan();
  REQUIRE(test::run_until(fx.io, [&] { return fx.transport.calls.size() == 3; }));
  fx.settle();
  CHECK(fx.in("deferred") == 0);
  const auto& bounce = fx.transport.calls[2];
  CHECK(bounce.sender.empty());
  CHECK(bounce.rcpts == std::vector<std::string>{"a@sender.test"});
  CHECK_THAT(bounce.message, Catch::Contains("Action: failed"));
  CHECK_THAT(bounce.message, Catch::Contains("Status: 4.4.1"));
  CHECK_THAT(bounce.message, Catch::Contains("Connection refused"));
  CHECK_THAT(bounce.message, Catch::Contains("X-Moat-Queue-ID: " + id));
}

TEST_CASE("a 5xx produces exactly one DSN with the RFC 3464 fields", "[queue][dsn]") {
  Fixture fx;
  fx.transport.answer = [](const std::string& r) {
    return r == "a@sender.test" ? RcptResult{0, RcptStatus::Sent, "2.0.0", "mx[192.0.2.2]:25", "250 ok"}
                                : reject_answer(r);
  };
  fx.qm->start();
  auto env = env_to({{"x@example.test", DsnNotify::Failure, "rfc822;X+2Bfoo@example.test"},
                     {"y@example.test", DsnNotify::Default, ""}});
  env.envid = "QQ+3D1";
  auto id = fx.submit(env);
  REQUIRE(test::run_until(fx.io, [&] { return fx.transport.calls.size() == 2; }));
  fx.settle();
  CHECK(fx.transport.calls.size() == 2);  // the message, then one bounce for both recipients
  const auto& b = fx.transport.calls[1].message;
  CHECK(fx.transport.calls[1].sender.empty());
  CHECK_THAT(b, Catch::Contains("Content-Type: multipart/report; report-type=delivery-status;"));
  CHECK_THAT(b, Catch::Contains("Auto-Submitted: auto-replied"));
  CHECK_THAT(b, Catch::Contains("Reporting-MTA: dns; moat.test"));
  CHECK_THAT(b, Catch::Contains("Original-Envelope-Id: QQ=1"));
  CHECK_THAT(b, Catch::Contains("Arrival-Date: "));
  CHECK_THAT(b, Catch::Contains("Original-Recipient: rfc822;X+foo@example.test"));
  CHECK_THAT(b, Catch::Contains("Final-Recipient: rfc822; x@example.test"));
  CHECK_THAT(b, Catch::Contains("Final-Recipient: rfc822; y@example.test"));
  CHECK_THAT(b, Catch::Contains("Status: 5.1.1"));
  CHECK_THAT(b, Catch::Contains("Remote-MTA: dns; mx.example.test"));
  CHECK_THAT(b, Catch::Contains("Diagnostic-Code: smtp; 550 5.1.1"));
  CHECK_THAT(b, Catch::Contains("Content-Type: message/rfc822"));
  CHECK_THAT(b, Catch::Contains("hello\r\n"));
  CHECK(fx.in("deferred") == 0);
  (void)id;
}

TEST_CASE("RET=HDRS returns only the header section", "[queue][dsn]") {
  Fixture fx;
  fx.transport.answer = [](const std::string& r) {
    return r == "a@sender.test" ? RcptResult{0, RcptStatus::Sent, "2.0.0", "mx[192.0.2.2]:25", "250 ok"}
                                : reject_answer(r);
  };
  fx.qm->start();
  auto env = env_to({{"x@example.test", DsnNotify::Default, ""}});
  env.ret = DsnRet::Hdrs;
  fx.submit(env, "Subject: secret\r\n\r\nBODYTEXT\r\n");
  REQUIRE(test::run_until(fx.io, [&] { return fx.transport.calls.size() == 2; }));
  CHECK_THAT(fx.transport.calls[1].message, Catch::Contains("text/rfc822-headers"));
  CHECK_THAT(fx.transport.calls[1].message, Catch::Contains("Subject: secret"));
  CHECK(fx.transport.calls[1].message.find("BODYTEXT") == std::string::npos);
}

TEST_CASE("no DSN to the null sender, none for NOTIFY=NEVER or NOTIFY=SUCCESS", "[queue][dsn]") {
  Fixture fx;
  fx.transport.answer = reject_answer;
  fx.qm->start();
  SECTION("null sender") { fx.submit(env_to({{"x@example.test", DsnNotify::Default, ""}}, "")); }
  SECTION("NOTIFY=NEVER") { fx.submit(env_to({{"x@example.test", DsnNotify::Never, ""}})); }
  SECTION("NOTIFY=SUCCESS") { fx.submit(env_to({{"x@example.test", DsnNotify::Success, ""}})); }
  REQUIRE(fx.settle());
  test::run_until(fx.io, [] { return false; }, std::chrono::milliseconds(50));
  CHECK(fx.transport.calls.size() == 1);
  CHECK(fx.in("deferred") == 0);
  CHECK(fx.in("incoming") == 0);
}

TEST_CASE("a bounce that cannot be delivered is dropped after bounce_lifetime", "[queue][dsn]") {
  Fixture fx;
  fx.transport.answer = defer_answer;
  fx.qm->start();
  fx.submit(env_to({{"x@example.test", DsnNotify::Default, ""}}, ""));
  fx.settle();
  REQUIRE(fx.in("deferred") == 1);
  fx.now += std::chrono::seconds(501);
  fx.qm->rescan();
  REQUIRE(test::run_until(fx.io, [&] { return fx.transport.calls.size() == 2; }));
  fx.settle();
  CHECK(fx.in("deferred") == 0);
  CHECK(fx.transport.calls.size() == 2);
}

TEST_CASE("hold keeps a message until release", "[queue][admin]") {
  Fixture fx;
  fx.spool->on_committed([](const std::string&, std::string) {});  // no pickup: hold first
  auto id = fx.submit(env_to({{"x@example.test", DsnNotify::Default, ""}}));
  REQUIRE(fx.qm->hold(id).ok());
  CHECK(fx.in("hold") == 1);
  fx.qm->start();
  fx.qm->flush().ok();
  fx.settle();
  test::run_until(fx.io, [] { return false; }, std::chrono::milliseconds(30));
  CHECK(fx.transport.calls.empty());

  auto list = test::run_co(fx.io, fx.qm->list());
  REQUIRE(list.ok());
  REQUIRE(list->size() == 1);
  CHECK((*list)[0].queue == "hold");
  CHECK((*list)[0].id == id);
  CHECK_THAT(admin::format_list(*list, false), Catch::Contains(id + "!"));
  CHECK_THAT(admin::format_list(*list, true), Catch::Contains("\"queue\":\"hold\""));

  CHECK(fx.qm->release(id).ok());
  REQUIRE(test::run_until(fx.io, [&] { return fx.transport.calls.size() == 1; }));
  fx.settle();
  CHECK(fx.in("hold") == 0);
  CHECK(fx.qm->release(id).error().code == Errc::NotFound);
  CHECK(fx.qm->hold("../etc/passwd").error().code == Errc::Invalid);
}

TEST_CASE("hold right after commit wins over the pickup", "[queue][admin]") {
  Fixture fx;
  fx.qm->start();
  Envelope env = env_to({{"x@example.test", DsnNotify::Default, ""}});
  env.arrival = fx.now;
  std::string id;
  // As the SMTP session does: commit, then hold synchronously.
  test::run_co(fx.io, [&]() -> asio::awaitable<int> {
    auto w = fx.spool->begin(env);
    (void)(*w)->append("Subject: q\r\n\r\nq\r\n");
    auto c = co_await fx.spool->commit(std::move(*w));
    id = *c;
    (void)fx.qm->hold(id);
    co_return 0;
  }());
  fx.settle();
  test::run_until(fx.io, [] { return false; }, std::chrono::milliseconds(30));
  CHECK(fx.transport.calls.empty());
  CHECK(fx.in("hold") == 1);
}

TEST_CASE("a scan during a commit leaves the message to the commit", "[queue][admin][failpoint]") {
  // The file is in incoming/ while its commit still syncs (the failpoint
  // holds it there): a scan then must neither deliver it nor beat the hold
  // the session makes right after the commit.
  Fixture fx;
  fx.qm->start();
  fx.settle();
  test::FailpointEnv fp("spool.before_fsync=sleep:400");
  Envelope env = env_to({{"x@example.test", DsnNotify::Default, ""}});
  env.arrival = fx.now;
  bool done = false;
  asio::co_spawn(fx.io, [&]() -> asio::awaitable<void> {
    auto w = fx.spool->begin(env);
    (void)(*w)->append("Subject: q\r\n\r\nq\r\n");
    auto c = co_await fx.spool->commit(std::move(*w));
    if (c) (void)fx.qm->hold(*c);
    done = true;
  }, asio::detached);
  REQUIRE(test::run_until(fx.io, [&] { return fx.in("incoming") == 1; }));
  REQUIRE_FALSE(done);
  fx.qm->rescan();
  REQUIRE(test::run_until(fx.io, [&] { return done; }));
  fx.settle();
  test::run_until(fx.io, [] { return false; }, std::chrono::milliseconds(30));
  CHECK(fx.transport.calls.empty());
  CHECK(fx.in("hold") == 1);
}

TEST_CASE("admin show, delete and the control socket commands", "[queue][admin][control]") {
  Fixture fx;
  fx.spool->on_committed([](const std::string&, std::string) {});
  auto id = fx.submit(env_to({{"x@example.test", DsnNotify::Default, ""}}));
  auto shown = test::run_co(fx.io, fx.qm->show(id));
  REQUIRE(shown.ok());
  CHECK_THAT(admin::format_show(*shown, false), Catch::Contains("Subject: test"));
  CHECK(test::run_co(fx.io, fx.qm->show("NOSUCHID0000")).error().code == Errc::NotFound);

  Control ctl(fx.io, fx.tmp.path / "ctl.sock", *fx.qm);
  ctl.add_handler("echo", [](std::vector<std::string> w) -> asio::awaitable<std::string> { co_return w.at(0) + "\n"; });
  CHECK(test::run_co(fx.io, ctl.handle("ping\n")) == "pong\n");
  CHECK(test::run_co(fx.io, ctl.handle("echo hi\n")) == "hi\n");
  CHECK_THAT(test::run_co(fx.io, ctl.handle("bogus\n")), Catch::StartsWith("ERROR: "));
  CHECK_THAT(test::run_co(fx.io, ctl.handle("queue show ../../x\n")), Catch::StartsWith("ERROR: invalid queue id"));
  CHECK_THAT(test::run_co(fx.io, ctl.handle("queue list --json\n")), Catch::Contains("\"id\":\"" + id + "\""));
  CHECK_THAT(test::run_co(fx.io, ctl.handle("queue show " + id + "\n")), Catch::Contains("Recipient: <x@example.test> pending"));
  CHECK(test::run_co(fx.io, ctl.handle("queue delete " + id + "\n")) == "OK: " + id + "\n");
  CHECK_THAT(test::run_co(fx.io, ctl.handle("queue delete " + id + "\n")), Catch::StartsWith("ERROR: "));
  CHECK(test::run_co(fx.io, ctl.handle("queue list\n")) == "Mail queue is empty\n");

  REQUIRE(ctl.start().ok());
  struct stat st {};
  REQUIRE(::stat((fx.tmp.path / "ctl.sock").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  ctl.stop();
  CHECK(test::run_until(fx.io, [&] { return ctl.frames() == 0; }));
}

TEST_CASE("restart: complete files are delivered, torn ones go to corrupt/", "[queue][recovery]") {
  Fixture fx;
  fx.spool->on_committed([](const std::string&, std::string) {});  // "crash" before pickup
  auto a = fx.submit(env_to({{"x@example.test", DsnNotify::Default, ""}}));
  auto b = fx.submit(env_to({{"y@example.test", DsnNotify::Default, ""}, {"z@other.test", DsnNotify::Default, ""}}));
  REQUIRE(fx.spool->move(b, Spool::kIncoming, Spool::kActive).ok());
  // b was half delivered: y done before the crash.
  qf::RcptProgress done{qf::RcptState::Sent, "2.0.0", "mx[192.0.2.1]:25", "250 ok", false};
  REQUIRE(qf::append_progress(fx.tmp.path / "active" / b, qf::encode_rcpt_final(0, done)).ok());
  {
    std::ifstream in(fx.tmp.path / "incoming" / a, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(fx.tmp.path / "incoming" / "TORNFILE0001", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  REQUIRE(fx.close());
  fx.open();  // new Spool + QueueManager on the same folder
  fx.qm->start();
  REQUIRE(test::run_until(fx.io, [&] { return fx.transport.calls.size() == 2; }));
  fx.settle();
  std::set<std::string> delivered;
  for (auto& c : fx.transport.calls)
    for (auto& r : c.rcpts) delivered.insert(r);
  CHECK(delivered == std::set<std::string>{"x@example.test", "z@other.test"});  // not y again
  CHECK(fx.in("corrupt") == 1);
  CHECK(fs::exists(fx.tmp.path / "corrupt" / "TORNFILE0001"));
  CHECK(fx.in("deferred") == 0);
}

TEST_CASE("per-destination concurrency is respected", "[queue]") {
  Fixture fx;
  fx.cfg->queue.destination_concurrency = 2;
  // A transport that waits, so deliveries overlap.
  struct Slow : Transport {
    asio::io_context& io;
    int active = 0, peak = 0, total = 0;
    explicit Slow(asio::io_context& i) : io(i) {}
    asio::awaitable<std::vector<RcptResult>> deliver(const DeliveryRequest& req) override {
      ++active;
      peak = std::max(peak, active);
      asio::steady_timer t(io, std::chrono::milliseconds(20));
      co_await t.async_wait(asio::use_awaitable);
      --active;
      ++total;
      co_return std::vector<RcptResult>{{req.recipients[0], RcptStatus::Sent, "2.0.0", "x[1.2.3.4]:25", "250 ok"}};
    }
  } slow(fx.io);
  fx.qm->add_transport("smtp", slow);
  fx.qm->start();
  for (int i = 0; i < 6; ++i) fx.submit(env_to({{"x@example.test", DsnNotify::Default, ""}}));
  REQUIRE(test::run_until(fx.io, [&] { return slow.total == 6; }));
  CHECK(slow.peak <= 2);
}
