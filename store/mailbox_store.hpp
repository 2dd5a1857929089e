// The mailbox store interface: users' mailboxes and messages as IMAP
// (RFC 9051, RFC 3501), UIDPLUS (RFC 4315), CONDSTORE/QRESYNC (RFC 7162),
// SPECIAL-USE (RFC 6154) and POP3 (RFC 1939) need them. The file backend is
// store/fs_store.hpp; another backend (e.g. PostgreSQL) implements this.
//
// THREADING: every method is synchronous, blocking (file I/O, fsync) and
// thread-safe. Call it from the blocking pool (common/blocking.hpp
// run_blocking), never from an I/O thread (fetch_batch with nowait is the
// one exception). Callbacks registered with watch()
// run on whichever thread made the change: post to your own executor.
//
// NAMES: users are login names as in directory/ (case-insensitive ASCII).
// Mailbox names are UTF-8 (IMAP sessions decode modified UTF-7 before
// calling), hierarchy separator '/', "INBOX" matched case-insensitively and
// always spelled "INBOX" in results. Names never become paths: mailbox
// folders are named by GUID. Invalid names (empty, > 255 bytes, control
// characters, leading or trailing '/', "//", a "."/".." level) fail
// with Errc::Invalid.
//
// STABILITY: the imap/pop3 helpers build on this header. Add, never rename.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.hpp"

namespace moat::store {

// System flags as a bit set (\Recent is per session and not stored).
enum Flag : std::uint8_t {
  kSeen = 1,
  kAnswered = 2,
  kFlagged = 4,
  kDeleted = 8,
  kDraft = 16,
};
using Flags = std::uint8_t;

// RFC 6154 attributes; one per mailbox.
enum class SpecialUse : std::uint8_t { None, Drafts, Sent, Junk, Trash, Archive, All, Flagged };
std::string_view special_use_name(SpecialUse s);  // "\\Drafts", ... ("" for None)

// A UID set as inclusive ranges [first, last], as IMAP sends it; never
// expanded. {1, UINT32_MAX} is "1:*".
using UidRanges = std::vector<std::pair<std::uint32_t, std::uint32_t>>;
bool contains(const UidRanges& set, std::uint32_t uid);

struct MailboxInfo {
  std::string name;                 // "INBOX", "Sent", "Archive/2026"
  std::string guid;                 // 32 hex digits; stable across renames
  SpecialUse special_use = SpecialUse::None;
  bool subscribed = true;
};

struct MailboxStatus {
  std::uint32_t uidvalidity = 0;
  std::uint32_t uidnext = 1;
  std::uint64_t highest_modseq = 1;  // RFC 7162: never 0
  std::uint32_t messages = 0;
  std::uint32_t unseen = 0;         // messages without \Seen
  std::uint32_t deleted = 0;        // messages with \Deleted
  std::uint64_t size = 0;           // sum of message sizes (STATUS SIZE, RFC 8438)
};

struct MessageInfo {
  std::uint32_t uid = 0;
  Flags flags = 0;
  std::vector<std::string> keywords;   // as given (case preserved), no duplicates
  std::int64_t internaldate = 0;       // Unix seconds
  std::uint64_t size = 0;              // RFC822.SIZE: bytes as fetched (CRLF lines)
  std::uint64_t modseq = 1;            // last change of flags/keywords (or the append)
  std::string guid;                    // 32 hex digits; the body's id, shared by copies
  // Cached IMAP strings, exactly as the session computed and handed them in
  // (append or set_cache); empty when not cached yet.
  std::string envelope;
  std::string bodystructure;
  // Where the backend keeps the body, opaque to everyone else (FsStore: 0
  // for a file of its own, else the pack file's number and the offset of
  // the body's record in it). Copies keep it: the body is shared.
  std::uint32_t pack = 0;
  std::uint64_t pack_offset = 0;
};

struct AppendRequest {
  std::string_view content;            // the whole message, CRLF line endings
  Flags flags = 0;
  std::vector<std::string> keywords;
  std::optional<std::int64_t> internaldate;  // empty: now
  std::string envelope;                // optional cached strings
  std::string bodystructure;
};

struct FlagUpdate {
  enum class Mode : std::uint8_t { Replace, Add, Remove } mode = Mode::Replace;
  Flags flags = 0;
  std::vector<std::string> keywords;
  // CONDSTORE: messages whose modseq is greater are not changed and are
  // reported in StoreResult::modified.
  std::optional<std::uint64_t> unchanged_since;
};

struct StoreResult {
  std::vector<MessageInfo> changed;    // after the change (messages whose flags did change)
  std::vector<std::uint32_t> modified; // UNCHANGEDSINCE failures (RFC 7162 [MODIFIED])
  std::uint64_t highest_modseq = 0;
};

struct CopyResult {                    // UIDPLUS COPYUID (RFC 4315)
  std::uint32_t dest_uidvalidity = 0;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> uids;  // (source UID, new UID), ascending
  std::vector<std::uint32_t> expunged; // move only: source UIDs removed
};

struct Changes {                       // CONDSTORE / QRESYNC (RFC 7162)
  std::vector<MessageInfo> changed;    // modseq > since (appends included), ascending UID
  std::vector<std::uint32_t> vanished; // UIDs expunged with modseq > since, ascending
  std::uint64_t highest_modseq = 0;
};

struct Usage {                         // for quotas: all mailboxes of a user
  std::uint64_t bytes = 0;
  std::uint64_t messages = 0;
};

// What fetch_batch() answers: one result per UID, as fetch_many(), and the
// mailbox's version() as of the same look at its index.
struct FetchBatch {
  std::vector<Result<std::string>> bodies;
  std::optional<MailboxStatus> version;
};

// One local delivery, stored once for all its targets (single instance).
struct DeliveryTarget {
  std::string user;
  std::string mailbox = "INBOX";       // created (no special use) when missing
  Flags flags = 0;
};
struct DeliveryResult {
  Status status;                       // per target
  std::uint32_t uidvalidity = 0;
  std::uint32_t uid = 0;
};

// What watch() callbacks get: the mailbox changed; re-read what you need.
struct ChangeEvent {
  std::string user;
  std::string mailbox_guid;
  std::uint64_t highest_modseq = 0;
  std::uint32_t uidnext = 0;
  std::uint32_t messages = 0;
};

// Keeps a watch() registration alive; unregisters when destroyed (blocks
// until a callback running on another thread has returned).
class Subscription {
 public:
  virtual ~Subscription() = default;
};

class MailboxStore {
 public:
  virtual ~MailboxStore() = default;

