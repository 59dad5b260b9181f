// The acknowledged mark: <data dir>/ACKED holds the highest log sequence number (lsn) whose
// group was durable when its answers were released. The log it describes lives elsewhere
// (<data dir>/wal/), so that losing the log (deleted as "logs", cut short, swapped for an older
// copy) is seen at the next start instead of being taken for a smaller store: recovery refuses a
// store whose last lsn is below the mark (persist.h: recover()).
//
// Format (docs/storage.md): 24 bytes = "STKACK01" | u64 lsn LE | u64 FNV-1a 64 of the first 16.
// Written in place with one pwrite after each durable write (sync mode) or periodic sync
// (interval mode), never fsynced on that path: it only ever trails the log it describes, so a
// power loss can leave it older (a weaker check), never newer than the log (a false alarm). It is
// fsynced when created and when the store closes. Only the thread that writes the store calls
// advance().
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "stockd/status.h"

namespace stockd::storage {

inline constexpr const char* kAckMarkFile = "ACKED";
inline constexpr size_t kAckMarkBytes = 24;

// The bytes of a mark for `lsn` (tests write them to simulate a crash before an ack).
std::string encode_ack_mark(uint64_t lsn);
// Ok and `lsn` set, or what is wrong with `bytes` (Corruption).
Status decode_ack_mark(const std::string& bytes, uint64_t& lsn);

class AckMark {
 public:
  // Opens the mark of `dir`, creating it with lsn 0 (fsynced, with its directory) when `create`
  // and it does not exist. Refused when it is missing and not `create`; Io or Corruption.
  static Result<std::unique_ptr<AckMark>> open(const std::string& dir, bool create);
  // Reads the mark without opening it for writing: ok (and found=false) if there is none.
  static Status read(const std::string& dir, uint64_t& lsn, bool& found);
  ~AckMark();  // fsyncs the last mark
  AckMark(const AckMark&) = delete;
  AckMark& operator=(const AckMark&) = delete;

  uint64_t lsn() const { return lsn_.load(std::memory_order_relaxed); }
  // Records that every group up to `lsn` is durable. Ok or why the write failed (the caller
  // treats it as a store failure: an answer must not leave without its mark).
  Status advance(uint64_t lsn);
  // When <dir>/ACKED is no longer the file this mark writes (deleted while the server runs,
  // taken for a stray file, or replaced), writes the mark anew under that name (fsynced, with
  // its directory) and writes there from then on; else does nothing. Any thread: advance() may
  // run meanwhile (the new file may then hold a slightly older lsn until its next advance, which
  // the mark allows: it may trail the log, never pass it). `restored` says whether it did.
  Status restore_if_unlinked(const std::string& dir, bool& restored);

 private:
  AckMark(int fd, uint64_t lsn) : fd_(fd), lsn_(lsn) {}
  int fd_;
  std::atomic<uint64_t> lsn_;
};

}  // namespace stockd::storage
