"""The matrix's chart: one SVG, no plotting library. Per cell, three bars of
switchyard against the better of nginx and HAProxy, drawn so that longer is
better for switchyard: requests per CPU-second (switchyard / peer), p99 and
peak RSS (peer / switchyard, so that a lower latency or memory is a longer
bar). The line at 1.0 is parity."""

FIGURES = [
    ("per_cpu_s", "req/CPU-s", "#2b6cb0", False),
    ("p99_ms", "p99 (inverse)", "#dd6b20", True),
    ("hwm_kb", "peak RSS (inverse)", "#38a169", True),
]


def svg(ratios, width=760):
    cells = list(ratios)
    bar_h, gap, left, top = 9, 10, 90, 40
    row_h = bar_h * len(FIGURES) + gap
    height = top + row_h * len(cells) + 30
    vmax = 2.0
    for r in ratios.values():
        for key, _, _, inverse in FIGURES:
            v = r.get(key)
            if v:
                vmax = max(vmax, 1 / v if inverse else v)
    vmax = min(vmax, 4.0)
    scale = (width - left - 20) / vmax
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="16" font-size="13">switchyard vs the better of nginx and HAProxy '
           f'(longer is better for switchyard; 1.0 = parity)</text>']
    x = left
    for i, (_, label, color, _) in enumerate(FIGURES):
        out.append(f'<rect x="{x}" y="24" width="10" height="10" fill="{color}"/>'
                   f'<text x="{x + 14}" y="33">{label}</text>')
        x += 150
    for row, cell in enumerate(cells):
        y0 = top + row * row_h
        out.append(f'<text x="{left - 8}" y="{y0 + row_h / 2}" text-anchor="end">{cell}</text>')
        for j, (key, _, color, inverse) in enumerate(FIGURES):
            v = ratios[cell].get(key)
            y = y0 + j * bar_h
            if not v:
                continue
            shown = 1 / v if inverse else v
            w = min(shown, vmax) * scale
            out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h - 1}" fill="{color}"/>'
                       f'<text x="{left + w + 3:.1f}" y="{y + bar_h - 1}" font-size="9">{shown:.2f}</text>')
    one = left + scale
    out.append(f'<line x1="{one:.1f}" y1="{top - 4}" x2="{one:.1f}" y2="{height - 24}" '
               f'stroke="black" stroke-dasharray="4,3"/>')
    out.append(f'<text x="{one:.1f}" y="{height - 10}" text-anchor="middle">1.0</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
