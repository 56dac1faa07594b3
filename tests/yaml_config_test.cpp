// YAML config reading: every getter, and every error naming the file, line:column, key path and
// what was expected; unknown-key detection with suggestions; overrides that keep each key's origin.
#include "engine/yaml_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "core/error.h"
#include "tests/test_files.h"
#include "tests/test_util.h"

namespace fe {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

const char* kTrain = R"(name: demo
train:
  lr: 3e-4
  weight_decay: 1e-3
  epochs: 3
  warmup: 2
  bf16: true
  shuffle: no
  optimizer: adamw
  targets: [q_proj, v_proj]
  milestones: [10, 20]
  betas: [0.9, 0.999]
)";

TEST(YamlConfig, ReadsEveryValueType) {
  const ConfigNode root = ConfigNode::parse(kTrain, "cfg.yaml");
  const ConfigNode train = root.child("train");
  EXPECT_EQ(root.require<std::string>("name"), "demo");
  EXPECT_DOUBLE_EQ(train.require<double>("lr"), 3e-4);
  EXPECT_DOUBLE_EQ(train.require<double>("weight_decay"), 1e-3);
  EXPECT_DOUBLE_EQ(train.require<double>("warmup"), 2.0);  // an integer is a number too
  EXPECT_EQ(train.require<int64_t>("epochs"), 3);
  EXPECT_TRUE(train.require<bool>("bf16"));
  EXPECT_FALSE(train.require<bool>("shuffle"));
  EXPECT_EQ(train.require<std::string>("optimizer"), "adamw");
  EXPECT_THAT(train.require<std::vector<std::string>>("targets"), ElementsAre("q_proj", "v_proj"));
  EXPECT_THAT(train.require<std::vector<int64_t>>("milestones"), ElementsAre(10, 20));
  EXPECT_THAT(train.require<std::vector<double>>("betas"), ElementsAre(0.9, 0.999));
  EXPECT_EQ(train.key_path(), "train");
  EXPECT_EQ(train.source(), "cfg.yaml");
  EXPECT_TRUE(train.has("lr"));
  EXPECT_FALSE(train.has("momentum"));
}

TEST(YamlConfig, DefaultsApplyToAbsentAndNullKeys) {
  const ConfigNode c = ConfigNode::parse("empty:\ntilde: ~\n", "cfg.yaml");
  EXPECT_EQ(c.get<int64_t>("missing", 7), 7);
  EXPECT_EQ(c.get<int64_t>("empty", 8), 8);
  EXPECT_DOUBLE_EQ(c.get<double>("tilde", 0.5), 0.5);
  EXPECT_TRUE(c.get<bool>("missing", true));
  EXPECT_EQ(c.get<std::string>("missing", "x"), "x");
  EXPECT_THAT(c.get<std::vector<int64_t>>("missing", {1, 2}), ElementsAre(1, 2));
  EXPECT_FALSE(c.has("empty"));
  EXPECT_EQ(c.child("missing").get<int64_t>("rank", 16), 16);
  EXPECT_EQ(c.child("missing").key_path(), "missing");
  EXPECT_TRUE(c.children_list("missing").empty());
  EXPECT_EQ(ConfigNode::parse("", "empty.yaml").get<int64_t>("x", 1), 1);
  EXPECT_EQ(ConfigNode().get<int64_t>("x", 2), 2);
}

TEST(YamlConfig, IsNullTellsAnExplicitNoneFromAnAbsentKeyAndReadsIt) {
  const ConfigNode c = ConfigNode::parse("tokenizer: null\nempty:\nset: 1\n", "cfg.yaml");
  EXPECT_TRUE(c.is_null("tokenizer"));
  EXPECT_TRUE(c.is_null("empty"));
  EXPECT_FALSE(c.is_null("set"));
  EXPECT_FALSE(c.is_null("missing"));
  EXPECT_EQ(c.get<int64_t>("set", 0), 1);
  EXPECT_NO_THROW(c.check_all_keys_used());  // a key asked about with is_null was read
}

