// moatctl quarantine list|show|release|delete|learn|expire|allow|block|unlist|lists:
// the admin side of quarantine/ (docs/quarantine.md). Everything but release
// works on the store directly (SQLite is safe to share with a running moatd,
// like `moatctl user`); release asks moatd over the control socket, because
// the released message goes through moatd's spool and queue.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/config.hpp"
#include "filters/bayes/bayes.hpp"
#include "gateway/quarantine_admin.hpp"
#include "quarantine/store.hpp"
#include "tools/moatctl.hpp"

namespace moat::ctl {
namespace {

int usage() {
  std::fprintf(stderr,
               "usage: moatctl quarantine list [--kind quarantine|reject] [--limit N] [--json]\n"
               "       moatctl quarantine show ID [--json] [--raw]\n"
               "       moatctl quarantine release|delete ID [--json]\n"
               "       moatctl quarantine learn ID --spam|--ham [--json]\n"
               "       moatctl quarantine expire [--json]\n"
               "       moatctl quarantine allow|block DOMAIN|ID [--json]\n"
               "       moatctl quarantine unlist DOMAIN\n"
               "       moatctl quarantine lists [--json]\n");
  return 2;
}

int fail(const std::string& what) {
  std::fprintf(stderr, "moatctl: %s\n", what.c_str());
  return 1;
}

int ok(bool json, const std::string& json_text, const std::string& text) {
  std::fputs((json ? json_text : text).c_str(), stdout);
  return 0;
}

// allow/block take a domain, or the id of a stored message whose
// authenticated domain is meant. Ids have no dots; domains here must.
Result<std::string> list_domain(quarantine::Store& store, const std::string& arg) {
  if (arg.find('.') != std::string::npos) {
    std::string d = arg;
    if (d.back() == '.') d.pop_back();
    if (!config::is_domain_name(d)) return Error{Errc::Invalid, arg + ": not a domain name"};
    return d;
  }
  auto e = store.get(arg);
  if (!e) return e.error();
  if (e->auth_domain.empty())
    return Error{Errc::Invalid, arg + ": the sender of this message was not authenticated (no aligned SPF/DKIM pass)"};
  return e->auth_domain;
}

// A running moatd keeps the sender lists in memory: have it reread them. When
// it is not running there is nothing to tell; it reads them when it starts.
void tell_moatd(const config::Config& cfg) {
  std::string reply;
  if (ask(cfg.server.control_socket, "sender-lists reload", reply) && reply.rfind("ERROR", 0) == 0)
    std::fprintf(stderr, "moatctl: moatd did not reload the sender lists: %s", reply.c_str());
}

}  // namespace

int quarantine_cmd(const Context& ctx, const Args& args) {
  bool json = false, raw = false;
  std::optional<filters::bayes::Class> learn_as;
  std::optional<quarantine::Kind> kind;
  std::size_t limit = 0;
  Args rest;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a == "--json") {
      json = true;
    } else if (a == "--raw") {
      raw = true;
    } else if (a == "--spam" || a == "--ham") {
      learn_as = a == "--spam" ? filters::bayes::Class::Spam : filters::bayes::Class::Ham;
    } else if (a == "--kind" && i + 1 < args.size()) {
      const auto& k = args[++i];
      if (k != "quarantine" && k != "reject") return usage();
      kind = k == "reject" ? quarantine::Kind::Rejected : quarantine::Kind::Quarantined;
    } else if (a == "--limit" && i + 1 < args.size()) {
      limit = std::strtoul(args[++i].c_str(), nullptr, 10);
    } else {
      rest.push_back(a);
    }
  }
  if (rest.empty()) return usage();
  const std::string sub = rest[0];
  const bool one_arg = sub == "show" || sub == "learn" || sub == "release" || sub == "delete" || sub == "allow" || sub == "block" ||
                       sub == "unlist";
  if (one_arg ? rest.size() != 2 : rest.size() != 1) return usage();
  if (!one_arg && sub != "list" && sub != "expire" && sub != "lists") return usage();
  if (sub == "learn" && !learn_as) return usage();
  if ((sub == "show" || sub == "release" || sub == "delete" || sub == "learn") && !quarantine::valid_id(rest[1]))
    return fail("invalid quarantine id " + rest[1]);

  auto cfg = config::load(ctx.config_file);
  if (!cfg) return fail(cfg.error().detail);
  if (sub == "release") {
    std::string reply;
    if (ask((*cfg)->server.control_socket, "quarantine release " + rest[1] + (json ? " --json" : ""), reply))
      return print_reply(reply);
    return fail("moatd is not running (no answer on " + (*cfg)->server.control_socket.string() +
                "); 'quarantine release' needs the daemon");
  }
  quarantine::Store store((*cfg)->quarantine_dir(), (*cfg)->quarantine_db());
  if (auto st = store.open(false); !st) return fail(st.error().detail);

  if (sub == "list") {
    auto l = store.list(limit, kind);
    if (!l) return fail(l.error().detail);
    std::fputs(gateway::qadmin::format_list(*l, json).c_str(), stdout);
    return 0;
  }
  if (sub == "show") {
    auto e = store.get(rest[1]);
    if (!e) return fail(e.error().detail);
    auto bytes = store.read(rest[1]);
    if (!bytes) return fail(bytes.error().detail);
    auto msg = gateway::qadmin::decode_file(*bytes);
    if (!msg) return fail(rest[1] + ": stored file is damaged: " + msg.error().detail);
    if (raw) {
      std::fwrite(msg->message.data(), 1, msg->message.size(), stdout);
      return 0;
    }
    std::fputs(gateway::qadmin::format_show(*e, msg->message, json).c_str(), stdout);
    return 0;
  }
  if (sub == "learn") {
    // Training from quarantine decisions: the stored message (our header
    // block included) into the global Bayes counts (filters/bayes).
    auto bytes = store.read(rest[1]);
    if (!bytes) return fail(bytes.error().detail);
    auto msg = gateway::qadmin::decode_file(*bytes);
    if (!msg) return fail(rest[1] + ": stored file is damaged: " + msg.error().detail);
    auto r = filters::bayes::learn(**cfg, msg->message, *learn_as);
    if (!r) return fail(r.error().detail);
    std::string as = std::string(filters::bayes::class_name(*learn_as));
    std::string what = *r == filters::bayes::LearnResult::AlreadyLearned ? "already learned"
                       : *r == filters::bayes::LearnResult::Relearned    ? "relearned"
                                                                         : "learned";
    return ok(json, "{\"ok\":true,\"id\":\"" + rest[1] + "\",\"class\":\"" + as + "\",\"result\":\"" + what + "\"}\n",
              "OK: " + rest[1] + " " + what + " as " + as + "\n");
  }
  if (sub == "delete") {
    if (auto st = store.remove(rest[1]); !st) return fail(st.error().detail);
    return ok(json, "{\"ok\":true,\"id\":\"" + rest[1] + "\"}\n", "OK: " + rest[1] + " deleted\n");
  }
  if (sub == "expire") {
    auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    auto n = store.expire(now.count());
    if (!n) return fail(n.error().detail);
    return ok(json, "{\"ok\":true,\"expired\":" + std::to_string(*n) + "}\n", "OK: " + std::to_string(*n) + " expired\n");
  }
  if (sub == "allow" || sub == "block") {
    auto d = list_domain(store, rest[1]);
    if (!d) return fail(d.error().detail);
    auto k = sub == "block" ? quarantine::ListKind::Block : quarantine::ListKind::Allow;
    if (auto st = store.set_list(*d, k); !st) return fail(st.error().detail);
    tell_moatd(**cfg);
    return ok(json, "{\"ok\":true,\"domain\":\"" + *d + "\",\"list\":\"" + sub + "\"}\n",
              "OK: " + *d + " " + (sub == "block" ? "blocked" : "allowed") + "\n");
  }
  if (sub == "unlist") {
    if (auto st = store.unlist(rest[1]); !st) return fail(st.error().detail);
    tell_moatd(**cfg);
    return ok(json, "{\"ok\":true}\n", "OK: " + rest[1] + " removed from the sender lists\n");
  }
  auto l = store.lists();
  if (!l) return fail(l.error().detail);
  std::fputs(gateway::qadmin::format_lists(*l, json).c_str(), stdout);
  return 0;
}

}  // namespace moat::ctl
