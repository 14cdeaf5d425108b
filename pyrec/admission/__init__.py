"""Publish admission (spec/admission.md): who may publish what.

This module holds the contract between the ingest side (which asks for a decision when a
publisher names its stream, parks that connection and applies the answer) and the rules
(stream keys, OME SignedPolicy, OME AdmissionWebhooks) that decide. The rules run on a small
worker pool, never on the ingest loop thread.

- `PublishRequest`: everything a rule may look at, as the publisher sent it.
- `Decision`: allow / refuse (the rule and the reason, for the log) / rename / deadline.
- `AppRules`: what one app's composed rules offer: `decide()` (blocking, on a pool thread)
  and `closing()` (the webhook `closing` notification when an admitted publisher leaves).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["PublishRequest", "Decision", "AppRules", "ALLOW"]


@dataclass(frozen=True)
class PublishRequest:
    """A publish to decide on. `stream` is the publish name without its query; `query` is
    the publish name's raw query (after '?', "" if none); `tcurl` the RTMP connect tcUrl as
    sent; `listen_port` the port the publisher connected to (inserted into the signed URL
    when the tcUrl has none)."""

    vhost: str
    app: str
    stream: str
    query: str
    tcurl: str
    listen_port: int
    peer_ip: str
    peer_port: int
    protocol: str = "RTMP"


@dataclass(frozen=True)
class Decision:
    """The answer. When refused, `rule` names the rule ("keys", "signed_policy", "webhook",
    "timeout", ...) and `reason` says why in words for the log: never a key, a signature or a
    secret. When allowed, `app`/`stream` (both or neither) rename the stream before anything
    is registered, and `deadline` (time.time() seconds) is when the publisher is disconnected
    (SignedPolicy `stream_expire`, webhook `lifetime`; the earliest wins)."""

    allowed: bool
    rule: str = ""
    reason: str = ""
    app: str | None = None
    stream: str | None = None
    deadline: float | None = None


ALLOW = Decision(True)


class AppRules(Protocol):
    """One app's admission rules, composed from its `[vhosts.V.apps.A.admission]` config."""

    def decide(self, req: PublishRequest) -> Decision:
        """Every configured rule in the spec's order; blocking (runs on a pool thread)."""
        ...

    def closing(self, req: PublishRequest, final_url: str) -> None:
        """The admitted (or rejected-after-parse) publisher went away; `final_url` is the
        URL of the stream as recorded (after any rename)."""
        ...
