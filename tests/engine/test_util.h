// Helpers shared by the engine tests: locating bundled models and reference data.
#ifndef PICE_TESTS_ENGINE_TEST_UTIL_H_
#define PICE_TESTS_ENGINE_TEST_UTIL_H_

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace pice::testing {

// The repository root (compiled in).
inline std::string SourceDir() { return PICE_SOURCE_DIR; }

// Path of a file under the repository's models/ directory.
inline std::string ModelPath(const std::string& name) { return SourceDir() + "/models/" + name; }

// Path of a file under tests/data/ (reference vectors copied into the repo).
inline std::string DataPath(const std::string& name) { return SourceDir() + "/tests/data/" + name; }

// Path of a file under ../shared/testdata, or "" when ../shared is absent.
inline std::string SharedTestdata(const std::string& name) {
  std::string p = SourceDir() + "/../shared/testdata/" + name;
  return std::filesystem::exists(p) ? p : "";
}

inline std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace pice::testing

#endif  // PICE_TESTS_ENGINE_TEST_UTIL_H_
