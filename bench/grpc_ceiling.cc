// recsys-grpc-ceiling: the cheapest gRPC server this gRPC (1.51) allows, for
// recsys-bench to measure what the transport itself costs on a machine.
//
// recsys-server serves its unary calls with gRPC's callback API and its
// streams synchronously; gRPC then polls with two or more threads of its own,
// which hand the poller role to each other on every poll. This program
// instead answers every call from one AsyncGenericService on completion
// queues it polls itself, one thread per queue (--threads, default 1), with
// no callback or sync service registered, so nothing else polls. It knows
// three methods:
//   - grpc.health.v1.Health/Check: SERVING (recsys-bench's `empty`);
//   - recsys.v1.Recommender/GetModelInfo: a fixed ModelInfo, so that
//     recsys-bench can start it with --server-bin like recsys-server;
//   - recsys.v1.Recommender/Recommend: spins --recommend_work_us of CPU, then
//     answers a RecommendResponse of about --recommend_bytes (ten items with
//     padded titles): a call shaped like Recommend, without the model.
// Everything else gets UNIMPLEMENTED. --with_callback_health also registers
// gRPC's own health service (callback API), which takes over Check and starts
// gRPC's polling threads: the cost of merely having them, on calls they do
// not serve, shows on Recommend and GetModelInfo (recsys-bench's `info`).
//
//   recsys-bench --model=m.rsm --workloads=empty,recommend --rounds=3
//       --server-bin=build/release/bench/recsys-grpc-ceiling
//       --server-flags='--recommend-work-us=6 --recommend-bytes=650'
#include <signal.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/file_io.h"
#include "base/flag_names.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "proto/recsys.pb.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50061",
          "Address to serve on (host:port; port 0 picks a free one)");
ABSL_FLAG(std::string, port_file, "",
          "Write the port actually bound to this file once serving");
ABSL_FLAG(int, threads, 1, "Completion queues, each polled by one thread");
ABSL_FLAG(double, recommend_work_us, 0,
          "CPU microseconds each Recommend spins before answering");
ABSL_FLAG(int, recommend_bytes, 0,
          "Approximate size of each Recommend answer (0: no items)");
ABSL_FLAG(bool, with_callback_health, false,
          "Also register gRPC's callback health service (see the file "
          "comment)");
ABSL_FLAG(double, grace_seconds, 1, "Shutdown grace on SIGTERM");
// Accepted so that recsys-bench can start this program as it starts
// recsys-server; none of them is used.
ABSL_FLAG(std::string, data_dir, "", "Ignored");
ABSL_FLAG(std::string, model, "", "Ignored");
ABSL_FLAG(std::string, train_data, "", "Ignored");

namespace {

grpc::ByteBuffer ToBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// Ten items whose titles are padded until the encoded answer reaches `bytes`.
std::string RecommendAnswer(int bytes) {
  recsys::v1::RecommendResponse r;
  if (bytes <= 0) return r.SerializeAsString();
  for (int i = 0; i < 10; ++i) {
    recsys::v1::ScoredItem* s = r.add_items();
    s->mutable_item()->set_id(absl::StrCat(100 + i));
    s->mutable_item()->add_genres("Drama");
    s->set_predicted_rating(4.0f);
    s->set_score(1.0f - 0.01f * static_cast<float>(i));
  }
  r.set_model_version(1);
  for (size_t i = 0; r.ByteSizeLong() < static_cast<size_t>(bytes); ++i) {
    std::string* title = r.mutable_items(static_cast<int>(i % 10))
                             ->mutable_item()
                             ->mutable_title();
    title->push_back('a' + static_cast<char>(i % 26));
  }
  return r.SerializeAsString();
}

struct Answers {
  grpc::ByteBuffer serving;  // HealthCheckResponse{status: SERVING}
  grpc::ByteBuffer model_info;
  grpc::ByteBuffer recommend;
  std::chrono::nanoseconds recommend_work{0};
};

// One call: requested, its single request read, answered, deleted.
class Call {
 public:
  Call(grpc::AsyncGenericService* service, grpc::ServerCompletionQueue* cq,
       const Answers* answers)
      : service_(service), cq_(cq), answers_(answers) {
    service_->RequestCall(&ctx_, &stream_, cq_, cq_, this);
  }

