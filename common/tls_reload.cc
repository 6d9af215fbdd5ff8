#include "common/tls_reload.h"

#include <openssl/crypto.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/server.h"
#include "common/status_macros.h"
#include "common/tls.h"
#include "spdlog/spdlog.h"

namespace pice {
namespace {

namespace fs = std::filesystem;

bool ReadWhole(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

// One watched set of files and its private copies.
struct Watch {
  std::string cert, key, ca;           // the operator's files
  std::string seen_cert, seen_key, seen_ca;  // their contents at the last look
  TlsSnapshot copy;
  bool written = false;                // the copies exist
  std::string last_error;              // logged once per change

  // Reads the files; when they changed and check out, writes the copies. OK when the copies
  // are current (changed or not); the error when a change did not check out.
  absl::Status Refresh() {
    std::string c, k, a;
    if ((!cert.empty() && !ReadWhole(cert, &c)) || (!key.empty() && !ReadWhole(key, &k)) ||
        (!ca.empty() && !ReadWhole(ca, &a))) {
      return absl::UnavailableError("a file cannot be read");
    }
    if (written && c == seen_cert && k == seen_key && a == seen_ca) return absl::OkStatus();
    ClientTls check;
    check.enabled = true;
    check.cert = cert;
    check.key = key;
    check.ca = ca;
    absl::Status s = CheckClientTls(check, "tls");
    if (!s.ok()) return s;
    // Files that change while being checked are looked at again next time.
    std::string c2, k2, a2;
    if ((!cert.empty() && (!ReadWhole(cert, &c2) || c2 != c)) ||
        (!key.empty() && (!ReadWhole(key, &k2) || k2 != k)) ||
        (!ca.empty() && (!ReadWhole(ca, &a2) || a2 != a))) {
      return absl::UnavailableError("the files changed while being read");
    }
    if (!cert.empty()) PICE_RETURN_IF_ERROR(WriteFileAtomically(copy.identity, k + "\n" + c));
    if (!ca.empty()) PICE_RETURN_IF_ERROR(WriteFileAtomically(copy.ca, a));
    written = true;
    seen_cert = std::move(c);
    seen_key = std::move(k);
    seen_ca = std::move(a);
    return absl::OkStatus();
  }
};

class Reloader {
 public:
  static Reloader& Get() {
    static Reloader* r = new Reloader();  // never destroyed: its thread runs until exit
    return *r;
  }

  absl::StatusOr<TlsSnapshot> Add(const std::string& cert, const std::string& key,
                                  const std::string& ca) {
    std::lock_guard<std::mutex> lock(mu_);
    auto id = std::make_tuple(cert, key, ca);
    if (auto it = watches_.find(id); it != watches_.end()) return it->second->copy;
    if (dir_.empty()) {
      RemoveStaleDirs();
      std::string tmpl = (fs::temp_directory_path() / absl::StrCat("pice-tls-", getpid(), "-XXXXXX")).string();
      if (mkdtemp(tmpl.data()) == nullptr) {
        return absl::InternalError(absl::StrCat("tls: cannot make a private directory in ",
                                                fs::temp_directory_path().string()));
      }
      dir_ = tmpl;  // mode 0700: the copies inside are the owner's alone
      // OpenSSL first, so that its exit clean-up runs after Stop (the thread's state is freed
      // by the thread itself, before OpenSSL goes).
      OPENSSL_init_crypto(0, nullptr);
      std::atexit([] { Reloader::Get().Stop(); });
      thread_ = std::thread([this] { Loop(); });
    }
    auto w = std::make_unique<Watch>();
    w->cert = cert;
    w->key = key;
    w->ca = ca;
    const size_t n = watches_.size();
    if (!cert.empty()) w->copy.identity = absl::StrCat(dir_, "/identity-", n, ".pem");
    if (!ca.empty()) w->copy.ca = absl::StrCat(dir_, "/ca-", n, ".pem");
    PICE_RETURN_IF_ERROR(w->Refresh());
    TlsSnapshot copy = w->copy;
    watches_.emplace(id, std::move(w));
    return copy;
  }

  // At exit: the thread ends (before spdlog goes away), the copies are removed.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

 private:
  void Loop() {
    Refreshes();
    OPENSSL_thread_stop();  // this thread's OpenSSL error state (the checks use it)
  }

  void Refreshes() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::seconds(kTlsReloadSeconds), [this] { return stop_; })) {
      for (auto& [id, w] : watches_) {
        const std::string before = w->seen_cert + w->seen_key + w->seen_ca;
        absl::Status s = w->Refresh();
        const std::string what = w->cert.empty() ? w->ca : w->cert;
        if (s.ok()) {
          if (w->seen_cert + w->seen_key + w->seen_ca != before) {
            spdlog::info("tls: {}: reloaded", what);
          }
          w->last_error.clear();
        } else if (std::string(s.message()) != w->last_error) {
          w->last_error = std::string(s.message());
          spdlog::warn("tls: {}: not reloaded, keeping the previous certificates: {}", what,
                       w->last_error);
        }
      }
    }
  }

  // pice-tls-<pid>-* of processes that are gone.
  void RemoveStaleDirs() {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fs::temp_directory_path(), ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("pice-tls-", 0) != 0) continue;
      const size_t dash = name.find('-', 9);
      int pid = 0;
      if (dash == std::string::npos || !absl::SimpleAtoi(name.substr(9, dash - 9), &pid)) continue;
      if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) fs::remove_all(e.path(), ec);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
  std::string dir_;
  std::map<std::tuple<std::string, std::string, std::string>, std::unique_ptr<Watch>> watches_;
};

}  // namespace

absl::StatusOr<TlsSnapshot> WatchTlsFiles(const std::string& cert, const std::string& key,
                                          const std::string& ca) {
  return Reloader::Get().Add(cert, key, ca);
}

}  // namespace pice
