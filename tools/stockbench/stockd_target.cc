// stockd as a target: seeds SKUs over an admin connection (stockd::Client), and checks the
// server's counters against what the load connections were told.
#include <algorithm>
#include <optional>

#include "codecs.h"
#include "stockd/client.h"
#include "target.h"

namespace stockd::bench {

namespace {

constexpr size_t kBatch = 1000;       // requests per pipelined flush
constexpr size_t kFrameSlack = 1024;  // CODES_LOAD frames stay this far below the limit

using SkuViews = std::vector<std::optional<proto::SkuView>>;

std::string describe(const stockd::Reply<proto::Response>& r) {
  if (!r.transport_ok()) return r.error;
  std::string s = proto::status_name(r.status);
  return r.error.empty() ? s : s + ": " + r.error;
}

// A failed answer as a Status: Io when none came, Refused when the server said no.
Status failure(const stockd::Reply<proto::Response>& r, const std::string& message) {
  return r.transport_ok() ? Status::Refused(message) : Status::Io(message);
}

std::string n(uint64_t v) { return std::to_string(v); }

// Promise 1 at the end of the run: every SKU balances.
Check conservation_check(const Config& c, const SkuViews& after) {
  Check k{"available + held + sold == total", true, n(after.size()) + " SKUs balance"};
  for (size_t i = 0; i < after.size(); ++i) {
    const auto& a = after[i];
    if (!a) return {k.name, false, "SKU " + c.skus[i] + " is gone"};
    if (a->available + a->held + a->sold != a->total) {
      return {k.name, false,
              c.skus[i] + ": " + n(a->available) + " + " + n(a->held) + " + " + n(a->sold) +
                  " != " + n(a->total)};
    }
  }
  return k;
}

// What the clients were told OK is what the server sold: no lost and no phantom sale.
Check sold_check(const Config& c, const SkuViews& before, const SkuViews& after, const Tally& t) {
  Check k{"sold delta == OK units", true, ""};
  uint64_t units = 0, delta_sum = 0, lost = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    const uint64_t delta = after[i]->sold - before[i]->sold;
    units += t.sold[i], delta_sum += delta, lost += t.lost_units[i];
    if (delta < t.sold[i] || delta > t.sold[i] + t.lost_units[i]) {
      return {k.name, false,
              c.skus[i] + ": sold went up by " + n(delta) + ", clients were told " + n(t.sold[i]) +
                  " units (+" + n(t.lost_units[i]) + " unanswered)"};
    }
  }
  k.detail = "sold +" + n(delta_sum) + ", OK answers " + n(units) + " units";
  if (lost > 0) k.detail += " (+" + n(lost) + " unanswered)";
  return k;
}

Check within_check(const Config& c, const SkuViews& before, const Tally& t) {
  Check k{"OK units <= stock at start", true, "no SKU sold more than it had"};
  for (size_t i = 0; i < before.size(); ++i) {
    if (t.sold[i] > before[i]->available + before[i]->held) {
      return {k.name, false,
              c.skus[i] + ": " + n(t.sold[i]) + " units sold, only " + n(before[i]->available) +
                  " were available"};
    }
  }
  return k;
}

// Reserve workloads: holds the clients still own are exactly what the server holds for them.
Check held_check(const Config& c, const SkuViews& before, const SkuViews& after, const Tally& t) {
  Check k{"held delta == open holds", true, ""};
  int64_t open = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    const int64_t delta =
        static_cast<int64_t>(after[i]->held) - static_cast<int64_t>(before[i]->held);
    open += t.held[i];
    if (delta != t.held[i]) {
      return {k.name, false,
              c.skus[i] + ": held changed by " + std::to_string(delta) + ", clients hold " +
                  std::to_string(t.held[i])};
    }
  }
  k.detail = std::to_string(open) + " units still held by the clients";
  return k;
}

class StockdTarget final : public Target {
 public:
  explicit StockdTarget(const Config& c) : c_(c) {}

  std::unique_ptr<Codec> make_codec() const override { return make_stockd_codec(c_); }

  Status prepare() override {
    ClientOptions o;
    o.host = c_.host, o.port = c_.port, o.client_name = "stockbench-admin", o.tls = c_.tls;
    o.role = c_.admin_token.empty() ? c_.role : proto::Role::kAdmin;
    o.token = c_.admin_token.empty() ? c_.token : c_.admin_token;
    client_ = std::make_unique<Client>(o);
    if (Status s = client_->connect(); !s.ok()) return std::move(s).context("admin connection");
    if (c_.seed && o.role != proto::Role::kAdmin) {
      return Status::Invalid(
          "seeding SKUs needs the admin token: --admin-token or STOCKD_ADMIN_TOKEN "
          "(or --no-seed to use existing SKUs)");
    }
    Status err;
    if (c_.seed) err = seed();
    if (err.ok()) err = snapshot(before_);
    for (size_t i = 0; err.ok() && i < before_.size(); ++i) {
      if (!before_[i]) {
        err =
            Status::Refused("SKU " + c_.skus[i] + " does not exist (drop --no-seed to create it)");
      }
    }
    client_->close();  // leaves every connection slot to the load; verdict() reconnects
    return err;
  }

  Verdict verdict(const Tally& t) override;

