// Process-wide counters and gauges, rendered in the Prometheus text format
// (exposition format 0.0.4) for the web server's /metrics and `moatctl stats`.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace moat::metrics {

class Counter {
 public:
  void inc(std::uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return v_.load(std::memory_order_relaxed); }
 private:
  std::atomic<std::uint64_t> v_{0};
};

class Gauge {
 public:
  void add(std::int64_t n) { v_.fetch_add(n, std::memory_order_relaxed); }
  void set(std::int64_t n) { v_.store(n, std::memory_order_relaxed); }
  std::int64_t value() const { return v_.load(std::memory_order_relaxed); }
 private:
  std::atomic<std::int64_t> v_{0};
};

// Fixed buckets in seconds, enough for delivery latency.
class Histogram {
 public:
  void observe(double seconds);
  std::string render(std::string_view name, std::string_view labels) const;
 private:
  static constexpr double kBounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
  static constexpr std::size_t kN = sizeof(kBounds) / sizeof(kBounds[0]);
  std::atomic<std::uint64_t> buckets_[kN + 1]{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_us_{0};
};

// name: "moat_smtp_connections_total"; labels: `outcome="accepted"` or empty.
// Returned references live for the process; look them up once and keep them.
Counter& counter(std::string_view name, std::string_view labels = {}, std::string_view help = {});
Gauge& gauge(std::string_view name, std::string_view labels = {}, std::string_view help = {});
Histogram& histogram(std::string_view name, std::string_view labels = {}, std::string_view help = {});

std::string render();

}  // namespace moat::metrics
