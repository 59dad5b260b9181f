// stockctl input parsing. See seed.h for the accepted formats.
#include "seed.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

namespace stockd::ctl {

namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr std::string_view kTimeFormats =
    "use ms since the epoch, 2026-11-23T10:00:00Z, now or now+30s";

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }
bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view strip_bom(std::string_view s) {
  if (s.substr(0, 3) == "\xEF\xBB\xBF") s.remove_prefix(3);
  return s;
}

// Calls fn(line_number, line) for each line (without '\n'); stops when fn returns false.
template <class Fn>
void for_each_line(std::string_view content, Fn fn) {
  size_t number = 0;
  while (!content.empty()) {
    size_t nl = content.find('\n');
    std::string_view line = content.substr(0, nl);
    content.remove_prefix(nl == std::string_view::npos ? content.size() : nl + 1);
    if (!fn(++number, line)) return;
  }
}

// Consumes exactly `n` digits from the front of `s`.
bool take_number(std::string_view& s, size_t n, int& out) {
  if (s.size() < n) return false;
  out = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!is_digit(s[i])) return false;
    out = out * 10 + (s[i] - '0');
  }
  s.remove_prefix(n);
  return true;
}

bool take_char(std::string_view& s, char c) {
  if (s.empty() || s.front() != c) return false;
  s.remove_prefix(1);
  return true;
}

// YYYY-MM-DDTHH:MM[:SS[.fff]](Z|+00:00) -> ms since the epoch.
std::optional<int64_t> parse_iso(std::string_view s) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, frac = 0;
  if (!take_number(s, 4, y) || !take_char(s, '-') || !take_number(s, 2, mo) || !take_char(s, '-') ||
      !take_number(s, 2, d) || !take_char(s, 'T') || !take_number(s, 2, h) || !take_char(s, ':') ||
      !take_number(s, 2, mi)) {
    return std::nullopt;
  }
  if (take_char(s, ':')) {
    if (!take_number(s, 2, sec)) return std::nullopt;
    if (take_char(s, '.')) {
      size_t digits = 0;
      for (; !s.empty() && is_digit(s.front()); s.remove_prefix(1), ++digits) {
        if (digits < 3) frac = frac * 10 + (s.front() - '0');
      }
      if (digits == 0) return std::nullopt;
      for (; digits < 3; ++digits) frac *= 10;
    }
  }
  if (s != "Z" && s != "+00:00") return std::nullopt;
  using namespace std::chrono;
  year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || h > 23 || mi > 59 || sec > 59) return std::nullopt;
  auto tp = sys_days{ymd} + hours{h} + minutes{mi} + seconds{sec} + milliseconds{frac};
  return duration_cast<milliseconds>(tp.time_since_epoch()).count();
}

// now, now+30s, now-5m (units ms, s, m, h, d).
Result<int64_t> parse_relative(std::string_view text, int64_t now_ms) {
  std::string_view s = text.substr(3);
  if (s.empty()) return now_ms;
  const bool minus = s.front() == '-';
  if (!minus && s.front() != '+')
    return Status::Invalid("unknown time " + quote(text) + ": " + std::string(kTimeFormats));
  s.remove_prefix(1);
  size_t n = 0;
  while (n < s.size() && is_digit(s[n])) ++n;
  const std::string_view unit = s.substr(n);
  static constexpr std::array<std::pair<std::string_view, int64_t>, 5> kUnits{
      {{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}}};
  int64_t factor = 0;
  for (const auto& [name, f] : kUnits) {
    if (unit == name) factor = f;
  }
  Result<uint64_t> amount = parse_unsigned(s.substr(0, n), kInt64Max);
  if (n == 0 || factor == 0 || !amount.ok()) {
    return Status::Invalid("bad relative time " + quote(text) +
                           ": use now+N or now-N with unit ms, s, m, h or d");
  }
  if (*amount > static_cast<uint64_t>(kInt64Max / factor)) {
    return Status::Invalid("relative time " + quote(text) + " is out of range");
  }
  const int64_t delta = static_cast<int64_t>(*amount) * factor;
  if (!minus && now_ms > kInt64Max - delta) {
    return Status::Invalid("time " + quote(text) + " is out of range");
  }
  return minus ? now_ms - delta : now_ms + delta;
}

