"""Captured streams: the capture format (:mod:`~harness.captures.format`: table, events, final
items), recording a live stream (:mod:`~harness.captures.recording`), replaying one through a lane
(:mod:`~harness.captures.replay`) and shrinking a failing one (:mod:`~harness.captures.shrink`).
Nothing is re-exported here: import from the module that holds a name.
"""
