// The RFC 7208 conformance suite (openspf.org / pyspf rfc7208-tests.yml,
// 203 cases in 16 scenarios) through our SPF code path: spf::Checker, so
// libspf2 on the blocking pool with its DNS through moat's dns::Resolver, and
// a real unbound serving each scenario's zone data on 127.0.0.1.
//
// Zone data follows the suite's own driver (pyspf testspf.py): records typed
// SPF are served as TXT unless the name has TXT records of its own; "TXT:
// NONE" means none; a name's TIMEOUT entry makes every type it has no records
// of go unanswered (a forward to a UDP socket that never replies); names not
// in the data do not exist. The YAML comes from Debian's python3-spf docs
// (else ../shared/testdata/spf/pyspf); without either the test says so.
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <zlib.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "common/dns/resolver.hpp"
#include "filters/spf/checker.hpp"
#include "tests/support/peers.hpp"
#include "tests/support/yaml_tree.hpp"
#include "tests/support/run.hpp"

using namespace moat;
namespace fs = std::filesystem;
namespace spf = moat::filters::spf;

namespace {

using test::yaml::Node;
using test::yaml::YamlReader;

// gzread reads plain files as they are, so one reader serves both copies.
std::string read_maybe_gz(const fs::path& p) {
  gzFile f = gzopen(p.c_str(), "rb");
  if (!f) return {};
  std::string out;
  char buf[65536];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, std::size_t(n));
  gzclose(f);
  return out;
}

fs::path suite_file() {
  const fs::path debian = "/usr/share/doc/python3-spf/rfc7208-tests.yml.gz";
  if (fs::exists(debian)) return debian;
  std::vector<fs::path> dirs;
  if (const char* env = std::getenv("MOAT_TESTDATA")) dirs.emplace_back(env);
  dirs.push_back(fs::path(MOAT_SOURCE_DIR) / ".." / "shared" / "testdata");
  for (const auto& d : dirs)
    if (fs::exists(d / "spf" / "pyspf" / "rfc7208-tests.yml")) return d / "spf" / "pyspf" / "rfc7208-tests.yml";
  return {};
}

// ---- zone data → unbound configuration ----

// Presentation format for a name: anything unusual as \DDD (RFC 1035 §5.1).
std::string dname(std::string_view name) {
  std::string out;
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '%' || c == ':' || c == '/' || c == '*')
      out += c;
    else {
      char b[8];
      std::snprintf(b, sizeof b, "\\%03u", u);
      out += b;
    }
  }
  if (out.empty() || out.back() != '.') out += '.';
  return out;
}

