// tokenizer/jinja_parser.cpp — jinja2's recursive-descent grammar (jinja2/parser.py) over our
// tokens (see jinja_parser.h). Each parse_* method corresponds to the jinja2 method of that name.
#include "tokenizer/jinja_parser.h"

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <map>
#include <set>
#include <utility>

#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_lexer.h"

namespace fe::jinja {
namespace {

using Names = std::vector<std::string>;

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// Calls f on each direct child of e (not on e, not deeper).
void for_each_child(const Expr& e, const std::function<void(const Expr&)>& f) {
  auto maybe = [&](const ExprPtr& x) {
    if (x) f(*x);
  };
  auto args = [&](const Arguments& a) {
    for (const ExprPtr& x : a.positional) f(*x);
    for (const auto& [key, x] : a.keyword) f(*x);
    maybe(a.star_args);
    maybe(a.star_kwargs);
  };
  switch (e.kind) {
    case Expr::Kind::sequence:
      for (const ExprPtr& x : static_cast<const SequenceExpr&>(e).items) f(*x);
      break;
    case Expr::Kind::dict:
      for (const auto& [k, v] : static_cast<const DictExpr&>(e).items) {
        f(*k);
        f(*v);
      }
      break;
    case Expr::Kind::attribute:
      f(*static_cast<const AttributeExpr&>(e).object);
      break;
    case Expr::Kind::item:
      f(*static_cast<const ItemExpr&>(e).object);
      f(*static_cast<const ItemExpr&>(e).key);
      break;
    case Expr::Kind::slice: {
      const auto& slice = static_cast<const SliceExpr&>(e);
      maybe(slice.start);
      maybe(slice.stop);
      maybe(slice.step);
      break;
    }
    case Expr::Kind::call:
      f(*static_cast<const CallExpr&>(e).callee);
      args(static_cast<const CallExpr&>(e).args);
      break;
    case Expr::Kind::filter:
    case Expr::Kind::test:
      maybe(static_cast<const FilterExpr&>(e).operand);
      args(static_cast<const FilterExpr&>(e).args);
      break;
    case Expr::Kind::conditional: {
      const auto& c = static_cast<const ConditionalExpr&>(e);
      maybe(c.test);
      maybe(c.then_value);
      maybe(c.else_value);
      break;
    }
    case Expr::Kind::binary:
      f(*static_cast<const BinaryExpr&>(e).left);
      f(*static_cast<const BinaryExpr&>(e).right);
      break;
    case Expr::Kind::concat:
      for (const ExprPtr& x : static_cast<const ConcatExpr&>(e).operands) f(*x);
      break;
    case Expr::Kind::compare:
      f(*static_cast<const CompareExpr&>(e).first);
      for (const auto& [op, x] : static_cast<const CompareExpr&>(e).rest) f(*x);
      break;
    case Expr::Kind::logical:
      f(*static_cast<const LogicalExpr&>(e).left);
      f(*static_cast<const LogicalExpr&>(e).right);
      break;
    case Expr::Kind::logical_not:
      f(*static_cast<const NotExpr&>(e).operand);
      break;
    case Expr::Kind::unary:
      f(*static_cast<const UnaryExpr&>(e).operand);
      break;
    case Expr::Kind::constant:
    case Expr::Kind::name:
    case Expr::Kind::namespace_ref:
      break;
  }
}

// e.height, measuring the nodes below e not measured yet (the parser measures each node it folds
// into a chain as it builds it, so this descends only through what recursion built, which the
// parser's nesting limit bounds).
int measured_height(const Expr& e) {
  if (e.height == 0) {
    int tallest = 0;
    for_each_child(e, [&](const Expr& child) { tallest = std::max(tallest, measured_height(child)); });
    e.height = tallest + 1;
  }
  return e.height;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Body parse_template() { return subparse(nullptr); }

 private:
  // --- token stream -------------------------------------------------------------------------
  const Token& current() const { return tokens_[index_]; }
  const Token& look() const { return tokens_[std::min(index_ + 1, tokens_.size() - 1)]; }
  const Token& next() {
    const Token& token = tokens_[index_];
    if (token.type != TokenType::eof) ++index_;
    return token;
  }
  bool is(TokenType type) const { return current().type == type; }
  bool is_name(std::string_view name) const { return is(TokenType::name) && current().text == name; }
  bool is_any_name(const Names& names) const {
    return is(TokenType::name) && std::find(names.begin(), names.end(), current().text) != names.end();
  }
  bool skip_if(TokenType type) {
    if (!is(type)) return false;
    next();
    return true;
  }
  bool skip_if_name(std::string_view name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }

  [[noreturn]] void fail(const std::string& message) const { fail(message, current().pos); }
  [[noreturn]] void fail(const std::string& message, SourcePos pos) const {
    throw TemplateError(TemplateError::Kind::syntax, message, pos);
  }

  [[noreturn]] void fail_expected(const std::string& expected) const {
    if (is(TokenType::eof)) fail("unexpected end of template, expected " + quoted(expected) + ".");
    fail("expected token " + quoted(expected) + ", got " + quoted(describe(current())));
  }

  const Token& expect(TokenType type) {
    if (!is(type)) fail_expected(describe(type));
    return next();
  }

  const Token& expect_name(std::string_view name) {
    if (!is_name(name)) fail_expected(std::string(name));
    return next();
  }

  // jinja2's _fail_ut_eof: an unknown tag, or the end of the template inside a block.
  [[noreturn]] void fail_unknown_tag(const std::string* name, const std::vector<const Names*>& stack,
                                     SourcePos pos) const {
    std::string message = name ? "Encountered unknown tag " + quoted(*name) + "." : "Unexpected end of template.";
    if (!stack.empty()) {
      std::string looking;
      for (const std::string& end : *stack.back()) looking += (looking.empty() ? "" : " or ") + quoted(end);
      bool expected = false;
      for (const Names* ends : stack)
        if (name && std::find(ends->begin(), ends->end(), *name) != ends->end()) expected = true;
      if (expected)
        message += " You probably made a nesting mistake. Jinja is expecting this tag, but currently looking for " +
                   looking + ".";
      else
        message += " Jinja was looking for the following tags: " + looking + ".";
    }
    if (!tag_stack_.empty())
      message += " The innermost block that needs to be closed is " + quoted(tag_stack_.back()) + ".";
    fail(message, pos);
  }

  // --- statements ---------------------------------------------------------------------------
  Body subparse(const Names* end_tokens) {
    if (end_tokens) end_token_stack_.push_back(end_tokens);
    Body body;
    std::unique_ptr<OutputStmt> output;
    auto flush = [&] {
      if (output) body.push_back(std::move(output));
    };
    auto add = [&](OutputStmt::Part part, SourcePos pos) {
      if (!output) output = std::make_unique<OutputStmt>(pos);
      output->parts.push_back(std::move(part));
    };
    while (!is(TokenType::eof)) {
      const Token& token = current();
      if (token.type == TokenType::data) {
        add({token.text, nullptr}, token.pos);
        next();
      } else if (token.type == TokenType::variable_begin) {
        next();
        ExprPtr expr = parse_tuple(false, true, nullptr, false);
        add({"", std::move(expr)}, token.pos);
        expect(TokenType::variable_end);
      } else if (token.type == TokenType::block_begin) {
        flush();
        next();
        if (end_tokens && is_any_name(*end_tokens)) {
          end_token_stack_.pop_back();
          return body;
        }
        parse_statement(body);
        expect(TokenType::block_end);
      } else {
        fail("unexpected " + quoted(describe(token)));
      }
    }
    flush();
    if (end_tokens) end_token_stack_.pop_back();
    return body;
  }

  Body parse_statements(const Names& end_tokens, bool drop_needle) {
    skip_if(TokenType::colon);
    expect(TokenType::block_end);
    Body body = subparse(&end_tokens);
    if (is(TokenType::eof)) {
      std::vector<const Names*> stack = end_token_stack_;
      stack.push_back(&end_tokens);
      fail_unknown_tag(nullptr, stack, current().pos);
    }
    if (drop_needle) next();
    return body;
  }

  void parse_statement(Body& body) {
    const Nesting nesting(*this);
    const Token& token = current();
    if (token.type != TokenType::name) fail("tag name expected");
    const std::string tag = token.text;
    static const Names kUnsupported = {"include", "import", "from", "extends", "block", "autoescape"};
    if (std::find(kUnsupported.begin(), kUnsupported.end(), tag) != kUnsupported.end())
      fail("the '" + tag + "' tag is not supported: a chat template must be one self-contained template");
    tag_stack_.push_back(tag);
    if (tag == "for") {
      body.push_back(parse_for());
    } else if (tag == "if") {
      body.push_back(parse_if());
    } else if (tag == "set") {
      body.push_back(parse_set());
    } else if (tag == "macro") {
      body.push_back(parse_macro());
    } else if (tag == "call") {
      body.push_back(parse_call_block());
    } else if (tag == "filter") {
      body.push_back(parse_filter_block());
    } else if (tag == "with") {
      body.push_back(parse_with());
    } else if (tag == "print") {
      body.push_back(parse_print());
    } else if (tag == "break" || tag == "continue") {
      const Token& keyword = next();
      if (loop_depth_ == 0) fail("'" + tag + "' outside loop", keyword.pos);
      body.push_back(std::make_unique<LoopControlStmt>(keyword.pos, tag == "break"));
    } else if (tag == "generation") {
      auto node = std::make_unique<WithStmt>(next().pos);
      node->body = parse_body_outside_loop({"endgeneration"});
      body.push_back(std::move(node));
    } else {
      tag_stack_.pop_back();
      fail_unknown_tag(&tag, end_token_stack_, token.pos);
    }
    tag_stack_.pop_back();
  }

  // The body of a macro-like block: `break` inside it cannot leave an enclosing loop.
  Body parse_body_outside_loop(const Names& end_tokens) {
    const int saved = std::exchange(loop_depth_, 0);
    Body body = parse_statements(end_tokens, true);
    loop_depth_ = saved;
    return body;
  }

  StmtPtr parse_for() {
    auto node = std::make_unique<ForStmt>(expect_name("for").pos);
    static const Names kIn = {"in"}, kRecursive = {"recursive"};
    node->target = parse_assign_target(true, false, &kIn, false);
    expect_name("in");
    node->iterable = parse_tuple(false, false, &kRecursive, false);
    if (skip_if_name("if")) node->condition = parse_expression(true);
    node->recursive = skip_if_name("recursive");
    ++loop_depth_;
    node->body = parse_statements({"endfor", "else"}, false);
    --loop_depth_;
    if (next().text != "endfor") node->else_body = parse_statements({"endfor"}, true);
    return node;
  }

  StmtPtr parse_if() {
    auto node = std::make_unique<IfStmt>(expect_name("if").pos);
    while (true) {
      ExprPtr test = parse_tuple(false, false, nullptr, false);
      Body body = parse_statements({"elif", "else", "endif"}, false);
      node->branches.emplace_back(std::move(test), std::move(body));
      const Token& token = next();
      if (token.text == "elif") continue;
      if (token.text == "else") node->else_body = parse_statements({"endif"}, true);
      break;
    }
    return node;
  }

  StmtPtr parse_set() {
    const SourcePos pos = next().pos;
    ExprPtr target = parse_assign_target(true, false, nullptr, true);
    if (skip_if(TokenType::assign))
      return std::make_unique<SetStmt>(pos, std::move(target), parse_tuple(false, true, nullptr, false));
    auto node = std::make_unique<SetBlockStmt>(pos);
    node->target = std::move(target);
    node->filter = parse_filter(nullptr, false);
    node->body = parse_statements({"endset"}, true);
    return node;
  }

  void parse_signature(MacroStmt& macro) {
    expect(TokenType::lparen);
    while (!is(TokenType::rparen)) {
      if (!macro.params.empty()) expect(TokenType::comma);
      const Token& name = expect(TokenType::name);
      check_assignable_name(name);
      if (skip_if(TokenType::assign))
        macro.defaults.push_back(parse_expression(true));
      else if (!macro.defaults.empty())
        fail("non-default argument follows default argument");
      macro.params.push_back(name.text);
    }
    expect(TokenType::rparen);
  }

  StmtPtr parse_macro() {
    auto node = std::make_unique<MacroStmt>(next().pos);
    const Token& name = expect(TokenType::name);
    check_assignable_name(name);
    node->name = name.text;
    parse_signature(*node);
    node->body = parse_body_outside_loop({"endmacro"});
    mark_special_names(*node);
    return node;
  }

  StmtPtr parse_call_block() {
    auto node = std::make_unique<CallBlockStmt>(next().pos);
    node->caller = std::make_unique<MacroStmt>(node->pos);
    node->caller->name = "caller";
    if (is(TokenType::lparen)) parse_signature(*node->caller);
    node->call = parse_expression(true);
    if (node->call->kind != Expr::Kind::call) fail("expected call", node->pos);
    node->caller->body = parse_body_outside_loop({"endcall"});
    mark_special_names(*node->caller);
    return node;
  }

  StmtPtr parse_filter_block() {
    auto node = std::make_unique<FilterBlockStmt>(next().pos);
    node->filter = parse_filter(nullptr, true);
    node->body = parse_statements({"endfilter"}, true);
    return node;
  }

  StmtPtr parse_with() {
    auto node = std::make_unique<WithStmt>(next().pos);
    while (!is(TokenType::block_end)) {
      if (!node->assignments.empty()) expect(TokenType::comma);
      ExprPtr target = parse_assign_target(true, false, nullptr, false);
      expect(TokenType::assign);
      node->assignments.emplace_back(std::move(target), parse_expression(true));
    }
    node->body = parse_statements({"endwith"}, true);
    return node;
  }

  StmtPtr parse_print() {
    auto node = std::make_unique<OutputStmt>(next().pos);
    while (!is(TokenType::block_end)) {
      if (!node->parts.empty()) expect(TokenType::comma);
      node->parts.push_back({"", parse_expression(true)});
    }
    return node;
  }

  void check_assignable_name(const Token& name) const {
    static const Names kConstants = {"true", "false", "none", "True", "False", "None"};
    if (std::find(kConstants.begin(), kConstants.end(), name.text) != kConstants.end())
      fail("can't assign to 'name'", name.pos);
  }

  // jinja2's Node.can_assign
  static bool can_assign(const Expr& target) {
    if (target.kind == Expr::Kind::namespace_ref) return true;
    if (target.kind == Expr::Kind::name) {
      const std::string& n = static_cast<const NameExpr&>(target).name;
      return n != "true" && n != "false" && n != "none" && n != "True" && n != "False" && n != "None";
    }
    if (target.kind == Expr::Kind::sequence && static_cast<const SequenceExpr&>(target).tuple) {
      for (const ExprPtr& item : static_cast<const SequenceExpr&>(target).items)
        if (!can_assign(*item)) return false;
      return true;
    }
    return false;
  }

  static std::string node_type_name(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::constant:
        return "const";
      case Expr::Kind::sequence:
        return static_cast<const SequenceExpr&>(e).tuple ? "tuple" : "list";
      case Expr::Kind::dict:
        return "dict";
      case Expr::Kind::attribute:
        return "getattr";
      case Expr::Kind::item:
        return "getitem";
      case Expr::Kind::call:
        return "call";
      default:
        return "expression";
    }
  }

