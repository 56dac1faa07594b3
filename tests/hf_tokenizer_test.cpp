// tests/hf_tokenizer_test.cpp — the tokenizer.json Tokenizer against HF `tokenizers` (PyPI, in the
// reference venv): tests/reference/tokenizers_reference.py trains a small BPE per kind of pipeline
// that real checkpoints ship, saves its tokenizer.json, and writes what HF encodes and decodes for
// each line of the corpus below; every line must give the same ids and text here. Also: loading
// (which file a path means), tokenizer_config.json, and the error messages, on small files written
// here.
#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/gguf.h"
#include "engine/gguf_import.h"
#include "tests/reference_env.h"
#include "tests/test_files.h"
#include "tokenizer/hf_json.h"
#include "tokenizer/hf_regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_config.h"

namespace fe {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;
using namespace std::string_literals;
using test::error_of;
using test::read_file;
using test::write_file;

// What the tokenizers must agree on: scripts, code, numbers, whitespace runs, both Unicode forms of
// accents, emoji sequences, and special-token strings (whole, glued to text, and broken).
std::vector<std::string> corpus() {
  std::vector<std::string> lines = {
      "The quick brown fox jumps over the lazy dog.",
      "I'm sure they'll say it's fine, but we've DON'T and I'D 'S 'ſ 're've.",
      "def add(a, b):\n    return a + b\n",
      "for (int i = 0; i < n; ++i) {\n\tsum += a[i]; // sum\n}\n",
      "{\"key\": [1, 2, {\"nested\": null}], 'quote': \"\\\\n\"}",
      "mixed-case CamelCase snake_case kebab-case, x86_64; C++ -> Rust => Go",
      "Numbers: 0 7 42 123 1234 12345 3.14159 1,000,000 9876543210123 and 2024-06-01.",
      "a    b\t\tc\n\n\nd\r\ne  \n  f   \r\n\r\n",
      "   leading spaces",
      "trailing spaces   ",
      " ",
      "",
      "\n",
      "\t \n \t",
      "Café naïve résumé — composed é",
      "Cafe\u0301 nai\u0308ve re\u0301sume\u0301 — decomposed e\u0301",
      "東京は日本の首都です。中文分词测试",
      "emoji 😀🚀 family 👨\u200d👩\u200d👧\u200d👦 flag 🇫🇷 thumbs 👍🏽 keycap 1\ufe0f\u20e3",
      "Привет мир, Γειά σου κόσμε, 안녕하세요 세계, مرحبا بالعالم, नमस्ते दुनिया, สวัสดี",
      "İstanbul ŞİŞLİ straße ß ﬁ ① ² ½ Ⅻ ٣٤٥ ¹²³",
      "tabs\tand\u00a0nbsp\u3000ideographic space\u2028line separator\u0085next line\u180emongolian \u180e vowel",
      "ǅemal ǈ Ⓐⓑ 𝔸𝕓 ℌ 'ǅ 'K x\u0301\u0301y ١٢٣٤٥ ๑๒๓ 😀🏻\u200d\u2640\ufe0f",
      "!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) ``` ~~~",
      "nul \0 and \x7f del and \u200b zero width and \ufeff bom"s,
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
      "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>"
      "assistant\n",
      "<s>[INST] Hello there [/INST] General Kenobi</s>",
      "text<s>glued</s>text and <|im_start <|im_end| <s </s <|endoftext|><|endoftext|>",
      "<|begin_of_text|>",
      " <s> ",
      "Hello World, hello world, HELLO WORLD; the fox, a fox-like foxes, Fox [MASK] end",
      "x[MASK]y  [MASK]  z <Sep> <sep> fox_ _fox 1fox fox1 éfox",
      "it's 'quoted' and \"double\" — en–dash… ellipsis «guillemets» „low“",
      // Added tokens that the model cannot spell as one piece (word_splits): `\w` as Rust's regex
      // reads it (letter-like symbols such as Ⓐ ⓐ 🅰 are Alphabetic) rejects single-word matches,
      // and lstrip/rstrip take the whitespace around.
      "ⓐwug wug Ⓐwug wugⓐ 🅰wug wug🅰 _wug wug_ 1wug wug1 éwug wug\u0301 wug ⓐfox fox",
      "Zorp zorp ⓐZorp Zorp🅰 xZorp Zorp, Zorp_ \u200dZorp Zorp\u200c ٣Zorp Zorp",
      "x  blick\tblick blick  dax  dax\ty dax\n blick",
      // What transformers' clean_up_tokenization rewrites (word_splits' decoder joins with spaces).
      "Hello , world . Is it ? Yes ! I 'm sure it 's fine , isn 't it ? They 're here , we 've won ' ok",
  };
  std::string long_word = "long ";
  for (int i = 0; i < 60; ++i) long_word += "word";
  lines.push_back(long_word);
  std::string counting;
  for (int i = 0; i < 300; ++i) counting += std::to_string(i * 37) + (i % 7 == 0 ? "\n" : " ");
  lines.push_back(counting);
  return lines;
}

// The kinds of tokenizers_reference.py: what Llama 3, Qwen2, SmolLM2, Llama 2 / TinyLlama and
// Mistral ship, then variations that cover the remaining components.
const char* const kKinds[] = {
    "llama3",             // Split(GPT-4 regex) + ByteLevel(use_regex=false), ignore_merges
    "qwen2",              // NFC + Split(Qwen2 regex) + ByteLevel
    "smollm2",            // Digits(individual) + ByteLevel(regex), merges as "a b" strings
    "llama2_legacy",      // Prepend/Replace normalizer, no pre-tokenizer, byte fallback, Strip decoder
    "llama2_metaspace",   // Metaspace(first) + Metaspace decoder, byte fallback
    "metaspace_split",    // NFKC, Strip, Metaspace(always, split), fused <unk>
    "word_splits",        // NFD, Lowercase, Replace(regex), Whitespace, Digits; added-token flags;
                          // tokenizer_config.json with clean_up_tokenization_spaces
    "split_behaviors",    // every Split behavior, invert, WhitespaceSplit, NFKD; Replace/Strip decoders
    "byte_level_prefix",  // ByteLevel(add_prefix_space) with its own regex
    "smollm2_gguf",       // the real SmolLM2-135M-Instruct tokenizer, rebuilt from its GGUF by import_gguf
};
constexpr const char* kFromGguf = "smollm2_gguf";

// The kinds where decode(encode(x), skip_special_tokens=false) == x for every text. The others
// change text on purpose: NFC/NFKC/lower-casing, a Strip decoder eating the space after "<s>",
// Metaspace/ByteLevel prefix spaces, unknown characters.
const char* const kLosslessKinds[] = {"llama3", "smollm2", "smollm2_gguf"};

std::string quoted(const std::string& text) { return json(text).dump(); }

// "[id "piece", ...]" for a readable report of differing ids.
std::string describe(const Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    out += (i ? ", " : "") + std::to_string(ids[i]);
    if (ids[i] >= 0 && ids[i] < tokenizer.vocab_size()) out += " " + quoted(tokenizer.id_to_piece(ids[i]));
  }
  return out + "]";
}

