// Mutual TLS on every link (issue 12): pice-cloud, pice-edge and pice-scheduler as processes,
// each serving mTLS with certificates from scripts/dev-certs.sh (openssl), the scheduler
// presenting its client certificate to the nodes. A client needs a certificate from the same
// CA; plaintext, another CA's certificate, an expired one and a wrong server name are
// refused; certificates rotated under load lose no query.
#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/integration/harness.h"

namespace pice::testing {
namespace {

int MakeCerts(const std::string& dir, const std::string& days = "") {
  std::string out;
  const int rc = RunCommand(SourceDir() + "/scripts/dev-certs.sh " + dir + " " + days, &out);
  EXPECT_EQ(rc, 0) << out;
  return rc;
}

std::string TlsYaml(const std::string& dir) {
  return "tls: {cert: " + dir + "/server.pem, key: " + dir + "/server-key.pem, client_ca: " +
         dir + "/ca.pem}\n";
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    a_ = dir_->File("a");
    if (MakeCerts(a_) != 0 || MakeCerts(dir_->File("other-ca")) != 0) return;
    // An expired client certificate from the right CA.
    const std::string expired = dir_->File("expired");
    std::filesystem::create_directories(expired);
    for (const char* f : {"ca.pem", "ca-key.pem"}) {
      std::filesystem::copy_file(a_ + "/" + f, expired + "/" + f);
    }
    if (MakeCerts(expired, "-1") != 0) return;

    const std::string tls = TlsYaml(a_);
    cloud_ = new Node(*dir_, "cloud", "pice-cloud", ArithCloudYaml(tls));
    edge_ = new Node(*dir_, "edge-1", "pice-edge", ArithEdgeYaml("edge-1", {"a"}, tls));
    std::string why;
    for (Node* n : {cloud_, edge_}) {
      n->set_client_tls(ClientTlsFromDir(a_));
      ASSERT_TRUE(n->Ready(&why)) << why;
    }
    http_port_ = FreePort();
    sched_ = new Node(*dir_, "scheduler", "pice-scheduler",
                      "listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:" + std::to_string(http_port_) +
                          "\ncloud: " + cloud_->address() + "\nedges: [" +
                          edge_->address() + "]\ntimeouts: {load_poll: 100ms}\n"
                          "escalation: {threshold: 0}\n" + tls + "node_tls: {ca: " + a_ +
                          "/ca.pem, cert: " + a_ + "/client.pem, key: " + a_ + "/client-key.pem}\n");
    sched_->set_client_tls(ClientTlsFromDir(a_));
    ASSERT_TRUE(sched_->Ready(&why)) << why;
  }
  static void TearDownTestSuite() {
    for (Node* n : {sched_, edge_, cloud_}) delete n;
    delete dir_;
  }
  void SetUp() override { ASSERT_NE(sched_, nullptr) << "the cluster did not start"; }

  static std::unique_ptr<v1::Pice::Stub> Stub(const ClientTls& tls) {
    grpc::ChannelArguments args;
    auto credentials = MakeChannelCredentials(tls, &args);
    return v1::Pice::NewStub(grpc::CreateCustomChannel(sched_->address(), credentials, args));
  }
  static v1::QueryRequest Req(const std::string& q, v1::Route route) {
    v1::QueryRequest r;
    r.set_prompt(q);
    r.set_route(route);
    return r;
  }
  // The status of one query on a fresh channel.
  static grpc::Status Ask(const ClientTls& tls, v1::Route route = v1::ROUTE_CLOUD,
                          std::vector<v1::QueryEvent>* events = nullptr) {
    std::vector<v1::QueryEvent> ev;
    return RunQuery(Stub(tls).get(), Req("add 3 and 4", route), events ? events : &ev, 20);
  }

