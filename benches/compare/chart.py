"""The matrix's chart: one PNG, written with the standard library alone (a
5x7 bitmap font below, zlib for the image data). Per cell, four bars of
switchyard against the better of nginx and HAProxy, drawn so that longer is
better for switchyard: requests per CPU-second (switchyard / peer), p99,
p99.9 and peak RSS (peer / switchyard, so that a lower latency or memory is
a longer bar). The dashed line at 1.0 is parity."""

import struct
import zlib

FIGURES = [
    ("per_cpu_s", "req/CPU-s", (43, 108, 176), False),
    ("p99_ms", "p99 (inverse)", (221, 107, 32), True),
    ("p999_ms", "p99.9 (inverse)", (214, 158, 46), True),
    ("hwm_kb", "peak RSS (inverse)", (56, 161, 105), True),
]

# 5x7 glyphs, one string of 7 rows of 5 columns each ('#' is ink).
_FONT_ROWS = {
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    "a": "..... ..... .###. ....# .#### #...# .####",
    "b": "#.... #.... #.##. ##..# #...# #...# ####.",
    "c": "..... ..... .###. #.... #.... #...# .###.",
    "d": "....# ....# .##.# #..## #...# #...# .####",
    "e": "..... ..... .###. #...# ##### #.... .###.",
    "f": "..##. .#..# .#... ###.. .#... .#... .#...",
    "g": ".#### #...# #...# #...# .#### ....# .###.",
    "h": "#.... #.... #.##. ##..# #...# #...# #...#",
    "i": "..#.. ..... .##.. ..#.. ..#.. ..#.. .###.",
    "j": "...#. ..... ..##. ...#. ...#. #..#. .##..",
    "k": "#.... #.... #..#. #.#.. ##... #.#.. #..#.",
    "l": ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "m": "..... ..... ##.#. #.#.# #.#.# #...# #...#",
    "n": "..... ..... #.##. ##..# #...# #...# #...#",
    "o": "..... ..... .###. #...# #...# #...# .###.",
    "p": "####. #...# #...# #...# ####. #.... #....",
    "q": ".#### #...# #...# #...# .#### ....# ....#",
    "r": "..... ..... #.##. ##..# #.... #.... #....",
    "s": "..... ..... .###. #.... .###. ....# ####.",
    "t": ".#... .#... ###.. .#... .#... .#..# ..##.",
    "u": "..... ..... #...# #...# #...# #..## .##.#",
    "v": "..... ..... #...# #...# #...# .#.#. ..#..",
    "w": "..... ..... #...# #...# #.#.# #.#.# .#.#.",
    "x": "..... ..... #...# .#.#. ..#.. .#.#. #...#",
    "y": "#...# #...# #...# #...# .#### ....# .###.",
    "z": "..... ..... ##### ...#. ..#.. .#... #####",
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "N": "#...# ##..# #.#.# #..## #...# #...# #...#",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".###. #...# #.... .###. ....# #...# .###.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    " ": "..... ..... ..... ..... ..... ..... .....",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... .##.. ..#.. .#...",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    ";": "..... .##.. .##.. ..... .##.. ..#.. .#...",
    "-": "..... ..... ..... .###. ..... ..... .....",
    "_": "..... ..... ..... ..... ..... ..... #####",
    "/": "....# ....# ...#. ..#.. .#... #.... #....",
    "(": "..#.. .#... #.... #.... #.... .#... ..#..",
    ")": "..#.. ...#. ....# ....# ....# ...#. ..#..",
    "=": "..... ..... ##### ..... ##### ..... .....",
    ">": ".#... ..#.. ...#. ....# ...#. ..#.. .#...",
    "<": "...#. ..#.. .#... #.... .#... ..#.. ...#.",
    "%": "##... ##..# ...#. ..#.. .#... #..## ...##",
    "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
}
FONT = {c: [row for row in rows.split()] for c, rows in _FONT_ROWS.items()}
DESCENDERS = set("gpqy")  # drawn 2 rows lower: their 7 rows are x-height and tail


class Canvas:
    def __init__(self, width, height):
        self.w, self.h = width, height
        self.px = bytearray(b"\xff" * (width * height * 3))

    def rect(self, x, y, w, h, color):
        x0, y0 = max(0, int(x)), max(0, int(y))
        x1, y1 = min(self.w, int(x + w)), min(self.h, int(y + h))
        line = bytes(color) * max(0, x1 - x0)
        for yy in range(y0, y1):
            i = (yy * self.w + x0) * 3
            self.px[i:i + len(line)] = line

    def text(self, x, y, s, scale=2, color=(0, 0, 0), anchor="start"):
        """Draw s with its top left at (x, y); anchor end/middle moves it left."""
        adv = 6 * scale
        if anchor == "end":
            x -= len(s) * adv
        elif anchor == "middle":
            x -= len(s) * adv // 2
        for k, ch in enumerate(s):
            glyph = FONT.get(ch, FONT["?"])
            down = 2 if ch in DESCENDERS else 0
            for r, row in enumerate(glyph):
                for c, bit in enumerate(row):
                    if bit == "#":
                        self.rect(x + k * adv + c * scale, y + (r + down) * scale, scale, scale, color)

    def png(self):
        raw = b"".join(b"\0" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(kind, data):
            return (struct.pack(">I", len(data)) + kind + data
                    + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def png(ratios, title="switchyard / the better of nginx and HAProxy, per cell", width=960):
    """ratios: {cell: {figure: switchyard / better peer}} -> PNG bytes."""
    cells = list(ratios)
    bar_h, gap, left, top = 14, 14, 130, 76
    row_h = bar_h * len(FIGURES) + gap
    height = top + row_h * len(cells) + 40
    vmax = 2.0
    for r in ratios.values():
        for key, _, _, inverse in FIGURES:
            v = r.get(key)
            if v:
                vmax = max(vmax, 1 / v if inverse else v)
    vmax = min(vmax, 4.0)
    scale = (width - left - 70) / vmax
    cv = Canvas(width, height)
    cv.text(10, 8, title)
    cv.text(10, 28, "longer is better for switchyard; the dashed line is parity (1.0)", scale=1)
    x = 10
    for _, label, color, _ in FIGURES:
        cv.rect(x, 46, 14, 14, color)
        cv.text(x + 20, 46, label)
        x += 20 + len(label) * 12 + 24
    for row, cell in enumerate(cells):
        y0 = top + row * row_h
        cv.text(left - 10, y0 + (row_h - gap) // 2 - 7, cell, anchor="end")
        for j, (key, _, color, inverse) in enumerate(FIGURES):
            v = ratios[cell].get(key)
            y = y0 + j * bar_h
            if not v:
                cv.text(left + 4, y + 3, "not measured", scale=1, color=(120, 120, 120))
                continue
            shown = 1 / v if inverse else v
            w = min(shown, vmax) * scale
            cv.rect(left, y, w, bar_h - 2, color)
            cv.text(left + w + 4, y + 3, f"{shown:.2f}", scale=1)
    one = int(left + scale)
    for y in range(top - 6, height - 30, 8):
        cv.rect(one, y, 2, 4, (0, 0, 0))
    cv.text(one, height - 24, "1.0", anchor="middle")
    cv.rect(left, top - 6, 1, height - 30 - top + 6, (0, 0, 0))
    return cv.png()
