// ARC verification and sealing (see arc.hpp). RFC 8617 §4 (header fields),
// §5.1 (sealing), §5.2 (validation); RFC 6376 §3.4/§3.7 (canonicalization,
// hashes), §3.6.1 (key records); RFC 8463 (ed25519-sha256); RFC 8301 (keys
// of at least 1024 bits).
#include "filters/arc/arc.hpp"

#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <ctime>

#include "common/base64.hpp"
#include "common/blocking.hpp"
#include "common/dns/resolver.hpp"
#include "common/log.hpp"
#include "common/proto/taglist.hpp"
#include "common/text.hpp"
#include "filters/authres/authres.hpp"
#include "filters/dmarc/from_header.hpp"

namespace moat::filters::arc {
namespace {

using dmarc::HeaderField;

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (is_wsp(s.front()) || s.front() == '\r' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (is_wsp(s.back()) || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

struct Message {
  std::vector<HeaderField> fields;
  std::string_view body;
  bool ok = true;
};

Message split(std::string_view m) {
  Message out;
  std::size_t end = m.find("\r\n\r\n");
  std::string_view header = end == std::string_view::npos ? m : m.substr(0, end + 2);
  if (m.substr(0, 2) == "\r\n") header = {}, end = 0;
  out.body = end == std::string_view::npos ? std::string_view{} : m.substr(end + (end == 0 ? 2 : 4));
  auto f = dmarc::split_fields(header);
  if (!f) out.ok = false;
  else out.fields = std::move(*f);
  return out;
}

std::string sha256(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof md);
}

std::optional<std::string> b64(std::string_view v) {
  auto r = base64_decode(proto::strip_fws(v));
  if (!r) return std::nullopt;
  return *r;
}

// Canonicalized field without its final CRLF (the signature field itself).
std::string chomp(std::string s) {
  if (s.size() >= 2 && s.compare(s.size() - 2, 2, "\r\n") == 0) s.resize(s.size() - 2);
  return s;
}

bool verify_sig(EVP_PKEY* key, std::string_view algorithm, std::string_view data, std::string_view sig) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx) return false;
  bool ok = false;
  if (algorithm == "rsa-sha256") {
    ok = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
         EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  } else if (algorithm == "ed25519-sha256") {
    std::string h = sha256(data);  // RFC 8463 §3: Ed25519 over the SHA-256 hash
    ok = EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key) == 1 &&
         EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(h.data()), h.size()) == 1;
  }
  EVP_MD_CTX_free(ctx);
  return ok;
}

std::optional<std::string> sign(EVP_PKEY* key, std::string_view data) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx) return std::nullopt;
  bool ed = EVP_PKEY_get_id(key) == EVP_PKEY_ED25519;
  std::string input = ed ? sha256(data) : std::string(data);
  std::size_t len = 0;
  std::optional<std::string> out;
  if (EVP_DigestSignInit(ctx, nullptr, ed ? nullptr : EVP_sha256(), nullptr, key) == 1 &&
      EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1) {
    std::string sig(len, '\0');
    if (EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1) {
      sig.resize(len);
      out = std::move(sig);
    }
  }
  EVP_MD_CTX_free(ctx);
  return out;
}

std::optional<unsigned> instance_of(std::string_view v) {
  v = trim(v);
  unsigned n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size() || n < 1 || n > kMaxInstances) return std::nullopt;
  return n;
}

// One ARC set, by instance.
struct Set {
  const HeaderField* aar = nullptr;
  const HeaderField* ams = nullptr;
  const HeaderField* as = nullptr;
  proto::TagList ams_tags, as_tags;
};

struct Chain {
  Cv status = Cv::None;   // None: no ARC fields; Fail: structure broken; Pass: structure fine so far
  std::string reason;
  std::vector<Set> sets;  // index 0 = instance 1
};

