# ruff: noqa: E501  (the page is HTML and JavaScript, not Python)
"""The playground's one page. Kept in Python so it ships inside the package with no package-data setup.

Everything the bot posted is rendered with DOM text nodes, never innerHTML: what the page shows is
exactly the text Slack would get, and nothing in it can run as script.
"""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>expertbot playground</title>
<style>
 body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f6f6f7;color:#1d1c1d}
 header{background:#3f0e40;color:#fff;padding:10px 16px} header small{opacity:.8}
 main{display:flex;gap:12px;padding:12px} section{flex:1;background:#fff;border-radius:8px;padding:10px;min-height:60vh}
 h2{font-size:15px;margin:0 0 8px} .msg{padding:6px 8px;border-bottom:1px solid #eee}
 .who{font-weight:600;margin-right:6px} .bot .who{color:#3f0e40} .ctx{color:#616061;font-size:12px}
 .thread{margin-left:24px;border-left:3px solid #ddd;padding-left:8px} .note{color:#616061;font-style:italic}
 .section{white-space:pre-wrap} button{margin:4px 4px 0 0;cursor:pointer} img{max-width:420px;display:block}
 form{display:flex;gap:6px;padding:0 12px 12px} input[type=text]{flex:1;padding:6px} .reply{font-size:12px}
 #thread{font-size:12px;color:#616061;padding:0 12px}
</style></head><body>
<header><b>expertbot playground</b> <small>— the real bot and handlers, talking to a local stand-in for
Slack. Mention the bot in #general, DM it, or run /reindex and /retrain-adapter (you are an admin here).</small></header>
<div id="thread"></div>
<form id="f"><select id="kind"><option value="mention">@expertbot in #general</option><option value="dm">DM</option>
<option>/reindex</option><option>/retrain-adapter</option></select>
<input type="text" id="text" placeholder="Ask a question, or e.g. 'status' / 'help' for a command" autofocus>
<button>Send</button></form>
<main><section><h2># general</h2><div id="general"></div></section>
<section><h2>DM with expertbot</h2><div id="dm"></div></section></main>
<script>
let thread = null, state = null;
const $ = (id) => document.getElementById(id);
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e; }
function unescapeSlack(s) { return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&"); }
function mrkdwn(text) {  // links and mentions become elements; everything else stays text
  const out = el("span", "section"), re = /<([^<>|]+)(?:\|([^<>]*))?>/g; let last = 0, m;
  while ((m = re.exec(text))) {
    out.append(unescapeSlack(text.slice(last, m.index))); last = re.lastIndex;
    if (/^https?:/.test(m[1])) { const a = el("a", "", unescapeSlack(m[2] || m[1])); a.href = m[1]; a.target = "_blank"; out.append(a); }
    else out.append(el("b", "", m[1].startsWith("@") ? "@" + (m[1] === "@" + state.user ? "you" : m[1].slice(1)) : m[1]));
  }
  out.append(unescapeSlack(text.slice(last))); return out;
}
function render(m) {
  const mine = m.user === state.bot, div = el("div", "msg" + (mine ? " bot" : ""));
  div.append(el("span", "who", mine ? "expertbot" : (m.user === state.user ? "you" : m.user)));
  const blocks = m.blocks || [];
  if (!blocks.length) div.append(mrkdwn(m.text || ""));
  for (const b of blocks) {
    if (b.type === "section") div.append(el("div")).append(mrkdwn(b.text.text));
    else if (b.type === "context") { const c = el("div", "ctx"); b.elements.forEach((e) => c.append(mrkdwn(e.text))); div.append(c); }
    else if (b.type === "actions") b.elements.forEach((e) => { const btn = el("button", "", e.text.text);
      btn.onclick = () => post("/click", {action_id: e.action_id, value: e.value, channel: m.channel, ts: m.ts}); div.append(btn); });
  }
  (m.files || []).forEach((f) => { const img = el("img"); img.src = "/files/" + f.id; img.alt = f.title || f.name; div.append(img); });
  if (!m.thread_ts || m.thread_ts === m.ts) { const r = el("a", "reply", " reply in thread"); r.href = "#";
    r.onclick = (ev) => { ev.preventDefault(); thread = {ts: m.ts, dm: m.channel === state.dm};
      $("kind").value = thread.dm ? "dm" : "mention"; showThread(); $("text").focus(); }; div.append(r); }
  return div;
}
function showThread() { $("thread").textContent = thread ? "Replying in a thread (" + thread.ts + ") — " : "";
  if (thread) { const x = el("a", "", "stop"); x.href = "#"; x.onclick = (e) => { e.preventDefault(); thread = null; showThread(); }; $("thread").append(x); } }
function pane(id, channel) {
  const box = $(id), msgs = state.messages.filter((m) => m.channel === channel); box.replaceChildren();
  for (const root of msgs.filter((m) => !m.thread_ts || m.thread_ts === m.ts)) {
    box.append(render(root)); const replies = msgs.filter((m) => m.thread_ts === root.ts && m.ts !== root.ts);
    if (replies.length) { const t = el("div", "thread"); replies.forEach((r) => t.append(render(r))); box.append(t); }
  }
  state.notes.concat(state.ephemeral).filter((n) => n.channel === channel).forEach((n) => {
    const d = el("div", "msg note"); d.append(el("span", "", "Only visible to you" + (n.command ? " (" + n.command + ")" : "") + ": "));
    d.append(mrkdwn(n.text)); box.append(d); });
}
async function post(path, body) { const r = await fetch(path, {method: "POST", body: JSON.stringify(body)});
  if (!r.ok) alert((await r.json()).error); await refresh(); }
async function refresh() { state = await (await fetch("/state")).json(); pane("general", state.channel); pane("dm", state.dm); }
$("f").onsubmit = async (ev) => { ev.preventDefault(); const kind = $("kind").value, text = $("text").value;
  const inThread = thread && ((kind === "dm") === thread.dm) && !kind.startsWith("/");
  $("text").value = ""; await post("/send", {kind, text, thread_ts: inThread ? thread.ts : null}); };
refresh(); setInterval(refresh, 800);
</script></body></html>
"""
