/*
 * A small unit test runner. Each TEST registers itself; the runner forks
 * per test so a crash fails that test only. `unit-tests --list` names the
 * tests, `unit-tests NAME...` runs some, no argument runs all. The last line
 * is "N passed, N failed".
 */
#ifndef POSTERN_UNIT_H
#define POSTERN_UNIT_H

#include <stdio.h>
#include <string.h>

typedef void (*unit_fn)(void);
void unit_register(const char *name, unit_fn fn);
void unit_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A scratch directory unique to the running test (removed afterwards). */
const char *unit_tmpdir(void);

#define TEST(name)                                                        \
	static void name(void);                                           \
	__attribute__((constructor)) static void unit_reg_##name(void)    \
	{                                                                 \
		unit_register(#name, name);                               \
	}                                                                 \
	static void name(void)

#define CHECK(cond)                                                       \
	do {                                                              \
		if (!(cond))                                              \
			unit_fail(__FILE__, __LINE__, "%s", #cond);       \
	} while (0)

#define CHECK_INT(a, b)                                                              \
	do {                                                                         \
		long long unit_a = (long long)(a), unit_b = (long long)(b);          \
		if (unit_a != unit_b)                                                \
			unit_fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", \
				  #a, unit_a, #b, unit_b);                           \
	} while (0)

#define CHECK_STR(a, b)                                                               \
	do {                                                                          \
		const char *unit_a = (a), *unit_b = (b);                              \
		if (unit_a == NULL || unit_b == NULL || strcmp(unit_a, unit_b) != 0) \
			unit_fail(__FILE__, __LINE__, "%s == \"%s\", expected \"%s\"",  \
				  #a, unit_a ? unit_a : "(null)", unit_b ? unit_b : "(null)"); \
	} while (0)

#endif
