// Integration-test harness: starts the real binaries as child processes on loopback
// (port 0 + --port-file), waits for grpc.health.v1 SERVING, and kills every child in its
// destructor. Children also get PR_SET_PDEATHSIG(SIGKILL), so a crashed or killed test
// leaves no orphans.
#ifndef PICE_TESTS_INTEGRATION_HARNESS_H_
#define PICE_TESTS_INTEGRATION_HARNESS_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/tls.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "pice/v1/pice.grpc.pb.h"

namespace pice::testing {

inline std::string BinDir() { return PICE_BIN_DIR; }
inline std::string SourceDir() { return PICE_SOURCE_DIR; }
inline std::string ModelsDir() { return SourceDir() + "/models/pice-arith"; }
inline std::string TemplatesDir() { return SourceDir() + "/templates"; }

// pice-cloud on the bundled pice-arith cloud model, any free port, one thread; `extra` is
// appended (more keys).
inline std::string ArithCloudYaml(const std::string& extra = "") {
  return "node: cloud\nlisten: 127.0.0.1:0\nmodel: " + ModelsDir() +
         "/arith-cloud-f16.gguf\ntemplate: " + TemplatesDir() +
         "/pice-arith.yaml\nthreads: 1\nlog_level: warn\n" + extra;
}

// pice-edge `name` on the bundled pice-arith edge models (`members`: "a", "b", "c"), one
// thread, listening on `listen`; `extra` is appended.
inline std::string ArithEdgeYaml(const std::string& name, const std::vector<std::string>& members = {"a"},
                                 const std::string& extra = "",
                                 const std::string& listen = "127.0.0.1:0") {
  std::string y = "node: " + name + "\nlisten: " + listen + "\ntemplate: " + TemplatesDir() +
                  "/pice-arith.yaml\nthreads: 1\nlog_level: warn\nensemble:\n";
  for (const auto& m : members) {
    y += "  - {name: arith-edge-" + m + ", model: " + ModelsDir() + "/arith-edge-" + m + "-q8_0.gguf}\n";
  }
  return y + extra;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

// A fresh temporary directory, removed with the object.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pice-it-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// One child process with stdout and stderr in files.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::string& log_prefix)
      : stdout_path_(log_prefix + ".out"), stderr_path_(log_prefix + ".err") {
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      int out = open(stdout_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(out, 1);
      dup2(err, 2);
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Process() { Kill(); }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // SIGTERM, then SIGKILL after `grace`. Returns the exit status (as waitpid's).
  int Kill(std::chrono::milliseconds grace = std::chrono::milliseconds(3000)) {
    if (pid_ <= 0) return status_;
    kill(pid_, SIGTERM);
    const auto until = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < until) {
      if (waitpid(pid_, &status_, WNOHANG) == pid_) {
        pid_ = -1;
        return status_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
    pid_ = -1;
    return status_;
  }
  // Waits for the process to exit by itself; -1 when it is still running after `timeout`.
  int WaitExit(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (pid_ > 0 && std::chrono::steady_clock::now() < until) {
      if (waitpid(pid_, &status_, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (pid_ > 0) return -1;
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  }
  bool Running() {
    if (pid_ <= 0) return false;
    if (waitpid(pid_, &status_, WNOHANG) == pid_) pid_ = -1;
    return pid_ > 0;
  }
  pid_t pid() const { return pid_; }
  // Sends `sig` without waiting (e.g. SIGTERM to watch a drain).
  void Signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }
  std::string Stdout() const { return ReadFile(stdout_path_); }
  std::string Stderr() const { return ReadFile(stderr_path_); }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  std::string stdout_path_, stderr_path_;
};

// grpc.health.v1.Health/Check("") through a generic stub (no generated health code):
// true when the reply says SERVING (field 1 = 1).
inline bool HealthServing(const std::string& address, const ClientTls& tls = {}) {
  grpc::ChannelArguments args;
  auto credentials = MakeChannelCredentials(tls, &args);
  auto channel = grpc::CreateCustomChannel(address, credentials, args);
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  grpc::CompletionQueue cq;
  grpc::Slice empty;
  grpc::ByteBuffer request(&empty, 1);
  auto call = stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag;
  bool ok;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  if (!status.ok()) return false;
  std::vector<grpc::Slice> slices;
  response.Dump(&slices);
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return bytes == std::string("\x08\x01", 2);
}

// A node binary started with --config FILE --port-file FILE, serving on 127.0.0.1.
class Node {
 public:
  // Writes `yaml` to <dir>/<name>.yaml and starts `binary`. Call Ready() to wait.
  Node(const TempDir& dir, const std::string& name, const std::string& binary,
       const std::string& yaml, std::vector<std::string> extra_args = {})
      : name_(name), port_file_(dir.File(name + ".port")) {
    const std::string config = dir.File(name + ".yaml");
    WriteFile(config, yaml);
    std::vector<std::string> argv = {BinDir() + "/" + binary, "--config", config, "--port-file",
                                     port_file_};
    for (auto& a : extra_args) argv.push_back(std::move(a));
    process_ = std::make_unique<Process>(argv, dir.File(name));
  }

  // Waits for the port file and health SERVING. False (with why) on timeout or exit.
  bool Ready(std::string* why, std::chrono::seconds timeout = std::chrono::seconds(90)) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      if (!process_->Running()) {
        *why = name_ + " exited: " + process_->Stderr();
        return false;
      }
      if (port_ == 0) {
        const std::string p = ReadFile(port_file_);
        if (!p.empty()) port_ = std::atoi(p.c_str());
      }
      if (port_ > 0 && HealthServing(address(), tls_)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    *why = name_ + " not serving in time: " + process_->Stderr();
    return false;
  }
  std::string address() const { return host_ + ":" + std::to_string(port_); }
  // For a node listening on another loopback address than 127.0.0.1.
  void set_host(const std::string& host) { host_ = host; }
  int port() const { return port_; }
  // How Ready() reaches a node that serves TLS.
  void set_client_tls(const ClientTls& tls) { tls_ = tls; }
  Process& process() { return *process_; }

 private:
  std::string name_;
  std::string port_file_;
  int port_ = 0;
  std::string host_ = "127.0.0.1";
  ClientTls tls_;
  std::unique_ptr<Process> process_;
};

// A Pice stub on a node's address.
inline std::unique_ptr<v1::Pice::Stub> PiceStub(const Node* n) {
  return v1::Pice::NewStub(grpc::CreateChannel(n->address(), grpc::InsecureChannelCredentials()));
}

// The query's answer (its last event), or an empty one when it has none.
inline const v1::AnswerEvent& FinalAnswer(const std::vector<v1::QueryEvent>& ev) {
  static const v1::AnswerEvent none;
  return !ev.empty() && ev.back().has_answer() ? ev.back().answer() : none;
}

// Runs a query to completion; the events in order.
inline grpc::Status RunQuery(v1::Pice::Stub* stub, const v1::QueryRequest& req,
                             std::vector<v1::QueryEvent>* events, int timeout_s = 60) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s));
  auto reader = stub->Query(&ctx, req);
  v1::QueryEvent ev;
  while (reader->Read(&ev)) events->push_back(ev);
  return reader->Finish();
}

// Resident memory of a process in KiB (VmRSS), 0 when unknown.
inline long RssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return 0;
}

// A loopback port that was free a moment ago (for a node that must come back on it).
inline int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

// Runs a command line (through /bin/sh) and returns its exit code; output in *out.
inline int RunCommand(const std::string& cmd, std::string* out) {
  std::string full = cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  out->clear();
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace pice::testing

#endif  // PICE_TESTS_INTEGRATION_HARNESS_H_
