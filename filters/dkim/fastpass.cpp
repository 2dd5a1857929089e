// See fastpass.hpp (RFC 6376 §3.4 canonicalization, §3.7 hashes, §5.4.2
// header selection, §6.1.1-§6.1.3 checks). The canonicalization is ARC's
// (filters/arc, the ValiMail suite's 171 + 17 cases), which is DKIM's.
#include "filters/dkim/fastpass.hpp"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <charconv>

#include "common/base64.hpp"
#include "common/proto/taglist.hpp"
#include "common/text.hpp"
#include "filters/arc/arc.hpp"
#include "filters/dkim/key.hpp"

namespace moat::filters::dkim {
namespace {

// Tags this path understands; any other (l=, x=, z=, unknown ones) means
// libopendkim decides.
bool known_sig_tag(std::string_view t) {
  static constexpr std::string_view kTags[] = {"v", "a", "b", "bh", "c", "d", "h", "i", "s", "t", "q"};
  return std::find(std::begin(kTags), std::end(kTags), t) != std::end(kTags);
}
bool known_key_tag(std::string_view t) {
  static constexpr std::string_view kTags[] = {"v", "k", "h", "s", "t", "p", "n"};
  return std::find(std::begin(kTags), std::end(kTags), t) != std::end(kTags);
}

std::vector<std::string> colon_list(std::string_view v) {
  std::vector<std::string> out;
  const std::string s = proto::strip_fws(v);
  std::size_t pos = 0;
  while (pos <= s.size()) {
    auto colon = s.find(':', pos);
    out.push_back(lower(s.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos)));
    if (colon == std::string::npos) break;
    pos = colon + 1;
  }
  return out;
}

bool has(const std::vector<std::string>& list, std::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

bool subdomain_or_same(std::string_view sub, std::string_view parent) {
  return iequals(sub, parent) ||
         (sub.size() > parent.size() && sub[sub.size() - parent.size() - 1] == '.' &&
          iequals(sub.substr(sub.size() - parent.size()), parent));
}

std::optional<std::string> b64(std::string_view v) {
  auto r = base64_decode(proto::strip_fws(v));
  if (!r) return std::nullopt;
  return *r;
}

std::string sha256(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof md);
}

bool rsa_sha256_verifies(EVP_PKEY* key, std::string_view data, std::string_view sig) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  return ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
         EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
}

// c= (§3.5): header/body, each "simple" or "relaxed"; body defaults to simple.
bool parse_canon(std::optional<std::string_view> c, bool& header_relaxed, bool& body_relaxed) {
  const std::string v = c ? std::string(*c) : "simple/simple";
  const auto slash = v.find('/');
  const std::string h = v.substr(0, slash), b = slash == std::string::npos ? "simple" : v.substr(slash + 1);
  if ((h != "simple" && h != "relaxed") || (b != "simple" && b != "relaxed")) return false;
  header_relaxed = h == "relaxed";
  body_relaxed = b == "relaxed";
  return true;
}

// The key record is plain: usable for rsa-sha256 mail signatures, no flags.
bool plain_key_record(const std::string& record) {
  auto tags = proto::parse_tag_list(record);
  if (!tags) return false;
  for (const auto& [name, value] : tags->tags)
    if (!known_key_tag(name)) return false;
  auto k = parse_key_record(record);
  if (!k || k->revoked() || k->k != "rsa" || !k->t.empty()) return false;
  if (!k->h.empty() && !has(colon_list(k->h), "sha256")) return false;
  if (!k->s.empty() && !has(colon_list(k->s), "*") && !has(colon_list(k->s), "email")) return false;
  return true;
}

}  // namespace

std::shared_ptr<evp_pkey_st> FastPass::key_for(const std::string& record) {
  {
    std::lock_guard lock(mu_);
    if (auto it = keys_.find(record); it != keys_.end()) return it->second;
  }
  // Decoded outside the lock: it is the slow part. Two threads decoding the
  // same new key at once is harmless.
  arc::Pkey key = arc::parse_key_record(record, "rsa-sha256");
  if (!key || EVP_PKEY_get_bits(key.get()) < int(min_key_bits_)) return nullptr;
  std::shared_ptr<evp_pkey_st> shared(key.release(), EVP_PKEY_free);
  std::lock_guard lock(mu_);
  if (keys_.size() >= kMaxKeys) keys_.clear();  // bounded; a miss only decodes again
  keys_.emplace(record, shared);
  return shared;
}

