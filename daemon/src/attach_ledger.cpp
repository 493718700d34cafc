// SPDX-License-Identifier: MIT
#include "attach_ledger.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "bridge/error.hpp"
#include "log.hpp"

namespace bridged {

namespace {
std::atomic<bool> warned{false};

std::nullopt_t unavailable(const std::string& why) {
  if (!warned.exchange(true)) {
    log_warn("no attach ledgers (" + why +
             "): clients send a notice for every attach the daemon does not see");
  }
  return std::nullopt;
}
}  // namespace

std::optional<AttachLedger::Made> AttachLedger::make(bool with_journal) {
  bridge::os::UniqueFd fd(::memfd_create("bridged-ledger", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return unavailable(std::string("memfd_create: ") + std::strerror(errno));
  const std::size_t bytes = with_journal ? bridge::kLedgerWithJournalBytes : bridge::kLedgerBytes;
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
    return unavailable(std::string("ftruncate: ") + std::strerror(errno));
  }
  // Reserved now, so that the client's first write cannot fault for want
  // of memory; sealed, so that the client cannot shrink the page under the
  // daemon's mapping (SIGBUS) or grow it.
  if (const int rc = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(bytes)); rc != 0) {
    return unavailable(std::string("posix_fallocate: ") + std::strerror(rc));
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return unavailable(std::string("F_ADD_SEALS: ") + std::strerror(errno));
  }
  try {
    auto mapping = bridge::os::Mapping::map(fd.get(), bridge::kLedgerBytes, false);
    std::optional<JournalReader> journal;
    if (with_journal) journal = JournalReader::map(fd.get());
    return Made{std::shared_ptr<AttachLedger>(new AttachLedger(std::move(mapping))), std::move(fd),
                std::move(journal)};
  } catch (const bridge::Error& e) {
    return unavailable(e.message());
  }
}

bool AttachLedger::holds(std::uint64_t id) const {
  bool held = false;
  for_each_held([&](std::uint64_t held_id) { held = held || held_id == id; });
  return held;
}

}  // namespace bridged