Chain collect(const Message& m) {
  Chain c;
  std::map<unsigned, Set> by;
  auto fail = [&](std::string why) {
    c.status = Cv::Fail;
    c.reason = std::move(why);
    return c;
  };
  bool any = false;
  for (const auto& f : m.fields) {
    bool aar = iequals(f.name, "ARC-Authentication-Results"), ams = iequals(f.name, "ARC-Message-Signature"),
         as = iequals(f.name, "ARC-Seal");
    if (!aar && !ams && !as) continue;
    any = true;
    std::optional<unsigned> i;
    proto::TagList tags;
    if (aar) {
      // "i=N;" then the A-R payload.
      auto v = trim(f.value);
      auto semi = v.find(';');
      auto first = trim(v.substr(0, semi));
      if (semi == std::string_view::npos || first.substr(0, 1) != "i") return fail("malformed AAR");
      first = trim(first.substr(1));
      if (first.empty() || first[0] != '=') return fail("malformed AAR");
      i = instance_of(first.substr(1));
    } else {
      auto t = proto::parse_tag_list(f.value);
      if (!t) return fail("malformed " + std::string(f.name));
      tags = std::move(*t);
      if (auto v = tags.get("i")) i = instance_of(*v);
    }
    if (!i) return fail("bad instance in " + std::string(f.name));
    Set& s = by[*i];
    const HeaderField*& slot = aar ? s.aar : ams ? s.ams : s.as;
    if (slot) return fail("duplicate " + std::string(f.name) + " i=" + std::to_string(*i));
    slot = &f;
    if (ams) s.ams_tags = std::move(tags);
    if (as) s.as_tags = std::move(tags);
  }
  if (!any) return c;
  unsigned expect = 1;
  for (auto& [i, s] : by) {
    if (i != expect++) return fail("instance gap at i=" + std::to_string(i));
    if (!s.aar || !s.ams || !s.as) return fail("incomplete set i=" + std::to_string(i));
    c.sets.push_back(std::move(s));
  }
  c.status = Cv::Pass;
  return c;
}

std::string key_name(const proto::TagList& t) {
  auto s = t.get("s"), d = t.get("d");
  if (!s || !d) return {};
  return lower(trim(*s)) + "._domainkey." + lower(trim(*d));
}

std::optional<std::string> algorithm(const proto::TagList& t) {
  auto a = t.get("a");
  if (!a) return std::nullopt;
  auto l = lower(trim(*a));
  if (l != "rsa-sha256" && l != "ed25519-sha256") return std::nullopt;
  return l;
}

// The AMS hash input: the h= fields bottom-up (RFC 6376 §5.4.2), then the AMS
// itself without b=.
bool ams_verifies(const Message& m, const Set& s, const Keys& keys, std::string& why) {
  const auto& t = s.ams_tags;
  for (auto req : {"a", "b", "bh", "d", "s", "h"})
    if (!t.get(req)) return why = std::string("AMS without ") + req + "=", false;
  auto alg = algorithm(t);
  if (!alg) return why = "AMS algorithm", false;
  // Without c= the ARC suite and dkimpy read relaxed/relaxed (RFC 6376 alone
  // would say simple/simple); sealers always write c=.
  std::string c = lower(trim(t.get("c").value_or("relaxed/relaxed")));
  auto slash = c.find('/');
  std::string hc = c.substr(0, slash), bc = slash == std::string::npos ? "simple" : c.substr(slash + 1);
  if ((hc != "simple" && hc != "relaxed") || (bc != "simple" && bc != "relaxed")) return why = "AMS c=", false;
  std::string body = canon_body(m.body, bc == "relaxed");
  if (auto l = t.get("l")) {
    std::size_t n = 0;
    auto lv = trim(*l);
    auto [p, ec] = std::from_chars(lv.data(), lv.data() + lv.size(), n);
    if (ec != std::errc() || p != lv.data() + lv.size() || n > body.size()) return why = "AMS l=", false;
    body.resize(n);
  }
  auto bh = b64(*t.get("bh"));
  if (!bh || *bh != sha256(body)) return why = "AMS body hash", false;
  std::string data;
  std::vector<bool> used(m.fields.size(), false);
  std::string_view h = *t.get("h");
  std::size_t pos = 0;
  while (pos <= h.size()) {
    auto colon = h.find(':', pos);
    std::string name = lower(trim(h.substr(pos, colon == std::string_view::npos ? std::string_view::npos : colon - pos)));
    pos = colon == std::string_view::npos ? h.size() + 1 : colon + 1;
    if (name.empty()) continue;
    if (name == "arc-seal") return why = "AMS signs ARC-Seal", false;  // RFC 8617 §4.1.2
    for (std::size_t k = m.fields.size(); k-- > 0;) {
      if (used[k] || !iequals(m.fields[k].name, name)) continue;
      used[k] = true;
      data += hc == "relaxed" ? canon_header_relaxed(m.fields[k].raw) : std::string(m.fields[k].raw);
      break;
    }
  }
  std::string self = without_b(s.ams->raw);
  data += chomp(hc == "relaxed" ? canon_header_relaxed(self) : self);
  auto key_txt = keys(key_name(t));
  if (!key_txt) return why = "AMS key not found", false;
  Pkey key = parse_key_record(*key_txt, *alg);
  if (!key) return why = "AMS key unusable", false;
  auto sig = b64(*t.get("b"));
  if (!sig || !verify_sig(key.get(), *alg, data, *sig)) return why = "AMS signature", false;
  return true;
}

