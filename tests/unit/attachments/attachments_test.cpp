// Attachment policy (filters/attachments): extensions, double extensions,
// true types, archive contents, encryption, nesting, per-domain policy, and
// the verdict it forces through the real pipeline.
#include <catch2/catch.hpp>

#include <archive.h>
#include <archive_entry.h>

#include <fstream>
#include <sstream>

#include "filters/attachments/attachments.hpp"
#include "filters/pipeline.hpp"
#include "tests/unit/filters/run_sync.hpp"

using namespace moat;
using namespace moat::filters;
using namespace moat::filters::attachments;
using moat::test::run_sync;

namespace {

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream o;
  o << in.rdbuf();
  return o.str();
}

const std::string& clam_exe() {
  static const std::string s = slurp("/usr/share/clamav-testfiles/clam.exe");
  return s;
}

// A zip made with libarchive; a passphrase gives PKWARE ("zipcrypt") encryption.
std::string make_zip(const std::vector<std::pair<std::string, std::string>>& files, const char* passphrase = nullptr) {
  archive* a = archive_write_new();
  archive_write_set_format_zip(a);
  if (passphrase) {
    REQUIRE(archive_write_set_options(a, "zip:encryption=zipcrypt") == ARCHIVE_OK);
    REQUIRE(archive_write_set_passphrase(a, passphrase) == ARCHIVE_OK);
  }
  std::vector<char> buf(1 << 20);
  std::size_t used = 0;
  REQUIRE(archive_write_open_memory(a, buf.data(), buf.size(), &used) == ARCHIVE_OK);
  for (const auto& [name, data] : files) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_size(e, la_int64_t(data.size()));
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
    REQUIRE(archive_write_data(a, data.data(), data.size()) == la_ssize_t(data.size()));
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return std::string(buf.data(), used);
}

config::AttachmentPolicy default_policy() {
  config::AttachmentPolicy p;
  p.blocked_extensions = config::default_blocked_extensions();
  p.blocked_types = config::default_blocked_types();
  return p;
}

std::vector<Finding> check_one(std::string name, std::string body, const config::AttachmentPolicy& p = default_policy(),
                               ArchiveLimits lim = {}) {
  return check({Leaf{std::move(name), "application/octet-stream", std::move(body), 1, true, false}}, p, lim);
}

bool has(const std::vector<Finding>& f, std::string_view symbol, std::string_view detail = {}) {
  for (const auto& x : f)
    if (x.symbol == symbol && (detail.empty() || x.detail == detail)) return true;
  return false;
}

}  // namespace

TEST_CASE("attachments: names as Windows opens them", "[attachments]") {
  CHECK(clean_name("C:\\Users\\x\\run.exe") == "run.exe");
  CHECK(clean_name("../../evil.exe. . ") == "evil.exe");
  CHECK(extension("Run.EXE") == "exe");
  CHECK(extension("noext").empty());
  CHECK(extension("trailing.").empty());
}

TEST_CASE("attachments: blocked and double extensions", "[attachments]") {
  auto f = check_one("Run.EXE", "hello");
  CHECK(f == std::vector<Finding>{{"ATTACHMENT_BLOCKED_EXT", "Run.EXE"}});
  f = check_one("invoice.pdf.exe", "hello");
  CHECK(has(f, "ATTACHMENT_BLOCKED_EXT", "invoice.pdf.exe"));
  CHECK(has(f, "ATTACHMENT_DOUBLE_EXT", "invoice.pdf.exe"));
  CHECK(has(check_one("evil.scr.", "x"), "ATTACHMENT_BLOCKED_EXT", "evil.scr"));
  CHECK(check_one("report.final.docx", "hello").empty());
  CHECK(check_one("notes.txt", "hello").empty());
  auto p = default_policy();
  p.block_double_extension = false;
  CHECK_FALSE(has(check_one("invoice.pdf.exe", "x", p), "ATTACHMENT_DOUBLE_EXT"));
  p.blocked_extensions = {"txt"};
  CHECK(has(check_one("notes.txt", "x", p), "ATTACHMENT_BLOCKED_EXT"));
  CHECK(check_one("run.exe", "x", p).empty());
}

TEST_CASE("attachments: the true type wins over the name", "[attachments]") {
  CHECK(true_type(clam_exe()) == "application/vnd.microsoft.portable-executable");  // libmagic 5.44
  auto f = check_one("photo.jpg", clam_exe());
  CHECK(f == std::vector<Finding>{{"ATTACHMENT_BLOCKED_TYPE", "photo.jpg is application/vnd.microsoft.portable-executable"}});
  auto p = default_policy();
  p.blocked_types.clear();
  CHECK(check_one("photo.jpg", clam_exe(), p).empty());
}