// The HF reference of one kind, built once per process (the script takes a fraction of a second).
struct Reference {
  std::string tokenizer_file;
  json expected;
};

class References {
 public:
  ~References() {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Throws std::runtime_error with the script's output when it fails.
  const Reference& get(const std::string& python, const std::string& kind) {
    if (const auto it = built_.find(kind); it != built_.end()) return it->second;
    if (dir_.empty()) {
      dir_ = fs::temp_directory_path() / ("fedengine_hf_tokenizer_" + std::to_string(::getpid()));
      fs::remove_all(dir_);
      fs::create_directories(dir_);
      std::ofstream(dir_ / "corpus.json", std::ios::binary) << json({{"lines", corpus()}}).dump();
    }
    const fs::path log = dir_ / (kind + ".log");
    const std::string script = python + " " FE_SOURCE_DIR "/tests/reference/tokenizers_reference.py ";
    std::string command = "OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false " + script;
    if (kind == kFromGguf) {
      // HF tokenizers reads the tokenizer.json the importer wrote; we read the same file.
      const GgufFile gguf(test::smollm2_gguf());
      fs::create_directories(dir_ / kind);
      std::ofstream(dir_ / kind / "tokenizer.json", std::ios::binary) << gguf_hf_tokenizer(gguf).dump();
      std::ofstream(dir_ / kind / "tokenizer_config.json", std::ios::binary) << gguf_hf_tokenizer_config(gguf).dump();
      command += "expect " + (dir_ / kind / "tokenizer.json").string() + " " + (dir_ / "corpus.json").string() + " " +
                 (dir_ / kind / "expected.json").string();
    } else {
      command += "build " + dir_.string() + " " + (dir_ / "corpus.json").string() + " " + kind;
    }
    run(command, log);
    Reference reference{(dir_ / kind / "tokenizer.json").string(),
                        json::parse(read_file(dir_ / kind / "expected.json"))};
    return built_.emplace(kind, std::move(reference)).first->second;
  }

  // What HF gives for `lines` (the "lines" of expected.json) with the tokenizer of `kind`.
  json expect(const std::string& python, const std::string& kind, const std::vector<std::string>& lines,
              const std::string& name) {
    const Reference& reference = get(python, kind);
    const fs::path corpus_file = dir_ / (name + ".corpus.json"), out = dir_ / (name + ".expected.json");
    std::ofstream(corpus_file, std::ios::binary) << json({{"lines", lines}}).dump();
    run("OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false " + python +
            " " FE_SOURCE_DIR "/tests/reference/tokenizers_reference.py expect " + reference.tokenizer_file + " " +
            corpus_file.string() + " " + out.string(),
        dir_ / (name + ".log"));
    return json::parse(read_file(out)).at("lines");
  }

 private:
  static void run(std::string command, const fs::path& log) {
    command += " > " + log.string() + " 2>&1";
    if (std::system(command.c_str()) != 0)
      throw std::runtime_error("the reference script failed:\n" + command + "\n" + read_file(log));
  }

  fs::path dir_;
  std::map<std::string, Reference> built_;
};

References& references() {
  static References instance;
  return instance;
}

class HfTokenizerParity : public testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    const std::string python = test::reference_python("tokenizers");
    FE_NEED_REFERENCE(!python.empty(), "HF tokenizers");
    if (GetParam() == std::string(kFromGguf))
      FE_NEED_REFERENCE(!test::smollm2_gguf().empty(), "the SmolLM2-135M-Instruct GGUF");
    reference_ = &references().get(python, GetParam());
    tokenizer_ = Tokenizer::load(reference_->tokenizer_file);
  }

  const json& lines() const { return reference_->expected.at("lines"); }

  const Reference* reference_ = nullptr;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_P(HfTokenizerParity, EncodeGivesHfIds) {
  int differing = 0;
  for (size_t i = 0; i < lines().size(); ++i) {
    const json& line = lines()[i];
    const std::string text = line.at("text");
    const std::vector<int32_t> expected = line.at("ids");
    const std::vector<int32_t> ids = tokenizer_->encode(text);
    if (ids == expected) continue;
    ++differing;
    size_t first = 0;
    while (first < ids.size() && first < expected.size() && ids[first] == expected[first]) ++first;
    ADD_FAILURE() << GetParam() << " line " << i << ": " << quoted(text) << "\n  first difference at id #" << first
                  << "\n  ours: " << describe(*tokenizer_, ids) << "\n  HF:   " << describe(*tokenizer_, expected);
  }
  EXPECT_EQ(differing, 0) << "lines whose ids differ from HF tokenizers, of " << lines().size();
}

