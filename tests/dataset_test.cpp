// Datasets: every format's token layout and loss mask, worked out by hand with a byte tokenizer;
// every error names the file and line; batches pad correctly; the batch iterator visits each
// example once per epoch, reproducibly, and length bucketing cuts padding.
#include "engine/dataset.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <regex>
#include <set>

#include "engine/rng.h"
#include "kernels/view.h"
#include "tests/test_files.h"
#include "tests/test_util.h"
#include "tokenizer/chat_template.h"

namespace fe {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int32_t kPad = 0, kBos = 1, kEos = 2, kFirstByte = 3;
constexpr int32_t kNoLoss = -100;

// Byte b is token b + 3, after PAD, BOS and EOS, so the expected ids can be written by hand.
class ByteTokenizer final : public Tokenizer {
 public:
  explicit ByteTokenizer(bool has_control_tokens = true) : Tokenizer("") {
    if (has_control_tokens) set_special_tokens({.bos_id = kBos, .eos_id = kEos, .pad_id = kPad, .add_bos = true});
  }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    for (const char c : text) ids.push_back(static_cast<unsigned char>(c) + kFirstByte);
    return ids;
  }
  int64_t vocab_size() const override { return 256 + kFirstByte; }
  std::optional<int32_t> token_to_id(std::string_view) const override { return std::nullopt; }

 protected:
  std::string piece_of(int32_t id) const override { return decode_ids(std::span(&id, 1), true); }
  std::string decode_ids(std::span<const int32_t> ids, bool) const override {
    std::string text;
    for (const int32_t id : ids)
      if (id >= kFirstByte) text += static_cast<char>(id - kFirstByte);
    return text;
  }
};

// The sequence a test expects, spelled out piece by piece with each piece masked or trained.
struct Expected {
  std::vector<int32_t> ids, labels;

  Expected& masked(std::string_view text) { return add(ByteTokenizer().encode(text), false); }
  Expected& trained(std::string_view text) { return add(ByteTokenizer().encode(text), true); }
  Expected& masked(int32_t token) { return add({token}, false); }
  Expected& trained(int32_t token) { return add({token}, true); }
  int64_t size() const { return static_cast<int64_t>(ids.size()); }

 private:
  Expected& add(const std::vector<int32_t>& tokens, bool in_loss) {
    for (const int32_t id : tokens) {
      ids.push_back(id);
      labels.push_back(in_loss ? id : kNoLoss);
    }
    return *this;
  }
};

DataOptions with_format(DataFormat format) {
  DataOptions options;
  options.format = format;
  return options;
}

class DatasetTest : public ::testing::Test {
 protected:
  std::string write(const std::string& contents, const std::string& name = "data.jsonl") {
    const std::string path = dir_.path(name);
    std::ofstream(path) << contents;
    return path;
  }
  std::vector<Example> load(const std::string& contents, const DataOptions& options = {}) {
    return load_jsonl(write(contents), &tokenizer_, options, tokenizer_.vocab_size());
  }
  Example load_one(const std::string& line, const DataOptions& options = {}) {
    const std::vector<Example> examples = load(line + "\n", options);
    EXPECT_EQ(examples.size(), 1u);
    return examples.at(0);
  }
  // The message load_jsonl throws, or "no error".
  std::string load_error(const std::string& contents, const DataOptions& options = {},
                         const Tokenizer* tokenizer = nullptr) {
    try {
      const Tokenizer& used = tokenizer ? *tokenizer : tokenizer_;
      load_jsonl(write(contents), &used, options, used.vocab_size());
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  }

  test::TempDir dir_;
  ByteTokenizer tokenizer_;
};

void expect_layout(const Example& example, const Expected& expected, int64_t prompt_length) {
  EXPECT_EQ(example.input_ids, expected.ids);
  EXPECT_EQ(example.labels, expected.labels);
  EXPECT_EQ(example.prompt_length, prompt_length);
}

TEST(DataFormat, NamesRoundTripAndUnknownNamesListTheValidOnes) {
  for (const char* name : {"auto", "text", "prompt_completion", "alpaca", "chat", "tokenized", "multiple_choice"})
    EXPECT_STREQ(data_format_name(parse_data_format(name)), name);
  try {
    parse_data_format("sharegpt");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("\"sharegpt\""), HasSubstr("prompt_completion"), HasSubstr("tokenized")));
  }
}

TEST_F(DatasetTest, TextTrainsOnEveryTokenAfterBos) {
  const Example example = load_one(R"({"text": "hi"})", with_format(DataFormat::text));
  expect_layout(example, Expected().masked(kBos).trained("hi").trained(kEos), 1);
  EXPECT_EQ(example.reference, "");
  EXPECT_EQ(example.line, 1);
}

TEST_F(DatasetTest, PromptCompletionTrainsOnTheCompletionAndEos) {
  const Example example = load_one(R"({"prompt": "Q?", "completion": "A"})", with_format(DataFormat::prompt_completion));
  expect_layout(example, Expected().masked(kBos).masked("Q?").trained("A").trained(kEos), 3);
  EXPECT_EQ(example.reference, "A");
}

TEST_F(DatasetTest, AlpacaUsesTheStanfordPromptWithAndWithoutInput) {
  const DataOptions options = with_format(DataFormat::alpaca);
  const Example with_input = load_one(R"({"instruction": "Add.", "input": "1 2", "output": "3"})", options);
  const std::string prompt_with_input =
      "Below is an instruction that describes a task, paired with an input that provides further context. "
      "Write a response that appropriately completes the request.\n\n"
      "### Instruction:\nAdd.\n\n### Input:\n1 2\n\n### Response:\n";
  Expected expected = Expected().masked(kBos).masked(prompt_with_input);
  const int64_t prompt_length = expected.size();
  expect_layout(with_input, expected.trained("3").trained(kEos), prompt_length);
  EXPECT_EQ(with_input.reference, "3");

  const std::string prompt_without_input =
      "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
      "### Instruction:\nSay hi.\n\n### Response:\n";
  const Expected without_input = Expected().masked(kBos).masked(prompt_without_input).trained("hi").trained(kEos);
  for (const char* line : {R"({"instruction": "Say hi.", "output": "hi"})",
                           R"({"instruction": "Say hi.", "input": "", "output": "hi"})",
                           R"({"instruction": "Say hi.", "input": null, "output": "hi"})"}) {
    SCOPED_TRACE(line);
    expect_layout(load_one(line, options), without_input, without_input.size() - 3);
  }
}

