#include "common/config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace pice {
namespace {

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s.size() > 80 ? s.substr(0, 77) + "..." : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string Join(std::initializer_list<std::string_view> items) {
  std::vector<std::string> v;
  for (auto s : items) v.emplace_back(s);
  return absl::StrJoin(v, ", ");
}

std::string FormatNumber(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

std::string DescribeYamlValue(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "null";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return Quote(node.Scalar());
}

absl::StatusOr<ConfigNode> ConfigNode::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the file"));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string dir = std::filesystem::path(path).parent_path().string();
  return LoadString(ss.str(), path, dir.empty() ? "." : dir);
}

absl::StatusOr<ConfigNode> ConfigNode::LoadString(const std::string& text, const std::string& name,
                                                  const std::string& base_dir) {
  try {
    YAML::Node root = YAML::Load(text);
    if (root.IsDefined() && !root.IsNull() && !root.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": expected a mapping of keys at the top level, got ",
                       DescribeYamlValue(root)));
    }
    return ConfigNode(root, name, base_dir, "");
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(name, ":", e.mark.line + 1, ":",
                                                   e.mark.column + 1, ": YAML syntax error: ",
                                                   e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", e.what()));
  }
}

std::string ConfigNode::ChildPath(std::string_view key) const {
  return key_path_.empty() ? std::string(key) : absl::StrCat(key_path_, ".", std::string(key));
}

bool ConfigNode::Lookup(std::string_view key, YAML::Node* out) const {
  try {
    if (!node_.IsMap()) return false;
    const YAML::Node& self = node_;
    YAML::Node child = self[std::string(key)];
    if (!child.IsDefined() || child.IsNull()) return false;
    *out = child;
    return true;
  } catch (const YAML::Exception&) {
    return false;
  }
}

bool ConfigNode::Has(std::string_view key) const {
  YAML::Node n;
  return Lookup(key, &n);
}

ConfigNode ConfigNode::Child(std::string_view key) const {
  YAML::Node n;
  if (!Lookup(key, &n)) n = YAML::Node(YAML::NodeType::Null);
  return ConfigNode(n, file_, base_dir_, ChildPath(key));
}

ConfigNode ConfigNode::At(size_t i) const {
  YAML::Node n(YAML::NodeType::Null);
  try {
    if (node_.IsSequence() && i < node_.size()) n = node_[i];
  } catch (const YAML::Exception&) {
  }
  return ConfigNode(n, file_, base_dir_, absl::StrCat(key_path_, "[", i, "]"));
}

absl::Status ConfigNode::Error(std::string_view message) const {
  if (key_path_.empty()) return absl::InvalidArgumentError(absl::StrCat(file_, ": ", std::string(message)));
  return absl::InvalidArgumentError(
      absl::StrCat(file_, ": ", key_path_, ": ", std::string(message)));
}

absl::Status ConfigNode::ChildError(std::string_view key, std::string_view message) const {
  return absl::InvalidArgumentError(
      absl::StrCat(file_, ": ", ChildPath(key), ": ", std::string(message)));
}

absl::Status ConfigNode::CheckKeys(const std::vector<std::string>& allowed) const {
  if (!node_.IsDefined() || node_.IsNull()) return absl::OkStatus();
  if (!node_.IsMap()) {
    return Error(absl::StrCat("expected a mapping, got ", DescribeYamlValue(node_)));
  }
  std::set<std::string> allowed_set(allowed.begin(), allowed.end());
  std::set<std::string> seen;
  std::vector<std::string> unknown, repeated;
  try {
    for (const auto& kv : node_) {
      std::string key = kv.first.IsScalar() ? kv.first.Scalar() : DescribeYamlValue(kv.first);
      if (!seen.insert(key).second) repeated.push_back(key);
      if (!allowed_set.count(key)) unknown.push_back(key);
    }
  } catch (const YAML::Exception& e) {
    return Error(e.msg);
  }
  std::string where = key_path_.empty() ? std::string("the top level") : key_path_;
  if (!unknown.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        file_, ": ", key_path_.empty() ? "" : key_path_ + ": ", "unknown key",
        unknown.size() > 1 ? "s " : " ", absl::StrJoin(unknown, ", "), " (allowed at ", where,
        ": ", absl::StrJoin(allowed, ", "), ")"));
  }
  if (!repeated.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(file_, ": ",
                                                   key_path_.empty() ? "" : key_path_ + ": ",
                                                   "key given twice: ", absl::StrJoin(repeated, ", ")));
  }
  return absl::OkStatus();
}