TEST(YamlConfig, GetOptionalIsNulloptForAbsentAndNullKeys) {
  const ConfigNode c = ConfigNode::parse("add_bos: false\nadd_eos: null\nbad: 3\n", "cfg.yaml");
  EXPECT_EQ(c.get_optional<bool>("add_bos"), std::optional<bool>(false));
  EXPECT_EQ(c.get_optional<bool>("add_eos"), std::nullopt);
  EXPECT_EQ(c.get_optional<bool>("missing"), std::nullopt);
  EXPECT_THROW(c.get_optional<bool>("bad"), Error);
  EXPECT_NO_THROW(c.check_all_keys_used());
}

TEST(YamlConfig, WrongTypeNamesFileLineKeyAndExpectedType) {
  const ConfigNode train = ConfigNode::parse(R"(train:
  rank: 8
  lr: fast
  epochs: 1.5
  steps: abc
  quoted_lr: "1e-3"
  bf16: maybe
  name: {a: 1}
  targets: [q, [k]]
  ids: [1, 2.5]
  blank:
)",
                                             "cfg.yaml")
                               .child("train");
  EXPECT_THAT(test::error_of<Error>([&] { train.require<double>("lr"); }),
              HasSubstr("cfg.yaml:3:7: train.lr: expected a number, got \"fast\""));
  EXPECT_THAT(test::error_of<Error>([&] { train.get<int64_t>("epochs", 1); }),
              HasSubstr("cfg.yaml:4:11: train.epochs: expected an integer, got \"1.5\""));
  EXPECT_THAT(test::error_of<Error>([&] { train.get<int64_t>("steps", 1); }),
              HasSubstr("cfg.yaml:5:10: train.steps: expected an integer, got \"abc\""));
  EXPECT_THAT(test::error_of<Error>([&] { train.require<double>("quoted_lr"); }),
              HasSubstr("cfg.yaml:6:14: train.quoted_lr: expected a number"));
  EXPECT_THAT(test::error_of<Error>([&] { train.require<bool>("bf16"); }),
              HasSubstr("cfg.yaml:7:9: train.bf16: expected true or false, got \"maybe\""));
  EXPECT_THAT(test::error_of<Error>([&] { train.require<std::string>("name"); }),
              HasSubstr("cfg.yaml:8:9: train.name: expected a string, got a map"));
  EXPECT_THAT(test::error_of<Error>([&] { train.require<std::vector<std::string>>("rank"); }),
              HasSubstr("cfg.yaml:2:9: train.rank: expected a list of strings, got \"8\""));
  EXPECT_THAT(test::error_of<Error>([&] { train.require<std::vector<std::string>>("targets"); }),
              HasSubstr("cfg.yaml:9:16: train.targets[1]: expected a string, got a list"));
  EXPECT_THAT(test::error_of<Error>([&] { train.require<std::vector<int64_t>>("ids"); }),
              HasSubstr("cfg.yaml:10:12: train.ids[1]: expected an integer, got \"2.5\""));
  EXPECT_THAT(test::error_of<Error>([&] { train.require<double>("blank"); }),
              HasSubstr("cfg.yaml:11:3: train.blank: expected a number, got null"));
  EXPECT_THAT(test::error_of<Error>([&] { train.child("rank"); }),
              HasSubstr("cfg.yaml:2:9: train.rank: expected a map"));
}

