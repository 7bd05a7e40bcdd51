"""Reading back the markdown tables the benchmarks write, cell by cell (column padding aside)."""
from typing import List


def markdown_rows(text: str) -> List[List[str]]:
    """The rows of the markdown table(s) in ``text`` as lists of stripped cells, header rows included and
    separator rows (``|---|``) left out."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if all(set(cell) <= set("-: ") and cell for cell in cells):
            continue
        rows.append(cells)
    return rows
