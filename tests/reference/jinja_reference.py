#!/usr/bin/python3
"""Renders chat templates with Debian's python3-jinja2 in the environment HF transformers renders
them with (transformers' `_compile_jinja_template` and `render_jinja_template`), the reference for
tests/chat_template_test.cpp.

    jinja_reference.py CASES.json RESULTS.json

CASES.json is {"cases": [{"template": "...", "context": {...}}, ...]}. RESULTS.json gets one entry
per case: {"output": "..."} or {"error": "...", "type": "TemplateSyntaxError", "line": N}.
The context's keys become template variables as apply_chat_template passes them: messages,
tools=None, documents=None, add_generation_prompt=False, then everything else.
"""
import json
import sys
from datetime import datetime

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationBlock(Extension):
    """HF's AssistantTracker without the index bookkeeping: {% generation %} renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, case):
    try:
        template = env.from_string(case["template"])
        variables = {"tools": None, "documents": None, "add_generation_prompt": False}
        variables.update(case["context"])
        return {"output": template.render(**variables)}
    except Exception as e:  # every failure is a result the C++ side must match
        result = {"error": str(e), "type": type(e).__name__}
        if getattr(e, "lineno", None) is not None:
            result["line"] = e.lineno
        return result


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    env = environment()
    results = [render(env, case) for case in cases]
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=True)


if __name__ == "__main__":
    main()
