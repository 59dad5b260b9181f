// Secrets stay secret: tokens from files (stockd, stockd-outbox, stockctl) with the flag and the
// file refused together, a warning for a token typed on the command line (ps shows it), the
// outbox role that does not take the admin token, and files only their owner can read: stockd's
// data dir 0700 with its files 0600, the sidecar's orders.db 0600.
#include <sys/stat.h>

#include "harness.h"

namespace stockd::test {
namespace {

namespace fs = std::filesystem;
using proto::Role;
using proto::Status;

// Permission bits of `p` (0700, 0600, ...); -1 if it does not exist.
int mode_of(const fs::path& p) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 07777);
}

std::string octal(int mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", mode);
  return buf;
}

// Every entry under `dir` whose mode is not owner-only (dirs 0700, files 0600), as text.
std::string open_entries(const fs::path& dir) {
  std::string out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const int want = e.is_directory() ? 0700 : 0600;
    const int got = mode_of(e.path());
    if (got != want) out += e.path().string() + " " + octal(got) + "\n";
  }
  return out;
}

void write_file(const fs::path& p, const std::string& text, int mode = 0600) {
  std::ofstream(p, std::ios::trunc) << text;
  fs::permissions(p, static_cast<fs::perms>(mode), fs::perm_options::replace);
}

// Sets an environment variable for the life of the object (the children inherit it).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

// stockd started with exactly the given flags (StockdProcess always adds its token flags).
class BareStockd {
 public:
  explicit BareStockd(const fs::path& dir) : dir_(dir) {}
  ~BareStockd() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // Starts stockd on a free port with its data in dir/data; true once it listens, false if it
  // exited (exit_code(), log()).
  bool start(std::vector<std::string> flags, const std::string& listen = "127.0.0.1:0") {
    const std::string ready = (dir_ / "ready").string();
    fs::remove(ready);
    std::vector<std::string> args = {
        STOCKD_BIN,     "--listen", listen, "--data-dir", (dir_ / "data").string(),
        "--ready-file", ready};
    args.insert(args.end(), flags.begin(), flags.end());
    const std::string log = (dir_ / "stockd.log").string();
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      if (std::freopen(log.c_str(), "a", stderr) == nullptr) _exit(126);
      execv(argv[0], argv.data());
      _exit(127);
    }
    for (int i = 0; i < 4000; ++i) {
      std::ifstream in(ready);
      std::string host;
      if (in >> host >> port_) return true;
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  int stop() {
    if (pid_ <= 0) return exit_code_;
    ::kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }
  Reply<proto::PingResp> ping(Role role, const std::string& token) const {
    ClientOptions o;
    o.port = static_cast<uint16_t>(port_);
    o.role = role;
    o.token = token;
    o.reconnect_attempts = 1;
    o.timeout_ms = 10000;
    Client c(o);
    return c.ping();
  }
  int exit_code() const { return exit_code_; }
  int port() const { return port_; }
  std::string log() const { return slurp(dir_ / "stockd.log"); }

 private:
  fs::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
  int exit_code_ = -1;
};

class SecretsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // What the tests check must come from the programs, not from a strict test runner.
    old_umask_ = ::umask(022);
    dir_ = make_temp_dir("secrets");
  }
  void TearDown() override {
    fs::remove_all(dir_);
    ::umask(old_umask_);
  }
  fs::path dir_;
  mode_t old_umask_ = 0;
};

std::string show(const ToolResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\nstdout: " + r.out + "\nstderr: " + r.err;
}

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

TEST_F(SecretsTest, StockdReadsItsTokensFromFiles) {
  // A trailing newline (echo, editors) is not part of the token.
  write_file(dir_ / "admin", "admin-from-file\n");
  write_file(dir_ / "outbox", "outbox-from-file\r\n");
  write_file(dir_ / "client", "client-from-file");
  BareStockd s(dir_);
  ASSERT_TRUE(
      s.start({"--admin-token-file", (dir_ / "admin").string(), "--outbox-token-file",
               (dir_ / "outbox").string(), "--client-token-file", (dir_ / "client").string()}))
      << s.log();
  EXPECT_TRUE(s.ping(Role::kAdmin, "admin-from-file").ok());
  EXPECT_EQ(s.ping(Role::kAdmin, "admin-from-file\n").status, Status::kUnauthorized);
  EXPECT_TRUE(s.ping(Role::kOutbox, "outbox-from-file").ok());
  EXPECT_TRUE(s.ping(Role::kBuyer, "client-from-file").ok());
  EXPECT_EQ(s.ping(Role::kBuyer, "").status, Status::kUnauthorized);
  EXPECT_EQ(s.stop(), 0);
  // Files, not flags: no warning about a token on the command line.
  EXPECT_FALSE(has(s.log(), "visible to every local user")) << s.log();

  // The same through the environment: STOCKD_ADMIN_TOKEN_FILE (how the systemd unit does it,
  // with a file in $CREDENTIALS_DIRECTORY).
  {
    ScopedEnv env("STOCKD_ADMIN_TOKEN_FILE", (dir_ / "admin").string());
    BareStockd e(dir_);
    ASSERT_TRUE(e.start({})) << e.log();
    EXPECT_TRUE(e.ping(Role::kAdmin, "admin-from-file").ok());
    EXPECT_EQ(e.stop(), 0);
  }
}

