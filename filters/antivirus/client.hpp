// moatd's side of the moat-scand protocol (common/proto/scand): one Unix
// socket connection per scan, the request written whole, the reply read
// through the sans-I/O decoder, the whole exchange under one deadline.
// Failures are temporary errors (fail closed, 451): Errc::ScanUnavailable
// when the scanner cannot be reached or drops the connection (it crashed),
// Errc::ScanTimeout when the deadline passes.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <filesystem>

#include "common/error.hpp"
#include "common/proto/scand/scand.hpp"

namespace moat::filters::antivirus {

boost::asio::awaitable<Result<proto::scand::ScanReply>> scan(const std::filesystem::path& socket,
                                                             const proto::scand::ScanRequest& request,
                                                             std::chrono::milliseconds timeout,
                                                             const proto::scand::Limits& limits);

// Ping/pong: true when moat-scand answers within the timeout.
boost::asio::awaitable<bool> ping(const std::filesystem::path& socket, std::chrono::milliseconds timeout);

}  // namespace moat::filters::antivirus
