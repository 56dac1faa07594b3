// tests/chat_template_test.cpp — fe::ChatTemplate against Debian's python3-jinja2 in HF's
// environment (tests/reference/jinja_reference.py, run here on the same templates and contexts):
// chat templates of the kinds real models ship (Llama 2, 3, 3.1 with tools, ChatML/SmolLM2,
// Mistral v0.1 and v0.3 with tools, Qwen2.5 with tools, Gemma, a DeepSeek-R1-style one), each on
// several conversations, and focused templates for the language (whitespace control, loops,
// expressions and Python reprs, filters, tests, methods, macros and blocks). Output must be
// byte-identical; where Python raises, ChatTemplate must throw too (with the same message for
// raise_exception). Error messages must name the template's origin, line and column.
#include "tokenizer/chat_template.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/reference_env.h"
#include "tests/test_files.h"
#include "tests/test_util.h"

namespace fe {
namespace {

using ::testing::AnyOf;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr const char* kOrigin = "model/tokenizer_config.json: chat_template";

// python3-jinja2 is a Debian package for the system python (scripts/setup.sh installs it).
bool have_jinja2() {
  static const bool found = std::system("/usr/bin/python3 -c 'import jinja2' >/dev/null 2>&1") == 0;
  return found;
}

#define NEED_JINJA2()                                                                              \
  FE_NEED_OR_SKIP(have_jinja2(), "/usr/bin/python3 cannot import jinja2", "FE_REQUIRE_REFERENCES", \
                  "Debian: python3-jinja2, scripts/setup.sh")

struct Conversation {
  const char* context;  // JSON object of template variables
  bool raises = false;  // Python raises on it (raise_exception, a type error...)
};

struct TemplateCase {
  const char* name;
  const char* source;
  std::vector<Conversation> conversations;
};

struct ReferenceResult {
  bool ok = false;
  std::string output;  // the rendered text, or Python's error message
  std::string type;    // the exception's class when !ok
};

// Renders every (template, conversation) pair with the Python reference, in one process.
std::vector<ReferenceResult> reference_render(const std::vector<TemplateCase>& cases) {
  test::TempDir dir;
  nlohmann::ordered_json input = {{"cases", nlohmann::ordered_json::array()}};
  for (const TemplateCase& c : cases)
    for (const Conversation& conversation : c.conversations)
      input["cases"].push_back(
          {{"template", c.source}, {"context", nlohmann::ordered_json::parse(conversation.context)}});
  std::ofstream(dir.path("cases.json")) << input.dump();
  const std::string command = "OMP_NUM_THREADS=1 /usr/bin/python3 " FE_SOURCE_DIR
                              "/tests/reference/jinja_reference.py " +
                              dir.path("cases.json") + " " + dir.path("results.json") + " 2>" + dir.path("stderr.txt");
  if (std::system(command.c_str()) != 0) {
    std::ifstream err(dir.path("stderr.txt"));
    std::stringstream text;
    text << err.rdbuf();
    throw std::runtime_error("jinja_reference.py failed: " + text.str());
  }
  std::ifstream in(dir.path("results.json"));
  const nlohmann::json results = nlohmann::json::parse(in);
  std::vector<ReferenceResult> out;
  for (const auto& r : results) {
    if (r.contains("output"))
      out.push_back({true, r["output"].get<std::string>(), ""});
    else
      out.push_back({false, r["error"].get<std::string>(), r["type"].get<std::string>()});
  }
  return out;
}

// Where two texts first differ, with both sides escaped, for a readable failure.
std::string first_difference(const std::string& ours, const std::string& theirs) {
  size_t i = 0;
  while (i < ours.size() && i < theirs.size() && ours[i] == theirs[i]) ++i;
  const size_t from = i > 40 ? i - 40 : 0;
  return "first difference at byte " + std::to_string(i) + "\n  ours:   " +
         nlohmann::json(ours.substr(from, 100)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n  python: " +
         nlohmann::json(theirs.substr(from, 100)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Every conversation of every template renders byte-identically to python3-jinja2, or throws
// where it raises.
void expect_same_as_jinja2(const std::vector<TemplateCase>& cases) {
  const std::vector<ReferenceResult> reference = reference_render(cases);
  size_t k = 0;
  for (const TemplateCase& c : cases) {
    for (size_t n = 0; n < c.conversations.size(); ++n, ++k) {
      const Conversation& conversation = c.conversations[n];
      const ReferenceResult& expected = reference.at(k);
      SCOPED_TRACE(std::string(c.name) + ", conversation " + std::to_string(n) + ": " + conversation.context);
      ASSERT_EQ(expected.ok, !conversation.raises)
          << "the reference " << (expected.ok ? "rendered" : "raised " + expected.type + ": " + expected.output)
          << ", the test expects otherwise";
      std::string ours;
      try {
        ours = ChatTemplate(c.source, kOrigin).render(nlohmann::ordered_json::parse(conversation.context));
      } catch (const std::exception& e) {
        if (expected.ok) {
          ADD_FAILURE() << "threw: " << e.what();
        } else if (expected.type == "TemplateError") {  // raise_exception: the template's own message
          EXPECT_THAT(e.what(), EndsWith(": " + expected.output));
        }
        continue;
      }
      if (!expected.ok) {
        ADD_FAILURE() << "rendered, but Python raised " << expected.type << ": " << expected.output;
        continue;
      }
      EXPECT_TRUE(ours == expected.output) << first_difference(ours, expected.output);
    }
  }
}

// --- conversations shared by the chat templates -----------------------------------------------

constexpr const char* kSystemUser = R"json({"messages": [
  {"role": "system", "content": "You are a helpful assistant."},
  {"role": "user", "content": "What is the capital of France?"}],
  "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"})json";

constexpr const char* kUserOnly = R"json({"messages": [
  {"role": "user", "content": "Hello!"}],
  "add_generation_prompt": false, "bos_token": "<s>", "eos_token": "</s>"})json";

constexpr const char* kMultiTurn = R"json({"messages": [
  {"role": "system", "content": "  Answer briefly; use {{braces}} and {% tags %} literally.  "},
  {"role": "user", "content": "Café, naïve, 東京, 😀 — \"quotes\" and 'apostrophes'\nsecond line\n"},
  {"role": "assistant", "content": "  Noted: {'a': 1} [x] \\ backslash  "},
  {"role": "user", "content": "Continue\twith a tab"}],
  "add_generation_prompt": true, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})json";

constexpr const char* kNoSystemMultiTurn = R"json({"messages": [
  {"role": "user", "content": "2+2?"},
  {"role": "assistant", "content": "4"},
  {"role": "user", "content": "And 3+3?"}],
  "add_generation_prompt": false, "bos_token": "<s>", "eos_token": "</s>"})json";

constexpr const char* kNotAlternating = R"json({"messages": [
  {"role": "user", "content": "one"},
  {"role": "user", "content": "two"}],
  "bos_token": "<s>", "eos_token": "</s>"})json";

// --- chat templates of the kinds models ship ---------------------------------------------------

