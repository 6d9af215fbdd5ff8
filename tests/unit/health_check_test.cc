// Health probes through short-lived channels against nodes that come and go: the path on
// which a grpc::Channel's last reference used to be dropped on gRPC's callback thread
// (issue 16: "assertion failed: prior > 0" in grpc_cq_internal_unref, about one chaos run
// in six). Every probe makes its own channel and lets go of it at once, from several
// threads, while the node is stopped and restarted on the same port.
//
// PICE_HEALTH_STRESS_PROBES sets the number of probes (default 1500: a few seconds; the
// issue's stress runs use 20000 under ASan and TSan, scripts/sanitize.sh).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/server.h"
#include "grpcpp/grpcpp.h"
#include "pice/v1/pice.grpc.pb.h"
#include "scheduler/health_check.h"

namespace pice::scheduler {
namespace {

class Edge final : public v1::Edge::Service {};

int StressProbes() {
  const char* env = std::getenv("PICE_HEALTH_STRESS_PROBES");
  const int n = env ? std::atoi(env) : 0;
  return n > 0 ? n : 1500;
}

std::shared_ptr<grpc::Channel> FreshChannel(const std::string& address) {
  grpc::ChannelArguments args;
  // A channel of its own, not one shared from gRPC's subchannel pool by address.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

TEST(HealthCheckTest, BlockingCheckReportsServingNotServingAndUnreachable) {
  Edge edge;
  ServerOptions so;
  auto server = GrpcServer::Start(so, {{v1::Edge::service_full_name(), &edge}});
  ASSERT_TRUE(server.ok()) << server.status();
  const auto deadline = [] { return std::chrono::system_clock::now() + std::chrono::seconds(5); };
  grpc::Status s;
  EXPECT_EQ(CheckHealth(FreshChannel((*server)->address()), v1::Edge::service_full_name(),
                        deadline(), &s),
            ServingStatus::kServing);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(CheckHealth(FreshChannel((*server)->address()), "no.such.Service", deadline(), &s),
            ServingStatus::kUnknown);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  const std::string address = (*server)->address();
  (*server)->Shutdown(0);
  server->reset();
  EXPECT_EQ(CheckHealth(FreshChannel(address), "", std::chrono::system_clock::now() +
                                                       std::chrono::milliseconds(300), &s),
            ServingStatus::kUnknown);
  EXPECT_FALSE(s.ok());
}

// The node for the stress test runs in a child process: this binary again, with
// PICE_TEST_HEALTH_NODE=host:port set, serves pice.v1.Edge's health on that address from a
// static initializer and never returns to gtest. In its own process because the hazard
// needs a prober process where no gRPC server holds gRPC's shared callback queue: with
// probes one at a time, every probe's channel is then the queue's only user.
const bool kIsNode = [] {
  const char* listen = std::getenv("PICE_TEST_HEALTH_NODE");
  if (!listen) return false;
  static Edge edge;
  ServerOptions so;
  so.listen = listen;
  so.name = "health-test-node";
  auto server = GrpcServer::Start(so, {{v1::Edge::service_full_name(), &edge}});
  if (!server.ok()) _exit(3);  // the port is still held: the parent tries again
  for (;;) pause();
}();

// The node process, started and killed (SIGKILL) on demand, always on one port.
class NodeProcess {
 public:
  explicit NodeProcess(int port) : port_(port) {}
  ~NodeProcess() { Kill(); }
  // Starts the node and waits until it accepts connections (or 2 s pass).
  bool Start() {
    const std::string listen = "127.0.0.1:" + std::to_string(port_);
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      setenv("PICE_TEST_HEALTH_NODE", listen.c_str(), 1);
      const int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      dup2(null, 2);
      execl("/proc/self/exe", "health-test-node", nullptr);
      _exit(127);
    }
    for (int i = 0; i < 400; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      if (Connects()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  bool Connects() const {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    close(fd);
    return ok;
  }
  int port_;
  pid_t pid_ = -1;
};

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// Probes one at a time (as `pice bench chaos` waits for a node), each through a channel of
// its own that the prober lets go of at once, while the node is killed and restarted.
TEST(HealthCheckTest, ProbesThroughShortLivedChannelsWhileTheNodeComesAndGoes) {
  ASSERT_FALSE(kIsNode);
  const int port = FreePort();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  NodeProcess node(port);
  ASSERT_TRUE(node.Start());

  const int total = StressProbes();
  std::atomic<int> done{0}, serving{0}, down{0};
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    bool up = true;
    while (!stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(up ? 40 : 10));
      if (up) {
        node.Kill();
        up = false;
      } else {
        up = node.Start();
      }
    }
  });
  for (int i = 0; i < total; ++i) {
    grpc::Status s;
    const ServingStatus st = CheckHealth(
        FreshChannel(address), v1::Edge::service_full_name(),
        std::chrono::system_clock::now() + std::chrono::milliseconds(200), &s);
    (st == ServingStatus::kServing ? serving : down)++;
    done++;
  }
  stop = true;
  churn.join();
  EXPECT_EQ(serving + down, total);
  // The node was up most of the time: both outcomes were exercised.
  EXPECT_GT(serving.load(), 0);
  EXPECT_GT(down.load(), 0);
}

}  // namespace
}  // namespace pice::scheduler
