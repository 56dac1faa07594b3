// tokenizer/hf_tokenizer.cpp — tokenizer.json: the pipeline put together.

#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <utility>
#include <vector>

#include "tokenizer/hf_added_tokens.h"
#include "tokenizer/hf_bpe.h"
#include "tokenizer/hf_decoder.h"
#include "tokenizer/hf_json.h"
#include "tokenizer/hf_normalizer.h"
#include "tokenizer/hf_post_processor.h"
#include "tokenizer/hf_pre_tokenizer.h"
#include "tokenizer/hf_unicode.h"
#include "tokenizer/tokenizer_config.h"

namespace fe {
namespace {

namespace fs = std::filesystem;
using hf::JsonNode;

constexpr const char* kConfigFileName = "tokenizer_config.json";

std::vector<hf::AddedToken> read_added_tokens(const JsonNode& root) {
  std::vector<hf::AddedToken> tokens;
  const auto list = root.find("added_tokens");
  if (!list) return tokens;
  for (size_t i = 0; i < list->size(); ++i) {
    const JsonNode entry = list->at(i);
    hf::AddedToken token;
    const int64_t id = entry.at("id").integer();
    if (id < 0 || id > INT32_MAX) entry.at("id").fail("token id outside [0, 2^31)");
    token.id = static_cast<int32_t>(id);
    token.content = entry.at("content").string();
    token.special = entry.boolean_or("special", false);
    token.normalized = entry.boolean_or("normalized", !token.special);
    token.lstrip = entry.boolean_or("lstrip", false);
    token.rstrip = entry.boolean_or("rstrip", false);
    token.single_word = entry.boolean_or("single_word", false);
    tokens.push_back(std::move(token));
  }
  return tokens;
}

class HfTokenizer final : public Tokenizer {
 public:
  explicit HfTokenizer(std::string file) : file_(std::move(file)) {
    const nlohmann::json json = hf::read_json_file(file_);
    const JsonNode root(json, file_);
    if (!json.is_object()) root.fail("expected a JSON object (an HF tokenizer.json)");

    const JsonNode model = root.at("model");
    if (const auto type = model.find("type"); type && type->string() != "BPE") model.unknown_type("BPE");
    if (!model.find("type") && !model.find("merges")) model.fail("no \"type\" (supported: BPE)");
    model_ = std::make_unique<hf::BpeModel>(model);
    if (const auto node = root.find("normalizer")) normalizer_ = hf::make_normalizer(*node);
    if (const auto node = root.find("pre_tokenizer")) pre_tokenizer_ = hf::make_pre_tokenizer(*node);
    if (const auto node = root.find("decoder")) decoder_ = hf::make_decoder(*node);
    added_ = hf::AddedVocabulary(read_added_tokens(root), normalizer_.get());
    vocab_size_ = static_cast<int64_t>(std::max(model_->max_id(), added_.max_id())) + 1;

    hf::SingleSequenceTemplate added_around;
    if (const auto node = root.find("post_processor")) added_around = hf::single_sequence_template(*node);
    const auto first_or_none = [](const std::vector<int32_t>& ids) { return ids.empty() ? -1 : ids.front(); };
    bos_id_ = first_or_none(added_around.before);
    eos_id_ = first_or_none(added_around.after);
    if (const auto padding = root.find("padding")) pad_id_ = static_cast<int32_t>(padding->at("pad_id").integer());
    add_bos_ = !added_around.before.empty();
    add_eos_ = !added_around.after.empty();

    const fs::path config_file = fs::path(file_).parent_path() / kConfigFileName;
    std::error_code error;
    if (fs::is_regular_file(config_file, error)) apply_config(config_file.string());
    add_bos_ = add_bos_ && bos_id_ >= 0;
    add_eos_ = add_eos_ && eos_id_ >= 0;
  }

