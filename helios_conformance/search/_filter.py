"""The ``_filter`` parameter (FHIR R4 search_filter.html).

Grammar implemented::

    filter     = or
    or         = and ("or" and)*
    and        = unary ("and" unary)*
    unary      = "not" "(" filter ")" | "(" filter ")" | comparison
    comparison = path SP operator SP value
    path       = name ("." name)*          (a chain through reference parameters)
    value      = token | '"' string '"'    (\\" escapes a quote)

Each ``path`` names a search parameter of the type (or, through reference
parameters, of a chained type); the value is read as that parameter type reads its
values. Operators map onto the parameter semantics:

=========== ==================================================================
type        operators
=========== ==================================================================
string      eq (folded equality), ne, co (contains), sw (starts with), ew (ends with)
token       eq, ne (``system|code`` as in ordinary search)
reference   eq, ne, re (the reference as in ordinary search)
uri         eq, ne, co, sw, ew
date        eq ne gt lt ge le sa eb ap (the prefix rules), po (the ranges overlap)
number      eq ne gt lt ge le sa eb ap
quantity    eq ne gt lt ge le sa eb ap
every type  pr true|false (the parameter has a value / has none)
=========== ==================================================================

``in``, ``ni``, ``ss`` and ``sb`` need a terminology service and raise Unsupported
with the terminology capability id; any other combination raises Unsupported
(``search.filter``); filter sub-expressions in paths (``name[...]``) are refused the
same way.
"""

from __future__ import annotations

import re

from .._errors import InvalidSearch, Unsupported
from ._definitions import SearchParameterRegistry
from ._model import (
    FilterAnd,
    FilterComparison,
    FilterExpression,
    FilterNot,
    FilterOperator,
    FilterOr,
    MissingValue,
    ParamType,
    Prefix,
    SearchValue,
)

_OPERATORS_BY_TYPE: dict[ParamType, frozenset[str]] = {
    ParamType.STRING: frozenset({"eq", "ne", "co", "sw", "ew"}),
    ParamType.TOKEN: frozenset({"eq", "ne"}),
    ParamType.REFERENCE: frozenset({"eq", "ne", "re"}),
    ParamType.URI: frozenset({"eq", "ne", "co", "sw", "ew"}),
    ParamType.DATE: frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "po"}),
    ParamType.NUMBER: frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}),
    ParamType.QUANTITY: frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}),
}
_TERMINOLOGY = {
    "in": "search.modifier.in",
    "ni": "search.modifier.not_in",
    "ss": "search.modifier.subsumption",
    "sb": "search.modifier.subsumption",
}
_LEXEME = re.compile(r'\s*(?:(?P<paren>[()])|"(?P<string>(?:[^"\\]|\\.)*)"|(?P<word>[^\s()"]+))')


def _fail(message: str) -> InvalidSearch:
    return InvalidSearch(f"search parameter '_filter': {message}", parameter="_filter")


def _lex(text: str) -> list[tuple[str, str]]:
    lexemes: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _LEXEME.match(text, position)
        if match is None or match.end() == position:
            raise _fail(f"cannot read {text[position:]!r} (unbalanced quote?)")
        position = match.end()
        if match.group("paren"):
            lexemes.append((match.group("paren"), match.group("paren")))
        elif match.group("string") is not None:
            lexemes.append(("value", re.sub(r"\\(.)", r"\1", match.group("string"))))
        else:
            lexemes.append(("word", match.group("word")))
    return lexemes


