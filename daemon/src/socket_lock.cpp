// SPDX-License-Identifier: MIT
#include "socket_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "bridge/error.hpp"

namespace bridged {

namespace {

void make_private_dirs(const std::string& dir) {
  if (dir.empty()) return;
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      throw bridge::Error(bridge::Errc::invalid_argument, dir + " is not a directory");
    }
    return;
  }
  const auto slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0) make_private_dirs(dir.substr(0, slash));
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    bridge::throw_errno(errno, "cannot create socket directory " + dir);
  }
}

// Whether a listening Unix socket is bound to `path` (from /proc/net/unix,
// which lists the bound path and the listening flag of every Unix socket in
// this network namespace). Read instead of connecting, since a connect would
// start the daemon a service manager is waiting to start.
bool someone_listens_on(const std::string& path) {
  std::ifstream table("/proc/net/unix");
  std::string line;
  std::getline(table, line);  // the column names
  while (std::getline(table, line)) {
    // Num RefCount Protocol Flags Type St Inode Path
    std::istringstream fields(line);
    std::string num, refcount, protocol, flags, type, state, inode;
    if (!(fields >> num >> refcount >> protocol >> flags >> type >> state >> inode)) continue;
    std::string bound;
    std::getline(fields >> std::ws, bound);
    constexpr unsigned long kAcceptingConnections = 0x10000;  // __SO_ACCEPTCON
    if (bound == path && (std::strtoul(flags.c_str(), nullptr, 16) & kAcceptingConnections) != 0) {
      return true;
    }
  }
  return false;
}

}  // namespace

SocketLock::SocketLock(const std::string& socket_path, SocketOrigin origin) {
  const auto slash = socket_path.find_last_of('/');
  if (slash != std::string::npos) make_private_dirs(socket_path.substr(0, slash));
  const std::string lock_path = socket_path + ".lock";
  lock_fd_.reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock_fd_) bridge::throw_errno(errno, "cannot open lock file " + lock_path);
  if (::flock(lock_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) bridge::throw_errno(errno, "cannot lock " + lock_path);
    char pid[32] = {};
    const ssize_t n = ::pread(lock_fd_.get(), pid, sizeof pid - 1, 0);
    std::string holder = n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : "unknown";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    throw bridge::Error(bridge::Errc::already_exists,
                        "another bridged (pid " + holder + ") already serves " + socket_path);
  }
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_.get(), 0) != 0 ||
      ::pwrite(lock_fd_.get(), me.data(), me.size(), 0) != static_cast<ssize_t>(me.size())) {
    bridge::throw_errno(errno, "cannot write " + lock_path);
  }
  if (origin == SocketOrigin::service_manager) return;
  // We hold the lock, so no bridged serves this path. A socket still
  // listening there is a service manager's, waiting to start one at the
  // first connect: replacing its file would cut it off without a word.
  if (someone_listens_on(socket_path)) {
    throw bridge::Error(bridge::Errc::already_exists,
                        "a service manager (or another program) listens on " + socket_path +
                            " and would start bridged at the first connect; use it (connect), "
                            "or stop it first (systemctl --user stop shmbridge.socket)");
  }
  // So whatever socket file exists belongs to a dead daemon.
  if (::unlink(socket_path.c_str()) != 0 && errno != ENOENT) {
    bridge::throw_errno(errno, "cannot remove stale socket " + socket_path);
  }
}

}  // namespace bridged
