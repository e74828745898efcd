/* conn_model.c - the fake devices' model; see conn_model.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn_model.h"
#include "core/msg.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"
#include "mqtt/topic.h"

void model_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("fuzz_conn: invariant violated: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

/* Grows *v (of *cap elements of size sz) to hold n + 1. Aborts on ENOMEM:
 * the fuzzer's own memory is not what is under test. */
static void grow(void *vp, size_t *cap, size_t n, size_t sz)
{
	void **v = vp;
	if (n < *cap)
		return;
	size_t c = *cap ? *cap * 2 : 8;
	void *p = realloc(*v, c * sz);
	if (!p)
		abort();
	*v = p;
	*cap = c;
}

#define PUSH(arr, n, cap, x) do { grow(&(arr), &(cap), (n), sizeof(*(arr))); (arr)[(n)++] = (x); } while (0)

static bool pid_has(const struct pidlist *l, uint16_t pid)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i] == pid)
			return true;
	return false;
}

static void pid_add(struct pidlist *l, uint16_t pid)
{
	if (!pid_has(l, pid))
		PUSH(l->v, l->n, l->cap, pid);
}

static void pid_del(struct pidlist *l, uint16_t pid)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i] == pid) {
			l->v[i] = l->v[--l->n];
			return;
		}
}

static bool same_msg(const struct msg *m, const uint8_t *topic, size_t tlen,
		     const uint8_t *payload, size_t plen)
{
	return m->topic_len == tlen && memcmp(m->topic, topic, tlen) == 0 &&
	       m->payload_len == plen && (plen == 0 || memcmp(m->payload, payload, plen) == 0);
}

void model_init(struct model *md, const struct model_limits *lim)
{
	memset(md, 0, sizeof(*md));
	md->lim = *lim;
	md->trace = getenv("FUZZ_CONN_LOG") != NULL;
}

static void sess_free(struct sess *s)
{
	for (size_t i = 0; i < s->n_filters; i++)
		free(s->filters[i].f);
	free(s->filters);
	free(s->qos2_ok.v);
	free(s->id);
	free(s);
}

static void subs_free(struct sent_sub *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].qos);
	free(v);
}

static void dev_free(struct dev *d)
{
	if (d->fd >= 0)
		close(d->fd);
	buf_release(&d->unsent);
	buf_release(&d->held);
	buf_release(&d->out);
	buf_release(&d->in);
	for (size_t i = 0; i < d->n_pubs; i++)
		msg_unref(d->pubs[i].m);
	free(d->pubs);
	subs_free(d->subs, d->n_subs);
	subs_free(d->unsubs, d->n_unsubs);
	free(d->pubrec_sent.v);
	free(d->pubrel_sent.v);
	free(d->recs);
	free(d->q2_in.v);
	free(d->q2_out.v);
	free(d->owed);
	for (size_t i = 0; i < d->n_alias_in; i++)
		free(d->alias_in[i].t);
	for (size_t i = 0; i < d->n_alias_out; i++)
		free(d->alias_out[i].t);
	free(d->alias_in);
	free(d->alias_out);
	free(d->assigned);
	if (d->s && d->s->id_len == 0)
		sess_free(d->s); /* a generated client id: the device's own */
	free(d);
}

void model_release(struct model *md)
{
	for (size_t i = 0; i < md->n_devs; i++)
		dev_free(md->devs[i]);
	free(md->devs);
	for (size_t i = 0; i < md->n_sess; i++)
		sess_free(md->sess[i]);
	free(md->sess);
	for (size_t i = 0; i < md->n_published; i++)
		msg_unref(md->published[i]);
	free(md->published);
	for (size_t i = 0; i < md->n_recs; i++) {
		msg_unref(md->recs[i]->m);
		free(md->recs[i]);
	}
	free(md->recs);
	memset(md, 0, sizeof(*md));
}

struct dev *model_dev_new(struct model *md, int fd, int worker)
{
	struct dev *d = calloc(1, sizeof(*d));
	if (!d)
		abort();
	d->serial = (int)md->n_devs;
	d->fd = fd;
	d->worker = worker;
	d->level = 4;
	PUSH(md->devs, md->n_devs, md->cap_devs, d);
	return d;
}

struct dev *model_dev_by_conn(struct model *md, uint64_t conn_id)
{
	for (size_t i = 0; i < md->n_devs; i++)
		if (md->devs[i]->conn_id == conn_id)
			return md->devs[i];
	return NULL;
}

