// SPDX-License-Identifier: MIT
// The daemon logs to stderr, one line per event, prefixed with a UTC time;
// when stderr is the journal (systemd's JOURNAL_STREAM), with the syslog
// priority instead ("<6>info: ...", "<4>warn: ...", "<7>debug: ...").
#pragma once

#include <string_view>

namespace bridged {

void log_info(std::string_view message);
void log_warn(std::string_view message);
void log_debug(std::string_view message);
void set_verbose(bool verbose);
/// Whether log_debug writes (bridged -v): lets hot paths skip building the line.
bool verbose();

}  // namespace bridged
