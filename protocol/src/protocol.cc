// The stockd wire codec. The byte grammar implemented here is docs/protocol.md; every message
// is its struct's fields in declaration order (see the "Body grammar" section there).
#include "stockd/protocol.h"

#include <algorithm>
#include <array>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <type_traits>
#include <utility>

#include "stockd/fields.h"
#include "stockd/wire.h"

namespace stockd::proto {
namespace {

using namespace field_limits;  // NOLINT(google-build-using-namespace): the codec's own constants

using wire::Reader;
using wire::Writer;

[[gnu::format(printf, 1, 2)]] std::string format(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  size_t len = n < 0 ? 0 : std::min(static_cast<size_t>(n), sizeof buf - 1);
  return std::string(buf, len);
}

unsigned long long ull(uint64_t v) { return static_cast<unsigned long long>(v); }

// A programmer error in encode_*: the frame would be corrupt, so stop the process.
void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "stockd protocol: %s\n", what);
  std::abort();
}

// ---- The opcode registry: one row per opcode. ----

template <class T, class... Ts>
constexpr size_t index_in(const std::variant<Ts...>*) {
  size_t i = 0;
  (void)((std::is_same_v<T, Ts> || (++i, false)) || ...);
  return i;
}
template <class T>
constexpr size_t kReq = index_in<T>(static_cast<const Request*>(nullptr));
template <class T>
constexpr size_t kResp = index_in<T>(static_cast<const Response*>(nullptr));
static_assert(kReq<OutboxStatusReq> == std::variant_size_v<Request> - 1);
static_assert(kResp<ErrorResp> == std::variant_size_v<Response> - 1);

struct OpRow {
  OpInfo info;
  size_t req;   // index of the request type in Request
  size_t resp;  // index of the response type (status < 64) in Response
};
// From STOCKD_OPCODES, in its order: the first row of a request type gives its default opcode
// (COMMIT, SKU_GET).
constexpr OpRow kOps[] = {
#define STOCKD_OPCODE_ROW(e, v, name, label, req, resp, roles, writes, retry) \
  {{Opcode::e, name, label, roles, writes, Retry::retry}, kReq<req>, kResp<resp>},
    STOCKD_OPCODES(STOCKD_OPCODE_ROW)
#undef STOCKD_OPCODE_ROW
};

const OpRow* find_op(uint16_t raw) {
  for (const OpRow& row : kOps) {
    if (static_cast<uint16_t>(row.info.op) == raw) return &row;
  }
  return nullptr;
}

// ---- Body reader: reads field by field and names the first field that fails. ----

class In {
 public:
  In(std::span<const uint8_t> body, const char* context, bool response, std::string& reason)
      : r_(body), context_(context), response_(response), reason_(reason) {}

  // Requests are also checked for meaning (non-empty ids, ranges); responses only for shape.
  bool strict() const { return !response_; }
  bool ok() const { return r_.ok(); }

  uint8_t u8(const char* f) { return has(f, 1) ? r_.u8() : 0; }
  uint16_t u16(const char* f) { return has(f, 2) ? r_.u16() : 0; }
  uint32_t u32(const char* f) { return has(f, 4) ? r_.u32() : 0; }
  uint64_t u64(const char* f) { return has(f, 8) ? r_.u64() : 0; }
  int64_t i64(const char* f) { return has(f, 8) ? r_.i64() : 0; }

  // Reads a string field into `out` (its capacity is reused); "" when it fails.
  void str(const char* f, size_t max, bool non_empty, std::string& out) {
    out.clear();
    if (!has(f, 2)) return;
    Reader probe = r_;
    size_t n = probe.u16();
    if (n > max) return fail(f, format("is %zu bytes, max %zu", n, max));
    if (n > probe.remaining()) {
      return fail(f, format("truncated: length %zu, %zu bytes left", n, probe.remaining()));
    }
    if (n == 0 && non_empty) return fail(f, "is empty");
    out.assign(r_.view(max));
  }

