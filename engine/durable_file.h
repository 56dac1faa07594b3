// engine/durable_file.h — files that a crash or a power cut cannot leave half-written.
//
// write_file_whole writes PATH.tmp and renames it over PATH: a reader (or a restart) finds the old
// contents or the new ones, never a mix. sync_to_disk flushes what was written to the device, for
// checkpoints that must survive a power cut after their rename.
#pragma once

#include <string>

namespace fe {

// PATH gets `text` whole or not at all; an Error names the path when it cannot be written.
void write_file_whole(const std::string& path, const std::string& text);

// fsync of a file, or of a directory and (with `contents`) everything in it, so that a power cut
// after a checkpoint's rename cannot leave a checkpoint whose files are empty. An Error naming the
// path when the system refuses.
void sync_to_disk(const std::string& path, bool contents = true);

}  // namespace fe