 private:
  // SKU_GET of every SKU; NOT_FOUND leaves an empty slot. Ok, or the first failed answer.
  Status snapshot(SkuViews& out) {
    out.assign(c_.skus.size(), std::nullopt);
    for (size_t at = 0; at < c_.skus.size(); at += kBatch) {
      const size_t end = std::min(c_.skus.size(), at + kBatch);
      for (size_t i = at; i < end; ++i) {
        client_->queue(proto::Opcode::kSkuGet, proto::SkuReq{c_.skus[i]});
      }
      auto replies = client_->flush();
      for (size_t i = at; i < end; ++i) {
        const auto& r = replies[i - at];
        if (r.ok()) {
          out[i] = std::get<proto::SkuView>(r.body);
        } else if (!r.transport_ok() || r.status != proto::Status::kNotFound) {
          return failure(r, "SKU_GET " + c_.skus[i] + ": " + describe(r));
        }
      }
    }
    return Status::Ok();
  }

  Status seed();
  Status load_codes(size_t sku);
  Status flush_all(const char* what, const std::vector<size_t>& skus);

  const Config& c_;
  std::unique_ptr<Client> client_;
  SkuViews before_;
};

// Flushes the queued admin requests for `skus` (in queue order). Ok or the first refusal.
Status StockdTarget::flush_all(const char* what, const std::vector<size_t>& skus) {
  auto replies = client_->flush();
  for (size_t i = 0; i < replies.size(); ++i) {
    if (replies[i].ok()) continue;
    std::string err = std::string(what) + " " + c_.skus[skus[i]] + ": " + describe(replies[i]);
    if (replies[i].status == proto::Status::kBelowCommitted ||
        replies[i].status == proto::Status::kBadRequest) {
      err +=
          " (this SKU's earlier sales or kind do not fit this run; use fresh ids with "
          "--sku NAME, or --no-seed)";
    }
    return failure(replies[i], err);
  }
  return Status::Ok();
}

// Creates each SKU or sets it up again: no sale window, the per-user limit (when it changes),
// and `stock` units available (plain SKUs: total = held + sold + stock; code pools: `stock`
// more codes).
Status StockdTarget::seed() {
  SkuViews now;
  if (Status s = snapshot(now); !s.ok()) return s;
  const bool codes = c_.uses(Workload::kClaim);
  std::vector<size_t> queued;
  for (size_t i = 0; i < c_.skus.size(); ++i) {
    const auto& v = now[i];
    if (v && (v->flags & proto::kSkuFlagClosed) != 0) {
      return Status::Refused("SKU " + c_.skus[i] +
                             " is closed (SALE_CLOSE is final); use another --sku");
    }
    proto::SkuSetReq r;
    r.sku = c_.skus[i];
    r.mask = proto::kSetOpensAt | proto::kSetClosesAt;
    r.per_user_limit = c_.per_user_limit;
    if (!v || v->per_user_limit != c_.per_user_limit) r.mask |= proto::kSetPerUserLimit;
    if (!codes || !v) r.mask |= proto::kSetTotal;
    if (!codes) r.total = (v ? v->held + v->sold : 0) + c_.stock_per_sku();
    client_->queue(proto::Opcode::kSkuSet, r);
    queued.push_back(i);
    if (queued.size() == kBatch || i + 1 == c_.skus.size()) {
      if (Status s = flush_all("SKU_SET", queued); !s.ok()) return s;
      queued.clear();
    }
  }
  for (size_t i = 0; codes && i < c_.skus.size(); ++i) {
    if (Status s = load_codes(i); !s.ok()) return s;
  }
  return Status::Ok();
}

// Loads stock_per_sku() codes "c<run>-<sku>-<n>", in frames that fit the server's limit.
Status StockdTarget::load_codes(size_t sku) {
  const uint64_t n = c_.stock_per_sku();
  const size_t budget = client_->frame_bytes_max() - kFrameSlack;
  proto::CodesLoadReq r;
  r.sku = c_.skus[sku];
  size_t bytes = 0;
  for (uint64_t k = 0; k < n; ++k) {
    r.codes.push_back("c" + c_.run_id + "-" + c_.skus[sku] + "-" + std::to_string(k));
    bytes += 2 + r.codes.back().size();
    if (bytes + 2 * (proto::kCodeBytesMax + 2) >= budget || k + 1 == n) {
      client_->queue(proto::Opcode::kCodesLoad, r);
      if (Status s = flush_all("CODES_LOAD", {sku}); !s.ok()) return s;
      r.codes.clear();
      bytes = 0;
    }
  }
  return Status::Ok();
}

Verdict StockdTarget::verdict(const Tally& t) {
  Verdict v;
  v.checks.push_back(answers_check(t));
  SkuViews after;
  if (Status s = snapshot(after); !s.ok()) {
    v.checks.push_back({"read final state", false, s.message()});
    return v;
  }
  v.checks.push_back(conservation_check(c_, after));
  if (c_.seed) {
    v.checks.push_back(sold_check(c_, before_, after, t));
    v.checks.push_back(within_check(c_, before_, t));
    if ((c_.uses(Workload::kReserveCommit) || c_.uses(Workload::kReserveRelease) ||
         c_.uses(Workload::kReserveHold)) &&
        t.lost == 0) {
      v.checks.push_back(held_check(c_, before_, after, t));
    }
  }
  add_client_checks(c_, t, v);
  return v;
}

}  // namespace

std::unique_ptr<Target> make_stockd_target(const Config& c) {
  return std::make_unique<StockdTarget>(c);
}

}  // namespace stockd::bench
