// moatd's process: owns the io_context threads, the blocking pool, the
// listeners and every long-lived component, and swaps the configuration
// snapshot atomically on SIGHUP.
#pragma once

#include <filesystem>

namespace moat::gateway {

// Runs until SIGTERM/SIGINT. Returns the process exit code.
int run_server(const std::filesystem::path& config_file);

}  // namespace moat::gateway