// SmolLM2-135M-Instruct's template, verbatim.
constexpr const char* kSmolLM2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou "
    "are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + "
    "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt "
    "%}{{ '<|im_start|>assistant\\n' }}{% endif %}";

constexpr const char* kLlama3 =
    R"jinja({% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>

'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>

' }}{% endif %})jinja";

constexpr const char* kLlama31 = R"jinja({{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)jinja";

constexpr const char* kWeatherTool = R"json({"type": "function", "function": {"name": "get_current_weather",
  "description": "Get the current weather in a given location", "parameters": {"type": "object",
  "properties": {"location": {"type": "string", "description": "The city, e.g. \"San Francisco, CA\""},
  "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]},
  "return": {"type": "number", "description": "degrees"}}})json";

std::string with_tools(const std::string& body) {
  return std::string(R"json({"tools": [)json") + kWeatherTool + "], " + body;
}

// A tool-calling conversation: the call, its result, the answer.
const std::string kToolConversation = with_tools(R"json("messages": [
  {"role": "system", "content": "You can call tools."},
  {"role": "user", "content": "Weather in Paris?"},
  {"role": "assistant", "tool_calls": [{"id": "call12345", "type": "function",
    "function": {"name": "get_current_weather", "arguments": {"location": "Paris, France", "unit": "celsius"}}}]},
  {"role": "tool", "tool_call_id": "call12345", "content": "22.5"},
  {"role": "assistant", "content": "It is 22.5 °C in Paris."}],
  "add_generation_prompt": true, "bos_token": "<|begin_of_text|>", "eos_token": "</s>",
  "date_string": "03 Dec 2025"})json");

const std::string kToolsInSystem = with_tools(R"json("messages": [
  {"role": "user", "content": "Weather in Oslo?"}],
  "tools_in_user_message": false, "add_generation_prompt": true, "bos_token": "<|begin_of_text|>"})json");

const std::string kBuiltinTools = R"json({"messages": [
  {"role": "user", "content": "Search the news"},
  {"role": "assistant", "tool_calls": [{"function": {"name": "brave_search", "arguments": {"query": "news"}}}]},
  {"role": "ipython", "content": {"results": ["a", "b"]}}],
  "builtin_tools": ["brave_search", "code_interpreter", "wolfram_alpha"], "bos_token": "<|begin_of_text|>"})json";

const std::string kTwoToolCalls = with_tools(R"json("messages": [
  {"role": "user", "content": "Two cities"},
  {"role": "assistant", "tool_calls": [{"function": {"name": "a", "arguments": {}}}, {"function": {"name": "b", "arguments": {}}}]}],
  "bos_token": "<|begin_of_text|>"})json");

constexpr const char* kMistral =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are "
    "supported!') }}{% endif %}{% endfor %}";

constexpr const char* kMistralV3 = R"jinja({%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
)jinja";

const std::string kMistralToolResultDict = with_tools(R"json("messages": [
  {"role": "user", "content": "Weather?"},
  {"role": "assistant", "tool_calls": [{"id": "abcdefghi", "function": {"name": "get_current_weather", "arguments": {"location": "Rome"}}}]},
  {"role": "tool", "tool_call_id": "abcdefghi", "content": {"content": {"temp": 21.0, "sky": "clear", "ok": true, "n": null}}},
  {"role": "assistant", "content": " Sunny. "}, {"role": "user", "content": "Thanks"}],
  "bos_token": "<s>", "eos_token": "</s>"})json");

const std::string kMistralBadToolId = with_tools(R"json("messages": [
  {"role": "user", "content": "Weather?"},
  {"role": "assistant", "tool_calls": [{"id": "short", "function": {"name": "f", "arguments": {}}}]}],
  "bos_token": "<s>", "eos_token": "</s>"})json");

constexpr const char* kQwen25 = R"jinja({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
)jinja";

const std::string kQwenParallelTools = with_tools(R"json("messages": [
  {"role": "user", "content": "Paris and Oslo?"},
  {"role": "assistant", "content": "Checking both.", "tool_calls": [
    {"type": "function", "function": {"name": "get_current_weather", "arguments": {"location": "Paris"}}},
    {"name": "get_current_weather", "arguments": {"location": "Oslo", "unit": "celsius"}}]},
  {"role": "tool", "content": "{\"temp\": 20}"},
  {"role": "tool", "content": "{\"temp\": 5}"}],
  "add_generation_prompt": true})json");

constexpr const char* kLlama2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif "
    "%}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] "
    "== 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

constexpr const char* kGemma =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% "
    "endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "(message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif "
    "%}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if "
    "add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}";

constexpr const char* kGemma3 = R"jinja({{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
)jinja";

constexpr const char* kGemma3Parts = R"json({"messages": [
  {"role": "system", "content": [{"type": "text", "text": "Be terse."}]},
  {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "  What is this?  "}]},
  {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]}],
  "add_generation_prompt": true, "bos_token": "<bos>"})json";

constexpr const char* kDeepSeekR1 =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = "
    "namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}{%- for message in messages "
    "%}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor "
    "%}{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set "
    "ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and "
    "message['content'] is not none %}{% set content = message['content'] %}{% if '</think>' in content %}{% set "
    "content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + "
    "'<｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor -%}{% if add_generation_prompt "
    "%}{{'<｜Assistant｜><think>\\n'}}{% "
    "endif %}";

constexpr const char* kReasoningTurns = R"json({"messages": [
  {"role": "system", "content": "Think first."},
  {"role": "user", "content": "1+1?"},
  {"role": "assistant", "content": "<think>\nsimple\n</think>\n\n2"},
  {"role": "user", "content": "Sure?"}],
  "add_generation_prompt": true, "bos_token": "<｜begin▁of▁sentence｜>"})json";

// NousResearch Hermes-2-Pro style tool use: a recursive macro turns JSON schemas into Python type
// names (`json_spec.items` is dict.items, a method, so arrays come out as "list[Union[]]", as in
// Python).
constexpr const char* kHermesTools = R"jinja({%- macro json_to_python_type(json_spec) %}
{%- set basic_type_map = {
    "string": "str",
    "number": "float",
    "integer": "int",
    "boolean": "bool"
} %}

{%- if basic_type_map[json_spec.type] is defined %}
    {{- basic_type_map[json_spec.type] }}
{%- elif json_spec.type == "array" %}
    {{- "list[" +  json_to_python_type(json_spec.items) + "]"}}
{%- elif json_spec.type == "object" %}
    {%- if json_spec.additionalProperties is defined %}
        {{- "dict[str, " + json_to_python_type(json_spec.additionalProperties) + ']'}}
    {%- else %}
        {{- "dict" }}
    {%- endif %}
{%- elif json_spec.type is iterable %}
    {{- "Union[" }}
    {%- for t in json_spec.type %}
      {{- json_to_python_type({"type": t}) }}
      {%- if not loop.last %}
        {{- "," }}
    {%- endif %}
    {%- endfor %}
    {{- "]" }}
{%- else %}
    {{- "Any" }}
{%- endif %}
{%- endmacro %}