absl::Status ConfigNode::CheckKeys(std::initializer_list<std::string_view> allowed) const {
  std::vector<std::string> v;
  for (auto s : allowed) v.emplace_back(s);
  return CheckKeys(v);
}

absl::Status ConfigNode::Require(std::string_view key) const {
  if (!Has(key)) return ChildError(key, "missing (required)");
  return absl::OkStatus();
}

absl::Status ConfigNode::ReadInt64(std::string_view key, int64_t* out, int64_t min,
                                   int64_t max) const {
  YAML::Node n;
  if (!Lookup(key, &n)) return absl::OkStatus();
  int64_t v = 0;
  std::string want = absl::StrCat("expected an integer in [", min, ", ", max, "]");
  if (!n.IsScalar() || !absl::SimpleAtoi(n.Scalar(), &v) || v < min || v > max) {
    return ChildError(key, absl::StrCat(want, ", got ", DescribeYamlValue(n)));
  }
  *out = v;
  return absl::OkStatus();
}

absl::Status ConfigNode::ReadInt(std::string_view key, int* out, int64_t min, int64_t max) const {
  min = std::max<int64_t>(min, std::numeric_limits<int>::min());
  max = std::min<int64_t>(max, std::numeric_limits<int>::max());
  int64_t v = *out;
  absl::Status s = ReadInt64(key, &v, min, max);
  if (s.ok()) *out = static_cast<int>(v);
  return s;
}

absl::Status ConfigNode::ReadDouble(std::string_view key, double* out, double min,
                                    double max) const {
  YAML::Node n;
  if (!Lookup(key, &n)) return absl::OkStatus();
  double v = 0;
  std::string want =
      absl::StrCat("expected a number in [", FormatNumber(min), ", ", FormatNumber(max), "]");
  if (!n.IsScalar() || !absl::SimpleAtod(n.Scalar(), &v) || !std::isfinite(v) || v < min ||
      v > max) {
    return ChildError(key, absl::StrCat(want, ", got ", DescribeYamlValue(n)));
  }
  *out = v;
  return absl::OkStatus();
}

absl::Status ConfigNode::ReadFloat(std::string_view key, float* out, double min, double max) const {
  double v = *out;
  absl::Status s = ReadDouble(key, &v, min, max);
  if (s.ok()) *out = static_cast<float>(v);
  return s;
}

absl::Status ConfigNode::ReadBool(std::string_view key, bool* out) const {
  YAML::Node n;
  if (!Lookup(key, &n)) return absl::OkStatus();
  if (n.IsScalar()) {
    std::string s = absl::AsciiStrToLower(n.Scalar());
    if (s == "true" || s == "yes" || s == "on") {
      *out = true;
      return absl::OkStatus();
    }
    if (s == "false" || s == "no" || s == "off") {
      *out = false;
      return absl::OkStatus();
    }
  }
  return ChildError(key, absl::StrCat("expected true or false, got ", DescribeYamlValue(n)));
}

absl::Status ConfigNode::ReadString(std::string_view key, std::string* out, bool allow_empty) const {
  YAML::Node n;
  if (!Lookup(key, &n)) return absl::OkStatus();
  if (!n.IsScalar()) {
    return ChildError(key, absl::StrCat("expected a string, got ", DescribeYamlValue(n)));
  }
  if (!allow_empty && n.Scalar().empty()) return ChildError(key, "expected a non-empty string");
  *out = n.Scalar();
  return absl::OkStatus();
}

