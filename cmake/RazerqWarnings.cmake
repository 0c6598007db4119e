# Warning and optimisation flags as an interface target, linked PRIVATE by every razerq target.
add_library(razerq_options INTERFACE)
target_compile_options(razerq_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
if(RAZERQ_NATIVE)
  target_compile_options(razerq_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
endif()
target_include_directories(razerq_options INTERFACE ${CMAKE_SOURCE_DIR})
