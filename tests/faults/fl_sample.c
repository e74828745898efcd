/*
 * fl_sample.c - sample: the gateways' resident memory (VmRSS) and open
 * descriptors (/proc/PID/fd) every --interval-ms until SIGTERM; the PIDs
 * are re-read from --pidfile (one a line) at every tick, because scenarios
 * restart gateways. Prints the peak of any single process.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"

static long proc_rss_kb(long pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kb = strtol(line + 6, NULL, 10);
			break;
		}
	fclose(f);
	return kb;
}

static long proc_fds(long pid)
{
	char path[64];
	struct dirent *d;
	long n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
	if (!(dir = opendir(path)))
		return -1;
	while ((d = readdir(dir)))
		if (d->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

int fl_sample_main(int argc, char **argv)
{
	const char *pidfile = fl_opt(argc, argv, "--pidfile", NULL);
	int64_t every = fl_opt_l(argc, argv, "--interval-ms", 100) * 1000;
	long peak_rss = 0, peak_fds = 0, samples = 0;

	if (!pidfile) {
		fprintf(stderr, "faults sample: --pidfile is required\n");
		return 2;
	}
	while (!fl_stop) {
		FILE *f = fopen(pidfile, "r");
		long pid;

		while (f && fscanf(f, "%ld", &pid) == 1) {
			long rss = proc_rss_kb(pid), fds = proc_fds(pid);

			if (rss > peak_rss)
				peak_rss = rss;
			if (fds > peak_fds)
				peak_fds = fds;
			samples += rss >= 0;
		}
		if (f)
			fclose(f);
		fl_sleep_us(every);
	}
	printf("RESULT role=sample samples=%ld peak_rss_mb=%.1f peak_fds=%ld\n", samples,
	       peak_rss / 1024.0, peak_fds);
	return 0;
}
