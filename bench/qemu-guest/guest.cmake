# ftbench's QEMU test guest (--postcopy's qemu-* variants): a freestanding
# 32-bit multiboot ELF built from entry.S, guest.c and guest.ld with the C
# compiler itself (-m32 -ffreestanding -nostdlib: no multilib, no libgcc).
# Built only when the compiler can do that (checked once, by building the
# guest at configure time); otherwise ftbench skips the qemu-* variants and
# says why. ftbench finds the guest at the path compiled into it
# (FTB_QEMU_GUEST), or at $FTBENCH_QEMU_GUEST.
set(FTB_GUEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/qemu-guest)
set(FTB_GUEST_SRCS ${FTB_GUEST_DIR}/entry.S ${FTB_GUEST_DIR}/guest.c)
set(FTB_GUEST_ELF ${CMAKE_CURRENT_BINARY_DIR}/ftb-guest.elf)
set(FTB_GUEST_FLAGS -m32 -march=i686 -mno-mmx -mno-sse -O2 -ffreestanding -fno-pic
  -fno-stack-protector -fno-asynchronous-unwind-tables -Wall -Wextra -nostdlib -static
  -no-pie -Wl,--build-id=none -Wl,-T,${FTB_GUEST_DIR}/guest.ld)
if(FTREPL_WERROR)
  list(APPEND FTB_GUEST_FLAGS -Werror)
endif()

if(NOT DEFINED FTB_GUEST_BUILDS)
  execute_process(
    COMMAND ${CMAKE_C_COMPILER} ${FTB_GUEST_FLAGS} -o ${CMAKE_CURRENT_BINARY_DIR}/ftb-guest-probe.elf
            ${FTB_GUEST_SRCS}
    RESULT_VARIABLE ftb_guest_rc OUTPUT_VARIABLE ftb_guest_out ERROR_VARIABLE ftb_guest_out)
  if(ftb_guest_rc EQUAL 0)
    set(FTB_GUEST_BUILDS ON CACHE INTERNAL "the C compiler builds the QEMU test guest")
  else()
    set(FTB_GUEST_BUILDS OFF CACHE INTERNAL "the C compiler builds the QEMU test guest")
    message(STATUS "ftbench: the QEMU test guest is not built (the C compiler cannot build "
                   "freestanding -m32 code): ${ftb_guest_out}")
  endif()
endif()

if(FTB_GUEST_BUILDS)
  add_custom_command(OUTPUT ${FTB_GUEST_ELF}
    COMMAND ${CMAKE_C_COMPILER} ${FTB_GUEST_FLAGS} -o ${FTB_GUEST_ELF} ${FTB_GUEST_SRCS}
    DEPENDS ${FTB_GUEST_SRCS} ${FTB_GUEST_DIR}/guest.ld
    COMMENT "Building the QEMU test guest ftb-guest.elf" VERBATIM)
  add_custom_target(ftb_qemu_guest ALL DEPENDS ${FTB_GUEST_ELF})
  add_dependencies(ftbench ftb_qemu_guest)
  target_compile_definitions(ftbench PRIVATE FTB_QEMU_GUEST="${FTB_GUEST_ELF}")
endif()