  ExprPtr parse_assign_target(bool with_tuple, bool name_only, const Names* extra_end_rules, bool with_namespace) {
    ExprPtr target;
    if (with_namespace && look().type == TokenType::dot) {
      const Token& name = expect(TokenType::name);
      next();
      const Token& attribute = expect(TokenType::name);
      target = std::make_unique<NamespaceRefExpr>(name.pos, name.text, attribute.text);
    } else if (name_only) {
      const Token& name = expect(TokenType::name);
      target = std::make_unique<NameExpr>(name.pos, name.text);
    } else {
      target = with_tuple ? parse_tuple(true, true, extra_end_rules, false) : parse_primary();
    }
    if (!can_assign(*target)) fail("can't assign to " + quoted(node_type_name(*target)), target->pos);
    return target;
  }

  // --- expressions --------------------------------------------------------------------------
  ExprPtr parse_expression(bool with_condexpr) {
    const Nesting nesting(*this);
    return grown(with_condexpr ? parse_condexpr() : parse_or());
  }

  ExprPtr parse_condexpr() {
    SourcePos pos = current().pos;
    ExprPtr expr = parse_or();
    while (skip_if_name("if")) {
      auto node = std::make_unique<ConditionalExpr>(pos);
      node->test = parse_or();
      if (skip_if_name("else")) {
        const Nesting nesting(*this);
        node->else_value = parse_condexpr();
      }
      node->then_value = std::move(expr);
      expr = grown(std::move(node));
      pos = current().pos;
    }
    return expr;
  }

