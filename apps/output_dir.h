// apps/output_dir.h — the directories `train` and `merge` write. Pointed by mistake at a directory
// that holds something else (another command's run, a model, the user's files) they would write
// over it or mix into it without a word. So a command writes into a directory that is missing,
// empty, or an earlier output of its own (which it replaces), and refuses any other unless the user
// asks with --overwrite.
#pragma once

#include <functional>
#include <string>

namespace fe::cli {

// What the directory held.
enum class OutputDir { new_or_empty, earlier_output, claimed_with_overwrite };

// Checks `dir` before `command` writes into it. `is_own_entry(name)` tells the top-level entries
// the command itself writes there (null: none, any content is someone else's); `setting` names
// where the directory came from in messages ("output.dir", "--out"). An Error when `dir` is a file,
// or when it holds another entry and `overwrite` is false: the message names the entries and the
// two ways on (another directory, --overwrite).
OutputDir claim_output_dir(const std::string& dir, const std::string& setting, const std::string& command,
                           const std::function<bool(const std::string&)>& is_own_entry, bool overwrite);

}  // namespace fe::cli
