// SPDX-License-Identifier: MIT
#include "bridge/detail/autostart.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string_view>
#include <vector>

#include "bridge/detail/os/unique_fd.hpp"
#include "bridge/detail/os/unix_socket.hpp"
#include "bridge/error.hpp"

namespace bridge::detail {

namespace {

// A daemon adopting thousands of segments after a crash takes a while; one
// that has not said "ready" by then is not going to.
constexpr std::chrono::seconds kReadyTimeout{20};

std::mutex hint_mutex;
std::string& executable_hint() {
  static std::string hint;
  return hint;
}

bool is_executable(const std::string& path) {
  struct stat st {};
  return !path.empty() && ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         ::access(path.c_str(), X_OK) == 0;
}

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string beside_this_program() {
  std::string exe(4096, '\0');
  const ssize_t n = ::readlink("/proc/self/exe", exe.data(), exe.size() - 1);
  if (n <= 0) return {};
  exe.resize(static_cast<std::size_t>(n));
  return directory_of(exe) + "/bridged";
}

std::string on_path() {
  const std::string path = env("PATH");
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t end = std::min(path.find(':', start), path.size());
    const std::string dir = end > start ? path.substr(start, end - start) : ".";
    if (const std::string candidate = dir + "/bridged"; is_executable(candidate)) return candidate;
    start = end + 1;
  }
  return {};
}

// What the daemon wrote to its log since `offset`: the reason it exited.
std::string log_since(int log_fd, off_t offset) {
  std::string text(2048, '\0');
  const ssize_t n = ::pread(log_fd, text.data(), text.size(), offset);
  text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

// Runs `argv` as a daemon: its own session (no terminal's SIGHUP or ^C
// reaches it), reparented to init by a double fork (this process never has
// a zombie to reap), stdin /dev/null, stdout and stderr to `log_fd`, the
// ready pipe as fd 3, nothing else inherited.
void spawn_detached(const std::vector<std::string>& args, int log_fd, int ready_fd) {
  // High numbers, so that the child's dup2 onto 0-3 never overwrites one it
  // still has to copy; close-on-exec, so no other child inherits them.
  os::UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null) throw_errno(errno, "open /dev/null");
  os::UniqueFd null_hi(::fcntl(null.get(), F_DUPFD_CLOEXEC, 10));
  os::UniqueFd log_hi(::fcntl(log_fd, F_DUPFD_CLOEXEC, 10));
  os::UniqueFd ready_hi(::fcntl(ready_fd, F_DUPFD_CLOEXEC, 10));
  if (!null_hi || !log_hi || !ready_hi) throw_errno(errno, "fcntl F_DUPFD_CLOEXEC");
  std::vector<char*> argv;
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  const pid_t child = ::fork();
  if (child < 0) throw_errno(errno, "fork");
  if (child == 0) {
    // Only async-signal-safe calls from here to exec: the caller may have
    // threads, whose locks this copy of memory holds forever.
    ::setsid();
    const pid_t grandchild = ::fork();
    if (grandchild != 0) ::_exit(grandchild < 0 ? 1 : 0);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &dfl, nullptr);
    if (::chdir("/") != 0) ::_exit(126);
    if (::dup2(null_hi.get(), 0) < 0 || ::dup2(log_hi.get(), 1) < 0 ||
        ::dup2(log_hi.get(), 2) < 0 || ::dup2(ready_hi.get(), 3) < 0) {
      ::_exit(126);
    }
#ifdef SYS_close_range
    if (::syscall(SYS_close_range, 4U, ~0U, 0U) != 0)
#endif
    {
      for (int fd = 4; fd < 65536; ++fd) ::close(fd);
    }
    ::execv(argv[0], argv.data());
    const char failed[] = "shmbridge autostart: exec of bridged failed\n";
    [[maybe_unused]] auto n = ::write(2, failed, sizeof failed - 1);
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw Error(Errc::daemon_unavailable, "could not start " + args[0] + ": fork failed");
  }
}

// Reads from the ready pipe until "ready" or EOF (the daemon exited, or
// closed it without a word) or the deadline. True on "ready".
bool wait_ready(int fd, std::chrono::steady_clock::time_point deadline) {
  std::string said;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return false;
    char buf[64];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return said.find("ready") != std::string::npos;
    said.append(buf, static_cast<std::size_t>(n));
    if (said.find("ready") != std::string::npos) return true;
  }
}

}  // namespace

bool autostart_allowed() {
  if (!env("BRIDGE_SOCKET").empty()) return false;
  std::string value = env("BRIDGE_AUTOSTART");
  for (char& c : value) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return !(value == "0" || value == "false" || value == "no" || value == "off");
}

void set_daemon_executable(std::string path) {
  std::lock_guard lock(hint_mutex);
  executable_hint() = std::move(path);
}

std::string daemon_executable() {
  if (std::string chosen = env("BRIDGE_DAEMON"); !chosen.empty()) return chosen;
  {
    std::lock_guard lock(hint_mutex);
    if (is_executable(executable_hint())) return executable_hint();
  }
  if (std::string beside = beside_this_program(); is_executable(beside)) return beside;
  return on_path();
}

void start_daemon(const std::string& socket_path) {
  const std::string dir = directory_of(socket_path);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw_errno(errno, "mkdir " + dir);
  }
  // Every process that found no daemon queues here; the first starts one,
  // the others then find it answering. The kernel drops the lock with its
  // holder, however that dies.
  const std::string lock_path = socket_path + ".start";
  os::UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) throw_errno(errno, "open " + lock_path);
  while (::flock(lock.get(), LOCK_EX) != 0) {
    if (errno != EINTR) throw_errno(errno, "flock " + lock_path);
  }
  try {
    os::connect_unix(socket_path);
    return;  // started by whoever held the lock before us
  } catch (const Error& e) {
    if (e.code() != Errc::daemon_unavailable) throw;
  }

  const std::string exe = daemon_executable();
  if (exe.empty()) {
    throw Error(Errc::daemon_unavailable,
                "no daemon answers at " + socket_path +
                    " and no bridged executable was found to start one (put bridged on PATH or "
                    "set BRIDGE_DAEMON to it; BRIDGE_AUTOSTART=0 turns autostart off)");
  }
  const std::string log_path = dir + "/bridged.log";
  os::UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log) throw_errno(errno, "open " + log_path);
  struct stat st {};
  const off_t log_start = ::fstat(log.get(), &st) == 0 ? st.st_size : 0;
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) throw_errno(errno, "pipe2");
  os::UniqueFd ready_read(ends[0]);
  os::UniqueFd ready_write(ends[1]);

  spawn_detached({exe, "--socket", socket_path, "--ready-fd", "3"}, log.get(), ready_write.get());
  ready_write.reset();  // EOF on the read end once the daemon closes or exits
  if (wait_ready(ready_read.get(), std::chrono::steady_clock::now() + kReadyTimeout)) return;

  os::UniqueFd log_read(::open(log_path.c_str(), O_RDONLY | O_CLOEXEC));
  const std::string said = log_read ? log_since(log_read.get(), log_start) : std::string();
  throw Error(Errc::daemon_unavailable,
              "started " + exe + " for " + socket_path + " but it " +
                  (said.empty() ? std::string("did not get ready") : "did not get ready: " + said) +
                  " (log: " + log_path + ")");
}

}  // namespace bridge::detail
