#include "cli/local_stack.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "cloud/cloud_config.h"
#include "cloud/cloud_service.h"
#include "common/metrics.h"
#include "common/config.h"
#include "common/server.h"
#include "edge/edge_config.h"
#include "edge/edge_service.h"
#include "engine/status_macros.h"
#include "scheduler/service.h"
#include "spdlog/spdlog.h"
#include "yaml-cpp/yaml.h"

namespace pice::cli {
namespace {

namespace fs = std::filesystem;

constexpr char kDefaultConfig[] = R"(# pice local: the embedded default (`pice local --print-config` prints it).
# Every node runs in one process on 127.0.0.1 (free ports); the scheduler listens on
# --port (default 50051). ${models} and ${templates} stand for the directories found at
# start (--models, $PICE_MODELS_DIR, ./models/pice-arith, <exe>/../models/pice-arith, ...).
# The sections are the files of the separate binaries: cloud.yaml, edge.yaml (one per
# edge) and scheduler.yaml, minus the addresses.
cloud:
  node: cloud
  model: ${models}/arith-cloud-f16.gguf
  template: ${templates}/pice-arith.yaml
  threads: 1
edges:
  - node: edge-1
    template: ${templates}/pice-arith.yaml
    threads: 1
    selection: {method: consensus}
    ensemble:
      - {name: arith-edge-a, model: ${models}/arith-edge-a-q8_0.gguf}
      - {name: arith-edge-b, model: ${models}/arith-edge-b-q8_0.gguf}
      - {name: arith-edge-c, model: ${models}/arith-edge-c-q8_0.gguf}
  - node: edge-2
    template: ${templates}/pice-arith.yaml
    threads: 1
    selection: {method: consensus}
    ensemble:
      - {name: arith-edge-a, model: ${models}/arith-edge-a-q8_0.gguf}
      - {name: arith-edge-b, model: ${models}/arith-edge-b-q8_0.gguf}
      - {name: arith-edge-c, model: ${models}/arith-edge-c-q8_0.gguf}
scheduler:
  policy: pice-arith
  # Escalate a point to the cloud when the three edge models all differ, or when the
  # selected answer's mean token log-probability is below -0.1 (`pice bench quality`:
  # 99.2 % of parts right with 77 % of points settled on the edges).
  escalation: {threshold: 0.5, min_confidence: -0.1}
  answer: {point_format: "{expansion}.", separator: " "}
  timeouts: {load_poll: 100ms}
  # Repeated deterministic questions are answered from memory (scheduler/response_cache.h).
  cache: {kind: memory, ttl: 10m, max_bytes: 67108864}
)";

bool HasModels(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(dir / "arith-cloud-f16.gguf", ec);
}

fs::path ExeDir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path(".") : exe.parent_path();
}

absl::StatusOr<std::string> FindTemplatesDir(const fs::path& models) {
  std::vector<fs::path> tried;
  if (const char* env = std::getenv("PICE_TEMPLATES_DIR")) tried.push_back(env);
  tried.push_back(models / ".." / ".." / "templates");
  tried.push_back("templates");
  tried.push_back(ExeDir() / ".." / "templates");
  tried.push_back(ExeDir() / ".." / "share" / "pice" / "templates");
  std::vector<std::string> names;
  for (const fs::path& p : tried) {
    std::error_code ec;
    if (fs::exists(p / "pice-arith.yaml", ec)) return fs::weakly_canonical(p, ec).string();
    names.push_back(p.string());
  }
  return absl::NotFoundError(absl::StrCat("no templates/pice-arith.yaml in ",
                                          absl::StrJoin(names, ", "),
                                          " (set PICE_TEMPLATES_DIR)"));
}

class LocalStackImpl final : public LocalStack {
 public:
  ~LocalStackImpl() override { Shutdown(); }

  absl::Status Init(const LocalOptions& o) {
    if (!o.tls_dir.empty()) {
      // Every link mutual TLS from the directory's files: the client port and the links
      // from the scheduler to the nodes (each node serves server.pem and wants client.pem).
      std::error_code ec;
      const std::string dir = fs::absolute(o.tls_dir, ec).string();
      tls_ = ServerTlsFromDir(dir);
      PICE_RETURN_IF_ERROR(CheckServerTls(tls_, "--tls-dir"));
      PICE_RETURN_IF_ERROR(CheckClientTls(ClientTlsFromDir(dir), "--tls-dir"));
    }
    PICE_ASSIGN_OR_RETURN(std::string models, FindModelsDir(o.models_dir));
    PICE_ASSIGN_OR_RETURN(std::string templates, FindTemplatesDir(models));
    std::string text = kDefaultConfig, name = "<built-in pice local config>", base = ".";
    if (!o.config_path.empty()) {
      std::ifstream in(o.config_path);
      if (!in) return absl::NotFoundError(absl::StrCat(o.config_path, ": cannot open the file"));
      text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      name = o.config_path;
      base = fs::path(o.config_path).parent_path().string();
      if (base.empty()) base = ".";
    }
    text = absl::StrReplaceAll(text, {{"${models}", models}, {"${templates}", templates}});
    PICE_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadString(text, name, base));
    PICE_RETURN_IF_ERROR(root.CheckKeys({"cloud", "edges", "scheduler"}));
    PICE_RETURN_IF_ERROR(root.Require("cloud"));
    PICE_RETURN_IF_ERROR(root.Require("edges"));

