// Modified UTF-7 (RFC 3501 §5.1.3) both ways, its canonical-form checks, and
// the mailbox name rules that keep names from becoming paths unchecked.
#include <catch2/catch.hpp>

#include "common/proto/imap/mutf7.hpp"

using namespace moat::proto::imap;

TEST_CASE("modified UTF-7 round trips (RFC 3501 examples)", "[imap]") {
  struct Case {
    std::string_view utf8, mutf7;
  };
  for (auto c : {Case{"INBOX", "INBOX"}, Case{"a&b", "a&-b"}, Case{"&", "&-"},
                 Case{"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
                      "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
                 Case{"Entw\xc3\xbcrfe", "Entw&APw-rfe"}, Case{"\xf0\x9f\x98\x80", "&2D3eAA-"},
                 Case{"Gel\xc3\xb6scht & Alt", "Gel&APY-scht &- Alt"}}) {
    INFO(c.mutf7);
    CHECK(mutf7_encode(c.utf8).value() == c.mutf7);
    CHECK(mutf7_decode(c.mutf7).value() == c.utf8);
  }
}

TEST_CASE("non-canonical or broken modified UTF-7 is refused", "[imap]") {
  for (std::string_view s : {"&", "&AGE", "&AGE-&AGE-", "&AEE-", "&U,BTF2XlZyyKng-x&Jjo!", "&2D0-", "&3gA-",
                             "&AAA-", "a\x80", "&APw/-", "&APx-", "&A-"}) {
    INFO(s);
    CHECK_FALSE(mutf7_decode(s).ok());
  }
  // &AEE- would be "A": printable ASCII must be written as itself
  CHECK_FALSE(mutf7_encode("\xc3").ok());
  CHECK_FALSE(mutf7_encode("\xed\xa0\x80").ok());  // a surrogate in UTF-8
  CHECK_FALSE(mutf7_encode("\xc0\xaf").ok());      // overlong "/"
  CHECK_FALSE(mutf7_encode(std::string_view("a\0b", 3)).ok());
}

TEST_CASE("mailbox names never become paths unchecked", "[imap]") {
  for (std::string_view bad : {"", "..", "../x", "a/../b", "a/./b", "/etc", "a/", "a//b", "~root", "a\tb", "a\x7f",
                               "a*", "a%b", "\xff"}) {
    INFO(bad);
    CHECK_FALSE(check_mailbox_name(bad).ok());
  }
  CHECK_FALSE(check_mailbox_name(std::string(256, 'a')).ok());
  CHECK_FALSE(check_mailbox_name("a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q").ok());
  CHECK(check_mailbox_name("a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p").ok());
  CHECK(check_mailbox_name("inbox").value() == "INBOX");
  CHECK(check_mailbox_name("InBoX/Sub").value() == "INBOX/Sub");
  CHECK(check_mailbox_name("inboxes").value() == "inboxes");
  CHECK(check_mailbox_name("Entw\xc3\xbcrfe").value() == "Entw\xc3\xbcrfe");
  CHECK(check_mailbox_name(".hidden").value() == ".hidden");
}
