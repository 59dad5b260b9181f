// Small helpers shared by ledger.cc and ledger_verify.cc: names, texts, answer rules.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "ledger.h"

namespace stockd::crash {

// A HELD hold seen this long after its deadline means expiry did not run. Generous: the
// machine may be loaded, and the first turn after a restart expires what is due.
inline constexpr int64_t kExpiryGraceMs = 3000;

inline bool terminal(proto::HoldState s) {
  return s == proto::HoldState::kCommitted || s == proto::HoldState::kReleased ||
         s == proto::HoldState::kExpired;
}
inline std::string state_name(proto::HoldState s) { return proto::hold_state_name(s); }
inline std::string hold_name(uint64_t id) { return "hold " + std::to_string(id); }

inline void add(std::vector<Violation>& out, Problem p, std::string what) {
  out.push_back({p, std::move(what)});
}

template <class T>
std::string reply_text(const Reply<T>& r) {
  if (!r.transport_ok()) return "no answer: " + r.error;
  std::string s = proto::status_name(r.status);
  return r.error.empty() ? s : s + ": " + r.error;
}

inline std::string lines_text(const std::vector<proto::Line>& lines) {
  std::string s = "[";
  for (const auto& l : lines) s += (s.size() > 1 ? " " : "") + l.sku + "x" + std::to_string(l.qty);
  return s + "]";
}

inline std::string codes_text(const std::vector<proto::SkuCode>& codes) {
  std::string s = "[";
  for (const auto& c : codes) s += (s.size() > 1 ? " " : "") + c.code;
  return s + "]";
}

// Which (status, state) pairs a COMMIT or RELEASE may answer (see Book::commit/release).
inline bool finish_answer_ok(bool commit, proto::Status st, proto::HoldState s) {
  using proto::HoldState;
  using proto::Status;
  switch (st) {
    case Status::kOk:
      return s == (commit ? HoldState::kCommitted : HoldState::kReleased);
    case Status::kAlreadyDone:
      return s == HoldState::kCommitted || s == HoldState::kReleased;
    case Status::kHoldExpired:
      return s == HoldState::kExpired || s == HoldState::kReleased;
    default:
      return false;
  }
}

// Checks a hold made by `op` (a RESERVE or CLAIM) against the request: its state, deadline
// and codes. `seen_ms`: when the hold was seen at the latest. `found`: the hold was read back
// after a crash rather than acknowledged, so a HELD one may since have EXPIRED.
// "" or what is wrong.
std::string request_mismatch(const Op& op, proto::HoldState state,
                             const std::vector<proto::Line>& lines,
                             const std::vector<proto::SkuCode>& codes, int64_t expires_at_ms,
                             int64_t seen_ms, bool found,
                             const std::map<std::string, std::set<std::string>>& pools);

}  // namespace stockd::crash
