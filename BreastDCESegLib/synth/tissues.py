"""Tissue labels, the physical parameter tables (relaxation, proton density, kinetic ranges,
density, phase counts) and the per-case table of kinetic classes built from them."""

from __future__ import annotations

from typing import Any

TISSUE_LABELS = {"background": 0, "fat": 1, "fibroglandular": 2, "skin": 3, "muscle": 4, "chest": 5,
                 "lung": 6, "heart": 7, "vessel": 8, "lesion": 9, "benign": 10, "lymph_node": 11}
_L = TISSUE_LABELS
# tissue: (T10 s at 1.5 T, T10 s at 3 T, proton density, Ktrans /min, ve, vp); vp=1 means blood pool
_TISSUE = {"fat": (0.29, 0.37, 1.0, 0.01, 0.10, 0.005), "fibroglandular": (1.27, 1.45, 0.75, 0.015, 0.20, 0.01),
           "skin": (0.85, 1.0, 0.8, 0.06, 0.30, 0.02), "muscle": (1.0, 1.4, 0.7, 0.05, 0.12, 0.02),
           "chest": (1.0, 1.2, 0.55, 0.06, 0.20, 0.02), "lung": (1.2, 1.4, 0.04, 0.0, 0.1, 0.0),
           "heart": (1.44, 1.93, 0.85, 0.0, 0.0, 1.0), "vessel": (1.44, 1.93, 0.85, 0.0, 0.0, 1.0)}
# per AIF: malignant curve type / benign -> (Ktrans /min, ve, vp) ranges, and BPE Ktrans per category;
# chosen so that the BI-RADS delayed-phase rule reads the intended curve type at 4-7 min
_KINETICS = {
    "parker": {"washout": ((0.8, 1.5), (0.25, 0.45), (0.04, 0.10)), "plateau": ((0.25, 0.35), (0.8, 0.95), (0.02, 0.05)),
               "persistent": ((0.12, 0.2), (0.85, 1.0), (0.01, 0.03)), "benign": ((0.08, 0.16), (0.85, 1.0), (0.01, 0.02)),
               "bpe": {"minimal": 0.008, "mild": 0.018, "moderate": 0.03, "marked": 0.05}},
    "weinmann": {"washout": ((1.0, 1.6), (0.25, 0.35), (0.05, 0.10)), "plateau": ((0.5, 0.8), (0.5, 0.7), (0.03, 0.06)),
                 "persistent": ((0.3, 0.5), (0.7, 0.9), (0.02, 0.04)), "benign": ((0.15, 0.3), (0.6, 0.9), (0.01, 0.02)),
                 "bpe": {"minimal": 0.015, "mild": 0.03, "moderate": 0.06, "marked": 0.1}},
}
_DENSITY = {"a": (0.03, 0.10), "b": (0.10, 0.25), "c": (0.25, 0.45), "d": (0.45, 0.65)}
_N_POST_P = (0.08, 0.10, 0.20, 0.22, 0.20, 0.12, 0.08)  # for 1..7 post phases


class _Classes:
    """Kinetic classes: rows (T10 s, proton density, Ktrans /min, ve, vp)."""

    def __init__(self, c: dict[str, Any]):
        col = 0 if c["field_strength"] < 2 else 1
        self.rows = [(1.0, 0.0, 0.0, 0.1, 0.0)] * len(_L)
        for name, p in _TISSUE.items():
            pd = p[2] * (c["fs_residual"] if name == "fat" and c["fat_suppressed"] else 1.0)
            self.rows[_L[name]] = (p[col], pd, p[3], p[4], p[5])
        self.t10 = {"lesion": (1.2, 1.5)[col], "benign": (1.3, 1.6)[col], "fgt": _TISSUE["fibroglandular"][col]}

    def add(self, t10: float, pd: float, ktrans: float, ve: float, vp: float) -> int:
        self.rows.append((t10, pd, ktrans, ve, vp))
        return len(self.rows) - 1
