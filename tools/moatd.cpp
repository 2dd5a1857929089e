// moatd: the mail gateway daemon. `moatd --config FILE` runs in the
// foreground and logs to stderr.
#include <malloc.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "gateway/server.hpp"

namespace {

// Message buffers (up to message_size) are allocated and freed for every
// message. glibc's defaults hand the top of the heap back to the kernel and
// serve blocks over 128 KiB with mmap, so each large message faulted fresh
// zeroed pages in again: keeping up to 64 MiB of freed heap and using mmap
// only from 8 MiB measured ~15% more 100 KB relay throughput (bench/README.md).
void tune_malloc() {
  mallopt(M_MMAP_THRESHOLD, 8 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  tune_malloc();
  std::string config = "etc/moat.toml";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      config = argv[++i];
    } else if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::printf("usage: moatd [--config FILE]\n");
      return 0;
    } else {
      std::fprintf(stderr, "moatd: unknown argument %s\nusage: moatd [--config FILE]\n", argv[i]);
      return 2;
    }
  }
  return moat::gateway::run_server(config);
}