TEST_F(SecretsTest, StockdRefusesATokenFromTwoPlacesAndBadFiles) {
  write_file(dir_ / "admin", "admin-from-file\n");
  struct Case {
    std::vector<std::string> flags;
    const char* env;  // also set in the environment, if not null
    std::string env_value;
    const char* says;
  };
  const std::string admin = (dir_ / "admin").string();
  const std::vector<Case> cases = {
      {{"--admin-token", "x", "--admin-token-file", admin}, nullptr, "", "both given"},
      {{"--outbox-token-file", admin}, "STOCKD_OUTBOX_TOKEN", "y", "both given"},
      {{"--client-token", "z"}, "STOCKD_CLIENT_TOKEN_FILE", admin, "both given"},
      {{"--admin-token-file", (dir_ / "missing").string()}, nullptr, "", "cannot read"},
      {{"--admin-token-file", (dir_ / "empty").string()}, nullptr, "", "is empty"},
      {{"--admin-token-file", (dir_ / "two").string()}, nullptr, "", "more than one line"},
      {{"--admin-token-file", (dir_ / "long").string()}, nullptr, "", "more than 256 bytes"},
      // The sidecar must never hold the admin token.
      {{"--admin-token", "same", "--outbox-token", "same"},
       nullptr,
       "",
       "--outbox-token must differ"},
  };
  write_file(dir_ / "empty", "\n");
  write_file(dir_ / "two", "a\nb\n");
  write_file(dir_ / "long", std::string(300, 'k'));
  for (const Case& k : cases) {
    std::optional<ScopedEnv> env;
    if (k.env != nullptr) env.emplace(k.env, k.env_value);
    BareStockd s(dir_);
    fs::remove(dir_ / "stockd.log");
    EXPECT_FALSE(s.start(k.flags)) << k.says;
    EXPECT_EQ(s.exit_code(), 2) << k.says << "\n" << s.log();
    EXPECT_TRUE(has(s.log(), k.says)) << k.says << "\n" << s.log();
  }
}

TEST_F(SecretsTest, StockdWarnsOfTokenFlagsAndOpenTokenFiles) {
  write_file(dir_ / "outbox", "outbox-token-open\n", 0644);
  BareStockd s(dir_);
  ASSERT_TRUE(s.start(
      {"--admin-token", "typed-admin-token", "--outbox-token-file", (dir_ / "outbox").string()}))
      << s.log();
  EXPECT_TRUE(s.ping(Role::kOutbox, "outbox-token-open").ok());
  EXPECT_EQ(s.stop(), 0);
  const std::string log = s.log();
  EXPECT_TRUE(has(log, "--admin-token on the command line is visible to every local user")) << log;
  EXPECT_TRUE(has(log, "accessible to other users (mode 0644)")) << log;
  EXPECT_FALSE(has(log, "typed-admin-token")) << "a token in the log:\n" << log;
}

TEST_F(SecretsTest, OutboxRoleDoesNotTakeTheAdminTokenUnlessAsked) {
  BareStockd s(dir_);
  ASSERT_TRUE(s.start({"--admin-token", "only-admin"})) << s.log();
  EXPECT_TRUE(s.ping(Role::kAdmin, "only-admin").ok());
  EXPECT_EQ(s.ping(Role::kOutbox, "only-admin").status, Status::kUnauthorized)
      << "without --outbox-token the outbox role is off";
  EXPECT_EQ(s.stop(), 0);
  ASSERT_TRUE(s.start({"--admin-token", "only-admin", "--outbox-accepts-admin-token"})) << s.log();
  EXPECT_TRUE(s.ping(Role::kOutbox, "only-admin").ok()) << "the old behaviour, asked for";
  EXPECT_EQ(s.stop(), 0);
}

