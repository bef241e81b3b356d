"""Conditional GETs of stored images and the web page's files: whether ``If-None-Match`` names what a client has.

RFC 9110 (13.1.2) compares ``If-None-Match`` weakly: ``W/"x"`` names the same representation as ``"x"``. Proxies
weaken strong tags as they compress (nginx's gzip, and our own `compression`, make ``"x"`` into ``W/"x"``), and a
browser sends back the tag it was given, so a strong-only comparison sent the whole image again to every client
behind such a proxy. ``*`` names any representation that exists.
"""

from __future__ import annotations


def names(if_none_match: str, tag: str) -> bool:
    """Whether the header's list holds ``tag`` (the hex digest, unquoted), weak or strong, or is ``*``."""
    wanted = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in wanted or f'"{tag}"' in wanted
