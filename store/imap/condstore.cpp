// See condstore.hpp (RFC 7162 §3.1.2, §3.1.3, §3.1.4, §3.2.5, §3.2.6, §3.2.10).
#include "store/imap/condstore.hpp"
#include "common/text.hpp"

#include <cctype>

namespace moat::store::imap {
namespace {

namespace ip = proto::imap;

Error bad(std::string text) { return Error{Errc::ParamSyntax, std::move(text)}; }

bool is_atom(const ip::Arg& a) { return a.type == ip::Arg::Type::Atom; }

Result<QresyncParams> parse_qresync(const ip::Arg& list) {
  const auto& v = list.list;
  if (!list.is_list() || v.size() < 2 || v.size() > 4) return bad("QRESYNC (uidvalidity modseq [known-uids [seq-match]])");
  QresyncParams q;
  auto validity = parse_modseq(v[0], false);
  auto modseq = parse_modseq(v[1], false);
  if (!validity || *validity > UINT32_MAX || !modseq) return bad("bad QRESYNC uidvalidity or modseq");
  q.uidvalidity = std::uint32_t(*validity);
  q.modseq = *modseq;
  std::size_t i = 2;
  if (i < v.size() && is_atom(v[i])) {
    auto set = ip::SeqSet::parse(v[i].text);
    if (!set || set->has_star()) return bad("bad QRESYNC known-uids");  // RFC 7162: no "*" here
    q.known_uids = std::move(*set);
    ++i;
  }
  if (i < v.size()) {
    const auto& m = v[i];
    if (!m.is_list() || m.list.size() != 2 || !is_atom(m.list[0]) || !is_atom(m.list[1]) ||
        !ip::SeqSet::parse(m.list[0].text) || !ip::SeqSet::parse(m.list[1].text))
      return bad("bad QRESYNC seq-match-data");
    ++i;
  }
  if (i != v.size()) return bad("bad QRESYNC parameters");
  return q;
}

}  // namespace

std::optional<std::uint64_t> parse_modseq(const ip::Arg& a, bool allow_zero) {
  if (!is_atom(a) || a.text.empty() || a.text.size() > 19) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : a.text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + std::uint64_t(c - '0');  // 19 digits fit in 64 bits
  }
  if (v > INT64_MAX || (v == 0 && !allow_zero)) return std::nullopt;
  return v;
}

Result<SelectParams> parse_select_params(const ip::Arg& list) {
  if (!list.is_list()) return bad("SELECT mailbox [(parameters)]");
  SelectParams p;
  for (std::size_t i = 0; i < list.list.size(); ++i) {
    const auto& a = list.list[i];
    const std::string u = is_atom(a) ? upper(a.text) : std::string();
    if (u == "CONDSTORE") {
      p.condstore = true;
    } else if (u == "QRESYNC" && i + 1 < list.list.size() && !p.qresync) {
      auto q = parse_qresync(list.list[++i]);
      if (!q) return q.error();
      p.qresync = std::move(*q);
    } else {
      return bad("unknown SELECT parameter");
    }
  }
  return p;
}

Result<FetchModifiers> parse_fetch_modifiers(const ip::Arg& list) {
  if (!list.is_list() || list.list.empty()) return bad("FETCH set items (modifiers)");
  FetchModifiers f;
  for (std::size_t i = 0; i < list.list.size(); ++i) {
    const auto& a = list.list[i];
    const std::string u = is_atom(a) ? upper(a.text) : std::string();
    if (u == "CHANGEDSINCE" && i + 1 < list.list.size() && !f.changed_since) {
      f.changed_since = parse_modseq(list.list[++i], false);
      if (!f.changed_since) return bad("bad CHANGEDSINCE value");
    } else if (u == "VANISHED" && !f.vanished) {
      f.vanished = true;
    } else {
      return bad("unknown FETCH modifier");
    }
  }
  // RFC 7162 §3.2.6: VANISHED only together with CHANGEDSINCE
  if (f.vanished && !f.changed_since) return bad("VANISHED needs CHANGEDSINCE");
  return f;
}

Result<std::uint64_t> parse_store_modifiers(const ip::Arg& list) {
  if (!list.is_list() || list.list.size() != 2 || !is_atom(list.list[0]) || upper(list.list[0].text) != "UNCHANGEDSINCE")
    return bad("STORE set (UNCHANGEDSINCE modseq) item flags");
  auto v = parse_modseq(list.list[1], true);
  if (!v) return bad("bad UNCHANGEDSINCE value");
  return *v;
}

std::string vanished_response(const std::vector<std::uint32_t>& ascending_uids, bool earlier) {
  if (ascending_uids.empty()) return {};
  return std::string("* VANISHED ") + (earlier ? "(EARLIER) " : "") + ip::format_compact(ascending_uids) + "\r\n";
}

}  // namespace moat::store::imap