static struct sess *sess_get(struct model *md, const uint8_t *id, uint16_t len)
{
	struct sess *s;
	if (len > 0)
		for (size_t i = 0; i < md->n_sess; i++) {
			s = md->sess[i];
			if (s->id_len == len && memcmp(s->id, id, len) == 0)
				return s;
		}
	s = calloc(1, sizeof(*s));
	if (!s || !(s->id = malloc((size_t)len + 1)))
		abort();
	memcpy(s->id, id, len);
	s->id[len] = '\0';
	s->id_len = len;
	if (len > 0)
		PUSH(md->sess, md->n_sess, md->cap_sess, s);
	return s;
}

static void sess_add_filter(struct sess *s, const uint8_t *f, uint16_t len)
{
	/* $share/NAME/FILTER delivers on FILTER (docs/mqtt5/shared.md). */
	if (len > 7 && memcmp(f, "$share/", 7) == 0) {
		const uint8_t *slash = memchr(f + 7, '/', len - 7u);
		if (slash) {
			len = (uint16_t)(len - (uint16_t)(slash + 1 - f));
			f = slash + 1;
		}
	}
	for (size_t i = 0; i < s->n_filters; i++)
		if (s->filters[i].len == len && memcmp(s->filters[i].f, f, len) == 0)
			return;
	struct filt x = { .f = malloc((size_t)len + 1), .len = len };
	if (!x.f)
		abort();
	memcpy(x.f, f, len);
	x.f[len] = '\0';
	PUSH(s->filters, s->n_filters, s->cap_filters, x);
}

static void published_add(struct model *md, const uint8_t *topic, size_t tlen,
			  const uint8_t *payload, size_t plen, uint8_t qos)
{
	for (size_t i = 0; i < md->n_published; i++)
		if (same_msg(md->published[i], topic, tlen, payload, plen))
			return;
	struct msg *m = msg_new((const char *)topic, tlen, payload, plen, qos, false);
	if (!m)
		abort();
	PUSH(md->published, md->n_published, md->cap_published, m);
}

/* Topic aliases [MQTT-3.3.2-7]: per connection and per direction (ours
 * toward the broker in alias_in, the broker's toward us in alias_out). */
static struct alias *alias_find(struct alias *v, size_t n, uint16_t a)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].n == a)
			return &v[i];
	return NULL;
}

static void alias_set(struct alias **v, size_t *n, size_t *cap, uint16_t a, const uint8_t *t,
		      uint16_t len)
{
	struct alias *x = alias_find(*v, *n, a);
	if (!x) {
		struct alias y = { a, NULL, 0 };
		PUSH(*v, *n, *cap, y);
		x = &(*v)[*n - 1];
	}
	free(x->t);
	if (!(x->t = malloc((size_t)len + 1)))
		abort();
	memcpy(x->t, t, len);
	x->t[len] = '\0';
	x->len = len;
}

const char *model_alias_topic(const struct dev *d, uint16_t alias, uint16_t *len)
{
	const struct alias *x = alias_find(d->alias_in, d->n_alias_in, alias);
	if (!x)
		return NULL;
	*len = x->len;
	return x->t;
}

uint32_t model_connack_size(const struct model *md, const struct dev *d)
{
	/* 2 fixed header, 2 flags and reason, 1 property length; Receive
	 * Maximum 3, Maximum Packet Size 5, Topic Alias Maximum 3, the three
	 * "available" flags 6; an assigned id "kg-<16 hex>-<8 hex>" 3 + 28. */
	return 2 + 2 + 1 + 3 + 5 + (md->lim.topic_alias_max ? 3 : 0) + 6 +
	       (d->s && d->s->id_len == 0 ? 31 : 0);
}

/* The Topic Alias Maximum d's CONNACK announces: a CONNACK over the
 * client's Maximum Packet Size leaves out the flags (6 bytes), then the
 * Topic Alias Maximum (absent = 0) (send.c since cd145f8; before it, no
 * CONNACK at all, and nothing d sends after matters). */
static uint32_t alias_in_max(const struct model *md, const struct dev *d)
{
	if (d->max_packet && d->max_packet < model_connack_size(md, d) - 6)
		return 0;
	return md->lim.topic_alias_max;
}

bool model_quota_may_overflow(const struct model *md, const struct dev *d)
{
	/* The broker's quota (client_ack_quota_used()) counts the acks it
	 * has not sent plus the QoS 2 ids it holds until PUBREL: at most the
	 * QoS 1/2 publishes it parsed minus the PUBACKs and failed PUBRECs it
	 * sent before its DISCONNECT (all of which we read before it). The
	 * PUBRELs that free a place are not subtracted: an upper bound. */
	return d->q12_pubs >= d->quota_freed + md->lim.max_inflight + 1;
}

/* limits.c's topic_check_limits() for PUBLISH and will topics. */
static bool topic_within_limits(const struct model *md, const uint8_t *t, uint16_t len)
{
	return topic_check_limits((const char *)t, len, md->lim.max_topic_length,
				  md->lim.max_topic_levels) == TOPIC_OK;
}

