// moatctl dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--bits N] [--dir DIR]:
// makes a DKIM key pair (RSA-2048 by default, RFC 8301; or Ed25519, RFC
// 8463), writes the private key as PEM with mode 0600, and prints the TXT
// record to publish at SELECTOR._domainkey.DOMAIN (RFC 6376 §3.6.2.1).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "common/config.hpp"
#include "common/text.hpp"
#include "filters/dkim/key.hpp"
#include "tools/moatctl.hpp"

namespace moat::ctl {
namespace {

namespace dkim = filters::dkim;

int usage() {
  std::fprintf(stderr, "usage: moatctl dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--bits N] [--dir DIR]\n");
  return 2;
}

bool valid_selector(const std::string& s) {
  return !s.empty() && s.size() <= 63 && s.front() != '.' && s.back() != '.' &&
         config::is_domain_name(s);
}

// O_EXCL: an existing key is never overwritten (it may be published and in use).
bool write_private(const std::filesystem::path& path, const std::string& pem) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::fprintf(stderr, "moatctl: %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  bool ok = ::write(fd, pem.data(), pem.size()) == ssize_t(pem.size()) && ::fsync(fd) == 0;
  ok = (::close(fd) == 0) && ok;
  if (!ok) std::fprintf(stderr, "moatctl: %s: write failed\n", path.c_str());
  return ok;
}

int keygen(const Context& ctx, const Args& args) {
  if (args.size() < 3) return usage();
  std::string domain = args[1], selector = args[2], type = "rsa";
  unsigned bits = 2048;
  std::filesystem::path dir;
  for (std::size_t i = 3; i < args.size(); ++i) {
    if (i + 1 >= args.size()) return usage();
    if (args[i] == "--type") type = args[++i];
    else if (args[i] == "--dir") dir = args[++i];
    else if (args[i] == "--bits") bits = unsigned(std::strtoul(args[++i].c_str(), nullptr, 10));
    else return usage();
  }
  domain = domain_key(domain);
  if (!config::is_domain_name(domain)) {
    std::fprintf(stderr, "moatctl: \"%s\" is not a domain name\n", args[1].c_str());
    return 2;
  }
  if (!valid_selector(selector)) {
    std::fprintf(stderr, "moatctl: \"%s\" is not a selector (letters, digits, '-', dots between labels)\n",
                 selector.c_str());
    return 2;
  }
  if (type != "rsa" && type != "ed25519") return usage();
  if (type == "rsa" && (bits < 1024 || bits > 8192)) {
    std::fprintf(stderr, "moatctl: --bits must be between 1024 and 8192 (RFC 8301; 2048 is the default)\n");
    return 2;
  }
  if (dir.empty()) {
    auto cfg = config::load(ctx.config_file);
    if (!cfg) {
      std::fprintf(stderr, "%s\nmoatctl: give --dir, or a configuration whose data_dir gets the key\n",
                   cfg.error().detail.c_str());
      return 1;
    }
    dir = (*cfg)->server.data_dir / "dkim";
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "moatctl: %s: %s\n", dir.c_str(), ec.message().c_str());
    return 1;
  }
  auto key = dkim::generate_key(type == "rsa" ? dkim::KeyType::Rsa : dkim::KeyType::Ed25519, bits);
  if (!key) {
    std::fprintf(stderr, "moatctl: %s\n", key.error().detail.c_str());
    return 1;
  }
  const auto path = std::filesystem::absolute(dir / (domain + "." + selector + ".pem"));
  if (!write_private(path, key->pem)) return 1;
  dkim::KeyRecord rec;
  rec.k = std::string(dkim::key_type_name(key->type));
  rec.p = key->public_b64;
  // The record on stdout (for scripts); where the key went, and the config
  // lines that use it, on stderr.
  std::printf("%s\n", dkim::zone_line(selector, domain, dkim::format_key_record(rec)).c_str());
  std::fprintf(stderr,
               "wrote %s (mode 0600); publish the TXT record above, then add:\n"
               "  [[dkim.sign]]\n  domain = \"%s\"\n  selector = \"%s\"\n  key = \"%s\"\n",
               path.c_str(), domain.c_str(), selector.c_str(), path.c_str());
  return 0;
}

}  // namespace

int dkim_cmd(const Context& ctx, const Args& args) {
  if (!args.empty() && args[0] == "keygen") return keygen(ctx, args);
  return usage();
}

}  // namespace moat::ctl
