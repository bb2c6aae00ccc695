"""The recorder process (``python -m sfu.recorder.recorder_process``): tracks in over
plain RTP on loopback, remuxed with PyAV into one file per track. Never loaded by
the signalling process nor by a media worker."""
