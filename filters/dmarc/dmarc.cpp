// DMARC evaluation and the filter (see dmarc.hpp). RFC 7489 §6.6 (policy
// discovery and evaluation), §3.1 (alignment), RFC 9091 (np=), RFC 8601
// (the dmarc= result with header.from and policy.dmarc).
#include "common/text.hpp"
#include "filters/dmarc/dmarc.hpp"

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <ctime>
#include <random>

#include "common/blocking.hpp"
#include "common/dns/resolver.hpp"
#include "common/log.hpp"
#include "filters/dmarc/from_header.hpp"

namespace moat::filters::dmarc {
namespace {

constexpr std::size_t kMaxAuthorDomains = 4;  // DNS work per message stays bounded


// The domain of an SPF identity: "user@dom" or "dom".
std::string identity_domain(std::string_view id) {
  auto at = id.rfind('@');
  return domain_key(at == std::string_view::npos ? id : id.substr(at + 1));
}

unsigned roll() {
  thread_local std::mt19937 rng{std::random_device{}()};
  return std::uniform_int_distribution<unsigned>(0, 99)(rng);
}

Policy weaker(Policy p) { return p == Policy::Reject ? Policy::Quarantine : Policy::None; }

std::string today_utc() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

bool valid_lookup_name(std::string_view d) { return !d.empty() && d.size() <= 253 - 7; }

}  // namespace

bool aligned(std::string_view domain, std::string_view from_domain, bool strict) {
  std::string a = domain_key(domain), f = domain_key(from_domain);
  if (a.empty() || f.empty()) return false;
  if (a == f) return true;
  if (strict) return false;
  auto oa = org_domain(a), of = org_domain(f);
  return oa && of && *oa == *of;
}

Outcome evaluate(std::string_view from_domain, const Discovery& d, const std::vector<AuthResult>& auth,
                 unsigned roll_value, bool force_fail) {
  Outcome o;
  o.domain = domain_key(from_domain);
  const Record& r = d.record;
  for (const auto& a : auth) {
    if (a.method == "dkim") {
      std::string dom = domain_key(a.prop("header.d"));
      if (!dom.empty()) o.dkim_domains += (o.dkim_domains.empty() ? "" : " ") + dom;
      if (a.result == "pass" && aligned(dom, o.domain, r.adkim_strict)) o.dkim_aligned = true;
    } else if (a.method == "spf") {
      // MAIL FROM identity; HELO only stands in for a null reverse-path (§4.1 via RFC 7208 §2.4).
      std::string dom = identity_domain(a.prop("smtp.mailfrom"));
      if (dom.empty()) dom = identity_domain(a.prop("smtp.helo"));
      if (o.spf_domain.empty()) o.spf_domain = dom;
      if (a.result == "pass" && aligned(dom, o.domain, r.aspf_strict)) o.spf_aligned = true;
    }
  }
  switch (d.kind) {
    case Discovery::Kind::TempError: o.result = "temperror"; return o;
    case Discovery::Kind::NoRecord:
    case Discovery::Kind::NoProcessing: o.result = "none"; return o;
    case Discovery::Kind::Found: break;
  }
  Policy p = r.p;
  if (d.org) {
    if (d.nonexistent && r.np) p = *r.np;
    else if (r.sp) p = *r.sp;
  }
  o.policy = p;
  bool pass = (o.dkim_aligned || o.spf_aligned) && !force_fail;
  o.result = pass ? "pass" : "fail";
  if (!pass) {
    o.disposition = p;
    // §6.6.4: pct= applies the policy to that share; the rest gets the next weaker one.
    if (p != Policy::None && roll_value >= r.pct) {
      o.disposition = weaker(p);
      o.sampled_out = true;
    }
  }
  return o;
}

DmarcFilter::DmarcFilter(const config::Config& cfg, const Services& services, std::unique_ptr<ReportStore> reports)
    : resolver_(*services.resolver),
      blocking_(*services.blocking),
      reports_(std::move(reports)),
      in_flight_(std::make_shared<InFlight>(*services.blocking)) {
  for (const auto& o : cfg.dmarc.overrides) {
    Policy p = o.policy == config::DmarcPolicy::Reject       ? Policy::Reject
               : o.policy == config::DmarcPolicy::Quarantine ? Policy::Quarantine
                                                             : Policy::None;
    overrides_.emplace(o.domain, p);
  }
}

Result<std::unique_ptr<Filter>> DmarcFilter::make(const config::Config& cfg, const Services& services) {
  if (!services.resolver || !services.blocking) return Error{Errc::Invalid, "filter dmarc needs DNS and the blocking pool"};
  if (!org_domain("example.com")) return Error{Errc::Invalid, "filter dmarc: cannot load the Public Suffix List"};
  std::unique_ptr<ReportStore> reports;
  if (cfg.dmarc.reports) {
    auto dir = services.data_dir.empty() ? cfg.server.data_dir : services.data_dir;
    auto store = ReportStore::open(dir / "db" / "dmarc.sqlite");
    if (!store) return Error{Errc::Invalid, "filter dmarc: report store: " + store.error().detail};
    reports = std::move(*store);
  }
  return std::unique_ptr<Filter>(new DmarcFilter(cfg, services, std::move(reports)));
}

asio::awaitable<DmarcFilter::Fetched> DmarcFilter::fetch(std::string name) {
  Fetched f;
  auto answer = co_await resolver_.txt(name);
  if (!answer) {
    f.kind = Discovery::Kind::TempError;
    co_return f;
  }
  // §6.6.3: records not starting with v=DMARC1 are dropped; more than one
  // left means no DMARC processing, as does an unusable one.
  int dmarc = 0;
  ParsedRecord one;
  for (const auto& txt : answer->records) {
    auto pr = parse_record(txt);
    if (pr.status == RecordStatus::NotDmarc) continue;
    ++dmarc;
    one = std::move(pr);
  }
  if (dmarc == 0) f.kind = Discovery::Kind::NoRecord;
  else if (dmarc > 1 || one.status != RecordStatus::Ok) f.kind = Discovery::Kind::NoProcessing;
  else f.kind = Discovery::Kind::Found, f.record = std::move(one.record);
  co_return f;
}

asio::awaitable<Discovery> DmarcFilter::discover(std::string domain) {
  Discovery d;
  if (!valid_lookup_name(domain)) {
    d.kind = Discovery::Kind::NoRecord;
    co_return d;
  }
  Fetched at_from = co_await fetch("_dmarc." + domain);
  d.kind = at_from.kind;
  d.record = std::move(at_from.record);
  if (d.kind != Discovery::Kind::NoRecord) co_return d;
  std::string org = org_domain(domain).value_or(domain);
  if (org == domain) co_return d;
  Fetched at_org = co_await fetch("_dmarc." + org);
  d.kind = at_org.kind;
  d.record = std::move(at_org.record);
  d.org = true;
  if (d.kind == Discovery::Kind::Found && d.record.np) {
    // RFC 9091 §4: NXDOMAIN for the From domain makes it non-existent.
    auto a = co_await resolver_.a(domain);
    if (!a) d.kind = Discovery::Kind::TempError;
    else d.nonexistent = a->nxdomain;
  }
  co_return d;
}

// Report rows waiting for the blocking pool. They are written at most every
// kReportFlush, in one transaction: waking a pool thread for each message
// cost more latency than the write itself (on two cores the woken thread
// preempts the session that woke it). The destructor writes what is left
// (tests and `moatctl` read the rows right after).
constexpr auto kReportFlush = std::chrono::milliseconds(500);

struct DmarcFilter::InFlight {
  explicit InFlight(asio::thread_pool& pool) : timer(pool.get_executor()) {}
  std::mutex mu;
  std::condition_variable cv;
  std::vector<ReportRow> rows;
  asio::steady_timer timer;  // runs the write on the pool; touched under mu
  bool writing = false;      // a write is scheduled or running
};

DmarcFilter::~DmarcFilter() {
  std::unique_lock lock(in_flight_->mu);
  in_flight_->timer.cancel();  // the write runs now instead of at its time
  // Bounded: a pool stuck elsewhere must not hang a config reload.
  in_flight_->cv.wait_for(lock, std::chrono::seconds(5), [this] { return !in_flight_->writing; });
}

// The row is written without the message waiting for it: in bench/auth the
// wait (behind the spool's fsyncs in the same pool) was the largest part of
// what DMARC added to each message's latency. A row is statistics, not mail;
// a failed write is logged.
void DmarcFilter::record_report(const Outcome& o, const ScanContext& ctx) {
  ReportRow row{today_utc(),
                ctx.envelope.client.ip.str(),
                o.domain,
                std::string(policy_name(o.policy.value_or(Policy::None))),
                std::string(policy_name(o.disposition)),
                o.dkim_aligned ? "pass" : "fail",
                o.dkim_domains,
                o.spf_aligned ? "pass" : "fail",
                o.spf_domain};
  std::lock_guard lock(in_flight_->mu);
  in_flight_->rows.push_back(std::move(row));
  if (in_flight_->writing) return;  // the scheduled write takes this row too
  in_flight_->writing = true;
  in_flight_->timer.expires_after(kReportFlush);
  in_flight_->timer.async_wait([store = reports_, in_flight = in_flight_](boost::system::error_code) {
    std::unique_lock lock(in_flight->mu);
    while (!in_flight->rows.empty()) {
      std::vector<ReportRow> batch;
      batch.swap(in_flight->rows);
      lock.unlock();
      Status st = store->add(batch);
      if (!st) log::warning("dmarc: report data not recorded: " + st.error().detail);
      lock.lock();
    }
    in_flight->writing = false;
    in_flight->cv.notify_all();
  });
}

asio::awaitable<Status> DmarcFilter::run(Phase phase, ScanContext& ctx) {
  if (phase != Phase::EndOfData) co_return Status{};
  From from = parse_from(ctx.header);
  std::vector<std::string> domains;
  for (const auto& dom : from.domains)
    if (std::find(domains.begin(), domains.end(), dom) == domains.end() && domains.size() < kMaxAuthorDomains)
      domains.push_back(dom);
  bool unusable = from.status == FromStatus::NoFrom || from.status == FromStatus::Malformed ||
                  from.status == FromStatus::TooLong || domains.empty();
  if (unusable) {
    // §6.6.1: no single author domain, nothing to judge; it cannot pass.
    ctx.add(from.status == FromStatus::NoFrom ? "DMARC_NO_FROM" : "DMARC_BAD_FROM",
            std::string(from_status_name(from.status)));
    ctx.add("DMARC_PERMERROR", std::string(from_status_name(from.status)));
    ctx.auth.push_back(AuthResult{"dmarc", "permerror", std::string(from_status_name(from.status)), {}});
    co_return Status{};
  }
  bool ambiguous = from.status == FromStatus::Ambiguous;
  bool several = domains.size() > 1;
  if (ambiguous) ctx.add("DMARC_BAD_FROM", std::string(from_status_name(from.status)));
  if (from.status == FromStatus::Multiple) ctx.add("DMARC_MULTI_FROM", std::to_string(from.domains.size()) + " authors");

  // Several authors or an ambiguous From never pass; the strictest of their
  // policies applies, so adding a p=none author cannot dodge a p=reject one.
  std::optional<Outcome> chosen;
  unsigned r = roll();
  for (const auto& dom : domains) {
    Discovery d = co_await discover(dom);
    Outcome o = evaluate(dom, d, ctx.auth, r, ambiguous || several);
    if (o.result == "fail")
      if (auto it = overrides_.find(o.domain); it != overrides_.end()) {
        o.disposition = it->second;
        o.overridden = true;
      }
    if (o.result == "temperror") {
      ctx.auth.push_back(AuthResult{"dmarc", "temperror", "", {{"header.from", o.domain}}});
      co_return Error{Errc::DnsTempFail, "DMARC record lookup for " + o.domain};
    }
    auto rank = [](const Outcome& x) {
      int base = x.result == "fail" ? 10 : x.result == "pass" ? 5 : 0;
      return base + int(x.disposition) * 2 + int(x.policy.value_or(Policy::None));
    };
    if (!chosen || rank(o) > rank(*chosen)) chosen = std::move(o);
  }
  const Outcome& o = *chosen;
  AuthResult ar{"dmarc", o.result, "", {}};
  if (o.result != "none") {
    ar.props.emplace_back("header.from", o.domain);
    if (o.policy) ar.props.emplace_back("policy.dmarc", std::string(policy_name(*o.policy)));
  }
  ctx.auth.push_back(std::move(ar));
  std::string detail = o.domain;
  if (o.overridden) detail += " (override)";
  if (o.sampled_out) detail += " (pct)";
  if (o.result == "pass") ctx.add("DMARC_PASS", detail);
  else if (o.result == "none") ctx.add("DMARC_NA", detail);
  else if (o.disposition == Policy::Reject) ctx.add("DMARC_POLICY_REJECT", detail);
  else if (o.disposition == Policy::Quarantine) ctx.add("DMARC_POLICY_QUARANTINE", detail);
  else ctx.add("DMARC_POLICY_NONE", detail);
  if (reports_ && o.policy) record_report(o, ctx);
  co_return Status{};
}

}  // namespace moat::filters::dmarc