  // A list count of 2 or 4 bytes, in lo..hi, whose items (>= item_min bytes each) can fit.
  size_t count(const char* f, size_t width, uint64_t lo, uint64_t hi, size_t item_min) {
    uint64_t n = width == 2 ? u16(f) : u32(f);
    range(f, n, lo, hi);
    if (ok() && n * item_min > r_.remaining()) {
      fail(f, format("is %llu but only %zu bytes are left (items take at least %zu bytes)", ull(n),
                     r_.remaining(), item_min));
    }
    return ok() ? static_cast<size_t>(n) : 0;
  }

  void range(const char* f, uint64_t v, uint64_t lo, uint64_t hi) {
    if (!ok() || (v >= lo && v <= hi)) return;
    if (hi == kU64Max || (hi == kU32Max && lo > 0)) {
      fail(f, format("is %llu, must be at least %llu", ull(v), ull(lo)));
    } else if (lo == 0) {
      fail(f, format("is %llu, max %llu", ull(v), ull(hi)));
    } else {
      fail(f, format("is %llu, must be %llu..%llu", ull(v), ull(lo), ull(hi)));
    }
  }

  // ---- The field visitor (see "Field lists" below): the same calls as Out's. ----
  static constexpr bool kWrites = false;
  void num(const char* f, uint8_t& v) { v = u8(f); }
  void num(const char* f, uint16_t& v) { v = u16(f); }
  void num(const char* f, uint32_t& v) { v = u32(f); }
  void num(const char* f, uint64_t& v) { v = u64(f); }
  void num(const char* f, int64_t& v) { v = i64(f); }
  void text(const char* f, std::string& v, size_t max, bool non_empty) {
    str(f, max, non_empty, v);
  }
  void known_bits(const char* f, uint8_t v, uint8_t known) {
    if (ok() && (v & ~known) != 0) {
      fail(f, format("0x%02X has unknown bits (known: 0x%02X)", v, known));
    }
  }
  // A u8 enum whose valid values are lo..hi.
  template <class E>
  void enum8(const char* f, E& v, E lo, E hi) {
    const uint8_t raw = u8(f);
    range(f, raw, static_cast<uint8_t>(lo), static_cast<uint8_t>(hi));
    v = static_cast<E>(raw);
  }
  // A list: a count of `width` bytes in lo..hi, then its items (>= item_min bytes each). Items
  // are read into the list's existing elements: decoding into a reused message allocates
  // nothing once its lists and strings are big enough.
  template <class T>
  void list(const char* count_name, const char* item_name, size_t width, uint64_t lo, uint64_t hi,
            size_t item_min, std::vector<T>& out) {
    const size_t n = count(count_name, width, lo, hi, item_min);
    out.resize(ok() ? n : 0);
    for (size_t i = 0; i < n && ok(); ++i) {
      Item label(*this, item_name, i);
      fields(*this, out[i]);
    }
  }

  bool finish() {
    if (ok() && r_.remaining() > 0) {
      fail(nullptr, format("trailing %zu bytes after body", r_.remaining()));
    }
    return ok();
  }

  void fail(const char* f, const std::string& what);

  // Names the list item being read ("line 2") in reasons while it lives.
  class Item {
   public:
    Item(In& in, const char* name, size_t index) : in_(in) {
      if (in_.depth_ < in_.items_.size()) in_.items_[in_.depth_] = {name, index};
      ++in_.depth_;
    }
    ~Item() { --in_.depth_; }
    Item(const Item&) = delete;
    Item& operator=(const Item&) = delete;

   private:
    In& in_;
  };

 private:
  bool has(const char* f, size_t n) {
    if (!ok()) return false;
    if (r_.remaining() >= n) return true;
    fail(f, format("truncated: needs %zu bytes, %zu left", n, r_.remaining()));
    return false;
  }

