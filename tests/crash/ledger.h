// The crash tier's model of what stockd acknowledged, and the checker that holds a restarted
// server to it.
//
// Load threads record every request they sent and every answer they got (an Op). After the
// server died (kill -9, simulated power loss) the ops are absorbed into the model; after it came
// back, verify() reads the server's state and reports every broken promise:
//   - lost acknowledgement: an acknowledged hold, order, commit or release that is missing or
//     in another state;
//   - oversold: available + held + sold != total, or sold/held differing from the holds;
//   - duplicate code: one code in two live holds, or handed out by two acknowledged claims;
//   - applied twice: an idempotency key with two holds, or a retry answered differently;
//   - unexplained: a durable change no request in flight at the crash can account for.
// Unanswered requests (transport errors, STORAGE_UNAVAILABLE) may or may not have been applied;
// verify() settles each one from what the server holds, so the model is exact again after it.
//
// Not thread-safe: one test thread owns a Ledger; load threads only fill their own Op vectors.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "stockd/client.h"
#include "stockd/protocol.h"

namespace stockd::crash {

int64_t wall_ms();  // the server's clock: ms since the Unix epoch

struct SkuSpec {
  std::string id;
  uint64_t units = 0;  // counted units; for a code pool, the codes loaded at seed
  uint32_t per_user_limit = 0;
  bool pool = false;
};

// The SKUs every crash test sells: two limited, one unlimited, one code pool.
std::vector<SkuSpec> default_skus();

enum class Kind : uint8_t { kReserve, kClaim, kCommit, kRelease, kReplay };

// One request a load thread sent and what came back.
struct Op {
  Kind kind = Kind::kReserve;
  int thread = 0;
  int64_t sent_ms = 0;
  int64_t answered_ms = 0;
  proto::ReserveReq reserve;  // kReserve; kReplay of a reserve
  proto::ClaimReq claim;      // kClaim; kReplay of a claim
  bool is_claim = false;      // kReplay: which of the two
  uint64_t hold_id = 0;       // kCommit, kRelease
  std::string hold_user;      // kCommit, kRelease: whose hold (buyers must name it)
  bool transport = false;     // an answer came back
  proto::Status status = proto::Status::kInternal;
  proto::ReserveResp reserved;
  proto::ClaimResp claimed;
  proto::HoldView view;
  std::string error;
  bool answered() const { return transport && !proto::is_error_status(status); }
};

enum class Problem : uint8_t {
  kLostAck,
  kOversold,
  kDuplicateCode,
  kAppliedTwice,
  kUnexplained,
  kLimit,
  kExpiry,
  kServer,  // the server did not answer a check, or answered nonsense
};
const char* problem_name(Problem p);

struct Violation {
  Problem problem;
  std::string what;
};
std::string describe(const std::vector<Violation>& v, size_t max_lines = 25);

struct Counts {
  uint64_t ops = 0, acked = 0, refused = 0, unanswered = 0;
  uint64_t inflight_durable = 0, inflight_lost = 0;  // unanswered requests, settled by verify()
  uint64_t holds_checked = 0, key_retries = 0;
  std::map<proto::Status, uint64_t> refusals;  // business refusals of new requests, by status
};
std::string refusals_text(const Counts& c);

// What a load thread may work on in the next phase.
struct Work {
  using HoldOf = std::pair<uint64_t, std::string>;  // hold id, its user
  std::vector<HoldOf> held;                         // HELD holds this thread owns
  std::vector<HoldOf> finished;  // a few finished holds (poking them must change nothing)
  std::vector<Op> replays;       // acknowledged reserve/claim requests to send again
};

class Ledger {
 public:
  explicit Ledger(std::vector<SkuSpec> skus);

  const std::vector<SkuSpec>& skus() const { return skus_; }
  // Creates the SKUs and loads the pools' codes through `admin`. "" or why not.
  std::string seed(Client& admin);
  // Restocks SKUs and loads codes where fewer than a third are left. "" or why not.
  std::string top_up(Client& admin);
  Work work_for(int thread, std::mt19937_64& rng) const;