// ---- Seed rows ----

enum Column { kSku, kTotal, kPerUserLimit, kOpensAt, kClosesAt, kColumns };
constexpr std::array<std::string_view, kColumns> kColumnNames{"sku", "total", "per_user_limit",
                                                              "opens_at", "closes_at"};
constexpr std::string_view kHeaderHint = "sku,total,per_user_limit,opens_at,closes_at";

int column_of(std::string_view name) {
  for (int c = 0; c < kColumns; ++c) {
    if (kColumnNames[c] == name) return c;
  }
  return -1;
}

// Sets one field of `req` from its text (non-empty). Ok or why not.
Status set_field(int column, std::string_view value, int64_t now_ms, proto::SkuSetReq& req) {
  const std::string name(kColumnNames[column]);
  switch (column) {
    case kSku:
      if (Status s = check_sku(value); !s.ok()) {
        return Status::Invalid("sku " + quote(value) + " " + s.message());
      }
      req.sku = std::string(value);
      return Status::Ok();
    case kTotal:
    case kPerUserLimit: {
      Result<uint64_t> n = parse_unsigned(value, column == kTotal ? kTotalMax : UINT32_MAX);
      if (!n.ok()) return Status::Invalid(name + " " + quote(value) + " " + n.status().message());
      if (column == kTotal) {
        req.total = *n;
        req.mask |= proto::kSetTotal;
      } else {
        req.per_user_limit = static_cast<uint32_t>(*n);
        req.mask |= proto::kSetPerUserLimit;
      }
      return Status::Ok();
    }
    case kOpensAt:
    case kClosesAt: {
      Result<int64_t> t = parse_time(value, now_ms);
      if (!t.ok()) return t.status().context(name);
      (column == kOpensAt ? req.opens_at_ms : req.closes_at_ms) = *t;
      req.mask |= column == kOpensAt ? proto::kSetOpensAt : proto::kSetClosesAt;
      return Status::Ok();
    }
  }
  return Status::Invalid("unknown column " + name);
}

// Checks a whole row once its fields are set. Ok or why not.
Status check_row(const proto::SkuSetReq& req) {
  if (req.sku.empty()) return Status::Invalid("sku is missing");
  const bool both = (req.mask & proto::kSetOpensAt) && (req.mask & proto::kSetClosesAt);
  if (both && req.opens_at_ms != 0 && req.closes_at_ms != 0 &&
      req.closes_at_ms <= req.opens_at_ms) {
    return Status::Invalid("closes_at " + format_time(req.closes_at_ms) +
                           " is not after opens_at " + format_time(req.opens_at_ms));
  }
  return Status::Ok();
}

// Records `row` unless its SKU was seen; Ok or the duplicate error.
Status add_row(SeedRow row, std::unordered_map<std::string, std::string>& seen,
               std::vector<SeedRow>& rows) {
  auto [it, fresh] = seen.emplace(row.req.sku, row.where);
  if (!fresh) {
    return Status::Invalid("duplicate sku " + quote(row.req.sku) + " (first at " + it->second +
                           ")");
  }
  rows.push_back(std::move(row));
  return Status::Ok();
}

// Splits one CSV line into trimmed fields; "quoted" fields may hold commas, "" is a quote.
Status split_csv(std::string_view line, std::vector<std::string>& fields) {
  fields.clear();
  size_t i = 0;
  for (;;) {
    std::string field;
    while (i < line.size() && is_space(line[i])) ++i;
    if (i < line.size() && line[i] == '"') {
      for (++i;; ++i) {
        if (i >= line.size()) return Status::Invalid("unterminated quoted field");
        if (line[i] == '"' && (i + 1 >= line.size() || line[i + 1] != '"')) break;
        if (line[i] == '"') ++i;
        field += line[i];
      }
      ++i;
      while (i < line.size() && is_space(line[i])) ++i;
      if (i < line.size() && line[i] != ',') return Status::Invalid("text after a quoted field");
    } else {
      size_t start = i;
      while (i < line.size() && line[i] != ',') {
        if (line[i] == '"') return Status::Invalid("quote inside an unquoted field");
        ++i;
      }
      field = std::string(trim(line.substr(start, i - start)));
    }
    fields.push_back(std::move(field));
    if (i >= line.size()) return Status::Ok();
    ++i;  // the comma
  }
}

