/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A minimal test harness for the portable core: CHECK() records a failure with file and line
 * and carries on, so one run reports every broken vector; main() returns non-zero if any did.
 */
#ifndef TSW_TEST_H
#define TSW_TEST_H

#include <stdio.h>

static int tsw_test_failures;
static int tsw_test_checks;

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		tsw_test_checks++;                                             \
		if (!(cond)) {                                                 \
			tsw_test_failures++;                                   \
			fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, \
				__LINE__, #cond);                              \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
		}                                                              \
	} while (0)

#define TEST_MAIN_END(name)                                                    \
	do {                                                                   \
		printf("%s: %d checks, %d failures\n", name, tsw_test_checks,  \
		       tsw_test_failures);                                     \
		return tsw_test_failures ? 1 : 0;                              \
	} while (0)

#endif /* TSW_TEST_H */
