/* itpaho.c - see itpaho.h. */
#include <stdio.h>

#include "itpaho.h"

MQTTClient itpaho_connect(int port, const char *id, const char *username)
{
	MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;
	MQTTClient cl;
	char uri[64];
	int rc;

	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
	rc = MQTTClient_create(&cl, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
	if (rc != MQTTCLIENT_SUCCESS) {
		fprintf(stderr, "itpaho: create %s: rc %d\n", id, rc);
		return NULL;
	}
	o.keepAliveInterval = 30;
	o.cleansession = 1;
	o.connectTimeout = 5;
	o.username = username;
	rc = MQTTClient_connect(cl, &o);
	if (rc != MQTTCLIENT_SUCCESS) {
		fprintf(stderr, "itpaho: connect %s to port %d: rc %d\n", id, port, rc);
		MQTTClient_destroy(&cl);
		return NULL;
	}
	return cl;
}

void itpaho_close(MQTTClient *cl)
{
	if (!cl || !*cl)
		return;
	MQTTClient_disconnect(*cl, 1000);
	MQTTClient_destroy(cl);
	*cl = NULL;
}
