// Files written whole: the new contents replace the old ones with nothing left behind, and a
// failure names the path.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/durable_file.h"
#include "tests/test_util.h"

namespace fe {
namespace {

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(DurableFile, ReplacesTheContentsWholeAndLeavesNoStagingFile) {
  test::TempDir dir;
  const std::string path = dir.path("state.json");
  write_file_whole(path, "a longer first version\n");
  write_file_whole(path, "second\n");
  EXPECT_EQ(read(path), "second\n");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  sync_to_disk(dir.path());
}

TEST(DurableFile, FailuresNameThePath) {
  test::TempDir dir;
  EXPECT_THAT([&] { write_file_whole(dir.path("missing/state.json"), "x"); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("missing/state.json.tmp")));
  EXPECT_THAT([&] { sync_to_disk(dir.path("absent")); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("absent")));
}

}  // namespace
}  // namespace fe
