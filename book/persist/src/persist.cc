#include "stockd/persist.h"

#include <algorithm>
#include <unordered_set>

namespace stockd {
namespace {

// Calls fn once per distinct item (in sorted order), without allocating once `order` is big
// enough: a group names the same SKU once per request that touched it.
template <class T, class Fn>
void each_once(const std::vector<T>& items, std::vector<const T*>& order, Fn&& fn) {
  if (items.size() == 1) return fn(items[0]);
  order.clear();
  for (const T& it : items) order.push_back(&it);
  std::sort(order.begin(), order.end(), [](const T* a, const T* b) { return *a < *b; });
  for (size_t i = 0; i < order.size(); ++i) {
    if (i == 0 || *order[i - 1] < *order[i]) fn(*order[i]);
  }
}

// What build_batch reuses from one group to the next (the loop thread's only): rows and the
// encoded value are filled in place, so a steady stream of groups allocates nothing here.
struct Scratch {
  std::string value;
  rec::SkuRow sku;
  rec::HoldRow hold;
  std::vector<const std::string*> skus;
  std::vector<const uint64_t*> holds;
  std::vector<const std::pair<std::string, std::string>*> users;
  std::vector<const std::pair<std::string, uint32_t>*> codes;
};

// Puts `row` (encoded into `value`) under `key`, or deletes `key` when there is no row.
template <class Row>
void write_row(storage::Batch& b, const std::string& key, const Row* row, std::string& value) {
  if (row != nullptr) {
    rec::encode(*row, value);
    b.put(key, value);
  } else {
    b.del(key);
  }
}

}  // namespace

void build_batch(storage::Batch& b, const Book& book, const Changes& ch, uint64_t lsn,
                 uint64_t outbox_acked, uint64_t outbox_first) {
  thread_local Scratch x;
  b.lsn = lsn;
  each_once(ch.skus, x.skus, [&](const std::string& sku) {
    write_row(b, rec::sku_key(sku), book.sku_row(sku, x.sku) ? &x.sku : nullptr, x.value);
  });
  each_once(ch.holds, x.holds, [&](uint64_t id) {
    write_row(b, rec::hold_key(id), book.hold_row(id, x.hold) ? &x.hold : nullptr, x.value);
  });
  each_once(ch.users, x.users, [&](const std::pair<std::string, std::string>& u) {
    const auto row = book.user_row(u.first, u.second);
    write_row(b, rec::user_key(u.first, u.second), row ? &*row : nullptr, x.value);
  });
  each_once(ch.codes, x.codes, [&](const std::pair<std::string, uint32_t>& c) {
    const auto row = book.code_row(c.first, c.second);
    write_row(b, rec::code_key(c.first, c.second), row ? &*row : nullptr, x.value);
  });
  for (const auto& r : ch.outbox) write_row(b, rec::outbox_key(r.seq), &r, x.value);
  rec::MetaRow meta = book.meta();
  meta.lsn = lsn;
  meta.outbox_acked = outbox_acked;
  meta.outbox_first = outbox_first;
  write_row(b, rec::meta_key(), &meta, x.value);
}

namespace {

// Scans one table, decoding each value into Row and handing it to `take`.
template <class Row, class Take>
std::string load_table(storage::Store& store, char tag, size_t& count, Take&& take) {
  std::string err;
  const std::string prefix{tag, '/'};
  storage::Status s = store.scan(prefix, [&](std::string_view k, std::string_view v) {
    Row row;
    std::string why;
    if (!rec::decode(v, row, why)) {
      err = "record " + std::string(1, tag) + "/... (key " + std::to_string(k.size()) +
            " bytes) is corrupt: " + why;
      return false;
    }
    ++count;
    return take(k, row, err);
  });
  if (!s.ok()) return s.message();
  return err;
}

}  // namespace

std::string recover(storage::Store& store, Book& book, Recovered& out) {
  std::string value;
  bool found = false;
  if (auto s = store.get(rec::meta_key(), value, found); !s.ok()) return s.message();
  if (found) {
    std::string why;
    if (!rec::decode(value, out.meta, why)) return "meta record is corrupt: " + why;
    book.restore(out.meta);
  }
  // Every group up to the acknowledged mark was answered: a store that ends before it lost
  // part of its log, which must never pass for a smaller store.
  if (out.meta.lsn < store.acked_lsn()) {
    return "the store ends at lsn " + std::to_string(out.meta.lsn) + " but lsn " +
           std::to_string(store.acked_lsn()) +
           " was acknowledged (ACKED): " + std::to_string(store.acked_lsn() - out.meta.lsn) +
           " acknowledged groups are missing. The write-ahead log in wal/ was deleted, cut "
           "short or replaced by an older copy; restore the data dir from a backup (never "
           "delete files under wal/)";
  }
  auto plain = [&book](auto, const auto& row, std::string&) {
    book.restore(row);
    return true;
  };
  std::string err;
  if (err = load_table<rec::SkuRow>(store, rec::kTagSku, out.skus, plain); !err.empty()) return err;
  auto hold = [&](auto, const rec::HoldRow& row, std::string&) {
    out.idem += row.key.empty() ? 0 : 1;
    book.restore(row);
    return true;
  };
  if (err = load_table<rec::HoldRow>(store, rec::kTagHold, out.holds, hold); !err.empty())
    return err;
  if (err = load_table<rec::UserRow>(store, rec::kTagUser, out.users, plain); !err.empty())
    return err;
  if (err = load_table<rec::CodeRow>(store, rec::kTagCode, out.codes, plain); !err.empty())
    return err;
  // The outbox must be a gap-free run of sequence numbers ending at next_outbox_seq - 1.
  uint64_t expect = 0;
  err = load_table<proto::OutboxRecord>(
      store, rec::kTagOutbox, out.outbox,
      [&](std::string_view k, const proto::OutboxRecord& r, std::string& e) {
        auto seq = rec::outbox_key_seq(k);
        if (!seq || *seq != r.seq) {
          e = "outbox record " + std::to_string(r.seq) + " is stored under a different key";
          return false;
        }
        if (expect != 0 && r.seq != expect) {
          e = "outbox sequence gap: expected " + std::to_string(expect) + ", found " +
              std::to_string(r.seq);
          return false;
        }
        expect = r.seq + 1;
        return true;
      });
  if (!err.empty()) return err;
  if (out.outbox > 0 && expect != out.meta.next_outbox_seq) {
    return "outbox ends at " + std::to_string(expect - 1) + " but meta says next is " +
           std::to_string(out.meta.next_outbox_seq);
  }
  if (err = book.finish_restore(); !err.empty()) return "restored state is inconsistent: " + err;
  return "";
}

}  // namespace stockd
