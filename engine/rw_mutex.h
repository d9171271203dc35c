// A reader-writer lock that lets a waiting writer in before new readers.
//
//   WriterFirstMutex mu;
//   { std::shared_lock<WriterFirstMutex> read(mu); ... }  // many at once
//   { std::unique_lock<WriterFirstMutex> write(mu); ... } // alone
//
// std::shared_mutex is glibc's default rwlock, which prefers readers: while
// one reader still holds it, the next reader gets in ahead of a waiting
// writer. The engine's Rate path reads it around every log append, so two
// clients that rate without pause kept a snapshot (a writer) waiting for as
// long as they went on. Here a waiting writer blocks new readers, so it gets
// in once the current ones leave. A thread must not take it shared twice:
// with a writer waiting in between, the second would wait forever.
#ifndef RECSYS_ENGINE_RW_MUTEX_H_
#define RECSYS_ENGINE_RW_MUTEX_H_

#include <pthread.h>

namespace recsys {

class WriterFirstMutex {
 public:
  WriterFirstMutex() {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&rw_, &attr);
    pthread_rwlockattr_destroy(&attr);
  }
  ~WriterFirstMutex() { pthread_rwlock_destroy(&rw_); }
  WriterFirstMutex(const WriterFirstMutex&) = delete;
  WriterFirstMutex& operator=(const WriterFirstMutex&) = delete;

  void lock() { pthread_rwlock_wrlock(&rw_); }
  void unlock() { pthread_rwlock_unlock(&rw_); }
  void lock_shared() { pthread_rwlock_rdlock(&rw_); }
  void unlock_shared() { pthread_rwlock_unlock(&rw_); }

 private:
  pthread_rwlock_t rw_;
};

}  // namespace recsys

#endif  // RECSYS_ENGINE_RW_MUTEX_H_
