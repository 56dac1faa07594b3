// tests/tokenizer_test.cpp — the SentencePiece Tokenizer against a tiny model trained here with
// Debian's `spm_train` (Llama-2 settings: BPE, byte fallback, unk/bos/eos = 0/1/2, no pad), and
// against the independent `spm_encode` CLI for the ids themselves. The tokenizer.json kind is
// tested in hf_tokenizer_test.cpp.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/test_files.h"

namespace fe {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using test::read_file;
using test::write_file;

constexpr int kVocabSize = 320;  // 3 specials + 256 byte pieces + the corpus' characters + merges

// Every character here becomes a piece (--character_coverage=1.0); characters absent from it
// (other CJK, emoji) can only be encoded through byte fallback.
const std::vector<std::string> kCorpusLines = {
    "The quick brown fox jumps over the lazy dog.",
    "Federated learning trains a shared model without moving the data.",
    "Low-rank adapters keep the base weights frozen and train two small matrices.",
    "Café, naïve, résumé, façade: accents should survive a round trip.",
    "東京は日本の首都です。",
    "Numbers like 12345 and 2024 are split into digits.",
    "    indented code stays indented\tand tabs too",
};

// Single-line texts (spm_encode reads one text per line) covering what the tokenizer must keep.
const std::vector<std::string> kSampleTexts = {
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! 42 + 58 = 100",
    "Crème brûlée à la française, Ångström, Ærøskøbing",
    "東京は日本の首都です。中文分词测试",  // seen and unseen CJK
    "emoji 😀🚀 and a flag 🇫🇷",
    "",
    " ",
    "   leading, internal    runs,\t\ttabs and trailing   ",
};

bool on_path(const std::string& tool) { return std::system(("command -v " + tool + " > /dev/null 2>&1").c_str()) == 0; }

// One model trained for the whole suite (training takes milliseconds); each test loads it anew.
class TokenizerTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!on_path("spm_train") || !on_path("spm_encode")) {
      skip_reason_ = "spm_train / spm_encode not on PATH (Debian package sentencepiece)";
      return;
    }
    dir_ = fs::temp_directory_path() / ("fe_tokenizer_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    train_model();
  }

  static void TearDownTestSuite() {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_TRUE(fs::exists(model_file())) << "spm_train failed:\n" << read_file(dir_ / "spm_train.log");
    tokenizer_ = Tokenizer::load(model_file().string());
  }

  static fs::path model_file() { return dir_ / "m.model"; }

  static void train_model() {
    std::string corpus;
    for (int repeat = 0; repeat < 20; ++repeat) {
      for (const std::string& line : kCorpusLines) corpus += line + "\n";
    }
    write_file(dir_ / "corpus.txt", corpus);
    // The Llama-2 trainer spec, scaled down: no normalization, whitespace kept as written.
    const std::string command = "spm_train --input=" + (dir_ / "corpus.txt").string() +
                                " --model_prefix=" + (dir_ / "m").string() +
                                " --vocab_size=" + std::to_string(kVocabSize) +
                                " --model_type=bpe --character_coverage=1.0 --byte_fallback=true --split_digits=true"
                                " --allow_whitespace_only_pieces=true --normalization_rule_name=identity"
                                " --remove_extra_whitespaces=false --add_dummy_prefix=true"
                                " --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --num_threads=1"
                                " > " +
                                (dir_ / "spm_train.log").string() + " 2>&1";
    std::system(command.c_str());  // success is judged by the model file existing (SetUp)
  }

  // Ids of each text according to the reference CLI, one text per line.
  static std::vector<std::vector<int32_t>> spm_encode_ids(const std::vector<std::string>& texts) {
    std::string input;
    for (const std::string& text : texts) input += text + "\n";
    write_file(dir_ / "spm_input.txt", input);
    const std::string command = "spm_encode --model=" + model_file().string() + " --output_format=id < " +
                                (dir_ / "spm_input.txt").string() + " > " + (dir_ / "spm_output.txt").string();
    EXPECT_EQ(std::system(command.c_str()), 0) << command;

    std::vector<std::vector<int32_t>> ids_per_text;
    std::istringstream output(read_file(dir_ / "spm_output.txt"));
    for (std::string line; std::getline(output, line);) {
      std::istringstream line_ids(line);
      ids_per_text.emplace_back();
      for (int32_t id; line_ids >> id;) ids_per_text.back().push_back(id);
    }
    return ids_per_text;
  }

  static inline fs::path dir_;
  static inline std::string skip_reason_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(TokenizerTest, SpecialIdsAndVocabularyAreAsTrained) {
  EXPECT_EQ(tokenizer_->vocab_size(), kVocabSize);
  EXPECT_EQ(tokenizer_->bos_id(), 1);
  EXPECT_EQ(tokenizer_->eos_id(), 2);
  EXPECT_EQ(tokenizer_->pad_id(), -1);
  EXPECT_EQ(tokenizer_->id_to_piece(0), "<unk>");
  EXPECT_EQ(tokenizer_->id_to_piece(1), "<s>");
  EXPECT_EQ(tokenizer_->id_to_piece(2), "</s>");
  EXPECT_EQ(tokenizer_->id_to_piece(3), "<0x00>");  // byte pieces follow the specials, as in Llama-2
}

