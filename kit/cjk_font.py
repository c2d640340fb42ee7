"""Chinese names in matplotlib charts: drawn in a CJK font where one is installed, else the id.

Matplotlib's default DejaVu Sans has no Chinese glyphs: 猪八戒 would come out as three empty boxes.
"""

from functools import cache

# Common CJK fonts on Linux, macOS and Windows (fonts-noto-cjk, fonts-wqy-zenhei, system fonts).
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "Droid Sans Fallback", "PingFang SC", "Heiti SC", "Microsoft YaHei",
             "SimHei", "AR PL UMing CN")
LATIN_FONT = "DejaVu Sans"  # matplotlib's own default; a family list falls back to it glyph by glyph


@cache
def cjk_font() -> str | None:
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


def drawable(text: str, fallback: str) -> tuple[str, list[str]]:
    """`text` and the font family list that draws it, or `fallback` when no installed font can."""
    font = cjk_font()
    if font:
        return text, [font, LATIN_FONT]
    return (text if text.isascii() else fallback), [LATIN_FONT]
