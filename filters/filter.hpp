// The interface every scanner implements (ARCHITECTURE.md "Main interfaces").
// A filter only adds symbols; scores come from config and the Policy turns
// them into an action (the Rspamd split between detection and policy).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <typeindex>
#include <typeinfo>
#include <utility>
#include <vector>

#include "common/config.hpp"
#include "common/envelope.hpp"
#include "common/error.hpp"
#include "common/proto/mime/mime.hpp"
#include "filters/authres/authres.hpp"

namespace moat::filters {

namespace asio = boost::asio;

enum class Phase : std::uint8_t { Connect, Helo, MailFrom, RcptTo, EndOfData };
using PhaseMask = std::uint8_t;
constexpr PhaseMask mask(Phase p) { return PhaseMask(1u << unsigned(p)); }

struct Symbol {
  std::string name;    // UPPER_SNAKE, e.g. "MSG_TOO_BIG"
  double score = 0;    // filled by the pipeline from config/default scores
  std::string detail;  // short, safe for headers and logs
};

class Filter;

// Sees the message while DATA or BDAT streams in: the bytes as the session
// keeps them (dot-unstuffed, CRLF lines), in arrival order, so a filter can
// start on the body before the end of data (the rules' streaming scan).
class DataTap {
 public:
  virtual ~DataTap() = default;
  virtual void feed(std::string_view bytes) = 0;
};

// What a filter sees. The session owns it for the whole transaction.
struct ScanContext {
  config::Snapshot config;
  Envelope envelope;                 // recipients grow during RcptTo
  const Recipient* current_rcpt = nullptr;  // set during RcptTo
  std::string_view header;           // message header section (EndOfData only)
  std::string_view message;          // whole message as received, CRLF lines (EndOfData only)
  std::uint64_t message_size = 0;
  unsigned received_hops = 0;        // count of Received: headers
  std::vector<Symbol> symbols;
  std::vector<AuthResult> auth;      // SPF, DKIM, ... results, in the order found
  std::vector<std::string> headers;  // fields to add on top of the message, each ending in CRLF

  void add(std::string name, std::string detail = {}) {
    symbols.push_back(Symbol{std::move(name), 0, std::move(detail)});
  }
  bool has(std::string_view name) const;
  const AuthResult* auth_result(std::string_view method) const;  // the first of that method

  // The message parsed once for every content filter (EndOfData only): the
  // first caller parses `message`, later filters reuse the tree. Filters of
  // one run take turns, so no lock is needed.
  const mime::Message& mime();
  // Text of one leaf part for scanning (mime::part_text: decoded, UTF-8, HTML
  // as text), made once however many filters ask.
  const std::string& part_text(std::size_t part);
  // Results one content filter derives from the message that another may
  // reuse, one per type: the decoded leaves the attachment policy and the
  // antivirus both read (attachments::shared_leaves), for one. The first
  // filter to make one shares it; the later ones take it.
  template <class T>
  std::shared_ptr<const T> shared() const {
    for (const auto& [type, value] : shared_)
      if (type == std::type_index(typeid(T))) return std::static_pointer_cast<const T>(value);
    return nullptr;
  }
  template <class T>
  void share(std::shared_ptr<const T> value) {
    for (auto& [type, v] : shared_)
      if (type == std::type_index(typeid(T))) {
        v = std::move(value);
        return;
      }
    shared_.emplace_back(std::type_index(typeid(T)), std::move(value));
  }

  // Taps the filters opened for this message (Pipeline::open_taps); the
  // session feeds them every chunk; a filter finds its own at EndOfData.
  void feed(std::string_view bytes) {
    for (auto& t : taps_) t.second->feed(bytes);
  }
  void add_tap(const Filter* owner, std::unique_ptr<DataTap> tap) { taps_.emplace_back(owner, std::move(tap)); }
  DataTap* tap(const Filter* owner) const;

 private:
  std::vector<std::pair<const Filter*, std::unique_ptr<DataTap>>> taps_;
  std::shared_ptr<const mime::Message> parsed_;
  std::map<std::size_t, std::string> texts_;  // node-based: references stay valid
  std::vector<std::pair<std::type_index, std::shared_ptr<const void>>> shared_;  // see shared()
};

class Filter {
 public:
  virtual ~Filter() = default;
  virtual std::string_view name() const = 0;
  virtual PhaseMask phases() const = 0;
  // Adds symbols to ctx. Returns an error when the check could not be made;
  // the pipeline then applies the filter's fail-open/closed setting. Never throws.
  virtual asio::awaitable<Status> run(Phase phase, ScanContext& ctx) = 0;
  // A tap on this message's bytes as they arrive, or none (the default): the
  // filter then sees the message only in run(EndOfData). Called as DATA or
  // the first BDAT chunk starts; never throws.
  virtual std::unique_ptr<DataTap> open_tap(const ScanContext&) { return nullptr; }
};

enum class Action : std::uint8_t { Accept, Tag, Quarantine, TempFail, Reject, Discard };
std::string_view action_name(Action a);

struct Verdict {
  Action action = Action::Accept;
  double score = 0;
  Errc reply = Errc::PolicyReject;   // for Reject/TempFail: which table row answers
  std::string reason;                // symbol(s) that decided, for logs and reply text
};

}  // namespace moat::filters
