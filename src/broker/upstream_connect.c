/*
 * upstream_connect.c - one connection attempt to an upstream broker, on its
 * worker and without blocking it: the name is resolved with getaddrinfo_a()
 * (polled from the worker tick), each address is tried with a non-blocking
 * connect() watched for EPOLLOUT, and once TCP is up the socket becomes a
 * struct client in the upstream role (TLS client when configured) that
 * sends CONNECT with the password read from its file now, so that a rotated
 * secret is used at the next attempt. The rest (CONNACK, SUBSCRIBE, the
 * messages) is upstream.c's. See upstream.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/auth.h"
#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/client_io.h"
#include "broker/send.h"
#include "broker/upstream.h"
#include "broker/worker.h"
#include "core/log.h"
#include "core/net.h"
#include "core/util.h"
#include "mqtt/mqtt_codec.h"

#define PASSWORD_MAX 65535

static void on_connect_io(struct loop_io *io, uint32_t revents);

/* The attempt ends before a client exists: "what: detail" recorded, the
 * next one scheduled. */
static void attempt_failed(struct upstream *up, const char *what, const char *detail)
{
	upstream_set_error(up, "%s: %s", what, detail);
	upstream_connect_abort(up, NULL);
	upstream_schedule(up);
}

void upstream_connect_abort(struct upstream *up, const char *why)
{
	if (why)
		upstream_set_error(up, "%s", why);
	if (up->cio.fd >= 0) {
		if (up->cio_added)
			loop_io_del(up->w->loop, &up->cio);
		close(up->cio.fd);
		up->cio.fd = -1;
		up->cio_added = false;
	}
	if (up->resolving) {
		/* Only at free (the tick never abandons a lookup): one that cannot
		 * be cancelled is waited for, bounded by the resolver's timeouts. */
		if (gai_cancel(&up->gai) == EAI_NOTCANCELED) {
			const struct gaicb *l[1] = { &up->gai };
			while (gai_error(&up->gai) == EAI_INPROGRESS)
				gai_suspend(l, 1, NULL);
		}
		if (up->gai.ar_result)
			freeaddrinfo(up->gai.ar_result);
		up->gai.ar_result = NULL;
		up->resolving = false;
	}
	if (up->ai)
		freeaddrinfo(up->ai);
	up->ai = NULL;
	up->ai_next = NULL;
}

char *upstream_password_read(const char *path, size_t *len)
{
	size_t flen;
	char *pw = util_read_file(path, PASSWORD_MAX + 2, &flen);

	if (!pw)
		return NULL;
	size_t n = strcspn(pw, "\r\n");
	explicit_bzero(pw + n, flen - n); /* only the first line is kept */
	if (n > PASSWORD_MAX) {
		explicit_bzero(pw, n);
		free(pw);
		errno = EFBIG;
		return NULL;
	}
	*len = n;
	return pw;
}

/* TCP is up on fd: the client, TLS, CONNECT. */
static void connected(struct upstream *up, int fd)
{
	struct net_peer p;
	const char *peer = net_peer_of(fd, &p) == 0 ? p.str : "?";
	struct client *c = client_new_outbound(up->w, fd, up, peer);
	char *pw = NULL;
	size_t pwlen = 0;

	upstream_connect_abort(up, NULL); /* addresses no longer needed; fd is c's now */
	if (!c) {
		upstream_set_error(up, "out of memory");
		upstream_schedule(up);
		return;
	}
	up->c = c;
	c->keepalive = up->keepalive;
	c->clean = up->clean;
	c->id = strdup(up->name);
	c->id_len = (uint16_t)strlen(up->name);
	c->username = up->username ? strdup(up->username) : NULL;
	if (!c->id || (up->username && !c->username)) {
		client_close(c, "out of memory", false);
		return;
	}
	/* The configured user name is ours, not a peer's claim: the ACL sees it. */
	if (up->username) {
		struct client_auth *ca = auth_client(c);
		if (!ca) {
			client_close(c, "out of memory", false);
			return;
		}
		ca->verified = true;
	}
	if (up->tls && client_io_new_tls_client(c, up->tls, up->server_name) < 0) {
		client_close(c, "out of memory", false);
		return;
	}
	if (up->password_file && !(pw = upstream_password_read(up->password_file, &pwlen))) {
		log_warn_rl("upstream password_file unusable name=%s file=%s: %s", up->name,
			    up->password_file, strerror(errno));
		client_close(c, "cannot read the password_file", false);
		return;
	}
	struct mqtt_connect k = {
		.level = 4, .clean = up->clean, .keepalive = up->keepalive,
		.client_id = { (const uint8_t *)up->client_id, (uint16_t)strlen(up->client_id) },
		.has_username = up->username != NULL, .has_password = pw != NULL,
		.username = { (const uint8_t *)up->username,
			      (uint16_t)(up->username ? strlen(up->username) : 0) },
		.password = { (const uint8_t *)pw, (uint16_t)pwlen },
	};
	send_connect(c, &k);
	if (pw) {
		explicit_bzero(pw, pwlen);
		free(pw);
	}
	/* The CONNECT leaves at the safe point (through TLS once the handshake
	 * is done); CONNACK is upstream_dispatch()'s. */
	log_debug("upstream connecting name=%s peer=%s tls=%s", up->name, peer,
		  up->tls ? "yes" : "no");
}

