// SPDX-License-Identifier: MIT
//
// bridgectl doctor's judgements on made-up machines: the places where
// shmbridge is known to hurt (Docker's /dev/shm, an old kernel, a socket
// another user owns) must come out as warnings or errors with advice, and a
// healthy machine as ok, whatever machine runs the test.
#include "doctor.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

namespace {

using namespace bridgectl::doctor;

constexpr std::uint64_t MiB = 1ull << 20;
constexpr std::uint64_t GiB = 1ull << 30;

TEST(DoctorShm, DockersDefaultIsAWarningThatSaysHowToGrowIt) {
  const auto f = judge_shm(ShmSpace{64 * MiB, 60 * MiB, true});
  EXPECT_EQ(f.level, Level::warning);
  EXPECT_NE(f.found.find("Docker"), std::string::npos) << f.found;
  EXPECT_NE(f.advice.find("--shm-size"), std::string::npos) << f.advice;
  EXPECT_EQ(f.details.at("total_bytes"), 64 * MiB);
}

TEST(DoctorShm, AlmostFullIsAWarning) {
  const auto f = judge_shm(ShmSpace{8 * GiB, 100 * MiB, true});
  EXPECT_EQ(f.level, Level::warning);
  EXPECT_NE(f.advice.find("bridgectl rm"), std::string::npos) << f.advice;
}

TEST(DoctorShm, MissingOrReadOnlyIsAnError) {
  EXPECT_EQ(judge_shm(std::nullopt).level, Level::error);
  EXPECT_FALSE(judge_shm(std::nullopt).advice.empty());
  EXPECT_EQ(judge_shm(ShmSpace{8 * GiB, 8 * GiB, false}).level, Level::error);
}

TEST(DoctorShm, RoomyIsOk) {
  const auto f = judge_shm(ShmSpace{8 * GiB, 7 * GiB, true});
  EXPECT_EQ(f.level, Level::ok);
  EXPECT_TRUE(f.advice.empty());
  EXPECT_EQ(f.found, "8.0 GiB, 7.0 GiB free");
}

TEST(DoctorOpenFiles, ALowHardLimitIsAWarning) {
  EXPECT_EQ(judge_open_files(1024, 1024).level, Level::warning);
  EXPECT_NE(judge_open_files(1024, 2048).found.find("1024 segments"), std::string::npos);
  EXPECT_NE(judge_open_files(1024, 1024).advice.find("LimitNOFILE"), std::string::npos);
  // The daemon raises its soft limit itself: a low soft limit alone is fine.
  EXPECT_EQ(judge_open_files(1024, 1048576).level, Level::ok);
  EXPECT_NE(judge_open_files(~0ull, ~0ull).found.find("hard limit unlimited"), std::string::npos);
}

TEST(DoctorHugePages, ParsesSysfsChoicesMountsAndMeminfo) {
  EXPECT_EQ(selected_choice("always within_size advise [never] deny force\n"), "never");
  EXPECT_EQ(selected_choice("nothing selected"), std::nullopt);

  const auto mounts = parse_mounts(
      "tmpfs /dev/shm tmpfs rw,nosuid,nodev,size=65536k 0 0\n"
      "none /mnt/huge\\040pages tmpfs rw,relatime,size=8388608k,huge=within_size 0 0\n"
      "hugetlbfs /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n");
  ASSERT_EQ(mounts.size(), 3u);
  EXPECT_EQ(mounts[1].path, "/mnt/huge pages");
  EXPECT_EQ(mount_option(mounts[1], "huge"), "within_size");
  EXPECT_EQ(mount_option(mounts[0], "huge"), std::nullopt);
  EXPECT_EQ(mount_option(mounts[0], "size"), "65536k");

  const std::string meminfo =
      "MemTotal:       16384000 kB\nHugePages_Total:      16\nHugePages_Free:        4\n"
      "Hugepagesize:       2048 kB\n";
  EXPECT_EQ(meminfo_field(meminfo, "HugePages_Total"), 16u);
  EXPECT_EQ(meminfo_field(meminfo, "HugePages_Free"), 4u);
  EXPECT_EQ(meminfo_field(meminfo, "Hugepagesize"), 2 * MiB);
  EXPECT_EQ(meminfo_field(meminfo, "HugePages"), std::nullopt);
}

TEST(DoctorHugePages, AHugeTmpfsIsOkAndItsAbsenceANoteWithAdvice) {
  HugeFacts facts;
  facts.shmem_enabled = "never";
  facts.mounts = parse_mounts("tmpfs /dev/shm tmpfs rw 0 0\n");
  auto f = judge_huge_pages(facts);
  EXPECT_EQ(f.level, Level::note);
  EXPECT_NE(f.advice.find("--huge-dir"), std::string::npos) << f.advice;

  facts.mounts = parse_mounts("none /mnt/huge tmpfs rw,huge=always 0 0\n");
  f = judge_huge_pages(facts);
  EXPECT_EQ(f.level, Level::ok);
  EXPECT_NE(f.found.find("/mnt/huge"), std::string::npos) << f.found;

  facts.hugetlb_total = 16;
  facts.hugetlb_free = 4;
  facts.hugetlb_page_size = 2 * MiB;
  f = judge_huge_pages(facts);
  EXPECT_NE(f.found.find("4 of 16 2.0 MiB pages free"), std::string::npos) << f.found;

  facts.shmem_enabled = "deny";
  EXPECT_EQ(judge_huge_pages(facts).level, Level::note);
}

TEST(DoctorFutexWaitv, OnlyEinvalMeansTheKernelHasIt) {
  EXPECT_EQ(judge_futex_waitv(EINVAL, "6.1.0").level, Level::ok);
  const auto old = judge_futex_waitv(ENOSYS, "5.10.0");
  EXPECT_EQ(old.level, Level::warning);
  EXPECT_NE(old.found.find("5.16"), std::string::npos) << old.found;
  EXPECT_NE(judge_futex_waitv(EPERM, "6.1.0").advice.find("seccomp"), std::string::npos);
}

TEST(DoctorDaemon, NoneAnsweringIsAnErrorThatSaysHowToStartOne) {
  DaemonFacts facts;
  facts.error_code = "daemon_unavailable";
  facts.error_message = "no daemon at /x.sock";
  const auto f = judge_daemon(facts, "/x.sock", "0.1.0");
  EXPECT_EQ(f.level, Level::error);
  EXPECT_NE(f.advice.find("bridged --socket /x.sock"), std::string::npos) << f.advice;
  EXPECT_EQ(f.details.at("code"), "daemon_unavailable");
}

TEST(DoctorDaemon, AnotherReleaseIsAWarning) {
  DaemonFacts facts{true, "", "", "bridged 0.1.0", 42, 2};
  EXPECT_EQ(judge_daemon(facts, "/x.sock", "0.1.0").level, Level::ok);
  EXPECT_EQ(judge_daemon(facts, "/x.sock", "0.2.0").level, Level::warning);
}

TEST(DoctorPermissions, WhatTheCallerMayNotUseIsAnError) {
  PermissionFacts facts;
  facts.directory = "/run/b";
  facts.socket = "/run/b/bridged.sock";
  facts.caller = "bob (uid 1002)";
  facts.dir = PathFacts{true, false, true, 0700, 1001, 1001, false};
  auto f = judge_permissions(facts);
  EXPECT_EQ(f.level, Level::error);
  EXPECT_NE(f.advice.find("--group"), std::string::npos) << f.advice;

  facts.dir.usable = true;
  facts.sock = PathFacts{true, true, false, 0600, 1001, 1001, false};
  EXPECT_EQ(judge_permissions(facts).level, Level::error);
  facts.sock.usable = true;
  EXPECT_EQ(judge_permissions(facts).level, Level::ok);
  facts.dir.mode = 0777;
  EXPECT_EQ(judge_permissions(facts).level, Level::warning);
  facts.dir.mode = 01777;  // /tmp-like: sticky, others cannot replace the socket
  EXPECT_EQ(judge_permissions(facts).level, Level::ok);
  facts.sock.is_socket = false;
  EXPECT_EQ(judge_permissions(facts).level, Level::error);
}

TEST(DoctorQuarantine, ObjectsAreAWarningNamingThem) {
  EXPECT_EQ(judge_quarantine({true, 0, {}}).level, Level::ok);
  EXPECT_EQ(judge_quarantine({false, 0, {}}).level, Level::note);
  const auto f = judge_quarantine({true, 1, {{"victim", "bad magic"}}});
  EXPECT_EQ(f.level, Level::warning);
  EXPECT_NE(f.found.find("victim (bad magic)"), std::string::npos) << f.found;
  EXPECT_NE(f.advice.find("bridgectl rm"), std::string::npos);
}

TEST(DoctorExitStatus, WorstLevelDecidesNotesCountingAsOk) {
  std::vector<Finding> findings(2);
  findings[1].level = Level::note;
  EXPECT_EQ(exit_status(findings), 0);
  EXPECT_EQ(overall(findings), "ok");
  findings[0].level = Level::warning;
  EXPECT_EQ(exit_status(findings), 1);
  findings[1].level = Level::error;
  EXPECT_EQ(exit_status(findings), 2);
  EXPECT_EQ(overall(findings), "error");
}

}  // namespace
