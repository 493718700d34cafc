// SPDX-License-Identifier: MIT
#include "bridge/detail/create_journal.hpp"

#include <algorithm>
#include <cstring>

namespace bridge::detail {

std::optional<JournalWriter> JournalWriter::map(int fd) {
  auto mapping = map_ledger_memfd(fd, kLedgerWithJournalBytes);
  if (!mapping) return std::nullopt;
  // Read once: the daemon wrote it before it passed the memfd, and a value
  // it never gives (an older daemon's zero) is the daemon's own claim.
  const std::uint32_t claim = journal_header_at(mapping->data()).claim;
  return JournalWriter(std::make_shared<os::Mapping>(std::move(*mapping)),
                       claim > kDaemonClaim ? claim : kDaemonClaim);
}

std::shared_ptr<const std::atomic<std::uint64_t>> JournalWriter::consumed() const {
  return {mapping_, &journal_header_at(mapping_->data()).consumed};
}

bool JournalWriter::ended() const noexcept {
  return journal_header_at(mapping_->data()).ended.load(std::memory_order_acquire) != 0;
}

bool JournalWriter::has_room(std::size_t records) const {
  const std::uint64_t consumed =
      journal_header_at(mapping_->data()).consumed.load(std::memory_order_acquire);
  // The daemon's word: past what was written, it is wrong, and nothing is free.
  if (consumed > written_) return false;
  return written_ - consumed + records <= kJournalRecords;
}

bool JournalWriter::append(JournalKind kind, std::uint64_t segment_id, std::string_view name) {
  JournalRecord& record = journal_records_at(mapping_->data())[written_ % kJournalRecords];
  record.kind = static_cast<std::uint32_t>(kind);
  record.segment_id = segment_id;
  const std::size_t bytes = std::min(name.size(), kMaxNameBytes);
  record.name_bytes = static_cast<std::uint32_t>(bytes);
  std::memcpy(record.name, name.data(), bytes);
  // seq_cst, against the daemon's clear of `armed` before it reads (also
  // seq_cst): either it sees this record, or this sees `armed` clear and
  // pokes.
  record.seq.store(written_ + 1, std::memory_order_seq_cst);
  const std::uint64_t position = written_++;
  const JournalHeader& header = journal_header_at(mapping_->data());
  if (header.armed.load(std::memory_order_seq_cst) != 0) return false;
  if (poked_at_ && header.consumed.load(std::memory_order_acquire) <= *poked_at_) return false;
  poked_at_ = position;
  return true;
}

}  // namespace bridge::detail
