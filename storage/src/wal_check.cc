#include "stockd/wal_check.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

namespace stockd::storage {
namespace {

namespace fs = std::filesystem;

// The log format (see wal_check.h).
constexpr size_t kBlockBytes = 32768;
constexpr size_t kHeaderBytes = 7;             // crc, length, type
constexpr size_t kRecyclableHeaderBytes = 11;  // and the log number
constexpr size_t kCrcCoverageStart = 6;        // the checksum covers the header from its type on
constexpr uint32_t kCrcMaskDelta = 0xa282ead8u;
constexpr uint8_t kZeroType = 0;
constexpr uint8_t kRecyclableFullType = 5;
constexpr uint8_t kRecyclableLastType = 8;
constexpr uint8_t kMaxType = 9;  // kSetCompressionType
static_assert(kCrcCoverageStart + 1 == kHeaderBytes);
static_assert(kRecyclableHeaderBytes == kHeaderBytes + 4);

constexpr uint32_t kCastagnoli = 0x82F63B78u;  // reflected

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1) != 0 ? (c >> 1) ^ kCastagnoli : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrcTable = make_crc_table();
static_assert(kCrcTable[1] == 0xF26B8303u);  // the first step of the Castagnoli table

uint32_t mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kCrcMaskDelta; }

uint8_t byte_at(std::string_view b, size_t i) { return static_cast<uint8_t>(b[i]); }
uint32_t load16(std::string_view b, size_t i) { return byte_at(b, i) | byte_at(b, i + 1) << 8; }
uint32_t load32(std::string_view b, size_t i) { return load16(b, i) | load16(b, i + 2) << 16; }

bool recyclable(uint8_t type) { return type >= kRecyclableFullType && type <= kRecyclableLastType; }

// What one header position of a block holds.
struct Fragment {
  enum Kind {
    kWhole,          // a fragment with the right checksum: `bytes` long
    kPadding,        // the rest of the block is padding
    kPartialHeader,  // the file ends inside the header
    kZeros,          // a zeroed header with room for a fragment
    kUnknownType,
    kPastBlock,  // the length runs past the end of the block
    kPastFile,   // ... of the file
    kBadCrc,
    kOldLog,  // a recyclable fragment of another log number: the file's previous life
  };
  Kind kind = kWhole;
  size_t bytes = 0;
  uint32_t length = 0;
  uint8_t type = 0;
  uint32_t log_number = 0;  // kOldLog: the number it carries
};

std::string describe(const Fragment& f) {
  switch (f.kind) {
    case Fragment::kWhole:
    case Fragment::kPadding:
      break;
    case Fragment::kPartialHeader:
      return "the file ends after " + std::to_string(f.bytes) + " bytes of its header";
    case Fragment::kZeros:
      return "a zeroed header";
    case Fragment::kUnknownType:
      return "unknown type " + std::to_string(f.type);
    case Fragment::kPastBlock:
      return "length " + std::to_string(f.length) + " runs past the end of its 32 KiB block";
    case Fragment::kPastFile:
      return "length " + std::to_string(f.length) + " runs past the end of the file";
    case Fragment::kBadCrc:
      return "checksum mismatch";
    case Fragment::kOldLog:
      return "a recycled fragment of log " + std::to_string(f.log_number);
  }
  return "intact";
}

// Classifies the bytes at `pos` of `block` (block.size() < kBlockBytes only for the file's
// last block; `last` says whether it is the last one).
Fragment inspect(std::string_view block, size_t pos, bool last, uint64_t log_number) {
  const size_t room = kBlockBytes - pos;   // what the writer had left in this block
  const size_t left = block.size() - pos;  // what the file holds of it
  Fragment f;
  if (room < kHeaderBytes) return {Fragment::kPadding};
  if (left < kHeaderBytes) return {Fragment::kPartialHeader, left};
  f.length = load16(block, pos + 4);
  f.type = byte_at(block, pos + 6);
  if (f.type == kZeroType && f.length == 0) {
    // A recyclable log pads block tails of up to 10 bytes.
    const bool zeros = block.find_first_not_of('\0', pos) == std::string_view::npos;
    f.kind = zeros && room < kRecyclableHeaderBytes ? Fragment::kPadding : Fragment::kZeros;
    return f;
  }
  if (f.type == kZeroType || f.type > kMaxType) return {Fragment::kUnknownType, 0, 0, f.type};
  const size_t header = recyclable(f.type) ? kRecyclableHeaderBytes : kHeaderBytes;
  f.bytes = header + f.length;
  if (f.bytes > left) {
    f.kind = last ? Fragment::kPastFile : Fragment::kPastBlock;
    return f;
  }
  const uint32_t crc = crc32c(block.substr(pos + kCrcCoverageStart, f.bytes - kCrcCoverageStart));
  if (mask(crc) != load32(block, pos)) {
    f.kind = Fragment::kBadCrc;
  } else if (header == kRecyclableHeaderBytes &&
             load32(block, pos + kHeaderBytes) != static_cast<uint32_t>(log_number)) {
    f.kind = Fragment::kOldLog;  // RocksDB keeps only the low 32 bits of the number
    f.log_number = load32(block, pos + kHeaderBytes);
  }
  return f;
}