// Beyond loopback every role needs a token: without the buyers' token stockd does not start,
// unless told --insecure-no-auth (then it warns).
TEST_F(SecretsTest, StockdRefusesToListenBeyondLoopbackWithoutABuyerToken) {
  {
    BareStockd s(dir_);
    EXPECT_FALSE(s.start({"--admin-token", "a-token"}, "0.0.0.0:0")) << "started open to all";
    EXPECT_EQ(s.exit_code(), 2) << s.log();
    EXPECT_TRUE(has(s.log(), "is not a loopback address and buyers need no token")) << s.log();
    EXPECT_TRUE(has(s.log(), "--insecure-no-auth")) << s.log();
  }
  {
    fs::remove(dir_ / "stockd.log");
    BareStockd s(dir_);
    EXPECT_FALSE(s.start({}, "[::]:0"));
    EXPECT_EQ(s.exit_code(), 2) << s.log();
  }
  write_file(dir_ / "client", "buyers-token\n");
  {
    BareStockd s(dir_);
    ASSERT_TRUE(s.start({"--client-token-file", (dir_ / "client").string()}, "0.0.0.0:0"))
        << s.log();
    EXPECT_TRUE(s.ping(Role::kBuyer, "buyers-token").ok());
    EXPECT_EQ(s.ping(Role::kBuyer, "").status, Status::kUnauthorized);
    EXPECT_EQ(s.stop(), 0);
  }
  {
    fs::remove(dir_ / "stockd.log");
    BareStockd s(dir_);
    ASSERT_TRUE(s.start({"--insecure-no-auth"}, "0.0.0.0:0")) << s.log();
    EXPECT_TRUE(s.ping(Role::kBuyer, "").ok());
    EXPECT_EQ(s.stop(), 0);
    EXPECT_TRUE(has(s.log(), "--insecure-no-auth: listening on 0.0.0.0")) << s.log();
  }
  {  // Loopback in any spelling needs no buyers' token.
    BareStockd s(dir_);
    ASSERT_TRUE(s.start({}, "localhost:0")) << s.log();
    EXPECT_EQ(s.stop(), 0);
  }
}

// A guesser gets --hello-fail-burst tries per address, then its HELLOs are refused unchecked
// (BUSY, so it learns nothing, even with the right token) until the allowance refills; the
// failures are logged, one line per address per 10 s.
TEST_F(SecretsTest, FailedHellosAreLoggedAndLimitedPerAddress) {
  BareStockd s(dir_);
  ASSERT_TRUE(s.start({"--admin-token", "the-admin-token", "--hello-fail-burst", "5",
                       "--hello-fail-refill-ms", "1000"}))
      << s.log();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    auto r = s.ping(Role::kAdmin, "guess-" + std::to_string(i));
    EXPECT_EQ(r.status, Status::kUnauthorized) << i << ": " << r.error;
  }
  auto locked = s.ping(Role::kAdmin, "the-admin-token");
  const auto spent = std::chrono::steady_clock::now() - t0;
  ASSERT_LT(spent, std::chrono::milliseconds(900)) << "too slow to test the lock";
  EXPECT_EQ(locked.status, Status::kBusy) << "the right token after 5 failures: " << locked.error;
  EXPECT_TRUE(has(locked.error, "too many failed HELLOs from this address")) << locked.error;
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(s.ping(Role::kAdmin, "more-guessing").status, Status::kBusy);
  }
  // One more try per refill (1 s): refused-unchecked attempts do not postpone it.
  std::this_thread::sleep_until(t0 + std::chrono::milliseconds(1300));
  auto after = s.ping(Role::kAdmin, "the-admin-token");
  EXPECT_TRUE(after.ok()) << proto::status_name(after.status) << " " << after.error;
  EXPECT_EQ(s.stop(), 0);
  const std::string log = s.log();
  size_t lines = 0;
  for (size_t at = 0; (at = log.find("HELLO refused from 127.0.0.1", at)) != std::string::npos;
       ++at) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << "26 failures in ~1 s: one log line\n" << log;
  EXPECT_FALSE(has(log, "guess-")) << "a guessed token in the log";
}

TEST_F(SecretsTest, DataDirCreatedByStockdIsOwnerOnly) {
  const fs::path data = dir_ / "nested" / "data";
  StockdProcess server({}, data.string());
  ASSERT_TRUE(server.start());
  Client admin = server.admin();
  make_sku(admin, "PRIVATE-1", 10);
  make_code_pool(admin, "CODES-1", {"UNSOLD-CODE-1", "UNSOLD-CODE-2"});
  Client buyer = server.buyer();
  EXPECT_TRUE(buyer.reserve(reserve_req("u1", "k1", 0, {{"PRIVATE-1", 2}})).ok());
  // While running (the WAL, the lock, the manifest) and after a clean stop.
  EXPECT_EQ(mode_of(data), 0700);
  EXPECT_EQ(open_entries(data), "");
  EXPECT_EQ(server.stop(), 0);
  EXPECT_EQ(mode_of(data), 0700);
  EXPECT_EQ(open_entries(data), "");
  EXPECT_FALSE(fs::is_empty(data));
}

