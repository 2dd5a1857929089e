// check_host() with libspf2 (see evaluate.hpp). libspf2 asks its DNS layer
// through an SPF_dns_server_t: `lookup` for A/AAAA/MX/PTR/TXT and, when set,
// `get_spf` for a domain's compiled record (the check itself, includes and
// redirects). Both are ours, so the layer sees every term that queries DNS:
//
//   term          first question              follow-ups (not terms)
//   a, exists     A or AAAA of the target     -
//   mx            MX of the target            A/AAAA of each host, in answer order
//   ptr           PTR of the client           A/AAAA of each name, in answer order
//   include,      get_spf(target): TXT        -
//   redirect
//   %{p} macro    PTR (should_cache = 0)      A/AAAA of each name
//   exp=          TXT of the exp domain       -
//
// When a limit is passed the layer answers TRY_AGAIN to every further
// question, which makes libspf2 stop with temperror, and evaluate() turns
// that into the permerror §4.6.4 asks for.
#include "filters/spf/evaluate.hpp"

#include <ctime>
#include <map>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <deque>

extern "C" {
#include <spf2/spf.h>
#include <spf2/spf_dns.h>
#include <spf2/spf_dns_rr.h>
#include <spf2/spf_record.h>
}

#include "common/dns/resolver.hpp"
#include "common/text.hpp"
#include "filters/spf/record.hpp"

namespace moat::filters::spf {
namespace {

constexpr int kTypeA = 1, kTypePtr = 12, kTypeTxt = 16, kTypeAaaa = 28, kTypeSpf = 99;

// Our default explanation (§6.2); libspf2's points at the defunct openspf.org.
// Spaces as "%_": libspf2's macro compiler garbles a literal space.
constexpr const char* kDefaultExplanation = "%{i}%_is%_not%_a%_permitted%_sender%_for%_%{d}";

std::string_view trim_dot(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return s;
}

// A name we may put on the wire: labels 1..63, at most 253 octets.
bool askable(std::string_view name) {
  name = trim_dot(name);
  if (name.empty() || name.size() > 253) return false;
  std::size_t start = 0;
  while (true) {
    auto dot = name.find('.', start);
    auto len = (dot == std::string_view::npos ? name.size() : dot) - start;
    if (len == 0 || len > 63) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// §3.1 / §4.5: "v=spf1" (case-insensitive) followed by a space or the end.
bool is_spf1(std::string_view txt) {
  return txt.size() >= 6 && iequals(txt.substr(0, 6), "v=spf1") && (txt.size() == 6 || txt[6] == ' ');
}

// §3.1: records are 7-bit ASCII; §4.6.1: terms are separated by spaces only.
bool printable_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x7f;
  });
}

enum class Abort : std::uint8_t { No, TooManyTerms, TooManyVoids, TooManyMx };

bool ends_with_ci(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && iequals(s.substr(s.size() - suffix.size()), suffix);
}

// State of one evaluate() call; the DNS layer's hook.
struct Session {
  const Lookup* lookup = nullptr;
  int terms = 0;
  int voids = 0;
  bool top_asked = false;               // the first get_spf is check_host's own domain
  Result top_result = Result::None;     // set when that first record lookup fails
  bool top_failed = false;
  std::deque<std::string> follow_ups;   // MX/PTR names whose address lookups come next
  bool follow_ups_of_ptr = false;       // ... and they came from a PTR answer
  bool asking_ptr_follow_up = false;    // the current question is one of those
  Abort abort = Abort::No;
  std::string problem;
  MacroValues macros;                           // d is set per record
  std::map<std::string, std::string> exp_owner; // exp= target -> the domain whose record named it
  std::optional<std::string> validated_ptr;     // %{p}, asked once
  std::uint32_t min_ttl = kNoDnsTtl;            // Outcome::ttl
  bool dns_failed = false;                      // some answer was a TempFail
  bool has_macros = false;

  DnsReply ask(const std::string& name, int rrtype) {
    if (!askable(name)) {
      DnsReply r;
      r.status = DnsReply::Status::NxDomain;  // no such name can exist
      return r;
    }
    DnsReply r = (*lookup)(name, rrtype);
    if (r.status == DnsReply::Status::TempFail) dns_failed = true;
    else min_ttl = std::min(min_ttl, r.ttl);
    return r;
  }

