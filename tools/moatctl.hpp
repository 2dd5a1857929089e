// moatctl subcommands. Each returns a process exit code (0 ok, 1 failure,
// 2 usage) and prints its own output; --json where the command lists things.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace moat::ctl {

using Args = std::vector<std::string>;  // arguments after the subcommand word

// The config file named by --config (default: ./moat.toml, then etc/moat.toml).
struct Context {
  std::filesystem::path config_file;
};

int config_cmd(const Context& ctx, const Args& args);   // moatctl config check
int user_cmd(const Context& ctx, const Args& args);     // moatctl user add|passwd|del|list
int queue_cmd(const Context& ctx, const Args& args);    // moatctl queue list|show|flush|delete|hold|release
int control_cmd(const Context& ctx, const std::string& word, const Args& args);  // moatctl reload|metrics
int dkim_cmd(const Context& ctx, const Args& args);     // moatctl dkim keygen
int rules_cmd(const Context& ctx, const Args& args);    // moatctl rules check|scan|import-sa|bench
int domain_cmd(const Context& ctx, const Args& args);   // moatctl domain add|del|list
int alias_cmd(const Context& ctx, const Args& args);    // moatctl alias add|del|list|resolve
int mailbox_cmd(const Context& ctx, const Args& args);  // moatctl mailbox list|messages|fetch|append|expunge|...
int quarantine_cmd(const Context& ctx, const Args& args);  // moatctl quarantine list|show|release|delete|...
int learn_cmd(const Context& ctx, const std::string& word, const Args& args);  // moatctl learn|unlearn|bayes

// How a subcommand complains: "moatctl NAME: why" and its usage text
// (exit code 2), or "moatctl NAME: error" (exit code 1).
struct Complaint {
  const char* name;
  const char* usage_text;
  int usage(std::string_view why = {}) const;
  int failed(const Error& e) const;
};

// One request line to moatd's control socket; false when nothing answers.
bool ask(const std::filesystem::path& sock_path, const std::string& line, std::string& reply);
// Prints moatd's answer ("ERROR: ..." to stderr) and returns the exit code.
int print_reply(const std::string& reply);

}  // namespace moat::ctl
