// SPDX-License-Identifier: MIT
#include "bridge/error.hpp"

#include <cerrno>
#include <cstring>

namespace bridge {

std::string_view to_string(Errc code) noexcept {
  switch (code) {
    case Errc::invalid_argument:
      return "invalid_argument";
    case Errc::not_found:
      return "not_found";
    case Errc::already_exists:
      return "already_exists";
    case Errc::permission_denied:
      return "permission_denied";
    case Errc::no_space:
      return "no_space";
    case Errc::daemon_unavailable:
      return "daemon_unavailable";
    case Errc::protocol_error:
      return "protocol_error";
    case Errc::protocol_mismatch:
      return "protocol_mismatch";
    case Errc::type_mismatch:
      return "type_mismatch";
    case Errc::corrupt_segment:
      return "corrupt_segment";
    case Errc::limit_exceeded:
      return "limit_exceeded";
    case Errc::io_error:
      return "io_error";
    case Errc::internal:
      return "internal";
    case Errc::closed:
      return "closed";
    case Errc::timeout:
      return "timeout";
    case Errc::torn_read:
      return "torn_read";
  }
  return "internal";
}

std::optional<Errc> errc_from_string(std::string_view name) noexcept {
  for (Errc code : kAllErrc) {
    if (to_string(code) == name) return code;
  }
  return std::nullopt;
}

Errc errc_from_errno(int err) noexcept {
  switch (err) {
    case ENOSPC:
    case ENOMEM:
    case EFBIG:
      return Errc::no_space;
    case EACCES:
    case EPERM:
      return Errc::permission_denied;
    case ENOENT:
      return Errc::not_found;
    case EEXIST:
      return Errc::already_exists;
    case EINVAL:
    case ENAMETOOLONG:
      return Errc::invalid_argument;
    case EMFILE:
    case ENFILE:
      return Errc::limit_exceeded;
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
    case ENOTCONN:
      return Errc::daemon_unavailable;
    case ETIMEDOUT:
      return Errc::timeout;
    default:
      return Errc::io_error;
  }
}

Error::Error(Errc code, const std::string& message)
    : std::runtime_error(std::string(to_string(code)) + ": " + message),
      code_(code),
      message_(message) {}

void throw_errno(int err, const std::string& what) {
  throw Error(errc_from_errno(err), what + ": " + std::strerror(err));
}

}  // namespace bridge
