"""The signalling process's side of the media objects (mediasoup's TypeScript layer).

Worker, WorkerPool, Router, transports, Producer, Consumer and
ActiveSpeakerObserver are handles on objects that live in a media worker
process (``sfu.media``), reached over ``sfu.channel``. Nothing here imports
the media plane, except the in-process worker branch of ``Worker.start`` (tests).
"""
