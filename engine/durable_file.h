// engine/durable_file.h — files and directories that a crash or a power cut cannot leave
// half-written. The files fedengine keeps state in (checkpoints, adapters, imported models, keys,
// plans, progress) go through here, so all of them have the same guarantee; generated data
// (make-data, split) and the appended metrics log are written plainly.
//
// A file is written beside its name (PATH.tmp), flushed to the device, renamed over PATH, and the
// directory is flushed so that the rename itself survives a power cut: a reader, a restart or a
// machine that lost power finds the old contents or the new ones, never a mix and never an empty
// file under the new name. A directory (a checkpoint of several files) is written whole under
// DIR.tmp and swapped in by DirectoryReplacement with the same guarantee.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace fe {

// Streams one file into place. The bytes go to PATH.tmp; commit() flushes them, renames PATH.tmp
// over PATH and flushes the directory. Destroyed without commit() (an exception on the way), it
// removes PATH.tmp and leaves PATH as it was. Every failure throws an Error naming PATH and the
// staging file.
class DurableFileWriter {
 public:
  // `mode`: PATH's permission bits, exactly, set before the first byte is written, so a secret is
  // never readable by others, not even briefly. Unset: 0666 less the umask, as for any new file.
  explicit DurableFileWriter(std::string path, std::optional<mode_t> mode = std::nullopt);
  ~DurableFileWriter();
  DurableFileWriter(const DurableFileWriter&) = delete;
  DurableFileWriter& operator=(const DurableFileWriter&) = delete;

  void append(const void* data, size_t size);
  void append(std::string_view bytes) { append(bytes.data(), bytes.size()); }
  void commit();

 private:
  std::string path_;
  std::string staging_;
  int fd_ = -1;
  bool committed_ = false;
};

// PATH gets `bytes` whole or not at all (DurableFileWriter in one call).
void write_file_whole(const std::string& path, std::string_view bytes, std::optional<mode_t> mode = std::nullopt);

// fsync of a file, or of a directory and (with `contents`) everything in it, so that a power cut
// after a checkpoint's rename cannot leave a checkpoint whose files are empty. An Error naming the
// path when the system refuses.
void sync_to_disk(const std::string& path, bool contents = true);

// Replaces directory DIR whole. The caller writes the new contents under staging() (DIR.tmp,
// created empty: whatever an interrupted replacement left there is removed); commit() flushes them to the device,
// moves DIR aside to DIR.old, renames DIR.tmp to DIR, flushes the parent directory and removes
// DIR.old. At every moment one complete copy is on disk: DIR, or DIR.old between the two renames
// (completed_directory finds it after a crash there). Without commit(), DIR stays as it was.
class DirectoryReplacement {
 public:
  explicit DirectoryReplacement(std::filesystem::path dir);
  const std::filesystem::path& staging() const { return staging_; }
  void commit();

 private:
  std::filesystem::path dir_;
  std::filesystem::path staging_;
};

// The complete copy of a directory that DirectoryReplacement maintains: DIR, or DIR.old when a
// crash came after DIR was moved aside and before its replacement was renamed into place. DIR
// (which does not exist) when neither is there.
std::filesystem::path completed_directory(const std::filesystem::path& dir);

}  // namespace fe
