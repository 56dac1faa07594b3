// engine/dataset.cpp — JSONL records → Examples → padded batches.
//
// Every text format is reduced to pieces of text marked "prompt" (masked) or "completion"
// (trained) and goes through one ExampleBuilder, so BOS/EOS placement, loss masking, prompt_length
// and truncation follow a single rule. Pieces are encoded one at a time, never concatenated first:
// the completion's tokens are then the same whatever prompt precedes them. A SentencePiece
// tokenizer starts every piece with its word-boundary "▁", which is why the chat templates put no
// space between a prompt piece and its answer ("[/INST]" + "▁answer" are Llama-2-chat's tokens).
#include "engine/dataset.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>

#include "engine/rng.h"
#include "kernels/view.h"
#include "tokenizer/utf8.h"

namespace fe {
namespace {

using nlohmann::json;

constexpr int32_t kIgnoreIndex = -100;  // label of a token outside the loss (HF / PyTorch convention)

struct FormatName {
  DataFormat format;
  const char* name;
};
constexpr FormatName kFormatNames[] = {
    {DataFormat::auto_detect, "auto"},
    {DataFormat::text, "text"},
    {DataFormat::prompt_completion, "prompt_completion"},
    {DataFormat::alpaca, "alpaca"},
    {DataFormat::chat, "chat"},
    {DataFormat::tokenized, "tokenized"},
    {DataFormat::multiple_choice, "multiple_choice"},
};

// ---------------------------------------------------------------------------------------------
// Reading records

// Where a record came from; every error about it reads "path:line: [part: ]what".
class LineSource {
 public:
  LineSource(const std::string& path, int64_t line)
      : line_(line), prefix_(path + ":" + std::to_string(line) + ": ") {}
  int64_t line() const { return line_; }
  // The same line, with errors also naming a part of the record ("messages[2]").
  LineSource within(const std::string& part) const {
    LineSource inner = *this;
    inner.prefix_ += part + ": ";
    return inner;
  }
  [[noreturn]] void fail(const std::string& what) const { throw Error(prefix_ + what); }