/* CONNECT as handle_connect() takes it: returns whether it is accepted
 * (a session is attached and CONNACK 0 follows, possibly after a takeover). */
static bool sent_connect(struct model *md, struct dev *d, const struct mqtt_connect *k)
{
	d->level = k->level;
	d->clean = k->clean;
	if (k->will)
		published_add(md, k->will_topic.p, k->will_topic.len, k->will_payload.p,
			      k->will_payload.len, k->will_qos);
	if (k->level == 5) {
		/* docs/mqtt5/connection.md: an Authentication Method is refused
		 * with 0x8C; an id over max_client_id_length with 0x85; an empty
		 * id is accepted with either Clean Start and gets an assigned one.
		 * Session Expiry (absent = 0) decides whether the session outlives
		 * the connection; the model keeps every session's filters anyway
		 * (a superset) and checks Session Present against Clean Start. */
		struct mqtt_prop pr;
		if (mqtt_props_find(&k->props, MQTT_P_AUTH_METHOD, NULL)) {
			d->expect_rc = MQTT_RC_BAD_AUTH_METHOD;
			return false;
		}
		if (k->client_id.len > md->lim.max_client_id_length) {
			d->expect_rc = MQTT_RC_CLIENT_ID_INVALID;
			return false;
		}
		if (k->will && !topic_within_limits(md, k->will_topic.p, k->will_topic.len)) {
			d->expect_rc = MQTT_RC_TOPIC_NAME_INVALID;
			return false;
		}
		d->has_expiry = mqtt_props_find(&k->props, MQTT_P_SESSION_EXPIRY, &pr);
		d->expiry = d->has_expiry ? pr.value : 0;
		if (mqtt_props_find(&k->props, MQTT_P_TOPIC_ALIAS_MAXIMUM, &pr))
			d->alias_out_max = pr.value;
		if (mqtt_props_find(&k->props, MQTT_P_MAXIMUM_PACKET_SIZE, &pr))
			d->max_packet = pr.value;
		d->s = sess_get(md, k->client_id.p, k->client_id.len);
		return true;
	}
	/* A will topic over the limits: closed without CONNACK (MQTT-3.2.2-6). */
	if (k->will && !topic_within_limits(md, k->will_topic.p, k->will_topic.len))
		return false;
	if (k->level == 3 && (k->client_id.len == 0 || k->client_id.len > 23))
		return false;
	if (k->client_id.len == 0 && !k->clean)
		return false;
	d->s = sess_get(md, k->client_id.p, k->client_id.len);
	return true;
}

static void sent_subscribe(struct dev *d, const struct mqtt_subscribe *sub, bool unsub)
{
	struct mqtt_topic_iter it;
	struct mqtt_str f;
	uint8_t opts;
	struct sent_sub s = { .pid = sub->packet_id, .count = sub->count };
	size_t i = 0;

	if (!unsub && !(s.qos = malloc(sub->count)))
		abort();
	mqtt_topics_begin(sub, &it);
	while (mqtt_topics_next(&it, &f, &opts)) {
		if (!unsub) {
			s.qos[i++] = opts & 3;
			sess_add_filter(d->s, f.p, f.len);
		}
	}
	if (unsub)
		PUSH(d->unsubs, d->n_unsubs, d->cap_unsubs, s);
	else
		PUSH(d->subs, d->n_subs, d->cap_subs, s);
}

/* We wrote an acknowledgement: of something received, or an odd one. */
static void answer(struct dev *d, uint8_t type, uint16_t pid)
{
	for (size_t i = 0; i < d->n_owed; i++)
		if (!d->owed[i].answered && d->owed[i].type == type && d->owed[i].pid == pid) {
			d->owed[i].answered = true;
			return;
		}
	d->odd_ack = true;
}

/* A level-5 PUBLISH of ours as handle_publish() takes it (pub5_scan,
 * pub5_topic): false when the broker closes on it. Resolves a Topic Alias
 * into pub->topic. */
static bool sent_publish5(struct model *md, struct dev *d, struct mqtt_publish *pub)
{
	struct mqtt_prop pr;
	uint16_t alias = 0;

	/* [MQTT-3.3.4-6]: a client never sends a Subscription Identifier (0x82). */
	if (mqtt_props_find(&pub->props, MQTT_P_SUBSCRIPTION_ID, NULL))
		return false;
	if (mqtt_props_find(&pub->props, MQTT_P_TOPIC_ALIAS, &pr))
		alias = (uint16_t)pr.value;
	if (alias > alias_in_max(md, d))
		return false; /* 0x94 [MQTT-3.3.2-9] */
	if (pub->topic.len > 0) {
		if (alias)
			alias_set(&d->alias_in, &d->n_alias_in, &d->cap_alias_in, alias,
				  pub->topic.p, pub->topic.len);
		return true;
	}
	const struct alias *x = alias ? alias_find(d->alias_in, d->n_alias_in, alias) : NULL;
	if (!x)
		return false; /* empty topic without a known alias: 0x82 */
	pub->topic = (struct mqtt_str){ (const uint8_t *)x->t, x->len };
	return true;
}

