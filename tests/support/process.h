// Test support: run the real stockd binary on an ephemeral loopback port with a fresh data dir,
// stop it gracefully or with kill -9, restart it on the same data.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "stockd/client.h"

namespace stockd::test {

inline std::filesystem::path make_temp_dir(const std::string& tag) {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / ("stockd-" + tag + "-XXXXXX")).string();
  char* p = mkdtemp(tmpl.data());
  if (p == nullptr) std::abort();
  return p;
}

// A stockd child process.
class StockdProcess {
 public:
  static constexpr const char* kAdminToken = "test-admin";
  static constexpr const char* kOutboxToken = "test-outbox";

  explicit StockdProcess(std::vector<std::string> extra_args = {}, std::string data_dir = "")
      : extra_(std::move(extra_args)) {
    data_dir_ = data_dir.empty() ? make_temp_dir("data").string() : data_dir;
    owns_dir_ = data_dir.empty();
  }
  ~StockdProcess() {
    kill9();
    if (!ready_file_.empty()) std::filesystem::remove(ready_file_);
    if (owns_dir_) std::filesystem::remove_all(data_dir_);
  }

  // Starts stockd and waits until it listens (or exits). Returns false if it did not come up.
  bool start(int timeout_ms = 20000) {
    ready_file_ = data_dir_ + ".ready";
    std::filesystem::remove(ready_file_);
    std::vector<std::string> args = {
        STOCKD_BIN,   "--listen",    "127.0.0.1:" + std::to_string(port_),
        "--data-dir", data_dir_,     "--ready-file",
        ready_file_,  "--log-level", log_level_};
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      if (!log_file_.empty()) {
        FILE* f = std::freopen(log_file_.c_str(), "a", stderr);
        (void)f;
      }
      // Tokens from the environment, as deployments pass them (a flag is visible in ps).
      setenv("STOCKD_ADMIN_TOKEN", kAdminToken, 1);
      setenv("STOCKD_OUTBOX_TOKEN", kOutboxToken, 1);
      execv(argv[0], argv.data());
      _exit(127);
    }
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < until) {
      std::ifstream in(ready_file_);
      std::string host;
      int port = 0;
      if (in >> host >> port) {
        port_ = port;
        return true;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_status_ = status;
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  // Sends SIGKILL and reaps. The next start() reuses the port and the data.
  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    waitpid(pid_, &exit_status_, 0);
    pid_ = -1;
  }
  // SIGTERM and wait; returns the exit status as from waitpid.
  int stop() {
    if (pid_ <= 0) return exit_status_;
    ::kill(pid_, SIGTERM);
    waitpid(pid_, &exit_status_, 0);
    pid_ = -1;
    return exit_status_;
  }
  // Waits for the process to exit on its own (e.g. refusing to start).
  int wait_exit() {
    if (pid_ > 0) waitpid(pid_, &exit_status_, 0);
    pid_ = -1;
    return exit_status_;
  }
  bool running() const { return pid_ > 0; }
  // True while the process has not exited. Once it has, reaps it (status in exit_status()), so
  // that a crashed server is told from a live one (a zombie still answers kill(pid, 0)).
  bool alive() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return true;
    exit_status_ = status;
    pid_ = -1;
    return false;
  }
  // Sends `sig` without waiting (e.g. SIGTERM while clients are busy).
  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // Waits up to `timeout_ms` for the process to exit; false if it is still running.
  bool wait_exit_for(int timeout_ms) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (alive()) {
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }
  // The waitpid status of the last exit (0 before any).
  int exit_status() const { return exit_status_; }

  ClientOptions options(proto::Role role = proto::Role::kBuyer) const {
    ClientOptions o;
    o.host = "127.0.0.1";
    o.port = static_cast<uint16_t>(port_);
    o.role = role;
    o.token = role == proto::Role::kAdmin    ? kAdminToken
              : role == proto::Role::kOutbox ? kOutboxToken
                                             : "";
    o.timeout_ms = 20000;
    return o;
  }
  Client admin() const {
    Client c(options(proto::Role::kAdmin));
    (void)c.connect();  // a failure shows in the first call, which connects again
    return c;
  }
  Client buyer() const {
    Client c(options(proto::Role::kBuyer));
    (void)c.connect();  // a failure shows in the first call, which connects again
    return c;
  }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& data_dir() const { return data_dir_; }
  void set_args(std::vector<std::string> extra) { extra_ = std::move(extra); }
  void set_log_file(std::string path) { log_file_ = std::move(path); }
  void set_log_level(std::string level) { log_level_ = std::move(level); }

 private:
  std::vector<std::string> extra_;
  std::string data_dir_;
  bool owns_dir_ = true;
  std::string ready_file_;
  std::string log_file_;
  std::string log_level_ = "warn";
  int port_ = 0;
  pid_t pid_ = -1;
  int exit_status_ = 0;
};

}  // namespace stockd::test
