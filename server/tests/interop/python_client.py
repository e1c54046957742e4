"""python-socketio (sync client) against chatwire: connect to /chat with a dev token, join,
send with an ack, and receive on a second client, over the transport given on the command line.

Usage: python python_client.py polling|websocket|default
Env: BASE_URL, CONVERSATION_ID, A_ID, A_TYPE, B_ID, B_TYPE.
Prints "ok <check>" lines, then "PASS" (exit 0) or "FAIL <reason>" (exit 1).
"""

import os
import queue
import sys
import threading
import time

import socketio

STEP = float(os.environ.get("STEP_TIMEOUT_MS", "5000")) / 1000
NS = "/chat"


def fail(reason):
    print(f"FAIL {reason}", flush=True)
    os._exit(1)


def check(cond, what, detail=None):
    if not cond:
        fail(what if detail is None else f"{what}: {detail!r}")
    print(f"ok {what}", flush=True)


def env(name):
    value = os.environ.get(name)
    if not value:
        fail(f"environment variable {name} is not set")
    return value


class Client:
    """A socketio.Client whose /chat events land in per-event queues."""

    EVENTS = ["connection:success", "conversation:joined", "message:sent", "message:new",
              "message:error", "typing:start"]

    def __init__(self, name):
        self.name = name
        self.sio = socketio.Client(reconnection=False)
        self.queues = {e: queue.Queue() for e in self.EVENTS}
        for event in self.EVENTS:
            self.sio.on(event, self._put(event), namespace=NS)
        self.errors = queue.Queue()
        self.sio.on("connect_error", lambda data: self.errors.put(data), namespace=NS)

    def _put(self, event):
        # With connection state recovery on, recoverable events carry the offset as one more
        # argument after the payload (as Socket.IO servers do): the payload is the first.
        return lambda data=None, *_offset: self.queues[event].put(data)

    def wait(self, event):
        try:
            return self.queues[event].get(timeout=STEP)
        except queue.Empty:
            fail(f"{self.name}: timed out waiting for {event}")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "default"
    transports = {"polling": ["polling"], "websocket": ["websocket"], "default": None}
    if mode not in transports:
        fail(f"unknown mode {mode}")
    base = env("BASE_URL")
    conversation_id = int(env("CONVERSATION_ID"))
    a_id, a_type, b_id, b_type = int(env("A_ID")), env("A_TYPE"), int(env("B_ID")), env("B_TYPE")
    threading.Timer(30, lambda: fail("whole run exceeded 30 s")).start()

    a, b = Client("A"), Client("B")
    for c, uid, utype in [(a, a_id, a_type), (b, b_id, b_type)]:
        c.sio.connect(base, namespaces=[NS], auth={"token": f"{uid}:{utype}"},
                      transports=transports[mode], wait_timeout=STEP)
        hello = c.wait("connection:success")
        check(hello["userId"] == uid and hello["userType"] == utype
              and hello["socketId"] == c.sio.get_sid(NS),
              f"{c.name} connection:success {{userId, userType, socketId}}", hello)
        expected = "polling" if mode == "polling" else "websocket"
        if mode == "default":
            # python-engineio upgrades right after the handshake; give it a moment.
            for _ in range(50):
                if c.sio.transport() == "websocket":
                    break
                c.sio.sleep(0.1)
        check(c.sio.transport() == expected, f"{c.name} transport is {expected}", c.sio.transport())

    for c in (a, b):
        joined = c.sio.call("conversation:join", {"conversationId": conversation_id},
                            namespace=NS, timeout=STEP)
        check(joined == {"conversationId": conversation_id, "room": f"conversation:{conversation_id}"},
              f"{c.name} conversation:join ack", joined)
        c.wait("conversation:joined")

    a.sio.emit("typing:start", {"conversationId": conversation_id}, namespace=NS)
    typing = b.wait("typing:start")
    check(typing["user"] == {"userId": a_id, "userType": a_type}, "B sees A typing", typing)

    temp_id = f"py-{mode}-{time.time_ns()}"  # unique: a repeated tempId would be a retry
    sent = a.sio.call("message:send", {"conversationId": conversation_id,
                                       "content": "hello from python ✓", "tempId": temp_id},
                      namespace=NS, timeout=STEP)
    check(sent["tempId"] == temp_id and sent["message"]["content"] == "hello from python ✓",
          "message:send ack {tempId, message} (non-ASCII content intact)", sent)
    check(a.wait("message:sent")["message"]["id"] == sent["message"]["id"],
          "message:sent event matches the ack")
    got = b.wait("message:new")
    check(got == sent["message"], "B receives message:new equal to the stored message", got)

    temp_b = time.time_ns() % 1_000_000_000
    b.sio.emit("message:send", {"conversationId": conversation_id, "content": "reply", "tempId": temp_b},
               namespace=NS)
    back = a.wait("message:new")
    check(back["content"] == "reply" and back["sender"]["id"] == b_id and back["id"] > got["id"],
          "A receives B's reply in id order", back)
    check(b.wait("message:sent")["tempId"] == temp_b, "B's message:sent keeps the numeric tempId")

    bad = Client("C")
    try:
        bad.sio.connect(base, namespaces=[NS], auth={"token": "not-a-token"},
                        transports=transports[mode], wait_timeout=STEP)
        fail("a bad token was accepted")
    except socketio.exceptions.ConnectionError:
        try:
            data = bad.errors.get(timeout=STEP)
        except queue.Empty:
            fail("no connect_error for a bad token")
        message = data.get("message") if isinstance(data, dict) else data
        check(message == "unauthorized", "bad token: connect_error 'unauthorized'", data)

    for c in (a, b):
        c.sio.disconnect()
    print(f"ok python-socketio over {mode}", flush=True)
    print("PASS", flush=True)
    os._exit(0)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - any exception is a failed run
        fail(f"exception: {type(e).__name__}: {e}")
