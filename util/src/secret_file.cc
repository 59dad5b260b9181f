#include "stockd/secret_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace stockd {

Status read_secret_file(const std::string& path, std::string& secret, std::string& warning,
                        size_t max_bytes) {
  warning.clear();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Io("cannot read " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    warning = path + " is accessible to other users (mode " + mode +
              "): chmod 600 it (or 400), owned by the user the program runs as";
  }
  std::string text;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return Status::Io("cannot read " + path + ": " + std::strerror(e));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > max_bytes + 2) break;  // too long either way; no need to read on
  }
  ::close(fd);
  // What editors and shells add around a line: a UTF-8 byte order mark, trailing line breaks,
  // spaces and tabs. None can be part of a token the other side generated.
  if (text.starts_with("\xEF\xBB\xBF")) text.erase(0, 3);
  while (!text.empty() && std::string_view("\n\r \t").find(text.back()) != std::string_view::npos) {
    text.pop_back();
  }
  if (text.empty()) return Status::Invalid(path + " is empty");
  if (text.find_first_of("\r\n") != std::string::npos) {
    return Status::Invalid(path + " has more than one line (one secret per file)");
  }
  if (text.size() > max_bytes) {
    return Status::Invalid(path + " holds more than " + std::to_string(max_bytes) + " bytes");
  }
  secret = std::move(text);
  return Status::Ok();
}

bool on_command_line(int argc, char** argv, std::string_view flag) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg == flag ||
        (arg.size() > flag.size() && arg.starts_with(flag) && arg[flag.size()] == '=')) {
      return true;
    }
  }
  return false;
}

}  // namespace stockd