TEST_F(SecretsTest, OpenDataDirIsMadeOwnerOnlyWithAWarning) {
  const fs::path data = dir_ / "data";
  StockdProcess server({}, data.string());
  ASSERT_TRUE(server.start());
  {
    Client admin = server.admin();
    make_sku(admin, "OLD-1", 5);
  }
  EXPECT_EQ(server.stop(), 0);
  // As an older stockd left it: 0755 and 0644.
  fs::permissions(data, static_cast<fs::perms>(0755), fs::perm_options::replace);
  for (const auto& e : fs::recursive_directory_iterator(data)) {
    if (e.is_regular_file())
      fs::permissions(e.path(), static_cast<fs::perms>(0644), fs::perm_options::replace);
  }
  server.set_log_file((dir_ / "stockd.log").string());
  ASSERT_TRUE(server.start());
  EXPECT_EQ(mode_of(data), 0700);
  EXPECT_EQ(open_entries(data), "");
  EXPECT_EQ(server.admin().sku_get("OLD-1").body.total, 5u);
  EXPECT_EQ(server.stop(), 0);
  const std::string log = slurp(dir_ / "stockd.log");
  EXPECT_TRUE(has(log, "was mode 0755")) << log;
}

// ---- The sidecar. ----

class SidecarSecretsTest : public SecretsTest {
 protected:
  void SetUp() override {
    SecretsTest::SetUp();
    ASSERT_TRUE(server_.start());
    Client admin = server_.admin();
    make_sku(admin, "SOLD-1", 10);
    Client buyer = server_.buyer();
    ASSERT_TRUE(buyer.reserve(reserve_req("u1", "k1", 0, {{"SOLD-1", 1}})).ok());
    write_file(dir_ / "outbox-token", std::string(StockdProcess::kOutboxToken) + "\n");
  }
  ToolResult sidecar(std::vector<std::string> args) {
    std::vector<std::string> all = {"--server", "127.0.0.1:" + std::to_string(server_.port())};
    all.insert(all.end(), args.begin(), args.end());
    return run_tool(STOCKD_OUTBOX_BIN, all);
  }
  StockdProcess server_;
};