TEST_F(TokenizerTest, RoundTripsTextExactly) {
  for (const std::string& text : kSampleTexts) {
    const std::vector<int32_t> ids = tokenizer_->encode(text);
    for (const int32_t id : ids) {
      EXPECT_GE(id, 0) << text;
      EXPECT_LT(id, tokenizer_->vocab_size()) << text;
    }
    EXPECT_EQ(tokenizer_->decode(ids), text);
  }
}

TEST_F(TokenizerTest, MatchesSpmEncodeCli) {
  const std::vector<std::vector<int32_t>> expected = spm_encode_ids(kSampleTexts);
  ASSERT_EQ(expected.size(), kSampleTexts.size());
  for (size_t i = 0; i < kSampleTexts.size(); ++i) {
    EXPECT_EQ(tokenizer_->encode(kSampleTexts[i]), expected[i]) << "text: \"" << kSampleTexts[i] << "\"";
  }
}

TEST_F(TokenizerTest, EncodeAddsNoBosOrEos) {
  EXPECT_TRUE(tokenizer_->encode("").empty());
  for (const int32_t id : tokenizer_->encode("The lazy dog.")) {
    EXPECT_NE(id, tokenizer_->bos_id());
    EXPECT_NE(id, tokenizer_->eos_id());
  }
}

