/*
 * net.h - socket helpers shared by the MQTT listeners and the HTTP endpoint.
 */
#ifndef KG_NET_H
#define KG_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns a non-blocking listening TCP socket bound to address:port
 * (numeric IPv4 or IPv6), with SO_REUSEADDR and, if reuseport, SO_REUSEPORT;
 * or -1 with errno set. */
int net_listen(const char *address, int port, bool reuseport, int backlog);

/* A peer's address: printable, and as a key for per-address limits. */
struct net_peer {
	char str[64];       /* "addr:port" */
	uint8_t ip[16];     /* IPv4 as ::ffff:a.b.c.d, so one key space */
	bool loopback;      /* 127.0.0.0/8 or ::1 */
	uint16_t port;
};

/* Describes the peer of connected socket fd in *p. Returns 0 or -1. */
int net_peer_of(int fd, struct net_peer *p);

/* Formats ip (as in struct net_peer) and port as "addr:port" into out.
 * Returns out. */
char *net_peer_format(const uint8_t ip[16], uint16_t port, char *out, size_t len);

/* Accepts one connection as a non-blocking, close-on-exec socket with
 * TCP_NODELAY, and describes the peer in *p. Returns the fd or -1 (errno
 * EAGAIN when none is pending). */
int net_accept(int lfd, struct net_peer *p);

/* The local port of a bound socket, or -1. */
int net_local_port(int fd);

#endif
