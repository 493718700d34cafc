// SPDX-License-Identifier: MIT
//
// `bridgectl stats --prometheus`: the daemon's counters in the Prometheus
// text exposition format (version 0.0.4), for node_exporter's textfile
// collector or any scraper that reads a file. A pure function of the
// daemon's replies, so it is unit-tested without a daemon.
#pragma once

#include <string>
#include <vector>

#include "bridge/catalog.hpp"

namespace bridgectl {

/// Every family has # HELP and # TYPE lines and is named shmbridge_*;
/// per-segment series carry a segment="NAME" label, one per element of
/// `segments` (those the caller may attach); streams among them also get
/// shmbridge_stream_* series labelled stream="NAME".
std::string prometheus_text(const bridge::DaemonStats& stats,
                            const std::vector<bridge::SegmentInfo>& segments);

}  // namespace bridgectl
