// An io_context that can destroy its pending work early. Coroutine frames
// still queued when a daemon or test stops refer to objects (queue manager,
// spool) declared after the io_context; destroying those frames first, while
// everything they touch is alive, avoids use-after-free at shutdown.
#pragma once

#include <boost/asio/io_context.hpp>

namespace moat {

class IoContext : public boost::asio::io_context {
 public:
  using boost::asio::io_context::io_context;
  // Destroys every pending handler and coroutine frame (services stay, so I/O
  // objects may still be destroyed afterwards). Call once run() has returned.
  void destroy_pending() { shutdown(); }
};

}  // namespace moat
