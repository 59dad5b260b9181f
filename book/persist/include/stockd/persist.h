// The seam between the book and the store: a group's Changes become one Batch; a store's rows
// become a book again (recovery). Runs on the loop thread; touches the store only to read.
#pragma once

#include <cstdint>
#include <string>

#include "stockd/book.h"
#include "stockd/store.h"

namespace stockd {

// Coalesces `changes` (each row written once, in its current state; deleted if gone) into a
// batch with our sequence number `lsn` and the meta row.
void build_batch(storage::Batch& b, const Book& book, const Changes& changes, uint64_t lsn,
                 uint64_t outbox_acked, uint64_t outbox_first);

struct Recovered {
  rec::MetaRow meta;
  size_t skus = 0, holds = 0, users = 0, codes = 0, outbox = 0;
  size_t idem = 0;  // holds with an idempotency key
};

// Loads every row of `store` into an empty `book`, checks each record, the outbox sequence for
// gaps and the book's invariants. "" on success, else what is wrong (naming the key).
std::string recover(storage::Store& store, Book& book, Recovered& out);

}  // namespace stockd