  // §7.3 "p": a PTR name of the client whose addresses include it; one in
  // `domain` preferred. These lookups are not terms (§4.6.4 counts terms).
  std::string ptr_name(const std::string& domain) {
    if (validated_ptr) return *validated_ptr;
    const IpAddr& ip = macros.ip;
    std::string best = "unknown", any;
    DnsReply names = ask(dns::reverse_name(ip), kTypePtr);
    for (std::size_t i = 0; i < names.names.size() && i < std::size_t(kMaxNamesPerTerm); ++i) {
      const std::string& n = names.names[i];
      DnsReply addrs = ask(n, ip.v4 ? kTypeA : kTypeAaaa);
      if (std::find(addrs.addrs.begin(), addrs.addrs.end(), ip) == addrs.addrs.end()) continue;
      if (iequals(trim_dot(n), domain) || ends_with_ci(trim_dot(n), "." + domain)) {
        best = std::string(trim_dot(n));
        break;
      }
      if (any.empty()) any = std::string(trim_dot(n));
    }
    if (best == "unknown" && !any.empty()) best = any;
    validated_ptr = best;
    return best;
  }
};

Session& session_of(SPF_dns_server_t* layer) { return *static_cast<Session*>(layer->hook); }

SPF_dns_rr_t* make_rr(SPF_dns_server_t* layer, const char* domain, ns_type type, int herrno) {
  return SPF_dns_rr_new_init(layer, domain, type, 0, herrno);
}

bool add_string(SPF_dns_rr_t* rr, int i, const std::string& s) {
  if (SPF_dns_rr_buf_realloc(rr, i, s.size() + 1) != SPF_E_SUCCESS) return false;
  // TXT data may hold NUL octets; libspf2 reads C strings, so it sees the
  // text up to the first one.
  std::memcpy(rr->rr[i]->txt, s.c_str(), s.size() + 1);
  return true;
}

bool add_addr(SPF_dns_rr_t* rr, int i, const IpAddr& ip) {
  if (SPF_dns_rr_buf_realloc(rr, i, sizeof(SPF_dns_rr_data_t)) != SPF_E_SUCCESS) return false;
  if (ip.v4) std::memcpy(&rr->rr[i]->a, ip.b.data() + 12, 4);
  else std::memcpy(&rr->rr[i]->aaaa, ip.b.data(), 16);
  return true;
}

// Decides whether this question starts a term (counted) or follows one.
bool starts_term(Session& s, const std::string& name, ns_type type, int should_cache) {
  s.asking_ptr_follow_up = false;
  if ((type == ns_t_a || type == ns_t_aaaa) && !s.follow_ups.empty() && iequals(trim_dot(s.follow_ups.front()), trim_dot(name))) {
    s.follow_ups.pop_front();
    s.asking_ptr_follow_up = s.follow_ups_of_ptr;
    return false;
  }
  s.follow_ups.clear();
  if (type == ns_t_a || type == ns_t_aaaa || type == ns_t_mx) return true;
  return type == ns_t_ptr && should_cache;  // libspf2 asks %{p}'s PTR uncached
}

SPF_dns_rr_t* layer_lookup(SPF_dns_server_t* layer, const char* domain, ns_type type, int should_cache) {
  Session& s = session_of(layer);
  const std::string name = domain ? domain : "";
  if (s.abort != Abort::No) return make_rr(layer, domain, type, TRY_AGAIN);
  // RFC 7208 §3.1: only TXT carries SPF records now; type 99 is not asked.
  if (type == kTypeSpf) return make_rr(layer, domain, type, NO_DATA);
  const bool term = starts_term(s, name, type, should_cache);
  if (term && ++s.terms > kMaxDnsTerms) {
    s.abort = Abort::TooManyTerms;
    return make_rr(layer, domain, type, TRY_AGAIN);
  }
  // "a/0", "mx/0" (record.hpp): ask the real name, then any address matches.
  std::string asked = name;
  const bool any_address = ends_with_ci(trim_dot(name), std::string(".") + std::string(kAnyAddressLabel));
  if (any_address) asked = std::string(trim_dot(name)).substr(0, trim_dot(name).size() - kAnyAddressLabel.size() - 1);
  DnsReply r = s.ask(asked, type);
  // §5.5 (and §7.3 for %{p}): a DNS error on the address lookup of a PTR
  // name skips that name; it is not a temperror of the whole check.
  if (r.status == DnsReply::Status::TempFail && s.asking_ptr_follow_up) return make_rr(layer, domain, type, HOST_NOT_FOUND);
  if (r.status == DnsReply::Status::TempFail) {
    if (s.problem.empty()) s.problem = "DNS failure for " + name;
    return make_rr(layer, domain, type, TRY_AGAIN);
  }
  const bool is_addr = type == ns_t_a || type == ns_t_aaaa;
  if (is_addr) {
    std::erase_if(r.addrs, [&](const IpAddr& ip) { return ip.v4 != (type == ns_t_a); });
    if (any_address && !r.addrs.empty()) r.addrs = {s.macros.ip};
  }
  if (any_address && type == ns_t_mx)
    for (auto& host : r.names) host = std::string(trim_dot(host)) + "." + std::string(kAnyAddressLabel);
  const std::size_t count = is_addr ? r.addrs.size() : r.names.size();
  if (term && count == 0 && ++s.voids > kMaxVoidLookups) {
    s.abort = Abort::TooManyVoids;
    return make_rr(layer, domain, type, TRY_AGAIN);
  }
  if (count == 0)
    return make_rr(layer, domain, type, r.status == DnsReply::Status::NxDomain ? HOST_NOT_FOUND : NO_DATA);

  std::vector<std::string> names = std::move(r.names);
  if (type == ns_t_ptr && names.size() > std::size_t(kMaxNamesPerTerm)) names.resize(kMaxNamesPerTerm);  // §4.6.4: ignore the rest
  if (type == ns_t_mx && names.size() > std::size_t(kMaxNamesPerTerm)) {
    // §4.6.4: more than 10 MX names is a permerror of the "mx" mechanism.
    s.abort = Abort::TooManyMx;
    return make_rr(layer, domain, type, TRY_AGAIN);
  }
  if (type == ns_t_txt) {
    // Only exp= asks TXT here (records come through get_spf). §6.2: anything
    // but exactly one ASCII string, or a macro error in it, means no
    // explanation. We expand it (libspf2's expander is buggy) and hand
    // libspf2 the result as a literal.
    if (names.size() != 1 || !printable_ascii(names[0])) return make_rr(layer, domain, type, NO_DATA);
    if (names[0].find('%') != std::string::npos) s.has_macros = true;
    MacroValues v = s.macros;
    auto owner = s.exp_owner.find(std::string(trim_dot(name)));
    if (owner != s.exp_owner.end()) v.domain = owner->second;
    v.ptr = [&s, d = v.domain] { return s.ptr_name(d); };
    auto text = expand_macros(names[0], v, true);
    if (!text) return make_rr(layer, domain, type, NO_DATA);
    names[0] = as_macro_literal(*text);
  }
  SPF_dns_rr_t* rr = make_rr(layer, domain, type, NETDB_SUCCESS);
  int n = 0;
  if (is_addr) {
    for (const auto& ip : r.addrs)
      if (ip.v4 == (type == ns_t_a) && add_addr(rr, n, ip)) ++n;
  } else {
    for (const auto& nm : names)
      if (add_string(rr, n, nm)) ++n;
  }
  rr->num_rr = n;
  if (type == ns_t_mx || type == ns_t_ptr) {
    // libspf2 looks at no more than 10 names (max_dns_mx / max_dns_ptr).
    for (int i = 0; i < n && i < kMaxNamesPerTerm; ++i) s.follow_ups.emplace_back(rr->rr[i]->mx);
    s.follow_ups_of_ptr = type == ns_t_ptr;
  }
  return rr;
}

// The record of req->cur_dom, chosen by §4.5 and compiled by libspf2.
SPF_errcode_t layer_get_spf(SPF_server_t* server, SPF_request_t* req, SPF_response_t* resp, SPF_record_t** out) {
  Session& s = session_of(server->resolver);
  *out = nullptr;
  const bool top = !s.top_asked;
  s.top_asked = true;
  const std::string domain = req->cur_dom ? req->cur_dom : "";
  auto fail = [&](Result result, SPF_errcode_t code, std::string why) {
    if (s.problem.empty()) s.problem = why;
    if (top) {
      s.top_failed = true;
      s.top_result = result;
    }
    return SPF_response_add_error(resp, code, "%s", why.c_str());
  };
  if (s.abort != Abort::No) return fail(Result::PermError, SPF_E_DNS_ERROR, "limit reached");
  if (!top && ++s.terms > kMaxDnsTerms) {
    s.abort = Abort::TooManyTerms;
    return fail(Result::PermError, SPF_E_DNS_ERROR, "limit reached");
  }
  DnsReply r = s.ask(domain, kTypeTxt);
  if (r.status == DnsReply::Status::TempFail)
    return fail(Result::TempError, SPF_E_DNS_ERROR, "DNS failure looking up the SPF record of " + domain);
  std::vector<const std::string*> found;
  for (const auto& txt : r.names)
    if (is_spf1(txt)) found.push_back(&txt);
  if (found.empty()) return fail(Result::None, SPF_E_NOT_SPF, "no SPF record for " + domain);
  if (found.size() > 1) return fail(Result::PermError, SPF_E_MULTIPLE_RECORDS, "more than one SPF record for " + domain);
  const std::string& text = *found.front();
  if (text.find('%') != std::string::npos) s.has_macros = true;
  if (!printable_ascii(text)) return fail(Result::PermError, SPF_E_INVALID_CHAR, "SPF record of " + domain + " is not printable ASCII");
  MacroValues v = s.macros;
  v.domain = std::string(trim_dot(domain));
  v.ptr = [&s, d = v.domain] { return s.ptr_name(d); };
  Normalized norm = normalize(text, v, s.macros.ip.v4);
  if (!norm.error.empty()) return fail(Result::PermError, SPF_E_SYNTAX, "SPF record of " + domain + ": " + norm.error);
  if (!norm.exp.empty()) s.exp_owner[std::string(trim_dot(norm.exp))] = v.domain;
  SPF_errcode_t err = SPF_record_compile(server, resp, out, norm.record.c_str());
  if (err != SPF_E_SUCCESS) {
    if (*out) SPF_record_free(*out);
    *out = nullptr;
    return fail(Result::PermError, err, std::string("SPF record of ") + domain + ": " + SPF_strerror(err));
  }
  return SPF_E_SUCCESS;
}

Result from_libspf2(SPF_result_t r) {
  switch (r) {
    case SPF_RESULT_PASS: return Result::Pass;
    case SPF_RESULT_FAIL: return Result::Fail;
    case SPF_RESULT_SOFTFAIL: return Result::SoftFail;
    case SPF_RESULT_NEUTRAL: return Result::Neutral;
    case SPF_RESULT_NONE: return Result::None;
    case SPF_RESULT_TEMPERROR: return Result::TempError;
    default: return Result::PermError;  // INVALID and PERMERROR
  }
}

// RAII for libspf2's objects of one check.
struct Libspf2 {
  SPF_dns_server_t layer{};
  SPF_server_t* server = nullptr;
  SPF_request_t* request = nullptr;
  SPF_response_t* response = nullptr;
  ~Libspf2() {
    if (response) SPF_response_free(response);
    if (request) SPF_request_free(request);
    if (server) SPF_server_free(server);  // leaves `layer` alone: its destroy is null
  }
};

bool set_client(SPF_request_t* req, const IpAddr& ip) {
  if (ip.v4) {
    in_addr a{};
    std::memcpy(&a, ip.b.data() + 12, 4);
    return SPF_request_set_ipv4(req, a) == SPF_E_SUCCESS;
  }
  in6_addr a{};
  std::memcpy(&a, ip.b.data(), 16);
  return SPF_request_set_ipv6(req, a) == SPF_E_SUCCESS;
}

void quiet_libspf2() {
  // libspf2 prints warnings and debug lines to stdout/stderr by default;
  // what matters reaches us through the response.
  static const bool once = [] {
    SPF_warning_handler = nullptr;
    SPF_info_handler = nullptr;
    SPF_debug_handler = nullptr;
    return true;
  }();
  (void)once;
}

}  // namespace

