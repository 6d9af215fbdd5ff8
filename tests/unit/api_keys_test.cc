// API keys (scheduler/api_keys.h): the file format and its errors, lookup by the key's
// SHA-256, reload on change (a broken file keeps the old keys), per-key token buckets.
#include "scheduler/api_keys.h"

#include "common/config.h"
#include "scheduler/config.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

namespace pice::scheduler {
namespace {

std::string TempFile(const std::string& text) {
  char name[] = "/tmp/pice_keys_XXXXXX";
  const int fd = mkstemp(name);
  EXPECT_GE(fd, 0);
  close(fd);
  std::ofstream(name) << text;
  return name;
}

TEST(ApiKeysTest, ParsesNamesHashesAndLimits) {
  EXPECT_EQ(Sha256Hex("test"), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
  auto k = ParseApiKeys("# comment\n\nalice " + Sha256Hex("a-key") +
                            " concurrent=4 qpm=120 tpm=20000  # trailing\n"
                            "bob\t" + Sha256Hex("b-key") + "\n",
                        "keys.txt");
  ASSERT_TRUE(k.ok()) << k.status();
  ASSERT_EQ(k->size(), 2u);
  const ApiKey& a = k->at(Sha256Hex("a-key"));
  EXPECT_EQ(a.name, "alice");
  EXPECT_EQ(a.limits.concurrent, 4);
  EXPECT_EQ(a.limits.qpm, 120);
  EXPECT_EQ(a.limits.tpm, 20000);
  EXPECT_EQ(k->at(Sha256Hex("b-key")).limits.qpm, 0);
}

TEST(ApiKeysTest, ErrorsNameTheFileAndLine) {
  auto err = [](const std::string& text) {
    auto k = ParseApiKeys(text, "keys.txt");
    return k.ok() ? std::string("ok") : std::string(k.status().message());
  };
  EXPECT_NE(err("alice sk-plain-key\n").find("keys.txt:1: key \"alice\": the second field must be the key's SHA-256"),
            std::string::npos);
  EXPECT_NE(err("\nalice " + Sha256Hex("x") + " rpm=3\n").find("keys.txt:2: key \"alice\": unknown limit \"rpm\""),
            std::string::npos);
  EXPECT_NE(err("alice " + Sha256Hex("x") + " qpm=-1\n").find("qpm: expected a non-negative number"),
            std::string::npos);
  EXPECT_NE(err("a " + Sha256Hex("x") + "\na " + Sha256Hex("y") + "\n").find("already used on line 1"),
            std::string::npos);
  EXPECT_NE(err("alice\n").find("keys.txt:1: expected"), std::string::npos);
}

TEST(ApiKeysTest, SchedulerConfigRefusesABadKeysFile) {
  const std::string path = TempFile("alice sk-in-clear\n");
  auto root = ConfigNode::LoadString("cloud: 127.0.0.1:1\napi_keys_file: " + path + "\n", "scheduler.yaml");
  ASSERT_TRUE(root.ok());
  auto o = ParseSchedulerOptions(*root);
  ASSERT_FALSE(o.ok());
  const std::string msg(o.status().message());
  EXPECT_NE(msg.find("scheduler.yaml: api_keys_file: " + path + ":1: key \"alice\""), std::string::npos) << msg;
  std::ofstream(path) << "alice " << Sha256Hex("sk") << "\n";
  EXPECT_TRUE(ParseSchedulerOptions(*root).ok());
  std::remove(path.c_str());
}

TEST(ApiKeysTest, FindsByKeyAndReloadsWhenTheFileChanges) {
  const std::string path = TempFile("alice " + Sha256Hex("a-key") + "\n");
  auto keys = ApiKeys::Load(path);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ((*keys)->Find("a-key")->name, "alice");
  EXPECT_FALSE((*keys)->Find("b-key").has_value());
  EXPECT_FALSE((*keys)->Find("").has_value());
  // Rotation: alice's key replaced by bob's; seen within the 1 s check interval.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::ofstream(path) << "bob " << Sha256Hex("b-key") << " qpm=5\n";
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ((*keys)->Find("b-key")->name, "bob");
  EXPECT_FALSE((*keys)->Find("a-key").has_value());
  // A broken file is refused; the keys stay.
  std::ofstream(path) << "bob plaintext\n";
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ((*keys)->Find("b-key")->name, "bob");
  std::remove(path.c_str());
  EXPECT_EQ(ApiKeys::Load(path).status().code(), absl::StatusCode::kNotFound);
}

TEST(ApiKeysTest, BucketsLimitQueriesAndTokensPerMinute) {
  KeyBuckets b;
  ApiKey q{"q", "", {0, 2, 0}};
  int ms = 0;
  EXPECT_TRUE(b.Admit(q, &ms));
  EXPECT_TRUE(b.Admit(q, &ms));
  EXPECT_FALSE(b.Admit(q, &ms));  // 2 per minute: the next in ~30 s
  EXPECT_GT(ms, 25000);
  EXPECT_LE(ms, 30000);
  ApiKey t{"t", "", {0, 0, 60}};
  EXPECT_TRUE(b.Admit(t, &ms));
  b.Charge(t, 120);                // 60 per minute, 120 spent: empty for ~61 s
  EXPECT_FALSE(b.Admit(t, &ms));
  EXPECT_GT(ms, 55000);
  ApiKey none{"n", "", {}};
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(b.Admit(none, &ms));
  // Budgets follow the name: another key's bucket is its own.
  ApiKey q2{"q2", "", {0, 2, 0}};
  EXPECT_TRUE(b.Admit(q2, &ms));
}

}  // namespace
}  // namespace pice::scheduler
