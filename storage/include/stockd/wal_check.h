// Tells a torn tail of RocksDB's write-ahead log from damage in the middle of it.
//
// The store opens RocksDB with kTolerateCorruptedTailRecords: a last record that a crash cut
// short was never acknowledged, and RocksDB drops it. But RocksDB decides "cut short" from the
// record alone: if a flipped bit makes the length of an acknowledged record in the last block
// point past the end of the file, RocksDB drops that record and every acknowledged one after
// it, without a word. check_wal_tail() looks at what follows the first bad record instead.
//
// The log format, as documented for leveldb and RocksDB (read here, not reused):
//   file     := block*                      the last block may be short
//   block    := fragment* padding?          32768 bytes
//   fragment := crc:u32 length:u16 type:u8 [log_number:u32] payload[length]
//   - all integers little-endian; log_number only for the recyclable types 5..8 (an 11-byte
//     header), where it must equal the file's number (else the record is from the file's
//     previous life, which ends the log);
//   - types: 0 zero (preallocated), 1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST, 5..8 their recyclable
//     forms, 9 SET_COMPRESSION (RocksDB 7.x, only with wal_compression);
//   - crc is crc32c of type, log_number (if any) and payload, masked as
//     ((crc >> 15) | (crc << 17)) + 0xa282ead8;
//   - a fragment never crosses a block; a block tail too short for a header is padding (zeros).
// Only the physical layer is checked: how fragments join into records (FIRST..LAST) and what
// the records hold is RocksDB's to check, and RocksDB refuses such damage on its own.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "stockd/status.h"

namespace stockd::storage {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): crc32c(data) is the checksum of
// `data`; crc32c_extend(crc32c(a), b) == crc32c(a + b). With SSE4.2 (x86-64) 8 bytes per step;
// crc32c_extend_portable is the byte-table version it must agree with.
uint32_t crc32c_extend(uint32_t crc, std::string_view data);
uint32_t crc32c_extend_portable(uint32_t crc, std::string_view data);
inline uint32_t crc32c(std::string_view data) { return crc32c_extend(0, data); }

// Reads the write-ahead logs of the RocksDB data dir `dir` (the files NNNNNN.log, in the order
// of their numbers) and returns ok when RocksDB may open it: every fragment is whole, or the
// first bad one (a wrong checksum, a length running past its block or the file, an unknown
// type, a zeroed header) is followed by nothing but bytes that hold no whole fragment. A torn
// last record and zeros or garbage after the last record pass.
//
// Otherwise returns Corruption, its message starting with "Corruption: " and naming the file, the
// byte offset of the bad fragment, what is wrong with it, how many whole fragments (physical
// records) follow it -- counted on from the first one found, and in each later log up to its first
// bad fragment -- and where the first is. Returns Io naming the file if a log cannot be read.
// Returns ok if `dir` cannot be listed (no store yet, or not a directory: RocksDB then
// says what is wrong).
//
// Every log present is read, the MANIFEST is not: a log RocksDB has flushed but not deleted yet
// is read too. That is harmless unless a crash left such a log with a torn tail and a newer log
// holds records: that reads as damage. RocksDB deletes a flushed log right after the flush
// (and at every open), so this takes a crash in between that loses the unsynced end of the
// flushed log but keeps records of the newer one.
//
// Reads the files directly, not through a rocksdb::Env: call it before RocksDB opens the dir.
// Any thread; holds one 32 KiB block in memory at a time. Linear in the size of the logs,
// except after a bad fragment, where each later byte offset whose type and length could start
// a fragment costs one checksum of at most a block; the search stops at the first whole
// fragment found.
Status check_wal_tail(const std::string& dir);

// Whether the log file `path` (NNNNNN.log) holds no complete record: no whole fragment that
// ends one (FULL or LAST) before its first bad fragment. An empty file holds none; false if it
// cannot be read. RocksDB 7.8 keeps such a log older than the live one after an open (a start
// that wrote nothing, or whose first record was torn), and its torn bytes would read as damage
// once a newer log holds records: the store removes it (store.cc).
bool log_holds_no_record(const std::string& path);

}  // namespace stockd::storage
