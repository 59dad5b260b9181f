// check_invariants(): walks the whole book (O(book)); tests and recovery call it, the request
// path never does. Returns the first violation found, naming what is wrong.
#include <algorithm>
#include <array>
#include <map>
#include <thread>
#include <unordered_map>

#include "book_impl.h"

namespace stockd {

using book_detail::Hold;
using book_detail::Sku;
using proto::HoldState;

namespace {
std::string sku_at(const Sku& s) { return "SKU " + std::string(s.id) + ": "; }
std::string hold_at(const Hold& h) { return "hold " + std::to_string(h.id) + ": "; }
// A broken invariant: the state restored from disk (or made by a bug) is not a book's.
stockd::Status violated(std::string what) { return stockd::Status::Corruption(std::move(what)); }
bool owns_codes(const Hold& h) {
  return h.state == HoldState::kHeld || h.state == HoldState::kCommitted;
}
}  // namespace

// Counts: available + held + sold == total, code pools sized by their codes, user limits.
stockd::Status Book::Impl::check_skus() const {
  Units sum;
  for (const auto& [id, s] : skus) {
    sum.total += s.total;
    sum.available += s.available;
    sum.held += s.held;
    sum.sold += s.sold;
  }
  if (sum != units) return violated("the unit sums kept for STATS differ from the SKUs'");
  for (const auto& [id, s] : skus) {
    if (s.id != id) return violated("SKU " + id + ": id view is stale");
    if (s.available > s.total || s.held > s.total - s.available ||
        s.sold != s.total - s.available - s.held) {
      return violated(sku_at(s) + "available + held + sold != total");
    }
    if (s.total > book_detail::kSkuUnitsMax) return violated(sku_at(s) + "total over the maximum");
    if (s.opens_at != 0 && s.closes_at != 0 && s.closes_at <= s.opens_at) {
      return violated(sku_at(s) + "closes_at <= opens_at");
    }
    if (!s.pool && (!s.codes.empty() || !s.free.empty()))
      return violated(sku_at(s) + "codes, no pool");
    if (s.pool && s.codes.size() != s.total)
      return violated(sku_at(s) + "total != number of codes");
    if (s.pool && s.free.size() != s.available)
      return violated(sku_at(s) + "free codes != available");
    if (!std::is_heap(s.free.begin(), s.free.end(), std::greater<>())) {
      return violated(sku_at(s) + "free list is not a heap");
    }
    if (s.limit == 0 && !s.users.empty())
      return violated(sku_at(s) + "user counts without a limit");
    for (const auto& [user, units] : s.users) {
      if (units == 0) return violated(sku_at(s) + "user " + user + " has a row of 0 units");
      if (s.limit != 0 && units > s.limit)
        return violated(sku_at(s) + "user " + user + " over the limit");
    }
  }
  return stockd::Status::Ok();
}

// Holds: the heap holds exactly the HELD ones; held == sum of live holds; user counts of a SKU
// with a limit cover live holds; a hold lists one code per unit of a pool line.
stockd::Status Book::Impl::check_holds() const {
  std::unordered_map<const Sku*, uint64_t> held;
  std::map<std::pair<const Sku*, std::string_view>, uint64_t> live_units;
  std::map<std::string_view, uint32_t> live_holds;  // per user
  for (const auto& [id, h] : holds) {
    if (h.state == HoldState::kHeld) ++live_holds[h.user];
    // One permutation per hold: its sequence number was issued and maps to its id.
    if (h.seq == 0 || h.seq >= next_hold_seq || hold_id_of(h.seq, id_key) != id) {
      return violated(hold_at(h) + "bad id or sequence number");
    }
    if (h.state < HoldState::kHeld || h.state > HoldState::kExpired)
      return violated(hold_at(h) + "state");
    if (h.lines.empty()) return violated(hold_at(h) + "no lines");
    const bool live = h.state == HoldState::kHeld;
    if (live != (h.heap_pos != book_detail::kNoPos))
      return violated(hold_at(h) + "heap membership");
    if (live && (h.heap_pos >= deadlines.size() || deadlines[h.heap_pos].hold != &h ||
                 deadlines[h.heap_pos].at != h.expires_at || deadlines[h.heap_pos].id != id)) {
      return violated(hold_at(h) + "heap entry does not match");
    }
    size_t pool_units = 0;
    for (const book_detail::HoldLine& l : h.lines) {
      if (l.qty == 0) return violated(hold_at(h) + "line of qty 0");
      if (live) held[l.sku] += l.qty;
      if (live && l.sku->limit != 0) live_units[{l.sku, h.user}] += l.qty;
      if (!l.sku->pool) continue;
      const auto n = static_cast<uint64_t>(
          std::count_if(h.codes.begin(), h.codes.end(),
                        [&l](const book_detail::HoldCode& c) { return c.sku == l.sku; }));
      // A released or expired hold may name a SKU made a pool after it (counted units then,
      // no codes); a hold that owns units has one code per unit of a pool line.
      const bool owns = live || h.state == HoldState::kCommitted;
      if (n != l.qty && (owns || n != 0))
        return violated(hold_at(h) + "codes != qty of a pool line");
      pool_units += n;
    }
    if (pool_units != h.codes.size()) return violated(hold_at(h) + "lists codes of no line");
  }
  for (const auto& [id, s] : skus) {
    auto it = held.find(&s);
    if (s.held != (it == held.end() ? 0 : it->second)) {
      return violated(sku_at(s) + "held != sum of live holds");
    }
  }
  for (const auto& [key, units] : live_units) {
    if (units_of(*key.first, key.second) < units) {
      return violated(sku_at(*key.first) + "user " + std::string(key.second) +
                      " counts less than held");
    }
  }
  if (live_holds.size() != live_per_user.size())
    return violated("live holds per user: users differ");
  for (const auto& [user, n] : live_holds) {
    auto it = live_per_user.find(user);
    if (it == live_per_user.end() || it->second != n) {
      return violated("live holds of user " + std::string(user) + ": counted wrong");
    }
  }
  return stockd::Status::Ok();
}

// Codes: each is free (in the free list once) or owned; an owner that still exists is a live or
// sold hold listing it; an owner that does not is a forgotten sold order (an id issued before).
stockd::Status Book::Impl::check_codes() const {
  std::unordered_map<const Sku*, std::vector<uint8_t>> listed;
  for (const auto& [id, s] : skus) {
    if (s.pool) listed[&s].assign(s.codes.size(), 0);
  }
  for (const auto& [id, h] : holds) {
    if (!owns_codes(h)) continue;
    for (const book_detail::HoldCode& c : h.codes) {
      if (!c.sku->pool || c.index >= c.sku->codes.size())
        return violated(hold_at(h) + "bad code ref");
      if (c.sku->codes[c.index].owner != id)
        return violated(hold_at(h) + "lists a code it does not own");
      uint8_t& mark = listed[c.sku][c.index];
      if (mark != 0) return violated(hold_at(h) + "lists a code twice");
      mark = 1;
    }
  }
  size_t total_codes = 0;
  for (const auto& [id, s] : skus) {
    if (!s.pool) continue;
    total_codes += s.codes.size();
    std::vector<uint8_t> in_free(s.codes.size(), 0);
    for (uint32_t index : s.free) {
      if (index >= s.codes.size() || in_free[index]++ != 0)
        return violated(sku_at(s) + "free list");
      if (s.codes[index].owner != 0)
        return violated(sku_at(s) + "an owned code is in the free list");
    }
    const std::vector<uint8_t>& marks = listed[&s];
    for (size_t i = 0; i < s.codes.size(); ++i) {
      const book_detail::CodeSlot& slot = s.codes[i];
      auto loc = codes.find(*slot.code);
      if (loc == codes.end() || &loc->first != slot.code || loc->second.sku != &s ||
          loc->second.index != i) {
        return violated(sku_at(s) + "code index " + std::to_string(i) + " is not indexed");
      }
      if (slot.owner == 0 && in_free[i] == 0) return violated(sku_at(s) + "a free code is lost");
      if (slot.owner == 0 || marks[i] != 0) continue;
      if (holds.contains(slot.owner) || !issued(slot.owner)) {
        return violated(sku_at(s) + "code " + *slot.code +
                        " owned by a hold that does not list it");
      }
    }
  }
  if (total_codes != codes.size()) return violated("the code index has codes of no pool");
  return stockd::Status::Ok();
}

// The hold index, the deadline heap, the retention queue and the SKU order index.
stockd::Status Book::Impl::check_indexes() const {
  if (const char* why = holds.check(); why != nullptr) return violated(why);
  size_t live = 0;
  for (const auto& [id, h] : holds) live += h.state == HoldState::kHeld ? 1 : 0;
  if (live != deadlines.size()) return violated("deadline heap size != live holds");
  for (size_t i = 0; i < deadlines.size(); ++i) {
    const book_detail::Deadline& d = deadlines[i];
    if (d.hold->heap_pos != i)
      return violated("deadline heap position of hold " + std::to_string(d.id));
    if (i == 0) continue;
    const book_detail::Deadline& p = deadlines[(i - 1) / 2];
    if (d.at < p.at || (d.at == p.at && d.id < p.id)) return violated("deadline heap order");
  }
  if (finished_count() != holds.size() - live) return violated("finished-hold queue size");
  for (const Ring<book_detail::Finished>* fifo : {&sold_fifo, &unsold_fifo}) {
    if (!std::is_sorted(fifo->begin(), fifo->end(),
                        [](const auto& a, const auto& b) { return a.at < b.at; })) {
      return violated("finished-hold queue order");
    }
    for (const book_detail::Finished& e : *fifo) {
      // e.hold->id == e.id: it is the pool's hold of that id (check_indexes: pool == index).
      if (e.id == 0 || e.hold->id != e.id || e.hold->state == HoldState::kHeld ||
          (e.hold->state == HoldState::kCommitted) != (fifo == &sold_fifo)) {
        return violated("a finished-hold queue names hold " + std::to_string(e.id) +
                        ", which is not a finished hold of the book of its kind");
      }
      if (e.key_hash != book_detail::key_hash(e.hold->key)) {
        return violated("the finished-hold queue has another key hash for hold " +
                        std::to_string(e.id));
      }
    }
  }
  if (next_outbox_seq == 0) return violated("next_outbox_seq is 0");
  return stockd::Status::Ok();
}

// The idempotency and SKU lookup indexes.
stockd::Status Book::Impl::check_key_indexes() const {
  // Each keyed hold is looked up by its key: a slot at random, fetched kAhead holds before it
  // is read (a miss per hold otherwise: seconds for ten million).
  constexpr size_t kAhead = 8;
  std::array<std::pair<const Hold*, uint64_t>, kAhead> ring{};  // (hold, its key's hash)
  const auto unindexed = [this](const std::pair<const Hold*, uint64_t>& e) {
    return e.first != nullptr && idem.find(e.first->key, e.second) != e.first;
  };
  size_t keyed = 0;
  for (const auto& [id, h] : holds) {
    if (h.key.empty()) continue;
    const uint64_t hash = book_detail::key_hash(h.key);
    idem.prefetch_hash(hash);
    auto& slot = ring[keyed++ % kAhead];
    if (unindexed(slot))
      return violated(hold_at(*slot.first) + "its idempotency key is not indexed");
    slot = {&h, hash};
  }
  for (const auto& e : ring) {
    if (unindexed(e)) return violated(hold_at(*e.first) + "its idempotency key is not indexed");
  }
  if (keyed != idem.size()) return violated("the idempotency index has keys of no hold");
  if (sku_order.size() != skus.size()) return violated("SKU order index size");
  if (sku_index.size() != skus.size()) return violated("SKU lookup index size");
  for (const auto& [id, s] : skus) {
    if (sku_index.find(id) != &s) return violated(sku_at(s) + "not in the lookup index");
  }
  return stockd::Status::Ok();
}

// A big book (a start from a checkpoint of millions of holds) has its hold indexes and its key
// indexes checked on two more threads while this one checks the rest: the checks only read, and
// each walks every hold. The first violation in the order below is returned.
stockd::Status Book::check_invariants() const {
  constexpr size_t kHoldsForThreads = 100'000;
  const Impl& m = *impl_;
  stockd::Status indexes, keys;
  std::thread second, third;
  if (m.holds.size() >= kHoldsForThreads) {
    second = std::thread([&] { indexes = m.check_indexes(); });
    third = std::thread([&] { keys = m.check_key_indexes(); });
  }
  stockd::Status first;
  for (auto check : {&Impl::check_skus, &Impl::check_holds, &Impl::check_codes}) {
    if (first = (m.*check)(); !first.ok()) break;
  }
  if (second.joinable()) {
    second.join();
    third.join();
  } else if (first.ok()) {
    indexes = m.check_indexes();
    if (indexes.ok()) keys = m.check_key_indexes();
  }
  if (!first.ok()) return first;
  return indexes.ok() ? keys : indexes;
}

}  // namespace stockd
