#include "wal_format.h"

#include <cstdint>

namespace stockd::crash {
namespace {

enum Type : uint8_t { kZero = 0, kFull = 1, kFirst = 2, kMiddle = 3, kLast = 4 };

}  // namespace

std::vector<WalRecord> wal_records(std::string_view bytes, std::string& why) {
  std::vector<WalRecord> out;
  WalRecord cur;
  bool open = false;  // inside a FIRST..LAST sequence
  size_t pos = 0;
  why.clear();
  while (pos < bytes.size()) {
    const size_t left_in_block = kWalBlockBytes - pos % kWalBlockBytes;
    if (left_in_block < kWalHeaderBytes) {  // block padding
      pos += left_in_block;
      continue;
    }
    if (bytes.size() - pos < kWalHeaderBytes) {
      why = "partial header at " + std::to_string(pos);
      break;
    }
    const auto b = [&](size_t i) { return static_cast<uint8_t>(bytes[pos + i]); };
    const size_t length = b(4) | (static_cast<size_t>(b(5)) << 8);
    const uint8_t type = b(6);
    if (type == kZero && length == 0) {  // preallocated, never written
      pos += left_in_block;
      continue;
    }
    if (pos + kWalHeaderBytes + length > bytes.size()) {
      why = "fragment at " + std::to_string(pos) + " runs past the end";
      break;
    }
    if (type < kFull || type > kLast) {
      why = "unexpected fragment type " + std::to_string(type) + " at " + std::to_string(pos);
      break;
    }
    const std::string_view payload = bytes.substr(pos + kWalHeaderBytes, length);
    if (type == kFull || type == kFirst) {
      cur = WalRecord{pos, 0, std::string(payload)};
      open = type == kFirst;
    } else {
      cur.payload.append(payload);
    }
    pos += kWalHeaderBytes + length;
    if (type == kFull || type == kLast) {
      cur.end = pos;
      out.push_back(std::move(cur));
      open = false;
    }
  }
  if (open && why.empty()) why = "the last record has no LAST fragment";
  return out;
}

}  // namespace stockd::crash