TEST_P(HfTokenizerParity, DecodeGivesHfText) {
  for (size_t i = 0; i < lines().size(); ++i) {
    const json& line = lines()[i];
    const std::vector<int32_t> ids = line.at("ids");
    EXPECT_EQ(tokenizer_->decode(ids), line.at("decoded").get<std::string>())
        << "line " << i << " " << describe(*tokenizer_, ids);
    EXPECT_EQ(tokenizer_->decode(ids, /*skip_special_tokens=*/false),
              line.at("decoded_with_special_tokens").get<std::string>())
        << "line " << i << " " << describe(*tokenizer_, ids);
  }
  // Random ids: stray byte pieces, halves of UTF-8 sequences, special tokens anywhere.
  for (const json& sample : reference_->expected.at("decode_cases")) {
    const std::vector<int32_t> ids = sample.at("ids");
    EXPECT_EQ(tokenizer_->decode(ids, true), sample.at("decoded").get<std::string>()) << describe(*tokenizer_, ids);
    EXPECT_EQ(tokenizer_->decode(ids, false), sample.at("decoded_with_special_tokens").get<std::string>())
        << describe(*tokenizer_, ids);
  }
}

// What HF's encode(add_special_tokens=True) adds is what add_bos()/add_eos() with bos_id()/eos_id()
// say; the vocabulary and the special tokens' ids agree.
TEST_P(HfTokenizerParity, SpecialTokensAsHf) {
  for (size_t i = 0; i < lines().size(); ++i) {
    const json& line = lines()[i];
    std::vector<int32_t> ids;
    if (tokenizer_->add_bos()) ids.push_back(tokenizer_->bos_id());
    for (const int32_t id : line.at("ids")) ids.push_back(id);
    if (tokenizer_->add_eos()) ids.push_back(tokenizer_->eos_id());
    EXPECT_EQ(ids, line.at("ids_with_special_tokens").get<std::vector<int32_t>>()) << "line " << i;
  }
  EXPECT_EQ(tokenizer_->vocab_size(), reference_->expected.at("vocab_size").get<int64_t>());
  for (const auto& [token, id] : reference_->expected.at("token_to_id").items()) {
    EXPECT_EQ(tokenizer_->token_to_id(token), std::optional<int32_t>(id.get<int32_t>())) << token;
    EXPECT_EQ(tokenizer_->id_to_piece(id.get<int32_t>()), token);
  }
  EXPECT_EQ(tokenizer_->token_to_id("no such token, surely"), std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(Kinds, HfTokenizerParity, testing::ValuesIn(kKinds),
                         [](const testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

using HfTokenizerRoundTrip = HfTokenizerParity;

TEST_P(HfTokenizerRoundTrip, DecodeInvertsEncode) {
  for (const json& line : lines()) {
    const std::string text = line.at("text");
    EXPECT_EQ(tokenizer_->decode(tokenizer_->encode(text), /*skip_special_tokens=*/false), text) << quoted(text);
  }
}

INSTANTIATE_TEST_SUITE_P(LosslessKinds, HfTokenizerRoundTrip, testing::ValuesIn(kLosslessKinds),
                         [](const testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

// hf_regex.h's stated limit: PCRE2's Unicode tables are older than the Oniguruma's of HF tokenizers,
// so digits of scripts assigned later are not `\p{N}` here (HF's pre-tokenizers split them as
// digits). This test expects that; when it fails, Debian's PCRE2 has caught up: drop the limit from
// hf_regex.h and this test.
TEST(HfTokenizerUnicodeVersion, DigitsOfScriptsNewerThanPcre2TablesAreNotNumbers) {
  const hf::Regex number = hf::Regex::pattern("\\p{N}", "test");
  for (const std::string digit :
       {"𑽐" /* Kawi, Unicode 15 */, "𞓰" /* Nag Mundari, 15 */, "𖵰" /* Kirat Rai, 16 */}) {
    EXPECT_FALSE(number.matches_at(digit, 0))
        << quoted(digit) << " is \\p{N} now: PCRE2's Unicode tables (version " << hf::regex_unicode_version()
        << ") know its script; drop the limit stated in hf_regex.h";
  }
  EXPECT_TRUE(number.matches_at("٣", 0));  // Arabic-Indic three, long assigned
}

// About a megabyte of varied text: words, numbers, code and whitespace from a fixed generator.
std::string megabyte_of_text() {
  const std::vector<std::string> lines = corpus();
  std::vector<std::string> words;
  for (const std::string& line : lines) {
    std::istringstream split(line);
    for (std::string word; split >> word;) words.push_back(word);
  }
  std::string text;
  uint64_t state = 12345;
  const auto next = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 33;
  };
  while (text.size() < (1u << 20)) {
    text += words[next() % words.size()];
    const uint64_t gap = next() % 20;
    text += gap == 0 ? "\n" : gap == 1 ? "  " : gap == 2 ? std::to_string(next() % 100000) + " " : " ";
  }
  return text;
}

// The bar: well under a second per megabyte on one core (measured ~0.1 s for byte-level BPE and
// ~0.4 s for Metaspace BPE without pre-tokenizer on the development machine). The bound leaves room
// for a loaded CI machine.
TEST(HfTokenizerSpeed, EncodesAMegabyteInWellUnderASecond) {
  const std::string python = test::reference_python("tokenizers");
  FE_NEED_REFERENCE(!python.empty(), "HF tokenizers");
  const std::string text = megabyte_of_text();
  for (const char* kind : {"llama3", "llama2_legacy"}) {
    const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::load(references().get(python, kind).tokenizer_file);
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tokenizer->encode(text);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double megabytes = static_cast<double>(text.size()) / (1 << 20);
    std::cout << kind << ": encoded " << megabytes << " MB into " << ids.size() << " ids in " << seconds << " s\n";
    EXPECT_LT(seconds / megabytes, 2.0) << kind;
  }
}

// ---------------------------------------------------------------------------------------------
// Small tokenizer.json files written here: loading, configuration and errors (no reference needed).

// A Metaspace BPE with byte fallback, <s>/</s> special and one merge chain: "▁ab" and "abc".
json tiny_tokenizer() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int byte = 0; byte < 256; ++byte) {
    char piece[8];
    std::snprintf(piece, sizeof piece, "<0x%02X>", byte);
    vocab[piece] = 3 + byte;
  }
  vocab["▁"] = 259;
  vocab["a"] = 260;
  vocab["b"] = 261;
  vocab["c"] = 262;
  vocab["ab"] = 263;
  vocab["▁ab"] = 264;
  vocab["abc"] = 265;
  const auto special = [](int id, const char* content) {
    return json{{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
                {"rstrip", false}, {"normalized", false}, {"special", true}};
  };
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", {special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}, {"split", false}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", json::array()},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", "<unk>"},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"ignore_merges", false},
        {"vocab", vocab},
        // json::array: a braced list of string pairs would read as an object.
        {"merges", json::array({json::array({"a", "b"}), json::array({"▁", "ab"}), json::array({"ab", "c"})})}}},
  };
}

