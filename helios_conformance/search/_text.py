"""Full-text search for ``_text``, ``_content`` and ``:text-advanced``.

The query language follows SQLite FTS5; the tokens are this module's own, defined
below. FTS5's built-in porter tokenizer does *not* agree with them (it keeps "as"
where the Snowball Porter stemmer gives "a", and a porter table stems pre-stemmed
terms again), so a SQL backend stores the tokens :func:`tokenize` produces (for FTS5,
an ``ascii`` tokenizer over the space-joined tokens) and matches terms stemmed here:

- **Tokens**: text is case-folded, diacritics removed, and split into runs of
  letters and digits (everything else separates tokens); each token is reduced with
  the original Porter stemmer (``snowballstemmer``'s ``porter``).
- **Query language** (:func:`parse_text_query`): words are ANDed (``heart failure``);
  ``OR`` and ``AND`` (upper case) combine; ``NOT`` is binary (``a NOT b``: a and not
  b; a query cannot start with ``NOT``, as in FTS5); ``"..."`` is a phrase (its tokens
  consecutive); ``word*`` matches tokens starting with the stemmed word; parentheses
  group. Precedence, as in FTS5: NOT binds tightest, then AND, then OR. A word that
  the tokenizer splits (``heart-attack``) is a phrase.
- A SQL backend renders the parsed :class:`TextQuery` (terms already stemmed here)
  as a MATCH expression, quoting every term (``"heart" AND "fail"*``), never the
  raw user text.

``_text`` searches the narrative (``text.div`` with tags removed); ``_content``
searches every string value of the resource, narrative included.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import snowballstemmer

from ._model import TextAnd, TextNot, TextOr, TextPhrase, TextQuery, TextTerm

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_TAG = re.compile(r"<[^>]*>")
_stemmer = snowballstemmer.stemmer("porter")


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The Porter stem of one folded token."""
    return str(_stemmer.stemWord(word))


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def tokenize(text: str) -> list[str]:
    """Fold, split and stem ``text`` into the tokens every backend indexes and matches."""
    return [stem(token) for token in _TOKEN.findall(_fold(text))]


def narrative_text(resource: Mapping[str, Any]) -> str:
    """The narrative of a resource as plain text (tags removed, entities decoded)."""
    narrative = resource.get("text")
    if not isinstance(narrative, Mapping):
        return ""
    div = narrative.get("div")
    if not isinstance(div, str):
        return ""
    return html.unescape(_TAG.sub(" ", div))


def content_text(resource: Mapping[str, Any]) -> str:
    """Every string value of a resource (narrative as plain text), space-separated."""
    parts: list[str] = []

    def walk(node: Any, key: str) -> None:
        if isinstance(node, Mapping):
            for child_key, child in node.items():
                walk(child, child_key)
        elif isinstance(node, list):
            for child in node:
                walk(child, key)
        elif isinstance(node, str):
            if key == "div":
                parts.append(html.unescape(_TAG.sub(" ", node)))
            elif key not in ("resourceType", "reference", "url", "system", "id", "data"):
                parts.append(node)

    walk(resource, "")
    return " ".join(parts)


# -- query parsing ------------------------------------------------------------------

_LEXEME = re.compile(
    r'\s*(?:(?P<open>\()|(?P<close>\))|"(?P<phrase>[^"]*)"(?P<pstar>\*)?|(?P<word>[^\s()"]+))'
)


class TextQueryError(ValueError):
    """A malformed full-text query; the message says what and where."""


