// `rate --file` and `event --file`: a file of ratings or events streamed
// through RateStream (the event lines' parsers are in event.cc).
//
// Two threads share one call: a writer reads and parses the file and sends
// ratings while the caller's thread reads acknowledgements (an event is a
// rating here: one RateRequest, one acknowledgement). At most
// `max_in_flight` ratings are unacknowledged at any time, and the map from
// stream index to file line holds exactly those, so memory stays flat for
// any file size while the map still catches a missing or repeated
// acknowledgement. A monitor thread draws the progress line and cancels the
// call when the server stops acknowledging for longer than the timeout.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/json.h"
#include "base/status_macros.h"
#include "client/client.h"

namespace recsys {
namespace internal {

std::string DetectDelimiter(absl::string_view line) {
  for (const char* d : {"::", "\t", ","}) {
    if (line.find(d) != absl::string_view::npos) return d;
  }
  return "";
}

absl::Status ParseRatingLine(absl::string_view line,
                             absl::string_view delimiter,
                             v1::RateRequest* request) {
  request->Clear();
  std::vector<absl::string_view> fields = absl::StrSplit(line, delimiter);
  if (fields.size() < 3 || fields.size() > 4) {
    return absl::InvalidArgumentError(
        absl::StrFormat("expected user,item,rating[,timestamp] but found %d "
                        "field%s",
                        fields.size(), fields.size() == 1 ? "" : "s"));
  }
  for (auto& f : fields) f = absl::StripAsciiWhitespace(f);
  if (fields[0].empty()) return absl::InvalidArgumentError("empty user id");
  if (fields[1].empty()) return absl::InvalidArgumentError("empty item id");
  float rating = 0;
  if (!absl::SimpleAtof(fields[2], &rating)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rating '", fields[2], "' is not a number"));
  }
  int64_t timestamp = 0;
  if (fields.size() == 4 && !fields[3].empty() &&
      !absl::SimpleAtoi(fields[3], &timestamp)) {
    return absl::InvalidArgumentError(
        absl::StrCat("timestamp '", fields[3], "' is not an integer"));
  }
  request->set_user_id(std::string(fields[0]));
  request->set_item_id(std::string(fields[1]));
  request->set_rating(rating);
  request->set_timestamp(timestamp);
  return absl::OkStatus();
}

}  // namespace internal

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Keeps the `n` problems with the lowest line numbers, sorted: acks arrive
// in any order, and the summary should not depend on it.
void KeepEarliest(LineProblem problem, int n, std::vector<LineProblem>* kept) {
  auto at = std::upper_bound(
      kept->begin(), kept->end(), problem.line,
      [](int64_t line, const LineProblem& p) { return line < p.line; });
  if (at - kept->begin() >= n) return;
  kept->insert(at, std::move(problem));
  if (static_cast<int>(kept->size()) > n) kept->pop_back();
}

// Whether the first line of a ratings file is a header: its rating is not
// a number.
bool IsRatingHeader(absl::string_view line, absl::string_view delimiter) {
  std::vector<absl::string_view> fields = absl::StrSplit(line, delimiter);
  float unused = 0;
  return fields.size() >= 3 &&
         !absl::SimpleAtof(absl::StripAsciiWhitespace(fields[2]), &unused);
}

// Reads a file of ratings or, with `events`, of events (CSV or JSON lines),
// one RateRequest per line.
class RatingFileReader {
 public:
  enum class Result { kRating, kBadLine, kEnd };

  RatingFileReader(std::istream& in, bool events) : in_(in), events_(events) {}

