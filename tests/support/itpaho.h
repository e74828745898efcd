/*
 * itpaho.h - paho.mqtt.c (synchronous MQTTClient) helpers for the
 * integration tests: the "real MQTT client" side. Linked into the it_*
 * binaries only (the vectors runner and the benches do not link paho).
 * Helpers print one line to stderr on failure and return an error value;
 * the test asserts on it.
 */
#ifndef KG_ITPAHO_H
#define KG_ITPAHO_H

#include <MQTTClient.h>

/* Connects a clean-session client with id (and username, or NULL) to
 * 127.0.0.1:port, keepalive 30 s, 5 s connect timeout. Returns the client,
 * or NULL. */
MQTTClient itpaho_connect(int port, const char *id, const char *username);
/* Disconnects (1 s grace) and destroys; *cl becomes NULL. NULL ok. */
void itpaho_close(MQTTClient *cl);

#endif
