/*
 * net.h - socket helpers shared by the MQTT listeners and the HTTP endpoint.
 */
#ifndef KG_NET_H
#define KG_NET_H

#include <stdbool.h>
#include <stddef.h>

/* Returns a non-blocking listening TCP socket bound to address:port
 * (numeric IPv4 or IPv6), with SO_REUSEADDR and, if reuseport, SO_REUSEPORT;
 * or -1 with errno set. */
int net_listen(const char *address, int port, bool reuseport, int backlog);

/* Accepts one connection as a non-blocking, close-on-exec socket with
 * TCP_NODELAY, and formats the peer as "addr:port" into peer.
 * Returns the fd or -1 (errno EAGAIN when none is pending). */
int net_accept(int lfd, char *peer, size_t peer_len);

/* The local port of a bound socket, or -1. */
int net_local_port(int fd);

#endif