{{- bos_token }}
{{- '<|im_start|>system\n' }}
{{- "You are a function calling AI model. You are provided with function signatures within <tools></tools> XML tags. You may call one or more functions to assist with the user query. Don't make assumptions about what values to plug into functions. Here are the available tools: <tools> " }}
{%- for tool in tools %}
    {%- if tool.function is defined %}
        {%- set tool = tool.function %}
    {%- endif %}
    {{- '{"type": "function", "function": ' }}
    {{- '{"name": "' + tool.name + '", ' }}
    {{- '"description": "' + tool.name + '(' }}
    {%- for param_name, param_fields in tool.parameters.properties|items %}
        {{- param_name + ": " + json_to_python_type(param_fields) }}
        {%- if not loop.last %}
            {{- ", " }}
        {%- endif %}
    {%- endfor %}
    {{- ")" }}
    {%- if tool.return is defined %}
        {{- " -> " + json_to_python_type(tool.return) }}
    {%- endif %}
    {{- " - " + tool.description + "\n\n" }}
    {%- for param_name, param_fields in tool.parameters.properties|items %}
        {%- if loop.first %}
            {{- "    Args:\n" }}
        {%- endif %}
        {{- "        " + param_name + "(" + json_to_python_type(param_fields) + "): " + param_fields.description|trim }}
    {%- endfor %}
    {%- if tool.return is defined and tool.return.description is defined %}
        {{- "\n    Returns:\n        " + tool.return.description }}
    {%- endif %}
    {{- '"' }}
    {{- ', "parameters": ' }}
    {%- if tool.parameters.properties | length == 0 %}
        {{- "{}" }}
    {%- else %}
        {{- tool.parameters|tojson }}
    {%- endif %}
    {{- "}" }}
    {%- if not loop.last %}
        {{- "\n" }}
    {%- endif %}
{%- endfor %}
{{- " </tools>" }}
{{- 'Use the following pydantic model json schema for each tool call you will make: {"properties": {"name": {"title": "Name", "type": "string"}, "arguments": {"title": "Arguments", "type": "object"}}, "required": ["name", "arguments"], "title": "FunctionCall", "type": "object"}\n' }}
{%- for message in messages %}
    {%- if message.role == "user" or message.role == "system" or (message.role == "assistant" and message.tool_calls is not defined) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
    {%- for tool_call in message.tool_calls %}
       {{- '\n<tool_call>\n' }}           {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '{' }}
            {{- '"name": "' }}
            {{- tool_call.name }}
            {{- '"' }}
            {{- ', '}}
            {%- if tool_call.arguments is defined %}
                {{- '"arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments|tojson }}
                {%- endif %}
            {%- endif %}
             {{- '}' }}
            {{- '\n</tool_call>' }}
    {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.previtem and loop.previtem.role != "tool" %}
            {{- '<|im_start|>tool\n' }}
        {%- endif %}
        {{- '<tool_response>\n' }}
        {{- message.content }}
        {%- if not loop.last %}
            {{- '\n</tool_response>\n' }}
        {%- else %}
            {{- '\n</tool_response>' }}
        {%- endif %}
        {%- if not loop.last and loop.nextitem.role != "tool" %}
            {{- '<|im_end|>' }}
        {%- elif loop.last %}
            {{- '<|im_end|>' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
)jinja";

constexpr const char* kHermesConversation = R"json({"tools": [
  {"type": "function", "function": {"name": "get_stock", "description": "Get the stock price.", "parameters": {
    "type": "object", "properties": {"symbol": {"type": "string", "description": " The ticker. "},
    "days": {"type": "integer", "description": "Days"}, "tags": {"type": "array", "items": {"type": "string"},
    "description": "Tags"}, "opts": {"type": "object", "additionalProperties": {"type": "number"}, "description":
    "Options"}, "either": {"type": ["string", "boolean"], "description": "Either"}}, "required": ["symbol"]},
    "return": {"type": "number", "description": "The price."}}},
  {"name": "noargs", "description": "No args", "parameters": {"type": "object", "properties": {}}}],
  "messages": [{"role": "user", "content": "Price of AAPL?"},
    {"role": "assistant", "tool_calls": [{"function": {"name": "get_stock", "arguments": {"symbol": "AAPL"}}},
      {"name": "noargs", "arguments": "{}"}]},
    {"role": "tool", "content": "190.5"}, {"role": "tool", "content": "ok"},
    {"role": "assistant", "content": "It is 190.5."}],
  "bos_token": "<s>", "add_generation_prompt": true})json";

// Without tools the template iterates None (a TypeError). A schema type "null" is a string the
// macro iterates character by character, forever: Python stops at its recursion limit, the
// interpreter at its own.
constexpr const char* kHermesEndlessRecursion = R"json({"tools": [{"name": "f", "description": "d",
  "parameters": {"type": "object", "properties": {"x": {"type": ["null"], "description": "x"}}}}],
  "messages": [{"role": "user", "content": "hi"}]})json";

TEST(ChatTemplateReference, SmolLM2ChatML) {
  NEED_JINJA2();
  expect_same_as_jinja2({{"smollm2", kSmolLM2, {{kSystemUser}, {kUserOnly}, {kMultiTurn}, {kNoSystemMultiTurn}}}});
}

TEST(ChatTemplateReference, Llama3) {
  NEED_JINJA2();
  expect_same_as_jinja2({{"llama3", kLlama3, {{kSystemUser}, {kUserOnly}, {kMultiTurn}, {kNoSystemMultiTurn}}}});
}

TEST(ChatTemplateReference, Llama31WithTools) {
  NEED_JINJA2();
  expect_same_as_jinja2({{"llama3.1",
                          kLlama31,
                          {{kSystemUser},
                           {kUserOnly},
                           {kMultiTurn},
                           {kToolConversation.c_str()},
                           {kToolsInSystem.c_str()},
                           {kBuiltinTools.c_str()},
                           {kTwoToolCalls.c_str(), true}}}});
}

TEST(ChatTemplateReference, Mistral) {
  NEED_JINJA2();
  expect_same_as_jinja2(
      {{"mistral-v0.1", kMistral, {{kUserOnly}, {kNoSystemMultiTurn}, {kSystemUser, true}, {kNotAlternating, true}}},
       {"mistral-v0.3",
        kMistralV3,
        {{kSystemUser},
         {kNoSystemMultiTurn},
         {kMultiTurn},
         {kMistralToolResultDict.c_str()},
         {kMistralBadToolId.c_str(), true},
         {kNotAlternating, true}}}});
}

TEST(ChatTemplateReference, Qwen25WithTools) {
  NEED_JINJA2();
  expect_same_as_jinja2(
      {{"qwen2.5",
        kQwen25,
        {{kSystemUser}, {kUserOnly}, {kMultiTurn}, {kToolConversation.c_str()}, {kQwenParallelTools.c_str()}}}});
}

TEST(ChatTemplateReference, Llama2SystemFoldedIntoFirstUserTurn) {
  NEED_JINJA2();
  expect_same_as_jinja2(
      {{"llama2", kLlama2, {{kSystemUser}, {kUserOnly}, {kMultiTurn}, {kNoSystemMultiTurn}, {kNotAlternating, true}}}});
}

