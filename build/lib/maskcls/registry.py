"""String-name registries (like timm's ``create_model``): a dict from name to class or factory.

Unknown names fail with the list of known ones and the closest match.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Generic, TypeVar

from maskcls.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            return factory

        return add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def create(self, name: str, **kwargs) -> T:
        return self.check(name, **kwargs)(**kwargs)

    def check(self, name: str, **kwargs) -> Callable[..., T]:
        """The factory of ``name``, once the name and every option are known to fit it (a
        UserError otherwise): a config is checked before anything is built."""
        try:
            factory = self._entries[name]
        except KeyError:
            raise UserError(unknown_name(self.kind, name, self.names())) from None
        check_options(f"{self.kind} {name!r}", factory, kwargs)
        return factory


def unknown_name(kind: str, name: str, known: list[str] | tuple[str, ...]) -> str:
    """``unknown optimizer 'adamx' (did you mean 'adam'?); known: adam, adamw, madgrad, sgd``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; known: {', '.join(sorted(known))}"


def check_options(what: str, factory: Callable, options: dict) -> None:
    """A misspelt option is a one-line error listing the accepted ones, never a raw TypeError."""
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [p for p in parameters if parameters[p].kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = [key for key in options if key not in accepted]
    if unknown:
        close = difflib.get_close_matches(unknown[0], accepted, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"{what} has no option {unknown[0]!r}{hint}; accepted: {', '.join(accepted)}")
