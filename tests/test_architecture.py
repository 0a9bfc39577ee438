"""The design, read from the code so it cannot drift back silently.

* Layers run one way: handlers → services → the database; jobs call services; config is a leaf.
* Every collection is named once (``server/db.py`` ``Collections``) and has one owner (``OWNERS``):
  only the owner's module writes it. Which collection an attribute holds is read from how the
  services receive them: ``build_context`` (server/context.py) hands each constructor parameter
  ``database.collection(C.X)`` (writable, the owner only) or ``database.reader(C.X)`` (read-only),
  and the service keeps it as ``self._attr = param``.

The checker is tested on small violating snippets too, so it cannot pass by seeing nothing.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from server.db import INDEXES, OWNERS, Collections

ROOT = Path(__file__).resolve().parents[1]

WRITE_METHODS = {
    "insert_one", "insert_many", "update_one", "update_many", "replace_one", "delete_one", "delete_many",
    "find_one_and_update", "find_one_and_replace", "find_one_and_delete", "bulk_write", "create_index", "create_indexes", "drop",
}
WRITABLE_CALLS = {"collection", "own"}  # database.collection(C.X), or its alias in build_context
READ_ONLY_CALLS = {"reader", "view"}  # database.reader(C.X)
NAMES = {value: key for key, value in vars(Collections).items() if key.isupper()}
# Modules that still receive the database itself and pick collections by name. Their writes are
# still checked against the owners; only the "named once" rule waits for them.
RAW_DATABASE_ALLOWED: tuple[str, ...] = ()


@dataclass(frozen=True)
class Binding:
    collection: str
    writable: bool


@dataclass
class ClassInfo:
    module: str
    bases: list[str]
    params: list[str]
    attrs: dict[str, ast.expr] = field(default_factory=dict)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def source_files(*folders: str) -> dict[str, str]:
    out = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            out[module_name(path)] = path.read_text(encoding="utf-8")
    return out


def owns(module: str, collection: str) -> bool:
    owner = OWNERS.get(collection)
    return owner is not None and (module == owner or module.startswith(owner + "."))


def collection_name(node: ast.expr) -> str | None:
    """``C.LEADS`` / ``Collections.LEADS`` / ``"leads"``, as a declared collection name."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("C", "Collections"):
        return getattr(Collections, node.attr, None)
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES:
        return node.value
    return None


def is_database(node: ast.expr) -> bool:
    """``db``, ``database``, ``ctx.db``, ``self.database``: what hands out collections by name."""
    return (isinstance(node, ast.Name) and node.id in ("db", "database")) or (isinstance(node, ast.Attribute) and node.attr in ("db", "database"))


def direct_binding(node: ast.expr) -> Binding | None:
    """A collection taken right here: ``own(C.X)``, ``database.reader(C.X)``, ``db["x"]``."""
    if isinstance(node, ast.Call) and node.args:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        found = collection_name(node.args[0])
        if found and name in WRITABLE_CALLS:
            return Binding(found, True)
        if found and name in READ_ONLY_CALLS:
            return Binding(found, False)
    if isinstance(node, ast.Subscript) and is_database(node.value):
        found = collection_name(node.slice)
        if found:
            return Binding(found, True)  # the raw database hands out writable collections
    return None


def classes_of(sources: dict[str, str]) -> dict[str, ClassInfo]:
    found: dict[str, ClassInfo] = {}
    for module, src in sources.items():
        for node in ast.walk(ast.parse(src)):
            if not isinstance(node, ast.ClassDef):
                continue
            info = ClassInfo(module, [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases], [])
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if item.name == "__init__":
                        args = item.args
                        info.params = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)][1:]
                    for sub in ast.walk(item):
                        if isinstance(sub, ast.Assign):
                            for target in sub.targets:
                                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                                    info.attrs[target.attr] = sub.value
            found[node.name] = info
    return found


