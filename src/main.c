/* main.c - start-up and shut-down order only. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "cfg.h"
#include "log.h"

#ifndef KG_VERSION
#define KG_VERSION "0.0.0"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kafkagate [--check] --config FILE\n"
		"       kafkagate --version | --help\n"
		"\n"
		"  -c, --config FILE  configuration file (libconfig syntax)\n"
		"  -t, --check        validate the configuration and exit (0 = valid)\n"
		"  -V, --version      print the version and exit\n"
		"  -h, --help         print this help and exit\n"
		"\n"
		"Signals: SIGTERM/SIGINT stop cleanly.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	bool check = false;
	int o;

	while ((o = getopt_long(argc, argv, "c:tVh", opts, NULL)) != -1) {
		switch (o) {
		case 'c': path = optarg; break;
		case 't': check = true; break;
		case 'V': printf("kafkagate %s\n", KG_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return 2;
	}

	char err[512];
	struct cfg *cfg = NULL;
	if (cfg_load(path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (check) {
		printf("%s: configuration valid\n", path);
		cfg_free(cfg);
		return 0;
	}

	log_set_level(cfg->log_level);
	log_use_syslog(cfg->log_syslog);

	/* Signals go to this thread only, through sigwait below; every thread
	 * created after this inherits the mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct broker *br = broker_new(cfg);
	if (!br) {
		cfg_free(cfg);
		return 1;
	}
	if (broker_start(br) < 0) {
		broker_free(br);
		cfg_free(cfg);
		return 1;
	}
	for (size_t i = 0; i < cfg->nlisteners; i++)
		log_info("listening address=%s port=%d workers=%d", cfg->listeners[i].address,
			 broker_listener_port(br, (int)i), br->n_workers);
	log_info("kafkagate started version=%s config=%s", KG_VERSION, path);

	for (;;) {
		int sig = 0;
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			log_info("reload requested: not supported yet, configuration unchanged");
			continue;
		}
		log_info("stopping signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		break;
	}
	broker_stop(br);
	broker_free(br);
	cfg_free(cfg);
	log_info("kafkagate stopped");
	return 0;
}