  // Reads up to the first non-blank line, which picks the delimiter and is
  // skipped when it is a header. Fails only when no line could be parsed
  // with any delimiter: then nothing in the file is usable. (An event file
  // whose first line is JSON needs no delimiter.)
  absl::Status Start(const std::string& name) {
    std::string text;
    while (NextLine(&text)) {
      if (absl::StripAsciiWhitespace(text).empty()) continue;
      if (events_ && internal::IsJsonLine(text)) {
        pending_ = std::move(text);
        return absl::OkStatus();
      }
      delimiter_ = internal::DetectDelimiter(text);
      if (delimiter_.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, ":", line_, ": no ',', tab or '::' between fields; expected ",
            events_ ? "user,item,type[,count[,timestamp[,event_id]]] or a "
                      "JSON object"
                    : "user,item,rating[,timestamp]"));
      }
      const bool header = events_ ? internal::IsEventHeader(text, delimiter_)
                                  : IsRatingHeader(text, delimiter_);
      if (!header) pending_ = std::move(text);
      return absl::OkStatus();
    }
    return absl::OkStatus();  // no lines at all: nothing to send
  }

  Result Next(v1::RateRequest* request, LineProblem* bad) {
    std::string text;
    if (pending_) {
      text = std::move(*pending_);
      pending_.reset();
    } else {
      do {
        if (!NextLine(&text)) return Result::kEnd;
      } while (absl::StripAsciiWhitespace(text).empty());
    }
    const absl::Status parsed = Parse(text, request);
    if (parsed.ok()) return Result::kRating;
    bad->line = line_;
    bad->code.clear();
    bad->message = std::string(parsed.message());
    return Result::kBadLine;
  }

  int64_t line() const { return line_; }
  bool failed() const { return in_.bad(); }

 private:
  bool NextLine(std::string* text) {
    if (!std::getline(in_, *text)) return false;
    ++line_;
    return true;
  }

  // An event file may hold JSON and delimited lines alike; a delimited line
  // after JSON ones brings its own delimiter.
  absl::Status Parse(absl::string_view text, v1::RateRequest* request) const {
    if (!events_) return internal::ParseRatingLine(text, delimiter_, request);
    if (internal::IsJsonLine(text)) {
      return internal::ParseEventJson(text, request);
    }
    const std::string delimiter =
        delimiter_.empty() ? internal::DetectDelimiter(text) : delimiter_;
    return internal::ParseEventLine(text, delimiter, request);
  }

  std::istream& in_;
  const bool events_;
  std::string delimiter_;
  std::optional<std::string> pending_;  // the first line, when it is data
  int64_t line_ = 0;
};

// Everything the three threads share, under `mu`.
struct Shared {
  std::mutex mu;
  std::condition_variable cv;
  std::unordered_map<uint64_t, int64_t> in_flight;  // stream index -> line
  uint64_t next_index = 0;
  bool first_write_done = false;
  bool acks_done = false;  // the call is over: no more acks, no more writes
  bool finished = false;   // writer joined: the monitor may stop
  bool timed_out = false;
  bool input_failed = false;
  Clock::time_point last_activity;
  RateFileSummary summary;
};

// "rating" or "event": what the file's lines are.
const char* Noun(const RateFileSummary& s) {
  return s.events ? "event" : "rating";
}

// What the server accepted, with the duplicates among them for events.
std::string Accepted(const RateFileSummary& s) {
  if (!s.events && s.duplicates == 0) return absl::StrCat(s.accepted);
  return absl::StrFormat("%d (%d duplicate%s)", s.accepted, s.duplicates,
                         s.duplicates == 1 ? "" : "s");
}

void PrintProgress(const RateFileSummary& s, double elapsed,
                   std::ostream& err) {
  const double rate =
      elapsed > 0 ? static_cast<double>(s.accepted + s.rejected) / elapsed : 0;
  err << absl::StrFormat(
             "\r%s: sent %d, accepted %s, rejected %d, unparsable %d, %.0f/s",
             s.file, s.sent, Accepted(s), s.rejected, s.unparsable, rate)
      << "\033[K" << std::flush;
}