  struct Label {
    const char* name;
    size_t index;
  };
  Reader r_;
  const char* context_;
  bool response_;
  std::string& reason_;
  std::array<Label, 2> items_{};
  size_t depth_ = 0;
};

void In::fail(const char* f, const std::string& what) {
  if (!ok()) return;  // keep the first reason
  r_.fail();
  reason_ = context_;
  reason_ += response_ ? " response: " : ": ";
  for (size_t i = 0; i < std::min(depth_, items_.size()); ++i) {
    reason_ += format("%s %zu ", items_[i].name, items_[i].index);
  }
  if (f != nullptr && *f != '\0') {
    reason_ += f;
    reason_ += ' ';
  }
  reason_ += what;
}

// ---- Writer: the same visitor calls as In's, writing. ----

class Out : public Writer {
 public:
  using Writer::Writer;
  static constexpr bool kWrites = true;
  bool strict() const { return false; }  // checks are the reader's
  void num(const char*, uint8_t v) { u8(v); }
  void num(const char*, uint16_t v) { u16(v); }
  void num(const char*, uint32_t v) { u32(v); }
  void num(const char*, uint64_t v) { u64(v); }
  void num(const char*, int64_t v) { i64(v); }
  void text(const char*, std::string_view v, size_t, bool) {
    require(v.size() <= kU16Max, "string longer than 65535 bytes");
    str(v);
  }
  void range(const char*, uint64_t, uint64_t, uint64_t) {}
  void known_bits(const char*, uint8_t, uint8_t) {}
  template <class E>
  void enum8(const char*, E v, E, E) {
    u8(static_cast<uint8_t>(v));
  }
  template <class T>
  void list(const char*, const char*, size_t width, uint64_t, uint64_t, size_t,
            const std::vector<T>& v) {
    if (width == 2) {
      require(v.size() <= kU16Max, "list longer than 65535 items");
      u16(static_cast<uint16_t>(v.size()));
    } else {
      require(v.size() <= kU32Max, "list longer than 2^32-1 items");
      u32(static_cast<uint32_t>(v.size()));
    }
    for (const T& item : v) fields(*this, item);
  }
};

template <class V, class T>
std::optional<V> decode_as(In& in) {
  T m{};
  fields(in, m);
  if (!in.finish()) return std::nullopt;
  return V(std::in_place_type<T>, std::move(m));
}
template <class V, size_t... I>
constexpr auto make_decoders(std::index_sequence<I...>) {
  return std::array{&decode_as<V, std::variant_alternative_t<I, V>>...};
}
// One decoder per variant alternative, indexed like the variant.
template <class V>
constexpr auto kDecoders = make_decoders<V>(std::make_index_sequence<std::variant_size_v<V>>());

// The same into an existing variant, reusing the alternative's strings and lists if it holds it.
template <class V, class T>
bool decode_into_as(In& in, V& into) {
  if (!std::holds_alternative<T>(into)) into.template emplace<T>();
  fields(in, std::get<T>(into));
  return in.finish();
}
template <class V, size_t... I>
constexpr auto make_into_decoders(std::index_sequence<I...>) {
  return std::array{&decode_into_as<V, std::variant_alternative_t<I, V>>...};
}
template <class V>
constexpr auto kIntoDecoders =
    make_into_decoders<V>(std::make_index_sequence<std::variant_size_v<V>>());

// Appends header + body; body_len is patched in once the body is written.
template <class V>
void put_frame(FrameHeader h, const V& body, std::string& out) {
  size_t start = out.size();
  encode_header(h, out);
  Out w(out);
  std::visit([&w](const auto& m) { fields(w, m); }, body);
  uint64_t len = out.size() - start - kHeaderBytes;
  require(len <= kU32Max, "body longer than 2^32-1 bytes");
  for (size_t i = 0; i < 4; ++i) out[start + 4 + i] = static_cast<char>((len >> (8 * i)) & 0xFF);
}

