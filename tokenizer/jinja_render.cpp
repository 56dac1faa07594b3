// tokenizer/jinja_render.cpp — the tree-walking renderer (see jinja_render.h).
#include "tokenizer/jinja_render.h"

#include <algorithm>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "tokenizer/jinja_builtins.h"

namespace fe::jinja {
namespace {

// Nested macro calls and loop(...) recursions before the render stops, as Python's recursion
// limit would (a template that recurses without end must fail, not exhaust the stack).
constexpr int kMaxCallDepth = 200;
// Expressions and statements being evaluated at once, across macro calls: each is a few C++ stack
// frames, so this bounds the render's stack use (about 1 KiB a level) whatever the template nests.
constexpr int kMaxRenderDepth = 3000;

// What a failed allocation reports: a template whose data outgrows memory fails like any other
// runtime error, with its position, instead of ending the process.
constexpr const char* kOutOfMemory = "out of memory: the template builds more data than this process can hold";

struct Scope {
  explicit Scope(std::shared_ptr<Scope> parent) : parent(std::move(parent)) {}
  std::vector<std::pair<std::string, Value>> variables;
  std::shared_ptr<Scope> parent;

  const Value* find(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent.get())
      for (const auto& [n, v] : s->variables)
        if (n == name) return &v;
    return nullptr;
  }

  void set(const std::string& name, Value value) {
    for (auto& [n, v] : variables) {
      if (n == name) {
        v = std::move(value);
        return;
      }
    }
    variables.emplace_back(name, std::move(value));
  }
};
using ScopePtr = std::shared_ptr<Scope>;

enum class Flow { normal, break_loop, continue_loop };

class Renderer {
 public:
  explicit Renderer(const Dict& context) : context_(context) {}

  std::string render(const Template& t) {
    std::string out;
    exec(t.body, frame(nullptr, t.body_locals), out);
    return out;
  }

 private:
  // A new frame's scope: the names jinja2 compiles to missing locals start undefined.
  static ScopePtr frame(ScopePtr parent, const FrameLocals& locals) {
    auto scope = std::make_shared<Scope>(std::move(parent));
    for (const std::string& name : locals) scope->set(name, Value::undefined("'" + name + "' is undefined"));
    return scope;
  }

  Flow exec(const Body& body, const ScopePtr& scope, std::string& out) {
    for (const StmtPtr& stmt : body) {
      const Flow flow = exec_located(*stmt, scope, out);
      if (flow != Flow::normal) return flow;
    }
    return Flow::normal;
  }

  Flow exec_located(const Stmt& stmt, const ScopePtr& scope, std::string& out) {
    try {
      const RenderDepth depth(*this);
      return exec_stmt(stmt, scope, out);
    } catch (const TemplateError& e) {
      if (e.pos().line > 0) throw;
      throw e.located(stmt.pos);
    } catch (const std::bad_alloc&) {
      throw TemplateError(TemplateError::Kind::runtime, kOutOfMemory, stmt.pos);
    } catch (const std::length_error&) {
      throw TemplateError(TemplateError::Kind::runtime, kOutOfMemory, stmt.pos);
    }
  }