// Acknowledgements per second over the whole call.
double PerSecond(const RateFileSummary& s) {
  return s.elapsed_seconds > 0
             ? static_cast<double>(s.accepted + s.rejected) / s.elapsed_seconds
             : 0;
}

Json SummaryJson(const RateFileSummary& s) {
  auto list = [](const std::vector<LineProblem>& problems) {
    Json json = Json::array();
    for (const LineProblem& p : problems) {
      Json o;
      o["line"] = p.line;
      if (!p.code.empty()) o["code"] = p.code;
      o["error"] = p.message;
      json.push_back(std::move(o));
    }
    return json;
  };
  Json j;
  j["file"] = s.file;
  j["lines"] = s.lines;
  j["sent"] = s.sent;
  j["accepted"] = s.accepted;
  j["duplicates"] = s.duplicates;
  j["rejected"] = s.rejected;
  j["unparsable"] = s.unparsable;
  j["unexpected_acks"] = s.unexpected_acks;
  j["unacknowledged"] = s.unacknowledged;
  j["elapsed_seconds"] = JsonNumber(s.elapsed_seconds);
  j[s.events ? "events_per_second" : "ratings_per_second"] =
      JsonNumber(PerSecond(s));
  j["rejections"] = list(s.rejections);
  j["bad_lines"] = list(s.bad_lines);
  return j;
}

void PrintSummary(const RateFileSummary& s, bool json, std::ostream& out) {
  if (json) {
    out << DumpJson(SummaryJson(s)) << "\n";
    return;
  }
  out << absl::StrFormat(
      "%s: %d line%s, sent %d, accepted %s, rejected %d, unparsable %d\n",
      s.file, s.lines, s.lines == 1 ? "" : "s", s.sent, Accepted(s), s.rejected,
      s.unparsable);
  out << absl::StrFormat("elapsed %.2fs, %.0f %ss/s\n", s.elapsed_seconds,
                         PerSecond(s), Noun(s));
  if (s.unexpected_acks > 0 || s.unacknowledged > 0) {
    out << absl::StrFormat(
        "server protocol errors: %d unexpected acknowledgements, %d %ss "
        "never acknowledged\n",
        s.unexpected_acks, s.unacknowledged, Noun(s));
  }
  auto list = [&](const char* what, int64_t total,
                  const std::vector<LineProblem>& problems) {
    if (total == 0) return;
    out << absl::StrFormat("%s (first %d of %d):\n", what, problems.size(),
                           total);
    for (const LineProblem& p : problems) {
      out << "  " << s.file << ":" << p.line << ": "
          << (p.code.empty() ? "" : p.code + ": ") << p.message << "\n";
    }
  };
  list("rejected", s.rejected, s.rejections);
  list("unparsable", s.unparsable, s.bad_lines);
}

using RateStream =
    grpc::ClientReaderWriterInterface<v1::RateRequest, v1::RateStreamResponse>;

// The file at command.path, opened into `file`, or io.in for "-".
absl::StatusOr<std::istream*> OpenInput(const RateFileOptions& command,
                                        const Streams& io,
                                        std::ifstream& file) {
  std::istream* in = io.in;
  if (command.path != "-") {
    file.open(command.path, std::ios::binary);
    if (!file) {
      return absl::NotFoundError(absl::StrCat("cannot open ", command.path,
                                              ": ", std::strerror(errno)));
    }
    in = &file;
  }
  return in;
}

// Sets one of the shared flags and wakes every waiting thread.
void Raise(Shared& shared, bool Shared::*flag) {
  std::lock_guard<std::mutex> lock(shared.mu);
  shared.*flag = true;
  shared.cv.notify_all();
}

