// tokenizer/hf_bpe.cpp — BPE over merge ranks keyed by id pair.

#include "tokenizer/hf_bpe.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <queue>
#include <stdexcept>

#include "tokenizer/utf8.h"

namespace fe::hf {
namespace {

constexpr size_t kCachedWordBytes = 256;
constexpr size_t kCacheCapacity = 200'000;

// A symbol of the word being merged; merged-away symbols keep length 0.
struct Symbol {
  int32_t id;
  int32_t prev, next;  // -1 at the ends
  uint32_t length;     // bytes of the word it covers
};

// A candidate merge of the symbol at `pos` with its successor.
struct Candidate {
  int32_t rank, pos, merged_id;
  // std::priority_queue pops the greatest: the lowest rank, then the leftmost position.
  bool operator<(const Candidate& other) const { return rank != other.rank ? rank > other.rank : pos > other.pos; }
};

void add_symbol(std::vector<Symbol>& symbols, int32_t id, uint32_t length) {
  const auto count = static_cast<int32_t>(symbols.size());
  if (!symbols.empty()) symbols.back().next = count;
  symbols.push_back({id, count - 1, -1, length});
}

}  // namespace

BpeModel::BpeModel(const JsonNode& model) : file_(model.file()) {
  for (const char* unsupported : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (const auto value = model.find(unsupported); value && !value->string().empty())
      value->fail("not supported (only BPE without word prefixes/suffixes, as byte-level and Metaspace models use)");
  }
  if (const auto dropout = model.find("dropout"); dropout && dropout->number() != 0.0)
    dropout->fail("BPE dropout is not supported for encoding (expected null)");

  const JsonNode vocab = model.at("vocab");
  if (!vocab.value().is_object()) vocab.fail("expected an object {token: id}");
  vocab_.reserve(vocab.value().size());
  tokens_by_id_.reserve(vocab.value().size());
  for (const auto& [token, id_value] : vocab.value().items()) {
    const int64_t id = id_value.is_number_integer() && !id_value.is_number_unsigned() ? id_value.get<int64_t>()
                                                                                      : vocab.at(token).integer();
    if (id < 0 || id > std::numeric_limits<int32_t>::max())
      vocab.fail("id " + std::to_string(id) + " of \"" + token + "\" is outside [0, 2^31)");
    const auto [entry, inserted] = vocab_.emplace(token, static_cast<int32_t>(id));
    // Keys of an unordered_map keep their address, so the reverse map can point at them.
    if (inserted) tokens_by_id_[entry->second] = &entry->first;
    max_id_ = std::max(max_id_, entry->second);
  }

  read_merges(model.at("merges"));

  if (const auto unk = model.find("unk_token")) {
    unk_token_ = unk->string();
    unk_id_ = token_to_id(*unk_token_);
  }
  fuse_unk_ = model.boolean_or("fuse_unk", false);
  byte_fallback_ = model.boolean_or("byte_fallback", false);
  ignore_merges_ = model.boolean_or("ignore_merges", false);
  if (byte_fallback_) {
    byte_ids_.assign(256, -1);
    for (int byte = 0; byte < 256; ++byte) {
      char piece[8];
      std::snprintf(piece, sizeof piece, "<0x%02X>", byte);
      if (const auto id = token_to_id(piece)) byte_ids_[byte] = *id;
    }
  }
}

void BpeModel::read_merges(const JsonNode& merges) {
  const size_t count = merges.size();
  merges_.reserve(count);
  for (size_t rank = 0; rank < count; ++rank) {
    const JsonNode merge = merges.at(rank);
    std::string left, right;
    if (merge.value().is_string()) {
      const std::string text = merge.string();
      const size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
        merge.fail("expected \"left right\" (two tokens and one space), found \"" + text + "\"");
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else {
      if (merge.size() != 2) merge.fail("expected a pair [left, right]");
      left = merge.at(size_t{0}).string();
      right = merge.at(size_t{1}).string();
    }
    const auto left_id = token_to_id(left), right_id = token_to_id(right), merged_id = token_to_id(left + right);
    if (!left_id || !right_id || !merged_id) {
      const std::string& missing = !left_id ? left : !right_id ? right : left + right;
      merge.fail("\"" + missing + "\" is not in model.vocab");
    }
    // A repeated pair keeps its last rank, as HF's map does.
    merges_[pair_key(*left_id, *right_id)] = {static_cast<int32_t>(rank), *merged_id};
  }
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  const auto it = tokens_by_id_.find(id);
  return it == tokens_by_id_.end() ? nullptr : it->second;
}

int32_t BpeModel::unk_id() const {
  if (!unk_id_) {
    throw std::runtime_error("tokenizer: " + file_ + ": model.unk_token \"" + *unk_token_ +
                             "\" is not in model.vocab, and the text has a character with no token");
  }
  return *unk_id_;
}

std::vector<int32_t> BpeModel::merge_word(std::string_view word) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  // A pending unknown run (HF adds it before the next known character, fused or not).
  int32_t pending_unk_length = 0;
  for (size_t pos = 0; pos < word.size();) {
    const size_t begin = pos;
    pos += utf8::sequence_length(static_cast<unsigned char>(word[pos]));
    const std::string_view character = word.substr(begin, pos - begin);
    const auto length = static_cast<uint32_t>(character.size());
    if (const auto id = token_to_id(character)) {
      if (pending_unk_length > 0) add_symbol(symbols, unk_id(), pending_unk_length);
      pending_unk_length = 0;
      add_symbol(symbols, *id, length);
      continue;
    }
    if (byte_fallback_) {
      bool all_bytes = true;
      for (const char byte : character) all_bytes = all_bytes && byte_ids_[static_cast<unsigned char>(byte)] >= 0;
      if (all_bytes) {  // HF leaves a pending unknown run pending here
        for (const char byte : character) add_symbol(symbols, byte_ids_[static_cast<unsigned char>(byte)], 1);
        continue;
      }
    }
    if (!unk_token_) continue;
    if (pending_unk_length > 0 && !fuse_unk_) {
      add_symbol(symbols, unk_id(), pending_unk_length);
      pending_unk_length = 0;
    }
    pending_unk_length += static_cast<int32_t>(length);
  }
  if (pending_unk_length > 0) add_symbol(symbols, unk_id(), pending_unk_length);

  std::priority_queue<Candidate> queue;
  const auto rule_of = [this](int32_t left, int32_t right) -> const MergeRule* {
    const auto it = merges_.find(pair_key(left, right));
    return it == merges_.end() ? nullptr : &it->second;
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const MergeRule* rule = rule_of(symbols[i].id, symbols[i + 1].id))
      queue.push({rule->rank, static_cast<int32_t>(i), rule->merged_id});
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& current = symbols[top.pos];
    if (current.length == 0 || current.next < 0) continue;
    const int32_t right_pos = current.next;
    const Symbol right = symbols[right_pos];
    // Skip entries made stale by an earlier merge.
    const MergeRule* rule = rule_of(current.id, right.id);
    if (rule == nullptr || rule->merged_id != top.merged_id) continue;

    current.id = top.merged_id;
    current.length += right.length;
    current.next = right.next;
    symbols[right_pos].length = 0;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (current.prev >= 0) {
      if (const MergeRule* left_rule = rule_of(symbols[current.prev].id, current.id))
        queue.push({left_rule->rank, current.prev, left_rule->merged_id});
    }
    if (current.next >= 0) {
      if (const MergeRule* next_rule = rule_of(current.id, symbols[current.next].id))
        queue.push({next_rule->rank, top.pos, next_rule->merged_id});
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(symbols.size());
  for (const Symbol& symbol : symbols)
    if (symbol.length != 0) ids.push_back(symbol.id);
  return ids;
}

void BpeModel::encode_piece(std::string_view piece, std::vector<int32_t>& ids) const {
  if (ignore_merges_) {
    if (const auto id = token_to_id(piece)) {
      ids.push_back(*id);
      return;
    }
  }
  const bool cacheable = piece.size() < kCachedWordBytes;
  if (cacheable) {
    const std::lock_guard lock(cache_mutex_);
    if (const auto it = cache_.find(piece); it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> word = merge_word(piece);
  ids.insert(ids.end(), word.begin(), word.end());
  if (cacheable) {
    const std::lock_guard lock(cache_mutex_);
    if (cache_.size() < kCacheCapacity) cache_.emplace(std::string(piece), std::move(word));
  }
}

}  // namespace fe::hf
