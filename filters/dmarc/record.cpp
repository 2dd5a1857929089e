// DMARC record parsing and the Organizational Domain (see record.hpp).
#include "filters/dmarc/record.hpp"

#include <libpsl.h>

#include <cctype>
#include <charconv>
#include <mutex>

#include "common/proto/taglist.hpp"
#include "common/text.hpp"

namespace moat::filters::dmarc {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<Policy> parse_policy(std::string_view v) {
  auto l = lower(trim(v));
  if (l == "none") return Policy::None;
  if (l == "quarantine") return Policy::Quarantine;
  if (l == "reject") return Policy::Reject;
  return std::nullopt;
}

// "v=DMARC1" first (RFC 7489 §6.4: case-sensitive, WSP around '=' allowed).
bool starts_with_version(std::string_view t) {
  t = trim(t);
  if (t.empty() || t[0] != 'v') return false;
  t = trim(t.substr(1));
  if (t.empty() || t[0] != '=') return false;
  t = trim(t.substr(1));
  if (t.substr(0, 6) != "DMARC1") return false;
  t = trim(t.substr(6));
  return t.empty() || t[0] == ';';
}

std::optional<unsigned> parse_uint(std::string_view v, unsigned max) {
  v = trim(v);
  unsigned n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size() || n > max) return std::nullopt;
  return n;
}

// dmarc-uri = URI [ "!" size ]; a URI needs a scheme (RFC 3986 §3.1).
bool valid_uri(std::string_view u) {
  auto colon = u.find(':');
  if (colon == 0 || colon == std::string_view::npos || !std::isalpha(static_cast<unsigned char>(u[0]))) return false;
  for (char c : u.substr(0, colon))
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') return false;
  return colon + 1 < u.size();
}

std::vector<std::string> parse_uris(std::string_view v) {
  std::vector<std::string> out;
  while (!v.empty() && out.size() < kMaxUris) {
    auto comma = v.find(',');
    auto item = trim(v.substr(0, comma));
    if (valid_uri(item)) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  return out;
}

const psl_ctx_t* psl() {
  static const psl_ctx_t* ctx = [] {
    // Debian's publicsuffix package; the copy built into libpsl otherwise.
    for (const char* f : {"/usr/share/publicsuffix/public_suffix_list.dafsa",
                          "/usr/share/publicsuffix/public_suffix_list.dat"})
      if (psl_ctx_t* c = psl_load_file(f)) return static_cast<const psl_ctx_t*>(c);
    return psl_builtin();
  }();
  return ctx;
}

}  // namespace

std::string_view policy_name(Policy p) {
  switch (p) {
    case Policy::None: return "none";
    case Policy::Quarantine: return "quarantine";
    case Policy::Reject: return "reject";
  }
  return "none";
}

ParsedRecord parse_record(std::string_view txt) {
  ParsedRecord out;
  if (txt.size() > kMaxRecordBytes || !starts_with_version(txt)) return out;
  out.status = RecordStatus::Invalid;
  auto tags = proto::parse_tag_list(txt);
  if (!tags) return out;
  Record& r = out.record;
  if (auto v = tags->get("rua")) r.rua = parse_uris(*v);
  if (auto v = tags->get("ruf")) r.ruf = parse_uris(*v);
  std::optional<Policy> p;
  if (auto v = tags->get("p")) p = parse_policy(*v);
  bool sp_bad = false;
  if (auto v = tags->get("sp")) {
    r.sp = parse_policy(*v);
    sp_bad = !r.sp;
  }
  if (!p || sp_bad) {
    // §6.6.3: no valid p= (or a bad sp=): p=none if rua= has a valid URI,
    // else no DMARC processing at all.
    if (r.rua.empty()) return out;
    r.p_missing = true;
    r.sp.reset();
    p = Policy::None;
  }
  r.p = *p;
  if (auto v = tags->get("np")) r.np = parse_policy(*v);
  if (auto v = tags->get("pct")) r.pct = parse_uint(*v, 100).value_or(100);
  if (auto v = tags->get("adkim")) r.adkim_strict = lower(trim(*v)) == "s";
  if (auto v = tags->get("aspf")) r.aspf_strict = lower(trim(*v)) == "s";
  if (auto v = tags->get("fo")) r.fo = std::string(trim(*v));
  if (auto v = tags->get("ri")) r.ri = parse_uint(*v, 0xffffffffu).value_or(86400);
  out.status = RecordStatus::Ok;
  return out;
}

std::optional<std::string> registrable_domain(std::string_view domain) {
  if (domain.empty() || domain.front() == '.' || domain.size() > 253) return std::nullopt;
  std::string name(domain);
  if (name.find('\0') != std::string::npos) return std::nullopt;
  char* low = nullptr;
  if (psl_str_to_utf8lower(name.c_str(), "utf-8", nullptr, &low) != PSL_SUCCESS || !low) return std::nullopt;
  std::string l(low);
  psl_free_string(low);
  const char* reg = psl_registrable_domain(psl(), l.c_str());  // points into l
  if (!reg) return std::nullopt;
  return std::string(reg);
}

std::optional<std::string> org_domain(std::string_view domain) {
  if (!psl()) return std::nullopt;
  std::string d = lower(domain);
  if (!d.empty() && d.back() == '.') d.pop_back();
  auto reg = registrable_domain(d);
  return reg ? *reg : d;
}

}  // namespace moat::filters::dmarc
