"""POST/GET /v1/graphql: GraphQL documents answered by the same Service as REST.

graphql-core parses and validates only (documents cached, bounded, keyed by their hash);
the validated selection is then walked here and each field becomes one of our reads or
writes: a connection is `Service.list` (filter, sort, keyset cursor, count), one record
`Service.get` (with `asOf`), a ref field one `Service.read_many` for the whole level, a
mutation `Service.create`/`update`/`delete`. Every rule REST enforces holds because it is
REST's own code that runs. graphql-core's executor never builds the result.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    build_schema,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)
from graphql.execution.collect_fields import collect_fields
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.validation import NoSchemaIntrospectionCustomRule
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from charpente.compile.graphql_schema import GraphSchema, GraphType, graph_schema
from charpente.compile.limits import route_limits
from charpente.compile.policy import field_view
from charpente.compile.request import MAX_LIMIT
from charpente.design.model import Design
from charpente.errors import ApiError, BadRequest, TooManyRequests
from charpente.http.clientip import IPNetwork, client_ip
from charpente.http.docs import DOCS_CSP, STATIC_DIR
from charpente.http.problems import request_id_of
from charpente.http.ratelimit import Policies, rate_key_ip
from charpente.http.rest import JSON, caller_of, decode_json_body, encode_json
from charpente.runtime.caller import Caller, rule_auth
from charpente.runtime.ratelimit import Limiter, limit_headers
from charpente.runtime.service import IdempotencyKey, ListResult, Precondition, Service

__all__ = ["GraphqlEndpoint", "Limits", "graphql_routes"]

_MAX_DOCUMENTS = 500  # parsed and validated documents kept, all schemas together
_MAX_VIEWS = 32  # schemas kept, one per set of fields some callers may never read
_MAX_CALLERS = 10_000  # callers whose set is remembered; beyond that it starts over


@dataclass(frozen=True, slots=True)
class Limits:
    """What a document may ask, checked before any SQL."""

    max_length: int = 20_000  # characters of the document
    max_tokens: int = 2_000
    max_depth: int = 8  # nested selections, fragments expanded
    max_aliases: int = 30
    max_nodes: int = 50_000  # the sum over paths of the product of page sizes (GitHub's rule)
    max_reads: int = 50  # connections in a document: each is one read for its whole level


@dataclass(slots=True)
class _View:
    """One caller's schema: the field map and graphql-core's schema."""

    graph: GraphSchema
    schema: GraphQLSchema = field(init=False)
    key: str = field(init=False)  # the SDL's hash: what a cached document was validated on

    def __post_init__(self) -> None:
        self.schema = build_schema(self.graph.sdl)
        self.key = hashlib.sha256(self.graph.sdl.encode()).hexdigest()


@dataclass(slots=True)
class _Run:
    """One operation being answered."""

    view: _View
    caller: Caller
    request_id: str | None
    fragments: dict[str, FragmentDefinitionNode]
    variables: dict[str, Any]
    errors: list[dict[str, Any]] = field(default_factory=list)
    charge: Charge | None = None  # the design's rate limits, per root field


Charge = Callable[[str, str], Awaitable[None]]
"""Charges one operation, as REST's `(method, path)`, to the design's rate limits; raises
TooManyRequests when one refuses."""


class _RefusedError(Exception):
    """A document refused before execution: its GraphQL errors."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("refused")
        self.errors = errors


