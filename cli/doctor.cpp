// SPDX-License-Identifier: MIT
//
// `bridgectl doctor`: gathers the facts (statvfs, rlimits, /proc and /sys,
// a futex_waitv probe, the socket and its directory, a hello and the stats of
// the daemon) and prints doctor_checks.cpp's findings. A daemon that does not
// answer is a finding, not a failure of the command.
#include "doctor.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "bridge/client.hpp"
#include "bridge/version.hpp"
#include "commands.hpp"

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449  // x86_64, arm64 and the generic table agree
#endif

namespace bridgectl {
namespace {

using namespace doctor;
using nlohmann::json;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::optional<ShmSpace> shm_space() {
  struct statvfs fs {};
  if (::statvfs("/dev/shm", &fs) != 0) return std::nullopt;
  ShmSpace space;
  space.total = static_cast<std::uint64_t>(fs.f_blocks) * fs.f_frsize;
  space.free = static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize;
  space.writable = (fs.f_flag & ST_RDONLY) == 0;
  return space;
}

HugeFacts huge_facts() {
  HugeFacts facts;
  const std::string shmem = read_text("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
  if (!shmem.empty()) facts.shmem_enabled = selected_choice(shmem);
  facts.mounts = parse_mounts(read_text("/proc/self/mounts"));
  const std::string meminfo = read_text("/proc/meminfo");
  facts.hugetlb_total = meminfo_field(meminfo, "HugePages_Total").value_or(0);
  facts.hugetlb_free = meminfo_field(meminfo, "HugePages_Free").value_or(0);
  facts.hugetlb_page_size = meminfo_field(meminfo, "Hugepagesize").value_or(0);
  return facts;
}

Finding futex_waitv_finding() {
  // An empty list is rejected with EINVAL by a kernel that has the call, and
  // nothing waits; a kernel without it answers ENOSYS.
  errno = 0;
  const long rc = ::syscall(SYS_futex_waitv, nullptr, 0u, 0u, nullptr, CLOCK_MONOTONIC);
  const int err = rc == 0 ? EINVAL : errno;
  utsname name{};
  const std::string release = ::uname(&name) == 0 ? name.release : "?";
  return judge_futex_waitv(err, release);
}

std::string socket_source(const Context& ctx) {
  if (!ctx.socket.empty()) return "--socket";
  if (const char* env = std::getenv("BRIDGE_SOCKET"); env != nullptr && *env != '\0') {
    return "$BRIDGE_SOCKET";
  }
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && *xdg != '\0') {
    return "$XDG_RUNTIME_DIR";
  }
  return "the default, /tmp/shmbridge-$UID";
}

PathFacts path_facts(const std::string& path, int access_mode) {
  PathFacts facts;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return facts;
  facts.exists = true;
  facts.is_socket = S_ISSOCK(st.st_mode);
  facts.is_directory = S_ISDIR(st.st_mode);
  facts.mode = st.st_mode & 07777;
  facts.owner_uid = st.st_uid;
  facts.group_gid = st.st_gid;
  // The effective ids decide what connect() may do, as they do for access.
  facts.usable = ::faccessat(AT_FDCWD, path.c_str(), access_mode, AT_EACCESS) == 0;
  return facts;
}

PermissionFacts permission_facts(const std::string& socket) {
  PermissionFacts facts;
  facts.socket = socket;
  const auto parent = std::filesystem::path(socket).parent_path();
  facts.directory = parent.empty() ? "." : parent.string();
  facts.dir = path_facts(facts.directory, X_OK);
  // connect(2) on a Unix socket needs write permission on it.
  facts.sock = path_facts(socket, W_OK);
  facts.caller = user_label(static_cast<std::uint32_t>(::geteuid()));
  return facts;
}

/// The daemon's hello, and its quarantine from stats, in one connection.
std::pair<DaemonFacts, Quarantine> ask_daemon(const std::string& socket) {
  DaemonFacts daemon;
  Quarantine quarantine;
  try {
    auto client = bridge::Client::connect(socket);
    const auto hello = client.daemon();
    daemon.answered = true;
    daemon.daemon = hello.daemon;
    daemon.pid = hello.pid;
    daemon.protocol = hello.protocol;
    const auto stats = client.stats();
    quarantine.asked = true;
    quarantine.count = std::max<std::uint64_t>(stats.quarantined_count, stats.quarantined.size());
    for (const auto& q : stats.quarantined) quarantine.objects.emplace_back(q.name, q.reason);
  } catch (const bridge::Error& e) {
    if (!daemon.answered) {
      daemon.error_code = std::string(bridge::to_string(e.code()));
      daemon.error_message = e.message();
    }
  }
  return {daemon, quarantine};
}

void print_text(const std::vector<Finding>& findings) {
  std::size_t label_width = 0;
  for (const auto& f : findings) label_width = std::max(label_width, f.label.size());
  const std::string indent(9 + label_width + 2, ' ');
  for (const auto& f : findings) {
    std::string level(to_string(f.level));
    level.resize(9, ' ');
    std::string label = f.label;
    label.resize(label_width + 2, ' ');
    std::cout << level << label << f.found << '\n';
    if (!f.advice.empty()) std::cout << indent << "-> " << f.advice << '\n';
  }
  std::size_t warnings = 0;
  std::size_t errors = 0;
  for (const auto& f : findings) {
    warnings += f.level == Level::warning;
    errors += f.level == Level::error;
  }
  std::cout << '\n'
            << (errors + warnings == 0 ? "all well: " : "") << warnings
            << (warnings == 1 ? " warning, " : " warnings, ") << errors
            << (errors == 1 ? " error" : " errors") << '\n';
}

}  // namespace

int cmd_doctor(const Context& ctx) {
  const std::string socket = ctx.socket_path();
  std::vector<Finding> findings;
  findings.push_back(judge_shm(shm_space()));
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  findings.push_back(judge_open_files(files.rlim_cur, files.rlim_max));
  findings.push_back(judge_huge_pages(huge_facts()));
  findings.push_back(futex_waitv_finding());
  findings.push_back(judge_socket(socket, socket_source(ctx)));
  const auto [daemon, quarantine] = ask_daemon(socket);
  findings.push_back(judge_daemon(daemon, socket, bridge::kVersion));
  findings.push_back(judge_permissions(permission_facts(socket)));
  findings.push_back(judge_quarantine(quarantine));

  if (ctx.json) {
    json checks = json::array();
    for (const auto& f : findings) {
      checks.push_back({{"check", f.check},
                        {"status", to_string(f.level)},
                        {"found", f.found},
                        {"advice", f.advice},
                        {"details", f.details}});
    }
    print_json({{"status", overall(findings)}, {"socket", socket}, {"checks", checks}});
  } else {
    print_text(findings);
  }
  return exit_status(findings);
}

}  // namespace bridgectl
