// PCRE2 as the rule set compiles patterns (non-UTF, optional CASELESS): the
// oracle the rules tests compare Hyperscan-side rewrites against.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <string>
#include <string_view>

namespace moat::test {

struct Re {
  pcre2_code* code = nullptr;
  pcre2_match_data* md = nullptr;
  Re(const std::string& p, bool caseless) {
    int err = 0;
    PCRE2_SIZE off = 0;
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), caseless ? PCRE2_CASELESS : 0, &err, &off,
                         nullptr);
    REQUIRE(code);
    md = pcre2_match_data_create(1, nullptr);
  }
  ~Re() {
    pcre2_match_data_free(md);
    pcre2_code_free(code);
  }
  Re(const Re&) = delete;
  Re& operator=(const Re&) = delete;
  bool match(std::string_view s, std::size_t start = 0) const {
    return pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), start, 0, md, nullptr) >= 0;
  }
};

}  // namespace moat::test