TEST(ChatTemplateReference, GemmaRoleRenames) {
  NEED_JINJA2();
  expect_same_as_jinja2(
      {{"gemma", kGemma, {{kUserOnly}, {kNoSystemMultiTurn}, {kSystemUser, true}}},
       {"gemma3",
        kGemma3,
        {{kSystemUser}, {kMultiTurn}, {kNoSystemMultiTurn}, {kGemma3Parts}, {kNotAlternating, true}}}});
}

TEST(ChatTemplateReference, DeepSeekR1StyleDropsThinking) {
  NEED_JINJA2();
  expect_same_as_jinja2({{"deepseek-r1", kDeepSeekR1, {{kReasoningTurns}, {kUserOnly}, {kMultiTurn}}}});
}

TEST(ChatTemplateReference, HermesToolUseWithRecursiveMacro) {
  NEED_JINJA2();
  expect_same_as_jinja2(
      {{"hermes-2-pro", kHermesTools, {{kHermesConversation}, {kSystemUser, true}, {kHermesEndlessRecursion, true}}}});
}

// --- the language, template by template -------------------------------------------------------

constexpr const char* kEmpty = "{}";

TemplateCase plain(const char* name, const char* source) { return {name, source, {{kEmpty}}}; }
TemplateCase raising(const char* name, const char* source) { return {name, source, {{kEmpty, true}}}; }

TEST(ChatTemplateReference, WhitespaceControl) {
  NEED_JINJA2();
  expect_same_as_jinja2({
      plain("trim_blocks", "a\n{% if true %}\nb\n{% endif %}\nc"),
      plain("lstrip_blocks", "a\n  {% if true %}\n  b\n  {% endif %}\nc"),
      plain("minus both sides", "a  {%- if true -%}  b  {%- endif -%}  c"),
      plain("plus disables lstrip and trim", "a\n  {%+ if true %}b{% endif +%}\nc"),
      plain("variables are not lstripped", "a\n  {{ 'x' }}\n  {{- 'y' -}}  \n z"),
      plain("comments", "{# comment #}\nx\n  {#- c2 -#}  y\n  {# c3 #}\nz\n  {#+ c4 +#}\nw"),
      plain("raw", "{% raw %}{{ not }} {% this %}{% endraw %}\n  {% raw -%}  keep {{x}}  {%- endraw %}  end"),
      plain("raw on its own lines", "a\n  {% raw %}\n  {{ x }}\n  {% endraw %}\nb"),
      plain("CRLF and trailing newline", "line1\r\nline2\r  {% if 1 %}\r\n in\r\n{% endif %}\r\nend\n\n"),
      plain("one trailing newline dropped", "trail\n"),
      plain("tabs", "\t {% for i in range(2) %}\n\t{{ i }}\n {% endfor %}\n"),
      plain("minus in loops", "{%- for i in [1,2,3] -%}\n  {{ i }}\n{%- endfor %}"),
      plain("set lines vanish", "x\n    {% set a = 1 %}\n    y{{ a }}"),
      plain("blank lines in blocks", "{% if 1 %}\n\n{% endif %}|  {% if 1 %}yes{% endif %}  after"),
      plain("comment strips newline", "A\n{#- x #}\nB\n{# y -#}\n\nC"),
      plain("unicode whitespace",
            "a\u3000\u00a0 {%- if 1 -%} \u2028 b {{- ' c ' -}} \u00a0\nd{% endif %}\u00a0 {#- x -#}\u2003e"),
      plain("nested blocks",
            "{% for x in 'ab' %}\n  {% if x == 'a' %}\n    A\n  {% else %}\n    B\n  {% endif %}\n{% endfor %}"),
  });
}

TEST(ChatTemplateReference, LoopVariablesAndScoping) {
  NEED_JINJA2();
  expect_same_as_jinja2({
      {"loop attributes",
       "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ "
       "loop.first }}/{{ loop.last }}/{{ loop.length }}/{{ loop.depth }}:{{ m.role }};{% endfor %}",
       {{kMultiTurn}, {kUserOnly}}},
      {"previtem nextitem cycle",
       "{% for x in xs %}{{ loop.previtem|default('-') }}>{{ x }}>{{ loop.nextitem|default('-') }} {{ "
       "loop.cycle('odd', 'even') }} {% else %}none{% endfor %}",
       {{R"({"xs": [1, 2, 3]})"}, {R"({"xs": []})"}}},
      plain("filtered loop", "{% for x in range(1, 6) if x % 2 %}{{ x }}{{ loop.index }}{{ loop.last }} {% endfor %}"),
      {"unpacking items",
       "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|{% for k, v in "
       "d|dictsort %}{{ k }}{{ v }}{% endfor %}|{% for a, (b, c) in [(1, (2, 3))] %}{{ a + b + c }}{% endfor %}",
       {{R"({"d": {"b": 1, "a": 2, "C": 3}})"}}},
      plain("break and continue",
            "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 5 %}{% break %}{% endif %}{{ x "
            "}}{% endfor %}|{% for x in [1] %}{% break %}{% else %}else after break{% endfor %}|{% for x in [1, 2] "
            "%}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% else %}E{% endfor %}"),
      plain("nested loops",
            "{% for a in [[1, 2], [3]] %}{% for b in a %}{{ loop.index }}{{ b }}{% endfor %}{{ loop.index }};{% endfor "
            "%}"),
      plain("changed", "{% for x in [1, 1, 2, 2, 1] %}{{ loop.changed(x) }}{% endfor %}"),
      {"recursive",
       "{% for item in tree recursive %}[{{ item.n }}{% if item.c %}{{ loop(item.c) }}{% endif %}{{ loop.depth "
       "}}]{% endfor %}",
       {{R"({"tree": [{"n": "a", "c": [{"n": "b", "c": []}, {"n": "c"}]}, {"n": "d"}]})"}}},
      plain("loop scope", "{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}"),
      plain("namespace",
            "{% set ns = namespace(total=0, found=false) %}{% for i in [1, 2, 3] %}{% set ns.total = ns.total + i "
            "%}{% if i == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.total }} {{ ns.found }} {{ ns }}"),
      plain("if does not scope", "{% if true %}{% set y = 5 %}{% endif %}{{ y }}"),
      // jinja2 decides a frame's locals when it compiles: a name the frame assigns before any use
      // is undefined in it (and in loops and macros inside it) until that assignment runs.
      {"compile-time locals",
       "{% for i in [1] %}[{{ x }}]{% endfor %}{% set x = 3 %}{{ x }}|{% macro m() %}<{{ y }}>{% endmacro %}{{ m() "
       "}}{% set y = 4 %}{{ m() }}|{% for i in [1, 2] %}({{ z }}){% set z = i %}{% endfor %}|{% if false %}{% set w = "
       "1 %}{% endif %}{% for i in [1] %}{{ w }}{% endfor %}|{% for i in [1] %}{% for j in [1] %}{{ v }}{% endfor %}{% "
       "set v = 2 %}{% endfor %}|{% set u = u ~ '!' %}{{ u }}",
       {{R"({"x": 9, "y": 8, "z": 7, "w": 6, "v": 5, "u": "U"})"}, {kEmpty}}},
      plain("generator consumed once",
            "{% set g = [1, 2, 3]|select('odd') %}{{ g|first }}|{{ g|list }}|{{ g|list }}|{{ g is iterable }}"),
  });
}