  ExprPtr parse_or() {
    SourcePos pos = current().pos;
    ExprPtr left = parse_and();
    while (skip_if_name("or")) {
      left = grown(std::make_unique<LogicalExpr>(pos, false, std::move(left), parse_and()));
      pos = current().pos;
    }
    return left;
  }

  ExprPtr parse_and() {
    SourcePos pos = current().pos;
    ExprPtr left = parse_not();
    while (skip_if_name("and")) {
      left = grown(std::make_unique<LogicalExpr>(pos, true, std::move(left), parse_not()));
      pos = current().pos;
    }
    return left;
  }

  ExprPtr parse_not() {
    const Nesting nesting(*this);
    if (is_name("not")) {
      const SourcePos pos = next().pos;
      return std::make_unique<NotExpr>(pos, parse_not());
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const SourcePos pos = current().pos;
    ExprPtr first = parse_math1();
    std::unique_ptr<CompareExpr> node;
    auto add = [&](CompareOperator op) {
      if (!node) node = std::make_unique<CompareExpr>(pos, std::move(first));
      node->rest.emplace_back(op, parse_math1());
    };
    while (true) {
      const TokenType type = current().type;
      if (type == TokenType::eq || type == TokenType::ne || type == TokenType::lt || type == TokenType::lteq ||
          type == TokenType::gt || type == TokenType::gteq) {
        next();
        add(type == TokenType::eq     ? CompareOperator::eq
            : type == TokenType::ne   ? CompareOperator::ne
            : type == TokenType::lt   ? CompareOperator::lt
            : type == TokenType::lteq ? CompareOperator::le
            : type == TokenType::gt   ? CompareOperator::gt
                                      : CompareOperator::ge);
      } else if (skip_if_name("in")) {
        add(CompareOperator::in);
      } else if (is_name("not") && look().type == TokenType::name && look().text == "in") {
        next();
        next();
        add(CompareOperator::not_in);
      } else {
        break;
      }
    }
    if (!node) return first;
    return grown(std::move(node));
  }

  ExprPtr parse_math1() {
    SourcePos pos = current().pos;
    ExprPtr left = parse_concat();
    while (is(TokenType::add) || is(TokenType::sub)) {
      const BinaryOp op = next().type == TokenType::add ? BinaryOp::add : BinaryOp::sub;
      left = grown(std::make_unique<BinaryExpr>(pos, op, std::move(left), parse_concat()));
      pos = current().pos;
    }
    return left;
  }

  ExprPtr parse_concat() {
    const SourcePos pos = current().pos;
    ExprPtr first = parse_math2();
    if (!is(TokenType::tilde)) return first;
    auto node = std::make_unique<ConcatExpr>(pos);
    node->operands.push_back(std::move(first));
    while (skip_if(TokenType::tilde)) node->operands.push_back(parse_math2());
    return grown(std::move(node));
  }

  ExprPtr parse_math2() {
    SourcePos pos = current().pos;
    ExprPtr left = parse_pow();
    while (is(TokenType::mul) || is(TokenType::div) || is(TokenType::floordiv) || is(TokenType::mod)) {
      const TokenType type = next().type;
      const BinaryOp op = type == TokenType::mul        ? BinaryOp::mul
                          : type == TokenType::div      ? BinaryOp::div
                          : type == TokenType::floordiv ? BinaryOp::floordiv
                                                        : BinaryOp::mod;
      left = grown(std::make_unique<BinaryExpr>(pos, op, std::move(left), parse_pow()));
      pos = current().pos;
    }
    return left;
  }

  ExprPtr parse_pow() {
    SourcePos pos = current().pos;
    ExprPtr left = parse_unary(true);
    while (skip_if(TokenType::pow)) {
      left = grown(std::make_unique<BinaryExpr>(pos, BinaryOp::pow, std::move(left), parse_unary(true)));
      pos = current().pos;
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    const Nesting nesting(*this);
    const SourcePos pos = current().pos;
    ExprPtr node;
    if (is(TokenType::sub) || is(TokenType::add)) {
      const bool negative = next().type == TokenType::sub;
      node = std::make_unique<UnaryExpr>(pos, negative, parse_unary(false));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return grown(std::move(node));
  }

  ExprPtr parse_primary() {
    const Token& token = current();
    switch (token.type) {
      case TokenType::name: {
        next();
        if (token.text == "true" || token.text == "True")
          return std::make_unique<ConstExpr>(token.pos, Value::boolean(true));
        if (token.text == "false" || token.text == "False")
          return std::make_unique<ConstExpr>(token.pos, Value::boolean(false));
        if (token.text == "none" || token.text == "None") return std::make_unique<ConstExpr>(token.pos, Value::none());
        return std::make_unique<NameExpr>(token.pos, token.text);
      }
      case TokenType::string: {
        const SourcePos pos = token.pos;
        std::string text;
        while (is(TokenType::string)) text += next().text;
        return std::make_unique<ConstExpr>(pos, Value::string(std::move(text)));
      }
      case TokenType::integer:
        next();
        return std::make_unique<ConstExpr>(token.pos, Value::integer(token.integer));
      case TokenType::floating:
        next();
        return std::make_unique<ConstExpr>(token.pos, Value::floating(token.floating));
      case TokenType::lparen: {
        next();
        ExprPtr node = parse_tuple(false, true, nullptr, true);
        expect(TokenType::rparen);
        return node;
      }
      case TokenType::lbracket:
        return parse_list();
      case TokenType::lbrace:
        return parse_dict();
      default:
        fail("unexpected " + quoted(describe(token)));
    }
  }

  bool is_tuple_end(const Names* extra_end_rules) const {
    if (is(TokenType::variable_end) || is(TokenType::block_end) || is(TokenType::rparen)) return true;
    return extra_end_rules && is_any_name(*extra_end_rules);
  }

  ExprPtr parse_tuple(bool simplified, bool with_condexpr, const Names* extra_end_rules, bool explicit_parentheses) {
    SourcePos pos = current().pos;
    std::vector<ExprPtr> args;
    bool is_tuple = false;
    while (true) {
      if (!args.empty()) expect(TokenType::comma);
      if (is_tuple_end(extra_end_rules)) break;
      args.push_back(simplified ? parse_primary() : parse_expression(with_condexpr));
      if (is(TokenType::comma))
        is_tuple = true;
      else
        break;
      pos = current().pos;
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parentheses) fail("Expected an expression, got " + quoted(describe(current())));
    }
    auto node = std::make_unique<SequenceExpr>(pos, true);
    node->items = std::move(args);
    return node;
  }

  ExprPtr parse_list() {
    auto node = std::make_unique<SequenceExpr>(expect(TokenType::lbracket).pos, false);
    while (!is(TokenType::rbracket)) {
      if (!node->items.empty()) expect(TokenType::comma);
      if (is(TokenType::rbracket)) break;
      node->items.push_back(parse_expression(true));
    }
    expect(TokenType::rbracket);
    return node;
  }

  ExprPtr parse_dict() {
    auto node = std::make_unique<DictExpr>(expect(TokenType::lbrace).pos);
    while (!is(TokenType::rbrace)) {
      if (!node->items.empty()) expect(TokenType::comma);
      if (is(TokenType::rbrace)) break;
      ExprPtr key = parse_expression(true);
      expect(TokenType::colon);
      node->items.emplace_back(std::move(key), parse_expression(true));
    }
    expect(TokenType::rbrace);
    return node;
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is(TokenType::dot) || is(TokenType::lbracket))
        node = grown(parse_subscript(std::move(node)));
      else if (is(TokenType::lparen))
        node = grown(parse_call(std::move(node)));
      else
        return node;
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is(TokenType::pipe))
        node = parse_filter(std::move(node), false);
      else if (is_name("is"))
        node = grown(parse_test(std::move(node)));
      else if (is(TokenType::lparen))
        node = grown(parse_call(std::move(node)));
      else
        return node;
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    const Token& token = next();
    if (token.type == TokenType::dot) {
      const Token& attribute = next();
      if (attribute.type == TokenType::name)
        return std::make_unique<AttributeExpr>(token.pos, std::move(node), attribute.text);
      if (attribute.type != TokenType::integer) fail("expected name or number", attribute.pos);
      return std::make_unique<ItemExpr>(token.pos, std::move(node),
                                        std::make_unique<ConstExpr>(attribute.pos, Value::integer(attribute.integer)));
    }
    std::vector<ExprPtr> args;
    while (!is(TokenType::rbracket)) {
      if (!args.empty()) expect(TokenType::comma);
      args.push_back(parse_subscribed());
    }
    expect(TokenType::rbracket);
    if (args.size() == 1) return std::make_unique<ItemExpr>(token.pos, std::move(node), std::move(args[0]));
    auto key = std::make_unique<SequenceExpr>(token.pos, true);
    key->items = std::move(args);
    return std::make_unique<ItemExpr>(token.pos, std::move(node), std::move(key));
  }

