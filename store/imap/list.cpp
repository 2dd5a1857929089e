// See list.hpp (RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 3348
// CHILDREN, RFC 6154 SPECIAL-USE, RFC 9051 §6.3.9 and appendix E).
#include "store/imap/list.hpp"
#include "common/text.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

namespace moat::store::imap {
namespace {

namespace ip = proto::imap;

bool match_exact(std::string_view pat, std::string_view name) {
  if (pat.empty()) return name.empty();
  if (pat[0] == '*' || pat[0] == '%') {
    // Collapse runs of wildcards so "**...*" stays linear per level.
    const auto rest = pat.substr(1);
    for (std::size_t i = 0; i <= name.size(); ++i) {
      if (match_exact(rest, name.substr(i))) return true;
      if (i < name.size() && pat[0] == '%' && name[i] == '/') return false;
    }
    return false;
  }
  return !name.empty() && pat[0] == name[0] && match_exact(pat.substr(1), name.substr(1));
}

bool is_inbox_prefix(std::string_view s) {
  return s.size() >= 5 && upper(s.substr(0, 5)) == "INBOX" && (s.size() == 5 || s[5] == '/' || s[5] == '*' || s[5] == '%');
}

Result<void> parse_selection(const ip::Arg& list, ListRequest& r) {
  for (const auto& o : list.list) {
    const std::string u = o.is_list() ? std::string() : upper(o.text);
    if (u == "SUBSCRIBED") r.sel_subscribed = true;
    else if (u == "REMOTE") r.sel_remote = true;
    else if (u == "RECURSIVEMATCH") r.sel_recursive = true;
    else if (u == "SPECIAL-USE") r.sel_special_use = true;
    else return Error{Errc::ParamSyntax, "unknown LIST selection option"};
  }
  // RFC 5258 §3.1: RECURSIVEMATCH needs another option that selects.
  if (r.sel_recursive && !r.sel_subscribed && !r.sel_special_use)
    return Error{Errc::ParamSyntax, "RECURSIVEMATCH needs SUBSCRIBED or SPECIAL-USE"};
  return {};
}

Result<void> parse_return(const ip::Arg& list, ListRequest& r) {
  if (!list.is_list()) return Error{Errc::ParamSyntax, "RETURN (options)"};
  for (std::size_t i = 0; i < list.list.size(); ++i) {
    const auto& o = list.list[i];
    const std::string u = o.is_list() ? std::string() : upper(o.text);
    if (u == "SUBSCRIBED") r.ret_subscribed = true;
    else if (u == "CHILDREN") r.ret_children = true;
    else if (u == "SPECIAL-USE") r.ret_special_use = true;
    else if (u == "STATUS" && i + 1 < list.list.size() && list.list[i + 1].is_list()) {
      r.ret_status = true;
      for (const auto& item : list.list[++i].list) {
        if (item.is_list()) return Error{Errc::ParamSyntax, "bad STATUS item"};
        r.status_items.push_back(upper(item.text));
      }
    } else {
      return Error{Errc::ParamSyntax, "unknown LIST return option"};
    }
  }
  return {};
}

struct Candidate {
  const MailboxInfo* box = nullptr;  // null: a parent with no mailbox of its own
};

bool has_child(const std::map<std::string, Candidate>& all, const std::string& name) {
  const auto it = all.lower_bound(name + "/");
  return it != all.end() && it->first.compare(0, name.size() + 1, name + "/") == 0;
}

}  // namespace

bool list_match(std::string_view pattern, std::string_view name) {
  // INBOX is case-insensitive (RFC 9051 §5.1), also as the first level of a pattern.
  if (is_inbox_prefix(pattern) && is_inbox_prefix(name))
    return match_exact(std::string("INBOX") + std::string(pattern.substr(5)), std::string("INBOX") + std::string(name.substr(5)));
  return match_exact(pattern, name);
}

Result<ListRequest> parse_list(const std::vector<ip::Arg>& args) {
  ListRequest r;
  std::size_t i = 0;
  if (i < args.size() && args[i].is_list()) {
    r.extended = true;
    if (auto st = parse_selection(args[i], r); !st) return st.error();
    ++i;
  }
  if (i + 2 > args.size() || args[i].is_list()) return Error{Errc::ParamSyntax, "LIST reference pattern"};
  r.reference = args[i++].text;
  if (args[i].is_list()) {
    r.extended = true;
    for (const auto& p : args[i].list) {
      if (p.is_list()) return Error{Errc::ParamSyntax, "bad pattern"};
      r.patterns.push_back(p.text);
    }
    if (r.patterns.empty()) return Error{Errc::ParamSyntax, "empty pattern list"};
  } else {
    r.patterns.push_back(args[i].text);
  }
  ++i;
  if (i < args.size()) {
    if (i + 2 != args.size() || args[i].is_list() || upper(args[i].text) != "RETURN")
      return Error{Errc::ParamSyntax, "LIST ... RETURN (options)"};
    r.extended = true;
    if (auto st = parse_return(args[i + 1], r); !st) return st.error();
  }
  // RFC 5258 §3.2: the SUBSCRIBED selection implies the SUBSCRIBED return option.
  if (r.sel_subscribed) r.ret_subscribed = true;
  return r;
}

std::vector<ListEntry> list_mailboxes(const ListRequest& req, const std::vector<std::string>& patterns,
                                      const std::vector<MailboxInfo>& boxes, bool lsub, bool rev2) {
  // Every mailbox and every parent level above one ("a" for "a/b/c").
  std::map<std::string, Candidate> all;
  for (const auto& b : boxes) {
    all[b.name].box = &b;
    for (auto slash = b.name.find('/'); slash != std::string::npos; slash = b.name.find('/', slash + 1))
      all.emplace(b.name.substr(0, slash), Candidate{});
  }
  auto matches = [&](const std::string& name) {
    return std::any_of(patterns.begin(), patterns.end(), [&](const std::string& p) { return list_match(p, name); });
  };
  const bool subscribed_only = lsub || req.sel_subscribed;
  auto selected = [&](const MailboxInfo* b) {
    if (!b) return false;
    if (subscribed_only && !b->subscribed) return false;
    if (req.sel_special_use && b->special_use == SpecialUse::None) return false;
    return true;
  };
  std::vector<ListEntry> out;
  for (const auto& [name, cand] : all) {
    if (!matches(name)) continue;
    const bool self = selected(cand.box);
    // RECURSIVEMATCH: a descendant that meets the selection but not the pattern (RFC 5258 §3.5)
    bool childinfo = false;
    if (req.sel_recursive) {
      for (auto it = all.lower_bound(name + "/"); it != all.end() && it->first.compare(0, name.size() + 1, name + "/") == 0; ++it)
        if (selected(it->second.box) && !matches(it->first)) childinfo = true;
    }
    const bool plain_rev1 = !req.extended && !rev2;
    if (!self && !childinfo) {
      // A parent level with no mailbox: shown to plain LIST so clients see
      // the tree (RFC 9051 §6.3.9); a selection only shows real mailboxes.
      if (cand.box || subscribed_only || req.sel_special_use || !has_child(all, name)) continue;
    }
    ListEntry e;
    e.name = name;
    std::vector<std::string> attrs;
    if (!cand.box) {
      e.selectable = false;
      attrs.push_back(plain_rev1 ? "\\Noselect" : "\\NonExistent");
    }
    // CHILDREN (RFC 3348) always: RFC 5258 §4 lets the server send them unasked
    attrs.push_back(has_child(all, name) ? "\\HasChildren" : "\\HasNoChildren");
    if (cand.box && cand.box->subscribed && req.ret_subscribed) attrs.push_back("\\Subscribed");
    if (cand.box) {
      const auto use = special_use_name(cand.box->special_use);
      if (!use.empty()) attrs.push_back(std::string(use));
    }
    for (const auto& a : attrs) e.attributes += (e.attributes.empty() ? "" : " ") + a;
    if (childinfo) {
      e.extra = " (\"CHILDINFO\" (";
      if (req.sel_subscribed) e.extra += "\"SUBSCRIBED\"";
      if (req.sel_special_use) e.extra += std::string(req.sel_subscribed ? " " : "") + "\"SPECIAL-USE\"";
      e.extra += "))";
    }
    out.push_back(std::move(e));
  }
  // INBOX first, then by name (as the store lists them)
  std::stable_partition(out.begin(), out.end(), [](const ListEntry& e) { return e.name == "INBOX"; });
  return out;
}

}  // namespace moat::store::imap
