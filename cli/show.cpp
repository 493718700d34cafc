// SPDX-License-Identifier: MIT
//
// `show`: attaches (a mapping, no copy) and previews the values in place.
#include <iostream>

#include "bridge/dtype.hpp"
#include "bridge/segment.hpp"
#include "commands.hpp"
#include "units.hpp"

namespace bridgectl {

int cmd_show(const Context& ctx, const ShowOptions& options) {
  auto client = ctx.connect();
  auto segment = client.attach(options.name);
  // Read before the values: a writer that commits meanwhile makes the
  // printed version older than the values, never newer.
  const std::uint64_t version = segment.version();
  const std::string dtype(bridge::dtype_name(segment.dtype()));

  return bridge::visit_dtype(segment.dtype(), [&](auto zero) -> int {
    using T = decltype(zero);
    // const: a preview never needs a writable view.
    const auto view = segment.template view<const T>();
    const std::span<const T> values = view.flat();
    if (ctx.json) {
      bool truncated = false;
      nlohmann::json values_json =
          values_to_json(values, std::span(segment.shape()), options.max_elements,
                         options.preview.edgeitems, &truncated);
      print_json({{"name", segment.name()},
                  {"dtype", dtype},
                  {"shape", segment.shape()},
                  {"version", version},
                  {"values", std::move(values_json)},
                  {"truncated", truncated}});
      return 0;
    }
    std::cout << segment.name() << ": " << dtype << ' ' << shape_tuple(segment.shape())
              << ", version " << version << '\n'
              << format_array(values, std::span(segment.shape()), options.preview) << '\n';
    return 0;
  });
}

}  // namespace bridgectl