TEST(YamlConfig, NumbersParseStrictly) {
  const ConfigNode c = ConfigNode::parse("a: -2\nb: +5\nc: .5\nd: 1e400\ne: inf\nf: 0x10\ng: 9223372036854775808\n", "n.yaml");
  EXPECT_EQ(c.require<int64_t>("a"), -2);
  EXPECT_EQ(c.require<int64_t>("b"), 5);
  EXPECT_DOUBLE_EQ(c.require<double>("c"), 0.5);
  EXPECT_THAT(test::error_of<Error>([&] { c.require<double>("d"); }), HasSubstr("n.yaml:4:4: d: expected a number"));
  EXPECT_THAT(test::error_of<Error>([&] { c.require<double>("e"); }), HasSubstr("e: expected a number"));
  EXPECT_THAT(test::error_of<Error>([&] { c.require<int64_t>("f"); }), HasSubstr("f: expected an integer"));
  EXPECT_THAT(test::error_of<Error>([&] { c.require<int64_t>("g"); }), HasSubstr("g: expected an integer"));
}

TEST(YamlConfig, MissingRequiredKeyNamesTheMapAndItsLine) {
  const ConfigNode root = ConfigNode::parse("name: x\ntrain:\n  epochs: 1\n", "cfg.yaml");
  EXPECT_THAT(test::error_of<Error>([&] { root.child("train").require<double>("lr"); }),
              HasSubstr("cfg.yaml:3:3: train: missing required key \"lr\""));
  EXPECT_THAT(test::error_of<Error>([&] { root.require<std::string>("model"); }),
              HasSubstr("cfg.yaml:1:1: missing required key \"model\""));
  EXPECT_THAT(test::error_of<Error>([&] { root.child("eval").require<int64_t>("every"); }),
              HasSubstr("cfg.yaml: eval: missing required key \"every\""));
}

TEST(YamlConfig, BoundsAreCheckedWithTheValueAsWritten) {
  const ConfigNode train = ConfigNode::parse("train:\n  lr: -1\n  rank: 0\n  dropout: 1.5\n", "cfg.yaml").child("train");
  EXPECT_THAT(test::error_of<Error>([&] { train.require<double>("lr", Bounds::greater_than(0)); }),
              HasSubstr("cfg.yaml:2:7: train.lr: must be > 0, got -1"));
  EXPECT_THAT(test::error_of<Error>([&] { train.get<int64_t>("rank", 8, Bounds::at_least(1)); }),
              HasSubstr("cfg.yaml:3:9: train.rank: must be >= 1, got 0"));
  EXPECT_THAT(test::error_of<Error>([&] { train.get<double>("dropout", 0.0, Bounds::between(0, 1)); }),
              HasSubstr("train.dropout: must be in [0, 1], got 1.5"));
  EXPECT_EQ(train.get<int64_t>("alpha", 16, Bounds::at_least(1)), 16);
  EXPECT_DOUBLE_EQ(train.require<double>("dropout", Bounds::at_most(2)), 1.5);
  EXPECT_EQ(Bounds({.min = 0, .max = 1, .min_exclusive = true}).str(), "in (0, 1]");
  EXPECT_EQ(Bounds({.max = 1e-6, .max_exclusive = true}).str(), "< 1e-06");
  EXPECT_FALSE(Bounds::greater_than(0).contains(0));
  EXPECT_TRUE(Bounds::at_least(0).contains(0));
}

TEST(YamlConfig, ChoicesListTheAllowedValues) {
  const ConfigNode c = ConfigNode::parse("optimizer: adamw\nscheduler: cosin\n", "cfg.yaml");
  EXPECT_EQ(c.get_choice("optimizer", {"adamw", "sgd"}, "sgd"), "adamw");
  EXPECT_EQ(c.get_choice("strategy", {"fedavg", "fedprox"}, "fedavg"), "fedavg");
  EXPECT_THAT(test::error_of<Error>([&] {
                c.require_choice("scheduler", {"cosine", "linear", "constant"});
              }),
              HasSubstr("cfg.yaml:2:12: scheduler: expected one of \"cosine\", \"linear\", \"constant\", "
                        "got \"cosin\" (did you mean \"cosine\"?)"));
  EXPECT_THAT(test::error_of<Error>([&] { c.require_choice("optimizer", {"sgd"}); }),
              AllOf(HasSubstr("expected one of \"sgd\", got \"adamw\""), Not(HasSubstr("did you mean"))));
}

