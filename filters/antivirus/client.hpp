// moatd's side of the moat-scand protocol (common/proto/scand): one Unix
// socket connection per scan, the request written whole (one frame), the
// reply read through the sans-I/O decoder, the whole exchange under one
// deadline.
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

// `frame` is a request of `items` items (proto::scand::encode_request) with
// this id; the reply must answer that id and name only those items.
boost::asio::awaitable<Result<proto::scand::ScanReply>> scan(const std::filesystem::path& socket, std::string frame,
                                                             std::uint32_t id, std::size_t items,
                                                             std::chrono::milliseconds timeout,
                                                             const proto::scand::Limits& limits);

// Ping/pong: true when moat-scand answers within the timeout.
boost::asio::awaitable<bool> ping(const std::filesystem::path& socket, std::chrono::milliseconds timeout);

}  // namespace moat::filters::antivirus
