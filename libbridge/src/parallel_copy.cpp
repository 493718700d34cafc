// SPDX-License-Identifier: MIT
#include "bridge/detail/parallel_copy.hpp"

#include <sched.h>

#include <algorithm>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

namespace bridge::detail {

namespace {
constexpr std::size_t kThreadedFrom = 64ull << 20;
constexpr std::size_t kMaxThreads = 4;
// Chunks end on huge-page boundaries, so no page is written by two threads.
constexpr std::size_t kChunkAlign = 2ull << 20;

std::size_t usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return static_cast<std::size_t>(CPU_COUNT(&set));
}
}  // namespace

void parallel_copy(void* dst, const void* src, std::size_t n) {
  auto* out = static_cast<std::byte*>(dst);
  const auto* in = static_cast<const std::byte*>(src);
  const std::size_t threads = n < kThreadedFrom ? 1 : std::min(kMaxThreads, usable_cpus());
  if (threads <= 1) {
    if (n != 0) std::memcpy(out, in, n);
    return;
  }
  const std::size_t chunk = (n / threads + kChunkAlign - 1) / kChunkAlign * kChunkAlign;
  std::vector<std::thread> helpers;
  helpers.reserve(threads - 1);
  // The calling thread copies the first chunk and whatever no helper took.
  std::size_t taken = chunk;
  for (std::size_t offset = chunk; offset < n; offset += chunk) {
    const std::size_t length = std::min(chunk, n - offset);
    try {
      helpers.emplace_back([=] { std::memcpy(out + offset, in + offset, length); });
    } catch (const std::system_error&) {
      break;  // no thread: the rest is copied here
    }
    taken = offset + length;
  }
  std::memcpy(out, in, std::min(chunk, n));
  if (taken < n) std::memcpy(out + taken, in + taken, n - taken);
  for (std::thread& helper : helpers) helper.join();
}

}  // namespace bridge::detail
