// SPDX-License-Identifier: MIT
//
// A connection's create journal: how a client of the daemon's own user
// creates and destroys plain segments without a round trip (direct_create.hpp),
// and the daemon still learns of each one.
//
// It lives in the attach ledger's memfd, after the ledger page (one
// descriptor passed with the hello reply), and the daemon offers it only to
// connections of its own user, and only when every create would go to
// /dev/shm with no size limit (no --huge-dir, no --max-segment-bytes): such a
// client may make the daemon's objects itself anyway.
//
// The client appends records; the daemon reads them before it handles any
// request (so whatever a create or destroy that returned did, every later
// request of any client sees), at a timer a poke arms (a `drain` notice, sent
// when the daemon is not already due to look), and when the connection ends.
// A create writes `begin` before its object exists and `published` once it
// is renamed into place; a destroy writes `destroyed` after the name is
// gone. A create and destroy that both land before a drain cost the daemon
// no system call: it only announces them.
//
// Nothing here is trusted: a record is a hint the daemon checks against the
// object it names (its owner, header, id and `destroyed` word); junk ends the
// reading of that journal, never more.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "bridge/detail/attach_ledger.hpp"
#include "bridge/detail/layout.hpp"
#include "bridge/detail/os/mapping.hpp"

namespace bridge {

enum class JournalKind : std::uint32_t { begin = 1, published = 2, destroyed = 3 };

struct alignas(64) JournalHeader {
  /// Records the daemon has read (written by the daemon only).
  std::atomic<std::uint64_t> consumed;
  /// 1 while the daemon is due to read this journal (a drain is armed): the
  /// client then sends no poke. The daemon clears it before it reads.
  std::atomic<std::uint32_t> armed;
  /// What this connection's direct destroys set a segment's `destroyed`
  /// word to (layout.hpp): a value of 2 or more, unique among the daemon's
  /// journals, written by the daemon before it passes the memfd (1 is the
  /// daemon's own claim). It names the claimant of a destroy whose record
  /// the daemon has not read yet: when a connection ends, only the claims
  /// with its value are finished in its name, not a live client's.
  std::uint32_t claim;
  /// Set by the daemon when it stops reading this journal (the connection
  /// ended: the client's hang-up, an idle timeout, the daemon's stop). A
  /// client that sees it makes nothing directly: it asks, and reconnects.
  std::atomic<std::uint32_t> ended;
};
/// The claim a destroy by the daemon (or by a client whose journal says
/// less than 2) sets.
inline constexpr std::uint32_t kDaemonClaim = 1;

struct JournalRecord {
  /// 1 + the record's position once it is complete (written last); the
  /// daemon reads position p only when this says p + 1.
  std::atomic<std::uint64_t> seq;
  std::uint32_t kind;  ///< a JournalKind
  std::uint32_t name_bytes;
  std::uint64_t segment_id;
  char name[kMaxNameBytes];
};
static_assert(sizeof(JournalRecord) == 152);

inline constexpr std::size_t kJournalRecords = 400;
inline constexpr std::size_t kJournalOffset = kLedgerBytes;
inline constexpr std::size_t kJournalBytes =
    sizeof(JournalHeader) + kJournalRecords * sizeof(JournalRecord);
/// The whole memfd when it carries a journal.
inline constexpr std::size_t kLedgerWithJournalBytes = kJournalOffset + kJournalBytes;

inline JournalHeader& journal_header_at(std::byte* memfd_base) {
  return *reinterpret_cast<JournalHeader*>(memfd_base + kJournalOffset);
}
inline JournalRecord* journal_records_at(std::byte* memfd_base) {
  return reinterpret_cast<JournalRecord*>(memfd_base + kJournalOffset + sizeof(JournalHeader));
}

namespace detail {

/// The client's writer (not thread-safe: the Connection guards it; never
/// used by a forked child, whose memfd mapping is its parent's).
class JournalWriter {
 public:
  /// Maps the memfd passed with the hello reply; nullopt if it is not a
  /// regular object large enough to carry a journal.
  static std::optional<JournalWriter> map(int fd);

  /// Room for `records` more right now.
  bool has_room(std::size_t records) const;
  /// Appends one record. Returns whether the daemon should be poked (it is
  /// not already due to read this journal). Call has_room first.
  bool append(JournalKind kind, std::uint64_t segment_id, std::string_view name);
  /// How many records were appended: the daemon has read the last one once
  /// consumed() reaches this.
  std::uint64_t written() const noexcept { return written_; }
  /// What this connection's direct destroys set the `destroyed` word to
  /// (JournalHeader::claim), as the daemon wrote it before the hello reply.
  std::uint32_t claim() const noexcept { return claim_; }
  /// Whether the daemon has stopped reading it (JournalHeader::ended).
  bool ended() const noexcept;
  /// The daemon's count of records read, as a word that lives as long as
  /// any holder of it (the journal's mapping).
  std::shared_ptr<const std::atomic<std::uint64_t>> consumed() const;

 private:
  JournalWriter(std::shared_ptr<os::Mapping> mapping, std::uint32_t claim)
      : mapping_(std::move(mapping)), claim_(claim) {}
  std::shared_ptr<os::Mapping> mapping_;
  std::uint32_t claim_;
  std::uint64_t written_ = 0;
  /// The record the last poke went out for: no other poke is sent until
  /// the daemon has read it (that poke makes it read everything).
  std::optional<std::uint64_t> poked_at_;
};

}  // namespace detail
}  // namespace bridge