  Flow exec_stmt(const Stmt& stmt, const ScopePtr& scope, std::string& out) {
    switch (stmt.kind) {
      case Stmt::Kind::output:
        for (const OutputStmt::Part& part : static_cast<const OutputStmt&>(stmt).parts)
          append_checked(out, part.expr ? to_str(eval(*part.expr, scope)) : part.text);
        return Flow::normal;
      case Stmt::Kind::for_loop: {
        const auto& node = static_cast<const ForStmt&>(stmt);
        render_loop(node, loop_items(node, eval(*node.iterable, scope), scope), scope, 0, out);
        return Flow::normal;
      }
      case Stmt::Kind::if_chain: {
        const auto& node = static_cast<const IfStmt&>(stmt);
        for (const auto& [test, body] : node.branches)
          if (truthy(eval(*test, scope))) return exec(body, scope, out);
        return exec(node.else_body, scope, out);
      }
      case Stmt::Kind::set: {
        const auto& node = static_cast<const SetStmt&>(stmt);
        assign(*node.target, eval(*node.value, scope), scope);
        return Flow::normal;
      }
      case Stmt::Kind::set_block: {
        const auto& node = static_cast<const SetBlockStmt&>(stmt);
        std::string body;
        if (const Flow flow = render_body(node.body, node.body_locals, scope, body); flow != Flow::normal) return flow;
        Value text = Value::string(std::move(body));
        if (node.filter) text = apply_filters(*node.filter, text, scope);
        assign(*node.target, text, scope);
        return Flow::normal;
      }
      case Stmt::Kind::macro: {
        const auto& node = static_cast<const MacroStmt&>(stmt);
        scope->set(node.name, make_macro(node, scope));
        return Flow::normal;
      }
      case Stmt::Kind::call_block: {
        const auto& node = static_cast<const CallBlockStmt&>(stmt);
        const auto& call_expr = static_cast<const CallExpr&>(*node.call);
        CallArgs args = eval_args(call_expr.args, scope);
        args.keyword.emplace_back("caller", make_macro(*node.caller, scope));
        append_checked(out, to_str(call(eval(*call_expr.callee, scope), args)));
        return Flow::normal;
      }
      case Stmt::Kind::filter_block: {
        const auto& node = static_cast<const FilterBlockStmt&>(stmt);
        std::string body;
        if (const Flow flow = render_body(node.body, node.body_locals, scope, body); flow != Flow::normal) return flow;
        append_checked(out, to_str(apply_filters(*node.filter, Value::string(std::move(body)), scope)));
        return Flow::normal;
      }
      case Stmt::Kind::with: {
        const auto& node = static_cast<const WithStmt&>(stmt);
        const ScopePtr inner = frame(scope, node.body_locals);
        std::vector<Value> values;
        for (const auto& [target, value] : node.assignments) values.push_back(eval(*value, scope));
        for (size_t i = 0; i < values.size(); ++i) assign(*node.assignments[i].first, values[i], inner);
        return exec(node.body, inner, out);
      }
      case Stmt::Kind::loop_control:
        return static_cast<const LoopControlStmt&>(stmt).is_break ? Flow::break_loop : Flow::continue_loop;
    }
    return Flow::normal;
  }

  // A body rendered into `out`, in a scope of its own (jinja2 renders {% set %} and {% filter %}
  // blocks in an inner frame). A `break` or `continue` inside it leaves the enclosing loop at once,
  // as in jinja2's generated Python: the block's text is dropped and nothing is assigned or filtered.
  Flow render_body(const Body& body, const FrameLocals& locals, const ScopePtr& scope, std::string& out) {
    return exec(body, frame(scope, locals), out);
  }

  ValueList loop_items(const ForStmt& node, const Value& iterable, const ScopePtr& scope) {
    ValueList items = iterate(iterable);
    if (!node.condition) return items;
    ValueList kept;
    for (Value& item : items) {
      auto test_scope = std::make_shared<Scope>(scope);
      assign(*node.target, item, test_scope);
      if (truthy(eval(*node.condition, test_scope))) kept.push_back(std::move(item));
    }
    return kept;
  }

  void render_loop(const ForStmt& node, ValueList items, const ScopePtr& scope, int64_t depth0, std::string& out) {
    auto loop = std::make_shared<Loop>();
    loop->items = std::move(items);
    loop->depth0 = depth0;
    if (node.recursive) {
      loop->recurse = [this, &node, scope, depth0](const Value& iterable) {
        CallDepth guard(*this);
        std::string text;
        render_loop(node, loop_items(node, iterable, scope), scope, depth0 + 1, text);
        return Value::string(std::move(text));
      };
    }
    const Value loop_value = Value::loop(loop);
    bool completed = false;  // jinja2 runs `else` when no iteration reached the end of the body
    for (size_t i = 0; i < loop->items.size(); ++i) {
      loop->index0 = static_cast<int64_t>(i);
      const ScopePtr iteration = frame(scope, node.body_locals);
      assign(*node.target, loop->items[i], iteration);
      iteration->set("loop", loop_value);
      const Flow flow = exec(node.body, iteration, out);
      if (flow == Flow::break_loop) break;
      if (flow == Flow::normal) completed = true;
    }
    if (!completed) exec(node.else_body, frame(scope, node.else_locals), out);
  }