TEST(ChatTemplateReference, ExpressionsAndPythonReprs) {
  NEED_JINJA2();
  expect_same_as_jinja2({
      plain("arithmetic",
            "{{ 1 + 2 * 3 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 "
            "}} {{ 1.5 + 1 }} {{ 10 / 5 }} {{ -7.5 // 2 }} {{ 7.5 % -2 }} {{ true + 1 }} {{ 'ab' * 3 }} {{ [1] * 2 }} "
            "{{ -2 ** 2 }} {{ (1, 2) + (3,) }}"),
      plain("floats",
            "{{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ 123.456 }} {{ 1.0 }} {{ -0.0 }} {{ "
            "3.14e-10 }} {{ 2.5e20 }} {{ 1_000 }} {{ 0x1F }} {{ 0b101 }} {{ 0o17 }} {{ 1e3 }} {{ 1 / 3 }} {{ 2 / 3 * 3 "
            "}} {{ 1e100 }} {{ 5e-324 }}"),
      plain("reprs",
            "{{ [1, 'a', none, true, 1.5, [2], {'k': 'v'}] }} {{ (1,) }} {{ (1, 2) }} {{ () }} {{ {'a': 1, 2: 'b'} }} "
            "{{ none }} {{ True }} {{ 'it\\'s' }} {{ [\"it's\", 'say \"hi\"', 'both \\' \"'] }} {{ ['\\n\\t\\\\', "
            "'\\x00\\x7f\\u00e9\\u00a0\\u200b\\U0001F600'] }} {{ 1, 'two' }}"),
      {"context values print as Python",
       "{{ x }}|{{ messages }}|{{ x.y is defined }}",
       {{R"({"x": {"y": [1, 2.0, "é\n\t\\", null, true, -3, 1e20, 0.5]}, "messages": [{"role": "user", "content": "Hi"}]})"}}},
      plain("comparisons",
            "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 'a' in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in "
            "[1] }} {{ not 1 }} {{ 1 == 1.0 }} {{ [1, 2] == [1, 2] }} {{ 'a' != 'b' }} {{ [1, 2] < [1, 3] }} {{ 'abc' "
            ">= 'abd' }} {{ none == none }} {{ {'a': 1} == {'a': 1} }} {{ (1, 2) == [1, 2] }}"),
      {"and or ternary",
       "{{ x or 'default' }} {{ 0 or '' or 'z' }} {{ 1 and 2 }} {{ 0 and 2 }} {{ 'yes' if x else 'no' }} {{ 'A' if "
       "false }}|{{ none is none }} {{ nothing is defined }} {{ 'a' if x is none else 'b' if x == 0 else 'c' }}",
       {{R"({"x": 0})"}, {R"({"x": null})"}, {R"({"x": 7})"}}},
      {"subscripts and slices",
       "{{ xs[0] }} {{ xs[-1] }} {{ xs[1:] }} {{ xs[::-1] }} {{ xs[:2] }} {{ xs[::2] }} {{ xs[-2:] }} {{ xs[1:-1] }} "
       "{{ s[1:3] }} {{ s[::-1] }} {{ s[-2:] }} {{ xs[10] }}|{{ s[0] }} {{ d['a'] }} {{ d.a }} {{ xs.0 }} {{ "
       "d['items'] }} {{ xs[5:1:-2] }}",
       {{R"({"xs": [1, 2, 3, 4], "s": "héllo 😀", "d": {"a": "A", "items": "I"}})"}}},
      plain("string literals", "{{ 'a' 'b' \"c\" }} {{ '\\101\\x41\\u0041' }} {{ 'tab\\there' }} {{ 'multi\nline' }}"),
      plain("percent formatting",
            "{{ '%s and %s' % ('a', 'b') }}|{{ '%05.1f' % 3.14159 }}|{{ '%-4d|' % 7 }}|{{ '%(x)s' % {'x': 'X'} }}|{{ "
            "'%x %X %o %e %r %%' % (255, 255, 8, 12345.678, 'q') }}|{{ '%s' % [1, 2] }}|{{ '%.3s' % 'abcdef' }}"),
      plain("dict and list literals",
            "{{ {'b': 1, 'a': [1, {'c': none}]} }} {{ [] }} {{ {} }} {{ [1, 2,] }} {{ {'a': 1,} }}"),
  });
}