class HfTokenizerFiles : public testing::Test {
 protected:
  void SetUp() override {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("fedengine_hf_files_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes `spec` as DIR/NAME (default tokenizer.json) and returns the path.
  std::string write(const json& spec, const std::string& name = "tokenizer.json") {
    const fs::path path = dir_ / name;
    fs::create_directories(path.parent_path());
    write_file(path, spec.dump(2));
    return path.string();
  }

  // The error of loading `spec`, which must name the file and each of `expected`.
  void expect_load_error(const json& spec, const std::vector<std::string>& expected) {
    const std::string file = write(spec);
    const std::string error = error_of<std::runtime_error>([&] { Tokenizer::load(file); });
    EXPECT_NE(error.find(file), std::string::npos) << error;
    for (const std::string& part : expected) EXPECT_NE(error.find(part), std::string::npos) << part << " in: " << error;
  }

  fs::path dir_;
};

TEST_F(HfTokenizerFiles, MergesLowestRankFirstAndFallsBackToBytes) {
  const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::load(write(tiny_tokenizer()));
  // "▁ab▁abc": both (a, b) first (rank 0, leftmost first), then (▁, ab) twice; (ab, c) never forms
  // because its "ab" was merged into "▁ab" first.
  EXPECT_EQ(tokenizer->encode("ab abc"), (std::vector<int32_t>{264, 264, 262}));
  // "é" is not in the vocabulary: its UTF-8 bytes C3 A9 become byte pieces.
  EXPECT_EQ(tokenizer->encode("é"), (std::vector<int32_t>{259, 3 + 0xC3, 3 + 0xA9}));
  // Special tokens in the text are single ids; the stretch after one does not start the input, so
  // Metaspace's "first" scheme gives it no "▁".
  EXPECT_EQ(tokenizer->encode("<s>ab</s>"), (std::vector<int32_t>{1, 263, 2}));
  EXPECT_EQ(tokenizer->decode(std::vector<int32_t>{1, 264, 264, 262, 2}), "ab abc");
  EXPECT_EQ(tokenizer->decode(std::vector<int32_t>{1, 264, 2}, false), "<s> ab</s>");
  EXPECT_EQ(tokenizer->vocab_size(), 266);
  EXPECT_EQ(tokenizer->bos_id(), 1);  // from the TemplateProcessing
  EXPECT_EQ(tokenizer->eos_id(), -1);
  EXPECT_EQ(tokenizer->pad_id(), -1);
  EXPECT_TRUE(tokenizer->add_bos());
  EXPECT_FALSE(tokenizer->add_eos());
  EXPECT_EQ(tokenizer->token_to_id("▁ab"), 264);
  EXPECT_EQ(tokenizer->id_to_piece(3 + 0x41), "<0x41>");
}

TEST_F(HfTokenizerFiles, DirectoryPrefersTokenizerJson) {
  write(tiny_tokenizer(), "model/tokenizer.json");
  write_file(dir_ / "model" / "tokenizer.model", "not read: tokenizer.json comes first");
  EXPECT_EQ(Tokenizer::load((dir_ / "model").string())->vocab_size(), 266);
}

TEST_F(HfTokenizerFiles, JsonIsRecognizedWhateverTheFileName) {
  EXPECT_EQ(Tokenizer::load(write(tiny_tokenizer(), "hf-tokenizer"))->vocab_size(), 266);
}

TEST_F(HfTokenizerFiles, ConfigBesideTheFileSetsSpecialIdsAndFlags) {
  const std::string file = write(tiny_tokenizer());
  write_file(dir_ / "tokenizer_config.json", R"({
      "add_bos_token": false, "add_eos_token": true,
      "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
      "eos_token": "</s>", "pad_token": "<unk>", "unk_token": null,
      "model_max_length": 1000000000000000019884624838656,
      "chat_template": "{{ messages }}"})");
  const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::load(file);
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_id(), 2);
  EXPECT_EQ(tokenizer->pad_id(), 0);
  EXPECT_FALSE(tokenizer->add_bos());
  EXPECT_TRUE(tokenizer->add_eos());
}