TEST_F(DatasetTest, TrainOnPromptLabelsEveryTokenButBos) {
  DataOptions options = with_format(DataFormat::prompt_completion);
  options.train_on_prompt = true;
  const Example example = load_one(R"({"prompt": "Q?", "completion": "A"})", options);
  expect_layout(example, Expected().masked(kBos).trained("Q?").trained("A").trained(kEos), 3);
}

TEST_F(DatasetTest, BosAndEosOnlyWhenAskedForAndTheTokenizerHasThem) {
  DataOptions options = with_format(DataFormat::prompt_completion);
  const std::string line = R"({"prompt": "Q?", "completion": "A"})";
  const Expected bare = Expected().masked("Q?").trained("A");

  options.add_bos = false;
  options.add_eos = false;
  expect_layout(load_one(line, options), bare, 2);

  options.add_bos = true;
  options.add_eos = false;
  expect_layout(load_one(line, options), Expected().masked(kBos).masked("Q?").trained("A"), 3);

  options.add_eos = true;
  const ByteTokenizer no_control_tokens(false);
  const std::vector<Example> examples =
      load_jsonl(write(line), &no_control_tokens, options, no_control_tokens.vocab_size());
  expect_layout(examples.at(0), bare, 2);
}

TEST_F(DatasetTest, TruncatesFromTheRightAndClampsThePromptLength) {
  DataOptions options = with_format(DataFormat::prompt_completion);
  const std::string line = R"({"prompt": "Q?", "completion": "AB"})";
  options.max_seq_len = 4;
  const Example cut_completion = load_one(line, options);
  expect_layout(cut_completion, Expected().masked(kBos).masked("Q?").trained("A"), 3);
  EXPECT_EQ(cut_completion.reference, "AB");

  options.max_seq_len = 2;
  expect_layout(load_one(line, options), Expected().masked(kBos).masked("Q"), 2);

  options.format = DataFormat::tokenized;
  expect_layout(load_one(R"({"input_ids": [5, 6, 7], "labels": [-100, 6, 7]})", options),
                Expected{{5, 6}, {kNoLoss, 6}}, 1);
}

// ----- chat ---------------------------------------------------------------------------------

const char* kTwoExchanges = R"({"messages": [
    {"role": "system", "content": "S"},
    {"role": "user", "content": "U1"}, {"role": "assistant", "content": "A1"},
    {"role": "user", "content": "U2"}, {"role": "assistant", "content": "A2"}]})";

// A JSONL line holds one record: the multi-line literal above is joined onto one line.
std::string one_line(std::string record) {
  std::replace(record.begin(), record.end(), '\n', ' ');
  return record;
}

DataOptions chat_options(const std::string& chat_template) {
  DataOptions options = with_format(DataFormat::chat);
  options.chat_template = chat_template;
  return options;
}

TEST_F(DatasetTest, ChatLlama2MasksPromptsAndTrainsEveryAnswer) {
  Expected expected = Expected()
                          .masked(kBos)
                          .masked("[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST]")
                          .trained("A1")
                          .trained(kEos)
                          .masked(kBos)
                          .masked("[INST] U2 [/INST]");
  const int64_t prompt_length = expected.size();
  expected.trained("A2").trained(kEos);
  const Example example = load_one(one_line(kTwoExchanges), chat_options("llama2"));
  expect_layout(example, expected, prompt_length);
  EXPECT_EQ(example.reference, "A2");
}

TEST_F(DatasetTest, ChatLlama2WithoutSystemMessage) {
  const Example example =
      load_one(R"({"messages": [{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]})",
               chat_options("llama2"));
  const Expected prompt = Expected().masked(kBos).masked("[INST] U [/INST]");
  expect_layout(example, Expected(prompt).trained("A").trained(kEos), prompt.size());
}

TEST_F(DatasetTest, ChatChatmlTrainsOnAnswersAndTheirImEnd) {
  Expected expected =
      Expected()
          .masked(kBos)
          .masked("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n")
          .trained("A1<|im_end|>")
          .masked("\n<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n");
  const int64_t prompt_length = expected.size();
  expected.trained("A2<|im_end|>").trained(kEos);
  const Example example = load_one(one_line(kTwoExchanges), chat_options("chatml"));
  expect_layout(example, expected, prompt_length);
  EXPECT_EQ(example.reference, "A2");
}

TEST_F(DatasetTest, ChatPlainTrainsOnAnswers) {
  Expected expected =
      Expected().masked(kBos).masked("System: S\nUser: U1\nAssistant:").trained("A1").masked("\nUser: U2\nAssistant:");
  const int64_t prompt_length = expected.size();
  expected.trained("A2").trained(kEos);
  const Example example = load_one(one_line(kTwoExchanges), chat_options("plain"));
  expect_layout(example, expected, prompt_length);
  EXPECT_EQ(example.reference, "A2");
}

TEST_F(DatasetTest, ChatTrainOnPromptLabelsEveryTokenButTheFirstBos) {
  DataOptions options = chat_options("llama2");
  options.train_on_prompt = true;
  const Example example = load_one(one_line(kTwoExchanges), options);
  ASSERT_FALSE(example.input_ids.empty());
  std::vector<int32_t> expected_labels = example.input_ids;
  expected_labels[0] = kNoLoss;
  EXPECT_EQ(example.labels, expected_labels);
  EXPECT_EQ(std::count(example.input_ids.begin(), example.input_ids.end(), kBos), 2);
}

// ----- tokenized and auto -------------------------------------------------------------------

TEST_F(DatasetTest, TokenizedIsUsedAsGiven) {
  const DataOptions options = with_format(DataFormat::tokenized);
  expect_layout(load_one(R"({"input_ids": [5, 6, 7]})", options), Expected{{5, 6, 7}, {5, 6, 7}}, 0);
  expect_layout(load_one(R"({"input_ids": [5, 6, 7], "labels": [-100, -100, 9]})", options),
                Expected{{5, 6, 7}, {kNoLoss, kNoLoss, 9}}, 2);
  expect_layout(load_one(R"({"input_ids": [5, 6], "labels": [-100, -100]})", options),
                Expected{{5, 6}, {kNoLoss, kNoLoss}}, 0);
  const std::vector<Example> without_tokenizer =
      load_jsonl(write(R"({"input_ids": [70000]})"), nullptr, options, 70001);
  EXPECT_THAT(without_tokenizer.at(0).input_ids, ElementsAre(70000));
  EXPECT_EQ(without_tokenizer.at(0).reference, "");
}