  static TempDir* dir_;
  static std::string a_;
  static int http_port_;
  static Node *cloud_, *edge_, *sched_;
};

TempDir* TlsTest::dir_ = nullptr;
std::string TlsTest::a_;
int TlsTest::http_port_ = 0;
Node* TlsTest::cloud_ = nullptr;
Node* TlsTest::edge_ = nullptr;
Node* TlsTest::sched_ = nullptr;

TEST_F(TlsTest, BothRoutesRunOverMutualTlsEverywhere) {
  for (v1::Route route : {v1::ROUTE_CLOUD, v1::ROUTE_SKETCH}) {
    std::vector<v1::QueryEvent> ev;
    grpc::Status s = Ask(ClientTlsFromDir(a_), route, &ev);
    ASSERT_TRUE(s.ok()) << s.error_message();
    const v1::AnswerEvent& a = FinalAnswer(ev);
    EXPECT_EQ(a.route(), route);
    // The cloud knows 3+4; the edge's one small model may not (no escalation here).
    EXPECT_NE(a.text().find(route == v1::ROUTE_CLOUD ? "3+4=7" : "3+4="), std::string::npos)
        << a.text();
    if (route == v1::ROUTE_SKETCH) {
      bool on_edge = false;
      for (const auto& e : ev) on_edge |= e.has_expansion() && e.expansion().node() == "edge-1";
      EXPECT_TRUE(on_edge) << "the scheduler reached the edge over mTLS";
    }
  }
  // Server-side TLS checked by name: the certificate is for localhost and 127.0.0.1.
  ClientTls named = ClientTlsFromDir(a_);
  named.server_name = "localhost";
  EXPECT_TRUE(Ask(named).ok());
}

TEST_F(TlsTest, PlaintextAndForeignOrExpiredCertificatesAreRefused) {
  // Plaintext against a TLS listener.
  EXPECT_EQ(Ask(ClientTls{}).error_code(), grpc::StatusCode::UNAVAILABLE);
  // TLS without a client certificate: the server requires one.
  ClientTls no_cert;
  no_cert.enabled = true;
  no_cert.ca = a_ + "/ca.pem";
  EXPECT_EQ(Ask(no_cert).error_code(), grpc::StatusCode::UNAVAILABLE);
  // A client certificate from another CA.
  ClientTls foreign = ClientTlsFromDir(dir_->File("other-ca"));
  foreign.ca = a_ + "/ca.pem";  // the client itself trusts the server
  EXPECT_EQ(Ask(foreign).error_code(), grpc::StatusCode::UNAVAILABLE);
  // An expired certificate from the right CA.
  ClientTls expired = ClientTlsFromDir(dir_->File("expired"));
  EXPECT_EQ(Ask(expired).error_code(), grpc::StatusCode::UNAVAILABLE);
  // The server's certificate does not carry the expected name.
  ClientTls wrong_name = ClientTlsFromDir(a_);
  wrong_name.server_name = "edge-7.example";
  EXPECT_EQ(Ask(wrong_name).error_code(), grpc::StatusCode::UNAVAILABLE);
  // The cluster still serves the right client.
  EXPECT_TRUE(Ask(ClientTlsFromDir(a_)).ok());
}

TEST_F(TlsTest, CliNamesTheProblem) {
  std::string out;
  const std::string pice = BinDir() + "/pice query --timeout 10 --target " + sched_->address();
  // Plaintext: refused, with a hint that the server may want TLS.
  EXPECT_EQ(RunCommand(pice + " 'add 3 and 4'", &out), 1);
  EXPECT_NE(out.find("UNAVAILABLE"), std::string::npos) << out;
  EXPECT_NE(out.find("--tls-dir"), std::string::npos) << out;
  // An expired client certificate is refused before any connection, naming the file.
  EXPECT_EQ(RunCommand(pice + " --tls-dir " + dir_->File("expired") + " 'add 3 and 4'", &out), 2);
  EXPECT_NE(out.find("expired"), std::string::npos) << out;
  EXPECT_NE(out.find("client.pem"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(pice + " --tls-dir " + a_ + " 'add 3 and 4'", &out), 0) << out;
  EXPECT_NE(out.find("3+4=7"), std::string::npos) << out;
}

TEST_F(TlsTest, HttpApiServesHttpsAndWantsTheClientCertificate) {
  const std::string url = "https://127.0.0.1:" + std::to_string(http_port_);
  const std::string curl = "curl -sS --max-time 20 --cacert " + a_ + "/ca.pem ";
  const std::string with_cert = curl + "--cert " + a_ + "/client.pem --key " + a_ + "/client-key.pem ";
  std::string out;
  ASSERT_EQ(RunCommand(with_cert + url + "/v1/models", &out), 0) << out;
  EXPECT_NE(out.find("pice-auto"), std::string::npos) << out;
  // Streamed chat over https, on the sketch route.
  ASSERT_EQ(RunCommand(with_cert + "-N -H 'Content-Type: application/json' -d "
                       "'{\"model\":\"pice-sketch\",\"stream\":true,\"messages\":"
                       "[{\"role\":\"user\",\"content\":\"add 3 and 4; multiply 6 by 7\"}]}' " +
                       url + "/v1/chat/completions", &out),
            0) << out;
  EXPECT_NE(out.find("data: [DONE]"), std::string::npos) << out;
  EXPECT_NE(out.find("3+4="), std::string::npos) << out;
  // The scheduler's metrics over the same https port.
  ASSERT_EQ(RunCommand(with_cert + url + "/metrics", &out), 0) << out;
  EXPECT_NE(out.find("pice_request_success_total{"), std::string::npos) << out;
  // No client certificate, a foreign one, or plain http: no answer.
  EXPECT_NE(RunCommand(curl + url + "/v1/models", &out), 0) << out;
  const std::string other = dir_->File("other-ca");
  EXPECT_NE(RunCommand(curl + "--cert " + other + "/client.pem --key " + other +
                       "/client-key.pem " + url + "/v1/models", &out), 0) << out;
  EXPECT_EQ(out.find("pice-auto"), std::string::npos) << out;
  EXPECT_NE(RunCommand("curl -sS --max-time 5 http://127.0.0.1:" + std::to_string(http_port_) +
                       "/v1/models", &out), 0) << out;
  EXPECT_EQ(out.find("pice-auto"), std::string::npos) << out;
}

// The peer certificate a fresh connection to `address` sees (PEM).
std::string ServerCertificate(const std::string& address, const ClientTls& tls) {
  grpc::ChannelArguments args;
  auto credentials = MakeChannelCredentials(tls, &args);
  auto stub = v1::Pice::NewStub(grpc::CreateCustomChannel(address, credentials, args));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::QueryRequest req;  // empty prompt: INVALID_ARGUMENT, after the handshake
  auto reader = stub->Query(&ctx, req);
  v1::QueryEvent ev;
  while (reader->Read(&ev)) {
  }
  grpc::Status st = reader->Finish();
  // The scheduler refuses the empty prompt, a node has no Pice service: either way after the
  // handshake. UNAVAILABLE: there was none.
  if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
    ADD_FAILURE() << "ServerCertificate: " << st.error_code() << " " << st.error_message();
  }
  auto auth = ctx.auth_context();
  if (!auth) return "";
  auto pem = auth->FindPropertyValues("x509_pem_cert");
  return pem.empty() ? "" : std::string(pem.front().data(), pem.front().size());
}

TEST_F(TlsTest, CertificatesRotateUnderLoadWithoutLosingAQuery) {
  const std::string before = ServerCertificate(sched_->address(), ClientTlsFromDir(a_));
  ASSERT_FALSE(before.empty());
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::string first_error;
  std::mutex mu;
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&, t] {
      // Each query on a new channel, so new handshakes meet the rotating files.
      while (!stop) {
        grpc::Status s = Ask(ClientTlsFromDir(a_), t == 0 ? v1::ROUTE_SKETCH : v1::ROUTE_CLOUD);
        if (s.ok()) {
          ++ok;
        } else {
          ++failed;
          std::lock_guard<std::mutex> lock(mu);
          if (first_error.empty()) first_error = s.error_message();
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  // New leaves under the same CA for every node, the scheduler's client certificate and
  // the test's own; the nodes read them within kTlsReloadSeconds.
  ASSERT_EQ(MakeCerts(a_), 0);
  const std::string rotated = ReadFile(a_ + "/server.pem");
  ASSERT_NE(rotated, before);
  for (Node* n : {sched_, cloud_, edge_}) {
    std::string now;
    for (int i = 0; i < 100 && now != rotated; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      now = ServerCertificate(n->address(), ClientTlsFromDir(a_));
    }
    EXPECT_EQ(now, rotated) << n->address() << " serves the new certificate";
  }
  // The HTTP listener too.
  std::string want, got;
  ASSERT_EQ(RunCommand("openssl x509 -noout -serial -in " + a_ + "/server.pem", &want), 0);
  for (int i = 0; i < 50 && got != want; ++i) {
    RunCommand("echo | openssl s_client -connect 127.0.0.1:" + std::to_string(http_port_) +
                   " -cert " + a_ + "/client.pem -key " + a_ + "/client-key.pem 2>/dev/null" +
                   " | openssl x509 -noout -serial",
               &got);
    if (got != want) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(got, want) << "the HTTP listener serves the new certificate";
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop = true;
  for (auto& c : clients) c.join();
  EXPECT_EQ(failed.load(), 0) << first_error;
  EXPECT_GT(ok.load(), 3);

  // A broken file is not loaded: the node keeps the pair it has.
  WriteFile(a_ + "/server.pem", "not a certificate\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(ServerCertificate(sched_->address(), ClientTlsFromDir(a_)), rotated);
  WriteFile(a_ + "/server.pem", rotated);
}

}  // namespace
}  // namespace pice::testing
