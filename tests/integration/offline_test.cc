// stockctl inspect / verify on a stopped server's data dir: they read what stockd would recover,
// say when it is damaged, and refuse what is not a data dir, without starting a server.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "harness.h"

namespace stockd::test {
namespace {

using proto::Role;

TEST(OfflineTest, InspectAndVerifyReadAStoppedServersData) {
  StockdProcess server;
  ASSERT_TRUE(server.start());
  Client admin(server.options(Role::kAdmin));
  connect_or_fail(admin);
  make_sku(admin, "OFF-A", 10, 0);
  Client buyer(server.options(Role::kBuyer));
  connect_or_fail(buyer);
  ASSERT_TRUE(buyer.reserve({"u1", "k1", 0, {{"OFF-A", 3}}}).ok());
  ASSERT_TRUE(buyer.reserve({"u2", "k2", 60000, {{"OFF-A", 2}}}).ok());
  server.kill9();  // offline tools must cope with a store that was not closed cleanly

  ToolResult in = run_tool(STOCKCTL_BIN, {"inspect", "--data-dir", server.data_dir(), "--json"});
  ASSERT_EQ(in.exit_code, 0) << in.err;
  EXPECT_EQ(json_u64(in.out, "next_hold_id"), 3u);
  EXPECT_EQ(json_u64(in.out, "outbox_next_seq"), 2u);  // one order so far
  EXPECT_EQ(json_u64(in.out, "live_holds"), 1u);
  EXPECT_NE(in.out.find("\"sku\":\"OFF-A\""), std::string::npos) << in.out;
  EXPECT_NE(in.out.find("\"available\":5"), std::string::npos) << in.out;
  EXPECT_NE(in.out.find("\"held\":2"), std::string::npos) << in.out;
  EXPECT_NE(in.out.find("\"sold\":3"), std::string::npos) << in.out;
  EXPECT_NE(in.out.find("\"snapshots\":[]"), std::string::npos) << "no checkpoint yet:\n" << in.out;

  ToolResult ok = run_tool(STOCKCTL_BIN, {"verify", "--data-dir", server.data_dir()});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("OK:"), std::string::npos) << ok.out;

  // The server still starts on it afterwards, with the same state.
  ASSERT_TRUE(server.start());
  Client again(server.options(Role::kBuyer));
  connect_or_fail(again);
  auto v = again.sku_get("OFF-A");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v.body.sold, 3u);
  EXPECT_EQ(v.body.held, 2u);
}

