// SPDX-License-Identifier: MIT
#pragma once

namespace bridge {
inline constexpr const char* kVersion = "0.1.0";
}