// The AS hash input: every set up to this one, AAR, AMS, AS, relaxed;
// this AS without b= and without its final CRLF (RFC 8617 §5.1.1).
std::string seal_input(const std::vector<Set>& sets, std::size_t upto, std::string_view last_as) {
  std::string data;
  for (std::size_t j = 0; j <= upto; ++j) {
    data += canon_header_relaxed(sets[j].aar->raw);
    data += canon_header_relaxed(sets[j].ams->raw);
    if (j < upto) data += canon_header_relaxed(sets[j].as->raw);
  }
  data += chomp(canon_header_relaxed(last_as));
  return data;
}

bool as_verifies(const std::vector<Set>& sets, std::size_t idx, const Keys& keys, std::string& why) {
  const auto& t = sets[idx].as_tags;
  for (auto req : {"a", "b", "cv", "d", "s"})
    if (!t.get(req)) return why = std::string("AS without ") + req + "=", false;
  if (t.get("h")) return why = "AS with h=", false;  // RFC 8617 §4.1.3
  auto alg = algorithm(t);
  if (!alg) return why = "AS algorithm", false;
  auto key_txt = keys(key_name(t));
  if (!key_txt) return why = "AS key not found", false;
  Pkey key = parse_key_record(*key_txt, *alg);
  if (!key) return why = "AS key unusable", false;
  auto sig = b64(*t.get("b"));
  std::string data = seal_input(sets, idx, without_b(sets[idx].as->raw));
  if (!sig || !verify_sig(key.get(), *alg, data, *sig)) return why = "AS signature i=" + std::to_string(idx + 1), false;
  return true;
}

std::string base64_folded(std::string_view raw) { return base64_encode(raw); }

}  // namespace

std::string_view cv_name(Cv cv) {
  switch (cv) {
    case Cv::None: return "none";
    case Cv::Pass: return "pass";
    case Cv::Fail: return "fail";
  }
  return "none";
}

std::string canon_header_relaxed(std::string_view field) {
  auto colon = field.find(':');
  std::string name = lower(trim(field.substr(0, colon)));
  std::string value;
  bool space = false;
  for (char c : field.substr(colon == std::string_view::npos ? field.size() : colon + 1)) {
    if (c == '\r' || c == '\n') continue;  // unfold
    if (is_wsp(c)) {
      space = true;
      continue;
    }
    if (space && !value.empty()) value += ' ';
    space = false;
    value += c;
  }
  return name + ":" + value + "\r\n";
}

std::string canon_body(std::string_view body, bool relaxed) {
  std::string out;
  out.reserve(body.size());
  std::size_t pos = 0;
  while (pos < body.size()) {
    auto nl = body.find("\r\n", pos);
    std::string_view line = body.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? body.size() : nl + 2;
    if (relaxed) {
      std::string l;
      bool space = false;
      for (char c : line) {
        if (is_wsp(c)) {
          space = true;
          continue;
        }
        if (space) l += ' ';
        space = false;
        l += c;
      }
      out += l;
    } else {
      out += line;
    }
    out += "\r\n";
  }
  // Trailing empty lines go (§3.4.3, §3.4.4).
  while (out.size() >= 4 && out.compare(out.size() - 4, 4, "\r\n\r\n") == 0) out.resize(out.size() - 2);
  if (out == "\r\n") out.clear();
  if (!relaxed && out.empty()) out = "\r\n";
  return out;
}

