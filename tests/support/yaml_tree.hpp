// A small YAML tree over libyaml's event parser, for the external suites
// written in YAML (RFC 7208 SPF suite, ValiMail ARC suites).
#pragma once

#include <yaml.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moat::test::yaml {

struct Field;

struct Node {
  enum Kind { Scalar, Seq, Map } kind = Scalar;
  std::string text;
  std::vector<Node> items;    // Seq
  std::vector<Field> fields;  // Map, in document order
  const Node* get(std::string_view key) const;
};

// A separate struct, not std::pair: pair<string, Node> would need Node
// complete inside its own definition (clang refuses it).
struct Field {
  std::string key;
  Node value;
};

inline const Node* Node::get(std::string_view key) const {
  for (const auto& f : fields)
    if (f.key == key) return &f.value;
  return nullptr;
}

class YamlReader {
 public:
  explicit YamlReader(const std::string& text) {
    yaml_parser_initialize(&p_);
    yaml_parser_set_input_string(&p_, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  }
  ~YamlReader() { yaml_parser_delete(&p_); }

  // Every document of the stream; false on a parse error.
  bool documents(std::vector<Node>& out) {
    yaml_event_t e;
    while (next(e)) {
      auto type = e.type;
      yaml_event_delete(&e);
      if (type == YAML_STREAM_END_EVENT) return true;
      if (type == YAML_DOCUMENT_START_EVENT) {
        Node doc;
        if (!node(doc)) return false;
        out.push_back(std::move(doc));
        if (!next(e)) return false;  // DOCUMENT_END
        yaml_event_delete(&e);
      }
    }
    return false;
  }

 private:
  bool next(yaml_event_t& e) { return yaml_parser_parse(&p_, &e) != 0; }

  bool node(Node& n) {
    yaml_event_t e;
    if (!next(e)) return false;
    bool ok = fill(n, e);
    return ok;
  }

  bool fill(Node& n, yaml_event_t& e) {
    switch (e.type) {
      case YAML_SCALAR_EVENT:
        n.kind = Node::Scalar;
        n.text.assign(reinterpret_cast<const char*>(e.data.scalar.value), e.data.scalar.length);
        yaml_event_delete(&e);
        return true;
      case YAML_SEQUENCE_START_EVENT:
        yaml_event_delete(&e);
        n.kind = Node::Seq;
        while (true) {
          yaml_event_t c;
          if (!next(c)) return false;
          if (c.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&c);
            return true;
          }
          Node child;
          if (!fill(child, c)) return false;
          n.items.push_back(std::move(child));
        }
      case YAML_MAPPING_START_EVENT:
        yaml_event_delete(&e);
        n.kind = Node::Map;
        while (true) {
          yaml_event_t k;
          if (!next(k)) return false;
          if (k.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&k);
            return true;
          }
          Node key, value;
          if (!fill(key, k) || !node(value)) return false;
          n.fields.push_back(Field{key.text, std::move(value)});
        }
      default:
        yaml_event_delete(&e);
        return false;
    }
  }

  yaml_parser_t p_;
};

}  // namespace moat::test::yaml
