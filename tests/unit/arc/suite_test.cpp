// The ValiMail ARC test suite (RFC 8617, /work/shared/testdata/arc):
// arc-draft-validation-tests.yml (171 chain validations) and
// arc-draft-sign-tests.yml (17 sealings, compared in the suite's
// standardized form with whitespace removed). Keys come from each
// scenario's txt_records through an in-memory lookup (the filter's DNS path
// is tested in arc_filter_test.cpp against unbound).
#include <catch2/catch.hpp>
#include <openssl/pem.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "filters/arc/arc.hpp"
#include "tests/support/yaml_tree.hpp"

using namespace moat::filters;
using namespace moat::filters::arc;
using moat::test::yaml::Node;
using moat::test::yaml::YamlReader;
namespace fs = std::filesystem;

namespace {

fs::path testdata() {
  if (const char* e = std::getenv("MOAT_TESTDATA")) return e;
  return fs::path(MOAT_SOURCE_DIR) / ".." / "shared" / "testdata";
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream o;
  o << in.rdbuf();
  return o.str();
}

std::string crlf(const std::string& lf) {
  std::string out;
  for (std::size_t i = 0; i < lf.size(); ++i) {
    if (lf[i] == '\n' && (i == 0 || lf[i - 1] != '\r')) out += '\r';
    out += lf[i];
  }
  return out;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string no_ws(const std::string& s) {
  std::string out;
  for (char c : s)
    if (!std::isspace(static_cast<unsigned char>(c))) out += c;
  return out;
}

std::map<std::string, std::string> txt_records(const Node& sc) {
  std::map<std::string, std::string> out;
  const Node* t = sc.get("txt_records");
  if (!t) t = sc.get("txt-records");
  if (t)
    for (const auto& [k, v] : t->fields) out[lower(k)] = v.text;
  return out;
}

Keys keys_of(const std::map<std::string, std::string>& txt) {
  return [&txt](const std::string& n) -> std::optional<std::string> {
    auto it = txt.find(lower(n));
    if (it == txt.end() || it->second.empty()) return std::nullopt;
    return it->second;
  };
}

std::vector<Node> documents(const fs::path& p) {
  std::vector<Node> docs;
  std::string text = slurp(p);
  if (text.empty()) return docs;
  YamlReader r(text);
  REQUIRE(r.documents(docs));
  return docs;
}

// The suite's AR consolidation (README.valimail.md): every result of the
// Authentication-Results fields with the srv-id, in order, one per line.
std::string consolidate(const std::string& message, const std::string& srv_id) {
  std::vector<std::string> results;
  std::istringstream in(message);
  std::string line, field;
  std::vector<std::string> fields;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) break;
    if ((line[0] == ' ' || line[0] == '\t') && !fields.empty()) fields.back() += " " + line;
    else fields.push_back(line);
  }
  for (const auto& f : fields) {
    auto colon = f.find(':');
    if (colon == std::string::npos || lower(f.substr(0, colon)) != "authentication-results") continue;
    std::string v = f.substr(colon + 1);
    auto semi = v.find(';');
    std::string id = no_ws(v.substr(0, semi));
    if (lower(id) != lower(srv_id) || semi == std::string::npos) continue;
    std::stringstream rest(v.substr(semi + 1));
    std::string r;
    while (std::getline(rest, r, ';')) {
      auto a = r.find_first_not_of(" \t"), b = r.find_last_not_of(" \t");
      if (a != std::string::npos) results.push_back(r.substr(a, b - a + 1));
    }
  }
  std::string out = srv_id + ";";
  for (std::size_t i = 0; i < results.size(); ++i) out += (i ? ";\r\n  " : " ") + results[i];
  if (results.empty()) out += " none";
  return out;
}

}  // namespace

