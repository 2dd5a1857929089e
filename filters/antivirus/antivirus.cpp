// Antivirus filter (see antivirus.hpp).
#include "filters/antivirus/antivirus.hpp"

#include <algorithm>
#include <atomic>

#include "common/blocking.hpp"
#include "common/log.hpp"
#include "filters/antivirus/client.hpp"
#include "filters/antivirus/supervisor.hpp"

namespace moat::filters::antivirus {
namespace scand = proto::scand;
namespace {

std::atomic<std::uint32_t> g_next_id{1};

// Details go to logs and the quarantine UI: printable ASCII only, short.
std::string safe(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 300)) out += (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) ? '?' : c;
  return out;
}

}  // namespace

scand::Limits frame_limits(const config::Config& cfg) {
  scand::Limits l;
  l.max_frame = std::size_t(4 * cfg.limits.message_size + (1u << 20));
  return l;
}

Request build_request(std::string_view message, const mime::Message& tree, const attachments::LeafLimits& limits,
                      std::uint32_t id) {
  Request r;
  r.scan.id = id;
  r.scan.items.push_back(scand::Item{scand::ItemKind::Message, "message", std::string(message)});
  auto leaves = attachments::collect_leaves(message, tree, limits);
  r.limit = std::move(leaves.limit);
  for (std::size_t i = 0; i < leaves.parts.size(); ++i) {
    auto& p = leaves.parts[i];
    // The root's own bytes are item 0 already.
    if (p.body.empty() || (p.depth == 0 && !p.decoded && !p.hidden)) continue;
    std::string name = p.filename.empty() ? "part-" + std::to_string(i + 1) : p.filename.substr(0, 255);
    r.scan.items.push_back(scand::Item{scand::ItemKind::Part, std::move(name), std::move(p.body)});
  }
  return r;
}

// One symbol per kind, the findings' details joined: the same virus seen in
// the raw message and in its decoded part is one finding, not two scores.
void add_symbols(const scand::ScanReply& reply, const scand::ScanRequest& request, ScanContext& ctx) {
  std::vector<std::pair<std::string_view, std::string>> found;
  for (const auto& f : reply.findings) {
    std::string_view name = f.verdict == scand::Verdict::Virus           ? kVirusFound
                            : f.verdict == scand::Verdict::LimitExceeded ? kLimitExceeded
                            : f.verdict == scand::Verdict::Error         ? kScanError
                                                                         : std::string_view{};
    if (name.empty()) continue;
    std::string where = f.item < request.items.size() ? request.items[f.item].name : "?";
    std::string detail = f.signature + " in " + where;
    auto it = std::find_if(found.begin(), found.end(), [&](const auto& p) { return p.first == name; });
    if (it == found.end()) found.emplace_back(name, std::move(detail));
    else it->second += "; " + detail;
  }
  for (auto& [name, detail] : found) ctx.add(std::string(name), safe(detail));
}

AntivirusFilter::AntivirusFilter(const config::Config& cfg, const config::Filter& settings,
                                 boost::asio::thread_pool* blocking)
    : socket_(cfg.antivirus.socket),
      // Answer before the pipeline's budget runs out, so a slow scanner is
      // caught here (and restarted) rather than only cancelled.
      timeout_(std::min<std::chrono::milliseconds>(cfg.antivirus.timeout, settings.budget * 9 / 10)),
      limits_(frame_limits(cfg)),
      blocking_(blocking) {
  extract_.max_bytes = std::size_t(2 * cfg.limits.message_size + (1u << 20));
}

asio::awaitable<Status> AntivirusFilter::run(Phase, ScanContext& ctx) {
  const std::uint32_t id = g_next_id.fetch_add(1);
  Request req;
  // The shared parse is taken here and only read from the pool, where the
  // decoding (CPU work on hostile bytes) runs.
  const mime::Message* tree = &ctx.mime();
  auto build = [this, &ctx, tree, id] { return build_request(ctx.message, *tree, extract_, id); };
  if (blocking_) req = co_await run_blocking(*blocking_, build);
  else req = build();
  if (!req.limit.empty()) ctx.add(std::string(kLimitExceeded), safe("MIME: " + req.limit));
  auto reply = co_await scan(socket_, req.scan, timeout_, limits_);
  if (!reply) {
    if (reply.error().code == Errc::ScanTimeout)
      if (auto* s = Supervisor::current()) s->restart("a scan took longer than " + std::to_string(timeout_.count()) + "ms");
    co_return reply.error();
  }
  if (reply->verdict == scand::Verdict::Error && reply->findings.empty())
    co_return Error{Errc::ScanUnavailable, "moat-scand: " + safe(reply->detail)};
  add_symbols(*reply, req.scan, ctx);
  co_return Status{};
}

}  // namespace moat::filters::antivirus