TEST(ChatTemplateReference, Filters) {
  NEED_JINJA2();
  constexpr const char* kUsers = R"json({"users": [{"name": "bob", "age": 30, "active": true},
    {"name": "Al", "age": 20, "active": false}, {"name": "cy", "age": 25, "active": true}]})json";
  expect_same_as_jinja2({
      plain("string filters",
            "{{ '  hi  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ 'Hello World'|upper }}|{{ 'Hello'|lower }}|{{ 'hello "
            "wORLD foo-bar (x <y'|title }}|{{ 'hELLO'|capitalize }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ [1, 2, "
            "3]|join(', ') }}|{{ [1, 2]|join }}|{{ 'hello world foo'|truncate(9) }}|{{ 'hello world'|truncate(9, "
            "true) }}|{{ 'hello'|center(11) }}|{{ 'a b  c'|wordcount }}|{{ 'straße Σ'|upper }}|{{ 'ÀÉ'|lower }}"),
      plain("defaults and conversions",
            "{{ x|default('d') }}|{{ ''|default('d', true) }}|{{ none|default('n') }}|{{ y|d('dd') }}|{{ [3, 1, "
            "2]|first }}|{{ [3, 1, 2]|last }}|{{ 'abc'|list }}|{{ 123|string }}|{{ '42'|int }}|{{ '4.7'|int }}|{{ "
            "'x'|int }}|{{ 'x'|int(7) }}|{{ '0x1A'|int(0, 16) }}|{{ '3.5'|float }}|{{ 'x'|float }}|{{ -3|abs }}|{{ "
            "2.567|round(2) }}|{{ 2.5|round }}|{{ 3.5|round }}|{{ 2.567|round(1, 'floor') }}|{{ 2.521|round(1, "
            "'ceil') }}|{{ 5|round }}|{{ 3|float }}|{{ true|int }}"),
      plain("collections",
            "{{ {'b': 1, 'a': 2}|items|list }}|{{ {'b': 1, 'A': 2, 'a': 0}|dictsort }}|{{ {'b': 1, 'a': "
            "2}|dictsort(by='value', reverse=true) }}|{{ [3, 1, 2]|sort }}|{{ ['b', 'A', 'c']|sort }}|{{ ['b', 'A', "
            "'c']|sort(case_sensitive=true) }}|{{ [3, 1, 2]|sort(reverse=true) }}|{{ [1, 2, 1, 'a', 'A']|unique|list "
            "}}|{{ [1, 2, 3]|reverse|list }}|{{ 'abc'|reverse }}|{{ [1, 2, 3, 4, 5]|batch(2)|list }}|{{ [1, 2, 3, 4, "
            "5]|batch(2, 0)|list }}|{{ [1, 2, 3, 4, 5]|slice(2)|list }}|{{ [1, 2, 3]|sum }}|{{ [1, 5, 3]|max }}|{{ "
            "['b', 'A']|min }}|{{ []|first is defined }}|{{ 'abc'|length }}|{{ {'a': 1}|count }}"),
      {"select map attribute",
       "{{ users|selectattr('active')|map(attribute='name')|join(',') }}|{{ "
       "users|rejectattr('active')|map(attribute='name')|list }}|{{ users|selectattr('age', 'gt', "
       "20)|map(attribute='name')|list }}|{{ [1, 2, 3, 4]|select('odd')|list }}|{{ [1, 2, 3, 4]|reject('even')|list "
       "}}|{{ ['A', 'b']|map('lower')|list }}|{{ users|map(attribute='missing', default='?')|list }}|{{ "
       "users|sort(attribute='age')|map(attribute='name')|list }}|{{ "
       "users|sort(attribute='name')|map(attribute='name')|list "
       "}}|{{ users|selectattr('name', 'equalto', 'bob')|list|length }}|{{ users|map(attribute='age')|sum }}|{{ "
       "users|max(attribute='age') }}|{{ users|join(', ', attribute='name') }}|{{ [0, 1, '', 'x', none]|select|list }}",
       {{kUsers}}},
      {"tojson",
       "{{ x|tojson }}|{{ x|tojson(indent=4) }}|{{ x|tojson(indent=2, sort_keys=true) }}|{{ x|tojson(separators=(',', "
       "':')) }}|{{ 'é\"\\n<>&'|tojson }}|{{ 'é😀'|tojson(ensure_ascii=true) }}|{{ [1.5, 1e20, none, true, 10]|tojson "
       "}}|{{ {}|tojson(indent=2) }}|{{ []|tojson(indent=2) }}|{{ {1: 2, none: 3, true: 4}|tojson }}|{{ "
       "x|tojson(indent='\\t') }}",
       {{R"({"x": {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type":
         "string", "description": "City, e.g. \"Paris\" — 東京"}}, "required": ["location"], "empty": [], "emptyd": {}},
         "n": 1.0, "z": 1e-7}})"}}},
      plain("indent",
            "{{ 'line1\\nline2\\n\\nline4'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(width='> ', "
            "blank=true) }}"),
      plain("escape and safe",
            "{{ '<a href=\"x\">&'|e }}|{{ '<b>'|safe }}|{{ ('<b>'|safe) + '<i>' }}|{{ '<b>'|escape|escape }}"),
      plain("format filter", "{{ 'Hi %s, %d!'|format('Bo', 3) }}|{{ '%(a)s-%(b)s'|format(a=1, b=2) }}"),
      raising("generators have no length", "{{ [1, 2]|select('odd')|length }}"),
      raising("tojson of undefined", "{{ missing|tojson }}"),
  });
}

TEST(ChatTemplateReference, Tests) {
  NEED_JINJA2();
  expect_same_as_jinja2({
      {"tests",
       "{{ 1 is odd }}{{ 2 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}{{ x is defined }}{{ y is "
       "undefined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}{{ 1.0 is float }}{{ 1 is integer }}{{ "
       "true is integer }}{{ true is boolean }}{{ {} is mapping }}{{ [] is sequence }}{{ 'a' is iterable }}{{ 1 is "
       "iterable }}{{ 'ab' is lower }}{{ 'AB' is upper }}{{ 1 is eq 1 }}{{ 2 is gt 1 }}{{ 1 is ne 2 }}{{ 'a' is in "
       "'abc' }}{{ true is true }}{{ 0 is false }}{{ x is not none }}{{ range is callable }}{{ none is sameas none "
       "}}{{ 'upper' is filter }}{{ 'odd' is test }}{{ x is ge 1 }}{{ x is lessthan 0 }}{{ msg.content is string "
       "}}{{ msg is mapping }}{{ msg.content is iterable }}{{ undefined_name is sequence }}",
       {{R"({"x": 1, "msg": {"role": "user", "content": "hi"}})"}}},
      plain("is defined on attributes",
            "{% set d = {'a': {'b': 1}} %}{{ d.a.b is defined }}{{ d.a.c is defined }}{{ d.z is defined }}{{ d['a'] is "
            "mapping }}"),
      raising("undefined parent fails even under is defined", "{{ nothing.attr is defined }}"),
  });
}

TEST(ChatTemplateReference, StringListAndDictMethods) {
  NEED_JINJA2();
  expect_same_as_jinja2({
      {"str methods",
       "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'xxaxx'.strip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  "
       "b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'a b c'.rsplit(' ', 1) }}|{{ 'a b c'.rsplit(none, 1) }}|{{ "
       "'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}|{{ 'abc'.replace('b', 'B') }}|{{ 'abc'.upper() "
       "}}|{{ 'ABC'.lower() }}|{{ 'hello world'.title() }}|{{ \"they're bill's 2nd\".title() }}|{{ ', '.join(['a', "
       "'b']) }}|{{ 'abcb'.find('b') }}|{{ 'abcb'.rfind('b') }}|{{ 'abcb'.find('z') }}|{{ 'abcb'.count('b') }}|{{ "
       "'a\\nb\\r\\nc'.splitlines() }}|{{ 'x'.center(5, '*') }}|{{ '5'.zfill(3) }}|{{ 'ab'.ljust(4, '.') }}|{{ "
       "'ab'.rjust(4) }}|{{ 'abc'.index('c') }}|{{ 'a-b-c'.partition('-') }}|{{ 'a-b-c'.rpartition('-') }}|{{ "
       "'Hello'.swapcase() }}|{{ 'héllo wörld'.capitalize() }}|{{ 'abc'.isalpha() }}|{{ '123'.isdigit() }}|{{ '  "
       "'.isspace() }}|{{ 'Ab'.isupper() }}|{{ 'prefix-x'.removeprefix('prefix-') }}|{{ 'é東'.upper() }}|{{ "
       "s.startswith('  p', 0, 5) }}",
       {{R"({"s": "  pad me \n"})"}}},
      plain("str.format",
            "{{ 'hello {}! {name}'.format('w', name='n') }}|{{ "
            "'{:>5}|{:<4}|{:^5}|{:05.2f}|{:,}|{:+d}|{:x}|{:.1%}'.format("
            "'a', 'b', 'c', 3.14159, 1234567, 5, 255, 0.256) }}|{{ '{0}{1}{0}'.format('a', 'b') }}|{{ '{d[k]} "
            "{l[1]}'.format(d={'k': 'v'}, l=[1, 2]) }}|{{ '{!r}'.format('q') }}|{{ '{{literal}}'.format() }}|{{ "
            "'{:*^9}'.format('mid') }}|{{ '{}'.format(1.5) }}|{{ '{:.3}'.format(2.0) }}"),
      {"dict and list methods",
       "{{ d.get('a') }}|{{ d.get('z', 'zz') }}|{{ d.get('z') }}|{{ d.keys()|list }}|{{ d.values()|list }}|{{ "
       "d.items()|list }}|{{ [1, 2, 3].index(2) }}|{{ [1, 2, 2].count(2) }}|{{ d['items'] }}|{{ d.copy() }}",
       {{R"({"d": {"a": 1, "items": "I"}})"}}},
      plain("list.pop mutates",
            "{% set xs = [1, 2, 3] %}{% set p = xs.pop() %}{% set q = xs.pop(0) %}{{ p }} {{ q }} {{ xs }}"),
      raising("append is refused by the sandbox", "{% set xs = [1] %}{{ xs.append(2) }}"),
      raising("dict.update is refused by the sandbox", "{% set d = {'a': 1} %}{{ d.update({'b': 2}) }}"),
  });
}

