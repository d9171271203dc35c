// The one replay loop: records applied to a generation in log order, as a
// restart replays them (Engine::Open), as a replica applies its primary's
// (ApplyReplicated) and as a new model takes the ratings accepted while it
// trained (RunTraining). Runs of catalogue entries are applied together,
// publishing one copy of the items: one at a time, 10,000 new items took
// 5 s to replay.
//
//   Engine::Replayer replay(engine, generation);
//   for (const LogRecord& rec : records) replay.Add(rec);
//   replay.Finish();
#ifndef RECSYS_ENGINE_REPLAY_H_
#define RECSYS_ENGINE_REPLAY_H_

#include <vector>

#include "engine/engine.h"
#include "engine/state.h"

namespace recsys {

class Engine::Replayer {
 public:
  Replayer(Engine& engine, internal::Generation& g) : engine_(engine), g_(g) {}

  void Add(const LogRecord& rec) {
    if (rec.entry != nullptr) {
      entries_.push_back(rec);
      return;
    }
    Flush();
    engine_.Apply(g_, rec);
  }
  // Applies the entries still held; call once after the last Add.
  void Finish() { Flush(); }

 private:
  void Flush() {
    if (entries_.empty()) return;
    std::vector<const LogRecord*> batch;
    batch.reserve(entries_.size());
    for (const LogRecord& rec : entries_) batch.push_back(&rec);
    engine_.ApplyEntries(g_, batch);
    entries_.clear();
  }

  Engine& engine_;
  internal::Generation& g_;
  std::vector<LogRecord> entries_;  // catalogue entries not applied yet
};

}  // namespace recsys

#endif  // RECSYS_ENGINE_REPLAY_H_
