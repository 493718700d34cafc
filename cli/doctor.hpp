// SPDX-License-Identifier: MIT
//
// `bridgectl doctor`: what limits and settings apply to shmbridge on this
// machine, each with what was found and what to do. The judgements are pure
// functions of facts gathered elsewhere (doctor.cpp), so they are unit-tested
// with made-up machines (a Docker container's 64 MiB /dev/shm, an old kernel).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bridgectl::doctor {

/// note: worth knowing, nothing to fix (counts as all well).
enum class Level { ok, note, warning, error };
std::string_view to_string(Level level) noexcept;

/// One line of the report.
struct Finding {
  std::string check;  ///< stable id for --json: "shm", "open_files", ...
  std::string label;  ///< what the text report calls it: "/dev/shm", "open files", ...
  Level level = Level::ok;
  std::string found;   ///< what was found, one sentence
  std::string advice;  ///< what to do; empty when there is nothing to do
  nlohmann::json details = nlohmann::json::object();  ///< the numbers behind `found`
};

/// 0 when every finding is ok or a note, 1 with warnings, 2 with errors.
int exit_status(const std::vector<Finding>& findings);
/// "ok", "warning" or "error": the worst level, notes counting as ok.
std::string_view overall(const std::vector<Finding>& findings);

// ---- /dev/shm ---------------------------------------------------------------

struct ShmSpace {
  std::uint64_t total = 0;
  std::uint64_t free = 0;
  bool writable = true;
};
inline constexpr std::uint64_t kDockerShmDefault = 64ull << 20;
/// nullopt: no /dev/shm at all.
Finding judge_shm(const std::optional<ShmSpace>& space);

// ---- descriptors --------------------------------------------------------------

/// bridged raises its soft limit to the hard one at start, so the hard limit
/// of the shell that starts it is what bounds segments + clients.
Finding judge_open_files(std::uint64_t soft, std::uint64_t hard);

// ---- huge pages ---------------------------------------------------------------

struct Mount {
  std::string device;
  std::string path;
  std::string type;
  std::string options;  ///< comma-separated, as /proc/self/mounts has them
};
/// /proc/self/mounts (octal escapes such as \040 decoded in paths).
std::vector<Mount> parse_mounts(std::string_view text);
/// The value of a "key=value" mount option, if present.
std::optional<std::string> mount_option(const Mount& mount, std::string_view key);
/// The selected word of a sysfs choice file: "always [within_size] never" ->
/// "within_size"; nullopt when nothing is bracketed.
std::optional<std::string> selected_choice(std::string_view text);
/// A /proc/meminfo field ("HugePages_Total", "Hugepagesize" in bytes).
std::optional<std::uint64_t> meminfo_field(std::string_view text, std::string_view key);

struct HugeFacts {
  std::optional<std::string> shmem_enabled;  ///< THP for shmem; nullopt: no THP in this kernel
  std::vector<Mount> mounts;
  std::uint64_t hugetlb_total = 0;  ///< reserved hugetlbfs pages
  std::uint64_t hugetlb_free = 0;
  std::uint64_t hugetlb_page_size = 0;
};
Finding judge_huge_pages(const HugeFacts& facts);

// ---- kernel -------------------------------------------------------------------

/// errno of futex_waitv(NULL, 0, ...): EINVAL means the kernel has it (it
/// rejects the empty list), ENOSYS that it does not, EPERM a seccomp filter.
Finding judge_futex_waitv(int probe_errno, const std::string& kernel_release);

// ---- the daemon ---------------------------------------------------------------

/// Where the socket path came from: "--socket", "$BRIDGE_SOCKET",
/// "$XDG_RUNTIME_DIR" or "the default".
Finding judge_socket(const std::string& path, const std::string& source);

struct DaemonFacts {
  bool answered = false;
  std::string error_code;  ///< bridge::to_string of the failure when it did not answer
  std::string error_message;
  std::string daemon;  ///< "bridged 0.1.0"
  std::int64_t pid = 0;
  std::uint32_t protocol = 0;
};
Finding judge_daemon(const DaemonFacts& facts, const std::string& socket_path,
                     const std::string& our_version);

struct PathFacts {
  bool exists = false;
  bool is_socket = false;  ///< for the socket itself
  bool is_directory = false;
  std::uint32_t mode = 0;  ///< st_mode & 07777
  std::uint32_t owner_uid = 0;
  std::uint32_t group_gid = 0;
  bool usable = false;  ///< the caller may enter (directory) or connect (socket)
};
struct PermissionFacts {
  std::string directory;
  PathFacts dir;
  std::string socket;
  PathFacts sock;
  std::string caller;  ///< "alice (uid 1001)"
};
Finding judge_permissions(const PermissionFacts& facts);

struct Quarantine {
  bool asked = false;  ///< false: no daemon to ask
  std::uint64_t count = 0;
  std::vector<std::pair<std::string, std::string>> objects;  ///< name, reason (daemon's user only)
};
Finding judge_quarantine(const Quarantine& quarantine);

}  // namespace bridgectl::doctor
