// See control.hpp. Only the owner can connect (mode 0600), so the socket is
// trusted as much as moatd's user; still every id is validated before it
// reaches a path and the request line is bounded and under a deadline.
#include "gateway/control.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "common/log.hpp"
#include "gateway/queue/admin.hpp"
#include "gateway/queue/manager.hpp"

namespace moat::gateway {
namespace {

using asio::local::stream_protocol;
constexpr std::size_t kMaxRequest = 4096;
using namespace asio::experimental::awaitable_operators;

std::string error_reply(std::string_view what) { return "ERROR: " + std::string(what) + "\n"; }

std::string ok_or_error(const Status& st, std::string_view ok_text) {
  return st ? std::string(ok_text) : error_reply(st.error().detail);
}

// Is something already answering on the socket path?
bool socket_alive(const std::filesystem::path& p) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", p.c_str());
  bool alive = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  ::close(fd);
  return alive;
}

}  // namespace

std::vector<std::string> split_words(std::string_view line) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n')) ++i;
    std::size_t j = i;
    while (j < line.size() && !(line[j] == ' ' || line[j] == '\t' || line[j] == '\r' || line[j] == '\n')) ++j;
    if (j > i) out.emplace_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

Control::Control(asio::io_context& io, std::filesystem::path socket_path, QueueManager& queue)
    : io_(io), path_(std::move(socket_path)), queue_(queue) {}

Control::~Control() = default;

void Control::add_handler(std::string word, Handler handler) { handlers_[std::move(word)] = std::move(handler); }

Status Control::start() {
  if (path_.empty()) return Error{Errc::Invalid, "no control socket path configured"};
  if (path_.native().size() >= sizeof(sockaddr_un{}.sun_path))
    return Error{Errc::Invalid, path_.string() + ": path too long for a Unix socket"};
  std::error_code fec;
  if (std::filesystem::exists(path_, fec)) {
    if (socket_alive(path_)) return Error{Errc::Invalid, path_.string() + ": another moatd is running"};
    std::filesystem::remove(path_, fec);  // stale, from a crash
  }
  std::filesystem::create_directories(path_.parent_path(), fec);
  boost::system::error_code ec;
  auto acc = std::make_unique<stream_protocol::acceptor>(io_);
  acc->open(stream_protocol(), ec);
  if (!ec) acc->bind(stream_protocol::endpoint(path_.string()), ec);
  // Before listen: nobody may connect while the mode is still the umask's.
  if (!ec && ::chmod(path_.c_str(), 0600) != 0) ec.assign(errno, boost::system::system_category());
  if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Error{Errc::IoError, path_.string() + ": " + ec.message()};
  acceptor_ = std::move(acc);
  asio::co_spawn(io_, accept_loop(frames_.token()), asio::detached);
  return {};
}

void Control::stop() {
  if (!acceptor_) return;
  boost::system::error_code ec;
  acceptor_->close(ec);
  std::error_code fec;
  std::filesystem::remove(path_, fec);
}

asio::awaitable<void> Control::accept_loop(FrameCount::Token) {
  for (;;) {
    auto [ec, sock] = co_await acceptor_->async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor_->is_open()) co_return;
    if (ec) {
      asio::steady_timer t(io_, std::chrono::milliseconds(100));  // EMFILE: back off, don't spin
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    asio::co_spawn(io_, serve(std::move(sock), frames_.token()), asio::detached);
  }
}

asio::awaitable<void> Control::serve(stream_protocol::socket sock, FrameCount::Token) {
  // A client that sends no complete request within 30 s is dropped.
  asio::steady_timer deadline(io_, std::chrono::seconds(30));
  std::string line;
  auto read = asio::async_read_until(sock, asio::dynamic_buffer(line, kMaxRequest), '\n',
                                     asio::as_tuple(asio::use_awaitable));
  auto raced = co_await (std::move(read) || deadline.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (raced.index() == 1) co_return;
  auto [ec, n] = std::get<0>(raced);
  std::string reply;
  if (ec == asio::error::not_found) {
    reply = error_reply("request too long");
  } else if (ec && line.empty()) {
    reply = error_reply("no request");
  } else {
    if (!ec) line.resize(n);  // at EOF without a newline the whole buffer is the request
    try {
      reply = co_await handle(line);
    } catch (const std::exception& e) {
      reply = error_reply(std::string("internal error: ") + e.what());
    }
  }
  co_await asio::async_write(sock, asio::buffer(reply), asio::as_tuple(asio::use_awaitable));
  boost::system::error_code ignore;
  sock.shutdown(stream_protocol::socket::shutdown_both, ignore);
  sock.close(ignore);
}

asio::awaitable<std::string> Control::handle(std::string line) {
  auto words = split_words(line);
  if (words.empty()) co_return error_reply("empty request");
  std::string cmd = words.front();
  words.erase(words.begin());
  if (cmd == "ping") co_return "pong\n";
  if (cmd == "queue") co_return co_await queue_command(std::move(words));
  if (auto it = handlers_.find(cmd); it != handlers_.end()) co_return co_await it->second(std::move(words));
  co_return error_reply("unknown command " + cmd);
}

asio::awaitable<std::string> Control::queue_command(std::vector<std::string> args) {
  bool json = false;
  std::vector<std::string> rest;
  for (auto& a : args) (a == "--json" ? json = true : (rest.push_back(a), false));
  if (rest.empty()) co_return error_reply("usage: queue list|show ID|flush|delete ID|hold ID|release ID [--json]");
  const std::string& sub = rest[0];
  if (sub == "list") {
    auto l = co_await queue_.list();
    co_return l ? admin::format_list(*l, json) : error_reply(l.error().detail);
  }
  if (sub == "flush") co_return ok_or_error(queue_.flush(), json ? "{\"ok\":true}\n" : "OK: deferred mail scheduled for delivery\n");
  if (rest.size() != 2) co_return error_reply("usage: queue " + sub + " ID");
  const std::string& id = rest[1];
  if (!qf::valid_queue_id(id)) co_return error_reply("invalid queue id");
  std::string ok = json ? "{\"ok\":true,\"id\":\"" + id + "\"}\n" : "OK: " + id + "\n";
  if (sub == "show") {
    auto m = co_await queue_.show(id);
    co_return m ? admin::format_show(*m, json) : error_reply(m.error().detail);
  }
  if (sub == "delete") co_return ok_or_error(queue_.remove(id), ok);
  if (sub == "hold") co_return ok_or_error(queue_.hold(id), ok);
  if (sub == "release") co_return ok_or_error(queue_.release(id), ok);
  co_return error_reply("unknown queue command " + sub);
}

}  // namespace moat::gateway
