// SPDX-License-Identifier: MIT
//
// The doctor's judgements: facts in, one finding out. Thresholds are the
// places where shmbridge is known to hurt (Docker's 64 MiB /dev/shm, a hard
// descriptor limit below the daemon's default --max-clients), not general
// tuning advice.
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>

#include "doctor.hpp"
#include "units.hpp"

namespace bridgectl::doctor {
namespace {

using nlohmann::json;

Finding make(std::string check, std::string label, Level level, std::string found,
             std::string advice = {}, json details = json::object()) {
  return Finding{std::move(check), std::move(label),  level,
                 std::move(found), std::move(advice), std::move(details)};
}

std::string mode_string(std::uint32_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\n')) {
    text.remove_suffix(1);
  }
  return text;
}

// /proc/self/mounts writes space, tab, newline and backslash in paths as \ooo.
std::string unescape_mount_field(std::string_view field) {
  std::string out;
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      int value = 0;
      const auto [end, ec] = std::from_chars(field.data() + i + 1, field.data() + i + 4, value, 8);
      if (ec == std::errc() && end == field.data() + i + 4) {
        out.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

// The daemon serves at most --max-clients (1024 by default) sockets besides a
// descriptor per segment; below this hard limit a busy daemon runs out.
constexpr std::uint64_t kOpenFilesWanted = 4096;
constexpr std::uint64_t kDefaultMaxClients = 1024;

}  // namespace

std::string_view to_string(Level level) noexcept {
  switch (level) {
    case Level::ok:
      return "ok";
    case Level::note:
      return "note";
    case Level::warning:
      return "warning";
    case Level::error:
      return "error";
  }
  return "?";
}

int exit_status(const std::vector<Finding>& findings) {
  int status = 0;
  for (const auto& f : findings) {
    if (f.level == Level::error) status = 2;
    if (f.level == Level::warning) status = std::max(status, 1);
  }
  return status;
}

std::string_view overall(const std::vector<Finding>& findings) {
  switch (exit_status(findings)) {
    case 0:
      return "ok";
    case 1:
      return "warning";
    default:
      return "error";
  }
}

Finding judge_shm(const std::optional<ShmSpace>& space) {
  if (!space) {
    return make("shm", "/dev/shm", Level::error,
                "no /dev/shm: bridged cannot create segments without it",
                "mount a tmpfs there: mount -t tmpfs -o size=1g,mode=1777 tmpfs /dev/shm");
  }
  json details = {{"total_bytes", space->total}, {"free_bytes", space->free}};
  const std::string sizes = human_bytes(space->total) + ", " + human_bytes(space->free) + " free";
  if (!space->writable) {
    return make("shm", "/dev/shm", Level::error, sizes + ", but read-only",
                "remount it read-write (mount -o remount,rw /dev/shm)", details);
  }
  if (space->total <= kDockerShmDefault) {
    return make("shm", "/dev/shm", Level::warning,
                sizes +
                    ": Docker's default size (64 MiB) or less; creates past it fail with "
                    "no_space",
                "give the container more: docker run --shm-size=2g (compose: shm_size; "
                "Kubernetes: an emptyDir with medium: Memory mounted at /dev/shm)",
                details);
  }
  if (space->free < space->total / 10) {
    return make("shm", "/dev/shm", Level::warning,
                sizes + ": less than 10% free; creates that do not fit fail with no_space",
                "remove segments no one needs (bridgectl ls, bridgectl rm NAME) or grow it: "
                "mount -o remount,size=8g /dev/shm",
                details);
  }
  return make("shm", "/dev/shm", Level::ok, sizes, {}, details);
}

Finding judge_open_files(std::uint64_t soft, std::uint64_t hard) {
  const json details = {{"soft", soft}, {"hard", hard}};
  // RLIM_INFINITY is all ones on Linux.
  auto limit = [](std::uint64_t n) {
    return n == ~0ull ? std::string("unlimited") : std::to_string(n);
  };
  const std::string found = "ulimit -n " + limit(soft) + " (hard limit " + limit(hard) +
                            "); bridged raises its own to the hard limit";
  if (hard < kOpenFilesWanted) {
    const std::uint64_t room = hard > kDefaultMaxClients ? hard - kDefaultMaxClients : 0;
    return make("open_files", "open files", Level::warning,
                found + ": with 1024 clients (--max-clients) that leaves about " +
                    std::to_string(room) + " segments",
                "raise the hard limit where bridged starts: LimitNOFILE=65536 in its systemd "
                "unit, a nofile line in /etc/security/limits.conf, or docker run --ulimit "
                "nofile=65536",
                details);
  }
  return make("open_files", "open files", Level::ok, found, {}, details);
}

std::vector<Mount> parse_mounts(std::string_view text) {
  std::vector<Mount> mounts;
  while (!text.empty()) {
    const auto eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    std::vector<std::string_view> fields;
    while (!line.empty()) {
      const auto space = line.find(' ');
      if (space != 0) fields.push_back(line.substr(0, space));
      if (space == std::string_view::npos) break;
      line.remove_prefix(space + 1);
    }
    if (fields.size() < 4) continue;
    mounts.push_back({unescape_mount_field(fields[0]), unescape_mount_field(fields[1]),
                      std::string(fields[2]), std::string(fields[3])});
  }
  return mounts;
}

std::optional<std::string> mount_option(const Mount& mount, std::string_view key) {
  std::string_view options = mount.options;
  while (!options.empty()) {
    const auto comma = options.find(',');
    const std::string_view option = options.substr(0, comma);
    if (option.size() > key.size() && option.substr(0, key.size()) == key &&
        option[key.size()] == '=') {
      return std::string(option.substr(key.size() + 1));
    }
    if (comma == std::string_view::npos) break;
    options.remove_prefix(comma + 1);
  }
  return std::nullopt;
}

std::optional<std::string> selected_choice(std::string_view text) {
  const auto open = text.find('[');
  const auto close = text.find(']', open);
  if (open == std::string_view::npos || close == std::string_view::npos) return std::nullopt;
  return std::string(text.substr(open + 1, close - open - 1));
}

std::optional<std::uint64_t> meminfo_field(std::string_view text, std::string_view key) {
  std::size_t at = 0;
  while (at < text.size()) {
    const auto eol = std::min(text.find('\n', at), text.size());
    std::string_view line = text.substr(at, eol - at);
    at = eol + 1;
    if (line.size() <= key.size() || line.substr(0, key.size()) != key || line[key.size()] != ':') {
      continue;
    }
    line = trim(line.substr(key.size() + 1));
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), value);
    if (ec != std::errc()) return std::nullopt;
    if (trim(std::string_view(end, line.data() + line.size() - end)) == "kB") value *= 1024;
    return value;
  }
  return std::nullopt;
}