class GraphqlEndpoint:
    """The GraphQL edge of one design over one Service."""

    def __init__(self, design: Design, service: Service, limits: Limits | None = None) -> None:
        self.design = design
        self.service = service
        self.limits = limits or Limits()
        self.full = _View(graph_schema(design))
        self._views: OrderedDict[frozenset[tuple[str, str]], _View] = OrderedDict()
        self._callers: dict[tuple[object, ...], frozenset[tuple[str, str]]] = {}
        self._documents: OrderedDict[str, DocumentNode | list[dict[str, Any]]] = OrderedDict()

    def view(self, caller: Caller) -> _View:
        """The schema this caller sees: without the fields it may never read."""
        key = (caller.id, caller.role, caller.system, caller.flags, caller.mfa)
        hidden = self._callers.get(key)
        if hidden is None:
            if len(self._callers) >= _MAX_CALLERS:
                self._callers.clear()
            auth = rule_auth(caller)
            hidden = self._callers[key] = frozenset(
                (r.name, name)
                for r in self.design.resources.values()
                for name in field_view(r, auth).hidden
            )
        if not hidden:
            return self.full
        found = self._views.get(hidden)
        if found is None:
            by_resource: dict[str, frozenset[str]] = {}
            for resource, name in hidden:
                by_resource[resource] = by_resource.get(resource, frozenset()) | {name}
            found = self._views[hidden] = _View(graph_schema(self.design, by_resource))
            if len(self._views) > _MAX_VIEWS:
                self._views.popitem(last=False)
        else:
            self._views.move_to_end(hidden)
        return found

    # --- documents ---------------------------------------------------------------------

    def document(self, text: str, view: _View) -> DocumentNode:
        """`text` parsed and validated against `view` (remembered by its hash);
        _RefusedError otherwise."""
        if len(text) > self.limits.max_length:
            raise _RefusedError(
                [_error(f"the document is over {self.limits.max_length} characters")]
            )
        key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        key = f"{view.key}:{key}"  # a document is valid against one schema
        documents = self._documents
        found = documents.get(key)
        if found is None:
            found = documents[key] = self._checked(text, view.schema)
            if len(documents) > _MAX_DOCUMENTS:
                documents.popitem(last=False)
        else:
            documents.move_to_end(key)
        if isinstance(found, list):
            raise _RefusedError(found)
        return found

    def _checked(self, text: str, schema: GraphQLSchema) -> DocumentNode | list[dict[str, Any]]:
        try:
            document = parse(text, max_tokens=self.limits.max_tokens)
        except GraphQLError as exc:
            return [_located(exc)]
        rules = list(specified_rules)
        if not self.design.graphql_introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        problems = validate(schema, document, rules)
        return [_located(e) for e in problems] if problems else document

    # --- execution ---------------------------------------------------------------------

    async def execute(
        self,
        text: str,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
        caller: Caller,
        *,
        request_id: str | None = None,
        queries_only: bool = False,
        charge: Charge | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, the GraphQL response) for one request."""
        try:
            view = self.view(caller)
            document = self.document(text, view)
            operation = get_operation_ast(document, operation_name)
            if operation is None:
                raise _RefusedError([_error("name the operation to run (operationName)")])
            if operation.operation is OperationType.SUBSCRIPTION:
                raise _RefusedError([_error("subscriptions are not served over HTTP")])
            if queries_only and operation.operation is not OperationType.QUERY:
                raise _RefusedError([_error("GET runs queries only: send mutations with POST")])
            coerced = get_variable_values(
                view.schema, operation.variable_definitions or (), dict(variables or {})
            )
            if isinstance(coerced, list):
                raise _RefusedError([_located(e) for e in coerced])
            fragments = {
                d.name.value: d
                for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            run = _Run(view, caller, request_id, fragments, coerced, charge=charge)
            self._check_limits(operation, run)
        except _RefusedError as refused:
            return 400, {"errors": refused.errors}
        if operation.operation is OperationType.MUTATION:
            data = await self._mutation(operation, run)
        else:
            data = await self._query(operation, run)
        body: dict[str, Any] = {"data": data}
        if run.errors:
            body["errors"] = run.errors
        return 200, body

    def _check_limits(self, operation: OperationDefinitionNode, run: _Run) -> None:
        aliases = 0
        nodes = 0
        reads = 0

        def walk(selection: SelectionSetNode, depth: int, size: int, seen: frozenset[str]) -> None:
            nonlocal aliases, nodes, reads
            if depth > self.limits.max_depth:
                raise _RefusedError(
                    [_error(f"the document nests deeper than {self.limits.max_depth}")]
                )
            for node in selection.selections:
                if isinstance(node, FragmentSpreadNode):
                    name = node.name.value
                    fragment = run.fragments.get(name)
                    if fragment is not None and name not in seen:
                        walk(fragment.selection_set, depth, size, seen | {name})
                    continue
                if isinstance(node, InlineFragmentNode):
                    walk(node.selection_set, depth, size, seen)
                    continue
                assert isinstance(node, FieldNode)
                if node.alias is not None:
                    aliases += 1
                inner = size
                if _is_connection(node, run.view.schema, run.view.graph):
                    inner = size * _page_size(node, run.variables)
                    nodes += inner
                    reads += 1
                if node.selection_set is not None:
                    walk(node.selection_set, depth + 1, inner, seen)

        walk(operation.selection_set, 1, 1, frozenset())
        self._check_counts(aliases, reads, nodes)

    def _check_counts(self, aliases: int, reads: int, nodes: int) -> None:
        if aliases > self.limits.max_aliases:
            raise _RefusedError(
                [_error(f"the document uses over {self.limits.max_aliases} aliases")]
            )
        if reads > self.limits.max_reads:
            message = f"the document may cost {reads} reads, over the {self.limits.max_reads}"
            raise _RefusedError([_error(message + " allowed: ask for smaller pages")])
        if nodes > self.limits.max_nodes:
            message = f"the document may return {nodes} records, over the {self.limits.max_nodes}"
            raise _RefusedError([_error(message + " allowed: ask for smaller pages")])

    async def _query(self, operation: OperationDefinitionNode, run: _Run) -> dict[str, Any]:
        root = run.view.schema.query_type
        assert root is not None
        data: dict[str, Any] = {}
        for key, nodes in self._collect(root, [operation.selection_set], run).items():
            node = nodes[0]
            name = node.name.value
            try:
                if name == "__typename":
                    data[key] = "Query"
                elif name in ("__schema", "__type"):
                    data[key] = self._introspect(operation, key, run)
                elif name in run.view.graph.lists:
                    args = self._args(root, node, run)
                    await self._charge(run, "GET", run.view.graph.lists[name])
                    data[key] = await self._connection(
                        run.view.graph.lists[name], args, nodes, run, [key]
                    )
                else:
                    args = self._args(root, node, run)
                    await self._charge(run, "GET", run.view.graph.ones[name], "id")
                    data[key] = await self._one(run.view.graph.ones[name], args, nodes, run, [key])
            except ApiError as exc:
                data[key] = None
                run.errors.append(_api_error(exc, node, [key]))
        return data

    async def _mutation(self, operation: OperationDefinitionNode, run: _Run) -> dict[str, Any]:
        root = run.view.schema.mutation_type
        assert root is not None
        data: dict[str, Any] = {}
        service = self.service
        for key, nodes in self._collect(root, [operation.selection_set], run).items():
            node = nodes[0]
            name = node.name.value
            try:
                if name == "__typename":
                    data[key] = "Mutation"
                    continue
                args = self._args(root, node, run)
                await self._charge_write(run, name)
                if name in run.view.graph.deletes:
                    resource = run.view.graph.deletes[name]
                    await service.delete(
                        resource,
                        str(args["id"]),
                        if_match=_precondition(args),
                        request_id=run.request_id,
                        caller=run.caller,
                    )
                    data[key] = True
                    continue
                if name in run.view.graph.creates:
                    resource = run.view.graph.creates[name]
                    record = await self._create(resource, args, run)
                else:
                    resource = run.view.graph.updates[name]
                    item = await service.update(
                        resource,
                        str(args["id"]),
                        dict(args["patch"]),
                        if_match=_precondition(args),
                        request_id=run.request_id,
                        caller=run.caller,
                    )
                    record = item.record
                objects = await self._objects(
                    run.view.graph.types[resource], [record], nodes, run, [key]
                )
                data[key] = objects[0]
            except ApiError as exc:
                data[key] = None
                run.errors.append(_api_error(exc, node, [key]))
        return data

    async def _charge(self, run: _Run, method: str, resource: str, item: str = "") -> None:
        """Charge one root field to the limits REST's route for it has (not `all`: the
        request itself was charged to it); the same buckets as REST."""
        if run.charge is not None:
            path = f"/v{self.design.api_version}/{resource}" + (f"/{item}" if item else "")
            await run.charge(method, path)

    async def _charge_write(self, run: _Run, name: str) -> None:
        graph = run.view.graph
        if name in graph.creates:
            await self._charge(run, "POST", graph.creates[name])
        elif name in graph.updates:
            await self._charge(run, "PATCH", graph.updates[name], "id")
        elif name in graph.deletes:
            await self._charge(run, "DELETE", graph.deletes[name], "id")

    async def _create(self, resource: str, args: Mapping[str, Any], run: _Run) -> dict[str, Any]:
        key = args.get("idempotencyKey")
        idempotency = None
        if key is not None:
            idempotency = IdempotencyKey(
                str(key), f"graphql {resource}", lambda record: (encode_json(record), None)
            )
        created = await self.service.create(
            resource,
            dict(args["input"]),
            request_id=run.request_id,
            idempotency=idempotency,
            caller=run.caller,
        )
        if created.replay is not None:
            replayed = msgspec.json.decode(created.replay.body)
            assert isinstance(replayed, dict)
            return replayed
        assert created.item is not None
        return created.item.record

    async def _one(
        self,
        resource: str,
        args: Mapping[str, Any],
        nodes: list[FieldNode],
        run: _Run,
        path: list[str | int],
    ) -> dict[str, Any] | None:
        graph = run.view.graph.types[resource]
        params = [("fields", ",".join(self._columns(graph, nodes, run)))]
        if args.get("asOf") is not None:
            params.append(("as_of", str(args["asOf"])))
        try:
            item = await self.service.get(resource, str(args["id"]), params, caller=run.caller)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return (await self._objects(graph, [item.record], nodes, run, path))[0]

    async def _connection(
        self,
        resource: str,
        args: Mapping[str, Any],
        nodes: list[FieldNode],
        run: _Run,
        path: list[str | int],
    ) -> dict[str, Any] | None:
        pages = await self._connections(resource, args, nodes, None, run, path)
        return pages.get("")

    async def _connections(
        self,
        resource: str,
        args: Mapping[str, Any],
        nodes: list[FieldNode],
        under: tuple[str, list[str]] | None,
        run: _Run,
        path: list[str | int],
    ) -> dict[str, dict[str, Any]]:
        """A connection's answer: at the root (under "" ), or for each parent id of a level
        (`under`: the ref field and the parents), one read and one walk for them all."""
        graph = run.view.graph.types[resource]
        connection = run.view.schema.get_type(f"{graph.name}Connection")
        edge = run.view.schema.get_type(f"{graph.name}Edge")
        assert isinstance(connection, GraphQLObjectType)
        assert isinstance(edge, GraphQLObjectType)
        parts = self._collect(connection, _selections(nodes), run)
        record_nodes: list[FieldNode] = list(parts.get_nodes("nodes"))
        edge_nodes = parts.get_nodes("edges")
        edge_parts = self._collect(edge, _selections(edge_nodes), run) if edge_nodes else {}
        for key_nodes in edge_parts.values():
            record_nodes += [n for n in key_nodes if n.name.value == "node"]
        columns = self._columns(graph, record_nodes, run)
        params = _list_params(columns, args, counted=bool(parts.get_nodes("totalCount")))
        if under is None:
            pages = {"": await self.service.list(resource, params, caller=run.caller)}
        else:
            via, parents = under
            pages = await self.service.list_under(resource, params, via, parents, caller=run.caller)
        rows = [row for page in pages.values() for row in page.data]
        objects = iter(await self._objects(graph, rows, record_nodes, run, [*path, "nodes"]))
        answers: dict[str, dict[str, Any]] = {}
        for id, page in pages.items():
            mine = [next(objects) for _ in page.data]
            answers[id] = self._page(parts, edge_parts, connection.name, page, mine, run)
        return answers

    def _page(
        self,
        parts: _Collected,
        edge_parts: Mapping[str, list[FieldNode]],
        name: str,
        page: ListResult,
        objects: list[dict[str, Any]],
        run: _Run,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, key_nodes in parts.items():
            field = key_nodes[0].name.value
            if field == "nodes":
                out[key] = objects
            elif field == "edges":
                out[key] = [_edge(edge_parts, obj) for obj in objects]
            elif field == "pageInfo":
                info = {"hasNextPage": page.next_cursor is not None, "endCursor": page.next_cursor}
                out[key] = _pick(info, key_nodes, "PageInfo", self, run)
            elif field == "totalCount":
                out[key] = page.total
            elif field == "__typename":
                out[key] = name
        return out

    async def _objects(
        self,
        graph: GraphType,
        rows: Sequence[Mapping[str, Any]],
        nodes: list[FieldNode],
        run: _Run,
        path: list[str | int],
    ) -> list[dict[str, Any]]:
        """The selection of `nodes` on each of `rows`, one read per ref field for them all."""
        object_type = run.view.schema.get_type(graph.name)
        assert isinstance(object_type, GraphQLObjectType)
        out: list[dict[str, Any]] = [{} for _ in rows]
        for key, key_nodes in self._collect(object_type, _selections(nodes), run).items():
            name = key_nodes[0].name.value
            if name == "__typename":
                for obj in out:
                    obj[key] = graph.name
                continue
            spec = graph.fields[name]
            if spec.many is not None:
                args = self._args(object_type, key_nodes[0], run)
                parents = [str(row["id"]) for row in rows]
                try:
                    pages = await self._connections(
                        spec.many, args, key_nodes, (spec.via or "", parents), run, [*path, key]
                    )
                except ApiError as exc:
                    pages = {}
                    run.errors.append(_api_error(exc, key_nodes[0], [*path, key]))
                for i, row in enumerate(rows):
                    out[i][key] = pages.get(str(row["id"]))
            elif spec.ref is not None:
                ids = [str(row[name]) for row in rows if row.get(name) is not None]
                found = await self.service.read_many(spec.ref, ids, caller=run.caller)
                targets = list(found.values())
                inner = await self._objects(
                    run.view.graph.types[spec.ref], targets, key_nodes, run, [*path, key]
                )
                by_id = {str(t["id"]): obj for t, obj in zip(targets, inner, strict=True)}
                for i, row in enumerate(rows):
                    value = row.get(name)
                    out[i][key] = None if value is None else by_id.get(str(value))
            else:
                for i, row in enumerate(rows):
                    out[i][key] = row.get(name)
        return out

    def _columns(self, graph: GraphType, nodes: list[FieldNode], run: _Run) -> list[str]:
        """The stored fields a selection reads: id and version always."""
        object_type = run.view.schema.get_type(graph.name)
        assert isinstance(object_type, GraphQLObjectType)
        wanted = {"id": None, "version": None}
        for key_nodes in self._collect(object_type, _selections(nodes), run).values():
            spec = graph.fields.get(key_nodes[0].name.value)
            if spec is not None and spec.column is not None:
                wanted[spec.column] = None
        return list(wanted)

    def _collect(
        self, object_type: GraphQLObjectType, selections: Iterable[SelectionSetNode], run: _Run
    ) -> _Collected:
        merged = _Collected()
        for selection in selections:
            fields = collect_fields(
                run.view.schema, run.fragments, run.variables, object_type, selection
            )
            for key, nodes in fields.items():
                merged.setdefault(key, []).extend(nodes)
        return merged

    def _args(self, parent: GraphQLObjectType, node: FieldNode, run: _Run) -> dict[str, Any]:
        definition = parent.fields[node.name.value]
        try:
            return get_argument_values(definition, node, run.variables)
        except GraphQLError as exc:
            raise BadRequest(detail=exc.message) from None

    def _introspect(self, operation: OperationDefinitionNode, key: str, run: _Run) -> Any:
        """Introspection fields, answered by graphql-core (the schema, not our records)."""
        from graphql import execute_sync

        single = OperationDefinitionNode(
            operation=OperationType.QUERY,
            selection_set=SelectionSetNode(
                selections=tuple(
                    s
                    for s in operation.selection_set.selections
                    if isinstance(s, FieldNode) and (s.alias or s.name).value == key
                )
            ),
            variable_definitions=operation.variable_definitions,
        )
        document = DocumentNode(definitions=(single, *run.fragments.values()))
        result = execute_sync(run.view.schema, document, variable_values=run.variables)
        if result.errors:
            run.errors.extend(_located(e) for e in result.errors)
        return None if result.data is None else result.data.get(key)


class _Collected(dict[str, list[FieldNode]]):
    def get_nodes(self, name: str) -> list[FieldNode]:
        return [n for nodes in self.values() for n in nodes if n.name.value == name]


def _selections(nodes: Iterable[FieldNode]) -> list[SelectionSetNode]:
    return [n.selection_set for n in nodes if n.selection_set is not None]


def _edge(parts: Mapping[str, list[FieldNode]], obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, nodes in parts.items():
        name = nodes[0].name.value
        out[key] = obj if name == "node" else "Edge" if name == "__typename" else None
    return out


def _pick(
    values: Mapping[str, Any], nodes: list[FieldNode], type_name: str, endpoint: Any, run: _Run
) -> dict[str, Any]:
    object_type = run.view.schema.get_type(type_name)
    out: dict[str, Any] = {}
    for key, key_nodes in endpoint._collect(object_type, _selections(nodes), run).items():
        name = key_nodes[0].name.value
        out[key] = type_name if name == "__typename" else values.get(name)
    return out


def _is_connection(node: FieldNode, schema: GraphQLSchema, graph: GraphSchema) -> bool:
    name = node.name.value
    if name in graph.lists:
        return True
    return any(
        f.many is not None and f.name == name
        for t in graph.types.values()
        for f in t.fields.values()
    )


def _page_size(node: FieldNode, variables: Mapping[str, Any]) -> int:
    for argument in node.arguments or ():
        if argument.name.value != "first":
            continue
        value = argument.value
        if isinstance(value, IntValueNode):
            return max(1, min(int(value.value), MAX_LIMIT))
        if isinstance(value, VariableNode):
            given = variables.get(value.name.value)
            if isinstance(given, int):
                return max(1, min(given, MAX_LIMIT))
        return MAX_LIMIT
    return MAX_LIMIT  # a missing `first` counts as the largest page


def _charger(
    request: Request, limiter: Limiter, policies: Policies, trusted: tuple[IPNetwork, ...]
) -> Charge:
    """What charges this request's root fields, keyed as RateLimitMiddleware keys them."""
    caller = caller_of(request)

    async def charge(method: str, path: str) -> None:
        for name, rule in policies(method, path):
            if name == "all":
                continue
            if rule.per == "route":
                value = ""
            elif rule.per == "account" and caller.id is not None:
                value = caller.id
            else:
                value = rate_key_ip(client_ip(request.scope, trusted))
            decision = await limiter.hit(f"{name}:{value}", rule)
            if not decision.allowed:
                headers = dict(limit_headers(name, rule, decision))
                detail = f"The rate limit {name!r} ({rule}) is reached"
                raise TooManyRequests(detail=f"{detail}; retry after {headers['Retry-After']} s.")

    return charge


