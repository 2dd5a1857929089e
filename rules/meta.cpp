// Meta expression compiler and evaluator (see meta.hpp). Recursive descent
// with a depth limit; evaluation is a small stack machine.
#include "rules/meta.hpp"

#include <cctype>
#include <cstdlib>

namespace moat::rules {
namespace {

using Op = MetaExpr::Op;

class Compiler {
 public:
  Compiler(std::string_view s, const std::function<std::optional<std::uint32_t>(std::string_view)>& resolve)
      : s_(s), resolve_(resolve) {}

  Status run(std::vector<MetaExpr::Instr>& out) {
    out_ = &out;
    if (s_.size() > kMaxMetaLength) return Error{Errc::Invalid, "meta expression too long"};
    if (!expr_or(0)) return Error{Errc::Invalid, err_};
    skip();
    if (pos_ != s_.size()) return Error{Errc::Invalid, "unexpected '" + std::string(s_.substr(pos_, 10)) + "'"};
    return {};
  }

 private:
  void skip() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool eat(std::string_view tok) {
    skip();
    if (s_.substr(pos_).starts_with(tok)) {
      pos_ += tok.size();
      return true;
    }
    return false;
  }
  bool fail(std::string msg) {
    if (err_.empty()) err_ = std::move(msg);
    return false;
  }
  void emit(Op op, std::int64_t arg = 0) { out_->push_back({op, arg}); }

  bool expr_or(unsigned d) {
    if (d > kMaxMetaDepth) return fail("meta expression nested too deeply");
    if (!expr_and(d)) return false;
    while (eat("||")) {
      if (!expr_and(d)) return false;
      emit(Op::Or);
    }
    return true;
  }
  bool expr_and(unsigned d) {
    if (!compare(d)) return false;
    while (eat("&&")) {
      if (!compare(d)) return false;
      emit(Op::And);
    }
    return true;
  }
  bool compare(unsigned d) {
    if (!sum(d)) return false;
    static constexpr std::pair<std::string_view, Op> kOps[] = {
        {">=", Op::Ge}, {"<=", Op::Le}, {"==", Op::Eq}, {"!=", Op::Ne}, {">", Op::Gt}, {"<", Op::Lt}};
    for (auto [tok, op] : kOps)
      if (eat(tok)) {
        if (!sum(d)) return false;
        emit(op);
        return true;
      }
    return true;
  }
  bool sum(unsigned d) {
    if (!product(d)) return false;
    for (;;) {
      skip();
      Op op;
      if (eat("+")) op = Op::Add;
      else if (pos_ < s_.size() && s_[pos_] == '-' ) { ++pos_; op = Op::Sub; }
      else return true;
      if (!product(d)) return false;
      emit(op);
    }
  }
  bool product(unsigned d) {
    if (!unary(d)) return false;
    while (eat("*")) {
      if (!unary(d)) return false;
      emit(Op::Mul);
    }
    return true;
  }
  bool unary(unsigned d) {
    if (d > kMaxMetaDepth) return fail("meta expression nested too deeply");
    skip();
    if (pos_ < s_.size() && s_[pos_] == '!' && !s_.substr(pos_).starts_with("!=")) {
      ++pos_;
      if (!unary(d + 1)) return false;
      emit(Op::Not);
      return true;
    }
    if (pos_ < s_.size() && s_[pos_] == '-') {
      ++pos_;
      if (!unary(d + 1)) return false;
      emit(Op::Neg);
      return true;
    }
    if (eat("(")) {
      if (!expr_or(d + 1)) return false;
      if (!eat(")")) return fail("missing ')'");
      return true;
    }
    return atom();
  }
  bool atom() {
    skip();
    std::size_t start = pos_;
    if (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) {
      std::int64_t v = 0;
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) {
        if (v > 1000000000) return fail("number too large");
        v = v * 10 + (s_[pos_++] - '0');
      }
      emit(Op::Push, v);
      return true;
    }
    while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_')) ++pos_;
    if (start == pos_) return fail(pos_ < s_.size() ? "unexpected '" + std::string(1, s_[pos_]) + "'" : "unexpected end");
    auto name = s_.substr(start, pos_ - start);
    auto idx = resolve_(name);
    if (!idx) return fail("unknown rule " + std::string(name));
    emit(Op::Rule, *idx);
    return true;
  }

  std::string_view s_;
  const std::function<std::optional<std::uint32_t>(std::string_view)>& resolve_;
  std::size_t pos_ = 0;
  std::vector<MetaExpr::Instr>* out_ = nullptr;
  std::string err_;
};

}  // namespace

Result<MetaExpr> MetaExpr::compile(std::string_view text,
                                   const std::function<std::optional<std::uint32_t>(std::string_view)>& resolve) {
  MetaExpr m;
  Compiler c(text, resolve);
  if (auto st = c.run(m.code_); !st) return st.error();
  return m;
}

std::vector<std::uint32_t> MetaExpr::inputs() const {
  std::vector<std::uint32_t> out;
  for (const auto& i : code_)
    if (i.op == Op::Rule) out.push_back(static_cast<std::uint32_t>(i.arg));
  return out;
}

std::int64_t MetaExpr::eval(std::span<const std::int64_t> values) const {
  // Depth is bounded by the expression length, which is bounded at compile.
  std::vector<std::int64_t> st;
  st.reserve(16);
  for (const auto& i : code_) {
    if (i.op == Op::Push) { st.push_back(i.arg); continue; }
    if (i.op == Op::Rule) { st.push_back(values[static_cast<std::size_t>(i.arg)]); continue; }
    if (i.op == Op::Not) { st.back() = !st.back(); continue; }
    if (i.op == Op::Neg) { st.back() = -st.back(); continue; }
    std::int64_t b = st.back();
    st.pop_back();
    std::int64_t& a = st.back();
    switch (i.op) {
      case Op::Add: a = a + b; break;
      case Op::Sub: a = a - b; break;
      case Op::Mul: a = (a > 1000000 || a < -1000000 || b > 1000000 || b < -1000000) ? 1000000000 : a * b; break;
      case Op::And: a = a && b; break;
      case Op::Or: a = a || b; break;
      case Op::Gt: a = a > b; break;
      case Op::Ge: a = a >= b; break;
      case Op::Lt: a = a < b; break;
      case Op::Le: a = a <= b; break;
      case Op::Eq: a = a == b; break;
      case Op::Ne: a = a != b; break;
      default: break;
    }
  }
  return st.empty() ? 0 : st.back();
}

}  // namespace moat::rules
