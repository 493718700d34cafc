// SPDX-License-Identifier: MIT
#include "log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace bridged {

namespace {
bool g_verbose = false;

// Under systemd, stderr is a stream into the journal, which JOURNAL_STREAM
// names (device:inode). The journal stamps each line itself and reads a
// leading "<N>" as its syslog priority, so `journalctl -p warning` finds the
// warnings. A JOURNAL_STREAM for another descriptor (inherited, stderr
// redirected since) does not count.
bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  unsigned long long device = 0;
  unsigned long long inode = 0;
  if (stream == nullptr || std::sscanf(stream, "%llu:%llu", &device, &inode) != 2) return false;
  struct stat st {};
  return ::fstat(STDERR_FILENO, &st) == 0 && st.st_dev == device && st.st_ino == inode;
}

void write(const char* level, int priority, std::string_view message) {
  static const bool journal = stderr_is_journal();
  if (journal) {
    std::fprintf(stderr, "<%d>%s: %.*s\n", priority, level, static_cast<int>(message.size()),
                 message.data());
    return;
  }
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::fprintf(stderr, "%s.%03dZ bridged %s: %.*s\n", stamp, static_cast<int>(millis), level,
               static_cast<int>(message.size()), message.data());
}
}  // namespace

void log_info(std::string_view message) {
  write("info", 6, message);
}
void log_warn(std::string_view message) {
  write("warn", 4, message);
}
void log_debug(std::string_view message) {
  if (g_verbose) write("debug", 7, message);
}
void set_verbose(bool verbose) {
  g_verbose = verbose;
}
bool verbose() {
  return g_verbose;
}

}  // namespace bridged
