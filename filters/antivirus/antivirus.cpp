// Antivirus filter (see antivirus.hpp).
#include "filters/antivirus/antivirus.hpp"

#include <algorithm>
#include <atomic>

#include "filters/antivirus/client.hpp"
#include "filters/antivirus/supervisor.hpp"
#include "filters/attachments/attachments.hpp"

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

std::vector<scand::ItemRef> request_items(std::string_view message, const attachments::Leaves& leaves) {
  std::vector<scand::ItemRef> items;
  items.reserve(1 + leaves.parts.size());
  items.push_back(scand::ItemRef{scand::ItemKind::Message, "message", message});
  for (std::size_t i = 0; i < leaves.parts.size(); ++i) {
    const auto& p = leaves.parts[i];
    // The root's own bytes are item 0 already.
    if (p.body.empty() || (p.depth == 0 && !p.decoded && !p.hidden)) continue;
    std::string name = p.filename.empty() ? "part-" + std::to_string(i + 1) : p.filename.substr(0, 255);
    items.push_back(scand::ItemRef{scand::ItemKind::Part, std::move(name), p.body});
  }
  return items;
}

// One symbol per kind, the findings' details joined: the same virus seen in
// the raw message and in its decoded part is one finding, not two scores.
void add_symbols(const scand::ScanReply& reply, const std::vector<scand::ItemRef>& items, ScanContext& ctx) {
  std::vector<std::pair<std::string_view, std::string>> found;
  for (const auto& f : reply.findings) {
    std::string_view name = f.verdict == scand::Verdict::Virus           ? kVirusFound
                            : f.verdict == scand::Verdict::LimitExceeded ? kLimitExceeded
                            : f.verdict == scand::Verdict::Error         ? kScanError
                                                                         : std::string_view{};
    if (name.empty()) continue;
    std::string where = f.item < items.size() ? items[f.item].name : "?";
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
      extract_(attachments::leaf_limits(cfg.limits.message_size)),
      limits_(frame_limits(cfg)),
      blocking_(blocking) {}

asio::awaitable<Status> AntivirusFilter::run(Phase, ScanContext& ctx) {
  const std::uint32_t id = g_next_id.fetch_add(1);
  // Decoded by the attachment policy when it ran first; else here, on the pool.
  const auto leaves = co_await attachments::shared_leaves(ctx, extract_, blocking_);
  if (!leaves->limit.empty()) ctx.add(std::string(kLimitExceeded), safe("MIME: " + leaves->limit));
  const auto items = request_items(ctx.message, *leaves);
  auto reply = co_await scan(socket_, scand::encode_request(id, items), id, items.size(), timeout_, limits_);
  if (!reply) {
    if (reply.error().code == Errc::ScanTimeout)
      if (auto* s = Supervisor::current()) s->restart("a scan took longer than " + std::to_string(timeout_.count()) + "ms");
    co_return reply.error();
  }
  if (reply->verdict == scand::Verdict::Error && reply->findings.empty())
    co_return Error{Errc::ScanUnavailable, "moat-scand: " + safe(reply->detail)};
  add_symbols(*reply, items, ctx);
  co_return Status{};
}

}  // namespace moat::filters::antivirus