// A running server's data dir is refused, not read while it changes (stale answers, or damage
// that is not there); and a SKU id that is not UTF-8 (the server takes any bytes but NUL) is
// printed with its bad bytes replaced: --json used to end in an "internal error" (exit 3).
// The data dir's own lock (an OFD lock on <dir>/stockd.lock), which a server holds for its whole
// life, also while its store is failed and closed between two reopens (RocksDB's LOCK then
// free): neither a second stockd nor stockctl inspect/verify uses the dir while another holds it.
TEST(OfflineTest, TheDataDirsLockKeepsOutASecondServerAndTheOfflineTools) {
  StockdProcess server;
  ASSERT_TRUE(server.start());
  server.stop();
  const std::string lock_file = server.data_dir() + "/stockd.lock";
  ASSERT_TRUE(std::filesystem::exists(lock_file)) << "the server made no lock file";
  const int fd = ::open(lock_file.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  struct flock l {};
  l.l_type = F_WRLCK;
  l.l_whence = SEEK_SET;
  ASSERT_EQ(::fcntl(fd, F_OFD_SETLK, &l), 0);  // as a running server holds it
  for (const char* cmd : {"inspect", "verify"}) {
    ToolResult r = run_tool(STOCKCTL_BIN, {cmd, "--data-dir", server.data_dir()});
    EXPECT_EQ(r.exit_code, 1) << cmd << ": " << r.out << r.err;
    EXPECT_NE(r.err.find("is in use"), std::string::npos) << cmd << ": " << r.err;
  }
  StockdProcess second({}, server.data_dir());
  EXPECT_FALSE(second.start()) << "a second stockd started on a data dir in use";
  ::close(fd);
  ToolResult v = run_tool(STOCKCTL_BIN, {"verify", "--data-dir", server.data_dir()});
  EXPECT_EQ(v.exit_code, 0) << v.err;
  EXPECT_TRUE(second.start()) << "stockd did not start once the data dir was free";
}

// ACKED deleted (taken for a stray file) or damaged on its own: stockd refuses to start, naming
// the way out; `stockctl mark rewrite` writes it again at the log's last group once the store
// recovers, and the server starts with everything. It used to leave only a restore from a
// backup, though nothing was lost.
TEST(OfflineTest, MarkRewriteBringsBackADeletedOrDamagedAckedMark) {
  StockdProcess server;
  const std::string log = server.data_dir() + ".log";
  server.set_log_file(log);
  ASSERT_TRUE(server.start());
  {
    Client admin(server.options(Role::kAdmin));
    connect_or_fail(admin);
    make_sku(admin, "MARK-A", 10, 0);
    Client buyer(server.options(Role::kBuyer));
    connect_or_fail(buyer);
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(buyer.reserve(reserve_req("u" + std::to_string(i), "", 0, {{"MARK-A", 1}})).ok());
    }
  }
  server.kill9();  // the buys are in the log only
  const std::filesystem::path mark = std::filesystem::path(server.data_dir()) / "ACKED";
  const std::vector<std::string> rewrite = {"mark", "rewrite", "--data-dir", server.data_dir()};
  for (const bool damaged : {false, true}) {
    SCOPED_TRACE(damaged ? "ACKED damaged" : "ACKED deleted");
    if (damaged) {
      std::ofstream(mark, std::ios::binary | std::ios::trunc) << "not a mark at all, 24 bytes";
    } else {
      std::filesystem::remove(mark);
    }
    std::filesystem::remove(log);
    EXPECT_FALSE(server.start(5000)) << "started without its mark";
    std::ifstream in(log);
    const std::string said((std::istreambuf_iterator<char>(in)), {});
    EXPECT_NE(said.find("stockctl mark rewrite --data-dir " + server.data_dir()), std::string::npos)
        << said;
    ToolResult r = run_tool(STOCKCTL_BIN, rewrite);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("at lsn"), std::string::npos) << r.out;
    EXPECT_EQ(std::filesystem::exists(mark.string() + ".damaged"), damaged);
    ToolResult again = run_tool(STOCKCTL_BIN, rewrite);
    EXPECT_EQ(again.exit_code, 1) << "rewrote an intact mark: " << again.out;
    EXPECT_NE(again.err.find("nothing to rewrite"), std::string::npos) << again.err;
    ASSERT_TRUE(server.start()) << "did not start on the rewritten mark";
    Client admin(server.options(Role::kAdmin));
    connect_or_fail(admin);
    auto v = admin.sku_get("MARK-A");
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v.body.sold, 3u);
    server.kill9();
  }
  // Refused, nothing written: a wal/ emptied (the log deleted, a new empty dir made: a mark at
  // what is left would accept the loss), and a run as another user than the data dir's owner
  // (as root, the new ACKED was root's, and stockd could not read it).
  std::filesystem::remove(mark);
  const std::filesystem::path wal = std::filesystem::path(server.data_dir()) / "wal";
  std::filesystem::rename(wal, wal.string() + ".away");
  std::filesystem::create_directory(wal);
  // A start refused for the lost mark leaves the dir as it was: RocksDB's open made a new, empty
  // log in wal/ before the mark was checked, and mark rewrite then took that for the log.
  EXPECT_FALSE(server.start(5000));
  EXPECT_TRUE(std::filesystem::is_empty(wal)) << "the refused start wrote into wal/";
  ToolResult no_log = run_tool(STOCKCTL_BIN, rewrite);
  EXPECT_EQ(no_log.exit_code, 1) << no_log.out << no_log.err;
  EXPECT_NE(no_log.err.find("holds no log"), std::string::npos) << no_log.err;
  EXPECT_FALSE(std::filesystem::exists(mark));
  std::filesystem::remove(wal);
  std::filesystem::rename(wal.string() + ".away", wal);
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown(server.data_dir().c_str(), 65534, 65534), 0);
    ToolResult as_root = run_tool(STOCKCTL_BIN, rewrite);
    EXPECT_EQ(as_root.exit_code, 2) << as_root.out << as_root.err;
    EXPECT_NE(as_root.err.find("run mark rewrite as that user"), std::string::npos) << as_root.err;
    EXPECT_FALSE(std::filesystem::exists(mark));
    ASSERT_EQ(::chown(server.data_dir().c_str(), 0, 0), 0);
  }
  EXPECT_EQ(run_tool(STOCKCTL_BIN, rewrite).exit_code, 0);
  std::filesystem::remove(log);
}

