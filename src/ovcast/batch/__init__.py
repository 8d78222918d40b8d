"""Batch forecasting: every window of many series, in this process or on Ray Data.

``source`` reads the input (CSV, Parquet, a recording), ``forecast`` cuts the windows and
forecasts and writes them in bounded chunks (the local path), ``ray_data`` runs the same
per-series function on a Ray cluster. ``ovcast forecast-batch`` is the command.
"""