TEST_F(SidecarSecretsTest, OrdersDbIsOwnerOnlyAndTheTokenComesFromAFile) {
  const fs::path db = dir_ / "sql" / "orders.db";
  auto r = sidecar({"--token-file", (dir_ / "outbox-token").string(), "--sql",
                    "sqlite:" + db.string(), "--once"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_FALSE(has(r.err, "visible to every local user")) << show(r);
  ASSERT_TRUE(fs::exists(db));
  EXPECT_EQ(mode_of(db), 0600);
  for (const char* suffix : {"-wal", "-shm", "-journal"}) {
    const fs::path p = db.string() + suffix;
    if (fs::exists(p)) {
      EXPECT_EQ(mode_of(p), 0600) << p;
    }
  }

  // An orders.db an older sidecar left 0644 is made owner-only, with a warning.
  fs::permissions(db, static_cast<fs::perms>(0644), fs::perm_options::replace);
  ScopedEnv token("STOCKD_OUTBOX_TOKEN_FILE", (dir_ / "outbox-token").string());
  r = sidecar({"--sql", "sqlite:" + db.string(), "--once"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_EQ(mode_of(db), 0600);
  EXPECT_TRUE(has(r.err, "made owner-only")) << show(r);
}

TEST_F(SidecarSecretsTest, SqlUrlFromAFileAndConflictsRefused) {
  const fs::path db = dir_ / "from-file.db";
  write_file(dir_ / "sql-url", "sqlite:" + db.string() + "\n");
  auto r = sidecar({"--token-file", (dir_ / "outbox-token").string(), "--sql-file",
                    (dir_ / "sql-url").string(), "--once"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_EQ(mode_of(db), 0600);

  r = sidecar({"--token", StockdProcess::kOutboxToken, "--token-file",
               (dir_ / "outbox-token").string(), "--once"});
  EXPECT_EQ(r.exit_code, 2) << show(r);
  EXPECT_TRUE(has(r.err, "both given")) << show(r);
  r = sidecar({"--token-file", (dir_ / "outbox-token").string(), "--sql", "sqlite:x.db",
               "--sql-file", (dir_ / "sql-url").string(), "--once"});
  EXPECT_EQ(r.exit_code, 2) << show(r);
  EXPECT_TRUE(has(r.err, "both given")) << show(r);
  r = sidecar({"--token-file", (dir_ / "missing").string(), "--once"});
  EXPECT_EQ(r.exit_code, 2) << show(r);
  EXPECT_TRUE(has(r.err, "cannot read")) << show(r);
}

TEST_F(SidecarSecretsTest, SecretsTypedOnTheCommandLineAreWarnedAbout) {
  // A token flag: works, with a warning.
  auto r = sidecar({"--token", StockdProcess::kOutboxToken, "--sql",
                    "sqlite:" + (dir_ / "a.db").string(), "--once"});
  EXPECT_EQ(r.exit_code, 0) << show(r);
  EXPECT_TRUE(has(r.err, "--token on the command line is visible")) << show(r);
  // A password in the --sql URL (nothing listens on port 1: --reset-cursor fails at once).
  r = sidecar({"--token-file", (dir_ / "outbox-token").string(), "--sql",
               "postgresql://shop:hunter2@127.0.0.1:1/shop", "--reset-cursor", "0"});
  EXPECT_NE(r.exit_code, 0) << show(r);
  EXPECT_TRUE(has(r.err, "carries a password")) << show(r);
  // Without one: no warning (libpq takes it from PGPASSWORD, PGPASSFILE or ~/.pgpass).
  r = sidecar({"--token-file", (dir_ / "outbox-token").string(), "--sql",
               "postgresql://shop@127.0.0.1:1/shop", "--reset-cursor", "0"});
  EXPECT_FALSE(has(r.err, "carries a password")) << show(r);
}

// ---- stockctl. ----

class StockctlSecretsTest : public SecretsTest {
 protected:
  void SetUp() override {
    SecretsTest::SetUp();
    ASSERT_TRUE(server_.start());
    write_file(dir_ / "admin-token", std::string(StockdProcess::kAdminToken) + "\n");
  }
  ToolResult ctl(std::vector<std::string> args) {
    std::vector<std::string> all = {"--server", "127.0.0.1:" + std::to_string(server_.port()),
                                    "--timeout-ms", "5000"};
    all.insert(all.end(), args.begin(), args.end());
    return run_tool(STOCKCTL_BIN, all);
  }
  StockdProcess server_;
};

TEST_F(StockctlSecretsTest, TokenFileFlagAndEnvironment) {
  const std::string file = (dir_ / "admin-token").string();
  auto r = ctl({"--token-file", file, "sku", "set", "CTL-S1", "--total", "3"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_EQ(r.err, "") << show(r);
  EXPECT_EQ(server_.admin().sku_get("CTL-S1").body.total, 3u);
  // After the command too (global options may follow it).
  r = ctl({"sku", "set", "CTL-S2", "--total", "4", "--token-file", file});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  {
    ScopedEnv env("STOCKD_TOKEN_FILE", file);
    r = ctl({"sku", "set", "CTL-S3", "--total", "5"});
    ASSERT_EQ(r.exit_code, 0) << show(r);
    // A token from two places: refused, nothing sent.
    r = ctl({"--token", StockdProcess::kAdminToken, "sku", "set", "CTL-S4", "--total", "1"});
    EXPECT_EQ(r.exit_code, 2) << show(r);
    EXPECT_TRUE(has(r.err, "both given")) << show(r);
  }
  EXPECT_EQ(server_.admin().sku_get("CTL-S4").status, Status::kNotFound);
  // The outbox token works with --role outbox.
  write_file(dir_ / "outbox-token", StockdProcess::kOutboxToken);
  r = ctl(
      {"--token-file", (dir_ / "outbox-token").string(), "--role", "outbox", "outbox", "status"});
  EXPECT_EQ(r.exit_code, 0) << show(r);
  // Bad files: exit 2.
  r = ctl({"--token-file", (dir_ / "missing").string(), "ping"});
  EXPECT_EQ(r.exit_code, 2) << show(r);
  EXPECT_TRUE(has(r.err, "cannot read")) << show(r);
  // --token still works, with a warning that ps shows it.
  r = ctl({"--token", StockdProcess::kAdminToken, "sku", "set", "CTL-S5", "--total", "1"});
  EXPECT_EQ(r.exit_code, 0) << show(r);
  EXPECT_TRUE(has(r.err, "visible to every local user")) << show(r);
}

}  // namespace
}  // namespace stockd::test
