/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Status codes of the portable core, as one X-macro table.
 *
 * The table generates the enum and the name strings; torswitch/errors.py has one exception
 * class per name, and torswitch/_native.py checks at import that the two agree. Success and
 * "need more bytes" are not errors: parsers return TSW_NEED_MORE as a normal status.
 */
#ifndef TSW_STATUS_H
#define TSW_STATUS_H

#define TSW_STATUS_TABLE(X)                                        \
	X(OK,        0,  "success")                                \
	X(NEED_MORE, 1,  "need more bytes")                        \
	X(EINVAL,    -1, "invalid argument")                       \
	X(ENOMEM,    -2, "out of memory")                          \
	X(EPROTO,    -3, "protocol error")                         \
	X(ENOSPC,    -4, "no space left in a fixed-size table")    \
	X(ENOENT,    -5, "not found")                              \
	X(ERANGE,    -6, "value out of range")

enum tsw_status {
#define TSW_X(name, code, text) TSW_##name = code,
	TSW_STATUS_TABLE(TSW_X)
#undef TSW_X
};

/* Name of a status ("EPROTO"), or NULL for an unknown code. */
const char *
tsw_status_name(int status);

/* One-line description of a status, or NULL for an unknown code. */
const char *
tsw_status_text(int status);

#endif /* TSW_STATUS_H */