Finding judge_huge_pages(const HugeFacts& facts) {
  json usable = json::array();  // tmpfs mounts bridged --huge-dir accepts
  json hugetlbfs = json::array();
  bool shm_huge = false;
  for (const auto& m : facts.mounts) {
    if (m.type == "hugetlbfs") hugetlbfs.push_back(m.path);
    if (m.type != "tmpfs") continue;
    const auto huge = mount_option(m, "huge");
    if (huge == "always" || huge == "within_size") {
      if (m.path == "/dev/shm") shm_huge = true;
      usable.push_back(m.path);
    }
  }
  json details = {{"shmem_enabled", facts.shmem_enabled ? json(*facts.shmem_enabled) : json()},
                  {"huge_tmpfs", usable},
                  {"hugetlbfs", hugetlbfs},
                  {"hugetlb_pages_total", facts.hugetlb_total},
                  {"hugetlb_pages_free", facts.hugetlb_free},
                  {"hugetlb_page_size", facts.hugetlb_page_size}};

  std::string hugetlb_text;
  if (!hugetlbfs.empty() || facts.hugetlb_total > 0) {
    hugetlb_text = "; hugetlbfs: " + std::to_string(facts.hugetlb_free) + " of " +
                   std::to_string(facts.hugetlb_total) + " " +
                   human_bytes(facts.hugetlb_page_size) +
                   " pages free (bridged cannot use hugetlbfs yet)";
  }
  const std::string thp = facts.shmem_enabled ? "shmem_enabled=" + *facts.shmem_enabled
                                              : "no transparent huge pages in this kernel";
  const std::string how =
      "for large arrays: mount -t tmpfs -o huge=always,size=8g,mode=1777 none /mnt/huge; "
      "bridged --huge-dir /mnt/huge";

  if (!facts.shmem_enabled || *facts.shmem_enabled == "deny") {
    return make("huge_pages", "huge pages", Level::note,
                thp + ": segments get 4 KiB pages only" + hugetlb_text,
                facts.shmem_enabled ? "echo within_size > "
                                      "/sys/kernel/mm/transparent_hugepage/shmem_enabled (root), "
                                      "then " +
                                          how
                                    : "",
                details);
  }
  if (!usable.empty()) {
    std::string paths;
    for (const auto& p : usable) paths += (paths.empty() ? "" : ", ") + p.get<std::string>();
    return make("huge_pages", "huge pages", Level::ok,
                thp + "; tmpfs with huge pages at " + paths +
                    (shm_huge ? " (/dev/shm itself gives huge pages)" : " (bridged --huge-dir)") +
                    hugetlb_text,
                {}, details);
  }
  return make("huge_pages", "huge pages", Level::note,
              thp +
                  "; no tmpfs mounted with huge=always or huge=within_size, so segments get "
                  "4 KiB pages" +
                  hugetlb_text,
              how, details);
}