TEST(ChatTemplateReference, MacrosCallAndBlocks) {
  NEED_JINJA2();
  expect_same_as_jinja2({
      plain("macro defaults and keywords",
            "{% macro greet(name, greeting='Hello', punct='!') %}{{ greeting }}, {{ name }}{{ punct }}{% endmacro %}{{ "
            "greet('Ann') }} {{ greet('Bob', greeting='Hi') }} {{ greet(name='Cy', punct='?') }} {{ greet('Di', 'Yo', "
            "'.') }} {{ greet() }}"),
      plain("varargs and kwargs",
            "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, x=4) }}"),
      raising("too many arguments", "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}"),
      raising("unknown keyword", "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(b=2) }}"),
      plain(
          "call blocks",
          "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}inner {{ 1 + 1 "
          "}}{% endcall %}|{% macro lst(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% "
          "call(x) lst([1, 2]) %}[{{ x }}]{% endcall %}"),
      plain("recursive macro",
            "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(6) "
            "}}"),
      plain(
          "blocks",
          "{% filter upper %}hello {{ 'x' }}{% endfilter %}|{% set body %}Some {{ 'text' }}{% endset %}{{ body }}|{% "
          "set b2 | trim | upper %}  padded  {% endset %}[{{ b2 }}]|{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{{ "
          "a }}|{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c, d = (3, 4) %}{{ c + d }}|{% print 'printed', 1 %}"),
      plain("globals",
            "{{ dict(a=1, b=2) }}|{{ dict([('x', 1)], y=2) }}|{{ namespace(a=1).a }}|{{ range(3)|list }}|{{ range(1, "
            "10, 3)|list }}|{{ range(5, 0, -2)|list }}|{{ range(0)|list }}"),
      raising("range limit", "{{ range(100001)|length }}"),
      plain("generation block", "{% for x in [1, 2] %}{% generation %}gen {{ x }}\n{% endgeneration %}{% endfor %}"),
      plain("strftime_now", "{{ strftime_now('%Y-%m-%d') }}"),
  });
}

TEST(ChatTemplateReference, RuntimeErrorsRaiseWhereJinja2Raises) {
  NEED_JINJA2();
  expect_same_as_jinja2({
      raising("str + int", "{{ 'x' + 1 }}"),
      raising("undefined in arithmetic", "{{ undefined_var + 1 }}"),
      raising("attribute of undefined", "{{ foo.bar }}"),
      {"attribute of missing key", "{{ d.missing.deeper }}", {{R"({"d": {}})", true}}},
      {"missing key prints empty", "{{ d.missing }}|{{ none.attr }}|{{ [1][5] }}|{{ d['x'] }}", {{R"({"d": {}})"}}},
      raising("raise_exception",
              "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"),
      raising("call of undefined", "{{ nothing() }}"),
      raising("division by zero", "{{ 1 / 0 }}"),
      raising("comparing str and int", "{{ 'a' < 1 }}"),
      raising("iterating an int", "{% for x in 5 %}{% endfor %}"),
      raising("unpacking", "{% for a, b in [[1, 2, 3]] %}{% endfor %}"),
      raising("namespace attribute on a dict", "{% set d = {} %}{% set d.x = 1 %}"),
  });
}

TEST(ChatTemplateReference, LoopControlsInsideBlocksAndPythonEdges) {
  NEED_JINJA2();
  expect_same_as_jinja2({
      plain("continue inside with",
            "{% for x in [1, 2, 3] %}{% with y = x %}{% if y == 2 %}{% continue %}{% endif %}{{ y }}{% endwith %}{% "
            "endfor %}"),
      // The filter's and the set block's buffered text is dropped when the loop is left inside them.
      plain("break inside filter",
            "{% for x in [1, 2, 3] %}{% filter upper %}a{{ x }}{% if x == 2 %}{% break %}{% endif %}{% endfilter %}{% "
            "endfor %}"),
      plain("continue inside a set block",
            "{% for x in [1, 2] %}{% set b %}{{ x }}{% if x == 1 %}{% continue %}{% endif %}{% endset %}[{{ b }}]{% "
            "endfor %}"),
      plain("a namespace holding itself", "{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ ns }}"),
      plain("%c and precision",
            "{{ '%c'|format(65) }}{{ '%c'|format(233) }}{{ '%5.3s|'|format('abcdef') }}{{ "
            "'%-8d|'|format(42) }}{{ '%.40f'|format(1/3) }}"),
      raising("%c past the last code point", "{{ '%c'|format(1114112) }}"),
      raising("{:c} past the last code point", "{{ '{:c}'.format(1114112) }}"),
      plain("Unicode digits and numerals",
            "{{ '٣'.isdigit() }}{{ '½'.isnumeric() }}{{ '²'.isdigit() }}{{ '٣'.isnumeric() }}{{ 'x'.isdigit() }}"),
  });
}

// --- errors and interface ---------------------------------------------------------------------

TEST(ChatTemplate, SyntaxErrorsNameOriginLineColumnAndText) {
  const std::string unclosed =
      test::error_of<std::runtime_error>([] { ChatTemplate("{% for m in messages %}\n{{ m.content }}", kOrigin); });
  EXPECT_THAT(unclosed, StartsWith(std::string(kOrigin) + ":2:16: syntax error: Unexpected end of template."));
  EXPECT_THAT(unclosed, HasSubstr("'endfor' or 'else'"));
  EXPECT_THAT(unclosed, HasSubstr("innermost block that needs to be closed is 'for'"));

  const std::string bad_token =
      test::error_of<std::runtime_error>([] { ChatTemplate("line one\n  {{ 'a' + }} x", kOrigin); });
  EXPECT_THAT(bad_token, StartsWith(std::string(kOrigin) + ":2:12: syntax error: unexpected 'end of print statement'"));
  EXPECT_THAT(bad_token, HasSubstr("\n      {{ 'a' + }} x\n"));  // the line, then a caret under the column
  EXPECT_THAT(bad_token, HasSubstr("\n               ^"));

  EXPECT_THAT(test::error_of<std::runtime_error>([] { ChatTemplate("{% endfor %}", kOrigin); }),
              HasSubstr(":1:4: syntax error: Encountered unknown tag 'endfor'."));
  EXPECT_THAT(test::error_of<std::runtime_error>([] { ChatTemplate("{{ x | no_such_filter }}", kOrigin); }),
              HasSubstr(":1:8: syntax error: No filter named 'no_such_filter'."));
  EXPECT_THAT(test::error_of<std::runtime_error>([] { ChatTemplate("{% include 'x.j2' %}", kOrigin); }),
              HasSubstr("the 'include' tag is not supported"));
  EXPECT_THAT(test::error_of<std::runtime_error>([] { ChatTemplate("{{ 'unterminated }}", kOrigin); }),
              HasSubstr(":1:4: syntax error: unexpected char"));
  EXPECT_THAT(test::error_of<std::runtime_error>([] { ChatTemplate("{% break %}", kOrigin); }),
              HasSubstr("'break' outside loop"));
  // An unknown filter inside an `if` is an error only when it runs, as in jinja2.
  EXPECT_EQ(
      ChatTemplate("{% if false %}{{ x | no_such_filter }}{% endif %}ok", kOrigin).render(nlohmann::json::object()),
      "ok");
}