// Reads the header line into `columns`. Ok or why not.
Status parse_header(std::string_view line, std::vector<int>& columns) {
  std::vector<std::string> names;
  if (Status s = split_csv(line, names); !s.ok()) return s.context("bad header");
  std::array<bool, kColumns> present{};
  for (const std::string& name : names) {
    int c = column_of(name);
    if (c < 0) {
      return Status::Invalid("unknown column " + quote(name) + " (expected " +
                             std::string(kHeaderHint) + ")");
    }
    if (present[c]) return Status::Invalid("column " + quote(name) + " appears twice");
    present[c] = true;
    columns.push_back(c);
  }
  if (!present[kSku]) {
    return Status::Invalid("the header has no sku column (expected " + std::string(kHeaderHint) +
                           ")");
  }
  return Status::Ok();
}

// Parses one data line into `req`. Ok or why not.
Status parse_csv_row(std::string_view line, const std::vector<int>& columns, int64_t now_ms,
                     proto::SkuSetReq& req) {
  std::vector<std::string> fields;
  if (Status s = split_csv(line, fields); !s.ok()) return s;
  if (fields.size() != columns.size()) {
    return Status::Invalid("expected " + std::to_string(columns.size()) + " fields, found " +
                           std::to_string(fields.size()));
  }
  for (size_t i = 0; i < fields.size(); ++i) {
    if (fields[i].empty()) continue;
    if (Status s = set_field(columns[i], fields[i], now_ms, req); !s.ok()) return s;
  }
  return check_row(req);
}

Result<std::vector<SeedRow>> parse_seed_csv(std::string_view name, std::string_view content,
                                            int64_t now_ms) {
  std::vector<SeedRow> rows;
  std::vector<int> columns;
  std::unordered_map<std::string, std::string> seen;
  const std::string file(name);
  Status error;
  for_each_line(content, [&](size_t number, std::string_view line) {
    const std::string where = file + ":" + std::to_string(number);
    if (line.find('\0') != std::string_view::npos) {
      error = Status::Invalid(where + ": binary data (NUL byte); expected CSV text");
    } else if (trim(line).empty()) {
      return true;
    } else if (columns.empty()) {
      error = parse_header(line, columns).context(where);
    } else {
      SeedRow row{{}, where};
      error = parse_csv_row(line, columns, now_ms, row.req);
      if (error.ok()) error = add_row(std::move(row), seen, rows);
      error = std::move(error).context(where);
    }
    return error.ok();
  });
  if (!error.ok()) return error;
  if (columns.empty()) return Status::Invalid(file + ": the file is empty");
  if (rows.empty()) return Status::Invalid(file + ": no rows after the header");
  return rows;
}

// One JSON item -> `req`. Ok or why not.
Status parse_json_item(const nlohmann::json& item, int64_t now_ms, proto::SkuSetReq& req) {
  if (!item.is_object()) {
    return Status::Invalid(std::string("expected an object, found ") + item.type_name());
  }
  for (const auto& [key, value] : item.items()) {
    const int c = column_of(key);
    if (c < 0) {
      return Status::Invalid("unknown key " + quote(key) + " (expected " +
                             std::string(kHeaderHint) + ")");
    }
    if (value.is_null()) continue;
    const bool time = c == kOpensAt || c == kClosesAt;
    if (c == kSku && !value.is_string()) return Status::Invalid("sku must be a string");
    if (c != kSku && !value.is_number() && !(time && value.is_string())) {
      return Status::Invalid(key +
                             (time ? " must be a number or a time string" : " must be a number"));
    }
    const std::string text = value.is_string() ? value.get<std::string>() : value.dump();
    if (text.empty()) return Status::Invalid(key + " is empty");
    if (Status s = set_field(c, text, now_ms, req); !s.ok()) return s;
  }
  return check_row(req);
}

