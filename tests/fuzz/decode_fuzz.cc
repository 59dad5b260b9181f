// Fuzz target for the wire codec: bytes -> decode_frame -> decode_request / decode_response.
//
// Properties checked on every input: nothing crashes or reads out of bounds (the sanitizers
// watch), every refusal has a reason, and every body that decodes re-encodes to exactly the
// same bytes (the grammar has one encoding per message).
//
// Two builds (tests/fuzz/CMakeLists.txt): `decode_fuzz`, with clang and libFuzzer; and
// `decode_fuzz_replay`, with the project's compiler and the main() below (STOCKD_FUZZ_REPLAY),
// which runs the entry point over the test vectors of docs/protocol.md and 10,000 seeded
// mutations of them. `decode_fuzz_replay --write-corpus DIR` writes the vectors as a seed
// corpus for the fuzzer.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <optional>
#include <span>
#include <string>

#include "stockd/protocol.h"

namespace {

using namespace stockd::proto;

constexpr Opcode kKnownOps[] = {
    Opcode::kHello,        Opcode::kPing,      Opcode::kReserve,    Opcode::kCommit,
    Opcode::kRelease,      Opcode::kClaim,     Opcode::kHoldGet,    Opcode::kSkuGet,
    Opcode::kSkuList,      Opcode::kStats,     Opcode::kSkuSet,     Opcode::kRestock,
    Opcode::kCodesLoad,    Opcode::kSaleClose, Opcode::kOutboxRead, Opcode::kOutboxAck,
    Opcode::kOutboxStatus,
};

struct Counts {
  size_t frames = 0, invalid = 0, accepted = 0, refused = 0;
} counts;  // what the inputs exercised, reported by the replay

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "decode_fuzz: %s\n", what);
  std::abort();
}

bool same_body(const std::string& frame, std::span<const uint8_t> body) {
  return frame.size() == kHeaderBytes + body.size() &&
         std::equal(body.begin(), body.end(), frame.begin() + kHeaderBytes,
                    [](uint8_t a, char b) { return a == static_cast<uint8_t>(b); });
}

void check_request(Opcode op, std::span<const uint8_t> body) {
  stockd::Result<Request> req = decode_request(op, body);
  ++(req.ok() ? counts.accepted : counts.refused);
  if (!req.ok()) return check(!req.status().message().empty(), "request refused without a reason");
  std::string frame;
  encode_request(op, 1, *req, frame);
  check(same_body(frame, body), "request re-encodes differently");
}

void check_response(Opcode op, Status status, std::span<const uint8_t> body) {
  stockd::Result<Response> resp = decode_response(op, status, body);
  ++(resp.ok() ? counts.accepted : counts.refused);
  if (!resp.ok()) {
    return check(!resp.status().message().empty(), "response refused without a reason");
  }
  std::string frame;
  encode_response(op, 1, status, *resp, frame);
  check(same_body(frame, body), "response re-encodes differently");
}

// Decodes the body as the header says, and (for coverage) as a known opcode picked from it.
void check_body(const FrameHeader& h, std::span<const uint8_t> body) {
  Opcode op = static_cast<Opcode>(h.opcode);
  Opcode known = kKnownOps[h.opcode % std::size(kKnownOps)];
  Status status = static_cast<Status>(h.status);
  check_request(op, body);
  check_response(op, status, body);
  check_request(known, body);
  check_response(known, status, body);
  check_response(known, Status::kOk, body);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  Limits limits;
  while (!in.empty()) {
    FrameDecode d = decode_frame(in, limits);
    if (d.kind == DecodeKind::kNeedMore) break;
    if (d.kind == DecodeKind::kInvalid) {
      check(!d.reason.empty() && is_error_status(d.error), "invalid frame without a reason");
      ++counts.invalid;
      break;
    }
    check(d.consumed == kHeaderBytes + d.body.size() && d.consumed <= in.size(),
          "frame size does not add up");
    check(d.body.data() == in.data() + kHeaderBytes, "body is not a view into the input");
    ++counts.frames;
    check_body(d.header, d.body);
    in = in.subspan(d.consumed);
  }
  return 0;
}

