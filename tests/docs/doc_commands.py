"""Extract the shell commands of the README and docs/*.md: what a reader would paste into a shell.

A command is one logical line of a fenced ```bash / ```sh / ```shell / ```console block: backslash
continuations are joined, ``for``/``if``/``{`` constructs are kept whole until they close, comment
lines are left out, and in ``console`` blocks only ``$ `` lines (and their continuations) are
commands, the rest being their output. Each command knows its document and line, so a failure
names both.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "zsh", "console", "shell-session"})
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
OPENERS = frozenset({"do", "if", "case", "{"})
CLOSERS = frozenset({"done", "fi", "esac", "}"})
# what a command line of an untagged block would start with (such a block hides commands from the tests)
COMMAND_START = re.compile(
    r"^\s*(\$ |(sudo |\.venv\S*/bin/)?(pipeline|python3?(\.\d+)?|pip|make|kubectl|helm|dvc|mlflow|airflow|"
    r"docker|kind|pytest|export|cd|mkdir)\s)"
)


@dataclass(frozen=True)
class Command:
    doc: str  # path relative to the repository, e.g. docs/dvc.md
    line: int  # line of the command's first line in the document (1-based)
    text: str  # as written (continuation lines joined with newlines), comment lines left out
    language: str  # the fence's info string

    @property
    def words(self) -> str:
        """The command without comments and quoting, words separated by one space: what rules match."""
        return " ".join(split_words(self.text))

    @property
    def code(self) -> str:
        """The command as written without its comments (so that arguments can be appended)."""
        return "\n".join(strip_comment(line) for line in self.text.splitlines())

    def where(self) -> str:
        first = self.text.splitlines()[0]
        more = " ..." if "\n" in self.text else ""
        return f"{self.doc}:{self.line}: {first}{more}"


@dataclass(frozen=True)
class Block:
    doc: str
    line: int  # line of the opening fence
    language: str
    lines: tuple[str, ...]


def strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (a ``#`` outside quotes, at a word's start)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index].rstrip()
    return line.rstrip()


def split_words(text: str) -> list[str]:
    """Shell words of ``text`` without comments; a text shlex cannot parse falls back to spaces."""
    lexer = shlex.shlex(text.replace("\\\n", " "), posix=True, punctuation_chars=";&|()<>")
    lexer.commenters = "#"
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:
        return re.sub(r"(^|\s)#.*", "", text).split()


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the line of its opening fence."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    doc = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        body: list[str] = []
        index += 1
        while index < len(lines):
            closing = FENCE.match(lines[index])
            same = closing and closing["fence"][0] == fence[0] and len(closing["fence"]) >= len(fence)
            if same and not closing["info"]:
                break
            body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index])
            index += 1
        start = index - len(body)
        found.append(Block(doc, start, opening["info"].lower(), tuple(body)))
        index += 1
    return found


def commands_of(block: Block) -> list[Command]:
    """The commands of one shell block, in order."""
    console = block.language in ("console", "shell-session")
    commands: list[Command] = []
    pending: list[str] = []
    first_line = 0
    depth = 0
    for offset, raw in enumerate(block.lines, start=block.line + 1):
        line = raw.rstrip()
        if not pending:
            if console:
                if not line.startswith("$ "):
                    continue  # output of the previous command
                line = line[2:]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            first_line = offset
        elif not line.strip() or line.lstrip().startswith("#"):
            continue  # inside a construct or after a continuation: bash skips it too
        pending.append(line)
        if line.endswith("\\"):
            continue
        words = split_words(line)
        depth += sum(word in OPENERS for word in words) - sum(word in CLOSERS for word in words)
        if depth > 0:
            continue
        commands.append(Command(block.doc, first_line, "\n".join(pending), block.language))
        pending, depth = [], 0
    if pending:
        commands.append(Command(block.doc, first_line, "\n".join(pending), block.language))
    return commands


def documents() -> list[Path]:
    """The README and every guide under docs/."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def shell_blocks(paths: list[Path] | None = None) -> list[Block]:
    return [b for p in paths or documents() for b in blocks(p) if b.language in SHELL_LANGUAGES]


def all_commands(paths: list[Path] | None = None) -> list[Command]:
    return [c for b in shell_blocks(paths) for c in commands_of(b)]


def untagged_command_blocks(paths: list[Path] | None = None) -> list[Block]:
    """Blocks without a language whose lines look like commands: they would escape the tests."""
    return [
        b
        for p in paths or documents()
        for b in blocks(p)
        if not b.language and any(COMMAND_START.match(line) for line in b.lines)
    ]
