/* passwd_cmd.c - "kafkagate passwd"; see passwd_cmd.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "app/passwd_cmd.h"
#include "auth/passwd.h"

#define PW_MAX 65535 /* an MQTT password is at most this long */

struct opts {
	bool create, del, from_stdin, verify;
	int iterations;
	const char *file, *user;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kafkagate passwd [-c] [--stdin] [--iterations N] FILE USER\n"
		"       kafkagate passwd -D FILE USER\n"
		"       kafkagate passwd --verify FILE USER\n"
		"\n"
		"Adds USER to the mosquitto password FILE or changes its password.\n"
		"  -c              create FILE (replacing any existing one)\n"
		"  -D              delete USER\n"
		"  --stdin         read the password from the first line of stdin\n"
		"                  (default: prompt twice on the terminal)\n"
		"  --iterations N  PBKDF2-HMAC-SHA512 rounds, 1..%d (default %d)\n"
		"  --verify        check the password on stdin: exit 0 right, 1 wrong,\n"
		"                  2 no such user, 3 error\n"
		"\n"
		"Exit status: 0 done, 1 failed, 2 bad usage.\n",
		PASSWD_MAX_ITERATIONS, PASSWD_DEFAULT_ITERATIONS);
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	int npos = 0;
	bool dashdash = false;

	*o = (struct opts){ .iterations = -1 };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (dashdash || a[0] != '-' || a[1] == '\0') {
			if (npos == 0)
				o->file = a;
			else if (npos == 1)
				o->user = a;
			npos++;
		} else if (!strcmp(a, "--")) {
			dashdash = true;
		} else if (!strcmp(a, "-c")) {
			o->create = true;
		} else if (!strcmp(a, "-D")) {
			o->del = true;
		} else if (!strcmp(a, "--stdin")) {
			o->from_stdin = true;
		} else if (!strcmp(a, "--verify")) {
			o->verify = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--iterations") || !strncmp(a, "--iterations=", 13)) {
			const char *v = a[12] == '=' ? a + 13 : i + 1 < argc ? argv[++i] : "";
			char *end;
			errno = 0;
			long n = strtol(v, &end, 10);
			if (!*v || *end || errno || n < 1 || n > PASSWD_MAX_ITERATIONS) {
				fprintf(stderr, "kafkagate passwd: --iterations wants 1..%d, not '%s'\n",
					PASSWD_MAX_ITERATIONS, v);
				return 2;
			}
			o->iterations = (int)n;
		} else {
			fprintf(stderr, "kafkagate passwd: unknown option '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	const char *why = npos != 2 ? "wants FILE and USER"
		: o->del && o->create ? "-c and -D do not go together"
		: o->verify && (o->create || o->del) ? "--verify goes alone"
		: (o->del || o->verify) && (o->iterations > 0 || o->from_stdin) ?
		  "--stdin and --iterations are for setting a password" : NULL;
	if (why) {
		fprintf(stderr, "kafkagate passwd: %s\n", why);
		usage(stderr);
		return 2;
	}
	if (!o->verify && !passwd_user_valid(o->user)) {
		fprintf(stderr, "kafkagate passwd: bad user name '%s' (1..65535 bytes, no ':', "
			"no control characters, no blank at either end, not starting with '#')\n",
			o->user);
		return 2;
	}
	if (o->iterations < 0)
		o->iterations = PASSWD_DEFAULT_ITERATIONS;
	return -1;
}

/* ---- reading the password ------------------------------------------- */

static struct termios saved_tty;
static struct sigaction saved_sa[4];
static const int tty_signals[4] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

static void restore_tty_and_die(int sig)
{
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Reads one line of at most PW_MAX bytes into buf (PW_MAX + 2 bytes), without
 * its "\n" or "\r\n". Returns its length, or -1 (EOF before anything, or
 * too long). */
static long read_line(char *buf)
{
	if (!fgets(buf, PW_MAX + 2, stdin))
		return -1;
	size_t n = strlen(buf); /* a NUL in the input cuts the line there */
	if (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	else if (n == PW_MAX + 1)
		return -1;
	if (n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	return (long)n;
}

/* Prompts on stderr and reads a line from the terminal on stdin, no echo. */
static long read_tty(const char *prompt, char *buf)
{
	struct termios quiet;
	struct sigaction sa = { .sa_handler = restore_tty_and_die };

	if (tcgetattr(STDIN_FILENO, &saved_tty) != 0)
		return -1;
	quiet = saved_tty;
	quiet.c_lflag &= (tcflag_t)~ECHO;
	for (int i = 0; i < 4; i++)
		sigaction(tty_signals[i], &sa, &saved_sa[i]);
	fputs(prompt, stderr);
	fflush(stderr);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	long n = read_line(buf);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	for (int i = 0; i < 4; i++)
		sigaction(tty_signals[i], &saved_sa[i], NULL);
	fputc('\n', stderr);
	return n;
}

/* Gets the password into buf: from stdin, or prompted (twice when confirm). */
static long get_password(const struct opts *o, char *buf, bool confirm)
{
	long n;

	if (o->from_stdin || !isatty(STDIN_FILENO)) {
		if (!o->from_stdin && !o->verify) {
			fprintf(stderr, "kafkagate passwd: stdin is not a terminal; use --stdin\n");
			return -2;
		}
		if ((n = read_line(buf)) < 0)
			fprintf(stderr, "kafkagate passwd: no password line on stdin "
				"(or longer than %d bytes)\n", PW_MAX);
		return n;
	}
	if ((n = read_tty("Password: ", buf)) < 0) {
		fprintf(stderr, "kafkagate passwd: no password read (or longer than %d bytes)\n",
			PW_MAX);
		return -1;
	}
	if (confirm) {
		char *again = malloc(PW_MAX + 2);
		long m = again ? read_tty("Reenter password: ", again) : -1;
		bool same = m == n && memcmp(buf, again, (size_t)n) == 0;
		if (again)
			OPENSSL_cleanse(again, PW_MAX + 2);
		free(again);
		if (!same) {
			fprintf(stderr, "kafkagate passwd: the passwords do not match\n");
			return -1;
		}
	}
	return n;
}

/* ---- writing the file ------------------------------------------------ */

static bool write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* Replaces path with text: temporary file beside it, fsync, rename, fsync of
 * the directory. A symlink is followed (its target is replaced). */
static int write_atomic(const char *path, const char *text, size_t len)
{
	struct stat st;
	char *real = realpath(path, NULL);
	const char *target = real ? real : path;
	bool exists = stat(target, &st) == 0;
	size_t tl = strlen(target);
	char *tmp = malloc(tl + 16), *dir = malloc(tl + 2);
	int fd = -1, rc = 1;

	if (!tmp || !dir)
		goto out;
	snprintf(tmp, tl + 16, "%s.tmp.XXXXXX", target);
	if ((fd = mkstemp(tmp)) < 0) {
		fprintf(stderr, "kafkagate passwd: %s: %s\n", tmp, strerror(errno));
		goto out;
	}
	if (exists && fchown(fd, st.st_uid, st.st_gid) != 0) {
		/* Not root: the file becomes ours, as with any editor. */
	}
	if (fchmod(fd, exists ? st.st_mode & 07777 : 0600) != 0 || !write_all(fd, text, len) ||
	    fsync(fd) != 0 || close(fd) != 0) {
		fprintf(stderr, "kafkagate passwd: %s: %s\n", tmp, strerror(errno));
		fd = -1;
		unlink(tmp);
		goto out;
	}
	fd = -1;
	if (rename(tmp, target) != 0) {
		fprintf(stderr, "kafkagate passwd: %s: %s\n", target, strerror(errno));
		unlink(tmp);
		goto out;
	}
	memcpy(dir, target, tl + 1);
	char *slash = strrchr(dir, '/');
	if (slash)
		slash[slash == dir] = '\0'; /* "/f" -> "/" */
	int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(tmp);
	free(dir);
	free(real);
	return rc;
}

/* ---- the command ------------------------------------------------------ */

static int verify(const struct opts *o, struct passwd_db *db, char *pw)
{
	long n = get_password(o, pw, false);

	if (n < 0)
		return 3;
	switch (passwd_check(db, o->user, pw, (size_t)n)) {
	case PASSWD_OK: return 0;
	case PASSWD_WRONG: return 1;
	case PASSWD_NO_USER: return 2;
	default:
		fprintf(stderr, "kafkagate passwd: the check failed (out of memory or OpenSSL)\n");
		return 3;
	}
}

static int change(const struct opts *o, struct passwd_db *db, char *pw)
{
	char hash[PASSWD_HASH_MAX];

	if (o->del) {
		if (!passwd_delete(db, o->user)) {
			fprintf(stderr, "kafkagate passwd: no user '%s' in %s\n", o->user, o->file);
			return 1;
		}
	} else {
		long n = get_password(o, pw, true);
		if (n < 0)
			return n == -2 ? 2 : 1;
		if (n == 0) {
			fprintf(stderr, "kafkagate passwd: empty password\n");
			return 1;
		}
		if (passwd_hash(pw, (size_t)n, o->iterations, hash, sizeof(hash)) != 0 ||
		    passwd_set(db, o->user, hash) != 0) {
			fprintf(stderr, "kafkagate passwd: hashing failed (out of memory or OpenSSL)\n");
			return 1;
		}
	}
	size_t len;
	char *text = passwd_format(db, &len);
	if (!text) {
		fprintf(stderr, "kafkagate passwd: out of memory\n");
		return 1;
	}
	int rc = write_atomic(o->file, text, len);
	free(text);
	return rc;
}

int passwd_cmd_main(int argc, char **argv)
{
	struct opts o;
	char err[512];
	int rc = parse_args(argc, argv, &o);

	if (rc >= 0)
		return rc; /* --help (0) or bad usage (2); -1: go on */
	errno = 0;
	struct passwd_db *db = o.create ? passwd_new() : passwd_load(o.file, err, sizeof(err));
	bool missing = !db && errno == ENOENT;
	char *pw = malloc(PW_MAX + 2);
	if (!db || !pw) {
		if (!db && !o.create)
			fprintf(stderr, "kafkagate passwd: %s%s\n", err,
				missing && !o.verify ? " (-c creates it)" : "");
		else
			fprintf(stderr, "kafkagate passwd: out of memory\n");
		rc = o.verify ? 3 : 1;
	} else {
		rc = o.verify ? verify(&o, db, pw) : change(&o, db, pw);
	}
	if (pw)
		OPENSSL_cleanse(pw, PW_MAX + 2);
	free(pw);
	passwd_free(db);
	return rc;
}
