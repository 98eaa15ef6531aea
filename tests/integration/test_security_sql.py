"""SQL is built only from fixed text, with user values as ``$n`` parameters: a static check, and attempts that fail.

The rule, checked on the syntax tree of every module that talks to PostgreSQL: the SQL argument of each
``fetch``/``fetchrow``/``fetchval``/``execute``/``executemany``/``prepare``/``cursor`` call is *fixed*, where fixed is
- a literal (string or number);
- a name whose every assignment is fixed (module constants, locals), or a parameter of a private (``_name``) or
  nested function at whose every call site in the module the argument is fixed (a public function's parameters
  are caller data, never fixed);
- an f-string, ``+``, ``%``, ``.format()``, ``.replace()`` or ``.join()`` over fixed parts, where ``.join`` takes a
  local list built from fixed items (literal elements, ``.append`` of fixed values);
- an element of a module-level literal table (``SORTS[sort]``): whatever the key, the result is one of the
  table's fixed values, or a KeyError; a loop variable over a literal tuple of fixed items;
- a constant of another repository module (``prod_repo._RETURNING``), fixed by the same rule there;
- ``len(...)`` (a number, as in ``f"${len(args)}"``), or the result of a function whose every ``return`` is fixed.
Anything else (an attribute of a request, a call to an unknown function, a comprehension) is not fixed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ADMIN
from tests.support.api import category, product

ROOT = Path(__file__).resolve().parents[2]
SQL_METHODS = frozenset({"fetch", "fetchrow", "fetchval", "execute", "executemany", "prepare", "cursor"})
STRING_METHODS = frozenset({"format", "replace", "join", "strip", "lower", "upper", "removeprefix", "removesuffix"})
#: Receivers of those method names that are not database connections (aiohttp's ``response.prepare(request)``).
NOT_SQL = frozenset({"response", "resp"})
Scope = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef
FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)


class Checker:
    def __init__(self, source: str) -> None:
        self.tree = ast.parse(source)
        self.parent: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node
        self._busy: set[tuple[int, str]] = set()

    # -- scopes --------------------------------------------------------------------------------------------------

    def scope_of(self, node: ast.AST) -> Scope:
        cur = self.parent.get(node)
        while cur is not None and not isinstance(cur, (ast.Module, *FUNCS)):
            cur = self.parent.get(cur)
        assert cur is not None
        return cur  # type: ignore[return-value]

    def own_nodes(self, scope: Scope) -> Iterator[ast.AST]:
        """The nodes of ``scope``, not those of functions nested in it."""
        todo = list(ast.iter_child_nodes(scope))
        while todo:
            node = todo.pop()
            yield node
            if not isinstance(node, (*FUNCS, ast.Lambda, ast.ClassDef)):
                todo.extend(ast.iter_child_nodes(node))

    def chain(self, scope: Scope) -> Iterator[Scope]:
        cur: ast.AST | None = scope
        while cur is not None:
            if isinstance(cur, (ast.Module, *FUNCS)):
                yield cur  # type: ignore[misc]
            cur = self.parent.get(cur)

    def assigned(self, scope: Scope, name: str) -> list[ast.expr] | None:
        values: list[ast.expr] = []
        found = False
        for node in self.own_nodes(scope):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(target)):
                        found = True
                        values.append(node.value)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
                if node.target.id == name and node.value is not None:
                    found = True
                    values.append(node.value)
            elif isinstance(node, (ast.For, ast.comprehension)) and any(
                isinstance(n, ast.Name) and n.id == name for n in ast.walk(node.target)
            ):
                found = True
                values += self.loop_values(node.target, node.iter, name)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("append", "extend", "insert")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == name
            ):
                values.extend(node.args[-1:])
        return values if found else None

    @staticmethod
    def loop_values(target: ast.expr, iterable: ast.expr, name: str) -> list[ast.expr]:
        """What ``name`` takes in ``for target in iterable`` when the iterable is a literal; else never fixed."""
        never: list[ast.expr] = [ast.Name(id="<loop variable>")]
        if not isinstance(iterable, (ast.Tuple, ast.List)):
            return never
        if isinstance(target, ast.Name):
            return list(iterable.elts)
        if isinstance(target, ast.Tuple):
            names = [t.id if isinstance(t, ast.Name) else None for t in target.elts]
            if name in names and all(isinstance(e, ast.Tuple) and len(e.elts) == len(names) for e in iterable.elts):
                return [e.elts[names.index(name)] for e in iterable.elts]  # type: ignore[attr-defined]
        return never

    def imported_constant(self, module: str, attr: str) -> bool:
        """``module.attr`` where ``module`` is a repository module imported here and ``attr`` fixed in it."""
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and node.module == "shared.store":
                for alias in node.names:
                    if (alias.asname or alias.name) == module:
                        other = Checker((ROOT / "shared" / "store" / f"{alias.name}.py").read_text())
                        return other.fixed_name(attr, other.tree)
        return False

    def function(self, scope: Scope, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        for s in self.chain(scope):
            for node in self.own_nodes(s):
                if isinstance(node, FUNCS) and node.name == name:
                    return node
        return None

    # -- the rule ------------------------------------------------------------------------------------------------

    def fixed(self, expr: ast.AST, scope: Scope) -> bool:
        match expr:
            case ast.Constant(value=value):
                return isinstance(value, (str, int, float)) or value is None
            case ast.JoinedStr(values=values):
                return all(self.fixed(v.value, scope) if isinstance(v, ast.FormattedValue) else True for v in values)
            case ast.BinOp(left=left, op=ast.Add() | ast.Mod(), right=right):
                return self.fixed(left, scope) and self.fixed(right, scope)
            case ast.List(elts=elts) | ast.Tuple(elts=elts):
                return all(self.fixed(e, scope) for e in elts)
            case ast.IfExp(body=body, orelse=orelse):
                return self.fixed(body, scope) and self.fixed(orelse, scope)
            case ast.Subscript(value=ast.Name(id=table)):
                values = self.assigned(self.tree, table)
                return values is not None and all(
                    isinstance(v, ast.Dict) and all(self.fixed(x, self.tree) for x in v.values) for v in values
                )
            case ast.Name(id=name):
                return self.fixed_name(name, scope)
            case ast.Attribute(value=ast.Name(id=module), attr=attr):
                return self.imported_constant(module, attr)
            case ast.Call(func=ast.Name(id="len")):
                return True
            case ast.Call(func=ast.Attribute(value=receiver, attr=method), args=args, keywords=keywords):
                if method not in STRING_METHODS:
                    return False
                return all(self.fixed(x, scope) for x in [receiver, *args, *(k.value for k in keywords)])
            case ast.Call(func=ast.Name(id=fname), args=args):
                func = self.function(scope, fname)
                if func is None:
                    return False
                returns = [n.value for n in self.own_nodes(func) if isinstance(n, ast.Return) and n.value]
                return bool(returns) and all(self.fixed(r, func) for r in returns)
        return False

    def fixed_name(self, name: str, scope: Scope) -> bool:
        key = (id(scope), name)
        if key in self._busy:
            return True  # a cycle adds nothing that is not checked elsewhere
        self._busy.add(key)
        try:
            for s in self.chain(scope):
                if isinstance(s, FUNCS) and name in {a.arg for a in [*s.args.args, *s.args.kwonlyargs]}:
                    return self.fixed_param(s, name)
                values = self.assigned(s, name)
                if values is not None:
                    return all(self.fixed(v, s) for v in values)
            return False
        finally:
            self._busy.discard(key)

    def fixed_param(self, func: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> bool:
        nested = not isinstance(self.parent.get(func), ast.Module)
        if not (nested or func.name.startswith("_")):
            return False
        index = [a.arg for a in func.args.args].index(name) if name in [a.arg for a in func.args.args] else None
        calls = [
            n
            for n in ast.walk(self.tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == func.name
        ]
        args: list[ast.expr] = []
        for call in calls:
            args += [k.value for k in call.keywords if k.arg == name]
            if index is not None and index < len(call.args):
                args.append(call.args[index])
        return bool(calls) and len(args) == len(calls) and all(self.fixed(a, self.scope_of(a)) for a in args)

    def violations(self) -> Iterator[tuple[int, str]]:
        for node in ast.walk(self.tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in SQL_METHODS
                and not (isinstance(node.func.value, ast.Name) and node.func.value.id in NOT_SQL)
                and node.args
                and not self.fixed(node.args[0], self.scope_of(node))
            ):
                yield node.lineno, ast.unparse(node.args[0])[:80]


def sql_modules() -> list[Path]:
    found = [*sorted((ROOT / "shared" / "store").glob("*.py")), *sorted((ROOT / "worker").rglob("*.py"))]
    found += [*sorted((ROOT / "api").rglob("*.py")), ROOT / "shared" / "store" / "pool.py"]
    return [p for p in found if "conn" in p.read_text() or "pool" in p.read_text()]


@pytest.mark.parametrize("path", sql_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_sql_is_built_only_from_fixed_text(path: Path) -> None:
    assert list(Checker(path.read_text()).violations()) == []


BAD = """
async def by_slug(conn, slug):
    return await conn.fetchrow(f"SELECT * FROM products WHERE slug = '{slug}'")