TEST_CASE("arc: ValiMail validation suite", "[arc][suite]") {
  auto file = testdata() / "arc" / "arc-draft-validation-tests.yml";
  auto docs = documents(file);
  if (docs.empty()) {
    WARN("test material absent, skipped: " << file);
    return;
  }
  int total = 0, passed = 0;
  std::string failed;
  for (const auto& sc : docs) {
    const Node* tests = sc.get("tests");
    if (!tests) continue;
    auto txt = txt_records(sc);
    auto keys = keys_of(txt);
    // A test id given twice in a scenario: the later one counts (YAML
    // loaders, and so the reference runs, keep the last duplicate key).
    std::map<std::string, const Node*> last;
    for (const auto& [id, t] : tests->fields) last[id] = &t;
    for (const auto& [id, tp] : tests->fields) {
      if (last[id] != &tp) continue;
      const Node& t = tp;
      ++total;
      std::string want = lower(t.get("cv") ? t.get("cv")->text : "");
      Verification v = verify(crlf(t.get("message")->text), keys);
      std::string got(cv_name(v.cv));
      // "" in the suite: no usable result; we call such chains fail.
      bool ok = got == want || (want.empty() && v.cv == Cv::Fail);
      if (ok) ++passed;
      else failed += "  " + id + ": want " + want + ", got " + got + " (" + v.reason + ")\n";
    }
  }
  INFO(failed);
  CHECK(total == 171);
  CHECK(passed == total);
  WARN("ARC validation suite: " << passed << "/" << total << " pass\n" << failed);
}

TEST_CASE("arc: ValiMail signing suite", "[arc][suite]") {
  auto file = testdata() / "arc" / "arc-draft-sign-tests.yml";
  auto docs = documents(file);
  if (docs.empty()) {
    WARN("test material absent, skipped: " << file);
    return;
  }
  int total = 0, passed = 0;
  std::string failed;
  for (const auto& sc : docs) {
    const Node* tests = sc.get("tests");
    if (!tests) continue;
    auto txt = txt_records(sc);
    auto keys = keys_of(txt);
    std::string pem = sc.get("privatekey")->text;
    BIO* bio = BIO_new_mem_buf(pem.data(), int(pem.size()));
    Pkey key(PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr));
    BIO_free(bio);
    REQUIRE(key);
    for (const auto& [id, t] : tests->fields) {
      ++total;
      std::string message = crlf(t.get("message")->text);
      Verification v = verify(message, keys);
      SealRequest req;
      req.domain = sc.get("domain")->text;
      req.selector = sc.get("sel")->text;
      req.key = key.get();
      req.timestamp = std::stoll(t.get("t")->text);
      std::string h = t.get("sig-headers")->text;
      std::stringstream hs(h);
      std::string one;
      while (std::getline(hs, one, ':')) req.headers.push_back(lower(one));
      std::string srv = t.get("srv-id") ? t.get("srv-id")->text : sc.get("srv-id")->text;
      req.results = consolidate(message, srv);
      req.chain = v.cv;
      req.instance = v.instances + 1;
      auto s = seal(message, req);
      std::string want_as = t.get("AS") ? no_ws(t.get("AS")->text) : "";
      std::string want_ams = t.get("AMS") ? no_ws(t.get("AMS")->text) : "";
      std::string want_aar = t.get("AAR") ? no_ws(t.get("AAR")->text) : "";
      bool ok;
      if (!s) ok = want_as.empty() && want_ams.empty() && want_aar.empty();
      else
        ok = (want_as.empty() || no_ws(s->as) == want_as) && (want_ams.empty() || no_ws(s->ams) == want_ams) &&
             (want_aar.empty() || no_ws(s->aar) == want_aar);
      if (ok) ++passed;
      else
        failed += "  " + id + (s ? "\n   AS  " + no_ws(s->as) + "\n   want " + want_as + "\n   AMS " + no_ws(s->ams) +
                                       "\n   want " + want_ams + "\n   AAR " + no_ws(s->aar) + "\n   want " + want_aar
                                 : std::string(" no seal")) +
                  "\n";
      // Our own seal verifies as the newest set.
      if (s) {
        std::string sealed = s->fields() + message;
        auto pub_txt = keys(req.selector + "._domainkey." + req.domain);
        if (pub_txt) CHECK(verify(sealed, keys).cv == (v.cv == Cv::Fail ? Cv::Fail : Cv::Pass));
      }
    }
  }
  INFO(failed);
  CHECK(total == 17);
  CHECK(passed == total);
  WARN("ARC signing suite: " << passed << "/" << total << " pass\n" << failed);
}
