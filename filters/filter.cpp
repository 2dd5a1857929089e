// Small out-of-line pieces of the filter interface (filter.hpp).
#include "filters/filter.hpp"

namespace moat::filters {

bool ScanContext::has(std::string_view name) const {
  for (const auto& s : symbols)
    if (s.name == name) return true;
  return false;
}

const AuthResult* ScanContext::auth_result(std::string_view method) const {
  for (const auto& r : auth)
    if (r.method == method) return &r;
  return nullptr;
}

std::string_view action_name(Action a) {
  switch (a) {
    case Action::Accept: return "accept";
    case Action::Tag: return "tag";
    case Action::Quarantine: return "quarantine";
    case Action::TempFail: return "tempfail";
    case Action::Reject: return "reject";
    case Action::Discard: return "discard";
  }
  return "unknown";
}

DataTap* ScanContext::tap(const Filter* owner) const {
  for (const auto& [f, t] : taps_)
    if (f == owner) return t.get();
  return nullptr;
}

const mime::Message& ScanContext::mime() {
  if (!parsed_) parsed_ = std::make_shared<const mime::Message>(mime::parse(message));
  return *parsed_;
}

const std::string& ScanContext::part_text(std::size_t part) {
  if (auto it = texts_.find(part); it != texts_.end()) return it->second;
  const auto& tree = mime();
  std::string text = part < tree.parts.size() ? mime::part_text(message, tree.parts[part]).data : std::string();
  return texts_.emplace(part, std::move(text)).first->second;
}

}  // namespace moat::filters
