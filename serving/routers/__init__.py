"""The HTTP API's routes, one module per resource; each module's `router(deps)` builds its APIRouter."""
