// tokenizer/jinja_ast.h — the syntax tree of a Jinja template (jinja2.nodes for the subset the
// interpreter supports). The parser (jinja_parser.h) builds it; the renderer (jinja_render.h) walks
// it. Every node keeps the position of the token it starts at, for error messages.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace fe::jinja {

struct Expr {
  enum class Kind {
    constant,       // a literal
    name,           // a variable
    sequence,       // [a, b] or (a, b)
    dict,           // {k: v}
    attribute,      // x.name
    item,           // x[key], x[a:b]
    slice,          // a:b:c, only as an item key
    call,           // f(args)
    filter,         // x | name(args)
    test,           // x is name(args)
    conditional,    // a if c else b
    binary,         // + - * / // % **
    concat,         // a ~ b ~ c
    compare,        // a < b == c, in, not in
    logical,        // and, or
    logical_not,    // not x
    unary,          // -x, +x
    namespace_ref,  // ns.attr as an assignment target
  };
  Expr(Kind kind, SourcePos pos) : kind(kind), pos(pos) {}
  virtual ~Expr() = default;
  Kind kind;
  SourcePos pos;
  // Nodes on the longest path from here to a leaf (1 for a leaf), or 0 until the parser measures
  // it. The parser bounds it, so walking the tree recursively (rendering, destroying) stays within
  // the stack however many operators, attributes or filters a template chains.
  mutable int height = 0;
};
using ExprPtr = std::unique_ptr<Expr>;

struct ConstExpr : Expr {
  ConstExpr(SourcePos pos, Value value) : Expr(Kind::constant, pos), value(std::move(value)) {}
  Value value;
};

struct NameExpr : Expr {
  NameExpr(SourcePos pos, std::string name) : Expr(Kind::name, pos), name(std::move(name)) {}
  std::string name;
};

struct SequenceExpr : Expr {
  SequenceExpr(SourcePos pos, bool tuple) : Expr(Kind::sequence, pos), tuple(tuple) {}
  bool tuple;  // a tuple, else a list
  std::vector<ExprPtr> items;
};

struct DictExpr : Expr {
  explicit DictExpr(SourcePos pos) : Expr(Kind::dict, pos) {}
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
};

struct AttributeExpr : Expr {
  AttributeExpr(SourcePos pos, ExprPtr object, std::string attribute)
      : Expr(Kind::attribute, pos), object(std::move(object)), attribute(std::move(attribute)) {}
  ExprPtr object;
  std::string attribute;
};

struct ItemExpr : Expr {
  ItemExpr(SourcePos pos, ExprPtr object, ExprPtr key)
      : Expr(Kind::item, pos), object(std::move(object)), key(std::move(key)) {}
  ExprPtr object;
  ExprPtr key;  // a SliceExpr for x[a:b:c]
};

struct SliceExpr : Expr {
  explicit SliceExpr(SourcePos pos) : Expr(Kind::slice, pos) {}
  ExprPtr start, stop, step;  // each may be null
};

struct Arguments {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
  ExprPtr star_args;    // *args
  ExprPtr star_kwargs;  // **kwargs
};

struct CallExpr : Expr {
  CallExpr(SourcePos pos, ExprPtr callee) : Expr(Kind::call, pos), callee(std::move(callee)) {}
  ExprPtr callee;
  Arguments args;
};

// x | name(args) and x is name(args). A filter's operand is null inside {% filter %} and
// {% set x | filter %}, where the block's text is the operand.
struct FilterExpr : Expr {
  FilterExpr(Kind kind, SourcePos pos, ExprPtr operand, std::string name)
      : Expr(kind, pos), operand(std::move(operand)), name(std::move(name)) {}
  ExprPtr operand;
  std::string name;
  Arguments args;
};

struct ConditionalExpr : Expr {
  explicit ConditionalExpr(SourcePos pos) : Expr(Kind::conditional, pos) {}
  ExprPtr test, then_value, else_value;  // else_value may be null (then the result is undefined)
};

struct BinaryExpr : Expr {
  BinaryExpr(SourcePos pos, BinaryOp op, ExprPtr left, ExprPtr right)
      : Expr(Kind::binary, pos), op(op), left(std::move(left)), right(std::move(right)) {}
  BinaryOp op;
  ExprPtr left, right;
};

struct ConcatExpr : Expr {
  explicit ConcatExpr(SourcePos pos) : Expr(Kind::concat, pos) {}
  std::vector<ExprPtr> operands;
};

enum class CompareOperator { eq, ne, lt, le, gt, ge, in, not_in };

struct CompareExpr : Expr {
  CompareExpr(SourcePos pos, ExprPtr first) : Expr(Kind::compare, pos), first(std::move(first)) {}
  ExprPtr first;
  std::vector<std::pair<CompareOperator, ExprPtr>> rest;  // a < b < c compares pairwise, as Python
};

