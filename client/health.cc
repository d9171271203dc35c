// grpc.health.v1.Health/Check without a generated stub.
//
// Debian's grpc++ has the health service but ships no generated health
// messages for clients, and proto/ holds only our API. The two messages are
// one field each, so they are written and read by hand, and the call goes
// through grpc::GenericStub with raw bytes.
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/json.h"
#include "base/status_macros.h"
#include "client/client.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"

namespace recsys {
namespace {

std::string HealthStatusName(int status) {
  switch (status) {
    case 1:
      return "SERVING";
    case 2:
      return "NOT_SERVING";
    case 3:
      return "SERVICE_UNKNOWN";
    default:
      return "UNKNOWN";
  }
}

void AppendVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

bool ReadVarint(absl::string_view* in, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && !in->empty(); shift += 7) {
    const auto byte = static_cast<unsigned char>(in->front());
    in->remove_prefix(1);
    *v |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

}  // namespace

namespace internal {

std::string EncodeHealthCheckRequest(absl::string_view service) {
  std::string out;
  if (service.empty()) return out;  // proto3 omits default values
  out.push_back('\x0A');            // field 1, length-delimited
  AppendVarint(service.size(), &out);
  out.append(service.data(), service.size());
  return out;
}

int DecodeHealthCheckResponse(absl::string_view bytes) {
  int status = 0;  // absent field = UNKNOWN
  while (!bytes.empty()) {
    uint64_t key = 0, value = 0;
    if (!ReadVarint(&bytes, &key)) return -1;
    switch (key & 7) {
      case 0:  // varint
        if (!ReadVarint(&bytes, &value)) return -1;
        if (key >> 3 == 1) status = static_cast<int>(value);
        break;
      case 1:  // 64-bit
        if (bytes.size() < 8) return -1;
        bytes.remove_prefix(8);
        break;
      case 2:  // length-delimited
        if (!ReadVarint(&bytes, &value) || value > bytes.size()) return -1;
        bytes.remove_prefix(value);
        break;
      case 5:  // 32-bit
        if (bytes.size() < 4) return -1;
        bytes.remove_prefix(4);
        break;
      default:
        return -1;
    }
  }
  return status;
}

}  // namespace internal

absl::Status RunHealth(const ClientOptions& options,
                       const HealthOptions& command,
                       const std::shared_ptr<grpc::ChannelInterface>& channel,
                       const Streams& io) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  internal::SetDeadline(options, &context);
  grpc::Slice slice(internal::EncodeHealthCheckRequest(command.service));
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                 &request, &response, [&](grpc::Status s) {
                   std::lock_guard<std::mutex> lock(mu);
                   status = std::move(s);
                   done = true;
                   done_cv.notify_one();
                 });
  {
    std::unique_lock<std::mutex> lock(mu);
    done_cv.wait(lock, [&] { return done; });
  }
  RECSYS_RETURN_IF_ERROR(internal::RpcError(status));
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) {
    return absl::DataLossError("unreadable health check response");
  }
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  const int code = internal::DecodeHealthCheckResponse(bytes);
  if (code < 0) {
    return absl::DataLossError("malformed grpc.health.v1 response");
  }
  const std::string name = HealthStatusName(code);
  if (options.json) {
    Json j;
    j["service"] = command.service;
    j["status"] = name;
    *io.out << DumpJson(j) << "\n";
  } else {
    *io.out << name << "\n";
  }
  if (code == 1) return absl::OkStatus();
  return internal::OutcomeError(
      absl::StatusCode::kUnavailable,
      absl::StrCat("service \"", command.service, "\" is ", name));
}

}  // namespace recsys
