#include "edge/edge_config.h"

#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace pice {
namespace {

absl::Status ReadMember(const ConfigNode& n, EnsembleMember* m) {
  PICE_RETURN_IF_ERROR(n.CheckKeys({"name", "model", "backend", "temperature", "seed", "weight"}));
  PICE_RETURN_IF_ERROR(n.Require("name"));
  PICE_RETURN_IF_ERROR(n.ReadString("name", &m->name, false));
  PICE_RETURN_IF_ERROR(ReadModelOrBackend(n, &m->model_path, &m->remote));
  if (n.Has("temperature")) {
    float t = 0;
    PICE_RETURN_IF_ERROR(n.ReadFloat("temperature", &t, 0, 100));
    m->temperature = t;
  }
  if (n.Has("seed")) {
    int64_t seed = 0;
    PICE_RETURN_IF_ERROR(n.ReadInt64("seed", &seed, 0, INT64_MAX));
    m->seed = static_cast<uint64_t>(seed);
  }
  PICE_RETURN_IF_ERROR(n.ReadDouble("weight", &m->weight, 1e-6, 1e6));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<EdgeOptions> ParseEdgeOptions(const ConfigNode& root) {
  EdgeOptions o;
  PICE_RETURN_IF_ERROR(ReadNodeOptions(root, {"ensemble", "selection", "max_slots", "max_queue"}, &o));

  PICE_RETURN_IF_ERROR(root.Require("ensemble"));
  ConfigNode ens = root.Child("ensemble");
  if (!ens.IsList() || ens.size() == 0 || ens.size() > 16) {
    return ens.Error(
        "expected a list of 1 to 16 members (name, model or backend, temperature, seed, weight)");
  }
  std::set<std::string> names;
  for (size_t i = 0; i < ens.size(); ++i) {
    ConfigNode n = ens.At(i);
    if (!n.IsMap()) return n.Error("expected a mapping with name and model (or backend)");
    EnsembleMember m;
    PICE_RETURN_IF_ERROR(ReadMember(n, &m));
    if (!names.insert(m.name).second) {
      return n.ChildError("name", absl::StrCat("\"", m.name, "\" is already used by another member"));
    }
    o.members.push_back(std::move(m));
  }

  ConfigNode sel = root.Child("selection");
  PICE_RETURN_IF_ERROR(sel.CheckKeys({"method", "similarity", "hybrid_weight", "agree_similarity"}));
  std::string method = "consensus", similarity = "auto";
  PICE_RETURN_IF_ERROR(sel.ReadEnum("method", &method, {"confidence", "consensus", "hybrid"}));
  PICE_RETURN_IF_ERROR(sel.ReadEnum("similarity", &similarity, {"auto", "exact", "words", "chars"}));
  o.vote.method = *ParseSelectionMethod(method);
  o.vote.similarity = *ParseSimilarity(similarity);
  PICE_RETURN_IF_ERROR(sel.ReadDouble("hybrid_weight", &o.vote.hybrid_weight, 0, 1));
  PICE_RETURN_IF_ERROR(sel.ReadDouble("agree_similarity", &o.vote.agree_similarity, 1e-9, 1));

  PICE_RETURN_IF_ERROR(root.ReadInt("max_slots", &o.max_slots, 1, 4096));
  PICE_RETURN_IF_ERROR(root.ReadInt("max_queue", &o.max_queue, 0, 100000));
  return o;
}

absl::StatusOr<EdgeOptions> LoadEdgeOptions(const std::string& path) {
  PICE_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadFile(path));
  return ParseEdgeOptions(root);
}

}  // namespace pice
