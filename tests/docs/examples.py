"""The examples of the documentation, read from its Markdown: YAML designs and curl sessions.

Fenced blocks are read by their info string:

- ```` ```yaml ```` is a complete design that loads without a warning;
  ```` ```yaml invalid ```` fails with the error commented `# error: ...` on its line;
  ```` ```yaml warning ```` loads with the warning commented `# warning: ...` on its line;
  ```` ```yaml api ```` is a valid design that the page's next curl examples run against;
  ```` ```yaml fragment ```` is a part of a design, only checked to be well-formed YAML.
- ```` ```sh ```` blocks are shell sessions. Each `curl` command in them is run in order
  against one app; `NAME=value` sets a variable, `NAME=$(curl ... | jq -r .field)` keeps
  a field of the answer. Every curl needs an expected answer: a `# 201 ...` comment on the
  line after it, or (for the block's last one) the ```` ```http ```` block that follows.
  After a successful answer, each string of its JSON object (nested objects too) becomes
  a variable named after its key in capitals: `access_token` gives `$ACCESS_TOKEN`.
- ```` ```http ```` blocks are answers: a status line, headers, a blank line, a body.
  A header's value and a JSON string may hold `…`, which matches anything; a JSON object
  must have exactly the keys shown; a list `["…"]` matches any list. A block without a
  body checks the status and the headers only.
"""

from __future__ import annotations

import json
import re
import shlex
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
BASE_URL = "http://127.0.0.1:8000"

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_ASSIGN = re.compile(r"([A-Z_][A-Z0-9_]*)=(.*)", re.DOTALL)
_CAPTURE = re.compile(r"\$\((curl\b.*)\|\s*jq -r \.([A-Za-z0-9_.]+)\s*\)", re.DOTALL)
_STATUS_COMMENT = re.compile(r"#\s*(\d{3})\b")
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_FLAGS = re.compile(r"-[sSif]+")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page: its info string, its text and its first line."""

    info: str
    text: str
    line: int

    @property
    def kind(self) -> str:
        return self.info.split(" ")[0] if self.info else ""

    @property
    def tag(self) -> str:
        return self.info.partition(" ")[2].strip()


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, in order."""
    text = path.read_text(encoding="utf-8")
    return [
        Block(m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 2)
        for m in _FENCE.finditer(text)
    ]


def yaml_blocks(path: Path, tag: str) -> list[Block]:
    """The ```yaml blocks of a page with this tag ("" for plain ones, "api" counts as plain)."""
    return [
        b
        for b in blocks(path)
        if b.kind == "yaml" and (b.tag == tag or (tag == "" and b.tag == "api"))
    ]


def commented_line(text: str, marker: str) -> tuple[int, str]:
    """The 1-based line holding `# <marker>: ...` and what follows the marker."""
    found = [(n, line) for n, line in enumerate(text.splitlines(), 1) if f"# {marker}: " in line]
    assert len(found) == 1, f"expected one `# {marker}:` comment, found {len(found)}"
    line, content = found[0]
    return line, content.split(f"# {marker}: ", 1)[1].strip()


# --- shell sessions ------------------------------------------------------------------------


@dataclass
class Step:
    """A command of a shell session and what the page says it answers."""

    line: int
    command: str  # curl ... (variables not yet expanded)
    assign: str | None = None  # NAME of NAME=value or NAME=$(curl ...)
    capture: str | None = None  # the jq path of NAME=$(curl ... | jq -r .path)
    status: int | None = None
    answer: str | None = None  # an ```http block


@dataclass
class Session:
    """The steps of one page, and the designs they run against (a step index each)."""

    steps: list[Step] = field(default_factory=list)
    designs: dict[int, str] = field(default_factory=dict)


def session(path: Path) -> Session:
    """Every curl step of a page, with the ```yaml api designs that start at a step."""
    found = Session()
    pending: Step | None = None  # the last step of the previous sh block
    for block in blocks(path):
        if block.kind == "http" and pending is not None:
            pending.answer = block.text
        if block.kind == "yaml" and block.tag == "api":
            found.designs[len(found.steps)] = block.text
        pending = None
        if block.kind == "sh" and block.tag != "mail":  # ```sh mail: run with a mail server
            steps = _steps(block)
            found.steps.extend(steps)
            curls = [s for s in steps if s.capture is not None or s.command.startswith("curl")]
            pending = curls[-1] if curls and curls[-1] is steps[-1] else None
    return found


