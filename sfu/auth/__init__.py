"""Access control with LiveKit access tokens (docs/auth.md).

- :mod:`.claims`: the typed claims of a token and its ``video`` grants;
- :mod:`.tokens`: verifying a token against the configured keys, and minting one;
- :mod:`.admission`: whether a WebSocket upgrade may join a room, or why not.
"""
