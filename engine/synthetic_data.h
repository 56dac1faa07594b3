// engine/synthetic_data.h — small digit-sequence tasks the project generates for its tests, the
// quickstart and experiments (no data set can be downloaded where fedengine is built).
//
// An example is a prompt "TASK d1 d2 … dn =" with a completion:
//   copy     "copy 3 1 4 ="    → "3 1 4"
//   reverse  "reverse 3 1 4 =" → "4 1 3"
//   shift    "shift 3 1 4 ="   → "4 2 5"   (each digit + 1, mod 10)
// Evaluation prompts never occur in the training split (held out), so exact match on them
// measures the skill, not memory.
#pragma once

#include <string>
#include <vector>

namespace fe {

enum class SyntheticTask { copy, reverse, shift };
inline constexpr SyntheticTask kSyntheticTasks[] = {SyntheticTask::copy, SyntheticTask::reverse, SyntheticTask::shift};
const char* synthetic_task_name(SyntheticTask task);

struct SyntheticOptions {
  int64_t train_examples = 4000;
  int64_t eval_examples = 200;
  int64_t min_digits = 4;  // one fixed length: a 2-layer model learns it in seconds
  int64_t max_digits = 4;
  uint64_t seed = 0;
  int vocab_size = 300;  // of the SentencePiece tokenizer trained on the corpus
  int64_t shards = 0;    // > 0: also split each train set into this many disjoint participant files
};

struct PromptCompletion {
  std::string prompt, completion;
};

struct SyntheticSplit {
  std::vector<PromptCompletion> train, eval;
};

SyntheticSplit make_synthetic_split(SyntheticTask task, const SyntheticOptions& options);

// Writes dir/<task>/train.jsonl and dir/<task>/eval.jsonl for every task (prompt/completion
// format), dir/<task>/train.shard-K.jsonl (K < shards; example i goes to shard i mod shards) when
// shards > 0, and dir/tokenizer.model trained on all of them.
void write_synthetic_suite(const std::string& dir, const SyntheticOptions& options);

}  // namespace fe