 private:
  int64_t line_;
  std::string prefix_;
};

std::string quoted(const std::string& key) { return "\"" + key + "\""; }

const json& required_key(const json& object, const std::string& key, const LineSource& source) {
  const auto it = object.find(key);
  if (it == object.end()) source.fail("missing key " + quoted(key));
  return *it;
}

std::string read_string(const json& object, const std::string& key, const LineSource& source) {
  const json& value = required_key(object, key, source);
  if (!value.is_string()) source.fail("key " + quoted(key) + " should be a string, got " + value.type_name());
  return value.get<std::string>();
}

// An absent or null key reads as the empty string (Alpaca's "input").
std::string read_optional_string(const json& object, const std::string& key, const LineSource& source) {
  const auto it = object.find(key);
  return it == object.end() || it->is_null() ? std::string() : read_string(object, key, source);
}

enum class IdList { tokens, labels };

// A list of token ids in [0, vocab_size); labels may also be kIgnoreIndex.
std::vector<int32_t> read_ids(const json& list, const std::string& key, IdList kind, int64_t vocab_size,
                              const LineSource& source) {
  if (!list.is_array()) source.fail("key " + quoted(key) + " should be a list of integers, got " + list.type_name());
  std::vector<int32_t> ids;
  ids.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const json& value = list[i];
    const std::string where = key + "[" + std::to_string(i) + "]";
    if (!value.is_number_integer()) source.fail(where + " should be an integer, got " + value.type_name());
    // The parser stores non-negative integers as unsigned, negative ones as signed.
    if (!value.is_number_unsigned()) {
      const int64_t id = value.get<int64_t>();
      if (kind == IdList::labels && id == kIgnoreIndex) {
        ids.push_back(kIgnoreIndex);
        continue;
      }
      source.fail(where + ": token id " + std::to_string(id) + " is negative" +
                  (kind == IdList::labels ? " (the only negative label is -100, no loss)" : ""));
    }
    const uint64_t id = value.get<uint64_t>();
    if (id >= static_cast<uint64_t>(vocab_size))
      source.fail(where + ": token id " + std::to_string(id) + " is outside the model's vocabulary [0, " +
                  std::to_string(vocab_size) + ") (vocab_size in the model's config.json)");
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

DataFormat detect_format(const json& record, const LineSource& source) {
  if (record.contains("messages")) return DataFormat::chat;
  if (record.contains("instruction") && record.contains("output")) return DataFormat::alpaca;
  if (record.contains("prompt") && record.contains("completion")) return DataFormat::prompt_completion;
  if (record.contains("input_ids")) return DataFormat::tokenized;
  if (record.contains("question") && record.contains("choices")) return DataFormat::multiple_choice;
  if (record.contains("text")) return DataFormat::text;
  std::string keys;
  for (const auto& item : record.items()) keys += (keys.empty() ? "" : ", ") + quoted(item.key());
  source.fail("cannot tell the format from the keys {" + keys +
              "}: expected messages, instruction+output, prompt+completion, input_ids, question+choices or text");
}

// ---------------------------------------------------------------------------------------------
// Assembling examples

void truncate(Example& example, int64_t max_seq_len) {
  if (static_cast<int64_t>(example.input_ids.size()) > max_seq_len) {
    example.input_ids.resize(max_seq_len);
    example.labels.resize(max_seq_len);
  }
  // A prompt cut by truncation is the whole sequence: generation would start at its end.
  example.prompt_length = std::min<int64_t>(example.prompt_length, example.input_ids.size());
}

enum class Part { prompt, completion };

// Builds [BOS] + pieces + [EOS] for every text format (see the top of this file).
class ExampleBuilder {
 public:
  ExampleBuilder(const Tokenizer& tokenizer, const DataOptions& options) : tokenizer_(tokenizer), options_(options) {
    // The first token is never predicted (logits at t predict t+1), so BOS carries no label even
    // with train_on_prompt: the number of labelled tokens is then the number of tokens scored.
    if (options.add_bos.value_or(tokenizer.add_bos()) && tokenizer.bos_id() >= 0)
      push(tokenizer.bos_id(), kIgnoreIndex);
  }

  void add_text(Part part, const std::string& text) {
    for (const int32_t id : tokenizer_.encode(text)) push(id, label(part, id));
  }
  // A control token the template places inside the sequence; nothing when the tokenizer has none.
  void add_token(Part part, int32_t id) {
    if (id >= 0) push(id, label(part, id));
  }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  // Generation starts here; called before each answer of a chat, the last call stands.
  void begin_completion() { example_.prompt_length = static_cast<int64_t>(example_.input_ids.size()); }

  Example finish(std::string reference, const LineSource& source) && {
    if (options_.add_eos.value_or(true)) add_token(Part::completion, tokenizer_.eos_id());
    if (example_.input_ids.empty()) source.fail("the record yields no tokens");
    example_.reference = std::move(reference);
    example_.line = source.line();
    truncate(example_, options_.max_seq_len);
    return std::move(example_);
  }

 private:
  int32_t label(Part part, int32_t id) const {
    return part == Part::completion || options_.train_on_prompt ? id : kIgnoreIndex;
  }
  void push(int32_t id, int32_t label) {
    example_.input_ids.push_back(id);
    example_.labels.push_back(label);
  }

  const Tokenizer& tokenizer_;
  const DataOptions& options_;
  Example example_;
};

// One prompt followed by the completion it should produce (prompt_completion and alpaca).
Example single_turn_example(const std::string& prompt, std::string completion, const LineSource& source,
                            ExampleBuilder builder) {
  builder.add_text(Part::prompt, prompt);
  builder.begin_completion();
  builder.add_text(Part::completion, completion);
  return std::move(builder).finish(std::move(completion), source);
}

Example text_example(const json& record, const LineSource& source, ExampleBuilder builder) {
  builder.begin_completion();
  builder.add_text(Part::completion, read_string(record, "text", source));
  return std::move(builder).finish("", source);
}

// The Stanford Alpaca prompt, in its no-input variant when the input is empty.
std::string alpaca_prompt(const std::string& instruction, const std::string& input) {
  if (input.empty())
    return "Below is an instruction that describes a task. Write a response that appropriately completes the "
           "request.\n\n### Instruction:\n" + instruction + "\n\n### Response:\n";
  return "Below is an instruction that describes a task, paired with an input that provides further context. "
         "Write a response that appropriately completes the request.\n\n### Instruction:\n" + instruction +
         "\n\n### Input:\n" + input + "\n\n### Response:\n";
}

// Keys are read one statement at a time (not as call arguments, whose order is unspecified) so a
// record missing several keys always reports the same one.
Example alpaca_example(const json& record, const LineSource& source, ExampleBuilder builder) {
  const std::string instruction = read_string(record, "instruction", source);
  const std::string input = read_optional_string(record, "input", source);
  std::string output = read_string(record, "output", source);
  return single_turn_example(alpaca_prompt(instruction, input), std::move(output), source, std::move(builder));
}

Example prompt_completion_example(const json& record, const LineSource& source, ExampleBuilder builder) {
  const std::string prompt = read_string(record, "prompt", source);
  std::string completion = read_string(record, "completion", source);
  return single_turn_example(prompt, std::move(completion), source, std::move(builder));
}

// ---------------------------------------------------------------------------------------------
// Chat

struct Exchange {
  std::string user;
  std::string assistant;
};

// An optional system message, then user/assistant exchanges; the last one is the completion.
struct Conversation {
  std::string system;
  std::vector<Exchange> exchanges;
};

Conversation read_conversation(const json& record, const LineSource& source) {
  const json& messages = required_key(record, "messages", source);
  if (!messages.is_array()) source.fail("key \"messages\" should be a list, got " + std::string(messages.type_name()));
  Conversation conversation;
  std::optional<std::string> unanswered_user;
  for (size_t i = 0; i < messages.size(); ++i) {
    const LineSource message_source = source.within("messages[" + std::to_string(i) + "]");
    const json& message = messages[i];
    if (!message.is_object()) message_source.fail(std::string("should be an object, got ") + message.type_name());
    const std::string role = read_string(message, "role", message_source);
    std::string content = read_string(message, "content", message_source);
    if (role == "system") {
      if (i != 0) message_source.fail("a system message may only come first");
      conversation.system = std::move(content);
    } else if (role == "user") {
      if (unanswered_user) message_source.fail("two user messages in a row (each needs an assistant answer)");
      unanswered_user = std::move(content);
    } else if (role == "assistant") {
      if (!unanswered_user) message_source.fail("an assistant message must answer a user message");
      conversation.exchanges.push_back({std::move(*unanswered_user), std::move(content)});
      unanswered_user.reset();
    } else {
      message_source.fail("unknown role " + quoted(role) + " (expected system, user or assistant)");
    }
  }
  if (unanswered_user || conversation.exchanges.empty())
    source.fail("the conversation must end with an assistant message");
  return conversation;
}

// How a built-in chat template lays a conversation out, one exchange after another.
struct BuiltinChatTemplate {
  const char* name;
  // Masked text from the start of an exchange to where its answer begins; `system` is empty
  // except in the first exchange.
  std::string (*exchange_prompt)(const std::string& system, const std::string& user);
  const char* answer_end;          // trained text that closes every answer
  const char* exchange_separator;  // masked text that opens every exchange but the first
  bool eos_bos_between_exchanges;  // Llama-2-chat: every answer ends with EOS, the next [INST] starts with BOS
};

const BuiltinChatTemplate kBuiltinChatTemplates[] = {
    {"llama2",
     [](const std::string& system, const std::string& user) {
       const std::string system_block = system.empty() ? "" : "<<SYS>>\n" + system + "\n<</SYS>>\n\n";
       return "[INST] " + system_block + user + " [/INST]";
     },
     "", "", true},
    {"chatml",
     [](const std::string& system, const std::string& user) {
       const std::string system_turn = system.empty() ? "" : "<|im_start|>system\n" + system + "<|im_end|>\n";
       return system_turn + "<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n";
     },
     "<|im_end|>", "\n", false},
    {"plain",
     [](const std::string& system, const std::string& user) {
       const std::string system_line = system.empty() ? "" : "System: " + system + "\n";
       return system_line + "User: " + user + "\nAssistant:";
     },
     "", "\n", false},
};

const BuiltinChatTemplate& find_builtin_chat_template(const std::string& name) {
  std::string valid;
  for (const BuiltinChatTemplate& chat_template : kBuiltinChatTemplates) {
    if (name == chat_template.name) return chat_template;
    valid += (valid.empty() ? "" : ", ") + std::string(chat_template.name);
  }
  throw Error("unknown chat template " + quoted(name) + " (valid: auto, " + valid + ")");
}

// Loss on every answer; prompt_length and reference belong to the last one.
Example builtin_chat_example(const json& record, const LineSource& source, const BuiltinChatTemplate& chat_template,
                             ExampleBuilder builder) {
  const Conversation conversation = read_conversation(record, source);
  for (size_t i = 0; i < conversation.exchanges.size(); ++i) {
    const Exchange& exchange = conversation.exchanges[i];
    if (i > 0) {
      if (chat_template.eos_bos_between_exchanges) {
        builder.add_token(Part::completion, builder.tokenizer().eos_id());
        builder.add_token(Part::prompt, builder.tokenizer().bos_id());
      }
      builder.add_text(Part::prompt, chat_template.exchange_separator);
    }
    builder.add_text(Part::prompt, chat_template.exchange_prompt(i == 0 ? conversation.system : "", exchange.user));
    builder.begin_completion();
    builder.add_text(Part::completion, exchange.assistant + chat_template.answer_end);
  }
  return std::move(builder).finish(conversation.exchanges.back().assistant, source);
}

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  return std::mismatch(a.begin(), a.begin() + std::min(a.size(), b.size()), b.begin()).first - a.begin();
}

// The tokenizer's own template, as HF trains on it: the whole conversation is rendered and
// encoded at once (so tokens at the boundaries are those the model saw), and answer i's tokens
// are those that rendering the conversation up to answer i adds to rendering it up to the
// generation prompt before it. A token that merges text across the answer's start counts as the
// answer's, one across its end as what follows. The template writes BOS/EOS itself;
// add_bos/add_eos add them only when set.
Example model_template_chat_example(const json& record, const LineSource& source, const Tokenizer& tokenizer,
                                    const DataOptions& options) {
  const Conversation conversation = read_conversation(record, source);  // the structure every template expects
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  std::vector<size_t> answers;  // indices of the assistant messages
  for (const json& message : record["messages"]) {
    if (message["role"] == "assistant") answers.push_back(messages.size());
    messages.push_back({{"role", message["role"]}, {"content", message["content"]}});
  }
  const auto render = [&](size_t count, bool add_generation_prompt) {
    const nlohmann::ordered_json head(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(count));
    try {
      return tokenizer.apply_chat_template(head, add_generation_prompt);
    } catch (const std::exception& e) {
      source.fail(std::string("the model's chat template failed on the first ") + std::to_string(count) +
                  " messages: " + e.what());
    }
  };
  const std::string whole = render(messages.size(), false);
  Example example;
  example.input_ids = tokenizer.encode(whole);
  example.labels.assign(example.input_ids.size(), kIgnoreIndex);
  for (const size_t answer : answers) {
    const std::string through_answer = render(answer + 1, false);
    if (!whole.starts_with(through_answer))
      source.fail("the model's chat template does not lay out messages[0.." + std::to_string(answer) +
                  "] as the start of the whole conversation, so the answer's tokens cannot be told apart; set "
                  "data.chat_template to a built-in one (llama2, chatml, plain)");
    const size_t begin = common_prefix(tokenizer.encode(render(answer, true)), example.input_ids);
    const size_t end = common_prefix(tokenizer.encode(through_answer), example.input_ids);
    for (size_t t = begin; t < end; ++t) example.labels[t] = example.input_ids[t];
    example.prompt_length = static_cast<int64_t>(begin);
  }
  if (options.add_bos.value_or(false) && tokenizer.bos_id() >= 0 &&
      (example.input_ids.empty() || example.input_ids.front() != tokenizer.bos_id())) {
    example.input_ids.insert(example.input_ids.begin(), tokenizer.bos_id());
    example.labels.insert(example.labels.begin(), kIgnoreIndex);
    ++example.prompt_length;
  }
  if (options.add_eos.value_or(false) && tokenizer.eos_id() >= 0) {
    example.input_ids.push_back(tokenizer.eos_id());
    example.labels.push_back(tokenizer.eos_id());
  }
  if (options.train_on_prompt)
    for (size_t t = 1; t < example.input_ids.size(); ++t) example.labels[t] = example.input_ids[t];
  example.reference = conversation.exchanges.back().assistant;
  example.line = source.line();
  truncate(example, options.max_seq_len);
  return example;
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenized records

Example tokenized_example(const json& record, const LineSource& source, int64_t vocab_size, int64_t max_seq_len) {
  Example example;
  example.input_ids = read_ids(required_key(record, "input_ids", source), "input_ids", IdList::tokens, vocab_size, source);
  if (example.input_ids.empty()) source.fail("key \"input_ids\" is empty");
  const auto labels = record.find("labels");
  if (labels == record.end() || labels->is_null()) {
    example.labels = example.input_ids;
  } else {
    example.labels = read_ids(*labels, "labels", IdList::labels, vocab_size, source);
    if (example.labels.size() != example.input_ids.size())
      source.fail("\"labels\" has " + std::to_string(example.labels.size()) + " entries but \"input_ids\" has " +
                  std::to_string(example.input_ids.size()));
  }
  example.line = source.line();
  truncate(example, max_seq_len);
  const auto first_label = std::find_if(example.labels.begin(), example.labels.end(),
                                        [](int32_t label) { return label != kIgnoreIndex; });
  example.prompt_length = first_label == example.labels.end() ? 0 : first_label - example.labels.begin();
  return example;
}

// ---------------------------------------------------------------------------------------------
// Multiple choice (the layout is described in dataset.h)

constexpr size_t kMaxChoices = 26;  // lettered A to Z

struct ChoiceRecord {
  std::string question;
  std::vector<std::string> choices;
  int64_t answer = 0;
  std::string subject;
};

ChoiceRecord read_choice_record(const json& record, const LineSource& source) {
  ChoiceRecord r;
  r.question = read_string(record, "question", source);
  const json& choices = required_key(record, "choices", source);
  if (!choices.is_array())
    source.fail(std::string("key \"choices\" should be a list of strings, got ") + choices.type_name());
  if (choices.size() < 2 || choices.size() > kMaxChoices)
    source.fail("key \"choices\" holds " + std::to_string(choices.size()) +
                " choices: a question needs 2 to 26 (they are lettered A to Z)");
  for (size_t i = 0; i < choices.size(); ++i) {
    const std::string where = "choices[" + std::to_string(i) + "]";
    if (!choices[i].is_string()) source.fail(where + " should be a string, got " + choices[i].type_name());
    r.choices.push_back(choices[i].get<std::string>());
    if (r.choices.back().empty()) source.fail(where + " is empty: every choice needs text to be scored");
  }
  const json& answer = required_key(record, "answer", source);
  const std::string range = "0 to " + std::to_string(r.choices.size() - 1);
  if (!answer.is_number_integer())
    source.fail("key \"answer\" should be the 0-based index of the correct choice (an integer from " + range +
                "), got " + answer.dump());
  if (answer.is_number_unsigned() ? answer.get<uint64_t>() >= r.choices.size() : true)
    source.fail("answer " + answer.dump() + " is out of range: the record has " + std::to_string(r.choices.size()) +
                " choices, so the answer is an index from " + range);
  r.answer = answer.get<int64_t>();
  r.subject = read_optional_string(record, "subject", source);
  return r;
}

char choice_letter(size_t i) { return static_cast<char>('A' + i); }

// lm-eval's default multiple-choice layout: what precedes " " + a choice.
std::string question_prompt(const ChoiceRecord& r) { return "Question: " + r.question + "\nAnswer:"; }

// The choices lettered, as MMLU is asked: what precedes a generated " B".
std::string lettered_prompt(const ChoiceRecord& r) {
  std::string text = "Question: " + r.question + "\n";
  for (size_t i = 0; i < r.choices.size(); ++i) text += std::string(1, choice_letter(i)) + ". " + r.choices[i] + "\n";
  return text + "Answer:";
}

// The dev split that k-shot prompts draw their solved questions from.
struct FewShotPool {
  std::string path;
  std::vector<ChoiceRecord> records;
  std::map<std::string, std::vector<size_t>> by_subject;  // indices into records
};

template <class Take>
void for_each_record_line(const std::string& path, Take&& take);

uint64_t epoch_seed(uint64_t seed, int64_t epoch);
json parse_record(const std::string& line, const LineSource& source);

FewShotPool read_few_shot_pool(const std::string& path) {
  FewShotPool pool{path, {}, {}};
  for_each_record_line(path, [&](const std::string& line, const LineSource& source) {
    pool.records.push_back(read_choice_record(parse_record(line, source), source));
    pool.by_subject[pool.records.back().subject].push_back(pool.records.size() - 1);
  });
  return pool;
}

// k distinct solved questions for the question on line `line`: of its subject when the pool holds
// k others of that subject, else of the whole pool; never the question itself.
std::vector<const ChoiceRecord*> draw_shots(const ChoiceRecord& question, const FewShotPool& pool,
                                            const FewShotOptions& options, const LineSource& source) {
  const auto others = [&](const std::vector<size_t>& indices) {
    std::vector<size_t> kept;
    for (const size_t i : indices)
      if (pool.records[i].question != question.question || pool.records[i].choices != question.choices)
        kept.push_back(i);
    return kept;
  };
  std::vector<size_t> candidates;
  if (const auto subject = pool.by_subject.find(question.subject); subject != pool.by_subject.end())
    candidates = others(subject->second);
  if (static_cast<int64_t>(candidates.size()) < options.count) {
    std::vector<size_t> all(pool.records.size());
    std::iota(all.begin(), all.end(), 0);
    candidates = others(all);
  }
  const size_t k = static_cast<size_t>(options.count);
  if (candidates.size() < k)
    source.fail("eval.few_shot " + std::to_string(k) + " needs " + std::to_string(k) + " solved questions, and " +
                pool.path + " holds " + std::to_string(candidates.size()) +
                " besides this one: lower eval.few_shot or add questions to eval.few_shot_file");
  Rng rng(epoch_seed(options.seed, source.line()));
  std::vector<const ChoiceRecord*> shots;
  for (size_t i = 0; i < k; ++i) {  // a partial Fisher–Yates: the first k of a seeded permutation
    std::swap(candidates[i], candidates[i + rng.next_u64() % (candidates.size() - i)]);
    shots.push_back(&pool.records[candidates[i]]);
  }
  return shots;
}

void keep_last(std::vector<int32_t>& ids, int64_t max_len) {
  if (static_cast<int64_t>(ids.size()) > max_len) ids.erase(ids.begin(), ids.end() - max_len);
}

Example multiple_choice_example(const json& record, const LineSource& source, const Tokenizer& tokenizer,
                                const DataOptions& options, const FewShotPool* pool) {
  const ChoiceRecord r = read_choice_record(record, source);
  std::string shots, lettered_shots;
  if (pool)
    for (const ChoiceRecord* shot : draw_shots(r, *pool, options.few_shot, source)) {
      shots += question_prompt(*shot) + " " + shot->choices[shot->answer] + "\n\n";
      lettered_shots += lettered_prompt(*shot) + " " + choice_letter(shot->answer) + "\n\n";
    }
  const bool chat = options.multiple_choice_prompt == MultipleChoicePrompt::chat;
  if (chat && !tokenizer.has_chat_template())
    source.fail(
        "data.multiple_choice_prompt: chat lays questions out with the model's chat template, and the "
        "tokenizer has none (tokenizer_config.json's chat_template): set data.multiple_choice_prompt to plain");
  const auto as_put = [&](const std::string& text) {
    if (!chat) return text;
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    messages.push_back({{"role", "user"}, {"content", text}});
    try {
      return tokenizer.apply_chat_template(messages, true);
    } catch (const std::exception& e) {
      source.fail(std::string("the model's chat template failed on the question: ") + e.what());
    }
  };
  std::vector<int32_t> bos;
  if (options.add_bos.value_or(!chat && tokenizer.add_bos()) && tokenizer.bos_id() >= 0)
    bos.push_back(tokenizer.bos_id());

  MultipleChoice question;
  question.answer = r.answer;
  question.subject = r.subject;
  // lm-eval's _encode_pair: whitespace that ends the context starts the continuation instead.
  std::string context = as_put(shots + question_prompt(r));
  const size_t kept = context.find_last_not_of(" \t\n\r\f\v") + 1;
  const std::string delimiter = context.substr(kept) + (chat ? "" : " ");  // lm-eval's target_delimiter " "
  context.resize(kept);
  const std::vector<int32_t> context_ids = tokenizer.encode(context);
  for (size_t i = 0; i < r.choices.size(); ++i) {
    const std::vector<int32_t> whole = tokenizer.encode(context + delimiter + r.choices[i]);
    const int64_t choice_tokens = static_cast<int64_t>(whole.size()) - static_cast<int64_t>(context_ids.size());
    const std::string where = "choices[" + std::to_string(i) + "]";
    if (choice_tokens <= 0) source.fail(where + " adds no tokens to the prompt, so it cannot be scored");
    std::vector<int32_t> sequence = bos;
    sequence.insert(sequence.end(), context_ids.begin(), context_ids.end());
    sequence.insert(sequence.end(), whole.end() - choice_tokens, whole.end());
    if (choice_tokens >= options.max_seq_len)
      source.fail(where + " is " + std::to_string(choice_tokens) + " tokens long, and data.max_seq_len " +
                  std::to_string(options.max_seq_len) +
                  " leaves no prompt token before it: raise data.max_seq_len or shorten the choice");
    keep_last(sequence, options.max_seq_len);
    question.sequences.push_back(std::move(sequence));
    question.choice_tokens.push_back(choice_tokens);
    question.choice_chars.push_back(static_cast<int64_t>(utf8::decode_lossy(r.choices[i]).size()));
  }
  question.generation_prompt = bos;
  for (const int32_t id : tokenizer.encode(as_put(lettered_shots + lettered_prompt(r))))
    question.generation_prompt.push_back(id);
  keep_last(question.generation_prompt, options.max_seq_len);

  // The correct choice as a completion (and EOS, as every completion ends), truncated like the
  // choices so that the answer survives.
  Example example;
  example.input_ids = question.sequences[r.answer];
  const int64_t answer_tokens = question.choice_tokens[r.answer];
  example.labels.assign(example.input_ids.size(), kIgnoreIndex);
  const size_t answer_begin = example.input_ids.size() - answer_tokens;
  for (size_t t = options.train_on_prompt ? 1 : answer_begin; t < example.input_ids.size(); ++t)
    example.labels[t] = example.input_ids[t];
  if (options.add_eos.value_or(true) && tokenizer.eos_id() >= 0) {
    example.input_ids.push_back(tokenizer.eos_id());
    example.labels.push_back(tokenizer.eos_id());
  }
  const int64_t dropped = std::max<int64_t>(0, static_cast<int64_t>(example.input_ids.size()) - options.max_seq_len);
  example.input_ids.erase(example.input_ids.begin(), example.input_ids.begin() + dropped);
  example.labels.erase(example.labels.begin(), example.labels.begin() + dropped);
  example.prompt_length = static_cast<int64_t>(answer_begin) - dropped;
  example.reference = r.choices[r.answer];
  example.line = source.line();
  example.multiple_choice = std::move(question);
  return example;
}

// ---------------------------------------------------------------------------------------------
// One line → one example

struct LoadContext {
  const Tokenizer* tokenizer;
  const DataOptions& options;
  int64_t vocab_size;                                // bound of pre-tokenized ids
  const BuiltinChatTemplate* builtin_chat_template;  // null: the tokenizer's own template
  const FewShotPool* few_shot;                       // null: zero-shot
};

const Tokenizer& require_tokenizer(DataFormat format, const LoadContext& context, const LineSource& source) {
  if (context.tokenizer == nullptr)
    source.fail(std::string("the ") + data_format_name(format) +
                " format needs a tokenizer, and none was given: set `tokenizer:` to a tokenizer.json or "
                "tokenizer.model (the model directory holds neither), or give pre-tokenized records "
                "{\"input_ids\": [...]}");
  return *context.tokenizer;
}

ExampleBuilder builder_for(DataFormat format, const LoadContext& context, const LineSource& source) {
  return ExampleBuilder(require_tokenizer(format, context, source), context.options);
}

// A line of a JSONL file as the JSON object every record is.
json parse_record(const std::string& line, const LineSource& source) {
  json record;
  try {
    record = json::parse(line);
  } catch (const json::parse_error& e) {
    source.fail(std::string("invalid JSON: ") + e.what());
  }
  if (!record.is_object()) source.fail(std::string("expected a JSON object, got ") + record.type_name());
  return record;
}

Example example_from_line(const std::string& line, const LineSource& source, const LoadContext& context) {
  const json record = parse_record(line, source);
  const DataFormat format =
      context.options.format == DataFormat::auto_detect ? detect_format(record, source) : context.options.format;
  switch (format) {
    case DataFormat::tokenized:
      return tokenized_example(record, source, context.vocab_size, context.options.max_seq_len);
    case DataFormat::text:
      return text_example(record, source, builder_for(format, context, source));
    case DataFormat::prompt_completion:
      return prompt_completion_example(record, source, builder_for(format, context, source));
    case DataFormat::alpaca:
      return alpaca_example(record, source, builder_for(format, context, source));
    case DataFormat::chat:
      if (context.builtin_chat_template == nullptr)  // only chosen with a tokenizer that has a template
        return model_template_chat_example(record, source, *context.tokenizer, context.options);
      return builtin_chat_example(record, source, *context.builtin_chat_template, builder_for(format, context, source));
    case DataFormat::multiple_choice:
      return multiple_choice_example(record, source, require_tokenizer(format, context, source), context.options,
                                     context.few_shot);
    case DataFormat::auto_detect:
      break;  // detect_format always names a concrete format
  }
  source.fail("no format to read the record with");
}

bool is_blank(const std::string& line) {
  return line.find_first_not_of(" \t\r\n") == std::string::npos;
}

// Calls take(line, source) for every non-blank line of a JSONL file; an Error names the file when
// it cannot be read or holds no record.
template <class Take>
void for_each_record_line(const std::string& path, Take&& take) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open the dataset file");
  int64_t records = 0;
  std::string line;
  for (int64_t line_number = 1; std::getline(in, line); ++line_number) {
    if (is_blank(line)) continue;
    take(line, LineSource(path, line_number));
    ++records;
  }
  if (in.bad()) throw Error(path + ": read error");
  if (records == 0) throw Error(path + ": no examples (the file is empty or holds only blank lines)");
}

// ---------------------------------------------------------------------------------------------
// Epoch order

constexpr int64_t kBucketWindowBatches = 32;  // "a few dozen batches": similar lengths, still random

// Rng's constructor steps splitmix64 from its seed, so seeds a multiple of the step apart would give
// overlapping streams; hashing (seed, epoch) first keeps every epoch's stream independent.
uint64_t epoch_seed(uint64_t seed, int64_t epoch) {
  uint64_t z = seed ^ (static_cast<uint64_t>(epoch) * 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Fisher–Yates over our own Rng: std::shuffle's algorithm differs between standard libraries, and
// the order must be the same everywhere for a run to be reproducible.
template <class T>
void shuffle(std::span<T> items, Rng& rng) {
  for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[rng.next_u64() % i]);
}

std::vector<std::vector<int64_t>> split_into_batches(std::span<const int64_t> order, int64_t batch_size) {
  std::vector<std::vector<int64_t>> batches;
  for (size_t begin = 0; begin < order.size(); begin += batch_size) {
    const size_t end = std::min(order.size(), begin + static_cast<size_t>(batch_size));
    batches.emplace_back(order.begin() + begin, order.begin() + end);
  }
  return batches;
}

std::vector<std::vector<int64_t>> epoch_batches(const std::vector<Example>& examples, int64_t batch_size,
                                                uint64_t seed, int64_t epoch, bool bucket_by_length) {
  Rng rng(epoch_seed(seed, epoch));
  std::vector<int64_t> order(examples.size());
  std::iota(order.begin(), order.end(), 0);
  shuffle(std::span(order), rng);
  if (!bucket_by_length) return split_into_batches(order, batch_size);

  const auto length = [&](int64_t i) { return examples[i].input_ids.size(); };
  const size_t window = static_cast<size_t>(kBucketWindowBatches * batch_size);
  std::vector<std::vector<int64_t>> batches;
  for (size_t begin = 0; begin < order.size(); begin += window) {
    const std::span<int64_t> members(order.data() + begin, std::min(window, order.size() - begin));
    // Stable, so examples of equal length keep their random order.
    std::stable_sort(members.begin(), members.end(), [&](int64_t a, int64_t b) { return length(a) < length(b); });
    std::vector<std::vector<int64_t>> window_batches = split_into_batches(members, batch_size);
    // Without this each window would run from short to long batches. A smaller (last) batch stays last.
    const size_t full_batches = members.size() / batch_size;
    shuffle(std::span(window_batches).first(full_batches), rng);
    for (auto& batch : window_batches) batches.push_back(std::move(batch));
  }
  return batches;
}

}  // namespace

DataFormat parse_data_format(std::string_view name) {
  std::string valid;
  for (const FormatName& entry : kFormatNames) {
    if (name == entry.name) return entry.format;
    valid += (valid.empty() ? "" : ", ") + std::string(entry.name);
  }
  throw Error("unknown data format \"" + std::string(name) + "\" (valid: " + valid + ")");
}

const char* data_format_name(DataFormat format) {
  for (const FormatName& entry : kFormatNames)
    if (entry.format == format) return entry.name;
  return "?";
}

std::vector<Example> load_jsonl(const std::string& path, const Tokenizer* tokenizer, const DataOptions& options,
                                int64_t vocab_size) {
  if (options.max_seq_len <= 0)
    throw Error("load_jsonl: max_seq_len must be positive, got " + std::to_string(options.max_seq_len));
  if (vocab_size <= 0) throw Error("load_jsonl: vocab_size must be positive, got " + std::to_string(vocab_size));
  const bool model_template = options.chat_template == "auto" && tokenizer && tokenizer->has_chat_template();
  const BuiltinChatTemplate* builtin_chat_template =
      model_template ? nullptr
                     : &find_builtin_chat_template(options.chat_template == "auto" ? "llama2" : options.chat_template);
  std::optional<FewShotPool> few_shot;
  if (options.few_shot.count > 0) {
    if (options.few_shot.file.empty())
      throw Error(path + ": few_shot " + std::to_string(options.few_shot.count) +
                  " needs a file of solved questions to draw from: set eval.few_shot_file");
    few_shot = read_few_shot_pool(options.few_shot.file);
  }
  const LoadContext context{tokenizer, options, vocab_size, builtin_chat_template, few_shot ? &*few_shot : nullptr};
  std::vector<Example> examples;
  for_each_record_line(path, [&](const std::string& line, const LineSource& source) {
    examples.push_back(example_from_line(line, source, context));
  });
  return examples;
}

LabelledLines read_labelled_lines(const std::string& path, const std::string& field) {
  LabelledLines data;
  for_each_record_line(path, [&](const std::string& line, const LineSource& source) {
    std::string label;
    if (!field.empty()) {
      const json record = parse_record(line, source);
      const auto value = record.find(field);
      if (value == record.end()) source.fail("no " + quoted(field) + " field to label the record by");
      label = value->is_string() ? value->get<std::string>() : value->dump();
    }
    data.lines.push_back(line);
    data.labels.push_back(std::move(label));
  });
  return data;
}

Batch make_batch(const std::vector<Example>& examples, std::span<const int64_t> indices, int32_t pad_id) {
  if (indices.empty()) throw Error("make_batch: no examples to batch");
  size_t longest = 0;
  for (const int64_t i : indices) {
    if (i < 0 || i >= static_cast<int64_t>(examples.size()))
      throw Error("make_batch: index " + std::to_string(i) + " outside the dataset of " +
                  std::to_string(examples.size()) + " examples");
    longest = std::max(longest, examples[i].input_ids.size());
  }
  const Shape shape{static_cast<int64_t>(indices.size()), static_cast<int64_t>(longest)};
  Batch batch{Tensor::empty(shape, DType::i32), Tensor::empty(shape, DType::i32)};
  int32_t* input_ids = batch.input_ids.as<int32_t>();
  int32_t* labels = batch.labels.as<int32_t>();
  // A tokenizer without a pad token still needs some id in the padding; its labels mask it anyway.
  std::fill_n(input_ids, shape.numel(), pad_id >= 0 ? pad_id : 0);
  std::fill_n(labels, shape.numel(), kIgnoreIndex);
  for (size_t row = 0; row < indices.size(); ++row) {
    const Example& example = examples[indices[row]];
    std::copy(example.input_ids.begin(), example.input_ids.end(), input_ids + row * longest);
    std::copy(example.labels.begin(), example.labels.end(), labels + row * longest);
  }
  return batch;
}

Batch rank_share(const Batch& global, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world)
    throw Error("rank_share: rank " + std::to_string(rank) + " of a world of " + std::to_string(world));
  const int64_t rows = global.input_ids.shape()[0];
  const int64_t begin = rows * rank / world, end = rows * (rank + 1) / world;
  return {global.input_ids.rows(begin, end), global.labels.rows(begin, end)};
}

BatchIterator::BatchIterator(const std::vector<Example>& examples, int64_t batch_size, uint64_t seed,
                             bool bucket_by_length, int32_t pad_id)
    : examples_(&examples), batch_size_(batch_size), seed_(seed), bucket_by_length_(bucket_by_length),
      pad_id_(pad_id) {
  if (examples.empty()) throw Error("BatchIterator: the dataset holds no examples");
  if (batch_size <= 0) throw Error("BatchIterator: batch_size must be positive, got " + std::to_string(batch_size));
  seek(0, 0);
}

Batch BatchIterator::next() {
  Batch batch = make_batch(*examples_, batches_[position_], pad_id_);
  if (++position_ == batches_per_epoch()) seek(epoch_ + 1, 0);
  return batch;
}

int64_t BatchIterator::epoch() const { return epoch_; }

int64_t BatchIterator::position() const { return position_; }

int64_t BatchIterator::batches_per_epoch() const {
  return (static_cast<int64_t>(examples_->size()) + batch_size_ - 1) / batch_size_;
}

void BatchIterator::seek(int64_t epoch, int64_t position) {
  if (epoch < 0 || position < 0 || position >= batches_per_epoch())
    throw Error("BatchIterator::seek: epoch " + std::to_string(epoch) + ", position " + std::to_string(position) +
                " is out of range (epochs from 0, positions in [0, " + std::to_string(batches_per_epoch()) + "))");
  epoch_ = epoch;
  position_ = position;
  batches_ = epoch_batches(*examples_, batch_size_, seed_, epoch_, bucket_by_length_);
}

}  // namespace fe
