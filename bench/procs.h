// Node processes for the benchmarks that start the real binaries (pice bench chaos,
// pice bench testbed): a child that dies with its parent, optionally pinned to CPUs, and a
// node started with --config/--port-file that can be restarted on its port.
#ifndef PICE_BENCH_PROCS_H_
#define PICE_BENCH_PROCS_H_

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/client.h"
#include "scheduler/health_check.h"

namespace pice::bench::procs {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// "0", "1-3", "0,2-3" into a CPU set; false for "" (no pinning) or a malformed list.
inline bool ParseCpus(const std::string& cpus, cpu_set_t* set) {
  CPU_ZERO(set);
  if (cpus.empty()) return false;
  for (absl::string_view part : absl::StrSplit(cpus, ',')) {
    std::vector<std::string> r = absl::StrSplit(part, '-');
    int lo = 0, hi = 0;
    if (r.empty() || r.size() > 2 || !absl::SimpleAtoi(r[0], &lo) ||
        !absl::SimpleAtoi(r.back(), &hi) || lo < 0 || hi < lo || hi >= CPU_SETSIZE) {
      return false;
    }
    for (int c = lo; c <= hi; ++c) CPU_SET(c, set);
  }
  return true;
}

// A child process (stdout/stderr to <log>.out/.err) that dies with its parent.
class Child {
 public:
  // `cpus`: the CPUs it may run on ("0", "1-3", "0,2"; "" = any), as taskset sets them.
  Child(const std::vector<std::string>& argv, const std::string& log, const std::string& cpus = "") {
    cpu_set_t set;
    const bool pin = ParseCpus(cpus, &set);
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      if (pin && sched_setaffinity(0, sizeof(set), &set) != 0) _exit(126);
      const int out = open((log + ".out").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      const int err = open((log + ".err").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(out, 1);
      dup2(err, 2);
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Child() { Stop(SIGKILL, std::chrono::milliseconds(0)); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Sends `sig`, waits up to `grace`, then SIGKILL. Returns the exit status (waitpid's).
  int Stop(int sig, std::chrono::milliseconds grace) {
    if (pid_ <= 0) return status_;
    kill(pid_, sig);
    const auto until = Clock::now() + grace;
    while (Clock::now() < until) {
      if (waitpid(pid_, &status_, WNOHANG) == pid_) {
        pid_ = -1;
        return status_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
    pid_ = -1;
    return status_;
  }
  bool Running() {
    if (pid_ > 0 && waitpid(pid_, &status_, WNOHANG) == pid_) pid_ = -1;
    return pid_ > 0;
  }
  // CPU time (user + system, all threads) the process has used so far; 0 once it exited.
  double CpuSeconds() const {
    if (pid_ <= 0) return 0;
    std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t paren = stat.rfind(')');  // the command name may hold spaces
    if (paren == std::string::npos) return 0;
    std::vector<std::string> f = absl::StrSplit(stat.substr(paren + 2), ' ');
    if (f.size() < 13) return 0;  // f[11], f[12]: utime, stime (fields 14, 15 of proc(5))
    return (std::atof(f[11].c_str()) + std::atof(f[12].c_str())) / double(sysconf(_SC_CLK_TCK));
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
};

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool HealthServing(const std::string& address, const char* service) {
  grpc::Status s;
  const scheduler::ServingStatus st = scheduler::CheckHealth(
      cli::MakeClientChannel(address), service,
      std::chrono::system_clock::now() + std::chrono::milliseconds(300), &s);
  return s.ok() && st == scheduler::ServingStatus::kServing;
}

// A node process started with --config and --port-file, restartable on its port.
class NodeProc {
 public:
  NodeProc(std::string binary, std::string config, std::string dir, std::string name,
           const char* service, std::string cpus = "")
      : binary_(std::move(binary)), config_(std::move(config)), dir_(std::move(dir)),
        name_(std::move(name)), service_(service), cpus_(std::move(cpus)) {}

  // Listens on `host` (its config must say so too), started through `prefix` (e.g. `ip
  // netns exec NS`). Before Start.
  void SetNetwork(std::string host, std::vector<std::string> prefix) {
    host_ = std::move(host);
    prefix_ = std::move(prefix);
  }
  // Starts on `port` (0 = any free port); Ready() waits for SERVING.
  void Start(int port) {
    const std::string port_file = dir_ + "/" + name_ + ".port";
    std::error_code ec;
    fs::remove(port_file, ec);
    port_ = port;
    std::vector<std::string> argv = prefix_;
    for (const std::string& a : {binary_, std::string("--config"), config_, std::string("--port-file"), port_file}) {
      argv.push_back(a);
    }
    if (port > 0) {
      argv.push_back("--listen");
      argv.push_back(host_ + ":" + std::to_string(port));
    }
    child_ = std::make_unique<Child>(argv, dir_ + "/" + name_, cpus_);
  }
  absl::Status Ready(std::chrono::milliseconds timeout) {
    const std::string port_file = dir_ + "/" + name_ + ".port";
    const auto until = Clock::now() + timeout;
    while (Clock::now() < until) {
      if (!child_->Running()) {
        return absl::InternalError(absl::StrCat(name_, " exited: ", Slurp(dir_ + "/" + name_ + ".err")));
      }
      if (port_ == 0) port_ = std::atoi(Slurp(port_file).c_str());
      if (port_ > 0 && HealthServing(address(), service_)) return absl::OkStatus();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return absl::DeadlineExceededError(absl::StrCat(name_, " is not serving after ",
                                                    timeout.count(), " ms (logs in ", dir_, ")"));
  }
  void Kill() { child_->Stop(SIGKILL, std::chrono::milliseconds(0)); }
  double CpuSeconds() const { return child_ ? child_->CpuSeconds() : 0; }
  // The grace outlasts the nodes' drain timeout (3 s for the scheduler here): a node that
  // uses its whole drain and then exits 0 still counts as a clean exit.
  int Terminate() { return child_->Stop(SIGTERM, std::chrono::milliseconds(8000)); }
  std::string address() const { return host_ + ":" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  std::string binary_, config_, dir_, name_;
  const char* service_;
  std::string cpus_;
  std::string host_ = "127.0.0.1";
  std::vector<std::string> prefix_;
  int port_ = 0;
  std::unique_ptr<Child> child_;
};

inline void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

inline fs::path ExeDir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path(".") : exe.parent_path();
}

inline std::string FindTemplates(const std::string& models) {
  for (const fs::path& p : {fs::path(models) / ".." / ".." / "templates", fs::path("templates"),
                            ExeDir() / ".." / "templates"}) {
    std::error_code ec;
    if (fs::exists(p / "pice-arith.yaml", ec)) return fs::weakly_canonical(p, ec).string();
  }
  return "";
}

}  // namespace pice::bench::procs

#endif  // PICE_BENCH_PROCS_H_
