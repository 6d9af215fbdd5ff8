// TLS settings (common/tls.h): every bad file or key is a config error naming the key and the
// file; the reloader (common/tls_reload.h) copies a rotated set and keeps the old one when the
// new files do not check out. Certificates from scripts/dev-certs.sh (openssl).
#include "common/tls.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "cloud/cloud_config.h"
#include "common/config.h"
#include "common/tls_reload.h"
#include "edge/edge_config.h"
#include "scheduler/config.h"

namespace pice {
namespace {

namespace fs = std::filesystem;

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

class TlsConfigTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string tmpl = (fs::temp_directory_path() / "pice-tls-test-XXXXXX").string();
    dir_ = new std::string(mkdtemp(tmpl.data()));
    const std::string certs = std::string(PICE_SOURCE_DIR) + "/scripts/dev-certs.sh ";
    ok_ = std::system((certs + *dir_ + "/a >/dev/null").c_str()) == 0;
    fs::create_directories(*dir_ + "/expired");
    for (const char* f : {"ca.pem", "ca-key.pem"}) {
      fs::copy_file(*dir_ + "/a/" + f, *dir_ + "/expired/" + f);
    }
    ok_ = ok_ && std::system((certs + *dir_ + "/expired -1 >/dev/null").c_str()) == 0;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(*dir_, ec);
    delete dir_;
  }
  void SetUp() override { ASSERT_TRUE(ok_) << "scripts/dev-certs.sh failed (is openssl installed?)"; }

  static std::string A(const std::string& f) { return *dir_ + "/a/" + f; }

  // ReadServerTls on `yaml`'s `tls` key.
  static absl::Status Server(const std::string& yaml, ServerTls* out = nullptr) {
    auto root = ConfigNode::LoadString(yaml, "node.yaml");
    if (!root.ok()) return root.status();
    ServerTls tls;
    absl::Status s = ReadServerTls(*root, "tls", &tls);
    if (out) *out = tls;
    return s;
  }

  static std::string* dir_;
  static bool ok_;
};

std::string* TlsConfigTest::dir_ = nullptr;
bool TlsConfigTest::ok_ = false;

TEST_F(TlsConfigTest, GoodFilesAreRead) {
  ServerTls tls;
  ASSERT_TRUE(Server("tls: {cert: " + A("server.pem") + ", key: " + A("server-key.pem") +
                         ", client_ca: " + A("ca.pem") + "}\n",
                     &tls)
                  .ok());
  EXPECT_TRUE(tls.enabled());
  EXPECT_EQ(tls.client_ca, A("ca.pem"));
  ASSERT_TRUE(Server("other: 1\n", &tls).ok());
  EXPECT_FALSE(tls.enabled()) << "no tls key: plaintext";
  EXPECT_TRUE(CheckClientTls(ClientTlsFromDir(*dir_ + "/a"), "--tls-dir").ok());
}

TEST_F(TlsConfigTest, EveryBadFileNamesTheKeyTheFileAndTheProblem) {
  struct Case {
    std::string yaml, want1, want2;
  } cases[] = {
      {"tls: {cert: /nonexistent/s.pem, key: " + A("server-key.pem") + "}", "tls.cert",
       "/nonexistent/s.pem: cannot read"},
      {"tls: {cert: " + A("server.pem") + ", key: " + A("client-key.pem") + "}", "tls.key",
       "does not belong to the certificate"},
      {"tls: {cert: " + A("server-key.pem") + ", key: " + A("server-key.pem") + "}", "tls.cert",
       "no PEM certificate"},
      {"tls: {cert: " + A("server.pem") + ", key: " + A("server.pem") + "}", "tls.key",
       "no PEM private key"},
      {"tls: {cert: " + *dir_ + "/expired/server.pem, key: " + *dir_ +
           "/expired/server-key.pem}",
       "tls.cert", "expired on"},
      {"tls: {cert: " + A("server.pem") + ", key: " + A("server-key.pem") + ", client_ca: " +
           A("client-key.pem") + "}",
       "tls.client_ca", "no PEM certificate"},
      {"tls: {cert: " + A("server.pem") + "}", "tls", "key"},
      {"tls: {cert: " + A("server.pem") + ", key: " + A("server-key.pem") + ", ca: x}", "tls",
       "ca"},
  };
  for (const Case& c : cases) {
    absl::Status s = Server(c.yaml + "\n");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_NE(s.message().find("node.yaml"), absl::string_view::npos) << s;
    EXPECT_NE(s.message().find(c.want1), absl::string_view::npos) << s;
    EXPECT_NE(s.message().find(c.want2), absl::string_view::npos) << s;
  }
}

