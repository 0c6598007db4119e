#include "common/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>

namespace razerq::log {
namespace {

std::atomic<Level> g_level{Level::kInfo};

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> lg = [] {
    auto l = spdlog::stderr_color_mt("razerq");
    l->set_pattern("%^%l%$: %v");
    l->set_level(spdlog::level::trace);
    return l;
  }();
  return *lg;
}

bool enabled(Level l) { return static_cast<int>(l) >= static_cast<int>(g_level.load()); }

}  // namespace

void set_level(Level level) { g_level = level; }
Level level() { return g_level.load(); }

void debug(const std::string& msg) {
  if (enabled(Level::kDebug)) logger().debug("{}", msg);
}
void info(const std::string& msg) {
  if (enabled(Level::kInfo)) logger().info("{}", msg);
}
void warn(const std::string& msg) {
  if (enabled(Level::kWarn)) logger().warn("{}", msg);
}
void error(const std::string& msg) {
  if (enabled(Level::kError)) logger().error("{}", msg);
}

}  // namespace razerq::log