def _list_params(
    columns: list[str], args: Mapping[str, Any], *, counted: bool
) -> list[tuple[str, str]]:
    """A connection's arguments as REST's query parameters (`first` is `limit`, ...)."""
    params = [("fields", ",".join(columns))]
    for name, param in (
        ("first", "limit"),
        ("after", "cursor"),
        ("orderBy", "sort"),
        ("where", "filter"),
    ):
        if args.get(name) is not None:
            params.append((param, str(args[name])))
    if counted:
        params.append(("count", "exact"))
    return params


def _precondition(args: Mapping[str, Any]) -> Precondition | None:
    version = args.get("expectedVersion")
    return None if version is None else Precondition(frozenset({int(version)}))


def _error(message: str, code: str = "GRAPHQL_VALIDATION_FAILED") -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code}}


def _located(exc: GraphQLError) -> dict[str, Any]:
    formatted: dict[str, Any] = dict(exc.formatted)
    extensions = formatted.get("extensions") or {}
    formatted["extensions"] = {"code": "GRAPHQL_VALIDATION_FAILED", **extensions}
    return formatted


def _api_error(exc: ApiError, node: FieldNode, path: list[str | int]) -> dict[str, Any]:
    """A problem (as REST answers it) as a GraphQL error with its path and location."""
    cls = type(exc)
    extensions: dict[str, Any] = {
        "code": cls.slug.upper().replace("-", "_"),
        "type": f"/problems/{cls.slug}",
        "status": cls.status,
    }
    if exc.errors:
        extensions["errors"] = [e.as_dict() for e in exc.errors]
    error: dict[str, Any] = {"message": exc.detail or cls.title, "path": path}
    if node.loc is not None:
        location = node.loc.source.get_location(node.loc.start)
        error["locations"] = [{"line": location.line, "column": location.column}]
    error["extensions"] = extensions
    return error


