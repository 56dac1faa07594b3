// engine/dataset.h — JSONL datasets → token sequences with loss masks → padded batches.
//
// Formats (one JSON object per line; `format: auto` picks by the keys present):
//   text               {"text": ...}                         loss on every token
//   prompt_completion  {"prompt": ..., "completion": ...}    loss on the completion
//   alpaca             {"instruction", "input"?, "output"}  Stanford Alpaca prompt, loss on output
//   chat               {"messages": [{"role", "content"}]}   chat template, loss on assistant turns
//   tokenized          {"input_ids": [...], "labels"?: [...]} used as given (-100 = no loss)
//   multiple_choice    {"question", "choices": [...], "answer": index, "subject"?}  see below
// Unless train_on_prompt is set, the loss covers only completion / assistant tokens and the EOS
// that ends them; with it, every token but the leading BOS (never a prediction target). Sequences
// longer than max_seq_len are truncated (from the right). A line that does not parse, or lacks the
// keys of its format, is an error naming the file and the 1-based line number.
//
// Multiple-choice questions are laid out as lm-evaluation-harness lays out its default
// multiple-choice tasks (ARC's "Question: ...\nAnswer:", target_delimiter " ", fewshot_delimiter
// "\n\n"): the context is [BOS] + k solved questions ("Question: Q\nAnswer: CORRECT", each followed
// by a blank line) + "Question: Q\nAnswer:", and choice i continues it with " " + choices[i]. As
// lm-eval's _encode_pair and _loglikelihood_tokens do, the context and the context + continuation
// are each encoded whole, the choice's tokens are those of the second beyond the first's length
// (so a token that merges across the boundary belongs to the choice), and the model reads the
// context's own tokens followed by the choice's. BOS is added where the tokenizer adds one
// (data.add_bos overrides). A sequence longer than max_seq_len loses tokens from the left, as
// lm-eval truncates, so the choice survives: every choice must be shorter than max_seq_len. The
// Example of a question is its context followed by the correct choice (and EOS, as a completion
// gets): what training on such a file learns and what the eval loss measures. The generation
// prompt letters the choices as lm-eval's MMLU does ("Question: Q\nA. c0\nB. c1\n...\nAnswer:",
// solved questions answered " B"; FlowerTune lists them the same way), for scoring a generated
// answer letter. k-shot prompts (FewShotOptions) draw k distinct solved questions from a dev file,
// never the question itself: of the question's subject when the file holds k others of it, else of
// the whole file, by a seeded draw per question.
// With multiple_choice_prompt chat, that text (solved questions and the question) is one user turn
// laid out by the model's own chat template with its generation prompt (lm-eval's
// --apply_chat_template, without its option of a turn per solved question), and each choice
// follows without the leading space; whitespace that ends the rendered prompt moves to the start
// of the choice, as _encode_pair moves it; BOS only when add_bos is set (the template writes what
// the model wants).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tensor.h"
#include "tokenizer/tokenizer.h"

