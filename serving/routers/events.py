"""Shoppers' events: POST /events folds feedback into the behaviour vectors; DELETE /users/{id} forgets a shopper's."""

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from vitrina.engine.data.events import events_from_records
from vitrina.engine.errors import QueryError
from vitrina.engine.learn.shoppers import forget
from vitrina.serving.dependencies import Dependencies, Holder, Live, UserId
from vitrina.serving.schemas import EventsIn, EventsOut, ForgetOut


def router(deps: Dependencies) -> APIRouter:
    routes = APIRouter()
    serving = deps.serving

    @routes.post("/events", response_model=EventsOut, dependencies=deps.write,
                 summary="Feedback events (views, clicks, carts, purchases) folded into the behaviour vectors")
    async def events(index: Live, body: EventsIn) -> dict[str, Any]:
        if len(body.events) > serving.max_events:
            raise QueryError(f"{len(body.events)} events in one request; send at most {serving.max_events}")
        records = [e.model_dump(exclude_none=True) for e in body.events]
        log_ = events_from_records(records, index.session.products.rows_by_id)
        # In memory: logged (fsync'd before this answer) and folded in; snapshots and fused vectors
        # are refreshed in the background (IndexHolder.keep_shoppers_current), never per request.
        added = await run_in_threadpool(index.record, log_)
        index.metrics.events.labels("accepted").inc(len(log_))
        index.metrics.events.labels("rejected").inc(log_.problems.total)
        return {
            "accepted": len(log_), "rejected": log_.problems.total, "problems": dict(log_.problems.counts),
            "examples": log_.problems.examples, "users": added.users,
            "products_with_vectors": added.products_with_vectors, "index_version": index.version,
            "duplicates": added.duplicates,
        }

    @routes.delete("/users/{user_id}", response_model=ForgetOut, dependencies=deps.write,
                   summary="Forget a shopper: their events, their vector and their part in product vectors, in every kept version")
    async def forget_user(index: Live, holder: Holder, user_id: UserId) -> dict[str, Any]:
        gone = await run_in_threadpool(forget, index.path, user_id, holder.config)
        await run_in_threadpool(index.load_behaviour)
        current = index
        if gone.found and index.trained:  # the fused vectors were recomputed: a new index version
            await holder.refresh_fused(index)
            current = holder.current or index
        return {**gone.to_json(), "index_version": current.version}

    return routes
