# Dataset texts / windows / calibration sampling, and the CPython random reproduction.
list(APPEND RAZERQ_CALIB_TEST_SOURCES
  ${CMAKE_CURRENT_SOURCE_DIR}/test_datasets.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/test_datasets_python_random.cpp)
