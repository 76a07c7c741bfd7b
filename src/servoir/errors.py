"""Errors that name what was wrong and where; the CLI prints them without a traceback."""

from __future__ import annotations


class ServoirError(Exception):
    """Base class of every error servoir raises on bad input."""


class InputError(ServoirError, ValueError):
    """Bad user input: a malformed trace, an impossible config, an unknown name.

    ``file``, ``line`` (physical, 1-based, the header being line 1) and ``field`` are set when
    known and are part of the message.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file, self.line, self.field = file, line, field
        where = []
        if file is not None:
            where.append(str(file))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class UnknownNameError(InputError, KeyError):
    """An unknown policy, model or GPU name; the message lists the valid ones."""

    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        super().__init__(f"unknown {kind} '{name}'; valid: {', '.join(sorted(valid))}")

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0])