def _steps(block: Block) -> list[Step]:
    lines = _logical_lines(block.text)
    steps = []
    for index, (number, text) in enumerate(lines):
        line = block.line + number
        following = lines[index + 1][1] if index + 1 < len(lines) else ""
        status = _STATUS_COMMENT.match(following)
        expected = int(status.group(1)) if status else None
        assign = _ASSIGN.fullmatch(text)
        if assign is not None:
            name, value = assign.groups()
            capture = _CAPTURE.fullmatch(value.strip())
            if capture is not None:
                steps.append(Step(line, capture.group(1).strip(), name, capture.group(2)))
            else:
                steps.append(Step(line, value.strip(), name))
        elif text.startswith("curl "):
            steps.append(Step(line, text, status=expected))
    return steps


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with backslash continuations joined, each with its 0-based first line number."""
    joined: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines()):
        if not current:
            start = number
        if raw.endswith("\\"):
            current.append(raw[:-1])
            continue
        current.append(raw)
        joined.append((start, " ".join(part.strip() for part in current).strip()))
        current = []
    return [(n, t) for n, t in joined if t]


def expand(text: str, variables: dict[str, str]) -> str:
    """`text` with $NAME and ${NAME} replaced outside single quotes, as a shell does."""
    out: list[str] = []
    quote = ""  # the quote we are inside, if any
    position = 0
    while position < len(text):
        char = text[position]
        if char == "\\" and quote != "'":
            out.append(text[position : position + 2])
            position += 2
            continue
        if char in "'\"" and quote in ("", char):
            quote = "" if quote else char
        elif char == "$" and quote != "'":
            match = _VARIABLE.match(text, position)
            if match is not None:
                name = match.group(1) or match.group(2)
                assert name in variables, f"the example uses ${name} before it is set"
                out.append(variables[name])
                position = match.end()
                continue
        out.append(char)
        position += 1
    return "".join(out)


@dataclass(frozen=True)
class Request:
    """What a curl command sends."""

    method: str
    target: str  # path and query
    headers: dict[str, str]
    body: bytes


def curl_request(command: str) -> Request:
    """The request a curl command line sends (the options these docs use)."""
    argv = shlex.split(command)
    assert argv[0] == "curl"
    method, url, get = None, None, False
    headers: dict[str, str] = {}
    data: list[str] = []
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-X", "--request"):
            method = next(args)
        elif arg in ("-H", "--header"):
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif arg in ("-d", "--data", "--data-raw"):
            data.append(next(args))
        elif arg == "--data-urlencode":
            name, _, value = next(args).partition("=")
            data.append(f"{name}={urllib.parse.quote_plus(value)}")
        elif arg in ("-G", "--get"):
            get = True
        elif _FLAGS.fullmatch(arg) or arg in ("--silent", "--include", "--show-error"):
            continue
        else:
            assert url is None, f"unexpected argument {arg!r}"
            url = arg
    assert url is not None, "the command names no URL"
    assert url.startswith(BASE_URL), f"the URL must start with {BASE_URL}"
    target = url[len(BASE_URL) :]
    body = "&".join(data)
    if get and data:
        target += ("&" if "?" in target else "?") + body
        body = ""
    if body and not any(h.lower() == "content-type" for h in headers):
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return Request(method or ("POST" if body else "GET"), target, headers, body.encode())


Send = Callable[[Request], Awaitable[httpx.Response]]


async def run_steps(steps: list[Step], send: Send, variables: dict[str, str]) -> int:
    """Run `steps` in order through `send`; check each answer; return how many ran."""
    for step in steps:
        where = f"line {step.line}: {step.command[:60]}"
        if step.assign is not None and step.capture is None:
            variables[step.assign] = expand(step.command, variables).strip("\"'")
            continue
        response = await send(curl_request(expand(step.command, variables)))
        check_answer(step, response, where)
        if response.is_success:
            keep_strings(_json_or_none(response), variables)
        if step.capture is not None:
            assert step.assign is not None
            assert response.is_success, f"{where}: {response.status_code} {response.text}"
            value: Any = response.json()
            for key in step.capture.split("."):
                value = value[key]
            variables[step.assign] = str(value)
    return sum(1 for s in steps if s.assign is None or s.capture is not None)


def check_answer(step: Step, response: httpx.Response, where: str) -> None:
    """The response is what the page says it is."""
    if step.answer is not None:
        expect_http(step.answer, response, where)
    elif step.status is not None:
        assert response.status_code == step.status, f"{where}: {response.text}"
    else:
        assert step.capture is not None, f"{where}: the page shows no answer for this example"


def expect_http(answer: str, response: httpx.Response, where: str) -> None:
    """`response` matches an ```http block: status, the headers shown, the body."""
    head, _, body = answer.partition("\n\n")
    status_line, *header_lines = head.splitlines()
    status = int(status_line.split()[1])
    assert response.status_code == status, f"{where}: got {response.status_code} {response.text}"
    for line in header_lines:
        name, _, value = line.partition(":")
        got = response.headers.get(name.strip())
        assert got is not None, f"{where}: no {name} header"
        assert _matches(value.strip(), got), f"{where}: {name}: {got!r} is not {value.strip()!r}"
    if not body.strip():
        return  # the page shows the status and headers only
    expect_json(json.loads(body), response.json(), where)


def expect_json(shown: Any, got: Any, where: str, path: str = "$") -> None:
    """`got` has the shape and values of `shown` (with `…` wildcards)."""
    if isinstance(shown, dict):
        assert isinstance(got, dict), f"{where}: {path} is not an object"
        assert set(shown) == set(got), f"{where}: {path} keys {sorted(got)} != {sorted(shown)}"
        for key, value in shown.items():
            expect_json(value, got[key], where, f"{path}.{key}")
    elif isinstance(shown, list):
        assert isinstance(got, list), f"{where}: {path} is not a list"
        if shown == ["…"]:
            return
        assert len(shown) == len(got), f"{where}: {path} has {len(got)} items, not {len(shown)}"
        for index, (one, other) in enumerate(zip(shown, got, strict=True)):
            expect_json(one, other, where, f"{path}[{index}]")
    elif isinstance(shown, str) and "…" in shown:
        assert isinstance(got, str), f"{where}: {path} is {got!r}, not a string"
        assert _matches(shown, got), f"{where}: {path} is {got!r}, not {shown!r}"
    else:
        assert shown == got, f"{where}: {path} is {got!r}, not {shown!r}"


def keep_strings(value: Any, variables: dict[str, str]) -> None:
    """Each string of a JSON object (and of the objects in it) as a capitalized variable."""
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        if isinstance(item, str):
            variables[key.upper()] = item
        keep_strings(item, variables)


def _matches(shown: str, got: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in shown.split("…"))
    return re.fullmatch(pattern, got, re.DOTALL) is not None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