// Ids index the model's embedding: its vocab_size bounds them, not the tokenizer's (models often
// pad their vocabulary beyond it), and no tokenizer is needed at all.
TEST_F(DatasetTest, TokenizedIdsAreCheckedAgainstTheModelsVocabulary) {
  const DataOptions options = with_format(DataFormat::tokenized);
  const std::string beyond_tokenizer = write(R"({"input_ids": [1, 504], "labels": [-100, 504]})");
  EXPECT_THAT(load_jsonl(beyond_tokenizer, &tokenizer_, options, 600).at(0).input_ids, ElementsAre(1, 504));
  EXPECT_THAT(load_jsonl(beyond_tokenizer, nullptr, options, 600).at(0).labels, ElementsAre(kNoLoss, 504));
  try {
    load_jsonl(beyond_tokenizer, nullptr, options, 300);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                AllOf(HasSubstr("data.jsonl:1:"), HasSubstr("input_ids[1]"), HasSubstr("504"), HasSubstr("[0, 300)")));
  }
}

// ----- chat with the tokenizer's own template ----------------------------------------------------

// A byte-level tokenizer.json without merges: byte b is id b, <|im_start|> 256, <|im_end|> 257; and a
// tokenizer_config.json with `chat_template` (SmolLM2's kind: a default system turn, ChatML).
class ModelTemplateChat : public DatasetTest {
 protected:
  static constexpr int32_t kImStart = 256, kImEnd = 257, kSentenceStart = 258;
  static constexpr const char* kChatMl =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
      "{{ '<|im_start|>system\nBe nice.<|im_end|>\n' }}{% endif %}"
      "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
      "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

