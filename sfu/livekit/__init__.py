"""The LiveKit-compatible control plane: our rooms, peers and producers as
LiveKit's protobuf messages (:mod:`.info`), for its RoomService and webhooks."""