    // Cloud.
    PICE_ASSIGN_OR_RETURN(CloudOptions cloud_opts, ParseCloudOptions(root.Child("cloud")));
    PICE_ASSIGN_OR_RETURN(cloud_, CloudService::Create(cloud_opts));
    PICE_ASSIGN_OR_RETURN(std::string cloud_addr,
                          Serve(cloud_.get(), v1::Cloud::service_full_name(), cloud_opts.node, 0));

    // Edges.
    const ConfigNode edges = root.Child("edges");
    if (!edges.IsList() || edges.size() == 0) return edges.Error("expected a list of edge sections");
    std::vector<std::string> edge_addrs;
    for (size_t i = 0; i < edges.size(); ++i) {
      PICE_ASSIGN_OR_RETURN(EdgeOptions eo, ParseEdgeOptions(edges.At(i)));
      PICE_ASSIGN_OR_RETURN(auto edge, EdgeService::Create(eo));
      PICE_ASSIGN_OR_RETURN(std::string addr,
                            Serve(edge.get(), v1::Edge::service_full_name(), eo.node, 0));
      edge_addrs.push_back(addr);
      edges_.push_back(std::move(edge));
    }

    // Scheduler: its section plus the addresses of the nodes above.
    std::string sched_yaml;
    try {
      YAML::Node sched = YAML::Load(text)["scheduler"];
      if (!sched || sched.IsNull()) sched = YAML::Node(YAML::NodeType::Map);
      if (!sched.IsMap()) return root.ChildError("scheduler", "expected a mapping");
      for (const char* k : {"cloud", "edges", "listen", "tls", "node_tls"}) {
        if (sched[k]) {
          return root.ChildError("scheduler", absl::StrCat("`", k, "` is set by pice local"));
        }
      }
      sched["cloud"] = cloud_addr;
      sched["edges"] = edge_addrs;
      sched["listen"] = absl::StrCat("127.0.0.1:", o.port);
      if (tls_.enabled()) {
        sched["tls"]["cert"] = tls_.cert;
        sched["tls"]["key"] = tls_.key;
        sched["tls"]["client_ca"] = tls_.client_ca;
        const ClientTls c = ClientTlsFromDir(fs::path(tls_.cert).parent_path().string());
        sched["node_tls"]["ca"] = c.ca;
        sched["node_tls"]["cert"] = c.cert;
        sched["node_tls"]["key"] = c.key;
      }
      // --api-keys is the section's api_keys_file: read and checked like any other key.
      // (Absolute: a flag's path is the working directory's, not the config file's.)
      if (!o.api_keys_file.empty()) {
        std::error_code ec;
        const auto abs = std::filesystem::absolute(o.api_keys_file, ec);
        sched["api_keys_file"] = ec ? o.api_keys_file : abs.string();
      }
      YAML::Emitter e;
      e << sched;
      sched_yaml = e.c_str();
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": scheduler: ", e.what()));
    }
    PICE_ASSIGN_OR_RETURN(ConfigNode full,
                          ConfigNode::LoadString(sched_yaml, name + " (scheduler section)", base));
    PICE_ASSIGN_OR_RETURN(sched_options_, scheduler::ParseSchedulerOptions(full));
    PICE_ASSIGN_OR_RETURN(address_, AddSchedulerImpl(sched_options_, o.port));
    if (o.http_port >= 0) {
      PICE_ASSIGN_OR_RETURN(http_port_, schedulers_.front()->ServeHttp(
                                            absl::StrCat("127.0.0.1:", o.http_port)));
    }
    if (o.metrics_port >= 0) {
      PICE_ASSIGN_OR_RETURN(metrics_port_,
                            Metrics::Get().Serve(absl::StrCat("127.0.0.1:", o.metrics_port)));
    }
    return absl::OkStatus();
  }

  const std::string& address() const override { return address_; }
  const std::vector<std::string>& node_addresses() const override { return node_addresses_; }
  const scheduler::SchedulerOptions& scheduler_options() const override { return sched_options_; }
  const Tokenizer* cloud_tokenizer() const override { return cloud_->tokenizer(); }
  int http_port() const override { return http_port_; }
  int metrics_port() const override { return metrics_port_; }

  absl::StatusOr<std::string> AddScheduler(
      const std::function<void(scheduler::SchedulerOptions*)>& edit) override {
    scheduler::SchedulerOptions o = sched_options_;
    edit(&o);
    return AddSchedulerImpl(o, 0);
  }

  void Shutdown() override {
    if (shut_down_) return;
    shut_down_ = true;
    for (auto& s : schedulers_) s->service()->SetDraining();
    // Schedulers first (their queries finish on the nodes), then the nodes.
    for (size_t i = servers_.size(); i-- > 0;) servers_[i]->Shutdown(5);
    schedulers_.clear();
    for (auto& e : edges_) e->SetDraining();
    servers_.clear();
    edges_.clear();
    cloud_.reset();
  }

 private:
  absl::StatusOr<std::string> Serve(grpc::Service* svc, const char* full_name,
                                    const std::string& node, int port) {
    ServerOptions so;
    so.listen = absl::StrCat("127.0.0.1:", port);
    so.name = node;
    so.drain_seconds = 5;
    so.tls = tls_;
    PICE_ASSIGN_OR_RETURN(auto server, GrpcServer::Start(so, {{full_name, svc}}));
    std::string addr = server->address();
    servers_.push_back(std::move(server));
    if (std::string(full_name) != v1::Pice::service_full_name()) {
      node_addresses_.push_back(node + "=" + addr);
    }
    return addr;
  }

  absl::StatusOr<std::string> AddSchedulerImpl(const scheduler::SchedulerOptions& o, int port) {
    auto s = scheduler::Scheduler::Create(o);
    PICE_ASSIGN_OR_RETURN(std::string addr,
                          Serve(s->service(), v1::Pice::service_full_name(), "scheduler", port));
    schedulers_.push_back(std::move(s));
    // The registry polled once at creation; make sure it saw the edges.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (schedulers_.back()->registry()->Live().healthy_edges <
               static_cast<int>(edges_.size()) &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      schedulers_.back()->registry()->PollOnce();
    }
    return addr;
  }

  std::unique_ptr<CloudService> cloud_;
  std::vector<std::unique_ptr<EdgeService>> edges_;
  std::vector<std::unique_ptr<scheduler::Scheduler>> schedulers_;
  std::vector<std::unique_ptr<GrpcServer>> servers_;  // in start order
  std::vector<std::string> node_addresses_;
  scheduler::SchedulerOptions sched_options_;
  std::string address_;
  int http_port_ = -1;
  int metrics_port_ = -1;
  bool shut_down_ = false;
  ServerTls tls_;  // --tls-dir: every listener
};

}  // namespace

