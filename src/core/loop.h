/*
 * loop.h - a tiny epoll event loop: fd handlers, one periodic tick and a
 * before-sleep hook. Everything else is a callback.
 *
 * A struct loop_io is embedded in its owner (a client, a listener, an inbox);
 * the callback recovers the owner with container_of(). One loop per thread;
 * every function here must be called from the loop's own thread.
 */
#ifndef KG_LOOP_H
#define KG_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "core/util.h"  /* container_of */

struct loop;

struct loop_io {
	int fd;
	uint32_t events;                     /* EPOLLIN / EPOLLOUT currently asked */
	void (*fn)(struct loop_io *io, uint32_t revents);
};

/* Returns a new loop, or NULL (errno set). Free with loop_free(). */
struct loop *loop_new(void);
void loop_free(struct loop *l);

/* Registers io->fd for `events`. Returns 0 or -1 (errno set). */
int loop_io_add(struct loop *l, struct loop_io *io, uint32_t events);
/* Changes the events asked for; a no-op when unchanged. */
int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events);
/* Unregisters (does not close the fd). */
void loop_io_del(struct loop *l, struct loop_io *io);

/* Calls fn(ud) every `ms` milliseconds (one tick per loop). */
void loop_set_tick(struct loop *l, int ms, void (*fn)(void *ud), void *ud);
/* Calls fn(ud) each time before the loop waits for events. */
void loop_set_before_sleep(struct loop *l, void (*fn)(void *ud), void *ud);

/* Runs until loop_stop() is called from a callback (returns 0), or until
 * epoll_wait fails with anything but EINTR (returns -1, errno set). */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);
/* One iteration of loop_run(): the before-sleep hook, a wait of at most
 * max_wait_ms (-1: until the next tick, or forever without one; 0: none),
 * the handlers of the ready fds, then the tick if it is due. Returns how
 * many fds were ready, or -1 as loop_run(). For loops driven from outside
 * (tests that step several loops on one thread). */
int loop_run_once(struct loop *l, int max_wait_ms);

#endif