# --- HTTP ----------------------------------------------------------------------------------


def graphql_routes(
    design: Design,
    service: Service,
    limiter: Limiter | None = None,
    trusted_proxies: tuple[IPNetwork, ...] = (),
) -> list[BaseRoute]:
    """`/v{n}/graphql` (POST and GET), its SDL, and the explorer page at `/graphql`.
    With `limiter`, each root field is charged to the limits of its REST route."""
    endpoint = GraphqlEndpoint(design, service)
    prefix = f"/v{design.api_version}/graphql"
    policies = route_limits(design)

    async def answer(request: Request) -> Response:
        get = request.method == "GET"
        if get:
            query = request.query_params.get("query")
            raw = request.query_params.get("variables")
            variables = decode_json_body(raw.encode()) if raw else None
            operation = request.query_params.get("operationName")
        else:
            body = decode_json_body(await request.body())
            if not isinstance(body, dict):
                raise BadRequest(detail="the body is a JSON object with `query`")
            query, variables, operation = (
                body.get("query"),
                body.get("variables"),
                body.get("operationName"),
            )
        if not isinstance(query, str):
            raise BadRequest(detail="`query` is a string: the GraphQL document")
        if variables is not None and not isinstance(variables, dict):
            raise BadRequest(detail="`variables` is a JSON object")
        if operation is not None and not isinstance(operation, str):
            raise BadRequest(detail="`operationName` is a string")
        charge = None
        if limiter is not None:
            charge = _charger(request, limiter, policies, trusted_proxies)
        status, result = await endpoint.execute(
            query,
            variables,
            operation,
            caller_of(request),
            request_id=request_id_of(request.scope),
            queries_only=get,
            charge=charge,
        )
        return Response(encode_json(result), status, media_type=JSON)

    async def schema(request: Request) -> Response:
        sdl = endpoint.view(caller_of(request)).graph.sdl
        return Response(sdl.encode(), media_type="text/plain; charset=utf-8")

    page = (STATIC_DIR / "graphql.html").read_bytes().replace(b"/v1/graphql", prefix.encode())

    async def explorer(request: Request) -> Response:
        headers = {
            "Content-Security-Policy": DOCS_CSP,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        return Response(page, media_type="text/html; charset=utf-8", headers=headers)

    return [
        Route(prefix, answer, methods=["GET", "POST"], name="graphql"),
        Route(f"{prefix}/schema.graphql", schema, methods=["GET"], name="graphql-schema"),
        Route("/graphql", explorer, methods=["GET", "HEAD"], name="graphql-explorer"),
    ]
