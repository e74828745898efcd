/* loop.c - epoll event loop; see loop.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/util.h"

#define LOOP_EVENTS 256

struct loop {
	int epfd;
	bool stop;
	int tick_ms;
	int64_t next_tick;
	void (*tick_fn)(void *);
	void *tick_ud;
	void (*sleep_fn)(void *);
	void *sleep_ud;
	struct epoll_event ev[LOOP_EVENTS];
};

struct loop *loop_new(void)
{
	struct loop *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		free(l);
		return NULL;
	}
	return l;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	close(l->epfd);
	free(l);
}

int loop_io_add(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };
	io->events = events;
	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev);
}

int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events)
{
	if (io->events == events)
		return 0;
	struct epoll_event ev = { .events = events, .data.ptr = io };
	io->events = events;
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev);
}

void loop_io_del(struct loop *l, struct loop_io *io)
{
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->events = 0;
}

void loop_set_tick(struct loop *l, int ms, void (*fn)(void *ud), void *ud)
{
	l->tick_ms = ms;
	l->tick_fn = fn;
	l->tick_ud = ud;
	l->next_tick = util_now_ms() + ms;
}

void loop_set_before_sleep(struct loop *l, void (*fn)(void *ud), void *ud)
{
	l->sleep_fn = fn;
	l->sleep_ud = ud;
}

void loop_stop(struct loop *l) { l->stop = true; }

int loop_run_once(struct loop *l, int max_wait_ms)
{
	if (l->sleep_fn)
		l->sleep_fn(l->sleep_ud);
	int timeout = max_wait_ms;
	if (l->tick_fn) {
		int64_t left = l->next_tick - util_now_ms();
		if (left < 0)
			left = 0;
		if (timeout < 0 || left < timeout)
			timeout = (int)left;
	}
	int n = epoll_wait(l->epfd, l->ev, LOOP_EVENTS, timeout);
	if (n < 0) {
		if (errno != EINTR)
			return -1;
		n = 0;
	}
	for (int i = 0; i < n && !l->stop; i++) {
		struct loop_io *io = l->ev[i].data.ptr;
		io->fn(io, l->ev[i].events);
	}
	if (l->tick_fn) {
		int64_t now = util_now_ms();
		if (now >= l->next_tick) {
			l->next_tick = now + l->tick_ms;
			l->tick_fn(l->tick_ud);
		}
	}
	return n;
}

int loop_run(struct loop *l)
{
	while (!l->stop)
		if (loop_run_once(l, -1) < 0)
			return -1;
	return 0;
}
