// The two wire formats stockbench speaks: stockd's binary protocol (docs/protocol.md, through
// the stockd_protocol codec) and Redis RESP2.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "config.h"
#include "ops.h"

namespace stockd::bench {

// The text of buyer `user` and idempotency key `key` for this run: unique per run.
std::string user_text(const Config& c, uint32_t user);
std::string key_text(const Config& c, uint64_t key);
// The name of SKU `sku` (Config::skus[sku]), built without reading the list when numbered.
std::string sku_text(const Config& c, uint32_t sku);

std::unique_ptr<Codec> make_stockd_codec(const Config& c);

// ---- Redis ----

// The Lua script of the redis workload: take ARGV[1] units of KEYS[1] if that many are left.
extern const char* const kRedisDecrementScript;
// The order script: KEYS[1] the stock; ARGV qty, idempotency key, user. A key seen before returns
// its first answer; else decrement if enough and then an order hash (order id from INCR), an XADD
// to the outbox stream and the key kept 24 h (a refusal, as stockd's, is not kept).
extern const char* const kRedisOrderScript;
// The Redis key holding the stock of `sku`.
std::string redis_key(const std::string& sku);
// Appends one RESP command (an array of bulk strings).
void resp_command(const std::vector<std::string>& args, std::string& out);

struct RespValue {
  char type = 0;        // '+', '-', ':', '$', '*'
  int64_t integer = 0;  // ':'; '$' / '*' length (-1 = null)
  std::string text;     // '+', '-', '$'
};
// Parses one RESP value at the start of `in` (arrays are read through, their items dropped).
Take resp_parse(std::span<const uint8_t> in, RespValue& v, size_t& consumed, std::string& why);

// `sha` is the SHA1 of the script (Config::redis_script) as SCRIPT LOAD returned it.
std::unique_ptr<Codec> make_redis_codec(const Config& c, const std::string& sha);

}  // namespace stockd::bench