  ExprPtr parse_subscribed() {
    const SourcePos pos = current().pos;
    auto slice = std::make_unique<SliceExpr>(pos);
    if (is(TokenType::colon)) {
      next();
    } else {
      ExprPtr node = parse_expression(true);
      if (!is(TokenType::colon)) return node;
      next();
      slice->start = std::move(node);
    }
    if (!is(TokenType::colon) && !is(TokenType::rbracket) && !is(TokenType::comma))
      slice->stop = parse_expression(true);
    if (skip_if(TokenType::colon) && !is(TokenType::rbracket) && !is(TokenType::comma))
      slice->step = parse_expression(true);
    return slice;
  }

  Arguments parse_call_args() {
    const Token& open = expect(TokenType::lparen);
    Arguments args;
    auto ensure = [&](bool ok) {
      if (!ok) fail("invalid syntax for function call expression", open.pos);
    };
    bool require_comma = false;
    while (!is(TokenType::rparen)) {
      if (require_comma) {
        expect(TokenType::comma);
        if (is(TokenType::rparen)) break;
      }
      if (is(TokenType::mul)) {
        ensure(!args.star_args && !args.star_kwargs);
        next();
        args.star_args = parse_expression(true);
      } else if (is(TokenType::pow)) {
        ensure(!args.star_kwargs);
        next();
        args.star_kwargs = parse_expression(true);
      } else if (is(TokenType::name) && look().type == TokenType::assign) {
        ensure(!args.star_kwargs);
        std::string key = next().text;
        next();
        args.keyword.emplace_back(std::move(key), parse_expression(true));
      } else {
        ensure(!args.star_args && !args.star_kwargs && args.keyword.empty());
        args.positional.push_back(parse_expression(true));
      }
      require_comma = true;
    }
    expect(TokenType::rparen);
    return args;
  }