  // --- users ---
  // Creates the user's INBOX, Drafts, Sent, Junk and Trash (idempotent).
  virtual Status create_user(std::string_view user) = 0;
  // Removes the user's mailboxes and messages; bodies are reclaimed by compact().
  virtual Status delete_user(std::string_view user) = 0;
  virtual Result<bool> user_exists(std::string_view user) = 0;
  virtual Result<Usage> usage(std::string_view user) = 0;

  // --- mailboxes ---
  // Mailboxes of a user, INBOX first, then by name. NotFound: no such user.
  virtual Result<std::vector<MailboxInfo>> list(std::string_view user) = 0;
  virtual Status create(std::string_view user, std::string_view name, SpecialUse use = SpecialUse::None) = 0;
  // Renaming INBOX moves its messages to a new mailbox and leaves INBOX
  // empty (RFC 9051 §6.3.6). Children ("a/b" under "a") move with it.
  virtual Status rename(std::string_view user, std::string_view from, std::string_view to) = 0;
  virtual Status remove(std::string_view user, std::string_view name) = 0;  // INBOX: Errc::Invalid
  virtual Status set_subscribed(std::string_view user, std::string_view name, bool subscribed) = 0;
  virtual Result<MailboxStatus> status(std::string_view user, std::string_view name) = 0;