/* Tries the addresses from up->ai_next on; the first that connects at once
 * or is in progress is kept. */
static void try_next(struct upstream *up)
{
	const struct addrinfo *ai;
	int err = 0;

	while ((ai = up->ai_next)) {
		up->ai_next = ai->ai_next;
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			connected(up, fd);
			return;
		}
		if (errno == EINPROGRESS) {
			up->cio.fd = fd;
			up->cio.fn = on_connect_io;
			if (loop_io_add(up->w->loop, &up->cio, EPOLLOUT) == 0) {
				up->cio_added = true;
				return;
			}
		}
		err = errno;
		close(fd);
		up->cio.fd = -1;
	}
	attempt_failed(up, "connect", strerror(err ? err : ECONNREFUSED));
}

static void on_connect_io(struct loop_io *io, uint32_t revents)
{
	struct upstream *up = container_of(io, struct upstream, cio);
	int err = 0;
	socklen_t len = sizeof(err);

	(void)revents;
	up->w->now_ms = util_now_ms();
	if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	loop_io_del(up->w->loop, io);
	up->cio_added = false;
	int fd = io->fd;
	io->fd = -1;
	if (err == 0) {
		connected(up, fd);
		return;
	}
	close(fd);
	if (up->ai_next) {
		try_next(up);
		return;
	}
	attempt_failed(up, "connect", strerror(err));
}

static void resolved(struct upstream *up, struct addrinfo *ai)
{
	up->ai = ai;
	up->ai_next = ai;
	try_next(up);
}

void upstream_connect_start(struct upstream *up)
{
	char port[8];
	struct addrinfo *ai = NULL;

	upstream_set_state(up, UPSTREAM_CONNECTING);
	UP_INC(up, attempts);
	up->attempt_ms = up->w->now_ms;
	snprintf(port, sizeof(port), "%d", up->port);
	memset(&up->hints, 0, sizeof(up->hints));
	up->hints.ai_socktype = SOCK_STREAM;
	up->hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	/* A numeric address needs no resolver. */
	if (getaddrinfo(up->address, port, &up->hints, &ai) == 0) {
		resolved(up, ai);
		return;
	}
	up->hints.ai_flags = AI_ADDRCONFIG;
	memset(&up->gai, 0, sizeof(up->gai));
	up->gai.ar_name = up->address;
	up->gai.ar_service = NULL; /* the port is set on the results */
	up->gai.ar_request = &up->hints;
	struct gaicb *list[1] = { &up->gai };
	int rc = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
	if (rc != 0) {
		attempt_failed(up, "resolve", gai_strerror(rc));
		return;
	}
	up->resolving = true;
}

void upstream_connect_poll(struct upstream *up)
{
	int rc = gai_error(&up->gai);

	if (rc == EAI_INPROGRESS)
		return;
	up->resolving = false;
	if (rc != 0) {
		if (up->gai.ar_result)
			freeaddrinfo(up->gai.ar_result);
		up->gai.ar_result = NULL;
		attempt_failed(up, "resolve", gai_strerror(rc));
		return;
	}
	struct addrinfo *ai = up->gai.ar_result;
	up->gai.ar_result = NULL;
	/* No service was looked up (it would have to outlive the call): the
	 * port goes on every address. */
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		if (a->ai_family == AF_INET)
			((struct sockaddr_in *)(void *)a->ai_addr)->sin_port = htons((uint16_t)up->port);
		else if (a->ai_family == AF_INET6)
			((struct sockaddr_in6 *)(void *)a->ai_addr)->sin6_port = htons((uint16_t)up->port);
	}
	resolved(up, ai);
}