struct LogFile {
  uint64_t number = 0;
  std::string name;
  fs::path path;
  uint64_t size = 0;
  uint64_t blocks() const { return (size + kBlockBytes - 1) / kBlockBytes; }
};

// The NNNNNN.log files of `dir`, by number; empty if it cannot be listed.
std::vector<LogFile> list_logs(const std::string& dir) {
  std::vector<LogFile> logs;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    LogFile f{0, it->path().filename().string(), it->path(), 0};
    constexpr std::string_view kSuffix = ".log";
    if (f.name.size() <= kSuffix.size() || !f.name.ends_with(kSuffix)) continue;
    const std::string_view digits =
        std::string_view(f.name).substr(0, f.name.size() - kSuffix.size());
    if (digits.find_first_not_of("0123456789") != std::string_view::npos) continue;
    auto [ptr, err] = std::from_chars(digits.data(), digits.data() + digits.size(), f.number);
    std::error_code size_ec;
    f.size = it->file_size(size_ec);
    if (err != std::errc() || size_ec || !it->is_regular_file(size_ec)) continue;
    logs.push_back(std::move(f));
  }
  std::sort(logs.begin(), logs.end(),
            [](const LogFile& a, const LogFile& b) { return a.number < b.number; });
  return logs;
}

// Walks and searches the logs of one dir, reading one block at a time.
class Scanner {
 public:
  explicit Scanner(std::vector<LogFile> logs) : logs_(std::move(logs)) {}
  Status check();

 private:
  struct Where {
    size_t log = 0;
    uint64_t offset = 0;
  };
  std::optional<Where> walk(Where from, size_t& whole, Fragment& bad);
  std::optional<Where> find_whole(Where from);
  std::string_view block(size_t log, uint64_t index);

  std::vector<LogFile> logs_;
  std::ifstream in_;
  size_t in_log_ = SIZE_MAX;
  uint64_t in_block_ = UINT64_MAX;
  std::string buffer_;
  std::string error_;  // a log could not be read
};

std::string_view Scanner::block(size_t log, uint64_t index) {
  if (log == in_log_ && index == in_block_) return buffer_;
  const LogFile& f = logs_[log];
  if (log != in_log_) {
    in_ = std::ifstream(f.path, std::ios::binary);
    in_log_ = log;
  }
  in_block_ = index;
  buffer_.resize(std::min<uint64_t>(kBlockBytes, f.size - index * kBlockBytes));
  in_.seekg(static_cast<std::streamoff>(index * kBlockBytes));
  in_.read(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
  if (!in_) {
    if (error_.empty()) error_ = "cannot read " + f.name + " (block " + std::to_string(index) + ")";
    in_log_ = SIZE_MAX;
    buffer_.clear();
  }
  return buffer_;
}

// Walks log `from.log` from the fragment boundary `from.offset`, counting whole fragments in
// `whole`; returns where the first bad fragment starts (and what it is, in `bad`), if any.
std::optional<Scanner::Where> Scanner::walk(Where from, size_t& whole, Fragment& bad) {
  const LogFile& f = logs_[from.log];
  for (uint64_t offset = from.offset; offset < f.size;) {
    const uint64_t index = offset / kBlockBytes;
    const std::string_view b = block(from.log, index);
    if (b.empty()) return std::nullopt;  // error_ says why
    const Fragment frag = inspect(b, offset % kBlockBytes, index + 1 == f.blocks(), f.number);
    if (frag.kind == Fragment::kPadding) {
      offset = (index + 1) * kBlockBytes;
    } else if (frag.kind == Fragment::kWhole) {
      ++whole;
      offset += frag.bytes;
    } else {
      bad = frag;
      return Where{from.log, offset};
    }
  }
  return std::nullopt;
}

// The first whole fragment of non-zero length at or after `from`, trying every byte offset of
// every later block and log.
std::optional<Scanner::Where> Scanner::find_whole(Where from) {
  for (size_t log = from.log; log < logs_.size(); ++log) {
    const LogFile& f = logs_[log];
    const uint64_t start = log == from.log ? from.offset : 0;
    for (uint64_t index = start / kBlockBytes; index < f.blocks(); ++index) {
      const std::string_view b = block(log, index);
      if (b.empty()) return std::nullopt;  // error_ says why
      size_t pos = index == start / kBlockBytes ? start % kBlockBytes : 0;
      for (; pos + kHeaderBytes <= b.size(); ++pos) {
        const uint8_t type = byte_at(b, pos + 6);
        if (type == kZeroType || type > kMaxType || load16(b, pos + 4) == 0) continue;
        if (inspect(b, pos, index + 1 == f.blocks(), f.number).kind == Fragment::kWhole) {
          return Where{log, index * kBlockBytes + pos};
        }
      }
    }
  }
  return std::nullopt;
}

Status Scanner::check() {
  std::optional<Where> damage;
  Fragment bad;
  size_t whole = 0;
  for (size_t log = 0; log < logs_.size() && !damage && error_.empty(); ++log) {
    damage = walk({log, 0}, whole, bad);
  }
  if (!error_.empty()) return Status::Io(error_);
  if (!damage) return Status::Ok();
  const std::optional<Where> next = find_whole({damage->log, damage->offset + 1});
  if (!error_.empty()) return Status::Io(error_);
  if (!next) return Status::Ok();  // a torn tail: RocksDB drops it
  size_t after = 0;
  Fragment ignored;
  (void)walk(*next, after, ignored);
  for (size_t log = next->log + 1; log < logs_.size(); ++log) (void)walk({log, 0}, after, ignored);
  if (!error_.empty()) return Status::Io(error_);
  const std::string& name = logs_[damage->log].name;
  std::string first = "byte " + std::to_string(next->offset);
  if (next->log != damage->log) first += " of " + logs_[next->log].name;
  return Status::Corruption(
      "Corruption: " + name + ": corrupt record at byte " + std::to_string(damage->offset) + " (" +
      describe(bad) + ") followed by " + std::to_string(after) + " intact record" +
      (after == 1 ? "" : "s") + " (the first at " + first +
      "): the damage is not a torn tail; refusing to start on a shorter history");
}

}  // namespace

