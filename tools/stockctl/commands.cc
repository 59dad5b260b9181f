// stockctl commands. See commands.h; exit codes and output shapes are in the README.
#include "commands.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "format.h"
#include "seed.h"

namespace stockd::ctl {

using proto::Status;

std::string admin_hint(const ClientOptions& o, Status s) {
  if (s != Status::kUnauthorized || o.role == proto::Role::kAdmin) return "";
  return " (admin commands need --token-file, --token or STOCKD_TOKEN; a server that requires "
         "a buyers' token takes it with --role buyer)";
}

namespace {

// Prints why the arguments are refused (nothing is sent).
int usage(const stockd::Status& why) {
  std::cerr << why.message() << '\n';
  return kExitUsage;
}

std::string join(const std::string& a, const std::string& b) {
  return a.empty() ? b : b.empty() ? a : a + ": " + b;
}

std::string status_line(Status s, const std::string& detail) {
  return join(proto::status_name(s), detail);
}

std::string server_text(const ClientOptions& o) {
  bool v6 = o.host.find(':') != std::string::npos;
  return (v6 ? "[" + o.host + "]" : o.host) + ":" + std::to_string(o.port);
}

// Prints a reply and returns the exit code. `human` renders an OK body; `reason` explains a
// business status (< 64) in a few words; error statuses print the server's message. `unsure`,
// for a request that running again would apply twice (a RESTOCK, a RESERVE or CLAIM without a
// key), says what to check when no answer came: the server may have applied it.
template <class T, class Human, class Reason>
int finish(const Args& a, const Reply<T>& r, Human human, Reason reason,
           const std::string& unsure = {}) {
  if (!r.transport_ok()) {
    std::cerr << r.error << '\n';
    if (!unsure.empty()) {
      std::cerr << "note: if the request reached the server it may have been applied; before "
                << "running it again, " << unsure << '\n';
    }
    return kExitTransport;
  }
  if (a.json) std::cout << dump(envelope(r)) << '\n';
  if (r.ok()) {
    if (!a.json) std::cout << human(r.body) << '\n';
    return kExitOk;
  }
  std::cerr << status_line(r.status, proto::is_error_status(r.status) ? r.error : reason(r.body))
            << admin_hint(a.client, r.status) << '\n';
  return kExitRefused;
}

// Ok, or Invalid saying why a required/optional text argument is unacceptable.
stockd::Status check_text(const char* what, const std::string& value, size_t max, bool required) {
  if (required && value.empty()) {
    return stockd::Status::Invalid(std::string(what) + " must not be empty");
  }
  if (value.size() > max) {
    return stockd::Status::Invalid(std::string(what) + " is " + std::to_string(value.size()) +
                                   " bytes, at most " + std::to_string(max));
  }
  return stockd::Status::Ok();
}

stockd::Status check_sku_arg(const std::string& sku) {
  stockd::Status s = check_sku(sku);
  return s.ok() ? s : stockd::Status::Invalid("SKU " + quote(sku) + " " + s.message());
}

Result<uint64_t> parse_hold_id(const std::string& text) {
  Result<uint64_t> id = parse_unsigned(text, UINT64_MAX);
  if (!id.ok()) return stockd::Status::Invalid("HOLD " + quote(text) + " " + id.status().message());
  return id;
}

std::string sku_reason(const std::string& sku, const proto::SkuView& v, Status s) {
  if (s == Status::kBelowCommitted && !v.sku.empty()) {
    return "sku " + sku + " has " + std::to_string(v.held + v.sold) + " units held or sold";
  }
  return "sku " + sku;
}

std::string hold_reason(uint64_t id, const proto::HoldView& h, Status s) {
  std::string text = "hold " + std::to_string(id);
  if (s == Status::kAlreadyDone && h.state != proto::HoldState::kNone) {
    text += " is already " + std::string(proto::hold_state_name(h.state));
  }
  return text;
}

std::string reserve_reason(const proto::ReserveReq& req, const proto::ReserveResp& r, Status s) {
  // The SKU of the refused line (failed_line counts from 0, as in the protocol).
  const std::string where = r.failed_line < req.lines.size() ? req.lines[r.failed_line].sku : "";
  switch (s) {
    case Status::kSoldOut:
      return join(where, std::to_string(r.available) + " left");
    case Status::kLimitExceeded:
      return join(where, std::to_string(r.available) + " more allowed for user " + req.user);
    case Status::kKeyConflict:
      return "key " + req.key + " was used for a different request";
    default:
      return where;
  }
}

// `asked`: the state a COMMIT or RELEASE moves the hold to (kNone for a read).
int hold_command(const Args& a, Reply<proto::HoldView> (Client::*call)(uint64_t, std::string_view),
                 proto::HoldState asked = proto::HoldState::kNone) {
  Result<uint64_t> id = parse_hold_id(a.hold);
  if (!id.ok()) return usage(id.status());
  if (stockd::Status e = check_text("--user", a.user, proto::kUserBytesMax, false); !e.ok()) {
    return usage(e);
  }
  Client client(a.client);
  auto r = (client.*call)(*id, a.user);
  // The first send's answer was lost and the resend found the hold already in the state asked
  // for: the first send most likely did it (the Node client's `resent`). Not a refusal.
  if (r.resent && r.status == proto::Status::kAlreadyDone && asked != proto::HoldState::kNone &&
      r.body.state == asked) {
    if (a.json) {
      std::cout << dump(envelope(r)) << '\n';
    } else {
      std::cout << hold_text(r.body) << '\n';
    }
    std::cerr << "note: the first answer was lost and the request was sent again; the hold was "
                 "found "
              << proto::hold_state_name(asked) << " by then (most likely by this command)\n";
    return kExitOk;
  }
  return finish(a, r, hold_text,
                [&](const proto::HoldView& h) { return hold_reason(*id, h, r.status); });
}

int sku_command(const Args& a, const Reply<proto::SkuView>& r, const std::string& unsure = {}) {
  return finish(
      a, r, sku_text, [&](const proto::SkuView& v) { return sku_reason(a.sku, v, r.status); },
      unsure);
}

}  // namespace

int64_t wall_clock_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// ---- Queries ----

int cmd_ping(const Args& a) {
  Client client(a.client);
  auto r = client.ping();  // the first one also connects
  if (r.ok()) {
    const auto t0 = std::chrono::steady_clock::now();
    r = client.ping();
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    if (r.ok()) {
      if (a.json) {
        std::cout << dump(Json{{"status", "OK"}, {"server", server_text(a.client)}, {"rtt_us", us}})
                  << '\n';
      } else {
        std::printf("PONG from %s in %.3f ms\n", server_text(a.client).c_str(), us / 1000.0);
      }
      return kExitOk;
    }
  }
  return finish(
      a, r, [](const proto::PingResp&) { return ""; }, [](const proto::PingResp&) { return ""; });
}

int cmd_sku_get(const Args& a) {
  if (stockd::Status e = check_sku_arg(a.sku); !e.ok()) return usage(e);
  Client client(a.client);
  return sku_command(a, client.sku_get(a.sku));
}

int cmd_sku_list(const Args& a) {
  Client client(a.client);
  Reply<proto::SkuListResp> all;
  all.transport = true;
  all.status = Status::kOk;
  std::string after = a.after;
  for (;;) {
    uint32_t want = proto::kSkuListMax;
    if (a.limit != 0)
      want = std::min<uint32_t>(want, a.limit - static_cast<uint32_t>(all.body.skus.size()));
    if (want == 0) break;
    auto page = client.sku_list(after, want);
    if (!page.ok()) {
      return finish(
          a, page, [](const proto::SkuListResp&) { return ""; },
          [](const proto::SkuListResp&) { return ""; });
    }
    auto& skus = page.body.skus;
    if (skus.empty() || skus.back().sku <= after) break;  // done (or a server making no progress)
    after = skus.back().sku;
    // A page may hold fewer than asked while more follow (it fits the frame): only an empty
    // one ends the list.
    all.body.skus.insert(all.body.skus.end(), std::make_move_iterator(skus.begin()),
                         std::make_move_iterator(skus.end()));
  }
  return finish(
      a, all, [](const proto::SkuListResp& r) { return sku_table(r.skus); },
      [](const proto::SkuListResp&) { return ""; });
}

int cmd_hold_get(const Args& a) { return hold_command(a, &Client::hold_get); }

int cmd_stats(const Args& a) {
  Client client(a.client);
  return finish(a, client.stats(), stats_text, [](const proto::StatsResp&) { return ""; });
}

int cmd_outbox_status(const Args& a) {
  Client client(a.client);
  return finish(a, client.outbox_status(), outbox_text,
                [](const proto::OutboxStatusResp&) { return ""; });
}

// ---- Buying ----

int cmd_reserve(const Args& a) {
  proto::ReserveReq req{a.user, a.key, a.ttl_ms, {}};
  stockd::Status e = check_text("--user", a.user, proto::kUserBytesMax, true);
  if (e.ok()) e = check_text("--key", a.key, proto::kKeyBytesMax, false);
  if (e.ok() && a.items.size() > proto::kReserveLinesMax) {
    e = stockd::Status::Invalid("at most " + std::to_string(proto::kReserveLinesMax) +
                                " SKU[:QTY] lines per reservation");
  }
  for (size_t i = 0; i < a.items.size() && e.ok(); ++i) {
    const std::string& item = a.items[i];
    const size_t colon = item.rfind(':');
    proto::Line line{item.substr(0, colon), 1};
    if (colon != std::string::npos) {
      Result<uint64_t> qty = parse_unsigned(item.substr(colon + 1), UINT32_MAX);
      if (qty.ok() && *qty == 0) qty = stockd::Status::Invalid("must be at least 1");
      if (qty.ok()) {
        line.qty = static_cast<uint32_t>(*qty);
      } else {
        e = stockd::Status::Invalid("quantity in " + quote(item) + " " + qty.status().message());
      }
    }
    if (e.ok()) e = check_sku_arg(line.sku);
    req.lines.push_back(std::move(line));
  }
  if (!e.ok()) return usage(e);
  Client client(a.client);
  auto r = client.reserve(req);
  return finish(
      a, r, reserve_text,
      [&](const proto::ReserveResp& body) { return reserve_reason(req, body, r.status); },
      req.key.empty() ? "check the SKUs' held and sold counts (with a --key a rerun is safe: "
                        "the same key never buys twice)"
                      : "");
}

int cmd_commit(const Args& a) {
  return hold_command(a, &Client::commit, proto::HoldState::kCommitted);
}

int cmd_release(const Args& a) {
  return hold_command(a, &Client::release, proto::HoldState::kReleased);
}

int cmd_claim(const Args& a) {
  stockd::Status e = check_sku_arg(a.sku);
  if (e.ok()) e = check_text("--user", a.user, proto::kUserBytesMax, true);
  if (e.ok()) e = check_text("--key", a.key, proto::kKeyBytesMax, false);
  if (!e.ok()) return usage(e);
  Client client(a.client);
  auto r = client.claim(proto::ClaimReq{a.sku, a.user, a.key});
  return finish(
      a, r, claim_text,
      [&](const proto::ClaimResp& body) {
        switch (r.status) {
          case Status::kSoldOut:
            return a.sku + ": " + std::to_string(body.available) + " left";
          case Status::kLimitExceeded:
            return a.sku + ": user " + a.user + " reached the per-user limit";
          case Status::kKeyConflict:
            return "key " + a.key + " was used for a different request";
          default:
            return a.sku;
        }
      },
      a.key.empty() ? "check `stockctl sku get " + a.sku +
                          "` (its sold count; with a --key a rerun "
                          "is safe: the same key never buys twice)"
                    : std::string());
}

// ---- Admin ----

int cmd_sku_set(const Args& a) {
  proto::SkuSetReq req;
  req.sku = a.sku;
  stockd::Status e = check_sku_arg(a.sku);
  if (e.ok() && a.has_total) {
    Result<uint64_t> n = parse_unsigned(a.total, kTotalMax);
    if (n.ok()) {
      req.total = *n;
    } else {
      e = stockd::Status::Invalid("--total " + quote(a.total) + " " + n.status().message());
    }
    req.mask |= proto::kSetTotal;
  }
  if (e.ok() && a.has_per_user_limit) {
    Result<uint64_t> n = parse_unsigned(a.per_user_limit, UINT32_MAX);
    if (n.ok()) {
      req.per_user_limit = static_cast<uint32_t>(*n);
    } else {
      e = stockd::Status::Invalid("--per-user-limit " + quote(a.per_user_limit) + " " +
                                  n.status().message());
    }
    req.mask |= proto::kSetPerUserLimit;
  }
  const int64_t now = wall_clock_ms();
  for (auto [given, text, flag, bit, out] :
       {std::tuple{a.has_opens_at, &a.opens_at, "--opens-at", proto::kSetOpensAt, &req.opens_at_ms},
        std::tuple{a.has_closes_at, &a.closes_at, "--closes-at", proto::kSetClosesAt,
                   &req.closes_at_ms}}) {
    if (!e.ok() || !given) continue;
    Result<int64_t> t = parse_time(*text, now);
    if (t.ok()) {
      *out = *t;
    } else {
      e = t.status().context(flag);
    }
    req.mask |= bit;
  }
  if (e.ok() && a.has_opens_at && a.has_closes_at && req.opens_at_ms != 0 &&
      req.closes_at_ms != 0 && req.closes_at_ms <= req.opens_at_ms) {
    e = stockd::Status::Invalid("--closes-at must be after --opens-at");
  }
  if (!e.ok()) return usage(e);
  Client client(a.client);
  return sku_command(a, client.sku_set(req));
}

int cmd_sku_close(const Args& a) {
  if (stockd::Status e = check_sku_arg(a.sku); !e.ok()) return usage(e);
  Client client(a.client);
  return sku_command(a, client.sale_close(a.sku));
}

int cmd_restock(const Args& a) {
  if (stockd::Status e = check_sku_arg(a.sku); !e.ok()) return usage(e);
  Result<int64_t> delta = parse_signed(a.delta);
  if (!delta.ok()) {
    return usage(
        stockd::Status::Invalid("DELTA " + quote(a.delta) + " " + delta.status().message()));
  }
  Client client(a.client);
  return sku_command(a, client.restock(a.sku, *delta),
                     "check `stockctl sku get " + a.sku + "` (its total)");
}

}  // namespace stockd::ctl
