"""The report as one self-contained HTML page (inline CSS and SVG; no script, no network)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from twotower.report import plots
from twotower.report.collect import Sources, freshness_buckets, http_runs, quantile

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#f6f7f9}
header{background:#1f2937;color:#fff;padding:14px 28px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#cbd5e1;font-size:13px}main{padding:12px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px 18px;margin:14px 0}
h2{font-size:17px;margin:4px 0 8px}.cards{display:flex;flex-wrap:wrap;gap:10px;margin-top:14px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:10px 14px;min-width:170px}
.card b{display:block;font-size:19px}.card span{font-size:12px;color:#555}
.ok{color:#1b7837}.bad{color:#b2182b}.muted{color:#666;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border-bottom:1px solid #e5e7eb;padding:4px 9px;text-align:left}
th{background:#f3f4f6}figure{margin:10px 0}figure svg{width:100%;max-width:980px;height:auto}
"""


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _num(v, fmt: str = "{:.4f}") -> str:
    return "-" if v is None else fmt.format(v)


def _table(head: list[str], rows: list[list[str]]) -> str:
    """Cells are HTML already (callers escape text)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _figure(svg: str | None, caption: str = "") -> str:
    if not svg:
        return ""
    cap = f"<figcaption class='muted'>{escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{svg}{cap}</figure>"


def _missing(what: str, how: str) -> str:
    return f"<p class='muted'>No {escape(what)} yet: {how}.</p>"


def _link(target: str | Path, base: Path, text: str) -> str:
    rel = os.path.relpath(Path(target), base)
    return f"<a href='{escape(Path(rel).as_posix())}'>{escape(text)}</a>"


def validation_section(src: Sources, base: Path) -> str:
    if not src.validation:
        return _missing("validation run", "<code>twotower validate DAY</code> or <code>twotower full-update DAY</code>")
    rows = []
    for s in src.validation[::-1]:
        ok = s.get("success")
        fails = "; ".join(escape(f"{f.get('suite')}: {f.get('expectation')} on {f.get('column') or 'table'}")
                          for f in s.get("failures", [])[:5]) or "-"  # fmt: skip
        suites = [_link(v["docs_page"], base, name) for name, v in (s.get("suites") or {}).items() if v.get("docs_page")]
        rows.append([escape(s["day"]), f"<b class='{'ok' if ok else 'bad'}'>{'passed' if ok else 'FAILED'}</b>",
                     str(s.get("evaluated", "-")), fails, " ".join(suites) or "-"])  # fmt: skip
    docs = src.validation[-1].get("docs_path")
    link = (f"<p>Great Expectations data docs: {_link(docs, base, 'the site index')} (it draws its list with scripts "
            "from public CDNs, so it is empty without a network; the table below is the offline index: every "
            "validated day, each suite's page linked)</p>") if docs else ""  # fmt: skip
    return (link + _figure(plots.validation(src.validation))
            + _table(["day", "gate", "expectations", "failures (first 5)", "data docs per suite"], rows))  # fmt: skip


def generations_section(src: Sources) -> str:
    if not src.generations:
        return _missing("published generation", "<code>twotower full-update DAY</code>")
    rows = []
    for m in src.generations[::-1]:
        x = m.get("metrics", {})
        mark = " <b class='ok'>(served)</b>" if m["id"] == src.current else ""
        rows.append([escape(m["id"]) + mark, escape(str(m["day"])), escape(m.get("parent") or "-"),
                     _num(x.get("train_loss")), f"{int(x.get('train_examples', 0)):,}", _pct(x.get("recall@50")),
                     _pct(x.get("recall@100")), _pct(x.get("parent_recall@100")),
                     _pct(x.get("ann_recall@100_vs_exact")), _num(x.get("user_id_rms_over_init")),
                     _id_part(x.get("id_swap_cosine"))])  # fmt: skip
    head = ["generation", "day", "parent", "train loss", "examples", "recall@50", "recall@100",
            "parent recall@100", "ANN vs exact @100", "user ID rows / init (RMS)",
            "user-vector cosine, ID swapped"]  # fmt: skip
    return _figure(plots.generations(src.generations)) + _table(head, rows)


def _id_part(cosine) -> str:
    """The ID-swap cosine, flagged when the ID embedding moves (almost) nothing of the user vector."""
    if cosine is None:
        return "-"
    text = _num(cosine)
    return f"<b class='bad' title='the user tower ignores the ID embedding'>{text}</b>" if cosine > 0.95 else text


def replay_section(src: Sources) -> str:
    r = src.replay
    if not r:
        return _missing("replay results", "<code>twotower replay</code>")
    cfg, ni = r["config"], r["new_interest"]
    rows = []
    for s in [*r["strategies"], {"key": "oracle", "label": "oracle (true affinity)"}]:
        key = s["key"]
        cells = [escape(s["label"])]
        for k in cfg["ks"]:
            v = r["summary"][key][f"recall@{k}"]
            cells.append(f"{_pct(v['mean'])} ± {_pct(v['std'])}")
        if key in ni and key != "oracle":
            rec = ni[key]["recovery_hours"]
            got = [h for h in rec if h is not None]
            cells += [_pct(ni[key]["recall_after_1h"]["mean"]),
                      (f"{sum(got) / len(got):.1f} h" if len(got) == len(rec) else f"not within the day in "
                       f"{len(rec) - len(got)}/{len(rec)} seeds")]  # fmt: skip
        else:
            cells += ["-", "-"]
        rows.append(cells)
    head = ["strategy", *[f"recall@{k}" for k in cfg["ks"]], f"new-interest recall@{ni['k']} (≥1 h)",
            f"hours to recover (≥{ni['share']:.0%} of oracle)"]  # fmt: skip
    claims = []
    for c in r["claims"]:
        diffs = "<br>".join(f"{escape(n)}: {100 * v['mean']:+.1f} ± {100 * v['std']:.1f} pts" for n, v in c["by_k"].items())
        verdict = f"<b class='{'ok' if c['verdict'] == 'holds' else 'bad'}'>{escape(c.get('verdict_text', c['verdict']))}</b>"
        claims.append([escape(c["claim"]), diffs, verdict])
    k = max(cfg["ks"])
    intro = (f"<p class='muted'>{len(cfg['seeds'])} seeds × {cfg['days']} simulated days ({cfg['users']:,} users, "
             f"{cfg['items']:,} items); {r['measured_clicks']:,} measured clicks; {cfg['step_minutes']}-minute steps. "
             f"Reproduce: <code>{escape(r.get('command', 'twotower replay'))}</code></p>")  # fmt: skip
    return (intro + _table(head, rows) + _table(["claim of the seed", "paired difference over seeds", "verdict"], claims)
            + _figure(plots.replay_summary(r)) + _figure(plots.replay_hourly(r, k))
            + _figure(plots.replay_timeline(r, k)) + _figure(plots.new_interest(r)))  # fmt: skip


def freshness_section(src: Sources) -> str:
    f = src.freshness
    if not f:
        return _missing("freshness statistics", "run the incremental updater (<code>twotower incremental</code>)")
    window = f.get("window") or {}
    kinds = [k for k in window if isinstance(window[k], dict)]
    stats = ("count", "p50", "p95", "p99", "max")
    rows = [[escape(k), *(_num(window[k].get(p), "{:.2f}") for p in stats)] for k in kinds]
    buckets = {k: b for k in (f.get("histogram") or {}) if k != "le" and (b := freshness_buckets(f, k))}
    return (_table(["lag (seconds)", "users", "p50", "p95", "p99", "max"], rows)
            + _figure(plots.freshness(buckets), "cumulative since the first push"))  # fmt: skip


def serving_section(src: Sources) -> str:
    s = src.serving
    if not s:
        return _missing("serving benchmark", "<code>make bench</code> (bench/results/serving.json)")
    stages = (s.get("in_process") or {}).get("stages") or {}
    total = (s.get("in_process") or {}).get("recall_k100")
    if isinstance(total, dict):
        stages = {**stages, "total": total}
    verdict = s.get("verdict") or {}
    rows = [[escape(k), escape(str(v))] for k, v in verdict.items() if isinstance(v, (int, float, str, bool))]
    when = escape(str(s.get("when", "?")))
    return (f"<p class='muted'>last benchmark run: {when}</p>" + _figure(plots.serving(stages, http_runs(s)))
            + (_table(["target check", "value"], rows) if rows else ""))  # fmt: skip


def _buckets(h: dict) -> tuple[list[str], list[int]]:
    """Per-bucket counts (not cumulative) of a histogram, labelled by their millisecond ranges."""
    cum, labels, low = h["buckets"], [], "0"
    for bound in h["le"]:
        high = f"{float(bound) * 1000:g}" if bound != "+Inf" else None
        labels.append(f"{low}–{high} ms" if high else f">{low} ms")
        low = high or low
    return labels, [cum[0]] + [b - a for a, b in zip(cum, cum[1:])]


def served_latency_section(src: Sources) -> str:
    lat = src.served_latency
    if not lat:
        return _missing("latency snapshot of a server", "<code>twotower serve</code> (or <code>twotower demo</code>): each server "
                        "process writes its histograms to <code>serving/</code>")  # fmt: skip
    recall = [h for route, h in lat["http"].items() if route.startswith("/recall")]
    requests = None
    if recall:
        requests = {"le": recall[0]["le"], "buckets": [sum(c) for c in zip(*(h["buckets"] for h in recall if h["le"] == recall[0]["le"]))],
                    "count": sum(h["count"] for h in recall), "sum": sum(h["sum"] for h in recall)}  # fmt: skip
    stages = {}
    for name, h in lat["stages"].items():
        qs = {f"p{int(q * 100)}_ms": quantile(h, q) for q in (0.5, 0.9, 0.99)}
        if all(v is not None for v in qs.values()):
            stages[name] = {k: v * 1000 for k, v in qs.items()}
    rows = []
    if requests and requests["count"]:
        qs = [quantile(requests, q) for q in (0.5, 0.9, 0.99)]
        rows.append(["/recall (server side)", f"{requests['count']:,}", *(_num(q and q * 1000, "{:.2f}") for q in qs),
                     f"{requests['sum'] / requests['count'] * 1000:.2f}"])  # fmt: skip
    for name, h in lat["stages"].items():
        if h["count"]:
            rows.append([escape(name), f"{h['count']:,}", *(_num(stages.get(name, {}).get(p), "{:.3f}") for p in ("p50_ms", "p90_ms", "p99_ms")),
                         f"{h['sum'] / h['count'] * 1000:.2f}"])  # fmt: skip
    intro = (f"<p class='muted'>{lat['processes']} server process(es), generation(s) {escape(', '.join(lat['generations']) or '-')}; "
             f"last written {escape(lat['written_at'])}. Quantiles are read from the histograms' buckets.</p>")  # fmt: skip
    return (intro + _table(["what", "observations", "p50 ms", "p90 ms", "p99 ms", "mean ms"], rows)
            + _figure(plots.served_latency(_buckets(requests) if requests else None, stages)))  # fmt: skip


def cards(src: Sources) -> str:
    out = []
    if src.current:
        m = next((g for g in src.generations if g["id"] == src.current), {})
        out.append((src.current, f"served generation, recall@100 {_pct(m.get('metrics', {}).get('recall@100'))}"))
    if src.validation:
        last = src.validation[-1]
        out.append(("passed" if last.get("success") else "FAILED", f"data gate of {last['day']}"))
    if src.replay:
        held = sum(c["verdict"] == "holds" for c in src.replay["claims"])
        out.append((f"{held}/{len(src.replay['claims'])}", "seed claims that hold in the replay"))
    p95 = ((src.freshness or {}).get("window") or {}).get("event_to_visible_seconds", {}).get("p95")
    if p95 is not None:
        out.append((f"{p95:.1f} s", "event → visible, p95 (freshness)"))
    p99 = ((src.serving or {}).get("verdict") or {}).get("in_process_p99_ms")
    if p99 is not None:
        out.append((f"{p99:.2f} ms", "in-process recall p99 (last benchmark)"))
    items = "".join(f"<div class='card'><b>{escape(a)}</b><span>{escape(b)}</span></div>" for a, b in out)
    return f"<div class='cards'>{items}</div>"


def render(src: Sources, workspace: Path, base: Path) -> str:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    sections = [
        ("Data gate (Great Expectations)", validation_section(src, base)),
        ("Generations: training loss and held-out recall", generations_section(src)),
        ("Day replay: update strategies compared", replay_section(src)),
        ("Freshness of the incremental update", freshness_section(src)),
        ("Serving latency of this workspace's servers", served_latency_section(src)),
        ("Serving latency (last benchmark)", serving_section(src)),
    ]
    problems = "".join(f"<li>{escape(p)}</li>" for p in src.problems)
    body = "".join(f"<section><h2>{escape(t)}</h2>{html}</section>" for t, html in sections)
    if problems:
        body += f"<section><h2>Sources that could not be read</h2><ul>{problems}</ul></section>"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>twotower report</title>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{CSS}</style></head><body>"
            f"<header><h1>twotower — recall channel report</h1><p>workspace {escape(str(workspace))} · generated "
            f"{now}</p></header><main>{cards(src)}{body}</main></body></html>")  # fmt: skip
