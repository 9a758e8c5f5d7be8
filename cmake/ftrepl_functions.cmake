# Helper functions so each directory's CMakeLists.txt stays a few lines.
include(CheckCCompilerFlag)

# Adds each flag the compiler accepts.
function(ftr_add_c_flags)
  foreach(flag ${ARGN})
    string(MAKE_C_IDENTIFIER "HAVE_CFLAG${flag}" var)
    check_c_compiler_flag(${flag} ${var})
    if(${var})
      add_compile_options(${flag})
    endif()
  endforeach()
endfunction()

# ftr_program(NAME SOURCES...): a program linked against the static library.
function(ftr_program name)
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE ftrepl_static)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  install(TARGETS ${name} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endfunction()
