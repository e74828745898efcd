/* net.c - see net.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/net.h"

int net_listen(const char *address, int port, bool reuseport, int backlog)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, address, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		len = sizeof(*in4);
	} else if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		len = sizeof(*in6);
	} else {
		errno = EINVAL;
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0)
		goto fail;
	return fd;
fail:;
	int e = errno;
	close(fd);
	errno = e;
	return -1;
}

/* ::ffff:a.b.c.d, the form IPv4 addresses take in struct net_peer. */
static bool is_v4mapped(const uint8_t ip[16])
{
	static const uint8_t pre[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	return memcmp(ip, pre, sizeof(pre)) == 0;
}

/* Fills *p from the address in ss. */
static void describe(const struct sockaddr_storage *ss, struct net_peer *p)
{
	memset(p->ip, 0, sizeof(p->ip));
	p->port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)ss;
		p->port = ntohs(in4->sin_port);
		p->ip[10] = p->ip[11] = 0xff;
		memcpy(p->ip + 12, &in4->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		p->port = ntohs(in6->sin6_port);
		memcpy(p->ip, &in6->sin6_addr, 16);
	}
	p->loopback = is_v4mapped(p->ip) ? p->ip[12] == 127
					     : memcmp(p->ip, in6addr_loopback.s6_addr, 16) == 0;
	net_peer_format(p->ip, p->port, p->str, sizeof(p->str));
}

int net_accept(int lfd, struct net_peer *p)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	describe(&ss, p);
	return fd;
}

int net_peer_of(int fd, struct net_peer *p)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	describe(&ss, p);
	return 0;
}

char *net_peer_format(const uint8_t ip[16], uint16_t port, char *out, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (is_v4mapped(ip))
		inet_ntop(AF_INET, ip + 12, a, sizeof(a));
	else
		inet_ntop(AF_INET6, ip, a, sizeof(a));
	snprintf(out, len, "%s:%u", a, port);
	return out;
}

int net_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}
