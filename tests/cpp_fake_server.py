"""A stand-in for `ovcast serve --mode jsonl --ready-line`, for the C++ client's fault drill.

    python cpp_fake_server.py [MODE | --mode-file PATH] [--ready-line] [ignored...]

Standard library only, so it starts in milliseconds. Its model: context 8, horizon 4, the 3
channels close, volume, rsi. The answer to a window is [4][3], every value of step t being
``past_values[-1][0] + t``: the drill can tell which request an answer belongs to.

A request's last value (``past_values[-1][0]``, the cue) asks for a misbehaviour:

    1001  predictions of the wrong shape ([[1.0]])
    1002  values beyond float32 (1e39)
    1003  NaN and Infinity literals (Python's json.dumps writes them)
    1004  nulls for numbers (how a server once wrote NaN)
    1005  the error answer model_output_not_finite
    1006  its request_id as a JSON number
    1007  a numeric request_id that is not the request's (id + 1000)
    1008  exit (status 70) before answering: a window that crashes the server
    1009  answer only after the next request's answer (out of order)
    1010  never answer (hang)
    1011  answer, then linger; close stdin on SIGUSR1: the next write fails with EPIPE
    1012  answer 60 ms late
    1013  answer without the final newline, then exit
    1014  predictions holding far more values than the model has
    1016  close stdin and never answer

The mode (the first argument, or the first line of the --mode-file, read at each start):

    ok              the above
    fork            serve from a forked child, as a wrapper that does not exec would
    stderr:N        write N KiB to stderr (in 1 KiB lines) before the ready line
    stray:N         before each answer, a valid JSON line of N bytes that is no answer
    stray-once:N    the same, for this server only (the mode file goes back to ok)
    bad-ready:K=V   the ready line with field K set to the JSON text V (K=: without K)
    never-ready     start, write nothing, wait
    exit:N          write a line to stderr and exit with status N before the ready line
The ready line also carries "server_pid": the pid of the process that answers.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import struct
import sys
import time

CONTEXT, HORIZON, CHANNELS = 8, 4, ["close", "volume", "rsi"]


def mode_of(argv: list[str]) -> str:
    args = [a for a in argv if a != "--ready-line"]
    if args[:1] == ["--mode-file"]:
        path = args[1]
        with open(path) as f:
            mode = f.readline().strip() or "ok"
        if mode.startswith("stray-once:"):
            with open(path, "w") as f:
                f.write("ok\n")
        return mode
    return args[0] if args and not args[0].startswith("-") else "ok"


def write(data: str) -> None:
    sys.stdout.write(data)
    sys.stdout.flush()


def forecast(base: float) -> list[list[float]]:
    return [[base + t] * len(CHANNELS) for t in range(HORIZON)]


def answer(request: dict, cue: float) -> str:
    rid = request.get("request_id")
    out: dict = {"request_id": rid, "success": True, "inference_time_ms": 0.1}
    out["predictions"] = forecast(cue)
    if cue == 1001:
        out["predictions"] = [[1.0]]
    elif cue == 1002:
        out["predictions"] = [[1e39] * len(CHANNELS)] * HORIZON
    elif cue == 1003:
        out["predictions"] = [[float("nan"), float("inf"), 1.0]] * HORIZON
    elif cue == 1004:
        out["predictions"] = [[None] * len(CHANNELS)] * HORIZON
    elif cue == 1005:
        message = "the model's forecast holds NaN or inf for a finite input"
        out = {"request_id": rid, "success": False}
        out["error"] = {"code": "model_output_not_finite", "message": message}
    elif cue == 1006:
        out["request_id"] = int(rid)
    elif cue == 1007:
        out["request_id"] = int(rid) + 1000
    elif cue == 1014:
        out["predictions"] = [[1.0] * 300] * 300
    return json.dumps(out) + "\n"


def _window(past_values) -> list:
    """The window as rows: JSON arrays, or the client's default binary form
    {"base64": little-endian float32, "shape": [rows, channels]}."""
    if isinstance(past_values, list):
        return past_values
    raw = base64.b64decode(past_values["base64"], validate=True)
    values = struct.unpack(f"<{len(raw) // 4}f", raw)
    channels = past_values["shape"][1]
    return [list(values[i : i + channels]) for i in range(0, len(values), channels)]


def serve(mode: str) -> int:
    stray = ""
    if mode.startswith(("stray:", "stray-once:")):
        size = int(mode.split(":")[1])
        stray = '{"stray": [' + "1," * ((size - 14) // 2) + "1]}\n"
    held = ""
    for line in sys.stdin:
        request = json.loads(line)
        cue = _window(request["past_values"])[-1][0]
        if cue == 1008:
            os._exit(70)
        if cue == 1010:
            time.sleep(3600)
        if cue == 1016:
            os.close(0)
            time.sleep(3600)
        if cue == 1012:
            time.sleep(0.06)
        text = answer(request, cue)
        if cue == 1009:
            held = text
            continue
        if cue == 1013:
            write(stray + text.rstrip("\n"))
            return 0
        if cue == 1011:
            signal.signal(signal.SIGUSR1, lambda *_: os.close(0))
        write(stray + text + held)
        held = ""
        if cue == 1011:
            time.sleep(3600)
    return 0


def main() -> int:
    mode = mode_of(sys.argv[1:])
    if mode == "fork":
        child = os.fork()
        if child:
            os.waitpid(child, 0)
            return 0
    if mode == "never-ready":
        time.sleep(3600)
    if mode.startswith("exit:"):
        sys.stderr.write(f"fake server: cannot load the model, exiting with {mode[5:]}\n")
        return int(mode[5:])
    if mode.startswith("stderr:"):
        for _ in range(int(mode.split(":")[1])):
            sys.stderr.write("x" * 1023 + "\n")
        sys.stderr.flush()
    ready = {
        "event": "ready",
        "models": ["fake"],
        "model": "fake",
        "context_length": CONTEXT,
        "prediction_length": HORIZON,
        "num_channels": len(CHANNELS),
        "channel_names": CHANNELS,
        "forecast_channel_names": CHANNELS,
        "server_pid": os.getpid(),
    }
    if mode.startswith("bad-ready:"):
        key, value = mode.split(":", 1)[1].split("=", 1)
        ready.pop(key)
        if value:  # K= (nothing): the field is missing
            ready[key] = json.loads(value)
    write(json.dumps(ready) + "\n")
    return serve(mode)


if __name__ == "__main__":
    sys.exit(main())
