// The SPF filter (see spf.hpp). Choices an admin would ask about:
//  - Authenticated clients are not checked: SPF judges the path a message
//    took from its sender's domain, and a logged-in user's mail did not
//    come that way (rspamd and Postfix's policyd-spf skip them too).
//  - temperror (DNS failed) with fail = "closed", the default, answers
//    451 4.4.3 at MAIL FROM through Errc::DnsTempFail; with fail = "open"
//    the mail goes on with SPF_TEMPERROR and spf=temperror recorded. It is
//    never a silent pass.
//  - A fail only scores (filters/scores.cpp); DMARC decides policy.
#include "common/text.hpp"
#include "filters/spf/spf.hpp"

#include <algorithm>
#include <cctype>

#include "common/log.hpp"
#include "common/metrics.hpp"

namespace moat::filters::spf {
namespace {


bool is_atext(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
}

// RFC 5322 dot-atom, else a quoted-string; control characters and non-ASCII
// are dropped either way (they could end the field or smuggle one in).
std::string kv_value(std::string_view s) {
  std::string clean;
  for (char c : s.substr(0, 256))
    if (static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f) clean += c;
  bool dot_atom = !clean.empty() && clean.front() != '.' && clean.back() != '.' && clean.find("..") == std::string::npos &&
                  std::all_of(clean.begin(), clean.end(), [](char c) { return c == '.' || is_atext(c); });
  if (dot_atom) return clean;
  std::string out = "\"";
  for (char c : clean) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// Text inside a comment: no parentheses, backslashes or control characters.
std::string comment_text(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 256)) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '(' && c != ')' && c != '\\') out += c;
  }
  return out;
}

std::string explain(const Outcome& o, const Query& q) {
  const std::string who = "domain of " + comment_text(o.sender);
  const std::string ip = q.client.str();
  switch (o.result) {
    case Result::Pass: return who + " designates " + ip + " as permitted sender";
    case Result::Fail: return who + " does not designate " + ip + " as permitted sender";
    case Result::SoftFail: return "transitioning " + who + " does not designate " + ip + " as permitted sender";
    case Result::Neutral: return ip + " is neither permitted nor denied by " + who;
    case Result::None: return who + " does not provide an SPF record";
    case Result::TempError: return "temporary error checking " + who;
    case Result::PermError: return "permanent error in the SPF record for " + who;
  }
  return {};
}

}  // namespace

std::string symbol_for(Result r, bool helo_check) {
  return std::string(helo_check ? "SPF_HELO_" : "SPF_") + upper(result_name(r));
}

std::string received_spf(const Outcome& o, const Query& q) {
  std::string h = "Received-SPF: " + std::string(result_name(o.result)) + " (" + comment_text(q.receiver) + ": " +
                  explain(o, q) + ")\r\n";
  h += "\treceiver=" + kv_value(q.receiver) + "; client-ip=" + kv_value(q.client.str()) + ";";
  h += " envelope-from=" + kv_value(q.sender.empty() ? o.sender : q.sender) + ";";
  if (!q.helo.empty()) h += "\r\n\thelo=" + kv_value(q.helo) + ";";
  h += " identity=" + std::string(q.helo_identity || q.sender.empty() ? "helo" : "mailfrom") + ";";
  if (!o.problem.empty() && (o.result == Result::PermError || o.result == Result::TempError))
    h += "\r\n\tproblem=" + kv_value(o.problem) + ";";
  return h + "\r\n";
}

void record(const Outcome& o, const Query& q, ScanContext& ctx) {
  const bool helo = q.helo_identity || q.sender.empty();
  metrics::counter("moat_spf_results_total",
                   "result=\"" + std::string(result_name(o.result)) + "\",identity=\"" + (helo ? "helo" : "mailfrom") + "\"",
                   "SPF results by identity")
      .inc();
  ctx.add(symbol_for(o.result, q.helo_identity), comment_text(o.domain.substr(0, 64)));
  AuthResult ar{"spf", std::string(result_name(o.result)), {}, {}};
  if (helo) ar.props.emplace_back("smtp.helo", q.helo);
  else ar.props.emplace_back("smtp.mailfrom", o.domain);
  ctx.auth.push_back(std::move(ar));
  ctx.headers.push_back(received_spf(o, q));
}

SpfFilter::SpfFilter(const config::Config& cfg, const config::Filter& settings, dns::Resolver* resolver,
                     asio::thread_pool* pool)
    : receiver_(cfg.server.hostname),
      check_helo_(cfg.spf.check_helo),
      fail_closed_(settings.fail == config::FailMode::Closed) {
  if (resolver && pool) checker_.emplace(*resolver, *pool, settings.budget - settings.budget / 10);
}

asio::awaitable<Status> SpfFilter::run(Phase, ScanContext& ctx) {
  const auto& client = ctx.envelope.client;
  if (!client.auth_user.empty()) co_return Status{};
  if (!checker_) co_return Error{Errc::ScanUnavailable, "spf has no DNS resolver"};
  Query q{client.ip, ctx.envelope.sender, client.helo, false, receiver_};
  Outcome main = co_await checker_->check(q);
  if (main.result == Result::TempError && fail_closed_) {
    log::info("spf: temperror for " + comment_text(main.domain) + ": " + comment_text(main.problem));
    metrics::counter("moat_spf_results_total", "result=\"temperror\",identity=\"mailfrom\"", "SPF results by identity").inc();
    co_return Error{Errc::DnsTempFail, "SPF temperror: " + comment_text(main.problem)};
  }
  record(main, q, ctx);
  // With <> the check above already was the HELO identity.
  if (check_helo_ && !q.sender.empty() && !q.helo.empty()) {
    Query hq = q;
    hq.helo_identity = true;
    Outcome h = co_await checker_->check(hq);
    record(h, hq, ctx);
  }
  co_return Status{};
}

}  // namespace moat::filters::spf
