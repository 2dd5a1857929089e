// The embedded mailbox store: files under data_dir/store, no server needed.
// Layout (docs/store.md):
//   bodies/pack/NNNNNNNN    pack files: bodies up to pack_max bytes (after
//                           compression) appended one after another, each
//                           the same record a body file holds; shared by
//                           every mailbox that holds it (single instance),
//                           optionally LZ4- or zstd-compressed; fdatasynced
//   bodies/xx/GUID          bigger bodies, one file each, written once, fsynced
//   users/USER/mailboxes    the user's mailbox list, replaced atomically
//   users/USER/MBGUID/index the mailbox's append-only index log
//   tmp/                    bodies being written
// Crash safety: body appended to its pack and fdatasynced (or written,
// fsynced and renamed into place, directory fsynced), then the index record
// appended and fdatasynced; a torn pack tail is never named by an index; a torn index tail is cut
// off on open, a damaged index is rebuilt from the owners recorded in the
// body files. Several processes may open one store (moatd, moatctl): every
// index change holds flock() on the index file; readers take it only when
// the file has grown (look_box). Mailbox list, index and pack descriptors
// stay open between calls, checked with one fstat each (docs/store.md).
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>

#include "common/config.hpp"
#include "store/index_format.hpp"
#include "store/mailbox_store.hpp"

namespace moat::store {

struct FsOptions {
  std::filesystem::path root;                 // data_dir/store
  // Codec for bodies of at least compress_min bytes (kept only when smaller).
  // Every codec reads back whatever this option says now.
  format::Codec codec = format::Codec::None;
  std::size_t compress_min = 512;
  // Bodies of at most pack_max bytes as stored go into pack files, so a
  // 3 KB message does not take a 4 KiB block and an inode of its own (0:
  // every body in its own file). A pack takes no more appends past pack_size.
  std::size_t pack_max = 128 * 1024;
  std::uint64_t pack_size = 64ull << 20;
  int zstd_level = 3;
  int lz4_level = 9;                          // LZ4 HC
  std::chrono::seconds sweep_grace{600};      // unreferenced bodies younger than this are kept (in-flight deliveries)
  std::size_t compact_min_dead = 64;          // rewrite an index when it has this many dead records ...
};

// The store options a configuration asks for (data_dir/store, [local]).
FsOptions store_options(const config::Config& cfg);

// Checks and normalises a mailbox name ("inbox/x" -> "INBOX/x").
Result<std::string> normalize_mailbox_name(std::string_view name);
// A user's folder name: lower-cased, bytes outside [a-z0-9@._+-] and a
// leading '.' as %XX, so no user name can form a path.
std::string user_dir_name(std::string_view user);

class FsStore final : public MailboxStore {
 public:
  static Result<std::unique_ptr<FsStore>> open(FsOptions options);
  ~FsStore() override;

  Status create_user(std::string_view user) override;
  Status delete_user(std::string_view user) override;
  Result<bool> user_exists(std::string_view user) override;
  Result<Usage> usage(std::string_view user) override;

  Result<std::vector<MailboxInfo>> list(std::string_view user) override;
  Status create(std::string_view user, std::string_view name, SpecialUse use = SpecialUse::None) override;
  Status rename(std::string_view user, std::string_view from, std::string_view to) override;
  Status remove(std::string_view user, std::string_view name) override;
  Status set_subscribed(std::string_view user, std::string_view name, bool subscribed) override;
  Result<MailboxStatus> status(std::string_view user, std::string_view name) override;

  Result<std::vector<MessageInfo>> messages(std::string_view user, std::string_view name) override;
  Result<std::vector<MessageInfo>> messages(std::string_view user, std::string_view name,
                                            const UidRanges& uids) override;
  Result<std::uint32_t> append(std::string_view user, std::string_view name, const AppendRequest& req) override;
  Result<std::string> fetch(std::string_view user, std::string_view name, std::uint32_t uid, std::uint64_t offset = 0,
                            std::uint64_t length = UINT64_MAX) override;
  std::vector<Result<std::string>> fetch_many(std::string_view user, std::string_view name,
                                              const std::vector<std::uint32_t>& uids) override;
  Result<MailboxStatus> version(std::string_view user, std::string_view name) override;
  std::optional<FetchBatch> fetch_batch(std::string_view user, std::string_view name,
                                        const std::vector<std::uint32_t>& uids, bool nowait) override;
  Status set_cache(std::string_view user, std::string_view name, std::uint32_t uid, std::string envelope,
                   std::string bodystructure) override;
  Result<StoreResult> store_flags(std::string_view user, std::string_view name, const UidRanges& uids,
                                  const FlagUpdate& update) override;
  Result<CopyResult> copy(std::string_view user, std::string_view from, const UidRanges& uids,
                          std::string_view to) override;
  Result<CopyResult> move(std::string_view user, std::string_view from, const UidRanges& uids,
                          std::string_view to) override;
  Result<std::vector<std::uint32_t>> expunge(std::string_view user, std::string_view name,
                                             const std::optional<UidRanges>& uids = std::nullopt) override;
  Result<Changes> changes_since(std::string_view user, std::string_view name, std::uint64_t modseq) override;

  std::vector<DeliveryResult> deliver(std::string_view content, std::int64_t internaldate,
                                      const std::vector<DeliveryTarget>& targets) override;

