// SPDX-License-Identifier: MIT
// The on-shm layout: array geometry, segment names, header validation and the
// two metadata slots. Headers are built in ordinary (aligned) heap buffers.
#include "bridge/detail/layout.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bridge/error.hpp"
#include "expect_error.hpp"

namespace bridge {
namespace {

using Shape = std::vector<std::int64_t>;

// ---- compute_layout ---------------------------------------------------------

struct StridesCase {
  DType dtype;
  Shape shape;
  Shape strides;  // what numpy.zeros(shape, dtype).strides gives
  std::uint64_t nbytes;
};

void PrintTo(const StridesCase& c, std::ostream* os) {
  *os << dtype_name(c.dtype) << " shape(";
  for (auto e : c.shape) *os << e << ",";
  *os << ")";
}

class NumPyStridesTest : public ::testing::TestWithParam<StridesCase> {};

TEST_P(NumPyStridesTest, StridesAndSizeMatchNumPy) {
  const auto& c = GetParam();
  const ArrayLayout layout = compute_layout(c.dtype, c.shape);
  EXPECT_EQ(layout.dtype, c.dtype);
  EXPECT_EQ(layout.shape, c.shape);
  EXPECT_EQ(layout.strides, c.strides);
  EXPECT_EQ(layout.nbytes, c.nbytes);
  EXPECT_EQ(layout.total_bytes, kDataOffset + c.nbytes);
}

INSTANTIATE_TEST_SUITE_P(
    CompareWithNumPy, NumPyStridesTest,
    ::testing::Values(
        // 0-d: one element, no strides.
        StridesCase{DType::float64, {}, {}, 8}, StridesCase{DType::uint8, {}, {}, 1},
        StridesCase{DType::uint8, {7}, {1}, 7}, StridesCase{DType::float32, {5}, {4}, 20},
        StridesCase{DType::uint8, {480, 640, 3}, {1920, 3, 1}, 921600},
        StridesCase{DType::float64, {2, 3, 4}, {96, 32, 8}, 192},
        StridesCase{DType::complex128, {2, 3}, {48, 16}, 96},
        StridesCase{DType::float16, {3, 1, 2}, {4, 4, 2}, 12},
        StridesCase{DType::bool_, {2, 2}, {2, 1}, 4},
        // Zero-size arrays: NumPy treats a zero extent as 1 when computing strides.
        StridesCase{DType::float64, {0}, {8}, 0}, StridesCase{DType::float64, {0, 3}, {24, 8}, 0},
        StridesCase{DType::float64, {3, 0}, {8, 8}, 0},
        StridesCase{DType::int32, {2, 0, 5}, {20, 20, 4}, 0}));

TEST(ComputeLayoutTest, AcceptsThirtyTwoDimensions) {
  const Shape shape(kMaxDims, 1);
  const ArrayLayout layout = compute_layout(DType::int16, shape);
  EXPECT_EQ(layout.strides, Shape(kMaxDims, 2));
  EXPECT_EQ(layout.nbytes, 2u);
}

TEST(ComputeLayoutTest, RejectsThirtyThreeDimensions) {
  const Shape shape(kMaxDims + 1, 1);
  EXPECT_ERRC_MSG(compute_layout(DType::int16, shape), Errc::invalid_argument, "33");
}

TEST(ComputeLayoutTest, RejectsNegativeExtents) {
  EXPECT_ERRC(compute_layout(DType::uint8, Shape{-1}), Errc::invalid_argument);
  EXPECT_ERRC(compute_layout(DType::uint8, Shape{4, -3}), Errc::invalid_argument);
  // A zero elsewhere does not excuse a negative extent.
  EXPECT_ERRC(compute_layout(DType::uint8, Shape{0, -1}), Errc::invalid_argument);
  EXPECT_ERRC(compute_layout(DType::uint8, Shape{INT64_MIN}), Errc::invalid_argument);
}

TEST(ComputeLayoutTest, RejectsShapeWhoseByteSizeOverflows) {
  // 2^32 * 2^32 elements: the element count alone overflows 64 bits.
  EXPECT_ERRC(compute_layout(DType::uint8, Shape{1ll << 32, 1ll << 32}), Errc::invalid_argument);
  // 2^61 float64 elements: 2^64 bytes.
  EXPECT_ERRC(compute_layout(DType::float64, Shape{1ll << 61}), Errc::invalid_argument);
  EXPECT_ERRC(compute_layout(DType::complex128, Shape{INT64_MAX}), Errc::invalid_argument);
  EXPECT_ERRC(compute_layout(DType::uint8, Shape{INT64_MAX, INT64_MAX}), Errc::invalid_argument);
}

TEST(ComputeLayoutTest, RejectsStrideThatDoesNotFitInt64) {
  // 2^63 bytes fits in uint64 but not in a signed NumPy stride.
  EXPECT_ERRC(compute_layout(DType::int16, Shape{2, 1ll << 62}), Errc::invalid_argument);
}

TEST(ComputeLayoutTest, RejectsSizeThatOverflowsWithTheHeader) {
  // The array alone fits in 64 bits; header + metadata + array does not.
  EXPECT_ERRC(compute_layout(DType::uint8, Shape{INT64_MAX, 2}), Errc::invalid_argument);
  EXPECT_ERRC(compute_layout(DType::uint8, Shape{INT64_MAX}), Errc::invalid_argument);
}

TEST(ComputeLayoutTest, ZeroSizeArraysStillCheckOtherExtents) {
  // Strides of a zero-size array must still be representable.
  EXPECT_ERRC(compute_layout(DType::uint8, Shape{0, INT64_MAX, INT64_MAX}), Errc::invalid_argument);
}

TEST(ComputeLayoutTest, PastMaxBytesIsLimitExceededButImpossibleShapesStayInvalid) {
  // max_bytes is a daemon-configured limit (--max-segment-bytes).
  EXPECT_EQ(compute_layout(DType::uint8, Shape{10}, 10).nbytes, 10u);
  EXPECT_ERRC_MSG(compute_layout(DType::uint8, Shape{11}, 10), Errc::limit_exceeded, "11");
  EXPECT_ERRC_MSG(compute_layout(DType::uint8, Shape{11}, 10), Errc::limit_exceeded,
                  "--max-segment-bytes");
  EXPECT_ERRC(compute_layout(DType::float32, Shape{3}, 11), Errc::limit_exceeded);
  EXPECT_EQ(compute_layout(DType::float32, Shape{0, 1000}, 0).nbytes, 0u);
  EXPECT_ERRC(compute_layout(DType::uint8, Shape{INT64_MAX}, 100), Errc::invalid_argument);
  EXPECT_ERRC(compute_layout(DType::uint8, Shape{1ll << 32, 1ll << 32}, 100),
              Errc::invalid_argument);
}

TEST(ComputeLayoutTest, RejectsUnknownDType) {
  EXPECT_ERRC(compute_layout(static_cast<DType>(0), Shape{1}), Errc::invalid_argument);
  EXPECT_ERRC(compute_layout(static_cast<DType>(15), Shape{1}), Errc::invalid_argument);
}

// ---- validate_segment_name --------------------------------------------------

TEST(SegmentNameTest, AcceptsLettersDigitsUnderscoreDashDot) {
  for (const char* name : {"a", "frames", "Frames_01", "cam-front.left", "a.b.c", "9", "a..b",
                           "trailing.", "-dash-first", "_"}) {
    EXPECT_NO_THROW(validate_segment_name(name)) << "'" << name << "'";
  }
  EXPECT_NO_THROW(validate_segment_name(std::string(kMaxNameBytes, 'x')));
}

TEST(SegmentNameTest, RejectsEmptyDotsSlashesAndOtherBytes) {
  const std::string too_long(kMaxNameBytes + 1, 'x');
  const std::string with_nul("ab\0cd", 5);
  for (const std::string& name :
       {std::string(""), std::string("."), std::string(".."), std::string(".hidden"),
        std::string("a/b"), std::string("/abs"), std::string("a\\b"), with_nul, too_long,
        std::string("caf\xc3\xa9"), std::string("\xff"), std::string("a b"), std::string("a\nb"),
        std::string("a:b"), std::string("a*"), std::string("%2e")}) {
    EXPECT_ERRC(validate_segment_name(name), Errc::invalid_argument) << "'" << name << "'";
  }
}

// ---- header validation ------------------------------------------------------

// A zeroed, page-aligned buffer standing in for a mapping.
class AlignedBuffer {
 public:
  explicit AlignedBuffer(std::size_t size)
      : size_(size),
        data_(static_cast<std::byte*>(std::aligned_alloc(kDataAlignment, round_up(size)))) {
    if (data_ == nullptr) throw std::bad_alloc();
    std::memset(data_.get(), 0, size);
  }
  std::byte* data() const { return data_.get(); }
  std::size_t size() const { return size_; }

