"""The built-in verifier: arithmetic and algebra claims in a memory's text, checked with SymPy.

What counts as a claim (everything else is left alone, so ordinary text gets no verdict):
- an equation or inequality between numbers with at least one operation: `12 * 7 = 84`,
  `2 + 2 is 5`, `17 divided by 4 equals 4.25`, `3^4 > 80`;
- an identity between expressions in single-letter variables with variables on both
  sides: `(a + b)^2 = a^2 + 2ab + b^2` (checked at several exact rational points, and
  symbolically when those disagree within rounding);
- a solution: an equation in one variable followed by `x = <number>`
  (`solving 3x + 4 = 19 gives x = 5`).
An equation with a bare variable on one side (`y = 2x + 1`, `i = i + 1`) is a definition or
an assignment, and one with variables on one side only (`x + 2 = 5`) is a problem, not a
claim: neither gets a verdict unless a solution follows.

Input is untrusted: only numbers, operators, parentheses, single letters and a few function
names reach the SymPy parser, every letter is bound to a plain Symbol, numbers are capped
in length and powers in size, so no text can run code or take the worker's time.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import sympy
from sympy.parsing.sympy_parser import (
    convert_xor,
    parse_expr,
    rationalize,
    standard_transformations,
)

from memstream.verification import MAX_CLAIMS, Verdict, verifier

NAME = "sympy-arithmetic"
MAX_CLAIM_CHARS = 200
MAX_NUMBER_DIGITS = 24
MAX_EXPONENT = 64
CHECK_POINTS = 6
TOLERANCE = sympy.Rational(1, 10**12)

_FUNCTIONS = {
    "sqrt": sympy.sqrt,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "log": sympy.log,
    "ln": sympy.log,
    "exp": sympy.exp,
    "pi": sympy.pi,
}
_WORDS = [
    (re.compile(r"\bthe square root of\s+", re.I), " sqrt "),
    (re.compile(r"\bsquare root of\s+", re.I), " sqrt "),
    (re.compile(r"\bmultiplied by\b", re.I), " * "),
    (re.compile(r"\bdivided by\b", re.I), " / "),
    (re.compile(r"\bto the power of\b", re.I), " ^ "),
    (re.compile(r"\bplus\b", re.I), " + "),
    (re.compile(r"\bminus\b", re.I), " - "),
    (re.compile(r"\btimes\b", re.I), " * "),
    (re.compile(r"\bsquared\b", re.I), " ^ 2 "),
    (re.compile(r"\bcubed\b", re.I), " ^ 3 "),
    (re.compile(r"\b(?:is equal to|equals|equal to|is exactly)\b", re.I), " = "),
    (re.compile(r"\b(?:is greater than|is more than)\b", re.I), " > "),
    (re.compile(r"\b(?:is less than|is smaller than)\b", re.I), " < "),
    # "2 + 2 is 4": "is" between a number (or a closing bracket) and a number
    (re.compile(r"(?<=[\d)])\s+is\s+(?=[-(\d])", re.I), " = "),
]
_SYMBOLS = str.maketrans(  # times, divide, middle dot, minus, en dash, squared, cubed
    {"\u00d7": "*", "\u00f7": "/", "\u00b7": "*", "\u2212": "-", "\u2013": "-"}
    | {"\u00b2": "^2", "\u00b3": "^3"}
)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_COEFFICIENT = re.compile(r"(?<![\w.])(\d+)([a-z]{1,3})\b")
"""`2ab` is 2*a*b: letters glued to a coefficient are variables."""
_PRODUCT = re.compile(r"(?<=[-+*/^(=]\s)([a-z]{2,3})(?=\s*(?:[-+*/^)=.,;]|$))")
"""`+ ab +`: a short letter run between operators is a product of variables."""
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[A-Za-z]+|\*\*|<=|>=|!=|==|[-+*/^()=<>]|\S")
_RELATIONS = {"=": "=", "==": "=", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "!=": "!="}
_OPERATORS = {"+", "-", "*", "/", "^", "**"}
_STEP_WORDS = {"so", "then", "gives", "give", "giving", "hence", "therefore", "thus", "means"}
_TRANSFORMS = (*standard_transformations, convert_xor, rationalize)
_GLOBALS: dict[str, object] = {
    name: getattr(sympy, name)
    for name in ("Integer", "Float", "Rational", "Symbol", "Function", "Mul", "Add", "Pow")
} | dict(_FUNCTIONS)


class NotAClaim(ValueError):
    """The text looked like mathematics but is not something that can be checked."""


@dataclass(frozen=True)
class _Claim:
    text: str
    left: sympy.Expr
    relation: str
    right: sympy.Expr
    start: int  # token indexes of the run: to pair an equation with its stated solution
    end: int

    @property
    def free(self) -> set[sympy.Symbol]:
        return self.left.free_symbols | self.right.free_symbols


def _normalise(text: str) -> str:
    text = _THOUSANDS.sub("", text.translate(_SYMBOLS))
    for pattern, replacement in _WORDS:
        text = pattern.sub(replacement, text)
    text = _COEFFICIENT.sub(
        lambda m: (
            m.group(0) if m.group(2) in _FUNCTIONS else m.group(1) + " " + " ".join(m.group(2))
        ),
        text,
    )
    return _PRODUCT.sub(lambda m: " ".join(m.group(1)), text)


def _math_mask(tokens: list[str]) -> list[bool]:
    """Which tokens are mathematics: numbers, operators, brackets, function names, and
    single letters chained to those (a letter alone is a word: "a", "I")."""

    def symbolic(token: str) -> bool:
        return (
            token[0].isdigit()
            or token in _OPERATORS
            or token in _RELATIONS
            or token in "()"
            or token.lower() in _FUNCTIONS
        )

    mask = [symbolic(t) for t in tokens]
    letters = [i for i, t in enumerate(tokens) if len(t) == 1 and t.isalpha()]
    changed = True
    while changed:
        changed = False
        for i in letters:
            if not mask[i] and ((i > 0 and mask[i - 1]) or (i + 1 < len(tokens) and mask[i + 1])):
                mask[i] = changed = True
    return mask


def _runs(tokens: list[str]) -> list[tuple[int, list[str]]]:
    """Maximal runs of mathematical tokens, each with the index of its first token."""
    runs: list[tuple[int, list[str]]] = []
    current: list[str] = []
    for i, is_math in enumerate(_math_mask(tokens)):
        if is_math:
            current.append(tokens[i])
            continue
        if current:
            runs.append((i - len(current), current))
        current = []
    if current:
        runs.append((len(tokens) - len(current), current))
    return runs


def _source(tokens: list[str]) -> str:
    """The tokens as a Python expression: products written out (`2 a b` is `2*a*b`), and a
    function name before a bare number applied to it (`sqrt 81` is `sqrt(81)`)."""
    parts: list[str] = []
    previous = ""  # the last operand-like token: a number, a letter, ")" or a function
    apply_to_next = False
    for token in tokens:
        name = token.lower()
        starts_operand = token[0].isalnum() or token == "("
        if starts_operand and previous and (previous[0].isalnum() or previous == ")"):
            if previous.lower() not in _FUNCTIONS or previous.lower() == "pi":
                parts.append("*")
        if name in _FUNCTIONS:
            parts.append(name)
            previous = name
            apply_to_next = name != "pi"
            continue
        if apply_to_next and token[0].isdigit():
            parts.append(f"({token})")
        else:
            parts.append(token)
        apply_to_next = False
        previous = token if starts_operand or token == ")" else ""
    return " ".join(parts)


def _parse(tokens: list[str]) -> sympy.Expr:
    source = _source(tokens)
    if not source or len(source) > MAX_CLAIM_CHARS:
        raise NotAClaim("empty or too long")
    if any(t[0].isdigit() and len(t.replace(".", "")) > MAX_NUMBER_DIGITS for t in tokens):
        raise NotAClaim("number too long")
    if not any(t[0].isdigit() or (len(t) == 1 and t.isalpha()) for t in tokens):
        raise NotAClaim("no operand")
    letters = {t: sympy.Symbol(t) for t in tokens if len(t) == 1 and t.isalpha()}
    try:
        unevaluated = parse_expr(
            source,
            local_dict=dict(letters),
            global_dict=dict(_GLOBALS),
            transformations=_TRANSFORMS,
            evaluate=False,
        )
    except Exception as exc:  # SyntaxError, TypeError, TokenError: not an expression
        raise NotAClaim(f"does not parse: {type(exc).__name__}") from exc
    if not isinstance(unevaluated, sympy.Expr):
        raise NotAClaim("not an expression")
    for node in sympy.preorder_traversal(unevaluated):
        if isinstance(node, sympy.Pow):
            exponent = node.exp
            if not exponent.is_Number or abs(exponent) > MAX_EXPONENT:
                raise NotAClaim("power too large to check")
    return sympy.sympify(unevaluated)


def _claims(text: str) -> list[_Claim]:
    tokens = _TOKEN.findall(_normalise(text))
    found: list[_Claim] = []
    for start, run in _runs(tokens):
        if len(found) >= MAX_CLAIMS:
            break  # a memory is a message, not a worksheet: the rest is not parsed
        relations = [i for i, t in enumerate(run) if t in _RELATIONS]
        if len(relations) != 1:
            continue  # "a = b = c" chains and runs without a relation are left alone
        split = relations[0]
        left_tokens, right_tokens = run[:split], run[split + 1 :]
        try:
            left, right = _parse(left_tokens), _parse(right_tokens)
        except NotAClaim:
            continue
        claim_text = " ".join(run)
        found.append(
            _Claim(claim_text, left, _RELATIONS[run[split]], right, start, start + len(run))
        )
    return found


def _has_operation(claim: _Claim) -> bool:
    return not (claim.left.is_Atom and claim.right.is_Atom)


def _difference_is_zero(difference: sympy.Expr, symbols: list[sympy.Symbol]) -> bool:
    """Whether `difference` vanishes identically: exact values at seeded rational points
    first; SymPy's simplify only when the points disagree within rounding."""
    rng = random.Random(7)
    checked = 0
    for _ in range(CHECK_POINTS):
        point = {s: sympy.Rational(rng.randint(-97, 97), rng.randint(1, 13)) for s in symbols}
        value = difference.subs(point)
        if value.has(sympy.zoo, sympy.nan):
            continue  # a pole: try another point
        number = sympy.N(value, 30)
        if not number.is_number:
            return False
        if abs(number) > TOLERANCE:
            return False
        checked += 1
    return checked > 0 or sympy.simplify(difference) == 0