FrameDecode invalid(FrameDecode d, Status error, std::string reason) {
  d.kind = DecodeKind::kInvalid;
  d.error = error;
  d.reason = std::move(reason);
  return d;
}

}  // namespace

const char* opcode_name(Opcode op) {
  const OpRow* row = find_op(static_cast<uint16_t>(op));
  return row != nullptr ? row->info.name : "UNKNOWN";
}

bool opcode_known(uint16_t raw) { return find_op(raw) != nullptr; }

const OpInfo* op_info(uint16_t raw) {
  const OpRow* row = find_op(raw);
  return row != nullptr ? &row->info : nullptr;
}

const char* status_name(Status s) {
  switch (s) {
    case Status::kOk:
      return "OK";
    case Status::kSoldOut:
      return "SOLD_OUT";
    case Status::kLimitExceeded:
      return "LIMIT_EXCEEDED";
    case Status::kNotFound:
      return "NOT_FOUND";
    case Status::kSaleNotOpen:
      return "SALE_NOT_OPEN";
    case Status::kSaleClosed:
      return "SALE_CLOSED";
    case Status::kHoldExpired:
      return "HOLD_EXPIRED";
    case Status::kAlreadyDone:
      return "ALREADY_DONE";
    case Status::kKeyConflict:
      return "KEY_CONFLICT";
    case Status::kDuplicateCode:
      return "DUPLICATE_CODE";
    case Status::kBelowCommitted:
      return "BELOW_COMMITTED";
    case Status::kBadRequest:
      return "BAD_REQUEST";
    case Status::kUnauthorized:
      return "UNAUTHORIZED";
    case Status::kBusy:
      return "BUSY";
    case Status::kStorageUnavailable:
      return "STORAGE_UNAVAILABLE";
    case Status::kUnknownOpcode:
      return "UNKNOWN_OPCODE";
    case Status::kUnsupportedVersion:
      return "UNSUPPORTED_VERSION";
    case Status::kFrameTooLarge:
      return "FRAME_TOO_LARGE";
    case Status::kInternal:
      return "INTERNAL";
    case Status::kTooManyHolds:
      return "TOO_MANY_HOLDS";
  }
  return "UNKNOWN";
}

const char* hold_state_name(HoldState s) {
  switch (s) {
    case HoldState::kNone:
      return "NONE";
    case HoldState::kHeld:
      return "HELD";
    case HoldState::kCommitted:
      return "COMMITTED";
    case HoldState::kReleased:
      return "RELEASED";
    case HoldState::kExpired:
      return "EXPIRED";
  }
  return "UNKNOWN";
}

FrameDecode decode_frame(std::span<const uint8_t> in, const Limits& limits) {
  FrameDecode d;
  if (in.size() < kHeaderBytes) return d;
  Reader r(in.first(kHeaderBytes));
  FrameHeader& h = d.header;
  h.magic = r.u16();
  h.version = r.u8();
  h.flags = r.u8();
  h.body_len = r.u32();
  h.opcode = r.u16();
  h.status = r.u16();
  h.request_id = r.u32();
  if (h.magic != kMagic) {
    return invalid(std::move(d), Status::kBadRequest,
                   format("bad magic 0x%04X, expected 0x%04X", h.magic, kMagic));
  }
  if (h.version != kProtocolVersion) {
    return invalid(
        std::move(d), Status::kUnsupportedVersion,
        format("unsupported protocol version %u, expected %u", h.version, kProtocolVersion));
  }
  if ((h.flags & ~kFlagResponse) != 0) {
    return invalid(std::move(d), Status::kBadRequest,
                   format("unknown flag bits 0x%02X (only 0x%02X is defined)",
                          h.flags & ~kFlagResponse & 0xFF, kFlagResponse));
  }
  uint64_t frame_bytes = kHeaderBytes + uint64_t{h.body_len};
  if (frame_bytes > limits.frame_bytes_max) {
    return invalid(std::move(d), Status::kFrameTooLarge,
                   format("frame of %llu bytes exceeds frame_bytes_max %u", ull(frame_bytes),
                          limits.frame_bytes_max));
  }
  if (in.size() < frame_bytes) return d;
  d.kind = DecodeKind::kFrame;
  d.body = in.subspan(kHeaderBytes, h.body_len);
  d.consumed = static_cast<size_t>(frame_bytes);
  return d;
}