const char* DefaultLocalConfig() { return kDefaultConfig; }

absl::StatusOr<std::string> FindModelsDir(const std::string& flag) {
  std::vector<fs::path> tried;
  if (!flag.empty()) {
    tried = {fs::path(flag), fs::path(flag) / "pice-arith"};
    std::error_code ec;
    // An explicit directory without the pice-arith models is still fine: a --config may
    // name other models in it (${models}/...).
    if (!HasModels(tried[0]) && !HasModels(tried[1]) && fs::is_directory(flag, ec)) {
      return fs::weakly_canonical(flag, ec).string();
    }
  } else {
    if (const char* env = std::getenv("PICE_MODELS_DIR")) {
      tried.push_back(env);
      tried.push_back(fs::path(env) / "pice-arith");
    }
    tried.push_back("models/pice-arith");
    tried.push_back(ExeDir() / ".." / "models" / "pice-arith");
    tried.push_back(ExeDir() / "models" / "pice-arith");
    tried.push_back(ExeDir() / ".." / "share" / "pice" / "models" / "pice-arith");
  }
  std::vector<std::string> names;
  for (const fs::path& p : tried) {
    if (HasModels(p)) {
      std::error_code ec;
      return fs::weakly_canonical(p, ec).string();
    }
    names.push_back(p.string());
  }
  return absl::NotFoundError(absl::StrCat("the pice-arith models (arith-cloud-f16.gguf) are not in ",
                                          absl::StrJoin(names, ", "),
                                          " (use --models DIR or set PICE_MODELS_DIR)"));
}

absl::StatusOr<std::unique_ptr<LocalStack>> LocalStack::Start(const LocalOptions& options) {
  auto s = std::make_unique<LocalStackImpl>();
  PICE_RETURN_IF_ERROR(s->Init(options));
  return std::unique_ptr<LocalStack>(std::move(s));
}

}  // namespace pice::cli
