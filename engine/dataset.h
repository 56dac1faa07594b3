// engine/dataset.h — JSONL datasets → token sequences with loss masks → padded batches.
//
// Formats (one JSON object per line; `format: auto` picks by the keys present):
//   text               {"text": ...}                         loss on every token
//   prompt_completion  {"prompt": ..., "completion": ...}    loss on the completion
//   alpaca             {"instruction", "input"?, "output"}  Stanford Alpaca prompt, loss on output
//   chat               {"messages": [{"role", "content"}]}   chat template, loss on assistant turns
//   tokenized          {"input_ids": [...], "labels"?: [...]} used as given (-100 = no loss)
// Unless train_on_prompt is set, the loss covers only completion / assistant tokens and the EOS
// that ends them; with it, every token but the leading BOS (never a prediction target). Sequences
// longer than max_seq_len are truncated (from the right). A line that does not parse, or lacks the
// keys of its format, is an error naming the file and the 1-based line number.
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

enum class DataFormat { auto_detect, text, prompt_completion, alpaca, chat, tokenized };
// "auto", "text", "prompt_completion", "alpaca", "chat", "tokenized"; an unknown name is an Error
// listing the valid ones.
DataFormat parse_data_format(std::string_view name);
const char* data_format_name(DataFormat format);

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
};

struct Example {
  std::vector<int32_t> input_ids;  // BOS + prompt + completion + EOS, truncated to max_seq_len
  std::vector<int32_t> labels;     // input_ids where the loss counts, -100 elsewhere
  int64_t prompt_length = 0;       // tokens before the completion: generation starts here
  std::string reference;           // completion text (exact-match evaluation); empty for text
  int64_t line = 0;                // 1-based line in the source file
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
