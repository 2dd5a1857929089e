// See file_io.hpp.
#include "common/file_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace moat {

Error file_error(std::string_view what, int err) {
  return Error{(err == ENOSPC || err == EDQUOT) ? Errc::DiskFull : Errc::IoError,
               std::string(what) + ": " + std::strerror(err)};
}

Result<std::string> read_all(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return file_error("read", errno);
    if (n == 0) return out;
    out.append(buf, std::size_t(n));
  }
}

Status write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return file_error("write", errno);
    data.remove_prefix(std::size_t(n));
  }
  return {};
}

Status fsync_dir(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return file_error("open " + dir.string(), errno);
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) return file_error("fsync " + dir.string(), e);
  return {};
}

}  // namespace moat
