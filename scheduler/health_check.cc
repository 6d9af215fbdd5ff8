#include "scheduler/health_check.h"

#include <vector>

#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"

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

namespace {

struct HealthCall {
  grpc::ClientContext ctx;
  grpc::ByteBuffer request, response;
  std::unique_ptr<grpc::GenericStub> stub;
};

}  // namespace

void CheckHealthAsync(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                      std::chrono::system_clock::time_point deadline,
                      std::function<void(const grpc::Status&, ServingStatus)> done) {
  auto call = std::make_shared<HealthCall>();
  call->ctx.set_deadline(deadline);
  const std::string bytes = EncodeHealthRequest(service);
  grpc::Slice slice(bytes);
  call->request = grpc::ByteBuffer(&slice, 1);
  call->stub = std::make_unique<grpc::GenericStub>(channel);
  call->stub->UnaryCall(&call->ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                        &call->request, &call->response,
                        [call, done = std::move(done)](grpc::Status s) {
                          ServingStatus st = ServingStatus::kUnknown;
                          if (s.ok()) {
                            std::vector<grpc::Slice> slices;
                            std::string b;
                            if (call->response.Dump(&slices).ok()) {
                              for (const auto& sl : slices) {
                                b.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
                              }
                            }
                            st = DecodeHealthResponse(b);
                          }
                          // Drop the stub's channel reference while the caller still holds
                          // its own: the last reference to a grpc::Channel must never go
                          // on a callback thread (~Channel tears down the callback queue
                          // that thread runs: a double free).
                          call->stub.reset();
                          done(s, st);
                        });
}

}  // namespace pice::scheduler
