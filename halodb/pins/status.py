"""``halodb pins status``: per CID a name references, per node, whether it is kept there.

For each node: **pinned** when a recursive pin on the node holds the CID (anyone's: the row
says whose); **queued** when the node's follower of the name (its state in the node's MFS,
:func:`~halodb.pins.follow.state_path`) wants it and has not pinned it yet; **missing**
otherwise. The rows are the name's head commit (the index DAG of every version) and every
data CID of every version, so a node following ``--current`` shows the older data missing.

>>> row = StatusRow(Pin("QmcqgdpTAXRJFnKonSUWDDbpJfiLbq3275GHn84sizNEfm", "a v0"), {"n1": "pinned", "n2": "missing"})
>>> row.holders
['n1']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from halodb.errors import HaloDBError
from halodb.ipld import CID
from halodb.pins.follow import state_path
from halodb.pins.model import Pin
from halodb.pins.node import KuboPinNode
from halodb.pins.plan import plan_pins

if TYPE_CHECKING:
    from halodb.api.registry import Registry

__all__ = ["NodeSummary", "StatusReport", "StatusRow", "pin_status"]

PINNED, QUEUED, MISSING = "pinned", "queued", "missing"


@dataclass
class StatusRow:
    """One CID: its pin (name, meta) and its state per node URL."""

    pin: Pin
    states: dict[str, str]
    owners: dict[str, str] = field(default_factory=dict)  #: node -> the name of the pin holding it

    @property
    def holders(self) -> list[str]:
        return [node for node, state in self.states.items() if state == PINNED]


@dataclass
class NodeSummary:
    """One node: counts per state, and what its follower of the name recorded."""

    node: str
    counts: dict[str, int]
    follower: dict[str, Any] | None  #: the follower's state (head, policy, started, done), if any


@dataclass
class StatusReport:
    name: str
    head: str
    rows: list[StatusRow]
    nodes: list[NodeSummary]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "head": self.head,
                "nodes": [{"node": n.node, **n.counts, "follower": n.follower} for n in self.nodes],
                "pins": [{**r.pin.to_json(), "status": r.states, "held_by": r.owners} for r in self.rows]}


def pin_status(registry: Registry, name: str, nodes: Sequence[KuboPinNode]) -> StatusReport:
    """The state of every CID ``name`` references on every node (see the module docstring)."""
    label = registry.canonical_name(name)
    head = registry.resolve(name)
    plan = plan_pins(registry.store, registry.index, head, label=label)
    rows = [StatusRow(pin, {}) for pin in [plan.head_pin, *plan.data]]
    summaries = []
    for node in nodes:
        pins = {p.multihash: p for p in node.pins()}
        follower = node.read_state(state_path(label))
        queued = _followed(registry, label, follower)
        counts = {PINNED: 0, QUEUED: 0, MISSING: 0}
        for row in rows:
            digest = row.pin.parsed_cid.multihash
            if digest in pins:
                state = PINNED
                row.owners[node.url] = pins[digest].name
            elif digest in queued:
                state = QUEUED
            else:
                state = MISSING
            row.states[node.url] = state
            counts[state] += 1
        summaries.append(NodeSummary(node.url, counts, follower))
    return StatusReport(label, str(head), rows, summaries)


def _followed(registry: Registry, label: str, state: dict[str, Any] | None) -> set[bytes]:
    """The multihashes the node's follower of ``label`` wants at the head it last recorded
    (those it has not pinned yet are queued: it pins them on its next run, or is doing so)."""
    if not state or not isinstance(state.get("head"), str):
        return set()
    policy = state.get("policy")
    policy = policy if isinstance(policy, dict) else {}
    try:
        head = CID.parse(state["head"])
        plan = plan_pins(registry.store, registry.index, head, label=label,
                         current_only=bool(policy.get("current_only")))
    except HaloDBError:
        return set()  # a follower's head this registry cannot read: nothing is known queued
    return {p.parsed_cid.multihash for p in [plan.head_pin, *plan.data]}