 private:
  static std::size_t round_up(std::size_t n) {
    return (n + kDataAlignment - 1) / kDataAlignment * kDataAlignment;
  }
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::size_t size_;
  std::unique_ptr<std::byte, Free> data_;
};

class HeaderTest : public ::testing::Test {
 protected:
  HeaderTest()
      : layout_(compute_layout(DType::float32, Shape{2, 3, 4})),
        buffer_(layout_.total_bytes),
        header_(*reinterpret_cast<SegmentHeader*>(buffer_.data())) {
    init_segment(buffer_.data(), "frames", 42, layout_, 1000, 1700000000000);
  }

  void reseal() { header_.checksum = fnv1a64(&header_, offsetof(SegmentHeader, checksum)); }
  ArrayLayout validate() const { return validate_header(header_, buffer_.size()); }

  ArrayLayout layout_;
  AlignedBuffer buffer_;
  SegmentHeader& header_;
};

TEST_F(HeaderTest, InitHeaderFillsEveryImmutableField) {
  EXPECT_EQ(header_.magic, kSegmentMagic);
  EXPECT_EQ(header_.layout_version, kLayoutVersion);
  EXPECT_EQ(header_.header_bytes, kHeaderBytes);
  EXPECT_EQ(header_.segment_id, 42u);
  EXPECT_EQ(header_.total_bytes, kDataOffset + 96);
  EXPECT_EQ(header_.data_offset, kDataOffset);
  EXPECT_EQ(header_.nbytes, 96u);
  EXPECT_EQ(header_.dtype, static_cast<std::uint32_t>(DType::float32));
  EXPECT_EQ(header_.ndim, 3u);
  EXPECT_EQ(header_.created_unix_ms, 1700000000000);
  EXPECT_EQ(header_.owner_uid, 1000u);
  EXPECT_STREQ(header_.name, "frames");
  EXPECT_EQ(header_.shape[0], 2);
  EXPECT_EQ(header_.shape[2], 4);
  EXPECT_EQ(header_.strides[0], 48);
  EXPECT_EQ(header_.strides[2], 4);
  EXPECT_EQ(header_.shape[3], 0);  // unused dims are zero
  EXPECT_EQ(header_.checksum, fnv1a64(&header_, offsetof(SegmentHeader, checksum)));
  EXPECT_EQ(header_.meta[0].meta_version, 0u);
  EXPECT_EQ(sync_at(buffer_.data()).version.load(), 0u);
  EXPECT_EQ(sync_at(buffer_.data()).destroyed.load(), 0u);
}

TEST(LayoutV2, SyncWordsHaveAPageOfTheirOwnBetweenTheDaemonsPagesAndTheData) {
  // Clients map everything before kSyncOffset read-only: the header, the
  // metadata and nothing a client must write.
  EXPECT_EQ(kLayoutVersion, 2u);
  EXPECT_EQ(kSyncOffset % kPageBytes, 0u);
  EXPECT_GE(kSyncOffset, kHeaderBytes + kMetaSlots * kMetaSlotBytes);
  EXPECT_EQ(kDataOffset, kSyncOffset + kPageBytes);
  EXPECT_LE(sizeof(SegmentHeader), kHeaderBytes);
  EXPECT_LE(sizeof(SyncBlock), kSyncBytes);
}

TEST_F(HeaderTest, MagicSpellsSMHBSEG1InMemory) {
  EXPECT_EQ(std::memcmp(&header_.magic, "SMHBSEG1", 8), 0);
}

TEST_F(HeaderTest, ValidHeaderPassesAndReturnsItsGeometry) {
  const ArrayLayout got = validate();
  EXPECT_EQ(got.dtype, DType::float32);
  EXPECT_EQ(got.shape, layout_.shape);
  EXPECT_EQ(got.strides, layout_.strides);
  EXPECT_EQ(got.nbytes, layout_.nbytes);
  EXPECT_EQ(got.total_bytes, layout_.total_bytes);
}

TEST_F(HeaderTest, MappingLargerThanTheSegmentIsFine) {
  EXPECT_NO_THROW(validate_header(header_, buffer_.size() + 4096));
}

TEST_F(HeaderTest, MutableWordsAreNotCoveredByTheChecksum) {
  sync_at(buffer_.data()).version.store(7);
  header_.meta[1].meta_version = 3;
  EXPECT_NO_THROW(validate());
}

TEST_F(HeaderTest, RejectsLayoutVersionOneSayingWhy) {
  header_.layout_version = 1;
  reseal();
  EXPECT_ERRC_MSG(validate(), Errc::corrupt_segment, "layout version 1 (shmbridge 0.1.0)");
}

TEST_F(HeaderTest, RejectsCorruptedMagic) {
  header_.magic ^= 1;
  reseal();
  EXPECT_ERRC_MSG(validate(), Errc::corrupt_segment, "magic");
}

TEST_F(HeaderTest, RejectsWrongLayoutVersion) {
  header_.layout_version = kLayoutVersion + 1;
  reseal();
  EXPECT_ERRC_MSG(validate(), Errc::corrupt_segment, "layout version");
}

TEST_F(HeaderTest, RejectsChecksumMismatchWhenAnyCoveredByteFlips) {
  auto* bytes = reinterpret_cast<unsigned char*>(&header_);
  // The name, a shape entry, and the created time.
  for (std::size_t offset : {offsetof(SegmentHeader, name) + 1, offsetof(SegmentHeader, shape) + 8,
                             offsetof(SegmentHeader, created_unix_ms)}) {
    bytes[offset] ^= 0x01;
    EXPECT_ERRC_MSG(validate(), Errc::corrupt_segment, "checksum") << "offset " << offset;
    bytes[offset] ^= 0x01;
  }
  EXPECT_NO_THROW(validate());
  header_.checksum ^= 1;
  EXPECT_ERRC_MSG(validate(), Errc::corrupt_segment, "checksum");
}

TEST_F(HeaderTest, RejectsMappingSmallerThanHeader) {
  EXPECT_ERRC(validate_header(header_, kDataOffset - 1), Errc::corrupt_segment);
  EXPECT_ERRC(validate_header(header_, 0), Errc::corrupt_segment);
}

TEST_F(HeaderTest, RejectsArrayExtendingPastTheMapping) {
  EXPECT_ERRC_MSG(validate_header(header_, buffer_.size() - 1), Errc::corrupt_segment,
                  "past the end");
}

TEST_F(HeaderTest, RejectsConsistentHeaderClaimingMoreThanIsMapped) {
  // A self-consistent header (shape, nbytes and total agree, checksum good)
  // that describes a bigger array than the mapping holds.
  header_.shape[0] = 1000;
  header_.nbytes = 1000 * 48;
  header_.total_bytes = kDataOffset + header_.nbytes;
  reseal();
  EXPECT_ERRC_MSG(validate(), Errc::corrupt_segment, "past the end");
}

TEST_F(HeaderTest, RejectsSizesThatDisagreeWithShape) {
  header_.nbytes += 4;
  reseal();
  EXPECT_ERRC(validate(), Errc::corrupt_segment);

  init_segment(buffer_.data(), "frames", 42, layout_, 1000, 0);
  header_.total_bytes -= 4;
  reseal();
  EXPECT_ERRC(validate(), Errc::corrupt_segment);
}

TEST_F(HeaderTest, RejectsOverflowingShapeEvenWithValidChecksum) {
  header_.shape[0] = INT64_MAX;
  header_.shape[1] = INT64_MAX;
  reseal();
  EXPECT_ERRC_MSG(validate(), Errc::corrupt_segment, "shape");
}

TEST_F(HeaderTest, RejectsNegativeExtent) {
  header_.shape[1] = -3;
  reseal();
  EXPECT_ERRC_MSG(validate(), Errc::corrupt_segment, "shape");
}

TEST_F(HeaderTest, RejectsNdimAboveThirtyTwo) {
  header_.ndim = kMaxDims + 1;
  reseal();
  EXPECT_ERRC_MSG(validate(), Errc::corrupt_segment, "ndim");
  header_.ndim = UINT32_MAX;
  reseal();
  EXPECT_ERRC_MSG(validate(), Errc::corrupt_segment, "ndim");
}

TEST_F(HeaderTest, RejectsBadDType) {
  for (std::uint32_t dtype : {0u, 15u, 0xffffffffu}) {
    header_.dtype = dtype;
    reseal();
    EXPECT_ERRC_MSG(validate(), Errc::corrupt_segment, "dtype") << dtype;
  }
}

TEST_F(HeaderTest, RejectsNonContiguousStrides) {
  std::swap(header_.strides[0], header_.strides[2]);  // Fortran order
  reseal();
  EXPECT_ERRC_MSG(validate(), Errc::corrupt_segment, "C-contiguous");

  init_segment(buffer_.data(), "frames", 42, layout_, 1000, 0);
  header_.strides[1] = -header_.strides[1];
  reseal();
  EXPECT_ERRC_MSG(validate(), Errc::corrupt_segment, "C-contiguous");
}

TEST_F(HeaderTest, RejectsWrongHeaderSizeOrDataOffset) {
  header_.header_bytes = 8192;
  reseal();
  EXPECT_ERRC(validate(), Errc::corrupt_segment);

  init_segment(buffer_.data(), "frames", 42, layout_, 1000, 0);
  header_.data_offset = 0;
  reseal();
  EXPECT_ERRC(validate(), Errc::corrupt_segment);
}

TEST_F(HeaderTest, RejectsUnterminatedName) {
  std::memset(header_.name, 'a', sizeof header_.name);
  reseal();
  EXPECT_ERRC_MSG(validate(), Errc::corrupt_segment, "name");
}

// ---- metadata slots ---------------------------------------------------------

class MetaSlotTest : public ::testing::Test {
 protected:
  MetaSlotTest() : buffer_(kDataOffset), base_(buffer_.data()) {
    init_segment(base_, "m", 1, compute_layout(DType::uint8, Shape{}), 0, 0);
  }
  SegmentHeader& header() { return *reinterpret_cast<SegmentHeader*>(base_); }
  char* slot_text(std::size_t slot) {
    return reinterpret_cast<char*>(base_ + kMetaOffset + slot * kMetaSlotBytes);
  }

