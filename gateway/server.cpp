// See server.hpp. Start-up order: config → data dirs → TLS (self-signed on
// first start) → spool recovery → queue → listeners → privilege drop → run.
// Start-up errors are fatal with a clear message; after that, errors are values.
#include "gateway/server.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "common/config.hpp"
#include "common/dns/resolver.hpp"
#include "filters/dnsbl/dnsbl.hpp"
#include "filters/greylist/greylist.hpp"
#include "filters/ratelimit/ratelimit.hpp"
#include "common/io_context.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/tls.hpp"
#include "directory/directory.hpp"
#include "filters/pipeline.hpp"
#include "gateway/callout.hpp"
#include "gateway/control.hpp"
#include "gateway/quarantine_admin.hpp"
#include "gateway/sender_lists.hpp"
#include "quarantine/store.hpp"
#include "gateway/queue/local.hpp"
#include "gateway/queue/manager.hpp"
#include "gateway/smtp_client.hpp"
#include "gateway/smtp_session.hpp"
#include "gateway/spool.hpp"
#include "store/fs_store.hpp"
#include "store/imap/session.hpp"
#include "store/pop3/session.hpp"

namespace moat::gateway {

namespace {

using asio::ip::tcp;

// Connections per client address and in all (SECURITY.md promise 3).
class ConnectionLimiter {
 public:
  bool admit(const IpAddr& ip, const config::Limits& lim) {
    std::lock_guard lk(mu_);
    if (total_ >= lim.max_connections) return false;
    auto& n = per_ip_[ip.b];
    if (n >= lim.connections_per_client) return false;
    ++n;
    ++total_;
    active_.set(total_);
    return true;
  }
  void release(const IpAddr& ip) {
    std::lock_guard lk(mu_);
    if (--per_ip_[ip.b] == 0) per_ip_.erase(ip.b);
    --total_;
    active_.set(total_);
  }

 private:
  std::mutex mu_;
  std::map<std::array<std::uint8_t, 16>, unsigned> per_ip_;
  unsigned total_ = 0;
  metrics::Gauge& active_ = metrics::gauge("moat_smtp_connections_active", {}, "Open SMTP connections");
};

IpAddr to_ip(const asio::ip::address& a) {
  return parse_ip(a.to_string()).value_or(IpAddr{});
}

class Server {
 public:
  // One event loop per I/O thread, each run by exactly that thread: the
  // main one (listeners, queue, resolver, control) and one more per extra
  // thread for sessions. One io_context shared by two threads woke the idle
  // thread for nearly every handler the busy one posted; a loop of its own
  // keeps a session's handlers on its thread (bench/scan, two threads: 46.7
  // context switches a message before, 35.6 after).
  explicit Server(config::Snapshot cfg)
      : threads_(cfg->server.threads ? cfg->server.threads : std::max(1u, std::thread::hardware_concurrency())),
        io_(1),
        blocking_(4),
        config_(std::move(cfg)) {
    for (unsigned i = 1; i < threads_; ++i) session_io_.push_back(std::make_unique<IoContext>(1));
  }

  // Pending frames first, while the members they refer to are alive.
  ~Server() {
    for (auto& io : session_io_) io->destroy_pending();
    io_.destroy_pending();
  }

  int run();

 private:
  std::shared_ptr<const Runtime> runtime() {
    std::lock_guard lk(mu_);
    return runtime_;
  }
  config::Snapshot config() { return runtime()->config; }
  Result<std::shared_ptr<const Runtime>> make_runtime(config::Snapshot cfg);
  bool reload();
  Status prepare_dirs(const config::Config& cfg);
  bool open_listeners();
  asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, config::Listener listener);
  asio::awaitable<void> refuse(tcp::socket sock, std::string reply);
  asio::awaitable<void> pop3_session(std::unique_ptr<SessionIo> io, config::Listener listener, Peer peer);
  asio::awaitable<void> imap_session(std::unique_ptr<SessionIo> io, config::Listener listener, Peer peer);
  void mail_deps(store::SessionDeps& deps, const Runtime& rt, bool tls_available, bool implicit_tls);
  asio::awaitable<void> signals();
  bool drop_privileges(const std::string& user);

