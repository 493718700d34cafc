// SPDX-License-Identifier: MIT
//
// The one explicit copy (create_from): a large copy is split across a few
// threads, since one core does not fill the memory bandwidth of most
// machines (a 1 GiB memcpy here: ~130 ms on one thread, ~95 ms on two),
// which is how an arena store like vineyard's put gets below one memcpy.
#pragma once

#include <cstddef>

namespace bridge::detail {

/// Copies `n` bytes from `src` to `dst` (not overlapping). From 64 MiB on,
/// the copy is shared by up to 4 threads (no more than the CPUs this process
/// may run on), joined before return; smaller ones, or any thread that cannot
/// be started, are done on the calling thread.
void parallel_copy(void* dst, const void* src, std::size_t n);

/// Maps every whole page of the writable shared mapping [dst, dst + n)
/// into this process, writable, with MADV_POPULATE_WRITE (on as many
/// threads as parallel_copy), so that writing it takes no page faults. A
/// fresh segment's 4 KiB pages otherwise fault one by one as they are first
/// written (write faults get no fault-around): 1 GiB of them cost 700-800
/// ms of faults here, against ~250 ms of populate on one thread. Where the
/// kernel refuses (before Linux 5.14), nothing happens.
void parallel_populate(void* dst, std::size_t n);

}  // namespace bridge::detail
