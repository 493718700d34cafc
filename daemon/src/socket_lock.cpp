// SPDX-License-Identifier: MIT
#include "socket_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
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

}  // namespace

SocketLock::SocketLock(const std::string& socket_path) {
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
  // We hold the lock, so whatever socket file exists belongs to a dead daemon.
  if (::unlink(socket_path.c_str()) != 0 && errno != ENOENT) {
    bridge::throw_errno(errno, "cannot remove stale socket " + socket_path);
  }
}

}  // namespace bridged
