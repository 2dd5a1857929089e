// moat-scand client (see client.hpp).
#include "filters/antivirus/client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <memory>

namespace moat::filters::antivirus {
namespace asio = boost::asio;
using asio::local::stream_protocol;
namespace scand = proto::scand;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

Error unavailable(std::string what) { return Error{Errc::ScanUnavailable, "moat-scand: " + std::move(what)}; }

// Writes one frame and reads frames until one of `want` arrives.
asio::awaitable<Result<scand::Frame>> exchange(stream_protocol::socket* s, std::filesystem::path socket,
                                               std::string frame, scand::FrameType want, scand::Limits limits) {
  auto [cec] = co_await s->async_connect(stream_protocol::endpoint(socket.string()), kTuple);
  if (cec) co_return unavailable("connect " + socket.string() + ": " + cec.message());
  auto [wec, written] = co_await asio::async_write(*s, asio::buffer(frame), kTuple);
  if (wec) co_return unavailable("write: " + wec.message());
  scand::Decoder decoder(limits);
  char buf[16384];
  for (;;) {
    auto [rec, n] = co_await s->async_read_some(asio::buffer(buf), kTuple);
    // A scanner that dies mid-scan closes the socket: no verdict, fail closed.
    if (rec) co_return unavailable(rec == asio::error::eof ? "connection closed without a verdict" : "read: " + rec.message());
    if (auto st = decoder.feed(std::string_view(buf, n)); !st) co_return unavailable(st.error().detail);
    if (!decoder.has_frame()) continue;
    scand::Frame f = decoder.next();
    if (f.type != want) co_return unavailable("unexpected frame type " + std::to_string(int(f.type)));
    co_return f;
  }
}

// The deadline closes the socket, which ends whatever exchange() waits for.
// Racing exchange() against the timer with awaitable operators did the same
// with a parallel group per scan: two more coroutines and their cancellation
// signals, and more trips through a busy executor (filters/pipeline.cpp).
// Shared, as the timer's handler may still be queued when the scan is over;
// both run on the caller's executor (the pipeline's strand), never at once.
struct Deadline {
  Deadline(const asio::any_io_executor& ex, std::chrono::milliseconds timeout) : socket(ex), timer(ex, timeout) {}
  stream_protocol::socket socket;
  asio::steady_timer timer;
  bool expired = false;
};

asio::awaitable<Result<scand::Frame>> timed(const std::filesystem::path& socket, std::string frame,
                                            scand::FrameType want, std::chrono::milliseconds timeout,
                                            const scand::Limits& limits) {
  auto ex = co_await asio::this_coro::executor;
  auto d = std::make_shared<Deadline>(ex, timeout);
  d->timer.async_wait([d](boost::system::error_code ec) {
    if (ec) return;
    d->expired = true;
    d->socket.close(ec);
  });
  auto r = co_await exchange(&d->socket, socket, std::move(frame), want, limits);
  d->timer.cancel();
  if (d->expired)
    co_return Error{Errc::ScanTimeout, "moat-scand: no verdict within " + std::to_string(timeout.count()) + "ms"};
  co_return r;
}

}  // namespace

asio::awaitable<Result<scand::ScanReply>> scan(const std::filesystem::path& socket, std::string frame, std::uint32_t id,
                                               std::size_t items, std::chrono::milliseconds timeout,
                                               const scand::Limits& limits) {
  auto f = co_await timed(socket, std::move(frame), scand::FrameType::ScanReply, timeout, limits);
  if (!f) co_return f.error();
  auto reply = scand::decode_reply(f->payload, limits);
  if (!reply) co_return unavailable(reply.error().detail);
  if (reply->id != id) co_return unavailable("reply for another request");
  for (const auto& fd : reply->findings)
    if (fd.item >= items) co_return unavailable("finding for an unknown item");
  co_return reply;
}

asio::awaitable<bool> ping(const std::filesystem::path& socket, std::chrono::milliseconds timeout) {
  auto f = co_await timed(socket, scand::encode_frame(scand::FrameType::Ping, {}), scand::FrameType::Pong, timeout, {});
  co_return f.ok();
}

}  // namespace moat::filters::antivirus
