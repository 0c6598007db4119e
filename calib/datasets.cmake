# Evaluation texts and windows (GPTQ and llama.cpp conventions), calibration sampling, and
# CPython's random module that both the GPTQ loaders and our sampling reproduce.
list(APPEND RAZERQ_CALIB_SOURCES
  ${CMAKE_CURRENT_SOURCE_DIR}/datasets.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/python_random.cpp)