Finding judge_futex_waitv(int probe_errno, const std::string& kernel_release) {
  json details = {{"kernel", kernel_release}, {"available", probe_errno == EINVAL}};
  if (probe_errno == EINVAL) {
    return make("futex_waitv", "futex_waitv", Level::ok,
                "available (Linux " + kernel_release + "): bridged sees commits as they happen", {},
                details);
  }
  const std::string cost =
      "bridged checks versions every 20 ms instead, so committed events and watch lag up to "
      "20 ms";
  if (probe_errno == EPERM || probe_errno == EACCES) {
    return make("futex_waitv", "futex_waitv", Level::warning,
                "blocked (Linux " + kernel_release + ", a seccomp filter?): " + cost,
                "allow syscall futex_waitv (449) in the container's seccomp profile", details);
  }
  return make("futex_waitv", "futex_waitv", Level::warning,
              "not in this kernel (Linux " + kernel_release + ", needs 5.16): " + cost,
              "run on Linux 5.16 or later", details);
}

Finding judge_socket(const std::string& path, const std::string& source) {
  return make("socket", "socket", Level::ok, path + " (from " + source + ")", {},
              {{"path", path}, {"source", source}});
}

Finding judge_daemon(const DaemonFacts& facts, const std::string& socket_path,
                     const std::string& our_version) {
  if (!facts.answered) {
    json details = {{"code", facts.error_code}, {"message", facts.error_message}};
    std::string advice;
    if (facts.error_code == "daemon_unavailable") {
      advice = "start one: bridged --socket " + socket_path +
               "; or point bridgectl at the one that runs (--socket PATH or $BRIDGE_SOCKET)";
    } else if (facts.error_code == "permission_denied") {
      advice =
          "ask the daemon's user to start it with --group GROUP and add you to that group, or "
          "start a daemon of your own";
    } else if (facts.error_code == "protocol_mismatch") {
      advice = "use a bridgectl and a bridged of the same release";
    } else if (facts.error_code == "limit_exceeded") {
      advice = "the daemon is at --max-clients: close clients or restart it with a higher limit";
    }
    return make("daemon", "daemon", Level::error,
                "none answers at " + socket_path + " (" + facts.error_code + ": " +
                    facts.error_message + ")",
                advice, details);
  }
  json details = {{"daemon", facts.daemon}, {"pid", facts.pid}, {"protocol", facts.protocol}};
  const std::string found = facts.daemon + " (pid " + std::to_string(facts.pid) + ", protocol " +
                            std::to_string(facts.protocol) + ") answers";
  const std::string ours = "bridged " + our_version;
  if (facts.daemon != ours) {
    return make("daemon", "daemon", Level::warning,
                found + ", but this bridgectl is " + our_version,
                "restart the daemon from the same release after an upgrade", details);
  }
  return make("daemon", "daemon", Level::ok, found, {}, details);
}

