/* main.c - start-up and shut-down order only. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"
#include "core/cfg.h"
#include "core/daemon.h"
#include "kafka/downlink.h"
#include "admin/http.h"
#include "kafka/kafka_conf.h"
#include "core/log.h"
#include "admin/metrics.h"
#include "app/reload.h"
#include "app/passwd_cmd.h"
#include "route/route.h"
#include "state/state.h"
#include "admin/status.h"
#include "kafka/uplink.h"
#include "core/util.h"

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
		"Signals: SIGTERM/SIGINT stop cleanly (flushing Kafka); SIGHUP reloads the\n"
		"configuration (routes, limits, log level) without closing connections.\n");
}

/* Kafka is started when the config has a kafka group, routes or downlinks,
 * or keeps its state there. */
static bool kafka_wanted(const struct cfg *cfg)
{
	return cfg->kafka.line > 0 || cfg->nroutes > 0 || cfg->ndownlinks > 0 ||
	       cfg->state.store == CFG_STORE_KAFKA;
}

/* State in Kafka names its Kafka: the embedded mock cluster keeps nothing
 * across restarts, so it is used only when written (kafka_conf.h: never a
 * fallback). Returns 0 or -1 with "FILE:LINE: ..." in err. */
static int state_check(const struct cfg *cfg, char *err, size_t errlen)
{
	if (cfg->state.store == CFG_STORE_KAFKA && !cfg->kafka.brokers_line) {
		snprintf(err, errlen,
			 "%s:%d: state.store = \"kafka\" needs kafka.brokers: set it to the Kafka "
			 "bootstrap servers (\"host:port,...\"), or \"embedded\" for a throwaway "
			 "in-process cluster", cfg->path, cfg->state.line);
		return -1;
	}
	return 0;
}

/* Serves SIGHUP reloads until SIGTERM or SIGINT; tells systemd when the
 * gateway is ready (listeners bound, Kafka metadata reachable, the state
 * topics read: state_ready()) and pings its watchdog while the workers are
 * alive. */
