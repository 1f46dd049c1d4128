#!/usr/bin/env python3
"""Sends COUNT messages to HOST:PORT over THREADS connections with smtplib and
prints "ACK <message-id>" for every message the server accepted with 250, as
soon as it is accepted. Stops a thread at the first connection error (the
server may be killed on purpose). Bounded: COUNT messages, DEADLINE seconds."""
import smtplib
import sys
import threading
import time

host, port, count, threads, rcpt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
deadline = time.time() + float(sys.argv[6]) if len(sys.argv) > 6 else time.time() + 60
lock = threading.Lock()
next_id = [0]


def take():
    with lock:
        if next_id[0] >= count or time.time() > deadline:
            return None
        next_id[0] += 1
        return next_id[0]


def worker():
    try:
        client = smtplib.SMTP(host, port, timeout=10)
        client.ehlo("load.example.org")
        while True:
            n = take()
            if n is None:
                break
            mid = f"<load-{n}@test.example>"
            body = f"From: load@test.example\r\nTo: {rcpt}\r\nMessage-ID: {mid}\r\nSubject: load {n}\r\n\r\nmessage {n}\r\n"
            client.sendmail("load@test.example", [rcpt], body.encode())
            with lock:
                print("ACK", mid, flush=True)
        client.quit()
    except Exception as e:  # the server went away: stop this thread
        with lock:
            print("ERR", type(e).__name__, flush=True)


ts = [threading.Thread(target=worker) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
