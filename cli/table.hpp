// SPDX-License-Identifier: MIT
#pragma once

#include <string>
#include <vector>

namespace bridgectl {

struct Column {
  std::string header;
  bool right = false;  ///< right-align (numbers)
};

/// A plain-text table: a header row, then one row per entry, columns
/// separated by two spaces, no trailing whitespace.
std::string render_table(const std::vector<Column>& columns,
                         const std::vector<std::vector<std::string>>& rows);

}  // namespace bridgectl
