// Little-endian primitives shared by the frame codec and the stored-record codec.
//
// Writer appends to a std::string. Reader walks a byte span and never reads past it: after the
// first failure ok() is false and every further read returns zero values.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace stockd::wire {

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u16(uint16_t v) { le(v, 2); }
  void u32(uint32_t v) { le(v, 4); }
  void u64(uint64_t v) { le(v, 8); }
  void i64(int64_t v) { le(static_cast<uint64_t>(v), 8); }
  // Precondition: s.size() <= 65535 (callers enforce the field's own, smaller limit).
  void str(std::string_view s) {
    u16(static_cast<uint16_t>(s.size()));
    out_.append(s.data(), s.size());
  }
  void raw(std::string_view s) { out_.append(s.data(), s.size()); }
  size_t size() const { return out_.size(); }

 private:
  void le(uint64_t v, int n) {
    char b[8];
    for (int i = 0; i < n; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
    out_.append(b, static_cast<size_t>(n));
  }
  std::string& out_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  explicit Reader(std::string_view in)
      : in_(reinterpret_cast<const uint8_t*>(in.data()), in.size()) {}
  uint8_t u8() { return static_cast<uint8_t>(le(1)); }
  uint16_t u16() { return static_cast<uint16_t>(le(2)); }
  uint32_t u32() { return static_cast<uint32_t>(le(4)); }
  uint64_t u64() { return le(8); }
  int64_t i64() { return static_cast<int64_t>(le(8)); }
  // Reads a u16-prefixed string; fails if longer than `max` bytes or past the end.
  std::string str(size_t max) { return std::string(view(max)); }
  // The same, as a view into the input (valid while the input is).
  std::string_view view(size_t max) {
    uint16_t n = u16();
    if (!ok_ || n > max || n > remaining()) return fail(), std::string_view();
    std::string_view s(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  // A count field that must be <= max and small enough that `min_item_bytes` each still fit.
  bool count_ok(uint64_t n, uint64_t max, size_t min_item_bytes) {
    if (!ok_ || n > max || n * min_item_bytes > remaining()) fail();
    return ok_;
  }
  size_t remaining() const { return in_.size() - pos_; }
  bool ok() const { return ok_; }
  bool at_end() const { return ok_ && pos_ == in_.size(); }
  void fail() { ok_ = false; }

 private:
  uint64_t le(int n) {
    if (!ok_ || remaining() < static_cast<size_t>(n)) return fail(), 0;
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(in_[pos_ + i]) << (8 * i);
    pos_ += static_cast<size_t>(n);
    return v;
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// FNV-1a, 32 bit: the checksum of stored records.
inline uint32_t fnv1a32(std::string_view s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}
// FNV-1a, 64 bit: request fingerprints for idempotency.
inline uint64_t fnv1a64(std::string_view s, uint64_t h = 14695981039346656037ull) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace stockd::wire
