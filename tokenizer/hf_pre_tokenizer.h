// tokenizer/hf_pre_tokenizer.h — tokenizer.json's `pre_tokenizer`: splits normalized text into the
// pieces ("words") the model encodes one at a time, and may rewrite them (ByteLevel maps bytes to
// its alphabet, Metaspace turns spaces into "▁").
//
// Supported types: ByteLevel (add_prefix_space, use_regex with GPT-2's pattern), Split (String or
// Regex pattern; behavior Removed / Isolated / MergedWithPrevious / MergedWithNext / Contiguous;
// invert), Digits (individual_digits), Metaspace (replacement, prepend_scheme always / first /
// never or the older add_prefix_space, split), Whitespace, WhitespaceSplit, Sequence; null means
// the whole text is one piece. Empty pieces are dropped, as HF drops them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/hf_json.h"

namespace fe::hf {

struct Piece {
  std::string text;
  // Whether the piece begins at the first byte of the encoded text (Metaspace's "first" scheme
  // prepends "▁" to that piece only). A piece split off another keeps this when it begins at byte
  // 0 of its parent.
  bool starts_input = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by their split (and rewritten) pieces, in order.
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const JsonNode& node);

// Where Metaspace puts its "▁" in front of a piece (and whether its decoder drops it again).
enum class PrependScheme { always, first, never };
// The "prepend_scheme" of a Metaspace object, or for files older than it, "add_prefix_space"
// (true: always, false: never).
PrependScheme prepend_scheme_of(const JsonNode& metaspace);
// The "replacement" character of a Metaspace object ("▁" when absent).
char32_t metaspace_replacement_of(const JsonNode& metaspace);

}  // namespace fe::hf
