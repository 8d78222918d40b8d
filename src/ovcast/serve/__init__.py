"""Serving: one transport-free core behind two thin front ends, JSON lines and KServe v2 HTTP.

    repository.py   which models: --model [NAME=]DIR, --repository DIR (OVMS layout), versions
    core.py         ForecastService: hot-swap slots, validation, raw scaling, channels,
                    batching, bounds, timeouts, readiness, metrics, load/unload/reload
    batching.py     the dynamic micro-batcher (Triton-style)
    metrics.py      prometheus_client metrics of one service
    tensors.py      numbers off the wire (JSON, binary), strictly and the same for both
    config.py       the settings dataclasses, which are also the CLI options
    jsonl_codec.py  the JSON-lines wire format       jsonl.py  its stdin/stdout transport
    kserve.py       the KServe v2 wire format        http.py   Starlette routes over the core
    asgi.py         binding, and running an ASGI app on uvicorn (also the dashboard's)

``core`` and the codecs import no web framework, so the core runs anywhere a Python object
can (a Ray Serve deployment, a test); only ``http`` and ``asgi`` need Starlette and uvicorn.
"""