TEST(ChatTemplate, SyntaxErrorsAreSyntaxErrorsForJinja2Too) {
  NEED_JINJA2();
  const std::vector<const char*> broken = {"{% for m in messages %}",
                                           "{{ 'a' + }}",
                                           "{% endfor %}",
                                           "{{ x | no_such_filter }}",
                                           "{{ 'unterminated }}",
                                           "{% if %}{% endif %}",
                                           "{{ (1, }}",
                                           "{% set 1 = 2 %}",
                                           "{% macro m(a=1, b) %}{% endmacro %}",
                                           "{{ x is defined is defined }}"};
  std::vector<TemplateCase> cases;
  for (const char* source : broken) cases.push_back({source, source, {{kEmpty, true}}});
  const auto reference = reference_render(cases);
  for (size_t i = 0; i < broken.size(); ++i) {
    EXPECT_THAT(reference[i].type, ::testing::AnyOf("TemplateSyntaxError", "TemplateAssertionError"))
        << broken[i] << ": " << reference[i].output;
    EXPECT_THAT(test::error_of<std::runtime_error>([&] { ChatTemplate(broken[i], kOrigin); }),
                HasSubstr("syntax error"))
        << broken[i];
  }
}

TEST(ChatTemplate, RuntimeErrorsNameOriginAndLine) {
  const ChatTemplate t("{% for m in messages %}\n{{ m.content + 1 }}\n{% endfor %}", kOrigin);
  const std::string message = test::error_of<std::runtime_error>(
      [&] { t.render(nlohmann::json::parse(R"({"messages": [{"content": "x"}]})")); });
  EXPECT_THAT(message, StartsWith(std::string(kOrigin) + ":2:4: can only concatenate str (not \"int\") to str"));
  EXPECT_THAT(test::error_of<std::runtime_error>([] {
                ChatTemplate("\n\n  {{ messages[0].role.upper() }}", kOrigin).render(nlohmann::json::object());
              }),
              StartsWith(std::string(kOrigin) + ":3:"));
}

TEST(ChatTemplate, RaiseExceptionCarriesTheTemplatesMessage) {
  const ChatTemplate t(kMistral, kOrigin);
  const std::string message =
      test::error_of<std::runtime_error>([&] { t.render(nlohmann::json::parse(kNotAlternating)); });
  EXPECT_THAT(message, StartsWith(std::string(kOrigin) + ":1:"));
  EXPECT_THAT(message, EndsWith(": Conversation roles must alternate user/assistant/user/assistant/..."));
}

TEST(ChatTemplate, DefaultsFollowApplyChatTemplate) {
  const ChatTemplate t(
      "{{ tools is none }} {{ documents is none }} {{ add_generation_prompt }} {{ messages is defined }}", kOrigin);
  EXPECT_EQ(t.render(nlohmann::json::object()), "True True False False");
  EXPECT_EQ(t.render(nlohmann::json{{"add_generation_prompt", true}, {"tools", {1}}}), "False True True False");
  EXPECT_THAT(test::error_of<std::runtime_error>([&] { t.render(nlohmann::json::array()); }),
              HasSubstr("must be a JSON object"));
}

TEST(ChatTemplate, OrderedJsonKeepsTheSourceKeyOrder) {
  const ChatTemplate t("{{ x|tojson }} {{ x }}", kOrigin);
  const char* context = R"({"x": {"b": 1, "a": 2}})";
  EXPECT_EQ(t.render(nlohmann::ordered_json::parse(context)), "{\"b\": 1, \"a\": 2} {'b': 1, 'a': 2}");
  EXPECT_EQ(t.render(nlohmann::json::parse(context)), "{\"a\": 2, \"b\": 1} {'a': 2, 'b': 1}");
}

// Python builds whatever a template asks for until memory runs out; a template is user input, so
// one operation is capped (jinja_value.h: kMaxResultBytes) and fails with a message instead.
TEST(ChatTemplate, HugeResultsFailInsteadOfExhaustingMemory) {
  for (const char* source :
       {"{{ 'a' * 1000000000 }}", "{{ [1] * 1000000000 }}", "{{ 'x'|indent(100000000000) }}",
        "{{ 'x'|center(1000000000) }}", "{{ '%1000000000d'|format(1) }}", "{{ '{:>1000000000}'.format('x') }}"}) {
    EXPECT_THAT(
        test::error_of<std::runtime_error>([&] { ChatTemplate(source, kOrigin).render(nlohmann::json::object()); }),
        HasSubstr("result too large"))
        << source;
  }
}

// Each operator nests the tree one level; a recursive renderer would overflow the stack on a long
// chain, so the parser refuses one past 500 levels (jinja2 itself fails on Python's recursion
// limit) and renders anything shorter.
TEST(ChatTemplate, DeepExpressionsAreRefusedNotOverflowed) {
  std::string chain = "{{ 1";
  for (int i = 0; i < 400; ++i) chain += " + 1";
  EXPECT_EQ(ChatTemplate(chain + " }}", kOrigin).render(nlohmann::json::object()), "401");
  auto repeated = [](const std::string& piece, int times) {
    std::string s;
    for (int i = 0; i < times; ++i) s += piece;
    return s;
  };
  for (const std::string& deep :
       {"{{ 1" + repeated("+", 200000) + "1 }}", "{{ " + repeated("(", 100000) + "1" + repeated(")", 100000) + " }}",
        "{{ x" + repeated(".a", 100000) + " }}", "{{ 1" + repeated("|string", 100000) + " }}",
        "{{ x" + repeated("[0]", 100000) + " }}"}) {
    // "nests expressions or blocks too deeply" while parsing, "nests more than 500 levels deep" after.
    EXPECT_THAT(
        test::error_of<std::runtime_error>([&] { ChatTemplate(deep, kOrigin).render(nlohmann::json::object()); }),
        AnyOf(HasSubstr("too deeply"), HasSubstr("levels deep")))
        << deep.substr(0, 40);
  }
}

TEST(ChatTemplate, RecursionIsBounded) {
  const ChatTemplate t("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", kOrigin);
  EXPECT_THAT(test::error_of<std::runtime_error>([&] { t.render(nlohmann::json::object()); }),
              HasSubstr("maximum recursion depth"));
}

}  // namespace
}  // namespace fe
