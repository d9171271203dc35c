// The serving engine: a trained model plus everything accepted since, kept
// durable, answering queries without ever blocking readers.
//
//   EngineOptions opt;
//   opt.data_dir = "/var/lib/recsys";
//   RECSYS_ASSIGN_OR_RETURN(auto engine, Engine::Open(opt, make_first_model));
//   RECSYS_ASSIGN_OR_RETURN(RateResult r, engine->Rate({"u1", "i9", 4.5f, 0}));
//   RECSYS_ASSIGN_OR_RETURN(RecommendResult top, engine->Recommend({"u1"}));
//
// State: one immutable trained Model per generation, wrapped in a Generation
// that also holds (a) the items that arrived after training and the
// catalogue entries (title, genres, retired) as edited since, copy-on-write,
// and (b) per-user state for every user who rated since, in a sharded map of
// immutable entries. Readers take shared_ptr copies and never wait on a
// writer for long: a shard lock is held only to copy a pointer.
//
// Durability: a rating is appended to the RatingLog (fsynced per its policy)
// before it is applied and acknowledged. The data directory holds snapshot
// files "snapshot-<generation>-<log seq>.rsm" (whole models, ratings
// included) and the log; Open loads the newest snapshot and replays the log
// records after its log_sequence. A snapshot holds exactly the records up to
// its log_sequence (GenerationView), which matters for events: an event adds
// to its pair, so one applied twice would count twice (a rating applied
// twice is harmless: it replaces the same value).
//
// Training runs in the background on a materialised copy of the state; when
// it ends, the new model becomes the next generation and every rating
// accepted meanwhile is replayed into it before it serves.
#ifndef RECSYS_ENGINE_ENGINE_H_
#define RECSYS_ENGINE_ENGINE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "base/mutex.h"
#include "models/fold_in.h"
#include "models/model.h"
#include "models/selection.h"
#include "models/train.h"
#include "storage/rating_log.h"

