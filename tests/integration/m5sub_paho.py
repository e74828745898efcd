#!/usr/bin/env python3
"""m5sub_paho.py - Python paho-mqtt (MQTTv5) against a running gateway:
subscription options and identifiers as a real client library sees them.

Run by it_mqtt5_subscribe.c (test_paho_python) with the gateway's port.
Checks, each printed on one line:
  - two overlapping subscriptions with identifiers 5 and 6: one copy with
    both identifiers;
  - No Local: the subscriber's own publish does not come back through its
    No Local subscription; another client's does;
  - Retain As Published: RETAIN kept on a live retained publish;
  - user properties and content type forwarded in order;
  - the remaining Message Expiry Interval is forwarded (at most what was
    published).
Every wait is bounded; the whole run is limited by SIGALRM. Prints
"m5sub_paho: N passed, N failed".

Exit status: 0 all passed, 1 a check failed, 77 paho-mqtt 2.x is missing.
"""
import argparse
import signal
import sys
import threading

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions
except ImportError:
    print("m5sub_paho: paho-mqtt is not installed", file=sys.stderr)
    sys.exit(77)
if not hasattr(mqtt, "CallbackAPIVersion"):
    print("m5sub_paho: paho-mqtt 2.x needed", file=sys.stderr)
    sys.exit(77)

WAIT_S = 5
results = {"pass": 0, "fail": 0}


def check(ok, what):
    results["pass" if ok else "fail"] += 1
    print(("PASS " if ok else "FAIL ") + what, flush=True)


def prop(msg, name):
    """A property of a received message, or None when it is absent."""
    return getattr(msg.properties, name, None) if msg.properties else None


class Peer:
    def __init__(self, cid, port):
        self.msgs = []
        self.cond = threading.Condition()
        self.subacked = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid,
                             protocol=mqtt.MQTTv5)
        self.c.on_message = self.on_message
        self.c.on_subscribe = lambda *a: self.subacked.set()
        connected = threading.Event()
        self.c.on_connect = lambda *a: connected.set()
        self.c.connect("127.0.0.1", port, keepalive=30, clean_start=True)
        self.c.loop_start()
        if not connected.wait(WAIT_S):
            raise RuntimeError(cid + ": no CONNACK")

    def on_message(self, client, userdata, msg):
        with self.cond:
            self.msgs.append(msg)
            self.cond.notify_all()

    def subscribe(self, topic, subid, **opts):
        props = Properties(PacketTypes.SUBSCRIBE)
        props.SubscriptionIdentifier = subid
        self.subacked.clear()
        self.c.subscribe(topic, options=SubscribeOptions(**opts), properties=props)
        if not self.subacked.wait(WAIT_S):
            raise RuntimeError("no SUBACK for " + topic)

    def publish(self, topic, payload, props=None, retain=False):
        info = self.c.publish(topic, payload, qos=1, retain=retain, properties=props)
        info.wait_for_publish(WAIT_S)

    def take(self, payload):
        """The message with this payload, waiting for it; None if none came."""
        with self.cond:
            self.cond.wait_for(lambda: any(m.payload == payload for m in self.msgs), WAIT_S)
            for m in self.msgs:
                if m.payload == payload:
                    self.msgs.remove(m)
                    return m
        return None

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    signal.alarm(50)

    sub = Peer("m5py-sub", args.port)
    other = Peer("m5py-other", args.port)
    sub.subscribe("py5/a/+", 5, qos=1)
    sub.subscribe("py5/a/#", 6, qos=0)
    sub.subscribe("py5/nl", 7, qos=1, noLocal=True)
    sub.subscribe("py5/rap", 8, qos=1, retainAsPublished=True)

    other.publish("py5/a/x", b"overlap")
    m = sub.take(b"overlap")
    ids = sorted(prop(m, "SubscriptionIdentifier") or []) if m else None
    check(m is not None and ids == [5, 6], "overlapping subscriptions: one copy, ids %s" % ids)
    check(m is not None and m.qos == 1, "overlapping subscriptions: highest QoS")

    sub.publish("py5/nl", b"own")
    other.publish("py5/nl", b"theirs")
    m = sub.take(b"theirs")
    check(m is not None and prop(m, "SubscriptionIdentifier") == [7],
          "No Local: another client's message arrives with id 7")
    check(sub.take(b"own") is None, "No Local: own message not received")

    other.publish("py5/rap", b"kept", retain=True)
    m = sub.take(b"kept")
    check(m is not None and m.retain, "Retain As Published: RETAIN 1 kept")
    other.publish("py5/rap", b"", retain=True)

    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("k", "v1"), ("k", "v2"), ("a", "z")]
    props.ContentType = "text/plain"
    props.MessageExpiryInterval = 60
    other.publish("py5/a/y", b"props", props)
    m = sub.take(b"props")
    up = prop(m, "UserProperty") if m else None
    check(up == [("k", "v1"), ("k", "v2"), ("a", "z")], "user properties in order: %s" % up)
    check(m is not None and prop(m, "ContentType") == "text/plain", "content type forwarded")
    exp = prop(m, "MessageExpiryInterval") if m else None
    check(exp is not None and 58 <= exp <= 60, "message expiry forwarded: %s" % exp)

    sub.close()
    other.close()
    print("m5sub_paho: %d passed, %d failed" % (results["pass"], results["fail"]), flush=True)
    return 1 if results["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
