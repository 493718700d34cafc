// SPDX-License-Identifier: MIT
#include "bridge/detail/parallel_copy.hpp"

#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

namespace bridge::detail {

namespace {
constexpr std::size_t kThreadedFrom = 64ull << 20;
constexpr std::size_t kMaxThreads = 4;
// Chunks end on huge-page boundaries, so no page is touched by two threads.
constexpr std::size_t kChunkAlign = 2ull << 20;

std::size_t usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return static_cast<std::size_t>(CPU_COUNT(&set));
}

// Runs work(offset, length) over [0, n): from kThreadedFrom on, in chunks on
// up to kMaxThreads threads (the calling thread takes the first chunk and
// whatever no helper took), joined before return.
template <class Work>
void in_chunks(std::size_t n, Work work) {
  const std::size_t threads = n < kThreadedFrom ? 1 : std::min(kMaxThreads, usable_cpus());
  if (threads <= 1) {
    if (n != 0) work(0, n);
    return;
  }
  const std::size_t chunk = (n / threads + kChunkAlign - 1) / kChunkAlign * kChunkAlign;
  std::vector<std::thread> helpers;
  helpers.reserve(threads - 1);
  std::size_t taken = chunk;
  for (std::size_t offset = chunk; offset < n; offset += chunk) {
    const std::size_t length = std::min(chunk, n - offset);
    try {
      helpers.emplace_back([=] { work(offset, length); });
    } catch (const std::system_error&) {
      break;  // no thread: the rest is done here
    }
    taken = offset + length;
  }
  work(0, std::min(chunk, n));
  if (taken < n) work(taken, n - taken);
  for (std::thread& helper : helpers) helper.join();
}
}  // namespace

void parallel_copy(void* dst, const void* src, std::size_t n) {
  auto* out = static_cast<std::byte*>(dst);
  const auto* in = static_cast<const std::byte*>(src);
  in_chunks(n, [out, in](std::size_t offset, std::size_t length) {
    std::memcpy(out + offset, in + offset, length);
  });
}

void parallel_populate(void* dst, std::size_t n) {
  static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(dst);
  // Whole pages only: the edges fault as they would have.
  const std::uintptr_t first = (begin + page - 1) / page * page;
  const std::uintptr_t last = (begin + n) / page * page;
  if (last <= first) return;
  in_chunks(last - first, [first](std::size_t offset, std::size_t length) {
    // Refused (before Linux 5.14, or a mapping it cannot populate): the
    // pages fault in as they are written, as before.
    (void)::madvise(reinterpret_cast<void*>(first + offset), length, MADV_POPULATE_WRITE);
  });
}

}  // namespace bridge::detail
