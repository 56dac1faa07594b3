// Files and directories written whole: the new contents replace the old ones with nothing left
// behind, a requested mode holds from the first byte, a failure names the path, and a directory
// replacement interrupted between its renames leaves the old copy where completed_directory finds it.
#include "engine/durable_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "core/error.h"
#include "tests/test_files.h"
#include "tests/test_util.h"

namespace fe {
namespace {

namespace fs = std::filesystem;
using test::read_file;
using ::testing::HasSubstr;

mode_t permissions_of(const std::string& path) {
  struct stat info {};
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return info.st_mode & 0777;
}

TEST(DurableFile, ReplacesTheContentsWholeAndLeavesNoStagingFile) {
  test::TempDir dir;
  const std::string path = dir.path("state.json");
  write_file_whole(path, "a longer first version\n");
  write_file_whole(path, "second\n");
  EXPECT_EQ(read_file(path), "second\n");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  sync_to_disk(dir.path());
}

TEST(DurableFile, WriterStreamsPiecesAndLeavesTheOldFileWithoutCommit) {
  test::TempDir dir;
  const std::string path = dir.path("weights.bin");
  {
    DurableFileWriter out(path);
    out.append("first ");
    out.append("file");
    out.commit();
  }
  EXPECT_EQ(read_file(path), "first file");
  {
    DurableFileWriter abandoned(path);
    abandoned.append("half");
  }
  EXPECT_EQ(read_file(path), "first file");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(DurableFile, ModeIsExactEvenOverAStaleStagingFile) {
  test::TempDir dir;
  const std::string path = dir.path("server.key");
  test::write_file(path + ".tmp", "left by an interrupted write");
  fs::permissions(path + ".tmp", fs::perms::all);
  write_file_whole(path, "secret = ...\n", 0600);
  EXPECT_EQ(permissions_of(path), 0600u);
  write_file_whole(dir.path("server.pub"), "public = ...\n", 0644);
  EXPECT_EQ(permissions_of(dir.path("server.pub")), 0644u);
}

TEST(DurableFile, FailuresNameThePath) {
  test::TempDir dir;
  EXPECT_THAT(test::error_of<Error>([&] { write_file_whole(dir.path("missing/state.json"), "x"); }),
              HasSubstr("missing/state.json.tmp"));
  EXPECT_THAT(test::error_of<Error>([&] { sync_to_disk(dir.path("absent")); }), HasSubstr("absent"));
}

TEST(DirectoryReplacement, SwapsInTheStagedDirectoryWhole) {
  test::TempDir dir;
  const fs::path checkpoint = dir.path("checkpoint");
  for (const std::string round : {"1", "2"}) {
    DirectoryReplacement replacement(checkpoint);
    EXPECT_EQ(replacement.staging(), fs::path(dir.path("checkpoint.tmp")));
    EXPECT_TRUE(fs::is_directory(replacement.staging()) && fs::is_empty(replacement.staging()));
    write_file_whole((replacement.staging() / "state.json").string(), round);
    replacement.commit();
  }
  EXPECT_EQ(read_file(checkpoint / "state.json"), "2");
  EXPECT_FALSE(fs::exists(dir.path("checkpoint.tmp")));
  EXPECT_FALSE(fs::exists(dir.path("checkpoint.old")));
  EXPECT_EQ(completed_directory(checkpoint), checkpoint);
}

TEST(DirectoryReplacement, WithoutCommitTheOldDirectoryStaysAndItsLeftoversAreClearedNextTime) {
  test::TempDir dir;
  const fs::path checkpoint = dir.path("checkpoint");
  fs::create_directories(checkpoint);
  test::write_file(checkpoint / "state.json", "old");
  {
    DirectoryReplacement interrupted(checkpoint);
    test::write_file(interrupted.staging() / "half", "x");
  }
  EXPECT_EQ(read_file(checkpoint / "state.json"), "old");
  DirectoryReplacement next(checkpoint);
  EXPECT_FALSE(fs::exists(next.staging() / "half"));
}

TEST(DirectoryReplacement, CompletedDirectoryFallsBackToTheCopyMovedAside) {
  test::TempDir dir;
  const fs::path checkpoint = dir.path("checkpoint"), old = dir.path("checkpoint.old");
  EXPECT_EQ(completed_directory(checkpoint), checkpoint);  // neither: the caller reports it missing
  fs::create_directories(old);  // a crash between moving DIR aside and renaming DIR.tmp into place
  EXPECT_EQ(completed_directory(checkpoint), old);
  fs::create_directories(checkpoint);
  EXPECT_EQ(completed_directory(checkpoint), checkpoint);
}

}  // namespace
}  // namespace fe
