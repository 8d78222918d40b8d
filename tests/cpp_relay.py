"""A server with a misbehaving stdout, for the C++ client's fault drill (test_cpp_client.py).

    python cpp_relay.py garbage N SERVER_ARGV...   # stray lines; an endless line after N answers
    python cpp_relay.py slow MS SERVER_ARGV...     # each answer MS milliseconds late

Runs the server with its stdin and stderr inherited and relays its stdout. `garbage` writes
the GARBAGE lines before every line it relays (the ready line included) and, after N answers,
an endless line instead of the next answer, until it is killed. `slow` relays the ready line
at once and each answer MS ms after the previous one was relayed (one at a time, in order).
"""

from __future__ import annotations

import subprocess
import sys
import time

GARBAGE = (
    b"Loading weights... done\n",  # a library printing to stdout
    b"\n",
    b"not json {\n",
    b"[" * 100_000 + b"\n",  # nesting deep enough to overflow a recursive parser's stack
    b'{"request_id": "nope", "success": true, "predictions": [[1.0]]}\n',  # not our id
    b'{"event": "log", "message": "stray"}\n',
    b"\xff\xfe binary \x00\n",
    b'"a string"\n',
)


def main() -> int:
    mode, number = sys.argv[1], int(sys.argv[2])
    server = subprocess.Popen(sys.argv[3:], stdout=subprocess.PIPE)
    assert server.stdout is not None
    out = sys.stdout.buffer
    answers = 0
    for line in server.stdout:
        is_answer = not line.startswith(b'{"event"')
        answers += is_answer
        if mode == "garbage" and answers > number:
            while True:  # a line that never ends
                out.write(b"x" * 65536)
                out.flush()
        if mode == "garbage":
            line = b"".join(GARBAGE) + line
        elif is_answer:
            time.sleep(number / 1000)
        out.write(line)
        out.flush()
    return server.wait()


if __name__ == "__main__":
    sys.exit(main())