  ExprPtr parse_call(ExprPtr node) {
    auto call = std::make_unique<CallExpr>(current().pos, std::move(node));
    call->args = parse_call_args();
    return call;
  }

  std::string parse_dotted_name() {
    std::string name = expect(TokenType::name).text;
    while (skip_if(TokenType::dot)) name += "." + expect(TokenType::name).text;
    return name;
  }

  ExprPtr parse_filter(ExprPtr node, bool start_inline) {
    while (is(TokenType::pipe) || start_inline) {
      if (!start_inline) next();
      const SourcePos pos = current().pos;
      auto filter = std::make_unique<FilterExpr>(Expr::Kind::filter, pos, std::move(node), parse_dotted_name());
      if (is(TokenType::lparen)) filter->args = parse_call_args();
      node = grown(std::move(filter));
      start_inline = false;
    }
    return node;
  }

  ExprPtr parse_test(ExprPtr node) {
    const SourcePos pos = next().pos;
    const bool negated = skip_if_name("not");
    auto test = std::make_unique<FilterExpr>(Expr::Kind::test, pos, std::move(node), parse_dotted_name());
    const TokenType type = current().type;
    if (type == TokenType::lparen) {
      test->args = parse_call_args();
    } else if ((type == TokenType::name || type == TokenType::string || type == TokenType::integer ||
                type == TokenType::floating || type == TokenType::lbracket || type == TokenType::lbrace) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail("You cannot chain multiple tests with is");
      test->args.positional.push_back(parse_postfix(parse_primary()));
    }
    if (negated) return std::make_unique<NotExpr>(pos, std::move(test));
    return test;
  }

