// See session_base.hpp.
#include "store/session_base.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/proto/sasl.hpp"

namespace moat::store {

Deadline::Deadline(asio::any_io_executor ex, gateway::SessionIo* io, std::chrono::seconds timeout)
    : timer_(std::move(ex)), io_(io), timeout_(timeout) {
  timer_.expires_at(at_);
}

void Deadline::restart() {
  at_ = Clock::now() + timeout_;
  timer_.expires_at(at_);
}

asio::awaitable<void> Deadline::watch() {
  while (!stopped_) {
    boost::system::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) break;
    // A wake-up from restart() (which cancels the wait) is not a timeout.
    if (Clock::now() >= at_) {
      io_->cancel();
      at_ = Clock::time_point::max();
      timer_.expires_at(at_);
    }
  }
}

void Deadline::stop() {
  stopped_ = true;
  timer_.cancel();
}

std::optional<PlainLogin> plain_login(std::string_view response) {
  auto creds = proto::sasl::decode_plain(response);
  if (!creds) return std::nullopt;
  if (!creds->authzid.empty() && creds->authzid != creds->authcid) return std::nullopt;
  return PlainLogin{creds->authcid, creds->password};
}

}  // namespace moat::store
