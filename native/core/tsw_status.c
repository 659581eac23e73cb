/* SPDX-License-Identifier: Apache-2.0 */
/* Names and descriptions of core statuses, generated from TSW_STATUS_TABLE. */
#include <stddef.h>

#include "tsw/tsw_status.h"

const char *
tsw_status_name(int status)
{
	switch (status) {
#define TSW_X(name, code, text) case code: return #name;
	TSW_STATUS_TABLE(TSW_X)
#undef TSW_X
	}
	return NULL;
}

const char *
tsw_status_text(int status)
{
	switch (status) {
#define TSW_X(name, code, text) case code: return text;
	TSW_STATUS_TABLE(TSW_X)
#undef TSW_X
	}
	return NULL;
}