  // jinja2 collects extra arguments into `varargs`/`kwargs` and passes `caller` only when the
  // macro body mentions them.
  static void mark_special_names(MacroStmt& macro);

  std::vector<Token> tokens_;
  size_t index_ = 0;
  std::vector<std::string> tag_stack_;
  std::vector<const Names*> end_token_stack_;
  int loop_depth_ = 0;

  // Deeply nested source (thousands of brackets) fails cleanly instead of exhausting the stack, as
  // Python's recursion limit stops jinja2.
  static constexpr int kMaxNesting = 250;
  // Chains make trees as tall without recursing in the parser (`1 + 1 + ...`, `x.a.b...`,
  // `x|f|g...`), so every node is measured as it is built and a tree taller than this fails.
  // jinja2's compiler stops near here too, with RecursionError (at 500 terms of `1 + 1 + ...`).
  static constexpr int kMaxExpressionHeight = 500;
  ExprPtr grown(ExprPtr node) const {
    if (measured_height(*node) > kMaxExpressionHeight)
      fail("the expression nests more than " + std::to_string(kMaxExpressionHeight) +
               " levels deep (each operator, attribute, subscript, call, filter or bracket is one); jinja2 fails "
               "near there too, with RecursionError",
           node->pos);
    return node;
  }
  struct Nesting {
    explicit Nesting(Parser& p) : parser(p) {
      if (++parser.nesting_ > kMaxNesting) parser.fail("the template nests expressions or blocks too deeply");
    }
    ~Nesting() { --parser.nesting_; }
    Parser& parser;
  };
  int nesting_ = 0;
};

// Visits every expression of a body with the "soft" flag of jinja2's compiler frames: true inside
// an `if` statement or an `if` expression, reset by constructs that open a new frame.
using ExprVisitor = std::function<void(const Expr&, bool soft)>;
void visit_body(const Body& body, bool soft, const ExprVisitor& visit);

void visit_expr(const Expr* e, bool soft, const ExprVisitor& visit) {
  if (!e) return;
  if (e->kind == Expr::Kind::conditional) soft = true;
  visit(*e, soft);
  for_each_child(*e, [&](const Expr& child) { visit_expr(&child, soft, visit); });
}

void visit_macro(const MacroStmt& macro, const ExprVisitor& visit) {
  for (const ExprPtr& d : macro.defaults) visit_expr(d.get(), false, visit);
  visit_body(macro.body, false, visit);
}

void visit_body(const Body& body, bool soft, const ExprVisitor& visit) {
  for (const StmtPtr& s : body) {
    switch (s->kind) {
      case Stmt::Kind::output:
        for (const auto& part : static_cast<const OutputStmt&>(*s).parts) visit_expr(part.expr.get(), soft, visit);
        break;
      case Stmt::Kind::for_loop: {
        const auto& f = static_cast<const ForStmt&>(*s);
        visit_expr(f.iterable.get(), soft, visit);
        visit_expr(f.condition.get(), false, visit);
        visit_body(f.body, false, visit);
        visit_body(f.else_body, false, visit);
        break;
      }
      case Stmt::Kind::if_chain: {
        const auto& i = static_cast<const IfStmt&>(*s);
        for (const auto& [test, branch] : i.branches) {
          visit_expr(test.get(), true, visit);
          visit_body(branch, true, visit);
        }
        visit_body(i.else_body, true, visit);
        break;
      }
      case Stmt::Kind::set:
        visit_expr(static_cast<const SetStmt&>(*s).value.get(), soft, visit);
        break;
      case Stmt::Kind::set_block: {
        const auto& b = static_cast<const SetBlockStmt&>(*s);
        visit_expr(b.filter.get(), false, visit);
        visit_body(b.body, false, visit);
        break;
      }
      case Stmt::Kind::macro:
        visit_macro(static_cast<const MacroStmt&>(*s), visit);
        break;
      case Stmt::Kind::call_block: {
        const auto& c = static_cast<const CallBlockStmt&>(*s);
        visit_expr(c.call.get(), soft, visit);
        visit_macro(*c.caller, visit);
        break;
      }
      case Stmt::Kind::filter_block: {
        const auto& f = static_cast<const FilterBlockStmt&>(*s);
        visit_expr(f.filter.get(), false, visit);
        visit_body(f.body, false, visit);
        break;
      }
      case Stmt::Kind::with: {
        const auto& w = static_cast<const WithStmt&>(*s);
        for (const auto& [target, value] : w.assignments) visit_expr(value.get(), soft, visit);
        visit_body(w.body, false, visit);
        break;
      }
      case Stmt::Kind::loop_control:
        break;
    }
  }
}

void Parser::mark_special_names(MacroStmt& macro) {
  visit_macro(macro, [&](const Expr& e, bool) {
    if (e.kind != Expr::Kind::name) return;
    const std::string& name = static_cast<const NameExpr&>(e).name;
    macro.uses_caller |= name == "caller";
    macro.uses_varargs |= name == "varargs";
    macro.uses_kwargs |= name == "kwargs";
  });
}

void check_filter_and_test_names(const Body& body) {
  visit_body(body, false, [](const Expr& e, bool soft) {
    if (soft || (e.kind != Expr::Kind::filter && e.kind != Expr::Kind::test)) return;
    const auto& f = static_cast<const FilterExpr&>(e);
    const bool filter = e.kind == Expr::Kind::filter;
    if (filter ? has_filter(f.name) : has_test(f.name)) return;
    throw TemplateError(TemplateError::Kind::syntax,
                        std::string("No ") + (filter ? "filter" : "test") + " named " + quoted(f.name) + ".", f.pos);
  });
}

// --- jinja2's frame analysis (jinja2/idtracking.py) ---------------------------------------------
// jinja2 compiles every frame (the template, a loop body, a macro, a block) to Python code whose
// locals it decides at compile time. A name whose first use in the frame is an assignment, and that
// no enclosing frame mentions, becomes a local that starts out missing: until the frame's own
// {% set %} runs, it is undefined there and in every frame nested in it, whatever the context
// holds. A name assigned in only some branches of an `if` is looked up outside instead.

using NameSet = std::set<std::string>;

class FrameSymbols {
 public:
  explicit FrameSymbols(const NameSet& enclosing) : enclosing_(&enclosing) {}