namespace recsys {

inline constexpr size_t kMaxIdBytes = 256;
inline constexpr int kMaxK = 1000;
inline constexpr size_t kMaxListItems = 10000;
// The largest weight one record of implicit feedback may add (a plain
// rating's value, or an event's type weight times its count), so that a
// pair's sum stays finite (a sum past float's range would poison the
// user's vector with infinities).
inline constexpr float kMaxWeight = 1e9f;

struct EngineOptions {
  // What training means when a caller names nothing (Train with no kind,
  // automatic retraining of a selected model): the server's kind (auto by
  // default), selection on or off, and selection's budget.
  TrainingSpec training;
  std::string data_dir = "recsys-data";
  RatingLogOptions log;
  int train_threads = 0;  // 0 = one per core
  // Write a snapshot (and drop covered log segments) after this many
  // logged ratings and catalogue entries; 0 disables periodic snapshots.
  int64_t snapshot_every = 100000;
  // Snapshot files kept besides the newest.
  int keep_snapshots = 1;
  // Memory for the fold-in equations of recently active users, so that a
  // rating updates them instead of re-solving from all of the user's
  // ratings (hybrid: ~15 KB per user; sgd at 128 factors: ~67 KB). 0 = none.
  int64_t fold_in_cache_bytes = int64_t{256} << 20;
  // Events of implicit feedback (RatingInput::event_type): the weight of
  // one event of each type the engine accepts.
  std::map<std::string, float> event_weights = {
      {"click", 1.0f}, {"play", 1.0f}, {"purchase", 1.0f}, {"view", 1.0f}};
  // Event ids remembered (the newest), so that a retried event counts once.
  int64_t event_id_window = 1000000;
};

struct RatingInput {
  std::string user;
  std::string item;
  float value = 0;
  int64_t timestamp = 0;  // 0 = now
  // An event instead of a rating (a model of implicit feedback only): its
  // type, one of EngineOptions::event_weights, and how many times it
  // happened (0 = once). Its weight, the type's times the count, adds to
  // the pair's (as a plain rating's value does on implicit feedback).
  // `value` must be 0.
  std::string event_type = {};
  float count = 0;
  // Optional: an event whose id the engine remembers is not recorded again
  // (RateResult::duplicate, with the first one's sequence).
  std::string event_id = {};
};

struct RateResult {
  uint64_t sequence = 0;
  bool new_user = false;
  bool new_item = false;
  bool duplicate = false;  // an event id already recorded: nothing new
};

struct ItemView {
  std::string id;
  std::string title;
  std::vector<std::string> genres;
  bool retired = false;  // withdrawn: never recommended (UpsertItems)
};

// An item a visitor who is not a stored user rated in this session.
struct SessionRating {
  std::string item;
  float value = 0;
};

struct RecommendQuery {
  std::string user;
  int k = 10;
  bool include_rated = false;
  std::vector<std::string> exclude;
  std::string genre;
  std::vector<std::string> candidates;
  // Instead of `user` (which must then be empty): rank for a visitor from
  // these ratings, folded in for this call only (nothing is stored). The
  // items count as rated; ids the model does not know are listed in
  // RecommendResult::unknown_items. A later rating of the same item wins.
  std::vector<SessionRating> session;
  // UNAVAILABLE unless the state answering holds the log up to here (read
  // your writes on a replica: a RateResult::sequence); 0 = any state.
  uint64_t min_log_sequence = 0;
};

struct RecommendedItem {
  ItemView item;
  float predicted_rating = 0;  // when has_predicted_rating
  float score = 0;
  bool has_predicted_rating = true;  // false: implicit feedback
};

// One recommended item as the visitor of Engine::Recommend sees it:
// references into the serving state, valid only during the call.
struct RecommendedItemRef {
  const std::string& id;
  const ItemInfo& info;
  float predicted_rating = 0;  // when has_predicted_rating
  float score = 0;
  // A model of implicit feedback predicts no ratings.
  bool has_predicted_rating = true;
};

struct RecommendResult {
  std::vector<RecommendedItem> items;
  bool personalized = false;
  uint64_t model_version = 0;
  // Candidate and session items the model does not know.
  std::vector<std::string> unknown_items;
  Feedback feedback = Feedback::kExplicit;  // implicit: no predicted ratings
};

struct SimilarResult {
  ItemView item;
  std::vector<std::pair<ItemView, float>> similar;
  uint64_t model_version = 0;
};

struct UserRatingView {
  ItemView item;
  float value = 0;
  int64_t timestamp = 0;
};

struct DeleteUserResult {
  uint64_t sequence = 0;        // the erasure's log sequence number
  int64_t ratings_deleted = 0;  // the user's ratings at that point
};

// A change to one catalogue entry (Engine::UpsertItems): the fields set
// replace the item's, the others stay as they are (for an item new to the
// catalogue: no title, no genres, not retired).
struct ItemUpdate {
  std::string id;
  std::optional<std::string> title;
  std::optional<std::vector<std::string>> genres;
  std::optional<bool> retired;
};

struct UpsertItemsResult {
  // The last entry's log sequence; 0 when no item ends the call with an
  // entry other than the one it had (nothing was logged).
  uint64_t sequence = 0;
  int32_t added = 0;      // updates that added an item to the catalogue
  int32_t changed = 0;    // updates that changed a known item's entry
  int32_t unchanged = 0;  // updates that changed nothing (not logged)
};

struct UserResult {
  int64_t rating_count = 0;
  std::vector<UserRatingView> recent;  // newest first
  bool personalized = false;
};

struct EngineInfo {
  ModelKind kind = ModelKind::kSgd;
  uint64_t version = 0;
  int32_t factors = 0;
  int64_t users = 0;
  int64_t items = 0;
  int64_t retired_items = 0;  // of `items`
  int64_t ratings = 0;
  double train_seconds = 0;
  RatingScale scale;
  Feedback feedback = Feedback::kExplicit;
  std::map<std::string, float> event_weights;  // EngineOptions'
  // Events accepted since start, by type (every configured type listed).
  std::vector<std::pair<std::string, uint64_t>> events_accepted;
  double last_validation_rmse = -1;
  // What ranks and what predicts ratings, and how selection chose them.
  std::string ranking_kind, rating_kind;
  SelectionReport selection;
  int64_t ratings_since_training = 0;
  uint64_t log_sequence = 0;
  std::string training_job;
  // Kept fold-in equations (EngineOptions::fold_in_cache_bytes): held now,
  // and since start how often a rating found its user's equations kept or
  // had to rebuild them.
  int64_t fold_in_cache_bytes = 0;
  int64_t fold_in_cache_users = 0;
  uint64_t fold_in_cache_hits = 0;
  uint64_t fold_in_cache_misses = 0;
};

// A snapshot file of the serving model (Engine::NewestSnapshot).
struct SnapshotRef {
  std::string path;
  uint64_t generation = 0;  // the model version it holds
  uint64_t log_sequence = 0;
};

struct TrainSpec {
  // The kind (empty: any, chosen by model selection), the settings given,
  // and whether selection searches the rest (models/selection.h; budget
  // and the like in `model.selection`).
  TrainingSpec model;
  // Share of the ratings held out for a validation report. Unset: with
  // selection, none beyond selection's own split (the winner is refit on
  // every rating); without, 0.05 at random. With selection, a share set
  // here becomes selection's per-user split and the model is not refit.
  std::optional<double> validation_fraction;
  // Automatic retraining: again as the serving model was made. A selected
  // model is selected again (with `model`'s kind and options, not the
  // settings a Train call pinned); one trained as told keeps its kind and
  // hyper-parameters.
  bool keep_params = false;
};

struct TrainingUpdate {
  enum State { kRunning, kSucceeded, kFailed, kCancelled } state = kRunning;
  // A model-selection trial that just finished (then no epoch is set).
  std::optional<SelectionTrial> trial;
  int epoch = 0;
  int epochs = 0;
  double train_rmse = 0;
  double validation_rmse = -1;
  double elapsed_seconds = 0;
  uint64_t model_version = 0;
  std::string error;
  int64_t ratings_folded_after = 0;
};

namespace internal {
class EventIds;
struct Generation;
struct NewItems;
struct TrainingJob;
struct UserState;
struct UserView;
}  // namespace internal

// A generation's per-user states and new items at one moment: pointers to
// immutable objects, taken while no writer applies (swap_mu_ held
// exclusive), so that materialising them afterwards, while writers go on,
// holds exactly the records up to that moment. (Replaying a rating twice
// is harmless, but an event adds: a snapshot or a training cut must not
// hold records after its log sequence.)
struct GenerationView {
  std::shared_ptr<const internal::NewItems> items;
  std::vector<
      std::pair<std::string, std::shared_ptr<const internal::UserState>>>
      users;
};

class Engine {
 public:
  // Loads the newest snapshot in options.data_dir (or, when there is none,
  // the model `first_model` returns, saved as the first snapshot), opens the
  // log and replays it.
  static absl::StatusOr<std::unique_ptr<Engine>> Open(
      const EngineOptions& options,
      const std::function<absl::StatusOr<Model>()>& first_model);
  ~Engine();