  std::vector<int32_t> encode(std::string_view text) const override {
    if (const auto offset = hf::invalid_utf8_offset(text))
      fail("the text to encode is not valid UTF-8 (at byte " + std::to_string(*offset) + ")");
    std::vector<int32_t> ids;
    std::vector<hf::Piece> pieces;
    for (const hf::TextSpan& raw : added_.split_raw(text)) {
      if (raw.id >= 0) {
        ids.push_back(raw.id);
        continue;
      }
      std::string normalized(text.substr(raw.begin, raw.end - raw.begin));
      if (normalizer_) normalizer_->normalize(normalized);
      if (normalized.empty()) continue;
      for (const hf::TextSpan& span : added_.split_normalized(normalized)) {
        if (span.id >= 0) {
          ids.push_back(span.id);
          continue;
        }
        pieces.assign(1, {normalized.substr(span.begin, span.end - span.begin), raw.begin == 0 && span.begin == 0});
        if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(pieces);
        for (const hf::Piece& piece : pieces)
          if (!piece.text.empty()) model_->encode_piece(piece.text, ids);
      }
    }
    return ids;
  }

  std::string decode(std::span<const int32_t> ids) const override { return decode(ids, true); }

  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (const int32_t id : ids) {
      check_id(id);
      const std::string* token = token_of(id);
      if (token == nullptr) continue;  // an id between tokens: HF skips it too
      // HF looks the token's text up among the special tokens' contents, so a normalized special
      // token whose text the normalizer changed is kept.
      if (skip_special_tokens && added_.is_special(*token)) continue;
      tokens.push_back(*token);
    }
    return hf::decode_tokens(decoder_.get(), std::move(tokens));
  }

  int64_t vocab_size() const override { return vocab_size_; }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  int32_t pad_id() const override { return pad_id_; }
  bool add_bos() const override { return add_bos_; }
  bool add_eos() const override { return add_eos_; }

  std::string id_to_piece(int32_t id) const override {
    check_id(id);
    const std::string* token = token_of(id);
    return token ? *token : std::string();
  }

  std::optional<int32_t> token_to_id(std::string_view token) const override {
    if (const auto id = added_.id_of(token)) return id;
    return model_->token_to_id(token);
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("tokenizer: " + file_ + ": " + what);
  }

  void check_id(int32_t id) const {
    if (id < 0 || id >= vocab_size_) {
      fail("token id " + std::to_string(id) + " outside the vocabulary [0, " + std::to_string(vocab_size_) + ")");
    }
  }

  // Added tokens take precedence over the model's vocabulary, as in HF.
  const std::string* token_of(int32_t id) const {
    if (const std::string* added = added_.text_of(id)) return added;
    return model_->id_to_token(id);
  }

  // tokenizer_config.json overrides the special ids and the BOS/EOS flags it states.
  void apply_config(const std::string& config_file) {
    const TokenizerConfig config = TokenizerConfig::read(config_file);
    const auto id_of = [&](const std::optional<std::string>& token, const char* key, int32_t fallback) {
      if (!token) return fallback;
      const auto id = token_to_id(*token);
      if (!id) {
        throw std::runtime_error("tokenizer: " + config_file + ": " + key + ": \"" + *token + "\" is not a token of " +
                                 file_ + " (fix the key or use the tokenizer.json that belongs with it)");
      }
      return *id;
    };
    bos_id_ = id_of(config.bos_token, "bos_token", bos_id_);
    eos_id_ = id_of(config.eos_token, "eos_token", eos_id_);
    pad_id_ = id_of(config.pad_token, "pad_token", pad_id_);
    if (config.add_bos_token) add_bos_ = *config.add_bos_token;
    if (config.add_eos_token) add_eos_ = *config.add_eos_token;
  }

  std::string file_;
  std::unique_ptr<hf::Normalizer> normalizer_;
  std::unique_ptr<hf::PreTokenizer> pre_tokenizer_;
  std::unique_ptr<hf::BpeModel> model_;
  std::unique_ptr<hf::Decoder> decoder_;
  hf::AddedVocabulary added_;
  int64_t vocab_size_ = 0;
  int32_t bos_id_ = -1, eos_id_ = -1, pad_id_ = -1;
  bool add_bos_ = false, add_eos_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& json_file) {
  return std::make_unique<HfTokenizer>(json_file);
}

}  // namespace fe
