// SPDX-License-Identifier: MIT
#include "bridge/detail/attach_ledger.hpp"

#include <sys/stat.h>

#include "bridge/error.hpp"

namespace bridge::detail {

std::optional<os::Mapping> map_ledger_memfd(int fd, std::size_t bytes) {
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<std::uint64_t>(st.st_size) < bytes) {
    return std::nullopt;
  }
  try {
    return os::Mapping::map(fd, bytes, true);
  } catch (const Error&) {
    return std::nullopt;
  }
}

std::optional<LedgerWriter> LedgerWriter::map(int fd) {
  auto mapping = map_ledger_memfd(fd, kLedgerBytes);
  if (!mapping) return std::nullopt;
  return LedgerWriter(std::move(*mapping));
}

LedgerWriter::LedgerWriter(os::Mapping mapping) : mapping_(std::move(mapping)) {
  free_.reserve(kLedgerEntries);
  for (std::uint32_t i = kLedgerEntries; i > 0; --i) free_.push_back(i - 1);
}

bool LedgerWriter::add(std::uint64_t id) {
  if (id == 0) return false;
  LedgerEntry* entries = ledger_entries_at(mapping_.data());
  if (auto it = where_.find(id); it != where_.end()) {
    LedgerEntry& entry = entries[it->second];
    entry.count.store(entry.count.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    return true;
  }
  if (free_.empty()) return false;
  const std::uint32_t index = free_.back();
  where_.emplace(id, index);
  free_.pop_back();
  // The count before the id: the daemon reads an id, then its count.
  entries[index].count.store(1, std::memory_order_relaxed);
  entries[index].id.store(id, std::memory_order_release);
  return true;
}

bool LedgerWriter::remove(std::uint64_t id) {
  auto it = where_.find(id);
  if (it == where_.end()) return false;
  LedgerEntry& entry = ledger_entries_at(mapping_.data())[it->second];
  const std::uint64_t count = entry.count.load(std::memory_order_relaxed);
  if (count > 1) {
    entry.count.store(count - 1, std::memory_order_release);
    return true;
  }
  entry.id.store(0, std::memory_order_release);
  entry.count.store(0, std::memory_order_release);
  free_.push_back(it->second);
  where_.erase(it);
  return true;
}

}  // namespace bridge::detail