bool log_holds_no_record(const std::string& path) {
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (ec) return false;
  const std::string name = fs::path(path).filename().string();
  uint64_t number = 0;
  (void)std::from_chars(name.data(), name.data() + name.size(), number);
  std::ifstream in(path, std::ios::binary);
  std::string block;
  const uint64_t blocks = (size + kBlockBytes - 1) / kBlockBytes;
  for (uint64_t offset = 0, loaded = UINT64_MAX; offset < size;) {
    const uint64_t index = offset / kBlockBytes;
    if (index != loaded) {
      block.resize(std::min<uint64_t>(kBlockBytes, size - index * kBlockBytes));
      in.seekg(static_cast<std::streamoff>(index * kBlockBytes));
      in.read(block.data(), static_cast<std::streamsize>(block.size()));
      if (!in) return false;
      loaded = index;
    }
    const Fragment f = inspect(block, offset % kBlockBytes, index + 1 == blocks, number);
    if (f.kind == Fragment::kPadding) {
      offset = (index + 1) * kBlockBytes;
      continue;
    }
    if (f.kind != Fragment::kWhole) return true;  // nothing complete before its first bad one
    constexpr uint8_t kFull = 1, kLast = 4, kRecyclableFull = 5, kRecyclableLast = 8;
    if (f.type == kFull || f.type == kLast || f.type == kRecyclableFull ||
        f.type == kRecyclableLast) {
      return false;
    }
    offset += f.bytes;
  }
  return true;
}

namespace {

uint32_t crc32c_table(uint32_t c, std::string_view data) {
  for (const char ch : data) c = kCrcTable[(c ^ static_cast<uint8_t>(ch)) & 0xffu] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__)
// SSE4.2's crc32 instruction computes the same polynomial 8 bytes at a time: the check reads
// every byte of every log at each start, and the table walk was 8% of a million-order recovery.
[[gnu::target("sse4.2")]] uint32_t crc32c_sse42(uint32_t c, std::string_view data) {
  const char* p = data.data();
  size_t n = data.size();
  uint64_t c64 = c;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t word;
    std::memcpy(&word, p, sizeof word);
    c64 = __builtin_ia32_crc32di(c64, word);
  }
  c = static_cast<uint32_t>(c64);
  for (; n > 0; ++p, --n) c = __builtin_ia32_crc32qi(c, static_cast<unsigned char>(*p));
  return c;
}
const bool kHaveSse42 = __builtin_cpu_supports("sse4.2");
#endif

}  // namespace

uint32_t crc32c_extend(uint32_t crc, std::string_view data) {
#if defined(__x86_64__)
  if (kHaveSse42) return ~crc32c_sse42(~crc, data);
#endif
  return crc32c_extend_portable(crc, data);
}

uint32_t crc32c_extend_portable(uint32_t crc, std::string_view data) {
  return ~crc32c_table(~crc, data);
}

Status check_wal_tail(const std::string& dir) { return Scanner(list_logs(dir)).check(); }

}  // namespace stockd::storage