TEST(YamlConfig, PathsResolveAgainstTheConfigDirectory) {
  test::TempDir dir;
  std::filesystem::create_directories(dir.path("model"));
  test::write_file(dir.path("train.jsonl"), "{}\n");
  test::write_file(dir.path("cfg.yaml"),
                   "data: train.jsonl\nmodel: model\nout: runs/a\nabs: /tmp\n"
                   "gone: nothere.jsonl\nempty: ''\n");
  const ConfigNode c = ConfigNode::load_file(dir.path("cfg.yaml"));
  EXPECT_EQ(c.existing_file("data"), dir.path("train.jsonl"));
  EXPECT_EQ(c.existing_dir("model"), dir.path("model"));
  EXPECT_EQ(c.get_path("out"), dir.path("runs/a"));
  EXPECT_EQ(c.require_path("abs"), "/tmp");
  EXPECT_EQ(c.get_path("log", "default.log"), "default.log");
  EXPECT_THAT(
      test::error_of<Error>([&] { c.existing_file("gone"); }),
      HasSubstr(dir.path("cfg.yaml") + ":5:7: gone: file \"" + dir.path("nothere.jsonl") + "\" does not exist"));
  EXPECT_THAT(test::error_of<Error>([&] { c.existing_file("model"); }),
              HasSubstr("model: \"" + dir.path("model") + "\" is not a file"));
  EXPECT_THAT(test::error_of<Error>([&] { c.existing_dir("data"); }),
              HasSubstr("data: \"" + dir.path("train.jsonl") + "\" is not a directory"));
  EXPECT_THAT(test::error_of<Error>([&] { c.existing_dir("missing"); }), HasSubstr("missing required key \"missing\""));
  EXPECT_THAT(test::error_of<Error>([&] { c.require_path("empty"); }), HasSubstr("empty: expected a path"));
}

TEST(YamlConfig, NestedMapsAndListsOfMapsCarryTheirPaths) {
  const ConfigNode root = ConfigNode::parse(R"(fed:
  participants:
    - name: a
      train: {lr: 1e-3}
    - name: b
    - 7
  rounds: 5
)",
                                            "cfg.yaml");
  const ConfigNode fed = root.child("fed");
  EXPECT_EQ(fed.require<int64_t>("rounds"), 5);
  EXPECT_THAT(test::error_of<Error>([&] { fed.children_list("participants"); }),
              HasSubstr("cfg.yaml:6:7: fed.participants[2]: expected a map, got \"7\""));
  EXPECT_THAT(test::error_of<Error>([&] { fed.children_list("rounds"); }),
              HasSubstr("cfg.yaml:7:11: fed.rounds: expected a list of maps, got \"5\""));
  const ConfigNode good = ConfigNode::parse("participants:\n  - name: a\n    train: {lr: 1e-3}\n  - {name: b}\n", "p.yaml");
  const std::vector<ConfigNode> participants = good.children_list("participants");
  ASSERT_EQ(participants.size(), 2u);
  EXPECT_EQ(participants[1].key_path(), "participants[1]");
  EXPECT_EQ(participants[1].require<std::string>("name"), "b");
  EXPECT_EQ(participants[0].child("train").key_path(), "participants[0].train");
  EXPECT_THAT(test::error_of<Error>([&] { participants[0].child("train").require<int64_t>("epochs"); }),
              HasSubstr("p.yaml:3:12: participants[0].train: missing required key \"epochs\""));
}