std::string without_b(std::string_view field) {
  // Find the tag named exactly "b" after the colon: start of value or after ';'.
  auto colon = field.find(':');
  if (colon == std::string_view::npos) return std::string(field);
  std::size_t i = colon + 1;
  while (i < field.size()) {
    std::size_t j = i;
    while (j < field.size() && (is_wsp(field[j]) || field[j] == '\r' || field[j] == '\n')) ++j;
    std::size_t name_end = j;
    while (name_end < field.size() && (std::isalnum(static_cast<unsigned char>(field[name_end])) || field[name_end] == '_'))
      ++name_end;
    std::size_t k = name_end;
    while (k < field.size() && (is_wsp(field[k]) || field[k] == '\r' || field[k] == '\n')) ++k;
    auto semi = field.find(';', k);
    if (field.substr(j, name_end - j) == "b" && k < field.size() && field[k] == '=') {
      std::size_t vend = semi == std::string_view::npos ? field.size() : semi;
      // Keep a final CRLF that belongs to the field, not the value.
      if (semi == std::string_view::npos && field.size() >= 2 && field.substr(field.size() - 2) == "\r\n") vend -= 2;
      return std::string(field.substr(0, k + 1)) + std::string(field.substr(vend));
    }
    if (semi == std::string_view::npos) break;
    i = semi + 1;
  }
  return std::string(field);
}

Pkey parse_key_record(std::string_view txt, std::string_view alg) {
  auto t = proto::parse_tag_list(txt);
  if (!t) return nullptr;
  if (auto v = t->get("v"); v && (*v != "DKIM1" || t->tags.front().first != "v")) return nullptr;
  std::string k = lower(trim(t->get("k").value_or("rsa")));
  if ((alg == "rsa-sha256") != (k == "rsa") || (alg == "ed25519-sha256") != (k == "ed25519")) return nullptr;
  if (auto h = t->get("h"); h && lower(*h).find("sha256") == std::string::npos) return nullptr;
  auto p = t->get("p");
  if (!p) return nullptr;
  auto der = b64(*p);
  if (!der || der->empty()) return nullptr;  // p= empty: revoked
  const auto* data = reinterpret_cast<const unsigned char*>(der->data());
  if (k == "ed25519") {
    if (der->size() != 32) return nullptr;
    return Pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, data, der->size()));
  }
  Pkey key(d2i_PUBKEY(nullptr, &data, long(der->size())));
  if (!key || EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA || EVP_PKEY_get_bits(key.get()) < 1024) return nullptr;
  return key;
}

std::vector<std::string> key_names(std::string_view message) {
  Message m = split(message);
  std::vector<std::string> out;
  if (!m.ok) return out;
  Chain c = collect(m);
  if (c.status != Cv::Pass || c.sets.empty()) return out;
  auto add = [&](std::string n) {
    if (!n.empty() && std::find(out.begin(), out.end(), n) == out.end()) out.push_back(std::move(n));
  };
  add(key_name(c.sets.back().ams_tags));
  for (auto it = c.sets.rbegin(); it != c.sets.rend(); ++it) add(key_name(it->as_tags));
  return out;
}

Verification verify(std::string_view message, const Keys& keys) {
  Verification v;
  Message m = split(message);
  if (!m.ok) {
    v.cv = Cv::Fail;
    v.reason = "malformed header";
    // Without any ARC field a malformed header is simply no chain.
    if (message.find("ARC-") == std::string_view::npos && message.find("arc-") == std::string_view::npos) v.cv = Cv::None;
    return v;
  }
  Chain c = collect(m);
  v.instances = unsigned(c.sets.size());
  if (c.status != Cv::Pass) {
    v.cv = c.status;
    v.reason = c.reason;
    return v;
  }
  const Set& last = c.sets.back();
  v.ams_domain = lower(trim(last.ams_tags.get("d").value_or("")));
  // §5.2 step 2: the newest seal already says fail.
  std::string newest_cv = lower(trim(last.as_tags.get("cv").value_or("")));
  if (newest_cv == "fail") {
    v.cv = Cv::Fail;
    v.reason = "newest seal says cv=fail";
    return v;
  }
  // §5.2 step 3: i=1 has cv=none, every later one cv=pass.
  for (std::size_t j = 0; j < c.sets.size(); ++j) {
    std::string cv = lower(trim(c.sets[j].as_tags.get("cv").value_or("")));
    if (cv != (j == 0 ? "none" : "pass")) {
      v.cv = Cv::Fail;
      v.reason = "cv=" + cv + " at i=" + std::to_string(j + 1);
      return v;
    }
  }
  std::string why;
  if (!ams_verifies(m, last, keys, why)) {
    v.cv = Cv::Fail;
    v.reason = why;
    return v;
  }
  for (std::size_t j = c.sets.size(); j-- > 0;)
    if (!as_verifies(c.sets, j, keys, why)) {
      v.cv = Cv::Fail;
      v.reason = why;
      return v;
    }
  v.cv = Cv::Pass;
  return v;
}

