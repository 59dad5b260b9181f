// The outbox sidecar end to end: real stockd, real stockd-outbox processes, SQLite files and a
// throwaway PostgreSQL cluster. Checks that every order the buyers were told OK reaches SQL
// exactly once, through sidecar kill -9s and a PostgreSQL outage, that a replay gives the same
// rows, and that the sidecar refuses what would resell (exit 3) or cannot work (exit 2). Strings
// that are not text reach SQL as their exact bytes; columns added to the tables keep working,
// and a dropped column, a row that cannot be stored or a text-only database stops it (exit 4).
//
// The sinks are also tested directly (no stockd): rows, cursor compare-and-set, idempotent
// re-apply, exact bytes, the batch check, schema changes, a writer killed mid-transaction.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sqlite3.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "records.h"
#include "sink.h"
#include "support/process.h"
#include "support/small_disk.h"

namespace stockd::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// Small helpers

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Exit code of a waitpid status; 128 + signal if killed.
int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// fork + exec `args` with stdout and stderr appended to `log` (if set), optionally as `uid`.
pid_t spawn(const std::vector<std::string>& args, const std::string& log, uid_t uid = 0,
            gid_t gid = 0) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  if (!log.empty()) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
  }
  if (uid != 0 && (setgid(gid) != 0 || setuid(uid) != 0)) _exit(126);
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // after setuid, which clears it: no orphans if we die
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(argv[0], argv.data());
  _exit(127);
}

// Waits up to `timeout` for `pid`; kills it (and fails) if it does not exit. Returns the code.
int wait_for(pid_t pid, std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (std::chrono::steady_clock::now() < until) {
    if (waitpid(pid, &status, WNOHANG) == pid) return exit_code(status);
    std::this_thread::sleep_for(10ms);
  }
  ::kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  ADD_FAILURE() << "process " << pid << " did not exit within " << timeout.count() << " ms";
  return -1;
}

// ---------------------------------------------------------------------------------------------
// A throwaway PostgreSQL cluster: initdb into a temp dir, postgres on a free loopback port with
// its socket in that dir, trust auth (plus one password user), stopped by PID.

fs::path pg_bindir() {
  if (const char* env = std::getenv("STOCKD_PG_BINDIR")) return env;
  if (FILE* p = popen("pg_config --bindir 2>/dev/null", "r")) {
    char buf[512] = {};
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    pclose(p);
    std::string dir(buf, n);
    while (!dir.empty() && (dir.back() == '\n' || dir.back() == ' ')) dir.pop_back();
    if (!dir.empty() && fs::exists(fs::path(dir) / "postgres")) return dir;
  }
  std::error_code ec;
  fs::path best;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    if (fs::exists(e.path() / "bin" / "postgres") && e.path() > best) best = e.path();
  }
  return best.empty() ? fs::path() : best / "bin";
}

class PgCluster {
 public:
  static constexpr const char* kPasswordUser = "pwuser";
  static constexpr const char* kPassword = "right-password";

  ~PgCluster() {
    stop();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // "" when running, else why not (the caller skips).
  std::string start() {
    bin_ = pg_bindir();
    if (bin_.empty() || !fs::exists(bin_ / "initdb")) {
      return "PostgreSQL server binaries (initdb, postgres) not found; set STOCKD_PG_BINDIR";
    }
    if (getuid() == 0) {
      const passwd* pw = getpwnam("postgres");
      if (pw == nullptr) return "running as root and there is no 'postgres' user to run postgres";
      uid_ = pw->pw_uid;
      gid_ = pw->pw_gid;
    }
    dir_ = make_temp_dir("pg");
    if (uid_ != 0 && chown(dir_.c_str(), uid_, gid_) != 0) return "cannot chown " + dir_.string();
    port_ = free_port();
    std::string log = (dir_ / "initdb.log").string();
    pid_t pid =
        spawn({(bin_ / "initdb").string(), "-D", (dir_ / "data").string(), "-A", "trust", "-U",
               "postgres", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"},
              log, uid_, gid_);
    if (wait_for(pid, 60s) != 0) return "initdb failed: " + slurp(log);
    std::ofstream hba(dir_ / "data" / "pg_hba.conf", std::ios::trunc);
    hba << "local all all trust\n"
        << "host all " << kPasswordUser << " 127.0.0.1/32 scram-sha-256\n"
        << "host all all 127.0.0.1/32 trust\n";
    hba.close();
    if (std::string err = start_server(); !err.empty()) return err;
    std::string err = exec("postgres", std::string("CREATE ROLE ") + kPasswordUser +
                                           " LOGIN PASSWORD '" + kPassword + "'");
    if (err.empty())
      err = exec("postgres", std::string("CREATE DATABASE pwdb OWNER ") + kPasswordUser);
    return err;
  }

  // (Re)starts postgres on the same port and data; waits until it accepts connections.
  std::string start_server() {
    std::string log = (dir_ / "postgres.log").string();
    pid_ = spawn({(bin_ / "postgres").string(), "-D", (dir_ / "data").string(), "-p",
                  std::to_string(port_), "-k", dir_.string(), "-c", "listen_addresses=127.0.0.1",
                  "-c", "max_connections=50", "-c", "shared_buffers=64MB"},
                 log, uid_, gid_);
    const std::string ping = url("postgres");
    for (int i = 0; i < 3000; ++i) {
      if (PQping(ping.c_str()) == PQPING_OK) return "";
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return "postgres exited: " + slurp(log);
      }
      std::this_thread::sleep_for(10ms);
    }
    return "postgres did not accept connections within 30 s: " + slurp(log);
  }

  // Fast shutdown (SIGINT), by PID.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGINT);
    wait_for(pid_, 30s);
    pid_ = -1;
  }

  std::string url(const std::string& db) const {
    return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + db;
  }
  std::string password_url(const std::string& password, const std::string& db = "pwdb") const {
    return std::string("postgresql://") + kPasswordUser + ":" + password +
           "@127.0.0.1:" + std::to_string(port_) + "/" + db;
  }
  uint16_t port() const { return port_; }

  // Runs one statement as postgres on `db`; "" or the error.
  std::string exec(const std::string& db, const std::string& sql) const {
    PGconn* c = PQconnectdb(url(db).c_str());
    std::string err;
    if (PQstatus(c) != CONNECTION_OK) {
      err = PQerrorMessage(c);
    } else {
      PGresult* r = PQexec(c, sql.c_str());
      if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        err = PQresultErrorMessage(r);
      }
      PQclear(r);
    }
    PQfinish(c);
    return err;
  }

  // A new empty database named `prefix`_N; returns its URL.
  std::string create_db(const std::string& prefix) {
    const std::string name = prefix + "_" + std::to_string(++databases_);
    std::string err = exec("postgres", "CREATE DATABASE " + name);
    EXPECT_EQ(err, "");
    return url(name);
  }

 private:
  fs::path bin_;
  fs::path dir_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  int databases_ = 0;
};

// One cluster per test process, started on first use, stopped at exit.
std::unique_ptr<PgCluster>& pg_instance() {
  static std::unique_ptr<PgCluster> cluster;
  return cluster;
}

PgCluster* pg_cluster(std::string& skip) {
  static std::string why;
  static bool tried = false;
  if (!tried) {
    tried = true;
    pg_instance() = std::make_unique<PgCluster>();
    why = pg_instance()->start();
    if (!why.empty()) pg_instance().reset();
  }
  skip = why;
  return pg_instance().get();
}

class PgEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { pg_instance().reset(); }  // stops postgres, removes its files
};
[[maybe_unused]] ::testing::Environment* const kPgEnv =
    ::testing::AddGlobalTestEnvironment(new PgEnvironment);

#define REQUIRE_PG(var)                  \
  std::string pg_skip_;                  \
  PgCluster* var = pg_cluster(pg_skip_); \
  if (var == nullptr) {                  \
    GTEST_SKIP() << pg_skip_;            \
  }

// ---------------------------------------------------------------------------------------------
// What a database holds, in a canonical text form (rows sorted by primary key).

struct DbDump {
  // Text columns as text (\N for NULL), bytes columns as lowercase hex.
  std::vector<std::string> orders;  // order_id|seq|user_id|user_id_bytes|idem_key|idem_key_bytes
                                    // |created_at_ms|committed_at_ms
  std::vector<std::string> lines;   // order_id|sku|sku_bytes|qty
  std::vector<std::string> codes;   // code|code_bytes|sku|sku_bytes|order_id
  std::vector<std::string> events;  // seq|kind|hold_id|user_id|user_id_bytes|at_ms|lines
  uint64_t cursor = 0;
  bool operator==(const DbDump&) const = default;
};

// For failure messages: sizes, cursor and the first rows of each table.
void PrintTo(const DbDump& d, std::ostream* os) {
  *os << "{cursor " << d.cursor;
  const std::pair<const char*, const std::vector<std::string>*> tables[] = {
      {"orders", &d.orders}, {"lines", &d.lines}, {"codes", &d.codes}, {"events", &d.events}};
  for (const auto& [name, rows] : tables) {
    *os << ", " << rows->size() << " " << name << " [";
    for (size_t i = 0; i < rows->size() && i < 3; ++i) *os << (i ? "; " : "") << (*rows)[i];
    *os << (rows->size() > 3 ? "; ...]" : "]");
  }
  *os << "}";
}

// HEX(x) is a bytes column as lowercase hex (NULL stays NULL), written per database.
const char* const kDumpQueries[] = {
    "SELECT order_id, seq, user_id, HEX(user_id_bytes), idem_key, HEX(idem_key_bytes),"
    " created_at_ms, committed_at_ms FROM orders ORDER BY order_id",
    "SELECT order_id, sku, HEX(sku_bytes), qty FROM order_lines ORDER BY order_id, sku_bytes",
    "SELECT code, HEX(code_bytes), sku, HEX(sku_bytes), order_id FROM order_codes"
    " ORDER BY sku_bytes, code_bytes",
    "SELECT seq, kind, hold_id, user_id, HEX(user_id_bytes), at_ms, lines FROM hold_events"
    " ORDER BY seq",
    "SELECT seq FROM stockd_outbox_cursor WHERE id = 1"};

// `sql` with every HEX(x) written as `hex_fn` (with {} for x).
std::string with_hex(std::string sql, const std::string& hex_fn) {
  for (size_t at = sql.find("HEX("); at != std::string::npos; at = sql.find("HEX(", at)) {
    const size_t close = sql.find(')', at);
    const std::string col = sql.substr(at + 4, close - at - 4);
    std::string f = hex_fn;
    f.replace(f.find("{}"), 2, col);
    sql.replace(at, close + 1 - at, f);
    at += f.size();
  }
  return sql;
}

std::vector<std::string>* dump_table(DbDump& d, int i) {
  std::vector<std::string>* t[] = {&d.orders, &d.lines, &d.codes, &d.events};
  return i < 4 ? t[i] : nullptr;
}

DbDump dump_sqlite(const std::string& path) {
  DbDump d;
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);  // one snapshot for all tables
  for (int i = 0; i < 5; ++i) {
    sqlite3_stmt* st = nullptr;
    const std::string sql = with_hex(kDumpQueries[i], "nullif(lower(hex({})), '')");
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::string row;
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        const auto* v = reinterpret_cast<const char*>(sqlite3_column_text(st, c));
        row += (c > 0 ? "|" : "") + std::string(v != nullptr ? v : "\\N");
      }
      if (auto* t = dump_table(d, i)) {
        t->push_back(row);
      } else {
        d.cursor = std::stoull(row);
      }
    }
    sqlite3_finalize(st);
  }
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return d;
}