std::string txt_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\' || c == '\'') {
      char b[8];
      std::snprintf(b, sizeof b, "\\%03u", u);
      out += b;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::vector<std::string> strings_of(const Node& v) {
  if (v.kind == Node::Scalar) return {v.text};
  std::vector<std::string> out;
  for (const auto& i : v.items) out.push_back(i.text);
  return out;
}

struct Zone {
  std::vector<std::string> zones;     // local-zone lines (without the keyword)
  std::vector<std::string> records;   // local-data
  std::vector<std::string> timeouts;  // names with TIMEOUT
};

Zone make_zone(const Node& zonedata) {
  Zone z;
  z.zones.push_back("\".\" static");  // everything else: NXDOMAIN, never the outside world
  for (const auto& [zone_name, entries] : zonedata.fields) {
    std::string name = zone_name;
    for (auto& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
    const std::string owner = dname(name);
    bool has_txt = false, timeout = false;
    std::vector<std::vector<std::string>> spf;
    for (const auto& e : entries.items) {
      if (e.kind == Node::Scalar) {
        if (e.text == "TIMEOUT") timeout = true;
        continue;
      }
      for (const auto& [type, value] : e.fields) {
        if (type == "TXT" || type == "SPF") {
          auto parts = strings_of(value);
          if (type == "TXT") has_txt = true;
          if (parts.size() == 1 && parts[0] == "NONE") continue;
          if (type == "SPF") {
            spf.push_back(parts);
            continue;
          }
          std::string rd;
          for (const auto& p : parts) rd += (rd.empty() ? "" : " ") + txt_string(p);
          // A TXT record with no strings cannot be served; one empty string
          // reads the same to SPF (§3.3: pieces are joined).
          z.records.push_back(owner + " TXT " + (rd.empty() ? "\"\"" : rd));
        } else if (type == "MX") {
          z.records.push_back(owner + " MX " + value.items.at(0).text + " " + dname(value.items.at(1).text));
        } else if (type == "PTR" || type == "CNAME") {
          z.records.push_back(owner + " " + type + " " + dname(value.text));
        } else {
          z.records.push_back(owner + " " + type + " " + value.text);
        }
      }
    }
    if (!has_txt)
      for (const auto& parts : spf) {
        std::string rd;
        for (const auto& p : parts) rd += (rd.empty() ? "" : " ") + txt_string(p);
        z.records.push_back(owner + " TXT " + (rd.empty() ? "\"\"" : rd));
      }
    if (timeout) z.timeouts.push_back(owner);
    // typetransparent: the types it has are answered here, the others go
    // on to the forward (and time out); static: the others are NODATA.
    z.zones.push_back("\"" + owner + "\" " + (timeout ? "typetransparent" : "static"));
  }
  return z;
}

// A UDP socket that is never read: queries sent to it go unanswered.
struct BlackHole {
  int fd = -1;
  std::uint16_t port = 0;
  BlackHole() {
    fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~BlackHole() {
    if (fd >= 0) ::close(fd);
  }
};

std::vector<std::string> unbound_conf(const Zone& z, std::uint16_t blackhole) {
  std::vector<std::string> extra{"do-not-query-localhost: no", "cache-max-ttl: 0", "cache-max-negative-ttl: 0",
                                 "qname-minimisation: no", "val-permissive-mode: yes"};
  for (const auto& lz : z.zones) extra.push_back("local-zone: " + lz);
  for (const auto& t : z.timeouts) {
    extra.push_back("forward-zone:");
    extra.push_back("  name: \"" + t + "\"");
    extra.push_back("  forward-addr: 127.0.0.1@" + std::to_string(blackhole));
  }
  return extra;
}

// The results a case accepts, and what it got.
struct CaseResult {
  std::string name;
  std::set<std::string> expected;
  std::string explanation;  // expected; "" when not given
  spf::Outcome got;
};

// Cases we knowingly fail, with the reason; empty: all 203 must pass.
const std::map<std::string, std::string>& known_failures() {
  static const std::map<std::string, std::string> k;
  return k;
}

}  // namespace

TEST_CASE("spf: RFC 7208 test suite through libspf2, our DNS layer and a real unbound", "[spf][suite][unbound]") {
  const fs::path file = suite_file();
  if (file.empty()) {
    WARN("RFC 7208 suite not found (install python3-spf or provide ../shared/testdata/spf): skipped");
    return;
  }
  const std::string text = read_maybe_gz(file);
  std::vector<Node> docs;
  YamlReader reader(text);
  REQUIRE(reader.documents(docs));
  REQUIRE(docs.size() >= 16);

  std::vector<std::string> failures, known;
  int total = 0, passed = 0;
  for (const auto& doc : docs) {
    const Node* tests = doc.get("tests");
    const Node* zonedata = doc.get("zonedata");
    if (!tests || !zonedata) continue;
    BlackHole hole;
    Zone z = make_zone(*zonedata);
    test::UnboundServer dns({}, z.records, unbound_conf(z, hole.port));
    INFO(doc.get("description")->text << "\n" << dns.log());
    REQUIRE(dns.ready());
    for (const auto& [name, t] : tests->fields) {
      ++total;
      CaseResult c;
      c.name = name;
      const Node* res = t.get("result");
      for (const auto& r : strings_of(*res)) c.expected.insert(r);
      if (const Node* e = t.get("explanation")) c.explanation = e->text;
      spf::Query q;
      q.client = parse_ip(t.get("host")->text).value_or(IpAddr{});
      q.sender = t.get("mailfrom") ? t.get("mailfrom")->text : "";
      q.helo = t.get("helo") ? t.get("helo")->text : "";
      q.receiver = t.get("receiver") ? t.get("receiver")->text : "receiver.com";
      // A resolver per case: no answers cached from the case before.
      boost::asio::io_context io;
      boost::asio::thread_pool pool(1);
      config::Dns dcfg;
      dcfg.upstream = HostPort{"127.0.0.1", dns.port()};
      dcfg.timeout = config::Seconds(1);
      dns::Resolver resolver(io, dcfg);
      spf::Checker checker(resolver, pool, std::chrono::milliseconds(8000));
      c.got = test::run_on(io, [&](auto&) { return checker.check(q); });
      pool.join();
      const std::string got(spf::result_name(c.got.result));
      bool ok = c.expected.count(got) > 0;
      if (ok && !c.explanation.empty() && c.explanation != "DEFAULT" && c.got.result == spf::Result::Fail)
        ok = c.got.explanation == c.explanation;
      std::ostringstream line;
      line << name << ": got " << got;
      if (!c.got.problem.empty()) line << " (" << c.got.problem << ")";
      if (!c.got.explanation.empty()) line << " exp=\"" << c.got.explanation << "\"";
      line << ", want " << res->text;
      for (const auto& i : res->items) line << i.text << " ";
      if (!c.explanation.empty()) line << " exp=\"" << c.explanation << "\"";
      if (ok) {
        ++passed;
        if (known_failures().count(name)) WARN("now passes, drop it from known_failures: " << line.str());
      } else if (known_failures().count(name)) {
        known.push_back(line.str() + " -- " + known_failures().at(name));
      } else {
        failures.push_back(line.str());
      }
    }
  }
  std::ostringstream report;
  report << "RFC 7208 suite: " << passed << "/" << total << " passed\n";
  for (const auto& f : failures) report << "  FAIL " << f << "\n";
  for (const auto& k : known) report << "  known " << k << "\n";
  WARN(report.str());
  CHECK(total == 203);
  CHECK(failures.empty());
}