/* One whole frame of ours, as client_process() and dispatch_packet() take it.
 * Returns false when the broker closes on it (nothing after it counts). */
static bool sent_frame(struct model *md, struct dev *d, const struct mqtt_frame *f)
{
	struct mqtt_packet p;
	bool first = d->n_frames++ == 0;

	if (first)
		d->first_type = f->type;
	if (md->trace)
		fprintf(stderr, "fuzz_conn: dev %d -> %s\n", d->serial, mqtt_type_name(f->type));
	if (mqtt_decode(f, d->level, &p) != MQTT_OK)
		return false;
	if (first != (p.type == MQTT_CONNECT))
		return false; /* first packet not CONNECT, or a second CONNECT */
	switch (p.type) {
	case MQTT_CONNECT:
		return d->connect_ok = sent_connect(md, d, &p.u.connect);
	case MQTT_PUBLISH: {
		struct mqtt_publish pv = p.u.publish;
		const struct mqtt_publish *pub = &pv;
		if (d->level == 5 && !sent_publish5(md, d, &pv))
			return false;
		/* limits_check_publish(): closes (level 5: DISCONNECT 0x90). */
		if (!topic_within_limits(md, pv.topic.p, pv.topic.len))
			return false;
		if (pub->qos > 0)
			d->q12_pubs++;
		struct msg *m = msg_new((const char *)pub->topic.p, pub->topic.len, pub->payload,
					pub->payload_len, pub->qos, pub->retain);
		if (!m)
			abort();
		struct sent_pub sp = { .pid = pub->packet_id, .qos = pub->qos, .m = m };
		PUSH(d->pubs, d->n_pubs, d->cap_pubs, sp);
		published_add(md, pub->topic.p, pub->topic.len, pub->payload, pub->payload_len,
			      pub->qos);
		return true;
	}
	case MQTT_PUBACK:
	case MQTT_PUBCOMP:
		answer(d, p.type, p.u.ack.packet_id);
		return true;
	case MQTT_PUBREC:
		answer(d, p.type, p.u.ack.packet_id);
		pid_add(&d->pubrec_sent, p.u.ack.packet_id);
		return true;
	case MQTT_PUBREL:
		pid_add(&d->pubrel_sent, p.u.ack.packet_id);
		return true;
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		sent_subscribe(d, &p.u.sub, p.type == MQTT_UNSUBSCRIBE);
		return true;
	case MQTT_PINGREQ:
		d->pingreqs++;
		return true;
	default:
		return false; /* DISCONNECT, or a type a server never receives */
	}
}

void model_wrote(struct model *md, struct dev *d, const uint8_t *p, size_t n)
{
	if (d->out_dead || n == 0)
		return;
	if (buf_append(&d->out, p, n) < 0)
		abort();
	while (buf_used(&d->out) > 0) {
		struct mqtt_frame f;
		uint32_t max = md->lim.max_packet_size;
		/* The CONNECT cap holds for the first packet only. */
		if (d->n_frames == 0 && md->lim.max_connect_size < max)
			max = md->lim.max_connect_size;
		int r = mqtt_frame_parse(buf_head(&d->out), buf_used(&d->out), max, &f);
		if (r == 0)
			break;
		if (r < 0 || !sent_frame(md, d, &f)) {
			d->out_dead = true;
			buf_release(&d->out);
			return;
		}
		buf_consume(&d->out, (size_t)r);
	}
}

static void owe(struct dev *d, uint8_t type, uint16_t pid)
{
	struct owed o = { type, pid, false };
	PUSH(d->owed, d->n_owed, d->cap_owed, o);
}

bool model_owed_next(struct dev *d, struct owed *o)
{
	for (size_t i = 0; i < d->n_owed; i++)
		if (!d->owed[i].answered) {
			*o = d->owed[i];
			return true;
		}
	return false;
}

static bool pid_candidate(const struct dev *d, const struct rec *r, uint16_t pid)
{
	for (size_t i = 0; i < d->n_pubs; i++) {
		const struct sent_pub *sp = &d->pubs[i];
		if (sp->pid == pid && sp->qos == r->qos &&
		    same_msg(sp->m, (const uint8_t *)r->m->topic, r->m->topic_len, r->m->payload,
			     r->m->payload_len))
			return true;
	}
	return false;
}