def context_bindings(context_src: str, classes: dict[str, ClassInfo]) -> tuple[dict[tuple[str, str], Binding], list[str]]:
    """What ``build_context`` hands each constructor parameter; and handing a writable collection
    to a class whose module does not own it is itself a violation."""
    bindings: dict[tuple[str, str], Binding] = {}
    problems: list[str] = []
    for node in ast.walk(ast.parse(context_src)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in classes):
            continue
        cls = classes[node.func.id]
        pairs = [(cls.params[i] if i < len(cls.params) else f"#{i}", a) for i, a in enumerate(node.args)]
        pairs += [(k.arg, k.value) for k in node.keywords if k.arg]
        for param, value in pairs:
            binding = direct_binding(value)
            if binding is None:
                continue
            bindings[(node.func.id, param)] = binding
            if binding.writable and not owns(cls.module, binding.collection):
                problems.append(f"server/context.py gives {node.func.id}({param}=) the writable {binding.collection!r}, owned by {OWNERS.get(binding.collection)}")
    return bindings, problems


class _Resolver:
    def __init__(self, module: str, tree: ast.Module, classes: dict[str, ClassInfo], bindings: dict[tuple[str, str], Binding]) -> None:
        self.module, self.tree, self.classes, self.bindings = module, tree, classes, bindings
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {
            n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        }

    def attr(self, class_name: str | None, attr: str, seen: frozenset = frozenset()) -> Binding | None:
        info = self.classes.get(class_name or "")
        if info is None or class_name in seen:
            return None
        expr = info.attrs.get(attr)
        if expr is not None:
            binding = direct_binding(expr)
            if binding is None and isinstance(expr, ast.Name):
                binding = self._param_of(class_name, expr.id, seen | {class_name})
            return binding
        for base in info.bases:
            found = self.attr(base, attr, seen | {class_name})
            if found is not None:
                return found
        return None

    def _param_of(self, class_name: str, param: str, seen: frozenset) -> Binding | None:
        found = self.bindings.get((class_name, param))
        if found is not None:
            return found
        info = self.classes[class_name]
        if param in info.params:  # a subclass may pass it on to its base: look the base's way
            for base in info.bases:
                if base in self.classes and base not in seen:
                    found = self._param_of(base, param, seen | {base})
                    if found is not None:
                        return found
        # A base class built only through its subclasses: the parameter is what build_context hands
        # those subclasses (the same parameter name), when they all agree.
        handed = {b for (cls, p), b in self.bindings.items() if p == param and class_name in self.classes[cls].bases} if param in info.params else set()
        return handed.pop() if len(handed) == 1 else None

    def expr(self, node: ast.expr, class_name: str | None, function: ast.AST | None, depth: int = 0) -> list[Binding | None]:
        """Every collection ``node`` may be (several when a helper is called with several)."""
        direct = direct_binding(node)
        if direct is not None:
            return [direct]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            return [self.attr(class_name, node.attr)]
        if isinstance(node, ast.Name) and function is not None and depth < 3:
            for sub in ast.walk(function):  # a local: `collection = self._x`
                if isinstance(sub, ast.Assign) and any(isinstance(t, ast.Name) and t.id == node.id for t in sub.targets):
                    return self.expr(sub.value, class_name, function, depth + 1)
            args = function.args
            params = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
            if node.id in params:  # a helper's parameter: whatever its callers in this module pass
                index = params.index(node.id) - (1 if params and params[0] == "self" else 0)
                found: list[Binding | None] = []
                for call, caller_class, caller in self.calls_of(function.name):
                    value = next((k.value for k in call.keywords if k.arg == node.id), None)
                    if value is None and index < len(call.args):
                        value = call.args[index]
                    if value is not None:
                        found += self.expr(value, caller_class, caller, depth + 1)
                return found or [None]
        return [None]

    def calls_of(self, name: str):
        for cls_name, function in self.enclosing():
            for sub in ast.walk(function):
                if isinstance(sub, ast.Call):
                    f = sub.func
                    if (isinstance(f, ast.Name) and f.id == name) or (isinstance(f, ast.Attribute) and f.attr == name and isinstance(f.value, ast.Name) and f.value.id == "self"):
                        yield sub, cls_name, function

    def enclosing(self):
        for node in self.tree.body:
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        yield node.name, item
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield None, node


