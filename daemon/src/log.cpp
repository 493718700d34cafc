// SPDX-License-Identifier: MIT
#include "log.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace bridged {

namespace {
bool g_verbose = false;

void write(const char* level, std::string_view message) {
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
  write("info", message);
}
void log_warn(std::string_view message) {
  write("warn", message);
}
void log_debug(std::string_view message) {
  if (g_verbose) write("debug", message);
}
void set_verbose(bool verbose) {
  g_verbose = verbose;
}
bool verbose() {
  return g_verbose;
}

}  // namespace bridged
