"""The editable phase table of the Inputs section: order (pre-contrast first) and acquisition times.

Rows are ``[key, source name, seconds or None]``; ``key`` is a sequence item index or a volume
node ID and travels in the Source cell's user data. Only the time column is editable; rows are
reordered with :meth:`PhaseTable.move`.

Usage inside Slicer::

    table = PhaseTable(ui.phaseTable, ui.phaseInfoLabel)
    table.fill([[0, "DCE [0]", 0.0], [1, "DCE [90]", 90.0]])
    table.move(1, -1)
    rows = table.rows()
"""

import json
from typing import Any

import qt


def phase_label(index: int) -> str:
    return "pre" if index == 0 else f"post{index}"


class PhaseTable:
    """Fills and reads a three-column ``QTableWidget`` (Phase, Source, Time (s))."""

    def __init__(self, table: Any, info_label: Any):
        self.table, self.info_label = table, info_label
        self.filling = False  # True while the table is written (its itemChanged signals are not edits)

    def fill(self, rows: list) -> None:
        self.filling = True
        try:
            self.table.setRowCount(len(rows))
            for r, (key, name, seconds) in enumerate(rows):
                items = [qt.QTableWidgetItem(phase_label(r)), qt.QTableWidgetItem(str(name)),
                         qt.QTableWidgetItem("" if seconds is None else f"{float(seconds):g}")]
                items[1].setData(qt.Qt.UserRole, json.dumps(key))
                for column, item in enumerate(items):
                    if column < 2:
                        item.setFlags(qt.Qt.ItemIsSelectable | qt.Qt.ItemIsEnabled)
                    self.table.setItem(r, column, item)
            known = sum(row[2] is not None for row in rows)
            self.info_label.text = (f"{len(rows)} phases; acquisition times known for {known}." if rows
                                    else "Select a DCE sequence or at least two phase volumes.")
        finally:
            self.filling = False

    def rows(self) -> list:
        out = []
        for r in range(self.table.rowCount()):
            text = self.table.item(r, 2).text().strip() if self.table.item(r, 2) else ""
            try:
                seconds = float(text) if text else None
            except ValueError:
                seconds = None
                self.info_label.text = f"Row {r + 1}: '{text}' is not a number of seconds; it is ignored."
            source = self.table.item(r, 1)
            out.append([json.loads(source.data(qt.Qt.UserRole)), source.text(), seconds])
        return out

    def move(self, row: int, step: int) -> bool:
        """Swap ``row`` with its neighbour ``row + step``; False when that is outside the table."""
        rows = self.rows()
        if not (0 <= row < len(rows) and 0 <= row + step < len(rows)):
            return False
        rows[row], rows[row + step] = rows[row + step], rows[row]
        self.fill(rows)
        self.table.selectRow(row + step)
        return True
