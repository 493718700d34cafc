// SPDX-License-Identifier: MIT
//
// Client::connect() with no socket starts a daemon for this user when none
// answers on the default socket; ConnectOptions{.autostart = false}, an
// explicit path and $BRIDGE_AUTOSTART=0 never do (README "bridged").
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "bridge/bridge.hpp"
#include "daemon_process.hpp"
#include "expect_error.hpp"

namespace bridge {
namespace {

class AutostartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = bridge::testing::make_temp_dir();
    ::setenv("XDG_RUNTIME_DIR", dir_.c_str(), 1);
    ::setenv("BRIDGE_DAEMON", BRIDGED_PATH, 1);
    ::unsetenv("BRIDGE_SOCKET");
    ::unsetenv("BRIDGE_AUTOSTART");
    socket_ = dir_ + "/shmbridge/bridged.sock";
    ASSERT_EQ(default_socket_path(), socket_);
  }

  void TearDown() override {
    if (daemon_pid_ > 0) {
      // SIGTERM, then wait on a pidfd until it is gone (it is not our child).
      const int fd = static_cast<int>(::syscall(SYS_pidfd_open, daemon_pid_, 0));
      ::kill(daemon_pid_, SIGTERM);
      if (fd >= 0) {
        pollfd p{fd, POLLIN, 0};
        EXPECT_EQ(::poll(&p, 1, 10'000), 1) << "the autostarted daemon did not stop";
        ::close(fd);
      }
    }
    ::unsetenv("BRIDGE_DAEMON");
    ::unsetenv("XDG_RUNTIME_DIR");
    std::filesystem::remove_all(dir_);
  }

  std::string dir_;
  std::string socket_;
  pid_t daemon_pid_ = 0;
};

TEST_F(AutostartTest, ConnectStartsADaemonOnTheDefaultSocket) {
  Client client = Client::connect();
  daemon_pid_ = static_cast<pid_t>(client.stats().pid);
  EXPECT_NE(daemon_pid_, ::getpid());
  EXPECT_EQ(client.socket_path(), socket_);
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/shmbridge/bridged.log"));
  {
    Segment segment = client.create("auto", {4}, DType::uint8);
    segment.view<std::uint8_t>()(0) = 7;
  }
  // A second client finds the same daemon and the same segment.
  Client again = Client::connect();
  EXPECT_EQ(again.stats().pid, daemon_pid_);
  EXPECT_EQ(again.attach("auto").view<const std::uint8_t>()(0), 7);
  again.destroy("auto");
}

TEST_F(AutostartTest, NoDaemonIsStartedWhenToldNotTo) {
  EXPECT_ERRC(Client::connect(ConnectOptions{"", false}), Errc::daemon_unavailable);
  EXPECT_ERRC(Client::connect(socket_), Errc::daemon_unavailable);
  ::setenv("BRIDGE_AUTOSTART", "0", 1);
  EXPECT_ERRC(Client::connect(), Errc::daemon_unavailable);
  ::unsetenv("BRIDGE_AUTOSTART");
  EXPECT_FALSE(std::filesystem::exists(socket_));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/shmbridge/bridged.log"));
}

}  // namespace
}  // namespace bridge
