// The physical layout of a RocksDB write-ahead log (the NNNNNN.log files of a data dir), as far
// as the corruption tests need it to aim at one record (format as documented for leveldb's and
// RocksDB's log; written here from that description):
//   - the file is a sequence of 32 KiB blocks; the last one may be partial;
//   - a block holds fragments: a 7-byte header -- masked crc32c (u32 LE) of type and payload,
//     payload length (u16 LE), type (u8) -- then the payload;
//   - type 1 FULL is a whole logical record; a record that does not fit the rest of its block is
//     split into 2 FIRST, 3 MIDDLE..., 4 LAST; fewer than 7 bytes left in a block are padding.
// A logical record is one WriteBatch, i.e. one stockd group. The recyclable types (5..8, with
// an 11-byte header) are not used by stockd's options and are reported as unexpected.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace stockd::crash {

inline constexpr size_t kWalBlockBytes = 32768;
inline constexpr size_t kWalHeaderBytes = 7;

struct WalRecord {
  size_t begin = 0;     // offset of its first fragment's header
  size_t end = 0;       // one past its last fragment's payload
  std::string payload;  // the logical record, fragments joined
};

// Splits a log into logical records, in order. Stops at the first thing that is not a complete
// fragment; `why` then says what (empty when the file ended on a record boundary).
std::vector<WalRecord> wal_records(std::string_view bytes, std::string& why);

}  // namespace stockd::crash