  std::unique_ptr<Tokenizer> tokenizer_with(const std::string& chat_template, const char* bos = "<|im_start|>") {
    nlohmann::json vocab = nlohmann::json::object();
    for (int b = 0; b < 256; ++b) vocab[test::byte_level_char(b)] = b;
    const auto added = [](int id, const char* content) {
      return nlohmann::json{{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
                            {"rstrip", false}, {"normalized", false}, {"special", true}};
    };
    const nlohmann::json byte_level = {
        {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
    const nlohmann::json tokenizer = {
        {"version", "1.0"},
        {"added_tokens", {added(kImStart, "<|im_start|>"), added(kImEnd, "<|im_end|>"), added(kSentenceStart, "<s>")}},
        {"normalizer", nullptr},
        {"pre_tokenizer", byte_level},
        {"post_processor", nullptr},
        {"decoder", byte_level},
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
    std::filesystem::create_directories(dir_.path("model"));
    std::ofstream(dir_.path("model/tokenizer.json")) << tokenizer.dump();
    std::ofstream(dir_.path("model/tokenizer_config.json")) << nlohmann::json{
        {"bos_token", bos},
        {"eos_token", "<|im_end|>"},
        {"add_bos_token", false},
        {"chat_template", chat_template}}.dump();
    return Tokenizer::load(dir_.path("model"));
  }
  Example load_chat(const Tokenizer& tokenizer, const std::string& line, const DataOptions& options = {}) {
    return load_jsonl(write(line + "\n"), &tokenizer, options, tokenizer.vocab_size()).at(0);
  }
};

// Bytes of `text` as ids, with the two special tokens written in it matched.
std::vector<int32_t> byte_ids(std::string_view text) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < text.size();) {
    if (text.substr(i).starts_with("<|im_start|>")) {
      ids.push_back(256);
      i += 12;
    } else if (text.substr(i).starts_with("<|im_end|>")) {
      ids.push_back(257);
      i += 10;
    } else {
      ids.push_back(static_cast<unsigned char>(text[i++]));
    }
  }
  return ids;
}

struct Layout {
  std::vector<int32_t> ids, labels;
  Layout& masked(std::string_view text) { return add(text, false); }
  Layout& trained(std::string_view text) { return add(text, true); }
  int64_t size() const { return static_cast<int64_t>(ids.size()); }

 private:
  Layout& add(std::string_view text, bool in_loss) {
    for (const int32_t id : byte_ids(text)) {
      ids.push_back(id);
      labels.push_back(in_loss ? id : kNoLoss);
    }
    return *this;
  }
};

constexpr const char* kTwoTurns =
    R"({"messages": [{"role": "user", "content": "U1"}, {"role": "assistant", "content": "A1"},)"
    R"( {"role": "user", "content": "U2"}, {"role": "assistant", "content": "A2"}]})";

TEST_F(ModelTemplateChat, TrainsOnEachAnswerAndTheTokensThatCloseItAndAddsNoBosOrEos) {
  const auto tokenizer = tokenizer_with(kChatMl);
  Layout expected;
  expected.masked("<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n")
      .trained("A1<|im_end|>\n")
      .masked("<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n");
  const int64_t prompt_length = expected.size();
  expected.trained("A2<|im_end|>\n");
  const Example example = load_chat(*tokenizer, kTwoTurns);
  EXPECT_EQ(example.input_ids, expected.ids);
  EXPECT_EQ(example.labels, expected.labels);
  EXPECT_EQ(example.prompt_length, prompt_length);
  EXPECT_EQ(example.reference, "A2");
  // What HF's apply_chat_template renders is what the example holds.
  nlohmann::ordered_json messages = nlohmann::ordered_json::parse(kTwoTurns)["messages"];
  EXPECT_EQ(tokenizer->encode(tokenizer->apply_chat_template(messages, false)), example.input_ids);
}

TEST_F(ModelTemplateChat, BosEosAndTrainOnPromptWhenAskedFor) {
  const auto tokenizer = tokenizer_with(kChatMl);
  DataOptions options;
  options.add_bos = options.add_eos = true;
  const Example plain = load_chat(*tokenizer, kTwoTurns);
  const Example with_both = load_chat(*tokenizer, kTwoTurns, options);
  ASSERT_EQ(with_both.input_ids.size(), plain.input_ids.size() + 1);  // the template already starts with BOS
  EXPECT_EQ(with_both.input_ids.back(), kImEnd);
  EXPECT_EQ(with_both.labels.back(), kImEnd);
  EXPECT_EQ(with_both.prompt_length, plain.prompt_length);
  options = {};
  options.train_on_prompt = true;
  const Example all = load_chat(*tokenizer, kTwoTurns, options);
  EXPECT_EQ(all.labels[0], kNoLoss);
  EXPECT_TRUE(std::equal(all.labels.begin() + 1, all.labels.end(), all.input_ids.begin() + 1));

  // A BOS the template does not write goes first, masked, and the prompt grows by it.
  const auto other_bos = tokenizer_with(kChatMl, "<s>");
  options = {};
  options.add_bos = true;
  const Example with_bos = load_chat(*other_bos, kTwoTurns, options);
  ASSERT_EQ(with_bos.input_ids.size(), plain.input_ids.size() + 1);
  EXPECT_EQ(with_bos.input_ids[0], kSentenceStart);
  EXPECT_EQ(with_bos.labels[0], kNoLoss);
  EXPECT_TRUE(std::equal(plain.labels.begin(), plain.labels.end(), with_bos.labels.begin() + 1));
  EXPECT_EQ(with_bos.prompt_length, plain.prompt_length + 1);
}

// data.multiple_choice_prompt: chat puts the question as a user turn of the model's template; the
// newline that ends its generation prompt starts each choice (lm-eval's _encode_pair), no BOS.
TEST_F(ModelTemplateChat, MultipleChoiceAsAUserTurn) {
  const auto tokenizer = tokenizer_with(kChatMl);
  DataOptions options;
  options.multiple_choice_prompt = MultipleChoicePrompt::chat;
  const Example example = load_jsonl(write(R"({"question": "Q?", "choices": ["yes", "no"], "answer": 1})"
                                           "\n"),
                                     tokenizer.get(), options, tokenizer->vocab_size())
                              .at(0);
  const std::string turn =
      "<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\nQuestion: Q?\nAnswer:<|im_end|>\n"
      "<|im_start|>assistant";
  const MultipleChoice& q = *example.multiple_choice;
  EXPECT_EQ(q.sequences.at(0), byte_ids(turn + "\nyes"));
  EXPECT_EQ(q.sequences.at(1), byte_ids(turn + "\nno"));
  EXPECT_THAT(q.choice_tokens, ElementsAre(4, 3));
  EXPECT_EQ(q.generation_prompt, byte_ids("<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\nQuestion: "
                                          "Q?\nA. yes\nB. no\nAnswer:<|im_end|>\n<|im_start|>assistant\n"));
  EXPECT_EQ(example.input_ids, byte_ids(turn + "\nno<|im_end|>"));  // EOS is the template's <|im_end|>

  DataOptions plain_tokenizer = options;
  EXPECT_THAT(load_error(R"({"question": "Q?", "choices": ["yes", "no"], "answer": 1})", plain_tokenizer),
              AllOf(HasSubstr("data.jsonl:1:"), HasSubstr("set data.multiple_choice_prompt to plain")));
}

TEST_F(ModelTemplateChat, TruncationCutsTheLabelsAndClampsThePrompt) {
  const auto tokenizer = tokenizer_with(kChatMl);
  const Example whole = load_chat(*tokenizer, kTwoTurns);
  DataOptions options;
  options.max_seq_len = whole.prompt_length - 3;
  const Example cut = load_chat(*tokenizer, kTwoTurns, options);
  EXPECT_EQ(cut.input_ids,
            std::vector<int32_t>(whole.input_ids.begin(), whole.input_ids.begin() + options.max_seq_len));
  EXPECT_EQ(cut.labels, std::vector<int32_t>(whole.labels.begin(), whole.labels.begin() + options.max_seq_len));
  EXPECT_EQ(cut.prompt_length, options.max_seq_len);
}

TEST_F(ModelTemplateChat, ABuiltInTemplateStillWinsWhenNamed) {
  const auto tokenizer = tokenizer_with(kChatMl);
  DataOptions options;
  options.chat_template = "plain";
  const Example example = load_chat(*tokenizer, kTwoTurns, options);
  Layout expected;
  expected.masked("User: U1\nAssistant:");
  EXPECT_TRUE(std::equal(expected.ids.begin(), expected.ids.end(), example.input_ids.begin()));
}

TEST_F(ModelTemplateChat, ErrorsNameTheLineAndTheFix) {
  // The message count printed first: a shorter conversation is not the start of a longer one.
  const auto counting = tokenizer_with("{{ messages|length }}{% for m in messages %}{{ m['content'] }}{% endfor %}");
  EXPECT_THAT(load_error(std::string(kTwoTurns) + "\n", {}, counting.get()),
              AllOf(HasSubstr("data.jsonl:1:"), HasSubstr("as the start of the whole conversation"),
                    HasSubstr("data.chat_template")));
  const auto raising = tokenizer_with("{{ raise_exception('roles must alternate') }}");
  EXPECT_THAT(load_error(std::string(kTwoTurns) + "\n", {}, raising.get()),
              AllOf(HasSubstr("data.jsonl:1:"), HasSubstr("roles must alternate"), HasSubstr("tokenizer_config.json")));
}

void expect_same(const Example& a, const Example& b) {
  EXPECT_EQ(a.input_ids, b.input_ids);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.prompt_length, b.prompt_length);
  EXPECT_EQ(a.reference, b.reference);
}

TEST_F(DatasetTest, AutoDetectsEachLinesFormatAndSkipsBlankLines) {
  const std::pair<std::string, DataFormat> lines[] = {
      {R"({"text": "t"})", DataFormat::text},
      {R"({"prompt": "p", "completion": "c"})", DataFormat::prompt_completion},
      {R"({"instruction": "i", "input": "x", "output": "o"})", DataFormat::alpaca},
      {R"({"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]})", DataFormat::chat},
      {R"({"input_ids": [5, 6, 7], "labels": [-100, 6, 7]})", DataFormat::tokenized},
  };
  std::string file;
  for (const auto& [line, format] : lines) file += line + "\n  \n";
  const std::vector<Example> examples = load(file);
  ASSERT_EQ(examples.size(), std::size(lines));
  for (size_t i = 0; i < examples.size(); ++i) {
    SCOPED_TRACE(lines[i].first);
    expect_same(examples[i], load_one(lines[i].first, with_format(lines[i].second)));
    EXPECT_EQ(examples[i].line, static_cast<int64_t>(2 * i + 1));  // blank lines still count
  }
}

