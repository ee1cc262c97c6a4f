"""Pages to watch the model think: one search as a self-contained HTML page, and the server's chat page.

Plain HTML, CSS and a little JavaScript, no build step and nothing fetched from the network: `render` (below, in
JS) draws a search result (its answer, the vote as bars, every candidate, the tree with each step's score and what
was pruned) and both pages use it: `thinking_page` with the result embedded, the chat page with the result of the
request it just sent.
"""

from __future__ import annotations

import html
import json
from typing import Any

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.3em} .question{background:#f4f6fa;padding:.8em 1em;border-radius:6px;white-space:pre-wrap}
.answer{font-size:1.2em;margin:.8em 0} .right{color:#17803d} .wrong{color:#b3261e} .muted{color:#888}
.bars div{margin:.2em 0} .bar{display:inline-block;height:1em;background:#4a78c2;vertical-align:middle;margin-right:.5em}
.bar.chosen{background:#17803d} details{margin:.25em 0 .25em 1.2em} summary{cursor:pointer}
pre{white-space:pre-wrap;background:#fafafa;border-left:3px solid #ddd;padding:.4em .7em;margin:.3em 0}
.node.pruned>summary,.node.pruned>pre{color:#999} .node.finished>summary{font-weight:600}
.score{font-family:monospace;background:#eef;padding:0 .3em;border-radius:3px}
table.spend td{padding:0 1em 0 0} table.examples{border-collapse:collapse;margin:.3em 0 .6em}
table.examples td,table.examples th{padding:.1em .6em;text-align:left;border-bottom:1px solid #eee}
tr.pass td:last-child{color:#17803d} tr.fail td:last-child{color:#b3261e}
"""

# render(element, result): result is SearchResult.to_dict() plus "question" (and "reference" when known).
SCRIPT = r"""
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
}
function score(s) { return s === null || s === undefined ? "" : el("span", {class: "score"}, Number(s).toFixed(2)); }
function examples(rows) {  // a code candidate: what its program printed on the prompt's examples
  if (!rows || !rows.length) return "";
  const table = el("table", {class: "examples"}, el("tr", {}, el("th", {}, "example"), el("th", {}, "wanted"),
    el("th", {}, "got"), el("th", {}, "")));
  for (const x of rows) table.append(el("tr", {class: x.passed ? "pass" : "fail"}, el("td", {}, el("code", {}, x.example)),
    el("td", {}, el("code", {}, x.want)), el("td", {}, el("code", {}, x.got ?? "(not reached)")),
    el("td", {}, x.passed ? "passed" : "failed")));
  return table;
}
function render(root, r) {
  root.replaceChildren();
  if (r.question) root.append(el("div", {class: "question"}, r.question));
  const verdict = r.correct === true ? el("span", {class: "right"}, "  (right)") : r.correct === false ?
    el("span", {class: "wrong"}, r.reference ? `  (reference: ${r.reference})` : "  (wrong)") : "";
  root.append(el("div", {class: "answer"}, "answer: ", el("b", {}, r.answer ?? "none"), verdict));
  const spend = r.spend || {};
  root.append(el("table", {class: "spend"}, el("tr", {},
    el("td", {}, `strategy: ${r.strategy}`), el("td", {}, `tokens generated: ${spend.generated_tokens ?? "?"}`),
    el("td", {}, `TFLOPs: ${((spend.flops || 0) / 1e12).toFixed(2)}`),
    el("td", {}, `seconds: ${(spend.seconds || 0).toFixed(1)}`))));
  const cands = r.candidates || [];
  if (cands.length) {
    const votes = new Map();
    for (const c of cands) if (c.answer !== null) votes.set(c.answer, (votes.get(c.answer) || 0) + 1);
    const most = Math.max(1, ...votes.values());
    const bars = el("div", {class: "bars"}, el("h2", {}, "The vote"));
    for (const [a, k] of [...votes.entries()].sort((x, y) => y[1] - x[1]))
      bars.append(el("div", {}, el("span", {class: "bar" + (a === r.answer ? " chosen" : ""),
        style: `width:${Math.round(300 * k / most)}px`}), `${a}: ${k} of ${cands.length}`));
    const none = cands.filter(c => c.answer === null).length;
    if (none) bars.append(el("div", {class: "muted"}, `${none} without an answer`));
    root.append(bars);
    const list = el("div", {}, el("h2", {}, `Candidates (${cands.length})`));
    cands.forEach((c, i) => list.append(el("details", {class: "candidate"},
      el("summary", {}, `#${i + 1}  answer ${c.answer ?? "none"}  `, score(c.score),
         c.reason ? el("span", {class: "muted"}, `  ${c.reason}`) : ""),
      el("pre", {}, c.text), examples(c.examples))));
    root.append(list);
  }
  if (r.tree && r.tree.length) {
    const kids = new Map();
    for (const n of r.tree) { const p = n.parent ?? -1; if (!kids.has(p)) kids.set(p, []); kids.get(p).push(n); }
    const why = {pruned: "pruned: scored below the beams kept", kept: "kept", finished: "finished", open: "open"};
    const draw = (n) => {
      const node = el("details", {class: `node ${n.state}`, open: ""},
        el("summary", {}, `step ${n.depth + 1} `, score(n.score), el("span", {class: "muted"}, `  ${why[n.state] || n.state}`)),
        el("pre", {}, n.text));
      for (const k of kids.get(n.id) || []) node.append(draw(k));
      return node;
    };
    const tree = el("div", {class: "tree"}, el("h2", {}, `The search tree (${r.tree.length} steps)`));
    for (const n of kids.get(-1) || []) tree.append(draw(n));
    root.append(tree);
  }
}
"""


def thinking_page(result: dict[str, Any], title: str = "ponder: watch it think") -> str:
    """One search as a page that opens anywhere, offline: the result is embedded as JSON."""
    data = json.dumps(result).replace("</", "<\\/")  # a result's text may hold "</script>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><div id='thinking'></div>"
            f"<script id='result' type='application/json'>{data}</script><script>{SCRIPT}\n"
            "render(document.getElementById('thinking'), JSON.parse(document.getElementById('result').textContent));"
            "</script></body></html>")


def chat_page(model: str) -> str:
    """The server's page: ask, choose how hard to think, read the answer, open the thinking."""
    chat = r"""
const form = document.getElementById('ask'), log = document.getElementById('log');
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const question = document.getElementById('question').value.trim();
  if (!question) return;
  const effort = document.getElementById('effort').value;
  const turn = el('div', {class: 'turn'}, el('div', {class: 'question'}, question));
  const answer = el('pre', {class: 'reply'}, effort === 'none' ? '' : `thinking (${effort} effort)...`);
  turn.append(answer);
  log.prepend(turn);
  const body = {model: MODEL, messages: [{role: 'user', content: question}], max_tokens: 512};
  if (effort === 'none') {
    body.stream = true;
    const reply = await fetch('/v1/chat/completions', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                        body: JSON.stringify(body)});
    const reader = reply.body.getReader(), decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      const events = buffer.split('\n\n');
      buffer = events.pop();
      for (const e of events) {
        const data = e.replace(/^data: /, '');
        if (data === '[DONE]') continue;
        const delta = JSON.parse(data).choices?.[0]?.delta?.content;
        if (delta) answer.textContent += delta;
      }
    }
    return;
  }
  const strategy = document.getElementById('strategy').value;
  body.ponder = {strategy, n: {low: 4, medium: 8, high: 16}[effort], return_candidates: true, return_tree: true};
  if (strategy === 'beam') body.ponder.verifier = 'arithmetic';
  const reply = await (await fetch('/v1/chat/completions', {method: 'POST',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)})).json();
  if (reply.error) { answer.textContent = 'error: ' + reply.error.message; return; }
  answer.textContent = reply.choices[0].message.content;
  const panel = el('details', {class: 'thinking'}, el('summary', {}, 'show the thinking'), el('div', {}));
  render(panel.lastChild, Object.assign({}, reply.ponder, {question}));
  turn.append(panel);
});
"""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>ponder: {html.escape(model)}</title>"
            f"<style>{STYLE} textarea{{width:100%;height:5em}} .turn{{border-top:1px solid #ddd;padding:.6em 0}}"
            "</style></head><body>"
            f"<h1>ponder: {html.escape(model)}</h1><form id='ask'><textarea id='question' "
            "placeholder='Ask a question'></textarea><br>thinking effort: <select id='effort'>"
            "<option value='none'>none (one answer, streamed)</option><option value='low'>low (4 samples)</option>"
            "<option value='medium' selected>medium (8)</option><option value='high'>high (16)</option></select> "
            "strategy: <select id='strategy'><option value='majority'>majority</option>"
            "<option value='beam'>beam search, arithmetic checked (a tree)</option></select> <button type='submit'>Ask</button>"
            f"</form><div id='log'></div><script>const MODEL = {json.dumps(model)};{SCRIPT}{chat}</script>"
            "</body></html>")
