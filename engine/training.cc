// Background training jobs: start, watch, cancel, and the swap of the new
// model in (every rating accepted meanwhile replayed into it).
#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "engine/engine.h"
#include "engine/replay.h"
#include "engine/state.h"
#include "models/model_io.h"
#include "models/selection.h"
#include "models/train.h"

namespace recsys {

using internal::Generation;
using internal::NowSeconds;

absl::StatusOr<std::string> Engine::StartTraining(const TrainSpec& spec) {
  const std::shared_ptr<const Model> serving = current()->model;
  TrainingSpec model = spec.keep_params ? options_.training : spec.model;
  const bool keep_exact = spec.keep_params && serving->selection.empty();
  if (keep_exact) {
    // Trained as told: again so, with the serving hyper-parameters.
    model.kind = serving->kind;
    model.select = false;
    RECSYS_RETURN_IF_ERROR(
        ValidateHyperparameters(serving->kind, serving->params));
  } else {
    RECSYS_RETURN_IF_ERROR(ValidateSpec(model));
  }
  const double fraction =
      spec.validation_fraction.value_or(SpecSearches(model) ? 0.0 : 0.05);
  if (!(fraction >= 0 && fraction <= 0.5)) {
    return absl::InvalidArgumentError(
        "validation_fraction must be in [0, 0.5]");
  }
  if (SpecSearches(model) && fraction > 0) {
    model.selection.validation_fraction = fraction;
    model.selection.refit = false;
  }
  MutexLock lock(&jobs_mu_);
  if (running_ != nullptr) {
    return absl::AlreadyExistsError(
        absl::StrCat("training job ", running_->id, " is already running"));
  }
  if (trainer_.joinable()) trainer_.join();  // the previous, finished job
  auto job = std::make_shared<internal::TrainingJob>();
  job->id = absl::StrCat("train-", next_job_++, "-", NowSeconds());
  jobs_[job->id] = job;
  running_ = job;
  std::optional<Hyperparameters> exact;
  if (keep_exact) exact = serving->params;
  trainer_ = std::thread([this, job, model, exact, fraction] {
    RunTraining(job, model, exact, fraction);
  });
  return job->id;
}

namespace {

// The fit itself: as the spec asks (selection, or `exact`, or the spec's
// settings with `validation_fraction` held out), each epoch and trial
// pushed to the job's watchers; `last` is the newest epoch's update.
absl::StatusOr<Model> FitForJob(internal::TrainingJob& job,
                                const RatingData& all, TrainingSpec spec,
                                const std::optional<Hyperparameters>& exact,
                                double validation_fraction, int threads,
                                TrainingUpdate* last) {
  TrainOptions opt;
  opt.threads = threads;
  opt.stop = [&job] { return job.cancel.load(std::memory_order_relaxed); };
  opt.on_epoch = [&](const EpochReport& r) {
    last->state = TrainingUpdate::kRunning;
    last->trial.reset();
    last->epoch = r.epoch;
    last->epochs = r.epochs;
    last->train_rmse = r.train_rmse;
    last->validation_rmse = r.validation_rmse;
    last->elapsed_seconds = r.elapsed_seconds;
    job.Push(*last, false);
  };
  const auto start = std::chrono::steady_clock::now();
  if (SpecSearches(spec)) {
    // Each finished trial goes to the watchers as it comes.
    spec.selection.on_trial = [&](const SelectionTrial& t) {
      TrainingUpdate u;
      u.trial = t;
      u.elapsed_seconds = std::chrono::duration<double>(
                              std::chrono::steady_clock::now() - start)
                              .count();
      job.Push(u, false);
    };
    absl::StatusOr<Model> trained = TrainWithSpec(all, spec, opt);
    if (trained.ok()) last->validation_rmse = trained->last_validation_rmse;
    return trained;
  }
  const ModelKind kind = spec.kind.value_or(AutoKind(all.feedback));
  const Hyperparameters params =
      exact ? *exact : ResolveParams(kind, spec.params);
  RatingData train, validation;
  const RatingData* fit = &all;
  if (validation_fraction > 0) {
    RandomSplit(all, validation_fraction, params.seed ^ 0x5eed, &train,
                &validation);
    fit = &train;
    opt.validation = &validation;
  }
  return TrainModel(*fit, kind, params, opt);
}

}  // namespace

void Engine::FinishJob(internal::TrainingJob& job, const TrainingUpdate& u) {
  {
    MutexLock swap(&swap_mu_);
    journaling_ = false;
  }
  {
    MutexLock lock(&jobs_mu_);
    running_ = nullptr;
  }
  job.Push(u, /*last=*/true);
}

uint64_t Engine::StartJournal(std::shared_ptr<Generation>* g,
                              GenerationView* view) {
  MutexLock swap(&swap_mu_);
  *g = current();
  *view = ViewOf(**g);
  journaling_ = true;
  MutexLock lock(&journal_mu_);
  journal_.clear();
  return log_->last_seq();
}

int64_t Engine::SwapIn(std::shared_ptr<Generation> next, uint64_t seq) {
  int64_t replayed = 0;
  MutexLock swap(&swap_mu_);
  std::vector<LogRecord> journal;
  {
    MutexLock lock(&journal_mu_);
    journal.swap(journal_);
  }
  // In log order, as a restart would replay them (writers of different
  // users journal in the order they finish).
  std::sort(
      journal.begin(), journal.end(),
      [](const LogRecord& a, const LogRecord& b) { return a.seq < b.seq; });
  Replayer replay(*this, *next);
  for (const LogRecord& rec : journal) {
    if (rec.seq <= seq) continue;
    ++replayed;
    replay.Add(rec);
  }
  replay.Finish();
  std::atomic_store(&current_, next);
  journaling_ = false;
  return replayed;
}

void Engine::RunTraining(std::shared_ptr<internal::TrainingJob> job,
                         TrainingSpec spec,
                         std::optional<Hyperparameters> exact,
                         double validation_fraction) {
  // Start the journal and fix the cut: every record <= seq is applied.
  std::shared_ptr<Generation> g;
  GenerationView view;
  const uint64_t seq = StartJournal(&g, &view);
  const Model state = Materialize(*g, view, seq);
  view = GenerationView();
  TrainingUpdate last;
  absl::StatusOr<Model> trained =
      FitForJob(*job, RatingsOf(state), std::move(spec), exact,
                validation_fraction, options_.train_threads, &last);
  bool cancelled = false;
  {
    // A cancel either lands before this point, and no model goes in, or is
    // refused.
    std::lock_guard<std::mutex> lock(job->mu);
    cancelled = job->cancel.load();
    job->committing = !cancelled && trained.ok();
  }
  if (cancelled || !trained.ok()) {
    TrainingUpdate u = last;
    u.state = cancelled ? TrainingUpdate::kCancelled : TrainingUpdate::kFailed;
    u.error = cancelled ? std::string("cancelled (CancelTraining)")
                        : std::string(trained.status().message());
    FinishJob(*job, u);
    return;
  }
  // The held-out share trained nothing but stays the users' history.
  trained->user_ratings = state.user_ratings;
  trained->item_counts = state.item_counts;
  trained->log_sequence = seq;
  trained->last_validation_rmse = last.validation_rmse;
  auto next = std::make_shared<Generation>(
      std::make_shared<const Model>(*std::move(trained)), g->version + 1);
  const int64_t replayed = SwapIn(next, seq);
  // The new generation goes to disk so a restart serves it.
  absl::Status saved = WriteSnapshot();
  TrainingUpdate u = last;
  u.state = saved.ok() ? TrainingUpdate::kSucceeded : TrainingUpdate::kFailed;
  if (!saved.ok()) {
    u.error =
        absl::StrCat("model serves but its snapshot failed: ", saved.message());
  }
  u.model_version = next->version;
  u.ratings_folded_after = replayed;
  FinishJob(*job, u);
}

absl::StatusOr<std::vector<TrainingUpdate>> Engine::WatchTraining(
    const std::string& job_id, size_t from, absl::Time deadline,
    bool* done) const {
  RECSYS_ASSIGN_OR_RETURN(const std::shared_ptr<internal::TrainingJob> job,
                          FindJob(job_id));
  std::unique_lock<std::mutex> lock(job->mu);
  job->cv.wait_until(lock, absl::ToChronoTime(deadline),
                     [&] { return job->updates.size() > from || job->done; });
  std::vector<TrainingUpdate> out;
  for (size_t k = from; k < job->updates.size(); ++k)
    out.push_back(job->updates[k]);
  *done = job->done;
  return out;
}

absl::StatusOr<std::shared_ptr<internal::TrainingJob>> Engine::FindJob(
    const std::string& job_id) const {
  MutexLock lock(&jobs_mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(
        absl::StrCat("unknown training job '", job_id, "'"));
  }
  return it->second;
}

absl::Status Engine::CancelTraining(const std::string& job_id) {
  RECSYS_ASSIGN_OR_RETURN(const std::shared_ptr<internal::TrainingJob> job,
                          FindJob(job_id));
  return Cancel(*job);
}

void Engine::CancelRunningTraining() {
  std::shared_ptr<internal::TrainingJob> job;
  {
    MutexLock lock(&jobs_mu_);
    job = running_;
  }
  if (job != nullptr) Cancel(*job).IgnoreError();  // it may be ending
}

absl::Status Engine::Cancel(internal::TrainingJob& job) {
  std::lock_guard<std::mutex> lock(job.mu);
  if (job.done || job.committing) {
    return absl::FailedPreconditionError(absl::StrCat(
        "training job ", job.id,
        job.done ? " has already ended" : " is already swapping its model in"));
  }
  job.cancel.store(true);
  return absl::OkStatus();
}

void Engine::WaitForTraining() {
  std::thread t;
  {
    MutexLock lock(&jobs_mu_);
    t.swap(trainer_);
  }
  if (t.joinable()) t.join();
}

}  // namespace recsys
