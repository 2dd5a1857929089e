// See session_base.hpp.
#include "store/session_base.hpp"

#include "common/proto/sasl.hpp"

namespace moat::store {

std::optional<PlainLogin> plain_login(std::string_view response) {
  auto creds = proto::sasl::decode_plain(response);
  if (!creds) return std::nullopt;
  if (!creds->authzid.empty() && creds->authzid != creds->authcid) return std::nullopt;
  return PlainLogin{creds->authcid, creds->password};
}

}  // namespace moat::store
