# Tokenizers (owner: tokenizers area). Included by calib/CMakeLists.txt.
# unicode_tables.cpp is generated: python3 calib/gen_unicode_tables.py > calib/unicode_tables.cpp
list(APPEND RAZERQ_CALIB_SOURCES
  ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer_sentencepiece.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer_bpe.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/unicode.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/unicode_tables.cpp
)
