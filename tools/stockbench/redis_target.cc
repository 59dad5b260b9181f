// Redis as a target: SCRIPT LOAD the decrement script, SET the stock keys, and check at the
// end that initial stock == final stock + units the clients were told OK.
#include <unistd.h>

#include <charconv>

#include "codecs.h"
#include "net.h"
#include "target.h"

namespace stockd::bench {

namespace {

constexpr int kTimeoutMs = 10000;
constexpr size_t kBatch = 1000;  // commands per pipelined round trip

class RedisTarget final : public Target {
 public:
  explicit RedisTarget(const Config& c) : c_(c) {}
  ~RedisTarget() override {
    if (fd_ >= 0) ::close(fd_);
  }

  std::unique_ptr<Codec> make_codec() const override { return make_redis_codec(c_, sha_); }

  Status prepare() override {
    Result<Endpoint> ep = resolve(c_.host, c_.port);
    Result<int> fd = ep.ok() ? open_tcp(*ep, false, kTimeoutMs) : Result<int>(ep.status());
    if (!fd.ok()) return fd.status().context("cannot connect to " + c_.target_url);
    fd_ = *fd;
    const bool order = c_.redis_script == "order";
    Result<std::vector<RespValue>> loaded =
        run({{"SCRIPT", "LOAD", order ? kRedisOrderScript : kRedisDecrementScript}});
    if (!loaded.ok()) return loaded.status();
    if ((*loaded)[0].type != '$') {
      return Status::Refused("SCRIPT LOAD failed: " + (*loaded)[0].text);
    }
    sha_ = (*loaded)[0].text;
    if (c_.seed) {
      std::vector<std::vector<std::string>> sets;
      for (const std::string& s : c_.skus) {
        sets.push_back({"SET", redis_key(s), std::to_string(c_.stock_per_sku())});
      }
      if (Result<std::vector<RespValue>> set = run(sets); !set.ok()) return set.status();
    }
    Result<std::vector<int64_t>> stock = read_stock();
    if (!stock.ok()) return stock.status();
    before_ = std::move(stock).value();
    return Status::Ok();
  }

  Verdict verdict(const Tally& t) override {
    Verdict v;
    v.checks.push_back(answers_check(t));
    Result<std::vector<int64_t>> read = read_stock();
    if (!read.ok()) {
      v.checks.push_back({"read final state", false, read.status().message()});
      return v;
    }
    const std::vector<int64_t>& after = *read;
    Check k{"final stock + OK units == initial stock", true, ""};
    uint64_t units = 0;
    for (size_t i = 0; i < after.size() && k.ok; ++i) {
      const int64_t taken = before_[i] - after[i];
      const auto told = static_cast<int64_t>(t.sold[i]);
      units += t.sold[i];
      if (after[i] < 0 || taken < told || taken > told + static_cast<int64_t>(t.lost_units[i])) {
        k = {k.name, false,
             c_.skus[i] + ": " + std::to_string(before_[i]) + " -> " + std::to_string(after[i]) +
                 ", clients were told " + std::to_string(told) + " units"};
      }
    }
    if (k.ok) k.detail = std::to_string(units) + " units taken, stock balances";
    v.checks.push_back(k);
    return v;
  }

 private:
  // Sends the commands in batches and reads one reply each: the replies, in order, or why not
  // (Io, or Invalid for bytes that are no RESP).
  Result<std::vector<RespValue>> run(const std::vector<std::vector<std::string>>& cmds) {
    std::vector<RespValue> out;
    for (size_t at = 0; at < cmds.size(); at += kBatch) {
      std::string bytes;
      const size_t end = std::min(cmds.size(), at + kBatch);
      for (size_t i = at; i < end; ++i) resp_command(cmds[i], bytes);
      if (Status s = send_all(fd_, bytes); !s.ok()) return s;
      std::string in;
      size_t pos = 0;
      while (out.size() < end) {
        RespValue v;
        size_t used = 0;
        std::string why;
        auto view = std::span(reinterpret_cast<const uint8_t*>(in.data()) + pos, in.size() - pos);
        Take tk = resp_parse(view, v, used, why);
        if (tk == Take::kInvalid) return Status::Invalid("redis: " + why);
        if (tk == Take::kReply) {
          out.push_back(std::move(v)), pos += used;
        } else if (Status s = receive_some(fd_, in); !s.ok()) {
          return std::move(s).context("redis");
        }
      }
    }
    return out;
  }

  // The stock of every SKU, in Config::skus order.
  Result<std::vector<int64_t>> read_stock() {
    std::vector<std::vector<std::string>> gets;
    for (const std::string& s : c_.skus) gets.push_back({"GET", redis_key(s)});
    Result<std::vector<RespValue>> got = run(gets);
    if (!got.ok()) return got.status();
    const std::vector<RespValue>& out = *got;
    std::vector<int64_t> stock(out.size(), 0);
    for (size_t i = 0; i < out.size(); ++i) {
      const std::string& t = out[i].text;
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), stock[i]);
      if (out[i].type != '$' || out[i].integer < 0 || ec != std::errc() ||
          p != t.data() + t.size()) {
        return Status::Refused("redis key " + redis_key(c_.skus[i]) +
                               " holds no stock number (drop --no-seed?)");
      }
    }
    return stock;
  }

  const Config& c_;
  int fd_ = -1;
  std::string sha_;
  std::vector<int64_t> before_;
};

}  // namespace

std::unique_ptr<Target> make_redis_target(const Config& c) {
  return std::make_unique<RedisTarget>(c);
}

}  // namespace stockd::bench
