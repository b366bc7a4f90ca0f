"""One pure parser per push source: raw (authenticated) body -> canonical tracking events.

No I/O here: each parser is a function of the bytes and the receive time, so every
source can be tested exhaustively without a server or broker.
"""
