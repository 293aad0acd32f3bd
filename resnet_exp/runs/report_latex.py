r"""The report's table as LaTeX (`report.tex`, resnet_exp/report.py): a `table` float with a
booktabs `tabular` (\toprule, \midrule, \bottomrule: no vertical rules, as journals set tables),
to `\input{}` into a paper that loads booktabs. A metric's cell is mean $\pm$ std over the seeds,
its 95% confidence interval below in brackets; every name and value is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence

# LaTeX's specials, and the characters its default (OT1) font encoding draws as others:
# `<` and `>` print as `¡` and `¿`, `|` as an em dash
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
            "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
            "|": r"\textbar{}"}


def escape(text: object) -> str:
    r"""`text` as LaTeX prints it, character for character.

    >>> print(escape("lr_max=10% of {a} & b#1 ~$x^2"))
    lr\_max=10\% of \{a\} \& b\#1 \textasciitilde{}\$x\textasciicircum{}2
    >>> print(escape("<y|z> c:\\d"))
    \textless{}y\textbar{}z\textgreater{} c:\textbackslash{}d
    """
    return "".join(_SPECIAL.get(c, c) for c in str(text))


def number(text: str) -> str:
    """A number as the report formats it (resnet_exp/report.py `fmt`), set as a number: the
    minus and a delta's plus in math mode, `-` for a missing value an en dash."""
    if text == "-":
        return "--"
    return f"${text}$" if text[:1] in "+-" else escape(text)


def stat_cell(mean_std: str, interval: str) -> str:
    """`mean ± std` (report.cell) and `[low, high]` (report.interval, or "") as one cell."""
    parts = [number(p) for p in mean_std.split(" ± ")]
    cell = r" $\pm$ ".join(parts)
    if interval:
        low, high = interval.strip("[]").split(", ")
        cell += rf" {{\scriptsize [{number(low)}, {number(high)}]}}"
    return cell


def table(header: Sequence[str], rows: Sequence[Sequence[str]], labels: int, caption: str,
          comments: Sequence[str] = ()) -> str:
    """`header` and `rows` already set as LaTeX but for the header's names; the first `labels`
    columns are names (left-aligned), the others numbers (right-aligned)."""
    spec = "l" * labels + "r" * (len(header) - labels)
    lines = [*(f"% {c}" for c in comments), r"% needs \usepackage{booktabs}",
             r"\begin{table}[t]", r"  \centering",
             rf"  \caption{{{caption}}}", r"  \label{tab:report}",
             rf"  \begin{{tabular}}{{{spec}}}", r"    \toprule",
             "    " + " & ".join(escape(h) for h in header) + r" \\", r"    \midrule"]
    lines += ["    " + " & ".join(row) + r" \\" for row in rows]
    lines += [r"    \bottomrule", r"  \end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
