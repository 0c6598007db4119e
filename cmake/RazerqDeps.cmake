# Third-party dependencies. Debian packages provide CMake configs for most; the GPU
# machine has the headers in /usr/include without configs, so header-only libraries
# fall back to a plain include-path target.
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(Threads REQUIRED)

find_package(Eigen3 3.3 QUIET NO_MODULE)
if(NOT TARGET Eigen3::Eigen)
  find_path(RAZERQ_EIGEN_INCLUDE Eigen/Core PATH_SUFFIXES eigen3 REQUIRED)
  add_library(Eigen3::Eigen INTERFACE IMPORTED)
  target_include_directories(Eigen3::Eigen INTERFACE ${RAZERQ_EIGEN_INCLUDE})
endif()

find_package(nlohmann_json 3 QUIET)
if(NOT TARGET nlohmann_json::nlohmann_json)
  find_path(RAZERQ_JSON_INCLUDE nlohmann/json.hpp REQUIRED)
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
  target_include_directories(nlohmann_json::nlohmann_json INTERFACE ${RAZERQ_JSON_INCLUDE})
endif()

find_package(CLI11 QUIET)
if(NOT TARGET CLI11::CLI11)
  find_path(RAZERQ_CLI11_INCLUDE CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 INTERFACE ${RAZERQ_CLI11_INCLUDE})
endif()

# spdlog is used only inside common/log.cpp (libtorch bundles its own fmt, which breaks
# spdlog's headers in any file that also includes torch).
find_package(spdlog QUIET)
if(NOT TARGET spdlog::spdlog)
  find_path(RAZERQ_SPDLOG_INCLUDE spdlog/spdlog.h REQUIRED)
  add_library(spdlog::spdlog INTERFACE IMPORTED)
  target_include_directories(spdlog::spdlog INTERFACE ${RAZERQ_SPDLOG_INCLUDE})
  target_compile_definitions(spdlog::spdlog INTERFACE SPDLOG_FMT_EXTERNAL FMT_HEADER_ONLY)
endif()

if(RAZERQ_BUILD_TESTS)
  find_package(GTest QUIET)
  if(NOT TARGET GTest::gtest)
    # Headers without the built library (e.g. the GPU machine): build GoogleTest from the
    # distribution's sources, when present.
    set(RAZERQ_GTEST_SOURCE_DIR /usr/src/googletest CACHE PATH "GoogleTest sources, used when no GTest package is found")
    if(EXISTS "${RAZERQ_GTEST_SOURCE_DIR}/CMakeLists.txt")
      message(STATUS "razerq: no GTest package, building GoogleTest from ${RAZERQ_GTEST_SOURCE_DIR}")
      set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
      set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
      add_subdirectory("${RAZERQ_GTEST_SOURCE_DIR}" "${CMAKE_BINARY_DIR}/_deps/googletest" EXCLUDE_FROM_ALL)
      if(NOT TARGET GTest::gtest)
        add_library(GTest::gtest ALIAS gtest)
      endif()
    else()
      message(FATAL_ERROR "GoogleTest not found: no GTest CMake package and no sources in ${RAZERQ_GTEST_SOURCE_DIR} "
                          "(install libgtest-dev, or configure with -DRAZERQ_BUILD_TESTS=OFF)")
    endif()
  endif()
endif()