bool FastPass::passes(const Field& sig_field, const std::vector<Field>& fields, std::string_view body,
                      const KeyAnswers& keys, std::uint64_t now) {
  const auto colon = sig_field.text.find(':');
  auto tags = proto::parse_tag_list(sig_field.text.substr(colon + 1));
  if (!tags) return false;
  for (const auto& [name, value] : tags->tags)
    if (!known_sig_tag(name)) return false;
  auto v = tags->get("v"), a = tags->get("a"), b = tags->get("b"), bh = tags->get("bh"), d = tags->get("d"),
       h = tags->get("h"), s = tags->get("s");
  if (!v || *v != "1" || !a || *a != "rsa-sha256" || !b || !bh || !d || !h || !s) return false;
  if (auto q = tags->get("q"); q && *q != "dns/txt") return false;
  bool header_relaxed = false, body_relaxed = false;
  if (!parse_canon(tags->get("c"), header_relaxed, body_relaxed)) return false;
  const std::vector<std::string> signed_names = colon_list(*h);
  if (!has(signed_names, "from")) return false;  // §5.4: From MUST be signed
  if (auto i = tags->get("i")) {
    const std::string id = proto::strip_fws(*i);
    const auto at = id.rfind('@');
    if (at == std::string::npos || !subdomain_or_same(std::string_view(id).substr(at + 1), *d)) return false;
  }
  if (auto t = tags->get("t")) {
    std::uint64_t when = 0;
    auto [p, ec] = std::from_chars(t->data(), t->data() + t->size(), when);
    if (ec != std::errc() || p != t->data() + t->size() || when > now) return false;
  }

  auto k = keys.find(key_name(*s, *d));
  if (k == keys.end() || k->second.status != KeyStatus::Found || !plain_key_record(k->second.record)) return false;
  auto pkey = key_for(k->second.record);
  if (!pkey) return false;

  auto want_bh = b64(*bh);
  if (!want_bh || *want_bh != sha256(arc::canon_body(body, body_relaxed))) return false;

  // §5.4.2: each name in h= takes the last not yet used field of that name.
  std::string data;
  std::vector<bool> used(fields.size(), false);
  for (const auto& name : signed_names) {
    for (std::size_t j = fields.size(); j-- > 0;) {
      if (used[j] || !iequals(fields[j].name, name)) continue;
      used[j] = true;
      data += header_relaxed ? arc::canon_header_relaxed(fields[j].text) : std::string(fields[j].text) + "\r\n";
      break;
    }
  }
  std::string self = arc::without_b(sig_field.text);
  if (header_relaxed) {
    self = arc::canon_header_relaxed(self);
    self.resize(self.size() - 2);  // §3.7: the signature field goes in without its CRLF
  }
  data += self;
  auto sig = b64(*b);
  return sig && rsa_sha256_verifies(pkey.get(), data, *sig);
}

bool FastPass::all_pass(std::string_view header, std::string_view body, const std::vector<Signature>& sigs,
                        const KeyAnswers& keys, std::uint64_t now) {
  if (sigs.empty()) return false;
  const auto fields = split_fields(header);
  std::vector<bool> taken(fields.size(), false);
  for (const auto& sig : sigs) {
    if (!sig.valid) return false;
    // The field this signature was read from (find_signatures() order).
    std::size_t j = 0;
    for (; j < fields.size(); ++j) {
      if (taken[j] || !iequals(fields[j].name, "DKIM-Signature")) continue;
      if (parse_signature(fields[j].text.substr(fields[j].text.find(':') + 1)).b == sig.b) break;
    }
    if (j == fields.size()) return false;
    taken[j] = true;
    if (!passes(fields[j], fields, body, keys, now)) return false;
  }
  return true;
}

}  // namespace moat::filters::dkim