def _numeric_verdict(claim: _Claim) -> Verdict | None:
    left, right = sympy.N(claim.left, 30), sympy.N(claim.right, 30)
    if not (left.is_real and right.is_real):
        return None
    scale = max(1, abs(left), abs(right))
    close = abs(left - right) <= TOLERANCE * scale
    holds = {
        "=": close,
        "!=": not close,
        "<": left < right and not close,
        ">": left > right and not close,
        "<=": left <= right or close,
        ">=": left >= right or close,
    }[claim.relation]
    detail = "" if holds else f"left side is {sympy.nsimplify(claim.left)}"
    return Verdict(claim.text, "verified" if holds else "refuted", NAME, detail)


def check(text: str) -> list[Verdict]:
    """The verdicts on every checkable claim in `text`, in order."""
    claims = _claims(text)
    verdicts: list[Verdict] = []
    used: set[int] = set()
    for index, claim in enumerate(claims):
        if index in used:
            continue
        free = sorted(claim.free, key=str)
        if not free:
            if _has_operation(claim):
                verdict = _numeric_verdict(claim)
                if verdict is not None:
                    verdicts.append(verdict)
            continue
        if claim.relation != "=":
            continue
        solution = _solution_for(claims, index, text)
        if solution is not None:
            used.add(index + 1)
            symbol, value = solution
            holds = _difference_is_zero((claim.left - claim.right).subs(symbol, value), [])
            verdicts.append(
                Verdict(
                    f"{claim.text}, {symbol} = {value}",
                    "verified" if holds else "refuted",
                    NAME,
                    "" if holds else f"{symbol} = {value} does not satisfy it",
                )
            )
            continue
        if claim.left.is_Symbol or claim.right.is_Symbol:
            continue  # a definition or an assignment
        if not (claim.left.free_symbols and claim.right.free_symbols):
            continue  # an equation to solve, not an identity
        holds = _difference_is_zero(claim.left - claim.right, free)
        verdicts.append(
            Verdict(
                claim.text,
                "verified" if holds else "refuted",
                NAME,
                "" if holds else "not an identity: the sides differ",
            )
        )
    return verdicts


def _solution_for(
    claims: list[_Claim], index: int, text: str
) -> tuple[sympy.Symbol, sympy.Expr] | None:
    """`x = <number>` right after an equation in x alone: the equation's stated solution."""
    claim = claims[index]
    if len(claim.free) != 1 or index + 1 >= len(claims):
        return None
    following = claims[index + 1]
    (symbol,) = claim.free
    if following.relation != "=" or following.left != symbol or following.right.free_symbols:
        return None
    between = _TOKEN.findall(_normalise(text))[claim.end : following.start]
    words = {t.lower() for t in between if t.isalpha() and len(t) > 1}
    if len(between) > 12 or not (words & _STEP_WORDS or set(between) & {",", ";", ":"}):
        return None
    return symbol, following.right


verifier(NAME)(check)
