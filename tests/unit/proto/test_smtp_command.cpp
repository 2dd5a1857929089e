// parse_command and the typed MAIL/RCPT parameter helpers (RFC 5321 §4.1,
// RFC 1869, RFC 1870, RFC 3030, RFC 3461, RFC 4954, RFC 6152, RFC 6531).
#include <catch2/catch.hpp>

#include "common/proto/smtp_parser.hpp"

using namespace moat;
using namespace moat::proto::smtp;

TEST_CASE("verbs are case-insensitive; arguments follow one space") {
  using Row = std::tuple<std::string, Verb, std::string>;
  auto [line, verb, arg] = GENERATE(
      Row{"helo client.example", Verb::Helo, "client.example"}, Row{"EHLO [192.0.2.1]", Verb::Ehlo, "[192.0.2.1]"},
      Row{"EhLo x  ", Verb::Ehlo, "x"}, Row{"DATA", Verb::Data, ""}, Row{"data ", Verb::Data, ""},
      Row{"RSET", Verb::Rset, ""}, Row{"NOOP", Verb::Noop, ""}, Row{"noop anything at all", Verb::Noop, "anything at all"},
      Row{"QUIT", Verb::Quit, ""}, Row{"VRFY postmaster", Verb::Vrfy, "postmaster"}, Row{"EXPN list", Verb::Expn, "list"},
      Row{"HELP", Verb::Help, ""}, Row{"HELP DATA", Verb::Help, "DATA"}, Row{"starttls", Verb::StartTls, ""},
      Row{"AUTH PLAIN AGFAYg==", Verb::Auth, "PLAIN AGFAYg=="}, Row{"AUTH LOGIN", Verb::Auth, "LOGIN"});
  auto r = parse_command(line);
  INFO(line);
  REQUIRE(r.ok());
  CHECK(r->verb == verb);
  CHECK(r->argument == arg);
}

TEST_CASE("command errors") {
  using Row = std::pair<std::string, Errc>;
  auto [line, code] = GENERATE(
      Row{"", Errc::UnknownCommand}, Row{"XYZZY", Errc::UnknownCommand}, Row{" QUIT", Errc::UnknownCommand},
      Row{"MAILFROM:<a@b.example>", Errc::UnknownCommand}, Row{"HELO", Errc::ParamSyntax}, Row{"EHLO   ", Errc::ParamSyntax},
      Row{"DATA now", Errc::ParamSyntax}, Row{"QUIT please", Errc::ParamSyntax}, Row{"STARTTLS x", Errc::ParamSyntax},
      Row{"RSET x", Errc::ParamSyntax}, Row{"VRFY", Errc::ParamSyntax}, Row{"AUTH", Errc::ParamSyntax},
      Row{"NOOP\x7f", Errc::SyntaxError}, Row{"NOOP\x1b[0m", Errc::SyntaxError}, Row{std::string("NO\0OP", 5), Errc::SyntaxError},
      Row{"BDAT", Errc::ParamSyntax}, Row{"BDAT x", Errc::ParamSyntax}, Row{"BDAT -1", Errc::ParamSyntax},
      Row{"BDAT 10 FIRST", Errc::ParamSyntax}, Row{"BDAT 10 LAST x", Errc::ParamSyntax},
      Row{"BDAT 99999999999999999999", Errc::ParamSyntax}, Row{"BDAT 123456789012345678901", Errc::ParamSyntax});
  INFO(line);
  auto r = parse_command(line);
  REQUIRE(!r.ok());
  CHECK(r.error().code == code);
}

TEST_CASE("parse_command enforces the line limit itself") {
  CHECK(parse_command("NOOP " + std::string(2041, 'x')).ok());  // 2046 + CRLF = 2048
  CHECK(parse_command("NOOP " + std::string(2042, 'x')).error().code == Errc::LineTooLong);
  CHECK(parse_command("NOOP xx", 8).error().code == Errc::LineTooLong);
}

TEST_CASE("BDAT size and LAST") {
  auto r = parse_command("BDAT 18446744073709551615 last");
  REQUIRE(r.ok());
  CHECK(r->bdat_size == UINT64_MAX);
  CHECK(r->bdat_last);
  r = parse_command("bdat 0");
  REQUIRE(r.ok());
  CHECK(r->bdat_size == 0);
  CHECK(!r->bdat_last);
}

TEST_CASE("MAIL FROM and RCPT TO forms") {
  using Row = std::tuple<std::string, bool, std::string>;  // line, ok, path
  auto [line, ok, path] = GENERATE(
      Row{"MAIL FROM:<a@b.example>", true, "a@b.example"}, Row{"mail from:<a@b.example>", true, "a@b.example"},
      Row{"MAIL FROM: <a@b.example>", true, "a@b.example"}, Row{"MAIL FROM:  <a@b.example>", false, ""},
      Row{"MAIL FROM:<>", true, ""}, Row{"MAIL FROM:a@b.example", false, ""}, Row{"MAIL FROM:<a@b.example", false, ""},
      Row{"MAIL TO:<a@b.example>", false, ""}, Row{"MAIL FROM <a@b.example>", false, ""},
      Row{"MAIL FROM:<a@b.example>SIZE=1", false, ""}, Row{"MAIL FROM:<a@b.example> ", true, "a@b.example"},
      Row{"MAIL FROM:<\"x>y\"@b.example>", true, "\"x>y\"@b.example"},
      Row{"MAIL FROM:<\"x\\\">\"@b.example>", true, "\"x\\\">\"@b.example"}, Row{"MAIL FROM:<a<b@c>", false, ""},
      Row{"RCPT TO:<c@d.example>", true, "c@d.example"}, Row{"rcpt to: <c@d.example>", true, "c@d.example"},
      Row{"RCPT TO:<>", false, ""}, Row{"RCPT TO:<Postmaster>", true, "Postmaster"}, Row{"RCPT FROM:<c@d>", false, ""},
      Row{"RCPT TO:<@a.example,@b.example:c@d.example>", true, "@a.example,@b.example:c@d.example"});
  INFO(line);
  auto r = parse_command(line);
  REQUIRE(r.ok() == ok);
  if (ok) CHECK(r->path == path);
  if (!ok) CHECK(r.error().code == Errc::ParamSyntax);
}