  // Handles one completion; false once the call is finished.
  bool Proceed(bool ok) {
    switch (state_) {
      case State::kRequested:
        if (!ok) return false;  // shutting down
        new Call(service_, cq_, answers_);
        state_ = State::kReading;
        stream_.Read(&request_, this);
        return true;
      case State::kReading:
        state_ = State::kFinishing;
        if (!ok) {
          stream_.Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                      "no request message"),
                         this);
        } else {
          Answer();
        }
        return true;
      case State::kFinishing:
        return false;
    }
    return false;
  }

 private:
  enum class State { kRequested, kReading, kFinishing };

  void Answer() {
    const std::string& method = ctx_.method();
    const grpc::ByteBuffer* answer = nullptr;
    if (method == "/grpc.health.v1.Health/Check") {
      answer = &answers_->serving;
    } else if (method == "/recsys.v1.Recommender/GetModelInfo") {
      answer = &answers_->model_info;
    } else if (method == "/recsys.v1.Recommender/Recommend") {
      const auto until =
          std::chrono::steady_clock::now() + answers_->recommend_work;
      while (std::chrono::steady_clock::now() < until) {
      }
      answer = &answers_->recommend;
    }
    if (answer == nullptr) {
      stream_.Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                  absl::StrCat(method, " is not served here")),
                     this);
      return;
    }
    stream_.WriteAndFinish(*answer, grpc::WriteOptions(), grpc::Status::OK,
                           this);
  }

  grpc::AsyncGenericService* service_;
  grpc::ServerCompletionQueue* cq_;
  const Answers* answers_;
  grpc::GenericServerContext ctx_;
  grpc::GenericServerAsyncReaderWriter stream_{&ctx_};
  grpc::ByteBuffer request_;
  State state_ = State::kRequested;
};

// The fixed answers: Check's SERVING, a ModelInfo on the scale 1..5, and a
// Recommend answer of about `bytes` after `work_us` of spinning.
Answers MakeAnswers(int bytes, double work_us) {
  Answers answers;
  answers.serving = ToBuffer(std::string("\x08\x01", 2));
  recsys::v1::ModelInfo info;
  info.set_kind("grpc-ceiling");
  info.mutable_scale()->set_min(1);
  info.mutable_scale()->set_max(5);
  answers.model_info = ToBuffer(info.SerializeAsString());
  answers.recommend = ToBuffer(RecommendAnswer(bytes));
  answers.recommend_work =
      std::chrono::nanoseconds(static_cast<int64_t>(work_us * 1000));
  return answers;
}

// Blocks SIGTERM and SIGINT in the calling thread (and so in every thread it
// starts later); returns them as a set for sigwait.
sigset_t BlockStopSignals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  return stop_signals;
}

// Writes the bound port to --port_file, when given; false (after saying
// why) when that fails.
bool WritePortFileIfAsked(int port) {
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty()) {
    const absl::Status written = recsys::WritePortFile(port_file, port);
    if (!written.ok()) {
      std::cerr << "recsys-grpc-ceiling: " << written.message() << "\n";
      return false;
    }
  }
  return true;
}

void Poll(grpc::AsyncGenericService* service, grpc::ServerCompletionQueue* cq,
          const Answers* answers) {
  // Enough outstanding requests that a burst of new calls never waits.
  for (int i = 0; i < 64; ++i) new Call(service, cq, answers);
  void* tag = nullptr;
  bool ok = false;
  while (cq->Next(&tag, &ok)) {
    Call* call = static_cast<Call*>(tag);
    if (!call->Proceed(ok)) delete call;
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "recsys-grpc-ceiling [--listen=HOST:PORT] [--threads=1] "
      "[--recommend-work-us=U --recommend-bytes=B] [--with-callback-health]");
  std::vector<std::string> storage(argv, argv + argc);
  std::vector<char*> args = recsys::NormalizeFlagNames(&storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  // As recsys-server does: Debian's Abseil keeps deadlock detection on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const int threads = absl::GetFlag(FLAGS_threads);
  const double work_us = absl::GetFlag(FLAGS_recommend_work_us);
  const int bytes = absl::GetFlag(FLAGS_recommend_bytes);
  if (threads < 1 || threads > 64 || !(work_us >= 0 && work_us <= 1e6) ||
      bytes < 0 || bytes > (1 << 20)) {
    std::cerr
        << "recsys-grpc-ceiling: --threads must be 1..64, "
           "--recommend_work_us 0..1e6 and --recommend_bytes 0..1048576\n";
    return 1;
  }

  // SIGTERM and SIGINT are taken by sigwait below, in every thread.
  const sigset_t stop_signals = BlockStopSignals();
  const Answers answers = MakeAnswers(bytes, work_us);

  grpc::EnableDefaultHealthCheckService(
      absl::GetFlag(FLAGS_with_callback_health));
  grpc::AsyncGenericService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen),
                           grpc::InsecureServerCredentials(), &port);
  builder.RegisterAsyncGenericService(&service);
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> cqs;
  for (int i = 0; i < threads; ++i) cqs.push_back(builder.AddCompletionQueue());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << "recsys-grpc-ceiling: cannot listen on "
              << absl::GetFlag(FLAGS_listen) << "\n";
    return 1;
  }
  if (!WritePortFileIfAsked(port)) return 1;
  std::cerr << "recsys-grpc-ceiling: serving on port " << port << " with "
            << threads << " polling thread(s)\n";

  std::vector<std::thread> pollers;
  for (auto& cq : cqs) pollers.emplace_back(Poll, &service, cq.get(), &answers);
  int signal = 0;
  sigwait(&stop_signals, &signal);
  server->Shutdown(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(
                       absl::GetFlag(FLAGS_grace_seconds) * 1000)));
  for (auto& cq : cqs) cq->Shutdown();
  for (std::thread& t : pollers) t.join();
  return 0;
}