  absl::StatusOr<RecommendResult> Recommend(const RecommendQuery& q) const;
  // The same without copying the items: `emit` sees each one, best first,
  // before Recommend returns, and the result's `items` stays empty. For a
  // caller that copies them somewhere anyway (the gRPC response), this
  // saves a copy of every id, title and genre.
  absl::StatusOr<RecommendResult> Recommend(
      const RecommendQuery& q,
      absl::FunctionRef<void(const RecommendedItemRef&)> emit) const;
  absl::StatusOr<RateResult> Rate(const RatingInput& rating);
  // Validates each, makes the valid ones durable together (one log append),
  // applies them; one result per input, in order.
  std::vector<absl::StatusOr<RateResult>> RateBatch(
      const std::vector<RatingInput>& ratings);
  absl::StatusOr<SimilarResult> SimilarItems(const std::string& item,
                                             int k) const;
  // `min_log_sequence` as in RecommendQuery.
  absl::StatusOr<UserResult> GetUser(const std::string& user, int recent,
                                     uint64_t min_log_sequence = 0) const;
  // Erases a user: their ratings, vector and id. Once it returns OK the
  // erasure is durable (a log record) and no file of the data directory
  // holds the user any more: a snapshot without them has been written, and
  // the older snapshots and the log segments it covers are deleted. The
  // serving model's item vectors still reflect the user's ratings until the
  // next training. A later rating makes them a new user. NOT_FOUND for a
  // user the engine does not know (or no longer knows); that call also
  // retries a snapshot an earlier erasure could not write.
  absl::StatusOr<DeleteUserResult> DeleteUser(const std::string& user);
  // DeleteUser for many users, with one log append and one snapshot: one
  // result per input, in order, with sequence 0 for a user the engine does
  // not know (or already erased, or named earlier in the list).
  // INVALID_ARGUMENT, naming the first bad id (user_ids[i]), for an empty or
  // over-long id or more than kMaxListItems ids; INTERNAL as DeleteUser.
  absl::StatusOr<std::vector<DeleteUserResult>> DeleteUsers(
      const std::vector<std::string>& users);
  // Adds items to the catalogue or changes their entries, all or none:
  // INVALID_ARGUMENT, naming the first bad update, for an empty or
  // over-long id, a title or genre over the limits (RatingLog::kMax*), an
  // empty or repeated genre, a genre with '|' (the separator of genre
  // lists), or more than kMaxListItems updates. Once it returns OK the
  // entries are durable (log records) and served. An added item has no
  // vector until it is rated. A retired item is never recommended nor listed
  // as similar, but keeps its ratings and may still be rated; `retired =
  // false` restores it.
  absl::StatusOr<UpsertItemsResult> UpsertItems(
      const std::vector<ItemUpdate>& updates);
  // The item's catalogue entry; NOT_FOUND for an unknown item.
  absl::StatusOr<ItemView> GetItem(const std::string& id) const;
  EngineInfo Info() const;
  // EngineOptions::training: what Train asks for by default.
  const TrainingSpec& default_training() const { return options_.training; }

