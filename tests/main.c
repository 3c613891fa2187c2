/* The test runner's main: Criterion's own, except that under `make asan` the runner process
 * does not report Criterion's internal allocations as leaks. The runner keeps a few 48-byte
 * objects of its own past exit when workers finish in some orders (seen with -j2), which made
 * LeakSanitizer fail a run whose tests all passed. Each test runs in a worker process of its own,
 * where leak detection stays on, so a leak in sparq code or in a test still fails the suite. */
#include <criterion/criterion.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

int main(int argc, char *argv[]) {
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true)) {
#ifdef __SANITIZE_ADDRESS__
        __lsan_disable();
#endif
        result = !criterion_run_all_tests(tests);
#ifdef __SANITIZE_ADDRESS__
        __lsan_enable();
#endif
    }
    criterion_finalize(tests);
    return result;
}
