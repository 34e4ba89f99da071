"""Draw the architecture diagram shown at the top of ``tutorials/README.md``.

    python tutorials/make_diagram.py [OUT.png]     (default: tutorials/figures/00_architecture.png)

The Deep Potential (se_e2_a) energy path, left to right: coordinates -> environment rows R
(nnei x 4: s, s x/r, s y/r, s z/r) -> embedding G = phi(s) (nnei x M) -> T = G^T R / n
(M x 4) -> D = T T_<^T (M x M<) -> fitting net -> atomic energies -> E; forces are the
backward pass through the same chain (F = -dE/dx).  Below it: the vector cloud's
X = [1, x, u] branch (Tutorials 2, 7, 8), and the equivariant heads that combine
coefficients computed from D with T
(dipole and polarisability, Tutorial 6).  Pure matplotlib boxes and arrows; no data.
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "figures" / "00_architecture.png"

# (key, x, y, text, colour): centres in axes units of a 16 x 9 canvas
BOXES = (
    ("coords", 1.2, 6.6, "coordinates\n$x_j - x_i$, $r_{ij} < r_c$", "#dde8f5"),
    ("R", 3.9, 6.6, "environment rows $R$\n$(s, s\\,x/r, s\\,y/r, s\\,z/r)$\nnnei × 4", "#dde8f5"),
    ("G", 6.6, 6.6, "embedding\n$G = \\phi(s)$\nnnei × M", "#e3f2dc"),
    ("T", 9.1, 6.6, "$T = G^\\top R / n$\nM × 4\n(rotates as a vector)", "#e3f2dc"),
    ("D", 11.6, 6.6, "$D = T\\,T_<^\\top$\nM × M$_<$\n(invariant)", "#e3f2dc"),
    ("fit", 14.1, 6.6, "fitting net\n$\\rho(\\mathrm{vec}\\,D)$\n→ $E_i$, $E = \\sum_i E_i$", "#fbe5d6"),
    ("dip", 11.6, 3.9, "dipole head\n$\\mu_i = c(D_i)^\\top T_{xyz}$\n(Tutorial 6)", "#f3e0f3"),
    ("pol", 14.1, 3.9, "polarisability head\n$\\alpha_i = T_{xyz}^\\top A(D_i)\\, T_{xyz}$\n(Tutorial 6)", "#f3e0f3"),
    ("cloud", 1.2, 1.4, "point cloud\npositions $x_j$,\nflow $u_j$", "#fff2cc"),
    ("X", 3.9, 1.4, "$X = [1, x, u]$\nn × 5; invariants\n$|x|, |u|, x\\cdot u$", "#fff2cc"),
    ("Gv", 6.6, 1.4, "embedding\n$G = \\phi(|x|, |u|, x\\cdot u)$\nn × M", "#fff2cc"),
    ("Tv", 9.1, 1.4, "$L = G^\\top X / n$\nM × 5", "#fff2cc"),
    ("Dv", 11.6, 1.4, "$D = L\\,L_<^\\top$\n→ fitting net → $y$\n(Tutorials 2, 7, 8)", "#fff2cc"),
)
ARROWS = (("coords", "R"), ("R", "G"), ("G", "T"), ("T", "D"), ("D", "fit"),
          ("T", "dip"), ("T", "pol"), ("D", "dip"), ("D", "pol"),
          ("cloud", "X"), ("X", "Gv"), ("Gv", "Tv"), ("Tv", "Dv"))
BOX_W, BOX_H = 2.3, 1.5


def draw(out: Path = DEFAULT_OUT) -> Path:
    """Draw the diagram and write it to ``out`` (PNG, written atomically); return the path."""
    fig, ax = plt.subplots(figsize=(16, 9))
    ax.set_xlim(0, 15.4)
    ax.set_ylim(0, 9.2)
    ax.axis("off")
    centre = {}
    for key, x, y, text, colour in BOXES:
        ax.add_patch(FancyBboxPatch((x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H,
                                    boxstyle="round,pad=0.05", fc=colour, ec="0.3", lw=1.2))
        ax.text(x, y, text, ha="center", va="center", fontsize=10.5)
        centre[key] = (x, y)
    for a, b in ARROWS:
        (xa, ya), (xb, yb) = centre[a], centre[b]
        if ya == yb:  # same row: edge to edge
            start, end = (xa + BOX_W / 2 + 0.05, ya), (xb - BOX_W / 2 - 0.05, yb)
        else:  # T down to a head: from T's bottom edge to the head's top edge
            start, end = (xa, ya - BOX_H / 2 - 0.05), (xb, yb + BOX_H / 2 + 0.05)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=16,
                                     color="0.2", lw=1.4, connectionstyle="arc3,rad=0.0"))
    # the backward pass: forces from the same chain, right to left above the boxes
    y_back = 6.6 + BOX_H / 2 + 0.45
    ax.add_patch(FancyArrowPatch((14.1, y_back), (1.2, y_back), arrowstyle="-|>", mutation_scale=16,
                                 color="C3", lw=1.6, ls="--"))
    ax.text(7.65, y_back + 0.22, "backward pass through the same chain: forces "
            "$F_j = -\\partial E/\\partial x_j$ (Tutorial 3), virial and stress",
            ha="center", va="bottom", fontsize=11, color="C3")
    ax.text(0.05, 9.15, "Deep Potential (se_e2_a): energy and forces  (Tutorials 2–5, 9)",
            fontsize=13, weight="bold", va="top")
    ax.text(0.05, 2.75, "Vector Cloud Neural Network: points carrying a vector",
            fontsize=13, weight="bold", va="top")
    ax.text(7.0, 4.1, "equivariant outputs: coefficients from $D$\n(invariant) times $T$ (which rotates)",
            ha="center", va="center", fontsize=10.5, style="italic", color="0.3")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=90, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(out)
    return out


if __name__ == "__main__":
    if len(sys.argv) > 2:
        raise SystemExit("usage: python tutorials/make_diagram.py [OUT.png]")
    path = draw(Path(sys.argv[1]) if len(sys.argv) == 2 else DEFAULT_OUT)
    print(f"figure written: {path}")
