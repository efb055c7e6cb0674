"""A fixed-grid index of 2-D points for radius queries, in numpy alone.

The geocoder asks, for one place at a time, which of its ~10^4-10^5 numbering segments lie
within a radius (`geo_lead.geocode.numbering.Numbering`). Bucketing the points in square cells of
about the query radius answers that from the few cells the circle touches, without scipy
(which the officer's zone check must not load).
"""

from __future__ import annotations

import numpy as np


class GridIndex:
    """Points (x, y, any planar unit) bucketed in square cells of `cell` units.

    Parameters
    ----------
    xy
        ``(n, 2)`` coordinates.
    cell
        Cell side, in the coordinates' unit; queries are fastest with radii of one to two cells.
    """

    def __init__(self, xy: np.ndarray, cell: float) -> None:
        xy = np.asarray(xy, float).reshape(-1, 2)
        if not cell > 0:
            raise ValueError(f"cell must be positive, got {cell!r}")
        self.x, self.y, self.cell = xy[:, 0], xy[:, 1], float(cell)
        n = self.x.size
        self.x0 = float(self.x.min()) if n else 0.0
        self.y0 = float(self.y.min()) if n else 0.0
        cx = np.floor((self.x - self.x0) / self.cell).astype(np.int64)
        cy = np.floor((self.y - self.y0) / self.cell).astype(np.int64)
        self.ncols = int(cx.max()) + 1 if n else 1
        self.nrows = int(cy.max()) + 1 if n else 1
        cell_id = cy * self.ncols + cx
        #: point indexes grouped by cell (ascending within a cell); cell c holds
        #: order[start[c]:start[c + 1]]
        self.order = np.argsort(cell_id, kind="stable")
        self.start = np.searchsorted(cell_id[self.order], np.arange(self.ncols * self.nrows + 1))

    def query_ball_point(self, point: tuple[float, float], r: float) -> np.ndarray:
        """Indexes (ascending) of the points within distance `r` of `point` (boundary included)."""
        px, py = float(point[0]), float(point[1])
        c0 = max(int(np.floor((px - r - self.x0) / self.cell)), 0)
        c1 = min(int(np.floor((px + r - self.x0) / self.cell)), self.ncols - 1)
        r0 = max(int(np.floor((py - r - self.y0) / self.cell)), 0)
        r1 = min(int(np.floor((py + r - self.y0) / self.cell)), self.nrows - 1)
        if c0 > c1 or r0 > r1:
            return np.empty(0, np.int64)
        parts = [self.order[self.start[row * self.ncols + c0]:self.start[row * self.ncols + c1 + 1]]
                 for row in range(r0, r1 + 1)]
        cand = np.concatenate(parts) if parts else np.empty(0, np.int64)
        dx, dy = self.x[cand] - px, self.y[cand] - py
        return np.sort(cand[dx * dx + dy * dy <= r * r])
