// What the replay builds of the fuzz targets share: read a committed corpus directory, make
// seeded random edits of its inputs, and run each through LLVMFuzzerTestOneInput.
//
// A replay is deterministic for a given seed: mutation i of a run is the same on every machine.
// Only how many mutations run depends on the machine (the time budget stops it early).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace stockd::fuzz {

// Every regular file of `dir`, sorted by name (empty if the directory is missing).
inline std::vector<std::pair<std::string, std::string>> read_corpus(const std::string& dir) {
  std::vector<std::pair<std::string, std::string>> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    std::ifstream f(it->path(), std::ios::binary);
    out.emplace_back(it->path().filename().string(),
                     std::string(std::istreambuf_iterator<char>(f), {}));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// What is running: a corpus file's name, or "mutation N of NAME" (for a failure message).
inline std::string& current_input() {
  static std::string name;
  return name;
}

inline void run_one(const std::string& bytes) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// One random edit: a flipped bit, an extreme byte or u16/u32, an inserted, erased or duplicated
// run, a cut, or a slice spliced in from `other`.
inline void mutate(std::string& s, const std::string& other, std::mt19937_64& rng) {
  auto pick = [&rng](size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng() % n); };
  static const uint8_t kInteresting[] = {0x00, 0x01, 0x02, 0x7F, 0x80, 0xFE, 0xFF};
  constexpr size_t kInterestingCount = std::size(kInteresting);
  switch (rng() % 8) {
    case 0:
      if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << (rng() % 8));
      break;
    case 1:
      if (!s.empty()) s[pick(s.size())] = static_cast<char>(kInteresting[pick(kInterestingCount)]);
      break;
    case 2:
      s.insert(s.begin() + static_cast<std::ptrdiff_t>(pick(s.size() + 1)),
               static_cast<char>(rng()));
      break;
    case 3:
      if (!s.empty()) s.erase(pick(s.size()), 1 + pick(8));
      break;
    case 4:
      s.resize(pick(s.size() + 1));
      break;
    case 5: {  // duplicate a slice (a frame sent twice, a retry)
      size_t at = pick(s.size() + 1);
      s.insert(at, s.substr(at, 1 + pick(64)));
      break;
    }
    case 6:  // splice: a slice of another input at a random place
      if (!other.empty()) {
        size_t from = pick(other.size());
        s.insert(pick(s.size() + 1), other.substr(from, 1 + pick(256)));
      }
      break;
    default:  // a u16 or u32 field set to an extreme
      if (s.size() >= 4) {
        size_t at = pick(s.size() - 3);
        char v = static_cast<char>(kInteresting[pick(kInterestingCount)]);
        for (size_t i = 0; i < 2 + 2 * (rng() % 2); ++i) s[at + i] = v;
      }
      break;
  }
}

struct ReplayResult {
  size_t inputs = 0;     // corpus files (and extra seeds) run as they are
  size_t mutations = 0;  // mutated inputs run
  double seconds = 0;
};

// Runs every input (all of them, however long it takes), then up to `mutations` seeded mutations
// of them (1-4 edits each), stopping early once `budget_seconds` have passed since the start.
inline ReplayResult replay(const std::vector<std::pair<std::string, std::string>>& inputs,
                           size_t mutations, double budget_seconds, uint64_t seed) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto elapsed = [&start] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  ReplayResult r;
  for (const auto& [name, bytes] : inputs) {
    current_input() = name;
    run_one(bytes);
    ++r.inputs;
  }
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < mutations && !inputs.empty(); ++i) {
    if (i % 64 == 0 && elapsed() > budget_seconds) break;
    const auto& [name, bytes] = inputs[rng() % inputs.size()];
    current_input() = "mutation " + std::to_string(i) + " of " + name;
    std::string s = bytes;
    const std::string& other = inputs[rng() % inputs.size()].second;
    for (int edits = 1 + static_cast<int>(rng() % 4); edits > 0; --edits) mutate(s, other, rng);
    run_one(s);
    ++r.mutations;
  }
  r.seconds = elapsed();
  return r;
}

}  // namespace stockd::fuzz
