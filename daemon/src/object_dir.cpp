// SPDX-License-Identifier: MIT
#include "object_dir.hpp"

#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "bridge/error.hpp"

namespace bridged {

using bridge::Errc;
using bridge::Error;

namespace {

// /proc/self/mountinfo escapes ' ', '\t', '\n' and '\\' as octal.
std::string unescape_mount_path(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size()) {
      const std::string octal = text.substr(i + 1, 3);
      char* end = nullptr;
      const long value = std::strtol(octal.c_str(), &end, 8);
      if (end == octal.c_str() + 3) {
        out.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

bool under(const std::string& path, const std::string& mount_point) {
  if (mount_point == "/") return true;
  return path == mount_point ||
         (path.size() > mount_point.size() &&
          path.compare(0, mount_point.size(), mount_point) == 0 && path[mount_point.size()] == '/');
}

// The tmpfs huge= option of the mount that holds `path` ("" when none).
std::string tmpfs_huge_option(const std::string& path) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  std::string best_mount;
  std::string best_huge;
  bool found = false;
  while (std::getline(mountinfo, line)) {
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    std::istringstream fields(line);
    std::string id, parent, devno, root, mount_point;
    fields >> id >> parent >> devno >> root >> mount_point;
    std::string word;
    while (fields >> word && word != "-") {
    }
    std::string fstype, source, super_options;
    fields >> fstype >> source >> super_options;
    const std::string point = unescape_mount_path(mount_point);
    // The longest mount point above `path` wins; of equal ones the last
    // (a mount stacked on another hides it).
    if (!under(path, point) || (found && point.size() < best_mount.size())) continue;
    found = true;
    best_mount = point;
    best_huge.clear();
    std::istringstream options(super_options);
    std::string option;
    while (std::getline(options, option, ',')) {
      if (option.rfind("huge=", 0) == 0) best_huge = option.substr(5);
    }
  }
  return best_huge;
}

std::uint64_t pmd_huge_page_size() {
  std::ifstream file("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");
  std::uint64_t bytes = 0;
  if (file >> bytes && bytes != 0) return bytes;
  return 2u << 20;  // x86-64 and arm64 with 4 KiB base pages
}

}  // namespace

ObjectDir ObjectDir::dev_shm() {
  ObjectDir dir;
  dir.page_size = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  return dir;
}

ObjectDir ObjectDir::huge_dir(const std::string& path) {
  const std::string hint =
      " (--huge-dir needs a directory on a tmpfs mounted with huge=always or huge=within_size, "
      "e.g. mount -t tmpfs -o huge=always,size=8G none DIR)";
  char resolved[PATH_MAX];
  if (::realpath(path.c_str(), resolved) == nullptr) {
    throw Error(Errc::invalid_argument,
                "--huge-dir " + path + ": " + std::string(std::strerror(errno)) + hint);
  }
  struct stat st {};
  if (::stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw Error(Errc::invalid_argument, "--huge-dir " + path + " is not a directory" + hint);
  }
  if (::access(resolved, W_OK | X_OK) != 0) {
    throw Error(Errc::permission_denied, "--huge-dir " + path + " is not writable by this user");
  }
  struct statfs fs {};
  if (::statfs(resolved, &fs) != 0) bridge::throw_errno(errno, "statfs " + path);
  ObjectDir dir;
  dir.path = resolved;
  if (static_cast<unsigned long>(fs.f_type) == HUGETLBFS_MAGIC) {
    // Clients map a segment's header and metadata read-only and its data
    // writable within one mapping (mprotect of the first pages); a hugetlbfs
    // mapping cannot be split below its page size, so every attach would
    // fail. Refused now rather than at the first attach.
    throw Error(Errc::invalid_argument,
                "--huge-dir " + path +
                    " is on hugetlbfs, which shmbridge does not support yet (clients protect "
                    "the segment header with 4 KiB granularity, which hugetlbfs mappings "
                    "cannot split); use a tmpfs mounted with huge=always or huge=within_size");
  }
  if (static_cast<unsigned long>(fs.f_type) != TMPFS_MAGIC) {
    throw Error(Errc::invalid_argument, "--huge-dir " + path + " is not on a tmpfs" + hint);
  }
  const std::string huge = tmpfs_huge_option(resolved);
  if (huge != "always" && huge != "within_size") {
    throw Error(Errc::invalid_argument,
                "--huge-dir " + path + " is on a tmpfs mounted " +
                    (huge.empty() ? std::string("without huge=") : "with huge=" + huge) +
                    ", which gives 4 KiB pages to files nobody madvises" + hint);
  }
  // The host's shmem_enabled=deny overrides every mount option.
  std::ifstream shmem_enabled("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
  std::string policy;
  if (std::getline(shmem_enabled, policy) && policy.find("[deny]") != std::string::npos) {
    throw Error(Errc::invalid_argument,
                "--huge-dir " + path +
                    ": /sys/kernel/mm/transparent_hugepage/shmem_enabled is 'deny', which "
                    "gives every tmpfs 4 KiB pages whatever its huge= option");
  }
  dir.kind = Kind::huge_tmpfs;
  dir.page_size = pmd_huge_page_size();
  return dir;
}

std::optional<HugePolicy> huge_policy_from_string(const std::string& text) {
  if (text == "auto") return HugePolicy::auto_;
  if (text == "always") return HugePolicy::always;
  if (text == "never") return HugePolicy::never;
  return std::nullopt;
}

}  // namespace bridged
