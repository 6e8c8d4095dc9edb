"""Lay out a report's content as a multi-page PDF with reportlab (no system packages).

This module only arranges what :mod:`pareto_bench.analysis.report.build` computed: text, tables and
PNG figures, as sections in the order the report's template chose.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import (
    Image,
    PageBreak,
    Paragraph,
    Preformatted,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from pareto_bench.core.files import SWEEP_JSON

PAGE = landscape(A4)
MARGIN = 1.4 * cm
FRAME_WIDTH = PAGE[0] - 2 * MARGIN
FRAME_HEIGHT = PAGE[1] - 2 * MARGIN


@dataclass
class FigurePage:
    title: str
    png: bytes | None  # None: the page shows ``caption`` only, saying why there is no figure
    caption: str


@dataclass
class SummaryPage:
    table: list[list[str]]  # first row is the header
    notes: list[str]
    best_params: list[tuple[str, str]]  # (trial, "k=v, ...")


@dataclass
class TablePage:
    title: str
    rows: list[list[str]]  # first row is the header
    weights: list[float]  # relative column widths
    caption: str = ""


@dataclass
class ProvenancePage:
    spec_text: str
    meta_rows: list[tuple[str, str]]  # sweep.json, one field per row
    code_version: str
    environment: dict[str, str]
    environment_note: str


Section = FigurePage | SummaryPage | TablePage | ProvenancePage


@dataclass
class ReportContent:
    title: str
    subtitle: str
    verdict: str
    sections: list[Section]
    warnings: list[str] = field(default_factory=list)


def _styles() -> dict[str, ParagraphStyle]:
    base = getSampleStyleSheet()
    return {
        "title": ParagraphStyle("title", parent=base["Title"], fontSize=18, spaceAfter=4),
        "subtitle": ParagraphStyle("subtitle", parent=base["Normal"], textColor=colors.grey),
        "h2": ParagraphStyle("h2", parent=base["Heading2"], spaceBefore=2, spaceAfter=6),
        "body": ParagraphStyle("body", parent=base["BodyText"], fontSize=9.5, leading=12.5),
        "verdict": ParagraphStyle(
            "verdict",
            parent=base["BodyText"],
            fontSize=11,
            leading=15,
            backColor=colors.HexColor("#eef5fb"),
            borderPadding=6,
            spaceBefore=6,
            spaceAfter=10,
        ),  # fmt: skip
        "cell": ParagraphStyle("cell", parent=base["BodyText"], fontSize=7.5, leading=9.2),
        "head": ParagraphStyle(
            "head", parent=base["BodyText"], fontSize=7.5, leading=9.2, fontName="Helvetica-Bold"
        ),  # fmt: skip
        "caption": ParagraphStyle(
            "caption",
            parent=base["BodyText"],
            fontSize=8.5,
            leading=11,
            textColor=colors.HexColor("#444444"),
        ),  # fmt: skip
        "code": ParagraphStyle("code", parent=base["Code"], fontSize=7, leading=8.6, leftIndent=0),
    }


def _table(rows: list[list[str]], widths: list[float], styles: dict[str, ParagraphStyle]) -> Table:
    cells = [
        [
            Paragraph(escape(text).replace("\n", "<br/>"), styles["head" if i == 0 else "cell"])
            for text in row
        ]  # fmt: skip
        for i, row in enumerate(rows)
    ]
    table = Table(cells, colWidths=widths, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde6ee")),
                ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f6f8fa")]),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#b8c4ce")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 3),
                ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    return table


def _image(png: bytes, max_height: float) -> Image:
    image = Image(io.BytesIO(png))
    scale = min(FRAME_WIDTH / image.imageWidth, max_height / image.imageHeight)
    image.drawWidth, image.drawHeight = image.imageWidth * scale, image.imageHeight * scale
    return image


def _figure_page(page: FigurePage, styles: dict[str, ParagraphStyle]) -> list:
    flow: list = [Paragraph(escape(page.title), styles["h2"])]
    if page.png is not None:
        flow.append(_image(page.png, FRAME_HEIGHT - 3.2 * cm))
        flow.append(Spacer(1, 4))
    flow.append(Paragraph(escape(page.caption), styles["caption"]))
    flow.append(PageBreak())
    return flow


def _proportional_widths(weights: list[float]) -> list[float]:
    total = sum(weights)
    return [FRAME_WIDTH * w / total for w in weights]


def _summary_page(page: SummaryPage, styles: dict[str, ParagraphStyle]) -> list:
    header = page.table[0]
    flow: list = [
        _table(page.table, _proportional_widths([1.4] + [1.0] * (len(header) - 1)), styles)
    ]
    if page.best_params:
        flow.append(Spacer(1, 8))
        rows = [["best trial", "parameters"], *[[a, b] for a, b in page.best_params]]
        flow.append(_table(rows, _proportional_widths([1, 7]), styles))
    flow.append(Spacer(1, 8))
    flow += [Paragraph(escape(note), styles["body"]) for note in page.notes]
    flow.append(PageBreak())
    return flow


def _table_page(page: TablePage, styles: dict[str, ParagraphStyle]) -> list:
    flow: list = [Paragraph(escape(page.title), styles["h2"])]
    flow.append(_table(page.rows, _proportional_widths(page.weights), styles))
    if page.caption:
        flow += [Spacer(1, 4), Paragraph(escape(page.caption), styles["caption"])]
    flow.append(PageBreak())
    return flow


def _provenance_page(page: ProvenancePage, styles: dict[str, ParagraphStyle]) -> list:
    flow: list = [Paragraph("Provenance: spec, code version and environment", styles["h2"])]
    flow.append(Paragraph(f"<b>Code version:</b> {escape(page.code_version)}", styles["body"]))
    # sweep.json and the environment side by side: both are short key-value lists.
    meta = page.meta_rows or [("(missing)", "")]
    meta_rows = [["sweep.json field", "value"], *[list(row) for row in meta]]
    env_rows = [["package", "version"], *[[k, v] for k, v in page.environment.items()]]
    half = FRAME_WIDTH / 2
    inner = half - 0.4 * cm  # a gutter between the two columns
    side_by_side = Table(
        [
            [Paragraph(SWEEP_JSON, styles["h2"]), Paragraph("Environment", styles["h2"])],
            [
                _table(meta_rows, [0.3 * inner, 0.7 * inner], styles),
                [
                    Paragraph(escape(page.environment_note), styles["caption"]),
                    Spacer(1, 4),
                    _table(env_rows, [0.35 * inner, 0.65 * inner], styles),
                ],
            ],
        ],
        colWidths=[half, half],
    )
    side_by_side.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                                      ("LEFTPADDING", (0, 0), (-1, -1), 0)]))  # fmt: skip
    flow.append(side_by_side)
    flow.append(Paragraph("spec.yaml (the resolved sweep spec, exactly as recorded)", styles["h2"]))
    flow.append(Preformatted(page.spec_text or "(missing)", styles["code"], maxLineLength=170))
    flow.append(PageBreak())
    return flow


_LAYOUT = {
    FigurePage: _figure_page,
    SummaryPage: _summary_page,
    TablePage: _table_page,
    ProvenancePage: _provenance_page,
}


def write_pdf(content: ReportContent, path: str | Path) -> Path:
    """Render ``content`` to ``path`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    styles = _styles()
    flow: list = [
        Paragraph(escape(content.title), styles["title"]),
        Paragraph(escape(content.subtitle), styles["subtitle"]),
        Paragraph(escape(content.verdict), styles["verdict"]),
    ]
    for section in content.sections:
        flow += _LAYOUT[type(section)](section, styles)
    if content.warnings:
        flow.append(Paragraph("Reading warnings", styles["h2"]))
        for warning in content.warnings:
            flow.append(Paragraph("• " + escape(warning), styles["body"]))
    if isinstance(flow[-1], PageBreak):
        flow.pop()

    def footer(canvas, doc) -> None:  # noqa: ANN001 (reportlab callback)
        canvas.saveState()
        canvas.setFont("Helvetica", 7.5)
        canvas.setFillColor(colors.grey)
        canvas.drawString(MARGIN, 0.7 * cm, f"pareto-bench · {content.title}")
        canvas.drawRightString(PAGE[0] - MARGIN, 0.7 * cm, f"page {doc.page}")
        canvas.restoreState()

    document = SimpleDocTemplate(
        str(path), pagesize=PAGE, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
        bottomMargin=MARGIN, title=content.title, author="pareto-bench",
    )  # fmt: skip
    document.build(flow, onFirstPage=footer, onLaterPages=footer)
    return path
