// SPDX-License-Identifier: MIT
// Error codes: wire names, bridgectl exit codes, errno mapping, Error itself.
#include "bridge/error.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <string>

namespace bridge {
namespace {

using ::testing::HasSubstr;

TEST(ErrcTest, EveryCodeNameRoundTrips) {
  for (Errc code : kAllErrc) {
    const std::string_view name = to_string(code);
    EXPECT_NE(name, "") << static_cast<int>(code);
    auto parsed = errc_from_string(name);
    ASSERT_TRUE(parsed.has_value()) << name;
    EXPECT_EQ(*parsed, code) << name;
  }
}

TEST(ErrcTest, WireNamesAreTheStableSnakeCaseNames) {
  // These strings are the protocol: the daemon sends them, Python maps them
  // to exception classes, bridgectl prints them. Changing one is a break.
  EXPECT_EQ(to_string(Errc::invalid_argument), "invalid_argument");
  EXPECT_EQ(to_string(Errc::not_found), "not_found");
  EXPECT_EQ(to_string(Errc::already_exists), "already_exists");
  EXPECT_EQ(to_string(Errc::permission_denied), "permission_denied");
  EXPECT_EQ(to_string(Errc::no_space), "no_space");
  EXPECT_EQ(to_string(Errc::daemon_unavailable), "daemon_unavailable");
  EXPECT_EQ(to_string(Errc::protocol_error), "protocol_error");
  EXPECT_EQ(to_string(Errc::protocol_mismatch), "protocol_mismatch");
  EXPECT_EQ(to_string(Errc::type_mismatch), "type_mismatch");
  EXPECT_EQ(to_string(Errc::corrupt_segment), "corrupt_segment");
  EXPECT_EQ(to_string(Errc::limit_exceeded), "limit_exceeded");
  EXPECT_EQ(to_string(Errc::io_error), "io_error");
  EXPECT_EQ(to_string(Errc::internal), "internal");
  EXPECT_EQ(to_string(Errc::closed), "closed");
}

TEST(ErrcTest, NamesAreDistinct) {
  std::set<std::string_view> names;
  for (Errc code : kAllErrc) names.insert(to_string(code));
  EXPECT_EQ(names.size(), std::size(kAllErrc));
}

TEST(ErrcTest, AllCodesListsEveryValueInNumericOrder) {
  int expected = 1;
  for (Errc code : kAllErrc) EXPECT_EQ(static_cast<int>(code), expected++);
  EXPECT_EQ(std::size(kAllErrc), 16u);
}

TEST(ErrcTest, UnknownNamesAreRejected) {
  EXPECT_FALSE(errc_from_string("").has_value());
  EXPECT_FALSE(errc_from_string("NOT_FOUND").has_value());
  EXPECT_FALSE(errc_from_string("not_found ").has_value());
  EXPECT_FALSE(errc_from_string("notfound").has_value());
  EXPECT_FALSE(errc_from_string("ok").has_value());
}

TEST(ErrcTest, ExitCodeIsBasePlusValueAndDistinct) {
  std::set<int> codes;
  for (Errc code : kAllErrc) {
    EXPECT_EQ(exit_code(code), 10 + static_cast<int>(code)) << to_string(code);
    // 0 is success, 1 and 2 are generic failure and usage errors.
    EXPECT_GT(exit_code(code), 2);
    EXPECT_LT(exit_code(code), 126);  // 126+ are reserved by shells
    codes.insert(exit_code(code));
  }
  EXPECT_EQ(codes.size(), std::size(kAllErrc));
  EXPECT_EQ(kExitCodeBase, 10);
  EXPECT_EQ(exit_code(Errc::not_found), 12);
}

struct ErrnoCase {
  int err;
  Errc expected;
};

class ErrnoMappingTest : public ::testing::TestWithParam<ErrnoCase> {};

TEST_P(ErrnoMappingTest, MapsToClosestCode) {
  EXPECT_EQ(errc_from_errno(GetParam().err), GetParam().expected)
      << "errno " << GetParam().err << " (" << std::strerror(GetParam().err) << ")";
}

INSTANTIATE_TEST_SUITE_P(
    Errno, ErrnoMappingTest,
    ::testing::Values(
        ErrnoCase{ENOSPC, Errc::no_space}, ErrnoCase{ENOMEM, Errc::no_space},
        ErrnoCase{EFBIG, Errc::no_space}, ErrnoCase{EACCES, Errc::permission_denied},
        ErrnoCase{EPERM, Errc::permission_denied}, ErrnoCase{ENOENT, Errc::not_found},
        ErrnoCase{EEXIST, Errc::already_exists}, ErrnoCase{EINVAL, Errc::invalid_argument},
        ErrnoCase{ENAMETOOLONG, Errc::invalid_argument}, ErrnoCase{EMFILE, Errc::limit_exceeded},
        ErrnoCase{ENFILE, Errc::limit_exceeded}, ErrnoCase{ECONNREFUSED, Errc::daemon_unavailable},
        ErrnoCase{ECONNRESET, Errc::daemon_unavailable}, ErrnoCase{EPIPE, Errc::daemon_unavailable},
        ErrnoCase{ENOTCONN, Errc::daemon_unavailable}, ErrnoCase{EIO, Errc::io_error},
        ErrnoCase{EBADF, Errc::io_error}, ErrnoCase{0, Errc::io_error}));

TEST(ErrorTest, WhatIsCodeColonMessage) {
  const Error error(Errc::not_found, "no segment 'frames'");
  EXPECT_EQ(error.code(), Errc::not_found);
  EXPECT_EQ(error.message(), "no segment 'frames'");
  EXPECT_STREQ(error.what(), "not_found: no segment 'frames'");
}

TEST(ErrorTest, IsARuntimeError) {
  try {
    throw Error(Errc::closed, "gone");
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "closed: gone");
    return;
  }
  FAIL() << "Error was not caught as std::runtime_error";
}

TEST(ErrorTest, ThrowErrnoCarriesMappedCodeAndStrerror) {
  try {
    throw_errno(ENOSPC, "posix_fallocate");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::no_space);
    EXPECT_EQ(e.message(), std::string("posix_fallocate: ") + std::strerror(ENOSPC));
    return;
  }
  FAIL() << "throw_errno did not throw Error";
}

TEST(ErrorTest, ThrowErrnoWithUnlistedErrnoIsIoError) {
  try {
    throw_errno(EIO, "read");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::io_error);
    EXPECT_THAT(e.message(), HasSubstr("read: "));
    return;
  }
  FAIL() << "throw_errno did not throw Error";
}

}  // namespace
}  // namespace bridge
