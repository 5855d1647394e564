"""Docker image references: the one grammar the settings, the names and the policy pack read.

``[registry[:port]/]name[:tag][@sha256:<64 hex>]`` as Docker's reference grammar writes it
(distribution/reference ``reference.go``: lowercase path components separated by ``.``, ``_``,
``__`` or dashes; a tag of up to 128 ``[A-Za-z0-9_.-]`` not starting with ``.`` or ``-``). A leaf:
it imports nothing of the project.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_REFERENCE: Final = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::\d+)?)/(?=.))?"
    r"(?P<name>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


@dataclass(frozen=True)
class ImageReference:
    """A parsed reference; ``registry`` is None for Docker Hub's default."""

    registry: str | None
    name: str
    tag: str | None
    digest: str | None


def parse(text: str) -> ImageReference | None:
    """The reference, or None when ``text`` is not one.

    A first component with a dot, a colon or ``localhost`` is a registry, as Docker reads it
    (distribution/reference ``normalize.go`` splitDockerDomain).
    """
    match = _REFERENCE.match(text)
    if not match:
        return None
    registry, name = match["registry"], match["name"]
    if registry is not None and not ("." in registry or ":" in registry or registry == "localhost"):
        # "library/foo" or "user/foo": a Docker Hub path, not a registry host.
        if registry != registry.lower():
            return None
        name, registry = f"{registry}/{name}", None
    return ImageReference(registry, name, match["tag"], match["digest"])


def pin_problem(text: str) -> str | None:
    """None when ``text`` names one image for good enough (a release tag or a digest), else why
    not: a tag can still be re-pushed, which :func:`pinned_by_digest` rules out."""
    reference = parse(text)
    if reference is None:
        return (
            "not an image reference ([registry/]name:tag or name@sha256:<digest>, lowercase name)"
        )
    if reference.digest:
        return None
    if not reference.tag:
        return "not pinned (no tag: Docker pulls :latest); add a tag (e.g. :v1.102.5) or a digest"
    if reference.tag == "latest":
        return "':latest' moves under you; use a release tag or a digest (@sha256:…)"
    return None


def pinned_by_digest(text: str) -> bool:
    """True when ``text`` is a reference that names its image by digest."""
    reference = parse(text)
    return reference is not None and reference.digest is not None