// The monitor thread: draws the progress line on a terminal and cancels the
// call when ratings are in flight but nothing was acknowledged for longer
// than the timeout.
void Monitor(Shared& shared, Clock::time_point start,
             const ClientOptions& options, const Streams& io,
             grpc::ClientContext& context) {
  constexpr auto kProgressPeriod = std::chrono::milliseconds(100);
  Clock::time_point printed = start;
  std::unique_lock<std::mutex> lock(shared.mu);
  while (!shared.finished) {
    // Every ack wakes this thread too; the clock decides when to draw.
    shared.cv.wait_for(lock, kProgressPeriod);
    if (shared.finished) break;
    const Clock::time_point now = Clock::now();
    if (io.err_is_tty && now - printed >= kProgressPeriod) {
      PrintProgress(shared.summary, Seconds(now - start), *io.err);
      printed = now;
    }
    if (options.timeout > absl::ZeroDuration() && !shared.in_flight.empty() &&
        now - shared.last_activity >
            absl::ToChronoMilliseconds(options.timeout)) {
      shared.timed_out = true;
      context.TryCancel();
      break;
    }
  }
}

// The writer thread: sends the file's ratings, at most --max-in-flight
// unacknowledged at a time, and counts the unparsable lines.
void WriteRatings(RatingFileReader& reader, const RateFileOptions& command,
                  RateStream& stream, Shared& shared) {
  v1::RateRequest request;
  LineProblem bad;
  while (true) {
    const RatingFileReader::Result r = reader.Next(&request, &bad);
    if (r == RatingFileReader::Result::kEnd) break;
    std::unique_lock<std::mutex> lock(shared.mu);
    if (r == RatingFileReader::Result::kBadLine) {
      ++shared.summary.unparsable;
      KeepEarliest(bad, command.max_reported, &shared.summary.bad_lines);
      continue;
    }
    shared.cv.wait(lock, [&] {
      return shared.acks_done || shared.in_flight.size() <
                                     static_cast<size_t>(command.max_in_flight);
    });
    if (shared.acks_done) break;
    if (shared.in_flight.empty()) shared.last_activity = Clock::now();
    const uint64_t index = shared.next_index++;
    shared.in_flight.emplace(index, reader.line());
    ++shared.summary.sent;
    lock.unlock();
    const bool written = stream.Write(request);
    lock.lock();
    shared.first_write_done = true;
    shared.cv.notify_all();
    if (!written) {
      // The call is over; the rating never left, so it is not counted.
      shared.in_flight.erase(index);
      --shared.summary.sent;
      break;
    }
  }
  stream.WritesDone();
  std::lock_guard<std::mutex> lock(shared.mu);
  shared.summary.lines = reader.line();
  shared.input_failed = reader.failed();
  shared.first_write_done = true;
  shared.cv.notify_all();
}

// Counts one response's acknowledgements against the ratings in flight;
// the caller holds shared.mu.
void CountAcks(const v1::RateStreamResponse& response, int max_reported,
               Shared& shared) {
  RateFileSummary& s = shared.summary;
  for (const v1::RatingAck& ack : response.acks()) {
    auto it = shared.in_flight.find(ack.index());
    if (it == shared.in_flight.end()) {
      ++s.unexpected_acks;
      continue;
    }
    const int64_t line = it->second;
    shared.in_flight.erase(it);
    if (ack.accepted()) {
      ++s.accepted;
      if (ack.duplicate()) ++s.duplicates;
    } else {
      ++s.rejected;
      KeepEarliest(
          {line,
           absl::StatusCodeToString(static_cast<absl::StatusCode>(ack.code())),
           ack.error()},
          max_reported, &s.rejections);
    }
  }
}

// The caller's thread: reads acknowledgements until the call ends.
void ReadAcks(const RateFileOptions& command, RateStream& stream,
              Shared& shared) {
  {
    // Reading before anything was sent would race the corked metadata.
    std::unique_lock<std::mutex> lock(shared.mu);
    shared.cv.wait(lock, [&] { return shared.first_write_done; });
  }
  v1::RateStreamResponse response;
  while (stream.Read(&response)) {
    std::lock_guard<std::mutex> lock(shared.mu);
    CountAcks(response, command.max_reported, shared);
    shared.last_activity = Clock::now();
    shared.cv.notify_all();
  }
}

