// See dkim.hpp. Verification: the DKIM-Signature fields are read here (at
// most max_signatures), their key records fetched asynchronously through
// dns::Resolver on the I/O thread, then FastPass (fastpass.hpp) tries to
// confirm that every signature passes; when it cannot, libopendkim checks
// hashes and signatures on the blocking pool against those records only. Signing runs
// on the blocking pool too (RSA), and its field goes into ctx.headers, which
// the session writes above the message as received.
#include "filters/dkim/dkim.hpp"

#include <algorithm>
#include <boost/asio/use_awaitable.hpp>
#include <ctime>

#include "common/blocking.hpp"
#include "common/gather.hpp"
#include "common/dns/resolver.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "filters/dmarc/from_header.hpp"

namespace moat::filters::dkim {

const std::vector<std::string> kDefaultSignHeaders{
    "from",        "sender",     "reply-to",     "subject",      "date",
    "message-id",  "to",         "cc",           "mime-version", "content-type",
    "content-transfer-encoding", "content-id",   "content-description",
    "in-reply-to", "references", "list-id",      "list-help",    "list-unsubscribe",
    "list-unsubscribe-post",     "list-subscribe", "list-post",  "list-owner", "list-archive"};

namespace {

// Messages up to this size are checked by FastPass on the I/O thread.
constexpr std::size_t kInlineVerifyBytes = 64 * 1024;

metrics::Counter& fast_passes() {
  static metrics::Counter& c =
      metrics::counter("moat_dkim_fast_pass_total", {}, "Messages whose DKIM passes were confirmed without libopendkim");
  return c;
}

metrics::Counter& result_counter(std::string_view result) {
  return metrics::counter("moat_dkim_signatures_total", "result=\"" + std::string(result) + "\"",
                          "DKIM signatures verified, by result");
}

// Selectors are sub-domains (RFC 6376 §3.1); checked before they become a query.
bool valid_selector(std::string_view s) {
  if (s.empty() || s.size() > 63 * 4) return false;
  return config::is_domain_name(s) && s.back() != '.';
}

bool related(std::string_view a, std::string_view b) {
  auto sub = [](std::string_view x, std::string_view parent) {
    return x.size() > parent.size() && x.ends_with(parent) && x[x.size() - parent.size() - 1] == '.';
  };
  return a == b || sub(a, b) || sub(b, a);
}

std::string_view body_of(std::string_view message, std::string_view header) {
  auto rest = message.substr(std::min(header.size(), message.size()));
  if (rest.starts_with("\r\n")) rest.remove_prefix(2);
  return rest;
}

// The first record that is a usable key record, else the first one.
std::string pick_record(const std::vector<std::string>& records) {
  for (const auto& r : records)
    if (parse_key_record(r)) return r;
  return records.front();
}

void add_symbols(ScanContext& ctx, const std::vector<Signature>& sigs, const std::vector<Outcome>& outcomes) {
  static constexpr std::pair<std::string_view, std::string_view> kSymbols[] = {
      {"pass", "DKIM_PASS"}, {"fail", "DKIM_FAIL"}, {"permerror", "DKIM_PERMERROR"}, {"temperror", "DKIM_TEMPERROR"}};
  for (auto [result, symbol] : kSymbols) {
    std::string detail;
    bool any = false;
    for (std::size_t i = 0; i < sigs.size(); ++i) {
      if (outcomes[i].result != result) continue;
      any = true;
      if (detail.size() < 100) detail += (detail.empty() ? "" : ",") + (sigs[i].d.empty() ? "?" : sigs[i].d);
    }
    if (any) ctx.add(std::string(symbol), detail.substr(0, 128));
  }
}

}  // namespace

bool must_retry(const std::vector<Signature>& sigs, const std::vector<Outcome>& outcomes,
                std::string_view from_domain) {
  bool temp_for_from = false, temp_any = false, pass_any = false, pass_for_from = false;
  for (std::size_t i = 0; i < sigs.size() && i < outcomes.size(); ++i) {
    const bool from = !from_domain.empty() && related(sigs[i].d, from_domain);
    if (outcomes[i].result == "temperror") {
      temp_any = true;
      temp_for_from |= from;
    } else if (outcomes[i].result == "pass") {
      pass_any = true;
      pass_for_from |= from;
    }
  }
  if (!temp_any) return false;
  if (!pass_any) return true;
  return temp_for_from && !pass_for_from;
}

DkimFilter::DkimFilter(const config::Config& cfg, const Services& services)
    : resolver_(*services.resolver),
      pool_(*services.blocking),
      networks_(cfg.relay.networks),
      max_signatures_(cfg.dkim.max_signatures),
      allow_sha1_(cfg.dkim.allow_sha1) {}

Result<std::unique_ptr<DkimFilter>> DkimFilter::create(const config::Config& cfg, const Services& services) {
  if (!services.resolver || !services.blocking) return Error{Errc::Invalid, "dkim: needs the resolver and the blocking pool"};
  std::unique_ptr<DkimFilter> f(new DkimFilter(cfg, services));
  LibOptions opts;
  opts.min_key_bits = cfg.dkim.min_key_bits;
  opts.allow_sha1 = cfg.dkim.allow_sha1;
  opts.sign_headers = cfg.dkim.sign_headers.empty() ? kDefaultSignHeaders : cfg.dkim.sign_headers;
  auto lib = OpenDkim::create(opts);
  if (!lib) return lib.error();
  f->lib_ = std::move(*lib);
  f->fast_ = std::make_unique<FastPass>(cfg.dkim.min_key_bits);
  for (const auto& k : cfg.dkim.sign) {
    // Our own keys follow RFC 8301 §3.2 whatever min_key_bits allows inbound.
    auto key = load_private_key(k.key, std::max(1024u, cfg.dkim.min_key_bits));
    if (!key)
      return Error{Errc::Invalid, cfg.source.string() + ":" + std::to_string(k.line) + ": dkim.sign (" + k.domain +
                                      ", " + k.selector + "): " + key.error().detail};
    f->keys_.push_back(SigningKey{k.domain, k.selector, std::move(*key)});
  }
  return f;
}

bool DkimFilter::trusted(const ScanContext& ctx) const {
  if (!ctx.envelope.client.auth_user.empty()) return true;
  return std::any_of(networks_.begin(), networks_.end(),
                     [&](const Cidr& c) { return c.contains(ctx.envelope.client.ip); });
}

asio::awaitable<Status> DkimFilter::run(Phase, ScanContext& ctx) {
  // Like OpenDKIM's InternalHosts: our own senders' mail is signed, not
  // verified (a signature they forward from elsewhere is not our business).
  if (trusted(ctx)) {
    Status signed_status = co_await sign(ctx);
    co_return signed_status;
  }
  Status verified = co_await verify(ctx);
  co_return verified;
}

asio::awaitable<KeyAnswer> DkimFilter::lookup_key(std::string name) {
  auto ans = co_await resolver_.txt(std::move(name));
  KeyAnswer k;
  if (!ans) k.status = is_temporary(ans.error().code) ? KeyStatus::TempFail : KeyStatus::NotFound;
  else if (!ans->records.empty()) k = KeyAnswer{KeyStatus::Found, pick_record(ans->records)};
  co_return k;
}

// All key records at once (gather waits for every lookup, also when the
// pipeline cancels this run, so none outlives the filter run).
asio::awaitable<KeyAnswers> DkimFilter::fetch_keys(const std::vector<Signature>& sigs) {
  KeyAnswers keys;
  std::vector<std::string> names;
  for (const auto& sig : sigs) {
    if (!sig.valid || (sig.sha1() && !allow_sha1_)) continue;
    const std::string name = key_name(sig.s, sig.d);
    if (keys.count(name)) continue;
    keys[name] = KeyAnswer{KeyStatus::NotFound, {}};  // stays so for names we will not ask
    if (config::is_domain_name(sig.d) && valid_selector(sig.s)) names.push_back(name);
  }
  if (names.empty()) co_return keys;
  std::vector<asio::awaitable<KeyAnswer>> lookups;
  for (const auto& n : names) lookups.push_back(lookup_key(n));
  auto answers = co_await gather(std::move(lookups));
  for (std::size_t i = 0; i < names.size(); ++i)
    keys[names[i]] = answers[i] ? std::move(*answers[i]) : KeyAnswer{KeyStatus::TempFail, {}};
  co_return keys;
}

asio::awaitable<Status> DkimFilter::verify(ScanContext& ctx) {
  bool more = false;
  auto sigs = find_signatures(ctx.header, max_signatures_, &more);
  if (sigs.empty()) {
    ctx.add("DKIM_NONE");
    ctx.auth.push_back(AuthResult{"dkim", "none", "", {}});
    co_return Status{};
  }
  if (more) log::info("dkim: more than " + std::to_string(max_signatures_) + " signatures; the rest are ignored");
  KeyAnswers keys = co_await fetch_keys(sigs);
  const std::string_view header = ctx.header;
  const std::string_view body = body_of(ctx.message, ctx.header);
  // Hashing a small message and one RSA-2048 verification (~20 µs) is
  // cheaper than the hop to the pool and back; big messages hash there.
  const auto now = static_cast<std::uint64_t>(std::time(nullptr));
  bool all_pass = false;
  if (ctx.message.size() <= kInlineVerifyBytes) all_pass = fast_->all_pass(header, body, sigs, keys, now);
  std::vector<Outcome> outcomes;
  if (all_pass) {
    outcomes.assign(sigs.size(), Outcome{"pass", ""});
    fast_passes().inc();
  } else {
    const bool small = ctx.message.size() <= kInlineVerifyBytes;
    outcomes = co_await run_blocking(pool_, [&] {
      // Anything FastPass cannot confirm is libopendkim's to judge.
      if (!small && fast_->all_pass(header, body, sigs, keys, now)) return std::vector<Outcome>(sigs.size(), Outcome{"pass", ""});
      return lib_->verify(header, body, sigs, keys);
    });
  }
  for (std::size_t i = 0; i < sigs.size(); ++i) {
    result_counter(outcomes[i].result).inc();
    ctx.auth.push_back(auth_result(sigs[i], outcomes[i].result, outcomes[i].reason));
  }
  add_symbols(ctx, sigs, outcomes);
  const auto from = dmarc::parse_from(ctx.header);
  if (must_retry(sigs, outcomes, from.status == dmarc::FromStatus::Ok ? from.domain() : std::string()))
    co_return Status(Errc::DnsTempFail, "DKIM key lookup failed temporarily");
  co_return Status{};
}

asio::awaitable<Status> DkimFilter::sign(ScanContext& ctx) {
  const auto from = dmarc::parse_from(ctx.header);
  if (from.status != dmarc::FromStatus::Ok) co_return Status{};  // nothing we could honestly sign for
  std::vector<const SigningKey*> mine;
  for (const auto& k : keys_)
    if (k.domain == from.domain()) mine.push_back(&k);
  if (mine.empty()) co_return Status{};
  const std::string_view header = ctx.header;
  const std::string_view body = body_of(ctx.message, ctx.header);
  auto fields = co_await run_blocking(pool_, [&] {
    std::vector<Result<std::string>> out;
    for (const auto* k : mine) out.push_back(lib_->sign(header, body, k->key, k->domain, k->selector));
    return out;
  });
  std::string detail;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (!fields[i]) co_return Status(fields[i].error().code, "dkim signing: " + fields[i].error().detail);
    ctx.headers.push_back(std::move(*fields[i]));
    detail += (detail.empty() ? "" : ",") + mine[i]->domain + "/" + mine[i]->selector;
    metrics::counter("moat_dkim_signed_total", {}, "DKIM signatures made").inc();
  }
  ctx.add("DKIM_SIGNED", detail.substr(0, 128));
  co_return Status{};
}

}  // namespace moat::filters::dkim