bool model_dev_published(const struct dev *d, const struct msg *m)
{
	for (size_t i = 0; i < d->n_pubs; i++) {
		const struct sent_pub *sp = &d->pubs[i];
		if (sp->qos == m->qos &&
		    same_msg(sp->m, (const uint8_t *)m->topic, m->topic_len, m->payload,
			     m->payload_len))
			return true;
	}
	return false;
}

static const char *rec_state_name(const struct rec *r)
{
	static const char *const names[] = { "pending", "ok", "failed" };
	return r ? names[r->state] : "none";
}

/* PUBACK (qos 1) or PUBREC (qos 2) for pid, at byte off of the stream,
 * with reason code rc (0 below level 5). */
static void received_ack(struct dev *d, uint8_t qos, uint16_t pid, uint8_t rc, uint64_t off)
{
	struct rec *r = d->next_rec < d->n_recs ? d->recs[d->next_rec] : NULL;

	/* Level 5 (docs/mqtt5/publish.md, client_ack.c): a delivery Kafka
	 * failed is answered in its turn with 0x80 and the connection stays;
	 * a failed PUBREC ends the QoS 2 exchange (no id held, 4.3.3). Any
	 * other answer below carries 0x00 (0x10 is never sent, 0x97 only with
	 * mqtt5.reject_when_busy, which the fuzz config leaves off). */
	if (d->level == 5 && r && r->state == REC_FAILED && r->qos == qos && r->pid == pid &&
	    off >= r->after) {
		MODEL_CHECK(rc == MQTT_RC_UNSPECIFIED, "dev %d: %s id %u for a failed delivery "
			    "carries 0x%02x, not 0x80", d->serial, qos == 1 ? "PUBACK" : "PUBREC",
			    pid, rc);
		r->acked = true;
		d->next_rec++;
		d->quota_freed++;
		return;
	}
	MODEL_CHECK(rc == MQTT_RC_SUCCESS, "dev %d: %s id %u with reason 0x%02x (next sink "
		    "record: %s)", d->serial, qos == 1 ? "PUBACK" : "PUBREC", pid, rc,
		    rec_state_name(r));
	if (qos == 1)
		d->quota_freed++;

	/* The session holds pid (we saw its PUBREC, not yet its PUBCOMP): this
	 * answers a resend. (No publish reaches the sink with an id the session
	 * holds, and none is answered from the session while one with its id
	 * waits for the sink; a PUBREC sent before the record existed is not
	 * its answer either: the cases cannot be confused.) */
	if (qos == 2 && pid_has(&d->q2_in, pid))
		return;
	if (r && r->state == REC_OK && r->qos == qos && r->pid == pid && off >= r->after) {
		r->acked = true;
		d->next_rec++;
		if (qos == 2) {
			pid_add(&d->q2_in, pid);
			pid_del(&d->q2_out, pid);
		}
		return;
	}
	/* A resend answered from QoS 2 ids the session held when this
	 * connection took it over (lenient: any id completed OK before). */
	if (qos == 2 && !pid_has(&d->q2_out, pid) && d->present && pid_has(&d->s->qos2_ok, pid)) {
		pid_add(&d->q2_in, pid);
		return;
	}
	model_fail("dev %d: %s id %u is not the answer to a successful delivery "
		   "(next sink record: %s, qos %u, seq %u)", d->serial,
		   qos == 1 ? "PUBACK" : "PUBREC", pid, rec_state_name(r), r ? r->qos : 0,
		   r ? r->seq : 0);
}

static void received_publish(struct model *md, struct dev *d, const struct mqtt_publish *in)
{
	bool known = false, matched = false;
	struct mqtt_publish pv = *in;
	const struct mqtt_publish *pub = &pv;
	struct mqtt_prop pr;

	/* The broker's Topic Aliases (alias_out.c), within the maximum we
	 * announced [MQTT-3.3.2-8]; an empty topic uses one it set before. */
	if (d->level == 5) {
		MODEL_CHECK(!mqtt_props_find(&in->props, MQTT_P_TOPIC_ALIAS, &pr) ||
			    (pr.value >= 1 && pr.value <= d->alias_out_max),
			    "dev %d: PUBLISH with Topic Alias over the client's maximum", d->serial);
		uint16_t alias = mqtt_props_find(&in->props, MQTT_P_TOPIC_ALIAS, &pr) ?
				 (uint16_t)pr.value : 0;
		if (in->topic.len > 0 && alias) {
			alias_set(&d->alias_out, &d->n_alias_out, &d->cap_alias_out, alias,
				  in->topic.p, in->topic.len);
		} else if (in->topic.len == 0) {
			const struct alias *x = alias_find(d->alias_out, d->n_alias_out, alias);
			MODEL_CHECK(alias && x, "dev %d: PUBLISH with an empty topic and alias %u "
				    "never set", d->serial, alias);
			pv.topic = (struct mqtt_str){ (const uint8_t *)x->t, x->len };
		}
	}

	for (size_t i = 0; i < md->n_published && !known; i++)
		known = same_msg(md->published[i], pub->topic.p, pub->topic.len, pub->payload,
				 pub->payload_len);
	MODEL_CHECK(known, "dev %d: PUBLISH on \"%.*s\" of a message nobody published", d->serial,
		    (int)pub->topic.len, (const char *)pub->topic.p);
	for (size_t i = 0; i < d->s->n_filters && !matched; i++)
		matched = topic_matches(d->s->filters[i].f, d->s->filters[i].len,
					(const char *)pub->topic.p, pub->topic.len);
	MODEL_CHECK(matched, "dev %d: PUBLISH on \"%.*s\", which no filter of \"%s\" matches",
		    d->serial, (int)pub->topic.len, (const char *)pub->topic.p, d->s->id);
	if (pub->qos > 0)
		owe(d, pub->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, pub->packet_id);
}