  void load(const std::string& name) {
    if (!refs_.count(name) && !enclosing_->count(name)) refs_[name] = Origin::outside;
  }
  void store(const std::string& name) {
    stores_.insert(name);
    if (!refs_.count(name)) refs_[name] = enclosing_->count(name) ? Origin::outside : Origin::missing;
  }
  void parameter(const std::string& name) {
    stores_.insert(name);
    refs_[name] = Origin::parameter;
  }

  // After the branches of an `if` (each analysed on a copy of this frame's symbols).
  void branch_update(const std::vector<FrameSymbols>& branches) {
    std::map<std::string, size_t> stored_in;
    for (const FrameSymbols& branch : branches)
      for (const std::string& name : branch.stores_)
        if (!stores_.count(name)) ++stored_in[name];
    for (const FrameSymbols& branch : branches) {
      for (const auto& [name, origin] : branch.refs_) refs_[name] = origin;
      stores_.insert(branch.stores_.begin(), branch.stores_.end());
    }
    for (const auto& [name, count] : stored_in)
      if (count != branches.size()) refs_[name] = Origin::outside;
  }

  FrameLocals missing() const {
    FrameLocals names;
    for (const auto& [name, origin] : refs_)
      if (origin == Origin::missing) names.push_back(name);
    return names;
  }

  // The names this frame and its enclosing frames refer to: what frames nested in it see.
  NameSet visible() const {
    NameSet names = *enclosing_;
    for (const auto& entry : refs_) names.insert(entry.first);
    return names;
  }