TEST_F(HfTokenizerFiles, ConfigTokenMissingFromTheVocabularyIsAnError) {
  write(tiny_tokenizer());
  write_file(dir_ / "tokenizer_config.json", R"({"eos_token": "<|eot_id|>"})");
  const std::string error = error_of<std::runtime_error>([&] { Tokenizer::load(dir_.string()); });
  EXPECT_NE(error.find((dir_ / "tokenizer_config.json").string()), std::string::npos) << error;
  EXPECT_NE(error.find("eos_token"), std::string::npos) << error;
  EXPECT_NE(error.find("<|eot_id|>"), std::string::npos) << error;
  EXPECT_NE(error.find((dir_ / "tokenizer.json").string()), std::string::npos) << error;
}

TEST_F(HfTokenizerFiles, ReadsTokenizerConfigForms) {
  write_file(dir_ / "a.json", R"({
      "bos_token": "<|begin_of_text|>",
      "eos_token": {"content": "<|im_end|>", "special": true},
      "pad_token": null,
      "add_bos_token": true,
      "model_max_length": 8192,
      "clean_up_tokenization_spaces": true,
      "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
      "added_tokens_decoder": {"0": {"content": "x"}}})");
  const TokenizerConfig config = TokenizerConfig::read((dir_ / "a.json").string());
  EXPECT_EQ(config.file, (dir_ / "a.json").string());
  EXPECT_EQ(config.bos_token, "<|begin_of_text|>");
  EXPECT_EQ(config.eos_token, "<|im_end|>");
  EXPECT_EQ(config.pad_token, std::nullopt);
  EXPECT_EQ(config.unk_token, std::nullopt);
  EXPECT_EQ(config.add_bos_token, true);
  EXPECT_EQ(config.add_eos_token, std::nullopt);
  EXPECT_EQ(config.chat_template, "D");
  EXPECT_EQ(config.chat_template_origin, (dir_ / "a.json").string() + ": chat_template");
  EXPECT_TRUE(config.clean_up_tokenization_spaces);

  write_file(dir_ / "b.json", R"({"chat_template": "{{ bos_token }}", "model_max_length": 1e30})");
  const TokenizerConfig plain = TokenizerConfig::read((dir_ / "b.json").string());
  EXPECT_EQ(plain.chat_template, "{{ bos_token }}");
  EXPECT_FALSE(plain.clean_up_tokenization_spaces);  // transformers' default
}

TEST_F(HfTokenizerFiles, TokenizerConfigErrorsNameFileAndKey) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {R"({"chat_template": [{"name": "tool_use", "template": "T"}]})",
       {"chat_template", "no template named \"default\"", "tool_use"}},
      {R"({"bos_token": 1})", {"bos_token", "expected a string or an AddedToken object"}},
      {R"({"eos_token": {"special": true}})", {"eos_token.content", "missing"}},
      {R"({"add_bos_token": "yes"})", {"add_bos_token", "expected true or false"}},
      {R"({"chat_template": 3})", {"chat_template", "expected a string or a list"}},
      {R"({"clean_up_tokenization_spaces": "yes"})", {"clean_up_tokenization_spaces", "expected true or false"}},
      {R"([1, 2])", {"expected a JSON object"}},
      {R"({"bos_token": )", {"not valid JSON"}},
  };
  for (const auto& [contents, expected] : cases) {
    const std::string file = (dir_ / "tokenizer_config.json").string();
    write_file(file, contents);
    const std::string error = error_of<std::runtime_error>([&] { TokenizerConfig::read(file); });
    EXPECT_NE(error.find(file), std::string::npos) << error;
    for (const std::string& part : expected) EXPECT_NE(error.find(part), std::string::npos) << part << " in: " << error;
  }
}

TEST_F(HfTokenizerFiles, MissingPathErrorSaysWhatIsExpected) {
  const std::string missing = (dir_ / "nowhere").string();
  const std::string error = error_of<std::runtime_error>([&] { Tokenizer::load(missing); });
  EXPECT_NE(error.find(missing), std::string::npos) << error;
  EXPECT_NE(error.find("no such file or directory"), std::string::npos) << error;
  EXPECT_NE(error.find("tokenizer.json"), std::string::npos) << error;
  EXPECT_NE(error.find("tokenizer.model"), std::string::npos) << error;
}

TEST_F(HfTokenizerFiles, DirectoryWithoutTokenizerErrorNamesBothFilesAndTheFix) {
  const std::string error = error_of<std::runtime_error>([&] { Tokenizer::load(dir_.string()); });
  EXPECT_NE(error.find(dir_.string()), std::string::npos) << error;
  EXPECT_NE(error.find("neither tokenizer.json"), std::string::npos) << error;
  EXPECT_NE(error.find("tokenizer.model"), std::string::npos) << error;
  EXPECT_NE(error.find("point `tokenizer:` at the file"), std::string::npos) << error;
}