  // --- messages ---
  // Every message, ascending UID: the snapshot a SELECT starts from.
  virtual Result<std::vector<MessageInfo>> messages(std::string_view user, std::string_view name) = 0;
  // Messages with UIDs in the set, ascending.
  virtual Result<std::vector<MessageInfo>> messages(std::string_view user, std::string_view name,
                                                    const UidRanges& uids) = 0;
  // Durable (fsynced) before it returns. Returns the new UID.
  virtual Result<std::uint32_t> append(std::string_view user, std::string_view name, const AppendRequest& req) = 0;
  // The message bytes, or `length` bytes from `offset` (clipped to the
  // message). NotFound when the UID does not exist (or was expunged).
  virtual Result<std::string> fetch(std::string_view user, std::string_view name, std::uint32_t uid,
                                    std::uint64_t offset = 0, std::uint64_t length = UINT64_MAX) = 0;
  // The whole bytes of several messages in one call, one result per UID in
  // order (NotFound for a UID that is gone): a FETCH over a range makes one
  // trip to the blocking pool and takes the index lock once per batch
  // instead of once per message. The default calls fetch() per UID.
  virtual std::vector<Result<std::string>> fetch_many(std::string_view user, std::string_view name,
                                                      const std::vector<std::uint32_t>& uids) {
    std::vector<Result<std::string>> out;
    out.reserve(uids.size());
    for (auto uid : uids) out.push_back(fetch(user, name, uid));
    return out;
  }
  // fetch_many() and version() in one call, both from one look at the
  // index. With `nowait` it may be called on an I/O thread: it then uses
  // only what is already open and in memory (nginx/Samba/QEMU's pattern:
  // try without blocking, hand to the pool only when that would block) and
  // returns nullopt instead of anything that could wait for the disk or a
  // lock; call it again with nowait = false on the blocking pool, which
  // always answers. The default never answers nowait.
  virtual std::optional<FetchBatch> fetch_batch(std::string_view user, std::string_view name,
                                                const std::vector<std::uint32_t>& uids, bool nowait) {
    if (nowait) return std::nullopt;
    FetchBatch out{fetch_many(user, name, uids), std::nullopt};
    if (auto v = version(user, name); v) out.version = *v;
    return out;
  }
  // A cheap fingerprint of the mailbox (highest MODSEQ, UIDNEXT, message
  // count): every append, flag change and expunge changes it, so a session
  // that saw the same one has nothing to report and need not re-read the
  // message list. The default derives it from status().
  virtual Result<MailboxStatus> version(std::string_view user, std::string_view name) { return status(user, name); }
  // Stores the cached ENVELOPE/BODYSTRUCTURE strings for a message.
  virtual Status set_cache(std::string_view user, std::string_view name, std::uint32_t uid,
                           std::string envelope, std::string bodystructure) = 0;
  virtual Result<StoreResult> store_flags(std::string_view user, std::string_view name, const UidRanges& uids,
                                          const FlagUpdate& update) = 0;
  virtual Result<CopyResult> copy(std::string_view user, std::string_view from, const UidRanges& uids,
                                  std::string_view to) = 0;
  virtual Result<CopyResult> move(std::string_view user, std::string_view from, const UidRanges& uids,
                                  std::string_view to) = 0;
  // Removes messages that have \Deleted and, when `uids` is given, are in it
  // (UID EXPUNGE). Returns the expunged UIDs, ascending. POP3 sets \Deleted
  // and expunges at QUIT.
  virtual Result<std::vector<std::uint32_t>> expunge(std::string_view user, std::string_view name,
                                                     const std::optional<UidRanges>& uids = std::nullopt) = 0;
  virtual Result<Changes> changes_since(std::string_view user, std::string_view name, std::uint64_t modseq) = 0;

  // --- delivery (the queue's local transport) ---
  // Stores the content once and adds it to every target's mailbox; durable
  // before it returns. One result per target, in order.
  virtual std::vector<DeliveryResult> deliver(std::string_view content, std::int64_t internaldate,
                                              const std::vector<DeliveryTarget>& targets) = 0;

  // --- change notification (IDLE, sessions on one mailbox) ---
  // `callback` runs after every change to the mailbox (append, flags,
  // expunge, also from deliveries) on the changing thread; keep it short
  // and post to your executor. nullptr when the mailbox does not exist.
  virtual std::unique_ptr<Subscription> watch(std::string_view user, std::string_view name,
                                              std::function<void(const ChangeEvent&)> callback) = 0;

  // --- maintenance ---
  // Rewrites indexes that carry many dead records and deletes bodies no
  // mailbox refers to any more. Readers are not blocked.
  virtual Status compact() = 0;
};

}  // namespace moat::store