TEST_CASE("attachments: names and types inside archives", "[attachments]") {
  // Debian's clam.zip holds clam.exe.
  auto f = check_one("docs.zip", slurp("/usr/share/clamav-testfiles/clam.zip"));
  CHECK(has(f, "ATTACHMENT_BLOCKED_IN_ARCHIVE", "docs.zip/clam.exe"));
  CHECK(has(f, "ATTACHMENT_BLOCKED_IN_ARCHIVE", "docs.zip/clam.exe is application/vnd.microsoft.portable-executable"));
  // A renamed executable inside a tar.gz.
  f = check_one("pics.tar.gz", slurp("/usr/share/clamav-testfiles/clam.tar.gz"));
  CHECK(has(f, "ATTACHMENT_BLOCKED_IN_ARCHIVE"));
  // Harmless contents pass.
  CHECK(check_one("notes.zip", make_zip({{"a.txt", "hello"}, {"b.pdf.txt", "x"}})).empty());
  // Double extension inside.
  CHECK(has(check_one("n.zip", make_zip({{"invoice.pdf.exe", "x"}})), "ATTACHMENT_DOUBLE_EXT", "n.zip/invoice.pdf.exe"));
}

TEST_CASE("attachments: encrypted archives", "[attachments]") {
  std::string enc = make_zip({{"readme.txt", "secret"}}, "infected");
  auto f = check_one("secret.zip", enc);
  CHECK(f == std::vector<Finding>{{"ATTACHMENT_ENCRYPTED", "secret.zip/readme.txt"}});
  auto p = default_policy();
  p.block_encrypted = false;
  CHECK(check_one("secret.zip", enc, p).empty());
  // The entry name is still read: an encrypted .exe is blocked by name.
  CHECK(has(check_one("s.zip", make_zip({{"run.exe", "x"}}, "pw")), "ATTACHMENT_BLOCKED_IN_ARCHIVE", "s.zip/run.exe"));
}

TEST_CASE("attachments: nested archives up to archive_depth, then a limit finding", "[attachments]") {
  std::string z = make_zip({{"run.exe", "x"}});
  z = make_zip({{"l2.zip", z}});
  z = make_zip({{"l3.zip", z}});  // outer.zip/l3.zip/l2.zip/run.exe: three archive levels
  ArchiveLimits lim;
  lim.depth = 3;
  CHECK(has(check_one("outer.zip", z, default_policy(), lim), "ATTACHMENT_BLOCKED_IN_ARCHIVE", "outer.zip/l3.zip/l2.zip/run.exe"));
  lim.depth = 2;
  auto f = check_one("outer.zip", z, default_policy(), lim);
  CHECK_FALSE(has(f, "ATTACHMENT_BLOCKED_IN_ARCHIVE"));
  CHECK(has(f, "ATTACHMENT_ARCHIVE_LIMIT"));
}

TEST_CASE("attachments: entry count limit", "[attachments]") {
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 30; ++i) many.emplace_back("f" + std::to_string(i) + ".txt", "x");
  ArchiveLimits lim;
  lim.max_entries = 20;
  auto f = check_one("many.zip", make_zip(many), default_policy(), lim);
  CHECK(f == std::vector<Finding>{{"ATTACHMENT_ARCHIVE_LIMIT", "many.zip: more than 20 entries"}});
}

TEST_CASE("attachments: per-domain policy and the forced verdict in the pipeline", "[attachments]") {
  auto cfg = std::make_shared<config::Config>();
  cfg->attachments.policy = default_policy();
  config::AttachmentDomain lenient{"lenient.test", default_policy()};
  lenient.policy.blocked_extensions.clear();
  cfg->attachments.domains.push_back(lenient);
  cfg->filters = {config::Filter{"attachments"}};
  auto p = Pipeline::build(cfg);
  REQUIRE(p);
  const std::string msg =
      "From: a@b.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
      "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n filename*0=\"inv\";"
      " filename*1=\"oice.bat\"\r\nContent-Transfer-Encoding: base64\r\n\r\nZWNobyBoaQ==\r\n--b--\r\n";
  auto run = [&](std::vector<std::string> rcpts) {
    ScanContext ctx;
    ctx.message = msg;
    for (auto& r : rcpts) {
      Recipient rc;
      rc.address = r;
      ctx.envelope.recipients.push_back(rc);
    }
    auto v = run_sync((*p)->run(Phase::EndOfData, ctx));
    return std::make_pair(v, ctx.symbols);
  };
  auto [v1, s1] = run({"u@LENIENT.test"});
  CHECK(s1.empty());
  CHECK(v1.action == Action::Accept);
  auto [v2, s2] = run({"u@strict.test"});
  REQUIRE(s2.size() == 1);
  CHECK(s2[0].name == "ATTACHMENT_BLOCKED_EXT");
  CHECK(s2[0].detail == "invoice.bat");
  CHECK(v2.action == Action::Quarantine);
  auto [v3, s3] = run({"u@lenient.test", "v@strict.test"});
  CHECK(s3.size() == 1);
  CHECK(v3.action == Action::Quarantine);
}
