#pragma once
// Logging behind a plain-string interface: spdlog is compiled only into log.cpp, so files
// that include torch (whose bundled fmt breaks spdlog's headers) can still log.
// Progress and diagnostics go to stderr; results are printed to stdout by apps/.
#include <string>

namespace razerq::log {

enum class Level { kDebug, kInfo, kWarn, kError, kOff };

void set_level(Level level);
Level level();
void debug(const std::string& msg);
void info(const std::string& msg);
void warn(const std::string& msg);
void error(const std::string& msg);

}  // namespace razerq::log
