// A node's model version (LoadResponse.model_version): the SHA-256 (hex) of everything that
// shapes its answers — the prompt template's bytes, every model file's SHA-256 (a remote
// model: its server and name), each ensemble member's sampling overrides and weight, and the
// node's own settings given as `extra` (the edge's vote). The scheduler's response cache keys
// answers by it (scheduler/response_cache.h), so a new model or template never meets an
// answer cached from the old one.
#ifndef PICE_NODE_MODEL_VERSION_H_
#define PICE_NODE_MODEL_VERSION_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "node/ensemble.h"

namespace pice {

// SHA-256 of a file's bytes, hex (each path hashed once per process).
absl::StatusOr<std::string> FileSha256(const std::string& path);

absl::StatusOr<std::string> ModelVersion(const std::string& template_path,
                                         const std::vector<EnsembleMember>& members,
                                         const std::string& extra);

}  // namespace pice

#endif  // PICE_NODE_MODEL_VERSION_H_
