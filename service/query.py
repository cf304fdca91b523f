"""Unknown query parameters are an error, so a typo (`?sacle=2`) never silently serves the default."""

from fastapi import Request

from service.errors import ServiceError


async def reject_unknown_query(request: Request) -> None:
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = sorted({p.alias for p in dependant.query_params})
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        names = ", ".join(f"'{name}'" for name in unknown)
        allowed = ", ".join(known) if known else "none"
        raise ServiceError(
            422,
            "invalid_parameter",
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {names}; this endpoint takes: {allowed}",
            field=unknown[0],
        )
