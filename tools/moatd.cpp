// moatd: the mail gateway daemon. `moatd --config FILE` runs in the
// foreground and logs to stderr.
#include <cstdio>
#include <cstring>
#include <string>

#include "gateway/server.hpp"

int main(int argc, char** argv) {
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
