"""Market data: OHLCV bars and the 7 feature channels (close, high, low, volume, RSI, MACD,
volatility). Pure numpy and the standard library: on the live runtime path."""
