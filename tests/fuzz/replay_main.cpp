// Fallback driver for fuzz targets when libFuzzer is not linked (g++ builds):
// replays every file of the seed corpus, plus each file truncated at every
// length and with each byte flipped, so the targets still run in `make test`.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  std::size_t runs = 0;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path dir(argv[i]);
    if (!std::filesystem::exists(dir)) continue;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      std::ifstream in(e.path(), std::ios::binary);
      std::vector<std::uint8_t> buf((std::istreambuf_iterator<char>(in)), {});
      for (std::size_t n = 0; n <= buf.size(); ++n, ++runs) LLVMFuzzerTestOneInput(buf.data(), n);
      for (std::size_t j = 0; j < buf.size() && j < 4096; ++j, ++runs) {
        auto copy = buf;
        copy[j] ^= 0xff;
        LLVMFuzzerTestOneInput(copy.data(), copy.size());
      }
    }
  }
  std::printf("replayed %zu inputs\n", runs);
  return 0;
}