TEST_F(HfTokenizerFiles, InvalidJsonErrorNamesTheFile) {
  const std::string file = (dir_ / "tokenizer.json").string();
  write_file(file, "{\"model\": ");
  const std::string error = error_of<std::runtime_error>([&] { Tokenizer::load(file); });
  EXPECT_NE(error.find(file), std::string::npos) << error;
  EXPECT_NE(error.find("not valid JSON"), std::string::npos) << error;
}

TEST_F(HfTokenizerFiles, UnknownComponentErrorsNameThePathTheTypeAndTheSupportedOnes) {
  json spec = tiny_tokenizer();
  spec["pre_tokenizer"] = {{"type", "Sequence"},
                           {"pretokenizers", {{{"type", "Digits"}}, {{"type", "UnicodeScripts"}}}}};
  expect_load_error(spec, {"pre_tokenizer.pretokenizers[1].type", "\"UnicodeScripts\"", "supported: ByteLevel"});

  spec = tiny_tokenizer();
  spec["normalizer"] = {{"type", "BertNormalizer"}};
  expect_load_error(spec, {"normalizer.type", "\"BertNormalizer\"", "supported: NFC"});

  spec = tiny_tokenizer();
  spec["decoder"]["decoders"][1] = {{"type", "CTC"}};
  expect_load_error(spec, {"decoder.decoders[1].type", "\"CTC\"", "supported: ByteLevel"});

  spec = tiny_tokenizer();
  spec["post_processor"] = {{"type", "Unknown"}};
  expect_load_error(spec, {"post_processor.type", "\"Unknown\"", "supported: TemplateProcessing"});

  spec = tiny_tokenizer();
  spec["model"]["type"] = "WordPiece";
  expect_load_error(spec, {"model.type", "\"WordPiece\"", "supported: BPE"});

  spec = tiny_tokenizer();
  spec["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "Sideways"}};
  expect_load_error(spec, {"pre_tokenizer.behavior", "\"Sideways\"", "Isolated"});
}

TEST_F(HfTokenizerFiles, UnsupportedOrBrokenModelErrorsNameTheKey) {
  json spec = tiny_tokenizer();
  spec["model"]["dropout"] = 0.1;
  expect_load_error(spec, {"model.dropout", "expected null"});

  spec = tiny_tokenizer();
  spec["model"]["continuing_subword_prefix"] = "##";
  expect_load_error(spec, {"model.continuing_subword_prefix", "not supported"});

  spec = tiny_tokenizer();
  spec["model"]["merges"].push_back(json::array({"a", "zz"}));
  expect_load_error(spec, {"model.merges[3]", "\"zz\" is not in model.vocab"});

  spec = tiny_tokenizer();
  spec["model"]["merges"] = json::array({"a b", "a b c"});
  expect_load_error(spec, {"model.merges[1]", "\"left right\""});

  spec = tiny_tokenizer();
  spec["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_load_error(spec, {"pre_tokenizer.pattern.Regex", "invalid regex"});

  spec = tiny_tokenizer();
  spec["model"].erase("vocab");
  expect_load_error(spec, {"model.vocab", "missing"});

  spec = tiny_tokenizer();
  spec["added_tokens"][0]["id"] = "zero";
  expect_load_error(spec, {"added_tokens[0].id", "expected an integer"});
}

TEST_F(HfTokenizerFiles, BadInputAndIdsErrorsNameTheFile) {
  const std::string file = write(tiny_tokenizer());
  const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::load(file);
  const std::string utf8_error = error_of<std::runtime_error>([&] { tokenizer->encode("ok \xC3\x28 not"); });
  EXPECT_NE(utf8_error.find(file), std::string::npos) << utf8_error;
  EXPECT_NE(utf8_error.find("not valid UTF-8 (at byte 3)"), std::string::npos) << utf8_error;
  const std::string id_error = error_of<std::runtime_error>([&] { tokenizer->decode(std::vector<int32_t>{1, 266}); });
  EXPECT_NE(id_error.find(file), std::string::npos) << id_error;
  EXPECT_NE(id_error.find("[0, 266)"), std::string::npos) << id_error;
}

// ---------------------------------------------------------------------------------------------
// Hostile files: what a file claims must not decide how much memory or stack loading takes.

// HF allows any id; a vocabulary of 266 tokens whose last id is 2e9 costs what 266 tokens cost.
TEST_F(HfTokenizerFiles, SparseIdsCostTheEntriesNotTheLargestId) {
  json spec = tiny_tokenizer();
  constexpr int32_t kFarId = 2'000'000'000;
  spec["model"]["vocab"]["abc"] = kFarId;
  const std::string file = write(spec);
  const auto heap_bytes = [] {
    const struct mallinfo2 info = ::mallinfo2();
    return static_cast<int64_t>(info.uordblks + info.hblkhd);
  };
  const int64_t before = heap_bytes();
  const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::load(file);
  EXPECT_LT(heap_bytes() - before, int64_t{16} << 20) << "heap bytes held by the loaded tokenizer";
  EXPECT_EQ(tokenizer->vocab_size(), int64_t{kFarId} + 1);
  // After a special token the text does not start the input: no "▁", so (ab, c) merges.
  EXPECT_EQ(tokenizer->encode("<s>abc"), (std::vector<int32_t>{1, kFarId}));
  EXPECT_EQ(tokenizer->decode(std::vector<int32_t>{kFarId}), "abc");
  EXPECT_EQ(tokenizer->id_to_piece(265), "");  // an id between tokens
  EXPECT_EQ(tokenizer->token_to_id("abc"), kFarId);
}

// `{"type": "Sequence", KEY: [ ... depth times ... INNER ... ]}` as text (dumping a tree that deep
// would recurse).
std::string nested_sequences(const std::string& key, int depth, const std::string& inner) {
  std::string text;
  text.reserve(static_cast<size_t>(depth) * (key.size() + 30) + inner.size());
  for (int i = 0; i < depth; ++i) text += R"({"type": "Sequence", ")" + key + R"(": [)";
  text += inner;
  for (int i = 0; i < depth; ++i) text += "]}";
  return text;
}

// Each kind of component nests Sequences; past kMaxComponentNesting the error names the path of the
// first component too deep, where recursion without a limit would overflow the stack.
TEST_F(HfTokenizerFiles, ComponentNestingIsCappedWithAnErrorNamingThePath) {
  struct Case {
    const char* component;
    const char* key;
    const char* inner;
    int depth;
  };
  const Case cases[] = {
      {"normalizer", "normalizers", R"({"type": "NFC"})", 100'000},
      {"pre_tokenizer", "pretokenizers", R"({"type": "Digits"})", 2'000},
      {"decoder", "decoders", R"({"type": "Fuse"})", 2'000},
      {"post_processor", "processors", R"({"type": "ByteLevel"})", 2'000},
  };
  for (const Case& c : cases) {
    json spec = tiny_tokenizer();
    spec[c.component] = "NESTED";
    std::string text = spec.dump();
    text.replace(text.find("\"NESTED\""), 8, nested_sequences(c.key, c.depth, c.inner));
    const std::string file = (dir_ / "tokenizer.json").string();
    write_file(file, text);
    std::string too_deep = c.component;
    for (int i = 0; i <= hf::kMaxComponentNesting; ++i) too_deep += "."s + c.key + "[0]";
    const std::string error = error_of<std::runtime_error>([&] { Tokenizer::load(file); });
    EXPECT_NE(error.find(file + ": " + too_deep + ": components nested more than 64 Sequences deep"), std::string::npos)
        << c.component << ": " << error.substr(0, 400);
  }
  // The limit itself is allowed.
  json spec = tiny_tokenizer();
  spec["decoder"] = "NESTED";
  std::string text = spec.dump();
  text.replace(text.find("\"NESTED\""), 8,
               nested_sequences("decoders", hf::kMaxComponentNesting, R"({"type": "Fuse"})"));
  write_file(dir_ / "tokenizer.json", text);
  EXPECT_EQ(Tokenizer::load((dir_ / "tokenizer.json").string())->decode(std::vector<int32_t>{260, 261}), "ab");
}

// A node keeps a link to its parent's path, not a copy: walking N levels deep costs O(N) memory,
// and the path is spelled out only for the error.
TEST(HfJsonNode, DeepPathsCostLinearMemoryAndAppearInErrors) {
  constexpr int kDepth = 20'000;
  const std::string text = std::string(kDepth, '[') + "\"leaf\"" + std::string(kDepth, ']');
  const json value = json::parse(text);
  const std::string file = "deep.json";
  const auto heap_bytes = [] {
    const struct mallinfo2 info = ::mallinfo2();
    return static_cast<int64_t>(info.uordblks + info.hblkhd);
  };
  const int64_t before = heap_bytes();
  std::vector<hf::JsonNode> nodes;
  nodes.reserve(kDepth + 1);
  nodes.emplace_back(value, file);
  for (int i = 0; i < kDepth; ++i) nodes.push_back(nodes.back().at(size_t{0}));
  // ~100 bytes a level; copying the path into each node would hold kDepth² * 3 / 2 = 600 MB.
  EXPECT_LT(heap_bytes() - before, int64_t{kDepth} * 200) << "heap bytes held by the nodes";
  std::string path;
  for (int i = 0; i < kDepth; ++i) path += "[0]";
  EXPECT_EQ(error_of<std::runtime_error>([&] { nodes.back().integer(); }),
            "tokenizer: deep.json: " + path + ": expected an integer, found a string");
  {
    const hf::JsonNode deepest = nodes.back();
    nodes.clear();
    EXPECT_EQ(deepest.path().size(), path.size());
  }  // the last holder of the whole path unlinks it step by step, without recursing
}

TEST_F(HfTokenizerFiles, RegexMatchErrorsNameTheFileAndTheComponent) {
  json spec = tiny_tokenizer();
  // Exponential backtracking: PCRE2 gives up at its match limit.
  spec["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", "(a+)+$"}}}, {"content", "x"}};
  const std::string file = write(spec);
  const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::load(file);
  const std::string error = error_of<std::runtime_error>([&] { tokenizer->encode(std::string(40, 'a') + "!"); });
  EXPECT_NE(error.find("tokenizer: " + file + ": normalizer.pattern.Regex: regex match failed"), std::string::npos)
      << error;
  EXPECT_NE(error.find("limit"), std::string::npos) << error;  // PCRE2's reason
}

// ---------------------------------------------------------------------------------------------
// What the model directory says beside the file: chat templates and decode's clean-up.

constexpr const char* kMessages = R"([{"role": "user", "content": "hi"}])";

TEST_F(HfTokenizerFiles, ChatTemplateJinjaFileComesFirstThenJsonThenTheConfig) {
  write(tiny_tokenizer());
  write_file(dir_ / "tokenizer_config.json", R"({"chat_template": "config {{ messages[0].content }}"})");
  write_file(dir_ / "chat_template.json", R"({"chat_template": "json {{ messages[0].content }}"})");
  // jinja2 drops one newline at the end of a template (keep_trailing_newline=False).
  write_file(dir_ / "chat_template.jinja", "jinja {{ messages[0].content }}\n");
  const ordered_json messages = ordered_json::parse(kMessages);
  EXPECT_EQ(Tokenizer::load(dir_.string())->apply_chat_template(messages, false), "jinja hi");
  EXPECT_EQ(TokenizerConfig::read_directory(dir_.string()).chat_template_origin,
            (dir_ / "chat_template.jinja").string());
  fs::remove(dir_ / "chat_template.jinja");
  EXPECT_EQ(Tokenizer::load(dir_.string())->apply_chat_template(messages, false), "json hi");
  fs::remove(dir_ / "chat_template.json");
  EXPECT_EQ(Tokenizer::load(dir_.string())->apply_chat_template(messages, false), "config hi");
  fs::remove(dir_ / "tokenizer_config.json");
  const std::unique_ptr<Tokenizer> plain = Tokenizer::load(dir_.string());
  EXPECT_FALSE(plain->has_chat_template());
  EXPECT_NE(
      error_of<std::runtime_error>([&] { plain->apply_chat_template(messages, false); }).find("chat_template.jinja"),
      std::string::npos);

  // The template file alone is enough, and its errors name it.
  write_file(dir_ / "chat_template.jinja", "{{ messages[0].content.missing() }}");
  const std::string error =
      error_of<std::runtime_error>([&] { Tokenizer::load(dir_.string())->apply_chat_template(messages, false); });
  EXPECT_NE(error.find((dir_ / "chat_template.jinja").string() + ":1:"), std::string::npos) << error;
}

TEST_F(HfTokenizerFiles, ChatTemplateJsonWithoutTheKeyIsAnErrorNamingIt) {
  write(tiny_tokenizer());
  write_file(dir_ / "chat_template.json", R"({"template": "x"})");
  const std::string error = error_of<std::runtime_error>([&] { Tokenizer::load(dir_.string()); });
  EXPECT_NE(error.find((dir_ / "chat_template.json").string()), std::string::npos) << error;
  EXPECT_NE(error.find("no \"chat_template\""), std::string::npos) << error;
}

// transformers compiles the template only in apply_chat_template, so a template our Jinja subset
// rejects leaves the tokenizer usable for plain text, and the error comes when it is applied.
TEST_F(HfTokenizerFiles, TemplateThatDoesNotParseFailsOnlyWhenApplied) {
  write(tiny_tokenizer());
  write_file(dir_ / "tokenizer_config.json", R"({"chat_template": "{% include 'other.jinja' %}"})");
  const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::load(dir_.string());
  EXPECT_TRUE(tokenizer->has_chat_template());
  EXPECT_EQ(tokenizer->decode(tokenizer->encode("ab abc")), "ab abc");
  const ordered_json messages = ordered_json::parse(kMessages);
  for (int attempt = 0; attempt < 2; ++attempt) {
    const std::string error = error_of<std::runtime_error>([&] { tokenizer->apply_chat_template(messages, true); });
    EXPECT_NE(error.find((dir_ / "tokenizer_config.json").string() + ": chat_template:1:"), std::string::npos) << error;
    EXPECT_NE(error.find("syntax error"), std::string::npos) << error;
  }
}

// apply_chat_template(..., **kwargs): extra variables, which win over the special tokens' strings.
TEST_F(HfTokenizerFiles, ApplyChatTemplateTakesExtraVariables) {
  write(tiny_tokenizer());
  write_file(dir_ / "tokenizer_config.json", R"({"bos_token": "<s>", "chat_template":
      "{{ bos_token }}{% if enable_thinking %}<think>{% endif %}{{ tools | length }} {{ messages[0].content }}{% if add_generation_prompt %}>{% endif %}"})");
  const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::load(dir_.string());
  const ordered_json messages = ordered_json::parse(kMessages);
  EXPECT_EQ(
      tokenizer->apply_chat_template(messages, true, ordered_json{{"enable_thinking", true}, {"tools", {"a", "b"}}}),
      "<s><think>2 hi>");
  EXPECT_EQ(tokenizer->apply_chat_template(messages, false,
                                           ordered_json{{"bos_token", "B"}, {"tools", ordered_json::array()}}),
            "B0 hi");
  EXPECT_NE(error_of<std::runtime_error>([&] {
              tokenizer->apply_chat_template(messages, false, ordered_json{{"messages", ordered_json::array()}});
            }).find("\"messages\" is an argument"),
            std::string::npos);
  EXPECT_NE(error_of<std::runtime_error>([&] {
              tokenizer->apply_chat_template(messages, false, ordered_json::array());
            }).find("must be a JSON object"),
            std::string::npos);
}

// transformers' decode applies clean_up_tokenization when tokenizer_config.json says so (the
// reference comparison is the word_splits kind; this pins the replacements on a small file).
TEST_F(HfTokenizerFiles, CleanUpTokenizationSpacesRewritesDecodedText) {
  const std::string file = write(tiny_tokenizer());
  const std::string text = "ab , ab . ab ? ab ! ab ' ab n't ab 'm ab 's ab 've ab 're ab 'd";
  const std::vector<int32_t> ids = Tokenizer::load(file)->encode(text);
  EXPECT_EQ(Tokenizer::load(file)->decode(ids), text);
  write_file(dir_ / "tokenizer_config.json", R"({"clean_up_tokenization_spaces": true})");
  const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::load(file);
  EXPECT_EQ(tokenizer->decode(ids), "ab, ab. ab? ab! ab'abn't ab'm ab's ab've ab're ab 'd");
  EXPECT_EQ(tokenizer->decode(ids, /*skip_special_tokens=*/false),
            "ab, ab. ab? ab! ab'abn't ab'm ab's ab've ab're ab 'd");
}

}  // namespace
}  // namespace fe