  std::unique_ptr<Subscription> watch(std::string_view user, std::string_view name,
                                      std::function<void(const ChangeEvent&)> callback) override;

  Status compact() override;

  // --- for admins and tests ---
  const FsOptions& options() const { return opt_; }
  // Bytes of body files on disk (after compression), and how many.
  Result<std::pair<std::uint64_t, std::uint64_t>> body_usage();

 private:
  struct Box;
  struct WatchList;
  struct UserList;
  struct ListCache;
  struct PackFd;
  class UserLock;
  class Sub;
  explicit FsStore(FsOptions options);

  std::filesystem::path user_dir(std::string_view user) const;
  Result<UserList> read_list(std::string_view user) const;
  static Result<UserList> read_list_file(const std::filesystem::path& file, std::string_view user);
  static Result<UserList> parse_list(const std::string& text, std::string_view user);
  Status write_list(std::string_view user, const UserList& list) const;
  std::shared_ptr<std::mutex> user_mutex(std::string_view user);
  Status create_locked(std::string_view user, UserList& list, const std::string& name, SpecialUse use);
  // nowait: fail with would_block() rather than open or read a file.
  Result<std::string> resolve(std::string_view user, std::string_view name, bool nowait = false);
  Result<std::shared_ptr<const ListCache>> cached_list(std::string_view user, bool nowait);
  std::shared_ptr<Box> box(std::string_view user, const std::string& guid);
  template <class F>
  auto with_box(std::string_view user, std::string_view name, F&& fn) -> decltype(fn(std::declval<Box&>()));
  template <class F>
  auto read_box(std::string_view user, std::string_view name, bool nowait, F&& fn)
      -> decltype(fn(std::declval<Box&>()));
  Result<bool> look_box(Box& b, bool nowait);
  Status lock_box(Box& b);
  void unlock_box(Box& b);
  Status load(Box& b, bool full);
  Status rebuild(Box& b, std::size_t valid_end, bool had_header);
  Status append_records(Box& b, const std::string& bytes);
  Status write_snapshot(Box& b);
  struct BodyRef {
    std::string guid;
    std::uint32_t pack = 0;
    std::uint64_t offset = 0;
  };
  Result<BodyRef> write_body(std::string_view content, std::int64_t date,
                             const std::vector<std::pair<std::string, std::string>>& owners);
  // Appends a body record to the current pack (never to pack `avoid`).
  Result<BodyRef> pack_body(std::string_view record, const std::string& guid, std::uint32_t avoid = 0);
  struct PackRef {
    std::string user, mailbox;  // mailbox GUID
    std::uint32_t uid = 0;
    std::string guid;
    std::uint64_t offset = 0;
  };
  std::size_t repack(std::uint32_t pack, const std::vector<PackRef>& refs, std::filesystem::file_time_type cutoff);
  Status open_pack();
  std::filesystem::path pack_path(std::uint32_t n) const;
  std::size_t sweep_packs(const std::set<std::uint32_t>& live, std::filesystem::file_time_type cutoff);
  Result<std::uint32_t> append_locked(Box& b, MessageInfo info);
  std::vector<std::uint32_t> expunge_locked(Box& b, const std::optional<UidRanges>& uids, bool only_deleted,
                                            Status& st);
  Result<CopyResult> copy_impl(std::string_view user, std::string_view from, const UidRanges& uids,
                               std::string_view to, bool move);
  void notify(Box& b);
  std::filesystem::path body_path(std::string_view guid) const;
  // fetch_many(): bodies close together in a pack read with one pread
  void read_packed(const std::vector<BodyRef>& where, const std::vector<std::uint64_t>& sizes,
                   std::vector<std::optional<Result<std::string>>>& got, bool nowait);
  void read_run(const std::vector<BodyRef>& where, const std::vector<std::size_t>& order, std::size_t at,
                std::size_t end, std::uint64_t want, std::vector<std::optional<Result<std::string>>>& got,
                bool nowait);
  struct PackView {
    std::shared_ptr<const PackFd> file;
    std::uint64_t size = 0;
  };
  Result<PackView> pack_reader(std::uint32_t pack, bool nowait);
  static Result<PackView> open_file(const std::filesystem::path& path);
  Result<std::string> read_body(const std::string& guid, std::uint32_t pack, std::uint64_t base,
                                std::uint64_t offset, std::uint64_t length);

  FsOptions opt_;
  std::mutex mu_;                                       // guards the maps below
  std::map<std::string, std::shared_ptr<Box>> boxes_;   // user dir + '/' + mailbox guid
  std::map<std::string, std::shared_ptr<std::mutex>> user_mu_;
  std::map<std::string, std::shared_ptr<WatchList>> watches_;
  std::map<std::string, std::shared_ptr<const ListCache>> lists_;  // by user dir
  std::map<std::uint32_t, std::shared_ptr<const PackFd>> packs_;   // read-only pack descriptors
  // copy/move hold it shared, compact()'s body sweep exclusive: a body must
  // not be swept while a copy is adding a reference to it (with a flock on
  // sweep.lock for other processes).
  std::shared_mutex sweep_mu_;
  int sweep_fd_ = -1;
  // The pack this process appends to (others may append to it too, under
  // its flock); 0 until the first small body.
  std::mutex pack_mu_;
  int pack_fd_ = -1;
  std::uint32_t pack_no_ = 0;
};

}  // namespace moat::store