def parse_text_query(text: str) -> TextQuery:
    """Parse a ``_text``/``_content`` query (see the module docstring).

    Raises:
        TextQueryError: empty query, unbalanced parentheses or quotes, a dangling
            operator, or a query starting with NOT.
    """
    lexemes: list[tuple[str, Any]] = []
    position = 0
    stripped = text.strip()
    if not stripped:
        raise TextQueryError("the full-text query is empty")
    if stripped.count('"') % 2:
        raise TextQueryError(f"unbalanced quote in {text!r}")
    while position < len(text):
        match = _LEXEME.match(text, position)
        if match is None or match.end() == position:
            break
        position = match.end()
        if match.group("open"):
            lexemes.append(("(", None))
        elif match.group("close"):
            lexemes.append((")", None))
        elif match.group("phrase") is not None:
            tokens = tokenize(match.group("phrase"))
            if not tokens:
                raise TextQueryError(f'the phrase "{match.group("phrase")}" has no words')
            terms = [TextTerm(t) for t in tokens]
            if match.group("pstar"):
                terms[-1] = TextTerm(terms[-1].term, prefix=True)
            lexemes.append(("term", _term_or_phrase(terms)))
        else:
            word = match.group("word")
            if word in ("AND", "OR", "NOT"):
                lexemes.append((word, None))
                continue
            prefix = word.endswith("*")
            tokens = tokenize(word.rstrip("*") if prefix else word)
            if not tokens:
                continue
            terms = [TextTerm(t) for t in tokens]
            if prefix:
                terms[-1] = TextTerm(terms[-1].term, prefix=True)
            lexemes.append(("term", _term_or_phrase(terms)))
    if not lexemes:
        raise TextQueryError(f"the full-text query {text!r} has no searchable words")
    parser = _Parser(lexemes, text)
    result = parser.parse_or()
    if parser.index != len(lexemes):
        raise TextQueryError(f"unexpected {lexemes[parser.index][0]!r} in {text!r}")
    return result


def _term_or_phrase(terms: Sequence[TextTerm]) -> TextQuery:
    return terms[0] if len(terms) == 1 else TextPhrase(tuple(terms))


class _Parser:
    def __init__(self, lexemes: list[tuple[str, Any]], text: str) -> None:
        self.lexemes = lexemes
        self.index = 0
        self.text = text

    def _peek(self) -> str | None:
        return self.lexemes[self.index][0] if self.index < len(self.lexemes) else None

    def parse_or(self) -> TextQuery:
        operands = [self.parse_and()]
        while self._peek() == "OR":
            self.index += 1
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else TextOr(tuple(operands))

    def parse_and(self) -> TextQuery:
        operands = [self.parse_not()]
        while self._peek() in ("AND", "term", "("):
            if self._peek() == "AND":
                self.index += 1
            operands.append(self.parse_not())
        return operands[0] if len(operands) == 1 else TextAnd(tuple(operands))

    def parse_not(self) -> TextQuery:
        operand = self.parse_primary()
        while self._peek() == "NOT":
            self.index += 1
            excluded = self.parse_primary()
            operand = TextAnd((operand, TextNot(excluded)))
        return operand

    def parse_primary(self) -> TextQuery:
        kind = self._peek()
        if kind is None:
            raise TextQueryError(f"the full-text query {self.text!r} ends with an operator")
        if kind == "(":
            self.index += 1
            inner = self.parse_or()
            if self._peek() != ")":
                raise TextQueryError(f"missing ')' in {self.text!r}")
            self.index += 1
            return inner
        if kind == "term":
            value: TextQuery = self.lexemes[self.index][1]
            self.index += 1
            return value
        if kind == "NOT":
            raise TextQueryError(f"NOT must follow another term (write 'a NOT b') in {self.text!r}")
        raise TextQueryError(f"unexpected {kind!r} in {self.text!r}")


# -- matching -----------------------------------------------------------------------


def _term_matches(term: TextTerm, token: str) -> bool:
    return token.startswith(term.term) if term.prefix else token == term.term


def text_matches(query: TextQuery, tokens: Sequence[str]) -> bool:
    """Whether a tokenized document satisfies the query."""
    if isinstance(query, TextTerm):
        return any(_term_matches(query, token) for token in tokens)
    if isinstance(query, TextPhrase):
        width = len(query.terms)
        return any(
            all(_term_matches(term, tokens[start + i]) for i, term in enumerate(query.terms))
            for start in range(len(tokens) - width + 1)
        )
    if isinstance(query, TextNot):
        return not text_matches(query.operand, tokens)
    if isinstance(query, TextAnd):
        return all(text_matches(operand, tokens) for operand in query.operands)
    return any(text_matches(operand, tokens) for operand in query.operands)


def documents_match(query: TextQuery, documents: Iterable[str]) -> bool:
    """Whether the query matches the concatenation of the documents' tokens.

    Each document is tokenized separately so a phrase never spans two documents.
    """
    token_lists = [tokenize(document) for document in documents]
    if isinstance(query, TextPhrase):
        return any(text_matches(query, tokens) for tokens in token_lists)
    merged = [token for tokens in token_lists for token in tokens]
    return text_matches(query, merged)