def ownership_problems(sources: dict[str, str], context_src: str) -> list[str]:
    """Every write call, checked against the owner of the collection it writes."""
    classes = classes_of(sources)
    bindings, problems = context_bindings(context_src, classes)
    for module, src in sources.items():
        if module == "server.db":
            continue  # the registry itself: it creates every declared index
        tree = ast.parse(src)
        resolver = _Resolver(module, tree, classes, bindings)
        for class_name, function in resolver.enclosing():
            for node in ast.walk(function):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITE_METHODS):
                    continue
                where = f"{module}:{node.lineno} {node.func.attr}"
                for binding in resolver.expr(node.func.value, class_name, function):
                    if binding is None:
                        problems.append(f"{where}: cannot tell which collection this writes (receive it from build_context)")
                    elif not binding.writable:
                        problems.append(f"{where}: writes {binding.collection!r} through a read-only view (ask {OWNERS[binding.collection]})")
                    elif not owns(module, binding.collection):
                        problems.append(f"{where}: writes {binding.collection!r}, owned by {OWNERS[binding.collection]}")
    return problems


def imports_of(src: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return out


def layer_problems(sources: dict[str, str]) -> list[str]:
    problems = []
    for module, src in sources.items():
        layer = module.split(".")[0] if not module.startswith("server.services") else "services"
        imported = imports_of(src)
        tree = ast.parse(src)
        if layer == "handlers":
            bad = [i for i in imported if (i.startswith(("pymongo", "bson", "server.db")) and not i.startswith("pymongo.errors")) or i.startswith("jobs")]
            problems += [f"{module} imports {i}" for i in bad]
        if layer in ("handlers", "jobs"):
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr == "db":
                    problems.append(f"{module}:{node.lineno} reaches the database (.db); call a service")
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITE_METHODS | WRITABLE_CALLS | READ_ONLY_CALLS:
                    problems.append(f"{module}:{node.lineno} calls {node.func.attr}; call a service")
        if layer == "services":
            problems += [f"{module} imports {i}" for i in imported if i.startswith(("handlers", "jobs"))]
        if layer == "jobs":
            problems += [f"{module} imports {i}" for i in imported if i.startswith("handlers")]
        if layer == "config":
            problems += [f"{module} imports {i}" for i in imported if i.startswith(("server", "handlers", "jobs"))]
    return problems


def naming_problems(sources: dict[str, str]) -> list[str]:
    """Collections are named in server/db.py only: elsewhere ``C.X``, never a string."""
    problems = []
    for module, src in sources.items():
        if module == "server.db" or module.startswith(RAW_DATABASE_ALLOWED):
            continue
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Subscript) and is_database(node.value) and collection_name(node.slice):
                problems.append(f"{module}:{node.lineno} picks a collection by name; receive it from build_context")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITABLE_CALLS | READ_ONLY_CALLS:
                if node.args and isinstance(node.args[0], ast.Constant):
                    problems.append(f"{module}:{node.lineno} names a collection with a string; use server.db.C")
    return problems


def app_sources() -> dict[str, str]:
    return source_files("server", "handlers", "jobs", "config")


# ---------------------------------------------------------------- the rules, on the code
def test_every_collection_is_declared_once_with_one_owner():
    declared = set(NAMES)
    assert declared == set(OWNERS), "every collection in server/db.py Collections has an owner, and only those"
    assert {spec.collection for spec in INDEXES} <= declared
    sources = app_sources()
    for collection, owner in OWNERS.items():
        assert any(m == owner or m.startswith(owner + ".") for m in sources), f"{collection}: owner {owner} is not a module"


def test_layers_run_one_way():
    assert layer_problems(app_sources()) == []


def test_collections_are_named_only_in_server_db():
    assert naming_problems(app_sources()) == []


def test_only_the_owner_writes_its_collections():
    sources = app_sources()
    assert ownership_problems(sources, sources["server.context"]) == []


