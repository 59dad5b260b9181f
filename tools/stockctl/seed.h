// stockctl input parsing: numbers, times, SKU ids, seed files and code files.
//
// Pure functions: no I/O and no clock (callers pass `now_ms`), so every rule is unit-tested
// (tests/unit/stockctl_files_test.cc). A file is parsed and validated whole before anything is
// sent; every failure is Invalid, and names the place: "FILE:LINE: what" for line files,
// "FILE: item N: what" for JSON (N counts from 1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "stockd/protocol.h"
#include "stockd/status.h"

namespace stockd::ctl {

// Largest SKU total stockctl accepts: totals and restock deltas must stay summable in int64.
inline constexpr uint64_t kTotalMax = std::numeric_limits<int64_t>::max();

// Decimal digits only (no sign, no spaces), at most `max`. Invalid says why as a phrase to put
// after the value ("is not a non-negative integer", "is out of range (at most 10)").
Result<uint64_t> parse_unsigned(std::string_view text, uint64_t max);
// An optionally '-'/'+' signed decimal integer. Invalid: "is not an integer", "is out of range".
Result<int64_t> parse_signed(std::string_view text);

// A time in ms since the Unix epoch, written as one of:
//   1795428000000              ms since the epoch (0 = not set)
//   2026-11-23T10:00:00Z       ISO-8601 UTC; seconds and ".fff" optional; "+00:00" = "Z"
//   now, now+30s, now-5m       relative to `now_ms`; units ms, s, m, h, d
// Invalid names the text and the accepted forms.
Result<int64_t> parse_time(std::string_view text, int64_t now_ms);
// "2026-11-23T10:00:00Z", with ".250" when `ms` is not a whole second.
std::string format_time(int64_t ms);

// Ok, or Invalid saying why `sku` cannot be a SKU id (empty, over kSkuBytesMax, control
// characters) as a phrase to put after it ("is empty").
Status check_sku(std::string_view sku);
// `text` in double quotes, shortened, with bytes that are not printable ASCII as \xNN.
std::string quote(std::string_view text);

// ---- Seed files: CSV with header `sku,total,per_user_limit,opens_at,closes_at` (columns in any
// order, only `sku` required; an empty field leaves that field unset), or a JSON array of
// objects with those keys (null or absent = unset; times as ms numbers or time strings). ----
struct SeedRow {
  proto::SkuSetReq req;  // mask names exactly the fields the row sets
  std::string where;     // "FILE:LINE" or "FILE: item N", for reporting
};
enum class SeedFormat { kCsv, kJson };
// By extension (.json / .csv), else JSON when the first non-space character is '['.
SeedFormat detect_seed_format(std::string_view name, std::string_view content);
// The rows (never empty), or Invalid naming the first bad line or item.
Result<std::vector<SeedRow>> parse_seed(std::string_view name, std::string_view content,
                                        int64_t now_ms);

// ---- Code files: one code per line; surrounding whitespace and CR are trimmed, blank lines
// skipped. Empty file, a code over kCodeBytesMax, control characters or a duplicate are errors.
// The codes (never empty), or Invalid naming the first bad line.
Result<std::vector<std::string>> parse_codes(std::string_view name, std::string_view content);

// Splits `codes` into consecutive CODES_LOAD requests for `sku` that each fit in
// `frame_bytes_max`; returns the end index of each chunk (one chunk when everything fits).
std::vector<size_t> chunk_codes(std::string_view sku, const std::vector<std::string>& codes,
                                uint32_t frame_bytes_max);

}  // namespace stockd::ctl
