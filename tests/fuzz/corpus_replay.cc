// A main() for a fuzz entry point built with the project's compiler: runs every file of a
// committed corpus directory, then seeded mutations of them, through LLVMFuzzerTestOneInput.
//
//   corpus_replay [DIR] [--mutations N] [--seconds S] [--seed X]
//
// DIR defaults to STOCKD_FUZZ_CORPUS (set by tests/fuzz/CMakeLists.txt). Exit 0 when every
// input passed (a failing input aborts inside the entry point), 1 when the directory is empty.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "replay.h"

int main(int argc, char** argv) {
  std::string dir = STOCKD_FUZZ_CORPUS;
  size_t mutations = 200000;
  double seconds = 10;
  uint64_t seed = 20260101;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--mutations" && i + 1 < argc) {
      mutations = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--seconds" && i + 1 < argc) {
      seconds = std::strtod(argv[++i], nullptr);
    } else if (arg == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else {
      dir = arg;
    }
  }
  auto inputs = stockd::fuzz::read_corpus(dir);
  if (inputs.empty()) {
    std::fprintf(stderr, "corpus_replay: no inputs in %s\n", dir.c_str());
    return 1;
  }
  auto r = stockd::fuzz::replay(inputs, mutations, seconds, seed);
  std::printf(
      "corpus_replay: %zu inputs of %s and %zu mutations (seed %llu) in %.1f s, no failure\n",
      r.inputs, dir.c_str(), r.mutations, static_cast<unsigned long long>(seed), r.seconds);
  return 0;
}
