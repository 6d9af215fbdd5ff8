#include "scheduler/health_check.h"

#include <vector>


namespace pice::scheduler {

std::string EncodeHealthRequest(const std::string& service) {
  std::string out;
  if (service.empty()) return out;  // proto3: an empty string is not written
  out.push_back(0x0A);              // field 1, length-delimited
  size_t n = service.size();
  while (n >= 0x80) {
    out.push_back(static_cast<char>((n & 0x7F) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
  out += service;
  return out;
}

ServingStatus DecodeHealthResponse(const std::string& bytes) {
  // HealthCheckResponse has one field: 1 (varint) status. Unknown fields are skipped.
  size_t i = 0;
  ServingStatus status = ServingStatus::kUnknown;
  auto varint = [&](uint64_t* v) {
    *v = 0;
    for (int shift = 0; i < bytes.size() && shift < 64; shift += 7) {
      const unsigned char c = bytes[i++];
      *v |= uint64_t(c & 0x7F) << shift;
      if (!(c & 0x80)) return true;
    }
    return false;
  };
  while (i < bytes.size()) {
    uint64_t key;
    if (!varint(&key)) return ServingStatus::kUnknown;
    const int wire = key & 7;
    const uint64_t field = key >> 3;
    uint64_t v = 0;
    if (wire == 0) {
      if (!varint(&v)) return ServingStatus::kUnknown;
      if (field == 1 && v <= 3) status = static_cast<ServingStatus>(v);
    } else if (wire == 2) {
      if (!varint(&v) || v > bytes.size() - i) return ServingStatus::kUnknown;
      i += v;
    } else {
      return ServingStatus::kUnknown;
    }
  }
  return status;
}

HealthCheck::HealthCheck(std::shared_ptr<grpc::Channel> channel, const std::string& service,
                         std::chrono::system_clock::time_point deadline)
    : channel_(std::move(channel)), stub_(std::make_unique<grpc::GenericStub>(channel_)) {
  ctx_.set_deadline(deadline);
  const std::string bytes = EncodeHealthRequest(service);
  grpc::Slice slice(bytes);
  request_ = grpc::ByteBuffer(&slice, 1);
  // The callback captures only `this`, which it must not touch once done_ is set: the
  // owner may destroy the call from then on.
  stub_->UnaryCall(&ctx_, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request_,
                   &response_, [this](grpc::Status s) {
                     ServingStatus st = ServingStatus::kUnknown;
                     if (s.ok()) {
                       std::vector<grpc::Slice> slices;
                       std::string b;
                       if (response_.Dump(&slices).ok()) {
                         for (const auto& sl : slices) {
                           b.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
                         }
                       }
                       st = DecodeHealthResponse(b);
                     }
                     std::lock_guard<std::mutex> lock(mu_);
                     status_ = std::move(s);
                     serving_ = st;
                     done_ = true;
                     cv_.notify_all();
                   });
}

HealthCheck::~HealthCheck() { Wait(); }

void HealthCheck::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return done_; });
}

ServingStatus CheckHealth(std::shared_ptr<grpc::Channel> channel, const std::string& service,
                          std::chrono::system_clock::time_point deadline, grpc::Status* status) {
  HealthCheck check(std::move(channel), service, deadline);
  check.Wait();
  if (status) *status = check.status();
  return check.serving();
}

}  // namespace pice::scheduler
