// SPDX-License-Identifier: MIT
//
// A client holding a writable descriptor can ftruncate a segment under the
// daemon's feet (a shm object cannot be sealed against shrinking), and the
// daemon's next read of that header would die of SIGBUS. The guard turns such
// a fault into reading zeros: it maps an anonymous page over the faulting one
// and lets the access retry. A zeroed header then fails validation and the
// segment is quarantined like any other corrupt one, while everyone else
// keeps being served.
#pragma once

namespace bridged {

/// Installs the SIGBUS handler (process-wide, idempotent).
void install_sigbus_guard();

}  // namespace bridged
