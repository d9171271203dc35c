// A minimal fork-join helper: runs fn(begin, end) over [0, n) split into
// contiguous chunks on up to `threads` threads (the caller's thread included).
#ifndef RECSYS_BASE_PARALLEL_H_
#define RECSYS_BASE_PARALLEL_H_

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace recsys {

// 0 means "one per hardware thread".
inline int ResolveThreads(int threads) {
  if (threads > 0) return threads;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// Calls fn(begin, end, chunk) for `chunks` contiguous chunks of [0, n), chunk
// c on its own thread; returns when all are done.
template <typename Fn>
void ParallelChunks(int64_t n, int chunks, Fn&& fn) {
  chunks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(chunks, n)));
  if (chunks == 1) {
    fn(int64_t{0}, n, 0);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(chunks - 1);
  auto bounds = [&](int c) { return n * c / chunks; };
  for (int c = 1; c < chunks; ++c) {
    pool.emplace_back([&, c] { fn(bounds(c), bounds(c + 1), c); });
  }
  fn(bounds(0), bounds(1), 0);
  for (std::thread& t : pool) t.join();
}

}  // namespace recsys

#endif  // RECSYS_BASE_PARALLEL_H_
