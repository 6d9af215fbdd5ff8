// ModelBackend on this process's engine: the prompt is tokenized here (EncodePrompt:
// caller text never becomes control tokens) and generated in the engine's running batch.
// Several backends (ensemble members on one GGUF file) may share one Engine.
#ifndef PICE_NODE_LOCAL_BACKEND_H_
#define PICE_NODE_LOCAL_BACKEND_H_

#include <memory>
#include <string>

#include "engine/engine.h"
#include "node/backend.h"

namespace pice {

class LocalBackend final : public ModelBackend {
 public:
  explicit LocalBackend(std::shared_ptr<Engine> engine) : engine_(std::move(engine)) {}

  absl::Status Submit(BackendRequest request) override;
  void Stop() override { engine_->Stop(); }
  BackendStats Stats() const override;
  const std::string& name() const override { return engine_->name(); }

  const std::shared_ptr<Engine>& engine() const { return engine_; }

 private:
  std::shared_ptr<Engine> engine_;
};

}  // namespace pice

#endif  // PICE_NODE_LOCAL_BACKEND_H_
