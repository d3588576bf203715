# Runtime options of the ASan + UBSan builds (sourced by scripts/sanitize.sh).
#   ASAN_OPTIONS
#     detect_leaks=1           leaks are findings too, except those in scripts/sanitize/lsan.supp (reasons there)
#     detect_odr_violation=0   libtorch and our binaries both carry copies of some header-defined globals
#                              (c10/ATen inline statics); ASan would report each as an ODR violation at load
#     alloc_dealloc_mismatch=1 malloc/delete and new/free mixes are errors (the default, stated)
#     abort_on_error=1         a report ends the process with SIGABRT: the test fails
#     strict_string_checks=1   C string functions check the whole string, not only the bytes they read
#   UBSAN_OPTIONS print_stacktrace=1 halt_on_error=1 (with -fno-sanitize-recover=all every report is fatal)
_qlora_san_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export ASAN_OPTIONS=detect_leaks=1:detect_odr_violation=0:alloc_dealloc_mismatch=1:abort_on_error=1:strict_string_checks=1
export LSAN_OPTIONS=suppressions=$_qlora_san_root/scripts/sanitize/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Compile and link flags of an instrumented build (gcc): every report is fatal, frames stay readable.
QLORA_SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
QLORA_SAN_LINK="-fsanitize=address,undefined"