// ----- errors -------------------------------------------------------------------------------

struct ErrorCase {
  std::string contents;
  DataFormat format;
  std::string location;  // "data.jsonl:N:"
  std::string what;
};

TEST_F(DatasetTest, BadLinesAreErrorsNamingFileAndLine) {
  const std::string good = R"({"text": "ok"})";
  const ErrorCase cases[] = {
      {good + "\n{\"text\": \n", DataFormat::auto_detect, "data.jsonl:2:", "invalid JSON"},
      {"[1, 2]", DataFormat::auto_detect, "data.jsonl:1:", "expected a JSON object, got array"},
      {R"({"other": 1})", DataFormat::auto_detect, "data.jsonl:1:", "cannot tell the format from the keys {\"other\"}"},
      {R"({"instruction": "i"})", DataFormat::alpaca, "data.jsonl:1:", "missing key \"output\""},
      {R"({"text": "t"})", DataFormat::prompt_completion, "data.jsonl:1:", "missing key \"prompt\""},
      {good + "\n\n" + R"({"text": 5})", DataFormat::text, "data.jsonl:3:", "\"text\" should be a string, got number"},
      {R"({"instruction": "i", "input": 3, "output": "o"})", DataFormat::alpaca, "data.jsonl:1:", "\"input\" should be a string"},
      {R"({"messages": "hi"})", DataFormat::chat, "data.jsonl:1:", "\"messages\" should be a list"},
      {R"({"messages": [{"role": "bot", "content": "x"}]})", DataFormat::chat, "data.jsonl:1:",
       "messages[0]: unknown role \"bot\""},
      {R"({"messages": [{"role": "user"}]})", DataFormat::chat, "data.jsonl:1:", "messages[0]: missing key \"content\""},
      {R"({"messages": [{"role": "user", "content": "u"}, {"role": "system", "content": "s"}]})", DataFormat::chat,
       "data.jsonl:1:", "messages[1]: a system message may only come first"},
      {R"({"messages": [{"role": "user", "content": "u"}, {"role": "user", "content": "v"}]})", DataFormat::chat,
       "data.jsonl:1:", "messages[1]: two user messages in a row"},
      {R"({"messages": [{"role": "assistant", "content": "a"}]})", DataFormat::chat, "data.jsonl:1:",
       "messages[0]: an assistant message must answer a user message"},
      {R"({"messages": [{"role": "user", "content": "u"}]})", DataFormat::chat, "data.jsonl:1:",
       "must end with an assistant message"},
      {R"({"input_ids": [5, 6], "labels": [5]})", DataFormat::tokenized, "data.jsonl:1:",
       "\"labels\" has 1 entries but \"input_ids\" has 2"},
      {R"({"input_ids": [5, -6]})", DataFormat::tokenized, "data.jsonl:1:", "input_ids[1]: token id -6 is negative"},
      {R"({"input_ids": [5, 6], "labels": [-5, 6]})", DataFormat::tokenized, "data.jsonl:1:",
       "labels[0]: token id -5 is negative"},
      {R"({"input_ids": [5, 259]})", DataFormat::tokenized, "data.jsonl:1:", "outside the model's vocabulary [0, 259) (vocab_size in the model's config.json)"},
      {R"({"input_ids": [5, 6.5]})", DataFormat::tokenized, "data.jsonl:1:", "input_ids[1] should be an integer"},
      {R"({"input_ids": []})", DataFormat::tokenized, "data.jsonl:1:", "\"input_ids\" is empty"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.contents);
    EXPECT_THAT(load_error(c.contents, with_format(c.format)), AllOf(HasSubstr(c.location), HasSubstr(c.what)));
  }
}

TEST_F(DatasetTest, TextFormatsNeedATokenizerAndSomeTokens) {
  try {
    load_jsonl(write(R"({"text": "t"})"), nullptr, {}, 100);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("data.jsonl:1:"), HasSubstr("the text format needs a tokenizer")));
  }
  DataOptions options;
  options.add_bos = false;
  options.add_eos = false;
  EXPECT_THAT(load_error(R"({"text": ""})", options), AllOf(HasSubstr("data.jsonl:1:"), HasSubstr("no tokens")));
}

TEST_F(DatasetTest, FileAndOptionErrorsNameTheProblem) {
  const std::string missing = dir_.path("missing.jsonl");
  try {
    load_jsonl(missing, &tokenizer_, {}, tokenizer_.vocab_size());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr(missing), HasSubstr("cannot open")));
  }
  EXPECT_THAT(load_error(""), AllOf(HasSubstr("data.jsonl"), HasSubstr("no examples")));
  EXPECT_THAT(load_error("\n  \n"), HasSubstr("no examples"));
  EXPECT_THAT(load_error(R"({"text": "t"})", chat_options("vicuna")),
              AllOf(HasSubstr("\"vicuna\""), HasSubstr("llama2, chatml, plain")));
  DataOptions zero_length;
  zero_length.max_seq_len = 0;
  EXPECT_THAT(load_error(R"({"text": "t"})", zero_length), HasSubstr("max_seq_len"));
}

// ----- multiple choice ----------------------------------------------------------------------

std::vector<int32_t> bos_and(std::string_view text) {
  std::vector<int32_t> ids{kBos};
  for (const int32_t id : ByteTokenizer().encode(text)) ids.push_back(id);
  return ids;
}

