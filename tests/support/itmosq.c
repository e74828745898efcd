/* itmosq.c - spawn and stop mosquitto for tests; see itmosq.h. */
#include "itmosq.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"
#include "itutil.h"

static bool port_open(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

/* Writes text with every "%D" replaced by dir. */
static void put_expanded(FILE *f, const char *text, const char *dir)
{
	for (const char *p = text; *p; p++) {
		if (p[0] == '%' && p[1] == 'D') {
			fputs(dir, f);
			p++;
		} else {
			fputc(*p, f);
		}
	}
}

static int spawn(struct itmosq *m)
{
	const char *bin = getenv("KG_MOSQUITTO") ? getenv("KG_MOSQUITTO") : "/usr/sbin/mosquitto";
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int fd = open(m->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execl(bin, bin, "-c", m->conf, (char *)NULL);
		_exit(127);
	}
	m->pid = pid;
	for (long long end = itutil_now_ms() + 5000; itutil_now_ms() < end; itutil_sleep_ms(20)) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			fprintf(stderr, "itmosq: mosquitto exited at start (status %d); see %s\n", st,
				m->log);
			m->pid = 0;
			return -1;
		}
		if (port_open(m->port))
			return 0;
	}
	fprintf(stderr, "itmosq: mosquitto did not listen on %d in 5 s; see %s\n", m->port, m->log);
	itmosq_stop(m);
	return -1;
}

int itmosq_start(struct itmosq *m, bool persistence, const char *extra)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->dir, sizeof(m->dir), "%s/itmosq.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(m->dir)) {
		fprintf(stderr, "itmosq: mkdtemp: %s\n", strerror(errno));
		m->dir[0] = '\0';
		return -1;
	}
	chmod(m->dir, 0755); /* mosquitto may drop to its own user */
	snprintf(m->conf, sizeof(m->conf), "%s/mosquitto.conf", m->dir);
	snprintf(m->log, sizeof(m->log), "%s/mosquitto.log", m->dir);
	m->port = gw_free_port();
	FILE *f = fopen(m->conf, "w");
	if (!f || m->port < 0) {
		fprintf(stderr, "itmosq: cannot write %s\n", m->conf);
		if (f)
			fclose(f);
		return -1;
	}
	/* Running as root, mosquitto would switch to its own user: keep ours. */
	fprintf(f, "user root\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
		   "max_queued_messages 0\nallow_anonymous true\n");
	if (persistence)
		fprintf(f, "persistence true\npersistence_location %s/\nautosave_interval 0\n", m->dir);
	else
		fprintf(f, "persistence false\n");
	fprintf(f, "listener %d 127.0.0.1\n", m->port);
	if (extra)
		put_expanded(f, extra, m->dir);
	fputc('\n', f);
	fclose(f);
	return spawn(m);
}

int itmosq_stop(struct itmosq *m)
{
	int st;

	if (m->pid <= 0)
		return -1;
	kill(m->pid, SIGCONT); /* a stopped one cannot act on SIGTERM */
	kill(m->pid, SIGTERM);
	for (long long end = itutil_now_ms() + 5000; itutil_now_ms() < end; itutil_sleep_ms(20)) {
		if (waitpid(m->pid, &st, WNOHANG) == m->pid) {
			m->pid = 0;
			return 0;
		}
	}
	kill(m->pid, SIGKILL);
	waitpid(m->pid, &st, 0);
	m->pid = 0;
	return 0;
}

int itmosq_restart(struct itmosq *m)
{
	itmosq_stop(m);
	return spawn(m);
}

void itmosq_signal(struct itmosq *m, int sig)
{
	if (m->pid > 0)
		kill(m->pid, sig);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

void itmosq_release(struct itmosq *m)
{
	itmosq_stop(m);
	if (m->dir[0] && !getenv("KG_KEEP"))
		nftw(m->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	m->dir[0] = '\0';
}

int itmosq_passwd(struct itmosq *m, const char *file, const char *user, const char *password)
{
	char path[400];
	pid_t pid;
	int st;

	snprintf(path, sizeof(path), "%s/%s", m->dir, file);
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		/* -c: create the file; -b: password on the command line. */
		if (access(path, F_OK) == 0)
			execlp("mosquitto_passwd", "mosquitto_passwd", "-b", path, user, password, (char *)NULL);
		else
			execlp("mosquitto_passwd", "mosquitto_passwd", "-c", "-b", path, user, password,
			       (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "itmosq: mosquitto_passwd failed for %s\n", path);
		return -1;
	}
	return 0;
}