  // Starts a background training job; ALREADY_EXISTS while one runs.
  absl::StatusOr<std::string> StartTraining(const TrainSpec& spec);
  // The job's updates from index `from` on, waiting until there is at least
  // one or `deadline` passes (then an empty list). `done` tells whether the
  // job has ended and every update was returned. NOT_FOUND for unknown ids.
  absl::StatusOr<std::vector<TrainingUpdate>> WatchTraining(
      const std::string& job_id, size_t from, absl::Time deadline,
      bool* done) const;
  // Stops a running job at the end of its current epoch (or sweep); the
  // serving model stays and the job ends kCancelled. NOT_FOUND for unknown
  // ids; FAILED_PRECONDITION once the job has ended or is swapping its
  // model in.
  absl::Status CancelTraining(const std::string& job_id);
  // The same for whichever job runs, if any (at shutdown: a job can run for
  // hours, and its model would not outlive the process anyway).
  void CancelRunningTraining();
  // Waits for the running job (if any) to end.
  void WaitForTraining();
  // Periodic snapshots (EngineOptions::snapshot_every) are written on a
  // thread of their own, off the write path; this waits until none is due
  // or being written (tests; shutdown).
  void WaitForSnapshots();

  // Writes a snapshot of the current state and drops the log segments it
  // covers (and the older snapshots: those past `keep_snapshots`, and any
  // written before an erasure).
  absl::Status WriteSnapshot();
  // Flushes the log; call before exit.
  absl::Status Sync();

  const RatingLog& log() const { return *log_; }
  // The serving model's version (a new one per trained or installed model).
  uint64_t generation() const;
  // The log sequence the answers reflect: every record up to it is applied
  // (on a primary, the newest applied; every acknowledged one is).
  uint64_t applied_sequence() const { return applied_seq_.load(); }

  // Read replicas (server/replication.h).
  // On the primary: the newest snapshot file, which a replica starts from.
  // UNAVAILABLE while there is none of the serving model yet (a training
  // job's model serves before its snapshot is written).
  absl::StatusOr<SnapshotRef> NewestSnapshot() const;
  // On a replica: records of the primary's log, with its seq numbers. Logs
  // those this engine does not hold yet (RatingLog::AppendNumbered:
  // FAILED_PRECONDITION for a gap) and applies them all, in order, as a
  // restart replays them. An erasure among them is followed by a snapshot,
  // as DeleteUser's is, so that no file here holds the user.
  absl::Status ApplyReplicated(std::vector<LogRecord> records);
  // On a replica: serves `model`, a snapshot of the primary's (everything up
  // to its log_sequence), as model version `generation`, in place of the
  // current state. It is written as this engine's snapshot first; the log
  // then goes on from its log_sequence, and every older snapshot and every
  // log segment it covers is deleted. Records after its log_sequence that
  // this engine had applied must be applied again (ApplyReplicated).
  absl::Status InstallSnapshot(Model model, uint64_t generation);

 private:
  // Applies records in a chosen order, as racing writers may (tests only).
  friend class EngineTestPeer;
  class Replayer;