  // Adds the ops of one load phase (load threads stopped). Problems visible in the answers
  // alone (a replay with another hold, a code given twice) are returned at once.
  std::vector<Violation> absorb(const std::vector<Op>& ops);

  // Reads the server through `admin` (HOLD_GET, SKU_GET, STATS) and retries acknowledged keys
  // through `buyer`; checks everything above and settles unanswered requests. `full` re-reads
  // every hold ever made, not only those that may have changed since the last verify().
  std::vector<Violation> verify(Client& admin, Client& buyer, std::mt19937_64& rng, bool full);

  const Counts& counts() const { return counts_; }

 private:
  struct Hold {
    uint64_t id = 0;
    int owner = 0;  // load thread that made it
    std::string user, key;
    std::vector<proto::Line> lines;
    // The codes it took, as far as a buyer was shown them: a hold's codes are shown once it is
    // sold (its first answer for a buy-now or a claim; COMMIT or HOLD_GET for a held one).
    std::vector<proto::SkuCode> codes;
    bool held_first = false;  // its first answer was HELD (and showed no codes)
    proto::HoldState state = proto::HoldState::kNone;  // last state known durable
    int64_t expires_at_ms = 0;
    bool maybe_commit = false;   // a COMMIT went unanswered since `state` was known
    bool maybe_release = false;  // likewise a RELEASE
    bool checked = false;        // read back from a restarted server at least once
  };
  struct Key {
    Op request;         // the first request sent under the key
    uint64_t hold = 0;  // hold it made, once known (acknowledged or found durable)
    bool acked = false;
    bool refused = false;  // a business refusal: nothing may be stored under the key
    bool pending = false;  // unanswered and not yet settled
  };
  struct Snapshot;

  static Hold hold_of_claim(const Op& op);
  static Hold hold_of_reserve(const Op& op);
  void absorb_new(const Op& op, std::vector<Violation>& out);
  void absorb_replay(const Op& op, std::vector<Violation>& out);
  void absorb_finish(const Op& op, std::vector<Violation>& out);
  void check_transition(const Hold& h, proto::HoldState s, bool commit_sent, bool release_sent,
                        int64_t t_begin, int64_t t_end, std::vector<Violation>& out) const;
  bool same_body(const Hold& h, const proto::HoldView& v, std::string& why) const;
  // A held hold read back COMMITTED shows its codes: the first time, they become the model's
  // (checked against the pools); "" or what is wrong.
  std::string learn_codes(Hold& h, const proto::HoldView& v) const;
  bool read_state(Client& admin, bool full, Snapshot& snap, std::vector<Violation>& out);
  void check_hold(const proto::HoldView& v, int64_t t_begin, int64_t t_end,
                  std::vector<Violation>& out);
  void check_new_hold(const proto::HoldView& v, int64_t seen_ms, std::vector<Violation>& out);
  void check_accounting(const Snapshot& snap, std::vector<Violation>& out) const;
  void check_codes(std::vector<Violation>& out) const;
  void settle_pending();
  void retry_keys(Client& buyer, std::mt19937_64& rng, std::vector<Violation>& out);

  std::vector<SkuSpec> skus_;
  std::map<std::string, uint64_t> total_;               // sku -> acknowledged total
  std::map<std::string, std::set<std::string>> codes_;  // pool sku -> codes loaded
  std::map<uint64_t, Hold> holds_;
  std::map<std::string, Key> keys_;
  std::set<std::string> claimed_codes_;    // codes of every acknowledged claim, ever
  std::vector<std::string> fresh_keys_;    // known since the last verify()
  std::vector<std::string> known_keys_;    // keys whose hold is known (acknowledged or found)
  std::vector<std::string> pending_keys_;  // unanswered, not yet settled
  uint64_t scanned_to_ = 1;                // holds below this id were read back
  int code_batches_ = 0;
  Counts counts_;
};

}  // namespace stockd::crash