TEST_F(TokenizerTest, UnseenCharactersFallBackToUtf8Bytes) {
  std::vector<std::string> pieces;
  for (const int32_t id : tokenizer_->encode("😀")) pieces.push_back(tokenizer_->id_to_piece(id));
  // U+1F600 is F0 9F 98 80 in UTF-8; the dummy prefix "▁" comes first.
  EXPECT_EQ(pieces, (std::vector<std::string>{"▁", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"}));
}

TEST_F(TokenizerTest, DecodeDropsControlTokens) {
  const std::string text = "Federated learning";
  std::vector<int32_t> ids = {tokenizer_->bos_id()};
  for (const int32_t id : tokenizer_->encode(text)) ids.push_back(id);
  ids.push_back(tokenizer_->eos_id());
  EXPECT_EQ(tokenizer_->decode(ids), text);
}

TEST_F(TokenizerTest, OutOfRangeIdsThrowNamingTheModel) {
  const std::vector<int32_t> ids = {5, static_cast<int32_t>(kVocabSize)};
  const std::string decode_error = error_of<std::runtime_error>([&] { tokenizer_->decode(ids); });
  EXPECT_NE(decode_error.find(model_file().string()), std::string::npos) << decode_error;
  EXPECT_NE(decode_error.find(std::to_string(kVocabSize)), std::string::npos) << decode_error;
  const std::string piece_error = error_of<std::runtime_error>([&] { tokenizer_->id_to_piece(-1); });
  EXPECT_NE(piece_error.find(model_file().string()), std::string::npos) << piece_error;
}

TEST_F(TokenizerTest, LoadsFromModelDirectory) {
  const fs::path model_dir = dir_ / "model_dir";
  fs::create_directories(model_dir);
  fs::copy_file(model_file(), model_dir / "tokenizer.model", fs::copy_options::overwrite_existing);
  const std::unique_ptr<Tokenizer> from_dir = Tokenizer::load(model_dir.string());
  for (const std::string& text : kSampleTexts) EXPECT_EQ(from_dir->encode(text), tokenizer_->encode(text));
}

TEST_F(TokenizerTest, MissingFileErrorNamesIt) {
  const std::string missing = (dir_ / "no_such.model").string();
  const std::string error = error_of<std::runtime_error>([&] { Tokenizer::load(missing); });
  EXPECT_NE(error.find(missing), std::string::npos) << error;
}

TEST_F(TokenizerTest, DirectoryWithoutModelErrorNamesIt) {
  const fs::path empty_dir = dir_ / "empty_dir";
  fs::create_directories(empty_dir);
  const std::string error = error_of<std::runtime_error>([&] { Tokenizer::load(empty_dir.string()); });
  EXPECT_NE(error.find(empty_dir.string()), std::string::npos) << error;
  EXPECT_NE(error.find("tokenizer.model"), std::string::npos) << error;
}

TEST_F(TokenizerTest, FileThatIsNotAModelErrorNamesIt) {
  for (const std::string& contents : {std::string("garbage, not a protobuf\n"), std::string()}) {
    const fs::path not_a_model = dir_ / "not_a.model";
    write_file(not_a_model, contents);
    const std::string error = error_of<std::runtime_error>([&] { Tokenizer::load(not_a_model.string()); });
    EXPECT_NE(error.find(not_a_model.string()), std::string::npos) << error;
    EXPECT_NE(error.find("not a SentencePiece model"), std::string::npos) << error;
    EXPECT_NE(error.find("tokenizer.json"), std::string::npos) << error;  // the other kind it could be
  }
}

// A JSON object is read as an HF tokenizer.json whatever the file is called.
TEST_F(TokenizerTest, JsonFileIsReadAsTokenizerJson) {
  const fs::path json_file = dir_ / "looks_like.model";
  write_file(json_file, "{\"model\": {\"type\": \"BPE\"}}\n");
  const std::string error = error_of<std::runtime_error>([&] { Tokenizer::load(json_file.string()); });
  EXPECT_NE(error.find(json_file.string()), std::string::npos) << error;
  EXPECT_NE(error.find("model.vocab"), std::string::npos) << error;
}

TEST_F(TokenizerTest, TokenLookupAndSpecialTokenRules) {
  EXPECT_EQ(tokenizer_->token_to_id("<s>"), 1);
  EXPECT_EQ(tokenizer_->token_to_id("<unk>"), 0);
  EXPECT_EQ(tokenizer_->token_to_id("<0x41>"), 3 + 0x41);
  EXPECT_EQ(tokenizer_->token_to_id("no such piece"), std::nullopt);
  EXPECT_TRUE(tokenizer_->add_bos());  // Llama-2 convention: BOS, no EOS
  EXPECT_FALSE(tokenizer_->add_eos());
}

// As transformers' tokenizers (not spm_encode): a special piece written in the text is its id, so a
// chat template's "</s>" ends the answer; the text around it is encoded as on its own.
TEST_F(TokenizerTest, SpecialPiecesWrittenInTheTextAreTheirIds) {
  const std::string before = "[INST] copy 1 2 [/INST]", after = " next";
  std::vector<int32_t> expected = tokenizer_->encode(before);
  expected.push_back(tokenizer_->eos_id());
  expected.push_back(tokenizer_->bos_id());
  for (const int32_t id : tokenizer_->encode(after)) expected.push_back(id);
  EXPECT_EQ(tokenizer_->encode(before + "</s><s>" + after), expected);
  EXPECT_EQ(tokenizer_->encode("<unk>"), std::vector<int32_t>{0});
  EXPECT_EQ(tokenizer_->encode("</s"), tokenizer_->encode(std::string("</s")));  // no partial match
  EXPECT_NE(tokenizer_->encode("</s").size(), 1u);
}

TEST_F(TokenizerTest, DecodeCanKeepControlTokens) {
  const std::string text = "Federated learning";
  std::vector<int32_t> ids = {tokenizer_->bos_id()};
  for (const int32_t id : tokenizer_->encode(text)) ids.push_back(id);
  ids.push_back(tokenizer_->eos_id());
  EXPECT_EQ(tokenizer_->decode(ids, /*skip_special_tokens=*/true), text);
  EXPECT_EQ(tokenizer_->decode(ids, /*skip_special_tokens=*/false), "<s>" + text + "</s>");
}

// A tokenizer.model reads the directory's tokenizer_config.json as transformers' Llama tokenizers
// do: the BOS/EOS flags, the special tokens, the chat template and the decode clean-up.
TEST_F(TokenizerTest, ReadsTheConfigBesideTheModel) {
  const fs::path model_dir = dir_ / "configured";
  fs::create_directories(model_dir);
  fs::copy_file(model_file(), model_dir / "tokenizer.model", fs::copy_options::overwrite_existing);
  write_file(model_dir / "tokenizer_config.json", R"({
      "add_bos_token": false, "add_eos_token": true, "pad_token": "<unk>", "eos_token": {"content": "</s>"},
      "clean_up_tokenization_spaces": true,
      "chat_template": "{% for m in messages %}{{ bos_token }}[INST] {{ m.content }} [/INST]{{ eos_token }}{% endfor %}"})");
  const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::load(model_dir.string());
  EXPECT_FALSE(tokenizer->add_bos());
  EXPECT_TRUE(tokenizer->add_eos());
  EXPECT_EQ(tokenizer->eos_id(), 2);
  EXPECT_EQ(tokenizer->pad_id(), 0);
  ASSERT_TRUE(tokenizer->has_chat_template());
  EXPECT_EQ(
      tokenizer->apply_chat_template(nlohmann::ordered_json::parse(R"([{"role": "user", "content": "hi"}])"), false),
      "<s>[INST] hi [/INST]</s>");
  const std::string text = "Hello , world . I 'm here !";
  EXPECT_EQ(tokenizer_->decode(tokenizer_->encode(text)), text);
  EXPECT_EQ(tokenizer->decode(tokenizer->encode(text)), "Hello, world. I'm here!");
}

TEST_F(TokenizerTest, ConfigTokenMissingFromTheModelIsAnError) {
  const fs::path model_dir = dir_ / "misconfigured";
  fs::create_directories(model_dir);
  fs::copy_file(model_file(), model_dir / "tokenizer.model", fs::copy_options::overwrite_existing);
  write_file(model_dir / "tokenizer_config.json", R"({"eos_token": "<|eot_id|>"})");
  const std::string error = error_of<std::runtime_error>([&] { Tokenizer::load(model_dir.string()); });
  EXPECT_NE(error.find((model_dir / "tokenizer_config.json").string()), std::string::npos) << error;
  EXPECT_NE(error.find("eos_token"), std::string::npos) << error;
  EXPECT_NE(error.find("<|eot_id|>"), std::string::npos) << error;
  EXPECT_NE(error.find((model_dir / "tokenizer.model").string()), std::string::npos) << error;
}

}  // namespace
}  // namespace fe