TEST_CASE("ESMTP parameters: syntax, order, upper-casing, duplicates") {
  auto r = parse_command("MAIL FROM:<a@b.example> size=100 Body=8BITMIME  SMTPUTF8 x-vendor-1=v");
  REQUIRE(r.ok());
  REQUIRE(r->params.size() == 4);
  CHECK(r->params[0].keyword == "SIZE");
  CHECK(r->params[0].value == "100");
  CHECK(r->params[1].keyword == "BODY");
  CHECK(r->params[2].keyword == "SMTPUTF8");
  CHECK(!r->params[2].has_value);
  CHECK(r->params[3].keyword == "X-VENDOR-1");
  auto bad = GENERATE(as<std::string>{}, "SIZE=1 size=2", "SIZE=", "=1", "-X=1", "K_Y=1", "K=a=b", "K=\xc3\xa9", "K=a\tb");
  INFO(bad);
  auto e = parse_command("MAIL FROM:<a@b.example> " + bad);
  REQUIRE(!e.ok());
  CHECK(e.error().code == Errc::ParamSyntax);
}

namespace {
std::vector<Param> params_of(const std::string& line) {
  auto r = parse_command(line);
  REQUIRE(r.ok());
  return r->params;
}
}  // namespace

TEST_CASE("parse_mail_params: typed values") {
  auto m = parse_mail_params(params_of(
      "MAIL FROM:<a@b.example> SIZE=12345 BODY=binarymime SMTPUTF8 RET=HDRS ENVID=QQ+2B314 AUTH=a+2Bb@c.example"));
  REQUIRE(m.ok());
  CHECK(m->size == 12345u);
  CHECK(m->body == BodyType::BinaryMime);
  CHECK(m->body_given);
  CHECK(m->smtputf8);
  CHECK(m->ret == DsnRet::Hdrs);
  CHECK(m->envid == "QQ+2B314");
  CHECK(m->auth == "a+b@c.example");
  auto d = parse_mail_params({});
  REQUIRE(d.ok());
  CHECK(!d->size);
  CHECK(d->body == BodyType::SevenBit);
  CHECK(d->ret == DsnRet::Default);
  CHECK(parse_mail_params(params_of("MAIL FROM:<> AUTH=<>"))->auth == "<>");
}

TEST_CASE("parse_mail_params: errors") {
  using Row = std::pair<std::string, Errc>;
  auto [p, code] = GENERATE(Row{"SIZE=abc", Errc::ParamSyntax}, Row{"SIZE", Errc::ParamSyntax},
                            Row{"SIZE=99999999999999999999999", Errc::ParamSyntax}, Row{"BODY=9BIT", Errc::ParamSyntax},
                            Row{"BODY", Errc::ParamSyntax}, Row{"SMTPUTF8=yes", Errc::ParamSyntax},
                            Row{"RET=ALL", Errc::ParamSyntax}, Row{"ENVID=a+2x", Errc::ParamSyntax},
                            Row{"ENVID=" + std::string(101, 'a'), Errc::ParamSyntax}, Row{"AUTH=a+zz", Errc::ParamSyntax},
                            Row{"NOTIFY=NEVER", Errc::NotImplemented}, Row{"XFOO=1", Errc::NotImplemented});
  INFO(p);
  auto m = parse_mail_params(params_of("MAIL FROM:<a@b.example> " + p));
  REQUIRE(!m.ok());
  CHECK(m.error().code == code);
}

TEST_CASE("parse_rcpt_params: NOTIFY and ORCPT") {
  auto r = parse_rcpt_params(params_of("RCPT TO:<c@d.example> NOTIFY=success,Delay ORCPT=rfc822;c+2Bx@d.example"));
  REQUIRE(r.ok());
  CHECK(r->notify == (DsnNotify::Success | DsnNotify::Delay));
  CHECK(r->orcpt == "rfc822;c+2Bx@d.example");
  CHECK(r->orcpt_type == "rfc822");
  CHECK(r->orcpt_address == "c+x@d.example");
  CHECK(parse_rcpt_params(params_of("RCPT TO:<c@d.example> NOTIFY=never"))->notify == DsnNotify::Never);
  CHECK(parse_rcpt_params(params_of("RCPT TO:<c@d.example> NOTIFY=FAILURE"))->notify == DsnNotify::Failure);
  auto bad = GENERATE(as<std::string>{}, "NOTIFY=NEVER,SUCCESS", "NOTIFY", "NOTIFY=SUCCESS,", "NOTIFY=ALWAYS",
                      "ORCPT=c@d.example", "ORCPT=;c@d", "ORCPT=rfc822;", "ORCPT=rfc822;a+4", "ORCPT=r_f;a");
  INFO(bad);
  auto e = parse_rcpt_params(params_of("RCPT TO:<c@d.example> " + bad));
  REQUIRE(!e.ok());
  CHECK(e.error().code == Errc::ParamSyntax);
  CHECK(parse_rcpt_params(params_of("RCPT TO:<c@d.example> SIZE=1")).error().code == Errc::NotImplemented);
}
