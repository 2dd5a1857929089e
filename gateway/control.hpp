// moatd's control socket: a Unix stream socket (mode 0600) that answers one
// request line per connection ("queue list --json", "ping") with text and
// closes. moatctl is the client; more commands plug in with add_handler.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/frame_count.hpp"

namespace moat::gateway {

namespace asio = boost::asio;
class QueueManager;

class Control {
 public:
  // Handlers get the words after their own; the reply is sent as is. A
  // failed command's reply starts with "ERROR: " (moatctl exits 1 then).
  using Handler = std::function<asio::awaitable<std::string>(std::vector<std::string>)>;

  Control(asio::io_context& io, std::filesystem::path socket_path, QueueManager& queue);
  ~Control();

  void add_handler(std::string word, Handler handler);
  // Binds the socket (a stale one from a crashed moatd is replaced; a live
  // one is an error) and starts accepting.
  Status start();
  void stop();
  // Coroutines still alive (see common/frame_count.hpp): the owner runs the
  // io_context after stop() until this is 0, or destroys pending frames.
  std::size_t frames() const { return frames_.live(); }

  // Dispatches one request line; public for tests.
  asio::awaitable<std::string> handle(std::string line);

 private:
  asio::awaitable<void> accept_loop(FrameCount::Token);
  asio::awaitable<void> serve(asio::local::stream_protocol::socket sock, FrameCount::Token);
  asio::awaitable<std::string> queue_command(std::vector<std::string> args);

  asio::io_context& io_;
  std::filesystem::path path_;
  QueueManager& queue_;
  std::map<std::string, Handler> handlers_;
  std::unique_ptr<asio::local::stream_protocol::acceptor> acceptor_;
  FrameCount frames_{"control socket"};
};

// Splits a request line into words (spaces and tabs).
std::vector<std::string> split_words(std::string_view line);

}  // namespace moat::gateway
