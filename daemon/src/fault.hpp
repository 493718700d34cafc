// SPDX-License-Identifier: MIT
//
// Fault injection for the crash-recovery tests: with BRIDGED_FAULT=<step> in
// its environment the daemon SIGKILLs itself when it reaches that step, so a
// test can check that a restart finds every segment fully there or fully
// gone. The steps are named where fault_point() is called (registry.cpp).
// Costs one string comparison per step when unset.
#pragma once

#include <signal.h>

#include <cstdlib>
#include <cstring>

namespace bridged {

inline void fault_point(const char* step) noexcept {
  static const char* const wanted = std::getenv("BRIDGED_FAULT");
  if (wanted != nullptr && std::strcmp(wanted, step) == 0) ::raise(SIGKILL);
}

}  // namespace bridged