  // The loop for the next accepted connection: round robin over all of them.
  IoContext& next_io() {
    const unsigned i = next_io_++ % threads_;
    return i == 0 ? io_ : *session_io_[i - 1];
  }

  unsigned threads_;
  IoContext io_;
  std::vector<std::unique_ptr<IoContext>> session_io_;  // threads_ - 1 more loops, sessions only
  unsigned next_io_ = 0;                                 // accept loops run on io_'s one thread
  asio::thread_pool blocking_;
  config::Snapshot config_;
  std::mutex mu_;
  std::shared_ptr<const Runtime> runtime_;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;
  ConnectionLimiter limiter_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<dns::Resolver> resolver_;
  // Reputation state kept across reloads (filters/services.hpp).
  filters::dnsbl::Cache dnsbl_cache_;
  filters::ratelimit::Buckets ratelimits_;
  std::unique_ptr<filters::greylist::Store> greylist_;
  std::shared_ptr<asio::ssl::context> client_tls_;
  std::unique_ptr<SmtpTransport> smtp_;
  std::unique_ptr<QueueManager> queue_;
  std::unique_ptr<directory::Directory> directory_;
  std::unique_ptr<store::FsStore> store_;        // local domains' mailboxes
  std::unique_ptr<LocalTransport> local_;
  std::unique_ptr<CalloutVerifier> callout_;
  std::unique_ptr<Control> control_;
  std::unique_ptr<quarantine::Store> quarantine_;
  std::unique_ptr<QuarantineService> quarantine_service_;
  std::unique_ptr<SenderLists> sender_lists_;
  bool stopping_ = false;
};

Status Server::prepare_dirs(const config::Config& cfg) {
  std::error_code ec;
  for (const auto& d : {cfg.server.data_dir, cfg.db_path().parent_path(), cfg.tls.cert.parent_path(),
                        cfg.tls.key.parent_path(), cfg.server.control_socket.parent_path()}) {
    if (d.empty()) continue;
    std::filesystem::create_directories(d, ec);
    if (ec) return Error{Errc::IoError, d.string() + ": " + ec.message()};
  }
  return {};
}

Result<std::shared_ptr<const Runtime>> Server::make_runtime(config::Snapshot cfg) {
  auto rt = std::make_shared<Runtime>();
  if (auto st = tls::ensure_self_signed(cfg->tls.cert, cfg->tls.key, cfg->server.hostname); !st) return st.error();
  auto ctx = tls::make_server_context(cfg->tls.cert, cfg->tls.key, {"smtp"});
  if (!ctx) return ctx.error();
  rt->tls = *ctx;
  // ALPACA: an implicit-TLS IMAP or POP3 port must not complete a handshake
  // meant for another protocol, so each gets its own ALPN list.
  auto imap_ctx = tls::make_server_context(cfg->tls.cert, cfg->tls.key, tls::kAlpnImap);
  if (!imap_ctx) return imap_ctx.error();
  rt->tls_imap = *imap_ctx;
  auto pop3_ctx = tls::make_server_context(cfg->tls.cert, cfg->tls.key, tls::kAlpnPop3);
  if (!pop3_ctx) return pop3_ctx.error();
  rt->tls_pop3 = *pop3_ctx;
  filters::Services services{resolver_.get(), &blocking_, cfg->server.data_dir};
  services.dnsbl_cache = &dnsbl_cache_;
  services.ratelimits = &ratelimits_;
  services.greylist = greylist_.get();
  auto pipeline = filters::Pipeline::build(cfg, services);
  if (!pipeline) return pipeline.error();
  rt->pipeline = std::shared_ptr<filters::Pipeline>(std::move(*pipeline));
  rt->config = std::move(cfg);
  return std::shared_ptr<const Runtime>(std::move(rt));
}

// A free coroutine: capturing lambdas must not be coroutines (g++ 12).
asio::awaitable<std::string> reload_lists(SenderLists* lists) {
  Status st = co_await lists->reload();
  co_return st ? "OK\n" : "ERROR: " + st.error().detail + "\n";
}

// SIGHUP: the new file must load and validate whole, else the old one stays.
bool Server::reload() {
  if (sender_lists_) asio::co_spawn(io_, sender_lists_->reload(), asio::detached);
  auto cfg = config::load(config_->source);
  if (!cfg) {
    log::error("reload failed, keeping the running configuration:\n" + cfg.error().detail);
    return false;
  }
  auto rt = make_runtime(*cfg);
  if (!rt) {
    log::error("reload failed, keeping the running configuration: " + rt.error().detail);
    return false;
  }
  {
    std::lock_guard lk(mu_);
    runtime_ = *rt;
  }
  log::info("reload: configuration " + config_->source.string() + " loaded");
  return true;
}

bool Server::open_listeners() {
  for (const auto& l : config_->listeners) {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(l.address.host, ec);
    if (ec) {
      log::error("listener " + l.name + ": bad address " + l.address.host);
      return false;
    }
    auto acc = std::make_unique<tcp::acceptor>(io_);
    tcp::endpoint ep(addr, l.address.port);
    acc->open(ep.protocol(), ec);
    if (!ec) acc->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acc->bind(ep, ec);
    if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      log::error("listener " + l.name + " on " + l.address.str() + ": " + ec.message());
      return false;
    }
    log::info("listening on " + l.address.str() + " (" + l.name + ")");
    asio::co_spawn(io_, accept_loop(*acc, l), asio::detached);
    acceptors_.push_back(std::move(acc));
  }
  return true;
}