TEST(YamlConfig, UnknownKeysAreReportedWithSuggestions) {
  const ConfigNode root = ConfigNode::parse(R"(train:
  lr: 1e-3
  epochz: 2
  learning_rate: 0.1
  optimizer:
    name: adamw
    bta1: 0.8
trian: {}
)",
                                            "cfg.yaml");
  ConfigNode train = root.child("train");
  auto read_train = [](ConfigNode t) {  // by value: copies share the read bookkeeping
    t.require<double>("lr");
    t.get<int64_t>("epochs", 1);
    const ConfigNode optimizer = t.child("optimizer");
    optimizer.require<std::string>("name");
    optimizer.get<double>("beta1", 0.9);
  };
  read_train(train);
  const std::string error = test::error_of<Error>([&] { root.check_all_keys_used(); });
  EXPECT_THAT(error, HasSubstr("cfg.yaml:3:3: train.epochz: unknown key (did you mean \"epochs\"?)"));
  EXPECT_THAT(error, HasSubstr("cfg.yaml:4:3: train.learning_rate: unknown key (known keys here: "));
  EXPECT_THAT(error, HasSubstr("\"lr\""));
  EXPECT_THAT(error, HasSubstr("cfg.yaml:7:5: train.optimizer.bta1: unknown key (did you mean \"beta1\"?)"));
  EXPECT_THAT(error, HasSubstr("cfg.yaml:8:1: trian: unknown key (did you mean \"train\"?)"));
  EXPECT_THAT(error, Not(HasSubstr("train.lr:")));
}

// A key the program asked for in another section (the file lacks that section, or the key is in
// the wrong one) is pointed to there; has() makes a key known without reading it.
TEST(YamlConfig, AKeyInTheWrongSectionIsPointedToWhereItBelongs) {
  const ConfigNode root =
      ConfigNode::parse("tokenizer: t\ndata:\n  train: x\n  tokenizer: y\n  lr: 1\n  evl: z\n", "cfg.yaml");
  root.get<std::string>("tokenizer", "");
  const ConfigNode data = root.child("data");
  data.require<std::string>("train");
  EXPECT_FALSE(data.has("eval"));
  root.child("train").get<double>("lr", 1.0);  // a section the file lacks
  const std::string error = test::error_of<Error>([&] { root.check_all_keys_used(); });
  EXPECT_THAT(error,
              HasSubstr("cfg.yaml:4:3: data.tokenizer: unknown key (did you mean the top-level \"tokenizer\"?)"));
  EXPECT_THAT(error, HasSubstr("cfg.yaml:5:3: data.lr: unknown key (did you mean \"train.lr\"?)"));
  EXPECT_THAT(error, HasSubstr("cfg.yaml:6:3: data.evl: unknown key (did you mean \"eval\"?)"));
}

// When reading stops at a missing setting, a misspelling of it is the likely cause and comes
// first; other failures and the unknown-key check are as without read_checked.
TEST(YamlConfig, ReadCheckedPutsTheMisspellingOfAMissingSettingFirst) {
  const ConfigNode misspelled = ConfigNode::parse("train:\n  lr: 1\nmodle: m\n", "cfg.yaml");
  const std::string error = test::error_of<Error>([&] {
    misspelled.read_checked([&] {
      misspelled.child("train").require<double>("lr");
      misspelled.require<std::string>("model");
    });
  });
  EXPECT_THAT(error, StartsWith("cfg.yaml:3:1: modle: unknown key (did you mean \"model\"?)\n"));
  EXPECT_THAT(error, HasSubstr("missing required key \"model\""));

  const ConfigNode wrong_type = ConfigNode::parse("train:\n  lr: fast\n  epochz: 2\n", "cfg.yaml");
  EXPECT_EQ(
      test::error_of<Error>([&] { wrong_type.read_checked([&] { wrong_type.child("train").require<double>("lr"); }); }),
      "cfg.yaml:2:7: train.lr: expected a number, got \"fast\"");

  const ConfigNode extra = ConfigNode::parse("model: m\nextra: 1\n", "cfg.yaml");
  EXPECT_THAT(test::error_of<Error>([&] { extra.read_checked([&] { extra.require<std::string>("model"); }); }),
              HasSubstr("cfg.yaml:2:1: extra: unknown key"));
}