class _Parser:
    def __init__(self, text: str, resource_type: str, registry: SearchParameterRegistry) -> None:
        self.text = text
        self.lexemes = _lex(text)
        self.index = 0
        self.resource_type = resource_type
        self.registry = registry

    def _peek(self) -> tuple[str, str] | None:
        return self.lexemes[self.index] if self.index < len(self.lexemes) else None

    def _take(self) -> tuple[str, str]:
        lexeme = self._peek()
        if lexeme is None:
            raise _fail(f"{self.text!r} ends too early")
        self.index += 1
        return lexeme

    def _keyword(self, word: str) -> bool:
        lexeme = self._peek()
        return lexeme is not None and lexeme[0] == "word" and lexeme[1] == word

    def parse(self) -> FilterExpression:
        if not self.lexemes:
            raise _fail("the filter is empty")
        expression = self.parse_or()
        if self._peek() is not None:
            raise _fail(f"unexpected {self._peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return expression

    def parse_or(self) -> FilterExpression:
        operands = [self.parse_and()]
        while self._keyword("or"):
            self.index += 1
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else FilterOr(tuple(operands))

    def parse_and(self) -> FilterExpression:
        operands = [self.parse_unary()]
        while self._keyword("and"):
            self.index += 1
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else FilterAnd(tuple(operands))

    def parse_unary(self) -> FilterExpression:
        if self._keyword("not"):
            self.index += 1
            if self._take()[0] != "(":
                raise _fail("'not' must be followed by '('")
            inner = self.parse_or()
            if self._take()[0] != ")":
                raise _fail(f"missing ')' in {self.text!r}")
            return FilterNot(inner)
        lexeme = self._peek()
        if lexeme is not None and lexeme[0] == "(":
            self.index += 1
            inner = self.parse_or()
            if self._take()[0] != ")":
                raise _fail(f"missing ')' in {self.text!r}")
            return inner
        return self.parse_comparison()

    def parse_comparison(self) -> FilterComparison:
        from ._query import _resolve_chain, parse_value

        kind, path = self._take()
        if kind != "word":
            raise _fail(f"expected a parameter name, found {path!r}")
        if "[" in path:
            raise Unsupported(
                f"_filter: sub-filters in paths ({path!r}) are not supported",
                capability="search.filter",
            )
        kind, operator_text = self._take()
        if kind != "word":
            raise _fail(f"expected an operator after {path!r}")
        try:
            operator = FilterOperator(operator_text.lower())
        except ValueError:
            raise _fail(
                f"{operator_text!r} is not a filter operator "
                f"({', '.join(o.value for o in FilterOperator)})"
            ) from None
        kind, raw = self._take()
        if kind not in ("word", "value"):
            raise _fail(f"expected a value after {path} {operator_text}")
        chain, resource_type, code = _resolve_chain(
            "_filter", self.resource_type, path, self.registry
        )
        definition = self.registry.get(resource_type, code)
        if definition is None:
            raise _fail(f"{resource_type} has no search parameter {code!r}")
        if operator.value in _TERMINOLOGY:
            raise Unsupported(
                f"_filter: the operator {operator.value} needs a terminology service",
                capability=_TERMINOLOGY[operator.value],
            )
        value: SearchValue
        if operator is FilterOperator.PR:
            if raw not in ("true", "false"):
                raise _fail(f"pr takes true or false, not {raw!r}")
            value = MissingValue(raw == "false")
        else:
            allowed = _OPERATORS_BY_TYPE.get(definition.type, frozenset())
            if operator.value not in allowed:
                raise Unsupported(
                    f"_filter: the operator {operator.value} is not supported on the "
                    f"{definition.type.value} parameter {code!r}",
                    capability="search.filter",
                )
            escaped = raw.replace("\\", "\\\\").replace(",", "\\,")
            if definition.type in (ParamType.STRING, ParamType.URI):
                escaped = raw.replace("\\", "\\\\")
            if definition.type in (ParamType.DATE, ParamType.NUMBER):
                prefix = operator.value if operator.value in {p.value for p in Prefix} else "eq"
                escaped = prefix + escaped
            elif definition.type is ParamType.QUANTITY:
                escaped = operator.value + raw.replace(",", "\\,")
            value = parse_value(
                "_filter", definition, definition.type, None, escaped, self.registry
            )
        return FilterComparison(
            path=path,
            operator=operator,
            parameter=definition,
            value=value,
            raw=raw,
            chain=chain,
        )


def parse_filter(
    text: str, resource_type: str, registry: SearchParameterRegistry
) -> FilterExpression:
    """Parse a ``_filter`` value for ``resource_type``.

    Raises:
        InvalidSearch: a syntax error or unknown parameter (``parameter`` is ``_filter``).
        Unsupported: an operator or construct outside the supported set (see module doc).
    """
    return _Parser(text, resource_type, registry).parse()