/* A level-5 CONNACK: the reason code predicted (sent_connect()) and the
 * properties docs/mqtt5/connection.md lists. */
static void received_connack5(struct model *md, struct dev *d, const struct mqtt_connack *ca)
{
	struct mqtt_prop pr;
	bool assigned = mqtt_props_find(&ca->props, MQTT_P_ASSIGNED_CLIENT_ID, &pr);

	if (!d->connect_ok) {
		MODEL_CHECK(ca->rc == d->expect_rc, "dev %d: CONNACK 0x%02x, the model expects 0x%02x",
			    d->serial, ca->rc, d->expect_rc);
		return;
	}
	MODEL_CHECK(ca->rc == MQTT_RC_SUCCESS, "dev %d: CONNACK 0x%02x refuses a valid CONNECT",
		    d->serial, ca->rc);
	/* A new id has no session [MQTT-3.2.2-2]; nor has one that no other
	 * connection ever attached. */
	bool other = false;
	for (size_t i = 0; i < md->n_devs && !other; i++)
		other = md->devs[i] != d && md->devs[i]->s == d->s && md->devs[i]->connect_ok;
	MODEL_CHECK(!ca->session_present || (d->s->id_len > 0 && other),
		    "dev %d: session present for a session that cannot exist", d->serial);
	MODEL_CHECK(assigned == (d->s->id_len == 0),
		    "dev %d: Assigned Client Identifier %s", d->serial,
		    assigned ? "for a client that sent an id" : "missing for an empty id");
	if (assigned) {
		MODEL_CHECK(pr.str.len > 3 && memcmp(pr.str.p, "kg-", 3) == 0,
			    "dev %d: assigned id \"%.*s\"", d->serial, (int)pr.str.len,
			    (const char *)pr.str.p);
		free(d->assigned);
		if (!(d->assigned = malloc((size_t)pr.str.len + 1)))
			abort();
		memcpy(d->assigned, pr.str.p, pr.str.len);
		d->assigned[pr.str.len] = '\0';
	}
	MODEL_CHECK(mqtt_props_find(&ca->props, MQTT_P_RECEIVE_MAXIMUM, &pr) &&
		    pr.value == md->lim.max_inflight,
		    "dev %d: CONNACK Receive Maximum is not max_inflight", d->serial);
	uint32_t am = alias_in_max(md, d);
	MODEL_CHECK(mqtt_props_find(&ca->props, MQTT_P_TOPIC_ALIAS_MAXIMUM, &pr) == (am > 0) &&
		    (!am || pr.value == am),
		    "dev %d: CONNACK Topic Alias Maximum is not topic_alias_maximum", d->serial);
	MODEL_CHECK(!d->max_packet || ca->props.len + 5 <= d->max_packet,
		    "dev %d: CONNACK over the client's Maximum Packet Size", d->serial);
	/* max_session_expiry is unlimited and max_keepalive 0 in the fuzz config. */
	MODEL_CHECK(!mqtt_props_find(&ca->props, MQTT_P_SESSION_EXPIRY, NULL) &&
		    !mqtt_props_find(&ca->props, MQTT_P_SERVER_KEEP_ALIVE, NULL),
		    "dev %d: CONNACK changes a Session Expiry or Keep Alive nothing caps", d->serial);
}

