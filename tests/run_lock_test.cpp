// One server per run directory: the lock refuses a second owner, names the first, and does not
// outlive its process.
#include "fed/run_lock.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "core/error.h"
#include "tests/test_util.h"

namespace fe::fed {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string refusal(const std::filesystem::path& dir) {
  try {
    RunLock second(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(RunLock, ASecondOwnerIsRefusedWithThePidAndTheLockFile) {
  test::TempDir dir;
  const RunLock first(dir.path("out"));
  EXPECT_THAT(refusal(dir.path("out")), AllOf(HasSubstr("PID " + std::to_string(getpid())),
                                              HasSubstr(dir.path("out/server.lock")), HasSubstr("output.dir")));
}

TEST(RunLock, IsReleasedWhenItsOwnerIsGone) {
  test::TempDir dir;
  { const RunLock earlier(dir.path("out")); }
  EXPECT_EQ(refusal(dir.path("out")), "");  // released by its destructor

  // A stale file from a crashed server (its PID still in it) blocks nothing.
  std::ofstream(dir.path("out/server.lock")) << "999999\n";
  EXPECT_EQ(refusal(dir.path("out")), "");

  // A process killed while it holds the lock: the kernel releases it.
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const RunLock held(dir.path("out"));
    const char byte = 1;
    if (write(ready[1], &byte, 1) != 1) _exit(1);
    pause();
    _exit(0);
  }
  char byte = 0;
  ASSERT_EQ(read(ready[0], &byte, 1), 1);
  EXPECT_THAT(refusal(dir.path("out")), HasSubstr("PID " + std::to_string(child)));
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_EQ(refusal(dir.path("out")), "");
  close(ready[0]);
  close(ready[1]);
}

}  // namespace
}  // namespace fe::fed
