// stockctl commands that load a file: `seed FILE` and `codes load SKU FILE`. Both parse and
// validate the whole file first (exit 2, nothing sent, on the first bad line), then send.
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <new>

#include "commands.h"
#include "format.h"
#include "seed.h"

namespace stockd::ctl {

namespace {

constexpr size_t kFailuresShown = 20;  // seed: refused rows printed before "... and N more"

// Larger than any seed or codes file (a pool's 10,000,000 codes of 128 bytes are 1.3 GB).
constexpr size_t kFileBytesMax = size_t{2} << 30;

// The whole file, or Io saying why not: unreadable, over kFileBytesMax (a device, a wrong
// path), or more than memory allows.
Result<std::string> read_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return Status::Io("cannot read " + path + ": " + std::strerror(errno));
  // A device (a wrong path: /dev/urandom never ends) or a directory is no seed or codes file; a
  // pipe is (`stockctl seed <(make-seed)`), up to the cap.
  struct stat st {};
  if (::fstat(::fileno(f), &st) == 0 &&
      (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISDIR(st.st_mode))) {
    std::fclose(f);
    return Status::Io("cannot read " + path + ": a " +
                      (S_ISDIR(st.st_mode) ? "directory" : "device") +
                      ", not a seed or codes file");
  }
  std::string content;
  char buf[1 << 16];
  size_t n = 0;
  Status error;
  try {
    while (error.ok() && (n = std::fread(buf, 1, sizeof buf, f)) > 0) {
      if (content.size() + n > kFileBytesMax) {
        error = Status::Io("cannot read " + path + ": larger than 2 GiB, not a seed or codes file");
      } else {
        content.append(buf, n);
      }
    }
  } catch (const std::bad_alloc&) {
    error = Status::Io("cannot read " + path + ": out of memory after " +
                       std::to_string(content.size()) + " bytes");
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (!error.ok()) return error;
  if (failed) return Status::Io("cannot read " + path + ": read error");
  return content;
}

template <class T>
std::string reply_text_of(const Reply<T>& r) {
  std::string name = proto::status_name(r.status);
  return r.error.empty() ? name : name + ": " + r.error;
}

struct SeedTally {
  size_t applied = 0;
  size_t refused = 0;
  size_t unanswered = 0;
  std::string first_status = "OK";
  std::string transport_error;
  Json failures = Json::array();
};

SeedTally tally(const ClientOptions& client, const std::vector<SeedRow>& rows,
                const std::vector<Reply<proto::Response>>& replies) {
  SeedTally t;
  for (size_t i = 0; i < replies.size(); ++i) {
    const auto& r = replies[i];
    if (!r.transport_ok()) {
      if (t.unanswered++ == 0) t.transport_error = r.error;
      continue;
    }
    if (r.ok()) {
      ++t.applied;
      continue;
    }
    if (t.refused++ == 0) t.first_status = proto::status_name(r.status);
    t.failures.push_back(Json{{"where", rows[i].where},
                              {"sku", rows[i].req.sku},
                              {"status", proto::status_name(r.status)},
                              {"error", r.error}});
    if (t.refused <= kFailuresShown) {
      std::cerr << rows[i].where << ": sku " << rows[i].req.sku << ": " << reply_text_of(r)
                << admin_hint(client, r.status) << '\n';
    }
  }
  if (t.refused > kFailuresShown) {
    std::cerr << "... and " << t.refused - kFailuresShown << " more refused\n";
  }
  return t;
}

// Prints the outcome of `codes load`: `loaded` codes went in with `sent` of `requests` requests;
// `r` is the last answer (OK, or the one that stopped us).
// `loaded`: codes of the file sent in requests answered OK; `added` of them new to the pool (the
// rest were in it already: a load run again after one cut short).
int codes_outcome(const Args& a, const Reply<proto::CodesLoadResp>& r, size_t loaded,
                  uint64_t added, size_t sent, size_t requests, size_t in_file) {
  if (r.transport_ok() && a.json) {
    Json j = envelope(r);
    j["loaded"] = loaded;
    j["added"] = added;
    j["already_in_pool"] = loaded - added;
    j["requests"] = sent;
    j["codes_in_file"] = in_file;
    std::cout << dump(j) << '\n';
  }
  if (r.ok()) {
    if (!a.json) {
      std::cout << "loaded " << added << " new codes";
      if (added != loaded) std::cout << " (" << loaded - added << " were in the pool already)";
      std::cout << " in " << sent << (sent == 1 ? " request: " : " requests: ")
                << sku_text(r.body.sku) << '\n';
    }
    return kExitOk;
  }
  if (!r.transport_ok()) {
    std::cerr << r.error << '\n';
  } else if (r.status == proto::Status::kDuplicateCode) {
    std::cerr << "DUPLICATE_CODE: code " << quote(r.body.duplicate) << " is already loaded\n";
  } else {
    std::cerr << reply_text_of(r) << admin_hint(a.client, r.status) << '\n';
  }
  if (sent > 0) {
    std::cerr << "note: " << loaded << " of " << in_file << " codes (" << sent << " of " << requests
              << " requests) were loaded before this and stay loaded"
              << (r.transport_ok() ? "" : "; the failed request may or may not have been applied")
              << "; once the cause is fixed, the same command loads the rest (codes already in "
                 "the pool are skipped)\n";
  }
  return r.transport_ok() ? kExitRefused : kExitTransport;
}

}  // namespace

int cmd_seed(const Args& a) {
  Result<std::string> content = read_file(a.file);
  if (!content.ok()) {
    std::cerr << content.status().message() << '\n';
    return kExitUsage;
  }
  Result<std::vector<SeedRow>> rows = parse_seed(a.file, *content, wall_clock_ms());
  if (!rows.ok()) {
    std::cerr << rows.status().message() << '\n';
    return kExitUsage;
  }
  Client client(a.client);
  for (const SeedRow& row : *rows) client.queue(proto::Opcode::kSkuSet, row.req);
  SeedTally t = tally(a.client, *rows, client.flush());
  const size_t total = rows->size();
  if (t.unanswered > 0) {
    std::cerr << t.transport_error << '\n';
    if (t.unanswered < total) {
      std::cerr << t.unanswered << " of " << total << " rows got no answer; they may or may not "
                << "be applied (SKU_SET is absolute: running the seed again is safe)\n";
    }
  }
  if (a.json && t.unanswered < total) {
    // Rows without an answer are not "OK" either: a script reads the status.
    const std::string status =
        t.refused > 0 ? t.first_status : (t.unanswered > 0 ? "NO_ANSWER" : "OK");
    std::cout << dump(Json{{"status", status},
                           {"file", a.file},
                           {"rows", total},
                           {"applied", t.applied},
                           {"refused", t.refused},
                           {"unanswered", t.unanswered},
                           {"failures", t.failures}})
              << '\n';
  } else if (t.unanswered < total) {
    std::cout << "applied " << t.applied << " of " << total << " SKUs from " << a.file << '\n';
  }
  if (t.unanswered > 0) return kExitTransport;
  return t.refused > 0 ? kExitRefused : kExitOk;
}

// Sends the codes in as few CODES_LOAD requests as the server's frame limit allows (one when
// they fit). Each request is all-or-nothing on the server, but requests are separate: when a
// later one fails (DUPLICATE_CODE, connection lost), the earlier ones stay loaded, and we say so.
int cmd_codes_load(const Args& a) {
  if (Status e = check_sku(a.sku); !e.ok()) {
    std::cerr << "SKU " << quote(a.sku) << " " << e.message() << '\n';
    return kExitUsage;
  }
  Result<std::string> content = read_file(a.file);
  if (!content.ok()) {
    std::cerr << content.status().message() << '\n';
    return kExitUsage;
  }
  Result<std::vector<std::string>> codes = parse_codes(a.file, *content);
  if (!codes.ok()) {
    std::cerr << codes.status().message() << '\n';
    return kExitUsage;
  }
  Client client(a.client);
  if (auto hello = client.ping(); !hello.ok()) {  // connects: learns the server's frame limit
    std::cerr << (hello.transport_ok() ? reply_text_of(hello) : hello.error) << '\n';
    if (a.json && hello.transport_ok()) std::cout << dump(envelope(hello)) << '\n';
    return hello.transport_ok() ? kExitRefused : kExitTransport;
  }
  const std::vector<size_t> ends = chunk_codes(a.sku, *codes, client.frame_bytes_max());
  Reply<proto::CodesLoadResp> r;
  size_t start = 0;
  size_t sent = 0;  // requests answered OK
  // The pool's size before and now: the difference is what this load added (a SKU not found is
  // answered so by the first CODES_LOAD).
  const Reply<proto::SkuView> pool = client.sku_get(a.sku);
  const uint64_t before = pool.ok() ? pool.body.total : 0;
  uint64_t total = before;
  const bool counted = pool.ok();  // else the split of new and known codes is not known
  for (size_t end : ends) {
    proto::CodesLoadReq req{a.sku,
                            {codes->begin() + static_cast<ptrdiff_t>(start),
                             codes->begin() + static_cast<ptrdiff_t>(end)}};
    r = client.codes_load(req);
    if (!r.ok()) break;
    ++sent;
    start = end;
    total = r.body.sku.total;
  }
  const uint64_t added = counted && total >= before ? total - before : start;
  return codes_outcome(a, r, start, std::min<uint64_t>(added, start), sent, ends.size(),
                       codes->size());
}

}  // namespace stockd::ctl