std::string_view result_name(Result r) {
  switch (r) {
    case Result::None: return "none";
    case Result::Neutral: return "neutral";
    case Result::Pass: return "pass";
    case Result::Fail: return "fail";
    case Result::SoftFail: return "softfail";
    case Result::TempError: return "temperror";
    case Result::PermError: return "permerror";
  }
  return "permerror";
}

bool valid_identity_domain(std::string_view domain) {
  domain = trim_dot(domain);
  if (!askable(domain) || domain.find('.') == std::string_view::npos) return false;
  return domain.front() != '[';
}

Outcome evaluate(const Query& q, const Lookup& lookup) {
  quiet_libspf2();
  Outcome out;
  // §2.4: for <> the HELO identity stands in, as postmaster@helo.
  const bool use_helo = q.helo_identity || q.sender.empty();
  if (use_helo) {
    out.domain = q.helo;
    out.sender = "postmaster@" + q.helo;
  } else {
    auto at = q.sender.rfind('@');
    out.domain = at == std::string::npos ? q.sender : q.sender.substr(at + 1);
    // §4.3: no local part means "postmaster".
    out.sender = at == 0 || at == std::string::npos ? "postmaster@" + out.domain : q.sender;
  }
  if (!valid_identity_domain(out.domain) || !printable_ascii(out.sender)) {
    out.result = Result::None;
    out.problem = "not a domain SPF can check: " + out.domain;
    return out;
  }

  Session s;
  s.lookup = &lookup;
  s.macros.sender = out.sender;
  s.macros.ip = q.client;
  s.macros.helo = q.helo;
  s.macros.receiver = q.receiver;
  s.macros.now = static_cast<long long>(std::time(nullptr));
  Libspf2 lib;
  lib.layer.lookup = layer_lookup;
  lib.layer.get_spf = layer_get_spf;
  lib.layer.name = "moat";
  lib.layer.hook = &s;
  lib.server = SPF_server_new_dns(&lib.layer, 0);
  lib.request = lib.server ? SPF_request_new(lib.server) : nullptr;
  if (!lib.request) {
    out.result = Result::TempError;
    out.problem = "libspf2: out of memory";
    return out;
  }
  if (!q.receiver.empty()) (void)SPF_server_set_rec_dom(lib.server, q.receiver.c_str());
  SPF_response_t* exp_errors = nullptr;
  (void)SPF_server_set_explanation(lib.server, kDefaultExplanation, &exp_errors);
  if (exp_errors) SPF_response_free(exp_errors);
  (void)set_client(lib.request, q.client);
  // The helo is set first: libspf2 takes it as the sender when none is set.
  if (!q.helo.empty()) (void)SPF_request_set_helo_dom(lib.request, q.helo.c_str());
  (void)SPF_request_set_env_from(lib.request, out.sender.c_str());
  lib.request->use_helo = use_helo ? 1 : 0;

  // SPF_request_query_mailfrom() would pass every loopback client unasked;
  // this is its body without that shortcut.
  lib.response = SPF_response_new(lib.request);
  if (!lib.response) {
    out.result = Result::TempError;
    out.problem = "libspf2: out of memory";
    return out;
  }
  lib.request->cur_dom = use_helo ? lib.request->helo_dom : lib.request->env_from_dp;
  SPF_record_t* record = nullptr;
  SPF_errcode_t err = SPF_server_get_record(lib.server, lib.request, lib.response, &record);
  if (err == SPF_E_SUCCESS && record) {
    lib.response->spf_record_exp = record;
    (void)SPF_record_interpret(record, lib.request, lib.response, 0);
    SPF_record_free(record);
    out.result = from_libspf2(lib.response->result);
  } else {
    out.result = s.top_failed ? s.top_result : Result::PermError;
  }
  out.dns_terms = std::min(s.terms, kMaxDnsTerms);
  out.void_lookups = s.voids;
  out.ttl = s.dns_failed ? 0 : s.min_ttl;
  out.has_macros = s.has_macros;
  if (s.abort == Abort::TooManyTerms) {
    out.result = Result::PermError;
    out.problem = "more than 10 DNS lookups (RFC 7208 section 4.6.4)";
  } else if (s.abort == Abort::TooManyMx) {
    out.result = Result::PermError;
    out.problem = "more than 10 MX names for an mx mechanism (RFC 7208 section 4.6.4)";
  } else if (s.abort == Abort::TooManyVoids) {
    out.result = Result::PermError;
    out.problem = "more than 2 void DNS lookups (RFC 7208 section 4.6.4)";
  } else if (out.result == Result::PermError && s.problem.empty() && lib.response->err != SPF_E_SUCCESS) {
    out.problem = SPF_strerror(lib.response->err);
  } else if (out.result == Result::TempError || out.result == Result::PermError || out.result == Result::None) {
    out.problem = s.problem;
  }
  if (out.result == Result::Fail && lib.response->explanation) out.explanation = lib.response->explanation;
  return out;
}

}  // namespace moat::filters::spf
