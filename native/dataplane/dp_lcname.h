/* SPDX-License-Identifier: Apache-2.0 */
/*
 * X-macro names in lower case, spelt out at compile time one character at
 * a time, for name tables of counters and results ("TOO_MANY_KEYS" ->
 * "too_many_keys"). In bounds: the index is clamped, and the characters
 * past the name are NULs. Names must be shorter than DP_LCNAME_MAX (check
 * with a _Static_assert next to the table).
 */
#ifndef DP_LCNAME_H
#define DP_LCNAME_H

#define DP_LCNAME_MAX 16
#define DP_LCNAME_AT(s, i) ((s)[(i) < sizeof(s) ? (i) : 0])
#define DP_LCNAME_CH(s, i)						\
	((i) >= sizeof(s) - 1 ? '\0' :					\
	 DP_LCNAME_AT(s, i) >= 'A' && DP_LCNAME_AT(s, i) <= 'Z' ?	\
	 (char)(DP_LCNAME_AT(s, i) | 0x20) : DP_LCNAME_AT(s, i))
#define DP_LCNAME(s) {							\
	DP_LCNAME_CH(s, 0), DP_LCNAME_CH(s, 1), DP_LCNAME_CH(s, 2),	\
	DP_LCNAME_CH(s, 3), DP_LCNAME_CH(s, 4), DP_LCNAME_CH(s, 5),	\
	DP_LCNAME_CH(s, 6), DP_LCNAME_CH(s, 7), DP_LCNAME_CH(s, 8),	\
	DP_LCNAME_CH(s, 9), DP_LCNAME_CH(s, 10), DP_LCNAME_CH(s, 11),	\
	DP_LCNAME_CH(s, 12), DP_LCNAME_CH(s, 13), DP_LCNAME_CH(s, 14),	\
	DP_LCNAME_CH(s, 15) }

#endif /* DP_LCNAME_H */
