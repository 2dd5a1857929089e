// See metrics.hpp. A registry keyed by (name, labels); entries are never
// removed, so references handed out stay valid.
#include "common/metrics.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <variant>

namespace moat::metrics {
namespace {

struct Entry {
  std::string help;
  std::string type;
  std::variant<std::unique_ptr<Counter>, std::unique_ptr<Gauge>, std::unique_ptr<Histogram>> m;
};

std::mutex g_mu;
std::map<std::pair<std::string, std::string>, Entry>& registry() {
  static auto* r = new std::map<std::pair<std::string, std::string>, Entry>;
  return *r;
}

template <class T>
T& get(std::string_view name, std::string_view labels, std::string_view help, const char* type) {
  std::lock_guard lk(g_mu);
  auto& e = registry()[{std::string(name), std::string(labels)}];
  if (e.type.empty()) {
    e.type = type;
    e.help = std::string(help);
    e.m = std::make_unique<T>();
  }
  return *std::get<std::unique_ptr<T>>(e.m);
}

std::string with_labels(std::string_view name, std::string_view labels, std::string_view extra = {}) {
  std::string s(name);
  if (labels.empty() && extra.empty()) return s;
  s += '{';
  s += labels;
  if (!labels.empty() && !extra.empty()) s += ',';
  s += extra;
  s += '}';
  return s;
}

}  // namespace

void Histogram::observe(double seconds) {
  std::size_t i = 0;
  while (i < kN && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(std::uint64_t(seconds * 1e6), std::memory_order_relaxed);
}

std::string Histogram::render(std::string_view name, std::string_view labels) const {
  std::string out;
  std::uint64_t cum = 0;
  std::string bucket = std::string(name) + "_bucket";
  for (std::size_t i = 0; i <= kN; ++i) {
    cum += buckets_[i].load(std::memory_order_relaxed);
    std::string le = i < kN ? std::to_string(kBounds[i]) : "+Inf";
    if (i < kN) le.erase(le.find_last_not_of('0') + 1), le.back() == '.' ? le.pop_back() : void();
    out += with_labels(bucket, labels, "le=\"" + le + "\"") + ' ' + std::to_string(cum) + '\n';
  }
  out += with_labels(std::string(name) + "_sum", labels) + ' ' +
         std::to_string(double(sum_us_.load()) / 1e6) + '\n';
  out += with_labels(std::string(name) + "_count", labels) + ' ' + std::to_string(count_.load()) + '\n';
  return out;
}

Counter& counter(std::string_view n, std::string_view l, std::string_view h) { return get<Counter>(n, l, h, "counter"); }
Gauge& gauge(std::string_view n, std::string_view l, std::string_view h) { return get<Gauge>(n, l, h, "gauge"); }
Histogram& histogram(std::string_view n, std::string_view l, std::string_view h) {
  return get<Histogram>(n, l, h, "histogram");
}

std::string render() {
  std::lock_guard lk(g_mu);
  std::string out;
  std::string last;
  for (const auto& [key, e] : registry()) {
    const auto& [name, labels] = key;
    if (name != last) {
      if (!e.help.empty()) out += "# HELP " + name + ' ' + e.help + '\n';
      out += "# TYPE " + name + ' ' + e.type + '\n';
      last = name;
    }
    if (auto* c = std::get_if<std::unique_ptr<Counter>>(&e.m))
      out += with_labels(name, labels) + ' ' + std::to_string((*c)->value()) + '\n';
    else if (auto* g = std::get_if<std::unique_ptr<Gauge>>(&e.m))
      out += with_labels(name, labels) + ' ' + std::to_string((*g)->value()) + '\n';
    else
      out += std::get<std::unique_ptr<Histogram>>(e.m)->render(name, labels);
  }
  return out;
}

}  // namespace moat::metrics