struct LogicalExpr : Expr {
  LogicalExpr(SourcePos pos, bool is_and, ExprPtr left, ExprPtr right)
      : Expr(Kind::logical, pos), is_and(is_and), left(std::move(left)), right(std::move(right)) {}
  bool is_and;  // and, else or; both return an operand, as Python
  ExprPtr left, right;
};

struct NotExpr : Expr {
  NotExpr(SourcePos pos, ExprPtr operand) : Expr(Kind::logical_not, pos), operand(std::move(operand)) {}
  ExprPtr operand;
};

struct UnaryExpr : Expr {
  UnaryExpr(SourcePos pos, bool negative, ExprPtr operand)
      : Expr(Kind::unary, pos), negative(negative), operand(std::move(operand)) {}
  bool negative;
  ExprPtr operand;
};

struct NamespaceRefExpr : Expr {
  NamespaceRefExpr(SourcePos pos, std::string name, std::string attribute)
      : Expr(Kind::namespace_ref, pos), name(std::move(name)), attribute(std::move(attribute)) {}
  std::string name, attribute;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

// Names a frame (the template, a loop iteration, a macro call, a block) holds as undefined from
// its start until its own {% set %} runs, even where an enclosing scope or the context has them:
// jinja2 compiles such a name to a local that starts out missing (see jinja_parser.cpp).
using FrameLocals = std::vector<std::string>;

struct Stmt {
  enum class Kind { output, for_loop, if_chain, set, set_block, macro, call_block, filter_block, with, loop_control };
  Stmt(Kind kind, SourcePos pos) : kind(kind), pos(pos) {}
  virtual ~Stmt() = default;
  Kind kind;
  SourcePos pos;
};

// Template text and {{ expressions }}, in order. An expression part has a null text.
struct OutputStmt : Stmt {
  explicit OutputStmt(SourcePos pos) : Stmt(Kind::output, pos) {}
  struct Part {
    std::string text;
    ExprPtr expr;
  };
  std::vector<Part> parts;
};

struct ForStmt : Stmt {
  explicit ForStmt(SourcePos pos) : Stmt(Kind::for_loop, pos) {}
  ExprPtr target;  // a name or a tuple of names
  ExprPtr iterable;
  ExprPtr condition;  // `for x in xs if condition`, may be null
  bool recursive = false;
  Body body, else_body;  // else_body runs when there was no iteration
  FrameLocals body_locals, else_locals;
};

struct IfStmt : Stmt {
  explicit IfStmt(SourcePos pos) : Stmt(Kind::if_chain, pos) {}
  std::vector<std::pair<ExprPtr, Body>> branches;  // if and each elif
  Body else_body;
};

struct SetStmt : Stmt {
  SetStmt(SourcePos pos, ExprPtr target, ExprPtr value)
      : Stmt(Kind::set, pos), target(std::move(target)), value(std::move(value)) {}
  ExprPtr target;  // a name, a tuple of names or a NamespaceRefExpr
  ExprPtr value;
};

struct SetBlockStmt : Stmt {
  explicit SetBlockStmt(SourcePos pos) : Stmt(Kind::set_block, pos) {}
  ExprPtr target;
  ExprPtr filter;  // may be null
  Body body;
  FrameLocals body_locals;
};

// A macro, or the body of a {% call %} block (the `caller` the called macro receives).
struct MacroStmt : Stmt {
  explicit MacroStmt(SourcePos pos) : Stmt(Kind::macro, pos) {}
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // for the last defaults.size() params
  Body body;
  FrameLocals body_locals;
  // Whether the body refers to these names: jinja2 then collects extra arguments into them.
  bool uses_caller = false, uses_varargs = false, uses_kwargs = false;
};

struct CallBlockStmt : Stmt {
  explicit CallBlockStmt(SourcePos pos) : Stmt(Kind::call_block, pos) {}
  ExprPtr call;  // a CallExpr
  std::unique_ptr<MacroStmt> caller;
};

struct FilterBlockStmt : Stmt {
  explicit FilterBlockStmt(SourcePos pos) : Stmt(Kind::filter_block, pos) {}
  ExprPtr filter;
  Body body;
  FrameLocals body_locals;
};

// {% with a = 1 %}...{% endwith %}, and HF's {% generation %}...{% endgeneration %} (no assignments).
struct WithStmt : Stmt {
  explicit WithStmt(SourcePos pos) : Stmt(Kind::with, pos) {}
  std::vector<std::pair<ExprPtr, ExprPtr>> assignments;
  Body body;
  FrameLocals body_locals;
};

struct LoopControlStmt : Stmt {
  LoopControlStmt(SourcePos pos, bool is_break) : Stmt(Kind::loop_control, pos), is_break(is_break) {}
  bool is_break;  // break, else continue
};

}  // namespace fe::jinja
