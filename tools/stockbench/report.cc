// The end-of-run report. See report.h.
#include "report.h"

#include <cstdio>

namespace stockd::bench {

namespace {

double us(uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

double round1(double v) { return static_cast<double>(static_cast<int64_t>(v * 10 + 0.5)) / 10; }

double per_second(const RunResult& r) {
  return r.elapsed_s > 0 ? static_cast<double>(r.tally.answered) / r.elapsed_s : 0;
}

std::string mode_text(const Config& c) {
  if (!c.stages.empty()) return "open loop, stages";
  if (c.rate > 0) return "open loop, " + std::to_string(static_cast<uint64_t>(c.rate)) + " req/s";
  return "closed loop";
}

}  // namespace

nlohmann::json report_json(const Config& c, const RunResult& r, const Verdict& v) {
  const Tally& t = r.tally;
  nlohmann::json statuses = nlohmann::json::object(), errors = nlohmann::json::object();
  for (uint16_t s = 0; s < t.by_status.size(); ++s) {
    if (t.by_status[s] == 0) continue;
    statuses[status_text(s)] = t.by_status[s];
    if (s >= kStatusErrorMin) errors[status_text(s)] = t.by_status[s];
  }
  if (t.lost > 0) errors["UNANSWERED"] = t.lost;
  nlohmann::json checks = nlohmann::json::array();
  for (const Check& k : v.checks)
    checks.push_back({{"name", k.name}, {"ok", k.ok}, {"detail", k.detail}});
  const Histogram& h = t.latency;
  return {
      {"target", c.target_url},
      {"target_kind", c.target == TargetKind::kRedis ? "redis" : "stockd"},
      {"workload", workload_name(c.workload)},
      {"mode", mode_text(c)},
      {"connections", c.connections},
      {"pipeline", c.pipeline},
      {"threads", c.threads},
      {"skus", c.skus.size()},
      {"elapsed_s", round1(r.elapsed_s * 100) / 100},
      {"requests_per_sec", round1(per_second(r))},
      {"total", t.answered},
      {"sent", t.sent},
      {"ok", t.status(kStatusOk)},
      {"sold_out", t.status(kStatusSoldOut)},
      {"statuses", statuses},
      {"errors", errors},
      {"unanswered", t.lost},
      {"dropped", t.dropped},
      {"disconnects", t.disconnects},
      {"latency_us",
       {{"p50", round1(us(h.percentile(50)))},
        {"p90", round1(us(h.percentile(90)))},
        {"p99", round1(us(h.percentile(99)))},
        {"p999", round1(us(h.percentile(99.9)))},
        {"max", round1(us(h.max()))},
        {"mean", round1(h.mean() / 1000.0)}}},
      {"verdict", {{"ok", v.ok()}, {"checks", checks}}},
  };
}

void print_table(const Config& c, const RunResult& r, const Verdict& v) {
  const Tally& t = r.tally;
  const Histogram& h = t.latency;
  std::printf("target       %s (%s)\n", c.target_url.c_str(),
              c.target == TargetKind::kRedis ? "redis" : "stockd");
  std::printf("workload     %s, %zu SKU%s, %u connections x pipeline %u, %u thread%s, %s\n",
              workload_name(c.workload), c.skus.size(), c.skus.size() == 1 ? "" : "s",
              c.connections, c.pipeline, c.threads, c.threads == 1 ? "" : "s",
              mode_text(c).c_str());
  std::printf("throughput   %.0f req/s (%llu answers in %.2f s)\n", per_second(r),
              static_cast<unsigned long long>(t.answered), r.elapsed_s);
  std::printf("latency us   p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
              us(h.percentile(50)), us(h.percentile(90)), us(h.percentile(99)),
              us(h.percentile(99.9)), us(h.max()));
  std::printf("answers     ");
  for (uint16_t s = 0; s < t.by_status.size(); ++s) {
    if (t.by_status[s] != 0) {
      std::printf(" %s %llu", status_text(s).c_str(),
                  static_cast<unsigned long long>(t.by_status[s]));
    }
  }
  std::printf("\n");
  if (t.lost + t.dropped + t.disconnects > 0) {
    std::printf(
        "trouble      %llu unanswered, %llu dropped (open loop backlog), %llu disconnects\n",
        static_cast<unsigned long long>(t.lost), static_cast<unsigned long long>(t.dropped),
        static_cast<unsigned long long>(t.disconnects));
  }
  if (!t.first_error.empty()) std::printf("first error  %s\n", t.first_error.c_str());
  std::printf("verdict      %s\n", v.ok() ? "OK" : "FAILED");
  for (const Check& k : v.checks) {
    std::printf("  [%s] %s: %s\n", k.ok ? "ok" : "FAIL", k.name.c_str(), k.detail.c_str());
  }
}

}  // namespace stockd::bench