async def sorted_by(conn, sort):
    return await conn.fetch("SELECT * FROM products ORDER BY " + sort)

def _where(column):
    return f"WHERE {column} = $1"

async def where(conn, request):
    return await conn.fetch("SELECT 1 " + _where(request.query["col"]), 1)

async def joined(conn, names):
    parts = []
    for n in names:
        parts.append(n)
    return await conn.fetch("SELECT " + ", ".join(parts))
"""

GOOD = """
from typing import Final

_SELECT: Final = "SELECT id FROM products"
SORTS = {"price": "price, id", "-price": "price DESC, id DESC"}

def _event(event_type, n):
    return f"INSERT INTO outbox (type) VALUES ('{event_type}'), ${n}"

async def page(conn, sort, q, limit):
    args = []
    def param(v):
        args.append(v)
        return f"${len(args)}"
    where = ["deleted_at IS NULL"]
    if q:
        where.append(f"search @@ websearch_to_tsquery({param(q)})")
    order = SORTS[sort]
    sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT {param(limit)}"
    return await conn.fetch(sql, *args)

async def created(conn):
    return await conn.execute(_SELECT + _event("product.created", 3))
"""


def test_the_checker_finds_sql_made_from_caller_data() -> None:
    assert [line for line, _ in Checker(BAD).violations()] == [3, 6, 12, 18]


def test_the_checker_accepts_fixed_fragments_and_placeholders() -> None:
    assert list(Checker(GOOD).violations()) == []


# -- attempts through the API ----------------------------------------------------------------------------------------

INJECTIONS = [
    "'; DROP TABLE products; --",
    "x' OR '1'='1",
    "1; SELECT pg_sleep(5)",
    "$1",
    "\\x27 OR 1=1",
    "') OR true --",
]


@pytest.mark.parametrize("attack", INJECTIONS)
async def test_injection_attempts_through_every_input_change_nothing(client, pg, attack: str) -> None:
    # Given a catalog
    await category(client, "Tools")
    await product(client, "Saw", category="tools")
    before = await pg.fetchval("SELECT count(*) FROM products")
    # When user text reaches every place SQL is made from: slugs, q, cursor, category, sort, and a write's fields
    attempts = [
        await client.get(f"/api/products/{attack}"),
        await client.get(f"/api/categories/{attack}"),
        await client.get("/api/products", params={"q": attack}),
        await client.get("/api/products", params={"category": attack}),
        await client.get("/api/products", params={"sort": attack}),
        await client.get("/api/products", params={"cursor": attack}),
        await client.get("/api/records", params={"cursor": attack}),
        await client.get("/api/products", params={"min_price": attack}),
        await client.get(f"/hello/{attack}"),
        await client.patch(f"/api/products/{attack}", json={"stock": 1}, headers=ADMIN),
        await client.post("/api/products", json={"name": attack, "category": attack, "price": "1"}, headers=ADMIN),
    ]
    # Then nothing is a 5xx, nothing matched more than it should, and every table is as it was
    assert all(r.status < 500 for r in attempts), [(str(r.url), r.status) for r in attempts]
    listing = await (await client.get("/api/products", params={"q": attack})).json()
    assert listing["items"] == []
    assert await pg.fetchval("SELECT count(*) FROM products") == before
    assert await pg.fetchval("SELECT count(*) FROM categories") == 1
