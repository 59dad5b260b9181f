#include "in_process.h"

#include <pthread.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <vector>

namespace stockd::crash {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> ring() {
  static auto r = [] {
    auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(200);
    auto logger = std::make_shared<spdlog::logger>("stockd", sink);
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
    return sink;
  }();
  return r;
}

}  // namespace

void capture_server_log() { ring(); }

std::string log_tail(size_t lines) {
  std::string s;
  for (const auto& l : ring()->last_formatted(lines)) s += l;
  return s;
}

Config config_for(const std::string& dir, Durability d, int interval_ms) {
  Config c;
  c.listen_host = "127.0.0.1";
  c.listen_port = 0;
  c.data_dir = dir;
  c.durability = d;
  c.sequential_hold_ids = true;  // the ledger walks hold ids in sequence
  // In sync mode a checkpoint every few hundred decisions (and a snapshot every thousand or
  // so), so that the power goes off before, during and after checkpoints and snapshots: table
  // files half written or not synced, ingested or renamed, the trim not synced. In interval mode
  // none: a checkpoint syncs the log first, which would close the very window the negative
  // power-loss test must see answers lost in.
  c.checkpoint_every = d == Durability::kSync ? 300 : 1'000'000'000;
  c.checkpoint_interval_ms = d == Durability::kSync ? 30'000 : 86'400'000;
  c.snapshot_every = 1000;
  c.fsync_interval_ms = interval_ms;
  c.admin_token = kAdminToken;
  c.ready_file = dir + ".ready";
  return c;
}

Client connect(uint16_t port, proto::Role role) {
  ClientOptions o;
  o.port = port;
  o.role = role;
  o.token = role == proto::Role::kAdmin ? kAdminToken : "";
  Client c(o);
  (void)c.connect();  // a failure shows in the first call, which connects again
  return c;
}

void leak(std::shared_ptr<void> p) {
  static auto* kept = new std::vector<std::shared_ptr<void>>();
  kept->push_back(std::move(p));
}

InProcess::InProcess(Config c, storage::StoreOptions so)
    : ready_file_(c.ready_file), server_(std::make_unique<Server>(c, so)) {
  fs::remove(ready_file_);
  thread_ = std::thread([s = server_.get(), run = run_] {
    (void)pthread_setname_np(pthread_self(), "stockd-loop");  // tests find its CPU by name
    run->rc = s->run();
    run->done = true;
  });
}

uint16_t InProcess::wait_ready() {
  for (auto until = std::chrono::steady_clock::now() + 20s;
       std::chrono::steady_clock::now() < until && !run_->done;) {
    std::ifstream in(ready_file_);
    std::string host;
    int port = 0;
    if (in >> host >> port) return static_cast<uint16_t>(port);
    std::this_thread::sleep_for(2ms);
  }
  return 0;
}

bool InProcess::stop(std::chrono::milliseconds patience) {
  if (!thread_.joinable()) return !hung_;
  server_->request_stop();
  for (auto until = std::chrono::steady_clock::now() + patience;
       !run_->done && std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(5ms);
  }
  if (!run_->done) {
    hung_ = true;
    thread_.detach();
    (void)server_.release();
    return false;
  }
  thread_.join();
  return true;
}

}  // namespace stockd::crash
