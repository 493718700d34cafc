// SPDX-License-Identifier: MIT
//
// The mapping cache's entries for another client's direct create that the
// daemon has not read yet (MapCache::insert_at_path): served while the path
// names the same object, alive and whole, and by its slot once the daemon
// has given it one. Real files in a temporary directory stand for /dev/shm.
#include "bridge/detail/map_cache.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bridge/detail/layout.hpp"
#include "bridge/detail/os/mapping.hpp"
#include "bridge/detail/os/unique_fd.hpp"
#include "bridge/detail/slot_table.hpp"

namespace bridge::detail {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kId = 0x1234'5678'9abc'def0ull;
constexpr std::uint32_t kSlots = 8;

std::shared_ptr<os::Mapping> map_file(const std::string& path, std::size_t size, bool create) {
  os::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0600));
  if (!fd) throw std::runtime_error("open " + path);
  if (create && ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    throw std::runtime_error("ftruncate " + path);
  }
  return std::make_shared<os::Mapping>(os::Mapping::map(fd.get(), size, true));
}

class AtPathEntryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/map_cache_test.XXXXXX";
    ASSERT_NE(::mkdtemp(templ), nullptr);
    dir_ = templ;
    table_ = map_file(dir_ + "/slots", slot_table_bytes(kSlots), true);
    cache_.set_table(table_, kSlots);
    path_ = dir_ + "/seg";
    segment_ = make_segment(path_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::shared_ptr<os::Mapping> make_segment(const std::string& path) {
    const std::vector<std::int64_t> shape{16};
    const ArrayLayout layout = compute_layout(DType::uint8, shape);
    auto mapping = map_file(path, layout.total_bytes, true);
    init_segment(mapping->data(), "seg", kId, layout, ::geteuid(), 0);
    return mapping;
  }

  void insert() {
    auto info = std::make_shared<SegmentInfo>();
    info->name = "seg";
    info->id = kId;
    struct stat st {};
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    cache_.insert_at_path(info, segment_, path_, st.st_ino, ::geteuid());
  }

  SegmentSlot& slot(std::uint32_t i) { return slots_at(table_->data())[i]; }
  void set_hint(std::uint32_t hint) {
    std::atomic_ref<std::uint32_t>(header_at(segment_->data()).slot_hint).store(hint);
  }

  std::string dir_;
  std::string path_;
  std::shared_ptr<os::Mapping> table_;
  std::shared_ptr<os::Mapping> segment_;
  MapCache cache_;
};

TEST_F(AtPathEntryTest, IsServedWhileThePathNamesItsObject) {
  insert();
  auto hit = cache_.lookup("seg");
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->mapping, segment_);
  EXPECT_EQ(cache_.stats().hits, 1u);
  // Never handed to a direct destroy: that asks the daemon, which reads the
  // create first.
  EXPECT_EQ(cache_.mapping_of("seg"), nullptr);
}

TEST_F(AtPathEntryTest, AnotherObjectAtThePathIsAMiss) {
  insert();
  // A copy with the same bytes, put in its place: another inode, its
  // `destroyed` word clear.
  const std::string copy = dir_ + "/copy";
  fs::copy_file(path_, copy);
  fs::rename(copy, path_);
  EXPECT_FALSE(cache_.lookup("seg"));
  EXPECT_EQ(cache_.stats().entries, 0u);
}

TEST_F(AtPathEntryTest, AGonePathOrAShorterObjectIsAMiss) {
  insert();
  ASSERT_EQ(::truncate(path_.c_str(), static_cast<off_t>(kDataOffset)), 0);
  EXPECT_FALSE(cache_.lookup("seg"));
  insert();
  fs::remove(path_);
  EXPECT_FALSE(cache_.lookup("seg"));
}

TEST_F(AtPathEntryTest, ADestroyedSegmentIsAMiss) {
  insert();
  sync_at(segment_->data()).destroyed.store(1);
  EXPECT_FALSE(cache_.lookup("seg"));
}

TEST_F(AtPathEntryTest, OnceTheDaemonGivesItASlotTheSlotVouches) {
  insert();
  slot(3).segment_id.store(kId);
  set_hint(4);                         // slot 3
  fs::rename(path_, dir_ + "/moved");  // the path no longer matters
  ASSERT_TRUE(cache_.lookup("seg"));
  // And the slot's word is final: cleared (a destroy the daemon made), a miss.
  slot(3).segment_id.store(0);
  EXPECT_FALSE(cache_.lookup("seg"));
}

TEST_F(AtPathEntryTest, AHintToASlotHoldingAnotherIdIsNotTaken) {
  insert();
  slot(2).segment_id.store(kId + 1);
  set_hint(3);
  ASSERT_TRUE(cache_.lookup("seg"));  // still by its path
  fs::remove(path_);
  EXPECT_FALSE(cache_.lookup("seg"));  // so a gone path is a miss
}

}  // namespace
}  // namespace bridge::detail
