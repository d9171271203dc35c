// absl::Mutex's scoped locks, as ThreadSanitizer sees them. Debian's Abseil
// is built without TSan, so in a TSan build of ours its Lock and Unlock are
// invisible, and TSan reports races on every field a mutex guards. These
// locks call the same __tsan_mutex_* hooks around absl's calls that Abseil
// itself calls when it is built with TSan; in every other build they are
// absl::MutexLock and absl::ReaderMutexLock.
//
//   absl::Mutex mu;
//   int n ABSL_GUARDED_BY(mu);
//   { MutexLock lock(&mu); ++n; }
//   { ReaderMutexLock lock(&mu); Use(n); }
#ifndef RECSYS_BASE_MUTEX_H_
#define RECSYS_BASE_MUTEX_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define RECSYS_TSAN_MUTEX(call) call
#else
#define RECSYS_TSAN_MUTEX(call)
#endif

namespace recsys {

inline void Lock(absl::Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) {
  RECSYS_TSAN_MUTEX(__tsan_mutex_pre_lock(mu, 0));
  mu->Lock();
  RECSYS_TSAN_MUTEX(__tsan_mutex_post_lock(mu, 0, 0));
}

inline void Unlock(absl::Mutex* mu) ABSL_UNLOCK_FUNCTION(mu) {
  RECSYS_TSAN_MUTEX(__tsan_mutex_pre_unlock(mu, 0));
  mu->Unlock();
  RECSYS_TSAN_MUTEX(__tsan_mutex_post_unlock(mu, 0));
}

inline bool TryLock(absl::Mutex* mu) ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true, mu) {
  RECSYS_TSAN_MUTEX(__tsan_mutex_pre_lock(mu, __tsan_mutex_try_lock));
  const bool locked = mu->TryLock();
  RECSYS_TSAN_MUTEX(__tsan_mutex_post_lock(
      mu, __tsan_mutex_try_lock | (locked ? 0 : __tsan_mutex_try_lock_failed),
      0));
  return locked;
}

inline void ReaderLock(absl::Mutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) {
  RECSYS_TSAN_MUTEX(__tsan_mutex_pre_lock(mu, __tsan_mutex_read_lock));
  mu->ReaderLock();
  RECSYS_TSAN_MUTEX(__tsan_mutex_post_lock(mu, __tsan_mutex_read_lock, 0));
}

inline void ReaderUnlock(absl::Mutex* mu) ABSL_UNLOCK_FUNCTION(mu) {
  RECSYS_TSAN_MUTEX(__tsan_mutex_pre_unlock(mu, __tsan_mutex_read_lock));
  mu->ReaderUnlock();
  RECSYS_TSAN_MUTEX(__tsan_mutex_post_unlock(mu, __tsan_mutex_read_lock));
}

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(absl::Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu)
      : mu_(mu) {
    Lock(mu_);
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { Unlock(mu_); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  absl::Mutex* const mu_;
};

class ABSL_SCOPED_LOCKABLE ReaderMutexLock {
 public:
  explicit ReaderMutexLock(absl::Mutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu)
      : mu_(mu) {
    ReaderLock(mu_);
  }
  ~ReaderMutexLock() ABSL_UNLOCK_FUNCTION() { ReaderUnlock(mu_); }
  ReaderMutexLock(const ReaderMutexLock&) = delete;
  ReaderMutexLock& operator=(const ReaderMutexLock&) = delete;

 private:
  absl::Mutex* const mu_;
};

}  // namespace recsys

#endif  // RECSYS_BASE_MUTEX_H_