static void received_packet(struct model *md, struct dev *d, const struct mqtt_packet *p,
			    uint64_t off)
{
	if (!d->connack) {
		MODEL_CHECK(p->type == MQTT_CONNACK, "dev %d: first packet from the broker is %s",
			    d->serial, mqtt_type_name(p->type));
		MODEL_CHECK(d->first_type == MQTT_CONNECT, "dev %d: CONNACK without a CONNECT",
			    d->serial);
		d->connack = true;
		d->connack_rc = p->u.connack.rc;
		d->present = p->u.connack.session_present;
		if (d->connack_rc == 0) {
			MODEL_CHECK(d->connect_ok, "dev %d: CONNECT accepted that must be refused",
				    d->serial);
			MODEL_CHECK(!d->clean || !d->present,
				    "dev %d: session present with clean session 1", d->serial);
		} else {
			MODEL_CHECK(!d->present, "dev %d: session present in a refusal", d->serial);
		}
		if (d->level == 5)
			received_connack5(md, d, &p->u.connack);
		/* MQTT 3.1 has no session-present flag: a clean session 0 may
		 * have resumed one. */
		if (d->level == 3 && !d->clean && d->connack_rc == 0)
			d->present = true;
		return;
	}
	MODEL_CHECK(d->connack_rc == 0, "dev %d: %s after a refusing CONNACK", d->serial,
		    mqtt_type_name(p->type));
	/* [MQTT-3.14.4-1]: after a DISCONNECT the server sends nothing. */
	MODEL_CHECK(!d->disc, "dev %d: %s after the broker's DISCONNECT", d->serial,
		    mqtt_type_name(p->type));
	const struct mqtt_ack *a = &p->u.ack;
	switch (p->type) {
	case MQTT_PUBLISH:
		received_publish(md, d, &p->u.publish);
		break;
	case MQTT_PUBACK:
		received_ack(d, 1, a->packet_id, a->reason, off);
		break;
	case MQTT_PUBREC:
		received_ack(d, 2, a->packet_id, a->reason, off);
		break;
	case MQTT_PUBREL:
		MODEL_CHECK(pid_has(&d->pubrec_sent, a->packet_id) || d->present,
			    "dev %d: PUBREL %u for nothing", d->serial, a->packet_id);
		MODEL_CHECK(a->reason == MQTT_RC_SUCCESS, "dev %d: PUBREL %u with reason 0x%02x",
			    d->serial, a->packet_id, a->reason);
		owe(d, MQTT_PUBCOMP, a->packet_id);
		break;
	case MQTT_PUBCOMP:
		MODEL_CHECK(pid_has(&d->pubrel_sent, a->packet_id),
			    "dev %d: PUBCOMP %u without a PUBREL", d->serial, a->packet_id);
		/* 0x92: the id was not held (5.0 3.7.2.1). */
		MODEL_CHECK(a->reason == MQTT_RC_SUCCESS || a->reason == MQTT_RC_PACKET_ID_NOT_FOUND,
			    "dev %d: PUBCOMP %u with reason 0x%02x", d->serial, a->packet_id,
			    a->reason);
		pid_del(&d->q2_in, a->packet_id);
		pid_add(&d->q2_out, a->packet_id);
		break;
	case MQTT_SUBACK: {
		const struct mqtt_suback *sa = &p->u.suback;
		MODEL_CHECK(d->subacks < d->n_subs, "dev %d: SUBACK without a SUBSCRIBE", d->serial);
		const struct sent_sub *s = &d->subs[d->subacks++];
		MODEL_CHECK(sa->packet_id == s->pid && sa->count == s->count,
			    "dev %d: SUBACK %u (%u codes) answers SUBSCRIBE %u (%u filters)",
			    d->serial, sa->packet_id, sa->count, s->pid, s->count);
		/* Level 5: any failure reason (>= 0x80: 0x87, 0x8F, 0x9E, ...). */
		for (uint32_t i = 0; i < sa->count; i++)
			MODEL_CHECK(sa->codes[i] == MQTT_SUBACK_FAILURE || sa->codes[i] == s->qos[i] ||
				    (d->level == 5 && sa->codes[i] >= 0x80),
				    "dev %d: SUBACK grants %u for %u", d->serial, sa->codes[i],
				    s->qos[i]);
		break;
	}
	case MQTT_UNSUBACK: {
		uint16_t pid = d->level == 5 ? p->u.suback.packet_id : a->packet_id;
		MODEL_CHECK(d->unsubacks < d->n_unsubs && d->unsubs[d->unsubacks].pid == pid,
			    "dev %d: UNSUBACK %u answers no UNSUBSCRIBE", d->serial, pid);
		if (d->level == 5) {
			const struct mqtt_suback *sa = &p->u.suback;
			MODEL_CHECK(sa->count == d->unsubs[d->unsubacks].count,
				    "dev %d: UNSUBACK %u with %u codes for %u filters", d->serial,
				    pid, sa->count, d->unsubs[d->unsubacks].count);
			for (uint32_t i = 0; i < sa->count; i++)
				MODEL_CHECK(sa->codes[i] == MQTT_RC_SUCCESS ||
					    sa->codes[i] == MQTT_RC_NO_SUBSCRIPTION_EXISTED ||
					    sa->codes[i] >= 0x80,
					    "dev %d: UNSUBACK %u code 0x%02x", d->serial, pid,
					    sa->codes[i]);
		}
		d->unsubacks++;
		break;
	}
	case MQTT_DISCONNECT:
		/* Level 5, after CONNACK only; the reason is checked against
		 * the close it announces (fuzz_conn.c's check_close()). */
		MODEL_CHECK(d->level == 5, "dev %d: DISCONNECT at level %u", d->serial, d->level);
		MODEL_CHECK(p->u.disconnect.reason >= 0x80,
			    "dev %d: server DISCONNECT with reason 0x%02x", d->serial,
			    p->u.disconnect.reason);
		d->disc = true;
		d->disc_rc = p->u.disconnect.reason;
		break;
	case MQTT_PINGRESP:
		MODEL_CHECK(++d->pingresps <= d->pingreqs, "dev %d: PINGRESP without PINGREQ",
			    d->serial);
		break;
	default:
		model_fail("dev %d: the broker sent %s", d->serial, mqtt_type_name(p->type));
	}
}