asio::awaitable<void> Server::refuse(tcp::socket sock, std::string reply) {
  boost::system::error_code ec;
  co_await asio::async_write(sock, asio::buffer(reply), asio::redirect_error(asio::use_awaitable, ec));
  sock.shutdown(tcp::socket::shutdown_both, ec);
  sock.close(ec);
}

asio::awaitable<void> Server::accept_loop(tcp::acceptor& acceptor, config::Listener listener) {
  for (;;) {
    auto strand = asio::make_strand(next_io());
    auto [ec, sock] = co_await acceptor.async_accept(strand, asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || stopping_) co_return;
    if (ec) {
      // EMFILE and friends: back off instead of spinning (Asio examples).
      log::warning("accept on " + listener.address.str() + ": " + ec.message());
      asio::steady_timer t(io_, std::chrono::milliseconds(100));
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    boost::system::error_code rec;
    auto remote = sock.remote_endpoint(rec);
    if (rec) continue;
    // Every reply is already one write per command or per window of
    // output; Nagle would hold the small last segment of a reply until the
    // client's delayed ACK (bench/imap: 45 ms per FETCH over 16 KiB).
    sock.set_option(tcp::no_delay(true), rec);
    Peer peer{to_ip(remote.address()), remote.port()};
    auto rt = runtime();
    if (!limiter_.admit(peer.ip, rt->config->limits)) {
      log::warning("too many connections from [" + peer.ip.str() + "]");
      asio::co_spawn(strand, refuse(std::move(sock), "421 4.7.0 " + rt->config->server.hostname +
                                                         " Error: too many connections\r\n"),
                     asio::detached);
      continue;
    }
    if (listener.mode == config::ListenerMode::Pop3 || listener.mode == config::ListenerMode::Pop3s) {
      auto io = std::make_unique<TcpIo>(std::move(sock), rt->tls_pop3);
      asio::co_spawn(strand, pop3_session(std::move(io), listener, peer), asio::detached);
      continue;
    }
    if (listener.mode == config::ListenerMode::Imap || listener.mode == config::ListenerMode::Imaps) {
      auto io = std::make_unique<TcpIo>(std::move(sock), rt->tls_imap);
      asio::co_spawn(strand, imap_session(std::move(io), listener, peer), asio::detached);
      continue;
    }
    SessionDeps deps{[this] { return runtime(); }, spool_.get(), directory_.get(), callout_.get(), queue_.get(),
                     quarantine_.get()};
    deps.sender_lists = sender_lists_.get();
    deps.local = local_.get();
    auto io = std::make_unique<TcpIo>(std::move(sock), rt->tls);
    asio::co_spawn(
        strand,
        [this, deps = std::move(deps), io = std::move(io), listener, peer]() mutable -> asio::awaitable<void> {
          co_await run_smtp_session(std::move(deps), std::move(io), listener, peer);
          limiter_.release(peer.ip);
        },
        asio::detached);
  }
}

// What IMAP and POP3 sessions take from the server and the configuration.
void Server::mail_deps(store::SessionDeps& deps, const Runtime& rt, bool tls_available, bool implicit_tls) {
  deps.store = store_.get();
  deps.directory = directory_.get();
  deps.blocking = &blocking_;
  deps.hostname = rt.config->server.hostname;
  deps.tls_available = tls_available;
  deps.implicit_tls = implicit_tls;
  deps.max_auth_failures = rt.config->limits.auth_failures;
}

// POP3 (store/pop3) on the same mailbox store as local delivery.
asio::awaitable<void> Server::pop3_session(std::unique_ptr<SessionIo> io, config::Listener listener, Peer peer) {
  auto rt = runtime();
  store::pop3::Deps deps;
  mail_deps(deps, *rt, rt->tls_pop3 != nullptr, listener.mode == config::ListenerMode::Pop3s);
  deps.command_timeout = std::max(rt->config->limits.command_timeout, std::chrono::seconds(600));
  log::info("pop3 connect from [" + peer.ip.str() + "] on " + listener.name);
  co_await store::pop3::run_session(std::move(deps), std::move(io));
  limiter_.release(peer.ip);
}

// IMAP (store/imap) on the same mailbox store.
asio::awaitable<void> Server::imap_session(std::unique_ptr<SessionIo> io, config::Listener listener, Peer peer) {
  auto rt = runtime();
  store::imap::Deps deps;
  mail_deps(deps, *rt, rt->tls_imap != nullptr, listener.mode == config::ListenerMode::Imaps);
  deps.max_append = rt->config->limits.message_size;
  log::info("imap connect from [" + peer.ip.str() + "] on " + listener.name);
  co_await store::imap::run_session(std::move(deps), std::move(io));
  limiter_.release(peer.ip);
}

asio::awaitable<void> Server::signals() {
  asio::signal_set sigs(io_, SIGHUP, SIGTERM, SIGINT);
  for (;;) {
    auto [ec, sig] = co_await sigs.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    if (sig == SIGHUP) {
      reload();
      continue;
    }
    log::info("terminating on signal " + std::to_string(sig));
    stopping_ = true;
    for (auto& a : acceptors_) {
      boost::system::error_code ignore;
      a->close(ignore);
    }
    queue_->stop();
    local_->stop();
    quarantine_service_->stop();
    // Sessions in flight have not been answered 250 for anything unsynced, so
    // stopping now loses nothing; the clients retry.
    io_.stop();
    for (auto& io : session_io_) io->stop();
    co_return;
  }
}

bool Server::drop_privileges(const std::string& user) {
  if (user.empty() || ::geteuid() != 0) return true;
  struct passwd* pw = ::getpwnam(user.c_str());
  if (!pw) {
    log::error("unknown user " + user);
    return false;
  }
  if (::initgroups(pw->pw_name, pw->pw_gid) != 0 || ::setgid(pw->pw_gid) != 0 || ::setuid(pw->pw_uid) != 0) {
    log::error("cannot drop privileges to " + user);
    return false;
  }
  log::info("running as " + user);
  return true;
}

int Server::run() {
  const auto& cfg = *config_;
  if (auto st = prepare_dirs(cfg); !st) {
    log::error("fatal: " + st.error().detail);
    return 1;
  }
  resolver_ = std::make_unique<dns::Resolver>(io_, cfg.dns);  // filters use it
  greylist_ = std::make_unique<filters::greylist::Store>(cfg.server.data_dir / "db" / "greylist.sqlite");
  auto rt = make_runtime(config_);
  if (!rt) {
    log::error("fatal: " + rt.error().detail);
    return 1;
  }
  runtime_ = *rt;
  auto getter = [this] { return config(); };

  spool_ = std::make_unique<Spool>(cfg.spool_dir(), blocking_);
  if (auto st = spool_->init(); !st) {
    log::error("fatal: spool: " + st.error().detail);
    return 1;
  }
  client_tls_ = tls::make_client_context(false);
  smtp_ = std::make_unique<SmtpTransport>(io_.get_executor(), *resolver_, getter, *client_tls_);
  queue_ = std::make_unique<QueueManager>(io_, *spool_, getter, blocking_);
  queue_->add_transport("smtp", *smtp_);
  spool_->on_committed([this](const std::string& id, std::string file) { queue_->notify(id, std::move(file)); });
  quarantine_ = std::make_unique<quarantine::Store>(cfg.quarantine_dir(), cfg.quarantine_db());
  if (auto st = quarantine_->open(true); !st) {
    log::error("fatal: quarantine: " + st.error().detail);
    return 1;
  }
  quarantine_service_ = std::make_unique<QuarantineService>(io_, *quarantine_, *spool_, blocking_, getter);
  sender_lists_ = std::make_unique<SenderLists>(*quarantine_, blocking_);
  if (auto lists = quarantine_->lists()) sender_lists_->set(*lists);
  else log::warning("sender lists not loaded: " + lists.error().detail);
  directory_ = std::make_unique<directory::Directory>(cfg.db_path(), blocking_);
  {
    auto st = store::FsStore::open(store::store_options(cfg));
    if (!st) {
      log::error("fatal: mailbox store: " + st.error().detail);
      return 1;
    }
    store_ = std::move(*st);
  }
  local_ = std::make_unique<LocalTransport>(*store_, *directory_, getter, blocking_);
  queue_->add_transport("local", *local_);
  callout_ = std::make_unique<CalloutVerifier>(io_.get_executor(), *resolver_, getter, *client_tls_);

  if (!open_listeners()) return 1;
  control_ = std::make_unique<Control>(io_, cfg.server.control_socket, *queue_);
  control_->add_handler("reload", [this](std::vector<std::string>) -> asio::awaitable<std::string> {
    co_return reload() ? "OK\n" : "ERROR: reload failed, see the log\n";
  });
  control_->add_handler("metrics", [](std::vector<std::string>) -> asio::awaitable<std::string> {
    co_return metrics::render();
  });
  control_->add_handler("quarantine", [svc = quarantine_service_.get()](std::vector<std::string> args) {
    return svc->handle(std::move(args));
  });
  // moatctl quarantine allow|block|unlist write the lists, then say so here.
  control_->add_handler("sender-lists", [lists = sender_lists_.get()](std::vector<std::string>) {
    return reload_lists(lists);
  });
  if (auto st = control_->start(); !st) {
    log::error("fatal: control socket: " + st.error().detail);
    return 1;
  }
  if (!drop_privileges(cfg.server.user)) return 1;
  queue_->start();
  local_->start_maintenance(io_);
  asio::co_spawn(io_, quarantine_service_->expire_loop(), asio::detached);
  asio::co_spawn(io_, signals(), asio::detached);
  log::info("daemon started -- moat " + std::string("0.1.0") + ", configuration " + cfg.source.string());

  std::vector<std::thread> pool;
  for (auto& io : session_io_)
    pool.emplace_back([ctx = io.get()] {
      auto idle = asio::make_work_guard(*ctx);  // no session yet is no reason to return
      ctx->run();
    });
  io_.run();
  for (auto& t : pool) t.join();
  blocking_.join();
  log::info("stopped");
  return 0;
}

}  // namespace

int run_server(const std::filesystem::path& config_file) {
  log::set_program("moatd");
  auto cfg = config::load(config_file);
  if (!cfg) {
    std::fprintf(stderr, "moatd: configuration error:\n%s\n", cfg.error().detail.c_str());
    return 1;
  }
  ::signal(SIGPIPE, SIG_IGN);
  Server server(*cfg);
  return server.run();
}

}  // namespace moat::gateway
