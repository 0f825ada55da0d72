#!/usr/bin/env python3
"""Checks a report's size_ppl.svg against its report.json (tests only):
the dashed line is the Pareto front computed here (the (file_bytes,
perplexity) points no other model beats on both, one strictly; absent when
the front is one point), no two point labels overlap and no text leaves
the picture (labels measured at 7 px per character of 12 px sans-serif,
13 px high, as svg.c places them).
Usage: check_size_plot.py REPORT_DIR REPORT_JSON [MIN_FRONT_POINTS]"""
import json, sys
import xml.etree.ElementTree as ET

ns = "{http://www.w3.org/2000/svg}"
svg = ET.parse(sys.argv[1] + "/size_ppl.svg").getroot()
models = json.load(open(sys.argv[2]))["models"]
min_front = int(sys.argv[3]) if len(sys.argv) > 3 else 0
rows = [(m["file_bytes"], m["perplexity"]) for m in models]
front = sorted({p for p in rows
                if not any(q != p and q[0] <= p[0] and q[1] <= p[1] for q in rows)})
assert len(front) >= min_front, ("front", front)
dashed = [p for p in svg.findall(ns + "polyline") if p.get("stroke-dasharray")]
if len(front) >= 2:
    assert len(dashed) == 1, dashed
    assert len(dashed[0].get("points").split()) == len(front), (front, dashed[0].get("points"))
else:
    assert not dashed, dashed
width = float(svg.get("width"))
boxes = []
for t in svg.findall(ns + "text"):
    if t.get("transform") or not t.text:
        continue
    w, x, y = 7 * len(t.text), float(t.get("x")), float(t.get("y"))
    a = t.get("text-anchor") or "start"
    x0 = x - w if a == "end" else x - w / 2 if a == "middle" else x
    assert 0 <= x0 and x0 + w <= width, ("outside the picture", t.text, x0, w, width)
    if t.get("fill") and t.get("fill") != "#888":  # the point labels
        boxes.append((x0, y - 10, x0 + w, y + 3, t.text))
for i, a in enumerate(boxes):
    for b in boxes[:i]:
        assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), ("overlap", a, b)
assert len(boxes) == len(models), (len(boxes), len(models))
print(f"  size plot: {len(models)} labels, none overlapping; Pareto front of {len(front)}")
