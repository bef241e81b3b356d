"""Text that goes into XML (hOCR, ALTO): characters XML 1.0 cannot hold, not even escaped, replaced.

A correction is the user's text and a file name the user's choice; either may carry a control character, and one
such character would make the whole document unreadable to an XML parser.
"""

from __future__ import annotations

import re

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    """``text`` with each character XML 1.0 forbids replaced by U+FFFD (escaping is the writer's job)."""
    return _NOT_XML.sub("\ufffd", text)