// lm-eval's default layout, spelled out byte by byte: "Question: Q\nAnswer:" + " " + choice.
TEST_F(DatasetTest, MultipleChoiceLaysOutEveryChoiceAfterTheQuestion) {
  const Example example =
      load_one(R"({"question": "Capital?", "choices": ["Paris", "café"], "answer": 1, "subject": "geo"})");
  ASSERT_TRUE(example.multiple_choice.has_value());
  const MultipleChoice& q = *example.multiple_choice;
  EXPECT_EQ(q.sequences.at(0), bos_and("Question: Capital?\nAnswer: Paris"));
  EXPECT_EQ(q.sequences.at(1), bos_and("Question: Capital?\nAnswer: café"));
  EXPECT_THAT(q.choice_tokens, ElementsAre(6, 6));  // " Paris"; " café" is 6 bytes (é is two)
  EXPECT_THAT(q.choice_chars, ElementsAre(5, 4));   // code points, without the space
  EXPECT_EQ(q.answer, 1);
  EXPECT_EQ(q.subject, "geo");
  EXPECT_EQ(q.generation_prompt, bos_and("Question: Capital?\nA. Paris\nB. café\nAnswer:"));
  // The example trains on (and its loss measures) the correct choice and EOS.
  const Expected expected =
      Expected().masked(kBos).masked("Question: Capital?\nAnswer:").trained(" café").trained(kEos);
  expect_layout(example, expected, expected.size() - 7);
  EXPECT_EQ(example.reference, "café");
  EXPECT_EQ(load_one(R"({"question": "Q", "choices": ["a", "b"], "answer": 0})").multiple_choice->subject, "");
}

TEST_F(DatasetTest, MultipleChoiceWithoutBosAndTruncatedFromTheLeft) {
  DataOptions options = with_format(DataFormat::multiple_choice);
  options.add_bos = false;
  options.max_seq_len = 12;
  const Example example =
      load_one(R"({"question": "Long question", "choices": ["yes", "no way"], "answer": 1})", options);
  const MultipleChoice& q = *example.multiple_choice;
  const std::vector<int32_t> full = ByteTokenizer().encode("Question: Long question\nAnswer: no way");
  EXPECT_EQ(q.sequences.at(1), std::vector<int32_t>(full.end() - 12, full.end()));
  EXPECT_EQ(q.choice_tokens.at(1), 7);
  // The example keeps the answer and its EOS, dropping prompt tokens from the left.
  ASSERT_EQ(example.input_ids.size(), 12u);
  EXPECT_EQ(example.input_ids.back(), kEos);
  EXPECT_EQ(example.prompt_length, 12 - 8);
  EXPECT_EQ(std::count_if(example.labels.begin(), example.labels.end(), [](int32_t l) { return l != kNoLoss; }), 8);

  options.max_seq_len = 7;  // " no way" leaves no prompt token to predict its first token from
  EXPECT_THAT(load_error(R"({"question": "Q", "choices": ["yes", "no way"], "answer": 1})", options),
              AllOf(HasSubstr("data.jsonl:1: choices[1] is 7 tokens long"), HasSubstr("raise data.max_seq_len")));
}

class FewShot : public DatasetTest {
 protected:
  void SetUp() override {
    std::string dev;
    for (const char* subject : {"geo", "math"})
      for (int i = 0; i < 4; ++i)
        dev += nlohmann::json{{"question", std::string(subject) + std::to_string(i)},
                              {"choices", {"w", "r"}},
                              {"answer", 1},
                              {"subject", subject}}
                   .dump() +
               "\n";
    dev += R"({"question": "Q1", "choices": ["w", "r"], "answer": 1, "subject": "geo"})"
           "\n";
    options_.few_shot = {.count = 2, .file = write(dev, "dev.jsonl"), .seed = 7};
  }
  std::vector<Example> questions(const DataOptions& options) {
    std::string lines;
    for (int i = 0; i < 6; ++i)
      lines += R"({"question": "Q)" + std::to_string(i) +
               R"(", "choices": ["w", "r"], "answer": 1, "subject": "geo"})"
               "\n";
    return load(lines, options);
  }
  DataOptions options_;
};

std::string bytes_text(const std::vector<int32_t>& ids) {
  std::string text;
  for (const int32_t id : ids)
    if (id >= kFirstByte) text += static_cast<char>(id - kFirstByte);
  return text;
}

// k solved questions of the question's subject, distinct, never the question itself, each laid out
// as the question is and answered by its correct choice; the draw depends on (seed, line) only.
TEST_F(FewShot, PromptsStartWithSolvedQuestionsOfTheSameSubject) {
  const std::vector<Example> examples = questions(options_);
  const std::regex shot_pair("Question: (geo[0-3]|Q1)\nAnswer: r\n\nQuestion: (geo[0-3]|Q1)\nAnswer: r\n\n");
  std::set<std::string> contexts;
  for (const Example& example : examples) {
    const MultipleChoice& q = *example.multiple_choice;
    EXPECT_EQ(q.sequences.at(0).front(), kBos);
    const std::string text = bytes_text(q.sequences.at(0));
    const std::string name = "Q" + std::to_string(example.line - 1);
    const std::string own = "Question: " + name + "\nAnswer: w";
    ASSERT_TRUE(text.ends_with("\n\n" + own)) << text;
    const std::string shots = text.substr(0, text.size() - own.size());
    std::smatch names;
    ASSERT_TRUE(std::regex_match(shots, names, shot_pair)) << shots;
    EXPECT_NE(names[1], names[2]) << "the two shots are distinct";
    EXPECT_NE(names[1], name);
    EXPECT_NE(names[2], name);
    contexts.insert(shots);
    EXPECT_THAT(bytes_text(q.generation_prompt),
                AllOf(StartsWith("Question: " + names[1].str() + "\nA. w\nB. r\nAnswer: B\n\nQuestion: " +
                                 names[2].str() + "\nA. w\nB. r\nAnswer: B\n\n"),
                      ::testing::EndsWith("Question: " + name + "\nA. w\nB. r\nAnswer:")));
  }
  EXPECT_GT(contexts.size(), 1u) << "each question draws its own shots";
  const std::vector<Example> again = questions(options_);
  for (size_t i = 0; i < examples.size(); ++i) EXPECT_EQ(again[i].input_ids, examples[i].input_ids);
  DataOptions other_seed = options_;
  other_seed.few_shot.seed = 8;
  const std::vector<Example> reseeded = questions(other_seed);
  bool differs = false;
  for (size_t i = 0; i < examples.size(); ++i) differs |= reseeded[i].input_ids != examples[i].input_ids;
  EXPECT_TRUE(differs);
}