 private:
  enum class Origin { outside, missing, parameter };
  const NameSet* enclosing_;
  std::map<std::string, Origin> refs_;
  NameSet stores_;
};

void load_names(const Expr* e, FrameSymbols& symbols) {
  visit_expr(e, false, [&](const Expr& x, bool) {
    if (x.kind == Expr::Kind::name) symbols.load(static_cast<const NameExpr&>(x).name);
  });
}

void store_target(const Expr& target, FrameSymbols& symbols, bool as_parameter) {
  if (target.kind == Expr::Kind::name) {
    const std::string& name = static_cast<const NameExpr&>(target).name;
    as_parameter ? symbols.parameter(name) : symbols.store(name);
  } else if (target.kind == Expr::Kind::sequence) {
    for (const ExprPtr& item : static_cast<const SequenceExpr&>(target).items)
      store_target(*item, symbols, as_parameter);
  } else if (target.kind == Expr::Kind::namespace_ref) {
    symbols.load(static_cast<const NamespaceRefExpr&>(target).name);
  }
}

void note_statement(const Stmt& s, FrameSymbols& symbols);

void note_body(const Body& body, FrameSymbols& symbols) {
  for (const StmtPtr& s : body) note_statement(*s, symbols);
}

// jinja2's visit_If: the test, then each branch on a copy; an elif is an `if` of its own inside
// the middle branch.
void note_if(const std::vector<std::pair<ExprPtr, Body>>& branches, size_t first, const Body* else_body,
             FrameSymbols& symbols) {
  load_names(branches[first].first.get(), symbols);
  FrameSymbols body = symbols, elifs = symbols, otherwise = symbols;
  note_body(branches[first].second, body);
  if (first == 0)
    for (size_t i = 1; i < branches.size(); ++i) note_if(branches, i, nullptr, elifs);
  if (else_body) note_body(*else_body, otherwise);
  symbols.branch_update({body, elifs, otherwise});
}

void note_statement(const Stmt& s, FrameSymbols& symbols) {
  switch (s.kind) {
    case Stmt::Kind::output:
      for (const auto& part : static_cast<const OutputStmt&>(s).parts) load_names(part.expr.get(), symbols);
      break;
    case Stmt::Kind::set: {
      const auto& set = static_cast<const SetStmt&>(s);
      load_names(set.value.get(), symbols);
      store_target(*set.target, symbols, false);
      break;
    }
    case Stmt::Kind::set_block:
      store_target(*static_cast<const SetBlockStmt&>(s).target, symbols, false);
      break;
    case Stmt::Kind::for_loop:
      load_names(static_cast<const ForStmt&>(s).iterable.get(), symbols);
      break;
    case Stmt::Kind::if_chain: {
      const auto& node = static_cast<const IfStmt&>(s);
      note_if(node.branches, 0, &node.else_body, symbols);
      break;
    }
    case Stmt::Kind::macro:
      symbols.store(static_cast<const MacroStmt&>(s).name);
      break;
    case Stmt::Kind::call_block:
      load_names(static_cast<const CallBlockStmt&>(s).call.get(), symbols);
      break;
    case Stmt::Kind::filter_block:
      load_names(static_cast<const FilterBlockStmt&>(s).filter.get(), symbols);
      break;
    case Stmt::Kind::with:
      for (const auto& [target, value] : static_cast<const WithStmt&>(s).assignments) load_names(value.get(), symbols);
      break;
    case Stmt::Kind::loop_control:
      break;
  }
}

void analyze_nested_frames(const Body& body, const NameSet& enclosing);

// Analyses one frame: its parameters, the expressions it evaluates on entry, its statements.
FrameLocals analyze_frame(const Body& body, const std::vector<const Expr*>& parameters,
                          const std::vector<const Expr*>& entry_loads, const NameSet& enclosing) {
  FrameSymbols symbols(enclosing);
  for (const Expr* p : parameters) store_target(*p, symbols, true);
  for (const Expr* e : entry_loads) load_names(e, symbols);
  note_body(body, symbols);
  analyze_nested_frames(body, symbols.visible());
  return symbols.missing();
}

FrameLocals analyze_macro(MacroStmt& macro, const NameSet& enclosing) {
  std::vector<std::unique_ptr<NameExpr>> names;
  std::vector<const Expr*> parameters, defaults;
  for (const std::string& p : macro.params) names.push_back(std::make_unique<NameExpr>(macro.pos, p));
  for (const char* special : {"caller", "varargs", "kwargs", "loop"})
    names.push_back(std::make_unique<NameExpr>(macro.pos, special));
  for (const auto& n : names) parameters.push_back(n.get());
  for (const ExprPtr& d : macro.defaults) defaults.push_back(d.get());
  return analyze_frame(macro.body, parameters, defaults, enclosing);
}

void analyze_nested_frames(const Body& body, const NameSet& enclosing) {
  for (const StmtPtr& s : body) {
    switch (s->kind) {
      case Stmt::Kind::for_loop: {
        auto& node = static_cast<ForStmt&>(*s);
        const NameExpr loop_name(node.pos, "loop");
        node.body_locals = analyze_frame(node.body, {node.target.get(), &loop_name}, {}, enclosing);
        node.else_locals = analyze_frame(node.else_body, {}, {}, enclosing);
        break;
      }
      case Stmt::Kind::if_chain: {
        const auto& node = static_cast<const IfStmt&>(*s);
        for (const auto& [test, branch] : node.branches) analyze_nested_frames(branch, enclosing);
        analyze_nested_frames(node.else_body, enclosing);
        break;
      }
      case Stmt::Kind::macro: {
        auto& node = static_cast<MacroStmt&>(*s);
        node.body_locals = analyze_macro(node, enclosing);
        break;
      }
      case Stmt::Kind::call_block: {
        auto& caller = *static_cast<CallBlockStmt&>(*s).caller;
        caller.body_locals = analyze_macro(caller, enclosing);
        break;
      }
      case Stmt::Kind::set_block: {
        auto& node = static_cast<SetBlockStmt&>(*s);
        node.body_locals = analyze_frame(node.body, {}, {}, enclosing);
        break;
      }
      case Stmt::Kind::filter_block: {
        auto& node = static_cast<FilterBlockStmt&>(*s);
        node.body_locals = analyze_frame(node.body, {}, {node.filter.get()}, enclosing);
        break;
      }
      case Stmt::Kind::with: {
        auto& node = static_cast<WithStmt&>(*s);
        std::vector<const Expr*> targets;
        for (const auto& [target, value] : node.assignments) targets.push_back(target.get());
        node.body_locals = analyze_frame(node.body, targets, {}, enclosing);
        break;
      }
      default:
        break;
    }
  }
}

}  // namespace

Template parse(const std::string& source) {
  Template t;
  t.body = Parser(tokenize(source)).parse_template();
  check_filter_and_test_names(t.body);
  t.body_locals = analyze_frame(t.body, {}, {}, NameSet());
  return t;
}

}  // namespace fe::jinja