  void assign(const Expr& target, const Value& value, const ScopePtr& scope) {
    switch (target.kind) {
      case Expr::Kind::name:
        scope->set(static_cast<const NameExpr&>(target).name, value);
        return;
      case Expr::Kind::sequence: {
        const auto& names = static_cast<const SequenceExpr&>(target).items;
        if (!value.is_undefined() && !value.is_string() && !value.is_sequence() && value.kind() != Value::Kind::dict &&
            value.kind() != Value::Kind::iterator)
          fail("cannot unpack non-iterable " + type_name(value) + " object");
        const ValueList parts = iterate(value);
        if (parts.size() < names.size())
          fail("not enough values to unpack (expected " + std::to_string(names.size()) + ", got " +
               std::to_string(parts.size()) + ")");
        if (parts.size() > names.size())
          fail("too many values to unpack (expected " + std::to_string(names.size()) + ")");
        for (size_t i = 0; i < names.size(); ++i) assign(*names[i], parts[i], scope);
        return;
      }
      case Expr::Kind::namespace_ref: {
        const auto& ref = static_cast<const NamespaceRefExpr&>(target);
        const Value ns = lookup(ref.name, scope);
        if (ns.kind() != Value::Kind::ns) fail("cannot assign attribute on non-namespace object");
        ns.as_ns().attributes.set(Value::string(ref.attribute), value);
        return;
      }
      default:
        fail("cannot assign to this expression");
    }
  }

  Value lookup(const std::string& name, const ScopePtr& scope) const {
    if (const Value* v = scope->find(name)) return *v;
    if (const Value* v = context_.find(Value::string(name))) return *v;
    return global(name);
  }

  struct RenderDepth {
    explicit RenderDepth(Renderer& r) : renderer(r) {
      if (++renderer.render_depth_ > kMaxRenderDepth) {
        --renderer.render_depth_;
        fail("maximum recursion depth exceeded (expressions, blocks and macro calls nested more than " +
             std::to_string(kMaxRenderDepth) + " deep)");
      }
    }
    ~RenderDepth() { --renderer.render_depth_; }
    Renderer& renderer;
  };

  struct CallDepth {
    explicit CallDepth(Renderer& r) : renderer(r) {
      if (++renderer.call_depth_ > kMaxCallDepth) {
        --renderer.call_depth_;
        fail("maximum recursion depth exceeded (" + std::to_string(kMaxCallDepth) + " nested macro calls)");
      }
    }
    ~CallDepth() { --renderer.call_depth_; }
    Renderer& renderer;
  };

  Value make_macro(const MacroStmt& macro, const ScopePtr& closure) {
    return Value::callable("macro '" + macro.name + "'",
                           [this, &macro, closure](CallArgs& args) { return call_macro(macro, closure, args); });
  }

  // jinja2.runtime.Macro.__call__: positional arguments, then keyword arguments, then defaults.
  Value call_macro(const MacroStmt& macro, const ScopePtr& closure, CallArgs& args) {
    CallDepth guard(*this);
    const ScopePtr scope = frame(closure, macro.body_locals);
    const size_t n = macro.params.size();
    std::vector<std::pair<std::string, Value>> keyword = args.keyword;
    auto take_keyword = [&](const std::string& name) -> std::optional<Value> {
      for (auto it = keyword.begin(); it != keyword.end(); ++it) {
        if (it->first == name) {
          Value v = std::move(it->second);
          keyword.erase(it);
          return v;
        }
      }
      return std::nullopt;
    };
    std::vector<std::optional<Value>> bound(n);
    bool found_caller = false;
    for (size_t i = 0; i < n; ++i) {
      if (i < args.positional.size()) {
        bound[i] = args.positional[i];
      } else {
        bound[i] = take_keyword(macro.params[i]);
        found_caller |= macro.params[i] == "caller";
      }
    }
    if (args.positional.size() >= n)
      found_caller = std::find(macro.params.begin(), macro.params.end(), "caller") != macro.params.end();
    if (macro.uses_caller && !found_caller) {
      std::optional<Value> caller = take_keyword("caller");
      scope->set("caller", caller ? *caller : Value::undefined("No caller defined"));
    }
    if (macro.uses_kwargs) {
      auto kwargs = std::make_shared<Dict>();
      for (auto& [k, v] : keyword) kwargs->set(Value::string(k), v);
      scope->set("kwargs", Value::dict(kwargs));
    } else if (!keyword.empty()) {
      if (keyword.front().first == "caller")
        fail("macro '" + macro.name +
             "' was invoked with two values for the special caller argument. This is most likely a bug.");
      fail("macro '" + macro.name + "' takes no keyword argument '" + keyword.front().first + "'");
    }
    if (macro.uses_varargs) {
      ValueList extra;
      for (size_t i = n; i < args.positional.size(); ++i) extra.push_back(args.positional[i]);
      scope->set("varargs", Value::tuple(std::move(extra)));
    } else if (args.positional.size() > n) {
      fail("macro '" + macro.name + "' takes not more than " + std::to_string(n) + " argument(s)");
    }
    for (size_t i = 0; i < n; ++i)
      if (bound[i]) scope->set(macro.params[i], *bound[i]);
    const size_t first_default = n - macro.defaults.size();
    for (size_t i = 0; i < n; ++i) {
      if (bound[i]) continue;
      if (i >= first_default)
        scope->set(macro.params[i], eval(*macro.defaults[i - first_default], scope));
      else
        scope->set(macro.params[i], Value::undefined("parameter '" + macro.params[i] + "' was not provided"));
    }
    std::string out;
    exec(macro.body, scope, out);
    return Value::string(std::move(out));
  }