const std::vector<std::string>& default_sign_headers() {
  static const std::vector<std::string> h{"from", "to", "cc", "subject", "date", "message-id", "reply-to",
                                          "in-reply-to", "references", "mime-version", "content-type",
                                          "content-transfer-encoding", "dkim-signature"};
  return h;
}

std::string Seal::fields() const {
  return "ARC-Seal: " + as + "\r\nARC-Message-Signature: " + ams + "\r\nARC-Authentication-Results: " + aar + "\r\n";
}

std::optional<Seal> seal(std::string_view message, const SealRequest& r) {
  Message m = split(message);
  if (!m.ok || !r.key || r.instance < 1 || r.instance > kMaxInstances) return std::nullopt;
  Chain c = collect(m);
  if (c.status == Cv::Fail && r.chain != Cv::Fail) return std::nullopt;
  bool ed = EVP_PKEY_get_id(r.key) == EVP_PKEY_ED25519;
  std::string a = ed ? "ed25519-sha256" : "rsa-sha256";
  std::string i = std::to_string(r.instance), t = std::to_string(r.timestamp);
  Seal s;
  s.aar = "i=" + i + "; " + r.results;

  // AMS: the tags in the test suite's standardized order.
  std::vector<std::string> present;
  std::string data;
  std::vector<bool> used(m.fields.size(), false);
  for (const auto& h : r.headers) {
    for (std::size_t k = m.fields.size(); k-- > 0;) {
      if (used[k] || !iequals(m.fields[k].name, h)) continue;
      used[k] = true;
      data += canon_header_relaxed(m.fields[k].raw);
      present.push_back(h);
      break;
    }
  }
  std::string hlist;
  for (const auto& h : present) hlist += (hlist.empty() ? "" : ":") + h;
  std::string bh = base64_folded(sha256(canon_body(m.body, true)));
  std::string ams_head = "a=" + a + "; b=; bh=" + bh + "; c=relaxed/relaxed; d=" + r.domain + "; h=" + hlist +
                         "; i=" + i + "; s=" + r.selector + "; t=" + t;
  data += chomp(canon_header_relaxed("ARC-Message-Signature: " + ams_head));
  auto ams_sig = sign(r.key, data);
  if (!ams_sig) return std::nullopt;
  s.ams = "a=" + a + "; b=" + base64_folded(*ams_sig) + "; bh=" + bh + "; c=relaxed/relaxed; d=" + r.domain +
          "; h=" + hlist + "; i=" + i + "; s=" + r.selector + "; t=" + t;

  // AS over the earlier sets (when the chain is not broken) and ours.
  std::string as_head = "a=" + a + "; b=; cv=" + std::string(cv_name(r.chain)) + "; d=" + r.domain + "; i=" + i +
                        "; s=" + r.selector + "; t=" + t;
  std::string sdata;
  if (r.chain != Cv::Fail)
    for (const auto& set : c.sets) {
      sdata += canon_header_relaxed(set.aar->raw);
      sdata += canon_header_relaxed(set.ams->raw);
      sdata += canon_header_relaxed(set.as->raw);
    }
  sdata += canon_header_relaxed("ARC-Authentication-Results: " + s.aar);
  sdata += canon_header_relaxed("ARC-Message-Signature: " + s.ams);
  sdata += chomp(canon_header_relaxed("ARC-Seal: " + as_head));
  auto as_sig = sign(r.key, sdata);
  if (!as_sig) return std::nullopt;
  s.as = "a=" + a + "; b=" + base64_folded(*as_sig) + "; cv=" + std::string(cv_name(r.chain)) + "; d=" + r.domain +
         "; i=" + i + "; s=" + r.selector + "; t=" + t;
  return s;
}