DbDump dump_pg(const std::string& url) {
  DbDump d;
  PGconn* c = PQconnectdb(url.c_str());
  EXPECT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  PQclear(PQexec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ"));  // one snapshot for all tables
  for (int i = 0; i < 5; ++i) {
    PGresult* r = PQexec(c, with_hex(kDumpQueries[i], "encode({}, 'hex')").c_str());
    EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
    for (int row = 0; row < PQntuples(r); ++row) {
      std::string s;
      for (int col = 0; col < PQnfields(r); ++col) {
        s += (col > 0 ? "|" : "") +
             std::string(PQgetisnull(r, row, col) ? "\\N" : PQgetvalue(r, row, col));
      }
      if (auto* t = dump_table(d, i)) {
        t->push_back(s);
      } else {
        d.cursor = std::stoull(s);
      }
    }
    PQclear(r);
  }
  PQfinish(c);
  return d;
}

bool is_pg(const std::string& sql_url) { return sql_url.rfind("sqlite:", 0) != 0; }

DbDump dump_any(const std::string& sql_url) {
  return is_pg(sql_url) ? dump_pg(sql_url) : dump_sqlite(sql_url.substr(7));
}

// Runs `sql` (one or more statements) on the database of a --sql URL; "" or the error.
std::string exec_sql(const std::string& sql_url, const std::string& sql) {
  std::string err;
  if (is_pg(sql_url)) {
    PGconn* c = PQconnectdb(sql_url.c_str());
    PGresult* r = PQexec(c, sql.c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
      err = PQresultErrorMessage(r);
    }
    PQclear(r);
    PQfinish(c);
    return err;
  }
  sqlite3* db = nullptr;
  sqlite3_open_v2(sql_url.substr(7).c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                  nullptr);
  sqlite3_busy_timeout(db, 5000);
  char* msg = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
    err = msg != nullptr ? msg : "error";
  }
  sqlite3_free(msg);
  sqlite3_close(db);
  return err;
}

// The first column of the first row of `sql` as text ("\N" for NULL), or "error: ...".
std::string query_one(const std::string& sql_url, const std::string& sql) {
  std::string out = "error: no row";
  if (is_pg(sql_url)) {
    PGconn* c = PQconnectdb(sql_url.c_str());
    PGresult* r = PQexec(c, sql.c_str());
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      out = std::string("error: ") + PQresultErrorMessage(r);
    } else if (PQntuples(r) > 0) {
      out = PQgetisnull(r, 0, 0) ? "\\N" : PQgetvalue(r, 0, 0);
    }
    PQclear(r);
    PQfinish(c);
    return out;
  }
  sqlite3* db = nullptr;
  sqlite3_open_v2(sql_url.substr(7).c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    out = std::string("error: ") + sqlite3_errmsg(db);
  } else if (sqlite3_step(st) == SQLITE_ROW) {
    const auto* v = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    out = v != nullptr ? v : "\\N";
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

std::string unhex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) {
    out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  }
  return out;
}

// The exact value of a string stored as `text` and `hex` (dump form), checking the rule: the
// text column holds the bytes when they are valid UTF-8 without NUL, else NULL.
std::string exact(const std::string& text, const std::string& hex) {
  if (hex == "\\N") {
    EXPECT_EQ(text, "\\N");
    return "\\N";
  }
  const std::string bytes = unhex(hex);
  EXPECT_EQ(text, outbox::is_sql_text(bytes) ? bytes : "\\N") << "hex " << hex;
  return bytes;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, '|')) out.push_back(part);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Processes

struct SidecarRun {
  int code = -1;
  std::string log;
};

class SidecarProcess {
 public:
  SidecarProcess(const StockdProcess& server, std::string sql, std::vector<std::string> extra = {})
      : sql_(std::move(sql)), extra_(std::move(extra)) {
    port_ = server.port();
    log_ = make_temp_dir("outbox-log") / "sidecar.log";
  }
  ~SidecarProcess() {
    kill9();
    fs::remove_all(log_.parent_path());
  }
  void set_token(std::string token) { token_ = std::move(token); }

  void start() {
    std::vector<std::string> args = {STOCKD_OUTBOX_BIN,
                                     "--server",
                                     "127.0.0.1:" + std::to_string(port_),
                                     "--token",
                                     token_,
                                     "--sql",
                                     sql_,
                                     "--log-level",
                                     "info"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_ = spawn(args, log_.string());
  }
  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  int term() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    int code = wait_for(pid_, 30s);
    pid_ = -1;
    return code;
  }
  bool running() {
    int status = 0;
    return pid_ > 0 && waitpid(pid_, &status, WNOHANG) == 0;
  }
  // Waits up to `timeout` for the started sidecar to exit by itself; its exit code (-1 and a
  // failure if it did not).
  int wait(std::chrono::milliseconds timeout) {
    int code = wait_for(pid_, timeout);
    pid_ = -1;
    return code;
  }
  // Runs with --once (plus `more`) to completion.
  SidecarRun once(std::vector<std::string> more = {}) {
    std::vector<std::string> saved = extra_;
    extra_.push_back("--once");
    extra_.insert(extra_.end(), more.begin(), more.end());
    fs::remove(log_);
    start();
    SidecarRun r;
    r.code = wait_for(pid_, 90s);
    pid_ = -1;
    r.log = slurp(log_);
    extra_ = saved;
    return r;
  }
  std::string log() const { return slurp(log_); }

 private:
  std::string sql_;
  std::vector<std::string> extra_;
  std::string token_ = StockdProcess::kOutboxToken;
  int port_ = 0;
  fs::path log_;
  pid_t pid_ = -1;
};

// A fresh stockd with SKUs for the load: kSkus plain SKUs and one code-pool SKU.
constexpr int kPlainSkus = 4;
constexpr const char* kCodeSku = "CODES";
constexpr int kCodes = 3000;

std::string plain_sku(int i) { return "SKU-" + std::to_string(i); }

void seed(const StockdProcess& server) {
  Client admin = server.admin();
  for (int i = 0; i < kPlainSkus; ++i) {
    proto::SkuSetReq req;
    req.sku = plain_sku(i);
    req.mask = proto::kSetTotal;
    req.total = 1000000;
    ASSERT_TRUE(admin.sku_set(req).ok());
  }
  proto::SkuSetReq pool;
  pool.sku = kCodeSku;
  pool.mask = proto::kSetTotal;
  ASSERT_TRUE(admin.sku_set(pool).ok());
  for (int from = 0; from < kCodes; from += 1000) {
    proto::CodesLoadReq req;
    req.sku = kCodeSku;
    for (int i = from; i < from + 1000; ++i) req.codes.push_back("C" + std::to_string(100000 + i));
    auto r = admin.codes_load(req);
    ASSERT_TRUE(r.ok()) << proto::status_name(r.status) << " " << r.error;
  }
}

// ---------------------------------------------------------------------------------------------
// The load: concurrent buyers, and what their OK answers promise SQL will hold.

struct Promised {
  std::mutex mu;
  std::map<uint64_t, std::string> orders;  // order_id -> "user|key"
  std::set<std::string> lines;             // order_id|sku|qty
  std::set<std::string> codes;             // code|sku|order_id
  std::set<uint64_t> released;             // hold ids
  std::set<uint64_t> expiring;             // hold ids left to expire
  std::atomic<int> failures{0};            // transport failures: outcome unknown
  std::atomic<int> ok_answers{0};

  void add_order(uint64_t id, const std::string& user, const std::string& key,
                 const std::vector<proto::Line>& lines_in, const std::vector<proto::SkuCode>& c) {
    std::lock_guard lock(mu);
    EXPECT_TRUE(orders.emplace(id, user + "|" + (key.empty() ? "\\N" : key)).second) << id;
    for (const auto& l : lines_in)
      lines.insert(std::to_string(id) + "|" + l.sku + "|" + std::to_string(l.qty));
    for (const auto& x : c) codes.insert(x.code + "|" + x.sku + "|" + std::to_string(id));
    ++ok_answers;
  }
};

void buyer(const StockdProcess& server, int thread, const std::atomic<bool>& stop, int ops_max,
           bool with_expiry, Promised& p) {
  ClientOptions o = server.options(proto::Role::kBuyer);
  Client c(o);
  std::mt19937 rng(static_cast<uint32_t>(thread * 7919 + 1));
  for (int i = 0; i < ops_max && !stop.load(); ++i) {
    const std::string user = "u" + std::to_string(rng() % 500);
    const std::string key = "t" + std::to_string(thread) + "-" + std::to_string(i);
    const int op = static_cast<int>(rng() % 10);
    proto::ReserveReq req{
        user,
        key,
        0,
        {{plain_sku(static_cast<int>(rng() % kPlainSkus)), static_cast<uint32_t>(1 + rng() % 3)}}};
    if (op == 1) req.lines.push_back({kCodeSku, 1});
    if (op == 2) req.key.clear();  // orders without an idempotency key too
    if (op <= 2) {                 // buy now
      auto r = c.reserve(req);
      if (!r.transport_ok()) ++p.failures;
      if (r.ok()) p.add_order(r.body.hold_id, user, req.key, req.lines, r.body.codes);
      continue;
    }
    if (op == 3 || op == 4) {  // claim a code
      auto r = c.claim({kCodeSku, user, key});
      if (!r.transport_ok()) ++p.failures;
      if (r.ok())
        p.add_order(r.body.order_id, user, key, {{kCodeSku, 1}}, {{kCodeSku, r.body.code}});
      continue;
    }
    req.ttl_ms = op == 9 && with_expiry ? 300 : 60000;
    if (op == 5) req.lines.push_back({kCodeSku, 2});
    auto held = c.reserve(req);
    if (!held.transport_ok()) ++p.failures;
    if (!held.ok()) continue;
    const uint64_t id = held.body.hold_id;
    if (op == 9 && with_expiry) {
      std::lock_guard lock(p.mu);
      p.expiring.insert(id);
      continue;
    }
    auto done = op == 8 || op == 9 ? c.release(id, req.user) : c.commit(id, req.user);
    if (!done.transport_ok()) ++p.failures;
    if (!done.ok()) continue;
    if (op == 8 || op == 9) {
      std::lock_guard lock(p.mu);
      p.released.insert(id);
    } else {
      p.add_order(id, user, req.key, done.body.lines, done.body.codes);
    }
  }
}

