// Multiple-choice scoring (engine/multiple_choice.h) against lm-evaluation-harness's definition,
// computed independently: tests/reference/multiple_choice_reference.py lays each prompt out, encodes
// it with HF `tokenizers` and scores every choice with the float64 PyTorch Llama + LoRA of
// llama_reference.py. The engine's log-likelihoods must agree to 1e-5 (absolute, f32; 1e-9 with
// f64 weights) and both must pick the same answers for acc and acc_norm on every question. The
// tokenizer is byte-level BPE with merges, so choices that share a prefix ("Par", "Paris",
// "Parisian") share tokens and a choice can be a single merged token.
#include "engine/multiple_choice.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/evaluate.h"
#include "engine/generate.h"
#include "tests/reference_env.h"
#include "tests/test_files.h"
#include "tests/test_util.h"

namespace fe {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// Questions with 2 to 4 choices: shared prefixes, one choice much longer than the others, a
// multi-byte character (acc_norm counts code points), a question long enough to be truncated, and
// choices of one to three tokens but of 1 to 17 characters, where acc and acc_norm disagree.
const char* kQuestions =
    R"({"question": "What is the capital of France?", "choices": ["Paris", "Parma", "Pisa"], "answer": 0, "subject": "geography"}
{"question": "Pick the longest word", "choices": ["Par", "Paris", "Parisian"], "answer": 2, "subject": "words"}
{"question": "Which is a colour?", "choices": ["red", "reddish brown with a hint of orange in the evening light", "blue", "green"], "answer": 2, "subject": "art"}
{"question": "2 + 2 =", "choices": ["4", "5"], "answer": 0, "subject": "math"}
{"question": "Which is spelled the French way?", "choices": ["café", "cafe", "caffè"], "answer": 0, "subject": "words"}
{"question": "A question long enough that a short max_seq_len cuts its start away: which answer is right?", "choices": ["this one", "that one"], "answer": 1}
{"question": "One token each", "choices": ["c", "Parisian"], "answer": 1, "subject": "norm"}
{"question": "One token each again", "choices": ["re", "Parisian"], "answer": 0, "subject": "norm"}
{"question": "Two tokens, many characters", "choices": ["c", "Parisian Parisian"], "answer": 1, "subject": "norm"}
{"question": "Three tokens", "choices": ["re", "Paris Paris Paris"], "answer": 0, "subject": "norm"}
{"question": "One token, 1 or 4 characters", "choices": ["c", "redd"], "answer": 1, "subject": "norm"}
{"question": "One token, 2 or 2 characters", "choices": ["ca", "re"], "answer": 1, "subject": "norm"}
)";

// "Ã ©" is é's two bytes in ByteLevel's alphabet.
const char* kMerges[] = {"Ġ P", "a r",    "ĠP ar", "i s", "ĠPar is", "a n", "ĠParis i", "ĠParisi an", "r e", "Ġ re",
                         "d d", "Ġre dd", "Q u",   "e s", "t i",     "o n", "Ġ c",      "Ġc a",       "Ã ©", "f Ã©"};

