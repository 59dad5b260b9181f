// Checks of outbox records and their SQL text form. See records.h.
#include "records.h"

#include <algorithm>
#include <cstdio>

namespace stockd::outbox {

namespace {

// Length of the valid UTF-8 sequence (no NUL, no overlong form, no surrogate, <= U+10FFFF)
// starting at s[i], or 0 if there is none.
size_t utf8_len(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c == 0) return 0;
  if (c < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size() || b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
  }
  return n;
}

}  // namespace

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  out += '"';
  return out;
}

Status check_record(const proto::OutboxRecord& r) {
  const std::string at = "record " + std::to_string(r.seq) + ": ";
  if (r.seq == 0) return Status::Invalid("record with seq 0");
  if (r.kind != proto::OutboxKind::kOrder && r.kind != proto::OutboxKind::kReleased &&
      r.kind != proto::OutboxKind::kExpired) {
    return Status::Invalid(at + "unknown kind " + std::to_string(static_cast<int>(r.kind)));
  }
  if (r.order_id == 0) return Status::Invalid(at + "order_id 0");
  if (r.user.empty()) return Status::Invalid(at + "empty user");
  if (r.lines.empty() || r.lines.size() > proto::kReserveLinesMax) {
    return Status::Invalid(at + std::to_string(r.lines.size()) + " lines (must be 1.." +
                           std::to_string(proto::kReserveLinesMax) + ")");
  }
  for (size_t i = 0; i < r.lines.size(); ++i) {
    const proto::Line& l = r.lines[i];
    if (l.sku.empty() || l.qty == 0)
      return Status::Invalid(at + "line " + std::to_string(i) + " is empty");
    for (size_t j = 0; j < i; ++j) {
      if (r.lines[j].sku == l.sku) return Status::Invalid(at + "sku " + l.sku + " on two lines");
    }
  }
  for (size_t i = 0; i < r.codes.size(); ++i) {
    const proto::SkuCode& c = r.codes[i];
    if (c.code.empty()) return Status::Invalid(at + "code " + std::to_string(i) + " is empty");
    if (std::none_of(r.lines.begin(), r.lines.end(), [&](const auto& l) { return l.sku == c.sku; }))
      return Status::Invalid(at + "code " + c.code + " of sku " + c.sku + " which is on no line");
    for (size_t j = 0; j < i; ++j) {
      if (r.codes[j] == c) return Status::Invalid(at + "code " + c.code + " listed twice");
    }
  }
  return Status::Ok();
}

Status check_batch(uint64_t cursor, std::span<const proto::OutboxRecord> records) {
  uint64_t want = cursor + 1;
  for (const proto::OutboxRecord& r : records) {
    if (r.seq != want) {
      return Status::Invalid("expected record " + std::to_string(want) + ", got " +
                             std::to_string(r.seq));
    }
    if (Status s = check_record(r); !s.ok()) return s;
    ++want;
  }
  return Status::Ok();
}

const char* event_kind_name(proto::OutboxKind kind) {
  switch (kind) {
    case proto::OutboxKind::kOrder:
      return "order";
    case proto::OutboxKind::kReleased:
      return "released";
    case proto::OutboxKind::kExpired:
      return "expired";
  }
  return "unknown";
}

bool is_sql_text(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_len(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string_view sql_text(std::string_view s, std::string& scratch) {
  if (is_sql_text(s)) return s;
  scratch.clear();
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_len(s, i);
    if (n > 0) {
      scratch.append(s.substr(i, n));
      i += n;
      continue;
    }
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02X", static_cast<unsigned char>(s[i]));
    scratch += buf;
    ++i;
  }
  return scratch;
}

std::string hex(std::string_view s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string lines_json(const std::vector<proto::Line>& lines) {
  std::string out = "[";
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out += ',';
    if (is_sql_text(lines[i].sku)) {
      out += "{\"sku\":" + json_quote(lines[i].sku);
    } else {
      out += "{\"sku\":null,\"sku_hex\":\"" + hex(lines[i].sku) + "\"";
    }
    out += ",\"qty\":" + std::to_string(lines[i].qty) + "}";
  }
  out += ']';
  return out;
}

namespace {

// The read-back's columns, and what a difference in each means.
const struct {
  int64_t BatchTotals::*field;
  const char* differs;  // {} found, {} expected
} kTotalColumns[BatchTotals::kColumns] = {
    {&BatchTotals::orders, "orders holds {} rows for these seqs, expected {}"},
    {&BatchTotals::orders_checksum,
     "orders holds other order ids or times for these seqs (checksum {}, expected {})"},
    {&BatchTotals::events, "hold_events holds {} rows for these seqs, expected {}"},
    {&BatchTotals::events_checksum,
     "hold_events holds other hold ids or times for these seqs (checksum {}, expected {})"},
};

}  // namespace

int64_t& BatchTotals::operator[](int i) { return this->*kTotalColumns[i].field; }

BatchTotals batch_totals(std::span<const proto::OutboxRecord> records) {
  constexpr int64_t m = BatchTotals::kModulus;
  BatchTotals t;
  for (const proto::OutboxRecord& r : records) {
    const int64_t sum = static_cast<int64_t>(r.order_id) % m + r.at_ms % m;
    if (r.kind != proto::OutboxKind::kOrder) {
      ++t.events;
      t.events_checksum += sum;
      continue;
    }
    ++t.orders;
    t.orders_checksum += sum;
    t.lines += static_cast<int64_t>(r.lines.size());
    t.codes += static_cast<int64_t>(r.codes.size());
  }
  return t;
}

Status compare_totals(const BatchTotals& want, const BatchTotals& found) {
  std::string out;
  for (const auto& c : kTotalColumns) {
    if (want.*c.field == found.*c.field) continue;
    std::string m = c.differs;
    m.replace(m.find("{}"), 2, std::to_string(found.*c.field));
    m.replace(m.find("{}"), 2, std::to_string(want.*c.field));
    out += (out.empty() ? "" : "; ") + m;
  }
  return out.empty() ? Status::Ok() : Status::Corruption(out);
}

}  // namespace stockd::outbox