Result<std::vector<SeedRow>> parse_seed_json(std::string_view name, std::string_view content,
                                             int64_t now_ms) {
  const std::string file(name);
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(content);
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();
    size_t bracket = what.find("] ");
    return Status::Invalid(file + ": invalid JSON: " +
                           (bracket == std::string::npos ? what : what.substr(bracket + 2)));
  }
  if (!doc.is_array()) {
    return Status::Invalid(file + ": expected a JSON array of objects, found " + doc.type_name());
  }
  if (doc.empty()) return Status::Invalid(file + ": the array is empty");
  std::vector<SeedRow> rows;
  std::unordered_map<std::string, std::string> seen;
  for (size_t i = 0; i < doc.size(); ++i) {
    SeedRow row{{}, file + ": item " + std::to_string(i + 1)};
    const std::string where = row.where;
    Status s = parse_json_item(doc[i], now_ms, row.req);
    if (s.ok()) s = add_row(std::move(row), seen, rows);
    if (!s.ok()) return std::move(s).context(where);
  }
  return rows;
}

}  // namespace

// ---- Numbers and times ----

Result<uint64_t> parse_unsigned(std::string_view text, uint64_t max) {
  if (text.empty() || !std::all_of(text.begin(), text.end(), is_digit)) {
    return Status::Invalid("is not a non-negative integer");
  }
  uint64_t v = 0;
  for (char c : text) {
    const auto digit = static_cast<uint64_t>(c - '0');
    if (digit > max || v > (max - digit) / 10)
      return Status::Invalid("is out of range (at most " + std::to_string(max) + ")");
    v = v * 10 + digit;
  }
  return v;
}

Result<int64_t> parse_signed(std::string_view text) {
  const bool minus = !text.empty() && text.front() == '-';
  if (!text.empty() && (text.front() == '-' || text.front() == '+')) text.remove_prefix(1);
  if (text.empty() || !std::all_of(text.begin(), text.end(), is_digit)) {
    return Status::Invalid("is not an integer");
  }
  Result<uint64_t> magnitude =
      parse_unsigned(text, static_cast<uint64_t>(kInt64Max) + (minus ? 1 : 0));
  if (!magnitude.ok()) return Status::Invalid("is out of range");
  return minus ? static_cast<int64_t>(0 - *magnitude) : static_cast<int64_t>(*magnitude);
}

Result<int64_t> parse_time(std::string_view text, int64_t now_ms) {
  text = trim(text);
  if (!text.empty() && std::all_of(text.begin(), text.end(), is_digit)) {
    Result<uint64_t> ms = parse_unsigned(text, kInt64Max);
    if (!ms.ok()) return Status::Invalid("time " + quote(text) + " " + ms.status().message());
    return static_cast<int64_t>(*ms);
  }
  if (text.substr(0, 3) == "now") return parse_relative(text, now_ms);
  if (std::optional<int64_t> ms = parse_iso(text)) {
    if (*ms < 0) return Status::Invalid("time " + quote(text) + " is before 1970");
    return *ms;
  }
  if (text.size() >= 10 && text[4] == '-' && text.find('T') != std::string_view::npos) {
    return Status::Invalid("bad ISO-8601 time " + quote(text) +
                           ": expected UTC like 2026-11-23T10:00:00Z");
  }
  return Status::Invalid("unknown time " + quote(text) + ": " + std::string(kTimeFormats));
}

std::string format_time(int64_t ms) {
  using namespace std::chrono;
  const sys_time<milliseconds> tp{milliseconds{ms}};
  const sys_days day = floor<days>(tp);
  const year_month_day ymd{day};
  const hh_mm_ss<milliseconds> hms{tp - day};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()));
  std::string out = buf;
  if (hms.subseconds().count() != 0) {
    std::snprintf(buf, sizeof buf, ".%03d", static_cast<int>(hms.subseconds().count()));
    out += buf;
  }
  return out + "Z";
}