def test_the_lead_aggregate_has_one_writer_and_one_event_builder():
    sources = app_sources()
    for module, src in sources.items():
        tree = ast.parse(src)
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict) and module != "server.services.lead_store":
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                projection = all(isinstance(v, ast.Constant) and v.value in (0, 1) for v in node.values)
                # A timeline event has these keys; only lead_store.event builds one.
                assert projection or not {"lead_id", "kind", "actor_id", "actor_role"} <= keys, f"{module}:{node.lineno} builds a timeline event by hand; use lead_store.event"
            if isinstance(node, ast.Dict) and module != "server.services.users":
                for key, value in zip(node.keys, node.values):
                    if isinstance(key, ast.Constant) and key.value in ("$inc", "$set", "$setOnInsert") and isinstance(value, ast.Dict):
                        written = {k.value for k in value.keys if isinstance(k, ast.Constant)}
                        assert "open_leads" not in written, f"{module}:{node.lineno} changes open_leads; UserService.record_lead_changes is the one place"


# ---------------------------------------------------------------- the checker, on violations
CONTEXT = """
def build_context(database):
    own, view = database.collection, database.reader
    return (
        LeadStore(leads=own(C.LEADS)),
        PoolService(leads_view=view(C.LEADS), notes=own(C.NOTIFICATIONS)),
        SneakyService(leads=own(C.LEADS)),
    )
"""
OWNER = """
class LeadStore:
    def __init__(self, *, leads):
        self._leads = leads
    async def insert(self, doc):
        await self._leads.insert_one(doc)
"""


def _problems(**modules: str) -> list[str]:
    sources = {"server.services.lead_store": OWNER, **{f"server.services.{k}": v for k, v in modules.items()}}
    return ownership_problems(sources, CONTEXT)


def test_checker_passes_the_owner_writing_its_own_collection():
    assert _problems() == []


def test_checker_reports_a_write_through_a_read_only_view():
    pool = """
class PoolService:
    def __init__(self, *, leads_view, notes):
        self._leads = leads_view
    async def claim(self, lead_id):
        await self._leads.update_one({"_id": lead_id}, {"$set": {"owner_id": "me"}})
"""
    problems = _problems(pool=pool)
    assert any("server.services.pool:6 update_one" in p and "read-only" in p for p in problems), problems


def test_checker_reports_a_service_given_another_owners_collection():
    sneaky = """
class SneakyService:
    def __init__(self, *, leads):
        self._col = leads
    async def run(self):
        await self._col.update_many({}, {"$set": {"pool": True}})
"""
    problems = _problems(sneaky=sneaky)
    assert any("SneakyService(leads=)" in p for p in problems), problems
    assert any("server.services.sneaky:6 update_many: writes 'leads', owned by server.services.lead_store" in p for p in problems), problems


def test_checker_reports_a_collection_picked_from_the_database_and_written():
    raw = """
class RawService:
    def __init__(self, db):
        self._events = db["lead_events"]
    async def run(self, ids):
        await _mark(self._events, ids)

async def _mark(collection, ids):
    await collection.update_many({"_id": {"$in": ids}}, {"$set": {"fold": None}})
"""
    problems = _problems(raw=raw)
    assert any("server.services.raw:9 update_many: writes 'lead_events'" in p for p in problems), problems
    assert any("server.services.raw:4" in p for p in naming_problems({"server.services.raw": raw})), "picked by name"


def test_checker_reports_a_write_it_cannot_attribute():
    hidden = """
class HiddenService:
    def __init__(self, thing):
        self._thing = thing
    async def run(self):
        await self._thing.delete_many({})
"""
    problems = _problems(hidden=hidden)
    assert any("server.services.hidden:6 delete_many: cannot tell" in p for p in problems), problems


def test_layer_checker_reports_a_handler_reaching_the_database():
    handler = """
from pymongo import ReturnDocument
class LeadHandler:
    async def get(self):
        await self.ctx.db["leads"].find_one({})
"""
    problems = layer_problems({"handlers.leads": handler, "server.services.x": "from handlers.base import ApiHandler\n", "config.x": "import server.db\n"})
    assert any("handlers.leads imports pymongo" in p for p in problems), problems
    assert any("handlers.leads:5 reaches the database" in p for p in problems), problems
    assert any("server.services.x imports handlers.base" in p for p in problems), problems
    assert any("config.x imports server.db" in p for p in problems), problems
