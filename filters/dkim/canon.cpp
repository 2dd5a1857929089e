// See canon.hpp (RFC 6376 §3.4, §3.5, §3.7, §5.4; RFC 8463 §3).
#include "filters/dkim/canon.hpp"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <memory>

#include "common/base64.hpp"
#include "common/text.hpp"
#include "filters/dkim/signature.hpp"

namespace moat::filters::dkim {
namespace {

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

// WSP runs (and, for headers, the CRLF of folding) to one SP; none at the ends.
std::string squeeze(std::string_view s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (is_wsp(c) || c == '\r' || c == '\n') {
      space = true;
    } else {
      if (space && !out.empty()) out += ' ';
      space = false;
      out += c;
    }
  }
  return out;
}

std::string sha256(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof md);
}

Result<std::string> sign_digest(const PrivateKey& key, std::string_view data) {
  using Pkey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
  using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;
  using Ctx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;
  Bio b(BIO_new_mem_buf(key.pem.data(), int(key.pem.size())), BIO_free);
  Pkey pkey(b ? PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr) : nullptr, EVP_PKEY_free);
  Ctx ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!pkey || !ctx) return Error{Errc::ScanUnavailable, "cannot load the signing key"};
  // Ed25519 signs the SHA-256 hash (RFC 8463 §3, PureEdDSA, no digest of its
  // own); RSA hashes the canonical data with SHA-256 itself (PKCS#1 v1.5).
  const bool ed = key.type == KeyType::Ed25519;
  const std::string input = ed ? sha256(data) : std::string(data);
  if (EVP_DigestSignInit(ctx.get(), nullptr, ed ? nullptr : EVP_sha256(), nullptr, pkey.get()) != 1)
    return Error{Errc::ScanUnavailable, "signing init failed"};
  std::size_t len = 0;
  auto* in = reinterpret_cast<const unsigned char*>(input.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) != 1)
    return Error{Errc::ScanUnavailable, "signing failed"};
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size()) != 1)
    return Error{Errc::ScanUnavailable, "signing failed"};
  sig.resize(len);
  return sig;
}

// Folds the tags into lines of about 76 characters: between tags, and in
// h= after a ':' (RFC 6376 §3.5 allows FWS there). The text is what gets
// hashed, so it is folded before signing; only b= (whose value the
// verifier drops with its whitespace, §3.7) is added afterwards.
std::string fold_tags(const std::vector<std::string>& tags) {
  std::string out = "DKIM-Signature:";
  std::size_t col = out.size();
  for (const auto& t : tags) {
    std::vector<std::string> pieces;  // h=a:b:c -> "h=a:", "b:", "c"
    std::size_t start = 0;
    for (std::size_t i = 0; i < t.size(); ++i)
      if (t.starts_with("h=") && t[i] == ':') {
        pieces.push_back(t.substr(start, i + 1 - start));
        start = i + 1;
      }
    pieces.push_back(t.substr(start));
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      const std::string sep = i == 0 ? " " : "";
      if (col + sep.size() + pieces[i].size() > 76) {
        out += "\r\n\t";
        col = 8;
      } else {
        out += sep;
        col += sep.size();
      }
      out += pieces[i];
      col += pieces[i].size();
    }
  }
  return out;
}

// b= goes after the hashed text: base64 in lines of 70, folded with FWS.
std::string append_b(std::string field, std::string_view b64) {
  for (std::size_t pos = 0; pos < b64.size(); pos += 70) {
    if (pos) field += "\r\n\t ";
    field += b64.substr(pos, 70);
  }
  return field + "\r\n";
}

}  // namespace

std::string relaxed_body(std::string_view body) {
  std::string out;
  out.reserve(body.size());
  std::size_t empty = 0;  // empty lines seen but not yet written (dropped at the end)
  std::size_t pos = 0;
  while (pos < body.size()) {
    auto eol = body.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = body.size();
    std::string line;
    bool space = false;
    for (char c : body.substr(pos, eol - pos)) {
      if (is_wsp(c)) {
        space = true;
      } else {
        if (space) line += ' ';
        space = false;
        line += c;
      }
    }
    if (line.empty()) {
      ++empty;
    } else {
      for (; empty; --empty) out += "\r\n";
      out += line;
      out += "\r\n";
    }
    pos = eol + 2;
  }
  return out;
}

std::string relaxed_header(std::string_view field) {
  auto colon = field.find(':');
  if (colon == std::string_view::npos) return squeeze(field);
  auto name = field.substr(0, colon);
  while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
  return lower(name) + ":" + squeeze(field.substr(colon + 1));
}

Result<std::string> sign_relaxed(std::string_view header, std::string_view body, const PrivateKey& key,
                                 std::string_view domain, std::string_view selector,
                                 const std::vector<std::string>& sign_headers, std::uint64_t now) {
  const auto fields = split_fields(header);
  auto wanted = [&](std::string_view name) {
    return std::any_of(sign_headers.begin(), sign_headers.end(), [&](const auto& h) { return iequals(h, name); });
  };
  // h=: the present fields in message order, then each name once more.
  std::vector<std::string> names;
  for (const auto& f : fields)
    if (wanted(f.name)) names.push_back(lower(f.name));
  names.insert(names.end(), sign_headers.begin(), sign_headers.end());

  // §5.4.2: a name listed k times takes its k last instances, bottom up;
  // a name listed more often than present adds nothing (over-signing).
  std::string data;
  std::vector<bool> used(fields.size(), false);
  for (const auto& n : names) {
    for (std::size_t i = fields.size(); i-- > 0;) {
      if (used[i] || !iequals(fields[i].name, n)) continue;
      used[i] = true;
      data += relaxed_header(fields[i].text) + "\r\n";
      break;
    }
  }
  std::string h;
  for (const auto& n : names) h += (h.empty() ? "" : ":") + n;
  std::vector<std::string> tags{"v=1;",
                                "a=" + std::string(signing_algorithm(key.type)) + ";",
                                "c=relaxed/relaxed;",
                                "d=" + std::string(domain) + ";",
                                "s=" + std::string(selector) + ";",
                                "t=" + std::to_string(now) + ";",
                                "bh=" + base64_encode(sha256(relaxed_body(body))) + ";",
                                "h=" + h + ";",
                                "b="};
  // §3.7: the signature field itself, b= empty, canonicalized, no final CRLF.
  const std::string field = fold_tags(tags);
  data += relaxed_header(field);
  auto sig = sign_digest(key, data);
  if (!sig) return sig.error();
  return append_b(field, base64_encode(*sig));
}

}  // namespace moat::filters::dkim