TEST(OfflineTest, RefusesARunningServerAndPrintsIdsThatAreNotUtf8) {
  StockdProcess server;
  ASSERT_TRUE(server.start());
  Client admin(server.options(Role::kAdmin));
  connect_or_fail(admin);
  make_sku(admin, "Caf\xE9", 10, 0);
  for (const char* cmd : {"inspect", "verify"}) {
    ToolResult r = run_tool(STOCKCTL_BIN, {cmd, "--data-dir", server.data_dir()});
    EXPECT_EQ(r.exit_code, 1) << cmd << ": " << r.out << r.err;
    EXPECT_NE(r.err.find("a server is running on this data dir"), std::string::npos)
        << cmd << ": " << r.err;
  }
  // A script gets an answer on stdout too (it got nothing).
  ToolResult json = run_tool(STOCKCTL_BIN, {"--json", "verify", "--data-dir", server.data_dir()});
  EXPECT_EQ(json.exit_code, 1);
  EXPECT_NE(json.out.find("\"status\":\"REFUSED\""), std::string::npos) << json.out;
  EXPECT_NE(json.out.find("a server is running"), std::string::npos) << json.out;
  // From another PID namespace (stockctl in a container beside the server's), the lock's holder
  // reads as pid 0, which was taken for "no lock": the live store was read.
  if (run_tool("/usr/bin/unshare", {"--pid", "--fork", "/bin/true"}).exit_code == 0) {
    ToolResult r = run_tool("/usr/bin/unshare", {"--pid", "--fork", STOCKCTL_BIN, "verify",
                                                 "--data-dir", server.data_dir()});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find("in another PID namespace"), std::string::npos) << r.err;
  }
  server.kill9();
  ToolResult in = run_tool(STOCKCTL_BIN, {"inspect", "--data-dir", server.data_dir(), "--json"});
  ASSERT_EQ(in.exit_code, 0) << in.err;
  EXPECT_NE(in.out.find("\"sku\":\"Caf\xEF\xBF\xBD\""), std::string::npos) << in.out;
  ToolResult v = run_tool(STOCKCTL_BIN, {"verify", "--data-dir", server.data_dir(), "--json"});
  EXPECT_EQ(v.exit_code, 0) << v.err;
  EXPECT_NE(v.out.find("\"status\":\"OK\""), std::string::npos) << v.out;
}

TEST(OfflineTest, RefusesWhatIsNotADataDirAndReportsDamage) {
  auto dir = make_temp_dir("offline");
  ToolResult none = run_tool(STOCKCTL_BIN, {"verify", "--data-dir", (dir / "missing").string()});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("not a directory"), std::string::npos) << none.err;
  ToolResult empty = run_tool(STOCKCTL_BIN, {"inspect", "--data-dir", dir.string()});
  EXPECT_EQ(empty.exit_code, 2);
  EXPECT_NE(empty.err.find("not a stockd data dir"), std::string::npos) << empty.err;
  { std::ofstream(dir / "CURRENT") << "garbage, not a manifest name\n"; }
  ToolResult bad = run_tool(STOCKCTL_BIN, {"verify", "--data-dir", dir.string()});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_FALSE(bad.err.empty());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace stockd::test