absl::Status ConfigNode::ReadEnum(std::string_view key, std::string* out,
                                  std::initializer_list<std::string_view> choices) const {
  YAML::Node n;
  if (!Lookup(key, &n)) return absl::OkStatus();
  if (n.IsScalar()) {
    for (auto c : choices) {
      if (n.Scalar() == c) {
        *out = n.Scalar();
        return absl::OkStatus();
      }
    }
  }
  return ChildError(key, absl::StrCat("expected one of ", Join(choices), ", got ",
                                      DescribeYamlValue(n)));
}

absl::Status ConfigNode::ReadStringList(std::string_view key, std::vector<std::string>* out) const {
  YAML::Node n;
  if (!Lookup(key, &n)) return absl::OkStatus();
  std::vector<std::string> v;
  if (n.IsScalar()) {
    v.push_back(n.Scalar());
  } else if (n.IsSequence()) {
    for (size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar()) {
        return absl::InvalidArgumentError(
            absl::StrCat(file_, ": ", ChildPath(key), "[", i, "]: expected a string, got ",
                         DescribeYamlValue(n[i])));
      }
      v.push_back(n[i].Scalar());
    }
  } else {
    return ChildError(key, absl::StrCat("expected a list of strings, got ", DescribeYamlValue(n)));
  }
  *out = std::move(v);
  return absl::OkStatus();
}

absl::Status ConfigNode::ReadDoubleList(std::string_view key, std::vector<double>* out, double min,
                                        double max) const {
  std::vector<std::string> v;
  if (absl::Status s = ReadStringList(key, &v); !s.ok()) return s;
  std::vector<double> d;
  for (const std::string& s : v) {
    double x = 0;
    if (!absl::SimpleAtod(s, &x) || !std::isfinite(x) || x < min || x > max) {
      return ChildError(key, absl::StrCat("expected numbers in [", FormatNumber(min), ", ",
                                          FormatNumber(max), "], got '", s, "'"));
    }
    d.push_back(x);
  }
  if (Has(key)) *out = std::move(d);
  return absl::OkStatus();
}

std::string ConfigNode::ResolvePath(const std::string& path) const {
  if (path.empty() || std::filesystem::path(path).is_absolute()) return path;
  return (std::filesystem::path(base_dir_) / path).lexically_normal().string();
}

absl::Status ConfigNode::ReadPath(std::string_view key, std::string* out, bool allow_empty) const {
  std::string v = *out;
  YAML::Node n;
  if (!Lookup(key, &n)) return absl::OkStatus();
  absl::Status s = ReadString(key, &v, allow_empty);
  if (!s.ok()) return s;
  *out = ResolvePath(v);
  return absl::OkStatus();
}

absl::Status ConfigNode::ReadSeconds(std::string_view key, double* out, double min,
                                     double max) const {
  YAML::Node n;
  if (!Lookup(key, &n)) return absl::OkStatus();
  std::string want = absl::StrCat("expected a duration in [", FormatNumber(min), "s, ",
                                  FormatNumber(max), "s] such as 2.5, 500ms, 2s or 1m");
  if (!n.IsScalar()) return ChildError(key, absl::StrCat(want, ", got ", DescribeYamlValue(n)));
  std::string s(absl::StripAsciiWhitespace(n.Scalar()));
  double scale = 1.0;
  auto ends = [&](std::string_view suffix) {
    if (s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0) {
      s.resize(s.size() - suffix.size());
      return true;
    }
    return false;
  };
  if (ends("ms")) scale = 1e-3;
  else if (ends("s")) scale = 1.0;
  else if (ends("m")) scale = 60.0;
  else if (ends("h")) scale = 3600.0;
  double v = 0;
  if (!absl::SimpleAtod(s, &v) || !std::isfinite(v) || v * scale < min || v * scale > max) {
    return ChildError(key, absl::StrCat(want, ", got ", DescribeYamlValue(n)));
  }
  *out = v * scale;
  return absl::OkStatus();
}

absl::StatusOr<std::string> ConfigNode::AsString() const {
  if (!node_.IsScalar()) return Error(absl::StrCat("expected a string, got ", DescribeYamlValue(node_)));
  return node_.Scalar();
}

}  // namespace pice
