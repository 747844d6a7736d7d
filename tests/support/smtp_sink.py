#!/usr/bin/env python3
"""smtp_sink.py — a real SMTP server for the tests: aiosmtpd on a loopback port that writes each
message it accepts to DIR/<n>.eml (envelope in DIR/<n>.env), numbered in arrival order.

Usage: python3 smtp_sink.py PORT DIR [--delay SECONDS] [--fail-first N] [--reject]
  --delay: wait that long before answering DATA (a slow server)
  --fail-first: answer the first N DATA commands 451 (a server with transient errors)
  --reject: answer every DATA 554 (a server that refuses for good)

Started and stopped by PID from tests/support/smtp.c; prints "ready" once it listens.
"""
import asyncio
import os
import sys
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory, delay, fail_first, reject):
        self.dir = directory
        self.delay = delay
        self.fail_left = fail_first
        self.reject = reject
        self.n = len([f for f in os.listdir(directory) if f.endswith(".eml")])

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.reject:
            return "554 5.7.1 rejected by the test"
        if self.fail_left > 0:
            self.fail_left -= 1
            return "451 4.3.0 try again later (test)"
        self.n += 1
        base = os.path.join(self.dir, "%04d" % self.n)
        with open(base + ".tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(base + ".env", "w") as f:
            f.write("from %s\n" % envelope.mail_from)
            for r in envelope.rcpt_tos:
                f.write("to %s\n" % r)
        os.rename(base + ".tmp", base + ".eml")
        return "250 OK"


def main():
    port = int(sys.argv[1])
    directory = sys.argv[2]
    args = sys.argv[3:]
    delay = float(args[args.index("--delay") + 1]) if "--delay" in args else 0.0
    fail_first = int(args[args.index("--fail-first") + 1]) if "--fail-first" in args else 0
    reject = "--reject" in args
    os.makedirs(directory, exist_ok=True)
    c = Controller(Sink(directory, delay, fail_first, reject), hostname="127.0.0.1", port=port)
    c.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        c.stop()


if __name__ == "__main__":
    main()
