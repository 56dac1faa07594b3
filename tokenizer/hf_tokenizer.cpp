// tokenizer/hf_tokenizer.cpp — tokenizer.json: the pipeline put together.

#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
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
#include "tokenizer/tokenizer_config.h"
#include "tokenizer/utf8.h"

namespace fe {
namespace {

using hf::JsonNode;

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

int32_t pad_id_of(const JsonNode& padding) {
  const JsonNode id = padding.at("pad_id");
  if (id.integer() < 0 || id.integer() > INT32_MAX) id.fail("token id outside [0, 2^31)");
  return static_cast<int32_t>(id.integer());
}

class HfTokenizer final : public Tokenizer {
 public:
  HfTokenizer(std::string file, const TokenizerConfig& config) : Tokenizer(std::move(file)) {
    const nlohmann::json json = hf::read_json_file(this->file());
    const JsonNode root(json, this->file());
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
    SpecialTokens from_file{.bos_id = first_or_none(added_around.before),
                            .eos_id = first_or_none(added_around.after),
                            .add_bos = !added_around.before.empty(),
                            .add_eos = !added_around.after.empty()};
    if (const auto padding = root.find("padding")) from_file.pad_id = pad_id_of(*padding);
    set_special_tokens(config.special_tokens(
        from_file, [this](std::string_view token) { return token_to_id(token); }, this->file()));
  }

  std::vector<int32_t> encode(std::string_view text) const override {
    if (const auto offset = utf8::invalid_offset(text))
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

  int64_t vocab_size() const override { return vocab_size_; }

  std::optional<int32_t> token_to_id(std::string_view token) const override {
    if (const auto id = added_.id_of(token)) return id;
    return model_->token_to_id(token);
  }

 protected:
  std::string piece_of(int32_t id) const override {
    const std::string* token = token_of(id);
    return token ? *token : std::string();
  }

  std::string decode_ids(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (const int32_t id : ids) {
      const std::string* token = token_of(id);
      if (token == nullptr) continue;  // an id between tokens: HF skips it too
      // HF looks the token's text up among the special tokens' contents, so a normalized special
      // token whose text the normalizer changed is kept.
      if (skip_special_tokens && added_.is_special(*token)) continue;
      tokens.push_back(*token);
    }
    return hf::decode_tokens(decoder_.get(), std::move(tokens));
  }

 private:
  // Added tokens take precedence over the model's vocabulary, as in HF.
  const std::string* token_of(int32_t id) const {
    if (const std::string* added = added_.text_of(id)) return added;
    return model_->id_to_token(id);
  }

  std::unique_ptr<hf::Normalizer> normalizer_;
  std::unique_ptr<hf::PreTokenizer> pre_tokenizer_;
  std::unique_ptr<hf::BpeModel> model_;
  std::unique_ptr<hf::Decoder> decoder_;
  hf::AddedVocabulary added_;
  int64_t vocab_size_ = 0;
};

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& json_file, const TokenizerConfig& config) {
  return std::make_unique<HfTokenizer>(json_file, config);
}

}  // namespace fe
