// Log lines shaped like Postfix's ("moatd[PID]: QID: to=<...>, relay=..."),
// one per event, written whole to stderr (journald or a file collects them).
#pragma once

#include <string>
#include <string_view>

namespace moat::log {

enum class Level { Debug, Info, Warning, Error };

void set_program(std::string_view name);   // "moatd", "moatctl"
void set_level(Level min);
void set_file(const std::string& path);    // empty: stderr
void line(Level level, std::string_view text);

inline void info(std::string_view t) { line(Level::Info, t); }
inline void warning(std::string_view t) { line(Level::Warning, t); }
inline void error(std::string_view t) { line(Level::Error, t); }
inline void debug(std::string_view t) { line(Level::Debug, t); }

}  // namespace moat::log
