// Durable file writing shared by the spool, the quarantine and the mailbox
// store: full writes despite short writes and EINTR, and the directory fsync
// that makes a new or renamed entry survive a crash. A full disk is
// Errc::DiskFull (a temporary error, 452/451), anything else Errc::IoError.
#pragma once

#include <filesystem>
#include <string_view>

#include "common/error.hpp"

namespace moat {

Error file_error(std::string_view what, int err);           // err: an errno value
Status write_all(int fd, std::string_view data);
Result<std::string> read_all(int fd);  // to end of file; EINTR retried; does not close fd
Status fsync_dir(const std::filesystem::path& dir);

}  // namespace moat
