/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The steering state: which TCP destination ports are steered from rack
 * ports to the tap, and whether new connections to them are steered (each
 * connection then keeps its decision: dp_flow.h). Written by main.c at
 * start-up and by the control thread afterwards; the worker only loads
 * (see the ownership notes in dp.h). Both functions validate everything
 * before changing anything.
 */
#include <errno.h>
#include <string.h>

#include "dp.h"

static inline void
dp_steer_bit(struct dp_core *dc, uint16_t port, bool on)
{
	uint64_t *w = &dc->steer_map[port / 64];
	uint64_t bit = UINT64_C(1) << (port % 64);
	uint64_t v = __atomic_load_n(w, __ATOMIC_RELAXED);

	__atomic_store_n(w, on ? v | bit : v & ~bit, __ATOMIC_RELEASE);
}

/* Replaces the set of steered TCP ports. Returns 0, or -EINVAL for port 0
 * or more than DP_MAX_STEER_PORTS ports. New ports are added before old
 * ones are removed, so a port kept in both sets is never unsteered. */
int
dp_steer_set_ports(struct dp_core *dc, const uint16_t *ports, uint16_t nb)
{
	uint16_t i, j, old[DP_MAX_STEER_PORTS], nb_old = dc->nb_steer;

	if (nb > DP_MAX_STEER_PORTS)
		return -EINVAL;
	for (i = 0; i < nb; i++)
		if (ports[i] == 0)
			return -EINVAL;
	memcpy(old, dc->steer_ports, sizeof(old));
	for (i = 0; i < nb; i++)
		dp_steer_bit(dc, ports[i], true);
	for (i = 0; i < nb_old; i++) {
		bool kept = false;

		for (j = 0; j < nb; j++)
			kept |= old[i] == ports[j];
		if (!kept)
			dp_steer_bit(dc, old[i], false);
	}
	memcpy(dc->steer_ports, ports, nb * sizeof(ports[0]));
	dc->nb_steer = nb;
	return 0;
}

/* Turns steering of new flows on or off. Returns 0, or -ENODEV when
 * turning it on without a tap port to steer to. */
int
dp_steer_enable(struct dp_core *dc, bool on)
{
	if (on && dc->tap_idx < 0)
		return -ENODEV;
	__atomic_store_n(&dc->steer_on, on ? 1 : 0, __ATOMIC_RELEASE);
	return 0;
}
