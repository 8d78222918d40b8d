"""HuggingFace side of ovcast: model configs and checkpoint loading (needs ``ovcast[convert]``).

Never imported by the runtime (engine, servers, live pipeline).
"""