namespace fe {

enum class DataFormat { auto_detect, text, prompt_completion, alpaca, chat, tokenized, multiple_choice };
// "auto", "text", "prompt_completion", "alpaca", "chat", "tokenized", "multiple_choice"; an unknown
// name is an Error listing the valid ones.
DataFormat parse_data_format(std::string_view name);
const char* data_format_name(DataFormat format);

// Solved questions before each multiple-choice question (lm-eval's num_fewshot).
struct FewShotOptions {
  int64_t count = 0;  // 0: zero-shot
  std::string file;   // the dev split (multiple-choice JSONL) they are drawn from; needed when count > 0
  uint64_t seed = 0;  // the draw for the question on line L depends only on (seed, L)
};

// How multiple-choice questions are put to the model: as plain text (lm-eval's default) or as a
// user turn of the model's chat template.
enum class MultipleChoicePrompt { plain, chat };

struct DataOptions {
  DataFormat format = DataFormat::auto_detect;
  int64_t max_seq_len = 512;
  bool train_on_prompt = false;
  // "auto": the tokenizer's own template (tokenizer_config.json's chat_template, rendered as HF's
  // apply_chat_template does) when it has one, else llama2; or a built-in: "llama2", "chatml",
  // "plain".
  std::string chat_template = "auto";
  // Unset: what the model expects. BOS where the tokenizer adds one (Tokenizer::add_bos), EOS after
  // every completion; a chat laid out by the model's own template gets neither (the template
  // writes the special tokens it wants, as apply_chat_template does). true: add the token (BOS
  // only where the sequence does not already start with it); false: add none (what a model's
  // template writes stays).
  std::optional<bool> add_bos, add_eos;
  FewShotOptions few_shot;  // multiple-choice records only
  MultipleChoicePrompt multiple_choice_prompt = MultipleChoicePrompt::plain;
};

// A multiple-choice question, tokenized for scoring (the layout at the top of this file).
struct MultipleChoice {
  // Per choice: context + choice, left-truncated to max_seq_len, and how many of its last tokens
  // are the choice's (the tokens whose log-probabilities are summed).
  std::vector<std::vector<int32_t>> sequences;
  std::vector<int64_t> choice_tokens;
  // Per choice: its text's length in Unicode code points, what lm-eval's acc_norm divides by
  // (Python's len() of the choice string, without the leading space).
  std::vector<int64_t> choice_chars;
  int64_t answer = 0;                      // index of the correct choice
  std::string subject;                     // "" when the record has none
  std::vector<int32_t> generation_prompt;  // lettered choices, left-truncated to max_seq_len
};

struct Example {
  std::vector<int32_t> input_ids;  // BOS + prompt + completion + EOS, truncated to max_seq_len
  std::vector<int32_t> labels;     // input_ids where the loss counts, -100 elsewhere
  int64_t prompt_length = 0;       // tokens before the completion: generation starts here
  std::string reference;           // completion text (exact-match evaluation); empty for text
  int64_t line = 0;                // 1-based line in the source file
  std::optional<MultipleChoice> multiple_choice;  // set for multiple-choice records
};

// tokenizer may be null only for the tokenized format. Token ids of tokenized records must lie in
// [0, vocab_size): the model's vocab_size, the rows of its embedding (models often pad their
// vocabulary beyond the tokenizer's).
std::vector<Example> load_jsonl(const std::string& path, const Tokenizer* tokenizer, const DataOptions& options,
                                int64_t vocab_size);

// A JSONL file's non-blank lines as they are, each with a label: the value of `field` in its
// record, a string as it is and any other value as its JSON text ("3", "true"). With an empty
// `field` the lines are not parsed and every label is "". What splitting a data set by category
// needs (fedengine split). Errors name the file and the 1-based line, as load_jsonl's do.
struct LabelledLines {
  std::vector<std::string> lines, labels;
};
LabelledLines read_labelled_lines(const std::string& path, const std::string& field);

struct Batch {
  Tensor input_ids;  // i32 [B, T], right-padded with pad_id
  Tensor labels;     // i32 [B, T], -100 on padding
};

// Stacks examples[i] for each i in `indices` into one batch, padded to its longest member.
Batch make_batch(const std::vector<Example>& examples, std::span<const int64_t> indices, int32_t pad_id);

// Rank `rank` of `world`'s rows of a global micro-batch: a contiguous share, as even as the rows
// allow (rows [rank·B/world, (rank+1)·B/world)), so the ranks together hold every row once. A
// share may be empty (shape [0, T]) when the batch has fewer rows than ranks.
Batch rank_share(const Batch& global, int rank, int world);

// Endless micro-batches over a dataset. Each epoch is a fresh permutation drawn from (seed,
// epoch), so a run is reproducible and resumable from (epoch, position). With length bucketing,
// the permutation is cut into windows of a few dozen batches and each window is sorted by length
// before it is split into batches (then the batches of the window are shuffled), so a batch holds
// examples of similar length and pads little. The last batch of an epoch may be smaller.
// The iterator refers to `examples`, which must outlive it.
class BatchIterator {
 public:
  BatchIterator(const std::vector<Example>& examples, int64_t batch_size, uint64_t seed,
                bool bucket_by_length, int32_t pad_id);
  Batch next();
  int64_t epoch() const;              // 0-based epoch of the batch next() returns
  int64_t position() const;           // batches of that epoch already returned
  int64_t batches_per_epoch() const;
  // Continues exactly where an iterator with the same arguments stood at (epoch, position): how a
  // run resumes from a checkpoint.
  void seek(int64_t epoch, int64_t position);

 private:
  const std::vector<Example>* examples_;
  int64_t batch_size_;
  uint64_t seed_;
  bool bucket_by_length_;
  int32_t pad_id_;
  int64_t epoch_ = 0;
  int64_t position_ = 0;
  std::vector<std::vector<int64_t>> batches_;  // the current epoch's batches, as example indices
};

}  // namespace fe
