// SPDX-License-Identifier: MIT
//
// Where the daemon keeps its shared-memory objects: /dev/shm (4 KiB pages;
// shmem THP is usually off there) or, with --huge-dir, a directory on a
// filesystem that backs files with huge pages: a tmpfs mounted with
// huge=always or huge=within_size (hugetlbfs is refused, see huge_dir()).
// Huge pages cut the cost of
// reserving and first touching a large array about 60-fold (see
// research/performance-floors.md). Which one a create uses is the create's
// huge_pages, else the daemon's --huge-pages policy; never a silent fallback.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace bridged {

struct ObjectDir {
  enum class Kind { dev_shm, huge_tmpfs };
  Kind kind = Kind::dev_shm;
  std::string path = "/dev/shm";
  /// Bytes of the pages backing files here.
  std::uint64_t page_size = 4096;

  bool huge() const noexcept { return kind != Kind::dev_shm; }
  std::string path_of(const std::string& name) const { return path + "/" + name; }

  /// /dev/shm, where shm_open puts objects.
  static ObjectDir dev_shm();
  /// Checks that `path` is a writable directory on a tmpfs mounted with
  /// huge=always or huge=within_size; throws
  /// Error(invalid_argument) saying what is wrong otherwise (a tmpfs without
  /// huge= would give 4 KiB pages: refused, never a silent fallback).
  /// hugetlbfs is refused too: clients mprotect the header pages of a
  /// mapping, which hugetlbfs cannot split below its page size.
  static ObjectDir huge_dir(const std::string& path);
};

/// The daemon default for creates that do not say (--huge-pages):
/// - auto: huge pages when --huge-dir is set and the array is at least one
///   huge page; /dev/shm otherwise;
/// - always: every create goes to --huge-dir (needs it);
/// - never: only creates that ask for huge pages get them.
enum class HugePolicy { auto_, always, never };
std::optional<HugePolicy> huge_policy_from_string(const std::string& text);

}  // namespace bridged
