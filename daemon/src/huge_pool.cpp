// SPDX-License-Identifier: MIT
#include "huge_pool.hpp"

#include <pthread.h>
#include <sched.h>

#include <chrono>
#include <cstring>
#include <utility>

#include "bridge/detail/os/mapping.hpp"
#include "bridge/error.hpp"
#include "log.hpp"

namespace bridged {

namespace {
// After a failed build (the directory is full): try again this often, since
// nothing signals that a destroy freed space.
constexpr std::chrono::seconds kRetryAfterFailure{5};
}  // namespace

HugePool::HugePool(ObjectDir dir, std::string stem, std::uint64_t bytes)
    : dir_(std::move(dir)),
      stem_(std::move(stem)),
      bytes_((bytes + dir_.page_size - 1) / dir_.page_size * dir_.page_size),
      builder_([this](std::stop_token stop) { run(stop); }) {}

HugePool::~HugePool() {
  builder_.request_stop();
  changed_.notify_all();
  if (builder_.joinable()) builder_.join();
  std::lock_guard lock(mutex_);
  if (ready_) ready_->unlink();
}

bool HugePool::ready() const {
  std::lock_guard lock(mutex_);
  return ready_.has_value();
}

std::optional<ShmObject> HugePool::take(std::uint64_t bytes) {
  std::optional<ShmObject> taken;
  {
    std::lock_guard lock(mutex_);
    if (!ready_ || bytes > bytes_ || bytes <= bytes_ / 4) return std::nullopt;
    taken = std::move(ready_);
    ready_.reset();
  }
  changed_.notify_all();
  try {
    taken->resize(bytes);  // frees the pages past the segment's end
  } catch (...) {
    taken->unlink();
    throw;
  }
  return taken;
}

ShmObject HugePool::build(std::uint64_t serial) const {
  const std::string building = stem_ + "poolbuild-" + std::to_string(serial);
  const ShmObject::Range whole[] = {{0, bytes_}};
  ShmObject shm = ShmObject::create(dir_, building, bytes_, whole);
  try {
    // A read of each page makes the kernel zero and map it (fallocate only
    // allocates): what the creator's first write would otherwise pay.
    const auto mapping = bridge::os::Mapping::map(shm.fd(), bytes_, false);
    const auto* base = reinterpret_cast<const volatile unsigned char*>(mapping.data());
    unsigned char sink = 0;
    for (std::uint64_t offset = 0; offset < bytes_; offset += 4096) sink ^= base[offset];
    static_cast<void>(sink);
  } catch (...) {
    shm.unlink();
    throw;
  }
  return shm;
}

namespace {
// Rebuilding zeroes SIZE bytes of pages right after a create took the pool:
// exactly when its creator fills the segment, on every core it may use
// (create_from copies on several threads). So the build runs at SCHED_IDLE,
// on idle CPU only, and never slows the fill it was made for (on a busy
// machine the next object is ready later). Back to normal priority before
// taking the pool's lock, which the io thread also takes.
void set_idle(bool idle) {
  sched_param param{};
  if (const int rc =
          ::pthread_setschedparam(::pthread_self(), idle ? SCHED_IDLE : SCHED_OTHER, &param);
      rc != 0 && idle) {
    static bool warned = false;
    if (!std::exchange(warned, true)) {
      log_warn(std::string("--pool: cannot build at idle priority (") + std::strerror(rc) +
               "): builds compete with clients for CPU");
    }
  }
}

struct IdleWhileBuilding {
  IdleWhileBuilding() { set_idle(true); }
  ~IdleWhileBuilding() { set_idle(false); }
  IdleWhileBuilding(const IdleWhileBuilding&) = delete;
  IdleWhileBuilding& operator=(const IdleWhileBuilding&) = delete;
};
}  // namespace

void HugePool::run(std::stop_token stop) {
  for (std::uint64_t serial = 0; !stop.stop_requested(); ++serial) {
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, stop, [&] { return !ready_.has_value(); });
      if (stop.stop_requested()) return;
    }
    try {
      ShmObject shm = [&] {
        const IdleWhileBuilding idle;
        return build(serial);
      }();
      std::lock_guard lock(mutex_);
      if (stop.stop_requested()) {
        shm.unlink();
        return;
      }
      // Under its final pool name only once take() can have it: seen from
      // outside, a pool-N object is whole, faulted and ready. (Renamed at
      // the end of the build, at idle priority, it could sit under that
      // name for long on a busy machine while creates still found no pool.)
      try {
        shm.publish(stem_ + "pool-" + std::to_string(serial));
      } catch (...) {
        shm.unlink();
        throw;
      }
      ready_ = std::move(shm);
    } catch (const bridge::Error& e) {
      log_warn("--pool: could not build a " + std::to_string(bytes_) + "-byte object in " +
               dir_.path + ": " + e.message() + " (trying again)");
      std::unique_lock lock(mutex_);
      changed_.wait_for(lock, stop, kRetryAfterFailure, [] { return false; });
    }
  }
}

}  // namespace bridged