// ---- the filter ----

ArcFilter::ArcFilter(const config::Config& cfg, const Services& services, Pkey key)
    : resolver_(*services.resolver),
      blocking_(*services.blocking),
      settings_(cfg.arc),
      authserv_id_(cfg.server.authserv_id.empty() ? cfg.server.hostname : cfg.server.authserv_id),
      key_(std::move(key)) {}

Result<std::unique_ptr<Filter>> ArcFilter::make(const config::Config& cfg, const Services& services) {
  if (!services.resolver || !services.blocking) return Error{Errc::Invalid, "filter arc needs DNS and the blocking pool"};
  Pkey key;
  if (cfg.arc.sealing()) {
    FILE* f = std::fopen(cfg.arc.key.c_str(), "r");
    if (!f) return Error{Errc::Invalid, "arc: cannot read key " + cfg.arc.key.string()};
    key.reset(PEM_read_PrivateKey(f, nullptr, nullptr, nullptr));
    std::fclose(f);
    if (!key || (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA && EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519))
      return Error{Errc::Invalid, "arc: " + cfg.arc.key.string() + " is not an RSA or Ed25519 private key"};
  }
  return std::unique_ptr<Filter>(new ArcFilter(cfg, services, std::move(key)));
}

asio::awaitable<Status> ArcFilter::run(Phase phase, ScanContext& ctx) {
  if (phase != Phase::EndOfData) co_return Status{};
  std::string_view message = ctx.message;
  std::map<std::string, std::optional<std::string>> fetched;
  bool temp = false;
  const std::vector<std::string> names = key_names(message);  // no temporaries across co_await (g++ 12)
  for (const auto& name : names) {
    auto ans = co_await resolver_.txt(name);
    if (!ans) {
      temp = true;
      break;
    }
    std::optional<std::string> rec;
    if (ans->records.size() == 1) rec = ans->records.front();
    fetched.emplace(name, std::move(rec));
  }
  if (temp) {
    ctx.auth.push_back(AuthResult{"arc", "temperror", "", {}});
    co_return Error{Errc::DnsTempFail, "ARC key lookup"};
  }
  Keys keys = [&fetched](const std::string& n) -> std::optional<std::string> {
    auto it = fetched.find(n);
    return it == fetched.end() ? std::nullopt : it->second;
  };
  Verification v = co_await run_blocking(blocking_, [&] { return verify(message, keys); });
  AuthResult ar{"arc", std::string(cv_name(v.cv)), "", {}};
  if (v.cv == Cv::Fail && !v.reason.empty()) ar.reason = v.reason;
  // RFC 8617 §10.1 registers smtp.remote-ip (and header.oldest-pass, which we do not compute).
  ar.props.emplace_back("smtp.remote-ip", ctx.envelope.client.ip.str());
  ctx.auth.push_back(std::move(ar));
  if (v.cv == Cv::Pass) ctx.add("ARC_PASS", std::to_string(v.instances) + " sets");
  else if (v.cv == Cv::Fail) ctx.add("ARC_FAIL", v.reason);
  else ctx.add("ARC_NA");

  if (!key_ || v.instances >= kMaxInstances) co_return Status{};
  SealRequest req;
  req.domain = settings_.domain;
  req.selector = settings_.selector;
  req.key = key_.get();
  req.timestamp = static_cast<long long>(std::time(nullptr));
  req.headers = default_sign_headers();
  std::string ar_text = authentication_results(authserv_id_, ctx.auth);
  req.results = ar_text.substr(std::string_view("Authentication-Results: ").size());
  while (!req.results.empty() && (req.results.back() == '\n' || req.results.back() == '\r')) req.results.pop_back();
  req.chain = v.cv;
  req.instance = v.cv == Cv::Fail ? std::max(1u, v.instances + 1) : v.instances + 1;
  if (req.instance > kMaxInstances) co_return Status{};
  auto s = co_await run_blocking(blocking_, [&] { return seal(message, req); });
  if (s) ctx.headers.push_back(s->fields());
  else log::warning("arc: could not seal the message");
  co_return Status{};
}

}  // namespace moat::filters::arc
