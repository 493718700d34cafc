// SPDX-License-Identifier: MIT
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace bridge {

/// Every failure shmbridge reports has one of these codes. The wire name
/// (`to_string`) is what the daemon sends, what `bridgectl --json` prints and
/// what names the Python exception class; the numeric value plus
/// `kExitCodeBase` is `bridgectl`'s exit status. Values are stable: append only.
enum class Errc : int {
  invalid_argument = 1,    ///< a malformed name, shape, dtype, metadata, option
  not_found = 2,           ///< no segment of that name
  already_exists = 3,      ///< a segment of that name exists
  permission_denied = 4,   ///< the caller may not do this
  no_space = 5,            ///< shared memory (or the daemon's budget) is full
  daemon_unavailable = 6,  ///< no daemon answers on the socket
  protocol_error = 7,      ///< a frame or message that does not follow the protocol
  protocol_mismatch = 8,   ///< client and daemon speak different protocol versions
  type_mismatch = 9,       ///< a view asked for a C++ type that is not the segment's dtype
  corrupt_segment = 10,    ///< a segment header that does not validate
  limit_exceeded = 11,     ///< too many segments, connections, bytes
  io_error = 12,           ///< an OS call failed for a reason not listed above
  internal = 13,           ///< a bug: please report it
  closed = 14,             ///< the segment or client was closed by this process
  timeout = 15,            ///< a wait or lock did not succeed in time
  torn_read = 16,          ///< a write overlapped a read that asked to be consistent
};

/// Added to the numeric code to form bridgectl's exit status (1 and 2 stay
/// free for generic failures and usage errors).
inline constexpr int kExitCodeBase = 10;

/// All codes, in numeric order (for tables, tests and bindings).
inline constexpr Errc kAllErrc[] = {
    Errc::invalid_argument, Errc::not_found,
    Errc::already_exists,   Errc::permission_denied,
    Errc::no_space,         Errc::daemon_unavailable,
    Errc::protocol_error,   Errc::protocol_mismatch,
    Errc::type_mismatch,    Errc::corrupt_segment,
    Errc::limit_exceeded,   Errc::io_error,
    Errc::internal,         Errc::closed,
    Errc::timeout,          Errc::torn_read,
};

/// The wire name, e.g. "not_found".
std::string_view to_string(Errc code) noexcept;
/// Inverse of to_string; nullopt for an unknown name.
std::optional<Errc> errc_from_string(std::string_view name) noexcept;
/// bridgectl's exit status for a code.
inline int exit_code(Errc code) noexcept {
  return kExitCodeBase + static_cast<int>(code);
}
/// Maps an errno value to the closest code (ENOSPC -> no_space, EACCES -> permission_denied ...).
Errc errc_from_errno(int err) noexcept;

/// The one exception type libbridge throws. `what()` is "<code>: <message>".
class Error : public std::runtime_error {
 public:
  Error(Errc code, const std::string& message);
  Errc code() const noexcept { return code_; }
  /// The message without the "<code>: " prefix.
  const std::string& message() const noexcept { return message_; }

 private:
  Errc code_;
  std::string message_;
};

/// Throws Error(errc_from_errno(err), what + ": " + strerror(err)).
[[noreturn]] void throw_errno(int err, const std::string& what);

}  // namespace bridge
