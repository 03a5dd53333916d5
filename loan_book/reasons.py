"""Reason texts, Vietnamese and English, for the features of a lender's own model.

A reason's code is the column's name, exactly as in the lender's table: the lender recognises it,
and it stays stable as long as the column does. Its texts come from, in order of precedence:

1. the lender's own file (CSV `column,text_vi,text_en`, read like any table: comma or semicolon,
   UTF-8 with or without BOM), for the columns it names;
2. the platform's reason catalogue (features.reasons), when the column has the name of one of the
   platform's features (features.catalogue);
3. the column's name: «{column}» làm tăng rủi ro / '{column}' raises the risk.

Where each text came from is kept (`sources`) and shown on the model card, so a derived text is
never mistaken for one the lender wrote.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from features.catalogue import FEATURES_BY_NAME
from features.reasons import REASONS
from loan_book.errors import TableError

DERIVED_VI = "«{column}» làm tăng rủi ro"
DERIVED_EN = "'{column}' raises the risk"
FILE_COLUMNS = ("column", "text_vi", "text_en")

FROM_FILE = "lender's file"
FROM_CATALOGUE = "platform catalogue"
FROM_NAME = "column name"


@dataclass
class ReasonTexts:
    """Reason code (= column name) -> (Vietnamese text, English text), and where each came from."""

    texts: dict[str, tuple[str, str]]
    sources: dict[str, str] = field(default_factory=dict)  # code -> FROM_FILE/FROM_CATALOGUE/FROM_NAME

    @classmethod
    def derived(cls, columns) -> "ReasonTexts":
        """Texts for `columns` from the platform's catalogue where the name is one of its features,
        else from the column's name."""
        texts, sources = {}, {}
        for column in columns:
            feature = FEATURES_BY_NAME.get(column)
            if feature is not None and feature.reason in REASONS:
                reason = REASONS[feature.reason]
                texts[column], sources[column] = (reason.vi, reason.en), FROM_CATALOGUE
            else:
                texts[column] = (DERIVED_VI.format(column=column), DERIVED_EN.format(column=column))
                sources[column] = FROM_NAME
        return cls(texts, sources)

    @classmethod
    def from_file(cls, path: Path, columns) -> "ReasonTexts":
        """The derived texts of `columns`, overridden by the lender's CSV `column,text_vi,text_en`.

        A row naming a column that is not a feature of the model is refused (a typo would otherwise
        leave the derived text in place unnoticed); an empty text cell keeps the derived text in that
        language, and the card shows it as derived."""
        from loan_book.reading import read_table  # reading is only needed when a file is given

        texts = cls.derived(columns)
        frame = read_table(Path(path))
        missing = [c for c in FILE_COLUMNS if c not in frame.columns]
        if missing:
            raise TableError(f"the reasons file {Path(path).name} has no column {', '.join(missing)}: "
                             f"its header must be {','.join(FILE_COLUMNS)} (found "
                             f"{', '.join(map(str, frame.columns))}).")
        return texts.override(frame, source=Path(path).name)

    def override(self, frame, source: str = "the reasons file") -> "ReasonTexts":
        """A copy with the texts of `frame` (columns column, text_vi, text_en) put in."""
        texts, sources = dict(self.texts), dict(self.sources)
        cells = frame[list(FILE_COLUMNS)].astype(str).apply(lambda s: s.str.strip())
        unknown = [c for c in cells["column"] if c not in texts]
        if unknown:
            raise TableError(f"{source} names {len(unknown)} column(s) the model does not use: "
                             f"{', '.join(unknown[:10])}. The model's features are "
                             f"{', '.join(texts)}; correct the names or remove those rows.")
        repeated = sorted(set(cells["column"][cells["column"].duplicated()]))
        if repeated:
            raise TableError(f"{source} gives the texts of {', '.join(repeated)} more than once: keep "
                             "one row per column.")
        for column, vi, en in cells.itertuples(index=False):
            if not vi and not en:
                continue
            old_vi, old_en = texts[column]
            texts[column] = (vi or old_vi, en or old_en)
            sources[column] = FROM_FILE if vi and en else f"{FROM_FILE} ({'vi' if vi else 'en'} only)"
        return ReasonTexts(texts, sources)

    def vi(self, code: str) -> str:
        """The Vietnamese text of reason `code`."""
        return self.texts[code][0]

    def en(self, code: str) -> str:
        """The English text of reason `code`."""
        return self.texts[code][1]

    def table(self):
        """code, text_vi, text_en, source: one row per reason (what the card shows)."""
        import pandas as pd

        return pd.DataFrame([{"code": c, "text_vi": vi, "text_en": en,
                              "source": self.sources.get(c, "")} for c, (vi, en) in self.texts.items()])

    def to_dict(self) -> dict:
        """JSON-safe form (for MLflow)."""
        return {"texts": {c: list(t) for c, t in self.texts.items()}, "sources": dict(self.sources)}

    @classmethod
    def from_dict(cls, d: dict) -> "ReasonTexts":
        """The inverse of to_dict."""
        return cls({c: (t[0], t[1]) for c, t in d["texts"].items()}, dict(d.get("sources", {})))
