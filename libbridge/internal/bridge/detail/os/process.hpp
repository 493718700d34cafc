// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>

namespace bridge::os {

/// This process's pid without a getpid syscall per call (0.25 us here): it is
/// read once and forgotten in a fork()ed child (pthread_atfork), so a child
/// never sees its parent's. Commits record it; connections compare it to
/// tell that they were inherited across fork().
pid_t this_pid() noexcept;

}  // namespace bridge::os