TEST_F(TlsConfigTest, SchedulerNodeTlsIsCheckedToo) {
  auto root = ConfigNode::LoadString("cloud: 127.0.0.1:1\nnode_tls: {ca: " + A("ca.pem") +
                                         ", cert: " + A("client.pem") + "}\n",
                                     "scheduler.yaml");
  ASSERT_TRUE(root.ok());
  auto o = scheduler::ParseSchedulerOptions(*root);
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("node_tls.cert, node_tls.key"), absl::string_view::npos)
      << o.status();
  root = ConfigNode::LoadString("cloud: 127.0.0.1:1\nnode_tls: {ca: " + A("ca.pem") +
                                    ", server_name: pice-edge}\n",
                                "scheduler.yaml");
  ASSERT_TRUE(root.ok());
  o = scheduler::ParseSchedulerOptions(*root);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->node_tls.enabled);
  EXPECT_EQ(o->node_tls.server_name, "pice-edge");
}

// deploy/multi-host/ (mutual TLS on every link) loads once its certs/ exist.
TEST_F(TlsConfigTest, MultiHostDeployConfigsLoadWithDevCerts) {
  const std::string src = std::string(PICE_SOURCE_DIR);
  const std::string root = *dir_ + "/tree";
  fs::create_directories(root + "/deploy/multi-host");
  for (const char* d : {"models", "templates"}) fs::create_directory_symlink(src + "/" + d, root + "/" + d);
  for (const char* f : {"cloud.yaml", "edge.yaml", "scheduler.yaml"}) {
    fs::copy_file(src + "/deploy/multi-host/" + f, root + "/deploy/multi-host/" + f);
  }
  const std::string d = root + "/deploy/multi-host/";
  auto missing = LoadCloudOptions(d + "cloud.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("tls.cert"), absl::string_view::npos) << missing.status();
  ASSERT_EQ(std::system((src + "/scripts/dev-certs.sh " + d + "certs >/dev/null").c_str()), 0);
  auto cloud = LoadCloudOptions(d + "cloud.yaml");
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  EXPECT_FALSE(cloud->tls.client_ca.empty());
  auto edge = LoadEdgeOptions(d + "edge.yaml");
  ASSERT_TRUE(edge.ok()) << edge.status();
  EXPECT_FALSE(edge->tls.client_ca.empty());
  auto sched = scheduler::LoadSchedulerOptions(d + "scheduler.yaml");
  ASSERT_TRUE(sched.ok()) << sched.status();
  EXPECT_FALSE(sched->tls.client_ca.empty());
  EXPECT_FALSE(sched->node_tls.cert.empty());
}

TEST_F(TlsConfigTest, ReloaderCopiesARotationAndKeepsTheOldSetWhenTheNewOneIsBad) {
  const std::string d = *dir_ + "/rot";
  fs::create_directories(d);
  for (const char* f : {"ca.pem", "ca-key.pem", "server.pem", "server-key.pem"}) {
    fs::copy_file(A(f), d + "/" + f);
  }
  auto copy = WatchTlsFiles(d + "/server.pem", d + "/server-key.pem", d + "/ca.pem");
  ASSERT_TRUE(copy.ok()) << copy.status();
  const std::string first = Read(copy->identity);
  EXPECT_NE(first.find(Read(d + "/server.pem")), std::string::npos) << "key + certificate";
  EXPECT_NE(first.find(Read(d + "/server-key.pem")), std::string::npos);
  EXPECT_EQ(Read(copy->ca), Read(d + "/ca.pem"));
  // The same files again: the same copy.
  auto again = WatchTlsFiles(d + "/server.pem", d + "/server-key.pem", d + "/ca.pem");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->identity, copy->identity);

  // Half a rotation (a new key, the old certificate) is never copied.
  Write(d + "/server-key.pem", Read(A("client-key.pem")));
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  EXPECT_EQ(Read(copy->identity), first);
  // Garbage neither.
  Write(d + "/server.pem", "garbage\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  EXPECT_EQ(Read(copy->identity), first);
  // A whole new pair is.
  Write(d + "/server.pem", Read(A("client.pem")));
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (Read(copy->identity) == first && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(Read(copy->identity).find(Read(A("client.pem"))), std::string::npos);

  // A set that does not check out at the start is an error, not a watch.
  EXPECT_FALSE(WatchTlsFiles(d + "/ca-key.pem", d + "/server-key.pem", "").ok());
}

}  // namespace
}  // namespace pice