#ifdef STOCKD_FUZZ_REPLAY

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <utility>
#include <vector>

namespace {

// The `<!-- vector: NAME -->` + ```hex blocks of docs/protocol.md (see codec_test.cc).
std::vector<std::pair<std::string, std::string>> load_vectors(const char* path) {
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream file(path);
  std::string line;
  const std::string open = "<!-- vector: ", close = " -->";
  while (std::getline(file, line)) {
    if (line.rfind(open, 0) != 0 || line.size() < open.size() + close.size()) continue;
    std::string name = line.substr(open.size(), line.size() - open.size() - close.size());
    std::string bytes;
    while (std::getline(file, line) && line != "```") {
      std::istringstream words(line);
      std::string w;
      while (words >> w) {
        if (w != "```hex") bytes += static_cast<char>(std::stoi(w, nullptr, 16));
      }
    }
    out.emplace_back(name, bytes);
  }
  return out;
}

void run(const std::string& bytes) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// One random edit: the kinds of damage a peer or a bad network can do to a frame.
void mutate(std::string& s, std::mt19937_64& rng) {
  auto pick = [&rng](size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng() % n); };
  static const uint8_t kInteresting[] = {0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF};
  switch (rng() % 7) {
    case 0:
      if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << (rng() % 8));
      break;
    case 1:
      if (!s.empty()) s[pick(s.size())] = static_cast<char>(kInteresting[pick(6)]);
      break;
    case 2:
      s.insert(s.begin() + static_cast<std::ptrdiff_t>(pick(s.size() + 1)),
               static_cast<char>(rng()));
      break;
    case 3:
      if (!s.empty()) s.erase(pick(s.size()), 1 + pick(4));
      break;
    case 4:
      s.resize(pick(s.size() + 1));
      break;
    case 5: {  // duplicate a slice
      size_t at = pick(s.size() + 1);
      s.insert(at, s.substr(at, 1 + pick(16)));
      break;
    }
    default:  // a u16 or u32 field set to an extreme
      if (s.size() >= 4) {
        size_t at = pick(s.size() - 3);
        char v = static_cast<char>(kInteresting[pick(6)]);
        for (size_t i = 0; i < 2 + 2 * (rng() % 2); ++i) s[at + i] = v;
      }
      break;
  }
}

int write_corpus(const std::vector<std::pair<std::string, std::string>>& vectors,
                 const std::string& dir) {
  std::filesystem::create_directories(dir);
  for (const auto& [name, bytes] : vectors) {
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
  }
  std::printf("wrote %zu seeds to %s\n", vectors.size(), dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string doc = STOCKD_PROTOCOL_MD, corpus;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--write-corpus" && i + 1 < argc) {
      corpus = argv[++i];
    } else {
      doc = arg;
    }
  }
  auto vectors = load_vectors(doc.c_str());
  if (vectors.size() < 14) {
    std::fprintf(stderr, "decode_fuzz_replay: only %zu vectors in %s\n", vectors.size(),
                 doc.c_str());
    return 1;
  }
  if (!corpus.empty()) return write_corpus(vectors, corpus);
  std::string all;
  for (const auto& [name, bytes] : vectors) {
    run(bytes);
    all += bytes;
  }
  run(all);
  std::mt19937_64 rng(20260101);
  constexpr int kMutations = 10000;
  for (int i = 0; i < kMutations; ++i) {
    std::string s = vectors[rng() % vectors.size()].second;
    if (rng() % 4 == 0) s += vectors[rng() % vectors.size()].second;
    for (int edits = 1 + static_cast<int>(rng() % 4); edits > 0; --edits) mutate(s, rng);
    run(s);
  }
  std::printf(
      "decode_fuzz_replay: %zu vectors and %d mutations, no failure (%zu frames, %zu invalid "
      "frames, %zu bodies accepted, %zu refused)\n",
      vectors.size(), kMutations, counts.frames, counts.invalid, counts.accepted, counts.refused);
  return 0;
}

#endif  // STOCKD_FUZZ_REPLAY
