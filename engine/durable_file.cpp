#include "engine/durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace fe {
namespace fs = std::filesystem;

namespace {

std::string errno_text() { return std::strerror(errno); }

}  // namespace

DurableFileWriter::DurableFileWriter(std::string path, std::optional<mode_t> mode)
    : path_(std::move(path)), staging_(path_ + ".tmp") {
  // A staging file an interrupted write left behind would keep its own permission bits. The file is
  // then created exclusively and never through a link: in a directory others can write to, a link
  // planted at PATH.tmp would otherwise have the write truncate (and chmod) whatever it points at.
  ::unlink(staging_.c_str());
  fd_ = ::open(staging_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode ? 0600 : 0666);
  if (fd_ < 0) throw Error(path_ + ": cannot create " + staging_ + ": " + errno_text());
  if (mode && ::fchmod(fd_, *mode) != 0) {
    const std::string reason = errno_text();
    ::close(fd_);
    ::unlink(staging_.c_str());
    throw Error(path_ + ": cannot set the mode of " + staging_ + ": " + reason);
  }
}

DurableFileWriter::~DurableFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(staging_.c_str());
}

void DurableFileWriter::append(const void* data, size_t size) {
  constexpr size_t kMaxChunk = size_t{1} << 30;  // Linux writes at most ~2 GiB per call
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t written = ::write(fd_, bytes, std::min(size, kMaxChunk));
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) throw Error(path_ + ": cannot write " + staging_ + ": " + errno_text());
    bytes += written;
    size -= static_cast<size_t>(written);
  }
}

void DurableFileWriter::commit() {
  // Without fsync a power loss after the rename could leave the new name with missing data.
  if (::fsync(fd_) != 0) throw Error(path_ + ": cannot flush " + staging_ + ": " + errno_text());
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) throw Error(path_ + ": cannot close " + staging_ + ": " + errno_text());
  if (std::rename(staging_.c_str(), path_.c_str()) != 0)
    throw Error(path_ + ": cannot rename " + staging_ + " into place: " + errno_text());
  committed_ = true;
  const fs::path directory = fs::path(path_).parent_path();
  sync_to_disk(directory.empty() ? "." : directory.string(), false);  // the rename itself
}

void write_file_whole(const std::string& path, std::string_view bytes, std::optional<mode_t> mode) {
  DurableFileWriter out(path, mode);
  out.append(bytes);
  out.commit();
}

void sync_to_disk(const std::string& path, bool contents) {
  if (contents && fs::is_directory(path))
    for (const fs::directory_entry& entry : fs::directory_iterator(path)) sync_to_disk(entry.path().string());
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const bool synced = fd >= 0 && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  if (!synced) throw Error(path + ": cannot flush to disk: " + errno_text());
}

DirectoryReplacement::DirectoryReplacement(fs::path dir) : dir_(std::move(dir)), staging_(dir_.string() + ".tmp") {
  fs::remove_all(staging_);
  fs::create_directories(staging_);
}

void DirectoryReplacement::commit() {
  const fs::path old = dir_.string() + ".old";
  sync_to_disk(staging_.string());
  // DIR.old is cleared only when DIR is there to become the new DIR.old.
  if (fs::exists(dir_)) {
    fs::remove_all(old);
    fs::rename(dir_, old);
  }
  fs::rename(staging_, dir_);
  const fs::path parent = dir_.parent_path();
  sync_to_disk(parent.empty() ? "." : parent.string(), false);  // the renames themselves
  fs::remove_all(old);
}

fs::path completed_directory(const fs::path& dir) {
  const fs::path old = dir.string() + ".old";
  return !fs::exists(dir) && fs::exists(old) ? old : dir;
}

}  // namespace fe
