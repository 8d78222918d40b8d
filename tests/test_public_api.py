"""The public API is what __init__ exports, sorted, and every name resolves."""

import ovcast


def test_all_is_sorted_and_resolves():
    assert ovcast.__all__ == sorted(ovcast.__all__)
    for name in ovcast.__all__:
        assert getattr(ovcast, name) is not None


def test_errors_share_one_root():
    for name in ovcast.__all__:
        obj = getattr(ovcast, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, ovcast.OvcastError)
