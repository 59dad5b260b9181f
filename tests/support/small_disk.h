// A tmpfs of a few MiB mounted on a fresh temp dir (needs root; mounted() says whether it is),
// unmounted on destruction: a disk that a test can fill up and free again.
#pragma once

#include <sys/mount.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "support/process.h"

namespace stockd::test {

class SmallDisk {
 public:
  explicit SmallDisk(int mb) : dir_(make_temp_dir("tmpfs")) {
    std::string opts = "size=" + std::to_string(mb) + "m";
    mounted_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, opts.c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    std::filesystem::remove_all(dir_);
  }
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;
  bool mounted() const { return mounted_; }
  const std::filesystem::path& dir() const { return dir_; }
  // Writes a filler file that leaves about `keep` bytes free.
  void fill_leaving(uintmax_t keep) {
    auto space = std::filesystem::space(dir_);
    uintmax_t n = space.available > keep ? space.available - keep : 0;
    std::ofstream f(dir_ / "filler", std::ios::binary);
    std::string block(1 << 16, 'x');
    for (uintmax_t w = 0; w < n; w += block.size()) {
      f.write(block.data(), static_cast<std::streamsize>(std::min<uintmax_t>(block.size(), n - w)));
    }
  }
  void free_filler() { std::filesystem::remove(dir_ / "filler"); }

 private:
  std::filesystem::path dir_;
  bool mounted_ = false;
};

}  // namespace stockd::test