  CallArgs eval_args(const Arguments& node, const ScopePtr& scope) {
    CallArgs args;
    for (const ExprPtr& e : node.positional) args.positional.push_back(eval(*e, scope));
    for (const auto& [key, e] : node.keyword) args.keyword.emplace_back(key, eval(*e, scope));
    if (node.star_args)
      for (Value& v : iterate(eval(*node.star_args, scope))) args.positional.push_back(std::move(v));
    if (node.star_kwargs) {
      const Value kwargs = eval(*node.star_kwargs, scope);
      if (kwargs.kind() != Value::Kind::dict) fail("argument after ** must be a mapping, not " + type_name(kwargs));
      for (const auto& [k, v] : kwargs.as_dict().entries) {
        if (!k.is_string()) fail("keywords must be strings");
        args.keyword.emplace_back(k.as_string(), v);
      }
    }
    return args;
  }

  // A filter chain of a {% filter %} or {% set x | f %} block, applied to the block's text.
  Value apply_filters(const Expr& filter_expr, const Value& input, const ScopePtr& scope) {
    const auto& node = static_cast<const FilterExpr&>(filter_expr);
    const Value operand = node.operand ? apply_filters(*node.operand, input, scope) : input;
    try {
      CallArgs args = eval_args(node.args, scope);
      return apply_filter(node.name, operand, args);
    } catch (const TemplateError& e) {
      if (e.pos().line > 0) throw;
      throw e.located(node.pos);
    }
  }

  Value eval(const Expr& expr, const ScopePtr& scope) {
    try {
      const RenderDepth depth(*this);
      return eval_node(expr, scope);
    } catch (const TemplateError& e) {
      if (e.pos().line > 0) throw;
      throw e.located(expr.pos);
    } catch (const std::bad_alloc&) {
      throw TemplateError(TemplateError::Kind::runtime, kOutOfMemory, expr.pos);
    } catch (const std::length_error&) {
      throw TemplateError(TemplateError::Kind::runtime, kOutOfMemory, expr.pos);
    }
  }

