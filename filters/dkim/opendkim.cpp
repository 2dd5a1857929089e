// See opendkim.hpp. libopendkim is driven the way its milter drives it:
// dkim_header() per field, dkim_eoh(), dkim_body(), dkim_eom(), then one
// DKIM_SIGINFO per signature. Two callbacks connect it to moat: a prescreen
// that ignores the signatures moat does not want verified (over the limit,
// malformed, rsa-sha1), and the key lookup, which answers from the records
// the filter fetched asynchronously beforehand, so libopendkim itself never
// touches the network and never waits.
#include "filters/dkim/opendkim.hpp"

// dkim.h uses C99 _Bool in prototypes; in C++ that is bool (same ABI).
#define _Bool bool
#include <opendkim/dkim.h>
#undef _Bool

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>
#include <set>

#include "common/proto/taglist.hpp"
#include "common/text.hpp"
#include "filters/dkim/canon.hpp"
#include "filters/dkim/dkim.hpp"

namespace moat::filters::dkim {
namespace {

// Per-verification state, reached from the callbacks through the handle's
// user context.
struct VerifyCall {
  const KeyAnswers* keys = nullptr;
  std::set<std::string, std::less<>> wanted;  // b= values (FWS removed) to verify
};

std::string tag(DKIM_SIGINFO* sig, const char* name) {
  auto* v = dkim_sig_gettagvalue(sig, false, reinterpret_cast<u_char*>(const_cast<char*>(name)));
  return v ? proto::strip_fws(reinterpret_cast<const char*>(v)) : std::string();
}

DKIM_CBSTAT prescreen(DKIM* dkim, DKIM_SIGINFO** sigs, int nsigs) {
  const auto* call = static_cast<const VerifyCall*>(dkim_get_user_context(dkim));
  for (int i = 0; i < nsigs; ++i)
    if (!call->wanted.count(tag(sigs[i], "b"))) dkim_sig_ignore(sigs[i]);
  return DKIM_CBSTAT_CONTINUE;
}

DKIM_CBSTAT key_lookup(DKIM* dkim, DKIM_SIGINFO* sig, u_char* buf, size_t buflen) {
  const auto* call = static_cast<const VerifyCall*>(dkim_get_user_context(dkim));
  const auto* s = dkim_sig_getselector(sig);
  const auto* d = dkim_sig_getdomain(sig);
  if (!s || !d) return DKIM_CBSTAT_ERROR;
  auto it = call->keys->find(key_name(reinterpret_cast<const char*>(s), reinterpret_cast<const char*>(d)));
  if (it == call->keys->end()) return DKIM_CBSTAT_ERROR;  // not fetched: never guess
  switch (it->second.status) {
    case KeyStatus::NotFound: return DKIM_CBSTAT_NOTFOUND;
    case KeyStatus::TempFail: return DKIM_CBSTAT_TRYAGAIN;
    case KeyStatus::Found: break;
  }
  const auto& rec = it->second.record;
  if (rec.size() + 1 > buflen) return DKIM_CBSTAT_ERROR;
  std::memcpy(buf, rec.data(), rec.size());
  buf[rec.size()] = '\0';
  return DKIM_CBSTAT_CONTINUE;
}

Outcome classify(DKIM_SIGINFO* sig, const KeyAnswer* key) {
  if (key && key->status == KeyStatus::TempFail) return {"temperror", "key lookup failed temporarily"};
  const unsigned flags = dkim_sig_getflags(sig);
  const int bh = dkim_sig_getbh(sig);
  const int err = dkim_sig_geterror(sig);
  if ((flags & DKIM_SIGFLAG_PASSED) && bh == DKIM_SIGBH_MATCH) return {"pass", ""};
  if ((flags & DKIM_SIGFLAG_PROCESSED) && bh == DKIM_SIGBH_MISMATCH) return {"fail", "body hash did not verify"};
  switch (err) {
    case DKIM_SIGERROR_BADSIG: return {"fail", "signature did not verify"};
    case DKIM_SIGERROR_NOKEY: return {"permerror", "no key for signature"};
    case DKIM_SIGERROR_KEYREVOKED: return {"permerror", "key revoked"};
    case DKIM_SIGERROR_OK:
    case DKIM_SIGERROR_UNKNOWN: return {"permerror", "signature not verified"};
    default: break;
  }
  const char* text = dkim_sig_geterrorstr(err);
  return {"permerror", text ? text : "signature error"};
}

// Feeds the header fields; a field libopendkim refuses is skipped, as the
// milter does. Each goes through a copy: dkim_header() takes a non-const
// buffer and the message must reach the spool unchanged.
void feed_header(DKIM* dkim, std::string_view header) {
  std::string copy;
  for (const auto& f : split_fields(header)) {
    copy.assign(f.text);
    (void)dkim_header(dkim, reinterpret_cast<u_char*>(copy.data()), copy.size());
  }
}

// dkim_body() only reads the buffer (its prototype is not const-correct).
void feed_body(DKIM* dkim, std::string_view body) {
  if (!body.empty()) (void)dkim_body(dkim, reinterpret_cast<u_char*>(const_cast<char*>(body.data())), body.size());
}

struct Handle {
  DKIM* p = nullptr;
  ~Handle() {
    if (p) dkim_free(p);
  }
};

}  // namespace

std::string key_name(std::string_view selector, std::string_view domain) {
  return lower(selector) + "._domainkey." + lower(domain);
}

Result<std::unique_ptr<OpenDkim>> OpenDkim::create(const LibOptions& options) {
  std::unique_ptr<OpenDkim> out(new OpenDkim(options));
  if (out->options_.sign_headers.empty()) out->options_.sign_headers = kDefaultSignHeaders;
  const auto& opts = out->options_;
  out->lib_ = dkim_init(nullptr, nullptr);
  if (!out->lib_) return Error{Errc::Invalid, "dkim_init failed"};
  u_int bits = options.min_key_bits;
  u_int flags = DKIM_LIBFLAGS_BADSIGHANDLES;  // malformed signatures get a SIGINFO (with the error) too
  bool ok = dkim_options(out->lib_, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &bits, sizeof bits) == DKIM_STAT_OK &&
            dkim_options(out->lib_, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags) == DKIM_STAT_OK;
  if (options.fixed_time) {
    std::uint64_t t = options.fixed_time;
    ok = ok && dkim_options(out->lib_, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, &t, sizeof t) == DKIM_STAT_OK;
  }
  {
    std::vector<const char*> names;
    for (const auto& h : opts.sign_headers) names.push_back(h.c_str());
    names.push_back(nullptr);
    ok = ok &&
         dkim_options(out->lib_, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, names.data(), sizeof(char**)) == DKIM_STAT_OK &&
         dkim_options(out->lib_, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, names.data(), sizeof(char**)) ==
             DKIM_STAT_OK;
  }
  ok = ok && dkim_set_prescreen(out->lib_, prescreen) == DKIM_STAT_OK &&
       dkim_set_key_lookup(out->lib_, key_lookup) == DKIM_STAT_OK;
  if (!ok) return Error{Errc::Invalid, "libopendkim refused the options"};
  return out;
}

OpenDkim::~OpenDkim() {
  if (lib_) dkim_close(lib_);
}

std::vector<Outcome> OpenDkim::verify(std::string_view header, std::string_view body, const std::vector<Signature>& sigs,
                                      const KeyAnswers& keys) const {
  std::vector<Outcome> out(sigs.size(), Outcome{"permerror", "signature not verified"});
  VerifyCall call{&keys, {}};
  for (std::size_t i = 0; i < sigs.size(); ++i) {
    if (!sigs[i].valid) out[i] = {"permerror", "malformed signature: " + sigs[i].error};
    else if (sigs[i].sha1() && !options_.allow_sha1) out[i] = {"permerror", "rsa-sha1 is not accepted (RFC 8301)"};
    else call.wanted.insert(sigs[i].b);
  }
  if (call.wanted.empty()) return out;

  DKIM_STAT st = DKIM_STAT_OK;
  Handle h{dkim_verify(lib_, reinterpret_cast<const u_char*>("moat"), nullptr, &st)};
  if (!h.p) {
    for (std::size_t i = 0; i < sigs.size(); ++i)
      if (call.wanted.count(sigs[i].b)) out[i] = {"temperror", "verifier unavailable"};
    return out;
  }
  dkim_set_user_context(h.p, &call);
  feed_header(h.p, header);
  st = dkim_eoh(h.p);
  // A key lookup that must be retried (CBTRYAGAIN) or failed stops dkim_eoh
  // early, but dkim_eom() still processes the remaining signatures.
  std::string early_error;
  if (st == DKIM_STAT_SYNTAX || st == DKIM_STAT_NORESOURCE || st == DKIM_STAT_INTERNAL || st == DKIM_STAT_INVALID) {
    const char* e = dkim_geterror(h.p);
    early_error = e && *e ? e : dkim_getresultstr(st);
  } else if (st != DKIM_STAT_NOSIG) {
    feed_body(h.p, body);
    bool testkey = false;
    (void)dkim_eom(h.p, &testkey);
  }

  DKIM_SIGINFO** list = nullptr;
  int n = 0;
  if (dkim_getsiglist(h.p, &list, &n) != DKIM_STAT_OK) n = 0;
  for (std::size_t i = 0; i < sigs.size(); ++i) {
    if (!call.wanted.count(sigs[i].b)) continue;
    if (!early_error.empty()) out[i] = {"permerror", early_error};
    for (int j = 0; j < n; ++j) {
      if ((dkim_sig_getflags(list[j]) & DKIM_SIGFLAG_IGNORE) || tag(list[j], "b") != sigs[i].b) continue;
      auto k = keys.find(key_name(sigs[i].s, sigs[i].d));
      out[i] = classify(list[j], k == keys.end() ? nullptr : &k->second);
      break;
    }
  }
  return out;
}

Result<std::string> OpenDkim::sign(std::string_view header, std::string_view body, const PrivateKey& key,
                                   std::string_view domain, std::string_view selector) const {
  if (key.type == KeyType::Ed25519) {
    // libopendkim 2.11.0~beta2 leaks the key of every Ed25519 signature it
    // makes (canon.hpp): moat signs those itself.
    const std::uint64_t now = options_.fixed_time ? options_.fixed_time : std::uint64_t(std::time(nullptr));
    return sign_relaxed(header, body, key, domain, selector, options_.sign_headers, now);
  }
  const std::string d(domain), s(selector);
  DKIM_STAT st = DKIM_STAT_OK;
  Handle h{dkim_sign(lib_, reinterpret_cast<const u_char*>("moat"), nullptr,
                     reinterpret_cast<u_char*>(const_cast<char*>(key.pem.c_str())),
                     reinterpret_cast<const u_char*>(s.c_str()), reinterpret_cast<const u_char*>(d.c_str()),
                     DKIM_CANON_RELAXED, DKIM_CANON_RELAXED,
                     key.type == KeyType::Rsa ? DKIM_SIGN_RSASHA256 : DKIM_SIGN_ED25519SHA256, -1L, &st)};
  if (!h.p) return Error{Errc::ScanUnavailable, std::string("dkim_sign: ") + dkim_getresultstr(st)};
  feed_header(h.p, header);
  auto failed = [&](const char* step) {
    const char* e = dkim_geterror(h.p);
    return Error{Errc::ScanUnavailable, std::string(step) + ": " + (e && *e ? e : dkim_getresultstr(st))};
  };
  if ((st = dkim_eoh(h.p)) != DKIM_STAT_OK) return failed("dkim_eoh");
  feed_body(h.p, body);
  bool testkey = false;
  if ((st = dkim_eom(h.p, &testkey)) != DKIM_STAT_OK) return failed("dkim_eom");
  static constexpr std::string_view kName = "DKIM-Signature: ";
  u_char* text = nullptr;
  size_t len = 0;
  if ((st = dkim_getsighdr_d(h.p, kName.size(), &text, &len)) != DKIM_STAT_OK || !text) return failed("dkim_getsighdr");
  return std::string(kName) + std::string(reinterpret_cast<const char*>(text), len) + "\r\n";
}

}  // namespace moat::filters::dkim
