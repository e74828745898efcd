#!/usr/bin/env python3
"""ws_paho.py - Python paho-mqtt over WebSocket against a running gateway.

Run by it_ws.c (test_paho_python) with the ports of a ws:// and a wss://
listener (path /mqtt) and the CA of the wss listener's certificate. For each
transport: a subscriber and a publisher connect with transport="websockets",
a small QoS 1 message and a 200 kB QoS 1 payload make the round trip and are
compared byte for byte. Every wait is bounded; the whole run is limited by
SIGALRM. Prints one line per check and "ws_paho: N passed, N failed".

Exit status: 0 all passed, 1 a check failed, 77 paho-mqtt is not installed.
Works with paho-mqtt 1.6 (Debian's python3-paho-mqtt) and 2.x (PyPI).
"""
import argparse
import os
import signal
import ssl
import sys
import threading
import time

try:
    import paho.mqtt.client as mqtt
except ImportError:
    print("ws_paho: paho-mqtt is not installed (pip install paho-mqtt)", file=sys.stderr)
    sys.exit(77)

WAIT_S = 10


def new_client(client_id):
    """A clean-session 3.1.1 client over WebSocket, on either paho API."""
    kw = dict(client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311,
              transport="websockets")
    if hasattr(mqtt, "CallbackAPIVersion"):
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kw)
    return mqtt.Client(**kw)


class Peer:
    """One connected client and what it received."""

    def __init__(self, client_id, port, ca):
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.got = []
        self.got_cv = threading.Condition()
        self.rc = None
        self.c = new_client(client_id)
        self.c.ws_set_options(path="/mqtt")
        if ca:
            self.c.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.c.on_connect = self.on_connect
        self.c.on_subscribe = self.on_subscribe
        self.c.on_message = self.on_message
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        if not self.connected.wait(WAIT_S):
            raise RuntimeError("%s: no CONNACK within %d s" % (client_id, WAIT_S))
        if self.rc != 0:
            raise RuntimeError("%s: CONNACK %s" % (client_id, self.rc))

    def on_connect(self, client, userdata, flags, rc, *rest):
        self.rc = rc if isinstance(rc, int) else getattr(rc, "value", rc)
        self.connected.set()

    def on_subscribe(self, client, userdata, mid, *rest):
        self.subscribed.set()

    def on_message(self, client, userdata, msg):
        with self.got_cv:
            self.got.append((msg.topic, bytes(msg.payload), msg.qos))
            self.got_cv.notify_all()

    def subscribe(self, topic, qos):
        self.c.subscribe(topic, qos)
        if not self.subscribed.wait(WAIT_S):
            raise RuntimeError("no SUBACK within %d s" % WAIT_S)

    def publish(self, topic, payload, qos):
        info = self.c.publish(topic, payload, qos)
        info.wait_for_publish(WAIT_S)
        if not info.is_published():
            raise RuntimeError("PUBACK for %s not within %d s" % (topic, WAIT_S))

    def wait_messages(self, n):
        end = time.monotonic() + WAIT_S
        with self.got_cv:
            while len(self.got) < n and time.monotonic() < end:
                self.got_cv.wait(end - time.monotonic())
            return list(self.got)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def round_trip(name, port, ca):
    """Small and 200 kB QoS 1 messages from one client to another."""
    big = os.urandom(200 * 1024)
    sub = Peer("py-%s-sub" % name, port, ca)
    pub = Peer("py-%s-pub" % name, port, ca)
    try:
        sub.subscribe("py/%s/#" % name, 1)
        pub.publish("py/%s/small" % name, b"hello over " + name.encode(), 1)
        pub.publish("py/%s/big" % name, big, 1)
        got = sub.wait_messages(2)
        want = [("py/%s/small" % name, b"hello over " + name.encode(), 1),
                ("py/%s/big" % name, big, 1)]
        if got != want:
            raise RuntimeError("%s: got %s" % (name, [(t, len(p), q) for t, p, q in got]))
    finally:
        pub.close()
        sub.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws-port", type=int, required=True)
    ap.add_argument("--wss-port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    a = ap.parse_args()
    signal.alarm(50)
    import paho.mqtt
    print("ws_paho: paho-mqtt %s, python %s" % (getattr(paho.mqtt, "__version__", "?"),
                                                sys.version.split()[0]))
    passed = failed = 0
    for name, port, ca in (("ws", a.ws_port, None), ("wss", a.wss_port, a.ca)):
        try:
            round_trip(name, port, ca)
            print("ws_paho: %s: small and 200 kB QoS 1 round trip: ok" % name)
            passed += 1
        except Exception as e:  # noqa: BLE001 - any failure is reported the same way
            print("ws_paho: %s: FAILED: %s" % (name, e))
            failed += 1
    print("ws_paho: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
