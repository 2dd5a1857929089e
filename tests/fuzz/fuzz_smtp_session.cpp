// Fuzz target: a whole inbound SMTP session (gateway/smtp_session.cpp) driven
// in memory. The input is split into chunks whose sizes come from the input
// itself, so commands, DATA and BDAT arrive at every possible split. The real
// parser, filter pipeline and spool (on tmpfs) run; only the socket is fake.
// Checks what a client would see: every reply line is "DDD" + ' ' or '-' and
// ends in CRLF, and the session always ends.
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "common/config.hpp"
#include "common/log.hpp"
#include "filters/pipeline.hpp"
#include "gateway/session_io.hpp"
#include "gateway/smtp_session.hpp"
#include "gateway/spool.hpp"

using namespace moat;
using namespace moat::gateway;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kConfig = R"(
[server]
hostname = "fuzz.test"
[[listener]]
name = "smtp"
address = "127.0.0.1:2525"
mode = "smtp"
[limits]
line_length = 1000
message_size = 20000
header_size = 4000
recipients = 5
hard_errors = 8
[relay]
networks = ["192.0.2.0/24"]
[[relay.domain]]
name = "example.test"
next_hop = "127.0.0.1:2526"
[[relay.domain]]
name = "static.test"
next_hop = "127.0.0.1:2526"
verify = "static"
recipients = ["known@static.test"]
)";

// Replays the input as a sequence of reads; EOF when it runs out.
class MemIo final : public SessionIo {
 public:
  MemIo(const std::uint8_t* data, std::size_t size, std::string& out) : data_(data), size_(size), out_(out) {}
  asio::awaitable<Result<std::size_t>> read_some(char* buf, std::size_t n) override {
    if (pos_ >= size_) co_return Error{Errc::IoError, "eof"};
    // Chunk length: the next byte (1..64), then that many bytes.
    std::size_t want = 1 + data_[pos_++] % 64;
    want = std::min({want, n, size_ - pos_});
    if (want == 0) co_return Error{Errc::IoError, "eof"};
    std::memcpy(buf, data_ + pos_, want);
    pos_ += want;
    co_return want;
  }
  asio::awaitable<Status> write(std::string_view data) override {
    out_.append(data);
    co_return Status{};
  }
  std::size_t available() override { return 0; }
  bool tls_active() const override { return false; }
  asio::awaitable<Status> start_tls() override { co_return Error{Errc::IoError, "no TLS in the fuzzer"}; }
  void cancel() override {}
  void close() override {}

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  std::string& out_;
};

struct World {
  fs::path dir;
  asio::thread_pool blocking{1};
  std::unique_ptr<Spool> spool;
  std::shared_ptr<const Runtime> runtime;

  World() {
    log::set_level(log::Level::Error);
    // tmpfs keeps the spool's fsyncs cheap.
    fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    dir = base / ("moat-fuzz-session-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    spool = std::make_unique<Spool>(dir, blocking, 1);
    if (!spool->init()) std::abort();
    // Committed messages are not delivered here: drop them so the disk stays empty.
    spool->on_committed([this](const std::string& id, std::string) {
      std::error_code ec;
      fs::remove(spool->path(Spool::kIncoming, id), ec);
    });
    auto cfg = config::parse(kConfig, "fuzz.toml");
    if (!cfg) std::abort();
    auto rt = std::make_shared<Runtime>();
    rt->config = *cfg;
    auto pipeline = filters::Pipeline::build(*cfg);
    if (!pipeline) std::abort();
    rt->pipeline = std::shared_ptr<filters::Pipeline>(std::move(*pipeline));
    runtime = rt;
  }
  ~World() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

World& world() {
  static World w;
  return w;
}

void check_replies(std::string_view out) {
  while (!out.empty()) {
    auto eol = out.find("\r\n");
    if (eol == std::string_view::npos || eol < 3) std::abort();
    auto line = out.substr(0, eol);
    for (int i = 0; i < 3; ++i)
      if (line[i] < '0' || line[i] > '9') std::abort();
    if (line.size() > 3 && line[3] != ' ' && line[3] != '-') std::abort();
    if (line.find('\r') != std::string_view::npos || line.find('\n') != std::string_view::npos) std::abort();
    out.remove_prefix(eol + 2);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  World& w = world();
  std::string out;
  asio::io_context io;
  SessionDeps deps{[&w] { return w.runtime; }, w.spool.get(), nullptr, nullptr, nullptr};
  config::Listener listener = w.runtime->config->listeners.front();
  // The first byte picks the client address: inside or outside the relay network.
  Peer peer{parse_ip((size && data[0] & 1) ? "192.0.2.7" : "198.51.100.9").value(), 40000};
  bool finished = false;
  asio::co_spawn(io, run_smtp_session(deps, std::make_unique<MemIo>(data, size, out), listener, peer),
                 [&](std::exception_ptr e) {
                   if (e) std::abort();  // run_smtp_session never throws
                   finished = true;
                 });
  io.run();
  // Spool commits finish on the blocking pool and post back: run until idle.
  if (!finished) std::abort();
  check_replies(out);
  if (std::getenv("MOAT_FUZZ_PRINT")) std::fwrite(out.data(), 1, out.size(), stderr);
  return 0;
}
