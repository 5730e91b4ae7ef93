//! Renders the report model as one self-contained HTML page: inline CSS, inline SVG, and a few lines of
//! inline script that highlight every occurrence of a write id under the pointer. Nothing is loaded
//! from anywhere: the file can be mailed, attached to a CI run, or opened offline years later.

use super::model::{FindingView, KeyRow, KeyView, Report, Section, Verdict};
use super::svg::{graph, plots, timeline};
use super::{fmt_ms, version_text};
use dynamo_checker::history::{Clock, Dot, Outcome, Version};
use serde_json::Value;
use std::fmt::Write as _;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A write id, marked so that hovering it highlights it everywhere.
fn wid(id: &str) -> String {
    let plain = id.trim_end_matches('†');
    format!(
        r#"<code class="w" data-w="{}">{}</code>"#,
        esc(plain),
        esc(id)
    )
}

fn wids(ids: &[String]) -> String {
    if ids.is_empty() {
        return "—".to_owned();
    }
    ids.iter().map(|i| wid(i)).collect::<Vec<_>>().join(" ")
}

const CSS: &str = r#"
:root{--ok:#3a9d5d;--fail:#d64545;--info:#e0a030;--pending:#999;--ink:#1f2328;--muted:#57606a;--line:#d0d7de;--bg:#f6f8fa;--obs:#2b6cb0;--clock:#e0631c}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--ink);background:#fff}
main{max-width:1280px;margin:0 auto;padding:0 20px 40px}
header{background:var(--bg);border-bottom:1px solid var(--line);padding:16px 20px}
header .inner{max-width:1280px;margin:0 auto;display:flex;gap:18px;align-items:center;flex-wrap:wrap}
h1{font-size:22px;margin:0}
h2{font-size:18px;margin:28px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:18px 0 6px}
.verdict{font-weight:700;font-size:20px;padding:6px 14px;border-radius:6px;color:#fff;letter-spacing:.5px}
.v-valid{background:var(--ok)}.v-invalid{background:var(--fail)}.v-unknown{background:var(--info)}
.summary{color:var(--muted);margin:2px 0 0}
.chips span{display:inline-block;margin:4px 6px 0 0;padding:1px 8px;border-radius:10px;background:#fde2e2;color:#8a1c1c;font-weight:600;font-size:13px}
nav{max-width:1280px;margin:8px auto 0;font-size:13px}nav a{margin-right:14px;color:var(--obs);text-decoration:none}
pre.cmd{background:#0d1117;color:#e6edf3;padding:10px 12px;border-radius:6px;white-space:pre-wrap;overflow-wrap:anywhere;margin:6px 0}
table{border-collapse:collapse;font-size:13px}
td,th{border-bottom:1px solid #eaeef2;padding:3px 8px;text-align:left;vertical-align:top}
th{color:var(--muted);font-weight:600}
dl.config{display:grid;grid-template-columns:repeat(auto-fill,minmax(290px,1fr));gap:2px 18px;margin:6px 0;font-size:13px}
dl.config div{display:flex;gap:8px;border-bottom:1px solid #eaeef2;padding:2px 0}dl.config dt{color:var(--muted);font-weight:600;min-width:130px}dl.config dd{margin:0}
table.kv th{white-space:nowrap}
table.kv table.kv{margin:0}
.def{color:var(--muted);margin:0 0 8px}
.finding{border:1px solid var(--line);border-left:4px solid var(--fail);border-radius:6px;padding:10px 12px;margin:10px 0}
.finding.warn{border-left-color:var(--info)}
.expl{margin:0 0 8px;font-weight:500}
.graph-wrap{overflow-x:auto}
svg{max-width:100%;height:auto}
svg text{font-family:system-ui,"DejaVu Sans",sans-serif}
svg.graph text{font-size:10.5px;text-anchor:middle}
svg.graph .n-id{font-weight:700;font-size:12px}
svg.graph .n-role{font-style:italic;fill:var(--muted)}
svg.graph g.n rect{fill:#f7f7f7;stroke:#8c959f;stroke-width:1.2}
svg.graph g.n-focus rect{fill:#fde2e2;stroke:#c53030;stroke-width:2}
svg.graph g.n-witness rect{fill:#fff4e5;stroke:var(--clock)}
svg.graph g.n-final rect{stroke:var(--ok);stroke-width:2.5}
svg.graph g.n-unsure rect{stroke-dasharray:4 3}
svg.graph g.hl rect{stroke:#000;stroke-width:3}
svg.graph path{fill:none}
.e-obs{stroke:var(--obs);stroke-width:1.8;marker-end:url(#arr-obs)}
.e-obs-t{stroke:#8fb3de;stroke-width:1.6;marker-end:url(#arr-obs-t)}
.e-regress{stroke:#8e44ad;stroke-width:2;marker-end:url(#arr-regress)}
.e-clock{stroke:var(--clock);stroke-width:1.8;stroke-dasharray:6 4;marker-end:url(#arr-clock)}
.legend{font-size:12px;color:var(--muted);margin:4px 0}
.legend i{display:inline-block;width:22px;height:0;vertical-align:middle;margin:0 4px 0 10px;border-top:2px solid}
.legend i.obs{border-color:var(--obs)}.legend i.obs-t{border-color:#8fb3de}.legend i.regress{border-color:#8e44ad}.legend i.clock{border-top:2px dashed var(--clock)}
.legend b{display:inline-block;width:12px;height:10px;vertical-align:middle;margin:0 4px 0 10px;border-radius:2px}
code.w{background:#eef2f6;border-radius:3px;padding:0 3px;font-size:12px;cursor:default;white-space:nowrap}
code.w.hl{background:#ffe58a;outline:1px solid #d4a000}
details{margin:6px 0}summary{cursor:pointer;color:var(--obs)}
table.rest td:nth-child(4){max-width:620px}
svg.timeline .lane{fill:#f6f8fa}
svg.timeline .lane-label{font-size:10px;text-anchor:end;fill:var(--muted)}
svg.timeline .op.ok,.legend b.ok{fill:var(--ok);background:var(--ok)}
svg.timeline .op.fail,.legend b.fail{fill:var(--fail);background:var(--fail)}
svg.timeline .op.info,.legend b.info{fill:var(--info);background:var(--info)}
svg.timeline .op.pending,.legend b.pending{fill:var(--pending);background:var(--pending)}
svg.timeline .op:hover{stroke:#000;stroke-width:1}
svg.timeline .shade rect{fill-opacity:.13}
svg.timeline .shade rect.band{fill-opacity:.8}
svg.timeline .shade-label{font-size:10px;fill:var(--ink)}
svg.timeline .mark line{stroke:#000;stroke-dasharray:3 3;stroke-width:1}
svg.timeline .mark text{font-size:11px;font-weight:600}
svg.timeline .axis{stroke:#8c959f}
svg.timeline .tick{font-size:10px;text-anchor:middle;fill:var(--muted)}
.shade rect{fill:#888}
.sh-partition rect,.legend b.sh-partition{fill:#7b61ff;background:#7b61ff}
.sh-crash rect,.legend b.sh-crash{fill:#d64545;background:#d64545}
.sh-wipe rect,.legend b.sh-wipe{fill:#8b0000;background:#8b0000}
.sh-skew rect,.legend b.sh-skew{fill:#1e88e5;background:#1e88e5}
.sh-loss rect,.legend b.sh-loss{fill:#ff9800;background:#ff9800}
.sh-slow rect,.legend b.sh-slow{fill:#00897b;background:#00897b}
.sh-membership rect,.legend b.sh-membership{fill:#6d4c41;background:#6d4c41}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:8px 20px}
.plots figure{margin:0}.plots figcaption{font-size:12px;color:var(--muted)}
table.ops td{white-space:nowrap}table.ops td.wide{white-space:normal;max-width:420px}
table.ops tr.wit td{background:#fff8e1}
table.ops tr.final td{background:#eef7f0}
table.ops tr.gap td{color:var(--muted);font-style:italic;text-align:center;background:#fafbfc}
.t-ok{color:var(--ok);font-weight:600}.t-fail{color:var(--fail);font-weight:600}.t-info{color:#b07a10;font-weight:600}.t-pending{color:var(--pending)}
.note{color:var(--muted);font-size:13px}
ol.story{font-size:13.5px;padding-left:26px;margin:6px 0}ol.story li{margin:1px 0}ol.story .t{color:var(--muted);display:inline-block;min-width:72px;font-variant-numeric:tabular-nums}
table.steps td:nth-child(3){max-width:640px}
.warnbox{background:#fff8e1;border:1px solid #f0d58c;border-radius:6px;padding:8px 12px}
footer{color:var(--muted);font-size:12px;margin-top:30px}
"#;

/// Highlights every element carrying the hovered write id.
const SCRIPT: &str = r#"
(function () {
  var current = null;
  function mark(id, on) {
    var sel = '[data-w="' + (window.CSS && CSS.escape ? CSS.escape(id) : id) + '"]';
    document.querySelectorAll(sel).forEach(function (e) { e.classList.toggle('hl', on); });
  }
  document.addEventListener('mouseover', function (ev) {
    var t = ev.target && ev.target.closest ? ev.target.closest('[data-w]') : null;
    var id = t ? t.getAttribute('data-w') : null;
    if (id === current) return;
    if (current) mark(current, false);
    current = id;
    if (id) mark(id, true);
  });
})();
"#;

const MARKERS: &str = r##"<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>
<marker id="arr-obs" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="#2b6cb0"/></marker>
<marker id="arr-obs-t" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="#8fb3de"/></marker>
<marker id="arr-regress" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="#8e44ad"/></marker>
<marker id="arr-clock" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="#e0631c"/></marker>
</defs></svg>"##;

fn version_of(v: &Value) -> Option<String> {
    let clock: Clock = v
        .get("clock")?
        .as_object()?
        .iter()
        .filter_map(|(n, c)| Some((n.clone(), c.as_u64()?)))
        .collect();
    let dot = v.get("dot").and_then(|d| {
        let a = d.as_array()?;
        Some(Dot::new(a.first()?.as_str()?, a.get(1)?.as_u64()?))
    });
    Some(version_text(&Version { dot, clock }))
}

/// A finding's data as nested key-value tables; write ids marked, times in ms.
fn value_html(key: &str, v: &Value) -> String {
    match v {
        Value::Object(map) => {
            if key == "version"
                && let Some(text) = version_of(v)
            {
                return esc(&text);
            }
            let mut out = String::from(r#"<table class="kv">"#);
            for (k, v) in map {
                // A replica map's values are sibling lists, keyed by node name; the quantiles of a
                // `..._ns` figure are nanoseconds.
                let quantile = matches!(k.as_str(), "p50" | "p95" | "p99" | "max");
                let child = if key == "replicas" {
                    "siblings"
                } else if key.ends_with("_ns") && quantile {
                    "quantile_ns"
                } else {
                    k
                };
                let _ = write!(
                    out,
                    "<tr><th>{}</th><td>{}</td></tr>",
                    esc(k),
                    value_html(child, v)
                );
            }
            out.push_str("</table>");
            out
        }
        Value::Array(items) if items.iter().all(Value::is_array) => items
            .iter()
            .map(|i| value_html(key, i))
            .collect::<Vec<_>>()
            .join(" | "),
        Value::Array(items) => {
            if items.is_empty() {
                return "—".to_owned();
            }
            let ids = matches!(
                key,
                "siblings"
                    | "observed"
                    | "resurrected"
                    | "final_reads"
                    | "tombstones"
                    | "unknown_items"
            );
            items
                .iter()
                .map(|i| match (ids, i) {
                    (true, Value::String(s)) => wid(s),
                    (_, i) => value_html("", i),
                })
                .collect::<Vec<_>>()
                .join(" ")
        }
        Value::String(s) if matches!(key, "write" | "ancestor" | "descendant") => wid(s),
        Value::String(s) => esc(s),
        Value::Number(n) if key.ends_with("_at") || key.ends_with("_ns") => match n.as_u64() {
            Some(ns) => format!(r#"<span title="{ns} ns">{}</span>"#, fmt_ms(ns)),
            None => esc(&n.to_string()),
        },
        other => esc(&other.to_string()),
    }
}

fn legend_graph() -> &'static str {
    r#"<p class="legend">edges: <i class="obs"></i>observed: the later write's client read the earlier (ground truth) <i class="obs-t"></i>observed through writes not drawn <i class="regress"></i>observed, but the clocks disagree <i class="clock"></i>clock only: the store orders them, the client never read it. Boxes: red = this finding's write, green border = in the final state, dashed = not acknowledged.</p>"#
}

fn finding_html(out: &mut String, s: &Section, f: &FindingView, detailed: bool, warn: bool) {
    let _ = write!(
        out,
        r#"<div class="finding{}"><p class="expl">{}</p>"#,
        if warn { " warn" } else { "" },
        esc(&f.explanation)
    );
    if detailed {
        if let Some(g) = &f.graph {
            let _ = write!(out, r#"<div class="graph-wrap">{}</div>"#, graph::render(g));
            let mut notes = Vec::new();
            if g.omitted > 0 {
                notes.push(format!(
                    "{} more related write(s) of {} not drawn",
                    g.omitted, g.key
                ));
            }
            if g.truncated {
                notes.push(
                    "an ancestry walk hit its bound: some observed edges may be missing".into(),
                );
            }
            if !notes.is_empty() {
                let _ = write!(out, r#"<p class="note">{}.</p>"#, esc(&notes.join("; ")));
            }
        } else if f.focus.is_some() && s.kind != "phantom-read" {
            out.push_str(
                r#"<p class="note">No drawing: the key is not among those kept in full.</p>"#,
            );
        }
        let _ = write!(
            out,
            r#"<details{}><summary>witness: {}</summary>{}</details>"#,
            if f.graph.is_none() { " open" } else { "" },
            wids(&f.witnesses),
            value_html("", &f.data)
        );
    }
    out.push_str("</div>");
}

fn section_html(out: &mut String, s: &Section, warn: bool) {
    let listed = s.findings.len();
    let _ = write!(
        out,
        r#"<h3 id="k-{kind}">{kind} <span class="note">{total} in all{more}</span></h3><p class="def">{def}</p>"#,
        kind = esc(&s.kind),
        total = s.total,
        more = if listed < s.total {
            format!(", the first {listed} listed")
        } else {
            String::new()
        },
        def = esc(s.definition),
    );
    for f in &s.findings[..s.detailed] {
        finding_html(out, s, f, true, warn);
    }
    let rest = &s.findings[s.detailed..];
    if rest.is_empty() {
        return;
    }
    let _ = write!(
        out,
        r#"<details{}><summary>{} {} {} finding(s)</summary><table class="rest"><tr><th>#</th><th>key</th><th>write</th><th>explanation</th><th>witnesses</th></tr>"#,
        if s.detailed == 0 { " open" } else { "" },
        if s.detailed == 0 { "the" } else { "and" },
        rest.len(),
        esc(&s.kind)
    );
    for (i, f) in rest.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.detailed + i + 1,
            esc(f.key.as_deref().unwrap_or("")),
            f.focus.as_deref().map(wid).unwrap_or_default(),
            esc(&f.explanation),
            wids(&f.witnesses)
        );
    }
    out.push_str("</table></details>");
}

fn outcome_html(o: Option<Outcome>) -> String {
    let (class, word) = match o {
        Some(Outcome::Ok) => ("t-ok", "ok"),
        Some(Outcome::Fail) => ("t-fail", "fail"),
        Some(Outcome::Info) => ("t-info", "info"),
        None => ("t-pending", "pending"),
    };
    format!(r#"<span class="{class}">{word}</span>"#)
}

fn key_html(out: &mut String, k: &KeyView, open: bool) {
    let kinds: Vec<String> = k
        .kinds
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    let _ = write!(
        out,
        r#"<h3 id="key-{id}">{key} <span class="note">{kinds}; {ops} operations</span></h3>"#,
        id = esc(&k.key),
        key = esc(&k.key),
        kinds = esc(&kinds.join(", ")),
        ops = k.ops_total,
    );
    if !k.replicas.is_empty() {
        out.push_str(r#"<p class="note">final replica states († a tombstone): "#);
        for (node, ids) in &k.replicas {
            let _ = write!(out, "<b>{}</b> {} &nbsp; ", esc(node), wids(ids));
        }
        out.push_str("</p>");
    }
    let _ = write!(out, "<details{}>", if open { " open" } else { "" });
    out.push_str(r#"<summary>every operation on this key, in invoke order (highlighted: the findings' writes and the reads that returned them)</summary><table class="ops"><tr><th>index</th><th>invoked</th><th>process</th><th>op</th><th>outcome</th><th>node</th><th>write / returned</th><th>observed</th><th>value</th><th>version</th><th>latency</th></tr>"#);
    for row in &k.rows {
        match row {
            KeyRow::Gap(n) => {
                let _ = write!(
                    out,
                    r#"<tr class="gap"><td colspan="11">… {n} operation(s) away from the witnesses not shown …</td></tr>"#
                );
            }
            KeyRow::Op(r) => {
                let class = if r.highlight {
                    " class=\"wit\""
                } else if r.is_final {
                    " class=\"final\""
                } else {
                    ""
                };
                let what = match &r.write {
                    Some(w) => wid(w),
                    None if r.outcome == Some(Outcome::Ok) => {
                        format!("returned {}", wids(&r.siblings))
                    }
                    None => String::new(),
                };
                let observed = if r.write.is_some() {
                    wids(&r.observed)
                } else {
                    String::new()
                };
                let _ = write!(
                    out,
                    r#"<tr{class}><td>{}</td><td>{}</td><td>p{}</td><td>{}{}</td><td>{}</td><td>{}</td><td class="wide">{what}</td><td class="wide">{observed}</td><td class="wide">{}</td><td class="wide">{}</td><td>{}</td></tr>"#,
                    r.index,
                    fmt_ms(r.invoked_ns),
                    r.process,
                    r.f.as_str(),
                    if r.is_final { " (final)" } else { "" },
                    outcome_html(r.outcome),
                    esc(r.node.as_deref().unwrap_or("")),
                    esc(&r.value),
                    esc(r.version.as_deref().unwrap_or("")),
                    r.latency_ns.map(fmt_ms).unwrap_or_default(),
                );
            }
        }
    }
    out.push_str("</table></details>");
}

fn figures_html(out: &mut String, stats: &Value) {
    let ms = |v: Option<&Value>| v.and_then(Value::as_u64).map(fmt_ms).unwrap_or_default();
    if let Some(by_f) = stats.get("by_f").and_then(Value::as_object) {
        out.push_str(r#"<h3>Operations</h3><table><tr><th>op</th><th>invoked</th><th>ok</th><th>fail</th><th>info</th><th>pending</th><th>latency p50</th><th>p95</th><th>p99</th><th>max</th></tr>"#);
        for (f, c) in by_f {
            let n = |k: &str| c.get(k).map(Value::to_string).unwrap_or_default();
            let q = stats.get("latency_ns").and_then(|l| l.get(f));
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(f),
                n("ops"),
                n("ok"),
                n("fail"),
                n("info"),
                n("pending"),
                ms(q.and_then(|q| q.get("p50"))),
                ms(q.and_then(|q| q.get("p95"))),
                ms(q.and_then(|q| q.get("p99"))),
                ms(q.and_then(|q| q.get("max"))),
            );
        }
        out.push_str("</table>");
    }
    if let Some(w) = stats.get("writes") {
        let n = |k: &str| w.get(k).map(Value::to_string).unwrap_or_default();
        let share = w.get("lost_share").and_then(Value::as_f64).unwrap_or(0.0);
        let _ = write!(
            out,
            r#"<h3>Writes</h3><table><tr><th>acknowledged</th><th>failed</th><th>indeterminate</th><th>acknowledged and lost</th><th>lost share</th></tr><tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}%</td></tr></table>"#,
            n("acknowledged"),
            n("failed"),
            n("indeterminate"),
            n("lost"),
            share * 100.0
        );
    }
    let rest: serde_json::Map<String, Value> = stats
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "by_f"
                            | "writes"
                            | "latency_ns"
                            | "unknown"
                            | "notes"
                            | "ops"
                            | "ok"
                            | "fail"
                            | "info"
                            | "pending"
                    )
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    if !rest.is_empty() {
        let _ = write!(
            out,
            "<h3>The checker's figures</h3>{}",
            value_html("stats", &Value::Object(rest))
        );
    }
}

/// The story of a small run, and the steps of the shrink that made it.
fn story_html(out: &mut String, story: &super::story::StoryView) {
    if !story.lines.is_empty() {
        out.push_str(r#"<h2 id="story">What happened</h2><p class="note">Every client request and fault of the run, in order (simulated time); a read followed at once by its client's write is one cart update.</p><ol class="story">"#);
        for (t, line) in &story.lines {
            let _ = write!(
                out,
                r#"<li><span class="t">{}</span> {}</li>"#,
                esc(&super::fmt_ms(*t)),
                ids_html(line)
            );
        }
        out.push_str("</ol>");
    }
    let Some(shrink) = &story.shrink else {
        return;
    };
    let size = |v: &Value| {
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        format!(
            "{} ops, {} faults ({:.2} s), {} clients, {} keys, {} nodes",
            n("ops"),
            n("faults"),
            n("fault_ms") as f64 / 1000.0,
            n("clients"),
            n("keys"),
            n("nodes")
        )
    };
    let text = |k: &str| shrink.get(k).and_then(Value::as_str).unwrap_or("");
    let _ = write!(
        out,
        r#"<h2 id="shrink">How it was shrunk</h2><p>From <code>{}</code> ({}), keeping <b>{}</b>: {} runs in {:.1} s{}.</p><table class="steps"><tr><th>run</th><th>after</th><th>what was removed</th><th>size after</th></tr>"#,
        esc(text("from")),
        esc(&size(shrink.get("original").unwrap_or(&Value::Null))),
        esc(text("anomaly")),
        shrink.get("runs").and_then(Value::as_u64).unwrap_or(0),
        shrink.get("wall_s").and_then(Value::as_f64).unwrap_or(0.0),
        if shrink.get("budget_spent").and_then(Value::as_bool) == Some(true) {
            " (the budget was spent: a longer one may shrink further)"
        } else {
            ", until no step helped"
        }
    );
    for step in shrink
        .get("steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{:.1} s</td><td>{}</td><td>{}</td></tr>",
            step.get("run").and_then(Value::as_u64).unwrap_or(0),
            step.get("elapsed_ms").and_then(Value::as_u64).unwrap_or(0) as f64 / 1000.0,
            esc(step.get("what").and_then(Value::as_str).unwrap_or("")),
            esc(&size(step.get("size").unwrap_or(&Value::Null)))
        );
    }
    out.push_str("</table>");
}

/// Text with every write id (`p3-17`) marked for hover highlighting.
fn ids_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let bare = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-');
        let is_id = bare.len() > 3
            && (bare.starts_with('p') || bare.starts_with('d'))
            && bare[1..].split_once('-').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            });
        if is_id {
            let at = word.find(bare).expect("a trimmed part");
            out.push_str(&esc(&word[..at]));
            out.push_str(&wid(bare));
            out.push_str(&esc(&word[at + bare.len()..]));
        } else {
            out.push_str(&esc(word));
        }
        word.clear();
    };
    for c in s.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut out = String::with_capacity(1 << 20);
    let verdict_class = match r.verdict {
        Verdict::Valid => "v-valid",
        Verdict::Invalid => "v-invalid",
        Verdict::Unknown => "v-unknown",
    };
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{verdict} · {title} · dynamo report</title><style>{CSS}</style></head><body>{MARKERS}<header><div class="inner"><div class="verdict {verdict_class}">{verdict}</div><div><h1>{title}</h1><p class="summary">{summary}</p>"#,
        verdict = r.verdict.word(),
        title = esc(&r.title),
        summary = esc(&r.summary),
    );
    if !r.counts.is_empty() {
        out.push_str(r#"<p class="chips">"#);
        for (kind, n) in &r.counts {
            let _ = write!(
                out,
                r##"<span><a href="#k-{k}" style="color:inherit;text-decoration:none">{k} {n}</a></span>"##,
                k = esc(kind)
            );
        }
        out.push_str("</p>");
    }
    out.push_str(r##"</div></div><nav><a href="#repro">reproduce</a>"##);
    if let Some(story) = &r.story {
        if !story.lines.is_empty() {
            out.push_str(r##"<a href="#story">what happened</a>"##);
        }
        if story.shrink.is_some() {
            out.push_str(r##"<a href="#shrink">shrink</a>"##);
        }
    }
    out.push_str(r##"<a href="#config">configuration</a><a href="#anomalies">anomalies</a><a href="#warnings">warnings</a><a href="#timeline">timeline</a><a href="#plots">plots</a><a href="#keys">keys</a><a href="#figures">figures</a></nav></header><main>"##);

    out.push_str(r#"<h2 id="repro">Reproduce</h2>"#);
    match &r.repro.sim {
        Some(cmd) => {
            let _ = write!(
                out,
                r#"<p>The same seed and options give a byte-identical history:</p><pre class="cmd">{}</pre>"#,
                esc(cmd)
            );
        }
        None if r.repro.replay.is_some() => out.push_str(r#"<p class="note">This plan is not what any <code>dynamo sim</code> command line generates (it was shrunk, edited or made with other settings); replay it:</p>"#),
        None => out.push_str(r#"<p class="note">There is no plan.json beside this history (another harness wrote it, or the plan was removed): it can be checked and read, not rerun.</p>"#),
    }
    if let Some(cmd) = &r.repro.replay {
        let _ = write!(
            out,
            r#"<p>{}</p><pre class="cmd">{}</pre>"#,
            if r.repro.sim.is_some() {
                "Or run the plan itself:"
            } else {
                ""
            },
            esc(cmd)
        );
    }
    if r.verdict == Verdict::Invalid {
        let _ = write!(
            out,
            r#"<p class="note">To look for a smaller plan that still fails the same way: <code>dynamo shrink {}</code>.</p>"#,
            esc(&r.dir)
        );
    }

    if let Some(story) = &r.story {
        story_html(&mut out, story);
    }

    out.push_str(r#"<h2 id="config">Configuration</h2><dl class="config">"#);
    for (k, v) in &r.config {
        let _ = write!(out, "<div><dt>{}</dt><dd>{}</dd></div>", esc(k), esc(v));
    }
    out.push_str("</dl>");

    out.push_str(r#"<h2 id="anomalies">Anomalies</h2>"#);
    if !r.unknown.is_empty() {
        out.push_str(r#"<div class="warnbox"><b>The verdict is unknown:</b><ul>"#);
        for u in &r.unknown {
            let _ = write!(out, "<li>{}</li>", esc(u));
        }
        out.push_str("</ul></div>");
    }
    if r.anomalies.is_empty() {
        out.push_str("<p>None: no acknowledged write was lost, no read returned what was not written, and the replicas converged.</p>");
    } else {
        out.push_str(r#"<p class="note">Each finding below is drawn with the writes around it, in invoke order, and two kinds of edge: what clients read (the ground truth, above the line) and what the store's clocks claim (below it). A lost write is one with no blue path to a final sibling. Hover over a write id to see it everywhere on the page.</p>"#);
        out.push_str(legend_graph());
    }
    for s in &r.anomalies {
        section_html(&mut out, s, false);
    }

    out.push_str(r#"<h2 id="warnings">Warnings</h2><p class="def">Warnings do not make a run invalid; they measure how stale or how redundant the store's answers were.</p>"#);
    if r.warnings.is_empty() {
        out.push_str("<p>None.</p>");
    }
    for s in &r.warnings {
        let limited = Section {
            findings: s
                .findings
                .iter()
                .take(super::model::WARNINGS_LISTED_MAX)
                .cloned()
                .collect(),
            ..s.clone()
        };
        section_html(&mut out, &limited, true);
    }

    let t = &r.timeline;
    let kinds: std::collections::BTreeSet<&str> =
        t.shades.iter().map(|s| s.kind.as_str()).collect();
    let _ = write!(
        out,
        r#"<h2 id="timeline">Timeline</h2><p class="legend">one lane per client {}; bars: <b class="ok"></b>ok <b class="fail"></b>fail <b class="info"></b>info (unknown) <b class="pending"></b>pending{}; faults: {}. Hover for details.</p>"#,
        if t.per_slot {
            "slot (process mod clients)"
        } else {
            "process (writes are the taller bars)"
        },
        if t.summarised {
            format!(
                "; over {} operations, each bar is a time bin coloured by its worst outcome",
                super::timeline::OPS_DRAWN_MAX
            )
        } else {
            String::new()
        },
        if kinds.is_empty() {
            "none".to_owned()
        } else {
            kinds
                .iter()
                .map(|k| format!(r#"<b class="sh-{0}"></b>{0}"#, esc(k)))
                .collect::<Vec<_>>()
                .join(" ")
        }
    );
    let _ = write!(
        out,
        r#"<div class="graph-wrap">{}</div>"#,
        timeline::render(t)
    );

    out.push_str(r#"<h2 id="plots">Plots</h2><div class="plots">"#);
    let s = &r.series;
    let raw_caption = if s.fine.is_empty() {
        "Latency of every operation (log scale) by the time it was invoked; faults shaded."
    } else {
        "Latency over time (log scale): p50 and max per fine time bin (too many operations to plot one point each); faults shaded."
    };
    let mut figure = |title: &str, svg: String, caption: &str| {
        let _ = write!(
            out,
            "<figure><h3>{}</h3>{svg}<figcaption>{}</figcaption></figure>",
            esc(title),
            esc(caption)
        );
    };
    figure("Latency over time", plots::latency_raw(s), raw_caption);
    figure(
        "Latency quantiles",
        plots::latency_quantiles(s),
        "Quantiles of ok operations' latency per time bin (log scale); faults shaded.",
    );
    figure(
        "Throughput",
        plots::throughput(s),
        "Operations completed per second, by outcome; faults shaded.",
    );
    figure(
        "Siblings per read",
        plots::siblings(s),
        "How many sibling versions ok reads returned (0: a missing key).",
    );
    match plots::window(s) {
        Some(svg) => {
            let w = s.window.expect("plotted");
            figure(
                "Consistency window",
                svg,
                &format!(
                    "Per acknowledged write, the time from its ack until every read that started later saw it or a descendant: quantiles over {} writes; {} never closed.",
                    w.count, w.never
                ),
            );
        }
        None => figure(
            "Consistency window",
            String::new(),
            "Not computed by the checker for this run.",
        ),
    }
    if let Some(svg) = plots::visibility(s) {
        let pairs: u64 = s.visibility.iter().map(|b| b.pairs).sum();
        figure(
            "t-visibility",
            svg,
            &format!(
                "P(fresh | t), the PBS curve: of the client reads that started t ms after the latest acknowledged write of their key, the share that saw it or a descendant, in bins that start at their label and end at the next; {pairs} reads."
            ),
        );
    }
    out.push_str("</div>");

    out.push_str(r#"<h2 id="keys">Keys with anomalies</h2>"#);
    if r.keys.is_empty() {
        out.push_str("<p>None.</p>");
    }
    for (i, k) in r.keys.iter().enumerate() {
        key_html(&mut out, k, i == 0);
    }

    out.push_str(r#"<h2 id="figures">Figures</h2>"#);
    figures_html(&mut out, &r.stats);
    if !r.notes.is_empty() {
        out.push_str(r#"<h3>Checker notes</h3><ul>"#);
        for n in &r.notes {
            let _ = write!(out, "<li>{}</li>", esc(n));
        }
        out.push_str("</ul>");
    }
    let _ = write!(
        out,
        r#"<footer>Written by <code>dynamo report {}</code> from history.jsonl, plan.json and results.json. Times are simulated time since the run started.</footer></main><script>{SCRIPT}</script></body></html>"#,
        esc(&r.dir)
    );
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn witness_data_renders_ids_times_and_versions() {
        let v = json!({"write": "p1-2", "acked_at": 5_000_000u64,
            "version": {"dot": ["n1", 3], "clock": {"n2": 1}},
            "final_state": {"replicas": {"n1": ["p9-9"]}}});
        let html = value_html("", &v);
        assert!(html.contains(r#"data-w="p1-2""#));
        assert!(html.contains(r#"data-w="p9-9""#));
        assert!(html.contains("5 ms"));
        assert!(html.contains("dot n1:3 clock {n2:1}"));
        let w = value_html(
            "",
            &json!({"consistency_window_ns": {"count": 7, "p50": 2_000_000}}),
        );
        assert!(w.contains("<td>7</td>") && w.contains("2 ms"), "{w}");
    }
}
