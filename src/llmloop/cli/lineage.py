"""``llmloop lineage``: where an entity came from and what was made from it, as a tree.

The graph (nodes and edges) comes from the governance service; this module folds it into a
tree per direction for people and prints the graph itself with ``--json``. An entity reached
twice is shown once in full and then as a reference, so cycles and diamonds stay finite.
"""

from __future__ import annotations

from collections import defaultdict

import typer
from rich.tree import Tree

from llmloop.cli.context import get_state
from llmloop.cli.output import console, print_json
from llmloop.core.governance import LineageGraph, LineageNode
from llmloop.errors import InvalidInputError

DIRECTIONS = ("up", "down", "both")


def _describe(node: LineageNode | None, node_id: str) -> str:
    if node is None:
        return node_id
    return f"[bold]{node.label}[/bold] [dim]{node.type} {node.id}[/dim]"


def build_tree(graph: LineageGraph, direction: str) -> Tree:
    """A rich tree rooted at ``graph.root``: upstream and/or downstream branches."""
    nodes = {n.id: n for n in graph.nodes}
    upstream: dict[str, list[tuple[str, str]]] = defaultdict(list)
    downstream: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for edge in graph.edges:
        upstream[edge.target].append((edge.source, edge.relation))
        downstream[edge.source].append((edge.target, edge.relation))
    root = Tree(_describe(nodes.get(graph.root), graph.root))
    branches = [("upstream (inputs)", upstream, "up"), ("downstream (outputs)", downstream, "down")]
    for title, links, name in branches:
        if direction not in (name, "both"):
            continue
        branch = root.add(f"[italic]{title}[/italic]") if direction == "both" else root
        _grow(branch, graph.root, links, nodes, seen={graph.root})
        if not links.get(graph.root):
            branch.add("[dim](none)[/dim]")
    return root


def _grow(
    tree: Tree,
    node_id: str,
    links: dict[str, list[tuple[str, str]]],
    nodes: dict[str, LineageNode],
    seen: set[str],
) -> None:
    for other, relation in sorted(links.get(node_id, [])):
        label = f"[cyan]{relation}[/cyan] {_describe(nodes.get(other), other)}"
        if other in seen:
            tree.add(label + " [dim](shown above)[/dim]")
            continue
        seen.add(other)
        _grow(tree.add(label), other, links, nodes, seen)


def lineage_command(
    ctx: typer.Context,
    entity_id: str = typer.Argument(..., metavar="ID", help="A version, run or model id."),
    direction: str = typer.Option("both", "--direction", help="up, down or both."),
    depth: int = typer.Option(20, "--depth", min=1, max=100, help="How many hops to follow."),
    as_json: bool = typer.Option(False, "--json", help="Print the graph as JSON."),
) -> None:
    """Show the lineage of an entity as a tree (inputs upstream, outputs downstream)."""
    if direction not in DIRECTIONS:
        raise InvalidInputError("--direction must be up, down or both")
    graph = get_state(ctx).container.governance.lineage(entity_id, direction, depth)
    if as_json:
        print_json(graph)
        return
    console().print(build_tree(graph, direction))
