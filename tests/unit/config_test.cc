// stockd's configuration check: every limit an operator can get wrong is refused before the
// server starts, with a message naming the flag.
#include "stockd/config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "stockd/secret_file.h"

namespace stockd {
namespace {

TEST(ConfigTest, DefaultsAreUsable) { EXPECT_EQ(validate(Config{}).message(), ""); }

TEST(ConfigTest, EachBadValueIsRefusedByName) {
  struct Case {
    const char* flag;
    std::function<void(Config&)> set;
  };
  const std::vector<Case> cases = {
      {"--fsync-interval-ms", [](Config& c) { c.fsync_interval_ms = 0; }},
      {"--wal-spin-us", [](Config& c) { c.wal_spin_us = 10001; }},
      {"--group-gather-us", [](Config& c) { c.group_gather_us = 10001; }},
      {"--inflight-max", [](Config& c) { c.inflight_max = 0; }},
      {"--frame-bytes-max", [](Config& c) { c.frame_bytes_max = 100; }},
      {"--idle-timeout-ms", [](Config& c) { c.idle_timeout_ms = 5; }},
      {"--idem-retention-ms", [](Config& c) { c.idem_retention_ms = 10; }},
      // 0 read as "unlimited" forgot every finished hold and its key at the next sweep: every
      // retry of a buy-now sold again.
      {"--finished-holds-max", [](Config& c) { c.finished_holds_max = 0; }},
      {"--outbox-retention-ms", [](Config& c) { c.outbox_retention_ms = -1; }},
      {"--holds-expected", [](Config& c) { c.holds_expected = 2'000'000'000; }},
      {"--metrics-sku-max", [](Config& c) { c.metrics_sku_max = 5000; }},
      {"--read-buffer-budget", [](Config& c) { c.read_buffer_budget = c.frame_bytes_max; }},
      {"--frame-bytes-max", [](Config& c) { c.frame_bytes_max = 4096; }},
      {"--hello-timeout-ms", [](Config& c) { c.hello_timeout_ms = 0; }},
      {"--frame-timeout-ms", [](Config& c) { c.frame_timeout_ms = 0; }},
      {"--hello-pending-max", [](Config& c) { c.hello_pending_max = 0; }},
      {"--output-bytes-max", [](Config& c) { c.output_bytes_max = 1000; }},
      {"--output-bytes-max",
       [](Config& c) {
         c.output_bytes_max = (1ull << 30) + 1;  // one write's size must fit 32 bits
         c.output_budget = 8ull << 30;
       }},
      {"--output-budget", [](Config& c) { c.output_budget = c.output_bytes_max - 1; }},
      {"--write-timeout-ms", [](Config& c) { c.write_timeout_ms = 1; }},
      {"--shutdown-timeout-ms", [](Config& c) { c.shutdown_timeout_ms = 700000; }},
      {"--http-connections-max", [](Config& c) { c.http_connections_max = 0; }},
      {"--http-timeout-ms", [](Config& c) { c.http_timeout_ms = 0; }},
      {"--user-holds-max", [](Config& c) { c.user_holds_max = 0; }},
      {"--live-holds-max", [](Config& c) { c.live_holds_max = 0; }},
  };
  for (const Case& k : cases) {
    Config c;
    k.set(c);
    const std::string why = validate(c).message();
    EXPECT_NE(why.find(k.flag), std::string::npos) << k.flag << ": '" << why << "'";
  }
  Config edge;
  edge.wal_spin_us = 10000;
  edge.group_gather_us = 10000;
  edge.holds_expected = 0;
  edge.output_bytes_max = 1ull << 30;
  edge.output_budget = 1ull << 30;
  EXPECT_EQ(validate(edge).message(), "");
}

TEST(ConfigTest, AMessageQuotesTheBoundItEnforces) {
  const auto why = [](const std::function<void(Config&)>& set) {
    Config c;
    set(c);
    return validate(c).message();
  };
  EXPECT_EQ(why([](Config& c) { c.wal_spin_us = 10001; }), "--wal-spin-us must be at most 10000");
  EXPECT_EQ(why([](Config& c) { c.fsync_interval_ms = 10001; }),
            "--fsync-interval-ms must be in 1..10000");
  EXPECT_EQ(why([](Config& c) { c.idle_timeout_ms = 99; }),
            "--idle-timeout-ms must be at least 100");
  // Signed flags below zero are out of range, not huge unsigned numbers that pass.
  EXPECT_EQ(why([](Config& c) { c.fsync_interval_ms = -5; }),
            "--fsync-interval-ms must be in 1..10000");
  EXPECT_EQ(why([](Config& c) { c.idem_retention_ms = -1; }),
            "--idem-retention-ms must be at least 1000");
  EXPECT_EQ(why([](Config& c) { c.finished_holds_max = 999; }),
            "--finished-holds-max must be at least 1000");
  EXPECT_EQ(why([](Config& c) { c.checkpoint_interval_ms = 86'400'001; }),
            "--checkpoint-interval-ms must be in 10..86400000");
  // The largest unsigned value is not "below the minimum".
  EXPECT_EQ(why([](Config& c) { c.live_holds_max = UINT64_MAX; }), "");
  EXPECT_EQ(validate(Config{}).code(), Status::Code::kOk);
  EXPECT_EQ(validate([] {
              Config c;
              c.inflight_max = 0;
              return c;
            }())
                .code(),
            Status::Code::kInvalid);
}

TEST(ConfigTest, TheOutboxTokenIsNeverTheAdminToken) {
  Config c;
  c.admin_token = "same";
  c.outbox_token = "same";
  EXPECT_NE(validate(c).message().find("--outbox-token must differ"), std::string::npos)
      << validate(c).message();
  c.outbox_token = "other";
  EXPECT_EQ(validate(c).message(), "");
  EXPECT_FALSE(Config{}.outbox_accepts_admin_token) << "the admin token is refused by default";
}

namespace fs = std::filesystem;

class SecretFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "stockd-secret-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text, int mode = 0600) {
    fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    fs::permissions(p, static_cast<fs::perms>(mode), fs::perm_options::replace);
    return p.string();
  }
  static int mode_of(const fs::path& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 07777) : -1;
  }
  fs::path dir_;
};

TEST_F(SecretFileTest, ReadsOneLineWithoutItsLineBreak) {
  std::string secret, warning;
  EXPECT_EQ(read_secret_file(write("a", "tok-1\n"), secret, warning).message(), "");
  EXPECT_EQ(secret, "tok-1");
  EXPECT_EQ(warning, "");
  EXPECT_EQ(read_secret_file(write("b", "tok 2\r\n\n"), secret, warning).message(), "");
  EXPECT_EQ(secret, "tok 2") << "inner spaces are kept; trailing line breaks are not";
  EXPECT_EQ(read_secret_file(write("c", std::string(256, 'x')), secret, warning).message(), "");
  EXPECT_EQ(secret.size(), 256u);
}

// What editors and shells add around a token: a byte order mark (Notepad's "UTF-8"), trailing
// spaces or tabs (`echo "$TOKEN " > file`). Left in, the same token typed into a file by hand
// on one side and generated on the other did not match: "wrong token", with nothing to see.
TEST_F(SecretFileTest, ReadsATokenWithoutWhatEditorsAddAroundIt) {
  std::string secret, warning;
  EXPECT_EQ(read_secret_file(write("bom", "\xEF\xBB\xBFtok-1\r\n"), secret, warning).message(), "");
  EXPECT_EQ(secret, "tok-1");
  EXPECT_EQ(read_secret_file(write("spaces", "tok-2 \t\n"), secret, warning).message(), "");
  EXPECT_EQ(secret, "tok-2");
  const std::string bom_only = write("bom-only", "\xEF\xBB\xBF \n");
  EXPECT_EQ(read_secret_file(bom_only, secret, warning).message(), bom_only + " is empty");
}

TEST_F(SecretFileTest, RefusesWhatCannotBeAToken) {
  struct Case {
    std::string path;
    const char* says;
  };
  const std::vector<Case> cases = {
      {(dir_ / "missing").string(), "cannot read"},
      {write("empty", ""), "is empty"},
      {write("newline", "\n"), "is empty"},
      {write("two", "a\nb"), "more than one line"},
      {write("long", std::string(257, 'x')), "more than 256 bytes"},
      {dir_.string(), "cannot read"},  // a directory
  };
  for (const Case& k : cases) {
    std::string secret = "unchanged", warning;
    const std::string err = read_secret_file(k.path, secret, warning).message();
    EXPECT_NE(err.find(k.says), std::string::npos) << k.path << ": '" << err << "'";
    EXPECT_NE(err.find(k.path), std::string::npos) << "the file is named: " << err;
    EXPECT_EQ(secret, "unchanged");
  }
}

TEST_F(SecretFileTest, WarnsWhenOthersCanReadIt) {
  std::string secret, warning;
  EXPECT_EQ(read_secret_file(write("open", "tok\n", 0644), secret, warning).message(), "");
  EXPECT_EQ(secret, "tok");
  EXPECT_NE(warning.find("mode 0644"), std::string::npos) << warning;
  EXPECT_EQ(read_secret_file(write("group", "tok\n", 0640), secret, warning).message(), "");
  EXPECT_NE(warning.find("mode 0640"), std::string::npos) << warning;
  EXPECT_EQ(read_secret_file(write("owner", "tok\n", 0400), secret, warning).message(), "");
  EXPECT_EQ(warning, "");
}

TEST_F(SecretFileTest, DataDirIsTightenedToOwnerOnly) {
  const fs::path data = dir_ / "data";
  std::string note;
  tighten_data_dir(data.string(), note);  // missing: left to the store
  EXPECT_EQ(note, "");
  EXPECT_FALSE(fs::exists(data));

  fs::create_directories(data / "archive");
  fs::permissions(data, static_cast<fs::perms>(0755), fs::perm_options::replace);
  fs::permissions(data / "archive", static_cast<fs::perms>(0750), fs::perm_options::replace);
  write("data/000007.log", "wal", 0644);
  write("data/archive/000001.log", "old wal", 0640);
  write("data/CURRENT", "MANIFEST", 0600);
  tighten_data_dir(data.string(), note);
  EXPECT_NE(note.find("was mode 0755"), std::string::npos) << note;
  EXPECT_EQ(mode_of(data), 0700);
  EXPECT_EQ(mode_of(data / "archive"), 0700);
  EXPECT_EQ(mode_of(data / "000007.log"), 0600);
  EXPECT_EQ(mode_of(data / "archive" / "000001.log"), 0600);
  EXPECT_EQ(mode_of(data / "CURRENT"), 0600);

  tighten_data_dir(data.string(), note);  // already private: nothing to say
  EXPECT_EQ(note, "");
}

}  // namespace
}  // namespace stockd
