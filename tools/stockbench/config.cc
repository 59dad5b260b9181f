// stockbench command line: CLI11 into Config, then one validation pass.
#include "config.h"

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>

#include "stockd/endpoint.h"
#include "stockd/protocol.h"
#include "stockd/secret_file.h"
#include "stockd/tls_flags.h"

namespace stockd::bench {

namespace {

const std::map<std::string, Workload> kWorkloads = {{"buy-now", Workload::kBuyNow},
                                                    {"reserve-commit", Workload::kReserveCommit},
                                                    {"reserve-release", Workload::kReserveRelease},
                                                    {"reserve", Workload::kReserveHold},
                                                    {"claim", Workload::kClaim},
                                                    {"query", Workload::kQuery},
                                                    {"mixed", Workload::kMixed}};

constexpr std::string_view kDefaultMix = "buy-now=70,reserve-commit=10,reserve-release=10,query=10";

bool parse_double(std::string_view text, double& out) {
  if (text.empty()) return false;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && p == end && std::isfinite(out);
}

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  while (true) {
    size_t at = text.find(sep);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

// A token from a file (stockd/secret_file.h). Ok or why not.
Status read_token_file(const std::string& flag, const std::string& path, std::string& token) {
  std::string warning;
  Status s = stockd::read_secret_file(path, token, warning, stockd::proto::kTokenBytesMax);
  if (!warning.empty())
    std::fprintf(stderr, "stockbench: warning: %s: %s\n", flag.c_str(), warning.c_str());
  return std::move(s).context(flag);
}

std::string random_run_id() {
  std::random_device rd;
  static constexpr char kAlphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string id;
  for (int i = 0; i < 6; ++i) id += kAlphabet[rd() % 36];
  return id;
}

const char* kFooter =
    R"(Closed loop (default): every connection keeps --pipeline requests in flight.
Open loop: --rate R or --stages 5s:300,10s:1000 (k6-style linear ramps from the previous
target, 0 before the first); latency counts from the scheduled send time (coordinated
omission), so a server that falls behind shows it in p99.
Exit codes: 0 done and verdict ok; 1 verdict failed; 2 bad arguments or setup failed;
3 the load connections could not be opened.)";

void add_load_options(CLI::App& app, Config& c, std::string& duration, std::string& stages) {
  app.add_option("--connections,-c", c.connections,
                 "connections to open (1.." + std::to_string(kConnectionsMax) + ")")
      ->capture_default_str();
  app.add_option("--pipeline,-p", c.pipeline, "requests in flight per connection")
      ->capture_default_str();
  app.add_option("--threads", c.threads, "event-loop threads driving the connections")
      ->capture_default_str();
  app.add_option("--duration,-d", duration, "how long to run: 10s, 500ms, 2m")
      ->capture_default_str();
  app.add_option("--requests,-n", c.requests, "stop after this many operations instead");
  app.add_option("--rate", c.rate, "open loop: operations per second (over --duration)");
  app.add_option("--stages", stages, "open loop: ramps DURATION:RATE,... (k6 style)");
  app.add_option("--drain", c.drain_s, "seconds to wait for answers in flight at the end")
      ->capture_default_str();
  app.add_option("--connect-timeout", c.connect_timeout_s, "seconds to open all connections")
      ->capture_default_str();
}

void add_workload_options(CLI::App& app, Config& c, std::string& workload, std::string& mix,
                          std::string& sku, uint64_t& skus, std::string& prefix) {
  app.add_option("--workload,-w", workload,
                 "buy-now, reserve, reserve-commit, reserve-release, claim, query or mixed "
                 "(reserve leaves its holds live until --hold-ttl-ms)")
      ->capture_default_str();
  app.add_option("--mix", mix, "mixed workload weights")->capture_default_str();
  app.add_option("--sku", sku, "one SKU id for every operation")->capture_default_str();
  app.add_option("--skus", skus, "use SKUs sku-0 .. sku-N-1 instead of --sku");
  app.add_option("--sku-prefix", prefix, "SKU id prefix with --skus")->capture_default_str();
  app.add_option("--zipf", c.zipf, "skew of SKU choice (0 = uniform, 1 = classic Zipf)")
      ->capture_default_str();
  app.add_option("--stock", c.stock,
                 "units (claim: codes) per SKU to seed; default: never sells out");
  app.add_option("--per-user-limit", c.per_user_limit, "units one user may buy per SKU (0 = none)")
      ->capture_default_str();
  app.add_option("--users", c.users, "distinct buyer ids")->capture_default_str();
  app.add_option("--qty", c.qty, "units per buy-now / reserve")->capture_default_str();
  app.add_option("--hold-ttl-ms", c.hold_ttl_ms, "hold TTL of reserve-* workloads")
      ->capture_default_str();
  app.add_option("--retry-rate", c.retry_rate,
                 "fraction of requests re-sent with the same idempotency key")
      ->capture_default_str();
  app.add_flag("!--no-keys", c.keys, "send RESERVE / CLAIM without idempotency keys");
  app.add_option("--redis-script", c.redis_script,
                 "Redis buy-now script: decrement (the bare Lua decrement) or order (also checks "
                 "and keeps the idempotency key, writes an order hash and an outbox stream entry)")
      ->check(CLI::IsMember({"decrement", "order"}))
      ->capture_default_str();
  app.add_flag("!--no-seed", c.seed, "use the SKUs as they are (no SKU_SET / CODES_LOAD)");
}

}  // namespace

const char* workload_name(Workload w) {
  for (const auto& [name, value] : kWorkloads) {
    if (value == w) return name.c_str();
  }
  return "?";
}

bool Config::uses(Workload w) const {
  if (workload == w) return true;
  if (workload != Workload::kMixed) return false;
  for (const MixEntry& e : mix) {
    if (e.workload == w && e.weight > 0) return true;
  }
  return false;
}

uint64_t Config::stock_per_sku() const {
  if (stock > 0) return stock;
  return uses(Workload::kClaim) ? kDefaultClaimCodes : kHugeStock;
}

bool parse_duration(std::string_view text, double& seconds) {
  double scale = 1;
  if (text.ends_with("ms")) {
    scale = 0.001, text.remove_suffix(2);
  } else if (text.ends_with("s")) {
    text.remove_suffix(1);
  } else if (text.ends_with("m")) {
    scale = 60, text.remove_suffix(1);
  } else if (text.ends_with("h")) {
    scale = 3600, text.remove_suffix(1);
  }
  double v = 0;
  if (!parse_double(text, v) || v < 0) return false;
  seconds = v * scale;
  return true;
}

Result<std::vector<Stage>> parse_stages(std::string_view text) {
  std::vector<Stage> out;
  for (std::string_view part : split(text, ',')) {
    size_t colon = part.find(':');
    Stage s;
    if (colon == std::string_view::npos || !parse_duration(part.substr(0, colon), s.seconds) ||
        !parse_double(part.substr(colon + 1), s.rate) || s.rate < 0) {
      return Status::Invalid("stage '" + std::string(part) +
                             "' is not DURATION:RATE (like 10s:1000)");
    }
    out.push_back(s);
  }
  return out;
}

Result<std::vector<MixEntry>> parse_mix(std::string_view text) {
  std::vector<MixEntry> out;
  for (std::string_view part : split(text, ',')) {
    size_t eq = part.find('=');
    auto it = kWorkloads.find(std::string(part.substr(0, eq)));
    MixEntry e;
    if (eq == std::string_view::npos || it == kWorkloads.end() || it->second == Workload::kMixed ||
        !parse_double(part.substr(eq + 1), e.weight) || e.weight < 0) {
      return Status::Invalid("mix entry '" + std::string(part) +
                             "' is not WORKLOAD=WEIGHT (like buy-now=70)");
    }
    e.workload = it->second;
    out.push_back(e);
  }
  return out;
}

Status parse_target(std::string_view text, Config& c) {
  c.target_url = std::string(text);
  c.target = TargetKind::kStockd;
  if (text.starts_with("redis://")) {
    c.target = TargetKind::kRedis;
    text.remove_prefix(8);
  } else if (text.starts_with("stockd://")) {
    text.remove_prefix(9);
  } else if (text.find("://") != std::string_view::npos) {
    return Status::Invalid("unknown target '" + c.target_url +
                           "' (use stockd://HOST:PORT or redis://HOST:PORT)");
  }
  if (!text.empty() && text.back() == '/') text.remove_suffix(1);
  return parse_host_port(text, c.host, c.port).context("bad target '" + c.target_url + "'");
}

Status validate(const Config& c) {
  if (c.connections < 1 || c.connections > kConnectionsMax)
    return Status::Invalid("--connections must be 1.." + std::to_string(kConnectionsMax));
  if (c.pipeline < 1 || c.pipeline > kPipelineMax)
    return Status::Invalid("--pipeline must be 1.." + std::to_string(kPipelineMax));
  if (c.threads < 1 || c.threads > kThreadsMax || c.threads > c.connections)
    return Status::Invalid("--threads must be 1.." + std::to_string(kThreadsMax) +
                           " and at most --connections");
  if (c.duration_s <= 0 && c.requests == 0) return Status::Invalid("--duration must be above 0");
  if (c.rate < 0) return Status::Invalid("--rate must not be negative");
  if (c.rate > 0 && !c.stages.empty()) return Status::Invalid("give --rate or --stages, not both");
  if (c.skus.empty() || c.skus.size() > kSkusMax)
    return Status::Invalid("--skus must be 1.." + std::to_string(kSkusMax));
  for (const std::string& s : c.skus) {
    if (s.empty() || s.size() > proto::kSkuBytesMax)
      return Status::Invalid("SKU ids must be 1.." + std::to_string(proto::kSkuBytesMax) +
                             " bytes");
  }
  if (c.zipf < 0) return Status::Invalid("--zipf must not be negative");
  if (c.users < 1 || c.users > kUsersMax)
    return Status::Invalid("--users must be 1.." + std::to_string(kUsersMax));
  if (c.qty < 1) return Status::Invalid("--qty must be at least 1");
  if (c.hold_ttl_ms < 1 || c.hold_ttl_ms > proto::kHoldTtlMsMax)
    return Status::Invalid("--hold-ttl-ms must be 1.." + std::to_string(proto::kHoldTtlMsMax));
  if (c.retry_rate < 0 || c.retry_rate > 1) return Status::Invalid("--retry-rate must be 0..1");
  if (c.retry_rate > 0 && !c.keys)
    return Status::Invalid("--retry-rate needs idempotency keys (drop --no-keys)");
  if (c.redis_script == "order" && !c.keys)
    return Status::Invalid("--redis-script order needs idempotency keys");
  if (c.uses(Workload::kClaim) && c.qty != 1)
    return Status::Invalid("claim takes one code at a time (--qty 1)");
  if (c.workload == Workload::kMixed) {
    double sum = 0;
    for (const MixEntry& e : c.mix) sum += e.weight;
    if (sum <= 0) return Status::Invalid("--mix needs at least one weight above 0");
  }
  if (c.workload == Workload::kMixed && c.uses(Workload::kClaim))
    return Status::Invalid(
        "claim cannot be mixed (code-pool SKUs only sell by claim); run it alone");
  if (c.target == TargetKind::kRedis) {
    if (c.workload != Workload::kBuyNow && c.workload != Workload::kQuery)
      return Status::Invalid("redis targets run buy-now and query only");
    if (c.retry_rate > 0 || c.per_user_limit > 0)
      return Status::Invalid("redis targets have no idempotency keys or per-user limits");
  }
  return Status::Ok();
}

int parse_args(int argc, char** argv, Config& c) {
  CLI::App app{"stockbench: flash-sale load simulator for stockd (and Redis, like for like)"};
  app.footer(kFooter);
  std::string server = "127.0.0.1:7070", target, role = "buyer", duration = "10s", stages;
  std::string workload = "buy-now", mix(kDefaultMix), sku = "hot", prefix = "sku-";
  uint64_t skus = 0;
  if (const char* env = std::getenv("STOCKD_ADMIN_TOKEN")) c.admin_token = env;
  app.add_option("--server,-s", server, "stockd HOST:PORT")->capture_default_str();
  app.add_option("--target", target,
                 "stockd://HOST:PORT or redis://HOST:PORT (overrides --server)");
  std::string token_file, admin_token_file;
  if (const char* env = std::getenv("STOCKD_ADMIN_TOKEN_FILE")) admin_token_file = env;
  app.add_option("--token,-t", c.token, "token of the load connections' HELLO");
  add_tls_flags(app, c.tls);
  app.add_option("--token-file", token_file, "read --token from this file");
  app.add_option("--role", role, "role of the load connections: buyer or admin")
      ->check(CLI::IsMember({"buyer", "admin"}))
      ->capture_default_str();
  app.add_option(
      "--admin-token", c.admin_token,
      "admin token for seeding (env STOCKD_ADMIN_TOKEN; default: --token with --role admin)");
  app.add_option("--admin-token-file", admin_token_file,
                 "read --admin-token from this file (env STOCKD_ADMIN_TOKEN_FILE)");
  add_load_options(app, c, duration, stages);
  add_workload_options(app, c, workload, mix, sku, skus, prefix);
  app.add_flag("--json", c.json, "print one JSON object instead of the table");
  app.add_flag("!--no-progress", c.progress, "no live progress line on stderr");
  app.add_option("--seed", c.rng_seed, "random seed (0 = random)")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  Status err = parse_target(target.empty() ? server : target, c);
  if (err.ok() && !token_file.empty()) {
    err = !c.token.empty() ? Status::Invalid("--token and --token-file are both given: use one")
                           : read_token_file("--token-file", token_file, c.token);
  }
  if (err.ok() && !admin_token_file.empty()) {
    err = !c.admin_token.empty()
              ? Status::Invalid(
                    "--admin-token (or STOCKD_ADMIN_TOKEN) and --admin-token-file "
                    "(or STOCKD_ADMIN_TOKEN_FILE) are both given: use one")
              : read_token_file("--admin-token-file", admin_token_file, c.admin_token);
  }
  imply_tls(c.tls);
  if (err.ok() && c.tls.enabled && c.target != TargetKind::kStockd) {
    err = Status::Invalid("--tls is for stockd targets (redis-server here speaks plain text)");
  }
  c.role = role == "admin" ? proto::Role::kAdmin : proto::Role::kBuyer;
  if (c.admin_token.empty() && c.role == proto::Role::kAdmin) c.admin_token = c.token;
  if (err.ok() && !parse_duration(duration, c.duration_s)) {
    err = Status::Invalid("bad --duration " + duration);
  }
  if (err.ok() && !stages.empty()) {
    Result<std::vector<Stage>> parsed = parse_stages(stages);
    if (parsed.ok()) c.stages = std::move(parsed).value();
    err = parsed.status();
  }
  auto w = kWorkloads.find(workload);
  if (err.ok() && w == kWorkloads.end()) err = Status::Invalid("unknown --workload " + workload);
  if (err.ok()) c.workload = w->second;
  if (err.ok() && c.workload == Workload::kMixed) {
    Result<std::vector<MixEntry>> parsed = parse_mix(mix);
    if (parsed.ok()) c.mix = std::move(parsed).value();
    err = parsed.status();
  }
  c.skus.clear();
  if (skus == 0) c.skus.push_back(sku);
  for (uint64_t i = 0; i < skus && i <= kSkusMax; ++i) c.skus.push_back(prefix + std::to_string(i));
  c.skus_numbered = skus > 0;
  c.sku_prefix = prefix;
  if (c.run_id.empty()) c.run_id = random_run_id();
  if (err.ok()) err = validate(c);
  if (!err.ok()) {
    std::fprintf(stderr, "stockbench: %s\n", err.message().c_str());
    return 2;
  }
  return -1;
}

}  // namespace stockd::bench