  explicit Engine(const EngineOptions& options);
  std::shared_ptr<internal::Generation> current() const;
  absl::StatusOr<std::shared_ptr<internal::TrainingJob>> FindJob(
      const std::string& job_id) const;
  absl::Status Cancel(internal::TrainingJob& job);
  absl::Status ValidateRating(const internal::Generation& g,
                              const RatingInput& r) const;
  // An event's weight: its type's times its count (0 = once). The type
  // must be one of options_.event_weights.
  float EventWeight(const RatingInput& r) const;
  // ValidateRating's checks of an event (`implicit`: the model's feedback).
  absl::Status ValidateEvent(bool implicit, const RatingInput& r) const;
  // The one write path, with swap_mu_ held shared: appends `records` to the
  // log (durable per its policy; each gets its seq), applies them with
  // `apply` (to the generation the caller holds), journals them for a
  // running training and publishes their sequence to readers. Returns the
  // last seq; nothing is applied when the append fails.
  absl::StatusOr<uint64_t> Commit(std::vector<LogRecord>* records,
                                  absl::FunctionRef<void()> apply)
      ABSL_SHARED_LOCKS_REQUIRED(swap_mu_);
  // Applies a durable record to generation `g` (under swap_mu_ shared).
  RateResult Apply(internal::Generation& g, const LogRecord& rec);
  // Applies an erasure record, with g.write_mu of the user's shard held;
  // returns how many ratings it erased.
  int64_t Erase(internal::Generation& g, const LogRecord& rec);
  // Applies one user's records (in log order) and folds the user in once.
  std::vector<RateResult> ApplyUser(internal::Generation& g,
                                    absl::Span<const LogRecord* const> recs);
  // Appends a zero row for the next new item to `next` (under
  // g.new_items_mu; the caller adds its id and entry).
  void AddNewItemRow(internal::Generation& g, internal::NewItems* next);
  // Applies catalogue entries (under swap_mu_ shared), publishing one copy
  // of the items; returns how many items they added.
  int32_t ApplyEntries(internal::Generation& g,
                       absl::Span<const LogRecord* const> recs);
  // Adds or updates a new item's rating by rec.user and folds the item's
  // vector in again; returns its global index.
  int32_t FoldInNewItem(internal::Generation& g, const LogRecord& rec,
                        const internal::UserView& user);
  // Folds the vector of new item `local` in again from its raters into
  // `next` (under g.new_items_mu). `self` stands for rater `self_id`, whose
  // new state is not published yet.
  void FoldNewItemAgain(internal::Generation& g, int32_t local,
                        const std::string& self_id,
                        const internal::UserView& self,
                        internal::NewItems* next);
  // Raises erased_seq_ to `seq` (never lowers it).
  void NoteErasure(uint64_t seq);
  // Raises applied_seq_ to `seq` (never lowers it).
  void NoteApplied(uint64_t seq);
  // UNAVAILABLE when applied_seq_ is below `min` (call after taking the
  // generation that will answer: InstallSnapshot lowers it first).
  absl::Status CheckApplied(uint64_t min) const;
  // WriteSnapshot with snapshot_mu_ held.
  absl::Status WriteSnapshotLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(snapshot_mu_);
  // Adds `records` just logged to the count since the last snapshot, and
  // asks the snapshot thread for one when the count reaches
  // options_.snapshot_every (requests while one is written coalesce).
  void CountLogged(int64_t records);
  // The snapshot thread: writes a snapshot whenever one is asked for and
  // still due, until the engine stops it.
  void SnapshotLoop();
  void StartSnapshotThread();
  void StopSnapshotThread();
  // Trains as `spec` asks (with `exact`, those hyper-parameters for the
  // spec's kind) and swaps the result in.
  void RunTraining(std::shared_ptr<internal::TrainingJob> job,
                   TrainingSpec spec, std::optional<Hyperparameters> exact,
                   double validation_fraction);
  // RunTraining's steps: the journal started and the cut fixed (returns
  // the seq every applied record is at or below); the new generation
  // swapped in with the journal replayed into it (returns how many
  // records); the job's end published.
  uint64_t StartJournal(std::shared_ptr<internal::Generation>* g,
                        GenerationView* view);
  int64_t SwapIn(std::shared_ptr<internal::Generation> next, uint64_t seq);
  void FinishJob(internal::TrainingJob& job, const TrainingUpdate& u);

  // The resolved record of a valid input (value = an event's weight).
  LogRecord RecordOf(const RatingInput& r) const;
  // Records (in `records`, each from input positions[j]) whose event ids
  // the engine has seen: their results are set (a duplicate, or UNAVAILABLE
  // while the first is being recorded) and they are dropped; the ids of the
  // rest are reserved. Returns the reserved ids.
  std::vector<std::string> ClaimEventIds(
      std::vector<LogRecord>* records, std::vector<size_t>* positions,
      std::vector<absl::StatusOr<RateResult>>* results);
  // Counts the accepted events among `records` by type.
  void CountEvents(const std::vector<LogRecord>& records);