TEST(YamlConfig, AnUnreadSectionIsOneUnknownKeyAndIgnoreSkipsIt) {
  const ConfigNode root = ConfigNode::parse("train: {lr: 1}\nserver:\n  port: 1\n  host: x\n", "cfg.yaml");
  root.child("train").require<double>("lr");
  const std::string error = test::error_of<Error>([&] { root.check_all_keys_used(); });
  EXPECT_THAT(error, HasSubstr("cfg.yaml:2:1: server: unknown key"));
  EXPECT_THAT(error, Not(HasSubstr("server.port")));
  root.ignore("server");
  EXPECT_NO_THROW(root.check_all_keys_used());
}

TEST(YamlConfig, FailPointsAtAKeyOrItsMap) {
  const ConfigNode train = ConfigNode::parse("train:\n  epochs: 2\n  max_steps: 10\n", "cfg.yaml").child("train");
  EXPECT_THAT(test::error_of<Error>([&] { train.fail("max_steps", "give either epochs or max_steps"); }),
              HasSubstr("cfg.yaml:3:14: train.max_steps: give either epochs or max_steps"));
  EXPECT_THAT(test::error_of<Error>([&] { train.fail("data", "needed when epochs > 1"); }),
              HasSubstr("cfg.yaml:2:3: train.data: needed when epochs > 1"));
}

const char* kFederated = R"(train:
  lr: 1e-3
  epochs: 2
  targets: [q, v]
  optimizer: {name: adamw, beta1: 0.9}
participants:
  - name: a
  - name: b
    train:
      lr: 5e-4
      targets: [k]
      optimizer: {beta1: 0.8}
      epochz: 4
)";

TEST(YamlConfig, OverridesReplaceValuesAndMergeMaps) {
  const ConfigNode root = ConfigNode::parse(kFederated, "fed.yaml");
  const ConfigNode train = root.child("train");
  const std::vector<ConfigNode> participants = root.children_list("participants");
  const ConfigNode a = train.with_overrides(participants[0].child("train"));
  const ConfigNode b = train.with_overrides(participants[1].child("train"));
  EXPECT_DOUBLE_EQ(a.require<double>("lr"), 1e-3);
  EXPECT_DOUBLE_EQ(b.require<double>("lr"), 5e-4);
  EXPECT_EQ(b.require<int64_t>("epochs"), 2);
  EXPECT_THAT(b.require<std::vector<std::string>>("targets"), ElementsAre("k"));
  EXPECT_EQ(b.child("optimizer").require<std::string>("name"), "adamw");
  EXPECT_DOUBLE_EQ(b.child("optimizer").require<double>("beta1"), 0.8);
  EXPECT_DOUBLE_EQ(train.child("optimizer").require<double>("beta1"), 0.9);  // the base is unchanged
  EXPECT_THAT(test::error_of<Error>([&] { b.require<bool>("lr"); }),
              HasSubstr("fed.yaml:10:11: participants[1].train.lr: expected true or false"));
  EXPECT_THAT(test::error_of<Error>([&] { b.require<bool>("epochs"); }),
              HasSubstr("fed.yaml:3:11: train.epochs: expected true or false"));
}

TEST(YamlConfig, OverridesReportUnknownKeysWhereTheyWereWritten) {
  const ConfigNode root = ConfigNode::parse(kFederated, "fed.yaml");
  const ConfigNode train = root.child("train");
  for (const ConfigNode& p : root.children_list("participants")) {
    p.require<std::string>("name");
    const ConfigNode merged = train.with_overrides(p.child("train"));
    merged.require<double>("lr");
    merged.get<int64_t>("epochs", 1);
    merged.get<std::vector<std::string>>("targets", {});
    merged.child("optimizer").require<std::string>("name");
    merged.child("optimizer").get<double>("beta1", 0.9);
  }
  EXPECT_THAT(test::error_of<Error>([&] { root.check_all_keys_used(); }),
              AllOf(HasSubstr("fed.yaml:13:7: participants[1].train.epochz: unknown key (did you mean \"epochs\"?)"),
                    Not(HasSubstr("\n"))));
}