Status check_sku(std::string_view sku) {
  if (sku.empty()) return Status::Invalid("is empty");
  if (sku.size() > proto::kSkuBytesMax) {
    return Status::Invalid("is " + std::to_string(sku.size()) + " bytes, at most " +
                           std::to_string(proto::kSkuBytesMax));
  }
  for (char c : sku) {
    if (is_control(static_cast<unsigned char>(c))) {
      return Status::Invalid("contains a control character");
    }
  }
  return Status::Ok();
}

std::string quote(std::string_view text) {
  constexpr size_t kShown = 48;
  std::string out = "\"";
  for (size_t i = 0; i < text.size() && i < kShown; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02X", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > kShown) out += "...";
  return out + "\"";
}

// ---- Seed files ----

SeedFormat detect_seed_format(std::string_view name, std::string_view content) {
  auto ends_with = [&](std::string_view ext) {
    if (name.size() < ext.size()) return false;
    std::string tail(name.substr(name.size() - ext.size()));
    for (char& c : tail) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return tail == ext;
  };
  if (ends_with(".json")) return SeedFormat::kJson;
  if (ends_with(".csv")) return SeedFormat::kCsv;
  std::string_view body = trim(strip_bom(content));
  while (!body.empty() && body.front() == '\n') body = trim(body.substr(1));
  return !body.empty() && body.front() == '[' ? SeedFormat::kJson : SeedFormat::kCsv;
}

Result<std::vector<SeedRow>> parse_seed(std::string_view name, std::string_view content,
                                        int64_t now_ms) {
  content = strip_bom(content);
  if (detect_seed_format(name, content) == SeedFormat::kJson) {
    return parse_seed_json(name, content, now_ms);
  }
  return parse_seed_csv(name, content, now_ms);
}

// ---- Code files ----

Result<std::vector<std::string>> parse_codes(std::string_view name, std::string_view content) {
  std::vector<std::string> codes;
  const std::string file(name);
  std::unordered_map<std::string_view, size_t> seen;
  std::string error;  // "" while every line is good
  for_each_line(strip_bom(content), [&](size_t number, std::string_view line) {
    const std::string where = file + ":" + std::to_string(number) + ": ";
    const std::string_view code = trim(line);
    if (code.empty()) return true;
    if (code.size() > proto::kCodeBytesMax) {
      error = where + "code is " + std::to_string(code.size()) + " bytes, at most " +
              std::to_string(proto::kCodeBytesMax);
    } else if (std::any_of(code.begin(), code.end(),
                           [](char c) { return is_control(static_cast<unsigned char>(c)); })) {
      error = where + (code.find('\0') != std::string_view::npos
                           ? "binary data (NUL byte); expected one code per line"
                           : "code " + quote(code) + " contains a control character");
    } else if (auto [it, fresh] = seen.emplace(code, number); !fresh) {
      error = where + "duplicate code " + quote(code) + " (first on line " +
              std::to_string(it->second) + ")";
    } else {
      codes.emplace_back(code);
    }
    return error.empty();
  });
  if (!error.empty()) return Status::Invalid(error);
  if (codes.empty()) return Status::Invalid(file + ": no codes (the file is empty)");
  return codes;
}

std::vector<size_t> chunk_codes(std::string_view sku, const std::vector<std::string>& codes,
                                uint32_t frame_bytes_max) {
  // A CODES_LOAD frame: header, the SKU as a str, a count (taken as 4 bytes), then each code as a
  // str (u16 length + bytes).
  const size_t fixed = proto::kHeaderBytes + 2 + sku.size() + 4;
  std::vector<size_t> ends;
  size_t bytes = fixed;
  for (size_t i = 0; i < codes.size(); ++i) {
    const size_t cost = 2 + codes[i].size();
    if (bytes + cost > frame_bytes_max && bytes > fixed) {
      ends.push_back(i);
      bytes = fixed;
    }
    bytes += cost;
  }
  if (!codes.empty()) ends.push_back(codes.size());
  return ends;
}

}  // namespace stockd::ctl
