// tokenizer/hf_bpe.h — tokenizer.json's `model` of type BPE: each pre-tokenized piece starts as
// its characters' ids and merges the adjacent pair of lowest merge rank (leftmost first) until no
// pair has a rank, as HF's Word::merge_all does.
//
// Fields: vocab, merges ("a b" strings or ["a", "b"] pairs), unk_token, fuse_unk, byte_fallback
// (characters missing from vocab become their UTF-8 bytes' "<0xAB>" pieces), ignore_merges (a piece
// that is itself in vocab is one id; Llama 3 sets it). continuing_subword_prefix /
// end_of_word_suffix and a dropout other than null or 0 are rejected with an error naming the key.
// A character with no id, no byte pieces and no unk_token is dropped, as HF drops it.
//
// Pieces shorter than 256 bytes are cached (thread-safe), so encoding text costs a hash lookup per
// repeated word.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/hf_json.h"

namespace fe::hf {

// std::string keys looked up by std::string_view without a copy.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};
template <typename Value>
using StringMap = std::unordered_map<std::string, Value, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // `model` is the "model" object of a tokenizer.json whose type is BPE.
  explicit BpeModel(const JsonNode& model);

  // Appends the ids of one piece (non-empty, valid UTF-8).
  void encode_piece(std::string_view piece, std::vector<int32_t>& ids) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // nullptr for ids with no token.
  const std::string* id_to_token(int32_t id) const;
  // The largest id of vocab, -1 when it is empty.
  int32_t max_id() const { return max_id_; }

 private:
  struct MergeRule {
    int32_t rank, merged_id;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  void read_merges(const JsonNode& merges);
  std::vector<int32_t> merge_word(std::string_view word) const;
  int32_t unk_id() const;

  std::string file_;
  StringMap<int32_t> vocab_;
  // By id, pointing at vocab_'s keys. A map, not a table indexed by id: ids need not be dense (HF
  // allows gaps), and a file's largest id must not decide how much memory loading takes.
  std::unordered_map<int32_t, const std::string*> tokens_by_id_;
  int32_t max_id_ = -1;
  std::unordered_map<uint64_t, MergeRule> merges_;
  std::optional<std::string> unk_token_;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::vector<int32_t> byte_ids_;  // "<0xAB>" piece of each byte, -1 where missing (byte_fallback)

  mutable std::mutex cache_mutex_;
  mutable StringMap<std::vector<int32_t>> cache_;
};

}  // namespace fe::hf
