// Redis RESP2 for stockbench: the same workload as EVALSHA of a "decrement if enough" script.
#include <charconv>
#include <utility>

#include "codecs.h"

namespace stockd::bench {

namespace {

constexpr int kArrayDepthMax = 8;
constexpr int64_t kBulkBytesMax = 512LL * 1024 * 1024;  // Redis's own proto-max-bulk-len

// Finds the CRLF-terminated line at in[pos..]; npos if not complete yet.
size_t line_end(std::span<const uint8_t> in, size_t pos) {
  for (size_t i = pos; i + 1 < in.size(); ++i) {
    if (in[i] == '\r' && in[i + 1] == '\n') return i;
  }
  return std::string::npos;
}

Take parse_at(std::span<const uint8_t> in, size_t& pos, RespValue& v, int depth, std::string& why) {
  if (pos >= in.size()) return Take::kNeedMore;
  size_t end = line_end(in, pos + 1);
  if (end == std::string::npos) return Take::kNeedMore;
  v.type = static_cast<char>(in[pos]);
  const char* first = reinterpret_cast<const char*>(in.data() + pos + 1);
  const char* last = reinterpret_cast<const char*>(in.data() + end);
  switch (v.type) {
    case '+':
    case '-':
      v.text.assign(first, last);
      pos = end + 2;
      return Take::kReply;
    case ':':
    case '$':
    case '*':
      break;
    default:
      why = "not a RESP reply (first byte " + std::to_string(in[pos]) + ")";
      return Take::kInvalid;
  }
  auto [p, ec] = std::from_chars(first, last, v.integer);
  if (ec != std::errc() || p != last || v.integer < -1 || v.integer > kBulkBytesMax) {
    why = "bad RESP number";
    return Take::kInvalid;
  }
  pos = end + 2;
  if (v.type == ':' || v.integer < 0) return Take::kReply;
  if (v.type == '$') {
    const size_t n = static_cast<size_t>(v.integer);
    if (in.size() < pos + n + 2) return Take::kNeedMore;
    v.text.assign(reinterpret_cast<const char*>(in.data() + pos), n);
    pos += n + 2;
    return Take::kReply;
  }
  if (depth >= kArrayDepthMax) {
    why = "RESP arrays nested too deep";
    return Take::kInvalid;
  }
  RespValue item;
  for (int64_t i = 0; i < v.integer; ++i) {
    Take t = parse_at(in, pos, item, depth + 1, why);
    if (t != Take::kReply) return t;
  }
  return Take::kReply;
}

class RedisCodec final : public Codec {
 public:
  RedisCodec(const Config& c, std::string sha)
      : c_(c), sha_(std::move(sha)), order_(c.redis_script == "order") {
    for (const std::string& s : c.skus) keys_.push_back(redis_key(s));
  }

  void encode(const Op& op, uint32_t, std::string& out) override {
    switch (op.kind) {
      case OpKind::kHello:
        resp_command({"PING"}, out);
        return;
      case OpKind::kQuery:
        resp_command({"GET", keys_[op.sku]}, out);
        return;
      default:
        if (order_) {
          resp_command({"EVALSHA", sha_, "1", keys_[op.sku], std::to_string(op.qty),
                        key_text(c_, op.key), user_text(c_, op.user)},
                       out);
        } else {
          resp_command({"EVALSHA", sha_, "1", keys_[op.sku], std::to_string(op.qty)}, out);
        }
    }
  }

  Take take(std::span<const uint8_t> in, const Op& op, uint32_t, Reply& reply, size_t& consumed,
            std::string& why) override {
    RespValue v;
    size_t pos = 0;
    Take t = parse_at(in, pos, v, 0, why);
    if (t != Take::kReply) return t;
    consumed = pos;
    if (v.type == '-') {
      reply.status = kRedisError;
      reply.message = v.text;
    } else if (op.kind == OpKind::kBuyNow) {
      if (v.type != ':') {
        why = "EVALSHA answered type " + std::string(1, v.type) + ", expected an integer";
        return Take::kInvalid;
      }
      reply.status = v.integer == 1 ? kStatusOk : kStatusSoldOut;
    } else {
      reply.status = kStatusOk;  // PING / GET
    }
    return Take::kReply;
  }

 private:
  const Config& c_;
  std::string sha_;
  bool order_;
  std::vector<std::string> keys_;
};

}  // namespace

const char* const kRedisDecrementScript =
    "local v = tonumber(redis.call('GET', KEYS[1]) or '0'); "
    "if v >= tonumber(ARGV[1]) then redis.call('DECRBY', KEYS[1], ARGV[1]); return 1 "
    "else return 0 end";

const char* const kRedisOrderScript =
    "local k = 'stockbench:idem:' .. ARGV[2]; "
    "local prev = redis.call('GET', k); "
    "if prev then return tonumber(prev) end; "
    "local v = tonumber(redis.call('GET', KEYS[1]) or '0'); "
    "local ok = 0; "
    "if v >= tonumber(ARGV[1]) then "
    "  redis.call('DECRBY', KEYS[1], ARGV[1]); "
    "  local id = redis.call('INCR', 'stockbench:order-seq'); "
    "  redis.call('HSET', 'stockbench:order:' .. id, 'user', ARGV[3], 'sku', KEYS[1], "
    "             'qty', ARGV[1], 'key', ARGV[2]); "
    "  redis.call('XADD', 'stockbench:outbox', '*', 'order', id); "
    "  redis.call('SET', k, 1, 'EX', 86400); "
    "  ok = 1 "
    "end; "
    "return ok";

std::string redis_key(const std::string& sku) { return "stockbench:" + sku; }

void resp_command(const std::vector<std::string>& args, std::string& out) {
  out += '*';
  out += std::to_string(args.size());
  out += "\r\n";
  for (const std::string& a : args) {
    out += '$';
    out += std::to_string(a.size());
    out += "\r\n";
    out += a;
    out += "\r\n";
  }
}

Take resp_parse(std::span<const uint8_t> in, RespValue& v, size_t& consumed, std::string& why) {
  size_t pos = 0;
  Take t = parse_at(in, pos, v, 0, why);
  if (t == Take::kReply) consumed = pos;
  return t;
}

std::unique_ptr<Codec> make_redis_codec(const Config& c, const std::string& sha) {
  return std::make_unique<RedisCodec>(c, sha);
}

}  // namespace stockd::bench
