"""The forecasting pipeline: market data in, a forecast at every bar close out.

    live.py     ovcast live: Coinbase feed -> bars -> features -> forecasts, recorded
    resume.py   start-up: history and the open minute made whole (or marked partial)
    writer.py   the writer thread: recording, bar closes and forecasts off the event loop
    stream.py   per product: features -> frozen scaler -> window -> engine (live and replay)
    replay.py   ovcast replay: a recording's bars through the same per-product code

``market/`` below it holds market data only (protocols, feed, bars, recording); the
model engine and its hot-swap slot come from ``runtime/``.
"""