  Value eval_node(const Expr& expr, const ScopePtr& scope) {
    switch (expr.kind) {
      case Expr::Kind::constant:
        return static_cast<const ConstExpr&>(expr).value;
      case Expr::Kind::name:
        return lookup(static_cast<const NameExpr&>(expr).name, scope);
      case Expr::Kind::sequence: {
        const auto& node = static_cast<const SequenceExpr&>(expr);
        ValueList items;
        for (const ExprPtr& item : node.items) items.push_back(eval(*item, scope));
        return node.tuple ? Value::tuple(std::move(items)) : Value::list(std::move(items));
      }
      case Expr::Kind::dict: {
        auto dict = std::make_shared<Dict>();
        for (const auto& [k, v] : static_cast<const DictExpr&>(expr).items) {
          Value key = eval(*k, scope);
          if (key.kind() == Value::Kind::list || key.kind() == Value::Kind::dict)
            fail("unhashable type: '" + type_name(key) + "'");
          dict->set(std::move(key), eval(*v, scope));
        }
        return Value::dict(std::move(dict));
      }
      case Expr::Kind::attribute: {
        const auto& node = static_cast<const AttributeExpr&>(expr);
        return get_attribute(eval(*node.object, scope), node.attribute);
      }
      case Expr::Kind::item: {
        const auto& node = static_cast<const ItemExpr&>(expr);
        const Value object = eval(*node.object, scope);
        if (node.key->kind == Expr::Kind::slice) {
          const auto& s = static_cast<const SliceExpr&>(*node.key);
          auto bound = [&](const ExprPtr& e) { return e ? eval(*e, scope) : Value::none(); };
          return slice(object, bound(s.start), bound(s.stop), bound(s.step));
        }
        return get_item(object, eval(*node.key, scope));
      }
      case Expr::Kind::call: {
        const auto& node = static_cast<const CallExpr&>(expr);
        const Value callee = eval(*node.callee, scope);
        CallArgs args = eval_args(node.args, scope);
        return call(callee, args);
      }
      case Expr::Kind::filter: {
        const auto& node = static_cast<const FilterExpr&>(expr);
        const Value operand = eval(*node.operand, scope);
        CallArgs args = eval_args(node.args, scope);
        return apply_filter(node.name, operand, args);
      }
      case Expr::Kind::test: {
        const auto& node = static_cast<const FilterExpr&>(expr);
        const Value operand = eval(*node.operand, scope);
        CallArgs args = eval_args(node.args, scope);
        return Value::boolean(apply_test(node.name, operand, args));
      }
      case Expr::Kind::conditional: {
        const auto& node = static_cast<const ConditionalExpr&>(expr);
        if (truthy(eval(*node.test, scope))) return eval(*node.then_value, scope);
        if (node.else_value) return eval(*node.else_value, scope);
        return Value::undefined("the inline if-expression on line " + std::to_string(node.pos.line) +
                                " evaluated to false and no else section was defined.");
      }
      case Expr::Kind::binary: {
        const auto& node = static_cast<const BinaryExpr&>(expr);
        const Value left = eval(*node.left, scope);
        return binary(node.op, left, eval(*node.right, scope));
      }
      case Expr::Kind::concat: {
        std::string text;
        for (const ExprPtr& operand : static_cast<const ConcatExpr&>(expr).operands)
          append_checked(text, to_str(eval(*operand, scope)));
        return Value::string(std::move(text));
      }
      case Expr::Kind::compare: {
        const auto& node = static_cast<const CompareExpr&>(expr);
        Value left = eval(*node.first, scope);
        for (const auto& [op, operand] : node.rest) {
          Value right = eval(*operand, scope);
          if (!compare(op, left, right)) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case Expr::Kind::logical: {
        const auto& node = static_cast<const LogicalExpr&>(expr);
        Value left = eval(*node.left, scope);
        if (truthy(left) != node.is_and) return left;
        return eval(*node.right, scope);
      }
      case Expr::Kind::logical_not:
        return Value::boolean(!truthy(eval(*static_cast<const NotExpr&>(expr).operand, scope)));
      case Expr::Kind::unary: {
        const auto& node = static_cast<const UnaryExpr&>(expr);
        const Value operand = eval(*node.operand, scope);
        return node.negative ? negate(operand) : positive(operand);
      }
      case Expr::Kind::slice:
      case Expr::Kind::namespace_ref:
        break;
    }
    fail("this expression cannot be evaluated here");
  }

  static bool compare(CompareOperator op, const Value& a, const Value& b) {
    switch (op) {
      case CompareOperator::eq:
        return equal(a, b);
      case CompareOperator::ne:
        return !equal(a, b);
      case CompareOperator::lt:
        return ordered(Order::lt, a, b);
      case CompareOperator::le:
        return ordered(Order::le, a, b);
      case CompareOperator::gt:
        return ordered(Order::gt, a, b);
      case CompareOperator::ge:
        return ordered(Order::ge, a, b);
      case CompareOperator::in:
        return contains(b, a);
      case CompareOperator::not_in:
        return !contains(b, a);
    }
    return false;
  }

  const Dict& context_;
  int call_depth_ = 0;
  int render_depth_ = 0;
};

}  // namespace

std::string render(const Template& t, const Dict& context) {
  ObjectArena arena;
  return Renderer(context).render(t);
}

}  // namespace fe::jinja
