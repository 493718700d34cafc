// SPDX-License-Identifier: MIT
// bridged's side of the LISTEN_FDS protocol (daemon/src/socket_activation):
// which environments mean "activated", that the variables never outlive the
// check, and that anything but a listening Unix stream socket on a path is
// refused with a message that says what it is. The exec'd end to end run is
// tests/python/test_socket_activation.py.
#include "socket_activation.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "bridge/detail/os/unique_fd.hpp"
#include "bridge/error.hpp"

namespace {

using bridge::os::UniqueFd;
using testing::HasSubstr;

class SocketActivationTest : public testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/bridged-activation-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    for (const char* name : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}) ::unsetenv(name);
    ::unlink((dir_ + "/s.sock").c_str());
    ::unlink((dir_ + "/file").c_str());
    ::rmdir(dir_.c_str());
  }

  static void set_env(const std::string& pid, const std::string& fds) {
    ::setenv("LISTEN_PID", pid.c_str(), 1);
    ::setenv("LISTEN_FDS", fds.c_str(), 1);
    ::setenv("LISTEN_FDNAMES", "bridged.sock", 1);
  }
  static bool env_cleared() {
    return std::getenv("LISTEN_PID") == nullptr && std::getenv("LISTEN_FDS") == nullptr &&
           std::getenv("LISTEN_FDNAMES") == nullptr;
  }
  static std::string me() { return std::to_string(::getpid()); }

  /// The message of the invalid_argument that listening_unix_path(fd) throws.
  static std::string refusal(int fd) {
    try {
      const std::string path = bridged::listening_unix_path(fd);
      ADD_FAILURE() << "accepted descriptor " << fd << " bound to " << path;
    } catch (const bridge::Error& e) {
      EXPECT_EQ(e.code(), bridge::Errc::invalid_argument) << e.what();
      return e.message();
    }
    return {};
  }

  UniqueFd unix_listener(const std::string& path, bool abstract = false) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path + (abstract ? 1 : 0), path.data(), path.size());
    const auto len =
        static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 1 : 0));
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), len), 0) << errno;
    EXPECT_EQ(::listen(fd.get(), 8), 0) << errno;
    return fd;
  }

  std::string dir_;
};

TEST_F(SocketActivationTest, NoVariablesMeansNotActivated) {
  ::unsetenv("LISTEN_PID");
  ::setenv("LISTEN_FDS", "1", 1);  // without LISTEN_PID it is not for us
  EXPECT_EQ(bridged::passed_fd_count(), 0);
  EXPECT_TRUE(env_cleared());
}

TEST_F(SocketActivationTest, VariablesOfAnotherProcessAreIgnoredAndCleared) {
  // Inherited from an activated parent: its descriptors, not ours.
  set_env(std::to_string(::getppid()), "1");
  EXPECT_EQ(bridged::passed_fd_count(), 0);
  EXPECT_TRUE(env_cleared());
}

TEST_F(SocketActivationTest, VariablesForThisProcessCountAndAreCleared) {
  set_env(me(), "2");
  EXPECT_EQ(bridged::passed_fd_count(), 2);
  EXPECT_TRUE(env_cleared());
}

TEST_F(SocketActivationTest, MalformedVariablesAreRefusedAndCleared) {
  for (const auto& [pid, fds] : std::initializer_list<std::pair<std::string, std::string>>{
           {me(), "0"}, {me(), "-1"}, {me(), "one"}, {me(), ""}, {me(), "1x"}, {"pid", "1"}}) {
    set_env(pid, fds);
    try {
      const int count = bridged::passed_fd_count();
      ADD_FAILURE() << "LISTEN_PID=" << pid << " LISTEN_FDS=" << fds << " gave " << count;
    } catch (const bridge::Error& e) {
      EXPECT_EQ(e.code(), bridge::Errc::invalid_argument);
      EXPECT_THAT(e.message(), HasSubstr("LISTEN_"));
    }
    EXPECT_TRUE(env_cleared()) << "LISTEN_PID=" << pid << " LISTEN_FDS=" << fds;
  }
}

TEST_F(SocketActivationTest, AListeningUnixSocketGivesItsPath) {
  const std::string path = dir_ + "/s.sock";
  UniqueFd fd = unix_listener(path);
  EXPECT_EQ(bridged::listening_unix_path(fd.get()), path);
}

TEST_F(SocketActivationTest, AnythingElseIsRefusedSayingWhatItIs) {
  const std::string file = dir_ + "/file";
  UniqueFd regular(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  EXPECT_THAT(refusal(regular.get()), HasSubstr("is a regular file"));

  int ends[2];
  ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
  UniqueFd read_end(ends[0]), write_end(ends[1]);
  EXPECT_THAT(refusal(read_end.get()), HasSubstr("is a pipe"));

  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
  UniqueFd a(ends[0]), b(ends[1]);
  EXPECT_THAT(refusal(a.get()), HasSubstr("is not listening"));

  UniqueFd datagram(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  EXPECT_THAT(refusal(datagram.get()), HasSubstr("not a stream socket"));

  UniqueFd tcp(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in loopback{};
  loopback.sin_family = AF_INET;
  loopback.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(tcp.get(), reinterpret_cast<sockaddr*>(&loopback), sizeof loopback), 0);
  ASSERT_EQ(::listen(tcp.get(), 1), 0);
  EXPECT_THAT(refusal(tcp.get()), HasSubstr("not a Unix socket"));

  UniqueFd abstract = unix_listener("bridged-activation-test-" + me(), /*abstract=*/true);
  EXPECT_THAT(refusal(abstract.get()), HasSubstr("abstract"));

  UniqueFd closed(::dup(regular.get()));
  const int number = closed.get();
  closed.reset();
  EXPECT_THAT(refusal(number), HasSubstr("is not open"));
}

}  // namespace
