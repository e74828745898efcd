/* conn_model.c - the fake devices' model; see conn_model.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn_model.h"
#include "core/msg.h"
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

/* CONNECT as handle_connect() takes it: returns whether it is accepted
 * (a session is attached and CONNACK 0 follows, possibly after a takeover). */
static bool sent_connect(struct model *md, struct dev *d, const struct mqtt_connect *k)
{
	d->level = k->level;
	d->clean = k->clean;
	if (k->will)
		published_add(md, k->will_topic.p, k->will_topic.len, k->will_payload.p,
			      k->will_payload.len, k->will_qos);
	if (k->level == 5)
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
		const struct mqtt_publish *pub = &p.u.publish;
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

/* PUBACK (qos 1) or PUBREC (qos 2) for pid, at byte off of the stream. */
static void received_ack(struct dev *d, uint8_t qos, uint16_t pid, uint64_t off)
{
	struct rec *r = d->next_rec < d->n_recs ? d->recs[d->next_rec] : NULL;

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

static void received_publish(struct model *md, struct dev *d, const struct mqtt_publish *pub)
{
	bool known = false, matched = false;

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
		/* MQTT 3.1 has no session-present flag: a clean session 0 may
		 * have resumed one. */
		if (d->level == 3 && !d->clean && d->connack_rc == 0)
			d->present = true;
		return;
	}
	MODEL_CHECK(d->connack_rc == 0, "dev %d: %s after a refusing CONNACK", d->serial,
		    mqtt_type_name(p->type));
	const struct mqtt_ack *a = &p->u.ack;
	switch (p->type) {
	case MQTT_PUBLISH:
		received_publish(md, d, &p->u.publish);
		break;
	case MQTT_PUBACK:
		received_ack(d, 1, a->packet_id, off);
		break;
	case MQTT_PUBREC:
		received_ack(d, 2, a->packet_id, off);
		break;
	case MQTT_PUBREL:
		MODEL_CHECK(pid_has(&d->pubrec_sent, a->packet_id) || d->present,
			    "dev %d: PUBREL %u for nothing", d->serial, a->packet_id);
		owe(d, MQTT_PUBCOMP, a->packet_id);
		break;
	case MQTT_PUBCOMP:
		MODEL_CHECK(pid_has(&d->pubrel_sent, a->packet_id),
			    "dev %d: PUBCOMP %u without a PUBREL", d->serial, a->packet_id);
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
		for (uint32_t i = 0; i < sa->count; i++)
			MODEL_CHECK(sa->codes[i] == MQTT_SUBACK_FAILURE || sa->codes[i] == s->qos[i],
				    "dev %d: SUBACK grants %u for %u", d->serial, sa->codes[i],
				    s->qos[i]);
		break;
	}
	case MQTT_UNSUBACK:
		MODEL_CHECK(d->unsubacks < d->n_unsubs &&
			    d->unsubs[d->unsubacks].pid == a->packet_id,
			    "dev %d: UNSUBACK %u answers no UNSUBSCRIBE", d->serial, a->packet_id);
		d->unsubacks++;
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
		int rc = mqtt_decode(&f, d->level == 3 ? 3 : 4, &pkt);
		MODEL_CHECK(rc == MQTT_OK, "dev %d: the broker sent a %s that does not decode: %s",
			    d->serial, mqtt_type_name(f.type), mqtt_err_str(rc));
		if (md->trace)
			fprintf(stderr, "fuzz_conn: dev %d <- %s id %u\n", d->serial,
				mqtt_type_name(pkt.type), pkt.type == MQTT_PUBLISH ?
				pkt.u.publish.packet_id : pkt.u.ack.packet_id);
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