TEST(YamlConfig, OverridesFromAnotherFileResolvePathsThere) {
  test::TempDir dir;
  std::filesystem::create_directories(dir.path("site"));
  test::write_file(dir.path("base.jsonl"), "{}\n");
  test::write_file(dir.path("site/local.jsonl"), "{}\n");
  test::write_file(dir.path("base.yaml"), "data: base.jsonl\nmodel: m\n");
  test::write_file(dir.path("site/site.yaml"), "data: local.jsonl\n");
  const ConfigNode base = ConfigNode::load_file(dir.path("base.yaml"));
  const ConfigNode merged = base.with_overrides(ConfigNode::load_file(dir.path("site/site.yaml")));
  EXPECT_EQ(merged.existing_file("data"), dir.path("site/local.jsonl"));
  EXPECT_EQ(merged.get_path("model"), dir.path("m"));
}

TEST(YamlConfig, BadFilesNameTheFileAndLine) {
  EXPECT_THAT(test::error_of<Error>([] { ConfigNode::parse("train:\n  lr: [1, 2\n  epochs: 3\n", "bad.yaml"); }),
              AllOf(HasSubstr("bad.yaml:3:"), HasSubstr("invalid YAML")));
  EXPECT_THAT(test::error_of<Error>([] { ConfigNode::parse("a: 1\n  b: 2\n", "bad.yaml"); }),
              AllOf(HasSubstr("bad.yaml:2:"), HasSubstr("invalid YAML")));
  EXPECT_THAT(test::error_of<Error>([] { ConfigNode::parse("- a\n- b\n", "list.yaml"); }),
              HasSubstr("list.yaml:1:1: expected a map of settings at the top level, got a list"));
  EXPECT_THAT(test::error_of<Error>([] { ConfigNode::parse("train:\n  lr: 1\n  lr: 2\n", "dup.yaml"); }),
              HasSubstr("dup.yaml:3:3: train.lr: duplicate key (first given at line 2)"));
  EXPECT_THAT(test::error_of<Error>([] { ConfigNode::load_file("/nonexistent/cfg.yaml"); }),
              HasSubstr("cannot read config file \"/nonexistent/cfg.yaml\": No such file"));
  test::TempDir dir;
  EXPECT_THAT(test::error_of<Error>([&] { ConfigNode::load_file(dir.path()); }), HasSubstr("it is a directory"));
}

// The shipped configs run one after another (scripts/quickstart.sh, then the README's train and
// eval): each must read what an earlier step writes. Paths are compared as the configs resolve
// them, relative to their own files.
TEST(ShippedConfigs, EachReadsWhatAnEarlierQuickstartStepWrites) {
  const std::string configs = FE_SOURCE_DIR "/configs/";
  const auto config = [&](const char* file) { return ConfigNode::load_file(configs + file); };
  const auto normal = [](const std::string& path) { return std::filesystem::path(path).lexically_normal(); };
  const ConfigNode pretrain = config("quickstart-pretrain.yaml"), federation = config("quickstart.yaml"),
                   train = config("train.yaml"), eval = config("eval.yaml");
  const auto pretrained_model = normal(pretrain.child("output").get_path("dir")) / "model";
  const auto global_adapter = normal(federation.child("output").get_path("dir")) / "adapter";
  for (const ConfigNode* reader : {&federation, &train, &eval})
    EXPECT_EQ(normal(reader->get_path("model")), pretrained_model) << reader->source();
  EXPECT_EQ(normal(eval.child("adapter").get_path("init")), global_adapter);
  EXPECT_EQ(normal(eval.child("data").get_path("eval")), normal(federation.child("data").get_path("eval")));
}

}  // namespace
}  // namespace fe
