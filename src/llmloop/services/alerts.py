"""Alerts: rules on monitored metrics and drift results, evaluated into ok → pending → firing → ok.

Each evaluation computes the rule's value over its trailing window; a rule fires only after the
comparison has held ``for_s`` seconds, and notifies once per firing (repeated evaluations while
firing send nothing) and once on recovery. The state change and its event are written in one
transaction under a row lock, so two evaluators cannot both fire. Notifications go to the log
and, when the rule has one, to a webhook (aiohttp POST of JSON, timeout, retries with backoff).
It does not compute metrics itself (monitoring and drift services do).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from llmloop.core.alerts import (
    DRIFT_PREFIX,
    AlertEventPublic,
    AlertRuleCreate,
    AlertRulePublic,
    compare,
)
from llmloop.errors import ConflictError, InvalidInputError, NotFoundError
from llmloop.services.actors import Actor
from llmloop.services.annotation import queue_id
from llmloop.services.monitoring import MonitoringService
from llmloop.services.periodic import PeriodicTask
from llmloop.store import tables as t
from llmloop.store.registry import Row, Store, Tx, utcnow

log = logging.getLogger("llmloop.alerts")


class AlertService:
    def __init__(
        self, store: Store, monitoring: MonitoringService, webhook_timeout_s: float = 5.0,
        webhook_retries: int = 3,
    ) -> None:  # fmt: skip
        self.store = store
        self.monitoring = monitoring
        self.timeout_s = webhook_timeout_s
        self.retries = webhook_retries

    def create(self, spec: AlertRuleCreate, actor: Actor) -> AlertRulePublic:
        actor.require("editor")
        for field in ("threshold", "for_s"):  # JSON has no infinity: it would come back null
            if not math.isfinite(getattr(spec, field)):
                raise InvalidInputError(f"{field} must be a finite number")
        row: Row = {
            "id": "al_" + queue_id().partition("_")[2], "name": spec.name,
            "spec": spec.model_dump(mode="json"), "state": "ok", "pending_since": None,
            "changed_at": None, "last_value": None, "created_at": utcnow(),
            "created_by": actor.name,
        }  # fmt: skip
        with self.store.transaction() as tx:
            if tx.get(t.alert_rules, name=spec.name) is not None:
                raise ConflictError(f"an alert rule named '{spec.name}' exists")
            tx.insert(t.alert_rules, row)
            tx.audit(actor.name, "alert_rule.create", "alert_rule", row["id"], None, row)
        return _public(row)

    def list(self) -> builtins.list[AlertRulePublic]:
        with self.store.read() as tx:
            return [_public(r) for r in tx.select(t.alert_rules, order_by="name")]

    def get(self, name: str) -> AlertRulePublic:
        with self.store.read() as tx:
            return _public(_rule(tx, name))

    def delete(self, name: str, actor: Actor) -> None:
        """Delete a rule and its events. A firing rule resolves as it goes: its receivers hear
        "resolved" (one attempt, from a thread of its own: call this off the event loop that
        serves the webhook), so nothing waits forever on an alert nobody evaluates any more."""
        actor.require("editor")
        with self.store.transaction() as tx:
            row = _rule(tx, name)
            tx.delete(t.alert_events, {"rule_id": row["id"]})
            tx.delete(t.alert_rules, {"id": row["id"]})
            tx.audit(actor.name, "alert_rule.delete", "alert_rule", row["id"], row, None)
        if row["state"] == "firing":
            self._resolve_deleted(row)

    def _resolve_deleted(self, rule: Row) -> None:
        spec = AlertRuleCreate.model_validate(rule["spec"])
        message = f"{rule['name']} resolved: the rule was deleted"
        log.info("alert resolved: %s", message)
        if spec.webhook_url is None:
            return
        payload = _payload(rule, spec, "resolved", rule["last_value"], utcnow(), message)
        url, done = str(spec.webhook_url), []
        worker = threading.Thread(  # a loop of its own, whether or not one runs here
            target=lambda: done.append(asyncio.run(self._post(url, payload, retries=0))),
            name="alert-resolve", daemon=True,
        )  # fmt: skip
        worker.start()
        worker.join(self.timeout_s + 1.0)
        if done != [True]:
            log.warning(
                "the resolved notice of deleted alert rule %s was not delivered", rule["name"]
            )

    def events(self, name: str | None = None, limit: int = 100) -> builtins.list[AlertEventPublic]:
        """Events newest first, for one rule or all."""
        with self.store.read() as tx:
            where = {"rule_id": _rule(tx, name)["id"]} if name else None
            rows = tx.select(t.alert_events, where, order_by="id", descending=True, limit=limit)
        return [AlertEventPublic.model_validate(r) for r in rows]

    def value(self, spec: AlertRuleCreate, now: datetime) -> float | None:
        """The rule's metric over its window (drift.<m>: share of drifted results, 0..1)."""
        if not spec.metric.startswith(DRIFT_PREFIX):
            return self.monitoring.metric(spec.metric, spec.window_s, spec.deployment, now)
        d = t.drift_results.c
        since = now - timedelta(seconds=spec.window_s)
        stmt = sa.select(sa.func.avg(sa.case((d.drifted, 1.0), else_=0.0))).where(
            d.metric == spec.metric[len(DRIFT_PREFIX) :], d.at >= since, d.at <= now
        )
        if spec.deployment:
            stmt = stmt.where(d.deployment == spec.deployment)
        with self.store.read() as tx:
            found = tx.conn.execute(stmt).scalar()
        return None if found is None else float(found)

    async def evaluate(self, now: datetime | None = None) -> builtins.list[AlertEventPublic]:
        """Evaluate every rule once; returns the events (fired or resolved) this produced."""
        now = now or datetime.now(UTC)
        with self.store.read() as tx:
            names = [r["name"] for r in tx.select(t.alert_rules, order_by="name")]
        out = []
        for name in names:
            event = await asyncio.to_thread(self._step, name, now)
            if event is not None:
                out.append(await self._notify(event))
        return out

    def _step(self, name: str, now: datetime) -> tuple[Row, Row] | None:
        """Move one rule; returns (rule, event) when it fired or recovered."""
        with self.store.read() as tx:
            spec = AlertRuleCreate.model_validate(_rule(tx, name)["spec"])
        value = self.value(spec, now)
        holds = value is not None and compare(value, spec.comparison, spec.threshold)
        with self.store.transaction() as tx:
            rule = tx.get(t.alert_rules, for_update=True, name=name)
            if rule is None:
                return None
            state, since = rule["state"], rule["pending_since"]
            new: dict[str, Any] = {"last_value": value}
            event_state = None
            if holds and state == "ok":
                state, since = "pending", now
            if holds and state == "pending" and since is not None:
                if (now - since).total_seconds() >= spec.for_s:
                    state, event_state = "firing", "firing"
            elif not holds and state != "ok":
                event_state = "resolved" if state == "firing" else None
                state, since = "ok", None
            new.update({"state": state, "pending_since": since})
            if state != rule["state"]:
                new["changed_at"] = now
            tx.update(t.alert_rules, {"id": rule["id"]}, new)
            if event_state is None:
                return None
            return {**rule, **new}, _insert_event(tx, rule, spec, event_state, value, now)

    async def _notify(self, pair: tuple[Row, Row]) -> AlertEventPublic:
        rule, event = pair
        spec = AlertRuleCreate.model_validate(rule["spec"])
        level = logging.WARNING if event["state"] == "firing" else logging.INFO
        log.log(level, "alert %s: %s", event["state"], event["message"])
        delivered = True
        if spec.webhook_url is not None:
            payload = _payload(
                rule, spec, event["state"], event["value"], event["at"], event["message"]
            )
            delivered = await self._post(str(spec.webhook_url), payload)
        with self.store.transaction() as tx:
            tx.update(t.alert_events, {"id": event["id"]}, {"delivered": delivered})
        return AlertEventPublic.model_validate({**event, "delivered": delivered})

    async def _post(self, url: str, payload: dict[str, Any], retries: int | None = None) -> bool:
        import aiohttp

        retries = self.retries if retries is None else retries
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for attempt in range(retries + 1):
                try:
                    async with session.post(url, json=payload) as resp:
                        if resp.status < 300:
                            return True
                        log.warning("webhook %s answered %d", url, resp.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.warning("webhook %s failed: %s", url, exc)
                if attempt < retries:
                    await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
        return False


class AlertLoop(PeriodicTask):
    """Evaluates every rule every ``interval_s`` on the server's loop."""

    name = "alert evaluation"

    def __init__(self, service: AlertService, interval_s: float) -> None:
        super().__init__(interval_s)
        self.service = service

    async def tick(self) -> None:
        await self.service.evaluate()


def _rule(tx: Tx, name: str) -> Row:
    row = tx.get(t.alert_rules, name=name)
    if row is None:
        raise NotFoundError(f"no alert rule named '{name}'")
    return row


def _public(row: Row) -> AlertRulePublic:
    return AlertRulePublic.model_validate(
        {**row, "spec": AlertRuleCreate.model_validate(row["spec"])}
    )


def _payload(
    rule: Row, spec: AlertRuleCreate, state: str, value: float | None, at: datetime, message: str
) -> dict[str, Any]:
    """What a webhook receives."""
    return {
        "rule": rule["name"], "rule_id": rule["id"], "state": state, "metric": spec.metric,
        "value": value, "threshold": spec.threshold, "comparison": spec.comparison,
        "deployment": spec.deployment, "at": at.isoformat(), "message": message,
    }  # fmt: skip


def _insert_event(
    tx: Tx, rule: Row, spec: AlertRuleCreate, state: str, value: float | None, now: datetime
) -> Row:
    where = f" on {spec.deployment}" if spec.deployment else ""
    shown = "no data" if value is None else f"{value:.4g}"
    verb = "firing" if state == "firing" else "resolved"
    message = (f"{rule['name']} {verb}: {spec.metric}{where} = {shown} "
               f"(rule: {spec.comparison} {spec.threshold:g} over {spec.window_s:g}s)")  # fmt: skip
    row: Row = {"rule_id": rule["id"], "at": now, "state": state, "value": value,
                "message": message, "delivered": False}  # fmt: skip
    tx.insert(t.alert_events, row)
    found = tx.conn.execute(
        sa.select(t.alert_events.c.id).where(t.alert_events.c.rule_id == rule["id"])
        .order_by(t.alert_events.c.id.desc()).limit(1)
    ).scalar()  # fmt: skip
    return {**row, "id": int(found or 0)}
