// Fuzz target: the rule file parser (rules/rule_file.hpp) and meta
// expressions. Oracles: a parse fed in two pieces at a split taken from the
// input gives the same rules as one piece; what parses writes back (to_text)
// and parses again to the same text (round trip).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "rules/meta.hpp"
#include "rules/rule_file.hpp"

using namespace moat::rules;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t cut = in.empty() ? 0 : data[0] % (in.size() + 1);

  auto whole = parse(in, "f.rules");
  Parser p("f.rules");
  p.feed(in.substr(0, cut));
  p.feed(in.substr(cut));
  auto st = p.finish();
  if (bool(whole) != bool(st)) std::abort();
  if (!whole) {
    if (whole.error().detail != st.error().detail) std::abort();
    return 0;
  }
  const std::string text = to_text(*whole);
  if (to_text(p.rules()) != text) std::abort();
  auto again = parse(text, "f.rules");
  if (!again || to_text(*again) != text) std::abort();

  // Meta expressions over any names: compile never crashes, eval stays in bounds.
  std::vector<std::int64_t> values(whole->size() + 1, 1);
  for (const auto& r : *whole) {
    if (r.cls != RuleClass::Meta) continue;
    auto m = MetaExpr::compile(r.expr, [&](std::string_view) -> std::optional<std::uint32_t> {
      return static_cast<std::uint32_t>(values.size() - 1);
    });
    if (m) (void)m->eval(values);
  }
  return 0;
}
