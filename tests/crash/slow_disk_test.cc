// A slow disk: every WAL sync takes 500 ms (FaultFs's sync latency), as a shared disk's fsync
// sometimes does. Pipelining buyers fill the group behind the one being written (16,384
// decisions) long before that one is durable. The connections whose input waits for the next
// group must then wait for the sync's end with the loop asleep in its poll: the loop used to run
// its backlog over and over without waiting, a core spent for as long as each sync lasted.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <rocksdb/env.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fault_fs.h"
#include "in_process.h"
#include "stockd/protocol.h"

namespace stockd::crash {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// CPU seconds of this process's thread named `name` (-1 if there is none).
double thread_cpu_seconds(const std::string& name) {
  for (const auto& t : fs::directory_iterator("/proc/self/task")) {
    std::ifstream comm(t.path() / "comm");
    std::string n;
    if (!std::getline(comm, n) || n != name) continue;
    std::ifstream stat(t.path() / "stat");
    std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    std::istringstream fields(all.substr(all.rfind(')') + 2));
    std::string f;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> f; ++i) {
      if (i == 14) utime = std::stoull(f);
      if (i == 15) stime = std::stoull(f);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }
  return -1;
}

// A buyer connection that keeps a pipeline of unkeyed buy-nows full: a writer sends them as
// fast as the socket takes them (the server stops reading at its in-flight limit), a reader
// drops the answers.
class Pipeline {
 public:
  Pipeline(uint16_t port, const std::string& sku) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return;
    std::string hello;
    proto::encode_request(proto::Opcode::kHello, 1,
                          proto::HelloReq{1, proto::Role::kBuyer, "", "p"}, hello);
    std::string batch;
    for (uint32_t i = 0; i < 256; ++i) {
      proto::encode_request(proto::Opcode::kReserve, 2 + i,
                            proto::ReserveReq{"slow-disk", "", 0, {{sku, 1}}}, batch);
    }
    ok_ = send_all(hello);
    writer_ = std::thread([this, batch] {
      while (!stop_ && send_all(batch)) {
      }
    });
    reader_ = std::thread([this] {
      char buf[65536];
      while (::recv(fd_, buf, sizeof buf, 0) > 0) {
      }
    });
  }
  ~Pipeline() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    if (writer_.joinable()) writer_.join();
    if (reader_.joinable()) reader_.join();
    ::close(fd_);
  }
  bool ok() const { return ok_; }

 private:
  bool send_all(const std::string& b) {
    for (size_t off = 0; off < b.size();) {
      const ssize_t n = ::send(fd_, b.data() + off, b.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  int fd_ = -1;
  bool ok_ = false;
  std::atomic<bool> stop_{false};
  std::thread writer_, reader_;
};

TEST(SlowDisk, AFullGroupWaitsForTheSyncWithoutSpinning) {
  capture_server_log();
  std::string tmpl = (fs::temp_directory_path() / "stockd-slowdisk-XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  auto faulty = std::make_shared<FaultFs>(rocksdb::FileSystem::Default(), 500ms);
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(faulty);
  {
    InProcess s(config_for(tmpl + "/data"), storage::StoreOptions{.env = env.get()});
    const uint16_t port = s.wait_ready();
    ASSERT_NE(port, 0) << log_tail();
    Client admin = connect(port, proto::Role::kAdmin);
    ASSERT_TRUE(admin.sku_set({"disk", proto::kSetTotal, 1'000'000'000, 0, 0, 0}).ok());
    // 48 x 1,024 in flight (the default limit): more than two groups take.
    std::vector<std::unique_ptr<Pipeline>> buyers;
    for (int i = 0; i < 48; ++i) {
      buyers.push_back(std::make_unique<Pipeline>(port, "disk"));
      ASSERT_TRUE(buyers.back()->ok()) << "buyer " << i;
    }
    std::this_thread::sleep_for(1s);  // the first groups are full
    const double before = thread_cpu_seconds("stockd-loop");
    ASSERT_GE(before, 0) << "no thread named stockd-loop";
    std::this_thread::sleep_for(3s);
    const double loop_cpu = thread_cpu_seconds("stockd-loop") - before;
    buyers.clear();
    auto sold = admin.sku_get("disk");
    ASSERT_TRUE(sold.ok()) << sold.error;
    std::printf("[ measured ] loop CPU over 3 s of 500 ms syncs: %.2f s; %llu sold in all\n",
                loop_cpu, static_cast<unsigned long long>(sold.body.sold));
    // Six syncs of a full group: ~100,000 decisions, well under a second of the loop's CPU.
    EXPECT_GE(sold.body.sold, 50'000u) << "the groups were not full: the test proves nothing";
    EXPECT_LT(loop_cpu, 1.2) << "the loop spun while a full group waited for its sync";
    // A clean stop would write a checkpoint at 500 ms a sync: cut the power, and stop.
    faulty->power_off();
    EXPECT_TRUE(s.stop(15s)) << log_tail();
  }
  fs::remove_all(tmpl);
}

}  // namespace
}  // namespace stockd::crash
