// YAML configuration loading on yaml-cpp, with errors that name the file, the key path
// and what was expected, e.g.
//   edge.yaml: ensemble[1].temperature: expected a number in [0, 100], got "hot"
// yaml-cpp's exceptions never escape: every failure is an absl::Status
// (INVALID_ARGUMENT for a bad file, NOT_FOUND when it cannot be read).
//
// Typical use fills a plain options struct whose members hold the defaults:
//   PICE_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadFile(path));
//   PICE_RETURN_IF_ERROR(root.CheckKeys({"listen", "threads"}));
//   PICE_RETURN_IF_ERROR(root.ReadString("listen", &opts.listen));
//   PICE_RETURN_IF_ERROR(root.ReadInt("threads", &opts.threads, 1, 256));
//
// Thread safety: a ConfigNode is a value; distinct copies may be used from distinct threads.
#ifndef PICE_COMMON_CONFIG_H_
#define PICE_COMMON_CONFIG_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "yaml-cpp/yaml.h"

namespace pice {

class ConfigNode {
 public:
  // Parses a YAML file. The file is named in errors as given in `path`. An empty file is
  // an empty mapping. A syntax error names the line and column.
  static absl::StatusOr<ConfigNode> LoadFile(const std::string& path);
  // Parses YAML text; `name` stands for the file in errors; relative paths resolve
  // against `base_dir`.
  static absl::StatusOr<ConfigNode> LoadString(const std::string& text, const std::string& name,
                                               const std::string& base_dir = ".");

  // The node's position for messages: "" for the root, "ensemble[1].temperature" below.
  const std::string& key_path() const { return key_path_; }
  const std::string& file() const { return file_; }
  // The directory relative paths in this file resolve against.
  const std::string& base_dir() const { return base_dir_; }

  bool IsMap() const { return node_.IsMap(); }
  bool IsList() const { return node_.IsSequence(); }
  bool IsScalar() const { return node_.IsScalar(); }
  // Absent (or explicitly null) keys count as not set.
  bool Has(std::string_view key) const;
  size_t size() const { return node_.size(); }

  // The child at `key` (may be undefined: check Has), or the element `i` of a list.
  ConfigNode Child(std::string_view key) const;
  ConfigNode At(size_t i) const;

  // INVALID_ARGUMENT "<file>: <key path>: <message>".
  absl::Status Error(std::string_view message) const;
  absl::Status ChildError(std::string_view key, std::string_view message) const;

  // Requires this node to be a mapping whose keys all appear in `allowed`; otherwise the
  // error names every unknown (or repeated) key and lists the allowed ones. A null node
  // (empty file, `key:` with no value) is accepted as an empty mapping.
  absl::Status CheckKeys(std::initializer_list<std::string_view> allowed) const;
  absl::Status CheckKeys(const std::vector<std::string>& allowed) const;
  // Requires `key` to be present and not null.
  absl::Status Require(std::string_view key) const;

  // Readers: when `key` is absent or null, *out keeps its value (the default) and OK is
  // returned; otherwise the value must parse and lie in the range, or the error names the
  // key, the range and what was found. *out is only written on success.
  absl::Status ReadInt(std::string_view key, int* out, int64_t min, int64_t max) const;
  absl::Status ReadInt64(std::string_view key, int64_t* out, int64_t min, int64_t max) const;
  absl::Status ReadDouble(std::string_view key, double* out, double min, double max) const;
  absl::Status ReadFloat(std::string_view key, float* out, double min, double max) const;
  absl::Status ReadBool(std::string_view key, bool* out) const;
  // allow_empty = false rejects "".
  absl::Status ReadString(std::string_view key, std::string* out, bool allow_empty = true) const;
  // One of `choices` (exact match); the error lists them.
  absl::Status ReadEnum(std::string_view key, std::string* out,
                        std::initializer_list<std::string_view> choices) const;
  // A list of strings (a single string is accepted as a one-element list).
  absl::Status ReadStringList(std::string_view key, std::vector<std::string>* out) const;
  // A list of finite numbers in [min, max] (a single number is a one-element list).
  absl::Status ReadDoubleList(std::string_view key, std::vector<double>* out, double min,
                              double max) const;
  // A path; a relative path is resolved against base_dir(). allow_empty as ReadString.
  absl::Status ReadPath(std::string_view key, std::string* out, bool allow_empty = false) const;
  // A duration in seconds, written as a number (2.5) or with a unit (500ms, 2s, 1m).
  absl::Status ReadSeconds(std::string_view key, double* out, double min, double max) const;

  // This node's own scalar text (for list elements); error when not a scalar.
  absl::StatusOr<std::string> AsString() const;

  // Resolves `path` against base_dir() unless it is absolute or empty.
  std::string ResolvePath(const std::string& path) const;

 private:
  ConfigNode(YAML::Node node, std::string file, std::string base_dir, std::string key_path)
      : node_(std::move(node)), file_(std::move(file)), base_dir_(std::move(base_dir)),
        key_path_(std::move(key_path)) {}
  std::string ChildPath(std::string_view key) const;
  // The child scalar for a reader, or nullopt-like undefined node when absent/null.
  bool Lookup(std::string_view key, YAML::Node* out) const;

  YAML::Node node_;
  std::string file_;
  std::string base_dir_;
  std::string key_path_;
};

// How a YAML value reads in an error message: "hot" (quoted scalar), a list, a mapping, null.
std::string DescribeYamlValue(const YAML::Node& node);

}  // namespace pice

#endif  // PICE_COMMON_CONFIG_H_