  AlignedBuffer buffer_;
  std::byte* base_;
};

TEST_F(MetaSlotTest, FreshSegmentHasNoMetadata) {
  EXPECT_EQ(read_meta(base_), "");
  EXPECT_EQ(read_meta_version(base_), 0u);
}

TEST_F(MetaSlotTest, WritesAlternateSlotsAndBumpTheVersion) {
  EXPECT_EQ(write_meta(base_, R"({"v":1})"), 1u);
  EXPECT_EQ(header().meta[0].meta_version, 1u);
  EXPECT_EQ(header().meta[1].meta_version, 0u);
  EXPECT_EQ(read_meta(base_), R"({"v":1})");
  EXPECT_EQ(read_meta_version(base_), 1u);

  EXPECT_EQ(write_meta(base_, R"({"v":2})"), 2u);
  EXPECT_EQ(header().meta[0].meta_version, 1u);  // the older slot is left intact
  EXPECT_EQ(header().meta[1].meta_version, 2u);
  EXPECT_EQ(read_meta(base_), R"({"v":2})");
  EXPECT_EQ(read_meta_version(base_), 2u);

  EXPECT_EQ(write_meta(base_, R"({"v":3})"), 3u);
  EXPECT_EQ(header().meta[0].meta_version, 3u);
  EXPECT_EQ(header().meta[1].meta_version, 2u);
  EXPECT_EQ(read_meta(base_), R"({"v":3})");
  EXPECT_EQ(std::string(slot_text(1), header().meta[1].length), R"({"v":2})");
}

TEST_F(MetaSlotTest, ShorterTextAfterLongerIsNotPaddedWithOldBytes) {
  write_meta(base_, std::string(1000, 'x'));
  write_meta(base_, "y");
  write_meta(base_, "z");  // reuses the slot that held 1000 bytes
  EXPECT_EQ(read_meta(base_), "z");
}

TEST_F(MetaSlotTest, EmptyTextIsAValidVersion) {
  write_meta(base_, R"({"a":1})");
  EXPECT_EQ(write_meta(base_, ""), 2u);
  EXPECT_EQ(read_meta(base_), "");
  EXPECT_EQ(read_meta_version(base_), 2u);
}

TEST_F(MetaSlotTest, CorruptedNewestSlotFallsBackToTheOlderValidOne) {
  write_meta(base_, R"({"v":1})");
  write_meta(base_, R"({"v":2})");  // slot 1
  slot_text(1)[3] ^= 0x20;          // a scribble: the checksum no longer matches
  EXPECT_EQ(read_meta(base_), R"({"v":1})");
}

TEST_F(MetaSlotTest, SlotWithImpossibleLengthIsIgnored) {
  write_meta(base_, R"({"v":1})");
  write_meta(base_, R"({"v":2})");
  header().meta[1].length = kMetaSlotBytes + 1;
  EXPECT_EQ(read_meta(base_), R"({"v":1})");
}

TEST_F(MetaSlotTest, SlotBeingWrittenIsSkipped) {
  // write_meta zeroes a slot's version before touching its bytes: a writer
  // that died there leaves version 0, and readers see the other slot.
  write_meta(base_, R"({"v":1})");
  write_meta(base_, R"({"v":2})");
  header().meta[0].meta_version = 0;
  std::memcpy(slot_text(0), "garbage", 7);
  EXPECT_EQ(read_meta(base_), R"({"v":2})");
  EXPECT_EQ(write_meta(base_, R"({"v":3})"), 3u);
  EXPECT_EQ(header().meta[0].meta_version, 3u);
  EXPECT_EQ(read_meta(base_), R"({"v":3})");
}

TEST_F(MetaSlotTest, AcceptsExactly64KiBAndRejectsMore) {
  const std::string full(kMaxMetaBytes, 'a');
  EXPECT_EQ(write_meta(base_, full), 1u);
  EXPECT_EQ(read_meta(base_), full);
  EXPECT_ERRC(write_meta(base_, std::string(kMaxMetaBytes + 1, 'b')), Errc::invalid_argument);
  // The rejected write left everything as it was.
  EXPECT_EQ(read_meta(base_), full);
  EXPECT_EQ(read_meta_version(base_), 1u);
}

TEST(Fnv1aTest, MatchesReferenceVectors) {
  EXPECT_EQ(fnv1a64("", 0), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a", 1), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar", 6), 0x85944171f73967e8ull);
  // Runs of zero bytes take the word-at-a-time step.
  EXPECT_EQ(fnv1a64(std::string(8, '\0').data(), 8), 0xa8c7f832281a39c5ull);
  EXPECT_EQ(fnv1a64(("a" + std::string(16, '\0') + "b").data(), 18), 0xa7c829af40e3716aull);
}

// The byte-at-a-time definition, against the word-skipping one, over zero
// runs of every length and alignment and the tail after them.
TEST(Fnv1aTest, ZeroRunsHashAsBytesDo) {
  const auto reference = [](const unsigned char* bytes, std::size_t size) {
    std::uint64_t hash = 0xcbf29ce484222325ull;
    for (std::size_t i = 0; i < size; ++i) {
      hash ^= bytes[i];
      hash *= 0x100000001b3ull;
    }
    return hash;
  };
  std::vector<unsigned char> buffer(64);
  for (std::size_t start = 0; start < 12; ++start) {
    for (std::size_t zeros = 0; zeros < 40; ++zeros) {
      for (std::size_t i = 0; i < buffer.size(); ++i) {
        buffer[i] = (i >= start && i < start + zeros) ? 0 : static_cast<unsigned char>(i * 37 + 1);
      }
      for (std::size_t size = 0; size <= buffer.size(); size += 5) {
        ASSERT_EQ(fnv1a64(buffer.data(), size), reference(buffer.data(), size))
            << "start " << start << " zeros " << zeros << " size " << size;
      }
    }
  }
  const SegmentHeader header{};
  EXPECT_EQ(fnv1a64(&header, sizeof header),
            reference(reinterpret_cast<const unsigned char*>(&header), sizeof header));
}

}  // namespace
}  // namespace bridge