void model_read(struct model *md, struct dev *d, const uint8_t *p, size_t n)
{
	if (buf_append(&d->in, p, n) < 0)
		abort();
	d->rx_bytes += n;
	while (buf_used(&d->in) > 0) {
		struct mqtt_frame f;
		struct mqtt_packet pkt;
		int r = mqtt_frame_parse(buf_head(&d->in), buf_used(&d->in), MQTT_MAX_REMAINING, &f);
		if (r == 0)
			break;
		MODEL_CHECK(r > 0, "dev %d: the broker sent a malformed frame", d->serial);
		/* At the device's level: 5.0 packets carry reason codes and
		 * properties that the 3.1.1 decoder would refuse. */
		int rc = mqtt_decode(&f, d->level == 5 ? 5 : d->level == 3 ? 3 : 4, &pkt);
		MODEL_CHECK(rc == MQTT_OK, "dev %d: the broker sent a %s that does not decode: %s",
			    d->serial, mqtt_type_name(f.type), mqtt_err_str(rc));
		if (md->trace)
			fprintf(stderr, "fuzz_conn: dev %d <- %s id %u rc 0x%02x\n", d->serial,
				mqtt_type_name(pkt.type), pkt.type == MQTT_PUBLISH ?
				pkt.u.publish.packet_id : pkt.u.ack.packet_id,
				pkt.type == MQTT_CONNACK ? pkt.u.connack.rc :
				pkt.type == MQTT_DISCONNECT ? pkt.u.disconnect.reason :
				pkt.type >= MQTT_PUBACK && pkt.type <= MQTT_PUBCOMP ?
				pkt.u.ack.reason : 0);
		received_packet(md, d, &pkt, d->rx_bytes - buf_used(&d->in));
		buf_consume(&d->in, (size_t)r);
	}
}

void model_eof(struct model *md, struct dev *d)
{
	(void)md;
	d->eof = true;
	if (md->trace)
		fprintf(stderr, "fuzz_conn: dev %d <- close\n", d->serial);
	MODEL_CHECK(buf_used(&d->in) == 0, "dev %d: the broker's close cut a packet (%zu bytes)",
		    d->serial, buf_used(&d->in));
}

struct rec *model_rec_new(struct model *md, struct dev *d, uint32_t seq, uint16_t pid,
			  uint64_t after, struct msg *m, enum rec_state st)
{
	struct rec *r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	r->d = d;
	r->seq = seq;
	r->pid = pid;
	r->after = after;
	r->qos = m->qos;
	r->m = msg_ref(m);
	r->state = REC_PENDING;
	MODEL_CHECK(pid_candidate(d, r, pid), "dev %d: sink seq %u waits with packet id %u, "
		    "which no PUBLISH of this message had", d->serial, seq, pid);
	PUSH(md->recs, md->n_recs, md->cap_recs, r);
	PUSH(d->recs, d->n_recs, d->cap_recs, r);
	if (md->trace)
		fprintf(stderr, "fuzz_conn: dev %d sink seq %u id %u qos %u \"%s\"\n", d->serial,
			seq, pid, m->qos, m->topic);
	if (st != REC_PENDING)
		model_rec_complete(md, r, st == REC_OK);
	return r;
}

void model_rec_complete(struct model *md, struct rec *r, bool ok)
{
	MODEL_CHECK(r->state == REC_PENDING, "sink record completed twice");
	if (md->trace)
		fprintf(stderr, "fuzz_conn: dev %d sink seq %u %s\n", r->d->serial, r->seq,
			ok ? "ok" : "failed");
	r->state = ok ? REC_OK : REC_FAILED;
	/* The session may hold this QoS 2 id from now on. */
	if (ok && r->qos == 2 && r->d->s)
		pid_add(&r->d->s->qos2_ok, r->pid);
}
