#include "common/server.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "spdlog/spdlog.h"

namespace pice {

absl::Status ValidateListenAddress(const std::string& address, const std::string& field) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected host:port (e.g. 0.0.0.0:50061), got \"", address, "\""));
  }
  std::string host = address.substr(0, colon);
  if (host.front() == '[' && host.back() != ']') {
    return absl::InvalidArgumentError(absl::StrCat(field, ": unbalanced [ in \"", address, "\""));
  }
  int port = -1;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": expected a port in [0, 65535] after the colon, got \"", address, "\""));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& content) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::InternalError(absl::StrCat(path, ": cannot write ", tmp));
    out << content;
    out.flush();
    if (!out) return absl::InternalError(absl::StrCat(path, ": write failed"));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return absl::InternalError(absl::StrCat(path, ": cannot rename the temporary file"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(
    const ServerOptions& options, const std::vector<ServiceEntry>& services) {
  absl::Status valid = ValidateListenAddress(options.listen, "listen");
  if (!valid.ok()) return valid;
  std::unique_ptr<GrpcServer> s(new GrpcServer());
  s->options_ = options;
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, MakeServerCredentials(options.tls), &s->port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  for (const auto& e : services) {
    builder.RegisterService(e.service);
    s->service_names_.push_back(e.name);
  }
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    if (s->server_) s->server_->Shutdown();
    s->server_.reset();
    return absl::UnavailableError(
        absl::StrCat("listen: cannot bind ", options.listen, " (in use or not a local address?)"));
  }
  std::string host = options.listen.substr(0, options.listen.rfind(':'));
  s->address_ = absl::StrCat(host, ":", s->port_);
  if (auto* health = s->server_->GetHealthCheckService()) {
    health->SetServingStatus("", true);
    for (const auto& n : s->service_names_) health->SetServingStatus(n, true);
  }
  spdlog::info("{}: listening on {} (port {}{})", options.name, s->address_, s->port_,
               !options.tls.enabled()          ? ", plaintext"
               : options.tls.client_ca.empty() ? ", TLS"
                                               : ", mutual TLS");
  if (!options.port_file.empty()) {
    absl::Status w = WriteFileAtomically(options.port_file, absl::StrCat(s->port_, "\n"));
    if (!w.ok()) {
      s->server_->Shutdown();
      s->server_.reset();
      return w;
    }
  }
  return s;
}

GrpcServer::~GrpcServer() { Shutdown(); }

void GrpcServer::Shutdown(double drain_seconds, const std::function<bool()>& idle) {
  std::call_once(shutdown_once_, [&] {
    if (!server_) return;
    double drain = drain_seconds >= 0 ? drain_seconds : options_.drain_seconds;
    if (auto* health = server_->GetHealthCheckService()) {
      health->SetServingStatus(false);
    }
    spdlog::info("{}: draining (up to {:.1f} s for running calls)", options_.name, drain);
    auto deadline = std::chrono::system_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(drain * 1000));
    if (idle) {
      while (!idle() && std::chrono::system_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (!idle()) spdlog::warn("{}: drain timeout: cancelling what still runs", options_.name);
    }
    server_->Shutdown(deadline);
    server_->Wait();
    spdlog::info("{}: stopped", options_.name);
  });
}

void BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForShutdownSignal(const std::function<void()>& on_hup) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGHUP) {
      spdlog::info("received SIGHUP: reloading");
      if (on_hup) on_hup();
      continue;
    }
    spdlog::info("received {}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    return sig;
  }
}

}  // namespace pice