static void wait_for_stop(struct reload_ctx *rl, struct state *st)
{
	sigset_t set;
	bool ready = false, ready_logged = false;
	int wd = daemon_watchdog_interval_ms();
	char why[256];

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	for (;;) {
		/* At least once a second: rate-limited log kinds that went quiet
		 * report what they suppressed. */
		int wait_ms = !ready ? 500 : wd > 0 && wd < 1000 ? wd : 1000;
		struct timespec ts = { wait_ms / 1000, (long)(wait_ms % 1000) * 1000000 };
		int sig = sigtimedwait(&set, NULL, &ts);

		if (!ready) {
			if ((!rl->up || uplink_ready(rl->up, why, sizeof(why)) == 0) &&
			    (!st || state_ready(st, why, sizeof(why)))) {
				ready = true;
				daemon_notify_ready();
				daemon_notify_status("serving");
				log_info("ready");
			} else {
				daemon_notify_status("waiting for Kafka: %s", why);
				if (st && !ready_logged) {
					/* Once: a gateway waiting for its state says why. */
					ready_logged = true;
					log_info("not ready yet reason=\"%s\"", why);
				}
			}
		}
		/* The watchdog vouches for the network threads, not just for this one. */
		log_flush_suppressed();
		if (wd > 0 && broker_alive(rl->br, 5000))
			daemon_watchdog_ping();
		if (sig == SIGHUP) {
			log_info("reload requested config=%s", rl->path);
			daemon_notify_reloading();
			reload_apply(rl);
			daemon_notify_ready();
		} else if (sig == SIGTERM || sig == SIGINT) {
			log_info("stopping signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
			daemon_notify_stopping();
			return;
		}
	}
}

static int run(const struct cfg *cfg, struct route_table *rt, const char *path);

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "passwd")) return passwd_cmd_main(argc - 1, argv + 1);
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
	struct route_table *rt = NULL;
	if (cfg_load(path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (!(rt = reload_route_table(cfg, err, sizeof(err))) ||
	    kafka_conf_check(cfg, err, sizeof(err)) < 0 ||
	    downlink_check(cfg, err, sizeof(err)) < 0 ||
	    broker_check(cfg, err, sizeof(err)) < 0 ||
	    state_check(cfg, err, sizeof(err)) < 0 ||
	    http_server_check(cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		route_table_unref(rt); /* NULL ok */
		cfg_free(cfg);
		return 1;
	}
	if (check) {
		printf("%s: configuration valid\n", path);
		route_table_unref(rt);
		cfg_free(cfg);
		return 0;
	}
	int rc = run(cfg, rt, path);
	route_table_unref(rt);
	cfg_free(cfg);
	return rc;
}

/* Start-up and shut-down order. */
static int run(const struct cfg *cfg, struct route_table *rt, const char *path)
{
	char err[512];
	struct kafka_embed *embed = NULL;
	struct uplink *up = NULL;
	struct broker *br = NULL;
	struct http_server *http = NULL;
	struct downlink *dl = NULL;
	struct state *st = NULL;
	int rc = 1;

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

	br = broker_new(cfg);
	if (!br)
		goto out;
	if (kafka_wanted(cfg)) {
		const char *bootstrap = cfg->kafka.brokers;
		if (strcmp(bootstrap, "embedded") == 0) {
			if (!(embed = kafka_embed_new(1, err, sizeof(err)))) {
				log_error("kafka start failed reason=\"%s\"", err);
				goto out;
			}
			bootstrap = kafka_embed_bootstrap(embed);
			log_info("kafka embedded mock cluster bootstrap=%s", bootstrap);
		}
		if (!(up = uplink_new(cfg, br, bootstrap, rt, err, sizeof(err)))) {
			log_error("kafka start failed reason=\"%s\"", err);
			goto out;
		}
		broker_set_sink(br, &(struct broker_sink){ uplink_publish, up });
		if (uplink_start(up) < 0)
			goto out;
		log_info("kafka producer started bootstrap=%s routes=%zu librdkafka=%s", bootstrap,
			 route_table_count(rt), uplink_librdkafka_version());
		if (cfg->ndownlinks && !(dl = downlink_new(cfg, br, bootstrap, err, sizeof(err)))) {
			log_error("kafka start failed reason=\"%s\"", err);
			goto out;
		}
		/* The same bootstrap (the embedded cluster's too); sets the
		 * broker's state hooks, so before broker_start(). */
		if (cfg->state.store == CFG_STORE_KAFKA &&
		    !(st = state_new(cfg, br, bootstrap, err, sizeof(err)))) {
			log_error("state start failed reason=\"%s\"", err);
			goto out;
		}
		/* Cross-instance delivery: publishes and downlink records for
		 * devices on other instances (state_bus.c). */
		state_attach(st, up, dl);
	}
	/* Bound before the workers start so that a bad address fails cleanly. */
	if (cfg->has_metrics &&
	    !(http = http_server_new(cfg, br, up, err, sizeof(err)))) {
		log_error("metrics endpoint failed reason=\"%s\"", err);
		goto out;
	}
	if (broker_start(br) < 0)
		goto out;
	/* Consumers inject into the workers: only once those run. */
	if (dl && downlink_start(dl) < 0) {
		broker_stop(br);
		goto out;
	}
	/* Likewise the state's reader (kicks, restores) and inbox consumer
	 * (injects). Devices may connect before it caught up: readiness says
	 * not yet, and the sessions module holds or refuses their claims. */
	if (st && state_start(st) < 0) {
		log_error("state start failed reason=\"thread\"");
		downlink_stop(dl);
		broker_stop(br);
		goto out;
	}
	if (http && dl)
		http_server_set_hooks(http, &(struct metrics_hook){ downlink_metrics_render, dl },
				      &(struct status_hook){ downlink_status_json, dl });
	if (http && st) {
		http_server_set_hooks(http, &(struct metrics_hook){ state_metrics_render, st }, NULL);
		http_server_set_state(http, st);
	}
	if (http && http_server_start(http) == 0)
		log_info("metrics listening address=%s port=%d", cfg->metrics.address,
			 http_server_port(http));
	for (size_t i = 0; i < cfg->nlisteners; i++)
		log_info("listening address=%s port=%d workers=%d", cfg->listeners[i].address,
			 broker_listener_port(br, (int)i), broker_n_workers(br));
	log_info("kafkagate started version=%s config=%s", KG_VERSION, path);

	struct reload_ctx rl = { .path = path, .br = br, .up = up, .http = http, .boot = cfg,
				 .cur = cfg };
	wait_for_stop(&rl, st);
	/* First, while the workers still read the devices' acks that its grace
	 * period waits for; nothing is injected into stopped workers. */
	downlink_stop(dl);
	/* Likewise the state reader and inbox consumer (they apply retained
	 * messages, kick, restore and inject); the state producer stays: the
	 * broker's hooks still write while it parks its sessions below. */
	state_stop(st);
	http_server_free(http); /* its requests may wait for the workers: before they stop */
	http = NULL;
	if (up) {
		/* Stop taking publishes, let Kafka answer what is in flight so the
		 * devices get their acks, then close the connections. */
		broker_drain(br);
		int left = uplink_flush(up, rl.cur->kafka.flush_timeout * 1000);
		if (left > 0)
			log_warn("kafka flush timed out records=%d", left);
	}
	broker_stop(br);
	/* What the parked sessions hold goes to this instance's inbox, for
	 * the restarted instance (state.store = "kafka"; nothing without). */
	size_t kept = broker_state_persist(br);
	if (kept)
		log_info("state: %zu queued messages written to the inbox for the restart", kept);
	/* Every session parked (records queued): "down", flush, close. */
	state_free(st);
	st = NULL;
	reload_release(&rl, cfg);
	rc = 0;
out:
	if (br && rc != 0)
		log_error("start-up failed");
	http_server_free(http);
	if (st) {
		/* Start-up failed after state_new: its threads may run. */
		state_free(st);
	}
	uplink_free(up);
	broker_free(br);
	downlink_free(dl); /* after the workers settled every tracked message */
	kafka_embed_free(embed);
	log_info("kafkagate stopped");
	return rc;
}
