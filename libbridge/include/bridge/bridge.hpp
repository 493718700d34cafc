// SPDX-License-Identifier: MIT
// The whole public C++ API of libbridge.
#pragma once

#include "bridge/client.hpp"
#include "bridge/dtype.hpp"
#include "bridge/error.hpp"
#include "bridge/events.hpp"
#include "bridge/layout.hpp"
#include "bridge/mutation.hpp"
#include "bridge/protocol.hpp"
#include "bridge/segment.hpp"
#include "bridge/sync.hpp"
#include "bridge/tensor_view.hpp"
#include "bridge/version.hpp"
