// SPDX-License-Identifier: MIT
// EXPECT_ERRC(statement, Errc::x): the statement throws bridge::Error with
// that code. EXPECT_ERRC_MSG also wants `needle` in the message. Failures
// print what was thrown instead (or that nothing was).
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <ostream>
#include <string_view>

#include "bridge/error.hpp"

namespace bridge {

// Lets gtest print codes by name.
inline void PrintTo(Errc code, std::ostream* os) {
  *os << to_string(code);
}

namespace testing {

template <class Fn>
::testing::AssertionResult ThrowsErrc(Fn&& fn, Errc expected, std::string_view needle = {}) {
  try {
    fn();
  } catch (const Error& e) {
    if (e.code() != expected) {
      return ::testing::AssertionFailure()
             << "threw Error \"" << e.what() << "\", expected code " << to_string(expected);
    }
    if (e.message().find(needle) == std::string::npos) {
      return ::testing::AssertionFailure()
             << "threw Error \"" << e.what() << "\", expected its message to contain \"" << needle
             << "\"";
    }
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-bridge exception \"" << e.what()
                                         << "\", expected code " << to_string(expected);
  } catch (...) {
    return ::testing::AssertionFailure() << "threw something that is not a std::exception";
  }
  return ::testing::AssertionFailure() << "did not throw, expected code " << to_string(expected);
}

}  // namespace testing
}  // namespace bridge

#define EXPECT_ERRC(statement, code) \
  EXPECT_TRUE(::bridge::testing::ThrowsErrc([&] { (void)(statement); }, code)) << #statement
#define ASSERT_ERRC(statement, code) \
  ASSERT_TRUE(::bridge::testing::ThrowsErrc([&] { (void)(statement); }, code)) << #statement
#define EXPECT_ERRC_MSG(statement, code, needle) \
  EXPECT_TRUE(::bridge::testing::ThrowsErrc([&] { (void)(statement); }, code, needle)) << #statement
