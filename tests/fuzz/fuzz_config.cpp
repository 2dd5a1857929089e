// libFuzzer target for the config loader (SECURITY.md "Fuzz targets": config
// files). Any text must give a value or an error, never a crash; a config
// that loads must survive the round trip parse -> to_toml -> parse unchanged.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::filesystem::path name = "/fuzz/etc/moat.toml";
  auto a = moat::config::parse(text, name);
  if (!a) {
    if (a.error().detail.empty()) std::abort();  // every error says where and what
    return 0;
  }
  if ((*a)->listeners.empty()) std::abort();     // validation promised at least one
  const std::string once = moat::config::to_toml(**a);
  auto b = moat::config::parse(once, name);
  if (!b || moat::config::to_toml(**b) != once) std::abort();
  return 0;
}