Finding judge_permissions(const PermissionFacts& f) {
  auto describe = [](const PathFacts& p) {
    return json{{"exists", p.exists},
                {"mode", mode_string(p.mode)},
                {"owner_uid", p.owner_uid},
                {"group_gid", p.group_gid},
                {"usable", p.usable}};
  };
  json details = {{"directory", f.directory},
                  {"directory_stat", describe(f.dir)},
                  {"socket", f.socket},
                  {"socket_stat", describe(f.sock)}};
  const std::string dir_text = f.directory + " (mode " + mode_string(f.dir.mode) + ", uid " +
                               std::to_string(f.dir.owner_uid) + ", gid " +
                               std::to_string(f.dir.group_gid) + ")";
  if (!f.dir.exists) {
    return make("permissions", "permissions", Level::note,
                f.directory + " does not exist; bridged creates it (mode 0700) when it starts", {},
                details);
  }
  if (!f.dir.is_directory) {
    return make("permissions", "permissions", Level::error, f.directory + " is not a directory",
                "remove it or choose another socket path (--socket)", details);
  }
  const std::string group_advice =
      "ask the daemon's user to start it with --group GROUP (directory 0750, socket 0660) and "
      "add you to that group";
  if (!f.dir.usable) {
    return make("permissions", "permissions", Level::error, f.caller + " may not enter " + dir_text,
                group_advice, details);
  }
  if ((f.dir.mode & 0002) != 0 && (f.dir.mode & 01000) == 0) {
    return make("permissions", "permissions", Level::warning,
                dir_text + " is writable by everyone: another user could replace the socket",
                "chmod o-w " + f.directory + " (bridged makes it 0700, or 0750 with --group)",
                details);
  }
  if (!f.sock.exists) {
    return make("permissions", "permissions", Level::note,
                dir_text + " is usable; no socket in it yet", {}, details);
  }
  if (!f.sock.is_socket) {
    return make("permissions", "permissions", Level::error,
                f.socket + " exists but is not a socket",
                "remove it (bridged replaces only sockets) or choose another path", details);
  }
  const std::string sock_text = "socket mode " + mode_string(f.sock.mode) + " (uid " +
                                std::to_string(f.sock.owner_uid) + ", gid " +
                                std::to_string(f.sock.group_gid) + ")";
  if (!f.sock.usable) {
    return make("permissions", "permissions", Level::error,
                f.caller + " may not connect: " + sock_text, group_advice, details);
  }
  return make("permissions", "permissions", Level::ok,
              dir_text + ", " + sock_text + ": " + f.caller + " may connect", {}, details);
}

Finding judge_quarantine(const Quarantine& q) {
  json objects = json::array();
  for (const auto& [name, reason] : q.objects) {
    objects.push_back({{"name", name}, {"reason", reason}});
  }
  json details = {{"count", q.count}, {"objects", objects}};
  if (!q.asked) {
    return make("quarantine", "quarantine", Level::note, "not checked: no daemon answered", {},
                details);
  }
  if (q.count == 0) {
    return make("quarantine", "quarantine", Level::ok, "no object in quarantine", {}, details);
  }
  std::string found = std::to_string(q.count) + (q.count == 1 ? " object" : " objects") +
                      " in quarantine (headers that did not validate, never served)";
  if (q.objects.empty()) {
    found += "; only the daemon's user and root see their names";
  } else {
    for (std::size_t i = 0; i < q.objects.size(); ++i) {
      found += (i == 0 ? ": " : "; ") + q.objects[i].first + " (" + q.objects[i].second + ")";
    }
  }
  return make("quarantine", "quarantine", Level::warning, found,
              "look at what wrote them, then remove each: bridgectl rm NAME (as the daemon's "
              "user or root)",
              details);
}

}  // namespace bridgectl::doctor