void encode_header(const FrameHeader& h, std::string& out) {
  Writer w(out);
  w.u16(h.magic);
  w.u8(h.version);
  w.u8(h.flags);
  w.u32(h.body_len);
  w.u16(h.opcode);
  w.u16(h.status);
  w.u32(h.request_id);
}

stockd::Result<Request> decode_request(Opcode op, std::span<const uint8_t> body) {
  const OpRow* row = find_op(static_cast<uint16_t>(op));
  if (row == nullptr) {
    return stockd::Status::Invalid(format("unknown opcode 0x%04X", static_cast<unsigned>(op)));
  }
  std::string reason;
  In in(body, row->info.label, false, reason);
  std::optional<Request> r = kDecoders<Request>[row->req](in);
  if (!r) return stockd::Status::Invalid(std::move(reason));
  return std::move(*r);
}

stockd::Status decode_request(Opcode op, std::span<const uint8_t> body, Request& into) {
  const OpRow* row = find_op(static_cast<uint16_t>(op));
  if (row == nullptr) {
    return stockd::Status::Invalid(format("unknown opcode 0x%04X", static_cast<unsigned>(op)));
  }
  std::string reason;
  In in(body, row->info.label, false, reason);
  if (!kIntoDecoders<Request>[row->req](in, into))
    return stockd::Status::Invalid(std::move(reason));
  return stockd::Status::Ok();
}

stockd::Result<Response> decode_response(Opcode op, Status status, std::span<const uint8_t> body) {
  const OpRow* row = find_op(static_cast<uint16_t>(op));
  std::string reason;
  std::optional<Response> r;
  if (is_error_status(status)) {
    In in(body, row != nullptr ? row->info.label : "error", true, reason);
    r = decode_as<Response, ErrorResp>(in);
  } else if (row == nullptr) {
    reason = format("unknown opcode 0x%04X with non-error status %u", static_cast<unsigned>(op),
                    static_cast<unsigned>(status));
  } else {
    In in(body, row->info.label, true, reason);
    r = kDecoders<Response>[row->resp](in);
  }
  if (!r) return stockd::Status::Invalid(std::move(reason));
  return std::move(*r);
}

void encode_request(Opcode op, uint32_t request_id, const Request& req, std::string& out) {
  const OpRow* row = find_op(static_cast<uint16_t>(op));
  require(row != nullptr && row->req == req.index(), "encode_request: type does not match opcode");
  FrameHeader h;
  h.opcode = static_cast<uint16_t>(op);
  h.request_id = request_id;
  put_frame(h, req, out);
}

void encode_response(Opcode op, uint32_t request_id, Status status, const Response& resp,
                     std::string& out) {
  if (is_error_status(status)) {
    require(std::holds_alternative<ErrorResp>(resp), "encode_response: error needs ErrorResp");
  } else {
    const OpRow* row = find_op(static_cast<uint16_t>(op));
    require(row != nullptr && row->resp == resp.index(),
            "encode_response: type does not match opcode");
  }
  FrameHeader h;
  h.flags = kFlagResponse;
  h.opcode = static_cast<uint16_t>(op);
  h.status = static_cast<uint16_t>(status);
  h.request_id = request_id;
  put_frame(h, resp, out);
}

Opcode default_opcode(const Request& req) {
  for (const OpRow& row : kOps) {
    if (row.req == req.index()) return row.info.op;
  }
  require(false, "default_opcode: request type without opcode");
  return Opcode::kPing;
}

}  // namespace stockd::proto
