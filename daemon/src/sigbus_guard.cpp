// SPDX-License-Identifier: MIT
#include "sigbus_guard.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

namespace bridged {

namespace {

void on_sigbus(int, siginfo_t* info, void*) {
  // Only mmap and a raise here: both are plain syscalls, safe in a handler.
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto address = reinterpret_cast<std::uintptr_t>(info->si_addr);
  void* start = reinterpret_cast<void*>(address & ~(page - 1));
  if (info->si_code != BUS_ADRERR ||
      ::mmap(start, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
          MAP_FAILED) {
    // Not a truncated mapping (or it cannot be patched): die as SIGBUS would.
    ::signal(SIGBUS, SIG_DFL);
    ::raise(SIGBUS);
  }
}

}  // namespace

void install_sigbus_guard() {
  struct sigaction action {};
  action.sa_sigaction = on_sigbus;
  action.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGBUS, &action, nullptr);
}

}  // namespace bridged
