// SPDX-License-Identifier: MIT
//
// bridge::Client::connect on a daemon at --max-clients must report
// limit_exceeded, not daemon_unavailable. The daemon accepts, sends an id-0
// limit_exceeded frame and closes at once (Server::refuse); the client's hello
// often goes out after that close and fails with EPIPE, so the client must
// still read the frame waiting in its receive queue.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "bridge/bridge.hpp"
#include "daemon_process.hpp"

namespace bridge {
namespace {

class FullDaemonTest : public bridge::testing::DaemonTest {
 protected:
  std::vector<std::string> daemon_args() const override { return {"--max-clients", "1"}; }
};

TEST_F(FullDaemonTest, ConnectToAFullDaemonThrowsLimitExceeded) {
  // The fixture's client is the one connection allowed.
  std::map<std::string, int> outcomes;
  for (int i = 0; i < 50; ++i) {
    try {
      Client::connect(socket_path());
      ++outcomes["connected"];
    } catch (const Error& e) {
      ++outcomes[e.what()];
    }
  }
  for (const auto& [what, count] : outcomes) {
    EXPECT_EQ(what.rfind("limit_exceeded", 0), 0u) << count << " of 50: " << what;
  }
}

}  // namespace
}  // namespace bridge
