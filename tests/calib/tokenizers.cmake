# Tokenizer tests: unit tests and error paths (test_tokenizers.cpp), the goldens of
# ../shared/data/golden (test_tokenizers_golden.cpp), pre-tokenizer fuzz and Llama-3 /
# Qwen2-style tokenizer.json variants (test_tokenizers_variants.cpp).
list(APPEND RAZERQ_CALIB_TEST_SOURCES
  ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizers.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizers_golden.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizers_variants.cpp)