TEST_F(FewShot, TooFewSolvedQuestionsOrNoFileAreErrors) {
  DataOptions many = options_;
  many.few_shot.count = 9;  // 9 in the file, but one of them is the question itself
  EXPECT_THAT(load_error(R"({"question": "Q1", "choices": ["w", "r"], "answer": 1, "subject": "geo"})"
                         "\n",
                         many),
              AllOf(HasSubstr("data.jsonl:1: eval.few_shot 9"), HasSubstr("dev.jsonl holds 8"),
                    HasSubstr("lower eval.few_shot")));
  DataOptions no_file = options_;
  no_file.few_shot.file.clear();
  EXPECT_THAT(load_error(R"({"question": "Q", "choices": ["w", "r"], "answer": 1})", no_file),
              HasSubstr("set eval.few_shot_file"));
  write(R"({"question": "Q", "choices": ["w"], "answer": 0})"
        "\n",
        "dev.jsonl");
  EXPECT_THAT(load_error(R"({"question": "Q", "choices": ["w", "r"], "answer": 1})", options_),
              AllOf(HasSubstr("dev.jsonl:1:"), HasSubstr("\"choices\" holds 1 choices")));
}

TEST_F(DatasetTest, MalformedMultipleChoiceRecordsNameTheLineAndTheFix) {
  struct Case {
    const char* record;
    const char* what;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"question": "Q", "choices": ["a", "b", "c"], "answer": 3})",
            "answer 3 is out of range: the record has 3 choices, so the answer is an index from 0 to 2"},
           {R"({"question": "Q", "choices": ["a", "b"], "answer": -1})", "answer -1 is out of range"},
           {R"({"question": "Q", "choices": ["a", "b"], "answer": "B"})",
            "key \"answer\" should be the 0-based index of the correct choice (an integer from 0 to 1), got \"B\""},
           {R"({"question": "Q", "choices": ["a", "b"]})", "missing key \"answer\""},
           {R"({"question": "Q", "choices": [], "answer": 0})",
            "key \"choices\" holds 0 choices: a question needs 2 to 26"},
           {R"({"question": "Q", "choices": "a, b", "answer": 0})",
            "key \"choices\" should be a list of strings, got string"},
           {R"({"question": "Q", "choices": ["a", 2], "answer": 0})", "choices[1] should be a string, got number"},
           {R"({"question": "Q", "choices": ["a", ""], "answer": 0})", "choices[1] is empty"},
           {R"({"choices": ["a", "b"], "answer": 0})", "missing key \"question\""},
           {R"({"question": "Q", "choices": ["a", "b"], "answer": 0, "subject": 3})",
            "key \"subject\" should be a string, got number"},
       }) {
    SCOPED_TRACE(c.record);
    EXPECT_THAT(load_error(std::string("\n") + c.record + "\n", with_format(DataFormat::multiple_choice)),
                HasSubstr(std::string("data.jsonl:2: ") + c.what));
  }
  // format: auto tells a question by its keys; without "choices" nothing matches.
  EXPECT_THAT(load_error(R"({"question": "Q", "answer": 0})"), HasSubstr("question+choices"));
}

// ----- labelled lines -----------------------------------------------------------------------

TEST(ReadLabelledLines, KeepsTheLinesAsWrittenAndLabelsThemByAField) {
  test::TempDir dir;
  const std::string path = dir.path("data.jsonl");
  test::write_file(path,
                   "{\"text\": \"a\", \"category\": \"sports\"}\n\n  \n{\"category\": 3}\r\n{\"category\": null}\n");
  const LabelledLines labelled = read_labelled_lines(path, "category");
  EXPECT_THAT(labelled.lines,
              ElementsAre(R"({"text": "a", "category": "sports"})", "{\"category\": 3}\r", R"({"category": null})"));
  EXPECT_THAT(labelled.labels, ElementsAre("sports", "3", "null"));
  const LabelledLines unlabelled = read_labelled_lines(path, "");
  EXPECT_EQ(unlabelled.lines, labelled.lines);
  EXPECT_THAT(unlabelled.labels, ElementsAre("", "", ""));
}

TEST(ReadLabelledLines, ErrorsNameTheFileAndLine) {
  test::TempDir dir;
  const std::string path = dir.path("data.jsonl");
  const auto error = [&](const std::string& contents, const std::string& field) {
    test::write_file(path, contents);
    return test::error_of<Error>([&] { read_labelled_lines(path, field); });
  };
  EXPECT_THAT(error("{\"category\": \"a\"}\n{\"text\": \"b\"}\n", "category"),
              AllOf(HasSubstr("data.jsonl:2:"), HasSubstr("\"category\"")));
  EXPECT_THAT(error("{\"category\": \"a\"}\nnot json\n", "category"),
              AllOf(HasSubstr("data.jsonl:2:"), HasSubstr("invalid JSON")));
  EXPECT_THAT(error("[\"category\"]\n", "category"), AllOf(HasSubstr("data.jsonl:1:"), HasSubstr("JSON object")));
  EXPECT_THAT(error("\n \n", ""), AllOf(HasSubstr("data.jsonl"), HasSubstr("no examples")));
  EXPECT_THAT(test::error_of<Error>([&] { read_labelled_lines(dir.path("absent.jsonl"), ""); }),
              HasSubstr("absent.jsonl"));
  test::write_file(path, "not JSON, and no field asked for\n");
  EXPECT_EQ(read_labelled_lines(path, "").lines.size(), 1u);
}

// ----- batches ------------------------------------------------------------------------------

std::vector<int32_t> tensor_values(const Tensor& t) { return {t.as<int32_t>(), t.as<int32_t>() + t.numel()}; }

TEST(MakeBatch, RightPadsToTheLongestMemberInIndexOrder) {
  const std::vector<Example> examples = {{{1, 5, 6}, {kNoLoss, 5, 6}}, {{1, 7}, {kNoLoss, 7}}, {{1, 8, 9, 10}, {}}};
  const std::vector<int64_t> indices = {1, 0};
  const Batch batch = make_batch(examples, indices, 3);
  EXPECT_EQ(batch.input_ids.shape(), Shape({2, 3}));
  EXPECT_EQ(batch.input_ids.dtype(), DType::i32);
  EXPECT_EQ(batch.labels.dtype(), DType::i32);
  EXPECT_THAT(tensor_values(batch.input_ids), ElementsAre(1, 7, 3, 1, 5, 6));
  EXPECT_THAT(tensor_values(batch.labels), ElementsAre(kNoLoss, 7, kNoLoss, kNoLoss, 5, 6));

  // A tokenizer without a pad token pads with 0; the labels mask it either way.
  EXPECT_THAT(tensor_values(make_batch(examples, indices, -1).input_ids), ElementsAre(1, 7, 0, 1, 5, 6));
}

