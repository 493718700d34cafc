// SPDX-License-Identifier: MIT
#include "create_journal.hpp"

#include <algorithm>
#include <cstring>

#include "bridge/detail/layout.hpp"
#include "bridge/error.hpp"

namespace bridged {

using bridge::JournalKind;

std::optional<JournalReader> JournalReader::map(int fd) {
  try {
    return JournalReader(bridge::os::Mapping::map(fd, bridge::kLedgerWithJournalBytes, true));
  } catch (const bridge::Error&) {
    return std::nullopt;
  }
}

bool JournalReader::pending() const {
  if (broken_) return false;
  const bridge::JournalRecord& record =
      bridge::journal_records_at(mapping_.data())[read_ % bridge::kJournalRecords];
  return record.seq.load(std::memory_order_acquire) == read_ + 1;
}

void JournalReader::set_armed(bool armed) {
  // seq_cst: see JournalWriter::append.
  bridge::journal_header_at(mapping_.data()).armed.store(armed ? 1 : 0, std::memory_order_seq_cst);
}

void JournalReader::set_claim(std::uint32_t claim) {
  claim_ = claim;
  bridge::journal_header_at(mapping_.data()).claim = claim;
}

void JournalReader::set_ended() {
  bridge::journal_header_at(mapping_.data()).ended.store(1, std::memory_order_seq_cst);
}

std::vector<JournalReader::Record> JournalReader::take() {
  std::vector<Record> out;
  if (broken_) return out;
  bridge::JournalRecord* records = bridge::journal_records_at(mapping_.data());
  for (;;) {
    const bridge::JournalRecord& record = records[read_ % bridge::kJournalRecords];
    if (record.seq.load(std::memory_order_seq_cst) != read_ + 1) break;
    // Copied out first, then checked: the client may write it meanwhile.
    const std::uint32_t kind = record.kind;
    const std::uint64_t id = record.segment_id;
    const std::uint32_t bytes = std::min<std::uint32_t>(record.name_bytes, bridge::kMaxNameBytes);
    std::string name(record.name, bytes);
    try {
      if (kind < static_cast<std::uint32_t>(JournalKind::begin) ||
          kind > static_cast<std::uint32_t>(JournalKind::destroyed) || id == 0) {
        throw bridge::Error(bridge::Errc::invalid_argument, "malformed journal record");
      }
      bridge::validate_segment_name(name);
    } catch (const bridge::Error&) {
      broken_ = true;
      break;
    }
    out.push_back(Record{static_cast<JournalKind>(kind), id, std::move(name)});
    ++read_;
  }
  bridge::journal_header_at(mapping_.data()).consumed.store(read_, std::memory_order_release);
  return out;
}

}  // namespace bridged