  EngineOptions options_;
  std::unique_ptr<RatingLog> log_;
  // Recent event ids (engine/events.h); accepted events by type, one
  // counter per configured type (the map is fixed at construction).
  std::unique_ptr<internal::EventIds> event_ids_;
  std::map<std::string, std::unique_ptr<std::atomic<uint64_t>>> event_counts_;
  // The serving generation; replaced (under swap_mu_ exclusive) when a new
  // model is trained. Accessed with std::atomic_load/store.
  std::shared_ptr<internal::Generation> current_;
  // Rate holds it shared from log append to apply, so a generation swap sees
  // every acknowledged rating either in the old generation (and replays it)
  // or lands it in the new one. Snapshots and swaps take it exclusive; a
  // waiting writer keeps new readers out (absl::Mutex does not starve
  // writers), so a snapshot gets in between Rates that never pause. A thread
  // must not take it shared twice: with a writer waiting in between, the
  // second would wait forever.
  //
  // Lock order, outermost first: catalogue_mu_ or snapshot_mu_ (never
  // both), swap_mu_, a generation's write_mu[shard] (in increasing shard
  // order), its new_items_mu, then a Shard::mu; journal_mu_ and the log's
  // own mutex sit under swap_mu_ and take nothing else. jobs_mu_ is taken
  // alone.
  mutable absl::Mutex swap_mu_;
  // Set while a training job runs; written under swap_mu_ exclusive, read
  // under it shared.
  bool journaling_ ABSL_GUARDED_BY(swap_mu_) = false;
  // Records applied since the serving model's log_sequence, for replay into
  // the next generation.
  absl::Mutex journal_mu_;
  std::vector<LogRecord> journal_ ABSL_GUARDED_BY(journal_mu_);
  std::atomic<int64_t> since_snapshot_{0};
  std::atomic<uint64_t> fold_in_cache_hits_{0};
  std::atomic<uint64_t> fold_in_cache_misses_{0};
  absl::Mutex snapshot_mu_;  // one snapshot writer at a time
  // The snapshot thread's requests, and whether it is writing one.
  std::mutex snapshot_request_mu_;
  std::condition_variable snapshot_cv_;
  bool snapshot_requested_ = false;  // guarded by snapshot_request_mu_
  bool snapshot_running_ = false;    // guarded by snapshot_request_mu_
  bool stop_snapshots_ = false;      // guarded by snapshot_request_mu_
  std::thread snapshotter_;
  // One UpsertItems at a time, from reading the entries it changes to
  // applying the new ones, so that no change is lost to a concurrent one.
  absl::Mutex catalogue_mu_;
  // Records up to here are in no file but the newest snapshot (the log
  // segments that held them are deleted): an erasure up to it is complete
  // on disk.
  uint64_t purged_seq_ ABSL_GUARDED_BY(snapshot_mu_) = 0;
  // The newest erasure applied: older snapshots may hold the user.
  std::atomic<uint64_t> erased_seq_{0};
  // See applied_sequence().
  std::atomic<uint64_t> applied_seq_{0};

  mutable absl::Mutex jobs_mu_;
  std::map<std::string, std::shared_ptr<internal::TrainingJob>> jobs_
      ABSL_GUARDED_BY(jobs_mu_);
  std::shared_ptr<internal::TrainingJob> running_ ABSL_GUARDED_BY(jobs_mu_);
  std::thread trainer_ ABSL_GUARDED_BY(jobs_mu_);
  uint64_t next_job_ ABSL_GUARDED_BY(jobs_mu_) = 1;
};

// The name of the snapshot file (in a data directory) of model version
// `generation` holding the log's records up to `seq`.
std::string SnapshotFileName(uint64_t generation, uint64_t seq);
// Whether the data directory `dir` holds a snapshot (false when it does not
// exist).
bool HasSnapshot(const std::string& dir);

GenerationView ViewOf(const internal::Generation& g);

// The materialised state of a generation as one Model (trained rows plus
// folded users and new items, every rating in user_ratings), as `view`
// holds it: what snapshots store and what retraining starts from.
Model Materialize(const internal::Generation& g, const GenerationView& view,
                  uint64_t log_sequence);
// The ratings of a model as training data (same ids, catalogue and scale).
RatingData RatingsOf(const Model& m);

}  // namespace recsys

#endif  // RECSYS_ENGINE_ENGINE_H_