TEST(MakeBatch, RefusesEmptyAndOutOfRangeIndices) {
  const std::vector<Example> examples = {{{1}, {kNoLoss}}};
  EXPECT_THROW(make_batch(examples, {}, 0), Error);
  const std::vector<int64_t> out_of_range = {1};
  try {
    make_batch(examples, out_of_range, 0);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("index 1 outside the dataset of 1 examples"));
  }
}

// Example i has `lengths[i]` tokens, the first of which (i + 1) identifies it in a batch.
std::vector<Example> examples_of_lengths(const std::vector<int64_t>& lengths) {
  std::vector<Example> examples;
  for (size_t i = 0; i < lengths.size(); ++i) {
    Example example;
    example.input_ids.assign(lengths[i], 100);
    example.input_ids[0] = static_cast<int32_t>(i + 1);
    example.labels = example.input_ids;
    examples.push_back(example);
  }
  return examples;
}

std::vector<int64_t> varied_lengths(int64_t count) {
  Rng rng(7);
  std::vector<int64_t> lengths;
  for (int64_t i = 0; i < count; ++i) lengths.push_back(1 + static_cast<int64_t>(rng.uniform() * 200));
  return lengths;
}

// The examples of one batch, by index.
std::vector<int64_t> members(const Batch& batch) {
  std::vector<int64_t> indices;
  const int64_t rows = batch.input_ids.shape()[0], columns = batch.input_ids.shape()[1];
  for (int64_t row = 0; row < rows; ++row) indices.push_back(batch.input_ids.as<int32_t>()[row * columns] - 1);
  return indices;
}

// The next epoch's batches, by example index.
std::vector<std::vector<int64_t>> next_epoch(BatchIterator& iterator) {
  std::vector<std::vector<int64_t>> batches;
  for (int64_t i = 0; i < iterator.batches_per_epoch(); ++i) batches.push_back(members(iterator.next()));
  return batches;
}

TEST(BatchIterator, VisitsEveryExampleOncePerEpochWithASmallerLastBatch) {
  const std::vector<Example> examples = examples_of_lengths(varied_lengths(103));
  for (const bool bucket : {false, true}) {
    SCOPED_TRACE(bucket ? "bucketed" : "not bucketed");
    BatchIterator iterator(examples, 8, 42, bucket, kPad);
    EXPECT_EQ(iterator.batches_per_epoch(), 13);
    for (int64_t epoch = 0; epoch < 3; ++epoch) {
      EXPECT_EQ(iterator.epoch(), epoch);
      EXPECT_EQ(iterator.position(), 0);
      const std::vector<std::vector<int64_t>> batches = next_epoch(iterator);
      std::vector<int64_t> seen;
      for (size_t b = 0; b < batches.size(); ++b) {
        EXPECT_EQ(batches[b].size(), b + 1 < batches.size() ? 8u : 7u);
        seen.insert(seen.end(), batches[b].begin(), batches[b].end());
      }
      std::sort(seen.begin(), seen.end());
      std::vector<int64_t> all(examples.size());
      std::iota(all.begin(), all.end(), 0);
      EXPECT_EQ(seen, all);
    }
  }
}

TEST(BatchIterator, OrderDependsOnSeedAndEpochOnly) {
  const std::vector<Example> examples = examples_of_lengths(varied_lengths(64));
  for (const bool bucket : {false, true}) {
    SCOPED_TRACE(bucket ? "bucketed" : "not bucketed");
    BatchIterator first(examples, 4, 1, bucket, kPad), same_seed(examples, 4, 1, bucket, kPad),
        other_seed(examples, 4, 2, bucket, kPad);
    const auto epoch0 = next_epoch(first), epoch1 = next_epoch(first);
    EXPECT_NE(epoch0, epoch1);
    EXPECT_EQ(next_epoch(same_seed), epoch0);
    EXPECT_EQ(next_epoch(same_seed), epoch1);
    EXPECT_NE(next_epoch(other_seed), epoch0);
  }
}

TEST(BatchIterator, SeekResumesWhereARunStood) {
  const std::vector<Example> examples = examples_of_lengths(varied_lengths(50));
  BatchIterator run(examples, 4, 9, true, kPad);
  next_epoch(run);
  for (int i = 0; i < 5; ++i) run.next();
  BatchIterator resumed(examples, 4, 9, true, kPad);
  resumed.seek(run.epoch(), run.position());
  for (int i = 0; i < 20; ++i) EXPECT_EQ(members(resumed.next()), members(run.next()));
  EXPECT_THROW(resumed.seek(0, resumed.batches_per_epoch()), Error);
}

int64_t padding_in_one_epoch(BatchIterator& iterator) {
  int64_t padding = 0;
  for (int64_t i = 0; i < iterator.batches_per_epoch(); ++i) {
    const Tensor labels = iterator.next().labels;
    padding += std::count(labels.as<int32_t>(), labels.as<int32_t>() + labels.numel(), kNoLoss);
  }
  return padding;
}

TEST(BatchIterator, LengthBucketingCutsPadding) {
  const std::vector<Example> examples = examples_of_lengths(varied_lengths(512));
  BatchIterator plain(examples, 8, 3, false, kPad), bucketed(examples, 8, 3, true, kPad);
  const int64_t plain_padding = padding_in_one_epoch(plain), bucketed_padding = padding_in_one_epoch(bucketed);
  EXPECT_LT(bucketed_padding * 5, plain_padding) << bucketed_padding << " vs " << plain_padding;
}

TEST(BatchIterator, RefusesAnEmptyDatasetOrBatch) {
  const std::vector<Example> none;
  EXPECT_THROW(BatchIterator(none, 4, 0, false, kPad), Error);
  const std::vector<Example> some = examples_of_lengths({1, 2});
  EXPECT_THROW(BatchIterator(some, 0, 0, false, kPad), Error);
}

}  // namespace
}  // namespace fe
