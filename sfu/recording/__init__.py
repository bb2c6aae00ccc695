"""Room recording, the signalling side: the recorder process's handle and what a room records.

The media stays off this process: ``sfu.recorder`` (its own process) receives each
track as a consumer on a plain RTP transport and remuxes it with PyAV.
"""
