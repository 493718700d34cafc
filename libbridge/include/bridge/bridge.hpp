// SPDX-License-Identifier: MIT
// The whole public C++ API of libbridge. Every header under bridge/ that is
// installed is listed here; nothing else (bridge/detail/ is not installed).
#pragma once

#include "bridge/catalog.hpp"
#include "bridge/client.hpp"
#include "bridge/dtype.hpp"
#include "bridge/error.hpp"
#include "bridge/events.hpp"
#include "bridge/mutation.hpp"
#include "bridge/segment.hpp"
#include "bridge/stream.hpp"
#include "bridge/tensor_view.hpp"
#include "bridge/version.hpp"