// The command's result once the summary is printed: the first of timeout,
// RPC error, input error, broken stream contract and rejected or unparsable
// lines.
absl::Status Outcome(const Shared& shared, const grpc::Status& status,
                     const ClientOptions& options, const std::string& name) {
  const RateFileSummary& s = shared.summary;
  if (shared.timed_out) {
    return internal::RpcError(grpc::Status(
        grpc::StatusCode::DEADLINE_EXCEEDED,
        absl::StrFormat("no acknowledgement from the server for %s",
                        absl::FormatDuration(options.timeout))));
  }
  RECSYS_RETURN_IF_ERROR(internal::RpcError(status));
  if (shared.input_failed) {
    return absl::DataLossError(
        absl::StrCat("error reading ", name, " after line ", s.lines));
  }
  if (s.unexpected_acks > 0 || s.unacknowledged > 0) {
    return absl::InternalError(absl::StrFormat(
        "the server broke the RateStream contract: %d unexpected "
        "acknowledgements, %d %ss never acknowledged",
        s.unexpected_acks, s.unacknowledged, Noun(s)));
  }
  if (s.rejected > 0 || s.unparsable > 0) {
    return internal::OutcomeError(
        absl::StatusCode::kAborted,
        absl::StrFormat("%d %s%s rejected, %d line%s unparsable", s.rejected,
                        Noun(s), s.rejected == 1 ? "" : "s", s.unparsable,
                        s.unparsable == 1 ? "" : "s"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunRateFile(const ClientOptions& options,
                         const RateFileOptions& command, RecommenderStub& stub,
                         const Streams& io, RateFileSummary* summary_out) {
  if (command.path.empty()) {
    return UsageError(command.events ? "event --file needs a path"
                                     : "rate --file needs a path");
  }
  if (command.max_in_flight < 1) {
    return UsageError("--max-in-flight must be at least 1");
  }
  std::ifstream file;
  RECSYS_ASSIGN_OR_RETURN(std::istream* const in, OpenInput(command, io, file));
  const std::string name = command.path == "-" ? "stdin" : command.path;
  RatingFileReader reader(*in, command.events);
  RECSYS_RETURN_IF_ERROR(reader.Start(name));

  Shared shared;
  shared.summary.file = name;
  shared.summary.events = command.events;
  shared.in_flight.reserve(static_cast<size_t>(command.max_in_flight));
  const Clock::time_point start = Clock::now();
  shared.last_activity = start;

  grpc::ClientContext context;  // no overall deadline: see client.h
  // Corked, creating the stream returns at once instead of waiting for a
  // connection, so the monitor's timeout also covers an unreachable server.
  context.set_initial_metadata_corked(true);
  std::unique_ptr<RateStream> stream = stub.RateStream(&context);

  std::thread monitor([&] { Monitor(shared, start, options, io, context); });
  std::thread writer([&] { WriteRatings(reader, command, *stream, shared); });
  ReadAcks(command, *stream, shared);
  Raise(shared, &Shared::acks_done);
  writer.join();
  Raise(shared, &Shared::finished);
  monitor.join();
  const grpc::Status status = stream->Finish();

  RateFileSummary& s = shared.summary;
  s.elapsed_seconds = Seconds(Clock::now() - start);
  s.unacknowledged = static_cast<int64_t>(shared.in_flight.size());
  if (io.err_is_tty) *io.err << "\r\033[K" << std::flush;
  // A call that failed before any acknowledgement has nothing to sum up;
  // its error says it all.
  if (status.ok() || s.accepted + s.rejected > 0) {
    PrintSummary(s, options.json, *io.out);
  }
  if (summary_out != nullptr) *summary_out = s;
  return Outcome(shared, status, options, name);
}

}  // namespace recsys