class Load {
 public:
  Load(const StockdProcess& server, int threads, int ops_per_thread, bool with_expiry = false) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, &server, t, ops_per_thread, with_expiry] {
        buyer(server, t, stop_, ops_per_thread, with_expiry, promised);
      });
    }
  }
  ~Load() { finish(); }
  void stop() { stop_ = true; }
  void finish() {
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  Promised promised;

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// ---------------------------------------------------------------------------------------------
// The exact match: SQL holds what the buyers were told, once, and what stockd says it sold.

// `skus`: the SKUs whose units to compare with stockd's `sold` (default: the load's SKUs).
void expect_exact(const DbDump& d, const StockdProcess& server, Promised& p,
                  std::vector<std::string> skus = {}) {
  ASSERT_EQ(p.failures.load(), 0) << "some answers were lost: the expected state is unknown";
  Client outbox(server.options(proto::Role::kOutbox));
  auto st = outbox.outbox_status();
  ASSERT_TRUE(st.ok()) << st.error;
  EXPECT_EQ(d.cursor, st.body.head_seq);

  std::map<uint64_t, std::string> orders;
  std::set<uint64_t> seqs;
  for (const auto& row : d.orders) {
    auto f = split(row);
    ASSERT_EQ(f.size(), 8u) << row;
    orders[std::stoull(f[0])] = exact(f[2], f[3]) + "|" + exact(f[4], f[5]);
    EXPECT_TRUE(seqs.insert(std::stoull(f[1])).second) << row;
  }
  std::set<uint64_t> released, expired;
  for (const auto& row : d.events) {
    auto f = split(row);
    ASSERT_EQ(f.size(), 7u) << row;
    EXPECT_TRUE(seqs.insert(std::stoull(f[0])).second) << row;
    (f[1] == "released" ? released : expired).insert(std::stoull(f[2]));
    exact(f[3], f[4]);
  }
  // Every sequence number 1..cursor once: nothing lost, nothing twice.
  ASSERT_EQ(seqs.size(), d.cursor);
  if (!seqs.empty()) {
    EXPECT_EQ(*seqs.rbegin(), d.cursor);
  }

  std::set<std::string> lines, codes;
  std::map<std::string, uint64_t> units;  // per SKU (exact bytes)
  for (const auto& row : d.lines) {
    auto f = split(row);
    ASSERT_EQ(f.size(), 4u) << row;
    const std::string sku = exact(f[1], f[2]);
    lines.insert(f[0] + "|" + sku + "|" + f[3]);
    units[sku] += std::stoull(f[3]);
  }
  for (const auto& row : d.codes) {
    auto f = split(row);
    ASSERT_EQ(f.size(), 5u) << row;
    codes.insert(exact(f[0], f[1]) + "|" + exact(f[2], f[3]) + "|" + f[4]);
  }
  std::lock_guard lock(p.mu);
  EXPECT_EQ(orders, p.orders);
  EXPECT_EQ(lines, p.lines);
  EXPECT_EQ(d.lines.size(), p.lines.size());
  EXPECT_EQ(codes, p.codes);
  EXPECT_EQ(d.codes.size(), p.codes.size());
  EXPECT_EQ(released, p.released);
  EXPECT_EQ(expired, p.expiring);

  // Per SKU, the units in SQL are what stockd says it sold.
  if (skus.empty()) {
    for (int i = 0; i < kPlainSkus; ++i) skus.push_back(plain_sku(i));
    skus.push_back(kCodeSku);
  }
  Client admin = server.admin();
  for (const std::string& sku : skus) {
    auto v = admin.sku_get(sku);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(units[sku], v.body.sold) << outbox::hex(sku);
  }
  EXPECT_GT(p.ok_answers.load(), 0);
}

// Waits until stockd's live holds are gone (the short-TTL ones expire).
void wait_no_live_holds(const StockdProcess& server, Promised& p) {
  if (p.expiring.empty()) return;
  std::this_thread::sleep_for(400ms);
  Client admin = server.admin();  // reads any user's hold
  for (int i = 0; i < 300; ++i) {
    bool all = true;
    for (uint64_t id : p.expiring) {
      auto h = admin.hold_get(id);
      all = all && h.ok() && h.body.state == proto::HoldState::kExpired;
      if (!all) break;
    }
    if (all) return;
    std::this_thread::sleep_for(50ms);
  }
  ADD_FAILURE() << "short holds did not expire";
}

// `n` buy-now orders of 1 unit of plain_sku(0), promised in `p`.
void buy_now(const StockdProcess& server, Promised& p, int n, const std::string& user) {
  Client buyer = server.buyer();
  for (int i = 0; i < n; ++i) {
    proto::ReserveReq req{user, user + "-" + std::to_string(i), 0, {{plain_sku(0), 1}}};
    auto r = buyer.reserve(req);
    ASSERT_TRUE(r.ok()) << proto::status_name(r.status) << " " << r.error;
    p.add_order(r.body.hold_id, req.user, req.key, req.lines, r.body.codes);
  }
}

std::unique_ptr<StockdProcess> start_stockd(std::vector<std::string> args = {}) {
  auto s = std::make_unique<StockdProcess>(std::move(args));
  EXPECT_TRUE(s->start()) << "stockd did not start";
  return s;
}

std::string sqlite_url(const fs::path& dir, const std::string& name) {
  return "sqlite:" + (dir / name).string();
}

// ---------------------------------------------------------------------------------------------
// Sink tests, without stockd

proto::OutboxRecord record(uint64_t seq, proto::OutboxKind kind = proto::OutboxKind::kOrder) {
  proto::OutboxRecord r;
  r.seq = seq;
  r.kind = kind;
  r.order_id = 100 + seq;
  r.user = "user" + std::to_string(seq % 7);
  r.key = seq % 2 ? "k" + std::to_string(seq) : "";
  r.created_at_ms = 1700000000000 + static_cast<int64_t>(seq);
  r.at_ms = r.created_at_ms + 5;
  r.lines = {{"A", 1 + static_cast<uint32_t>(seq % 3)}};
  if (seq % 3 == 0) r.lines.push_back({"B\t\\x", 2});  // COPY escapes
  if (seq % 4 == 0) r.codes.push_back({"A", "code-" + std::to_string(seq)});
  return r;
}

std::vector<proto::OutboxRecord> records(uint64_t from, uint64_t to) {
  std::vector<proto::OutboxRecord> v;
  for (uint64_t s = from; s <= to; ++s) {
    v.push_back(record(s, s % 5 == 0    ? proto::OutboxKind::kReleased
                          : s % 11 == 0 ? proto::OutboxKind::kExpired
                                        : proto::OutboxKind::kOrder));
  }
  return v;
}

class SinkTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("sink");
    if (GetParam() == "sqlite") {
      url_ = sqlite_url(dir_, "t.db");
    } else {
      REQUIRE_PG(pg);
      url_ = pg->create_db("sink");
    }
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::unique_ptr<outbox::Sink> sink() {
    auto s = outbox::make_sink(url_);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  DbDump dump() const {
    return GetParam() == "sqlite" ? dump_sqlite(url_.substr(7)) : dump_pg(url_);
  }
  fs::path dir_;
  std::string url_;
};

TEST_P(SinkTest, WritesRowsAndCursorTogether) {
  auto s = sink();
  uint64_t cursor = 99;
  ASSERT_TRUE(s->read_cursor(cursor).ok());
  EXPECT_EQ(cursor, 0u);
  auto batch = records(1, 30);
  ASSERT_TRUE(s->write_batch(0, batch, 1234).ok());
  ASSERT_TRUE(s->read_cursor(cursor).ok());
  EXPECT_EQ(cursor, 30u);
  DbDump d = dump();
  EXPECT_EQ(d.cursor, 30u);
  size_t orders = 0, lines = 0, codes = 0;
  for (const auto& r : batch) {
    if (r.kind != proto::OutboxKind::kOrder) continue;
    ++orders;
    lines += r.lines.size();
    codes += r.codes.size();
  }
  EXPECT_EQ(d.orders.size(), orders);
  EXPECT_EQ(d.lines.size(), lines);
  EXPECT_EQ(d.codes.size(), codes);
  EXPECT_EQ(d.events.size(), batch.size() - orders);
  EXPECT_EQ(d.orders[0], "101|1|user1|7573657231|k1|6b31|1700000000001|1700000000006");
  EXPECT_EQ(d.orders[1], "102|2|user2|7573657232|\\N|\\N|1700000000002|1700000000007");
  EXPECT_EQ(d.events[0],
            "5|released|105|user5|7573657235|1700000000010|[{\"sku\":\"A\",\"qty\":3}]");
  EXPECT_NE(std::find(d.lines.begin(), d.lines.end(), "103|B\t\\x|42095c78|2"), d.lines.end());
}

TEST_P(SinkTest, CursorIsCompareAndSet) {
  auto s = sink();
  ASSERT_TRUE(s->write_batch(0, records(1, 10), 1).ok());
  outbox::SinkStatus st = s->write_batch(5, records(6, 20), 2);
  EXPECT_EQ(st.code, outbox::SinkStatus::Code::kCursorMoved) << st.message;
  DbDump d = dump();
  EXPECT_EQ(d.cursor, 10u);
  EXPECT_EQ(d.orders.size() + d.events.size(), 10u);  // nothing of the refused batch
}

// totals() reads back what the tables hold for a range of seqs, outside a batch: the sidecar
// compares stockd's record at the cursor with it. An order, a hold event, a range, and seqs
// the tables do not hold.
TEST_P(SinkTest, TotalsAreWhatTheTablesHoldForTheSeqs) {
  auto s = sink();
  const std::vector<proto::OutboxRecord> batch = records(1, 30);
  ASSERT_TRUE(s->write_batch(0, batch, 1).ok());
  for (auto [first, last] : {std::pair<uint64_t, uint64_t>{1, 1}, {5, 5}, {3, 17}, {1, 30}}) {
    outbox::BatchTotals found;
    ASSERT_TRUE(s->totals(first, last, found).ok());
    EXPECT_EQ(
        outbox::compare_totals(
            outbox::batch_totals(std::span(batch).subspan(first - 1, last - first + 1)), found)
            .message(),
        "")
        << first << ".." << last;
  }
  outbox::BatchTotals none;
  ASSERT_TRUE(s->totals(31, 40, none).ok());
  EXPECT_EQ(none, outbox::BatchTotals{});
  outbox::BatchTotals other;
  ASSERT_TRUE(s->totals(2, 2, other).ok());
  EXPECT_FALSE(outbox::compare_totals(outbox::batch_totals(records(3, 3)), other).ok())
      << "another order at the seq looks the same";
}

TEST_P(SinkTest, ReapplyingABatchIsIdempotent) {
  auto s = sink();
  ASSERT_TRUE(s->write_batch(0, records(1, 50), 1).ok());
  DbDump before = dump();
  ASSERT_TRUE(s->reset_cursor(0, 2).ok());  // a replay over the same rows
  ASSERT_TRUE(s->write_batch(0, records(1, 20), 3).ok());
  ASSERT_TRUE(s->write_batch(20, records(21, 50), 3).ok());
  EXPECT_EQ(dump(), before);
  ASSERT_TRUE(s->write_batch(50, records(51, 60), 4).ok());  // and then new rows again
  EXPECT_EQ(dump().cursor, 60u);
  EXPECT_EQ(dump().orders.size() + dump().events.size(), 60u);
}

// Strings that differ only in bytes that are not text (invalid UTF-8, NUL) are different rows
// with their exact bytes; the text column holds valid text only. (Before: both became the text
// "\xFF", so one user was indistinguishable from another and a line and a code were dropped
// as primary-key conflicts.)
TEST_P(SinkTest, StringsAreStoredAsExactBytes) {
  using namespace std::string_literals;
  auto s = sink();
  std::vector<proto::OutboxRecord> batch = {record(1), record(2), record(3), record(4),
                                            record(5, proto::OutboxKind::kReleased)};
  batch[0].user = "\xff";
  batch[0].key = "k\xfe";
  batch[0].lines = {{"S\xff", 1}, {"S\\xFF", 2}};
  batch[0].codes = {{"S\xff", "C\xff"}};
  batch[1].user = "\\xff";  // the text a backslash, x, f, f
  batch[1].key = "k\\xFE";
  batch[1].lines = {{"S\xff", 4}};
  batch[1].codes = {{"S\xff", "C\\xFF"}};
  batch[2].user = "a\0b"s;
  batch[2].key = "caf\xc3\xa9";  // valid UTF-8 stays as it is
  batch[2].lines = {{"T", 5}};
  batch[2].codes.clear();
  batch[3].user = "a\\x00b";
  batch[3].lines = {{"T", 6}};
  batch[3].codes.clear();
  batch[4].user = "\xff\xfe";
  batch[4].lines = {{"S\xff", 7}, {"U", 1}};
  ASSERT_TRUE(s->write_batch(0, batch, 1).ok());

  DbDump d = dump();
  ASSERT_EQ(d.orders.size(), 4u) << ::testing::PrintToString(d);
  EXPECT_EQ(d.orders[0], "101|1|\\N|ff|\\N|6bfe|1700000000001|1700000000006");
  EXPECT_EQ(d.orders[1], "102|2|\\xff|5c786666|k\\xFE|6b5c784645|1700000000002|1700000000007");
  EXPECT_EQ(d.orders[2], "103|3|\\N|610062|caf\xc3\xa9|636166c3a9|1700000000003|1700000000008");
  EXPECT_EQ(d.orders[3], "104|4|a\\x00b|615c78303062|\\N|\\N|1700000000004|1700000000009");
  // Sorted by the bytes: 0x5c ('\\') before 0xff.
  EXPECT_EQ(d.lines, (std::vector<std::string>{"101|S\\xFF|535c784646|2", "101|\\N|53ff|1",
                                               "102|\\N|53ff|4", "103|T|54|5", "104|T|54|6"}));
  EXPECT_EQ(d.codes,
            (std::vector<std::string>{"C\\xFF|435c784646|\\N|53ff|102", "\\N|43ff|\\N|53ff|101"}));
  ASSERT_EQ(d.events.size(), 1u);
  EXPECT_EQ(d.events[0],
            "5|released|105|\\N|fffe|1700000000010|"
            "[{\"sku\":null,\"sku_hex\":\"53ff\",\"qty\":7},{\"sku\":\"U\",\"qty\":1}]");
  // What users query: every unit sold, per SKU by its bytes.
  EXPECT_EQ(query_one(url_, "SELECT sum(qty) FROM order_lines"), "18");
  EXPECT_EQ(query_one(url_, "SELECT count(DISTINCT user_id_bytes) FROM orders"), "4");
  EXPECT_EQ(query_one(url_, "SELECT sum(qty) FROM order_lines WHERE sku = 'T'"), "11");
}

// Rows an operator's change to the database would make the inserts skip (here a code that
// already exists with another order) fail the batch instead of vanishing: nothing of it is
// committed, and the sink says so for good (kRejected).
TEST_P(SinkTest, ARowThatCannotBeStoredFailsTheBatch) {
  auto s = sink();
  ASSERT_TRUE(s->write_batch(0, records(1, 3), 1).ok());
  ASSERT_EQ(exec_sql(url_, GetParam() == "sqlite"
                               ? "INSERT INTO order_codes VALUES ('code-8', X'636f64652d38', 'A',"
                                 " X'41', 999)"
                               : "INSERT INTO order_codes VALUES ('code-8', '\\x636f64652d38',"
                                 " 'A', '\\x41', 999)"),
            "");
  outbox::SinkStatus st = s->write_batch(3, records(4, 10), 2);  // record 8 sells code-8
  EXPECT_EQ(st.code, outbox::SinkStatus::Code::kRejected) << st.message;
  EXPECT_NE(st.message.find("batch check of records 4..10 failed"), std::string::npos)
      << st.message;
  EXPECT_NE(st.message.find(GetParam() == "sqlite"
                                ? "record 8: its order_codes row for sku 'A' and code 'code-8' "
                                  "was not stored"
                                : "1 of its 2 rows for order_codes were not stored"),
            std::string::npos)
      << st.message;
  DbDump d = dump();
  EXPECT_EQ(d.cursor, 3u);
  EXPECT_EQ(d.orders.size() + d.events.size(), 3u);  // nothing of the refused batch
  // A replay of rows that are there (same keys, same values) is not a failure.
  ASSERT_TRUE(s->reset_cursor(0, 3).ok());
  EXPECT_TRUE(s->write_batch(0, records(1, 3), 3).ok());
}

// Rows a trigger drops, before the insert (skipped) or after it (deleted), fail the batch too:
// the inserts' counts and the read-back by seq see them missing.
TEST_P(SinkTest, RowsDroppedByTriggersFailTheBatch) {
  const bool lite = GetParam() == "sqlite";
  auto s = sink();
  ASSERT_TRUE(s->write_batch(0, records(1, 2), 1).ok());
  ASSERT_EQ(exec_sql(url_, lite ? "CREATE TRIGGER skip2 BEFORE INSERT ON order_lines"
                                  " WHEN NEW.qty = 2 BEGIN SELECT RAISE(IGNORE); END"
                                : "CREATE FUNCTION skip_row() RETURNS trigger LANGUAGE plpgsql"
                                  " AS $$BEGIN RETURN NULL; END$$;"
                                  "CREATE TRIGGER skip2 BEFORE INSERT ON order_lines FOR EACH ROW"
                                  " WHEN (NEW.qty = 2) EXECUTE FUNCTION skip_row()"),
            "");
  outbox::SinkStatus st = s->write_batch(2, records(3, 10), 2);
  EXPECT_EQ(st.code, outbox::SinkStatus::Code::kRejected) << st.message;
  EXPECT_NE(st.message.find(lite ? "record 3: its order_lines row for sku 'B\t" : "COPY stored"),
            std::string::npos)
      << st.message;
  ASSERT_EQ(exec_sql(url_, "DROP TRIGGER skip2" + std::string(lite ? "" : " ON order_lines")), "");

  ASSERT_EQ(exec_sql(url_, lite ? "CREATE TRIGGER drop7 AFTER INSERT ON orders WHEN NEW.seq = 7"
                                  " BEGIN DELETE FROM orders WHERE seq = 7; END"
                                : "CREATE FUNCTION drop_row() RETURNS trigger LANGUAGE plpgsql"
                                  " AS $$BEGIN DELETE FROM orders WHERE seq = NEW.seq;"
                                  " RETURN NULL; END$$;"
                                  "CREATE TRIGGER drop7 AFTER INSERT ON orders FOR EACH ROW"
                                  " WHEN (NEW.seq = 7) EXECUTE FUNCTION drop_row()"),
            "");
  st = s->write_batch(2, records(3, 10), 3);
  EXPECT_EQ(st.code, outbox::SinkStatus::Code::kRejected) << st.message;
  EXPECT_NE(st.message.find("orders holds 5 rows for these seqs, expected 6"), std::string::npos)
      << st.message;
  ASSERT_EQ(exec_sql(url_, "DROP TRIGGER drop7" + std::string(lite ? "" : " ON orders")), "");

  EXPECT_EQ(dump().cursor, 2u);
  st = s->write_batch(2, records(3, 10), 4);
  EXPECT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(dump().orders.size() + dump().events.size(), 10u);
}

// Columns an operator adds (with a default, or nullable) are left to their defaults, on the
// fast path and on PostgreSQL's merge path (a replay), also when added while the sink runs.
TEST_P(SinkTest, AddedColumnsKeepTheirDefaults) {
  auto s = sink();
  ASSERT_TRUE(s->write_batch(0, records(1, 10), 1).ok());
  ASSERT_EQ(exec_sql(url_, "ALTER TABLE orders ADD COLUMN shipped boolean DEFAULT false"), "");
  ASSERT_EQ(exec_sql(url_, "ALTER TABLE order_lines ADD COLUMN note text"), "");
  ASSERT_EQ(exec_sql(url_, "ALTER TABLE hold_events ADD COLUMN seen_ms bigint DEFAULT 7"), "");
  outbox::SinkStatus st = s->write_batch(10, records(11, 20), 2);
  ASSERT_TRUE(st.ok()) << st.message;
  ASSERT_TRUE(sink()->write_batch(20, records(21, 30), 3).ok());
  ASSERT_TRUE(s->reset_cursor(15, 4).ok());  // a replay over rows that exist: merge path
  st = s->write_batch(15, records(16, 40), 5);
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(dump().cursor, 40u);
  EXPECT_EQ(dump().orders.size() + dump().events.size(), 40u);
  EXPECT_EQ(query_one(url_, "SELECT count(*) FROM orders WHERE shipped = false"),
            std::to_string(dump().orders.size()));
  EXPECT_EQ(query_one(url_, "SELECT count(*) FROM order_lines WHERE note IS NULL"),
            std::to_string(dump().lines.size()));
  EXPECT_EQ(query_one(url_, "SELECT min(seen_ms) FROM hold_events WHERE seq > 10"), "7");
}

// A column the sidecar writes that is gone: kRejected naming the table and column, when a
// batch is written (the database's message) and when a sink opens (the sink's own).
TEST_P(SinkTest, AMissingColumnIsRejected) {
  auto s = sink();
  ASSERT_TRUE(s->write_batch(0, records(1, 10), 1).ok());
  ASSERT_EQ(exec_sql(url_, "ALTER TABLE orders DROP COLUMN idem_key"), "");
  outbox::SinkStatus st = s->write_batch(10, records(11, 20), 2);
  EXPECT_EQ(st.code, outbox::SinkStatus::Code::kRejected) << st.message;
  EXPECT_NE(st.message.find("idem_key"), std::string::npos) << st.message;
  uint64_t cursor = 0;
  st = sink()->read_cursor(cursor);
  EXPECT_EQ(st.code, outbox::SinkStatus::Code::kRejected) << st.message;
  EXPECT_NE(st.message.find("table orders has no column idem_key"), std::string::npos)
      << st.message;
  EXPECT_EQ(query_one(url_, "SELECT seq FROM stockd_outbox_cursor"), "10");
}

// A writer killed at random points never leaves a batch half written or the cursor astray.
TEST_P(SinkTest, KilledWriterLeavesWholeBatchesOnly) {
  std::mt19937 rng(42);
  {  // the tables exist before the first kill (on a loaded machine a writer killed within 30 ms
     // may not have created them yet, and then there is nothing to dump)
    auto s = outbox::make_sink(url_);
    ASSERT_TRUE(s.ok()) << s.status().message();
    uint64_t cursor = 0;
    ASSERT_TRUE((*s)->read_cursor(cursor).ok());
  }
  for (int round = 0; round < 10; ++round) {
    pid_t pid = fork();
    if (pid == 0) {
      auto made = outbox::make_sink(url_);
      if (!made.ok()) _exit(1);
      std::unique_ptr<outbox::Sink> s = std::move(made).value();
      uint64_t cursor = 0;
      if (!s->read_cursor(cursor).ok()) _exit(1);
      for (;;) {
        if (!s->write_batch(cursor, records(cursor + 1, cursor + 1000), 1).ok()) _exit(2);
        cursor += 1000;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(30 + rng() % 150));
    ::kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer failed: exit " << exit_code(status);
    DbDump d = dump();
    EXPECT_EQ(d.cursor % 1000, 0u);
    EXPECT_EQ(d.orders.size() + d.events.size(), d.cursor) << "round " << round;
  }
  EXPECT_GT(dump().cursor, 0u);
}

INSTANTIATE_TEST_SUITE_P(Sinks, SinkTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

TEST(OutboxRecords, BatchesMustBeContiguousAndValid) {
  auto v = records(5, 8);
  EXPECT_TRUE(outbox::check_batch(4, v).ok());
  EXPECT_FALSE(outbox::check_batch(3, v).ok());
  v[2].seq = 9;
  EXPECT_FALSE(outbox::check_batch(4, v).ok());
  auto r = record(1);
  r.lines.push_back(r.lines[0]);
  EXPECT_FALSE(outbox::check_record(r).ok());
  r = record(4);
  r.codes[0].sku = "Z";
  EXPECT_FALSE(outbox::check_record(r).ok());
  std::string scratch;
  EXPECT_EQ(outbox::sql_text("ok", scratch), "ok");
  EXPECT_EQ(outbox::sql_text("\xed\xa0\x80", scratch), "\\xED\\xA0\\x80");  // a surrogate
}

TEST(OutboxRecords, WhatIsTextAndWhatABatchLeaves) {
  using namespace std::string_literals;
  EXPECT_TRUE(outbox::is_sql_text(""));
  EXPECT_TRUE(outbox::is_sql_text("caf\xc3\xa9 \xf0\x9f\x8d\xba \\xff"));
  EXPECT_FALSE(outbox::is_sql_text("a\0b"s));
  EXPECT_FALSE(outbox::is_sql_text("\xff"));
  EXPECT_FALSE(outbox::is_sql_text("\xc3"));              // truncated
  EXPECT_FALSE(outbox::is_sql_text("\xc0\xaf"));          // overlong
  EXPECT_FALSE(outbox::is_sql_text("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(outbox::is_sql_text("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_EQ(outbox::hex("A\xff\0"s), "41ff00");
  EXPECT_EQ(outbox::lines_json({{"A\"", 2}, {"B\xff", 1}}),
            "[{\"sku\":\"A\\\"\",\"qty\":2},{\"sku\":null,\"sku_hex\":\"42ff\",\"qty\":1}]");

  auto v = records(1, 11);
  outbox::BatchTotals t = outbox::batch_totals(v);
  EXPECT_EQ(t.orders, 8);  // 5 and 10 released, 11 expired
  EXPECT_EQ(t.events, 3);
  constexpr int64_t m = outbox::BatchTotals::kModulus;  // hold id + time, each modulo m
  EXPECT_EQ(t.events_checksum, 105 + 110 + 111 + v[4].at_ms % m + v[9].at_ms % m + v[10].at_ms % m);
  EXPECT_EQ(t.codes, 2);  // 4 and 8
  EXPECT_TRUE(outbox::compare_totals(t, t).ok());
  outbox::BatchTotals found = t;
  found.orders -= 1;
  found.events_checksum += 3;
  EXPECT_EQ(outbox::compare_totals(t, found).message(),
            "orders holds 7 rows for these seqs, expected 8; hold_events holds other hold ids or "
            "times for these seqs (checksum " +
                std::to_string(t.events_checksum + 3) + ", expected " +
                std::to_string(t.events_checksum) + ")");
}

// ---------------------------------------------------------------------------------------------
// End to end

class OutboxSql : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = make_temp_dir("outbox-sql"); }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

// (a) + (d): concurrent buyers; --once into SQLite and PostgreSQL gives exactly what the
// buyers were told, the same rows in both; replays into fresh databases and over the same
// database give the same rows again.
TEST_F(OutboxSql, OrdersReachSqliteAndPostgresExactlyOnce) {
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  Load load(*server, 6, 400, /*with_expiry=*/true);
  load.finish();
  wait_no_live_holds(*server, load.promised);

  const std::string lite = sqlite_url(dir_, "orders.db");
  SidecarRun r = SidecarProcess(*server, lite).once();
  ASSERT_EQ(r.code, 0) << r.log;
  EXPECT_NE(r.log.find("caught up at cursor"), std::string::npos) << r.log;
  DbDump d = dump_sqlite(lite.substr(7));
  expect_exact(d, *server, load.promised);

  // A second run finds nothing to do and changes nothing.
  ASSERT_EQ(SidecarProcess(*server, lite).once().code, 0);
  EXPECT_EQ(dump_sqlite(lite.substr(7)), d);

  // (d) Replay into a fresh SQLite file, and over the same file after a cursor reset.
  const std::string lite2 = sqlite_url(dir_, "replay.db");
  ASSERT_EQ(SidecarProcess(*server, lite2).once({"--batch", "97"}).code, 0);
  EXPECT_EQ(dump_sqlite(lite2.substr(7)), d);
  ASSERT_EQ(SidecarProcess(*server, lite).once({"--reset-cursor", "0"}).code, 0);
  ASSERT_EQ(SidecarProcess(*server, lite).once().code, 0);
  EXPECT_EQ(dump_sqlite(lite.substr(7)), d);

  REQUIRE_PG(pg);
  const std::string url = pg->create_db("orders_a");
  r = SidecarProcess(*server, url).once();
  ASSERT_EQ(r.code, 0) << r.log;
  DbDump p = dump_pg(url);
  expect_exact(p, *server, load.promised);
  EXPECT_EQ(p, d) << "SQLite and PostgreSQL hold different rows";

  const std::string url2 = pg->create_db("orders_a_replay");
  ASSERT_EQ(SidecarProcess(*server, url2).once({"--batch", "333"}).code, 0);
  EXPECT_EQ(dump_pg(url2), d);
  ASSERT_EQ(SidecarProcess(*server, url).once({"--reset-cursor", "0"}).code, 0);
  r = SidecarProcess(*server, url).once();
  ASSERT_EQ(r.code, 0) << r.log;
  EXPECT_EQ(dump_pg(url), d);
}

// (b) kill -9 the sidecar at random points during a load, 20+ times; at the end an exact match.
void kill_nine_during_load(const std::string& sql) {
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  Load load(*server, 4, 1000000);
  SidecarProcess sidecar(*server, sql, {"--batch", "50"});
  std::mt19937 rng(7);
  for (int i = 0; i < 22; ++i) {
    sidecar.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(40 + rng() % 160));
    sidecar.kill9();
  }
  load.stop();
  load.finish();
  const bool lite = sql.rfind("sqlite:", 0) == 0;
  EXPECT_GT((lite ? dump_sqlite(sql.substr(7)) : dump_pg(sql)).cursor, 0u)
      << "the killed sidecars never committed anything";
  SidecarRun r = sidecar.once();
  ASSERT_EQ(r.code, 0) << r.log;
  DbDump d = lite ? dump_sqlite(sql.substr(7)) : dump_pg(sql);
  expect_exact(d, *server, load.promised);
  EXPECT_GT(d.orders.size(), 200u) << "the load was too small to mean much";
}

TEST_F(OutboxSql, SidecarKilledRepeatedlyIntoSqlite) {
  kill_nine_during_load(sqlite_url(dir_, "orders.db"));
}

TEST_F(OutboxSql, SidecarKilledRepeatedlyIntoPostgres) {
  REQUIRE_PG(pg);
  kill_nine_during_load(pg->create_db("orders_b"));
}

uint64_t status_field(const fs::path& file, const std::string& name) {
  std::string s = slurp(file);
  auto at = s.find("\"" + name + "\":");
  if (at == std::string::npos) return 0;
  return std::stoull(s.substr(at + name.size() + 3));
}

// (c) PostgreSQL stops during a load: stockd keeps selling, the sidecar retries; when
// PostgreSQL is back it drains to an exact match.
TEST_F(OutboxSql, PostgresOutageDuringLoad) {
  REQUIRE_PG(pg);
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  const std::string url = pg->create_db("orders_c");
  const fs::path status = dir_ / "status.json";
  SidecarProcess sidecar(*server, url, {"--batch", "200", "--status-file", status.string()});
  sidecar.start();
  Load load(*server, 4, 1000000);
  // The outage comes while the sidecar is copying: once it has committed some records (on a
  // busy machine its start alone can take longer than a fixed pause, and an outage before its
  // first write is a different case: "waiting for SQL").
  for (int i = 0; i < 200 && status_field(status, "cursor") == 0; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_GT(status_field(status, "cursor"), 0u) << "the sidecar copied nothing in 10 s\n"
                                                << sidecar.log();
  std::this_thread::sleep_for(300ms);
  pg->stop();
  Client outbox(server->options(proto::Role::kOutbox));
  const int sold_before = load.promised.ok_answers.load();
  std::this_thread::sleep_for(200ms);
  const auto during = outbox.outbox_status().body;
  std::this_thread::sleep_for(1300ms);
  EXPECT_GT(load.promised.ok_answers.load(), sold_before + 100) << "stockd stopped selling";
  // Nothing is acknowledged while SQL cannot commit.
  EXPECT_EQ(outbox.outbox_status().body.acked_seq, during.acked_seq);
  EXPECT_GT(outbox.outbox_status().body.head_seq, during.head_seq);
  EXPECT_TRUE(sidecar.running());
  EXPECT_NE(slurp(status).find("\"sql_up\":false"), std::string::npos) << slurp(status);
  ASSERT_EQ(pg->start_server(), "");
  std::this_thread::sleep_for(500ms);
  load.stop();
  load.finish();
  const uint64_t head = outbox.outbox_status().body.head_seq;
  for (int i = 0; i < 600 && status_field(status, "cursor") < head; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(sidecar.term(), 0) << sidecar.log();
  EXPECT_NE(sidecar.log().find("SQL write of records"), std::string::npos) << sidecar.log();
  expect_exact(dump_pg(url), *server, load.promised);
}

// (e) A database whose cursor is ahead of stockd's outbox (stockd restored from an empty data
// dir) is refused, exit 3; so are records trimmed before this database copied them.
// A stockd whose store failed (its disk full) answers the outbox STORAGE_UNAVAILABLE until it
// recovers by itself. The sidecar must wait that out like an outage, then copy every order:
// it used to exit 2 as if misconfigured, which its systemd unit does not restart.
TEST_F(OutboxSql, SidecarWaitsOutAStoreThatFailed) {
  SmallDisk disk(16);
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  StockdProcess server({}, (disk.dir() / "data").string());
  ASSERT_TRUE(server.start());
  {
    Client admin = server.admin();
    ASSERT_TRUE(admin.sku_set({"disk", proto::kSetTotal, 1'000'000'000, 0, 0, 0}).ok());
  }
  const std::string lite = sqlite_url(dir_, "orders.db");
  SidecarProcess sidecar(server, lite);
  sidecar.start();
  Client buyer = server.buyer();
  std::set<std::string> acked;  // order ids answered OK
  auto buy = [&](const std::string& key) {
    auto r = buyer.reserve({"u", key, 0, {{"disk", 1}}});
    if (r.ok()) acked.insert(std::to_string(r.body.hold_id));
    return r;
  };
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(buy("before-" + std::to_string(i)).ok());
  disk.fill_leaving(150 * 1024);
  bool failed = false;
  for (int i = 0; i < 20000 && !failed; ++i) {
    auto r = buy("during-" + std::to_string(i));
    failed = r.transport_ok() && r.status == proto::Status::kStorageUnavailable;
  }
  ASSERT_TRUE(failed) << "the disk never filled up";
  std::this_thread::sleep_for(3s);  // the sidecar meets the failed store, and reconnects
  EXPECT_TRUE(sidecar.running()) << "the sidecar exited while stockd's store was failed:\n"
                                 << sidecar.log();
  disk.free_filler();
  bool resumed = false;
  for (int i = 0; i < 100 && !resumed; ++i) {
    resumed = buy("after-" + std::to_string(i)).ok();
    if (!resumed) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(resumed) << "stockd did not resume after space was freed";
  size_t missing = acked.size();
  for (int i = 0; i < 150 && missing > 0; ++i) {
    std::this_thread::sleep_for(100ms);
    std::set<std::string> in_sql;
    for (const std::string& row : dump_sqlite(lite.substr(7)).orders) {
      in_sql.insert(row.substr(0, row.find('|')));
    }
    missing = 0;
    for (const std::string& id : acked) missing += in_sql.count(id) == 0 ? 1 : 0;
  }
  EXPECT_EQ(missing, 0u) << "acknowledged orders not in SQLite 15 s after the store recovered:\n"
                         << sidecar.log();
  EXPECT_TRUE(sidecar.running());
}

TEST_F(OutboxSql, RefusesAnOutboxBehindTheCursor) {
  const std::string lite = sqlite_url(dir_, "orders.db");
  {
    auto server = start_stockd();
    ASSERT_NO_FATAL_FAILURE(seed(*server));
    Load load(*server, 2, 50);
    load.finish();
    ASSERT_EQ(SidecarProcess(*server, lite).once().code, 0);
  }
  ASSERT_GT(dump_sqlite(lite.substr(7)).cursor, 0u);
  auto fresh = start_stockd();
  SidecarRun r = SidecarProcess(*fresh, lite).once();
  EXPECT_EQ(r.code, 3) << r.log;
  EXPECT_NE(r.log.find("is behind this database's cursor"), std::string::npos) << r.log;
}

// A stockd on an empty data dir that has sold past this database's cursor by the time the
// sidecar meets it passes the head check; copied from the cursor on, its first records would
// never reach SQL. Its record at the cursor is not the one the database holds, so the sidecar
// refuses (exit 3) and writes nothing. The stockd it copied from, met again, passes.
TEST_F(OutboxSql, RefusesAStockdWhoseRecordAtTheCursorIsAnother) {
  const std::string lite = sqlite_url(dir_, "orders.db");
  {
    auto server = start_stockd();
    ASSERT_NO_FATAL_FAILURE(seed(*server));
    Load(*server, 2, 50).finish();
    ASSERT_EQ(SidecarProcess(*server, lite).once().code, 0);
    Load(*server, 1, 10).finish();
    SidecarRun again = SidecarProcess(*server, lite).once();
    ASSERT_EQ(again.code, 0) << again.log;
  }
  const uint64_t cursor = dump_sqlite(lite.substr(7)).cursor;
  ASSERT_GT(cursor, 0u);
  auto fresh = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*fresh));
  Client outbox(fresh->options(proto::Role::kOutbox));
  for (int round = 0; round < 20; ++round) {
    auto st = outbox.outbox_status();
    ASSERT_TRUE(st.ok());
    if (st.body.head_seq > cursor) break;
    Load(*fresh, 2, 50).finish();
  }
  SidecarRun r = SidecarProcess(*fresh, lite).once();
  EXPECT_EQ(r.code, 3) << r.log;
  EXPECT_NE(r.log.find("record " + std::to_string(cursor) + " is not the one this database holds"),
            std::string::npos)
      << r.log;
  EXPECT_EQ(dump_sqlite(lite.substr(7)).cursor, cursor) << "records of the other stockd copied";
}

// (e) Records stockd trimmed before this database copied them: refused (exit 3) unless the
// operator passes --accept-gap.
TEST_F(OutboxSql, RefusesTrimmedRecordsUnlessAccepted) {
  // stockd keeps acknowledged records 2 s: what the first database acked is trimmed soon after,
  // and what the second one acks below is still there when the first one reads it right after.
  auto trimming = start_stockd({"--outbox-retention-ms", "2000"});
  ASSERT_NO_FATAL_FAILURE(seed(*trimming));
  Load load(*trimming, 2, 50);
  load.finish();
  ASSERT_EQ(SidecarProcess(*trimming, sqlite_url(dir_, "first.db")).once().code, 0);
  Client outbox(trimming->options(proto::Role::kOutbox));
  const uint64_t head = outbox.outbox_status().body.head_seq;
  ASSERT_GT(head, 0u);
  for (int i = 0; i < 300 && outbox.outbox_status().body.first_seq != 0; ++i) {
    std::this_thread::sleep_for(50ms);  // past retention, a checkpoint trims within a second
  }
  ASSERT_EQ(outbox.outbox_status().body.first_seq, 0u) << "stockd did not trim everything";

  // Everything trimmed: refused; accepted, the cursor jumps to the head.
  const std::string all_gone = sqlite_url(dir_, "all-gone.db");
  SidecarRun r = SidecarProcess(*trimming, all_gone).once();
  EXPECT_EQ(r.code, 3) << r.log;
  EXPECT_NE(r.log.find("no longer has outbox records 1.." + std::to_string(head)),
            std::string::npos)
      << r.log;
  r = SidecarProcess(*trimming, all_gone).once({"--accept-gap"});
  EXPECT_EQ(r.code, 0) << r.log;
  EXPECT_EQ(dump_sqlite(all_gone.substr(7)).cursor, head);

  // New orders after the trimmed ones: refused; accepted, exactly the new orders are copied.
  Client buyer = trimming->buyer();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(buyer.reserve({"late", "late-" + std::to_string(i), 0, {{plain_sku(0), 1}}}).ok());
  }
  const std::string partly = sqlite_url(dir_, "partly.db");
  r = SidecarProcess(*trimming, partly).once();
  EXPECT_EQ(r.code, 3) << r.log;
  r = SidecarProcess(*trimming, partly).once({"--accept-gap"});
  EXPECT_EQ(r.code, 0) << r.log;
  DbDump d = dump_sqlite(partly.substr(7));
  EXPECT_EQ(d.cursor, head + 5);
  EXPECT_EQ(d.orders.size(), 5u);
  // The database that copied everything goes on normally.
  ASSERT_EQ(SidecarProcess(*trimming, sqlite_url(dir_, "first.db")).once().code, 0);
  EXPECT_EQ(dump_sqlite((dir_ / "first.db").string()).cursor, head + 5);
}

// The protocol's strings are bytes. Users, keys, SKUs and codes that differ only in bytes that
// are not text (invalid UTF-8, NUL) reach SQL as distinct rows with their exact bytes, and SQL's
// units per SKU are stockd's `sold`, in both databases. (Before: "\xff" and the text "\xff" were
// the same text, so a line of each order and a code were dropped as primary-key conflicts.)
TEST_F(OutboxSql, OddBytesReachSqlExactly) {
  using namespace std::string_literals;
  auto server = start_stockd();
  Client admin = server->admin();
  const std::vector<std::string> skus = {"S\xff", "S\\xFF", "P\xfe"};  // P: a code pool
  for (const std::string& sku : skus) {
    proto::SkuSetReq req;
    req.sku = sku;
    req.mask = proto::kSetTotal;
    req.total = sku == skus[2] ? 0 : 1000;
    ASSERT_TRUE(admin.sku_set(req).ok());
  }
  proto::CodesLoadReq codes;
  codes.sku = skus[2];
  codes.codes = {"C\xff", "C\\xFF", "C\0x"s, "C\\x00x"};
  auto loaded = admin.codes_load(codes);
  ASSERT_TRUE(loaded.ok()) << proto::status_name(loaded.status) << " " << loaded.error;

  const std::vector<std::string> users = {"\xff", "\\xff", "a\0b"s, "a\\x00b"};
  Promised p;
  Client buyer = server->buyer();
  uint64_t units = 0;
  for (uint32_t i = 0; i < users.size(); ++i) {
    proto::ReserveReq req{users[i], "k" + users[i], 0, {{skus[0], 1 + i}, {skus[1], 10 + i}}};
    auto r = buyer.reserve(req);
    ASSERT_TRUE(r.ok()) << proto::status_name(r.status) << " " << r.error;
    p.add_order(r.body.hold_id, req.user, req.key, req.lines, r.body.codes);
    auto c = buyer.claim({skus[2], users[i], "c" + users[i]});
    ASSERT_TRUE(c.ok()) << proto::status_name(c.status) << " " << c.error;
    p.add_order(c.body.order_id, users[i], "c" + users[i], {{skus[2], 1}},
                {{skus[2], c.body.code}});
    units += 1 + i + 10 + i + 1;
  }

  std::vector<std::string> urls = {sqlite_url(dir_, "orders.db")};
  std::string pg_skip;
  if (PgCluster* pg = pg_cluster(pg_skip)) urls.push_back(pg->create_db("odd_bytes"));
  for (const std::string& url : urls) {
    SidecarRun r = SidecarProcess(*server, url).once();
    ASSERT_EQ(r.code, 0) << r.log;
    DbDump d = dump_any(url);
    expect_exact(d, *server, p, skus);
    EXPECT_EQ(d.orders.size(), 8u);
    EXPECT_EQ(d.lines.size(), 12u);
    EXPECT_EQ(d.codes.size(), 4u);
    EXPECT_EQ(query_one(url, "SELECT count(DISTINCT user_id_bytes) FROM orders"), "4") << url;
    EXPECT_EQ(query_one(url, "SELECT count(*) FROM orders WHERE user_id IS NULL"), "4") << url;
    EXPECT_EQ(query_one(url, "SELECT sum(qty) FROM order_lines"), std::to_string(units)) << url;
    EXPECT_EQ(query_one(url, "SELECT count(DISTINCT code_bytes) FROM order_codes"), "4") << url;
    EXPECT_EQ(d, dump_any(urls[0])) << "SQLite and PostgreSQL hold different rows";
  }
  if (urls.size() == 1) GTEST_SKIP() << pg_skip;
}

// Columns added to the tables (with a default) are left to their defaults. A column the
// sidecar writes that is dropped stops it with exit 4 and a message naming the table and the
// column, within seconds, while it runs and with --once. (Before: PostgreSQL's COPY had no
// column list, so an added column failed every batch; a dropped column made both sinks retry
// forever, --once included.)
void schema_changes(const std::string& url) {
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  Load load(*server, 2, 60);
  load.finish();
  SidecarProcess sidecar(*server, url);
  SidecarRun r = sidecar.once();
  ASSERT_EQ(r.code, 0) << r.log;

  ASSERT_EQ(exec_sql(url, "ALTER TABLE orders ADD COLUMN shipped boolean DEFAULT false"), "");
  ASSERT_EQ(exec_sql(url, "ALTER TABLE order_lines ADD COLUMN note text"), "");
  ASSERT_NO_FATAL_FAILURE(buy_now(*server, load.promised, 20, "after-add"));
  auto start = std::chrono::steady_clock::now();
  r = sidecar.once();
  ASSERT_EQ(r.code, 0) << r.log;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s) << r.log;
  DbDump d = dump_any(url);
  expect_exact(d, *server, load.promised);
  EXPECT_EQ(query_one(url, "SELECT count(*) FROM orders WHERE shipped = false"),
            std::to_string(d.orders.size()));

  // Dropped while the sidecar runs: it stops at the next batch.
  sidecar.start();
  ASSERT_NO_FATAL_FAILURE(buy_now(*server, load.promised, 5, "before-drop"));
  const std::string before = std::to_string(load.promised.orders.size());
  for (int i = 0; i < 500 && query_one(url, "SELECT count(*) FROM orders") != before; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(query_one(url, "SELECT count(*) FROM orders"), before) << sidecar.log();
  ASSERT_EQ(exec_sql(url, "ALTER TABLE orders DROP COLUMN idem_key"), "");
  ASSERT_NO_FATAL_FAILURE(buy_now(*server, load.promised, 5, "after-drop"));
  start = std::chrono::steady_clock::now();
  EXPECT_EQ(sidecar.wait(30s), 4) << sidecar.log();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  std::string log = sidecar.log();
  EXPECT_NE(log.find("SQL refuses records"), std::string::npos) << log;
  EXPECT_NE(log.find("idem_key"), std::string::npos) << log;
  EXPECT_NE(log.find("orders"), std::string::npos) << log;
  EXPECT_EQ(log.find("retrying"), std::string::npos) << log;
  EXPECT_EQ(query_one(url, "SELECT count(*) FROM orders"), before);

  // --once on the database as it is: exit 4 at start, naming the table and the column.
  start = std::chrono::steady_clock::now();
  r = sidecar.once();
  EXPECT_EQ(r.code, 4) << r.log;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << r.log;
  EXPECT_NE(r.log.find("table orders has no column idem_key"), std::string::npos) << r.log;
}

TEST_F(OutboxSql, SchemaChangesInSqlite) { schema_changes(sqlite_url(dir_, "orders.db")); }

TEST_F(OutboxSql, SchemaChangesInPostgres) {
  REQUIRE_PG(pg);
  schema_changes(pg->create_db("schema_changes"));
}

// The schema of older sidecars (text columns only), and the upgrade docs/outbox.md gives
// ("Upgrading a text-only database"); keep the two in step.
const char* const kTextOnlySchema =
    "CREATE TABLE orders (order_id BIGINT PRIMARY KEY, seq BIGINT NOT NULL UNIQUE,"
    " user_id TEXT NOT NULL, idem_key TEXT, created_at_ms BIGINT, committed_at_ms BIGINT);"
    "CREATE TABLE order_lines (order_id BIGINT, sku TEXT, qty BIGINT,"
    " PRIMARY KEY (order_id, sku));"
    "CREATE TABLE order_codes (code TEXT, sku TEXT, order_id BIGINT, PRIMARY KEY (sku, code));"
    "CREATE TABLE hold_events (seq BIGINT PRIMARY KEY, kind TEXT, hold_id BIGINT,"
    " user_id TEXT, at_ms BIGINT, lines TEXT);"
    "CREATE TABLE stockd_outbox_cursor (id INT PRIMARY KEY CHECK (id = 1),"
    " seq BIGINT NOT NULL, updated_at_ms BIGINT);"
    "INSERT INTO stockd_outbox_cursor VALUES (1, 0, 0);"
    "INSERT INTO order_lines VALUES (999999, 'caf\xc3\xa9', 1)";

const char* const kTextOnlyUpgradeSqlite =
    "BEGIN;"
    "ALTER TABLE orders ADD COLUMN user_id_bytes BLOB;"
    "ALTER TABLE orders ADD COLUMN idem_key_bytes BLOB;"
    "UPDATE orders SET user_id_bytes = CAST(user_id AS BLOB),"
    " idem_key_bytes = CAST(idem_key AS BLOB);"
    "ALTER TABLE hold_events ADD COLUMN user_id_bytes BLOB;"
    "UPDATE hold_events SET user_id_bytes = CAST(user_id AS BLOB);"
    "ALTER TABLE order_lines RENAME TO order_lines_v1;"
    "CREATE TABLE order_lines (order_id BIGINT NOT NULL, sku TEXT, sku_bytes BLOB NOT NULL,"
    " qty BIGINT NOT NULL, PRIMARY KEY (order_id, sku_bytes));"
    "INSERT INTO order_lines SELECT order_id, sku, CAST(sku AS BLOB), qty FROM order_lines_v1;"
    "DROP TABLE order_lines_v1;"
    "ALTER TABLE order_codes RENAME TO order_codes_v1;"
    "CREATE TABLE order_codes (code TEXT, code_bytes BLOB NOT NULL, sku TEXT,"
    " sku_bytes BLOB NOT NULL, order_id BIGINT NOT NULL, PRIMARY KEY (sku_bytes, code_bytes));"
    "INSERT INTO order_codes SELECT code, CAST(code AS BLOB), sku, CAST(sku AS BLOB), order_id"
    " FROM order_codes_v1;"
    "DROP TABLE order_codes_v1;"
    "COMMIT";

const char* const kTextOnlyUpgradePostgres =
    "BEGIN;"
    "ALTER TABLE orders ADD COLUMN user_id_bytes BYTEA, ADD COLUMN idem_key_bytes BYTEA,"
    " ALTER COLUMN user_id DROP NOT NULL;"
    "UPDATE orders SET user_id_bytes = convert_to(user_id, 'UTF8'),"
    " idem_key_bytes = convert_to(idem_key, 'UTF8');"
    "ALTER TABLE orders ALTER COLUMN user_id_bytes SET NOT NULL;"
    "ALTER TABLE hold_events ADD COLUMN user_id_bytes BYTEA;"
    "UPDATE hold_events SET user_id_bytes = convert_to(user_id, 'UTF8');"
    "ALTER TABLE hold_events ALTER COLUMN user_id_bytes SET NOT NULL;"
    "ALTER TABLE order_lines ADD COLUMN sku_bytes BYTEA;"
    "UPDATE order_lines SET sku_bytes = convert_to(sku, 'UTF8');"
    "ALTER TABLE order_lines ALTER COLUMN sku_bytes SET NOT NULL,"
    " DROP CONSTRAINT order_lines_pkey, ADD PRIMARY KEY (order_id, sku_bytes);"
    "ALTER TABLE order_codes ADD COLUMN code_bytes BYTEA, ADD COLUMN sku_bytes BYTEA;"
    "UPDATE order_codes SET code_bytes = convert_to(code, 'UTF8'),"
    " sku_bytes = convert_to(sku, 'UTF8');"
    "ALTER TABLE order_codes ALTER COLUMN code_bytes SET NOT NULL,"
    " ALTER COLUMN sku_bytes SET NOT NULL, DROP CONSTRAINT order_codes_pkey,"
    " ADD PRIMARY KEY (sku_bytes, code_bytes);"
    "COMMIT";

// A database of an older sidecar (text only) is refused (exit 4, saying what to do), not written in
// a form it cannot hold; after the documented upgrade the sidecar copies into it exactly.
TEST_F(OutboxSql, RefusesATextOnlyDatabaseUntilUpgraded) {
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  Load load(*server, 2, 60);
  load.finish();
  std::vector<std::string> urls = {sqlite_url(dir_, "orders.db")};
  std::string pg_skip;
  if (PgCluster* pg = pg_cluster(pg_skip)) urls.push_back(pg->create_db("v1"));
  for (const std::string& url : urls) {
    ASSERT_EQ(exec_sql(url, kTextOnlySchema), "") << url;
    SidecarRun r = SidecarProcess(*server, url).once();
    EXPECT_EQ(r.code, 4) << r.log;
    EXPECT_NE(r.log.find("created by an older stockd-outbox"), std::string::npos) << r.log;
    EXPECT_NE(r.log.find("Upgrading a text-only database"), std::string::npos) << r.log;
    EXPECT_EQ(query_one(url, "SELECT count(*) FROM orders"), "0");

    ASSERT_EQ(exec_sql(url, is_pg(url) ? kTextOnlyUpgradePostgres : kTextOnlyUpgradeSqlite), "")
        << url;
    EXPECT_EQ(query_one(url, is_pg(url) ? "SELECT encode(sku_bytes, 'hex') FROM order_lines"
                                        : "SELECT lower(hex(sku_bytes)) FROM order_lines"),
              "636166c3a9");
    ASSERT_EQ(exec_sql(url, "DELETE FROM order_lines"), "");
    r = SidecarProcess(*server, url).once();
    ASSERT_EQ(r.code, 0) << r.log;
    expect_exact(dump_any(url), *server, load.promised);
  }
  if (urls.size() == 1) GTEST_SKIP() << pg_skip;
}

// (f) Configuration the sidecar cannot work with: exit 2 and one clear line.
TEST_F(OutboxSql, BadConfigurationExitsTwo) {
  auto server = start_stockd();
  const fs::path file = dir_ / "a-file";
  std::ofstream(file) << "x";
  SidecarRun r = SidecarProcess(*server, "sqlite:" + (file / "orders.db").string()).once();
  EXPECT_EQ(r.code, 2) << r.log;
  EXPECT_NE(r.log.find("cannot create directory"), std::string::npos) << r.log;

  r = SidecarProcess(*server, "mysql://localhost/x").once();
  EXPECT_EQ(r.code, 2) << r.log;
  EXPECT_NE(r.log.find("expected sqlite:PATH"), std::string::npos) << r.log;

  SidecarProcess wrong_token(*server, sqlite_url(dir_, "t.db"));
  wrong_token.set_token("nope");
  r = wrong_token.once();
  EXPECT_EQ(r.code, 2) << r.log;
  EXPECT_NE(r.log.find("refuses the outbox reader"), std::string::npos) << r.log;

  REQUIRE_PG(pg);
  r = SidecarProcess(*server, pg->password_url("wrong-password")).once();
  EXPECT_EQ(r.code, 2) << r.log;
  EXPECT_NE(r.log.find("password authentication failed"), std::string::npos) << r.log;
  r = SidecarProcess(*server, pg->password_url(PgCluster::kPassword)).once();
  EXPECT_EQ(r.code, 0) << r.log;
}

// A --status-file that names the SQLite database (or its -wal, -shm or -journal file) is
// refused before anything is written: the status, written to a temporary file renamed over the
// path, replaced orders.db with a few lines of JSON, and every order copied was gone.
TEST_F(OutboxSql, AStatusFileThatIsTheDatabaseIsRefused) {
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  Load load(*server, 1, 10);
  load.finish();
  const std::string db = (dir_ / "o.db").string();
  ASSERT_EQ(SidecarProcess(*server, "sqlite:" + db).once().code, 0);
  const DbDump before = dump_sqlite(db);
  ASSERT_FALSE(before.orders.empty());
  fs::create_symlink(db, dir_ / "link.db");
  for (const std::string& status :
       {db, db + "-journal", (dir_ / "." / "o.db").string(), (dir_ / "link.db").string()}) {
    SidecarRun r = SidecarProcess(*server, "sqlite:" + db, {"--status-file", status}).once();
    EXPECT_EQ(r.code, 2) << status << ": " << r.log;
    EXPECT_NE(r.log.find("--status-file"), std::string::npos) << r.log;
    EXPECT_EQ(dump_sqlite(db).orders, before.orders) << status;
  }
}

// --reset-cursor replays: set back, the rows already there are skipped. Set forward (a typo:
// 50000 for 5000) it skipped every record in between, never copied, with exit 0 and one warning:
// now that needs --accept-gap, as every other skip does. A value past the largest seq SQL can
// store is refused.
TEST_F(OutboxSql, AResetCursorThatSkipsRecordsNeedsAcceptGap) {
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  Load load(*server, 1, 10);
  load.finish();
  const std::string lite = sqlite_url(dir_, "skip.db");
  SidecarRun r = SidecarProcess(*server, lite).once({"--reset-cursor", "5"});
  EXPECT_EQ(r.code, 2) << r.log;
  EXPECT_NE(r.log.find("--accept-gap"), std::string::npos) << r.log;
  EXPECT_EQ(dump_sqlite(lite.substr(7)).cursor, 0u);
  r = SidecarProcess(*server, lite).once({"--reset-cursor", "18446744073709551615"});
  EXPECT_EQ(r.code, 2) << r.log;
  EXPECT_EQ(dump_sqlite(lite.substr(7)).cursor, 0u);

  ASSERT_EQ(SidecarProcess(*server, lite).once().code, 0);
  const DbDump all = dump_sqlite(lite.substr(7));
  expect_exact(all, *server, load.promised);
  ASSERT_EQ(SidecarProcess(*server, lite).once({"--reset-cursor", "3"}).code, 0);  // back: a replay
  EXPECT_EQ(dump_sqlite(lite.substr(7)).cursor, 3u);
  ASSERT_EQ(SidecarProcess(*server, lite).once({"--reset-cursor", "5", "--accept-gap"}).code, 0);
  EXPECT_EQ(dump_sqlite(lite.substr(7)).cursor, 5u);
  ASSERT_EQ(SidecarProcess(*server, lite).once().code, 0);
  EXPECT_EQ(dump_sqlite(lite.substr(7)), all);
}

// A failover pair in the URL whose first host never answers and whose second refuses the
// password: libpq's message holds both attempts ("timeout expired", then "password
// authentication failed"), and the first attempt's words made the wrong password pass for an
// outage, retried forever. Only the last attempt's words count: exit 2.
TEST_F(OutboxSql, AWrongPasswordBehindADeadHostExitsTwo) {
  REQUIRE_PG(pg);
  auto server = start_stockd();
  const int silent = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // listens, never accepts
  ASSERT_GE(silent, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(silent, reinterpret_cast<sockaddr*>(&addr), len), 0);
  ASSERT_EQ(::listen(silent, 16), 0);
  ASSERT_EQ(::getsockname(silent, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string url = std::string("postgresql://") + PgCluster::kPasswordUser +
                          ":wrong-password@127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) +
                          ",127.0.0.1:" + std::to_string(pg->port()) +
                          "/pwdb?connect_timeout=2&sslmode=disable";
  SidecarProcess sidecar(*server, url);
  sidecar.start();
  EXPECT_EQ(sidecar.wait(20s), 2) << sidecar.log();
  const std::string log = sidecar.log();
  EXPECT_NE(log.find("timeout expired"), std::string::npos) << log;
  EXPECT_NE(log.find("password authentication failed"), std::string::npos) << log;
  ::close(silent);
}

// Whether the database at `url` reaches stockd's outbox head (as it is now) within 15 s.
bool caught_up(const std::string& url, const StockdProcess& server) {
  Client outbox(server.options(proto::Role::kOutbox));
  auto st = outbox.outbox_status();
  if (!st.ok()) return false;
  const std::string head = std::to_string(st.body.head_seq);
  for (int i = 0; i < 150; ++i) {
    if (query_one(url, "SELECT seq FROM stockd_outbox_cursor") == head) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

// A PostgreSQL that refuses the sidecar's connections after it accepted the password is an
// outage to wait out, like a server that is down: "too many connections for role", or a
// database an operator closed to connections (ALTER DATABASE ... ALLOW_CONNECTIONS false, as in
// a maintenance or a failover). The sidecar took every failure after a password for wrong
// credentials and exited 2, which its systemd unit does not restart. `block` and `unblock` run
// in the database postgres; `refusal` is what the server then says.
void expect_refusals_waited_out(PgCluster& pg, const std::string& block, const std::string& unblock,
                                const std::string& refusal) {
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  Load load(*server, 1, 30);
  load.finish();
  const std::string role = PgCluster::kPasswordUser;
  ASSERT_EQ(pg.exec("postgres", "CREATE DATABASE capped OWNER " + role), "");
  ASSERT_EQ(pg.exec("postgres", block), "");
  SidecarProcess sidecar(*server, pg.password_url(PgCluster::kPassword, "capped"));
  sidecar.start();
  std::string log;
  for (int i = 0; i < 100 && log.find(refusal) == std::string::npos; ++i) {
    std::this_thread::sleep_for(100ms);
    log = sidecar.log();
  }
  EXPECT_NE(log.find(refusal), std::string::npos) << log;
  EXPECT_NE(log.find("waiting for SQL"), std::string::npos) << log;
  EXPECT_TRUE(sidecar.running()) << "the sidecar gave up on a refusing PostgreSQL:\n" << log;
  ASSERT_EQ(pg.exec("postgres", unblock), "");
  EXPECT_TRUE(caught_up(pg.url("capped"), *server)) << sidecar.log();
  EXPECT_EQ(sidecar.term(), 0);
  expect_exact(dump_pg(pg.url("capped")), *server, load.promised);
}

TEST_F(OutboxSql, APostgresWithNoConnectionLeftIsWaitedOut) {
  REQUIRE_PG(pg);
  const std::string role = PgCluster::kPasswordUser;
  expect_refusals_waited_out(*pg, "ALTER ROLE " + role + " CONNECTION LIMIT 0",
                             "ALTER ROLE " + role + " CONNECTION LIMIT -1", "too many connections");
}

TEST_F(OutboxSql, ADatabaseClosedToConnectionsIsWaitedOut) {
  REQUIRE_PG(pg);
  expect_refusals_waited_out(*pg, "ALTER DATABASE capped ALLOW_CONNECTIONS false",
                             "ALTER DATABASE capped ALLOW_CONNECTIONS true",
                             "not currently accepting connections");
}

// A lock the sidecar waits on (a LOCK TABLE or ALTER TABLE left open in an operator's psql
// session) does not freeze it: with --sql-timeout-ms each wait ends, the batch is retried and
// the log says why; once the lock goes, every order is copied. (Without a timeout the sidecar
// waited as long as the lock was held, silent, and a SIGTERM waited with it.)
TEST_F(OutboxSql, ALockOnTheCursorIsWaitedOutInBoundedSteps) {
  REQUIRE_PG(pg);
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  const std::string url = pg->create_db("locked");
  ASSERT_EQ(SidecarProcess(*server, url).once().code, 0);  // the schema, to lock a table of it
  Load load(*server, 1, 40);
  load.finish();
  PGconn* holder = PQconnectdb(url.c_str());
  ASSERT_EQ(PQstatus(holder), CONNECTION_OK);
  PQclear(PQexec(holder, "BEGIN"));
  PGresult* locked = PQexec(holder, "LOCK TABLE stockd_outbox_cursor IN ACCESS EXCLUSIVE MODE");
  ASSERT_EQ(PQresultStatus(locked), PGRES_COMMAND_OK) << PQresultErrorMessage(locked);
  PQclear(locked);
  SidecarProcess sidecar(*server, url, {"--sql-timeout-ms", "300"});
  sidecar.start();
  std::string log;
  // (statement_timeout and lock_timeout are the same: PostgreSQL names the statement's.)
  const std::string timed_out = "canceling statement due to statement timeout";
  for (int i = 0; i < 100 && log.find(timed_out) == std::string::npos; ++i) {
    std::this_thread::sleep_for(100ms);
    log = sidecar.log();
  }
  EXPECT_NE(log.find(timed_out), std::string::npos) << log;
  EXPECT_TRUE(sidecar.running()) << log;
  PQclear(PQexec(holder, "COMMIT"));
  PQfinish(holder);
  EXPECT_TRUE(caught_up(url, *server)) << sidecar.log();
  EXPECT_EQ(sidecar.term(), 0);
  expect_exact(dump_pg(url), *server, load.promised);
}

// stockd is restarted on an empty data dir while the sidecar waits for SQL (another writer
// holds the database). The sidecar's calls reconnected by themselves, past the history check
// of its connects: it acked its batch to the new stockd and went on copying the new stockd's
// records after the cursor, whose first ones never reached SQL. Every new connection is checked
// now: exit 3, and nothing of the other stockd is written or acked.
TEST_F(OutboxSql, AStockdReplacedWhileSqlWaitsIsCheckedBeforeAnyAck) {
  const std::string lite = sqlite_url(dir_, "orders.db");
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  Load(*server, 2, 50).finish();
  SidecarProcess sidecar(*server, lite);
  sidecar.start();
  ASSERT_TRUE(caught_up(lite, *server)) << sidecar.log();
  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open(lite.substr(7).c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  Load(*server, 1, 10).finish();
  const uint64_t first_head =
      Client(server->options(proto::Role::kOutbox)).outbox_status().body.head_seq;
  std::string log;
  for (int i = 0; i < 150 && log.find("SQL write of records") == std::string::npos; ++i) {
    std::this_thread::sleep_for(100ms);
    log = sidecar.log();
  }
  ASSERT_NE(log.find("SQL write of records"), std::string::npos) << log;

  ASSERT_EQ(server->stop(), 0);
  fs::remove_all(server->data_dir());
  ASSERT_TRUE(server->start()) << "stockd did not start again on its port";
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  Client outbox(server->options(proto::Role::kOutbox));
  for (int round = 0; round < 20 && outbox.outbox_status().body.head_seq <= first_head; ++round) {
    Load(*server, 2, 50).finish();
  }
  ASSERT_GT(outbox.outbox_status().body.head_seq, first_head);
  EXPECT_EQ(sqlite3_exec(holder, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(holder);

  EXPECT_EQ(sidecar.wait(20s), 3) << sidecar.log();
  EXPECT_NE(sidecar.log().find("is not the one this database holds"), std::string::npos)
      << sidecar.log();
  EXPECT_LE(dump_sqlite(lite.substr(7)).cursor, first_head) << "records of the other stockd copied";
  EXPECT_EQ(outbox.outbox_status().body.acked_seq, 0u) << "acked to the other stockd";
}

// An operator deletes the SQLite file (or puts another at its path) while the sidecar runs. It
// went on writing into the deleted file, acking every record to stockd: rows no database at
// that path had, /healthz all green. It stops now (exit 4), nothing more acked; restarted, it
// copies into the new file from that file's cursor.
TEST_F(OutboxSql, ASqliteFileDeletedUnderTheSidecarStopsIt) {
  const std::string lite = sqlite_url(dir_, "orders.db");
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  Load(*server, 1, 20).finish();
  SidecarProcess sidecar(*server, lite);
  sidecar.start();
  ASSERT_TRUE(caught_up(lite, *server)) << sidecar.log();
  Client outbox(server->options(proto::Role::kOutbox));
  const uint64_t acked = outbox.outbox_status().body.acked_seq;
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(lite.substr(7) + suffix);
  Load(*server, 1, 10).finish();
  EXPECT_EQ(sidecar.wait(20s), 4) << sidecar.log();
  EXPECT_NE(sidecar.log().find("was deleted or replaced while stockd-outbox had it open"),
            std::string::npos)
      << sidecar.log();
  EXPECT_EQ(outbox.outbox_status().body.acked_seq, acked) << "records acked past the old file";
  SidecarRun again = SidecarProcess(*server, lite).once();
  EXPECT_EQ(again.code, 0) << again.log;
  EXPECT_EQ(dump_sqlite(lite.substr(7)).cursor, outbox.outbox_status().body.head_seq);
}

// A table the copied records are in is dropped (or renamed) while the sidecar is down. At its
// start the sidecar made it anew, empty, and went on from its cursor, with a warning at most:
// the records before were gone from SQL for good. It refuses now, exit 4, creating nothing.
TEST_F(OutboxSql, ATableDroppedAfterRecordsWereCopiedIsNotMadeAnew) {
  const std::string lite = sqlite_url(dir_, "orders.db");
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  Load(*server, 1, 20).finish();
  ASSERT_EQ(SidecarProcess(*server, lite).once().code, 0);
  const uint64_t cursor = dump_sqlite(lite.substr(7)).cursor;
  ASSERT_GT(cursor, 0u);
  ASSERT_EQ(exec_sql(lite, "DROP TABLE order_lines"), "");
  Load(*server, 1, 5).finish();
  SidecarRun r = SidecarProcess(*server, lite).once();
  EXPECT_EQ(r.code, 4) << r.log;
  EXPECT_NE(r.log.find("table order_lines does not exist, while this database's cursor is at " +
                       std::to_string(cursor)),
            std::string::npos)
      << r.log;
  EXPECT_EQ(query_one(lite, "SELECT count(*) FROM sqlite_master WHERE name = 'order_lines'"), "0")
      << "the dropped table was made anew";
  EXPECT_EQ(query_one(lite, "SELECT seq FROM stockd_outbox_cursor"), std::to_string(cursor));
}

// The cursor row holds 5.5 (an operator's UPDATE): it reads back as 5, and the move from 5
// never matches. The sidecar retried at once, forever: thousands of log lines a second and a
// 5,000-record read each time. It stops now, exit 4.
TEST_F(OutboxSql, ACursorThatDoesNotMoveFromWhatItReadsStopsTheSidecar) {
  const std::string lite = sqlite_url(dir_, "orders.db");
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  Load(*server, 1, 20).finish();
  ASSERT_EQ(SidecarProcess(*server, lite).once().code, 0);
  ASSERT_EQ(exec_sql(lite, "UPDATE stockd_outbox_cursor SET seq = 5.5"), "");
  SidecarRun r = SidecarProcess(*server, lite).once();
  EXPECT_EQ(r.code, 4) << r.log;
  EXPECT_NE(r.log.find("reads 5 but does not move from it"), std::string::npos) << r.log;
}

// A role with the rights on the sidecar's tables but none to create in the schema (a DBA made
// the tables; PostgreSQL 15 gives nobody CREATE on public by default): the sidecar ran CREATE
// TABLE IF NOT EXISTS at every connect, which checks that right first, and exited 2.
TEST_F(OutboxSql, APostgresRoleWithoutCreateCopiesIntoTablesThatExist) {
  REQUIRE_PG(pg);
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  const std::string url = pg->create_db("least");
  ASSERT_EQ(SidecarProcess(*server, url).once().code, 0);  // the schema, made as its owner
  const std::string db = url.substr(url.rfind('/') + 1);
  ASSERT_EQ(pg->exec(db, "CREATE ROLE copier LOGIN"), "");
  ASSERT_EQ(pg->exec(db, "REVOKE CREATE ON SCHEMA public FROM PUBLIC"), "");
  ASSERT_EQ(pg->exec(db,
                     "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public "
                     "TO copier"),
            "");
  Load load(*server, 2, 40);
  load.finish();
  std::string as_copier = url;
  as_copier.replace(as_copier.find("postgres@"), 9, "copier@");
  SidecarRun r = SidecarProcess(*server, as_copier).once();
  EXPECT_EQ(r.code, 0) << r.log;
  expect_exact(dump_pg(url), *server, load.promised);
}

}  // namespace
}  // namespace stockd::test