class MultipleChoiceScoring : public ::testing::Test {
 protected:
  void SetUp() override {
    nlohmann::json vocab = nlohmann::json::object();
    for (int b = 0; b < 256; ++b) vocab[test::byte_level_char(b)] = b;
    nlohmann::json merges = nlohmann::json::array();
    int next = 256;
    for (const char* merge : kMerges) {
      const std::string pair = merge;
      const size_t space = pair.find(' ');
      vocab[pair.substr(0, space) + pair.substr(space + 1)] = next++;
      merges.push_back(pair);
    }
    const auto added = [](int id, const char* content) {
      return nlohmann::json{{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
                            {"rstrip", false}, {"normalized", false}, {"special", true}};
    };
    bos_ = next;
    const nlohmann::json byte_level = {
        {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
    const nlohmann::json tokenizer = {{"version", "1.0"},
                                      {"added_tokens", {added(next, "<s>"), added(next + 1, "</s>")}},
                                      {"normalizer", nullptr},
                                      {"pre_tokenizer", byte_level},
                                      {"post_processor", nullptr},
                                      {"decoder", byte_level},
                                      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
    std::filesystem::create_directories(dir_.path("model"));
    test::write_file(dir_.path("model/tokenizer.json"), tokenizer.dump());
    test::write_file(dir_.path("model/tokenizer_config.json"),
                     R"({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true})");
    tokenizer_ = Tokenizer::load(dir_.path("model"));

    config_.hidden_size = 32;
    config_.intermediate_size = 48;
    config_.num_hidden_layers = 2;
    config_.num_attention_heads = 4;
    config_.num_key_value_heads = 2;
    config_.head_dim = 8;
    config_.vocab_size = 280;
    config_.max_position_embeddings = 256;
    config_.initializer_range = 0.2;  // peaked distributions: the choices' scores differ by more than length
    LlamaWeights weights = LlamaWeights::random(config_, 300, DType::f32);
    weights.save(dir_.path("model"), DType::f32);
    LoraConfig lora;
    lora.rank = 4;
    lora.alpha = 8;
    lora.targets = {Proj::q, Proj::v, Proj::down};
    LoraAdapter adapter = LoraAdapter::init(config_, lora, 301, DType::f32);
    Rng rng(302);
    for (auto& [name, t] : adapter.named_tensors())
      if (name.find("lora_B") != std::string::npos) rng.fill_normal(t, 0.0, 0.1);
    adapter.save_peft(dir_.path("adapter"));
    test::write_file(dir_.path("questions.jsonl"), kQuestions);
  }

  // The reference's output for the questions, with BOS (bos_id) or without (-1), keeping at most
  // max_seq_len tokens of each sequence.
  nlohmann::json reference(int32_t bos_id, int64_t max_seq_len) {
    const std::string out = dir_.path("reference.json"), log = dir_.path("reference.log");
    const std::string command =
        "OMP_NUM_THREADS=1 " + python_ + " " FE_SOURCE_DIR "/tests/reference/multiple_choice_reference.py --model " +
        dir_.path("model") + " --adapter " + dir_.path("adapter") + " --tokenizer " +
        dir_.path("model/tokenizer.json") + " --questions " + dir_.path("questions.jsonl") + " --bos-id " +
        std::to_string(bos_id) + " --max-len " + std::to_string(max_seq_len) + " --out " + out + " > " + log + " 2>&1";
    if (std::system(command.c_str()) != 0) {
      ADD_FAILURE() << "the reference failed:\n" << command << "\n" << test::read_file(log);
      return {};
    }
    return nlohmann::json::parse(test::read_file(out));
  }

  // The engine's scores of every question against the reference's, in f32 and f64.
  void expect_agreement(const DataOptions& options, int32_t bos_id) {
    const std::vector<Example> questions =
        load_jsonl(dir_.path("questions.jsonl"), tokenizer_.get(), options, config_.vocab_size);
    const nlohmann::json expected = reference(bos_id, options.max_seq_len);
    ASSERT_EQ(expected["log_likelihoods"].size(), questions.size());
    EXPECT_NE(expected["acc_pick"], expected["acc_norm_pick"]) << "no question tells acc_norm from acc";
    for (const auto& [dtype, tolerance] : {std::pair{DType::f32, 1e-5}, std::pair{DType::f64, 1e-9}}) {
      SCOPED_TRACE(dtype_name(dtype));
      const LlamaModel model(LlamaWeights::load(dir_.path("model"), dtype));
      const LoraAdapter lora = LoraAdapter::load_peft(dir_.path("adapter"), config_, dtype);
      for (size_t q = 0; q < questions.size(); ++q) {
        SCOPED_TRACE("question on line " + std::to_string(questions[q].line));
        const MultipleChoice& question = questions[q].multiple_choice.value();
        EXPECT_EQ(question.choice_tokens, expected["choice_tokens"][q].get<std::vector<int64_t>>());
        const ChoiceScores scores = score_choices(model, &lora, question);
        const auto reference_scores = expected["log_likelihoods"][q].get<std::vector<double>>();
        ASSERT_EQ(scores.log_likelihoods.size(), reference_scores.size());
        for (size_t c = 0; c < reference_scores.size(); ++c)
          EXPECT_NEAR(scores.log_likelihoods[c], reference_scores[c], tolerance) << "choice " << c;
        EXPECT_EQ(scores.best, expected["acc_pick"][q].get<int64_t>());
        EXPECT_EQ(scores.best_norm, expected["acc_norm_pick"][q].get<int64_t>());
      }
    }
  }

  void need_reference() { python_ = test::reference_python("tokenizers, torch, numpy"); }

  test::TempDir dir_;
  std::unique_ptr<Tokenizer> tokenizer_;
  LlamaConfig config_;
  int32_t bos_ = -1;
  std::string python_;
};

TEST_F(MultipleChoiceScoring, AgreesWithTheReferenceWithBos) {
  need_reference();
  FE_NEED_REFERENCE(!python_.empty(), "HF tokenizers");
  ASSERT_TRUE(tokenizer_->add_bos());
  ASSERT_EQ(tokenizer_->bos_id(), bos_);
  DataOptions options;
  options.max_seq_len = 256;
  expect_agreement(options, bos_);
}

// Without BOS and with sequences cut to 64 tokens from the left (the long question and the colour
// question with its long choice lose their start; lm-eval's max_length is 63 here, the tokens the
// model reads).
TEST_F(MultipleChoiceScoring, AgreesWithTheReferenceWithoutBosAndTruncated) {
  need_reference();
  FE_NEED_REFERENCE(!python_.empty(), "HF tokenizers");
  DataOptions options;
  options.max_seq_len = 64;
  options.add_bos = false;
  expect_agreement(options, -1);
}

// evaluate() tallies what score_choices picks, overall and per subject, and reports the loss of
// the correct choices; generated answers are read by the pattern.
TEST_F(MultipleChoiceScoring, EvaluateCountsAccuracyOverallAndPerSubject) {
  const std::vector<Example> questions =
      load_jsonl(dir_.path("questions.jsonl"), tokenizer_.get(), DataOptions{}, config_.vocab_size);
  const LlamaModel model(LlamaWeights::load(dir_.path("model"), DType::f32));
  const LoraAdapter lora = LoraAdapter::load_peft(dir_.path("adapter"), config_, DType::f32);
  EvalOptions options;
  options.generate_answers = true;
  options.sampling.max_new_tokens = 3;
  options.answer_pattern = "(?s)^(.)";  // the first generated character, whatever it is
  const std::vector<int32_t> stop_ids = {tokenizer_->eos_id()};
  const EvalResult result = evaluate(model, &lora, questions, tokenizer_.get(), options, stop_ids);

  ChoiceAccuracy expected;
  std::map<std::string, ChoiceAccuracy> by_subject;
  const AnswerPattern pattern(options.answer_pattern);
  SamplingOptions sampling = options.sampling;
  sampling.stop_ids = stop_ids;
  sampling.vocab_limit = tokenizer_->vocab_size();
  for (const Example& example : questions) {
    const MultipleChoice& q = *example.multiple_choice;
    const ChoiceScores scores = score_choices(model, &lora, q);
    const std::string answer = tokenizer_->decode(generate(model, &lora, q.generation_prompt, sampling));
    const bool letter = pattern.choice_in(answer, q.sequences.size()) == q.answer;
    for (ChoiceAccuracy* a : {&expected, &by_subject[q.subject]}) {
      ++a->questions;
      a->correct += scores.best == q.answer;
      a->correct_norm += scores.best_norm == q.answer;
      ++a->generated;
      a->generated_correct += letter;
    }
  }
  const auto same = [](const ChoiceAccuracy& a, const ChoiceAccuracy& b) {
    return a.questions == b.questions && a.correct == b.correct && a.correct_norm == b.correct_norm &&
           a.generated == b.generated && a.generated_correct == b.generated_correct;
  };
  EXPECT_TRUE(same(result.choices, expected));
  ASSERT_EQ(result.by_subject.size(), by_subject.size());
  for (const auto& [subject, accuracy] : by_subject)
    EXPECT_TRUE(same(result.by_subject.at(subject), accuracy)) << subject;
  EXPECT_EQ(result.by_subject.at("words").questions, 2);
  EXPECT_EQ(result.by_subject.at("").questions, 1);
  EXPECT_EQ(result.generated_examples, 0) << "questions are scored by their choices, not by exact match";
  EXPECT_EQ(result.examples, static_cast<int64_t>(questions.size()));
  EXPECT_GT(result.loss, 0.0);
}

TEST(AnswerPattern, TheDefaultTakesALetterStandingAloneAtTheStart) {
  const AnswerPattern pattern(kDefaultAnswerPattern);
  EXPECT_EQ(pattern.choice_in(" B", 4), 1);
  EXPECT_EQ(pattern.choice_in("B. Paris", 4), 1);
  EXPECT_EQ(pattern.choice_in("(c) because", 4), 2);
  EXPECT_EQ(pattern.choice_in("\n a", 4), 0);
  EXPECT_EQ(pattern.choice_in("Because", 4), std::nullopt);
  EXPECT_EQ(pattern.choice_in("E", 4), std::nullopt) << "beyond the choices";
  EXPECT_EQ(pattern.choice_in("", 4), std::nullopt);
  EXPECT_EQ(pattern.choice_in("\xff B", 4), 1) << "invalid UTF-8 is read lossily, not refused";
}

TEST(AnswerPattern, ACustomPatternNamesTheLetterByItsGroup) {
  const AnswerPattern flowertune("^[^A-Za-z0-9]*([A-Ea-e])");  // FlowerTune's rule: the first alphanumeric
  EXPECT_EQ(flowertune.choice_in("Because", 4), 1);
  const AnswerPattern phrase("answer is \\(?([A-D])");
  EXPECT_EQ(phrase.choice_in("I think the answer is (D).", 4), 3);
  EXPECT_EQ(phrase.choice_in("D", 4), std::nullopt);
  const AnswerPattern whole("[A-D]");
  EXPECT_EQ(whole.choice_in("so: C", 4), 2);
  EXPECT_THAT(test::error_of<Error>([] { AnswerPattern("([A-D]"); }),
              AllOf(HasSubstr("\"([A-D]\" does not compile"), HasSubstr("offset")));
  EXPECT_THAT(test::error_of<Error>([] { AnswerPattern("(a)(b)"); }), HasSubstr("has 2 capture groups"));
}

}  // namespace
}  // namespace fe
